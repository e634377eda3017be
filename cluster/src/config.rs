//! The cluster's settings: where Redis is, the channels' prefix, and every
//! bound of the bus. The binary's `[cluster]` section fills it in.

use std::time::Duration;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]`.
    pub redis_url: String,
    /// The channels' prefix: the Node adapter's and emitter's `key`
    /// option (`socket.io` by default).
    pub key_prefix: String,
    /// Broadcasts waiting to be published, at most; one more is dropped
    /// (counted and logged).
    pub publish_queue: usize,
    /// Bytes (event name, arguments, rooms) of the broadcasts waiting to be
    /// published, at most; a broadcast that would pass it is dropped.
    pub publish_queue_bytes: usize,
    /// Broadcasts sent to Redis in one pipeline, at most.
    pub publish_batch: usize,
    /// Largest bus message published or read, in bytes; a larger one is
    /// dropped (counted and logged).
    pub max_message_bytes: usize,
    /// How long a connection to Redis may take to open.
    pub connect_timeout: Duration,
    /// How long Redis may take to answer a command (a PUBLISH pipeline, a
    /// PING, a PSUBSCRIBE).
    pub command_timeout: Duration,
    /// How often each connection is checked with a PING while it is idle
    /// (a connection that dropped without a word is found this way).
    pub health_interval: Duration,
    /// How long a request to the other nodes (the sockets of a room, every
    /// room, a server-side emit with acks) waits for their answers; past
    /// it the answer is partial and says so.
    pub request_timeout: Duration,
    /// How often this node tells the others it is alive.
    pub heartbeat_interval: Duration,
    /// How long a node may stay silent before the others take it for
    /// dead (and stop waiting for its answers).
    pub heartbeat_timeout: Duration,
    /// The first wait before reconnecting; doubled after each failure.
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// Which Redis pub/sub the bus uses (see [`PubSub`]).
    pub pubsub: PubSub,
    /// In sharded mode, whether a room has a channel of its own
    /// ([`SubscriptionMode`]); classic mode ignores it.
    pub sharded_subscription_mode: SubscriptionMode,
}

/// Which Redis pub/sub carries the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PubSub {
    /// PUBLISH/PSUBSCRIBE in `@socket.io/redis-adapter`'s classic
    /// `createAdapter` format (the emitter's too).
    #[default]
    Classic,
    /// Redis 7's SPUBLISH/SSUBSCRIBE in the format of the Node package's
    /// `createShardedAdapter` (socket.io-adapter's `ClusterAdapter`); see
    /// [`crate::sharded`].
    Sharded,
}

/// The sharded adapter's `subscriptionMode` (its `dynamic-private` is not
/// offered: it would take a channel per socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// One channel per namespace: every node gets every broadcast.
    Static,
    /// Besides it, a channel per public room, which a node subscribes to
    /// while one of its sockets is in the room: a broadcast to one room
    /// reaches only the nodes that have it (Node's default).
    #[default]
    Dynamic,
}

impl ClusterConfig {
    /// The bus is on sharded pub/sub.
    pub fn sharded(&self) -> bool {
        self.pubsub == PubSub::Sharded
    }

    /// The bus is on sharded pub/sub with a channel per room.
    pub fn dynamic_rooms(&self) -> bool {
        self.sharded() && self.sharded_subscription_mode == SubscriptionMode::Dynamic
    }

    /// The defaults, for the Redis at `redis_url`.
    pub fn new(redis_url: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            redis_url: redis_url.into(),
            key_prefix: "socket.io".to_owned(),
            publish_queue: 16_384,
            publish_queue_bytes: 64 << 20,
            publish_batch: 256,
            max_message_bytes: 4 << 20,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            pubsub: PubSub::Classic,
            sharded_subscription_mode: SubscriptionMode::Dynamic,
        }
    }
}

/// Checks a Redis URL as the client would read it; the error says why not
/// (without repeating the URL, which may hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    if !url.starts_with("redis://") {
        return Err(
            "must be redis://host[:port][/db] (TLS, rediss://, is not supported yet)".into(),
        );
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|err| format!("not a Redis URL: {err}"))
}
