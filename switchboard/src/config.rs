//! Configuration: a TOML file whose every key can be overridden by an
//! environment variable `SWITCHBOARD_<SECTION>_<KEY>` (upper case), e.g.
//! `SWITCHBOARD_ENGINE_PING_INTERVAL_MS=300`. With no file, defaults apply.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
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
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            keys: Vec::new(),
            max_body_bytes: 1 << 20,
            cors_origins: Vec::new(),
        }
    }
}

/// One API key: a plain string (every scope), or a key with its scopes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApiKeySection {
    Plain(String),
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

impl ApiKeySection {
    /// The key and what it may do, checked.
    pub fn resolve(&self) -> anyhow::Result<crate::api::ApiKey> {
        use crate::api::{ApiKey, Scope};
        let (key, scopes) = match self {
            ApiKeySection::Plain(key) => (key, Scope::ALL.to_vec()),
            ApiKeySection::Scoped(scoped) => {
                let scopes = scoped
                    .scopes
                    .iter()
                    .map(|name| {
                        Scope::parse(name).with_context(|| {
                            format!("api.keys: unknown scope {name:?} (publish, disconnect, read)")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                if scopes.is_empty() {
                    bail!(
                        "api.keys: a key without scopes can do nothing: give it some or remove it"
                    );
                }
                (&scoped.key, scopes)
            }
        };
        if key.trim().is_empty() {
            bail!("api.keys: a key is empty: every key needs a secret value");
        }
        Ok(ApiKey {
            key: key.clone(),
            scopes,
        })
    }
}

/// How clients prove who they are (JWT). With no key at all, a development
/// secret is generated in `data_dir` (with a warning).
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
}

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngineSection {
    pub path: String,
}

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
    /// signed with (HMAC-SHA256, see the README); empty = unsigned, with a
    /// warning at start.
    #[serde(default)]
    pub backend_secret: String,
}

fn default_backend_timeout_ms() -> u64 {
    5000
}

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

impl Config {
    /// Reads `path` (if any), then applies `SWITCHBOARD_*` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let set = |prefix: &str| env.iter().any(|(key, _)| key.starts_with(prefix));
        // The embedded default is for trying the hub out: the web client's
        // sign-in works (`serve` warns about it). Not when the identity is
        // configured by environment (a deployment without a file), and not
        // beyond loopback (`settle_dev_mode`).
        let implicit = path.is_none() && !set("SWITCHBOARD_DEV_MODE") && !set("SWITCHBOARD_AUTH_");
        let mut value = toml::Value::try_from(Config::default())?;
        if implicit && let toml::Value::Table(table) = &mut value {
            table.insert("dev_mode".into(), toml::Value::Boolean(true));
        }
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let file: toml::Table = toml::from_str(&text)
                .with_context(|| format!("parsing config file {}", path.display()))?;
            merge(&mut value, toml::Value::Table(file));
        }
        for (key, raw) in env {
            let Some(rest) = key.strip_prefix("SWITCHBOARD_") else {
                continue;
            };
            if !apply_env(&mut value, &rest.to_ascii_lowercase(), &raw) {
                bail!("unknown configuration variable {key}");
            }
        }
        let mut config: Config = value.try_into().context("invalid configuration")?;
        config.dev_mode_implicit = implicit;
        config.settle_dev_mode();
        config.validate()?;
        Ok(config)
    }

    /// Turns the embedded default's dev mode off when a listener is not
    /// on loopback: one who only tries the hub out does not expose a
    /// sign-in as anyone to the network. Called by `load`, and again by
    /// whoever changes `listen` afterwards (`serve --listen`). Dev mode
    /// asked for (in a file or `SWITCHBOARD_DEV_MODE`) is left as it is.
    pub fn settle_dev_mode(&mut self) {
        if !self.dev_mode_implicit || !self.dev_mode {
            return;
        }
        if let Some(open) = self.listen.iter().find(|a| !is_loopback(a)) {
            self.dev_mode = false;
            self.dev_mode_note = Some(format!(
                "dev_mode is off: the hub listens on {open}, beyond loopback, so the web \
                 client's sign-in by name is not offered (set dev_mode = true, or \
                 SWITCHBOARD_DEV_MODE=true, to have it anyway)"
            ));
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.listen.is_empty() {
            bail!("`listen` needs at least one address");
        }
        if !self.engine.path.starts_with('/') || !self.engine.path.ends_with('/') {
            bail!("engine.path must start and end with `/`");
        }
        for t in &self.engine.transports {
            if t != "polling" && t != "websocket" {
                bail!("unknown transport {t:?} (polling, websocket)");
            }
        }
        for ns in &self.namespaces {
            if !ns.name.starts_with('/') {
                bail!("namespace {:?} must start with `/`", ns.name);
            }
            if ns.handler == "testkit" && !self.test_setup {
                bail!(
                    "namespace {}: the testkit handler lets any client join any room; \
                     it runs only in a test setup (set `test_setup = true` at the top of the \
                     configuration, never in production)",
                    ns.name
                );
            }
        }
        let auth = &self.auth;
        if !auth.jwks_url.is_empty()
            && !auth.jwks_url.starts_with("http://")
            && !auth.jwks_url.starts_with("https://")
        {
            bail!("auth.jwks_url must be http://… or https://…");
        }
        if !auth.jwks_ca_file.is_empty() && !auth.jwks_url.starts_with("https://") {
            bail!(
                "auth.jwks_ca_file is trusted for an https auth.jwks_url only, and there is none"
            );
        }
        if auth.jwks_refresh_secs == 0 || auth.jwks_max_bytes == 0 || auth.jwks_timeout_ms == 0 {
            bail!(
                "auth.jwks_refresh_secs, auth.jwks_max_bytes and auth.jwks_timeout_ms must be positive"
            );
        }
        if auth.audience.iter().any(String::is_empty) {
            bail!("auth.audience: an audience cannot be empty");
        }
        if self.engine.max_queued_frames == 0 || self.engine.max_payload == 0 {
            bail!("engine.max_queued_frames and engine.max_payload must be positive");
        }
        if self.engine.max_queued_bytes == 0
            || self.engine.max_partial_bytes == 0
            || self.engine.partial_timeout_ms == 0
        {
            bail!(
                "engine.max_queued_bytes, engine.max_partial_bytes and \
                 engine.partial_timeout_ms must be positive"
            );
        }
        if !self.store.url.is_empty() && hub::store::Backend::of(&self.store.url).is_none() {
            bail!(
                "store.url {:?}: use sqlite:PATH or postgres://…",
                hub::store::redact(&self.store.url)
            );
        }
        let limits = &self.limits;
        if !(limits.events_per_sec >= 0.0 && limits.event_burst >= 1.0) {
            bail!("limits.events_per_sec must be ≥ 0 and limits.event_burst ≥ 1");
        }
        if limits.max_rooms_per_socket == 0 || limits.max_room_len == 0 {
            bail!("limits.max_rooms_per_socket and limits.max_room_len must be positive");
        }
        if self.socketio.max_pending_events == 0 {
            bail!("socketio.max_pending_events must be positive");
        }
        if self.socketio.max_pending_bytes == 0 {
            bail!("socketio.max_pending_bytes must be positive");
        }
        let mut seen = std::collections::HashMap::new();
        for (index, key) in self.api.keys.iter().enumerate() {
            let key = key.resolve()?;
            // The same secret twice would silently leave one entry's scopes
            // unused (the last would win): refused, without naming it.
            if let Some(first) = seen.insert(key.key, index) {
                bail!(
                    "api.keys: entries {} and {} hold the same key: \
                     give each key one entry with all its scopes",
                    first + 1,
                    index + 1
                );
            }
        }
        let io = &self.socketio;
        if io.attachment_timeout_ms == 0 {
            bail!("socketio.attachment_timeout_ms must be positive");
        }
        if !(io.connects_per_sec >= 0.0
            && io.connects_per_sec.is_finite()
            && io.connect_burst >= 1.0)
        {
            bail!("socketio.connects_per_sec must be ≥ 0 and socketio.connect_burst ≥ 1");
        }
        if self.store.max_connections == 0 || self.store.timeout_ms == 0 {
            bail!("store.max_connections and store.timeout_ms must be positive");
        }
        let server = &self.server;
        if server.max_connections == 0 || self.max_tcp_connections() > u32::MAX as usize {
            bail!(
                "server.max_connections must be positive and server.max_tcp_connections at most 2^32 - 1"
            );
        }
        if !(server.handshakes_per_sec_per_address.is_finite()
            && server.handshakes_per_sec_per_address >= 0.0
            && server.handshake_burst_per_address >= 1.0)
        {
            bail!(
                "server.handshakes_per_sec_per_address must be ≥ 0 and \
                 server.handshake_burst_per_address ≥ 1"
            );
        }
        self.trusted_proxies()?;
        if self.server.admin_max_tcp_connections == 0 {
            bail!("server.admin_max_tcp_connections must be positive");
        }
        if self.dev_token_ttl_secs == 0 || self.dev_token_ttl_secs > MAX_DEV_TOKEN_TTL_SECS {
            bail!("dev_token_ttl_secs is 1 to {MAX_DEV_TOKEN_TTL_SECS} (30 days)");
        }
        Ok(())
    }

    /// Whether tokens are verified with RS256 keys only (no HS256 secret,
    /// but a public key or a JWKS): then this hub cannot sign tokens.
    pub fn rs256_only(&self) -> bool {
        let a = &self.auth;
        a.hs256_secret.is_empty()
            && (!a.rs256_public_key_file.is_empty()
                || !a.jwks_file.is_empty()
                || !a.jwks_url.is_empty())
    }

    /// The Engine.IO settings.
    pub fn engine_config(&self) -> engineio::EngineConfig {
        let e = &self.engine;
        let cors = if e.cors_origins.iter().any(|o| o == "*") {
            engineio::Cors::Any
        } else if e.cors_origins.is_empty() {
            engineio::Cors::SameOrigin
        } else {
            engineio::Cors::List(e.cors_origins.clone())
        };
        engineio::EngineConfig {
            path: e.path.clone(),
            ping_interval: Duration::from_millis(e.ping_interval_ms),
            ping_timeout: Duration::from_millis(e.ping_timeout_ms),
            max_payload: e.max_payload,
            upgrade_timeout: Duration::from_millis(e.upgrade_timeout_ms),
            allow_polling: e.transports.iter().any(|t| t == "polling"),
            allow_websocket: e.transports.iter().any(|t| t == "websocket"),
            cors,
            max_queued_frames: e.max_queued_frames,
            max_queued_bytes: e.max_queued_bytes,
            max_partial_bytes: e.max_partial_bytes,
            partial_timeout: Duration::from_millis(e.partial_timeout_ms),
            admission: self.admission(),
        }
    }

    /// Most TCP connections at once (`server.max_tcp_connections`, 0 =
    /// twice `server.max_connections`).
    pub fn max_tcp_connections(&self) -> usize {
        match self.server.max_tcp_connections {
            0 => self.server.max_connections.saturating_mul(2),
            n => n,
        }
    }

    fn trusted_proxies(&self) -> anyhow::Result<Vec<engineio::IpNet>> {
        self.server
            .trusted_proxies
            .iter()
            .map(|p| {
                let net: engineio::IpNet = p.parse().context("server.trusted_proxies")?;
                // A catch-all would trust every peer's X-Forwarded-For: any
                // client could pick the address it is counted under.
                if net.prefix() == 0 {
                    bail!(
                        "server.trusted_proxies: {p:?} trusts every address; \
                         list only your proxies' addresses or networks"
                    );
                }
                Ok(net)
            })
            .collect()
    }

    /// How many sessions the engine admits.
    fn admission(&self) -> engineio::AdmissionConfig {
        let s = &self.server;
        engineio::AdmissionConfig {
            max_sessions: s.max_connections,
            max_sessions_per_address: s.max_sessions_per_address,
            handshakes_per_sec_per_address: s.handshakes_per_sec_per_address,
            handshake_burst_per_address: s.handshake_burst_per_address,
            // Checked by `validate`.
            trusted_proxies: self.trusted_proxies().unwrap_or_default(),
        }
    }

    /// What each socket of a component namespace may ask.
    pub fn limits(&self) -> hub::limits::Limits {
        let l = &self.limits;
        hub::limits::Limits {
            rate: hub::limits::RateLimit {
                per_sec: l.events_per_sec,
                burst: l.event_burst,
            },
            rooms: hub::limits::RoomLimits {
                max_rooms_per_socket: l.max_rooms_per_socket,
                max_room_len: l.max_room_len,
            },
        }
    }

    /// The store settings; an empty URL means `switchboard.db` in `data_dir`.
    pub fn store_config(&self) -> hub::store::StoreConfig {
        let url = if self.store.url.is_empty() {
            hub::store::sqlite_url_of(&Path::new(&self.data_dir).join("switchboard.db"))
        } else {
            self.store.url.clone()
        };
        hub::store::StoreConfig {
            url,
            max_connections: self.store.max_connections,
            timeout: Duration::from_millis(self.store.timeout_ms),
        }
    }

    /// The hub's configuration: the store, the identity settings, the
    /// limits, the Socket.IO settings and the namespaces, as plain data.
    pub fn hub_config(&self) -> hub::HubConfig {
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        let a = &self.auth;
        hub::HubConfig {
            store: self.store_config(),
            identity: hub::IdentityConfig {
                hs256_secret: non_empty(&a.hs256_secret),
                rs256_public_key_file: non_empty(&a.rs256_public_key_file).map(Into::into),
                jwks_file: non_empty(&a.jwks_file).map(Into::into),
                data_dir: self.data_dir.clone().into(),
                jwks_url: non_empty(&a.jwks_url).map(|url| hub::jwks::JwksSource {
                    url,
                    ca_file: non_empty(&a.jwks_ca_file).map(Into::into),
                    refresh: Duration::from_secs(a.jwks_refresh_secs),
                    min_refresh: Duration::from_secs(a.jwks_min_refresh_secs),
                    max_bytes: a.jwks_max_bytes,
                    timeout: Duration::from_millis(a.jwks_timeout_ms),
                }),
                claims: hub::identity::ClaimRules {
                    issuer: non_empty(&a.issuer),
                    audience: a.audience.clone(),
                    leeway_secs: a.leeway_secs,
                    accept_dev: self.dev_mode,
                },
            },
            limits: self.limits(),
            socketio: self.socketio_config(),
            namespaces: self
                .namespaces
                .iter()
                .map(|ns| hub::NamespaceConfig {
                    name: ns.name.clone(),
                    handler: ns.handler.clone(),
                    auth: ns.auth,
                    backend: non_empty(&ns.backend).map(|url| hub::BackendConfig {
                        url,
                        timeout: Duration::from_millis(ns.backend_timeout_ms),
                        secret: non_empty(&ns.backend_secret),
                    }),
                })
                .collect(),
            components: hub::ComponentsConfig {
                notifications: self.notifications.clone(),
                chat: self.chat.clone(),
                presence: self.presence.clone(),
                calls: self.calls.clone(),
            },
        }
    }

    /// The Socket.IO settings.
    pub fn socketio_config(&self) -> socketio::SocketIoConfig {
        socketio::SocketIoConfig {
            connect_timeout: Duration::from_millis(self.socketio.connect_timeout_ms),
            max_attachments: self.socketio.max_attachments,
            stats: socketio::stats::StatsConfig {
                max_event_names: self.socketio.metrics_max_event_names,
                ..socketio::stats::StatsConfig::default()
            },
            max_pending_events: self.socketio.max_pending_events,
            max_pending_bytes: self.socketio.max_pending_bytes,
            max_attachment_bytes: match self.socketio.max_attachment_bytes {
                0 => self.engine.max_payload,
                bytes => bytes,
            },
            attachment_timeout: Duration::from_millis(self.socketio.attachment_timeout_ms),
            connects_per_sec: self.socketio.connects_per_sec,
            connect_burst: self.socketio.connect_burst,
        }
    }
}

/// Overlays `over` onto `base`, table by table.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(base), toml::Value::Table(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Sets the key named by `path` (`engine_ping_interval_ms`) from an
/// environment value. Keys contain underscores, so every split is tried
/// against the keys that exist. Returns whether a key matched.
fn apply_env(value: &mut toml::Value, path: &str, raw: &str) -> bool {
    let toml::Value::Table(table) = value else {
        return false;
    };
    if let Some(slot) = table.get_mut(path) {
        *slot = parse_env_value(slot, raw);
        return true;
    }
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        if let Some(rest) = path.strip_prefix(&key).and_then(|r| r.strip_prefix('_'))
            && let Some(child) = table.get_mut(&key)
            && apply_env(child, rest, raw)
        {
            return true;
        }
    }
    // Optional sections absent from the defaults (e.g. raw_engine_path).
    if path == "raw_engine_path" {
        let mut section = toml::Table::new();
        section.insert("path".into(), toml::Value::String(raw.to_owned()));
        table.insert("raw_engine".into(), toml::Value::Table(section));
        return true;
    }
    false
}

/// Parses an environment value in the type of the key it replaces.
fn parse_env_value(current: &toml::Value, raw: &str) -> toml::Value {
    match current {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Array(_) => {
            let parsed: Result<toml::Table, _> = toml::from_str(&format!("v = {raw}"));
            match parsed.ok().and_then(|mut t| t.remove("v")) {
                Some(v @ toml::Value::Array(_)) => v,
                _ => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ),
            }
        }
        _ => {
            let parsed: Result<toml::Table, _> = toml::from_str(&format!("v = {raw}"));
            parsed
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
        }
    }
}

/// The longest lifetime of a dev mode token: 30 days.
const MAX_DEV_TOKEN_TTL_SECS: u64 = 30 * 86_400;

/// Whether a listen address (`host:port`, `[v6]:port`) is on loopback
/// only: `localhost` or a loopback IP.
fn is_loopback(address: &str) -> bool {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_reference_server() {
        let config = Config::load(None, env(&[])).unwrap();
        let engine = config.engine_config();
        assert_eq!(engine.ping_interval, Duration::from_millis(25_000));
        assert_eq!(engine.ping_timeout, Duration::from_millis(20_000));
        assert_eq!(engine.max_payload, 1_000_000);
        assert_eq!(engine.path, "/socket.io/");
        assert_eq!(
            config.socketio_config().connect_timeout,
            Duration::from_secs(45)
        );
    }

    #[test]
    fn attachments_are_bounded_by_max_payload_unless_configured() {
        let config =
            Config::load(None, env(&[("SWITCHBOARD_ENGINE_MAX_PAYLOAD", "5000")])).unwrap();
        assert_eq!(config.socketio_config().max_attachment_bytes, 5000);
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_SOCKETIO_MAX_ATTACHMENT_BYTES", "700"),
                ("SWITCHBOARD_SOCKETIO_CONNECTS_PER_SEC", "2"),
            ]),
        )
        .unwrap();
        let io = config.socketio_config();
        assert_eq!(io.max_attachment_bytes, 700);
        assert_eq!(io.connects_per_sec, 2.0);
        assert_eq!(io.attachment_timeout, Duration::from_secs(30));
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_ENGINE_PING_INTERVAL_MS", "300"),
                ("SWITCHBOARD_LISTEN", "127.0.0.1:0, [::1]:0"),
                ("SWITCHBOARD_ENGINE_CORS_ORIGINS", "*"),
                ("SWITCHBOARD_LOG_FORMAT", "json"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.engine.ping_interval_ms, 300);
        assert_eq!(config.listen, vec!["127.0.0.1:0", "[::1]:0"]);
        assert_eq!(config.engine_config().cors, engineio::Cors::Any);
        assert_eq!(config.log.format, "json");
    }

    #[test]
    fn rejects_unknown_and_invalid_settings() {
        assert!(Config::load(None, env(&[("SWITCHBOARD_NOPE", "1")])).is_err());
        assert!(
            Config::load(
                None,
                env(&[("SWITCHBOARD_ENGINE_PING_INTERVAL_MS", "soon")])
            )
            .is_err()
        );
        assert!(
            Config::load(
                None,
                env(&[("SWITCHBOARD_ENGINE_TRANSPORTS", "carrier-pigeon")])
            )
            .is_err()
        );
    }

    #[test]
    fn admission_settings() {
        let config = Config::load(
            None,
            env(&[
                (
                    "SWITCHBOARD_SERVER_TRUSTED_PROXIES",
                    "10.0.0.0/8, 192.0.2.1",
                ),
                ("SWITCHBOARD_SERVER_MAX_CONNECTIONS", "1000"),
            ]),
        )
        .unwrap();
        let admission = config.engine_config().admission;
        assert_eq!(admission.max_sessions, 1000);
        assert_eq!(admission.trusted_proxies.len(), 2);
        assert_eq!(config.max_tcp_connections(), 2000);
        let bad = Config::load(
            None,
            env(&[("SWITCHBOARD_SERVER_TRUSTED_PROXIES", "10.0.0.0/99")]),
        )
        .unwrap_err();
        assert!(format!("{bad:#}").contains("10.0.0.0/99"), "{bad:#}");
    }

    #[test]
    fn the_audience_is_a_string_or_a_list_and_test_setup_is_a_top_level_flag() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("one.toml");
        std::fs::write(&path, "[auth]\naudience = \"switchboard\"\n").unwrap();
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(config.auth.audience, vec!["switchboard"]);
        assert!(!config.test_setup);
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_AUTH_AUDIENCE", "switchboard, esn"),
                ("SWITCHBOARD_AUTH_LEEWAY_SECS", "5"),
                ("SWITCHBOARD_TEST_SETUP", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(config.auth.audience, vec!["switchboard", "esn"]);
        assert_eq!(config.hub_config().identity.claims.leeway_secs, 5);
        assert!(config.test_setup);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dev_mode_is_on_without_a_file_and_off_in_a_file_unless_set() {
        let config = Config::load(None, env(&[])).unwrap();
        assert!(config.dev_mode);
        assert_eq!(config.dev_token_ttl_secs, 86_400);
        assert_eq!(config.web.dir, "");
        let config = Config::load(None, env(&[("SWITCHBOARD_DEV_MODE", "false")])).unwrap();
        assert!(!config.dev_mode);

        let dir = std::env::temp_dir().join(format!("sb-devmode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let without = dir.join("without.toml");
        std::fs::write(&without, "[web]\ndir = \"public\"\n").unwrap();
        let config = Config::load(Some(&without), env(&[])).unwrap();
        assert!(!config.dev_mode);
        assert_eq!(config.web.dir, "public");
        let config =
            Config::load(Some(&without), env(&[("SWITCHBOARD_DEV_MODE", "true")])).unwrap();
        assert!(config.dev_mode);
        let with = dir.join("with.toml");
        std::fs::write(&with, "dev_mode = true\ndev_token_ttl_secs = 60\n").unwrap();
        let config = Config::load(Some(&with), env(&[])).unwrap();
        assert!(config.dev_mode);
        assert_eq!(config.dev_token_ttl_secs, 60);
        let config = Config::load(Some(&with), env(&[("SWITCHBOARD_DEV_MODE", "false")])).unwrap();
        assert!(!config.dev_mode);
        assert!(Config::load(None, env(&[("SWITCHBOARD_DEV_TOKEN_TTL_SECS", "0")])).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_embedded_default_keeps_dev_mode_to_loopback_and_to_no_configured_identity() {
        // A deployment configured by environment (no file): no dev mode.
        let config = Config::load(None, env(&[("SWITCHBOARD_AUTH_HS256_SECRET", "prod")])).unwrap();
        assert!(!config.dev_mode);
        assert!(!config.hub_config().identity.claims.accept_dev);
        let config = Config::load(None, env(&[("SWITCHBOARD_LISTEN", "0.0.0.0:3000")])).unwrap();
        assert!(!config.dev_mode, "beyond loopback");
        assert!(config.dev_mode_note.is_some());
        for open in ["[::]:3000", "192.168.1.5:3000", "example.com:3000"] {
            let mut config = Config::load(None, env(&[])).unwrap();
            assert!(config.dev_mode);
            config.listen = vec![open.to_owned()];
            config.settle_dev_mode();
            assert!(!config.dev_mode, "{open}");
        }
        for local in [
            "127.0.0.1:3000",
            "[::1]:3000",
            "localhost:3000",
            "127.0.0.2:1",
        ] {
            let mut config = Config::load(None, env(&[])).unwrap();
            config.listen = vec![local.to_owned()];
            config.settle_dev_mode();
            assert!(config.dev_mode, "{local}");
            assert!(config.hub_config().identity.claims.accept_dev);
        }
        // Asked for: kept, wherever it listens.
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_DEV_MODE", "true"),
                ("SWITCHBOARD_LISTEN", "0.0.0.0:3000"),
            ]),
        )
        .unwrap();
        assert!(config.dev_mode);
    }

    #[test]
    fn reads_the_conformance_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance.toml");
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(config.engine.ping_interval_ms, 300);
        assert_eq!(config.raw_engine.unwrap().path, "/engine.io/");
    }

    #[test]
    fn refuses_catch_all_trusted_proxies() {
        for catch_all in ["0.0.0.0/0", "::/0", "10.0.0.1, 192.0.2.0/0"] {
            let err = Config::load(
                None,
                env(&[("SWITCHBOARD_SERVER_TRUSTED_PROXIES", catch_all)]),
            )
            .unwrap_err();
            let message = format!("{err:#}");
            assert!(message.contains("trusts every address"), "{message}");
        }
        // A narrow network is fine.
        Config::load(
            None,
            env(&[("SWITCHBOARD_SERVER_TRUSTED_PROXIES", "10.0.0.0/8, ::1/128")]),
        )
        .unwrap();
    }

    #[test]
    fn refuses_duplicate_api_keys_without_naming_them() {
        let toml = |keys: &str| {
            let dir = std::env::temp_dir().join(format!(
                "switchboard-dupkeys-{}-{}",
                std::process::id(),
                keys.len()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("config.toml");
            std::fs::write(&path, format!("[api]\nkeys = {keys}\n")).unwrap();
            path
        };
        let path = toml(
            r#"[{ key = "s3cret-dup", scopes = ["read"] }, "other", { key = "s3cret-dup", scopes = ["publish"] }]"#,
        );
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("entries 1 and 3"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let path = toml(r#"["one", { key = "two", scopes = ["read"] }]"#);
        Config::load(Some(&path), env(&[])).unwrap();
    }
}
