//! [`Context`]: what the hub hands each of its components — the store, the
//! Socket.IO server (to emit to any namespace and room), the notifications
//! service (a missed call or a mention becomes a notification), and
//! background tasks that stop with the server ([`Tasks`]).
//!
//! A component keeps its live state (typing, presence, ringing calls)
//! behind a trait of its own with an in-memory implementation, not here:
//! the cluster backs each of those traits with Redis without touching the
//! component's logic.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use socketio::{Args, SocketIo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::user_room;
use crate::notifications::Notifications;
use crate::presence::PresenceService;
use crate::store::Store;

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
            Some(namespace) => namespace.to(room).emit(event, &Args::one(payload)),
            None => 0,
        }
    }
}

/// Background tasks that end when the hub closes: each task is dropped at
/// its next `.await` once [`Tasks::shutdown`] is called, and the hub waits
/// (a bounded time) for them to finish.
#[derive(Clone, Default)]
pub struct Tasks {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Runs `task` until it finishes or the hub closes.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Runs `tick` every `period` (the first after one period) until the
    /// hub closes. A tick that takes longer than the period delays the
    /// next one rather than piling up.
    pub fn every<F, Fut>(&self, period: Duration, mut tick: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn(async move {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                tick().await;
            }
        });
    }

    /// A token cancelled when the hub closes, for work that selects on it.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops every task and waits for them, at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_stop_when_the_hub_closes() {
        let tasks = Tasks::new();
        let (tx, mut ticks) = tokio::sync::mpsc::unbounded_channel();
        tasks.every(Duration::from_millis(5), move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
            }
        });
        for _ in 0..3 {
            ticks.recv().await.expect("ticks while the hub runs");
        }
        tasks.shutdown(Duration::from_secs(5)).await;
        // The task, and the sender it holds, are gone: the channel closes
        // once the ticks already sent are read.
        while ticks.recv().await.is_some() {}
    }
}
