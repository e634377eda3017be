//! [`RedisStore`]: the [`SessionStore`] of a cluster, on the
//! [`RecoveryLog`] in Redis. Its calls on a socket's life are synchronous:
//! they queue the session writes, which a task of its own sends in order,
//! and refreshes the TTL of this node's live sessions. The log is written
//! by the bus's publisher ([`SessionStore::logs_through_adapter`]), and
//! what a recovered socket missed is read from Redis.
//!
//! Exactly once on the node that restores: the script that reads the
//! missed packets publishes a marker on this node's own response channel;
//! the subscriber delivers what it reads in order, so once the marker is
//! back every packet read was delivered here (held for the socket being
//! restored, which drops those it replays), and every later one has a
//! greater offset.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use socketio::recovery::{Audience, Missed, Offset, Pid, PidMac, Session, SessionStore, Usage};
use socketio::socket::BoxFuture;
use socketio::{Encoded, Room, SocketId};
use tokio::sync::{mpsc, oneshot};

use super::RecoveryLog;
use crate::bus::Shared;
use crate::request::own_response_channel;

/// Starts a marker published by the missed-packets script: never the
/// first byte of a MessagePack response (a map or an array).
pub(crate) const MARKER_PREFIX: &str = "sb-recovery-sync:";

/// Session writes waiting for Redis, at most; past it a write is dropped,
/// counted, and its session deleted once the queue drains (a session
/// missing a write could be restored without a room it joined, and the
/// replay would miss that room's events: better not restored).
const WRITE_QUEUE: usize = 65_536;

/// A session write, queued in the order of the socket's life.
enum Write {
    Connected(Session),
    Joined(Pid, Vec<Room>),
    Left(Pid, Room),
    Disconnected(Pid, bool),
}

impl Write {
    /// The session it writes.
    fn pid(&self) -> Pid {
        match self {
            Write::Connected(session) => session.pid,
            Write::Joined(pid, _) | Write::Left(pid, _) | Write::Disconnected(pid, _) => *pid,
        }
    }
}

/// Restores waiting for their marker, by token.
type Syncs = Mutex<HashMap<u64, oneshot::Sender<()>>>;

/// The cluster's recovery store (see the module).
pub struct RedisStore {
    log: Arc<RecoveryLog>,
    mac: PidMac,
    /// The namespace of each live socket's session here, by socket: what
    /// `joined`/`left` need for the pid, and what the refresh task renews.
    live: Mutex<HashMap<SocketId, HashSet<Arc<str>>>>,
    writes: mpsc::Sender<Write>,
    /// Restores waiting for their marker, by token.
    syncs: Arc<Syncs>,
    uid: String,
    prefix: String,
    wait_limit: Duration,
    dropped_writes: AtomicU64,
    /// Sessions a write of which was dropped or failed: their later writes
    /// are not made, their hash is deleted (again on each refresh), so
    /// they are never restored; forgotten when their socket leaves.
    spoiled: Mutex<HashSet<Pid>>,
}

impl RedisStore {
    /// A store on `log`, its pids under `key` (the same on every node),
    /// its session writes and refreshes on a task of its own.
    pub(crate) fn start(shared: &Arc<Shared>, log: Arc<RecoveryLog>, key: &[u8]) -> Arc<Self> {
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let store = Arc::new(RedisStore {
            log,
            mac: PidMac::new(key),
            live: Mutex::new(HashMap::new()),
            writes,
            syncs: Arc::default(),
            uid: shared.uid.clone(),
            prefix: shared.config.key_prefix.clone(),
            wait_limit: shared.config.command_timeout,
            dropped_writes: AtomicU64::new(0),
            spoiled: Mutex::new(HashSet::new()),
        });
        tokio::spawn(write_loop(Arc::downgrade(&store), queue));
        store
    }

    /// The log it reads.
    pub(crate) fn log(&self) -> &RecoveryLog {
        &self.log
    }

    /// A marker came back on this node's response channel.
    pub(crate) fn on_marker(&self, token: &str) {
        if let Some(done) = token
            .parse()
            .ok()
            .and_then(|t| self.syncs.lock().remove(&t))
        {
            let _ = done.send(());
        }
    }

    fn queue(&self, write: Write) {
        if let Err(err) = self.writes.try_send(write) {
            self.spoil(err.into_inner().pid());
            tracing::warn!("recovery: session write queue full; that session will not be restored");
        }
    }

    /// A write of session `pid` was lost: the session must not be restored.
    fn spoil(&self, pid: Pid) {
        self.dropped_writes.fetch_add(1, Relaxed);
        self.spoiled.lock().insert(pid);
    }

    /// Deletes the spoiled sessions' hashes.
    async fn delete_spoiled(&self) {
        let spoiled: Vec<Pid> = self.spoiled.lock().iter().copied().collect();
        for pid in spoiled {
            // Failing, it is tried again on the next refresh.
            let _ = self.log.disconnected(&pid, false).await;
        }
    }

    /// Makes one write, or for a spoiled session deletes its hash instead.
    async fn write(&self, write: &Write) {
        let pid = write.pid();
        if self.spoiled.lock().contains(&pid) {
            let deleted = self.log.disconnected(&pid, false).await.is_ok();
            if deleted && matches!(write, Write::Disconnected(..)) {
                self.spoiled.lock().remove(&pid);
            }
            return;
        }
        let result = match write {
            Write::Connected(session) => self.log.connected(session).await,
            Write::Joined(pid, rooms) => self.log.joined(pid, rooms).await,
            Write::Left(pid, room) => self.log.left(pid, room).await,
            Write::Disconnected(pid, keep) => self.log.disconnected(pid, *keep).await,
        };
        if let Err(err) = result {
            self.spoil(pid);
            tracing::warn!(%err, "recovery: a session write failed; that session will not be restored");
        }
    }

    fn live_pids(&self) -> Vec<Pid> {
        let live = self.live.lock();
        live.iter()
            .flat_map(|(sid, nsps)| nsps.iter().map(|nsp| self.mac.pid(nsp, sid)))
            .collect()
    }
}

/// Reads what `session` missed after `after`, publishing `marker` on
/// `channel` in the same script, and waits for the marker to come back
/// (at most `wait_limit`).
async fn missed_synced(
    log: Arc<RecoveryLog>,
    syncs: Arc<Syncs>,
    session: Session,
    after: Offset,
    channel: String,
    wait_limit: Duration,
) -> Option<Vec<Missed>> {
    let token = rand::random::<u64>();
    let (done, synced) = oneshot::channel();
    syncs.lock().insert(token, done);
    let marker = format!("{MARKER_PREFIX}{token}");
    let read = log.missed(&session, after, Some((&channel, &marker))).await;
    let missed = match read {
        Ok(missed) => missed,
        Err(err) => {
            syncs.lock().remove(&token);
            tracing::warn!(%err, "recovery: the missed packets could not be read");
            return None;
        }
    };
    // Not recovered unless every packet read was delivered here first: a
    // packet still on its way would be sent twice.
    let arrived = tokio::time::timeout(wait_limit, synced).await;
    syncs.lock().remove(&token);
    match arrived {
        Ok(Ok(())) => missed,
        _ => {
            tracing::warn!("recovery: the bus did not catch up with the log in time");
            None
        }
    }
}

/// Sends the session writes in order, and renews the live sessions' TTL
/// every refresh period. Stops when the store is dropped.
async fn write_loop(store: std::sync::Weak<RedisStore>, mut queue: mpsc::Receiver<Write>) {
    let Some(period) = store.upgrade().map(|s| s.log.refresh_period()) else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(256);
    loop {
        tokio::select! {
            received = queue.recv_many(&mut batch, 256) => {
                if received == 0 {
                    return;
                }
                let Some(store) = store.upgrade() else { return };
                for write in batch.drain(..) {
                    store.write(&write).await;
                }
            }
            _ = tick.tick() => {
                let Some(store) = store.upgrade() else { return };
                store.delete_spoiled().await;
                if let Err(err) = store.log.refresh(&store.live_pids()).await {
                    tracing::warn!(%err, "recovery: the live sessions' TTL could not be renewed");
                }
            }
        }
    }
}

impl SessionStore for RedisStore {
    fn pid(&self, nsp: &str, sid: &SocketId) -> Pid {
        self.mac.pid(nsp, sid)
    }

    fn logs_through_adapter(&self) -> bool {
        true
    }

    fn connected(&self, session: &Session) {
        self.live
            .lock()
            .entry(session.sid)
            .or_default()
            .insert(session.nsp.clone());
        self.queue(Write::Connected(session.clone()));
    }

    fn joined(&self, nsp: &str, sid: &SocketId, rooms: &[Room]) {
        self.queue(Write::Joined(self.mac.pid(nsp, sid), rooms.to_vec()));
    }

    fn left(&self, nsp: &str, sid: &SocketId, room: &str) {
        self.queue(Write::Left(self.mac.pid(nsp, sid), Room::from(room)));
    }

    fn disconnected(&self, session: Session, keep: bool) {
        {
            let mut live = self.live.lock();
            if let Some(nsps) = live.get_mut(&session.sid) {
                nsps.remove(&session.nsp);
                if nsps.is_empty() {
                    live.remove(&session.sid);
                }
            }
        }
        self.queue(Write::Disconnected(session.pid, keep));
    }

    /// Not called ([`logs_through_adapter`](SessionStore::logs_through_adapter)):
    /// should it be, the packet carries offset 0, which no log holds, so
    /// a client presenting it is not recovered (never a gap).
    fn record(
        &self,
        _nsp: &Arc<str>,
        _audience: Audience<'_>,
        encode: &mut dyn FnMut(Offset) -> Encoded,
    ) -> Encoded {
        encode(Offset(0))
    }

    fn restore(
        &self,
        nsp: &str,
        pid: &Pid,
        offset: Offset,
        owner: Option<&str>,
    ) -> BoxFuture<Option<Session>> {
        let log = self.log.clone();
        let (nsp, pid, owner) = (nsp.to_owned(), *pid, owner.map(str::to_owned));
        Box::pin(async move {
            match log.restore(&nsp, &pid, offset, owner.as_deref()).await {
                Ok(session) => session,
                Err(err) => {
                    tracing::warn!(%err, "recovery: a session could not be restored");
                    None
                }
            }
        })
    }

    fn missed(&self, session: &Session, after: Offset) -> BoxFuture<Option<Vec<Missed>>> {
        let channel = own_response_channel(&self.prefix, &session.nsp, &self.uid);
        Box::pin(missed_synced(
            self.log.clone(),
            self.syncs.clone(),
            session.clone(),
            after,
            channel,
            self.wait_limit,
        ))
    }

    fn usage(&self) -> Usage {
        Usage {
            bytes: 0,
            packets: 0,
            sessions: self.live.lock().values().map(|n| n.len() as u64).sum(),
        }
    }
}
