//! The hub's live state in Redis, for cluster mode: implementations of
//! the hub's state traits that every node of the cluster shares, each
//! change one Lua script (atomic, its version from Redis in the same
//! step), on the cluster's command connection ([`cluster::Cluster::connection`]).
//!
//! The hub knows no Redis and the cluster no component: this is where the
//! two meet, as the rest of the binary's wiring.
//!
//! - [`presence`]: [`RedisPresence`], who is online.
//! - [`typing`]: [`RedisTyping`], which typing indicators each node shows.
//! - [`calls`]: [`RedisCalls`], the live calls.
//! - [`rates`]: [`RedisRates`], the token buckets of the per-sender
//!   bounds, shared so that they hold across the nodes.
//! - [`watch_nodes`]: what a node does when another stops: its live state
//!   is dropped at once ([`hub::Hub::node_dropped`]).
//! - [`rejoin_clean`]: what a node does when it finds the others may
//!   have dropped it (it was frozen, or cut off from Redis, past the
//!   heartbeat timeout): it forgets what they ended and closes its
//!   clients' connections, which come back and are recovered.
//! - [`ClusterNodes`]: the other nodes as the publish API asks them.
//!
//! Keys live under `<cluster.key_prefix>-<state>#…` and are listed, with
//! when they go, in `docs/DEPLOY.md`. Nothing here has a TTL: an entry goes
//! when what made it goes (a device leaves, its node stops) — except a
//! rate's bucket, which goes when it has refilled.
//!
//! A reply Redis gives that is not what the script returns (another
//! program writing the keys, a version mismatch) is an error of the call
//! (`unavailable` to the client), counted and logged, never a panic.

pub mod calls;
pub mod presence;
pub mod rates;
pub mod typing;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use cluster::redis::{self, Value};

pub use calls::RedisCalls;
pub use presence::RedisPresence;
pub use rates::RedisRates;
pub use typing::RedisTyping;

/// Failures of the live state in Redis, for `/metrics`.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Presence calls Redis did not answer (down, timed out, refused).
    pub presence_unavailable: AtomicU64,
    /// Presence replies that were not what the script returns.
    pub presence_malformed: AtomicU64,
    /// Typing marks or takes Redis did not answer.
    pub typing_unavailable: AtomicU64,
    /// Typing index fields that were not ours.
    pub typing_malformed: AtomicU64,
    /// Calls state calls Redis did not answer.
    pub calls_unavailable: AtomicU64,
    /// Calls Redis held that were not ours to read.
    pub calls_malformed: AtomicU64,
    /// Takes from the shared rate buckets Redis did not answer (admitted
    /// on the node's own bucket).
    pub rates_unavailable: AtomicU64,
    /// Rate script replies that were not what it returns.
    pub rates_malformed: AtomicU64,
}

/// A reply that is not what a script returns.
#[derive(Debug, thiserror::Error)]
#[error("malformed reply from Redis: {0}")]
pub struct Malformed(pub String);

/// Runs one script invocation on the cluster's connection, bounded by
/// `cluster.command_timeout_ms`.
async fn invoke(
    cluster: &cluster::Cluster,
    invocation: &redis::ScriptInvocation<'_>,
) -> Result<Value, String> {
    invoke_within(cluster, invocation, cluster.command_timeout()).await
}

/// [`invoke`] bounded by `limit` instead.
async fn invoke_within(
    cluster: &cluster::Cluster,
    invocation: &redis::ScriptInvocation<'_>,
    limit: std::time::Duration,
) -> Result<Value, String> {
    let mut conn = cluster.connection().ok_or(NOT_CONNECTED)?;
    within(limit, invocation.invoke_async::<Value>(&mut conn)).await
}

/// Runs one command on the cluster's connection, bounded by
/// `cluster.command_timeout_ms`.
async fn query(cluster: &cluster::Cluster, command: redis::Cmd) -> Result<Value, String> {
    let mut conn = cluster.connection().ok_or(NOT_CONNECTED)?;
    bounded(cluster, command.query_async::<Value>(&mut conn)).await
}

const NOT_CONNECTED: &str = "not connected to Redis";

async fn bounded(
    cluster: &cluster::Cluster,
    call: impl std::future::Future<Output = redis::RedisResult<Value>>,
) -> Result<Value, String> {
    within(cluster.command_timeout(), call).await
}

async fn within(
    limit: std::time::Duration,
    call: impl std::future::Future<Output = redis::RedisResult<Value>>,
) -> Result<Value, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(format!("redis: {err}")),
        Err(_) => Err(format!("redis did not answer within {limit:?}")),
    }
}

/// The elements of an array reply.
fn array(value: &Value) -> Result<&[Value], Malformed> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(Malformed(format!("expected an array, got {other:?}"))),
    }
}

/// A text reply.
fn text(value: &Value) -> Result<String, Malformed> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone())
            .map_err(|_| Malformed("a text that is not UTF-8".to_owned())),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(Malformed(format!("expected a text, got {other:?}"))),
    }
}

/// An integer reply.
fn integer(value: &Value) -> Result<i64, Malformed> {
    match value {
        Value::Int(n) => Ok(*n),
        other => Err(Malformed(format!("expected an integer, got {other:?}"))),
    }
}

/// The time as the floor of the versions Redis gives: thousandths of a
/// millisecond, so that versions keep growing after Redis lost its data
/// (as the in-memory state's do after a restart).
fn version_floor() -> String {
    let now = u64::try_from(hub::clock::now_ms()).unwrap_or(0);
    now.saturating_mul(1_000).to_string()
}

/// How many users one `drop_node` call handles: a node with many users is
/// dropped in several scripts, so that none holds Redis for long.
const DROP_BATCH: usize = 500;

/// Watches the other nodes for this node's hub: when the cluster stops
/// counting one ([`cluster::Cluster::on_node_dropped`]: it said goodbye, or
/// went silent for `heartbeat_timeout`), its live state is dropped at once
/// and the others told ([`hub::Hub::node_dropped`]). Every node keeps
/// itself in `<key_prefix>-live#nodes`; every `heartbeat_interval` it also
/// drops the nodes listed there that are not alive (one that stopped while
/// no node was listening, or before this one started), once this node has
/// heard the cluster long enough to tell. Runs until the hub closes.
pub fn watch_nodes(cluster: &cluster::Cluster, hub: &hub::Hub) {
    let (dropped, mut to_drop) = tokio::sync::mpsc::channel::<String>(64);
    cluster.on_node_dropped(move |uid| {
        // The periodic check catches what a full channel refuses.
        let _ = dropped.try_send(uid.to_owned());
    });
    let (cluster, hub) = (cluster.clone(), hub.clone());
    let registry = format!("{}-live#nodes", cluster.key_prefix());
    let tasks = hub.ctx.tasks.clone();
    tasks.spawn(async move {
        let mut check = tokio::time::interval(cluster.heartbeat_interval());
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let forget = |node: String| {
            let mut command = redis::cmd("SREM");
            command.arg(&registry).arg(node);
            command
        };
        loop {
            tokio::select! {
                Some(uid) = to_drop.recv() => {
                    hub.node_dropped(&uid).await;
                    let _ = query(&cluster, forget(uid)).await;
                }
                _ = check.tick() => {
                    // Listed again every time: Redis may have lost it.
                    let mut here = redis::cmd("SADD");
                    here.arg(&registry).arg(cluster.uid());
                    let _ = query(&cluster, here).await;
                    if !cluster.hears_the_others() {
                        continue;
                    }
                    let mut listed = redis::cmd("SMEMBERS");
                    listed.arg(&registry);
                    let Ok(Ok(listed)) = query(&cluster, listed).await.map(|v| {
                        array(&v).and_then(|items| items.iter().map(text).collect::<Result<Vec<_>, _>>())
                    }) else {
                        continue;
                    };
                    let alive = cluster.nodes();
                    for node in listed {
                        if node != cluster.uid() && !alive.contains(&node) {
                            tracing::info!(node, "cluster: the live state of a node not alive dropped");
                            hub.node_dropped(&node).await;
                            let _ = query(&cluster, forget(node)).await;
                        }
                    }
                }
            }
        }
    });
}

/// Rejoins clean when the cluster finds this node may have missed what
/// the cluster said ([`cluster::Cluster::on_rejoin`]). Its subscription
/// cut for a while: broadcasts published meanwhile never reached it, so
/// its clients are closed to recover them (below). Silent past the
/// heartbeat timeout: the others
/// dropped it meanwhile, so its devices no longer count in presence, its
/// typing indicators were stopped and its devices left their calls (the
/// calls it timed ring out on the node that dropped it). So it forgets
/// the typing starts it still holds (stopped already: telling them again
/// would be a second `typing:false`), and closes every client connection
/// as a transport close, not a Socket.IO disconnect, so that clients
/// reconnect by themselves — here or on another node — and are recovered
/// from Redis (same socket ids, rooms, every event they missed, once, in
/// order), their devices counted again as they connect. Their departures
/// here change nothing the others ended (presence and calls find those
/// devices gone; typing forgot them). The pub/sub backlog Redis kept for
/// this node while it was frozen is not delivered to the clients being
/// closed (the cluster drops it while out of touch): they get it from the
/// log, once.
pub fn rejoin_clean(
    cluster: &cluster::Cluster,
    typing: RedisTyping,
    engine: engineio::Engine<socketio::SocketIo>,
) {
    cluster.on_rejoin(move |rejoin| {
        // Stopped already by the node that dropped this one; a cut
        // subscription alone ended nothing, and their typists' clients
        // stop them as they reconnect.
        let typists = if rejoin.dropped {
            typing.forget_local()
        } else {
            0
        };
        let sessions = engine.session_count();
        tracing::warn!(
            silent = ?rejoin.silent,
            dropped = rejoin.dropped,
            sessions,
            typists,
            "cluster: this node may have missed what the cluster said (dropped by the others, \
             or its subscription cut): closing every client connection (clients reconnect \
             and recover what they missed; their devices count again in presence as they \
             connect)"
        );
        engine.close_all();
        Box::pin(async {})
    });
}

/// The other nodes of the cluster as the hub asks them (the publish API's
/// counts and disconnects): the Node adapter's SOCKETS request, then for a
/// disconnect its REMOTE_DISCONNECT; for the sockets of each of several
/// rooms (the users of a presence request) its REMOTE_FETCH, whose answer
/// lists each socket's rooms; so that Node nodes answer too.
pub struct ClusterNodes(pub cluster::Cluster);

impl ClusterNodes {
    async fn count(
        cluster: &cluster::Cluster,
        nsp: &str,
        rooms: &[socketio::Room],
    ) -> hub::peers::Tally {
        let answer = cluster.socket_ids_elsewhere(nsp, rooms).await;
        let count = answer.value.len();
        tally(count, answer).0
    }

    async fn sizes(
        cluster: &cluster::Cluster,
        nsp: &str,
        rooms: &[socketio::Room],
    ) -> hub::peers::Sizes {
        let answer = cluster.room_sizes_elsewhere(nsp, rooms).await;
        let count = answer.value.values().sum();
        let (tally, rooms) = tally(count, answer);
        hub::peers::Sizes { rooms, tally }
    }
}

/// `answer`'s completeness as the hub tallies it, with `count`; and its
/// value.
fn tally<T>(count: usize, answer: cluster::Answer<T>) -> (hub::peers::Tally, T) {
    let tally = hub::peers::Tally {
        count,
        unanswered: answer.unanswered().unwrap_or(0),
        missing: answer.missing,
        error: answer.error,
    };
    (tally, answer.value)
}

fn rooms_of(rooms: Vec<String>) -> Vec<socketio::Room> {
    rooms.into_iter().map(socketio::Room::from).collect()
}

impl hub::peers::OtherNodes for ClusterNodes {
    fn count(&self, nsp: String, rooms: Vec<String>) -> socketio::BoxFuture<hub::peers::Tally> {
        let cluster = self.0.clone();
        Box::pin(async move { ClusterNodes::count(&cluster, &nsp, &rooms_of(rooms)).await })
    }

    fn sizes(&self, nsp: String, rooms: Vec<String>) -> socketio::BoxFuture<hub::peers::Sizes> {
        let cluster = self.0.clone();
        Box::pin(async move { ClusterNodes::sizes(&cluster, &nsp, &rooms_of(rooms)).await })
    }

    fn disconnect(
        &self,
        nsp: String,
        rooms: Vec<String>,
    ) -> socketio::BoxFuture<hub::peers::Tally> {
        let cluster = self.0.clone();
        Box::pin(async move {
            let rooms = rooms_of(rooms);
            let found = ClusterNodes::count(&cluster, &nsp, &rooms).await;
            // Published behind the count's question, so every node that
            // answered it has its sockets disconnected next.
            let opts = socketio::BroadcastOptions {
                rooms,
                ..Default::default()
            };
            cluster.disconnect_sockets(&nsp, &opts, false);
            found
        })
    }
}

/// Shared by the Redis states: the cluster, the key prefix, the counters.
#[derive(Clone)]
struct Redis {
    cluster: cluster::Cluster,
    stats: Arc<LiveStats>,
}

impl Redis {
    /// Counts a failure of `counter`'s kind and turns it into the state's
    /// error text.
    fn failed(&self, counter: &AtomicU64, err: impl std::fmt::Display) -> String {
        counter.fetch_add(1, Relaxed);
        let text = err.to_string();
        tracing::warn!(error = %text, "live state in Redis");
        text
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    /// A cluster bus on the test Redis (`TEST_REDIS_URL`, set by
    /// `tests/redis/with-redis.sh`) under a key prefix of its own; `None`
    /// outside CI without one.
    pub(crate) async fn test_cluster() -> Option<cluster::Cluster> {
        let Ok(url) = std::env::var("TEST_REDIS_URL") else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the Redis tests: run them through tests/redis/with-redis.sh"
            );
            return None;
        };
        let mut config = cluster::ClusterConfig::new(url);
        config.key_prefix = format!("sbunit-{:016x}", rand::random::<u64>());
        let cluster = cluster::Cluster::start(config).unwrap();
        assert!(cluster.wait_up(Duration::from_secs(5)).await);
        Some(cluster)
    }
}
