//! A namespace: the component that owns it ([`NamespaceHandler`]), its
//! connect middleware, its sockets and its rooms (through the adapter).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::value::RawValue;

use crate::adapter::{Adapter, BroadcastOptions};
use crate::broadcast::BroadcastOperator;
use crate::packet::{Args, Encoded};
use crate::recovery::{Audience, NsRecovery, SessionStore};
use crate::server::SocketIoConfig;
use crate::socket::{BoxFuture, DisconnectReason, Event, Room, Socket, SocketId};
use crate::stats::NamespaceStats;

/// A client's request to join a namespace, as middleware sees it.
#[derive(Debug)]
pub struct ConnectRequest {
    /// The namespace name.
    pub nsp: String,
    /// The CONNECT packet's payload (`{}` when absent).
    pub auth: Box<RawValue>,
    /// The query string of the Engine.IO handshake.
    pub query: Arc<str>,
    /// Data for the socket, carried over to [`Socket::extensions`].
    pub extensions: http::Extensions,
}

/// A refused connection: the client's `connect_error` gets `message` and `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    pub message: String,
    pub data: Option<serde_json::Value>,
}

impl ConnectError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// An error with a message and data.
    pub fn with_data(message: impl Into<String>, data: serde_json::Value) -> ConnectError {
        ConnectError {
            message: message.into(),
            data: Some(data),
        }
    }

    pub(crate) fn to_json(&self) -> String {
        let mut object = serde_json::Map::new();
        object.insert("message".into(), self.message.clone().into());
        if let Some(data) = &self.data {
            object.insert("data".into(), data.clone());
        }
        serde_json::Value::Object(object).to_string()
    }

    /// The ERROR payload a v3 client (socket.io 1.x/2.x) gets, as the
    /// reference sends it: `data` when it is set and JavaScript-truthy,
    /// else `message` as a JSON string (its `error` event's argument).
    pub(crate) fn to_json_v3(&self) -> String {
        use serde_json::Value;
        let truthy = |v: &Value| match v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(_) | Value::Object(_) => true,
        };
        match &self.data {
            Some(data) if truthy(data) => data.to_string(),
            _ => Value::String(self.message.clone()).to_string(),
        }
    }
}

/// Connect middleware: lets a client in (possibly attaching data to the
/// request's extensions) or refuses it.
pub trait Middleware: Send + Sync + 'static {
    fn call(&self, request: ConnectRequest) -> BoxFuture<Result<ConnectRequest, ConnectError>>;
}

impl<F, Fut> Middleware for F
where
    F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ConnectRequest, ConnectError>> + Send + 'static,
{
    fn call(&self, request: ConnectRequest) -> BoxFuture<Result<ConnectRequest, ConnectError>> {
        Box::pin(self(request))
    }
}

/// The component owning a namespace. A socket's life, as its handler sees
/// it: `on_connect` (once), then `on_connected` (once, unless the socket
/// left meanwhile), its events one at a time, then `on_disconnect` (exactly
/// once, after `on_connect` has finished).
pub trait NamespaceHandler: Send + Sync + 'static {
    /// A socket is joining the namespace (middleware let it in); its client
    /// is not told yet. The rooms it joins here are in place by the time
    /// the client sees `connect`, so a publish sent right after reaches it.
    /// Return a future to wait for (a lookup): the client is told once it
    /// completes, its events wait behind it, and `on_disconnect` never runs
    /// before it ends. A join after the socket left is refused
    /// ([`Socket::join`] returns false).
    fn on_connect(&self, _socket: &Arc<Socket>) -> Option<BoxFuture<()>> {
        None
    }

    /// The client has been told it is connected (the CONNECT reply reached
    /// the transport); runs before the socket's first event. The place for
    /// a greeting: it reaches the client after the CONNECT reply.
    fn on_connected(&self, _socket: &Arc<Socket>) {}

    /// An event from a socket. Events of one socket are handled one at a
    /// time, in order: return `None` when done, or a future to wait for
    /// (the socket's next event waits for it; other sockets do not).
    fn on_event(&self, socket: &Arc<Socket>, event: Event) -> Option<BoxFuture<()>>;

    /// A socket left the namespace: exactly once, after `on_connect`. It is
    /// in no room any more and receives nothing, but [`Socket::rooms`] still
    /// returns the rooms it was in.
    fn on_disconnect(&self, _socket: &Arc<Socket>, _reason: DisconnectReason) {}
}

/// Who a socket's session belongs to, from what middleware attached to it
/// (see [`Namespace::set_session_owner`]).
type SessionOwner = dyn Fn(&http::Extensions) -> Option<Arc<str>> + Send + Sync;

/// A namespace.
pub struct Namespace {
    name: String,
    handler: Arc<dyn NamespaceHandler>,
    middlewares: RwLock<Vec<Arc<dyn Middleware>>>,
    /// Connection state recovery, when it is on.
    recovery: Option<NsRecovery>,
    session_owner: RwLock<Option<Arc<SessionOwner>>>,
    sockets: RwLock<HashMap<SocketId, Arc<Socket>>>,
    adapter: Box<dyn Adapter>,
    stats: NamespaceStats,
    /// See [`SocketIoConfig::max_pending_events`].
    pub(crate) max_pending_events: usize,
    /// See [`SocketIoConfig::max_pending_bytes`].
    pub(crate) max_pending_bytes: usize,
}

impl Namespace {
    pub(crate) fn new(
        name: String,
        handler: Arc<dyn NamespaceHandler>,
        config: &SocketIoConfig,
        store: Option<Arc<dyn SessionStore>>,
    ) -> Namespace {
        Namespace {
            adapter: config.adapter.make(&name),
            recovery: store.map(|store| NsRecovery::new(&name, store)),
            session_owner: RwLock::new(None),
            name,
            handler,
            middlewares: RwLock::new(Vec::new()),
            sockets: RwLock::new(HashMap::new()),
            stats: NamespaceStats::new(config.stats),
            max_pending_events: config.max_pending_events,
            max_pending_bytes: config.max_pending_bytes,
        }
    }

    /// The name (`/`, `/chat`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Events in and out, and broadcast fan-out.
    pub fn stats(&self) -> &NamespaceStats {
        &self.stats
    }

    /// Adds connect middleware; middleware runs in the order added.
    pub fn use_middleware(&self, middleware: impl Middleware) {
        self.middlewares.write().push(Arc::new(middleware));
    }

    /// Says whom a socket's session belongs to, from the data its
    /// middleware attached (the signed-in user): a session is restored by
    /// connection state recovery only for a client whose middleware finds
    /// the same owner, so a private session id presented with another
    /// user's credentials restores nothing. Set by the middleware's owner
    /// (not the handler), so that no handler wrapping another can lose it.
    pub fn set_session_owner(
        &self,
        owner: impl Fn(&http::Extensions) -> Option<Arc<str>> + Send + Sync + 'static,
    ) {
        *self.session_owner.write() = Some(Arc::new(owner));
    }

    /// The owner of a session whose socket carries `extensions`.
    pub(crate) fn session_owner(&self, extensions: &http::Extensions) -> Option<Arc<str>> {
        let owner = self.session_owner.read().clone();
        owner.and_then(|owner| owner(extensions))
    }

    /// Whether recoverable events must be logged by the adapter as it
    /// publishes them (recovery is on with a store that says so, see
    /// [`SessionStore::logs_through_adapter`]), rather than delivered here
    /// at once.
    pub fn logs_through_adapter(&self) -> bool {
        self.recovery
            .as_ref()
            .is_some_and(|recovery| recovery.store.logs_through_adapter())
    }

    /// Connection state recovery, when it is on.
    pub(crate) fn recovery(&self) -> Option<&NsRecovery> {
        self.recovery.as_ref()
    }

    /// Encodes an event for this node's sockets, once, and hands it to
    /// `deliver` (an adapter's local delivery); returns what `deliver`
    /// returns. With recovery on, an event that is not volatile is
    /// recorded with an offset as its last argument, and a socket being
    /// restored waits until it is delivered (see [`crate::recovery`]).
    /// [`Adapter::broadcast_event`]'s default goes through here.
    pub fn deliver_event(
        &self,
        event: &str,
        args: &Args,
        opts: &BroadcastOptions,
        deliver: impl FnOnce(&Encoded) -> usize,
    ) -> usize {
        match self.recovery() {
            Some(recovery) if !opts.volatile => {
                // Held from before the packet has its offset until it is
                // delivered: a socket being restored waits for it.
                let _pass = recovery.barrier.enter();
                let packet = recovery.record(Audience::Broadcast(opts), |offset| {
                    Encoded::event_at(&self.name, event, args, offset)
                });
                deliver(&packet)
            }
            _ => deliver(&Encoded::event(&self.name, event, args, None)),
        }
    }

    pub(crate) fn handler(&self) -> &Arc<dyn NamespaceHandler> {
        &self.handler
    }

    pub(crate) fn adapter(&self) -> &dyn Adapter {
        self.adapter.as_ref()
    }

    /// Runs the middleware chain on a connect request.
    pub(crate) fn authorize(
        &self,
        request: ConnectRequest,
    ) -> BoxFuture<Result<ConnectRequest, ConnectError>> {
        let chain: Vec<_> = self.middlewares.read().clone();
        Box::pin(async move {
            let mut request = request;
            for middleware in chain {
                request = middleware.call(request).await?;
            }
            Ok(request)
        })
    }

    pub(crate) fn insert(&self, socket: &Arc<Socket>) {
        self.sockets.write().insert(*socket.id(), socket.clone());
    }

    /// Removes a socket from its rooms and the namespace; returns the
    /// rooms it was in.
    pub(crate) fn remove(&self, socket: &Socket) -> Vec<Room> {
        let rooms = self.adapter.del_all(self, socket);
        self.sockets.write().remove(socket.id());
        rooms
    }

    /// A connected socket by id.
    pub fn get(&self, id: &SocketId) -> Option<Arc<Socket>> {
        self.sockets.read().get(id).cloned()
    }

    /// Number of connected sockets.
    pub fn len(&self) -> usize {
        self.sockets.read().len()
    }

    /// Whether no socket is connected.
    pub fn is_empty(&self) -> bool {
        self.sockets.read().is_empty()
    }

    /// Calls `f` for each connected socket, outside the namespace's lock (on
    /// a snapshot: connects and disconnects are not held up meanwhile).
    pub fn for_each_socket(&self, mut f: impl FnMut(&Arc<Socket>)) {
        for socket in self.sockets() {
            f(&socket);
        }
    }

    /// The connected sockets (a snapshot, taken under the read lock).
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.sockets.read().values().cloned().collect()
    }

    /// A broadcast to one room (chain `.to()`, `.except()`, `.volatile()`).
    pub fn to(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).to(room)
    }

    /// A broadcast to the whole namespace.
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone())
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A v3 client's `error` event gets `data || message`, as from the reference.
    #[test]
    fn a_v3_refusal_carries_data_or_else_the_message() {
        let with = |data| ConnectError::with_data("unauthorized", data).to_json_v3();
        assert_eq!(
            with(json!({"code": "auth", "message": "no token"})),
            r#"{"code":"auth","message":"no token"}"#
        );
        assert_eq!(with(json!("why")), r#""why""#);
        for falsy in [json!(null), json!(false), json!(0), json!("")] {
            assert_eq!(with(falsy), r#""unauthorized""#);
        }
        assert_eq!(ConnectError::new("no").to_json_v3(), r#""no""#);
    }
}
