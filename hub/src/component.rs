//! Components: the ESN features, one per namespace. A component answers
//! the client's events, decides which rooms a client may subscribe to, and
//! sees each socket arrive (`on_connect`, before the client is told it is
//! connected and before any of its events) and leave (`on_disconnect`,
//! exactly once, its rooms still readable). [`ComponentHandler`] (in
//! `component/runner.rs`) turns that into Socket.IO. This is the contract
//! only: the components themselves are in [`crate::components`].

mod runner;

use std::future::{Future, Ready};
use std::sync::Arc;

use serde_json::Value;
use socketio::{Args, DisconnectReason, Namespace, Socket};

use crate::auth::{identity_of, user_room};
use crate::identity::Identity;

pub use crate::error::{ErrorCode, HubError};
pub use runner::ComponentHandler;

/// What a component answers: the fields of `{ok:true, …}`.
pub type Reply = Result<serde_json::Map<String, Value>, HubError>;

/// Who sent an event, as the runner resolves it once for the component:
/// [`Identity`] for a component whose events need a signed-in user (a
/// socket without one is answered `unauthorized`), `Option<Identity>` for
/// one that serves anyone.
pub trait Caller: Sized + Send + 'static {
    /// The caller of `socket`'s events, or why it may send none.
    fn of(socket: &Socket) -> Result<Self, HubError>;
}

impl Caller for Identity {
    fn of(socket: &Socket) -> Result<Identity, HubError> {
        identity_of(socket).ok_or_else(|| HubError::new(ErrorCode::Unauthorized, "sign in first"))
    }
}

impl Caller for Option<Identity> {
    fn of(socket: &Socket) -> Result<Option<Identity>, HubError> {
        Ok(identity_of(socket))
    }
}

/// An ESN feature owning one namespace. Never used as `dyn`: the runner
/// ([`ComponentHandler`]) is generic over it, so its hooks return `impl
/// Future` and a component that answers at once allocates nothing for it.
pub trait Component: Send + Sync + 'static {
    /// Who may send its events (see [`Caller`]).
    type User: Caller;

    /// A socket arrives (authenticated, in its `user:<id>` room already).
    /// Runs before its client is told it is connected and before any of its
    /// events: the rooms it joins here are in place when the client sees
    /// `connect`. Return a future to wait for (a store lookup); a join
    /// decided after the client left is refused ([`Socket::join`] returns
    /// false). By default: nothing.
    fn on_connect(
        &self,
        _socket: &Arc<Socket>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        None::<Ready<()>>
    }

    /// The client has been told it is connected (its CONNECT reply reached
    /// the transport), before its first event: the place for a greeting,
    /// which then reaches the client after `connect`. Synchronous: spawn
    /// async work through the context's tasks. By default: nothing.
    fn on_connected(&self, _socket: &Arc<Socket>) {}

    /// The socket left: exactly once, after `on_connect` has finished. It
    /// receives nothing any more, but [`Socket::rooms`] still returns the
    /// rooms it was in (presence and call teardown use them).
    fn on_disconnect(&self, _socket: &Arc<Socket>, _reason: DisconnectReason) {}

    /// Whether `user` may subscribe to `room`. By default: their own
    /// `user:<id>` room only.
    fn may_subscribe(&self, user: Option<&Identity>, room: &str) -> bool {
        user.is_some_and(|u| room == user_room(&u.user))
    }

    /// Answers `subscribe` with the rooms to join. By default: `room` if
    /// [`may_subscribe`](Self::may_subscribe) allows it.
    fn subscribe(
        &self,
        socket: &Arc<Socket>,
        room: &str,
    ) -> impl Future<Output = Result<Vec<String>, HubError>> + Send + 'static {
        let verdict = if self.may_subscribe(identity_of(socket).as_ref(), room) {
            Ok(vec![room.to_owned()])
        } else {
            Err(HubError::new(
                ErrorCode::Forbidden,
                format!("not allowed to subscribe to {room}"),
            ))
        };
        std::future::ready(verdict)
    }

    /// Handles a client event other than `subscribe` / `unsubscribe`, sent
    /// by `user`.
    fn handle(
        &self,
        socket: &Arc<Socket>,
        user: Self::User,
        event: &str,
        args: &Args,
    ) -> impl Future<Output = Reply> + Send + 'static;

    /// Handles `event` in two steps instead of [`handle`](Self::handle):
    /// the outer future takes the event's place in line (e.g. queues it
    /// for a writer) and is waited for before the socket's next event; the
    /// inner one finishes it, and its reply is the ack, while the socket's
    /// next events run. So one device can have many sends in a writer's
    /// batch, in the order it sent them, where one at a time would bound
    /// its rate by the writer's round trip. `None` (the default): `handle`
    /// answers the event.
    fn queue(
        &self,
        _socket: &Arc<Socket>,
        _user: &Self::User,
        _event: &str,
        _args: &Args,
    ) -> Option<impl Future<Output = impl Future<Output = Reply> + Send + 'static> + Send + 'static>
    {
        None::<Ready<Ready<Reply>>>
    }
}

/// What a room's members get: the room, and what was published to it.
#[derive(Debug, serde::Serialize)]
pub struct Envelope<'a> {
    pub room: &'a str,
    pub data: &'a Value,
}

/// Emits `event` to everyone in `room` with the envelope `{room, data}`;
/// returns how many local sockets it reached.
pub fn publish_to_room(ns: &Arc<Namespace>, room: &str, event: &str, data: &Value) -> usize {
    ns.to(room)
        .emit(event, &Args::one(&Envelope { room, data }))
        .recipients()
}
