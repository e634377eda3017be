//! The Engine.IO server: request checks, handshake (admission included),
//! routing to a session's transport, the reference server's error codes,
//! and CORS.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use parking_lot::Mutex;

use crate::admission::{Admission, AdmissionStats, ClientAddr, Refusal, SessionPermit};
use crate::config::{Cors, EngineConfig};
use crate::packet::Protocol;
use crate::partial::PartialBudget;
use crate::sid::Sid;
use crate::socket::{Connection, Socket, Transport};
use crate::transports::ws::WsLimits;
use crate::transports::{jsonp, polling, websocket};

/// The body type of every response the engine produces.
pub type Body = Full<Bytes>;

/// What the server wants kept for as long as the connection that carried
/// a request lives (its connection-limit permit, say): put it in the
/// request's extensions. Once hyper hands an upgraded connection over, the
/// WebSocket keeps this, and only this, until the connection closes; the
/// rest of the request is dropped after the handshake (an idle connection
/// kept every extension, and their map, for hours: about 300 bytes).
#[derive(Clone)]
pub struct ConnectionGuard(pub Arc<dyn std::any::Any + Send + Sync>);

/// Creates the per-session [`Connection`] when a client opens a session.
pub trait Handler: Send + Sync + 'static {
    /// A session opened. `request` is the handshake request (for its query
    /// and headers); `socket` is the session, to send to and close.
    fn on_open(&self, socket: &Arc<Socket>, request: &http::request::Parts) -> Arc<dyn Connection>;
}

/// The reference server's request error codes (`Server.errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

/// Counters of events an operator wants to see.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) volatile_dropped: AtomicU64,
    /// Sessions open now that speak Engine.IO v3.
    pub(crate) v3_sessions: AtomicUsize,
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Sessions open now (each holds an admission slot until it closes,
    /// whatever its transport).
    pub sessions: usize,
    /// Of `sessions`, those of Engine.IO v3 clients (socket.io 1.x/2.x),
    /// for an operator deciding when `allow_eio3` can go.
    pub sessions_v3: usize,
    /// Sessions closed because their outbound queue was full.
    pub slow_consumer_disconnects: u64,
    /// Volatile frames dropped because a queue was full.
    pub volatile_dropped: u64,
    /// Admission: open slots, remembered addresses, refused handshakes.
    pub admission: AdmissionStats,
    /// Bytes held now for client messages not complete yet.
    pub partial_bytes: usize,
}

/// State shared by the engine and its sessions.
pub(crate) struct Shared {
    pub(crate) config: EngineConfig,
    pub(crate) counters: Counters,
    /// Bytes held for incomplete client messages, all sessions together.
    pub(crate) partial: Arc<PartialBudget>,
    sessions: Mutex<HashMap<Sid, Arc<Socket>>>,
    admission: Arc<Admission>,
    /// What every WebSocket connection may make us hold: one copy, which
    /// each connection shares rather than carries.
    pub(crate) ws_limits: Arc<WsLimits>,
}

impl Shared {
    pub(crate) fn remove(&self, id: &Sid) {
        self.sessions.lock().remove(id);
    }

    /// What an engine with `config` shares with its sessions, for tests
    /// of a session on its own.
    #[cfg(test)]
    pub(crate) fn for_tests(config: EngineConfig) -> Arc<Shared> {
        Arc::new(Shared {
            partial: Arc::new(PartialBudget::new(config.max_partial_bytes)),
            admission: Admission::new(config.admission.clone()),
            ws_limits: Arc::new(WsLimits::new(&config)),
            config,
            counters: Counters::default(),
            sessions: Mutex::new(HashMap::new()),
        })
    }
}

/// An Engine.IO server mounted at `config.path`. Cloning shares it.
pub struct Engine<H> {
    shared: Arc<Shared>,
    handler: Arc<H>,
}

impl<H> Clone for Engine<H> {
    fn clone(&self) -> Self {
        Engine {
            shared: self.shared.clone(),
            handler: self.handler.clone(),
        }
    }
}

/// The query parameters the engine reads.
#[derive(Debug, Default)]
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
    /// v3: the client cannot read binary (any non-empty value, as the
    /// reference's truthiness test).
    b64: bool,
    /// JSONP polling: the page's callback number, as sent.
    j: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Query<'a> {
        let mut q = Query::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => q.eio = Some(value),
                "transport" => q.transport = Some(value),
                "sid" => q.sid = Some(value),
                "b64" => q.b64 = !value.is_empty(),
                "j" => q.j = Some(value),
                _ => {}
            }
        }
        q
    }
}

impl<H: Handler> Engine<H> {
    /// An engine with these settings, handing new sessions to `handler`.
    pub fn new(config: EngineConfig, handler: H) -> Engine<H> {
        let admission = Admission::new(config.admission.clone());
        Engine {
            shared: Arc::new(Shared {
                partial: Arc::new(PartialBudget::new(config.max_partial_bytes)),
                ws_limits: Arc::new(WsLimits::new(&config)),
                config,
                admission,
                counters: Counters::default(),
                sessions: Mutex::new(HashMap::new()),
            }),
            handler: Arc::new(handler),
        }
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The handler.
    pub fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    /// Whether a request path belongs to this engine.
    pub fn matches_path(&self, path: &str) -> bool {
        let mount = self.shared.config.path.as_str();
        path == mount || path == mount.trim_end_matches('/')
    }

    /// Number of sessions the engine still knows (closed polling sessions
    /// linger a moment to answer their last GET).
    pub fn session_count(&self) -> usize {
        self.shared.sessions.lock().len()
    }

    /// The engine's counters.
    pub fn stats(&self) -> EngineStats {
        let admission = self.shared.admission.stats();
        EngineStats {
            sessions: admission.open,
            sessions_v3: self.shared.counters.v3_sessions.load(Ordering::Relaxed),
            admission,
            slow_consumer_disconnects: self.shared.counters.slow_consumers.load(Ordering::Relaxed),
            volatile_dropped: self
                .shared
                .counters
                .volatile_dropped
                .load(Ordering::Relaxed),
            partial_bytes: self.shared.partial.total(),
        }
    }

    /// Closes every session for a shutdown (see [`Socket::shutdown`]).
    pub fn close_all(&self) {
        let sessions: Vec<_> = self.shared.sessions.lock().values().cloned().collect();
        for socket in sessions {
            socket.shutdown();
        }
    }

    /// Serves one HTTP request addressed to the engine's path.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let mut response = self.route(req).await;
        self.add_cors(origin.as_ref(), &mut response);
        response
    }

    async fn route<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if req.method() == Method::OPTIONS {
            return self.preflight(&req);
        }
        if let Err(code) = self.check_origin(&req) {
            return error_response(code);
        }
        let query_string = req.uri().query().unwrap_or("").to_owned();
        let query = Query::parse(&query_string);
        let transport = match query.transport {
            Some("polling") if self.shared.config.allow_polling => Transport::Polling,
            Some("websocket") if self.shared.config.allow_websocket => Transport::WebSocket,
            _ => return error_response(ErrorCode::UnknownTransport),
        };
        let is_upgrade = websocket::is_upgrade_request(&req);
        if query.j.is_some() && transport == Transport::Polling && !self.shared.config.allow_jsonp {
            return error_response(ErrorCode::BadRequest);
        }

        if let Some(sid) = query.sid {
            let Some(socket) = Sid::parse(sid).and_then(|sid| self.lookup(&sid)) else {
                return error_response(ErrorCode::UnknownSid);
            };
            if socket.check_expired() {
                let lingering = socket.lock().poll_terminal.is_some();
                if !lingering {
                    return error_response(ErrorCode::UnknownSid);
                }
            }
            if !is_upgrade && socket.transport() != transport {
                return error_response(ErrorCode::BadRequest);
            }
            // A JSONP session answers each request with the callback its
            // `j` names (a real client sends the same one every time).
            let jsonp = socket
                .is_jsonp()
                .then(|| jsonp::callback_index(query.j.unwrap_or("")));
            return match transport {
                Transport::Polling => match *req.method() {
                    Method::GET => polling::poll(&socket, jsonp.as_deref()).await,
                    Method::POST => polling::post(&socket, req, jsonp.is_some()).await,
                    _ => error_response(ErrorCode::BadRequest),
                },
                Transport::WebSocket => websocket::upgrade(socket, req, query.b64),
            };
        }

        if req.method() != Method::GET {
            return error_response(ErrorCode::BadHandshakeMethod);
        }
        if transport == Transport::WebSocket && !is_upgrade {
            return error_response(ErrorCode::BadRequest);
        }
        // As the reference: anything but `4`, a missing `EIO` included, is v3.
        let protocol = match query.eio {
            Some("4") => Protocol::V4,
            _ if self.shared.config.allow_eio3 => Protocol::V3,
            _ => return error_response(ErrorCode::UnsupportedProtocolVersion),
        };
        let b64 = query.b64;
        // The slot is taken before the session exists (a WebSocket's is
        // created only after the upgrade), and freed if it never does.
        let permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(refusal) => return refusal_response(refusal),
        };
        match transport {
            Transport::Polling => {
                let (parts, _body) = req.into_parts();
                let jsonp = query.j.map(jsonp::callback_index);
                // A script carries strings only: a v3 JSONP client gets
                // binaries as base64 whatever its `b64` says.
                let b64 = b64 || jsonp.is_some();
                let socket = self.open(Transport::Polling, protocol, b64, &parts, permit);
                if jsonp.is_some() {
                    socket.set_jsonp();
                }
                tokio::spawn(crate::socket::polling_heartbeat(Arc::downgrade(&socket)));
                let open = self.open_packet(&socket, Transport::Polling);
                polling::handshake_response(&socket, open, jsonp.as_deref())
            }
            Transport::WebSocket => {
                let engine = self.clone();
                websocket::handshake(req, self.shared.ws_limits.clone(), move |parts| {
                    let socket = engine.open(Transport::WebSocket, protocol, b64, parts, permit);
                    let open = engine.open_packet(&socket, Transport::WebSocket);
                    (socket, open)
                })
            }
        }
    }

    fn lookup(&self, sid: &Sid) -> Option<Arc<Socket>> {
        self.shared.sessions.lock().get(sid).cloned()
    }

    /// A slot for a new session from the request's client address.
    fn admit<B>(&self, req: &Request<B>) -> Result<SessionPermit, Refusal> {
        let admission = &self.shared.admission;
        let peer = req.extensions().get::<ClientAddr>().copied();
        let client = admission.config().client_ip(req.headers(), peer);
        let result = admission.admit(client, std::time::Instant::now());
        if let Err(refusal) = result {
            tracing::debug!(client = ?client, refusal = refusal.message(), "handshake refused");
        }
        result
    }

    /// Creates a session and its connection; the session holds `permit`
    /// until it closes.
    fn open(
        &self,
        transport: Transport,
        protocol: Protocol,
        b64: bool,
        parts: &http::request::Parts,
        permit: SessionPermit,
    ) -> Arc<Socket> {
        let sid = Sid::random();
        let socket = Socket::new(sid, self.shared.clone(), transport, protocol, b64);
        socket.set_permit(permit);
        self.shared.sessions.lock().insert(sid, socket.clone());
        let conn = self.handler.on_open(&socket, parts);
        socket.set_connection(conn);
        tracing::debug!(
            sid = %socket.log_id(),
            transport = transport.as_str(),
            v3 = protocol == Protocol::V3,
            "session opened"
        );
        socket
    }

    /// The `open` packet's text.
    fn open_packet(&self, socket: &Socket, transport: Transport) -> String {
        let config = &self.shared.config;
        let upgrades: &[&str] = if transport == Transport::Polling && config.allow_websocket {
            &["websocket"]
        } else {
            &[]
        };
        let json = serde_json::json!({
            "sid": socket.id(),
            "upgrades": upgrades,
            "pingInterval": config.ping_interval.as_millis() as u64,
            "pingTimeout": config.ping_timeout.as_millis() as u64,
            "maxPayload": config.max_payload,
        });
        format!("0{json}")
    }

    /// Whether a browser origin may use this server: same origin, or one the
    /// CORS settings allow. Requests without `Origin` (non-browser) pass.
    fn check_origin<B>(&self, req: &Request<B>) -> Result<(), ErrorCode> {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let Ok(origin) = origin.to_str() else {
            return Err(ErrorCode::BadRequest);
        };
        match &self.shared.config.cors {
            Cors::Any => Ok(()),
            Cors::List(list) if list.iter().any(|o| o == origin) => Ok(()),
            _ => {
                let host = req
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok());
                let authority = origin.split_once("://").map(|(_, a)| a);
                if host.is_some() && authority == host {
                    Ok(())
                } else {
                    Err(ErrorCode::Forbidden)
                }
            }
        }
    }

    fn preflight<B>(&self, req: &Request<B>) -> Response<Body> {
        let mut response = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::default())
            .unwrap_or_default();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
        );
        if let Some(requested) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        response
    }

    fn add_cors(&self, origin: Option<&HeaderValue>, response: &mut Response<Body>) {
        let headers = response.headers_mut();
        match &self.shared.config.cors {
            Cors::SameOrigin => {}
            Cors::Any => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            Cors::List(list) => {
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
                if let Some(origin) = origin
                    && list.iter().any(|o| o.as_bytes() == origin.as_bytes())
                {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                    headers.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
            }
        }
    }
}

/// The reference server's error response: HTTP 400 (403 for `Forbidden`)
/// with `{"code":N,"message":"…"}`.
pub(crate) fn error_response(code: ErrorCode) -> Response<Body> {
    let status = if code == ErrorCode::Forbidden {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = serde_json::json!({ "code": code as u8, "message": code.message() });
    json_response(status, body.to_string())
}

/// A refused handshake: 503 or 429 (see [`Refusal::status`]) with
/// `{"code":N,"message":"…"}`, as the other request errors.
fn refusal_response(refusal: Refusal) -> Response<Body> {
    let body = serde_json::json!({ "code": refusal.code(), "message": refusal.message() });
    json_response(refusal.status(), body.to_string())
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query() {
        let q = Query::parse("EIO=4&transport=polling&t=abc&sid=xyz");
        assert_eq!(q.eio, Some("4"));
        assert_eq!(q.transport, Some("polling"));
        assert_eq!(q.sid, Some("xyz"));
        assert!(!q.b64 && q.j.is_none());
        let q = Query::parse("");
        assert!(q.eio.is_none() && q.transport.is_none() && q.sid.is_none());
        let q = Query::parse("EIO=3&b64=1&j=0");
        assert!(q.b64 && q.j == Some("0"));
        assert!(!Query::parse("b64=").b64);
    }
}
