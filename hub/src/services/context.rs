//! [`Context`]: what the hub hands each of its components — the store, the
//! Socket.IO server (to emit to any namespace and room), the notifications
//! service (a missed call or a mention becomes a notification),
//! background tasks that stop with the server ([`Tasks`]), and in a
//! cluster the buckets its nodes share ([`SharedBuckets`]), with which a
//! component's per-user bounds count every node's admits.
//!
//! A component keeps its live state (typing, presence, ringing calls)
//! behind a trait of its own with an in-memory implementation, not here:
//! the cluster backs each of those traits with Redis without touching the
//! component's logic.

use serde_json::Value;
use socketio::{Args, SocketIo};

use super::notifications::Notifications;
use super::presence::PresenceService;
use crate::auth::user_room;
use crate::limits::SharedBuckets;
use crate::peers::Peers;
use crate::store::Store;
use crate::tasks::Tasks;

/// What a component is built with. Cloning shares it.
#[derive(Clone)]
pub struct Context {
    /// The SQL store (transactions: [`Store::begin_write`]).
    pub store: Store,
    /// The Socket.IO server: every namespace, to emit to any room.
    pub io: SocketIo,
    /// Stores notifications and tells the user's devices.
    pub notifications: Notifications,
    /// Who is online: the live presence state and what the store
    /// remembers (the `/presence` component and the publish API read it).
    pub presence: PresenceService,
    /// Background work that stops with the server.
    pub tasks: Tasks,
    /// What to do when another node of the cluster stops (components
    /// whose live state names its node register here).
    pub peers: Peers,
    /// The token buckets every node of the cluster shares, for the
    /// per-user bounds ([`crate::limits::SenderRate`]); `None` alone.
    pub shared_rates: Option<std::sync::Arc<dyn SharedBuckets>>,
}

impl Context {
    /// Emits `event` with `payload` to every socket of `user` in namespace
    /// `ns` (their `user:<id>` room); returns how many local sockets it
    /// reached (0 when the namespace is not served).
    pub fn emit_to_user(&self, ns: &str, user: &str, event: &str, payload: &Value) -> usize {
        self.emit_to_room(ns, &user_room(user), event, payload)
    }

    /// Emits `event` with `payload` to every socket in `room` of namespace
    /// `ns`, encoded once; returns how many local sockets it reached.
    pub fn emit_to_room(&self, ns: &str, room: &str, event: &str, payload: &Value) -> usize {
        match self.io.of(ns) {
            Some(namespace) => namespace
                .to(room)
                .emit(event, &Args::one(payload))
                .recipients(),
            None => 0,
        }
    }
}
