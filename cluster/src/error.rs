//! What can go wrong between a node and Redis.

/// An error of the bus.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configured URL is not one the client takes.
    #[error("cluster.redis_url: {0}")]
    Url(String),
    /// `redis_ca_file` cannot be used (unreadable, no certificate, or
    /// without TLS).
    #[error("cluster.redis_ca_file: {0}")]
    Ca(String),
    /// The TLS handshake with Redis failed on its certificate.
    #[error("redis TLS: {0}")]
    Tls(String),
    /// Redis refused or failed a command, or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The connection to Redis is down (the bus reconnects it).
    #[error("redis: not connected")]
    NotConnected,
    /// Redis answered something other than what was asked for.
    #[error("redis answered an unexpected {0}")]
    Malformed(&'static str),
    /// `cluster.pubsub = "sharded"` on a Redis older than 7.0.
    #[error(
        "cluster.pubsub = \"sharded\" needs Redis 7.0 or later (sharded pub/sub, \
         SSUBSCRIBE/SPUBLISH); this Redis answered: {0}"
    )]
    ShardedUnsupported(String),
    /// Connection state recovery in Redis needs classic pub/sub.
    #[error(
        "connection state recovery across nodes needs cluster.pubsub = \"classic\" (its log \
         is published with PUBLISH, in the classic format)"
    )]
    RecoveryNeedsClassic,
}
