//! The cluster's settings: where Redis is (and whom to trust over TLS),
//! the channels' prefix, and every bound of the bus. The binary's
//! `[cluster]` section fills it in. Every connection the cluster opens is
//! made by [`client`], so all of them honour `rediss://` and the CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ClusterError;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://…` for
    /// TLS.
    pub redis_url: String,
    /// With `rediss://`: a PEM file of the CA certificates to trust instead
    /// of the system's roots (a private CA, a self-signed Redis). Read at
    /// each connection, so a renewed file is picked up on reconnecting.
    pub redis_ca_file: Option<PathBuf>,
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
            redis_ca_file: None,
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
    use redis::IntoConnectionInfo;
    if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        return Err("must be redis://host[:port][/db], or rediss://… for TLS".into());
    }
    let info = url
        .into_connection_info()
        .map_err(|err| format!("not a Redis URL: {err}"))?;
    // redis-rs reads `#insecure` as "verify nothing"; a private CA is what
    // cluster.redis_ca_file is for, so the hole is not offered.
    if let redis::ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
        return Err("#insecure (no certificate verification) is not supported: \
             set cluster.redis_ca_file to the PEM of the CA that signed Redis's certificate"
            .into());
    }
    Ok(())
}

/// Whether `url` asks for TLS (`rediss://`).
pub fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// Checks `url` and `ca_file` together: the URL (see [`check_url`]), and
/// the CA file, which must go with `rediss://` and hold at least one
/// certificate. The error names the key at fault.
pub fn check(url: &str, ca_file: Option<&Path>) -> Result<(), ClusterError> {
    check_url(url).map_err(ClusterError::Url)?;
    let Some(path) = ca_file else {
        return Ok(());
    };
    if !is_tls(url) {
        return Err(ClusterError::Ca(
            "is set but cluster.redis_url is redis:// (no TLS): use rediss://".into(),
        ));
    }
    // Parsed as the connections will parse it.
    tls_client(url, path).map(|_| ())
}

/// The client of every connection to Redis: `info` (the URL's, perhaps
/// with RESP3 asked for), over TLS for `rediss://`, trusting
/// `redis_ca_file` instead of the system roots when it is set.
pub(crate) fn client(
    config: &ClusterConfig,
    info: impl redis::IntoConnectionInfo,
) -> Result<redis::Client, ClusterError> {
    match &config.redis_ca_file {
        Some(path) if is_tls(&config.redis_url) => tls_client(info, path),
        _ => Ok(redis::Client::open(info)?),
    }
}

/// Opens a connection of `client` (made by [`client`]) with `settings`; a
/// certificate Redis presented that could not be verified says which
/// trust it was checked against, the key an operator has to fix.
pub(crate) async fn connect(
    config: &ClusterConfig,
    client: &redis::Client,
    settings: &redis::AsyncConnectionConfig,
) -> Result<redis::aio::MultiplexedConnection, ClusterError> {
    client
        .get_multiplexed_async_connection_with_config(settings)
        .await
        .map_err(|err| {
            let message = err.to_string();
            if !is_tls(&config.redis_url) || !message.contains("certificate") {
                return ClusterError::Redis(err);
            }
            let trusted = match &config.redis_ca_file {
                Some(path) => format!("the CA in cluster.redis_ca_file ({})", path.display()),
                None => "the system's root CAs (set cluster.redis_ca_file for a private CA)".into(),
            };
            ClusterError::Tls(format!("{message}; checked against {trusted}"))
        })
}

/// A TLS client for `info` that trusts the certificates in the PEM file at
/// `path` (and them only).
fn tls_client(
    info: impl redis::IntoConnectionInfo,
    path: &Path,
) -> Result<redis::Client, ClusterError> {
    let pem = std::fs::read(path)
        .map_err(|err| ClusterError::Ca(format!("cannot read {}: {err}", path.display())))?;
    // An empty store would fail every handshake later, with a less
    // helpful error: say it now.
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(ClusterError::Ca(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    install_crypto();
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    redis::Client::build_with_tls(info, certs)
        .map_err(|err| ClusterError::Ca(format!("{}: {err}", path.display())))
}

/// Makes ring rustls's process-wide provider unless one is already set:
/// redis-rs builds its TLS configuration with the default provider, which
/// rustls cannot pick on its own once two providers are compiled in (a
/// panic at the first handshake).
pub(crate) fn install_crypto() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rediss_is_taken_and_insecure_is_refused_with_the_way_out() {
        assert_eq!(check_url("rediss://:secret@redis.example:6380/2"), Ok(()));
        assert_eq!(check_url("redis://127.0.0.1:6379"), Ok(()));
        let err = check_url("rediss://redis.example:6380/#insecure").unwrap_err();
        assert!(err.contains("cluster.redis_ca_file"), "{err}");
        let err = check_url("http://redis.example").unwrap_err();
        assert!(err.contains("rediss://"), "{err}");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate_and_go_with_tls() {
        let dir = std::env::temp_dir().join(format!("cluster-ca-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let url = "rediss://127.0.0.1:6380";
        let message = |path: &Path, url: &str| match check(url, Some(path)) {
            Err(ClusterError::Ca(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(message(&dir.join("none.pem"), url).starts_with("cannot read"));
        assert!(message(&empty, url).contains("holds no PEM certificate"));
        // PEM armour around something that is not a certificate.
        assert!(message(&broken, url).contains("broken.pem"));
        assert!(message(&empty, "redis://127.0.0.1:6379").contains("use rediss://"));
        assert!(check(url, None).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
