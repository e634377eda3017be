//! The node's end of the bus: one per node, shared by every namespace's
//! adapter. It holds the node's uid, the bounded publish queue, the
//! namespaces that receive (by name, weakly), the counters, and the
//! handle ([`Cluster`]) that starts and stops the two connection tasks
//! (`publisher`, `subscriber`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use socketio::{Adapter, AdapterFactory, Encoded, LocalAdapter, Namespace, Room, SocketId};
use tokio::sync::{Notify, mpsc, watch};

use crate::adapter::RedisAdapter;
use crate::config::ClusterConfig;
use crate::confirmed::Confirmed;
use crate::error::ClusterError;
use crate::nodes::{LastBeat, Registry, heartbeat_channel};
use crate::recovery::{RecoveryLog, RedisStore};
use crate::remote::{Hooks, Pending};
use crate::request;
use crate::sharded;
use crate::stats::{BusStats, StatsSnapshot, Throttle};
use crate::wire::{self, Decoded, Outbound};

/// How often a repeated failure (a full queue, malformed messages) is
/// logged; every occurrence is counted.
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// A namespace that receives from the bus.
struct Receiver {
    /// Tells this registration from a later one of the same name.
    token: u64,
    ns: Weak<Namespace>,
    local: Arc<LocalAdapter>,
}

/// A subscription of the subscriber connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Subscription {
    /// PSUBSCRIBE.
    Pattern(String),
    /// SUBSCRIBE.
    Channel(String),
    /// SSUBSCRIBE (sharded mode).
    Shard(String),
}

/// What waits in the publish queue.
pub(crate) enum Queued {
    /// A broadcast, encoded by the publisher task.
    Broadcast(Outbound),
    /// A request or an answer, encoded.
    Raw { channel: String, payload: Vec<u8> },
    /// A recoverable broadcast: appended to the recovery log and published
    /// by one script, then delivered by every node from the bus, this one
    /// included (see [`crate::recovery`]).
    Logged(Outbound),
    /// A broadcast whose emitter waits for its publication (see
    /// [`crate::confirmed`]).
    Confirmed(Confirmed),
}

impl Queued {
    /// What the queue's byte bound counts.
    pub(crate) fn byte_len(&self) -> usize {
        match self {
            Queued::Broadcast(message) | Queued::Logged(message) => message.byte_len(),
            Queued::Confirmed(c) => c.message.byte_len(),
            Queued::Raw { channel, payload } => channel.len() + payload.len(),
        }
    }
}

impl std::fmt::Display for Queued {
    /// What a log line says of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Queued::Broadcast(m) => write!(f, "broadcast of {:?} in {}", m.event, m.nsp),
            Queued::Logged(m) => write!(f, "recoverable broadcast of {:?} in {}", m.event, m.nsp),
            Queued::Confirmed(c) => write!(
                f,
                "awaited broadcast of {:?} in {}",
                c.message.event, c.message.nsp
            ),
            Queued::Raw { channel, .. } => write!(f, "message on {channel}"),
        }
    }
}

/// What the adapters and the connection tasks share.
pub(crate) struct Shared {
    pub(crate) config: ClusterConfig,
    /// This node's id on the bus: six characters as the classic Node
    /// adapter's `uid2(6)`, never `emitter`; sixteen hex digits in sharded
    /// mode, as `ClusterAdapter`'s.
    pub(crate) uid: String,
    pub(crate) stats: BusStats,
    queue: mpsc::Sender<Queued>,
    receivers: RwLock<HashMap<Room, Receiver>>,
    next_token: AtomicU64,
    /// Wakes the subscriber when a namespace comes or goes.
    pub(crate) patterns_changed: Notify,
    /// Counts the namespaces' comings and goings: the subscriber is up
    /// only once it holds the patterns of the latest.
    pub(crate) generation: AtomicU64,
    /// The last connection error, for `/readyz`.
    last_error: Mutex<Option<String>>,
    drop_log: Throttle,
    pub(crate) malformed_log: Throttle,
    /// This node's requests waiting for answers.
    pub(crate) pending: Pending,
    /// A handle on the publishing connection while it is open, for the
    /// requests that need Redis's reply (how many nodes heard them).
    pub(crate) command: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// What the application plugs in (server-side events, socket data).
    pub(crate) hooks: RwLock<Hooks>,
    /// The other Switchboard nodes, by heartbeats.
    pub(crate) nodes: Registry,
    /// Since when both connections have been up without a break (the
    /// heartbeat task keeps it).
    pub(crate) up_since: Mutex<Option<std::time::Instant>>,
    /// When a heartbeat of this node last reached Redis: the others heard
    /// it then, so past `heartbeat_timeout` since, they may have dropped
    /// this node (see `nodes::Shared::out_of_touch`, which every bus
    /// message asks: an atomic, no lock).
    pub(crate) last_beat: LastBeat,
    /// Set from when this node found itself silent past the timeout until
    /// it has rejoined (announced itself and run the application's hook).
    pub(crate) rejoining: std::sync::atomic::AtomicBool,
    /// Set when the subscribing connection, once up, was lost: broadcasts
    /// published until it is back never reached this node, so its clients
    /// are closed to recover them (`nodes::Shared::rejoin`).
    pub(crate) bus_gap: std::sync::atomic::AtomicBool,
    /// One rejoin at a time (the heartbeat task and the subscriber both
    /// start one).
    pub(crate) rejoin_lock: tokio::sync::Mutex<()>,
    /// Connection state recovery's store, once
    /// [`Cluster::recovery_store`] made it.
    pub(crate) recovery: std::sync::OnceLock<Arc<RedisStore>>,
    /// In dynamic sharded mode, the rooms (namespace, room) that may have
    /// been created or deleted since the subscriber last looked: it
    /// SSUBSCRIBEs or SUNSUBSCRIBEs their channels as they are then. A set,
    /// so a room joined and left a thousand times waits once; bounded by
    /// the rooms there are.
    pub(crate) rooms_touched: Mutex<std::collections::HashSet<(Room, Room)>>,
    /// Wakes the subscriber when `rooms_touched` has something.
    pub(crate) rooms_changed: Notify,
}

impl Shared {
    /// Hands a broadcast to the publisher task; never waits. A full queue
    /// drops it, counted and logged (see the crate docs for why).
    pub(crate) fn publish(&self, message: Outbound) {
        self.enqueue(Queued::Broadcast(message));
    }

    /// Hands a request or an answer, already encoded, to the publisher
    /// task, behind the broadcasts queued before it (a `socketsJoin` then
    /// an emit to the room arrive in that order); never waits.
    /// Hands a recoverable broadcast to the publisher task, which logs
    /// and publishes it; never waits.
    pub(crate) fn publish_logged(&self, message: Outbound) {
        self.enqueue(Queued::Logged(message));
    }

    /// Hands a broadcast whose emitter waits for it to the publisher
    /// task; never waits. Dropped, the emitter hears so at once.
    pub(crate) fn publish_confirmed(&self, message: Confirmed) {
        self.enqueue(Queued::Confirmed(message));
    }

    pub(crate) fn publish_raw(&self, channel: String, payload: Vec<u8>) {
        self.enqueue(Queued::Raw { channel, payload });
    }

    fn enqueue(&self, message: Queued) {
        let bytes = message.byte_len();
        if bytes > self.config.max_message_bytes {
            self.stats.dropped_too_large.fetch_add(1, Relaxed);
            if let Some(held) = self.drop_log.check() {
                tracing::error!(
                    message = %message,
                    bytes,
                    max = self.config.max_message_bytes,
                    also_dropped = held,
                    "bus message over cluster.max_message_bytes: not published to the other nodes"
                );
            }
            return;
        }
        let before = self.stats.queued_bytes.fetch_add(bytes, Relaxed);
        if before + bytes > self.config.publish_queue_bytes {
            self.stats.queued_bytes.fetch_sub(bytes, Relaxed);
            return self.dropped(&message, "cluster.publish_queue_bytes");
        }
        match self.queue.try_send(message) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(message)) => {
                self.stats.queued_bytes.fetch_sub(bytes, Relaxed);
                self.dropped(&message, "cluster.publish_queue");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stats.queued_bytes.fetch_sub(bytes, Relaxed);
                self.stats.dropped_closed.fetch_add(1, Relaxed);
            }
        }
    }

    fn dropped(&self, message: &Queued, bound: &str) {
        self.stats.dropped_queue_full.fetch_add(1, Relaxed);
        if let Some(held) = self.drop_log.check() {
            tracing::error!(
                message = %message,
                bound,
                also_dropped = held,
                "the publish queue is full (Redis down or too slow): not published to the \
                 other nodes (a broadcast is still delivered on this node)"
            );
        }
    }

    /// The publisher took a message off the queue.
    pub(crate) fn dequeued(&self, message: &Queued) {
        self.stats.queued.fetch_sub(1, Relaxed);
        self.stats
            .queued_bytes
            .fetch_sub(message.byte_len(), Relaxed);
    }

    pub(crate) fn register(
        &self,
        nsp: &Room,
        ns: &Arc<Namespace>,
        local: Arc<LocalAdapter>,
    ) -> u64 {
        let token = self.next_token.fetch_add(1, Relaxed);
        self.receivers.write().insert(
            nsp.clone(),
            Receiver {
                token,
                ns: Arc::downgrade(ns),
                local,
            },
        );
        // Not up until this namespace's pattern is subscribed: a broadcast
        // published meanwhile would not reach its sockets.
        self.generation.fetch_add(1, Relaxed);
        self.stats.subscribe_up.store(false, Relaxed);
        self.patterns_changed.notify_one();
        token
    }

    pub(crate) fn unregister(&self, nsp: &Room, token: u64) {
        let mut receivers = self.receivers.write();
        if receivers.get(nsp).is_some_and(|r| r.token == token) {
            receivers.remove(nsp);
            drop(receivers);
            self.generation.fetch_add(1, Relaxed);
            self.patterns_changed.notify_one();
        }
    }

    /// What the subscriber must hold: the heartbeats, and per namespace
    /// the pattern of its broadcasts, its request channel, and the
    /// response channels (the shared one and this node's own). In sharded
    /// mode, per namespace its channel and this node's response channel
    /// (the rooms' are [`room_subscriptions`](Self::room_subscriptions)).
    pub(crate) fn subscriptions(&self) -> Vec<Subscription> {
        let prefix = &self.config.key_prefix;
        let receivers = self.receivers.read();
        let mut out = Vec::with_capacity(1 + 4 * receivers.len());
        out.push(Subscription::Channel(heartbeat_channel(prefix)));
        if self.config.sharded() {
            for nsp in receivers.keys() {
                out.push(Subscription::Shard(sharded::channel_of(prefix, nsp)));
                out.push(Subscription::Shard(sharded::response_channel(
                    prefix, nsp, &self.uid,
                )));
            }
            return out;
        }
        for nsp in receivers.keys() {
            out.push(Subscription::Pattern(wire::pattern_of(prefix, nsp)));
            out.push(Subscription::Channel(request::request_channel(prefix, nsp)));
            out.push(Subscription::Channel(request::response_channel(
                prefix, nsp,
            )));
            out.push(Subscription::Channel(request::own_response_channel(
                prefix, nsp, &self.uid,
            )));
        }
        out
    }

    /// In dynamic sharded mode, the channel of every room a socket of this
    /// node is in (what a fresh connection subscribes to).
    pub(crate) fn room_subscriptions(&self) -> Vec<Subscription> {
        if !self.config.dynamic_rooms() {
            return Vec::new();
        }
        let prefix = &self.config.key_prefix;
        let receivers = self.receivers.read();
        let mut out = Vec::new();
        for (nsp, receiver) in receivers.iter() {
            for room in receiver.local.room_names() {
                out.push(Subscription::Shard(sharded::room_channel(
                    prefix, nsp, &room,
                )));
            }
        }
        out
    }

    /// A room of namespace `nsp` may have been created or deleted on this
    /// node (dynamic sharded mode): the subscriber looks at it. Never waits.
    pub(crate) fn room_touched(&self, nsp: &Room, room: &Room) {
        let added = self
            .rooms_touched
            .lock()
            .insert((nsp.clone(), room.clone()));
        if added {
            self.rooms_changed.notify_one();
        }
    }

    /// Takes up to `max` of the rooms touched, each with whether its
    /// channel is wanted now (a socket of this node is in it).
    pub(crate) fn take_touched_rooms(&self, max: usize) -> Vec<(String, bool)> {
        let taken: Vec<(Room, Room)> = {
            let mut touched = self.rooms_touched.lock();
            let taken: Vec<(Room, Room)> = touched.iter().take(max).cloned().collect();
            for key in &taken {
                touched.remove(key);
            }
            if !touched.is_empty() {
                // The rest on the next round.
                self.rooms_changed.notify_one();
            }
            taken
        };
        let prefix = &self.config.key_prefix;
        taken
            .into_iter()
            .map(|(nsp, room)| {
                let wanted = self
                    .receiver(&nsp)
                    .is_some_and(|(_, local)| local.has_room(&room));
                (sharded::room_channel(prefix, &nsp, &room), wanted)
            })
            .collect()
    }

    /// The namespace `nsp` and its rooms, if it receives from the bus.
    pub(crate) fn receiver(&self, nsp: &str) -> Option<(Arc<Namespace>, Arc<LocalAdapter>)> {
        let receivers = self.receivers.read();
        let receiver = receivers.get(nsp)?;
        Some((receiver.ns.upgrade()?, receiver.local.clone()))
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        *self.last_error.lock() = error;
    }

    /// A message from Redis on `channel`, matched by `pattern`: decoded
    /// and delivered to this node's sockets, on the subscriber
    /// connection's own task (delivery only queues frames: it never
    /// waits). While it runs the connection is not read, so a node that
    /// falls behind holds Redis back rather than buffering without bound.
    pub(crate) fn on_message(&self, pattern: &str, channel: &str, message: Bytes) {
        let prefix = &self.config.key_prefix;
        let Some(nsp) = pattern
            .strip_prefix(prefix.as_str())
            .and_then(|p| p.strip_prefix('#'))
            .and_then(|p| p.strip_suffix("#*"))
        else {
            return;
        };
        let Some((ns, local)) = self.receiver(nsp) else {
            return;
        };
        if self.out_of_touch() {
            // What Redis kept for this node while it was frozen, read as it
            // wakes, or what arrives as its subscription is made again
            // after a cut: its clients are about to be closed, and recover
            // what they missed from the log. Queued to a connection that is
            // being closed, a packet could reach the client after its
            // socket disconnected and be replayed again once it recovers.
            self.stats.out_of_touch.fetch_add(1, Relaxed);
            return;
        }
        // `<prefix>#<nsp>#<room>#`: skipped unread when no socket here is
        // in the room (the Node adapter's `hasRoom`).
        let room = channel
            .strip_prefix(&wire::channel_of(prefix, nsp))
            .and_then(|rest| rest.strip_suffix('#'))
            .filter(|room| !room.is_empty());
        if let Some(room) = room {
            let here = local.has_room(room)
                || SocketId::parse(room).is_some_and(|id| ns.get(&id).is_some());
            if !here {
                self.stats.unknown_room.fetch_add(1, Relaxed);
                return;
            }
        }
        if self.too_large(channel, message.len()) {
            return;
        }
        self.deliver(
            wire::decode(&message, &self.uid, nsp),
            channel,
            nsp,
            &ns,
            &local,
        );
    }

    /// A message on a shard channel (sharded mode): a broadcast, a request
    /// or an answer, by its type (as `ClusterAdapter.onMessage` reads it;
    /// the channel does not matter).
    pub(crate) fn on_shard_message(self: &Arc<Self>, channel: &str, message: Bytes) {
        if self.too_large(channel, message.len()) {
            return;
        }
        match sharded::decode(&message, &self.uid) {
            Ok(sharded::Message::Own) => {
                self.stats.own.fetch_add(1, Relaxed);
            }
            Ok(sharded::Message::Ignored) => {}
            Ok(sharded::Message::Broadcast { nsp, inbound }) => {
                let Some((ns, local)) = self.receiver(&nsp) else {
                    self.stats.other_namespace.fetch_add(1, Relaxed);
                    return;
                };
                if self.out_of_touch() {
                    // As in `on_message`: its clients are about to be
                    // closed (sharded mode has no recovery: they come back
                    // as new sockets and resynchronize).
                    self.stats.out_of_touch.fetch_add(1, Relaxed);
                    return;
                }
                self.deliver(Ok(Decoded::Broadcast(inbound)), channel, &nsp, &ns, &local);
            }
            Ok(sharded::Message::Request { nsp, request }) => {
                self.on_shard_request(&nsp, request);
            }
            Ok(sharded::Message::Response {
                request_id,
                response,
            }) => self.on_shard_response(&request_id, response),
            Err(err) => {
                self.stats.malformed.fetch_add(1, Relaxed);
                if let Some(held) = self.malformed_log.check() {
                    tracing::warn!(%err, channel, also_refused = held, "malformed bus message ignored");
                }
            }
        }
    }

    /// Whether a message read is over `max_message_bytes` (then counted
    /// and logged, not delivered).
    fn too_large(&self, channel: &str, bytes: usize) -> bool {
        if bytes <= self.config.max_message_bytes {
            return false;
        }
        self.stats.received_too_large.fetch_add(1, Relaxed);
        if let Some(held) = self.malformed_log.check() {
            tracing::warn!(
                channel,
                bytes,
                max = self.config.max_message_bytes,
                also_refused = held,
                "bus message over cluster.max_message_bytes: not delivered"
            );
        }
        true
    }

    /// Delivers what a broadcast message said to this node's sockets of
    /// namespace `nsp`.
    fn deliver(
        &self,
        decoded: Result<Decoded, wire::WireError>,
        channel: &str,
        nsp: &str,
        ns: &Arc<Namespace>,
        local: &Arc<LocalAdapter>,
    ) {
        match decoded {
            Ok(Decoded::Own) => {
                self.stats.own.fetch_add(1, Relaxed);
            }
            Ok(Decoded::OtherNamespace) => {
                self.stats.other_namespace.fetch_add(1, Relaxed);
            }
            Ok(Decoded::Broadcast(inbound)) => {
                // Encoded once for every socket of this node it reaches;
                // a logged one with its offset as the last argument (a
                // socket being restored also tells it from the missed
                // packets by it).
                let packet = match inbound.offset {
                    Some(offset) => Encoded::event_at(nsp, &inbound.event, &inbound.args, offset),
                    None => Encoded::event(nsp, &inbound.event, &inbound.args, None),
                };
                let count = Adapter::broadcast(&**local, ns, &packet, &inbound.opts);
                let stats = ns.stats();
                stats.events_out.add(&inbound.event, count as u64);
                stats.fanout.observe(count as f64);
                self.stats.delivered.fetch_add(1, Relaxed);
            }
            Err(err) => {
                self.stats.malformed.fetch_add(1, Relaxed);
                if let Some(held) = self.malformed_log.check() {
                    tracing::warn!(%err, channel, also_refused = held, "malformed bus message ignored");
                }
            }
        }
    }
}

/// The node's place in the cluster: the bus's connection tasks and the
/// adapters they serve. Cloning shares it; the tasks stop when the last
/// clone is dropped or [`close`](Cluster::close) is called.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Whether the bus works, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The publishing connection is open.
    pub publish_up: bool,
    /// The subscribing connection is open and holds every namespace's pattern.
    pub subscribe_up: bool,
    /// The last connection error, while either is down.
    pub error: Option<String>,
}

impl Health {
    /// Both connections work.
    pub fn is_up(&self) -> bool {
        self.publish_up && self.subscribe_up
    }
}

impl Cluster {
    /// Starts the bus's two connection tasks (on the current tokio
    /// runtime); they connect, and reconnect, on their own: until then
    /// [`health`](Cluster::health) says so, and broadcasts wait in the
    /// publish queue.
    pub fn start(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        crate::config::check(&config.redis_url, config.redis_ca_file.as_deref())?;
        if crate::config::is_tls(&config.redis_url) {
            crate::config::install_crypto();
        }
        let (queue, queued) = mpsc::channel(config.publish_queue.max(1));
        let shared = Arc::new(Shared {
            uid: if config.sharded() {
                format!("{:016x}", rand::random::<u64>())
            } else {
                new_uid()
            },
            stats: BusStats::default(),
            queue,
            receivers: RwLock::new(HashMap::new()),
            next_token: AtomicU64::new(0),
            patterns_changed: Notify::new(),
            generation: AtomicU64::new(0),
            last_error: Mutex::new(None),
            drop_log: Throttle::new(LOG_PERIOD),
            malformed_log: Throttle::new(LOG_PERIOD),
            pending: Mutex::new(HashMap::new()),
            command: Mutex::new(None),
            hooks: RwLock::new(Hooks::default()),
            nodes: Registry::default(),
            up_since: Mutex::new(None),
            last_beat: LastBeat::new(),
            rejoining: std::sync::atomic::AtomicBool::new(false),
            bus_gap: std::sync::atomic::AtomicBool::new(false),
            rejoin_lock: tokio::sync::Mutex::new(()),
            recovery: std::sync::OnceLock::new(),
            rooms_touched: Mutex::new(std::collections::HashSet::new()),
            rooms_changed: Notify::new(),
            config,
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(crate::publisher::run(
            shared.clone(),
            queued,
            stopped.clone(),
        ));
        tokio::spawn(crate::subscriber::run(shared.clone(), stopped.clone()));
        tokio::spawn(crate::nodes::run(shared.clone(), stopped));
        tracing::info!(
            uid = %shared.uid,
            prefix = %shared.config.key_prefix,
            pubsub = ?shared.config.pubsub,
            "cluster bus starting"
        );
        Ok(Cluster {
            inner: Arc::new(Inner { shared, stop }),
        })
    }

    /// The adapter factory to give Socket.IO: every namespace gets a
    /// [`RedisAdapter`] on this bus; with the recovery store, once
    /// [`recovery_store`](Self::recovery_store) made it.
    pub fn adapters(&self) -> AdapterFactory {
        let shared = self.inner.shared.clone();
        let store = shared.recovery.get().cloned();
        let factory =
            AdapterFactory::new(move |nsp| Box::new(RedisAdapter::new(nsp, shared.clone())));
        match store {
            Some(store) => factory.with_session_store(store),
            None => factory,
        }
    }

    /// Connection state recovery kept in Redis, for every node of the
    /// cluster: the store to give the adapters
    /// ([`AdapterFactory::with_session_store`](socketio::AdapterFactory::with_session_store)).
    /// Its pids are keyed by a secret kept in Redis (`<prefix>-recovery-key`,
    /// made by the first node), so that every node gives a socket the same
    /// pid; it is read here, once, within the connect and command timeouts.
    pub async fn recovery_store(
        &self,
        config: socketio::RecoveryConfig,
    ) -> Result<Arc<RedisStore>, ClusterError> {
        let shared = self.inner.shared.clone();
        if shared.config.sharded() {
            return Err(ClusterError::RecoveryNeedsClassic);
        }
        if let Some(store) = shared.recovery.get() {
            return Ok(store.clone());
        }
        let key = recovery_key(&shared.config).await?;
        let command = shared.clone();
        let log = Arc::new(RecoveryLog::new(
            &shared.config.key_prefix,
            config.window,
            config.max_bytes,
            shared.config.command_timeout,
            Arc::new(move || command.command.lock().clone()),
        ));
        let store = RedisStore::start(&shared, log, &key);
        Ok(shared.recovery.get_or_init(|| store).clone())
    }

    /// In sharded mode, checks that Redis knows sharded pub/sub (7.0 or
    /// later): `Err(ShardedUnsupported)` says it does not. A Redis that
    /// cannot be reached now is not an error here (the node starts and
    /// reconnects, as in classic mode); in classic mode, nothing is asked.
    pub async fn check_server(&self) -> Result<(), ClusterError> {
        let config = &self.inner.shared.config;
        if !config.sharded() {
            return Ok(());
        }
        let Ok(mut conn) = command_connection(config).await else {
            return Ok(());
        };
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("SHARDNUMSUB")
            .arg(crate::sharded::channel_of(&config.key_prefix, "/"));
        match crate::publisher::timed(
            config.command_timeout,
            cmd.query_async::<redis::Value>(&mut conn),
        )
        .await
        {
            // An error Redis answered (not a broken connection): an unknown
            // subcommand before 7.0.
            Err(ClusterError::Redis(err)) if err.code().is_some() => {
                Err(ClusterError::ShardedUnsupported(err.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// This node's uid on the bus.
    pub fn uid(&self) -> &str {
        &self.inner.shared.uid
    }

    /// The channels' prefix (`cluster.key_prefix`).
    pub fn key_prefix(&self) -> &str {
        &self.inner.shared.config.key_prefix
    }

    /// Whether the connections work.
    pub fn health(&self) -> Health {
        let stats = &self.inner.shared.stats;
        let publish_up = stats.publish_up.load(Relaxed);
        let subscribe_up = stats.subscribe_up.load(Relaxed);
        let error = if publish_up && subscribe_up {
            None
        } else {
            self.inner.shared.last_error.lock().clone()
        };
        Health {
            publish_up,
            subscribe_up,
            error,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.shared.stats.snapshot()
    }

    /// Waits until both connections work, at most `timeout`; returns
    /// whether they do.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.health().is_up() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The other Switchboard nodes alive (heard from within
    /// `heartbeat_timeout`), by uid, sorted.
    pub fn nodes(&self) -> Vec<String> {
        self.inner.shared.nodes.live()
    }

    /// Whether this node has heard the cluster for a whole
    /// `heartbeat_timeout` without a break, so that a node it does not
    /// count alive ([`nodes`](Cluster::nodes)) is one that stopped.
    pub fn hears_the_others(&self) -> bool {
        self.inner.shared.hears_the_others()
    }

    /// Whether the other nodes may have dropped this node and it has not
    /// rejoined yet: its last heartbeat that reached Redis is older than
    /// `heartbeat_timeout` (it was frozen, stuck, or cut off from Redis),
    /// or it is rejoining ([`on_rejoin`](Cluster::on_rejoin)). True the
    /// moment a frozen node wakes, before any of its tasks ran: what it
    /// still holds of the live state the others ended (a typing start, a
    /// timer) must not be acted on then.
    pub fn out_of_touch(&self) -> bool {
        self.inner.shared.out_of_touch()
    }

    /// A handle on the node's command connection to Redis (the publishing
    /// one; commands and scripts share it, multiplexed), `None` while it is
    /// down. For the state kept in Redis beside the bus.
    pub fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        self.inner.shared.command.lock().clone()
    }

    /// How long a command may take (`cluster.command_timeout_ms`).
    pub fn command_timeout(&self) -> Duration {
        self.inner.shared.config.command_timeout
    }

    /// How often the nodes heartbeat (`cluster.heartbeat_interval_ms`).
    pub fn heartbeat_interval(&self) -> Duration {
        self.inner.shared.config.heartbeat_interval
    }

    /// Stops the bus: tells the other nodes, waits up to `grace` for the
    /// publish queue to empty (what the last sockets' departures emitted),
    /// then ends the tasks.
    pub async fn close(&self, grace: Duration) {
        self.inner.shared.farewell().await;
        let stats = &self.inner.shared.stats;
        let flushed = tokio::time::timeout(grace, async {
            while stats.queued.load(Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!(
                queued = stats.queued.load(Relaxed),
                "cluster bus closed with broadcasts still unpublished"
            );
        }
        let _ = self.inner.stop.send(true);
    }
}

/// Six characters from the alphabet of the `uid2` package the Node
/// adapter uses (never `emitter`, which has seven).
pub(crate) fn new_uid() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut raw = [0u8; 6];
    rand::fill(&mut raw);
    raw.iter()
        .map(|b| CHARS[(*b % 64) as usize] as char)
        .collect()
}

/// Names a fresh connection `switchboard:<uid>:<role>` (`CLIENT LIST`
/// then tells an operator which node holds it); a Redis that refuses is
/// only logged.
pub(crate) async fn name_connection(
    shared: &Shared,
    conn: &mut redis::aio::MultiplexedConnection,
    role: &str,
) {
    let name = format!("switchboard:{}:{role}", shared.uid);
    let named = crate::publisher::timed(
        shared.config.command_timeout,
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&name)
            .query_async::<()>(conn),
    )
    .await;
    if let Err(err) = named {
        tracing::debug!(%err, name, "CLIENT SETNAME refused");
    }
}

/// Resolves once the bus is told to stop (or its handle is gone).
pub(crate) async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here: it must not live
    // across the callers' awaits (it is not `Send`).
    let _ = stopped.wait_for(|s| *s).await.map(|_| ());
}

/// Sleeps `delay`, or less if the bus stops; returns whether it did.
pub(crate) async fn sleep_or_stop(delay: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stop_requested(stopped) => true,
    }
}

/// The next reconnection delay after `delay`: doubled, up to the maximum.
pub(crate) fn backoff(delay: Duration, config: &ClusterConfig) -> Duration {
    (delay * 2).clamp(config.reconnect_min, config.reconnect_max)
}

/// A connection for one-off commands at start, within the connect and
/// command timeouts.
async fn command_connection(
    config: &ClusterConfig,
) -> Result<redis::aio::MultiplexedConnection, ClusterError> {
    let client = crate::config::client(config, config.redis_url.as_str())?;
    let connection = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.command_timeout));
    let limit = config.connect_timeout + config.command_timeout;
    tokio::time::timeout(limit, crate::config::connect(config, &client, &connection))
        .await
        .map_err(|_| ClusterError::Timeout(limit))?
}

/// The pid key shared by the nodes: made by the first to ask (SET NX),
/// read by the others.
async fn recovery_key(config: &ClusterConfig) -> Result<Vec<u8>, ClusterError> {
    let mut conn = command_connection(config).await?;
    let fresh: String = (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let mut cmd = redis::cmd("SET");
    cmd.arg(format!("{}-recovery-key", config.key_prefix))
        .arg(&fresh)
        .arg("NX")
        .arg("GET");
    let existing: Option<String> =
        crate::publisher::timed(config.command_timeout, cmd.query_async(&mut conn)).await?;
    Ok(existing.unwrap_or(fresh).into_bytes())
}
