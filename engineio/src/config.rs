//! Engine.IO server settings. Defaults are the reference server's.

use std::time::Duration;

pub use crate::admission::AdmissionConfig;

/// Which origins may call the server from a browser (CORS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cors {
    /// Same origin only: no CORS headers are sent (the default).
    #[default]
    SameOrigin,
    /// Any origin (`Access-Control-Allow-Origin: *`).
    Any,
    /// These exact origins (e.g. `https://app.example.com`), echoed back with
    /// credentials allowed.
    List(Vec<String>),
}

/// Settings of one Engine.IO server.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Mount path of the handshake and transports, with trailing slash.
    pub path: String,
    /// How often the server pings each client.
    pub ping_interval: Duration,
    /// How long the server waits for the pong before closing the session.
    pub ping_timeout: Duration,
    /// Largest message (or polling request body) a client may send, in bytes.
    pub max_payload: usize,
    /// How long a client has to finish a polling→WebSocket upgrade.
    pub upgrade_timeout: Duration,
    /// Whether the HTTP long-polling transport is offered.
    pub allow_polling: bool,
    /// Whether the WebSocket transport is offered.
    pub allow_websocket: bool,
    /// Cross-origin policy.
    pub cors: Cors,
    /// Frames a session may have queued for sending; past it the session is a
    /// slow consumer and is closed (volatile frames are dropped instead).
    pub max_queued_frames: usize,
    /// Bytes a session may hold for sending: its queue (shared `Bytes`
    /// counted by their length) and, on WebSocket, the bytes its writer
    /// took from the queue that the kernel has not taken yet, together.
    /// Past it, as past `max_queued_frames`, the session is a slow consumer
    /// and is closed (volatile frames are dropped instead). So what a client
    /// that stops reading costs is this, plus the kernel's socket buffers.
    pub max_queued_bytes: usize,
    /// Bytes held for client messages not complete yet, all connections of
    /// the engine together (each one is bounded by `max_payload` too); past
    /// it, the connection holding the most is closed.
    pub max_partial_bytes: usize,
    /// How long a client message may take to arrive once its first byte
    /// did (a WebSocket message, a polling request body); a slower one
    /// closes its connection.
    pub partial_timeout: Duration,
    /// How many sessions are admitted, in all and per client address.
    pub admission: AdmissionConfig,
    /// Whether Engine.IO v3 clients (socket.io 1.x and 2.x) are served
    /// beside v4 ones, as the reference's `allowEIO3`. Off: their
    /// handshake is refused with error 5.
    pub allow_eio3: bool,
    /// Whether polling may be JSONP (a `j` in the query: a script per GET,
    /// a form per POST), for pages without `XMLHttpRequest`, as the
    /// reference serves it to both protocol revisions. Off: such requests
    /// get error 3.
    pub allow_jsonp: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_millis(10_000),
            allow_polling: true,
            allow_websocket: true,
            cors: Cors::SameOrigin,
            max_queued_frames: 4096,
            max_queued_bytes: 8 << 20,
            max_partial_bytes: 256 << 20,
            partial_timeout: Duration::from_millis(30_000),
            admission: AdmissionConfig::default(),
            allow_eio3: false,
            allow_jsonp: true,
        }
    }
}
