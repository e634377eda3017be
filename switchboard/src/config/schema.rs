//! The shape of the configuration and the value of every key by default:
//! the structs a TOML file deserializes into, section by section, and
//! their `Default`s. What each key means, as the operator reads it, is
//! documented once in [`super::reference`] (which `switchboard config
//! --default` prints); what values each key takes is checked in
//! [`super::validate`].

use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses to listen on; a host name binds every address it resolves to.
    pub listen: Vec<String>,
    pub server: ServerSection,
    pub engine: EngineSection,
    pub socketio: SocketIoSection,
    /// A raw Engine.IO echo server (no Socket.IO), for the Engine.IO test suite.
    pub raw_engine: Option<RawEngineSection>,
    /// The namespaces and the component that owns each.
    pub namespaces: Vec<NamespaceSection>,
    pub log: LogSection,
    /// Where the hub keeps its files (the development secret, the store).
    pub data_dir: String,
    pub auth: AuthSection,
    pub api: ApiSection,
    pub store: StoreSection,
    pub cluster: ClusterSection,
    pub limits: LimitsSection,
    /// Says this is a test setup: required to run the `testkit` handler,
    /// which lets any client join any room (start refuses it otherwise).
    pub test_setup: bool,
    /// The `notifications` component's settings.
    pub notifications: hub::services::notifications::NotificationsConfig,
    /// The `chat` component's settings.
    pub chat: hub::components::chat::ChatConfig,
    /// The `presence` component's settings.
    pub presence: hub::components::presence::PresenceConfig,
    /// The `calls` component's settings.
    pub calls: hub::components::calls::CallsConfig,
    /// Development mode: `POST /dev/token` signs a token for any user name
    /// (the web client's sign-in screen). On in the embedded default (no
    /// configuration file, no `SWITCHBOARD_AUTH_*` variable, every
    /// listener on loopback; with a warning), off otherwise unless a file
    /// says `dev_mode = true`; `SWITCHBOARD_DEV_MODE` overrides both.
    pub dev_mode: bool,
    /// Whether `dev_mode` is on only because this is the embedded default
    /// (not asked for): it is then turned off if a listener is not on
    /// loopback (see [`Config::settle_dev_mode`]).
    #[serde(skip)]
    pub dev_mode_implicit: bool,
    /// Why the embedded default's dev mode was turned off, to log.
    #[serde(skip)]
    pub dev_mode_note: Option<String>,
    /// How long a token from `POST /dev/token` is valid, in seconds.
    pub dev_token_ttl_secs: u64,
    /// The web client served at `/`.
    pub web: WebSection,
}

/// The web client (the built `web/dist`) served at `/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSection {
    /// Its directory (relative to the working directory); empty = found
    /// beside the binary: `<exe dir>/../../web/dist` (a build in the
    /// repository's `target/`), then `<exe dir>/web` (an installed layout).
    pub dir: String,
}

/// What each socket of a component namespace (`pubsub`, `proxy`) may ask.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Sustained events per second per socket; over it, an event is answered
    /// `rate_limited`. 0 = no limit.
    pub events_per_sec: f64,
    /// Events a socket may send at once after a quiet spell.
    pub event_burst: f64,
    /// Rooms a socket may be in; `subscribe` beyond is `too_many_rooms`.
    pub max_rooms_per_socket: usize,
    /// Longest room id a client may subscribe to, in bytes.
    pub max_room_len: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let limits = hub::limits::Limits::default();
        LimitsSection {
            events_per_sec: limits.rate.per_sec,
            event_burst: limits.rate.burst,
            max_rooms_per_socket: limits.rooms.max_rooms_per_socket,
            max_room_len: limits.rooms.max_room_len,
        }
    }
}

/// The SQL store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite:PATH` or `postgres://user:password@host:port/db`; empty = the
    /// SQLite file `switchboard.db` in `data_dir`.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a store query (and `/readyz`'s check) may take.
    pub timeout_ms: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: String::new(),
            max_connections: 5,
            timeout_ms: 3000,
        }
    }
}

/// `[cluster]`: N nodes sharing a Redis (the bus, wire-compatible with
/// Node's `@socket.io/redis-adapter`) and a PostgreSQL store. Off (one
/// embedded node) while `redis_url` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS);
    /// empty = one node.
    pub redis_url: String,
    /// With `rediss://`: a PEM file of the CAs to trust instead of the
    /// system's roots; empty = the system's roots.
    pub redis_ca_file: String,
    /// The channels' prefix (the Node adapter's and emitter's `key`).
    pub key_prefix: String,
    /// Broadcasts waiting to be published, at most.
    pub publish_queue: usize,
    /// Bytes of the broadcasts waiting to be published, at most.
    pub publish_queue_bytes: usize,
    /// Broadcasts per PUBLISH pipeline, at most.
    pub publish_batch: usize,
    /// Largest bus message published or read, in bytes.
    pub max_message_bytes: usize,
    /// How long opening a connection to Redis may take.
    pub connect_timeout_ms: u64,
    /// How long Redis may take to answer a command.
    pub command_timeout_ms: u64,
    /// How long a write waits for Redis to take it from its sender's
    /// bucket every node shares; past it, admitted on the node's own.
    pub rate_timeout_ms: u64,
    /// How often an idle connection is checked with a PING.
    pub health_interval_ms: u64,
    /// How long a request to the other nodes waits for their answers.
    pub request_timeout_ms: u64,
    /// How often this node tells the others it is alive.
    pub heartbeat_interval_ms: u64,
    /// How long a node may be silent before it is taken for dead.
    pub heartbeat_timeout_ms: u64,
    /// The first wait before reconnecting (doubled after each failure).
    pub reconnect_min_ms: u64,
    /// The longest wait between reconnection attempts.
    pub reconnect_max_ms: u64,
    /// The Redis pub/sub the bus uses: `classic` (PUBLISH, the Node
    /// `createAdapter` format, which the emitter speaks) or `sharded`
    /// (Redis 7's SPUBLISH, the Node `createShardedAdapter` format; no
    /// emitter, no connection state recovery: see DEPLOY.md).
    pub pubsub: PubSubSection,
    /// With `pubsub = "sharded"`: `dynamic` (a channel per room, which a
    /// node subscribes to while it has the room; Node's default) or
    /// `static` (one channel per namespace). Every node, Node ones
    /// included, must use the same.
    pub sharded_subscription_mode: SubscriptionModeSection,
}

/// `cluster.pubsub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PubSubSection {
    Classic,
    Sharded,
}

/// `cluster.sharded_subscription_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionModeSection {
    Static,
    Dynamic,
}

impl Default for ClusterSection {
    fn default() -> Self {
        let c = cluster::ClusterConfig::new("");
        ClusterSection {
            redis_url: c.redis_url,
            redis_ca_file: String::new(),
            key_prefix: c.key_prefix,
            publish_queue: c.publish_queue,
            publish_queue_bytes: c.publish_queue_bytes,
            publish_batch: c.publish_batch,
            max_message_bytes: c.max_message_bytes,
            connect_timeout_ms: c.connect_timeout.as_millis() as u64,
            command_timeout_ms: c.command_timeout.as_millis() as u64,
            rate_timeout_ms: 100,
            health_interval_ms: c.health_interval.as_millis() as u64,
            request_timeout_ms: c.request_timeout.as_millis() as u64,
            heartbeat_interval_ms: c.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: c.heartbeat_timeout.as_millis() as u64,
            reconnect_min_ms: c.reconnect_min.as_millis() as u64,
            reconnect_max_ms: c.reconnect_max.as_millis() as u64,
            pubsub: match c.pubsub {
                cluster::config::PubSub::Classic => PubSubSection::Classic,
                cluster::config::PubSub::Sharded => PubSubSection::Sharded,
            },
            sharded_subscription_mode: match c.sharded_subscription_mode {
                cluster::config::SubscriptionMode::Static => SubscriptionModeSection::Static,
                cluster::config::SubscriptionMode::Dynamic => SubscriptionModeSection::Dynamic,
            },
        }
    }
}

/// The publish API for backend services.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// API keys (`Authorization: Bearer KEY`); none = every request is
    /// refused. A plain string may do everything; `{key, scopes}` only what
    /// its scopes (`publish`, `disconnect`, `read`) allow.
    pub keys: Vec<ApiKeySection>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS on the API: empty = same origin only, `*` = any.
    pub cors_origins: Vec<String>,
    /// Recipients one API key may address per second on the publish
    /// endpoints (each user or room a request names: a notification
    /// stored per user; a request naming none counts one); past it, 429
    /// with `Retry-After`. 0 = no limit.
    pub recipients_per_sec: f64,
    /// Recipients one key may address at once after a quiet spell. A
    /// request naming more waits for a full bucket and leaves the key in
    /// debt.
    pub recipient_burst: f64,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            keys: Vec::new(),
            max_body_bytes: 1 << 20,
            cors_origins: Vec::new(),
            // A backend notifying a whole 10,000-member group at once
            // (`notifications.max_users_per_request`) passes in one burst;
            // sustained, 1,000 stored notifications a second per key is
            // 3.6 million an hour, a small share of what the store writes,
            // so that one key cannot starve chat of it.
            recipients_per_sec: 1_000.0,
            recipient_burst: 10_000.0,
        }
    }
}

/// One API key: a plain string (every scope), or a key with its scopes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApiKeySection {
    /// A key that may do everything.
    Plain(String),
    /// A key limited to its scopes.
    Scoped(ScopedKeySection),
}

/// `{key = "…", scopes = ["publish", …]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedKeySection {
    pub key: String,
    /// `publish`, `disconnect`, `read` (presence, room sizes).
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// HS256 shared secret.
    pub hs256_secret: String,
    /// RS256 public key, PEM file.
    pub rs256_public_key_file: String,
    /// RS256 keys, JWKS file (chosen by the token's `kid`).
    pub jwks_file: String,
    /// The `iss` every token must carry; empty = not checked.
    pub issuer: String,
    /// This hub's audience: a token's `aud` must name one of these (a
    /// string or a list in TOML); empty = any `aud` is accepted.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// RS256 keys fetched from the identity provider's JWKS URL (`http://…`
    /// or `https://…`, the certificate verified) at start (start fails if
    /// it cannot be fetched), then kept fresh.
    pub jwks_url: String,
    /// How often the JWKS URL is fetched again.
    pub jwks_refresh_secs: u64,
    /// A token naming an unknown key fetches the JWKS again at most once
    /// per this many seconds.
    pub jwks_min_refresh_secs: u64,
    /// Largest JWKS document read, in bytes.
    pub jwks_max_bytes: usize,
    /// How long one JWKS fetch may take.
    pub jwks_timeout_ms: u64,
    /// A PEM file of root certificates trusted for an https `jwks_url`
    /// besides the system's (an internal CA); empty = the system's only.
    pub jwks_ca_file: String,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            hs256_secret: String::new(),
            rs256_public_key_file: String::new(),
            jwks_file: String::new(),
            issuer: String::new(),
            audience: Vec::new(),
            leeway_secs: 0,
            jwks_url: String::new(),
            jwks_refresh_secs: 300,
            jwks_min_refresh_secs: 10,
            jwks_max_bytes: 256 * 1024,
            jwks_timeout_ms: 5000,
            jwks_ca_file: String::new(),
        }
    }
}

/// A string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) if one.is_empty() => Vec::new(),
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// `[server]`: admission (connections, per-address limits, proxies) and
/// the operator endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Most Engine.IO sessions open at once, polling and WebSocket alike; a
    /// handshake past it is refused with 503.
    pub max_connections: usize,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace_ms: u64,
    /// Most TCP connections at once (file descriptors); more wait to be
    /// accepted. 0 = twice `max_connections`: a polling session may hold
    /// two (its waiting GET and a POST), an upgrading one two (polling and
    /// the new WebSocket).
    pub max_tcp_connections: usize,
    /// Most sessions open at once from one client address (IPv6: one /64);
    /// 0 = no limit. Generous: a whole site behind NAT shares one address.
    pub max_sessions_per_address: usize,
    /// Sustained handshakes per second from one client address; 0 = no limit.
    pub handshakes_per_sec_per_address: f64,
    /// Handshakes one client address may make at once (a reconnect storm
    /// after a restart).
    pub handshake_burst_per_address: f64,
    /// Proxies (IP addresses or CIDR networks) whose `X-Forwarded-For` names
    /// the client; empty = the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// An address for the operator endpoints (`/metrics`, the detail of
    /// `/readyz`); when set, the public listener answers `/metrics` with 404
    /// and `/readyz` with its status only. Empty = served on `listen`.
    pub admin_listen: String,
    /// A bearer token `/metrics` and the detail of `/readyz` require,
    /// wherever they are served. Empty = none.
    pub metrics_token: String,
    /// TCP connections the admin listener accepts at once, apart from
    /// `max_tcp_connections` (so a flood of the public port cannot keep
    /// operators from `/metrics` and `/readyz`).
    pub admin_max_tcp_connections: usize,
    /// How long `/readyz` reuses a store check's outcome, in milliseconds
    /// (concurrent requests share one check even at 0).
    pub readiness_cache_ms: u64,
}

/// `[engine]`: the Engine.IO transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    pub path: String,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// Largest message a client may send, in bytes.
    pub max_payload: usize,
    pub upgrade_timeout_ms: u64,
    /// Offered transports: `polling`, `websocket`.
    pub transports: Vec<String>,
    /// Origins allowed by CORS: empty = same origin only, `*` = any.
    pub cors_origins: Vec<String>,
    /// Frames a connection may have queued before it counts as a slow consumer.
    pub max_queued_frames: usize,
    /// Bytes a connection may hold outbound (queued, and on WebSocket
    /// written but not yet taken by the kernel) before it counts as a slow
    /// consumer.
    pub max_queued_bytes: usize,
    /// Bytes held for incomplete client messages, all connections together;
    /// past it, the connection holding the most is closed.
    pub max_partial_bytes: usize,
    /// How long a client message may take to arrive once it started.
    pub partial_timeout_ms: u64,
    /// Serve Engine.IO v3 clients (socket.io 1.x/2.x) beside v4 ones.
    pub allow_eio3: bool,
    /// Serve JSONP polling (pages without `XMLHttpRequest`).
    pub allow_jsonp: bool,
}

/// `[socketio]`: the Socket.IO protocol's limits and timeouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketIoSection {
    pub connect_timeout_ms: u64,
    pub max_attachments: usize,
    /// Event names counted separately in `/metrics`, per namespace and
    /// direction; later names are counted as `_other`.
    pub metrics_max_event_names: usize,
    /// Events one socket may have waiting behind a handler that has not
    /// finished; one more closes its connection.
    pub max_pending_events: usize,
    /// Bytes (arguments and attachments) of the events one socket may have
    /// waiting behind a busy handler; an event past it closes its
    /// connection. An event that finds the queue empty always waits.
    pub max_pending_bytes: usize,
    /// Bytes a packet may hold while its binary attachments arrive; 0 means
    /// `engine.max_payload`.
    pub max_attachment_bytes: usize,
    /// Time for a packet's binary attachments to arrive.
    pub attachment_timeout_ms: u64,
    /// CONNECT packets (and `refresh` events) per second per connection.
    pub connects_per_sec: f64,
    /// CONNECTs a connection may send at once.
    pub connect_burst: f64,
    /// Connection state recovery: how long a dropped client's session and
    /// the events it misses are kept; 0 turns recovery off.
    pub recovery_window_ms: u64,
    /// Bytes of events and sessions kept for recovery, all namespaces
    /// together.
    pub recovery_max_bytes: usize,
    /// Sessions of dropped clients kept for recovery.
    pub recovery_max_sessions: usize,
}

/// `[raw_engine]`: a raw Engine.IO echo server, for the Engine.IO suite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngineSection {
    pub path: String,
}

/// One `[[namespaces]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSection {
    /// The namespace name, starting with `/`.
    pub name: String,
    /// The component owning it: `pubsub`, `proxy` (see `backend`), or
    /// `echo`, `testkit`, `bench` (protocol-level, for tests and benchmarks).
    pub handler: String,
    /// Whether clients must present a token (see `[auth]`).
    #[serde(default)]
    pub auth: bool,
    /// For `handler = "proxy"`: the backend's URL (http://…).
    #[serde(default)]
    pub backend: String,
    /// For `handler = "proxy"`: how long a backend request may take.
    #[serde(default = "default_backend_timeout_ms")]
    pub backend_timeout_ms: u64,
    /// For `handler = "proxy"`: the secret every request to the backend is
    /// signed with (HMAC-SHA256, see docs/API.md); empty = unsigned, with a
    /// warning at start.
    #[serde(default)]
    pub backend_secret: String,
}

fn default_backend_timeout_ms() -> u64 {
    5000
}

/// `[log]`: what is logged, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter (`info`, `switchboard=debug`, …); `RUST_LOG` wins.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec!["127.0.0.1:3000".to_owned()],
            server: ServerSection::default(),
            engine: EngineSection::default(),
            socketio: SocketIoSection::default(),
            raw_engine: None,
            // The protocol's echo on `/`, and the ESN's four components,
            // each on its namespace, signed-in users only.
            namespaces: [
                ("/", "echo", false),
                ("/notifications", "notifications", true),
                ("/chat", "chat", true),
                ("/presence", "presence", true),
                ("/calls", "calls", true),
            ]
            .into_iter()
            .map(|(name, handler, auth)| NamespaceSection {
                name: name.to_owned(),
                handler: handler.to_owned(),
                auth,
                backend: String::new(),
                backend_timeout_ms: default_backend_timeout_ms(),
                backend_secret: String::new(),
            })
            .collect(),
            log: LogSection::default(),
            data_dir: "data".to_owned(),
            auth: AuthSection::default(),
            api: ApiSection::default(),
            store: StoreSection::default(),
            cluster: ClusterSection::default(),
            limits: LimitsSection::default(),
            test_setup: false,
            notifications: Default::default(),
            chat: Default::default(),
            presence: Default::default(),
            calls: Default::default(),
            // Off here, so that a file must ask for it; `load` turns it on
            // when there is no file (the embedded default).
            dev_mode: false,
            dev_mode_implicit: false,
            dev_mode_note: None,
            dev_token_ttl_secs: 86_400,
            web: WebSection::default(),
        }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            max_connections: 100_000,
            shutdown_grace_ms: 10_000,
            max_tcp_connections: 0,
            max_sessions_per_address: 10_000,
            handshakes_per_sec_per_address: 100.0,
            handshake_burst_per_address: 1000.0,
            trusted_proxies: Vec::new(),
            admin_listen: String::new(),
            metrics_token: String::new(),
            admin_max_tcp_connections: 64,
            readiness_cache_ms: 1000,
        }
    }
}

impl Default for EngineSection {
    fn default() -> Self {
        let engine = engineio::EngineConfig::default();
        EngineSection {
            path: engine.path,
            ping_interval_ms: engine.ping_interval.as_millis() as u64,
            ping_timeout_ms: engine.ping_timeout.as_millis() as u64,
            max_payload: engine.max_payload,
            upgrade_timeout_ms: engine.upgrade_timeout.as_millis() as u64,
            transports: vec!["polling".to_owned(), "websocket".to_owned()],
            cors_origins: Vec::new(),
            max_queued_frames: engine.max_queued_frames,
            max_queued_bytes: engine.max_queued_bytes,
            max_partial_bytes: engine.max_partial_bytes,
            partial_timeout_ms: engine.partial_timeout.as_millis() as u64,
            allow_eio3: engine.allow_eio3,
            allow_jsonp: engine.allow_jsonp,
        }
    }
}

impl Default for SocketIoSection {
    fn default() -> Self {
        let io = socketio::SocketIoConfig::default();
        SocketIoSection {
            connect_timeout_ms: io.connect_timeout.as_millis() as u64,
            max_attachments: io.max_attachments,
            metrics_max_event_names: io.stats.max_event_names,
            max_pending_events: io.max_pending_events,
            max_pending_bytes: io.max_pending_bytes,
            max_attachment_bytes: 0,
            attachment_timeout_ms: io.attachment_timeout.as_millis() as u64,
            connects_per_sec: io.connects_per_sec,
            connect_burst: io.connect_burst,
            recovery_window_ms: io.recovery.window.as_millis() as u64,
            recovery_max_bytes: io.recovery.max_bytes,
            recovery_max_sessions: io.recovery.max_sessions,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: "text".to_owned(),
            level: "info".to_owned(),
        }
    }
}
