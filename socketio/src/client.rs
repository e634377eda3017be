//! One client connection (one Engine.IO session): decodes its packets and
//! multiplexes them over the namespaces it joined.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::Context;

use engineio::{CloseReason, Connection, Message};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::task::AbortHandle;

use crate::budget::Budget;
use crate::namespace::{ConnectRequest, Namespace};
use crate::packet::{Decoded, Decoder, Encoded, Packet, PacketType, Payload};
use crate::recovery::{Offset, Session};
use crate::server::ServerInner;
use crate::socket::{DisconnectReason, Socket};

/// The Socket.IO side of one Engine.IO session.
pub struct Client {
    engine: Arc<engineio::Socket>,
    server: Arc<ServerInner>,
    query: Arc<str>,
    state: Mutex<State>,
}

struct State {
    decoder: Decoder,
    /// One socket per joined namespace (few: a Vec beats a map).
    sockets: Vec<Arc<Socket>>,
    /// Closes the connection if no namespace is joined in time.
    connect_timeout: Option<AbortHandle>,
    /// Closes the connection if a packet's attachments do not all arrive
    /// within `attachment_timeout`; armed while the decoder holds one.
    attachment_timeout: Option<AbortHandle>,
    /// CONNECTs (and other costly requests) this connection may still send.
    costly: Budget,
    closed: bool,
}

impl Client {
    pub(crate) fn new(
        engine: Arc<engineio::Socket>,
        server: Arc<ServerInner>,
        query: &str,
    ) -> Arc<Client> {
        let config = &server.config;
        let decoder = Decoder::new(config.max_attachments)
            .with_max_pending_bytes(config.max_attachment_bytes);
        let costly = Budget::new(config.connects_per_sec, config.connect_burst);
        let timeout = config.connect_timeout;
        let client = Arc::new(Client {
            engine,
            server,
            query: Arc::from(query),
            state: Mutex::new(State {
                decoder,
                sockets: Vec::new(),
                connect_timeout: None,
                attachment_timeout: None,
                costly,
                closed: false,
            }),
        });
        let weak: Weak<Client> = Arc::downgrade(&client);
        let task = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(client) = weak.upgrade() {
                tracing::debug!(
                    sid = %client.engine.log_id(),
                    "no namespace joined in time: closing"
                );
                client.engine.close();
            }
        });
        client.state.lock().connect_timeout = Some(task.abort_handle());
        client
    }

    /// The Engine.IO session (for this crate only: handlers never get it).
    pub(crate) fn engine(&self) -> &Arc<engineio::Socket> {
        &self.engine
    }

    /// Takes one costly request from the connection's budget.
    pub(crate) fn admit_costly(&self) -> bool {
        self.state.lock().costly.take()
    }

    /// Closes every socket and the connection because the client broke the
    /// protocol's rules (`parse error`, as for an undecodable packet).
    fn close_for_parse_error(&self) {
        self.close_sockets(DisconnectReason::Transport(CloseReason::ParseError));
        self.engine.close();
    }

    pub(crate) fn query(&self) -> &str {
        &self.query
    }

    /// Whether the client speaks Engine.IO v3 (socket.io 1.x/2.x).
    pub(crate) fn is_v3(&self) -> bool {
        self.engine.protocol() == engineio::Protocol::V3
    }

    /// A v3 client is in `/` from the start, without asking (the
    /// reference's `client.connect("/")`): its CONNECT reply is queued
    /// behind the `open` packet, like any. Without a `/` namespace nothing
    /// is sent: an ERROR for `/` would reach every namespace of a 2.x
    /// client (switchboard's configuration requires `/` with v3 on).
    pub(crate) fn connect_implicitly(self: &Arc<Self>) {
        if self.server.namespace("/").is_none() {
            return;
        }
        self.connect(Packet {
            kind: PacketType::Connect,
            nsp: "/".to_owned(),
            id: None,
            payload: Payload::None,
        });
    }

    /// Queues an encoded packet (and its attachments) on the connection.
    pub(crate) fn send(&self, packet: &Encoded, volatile: bool) {
        let _ = self
            .engine
            .send_all(packet.frames.iter().cloned(), packet.frames.len(), volatile);
    }

    fn on_packet(self: &Arc<Self>, packet: Packet) {
        if packet.kind == PacketType::Connect {
            self.connect(packet);
            return;
        }
        let socket = {
            let state = self.state.lock();
            state
                .sockets
                .iter()
                .find(|s| s.namespace().name() == packet.nsp)
                .cloned()
        };
        match socket {
            Some(socket) => socket.on_packet(packet),
            None => tracing::debug!(
                nsp = packet.nsp,
                "packet for a namespace not joined: ignored"
            ),
        }
    }

    fn connect(self: &Arc<Self>, packet: Packet) {
        // Counted before anything else: an unknown namespace or a refused
        // token costs the client its budget too.
        if !self.admit_costly() {
            tracing::debug!(
                nsp = packet.nsp,
                "more CONNECTs than socketio.connects_per_sec: closing"
            );
            self.close_sockets(DisconnectReason::ForcedServerClose);
            self.engine.close();
            return;
        }
        let v3 = self.is_v3();
        // v3: the credentials come in the name's query (`/chat?token=…`).
        let (nsp, query) = match packet.nsp.split_once('?') {
            Some((nsp, query)) if v3 => (nsp.to_owned(), Some(query)),
            _ => (packet.nsp.clone(), None),
        };
        let Some(ns) = self.server.namespace(&nsp) else {
            // An object for v3 clients too, as the reference sends it.
            let error = r#"{"message":"Invalid namespace"}"#;
            self.send(&Encoded::connect_error(&nsp, error), false);
            return;
        };
        let auth = match (packet.payload, query) {
            (_, Some(query)) => query_auth(query),
            (Payload::Json(raw), None) if !v3 => raw,
            _ => RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!()),
        };
        // A client that had a session presents its pid and last offset (a
        // v3 client has none to present).
        let asked = ns
            .recovery()
            .filter(|_| !v3)
            .and_then(|_| crate::recovery::requested(&auth));
        let request = ConnectRequest {
            nsp,
            auth,
            query: self.query.clone(),
            extensions: http::Extensions::new(),
        };
        // The middleware runs for a recovering client too (unlike the
        // reference's default, `skipMiddlewares`): its credentials are
        // checked again, so an expired or revoked token is not revived,
        // and the session is restored only for the owner they name.
        let authorized = ns.authorize(request);
        let client = self.clone();
        let mut future = Box::pin(async move {
            match authorized.await {
                Ok(request) => {
                    let restored = match (asked, ns.recovery()) {
                        (Some((pid, offset)), Some(recovery)) => {
                            let owner = ns.session_owner(&request.extensions);
                            let restore =
                                recovery
                                    .store
                                    .restore(ns.name(), &pid, offset, owner.as_deref());
                            let restored = restore.await.map(|session| (session, offset));
                            if restored.is_none() {
                                (ns.stats().not_recovered).fetch_add(1, Ordering::Relaxed);
                            }
                            restored
                        }
                        _ => None,
                    };
                    client.join(ns, request, restored)
                }
                Err(error) => {
                    let payload = if v3 {
                        error.to_json_v3()
                    } else {
                        error.to_json()
                    };
                    client.send(&Encoded::connect_error(ns.name(), &payload), false)
                }
            }
        });
        // Without asynchronous middleware the connection completes here.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if future.as_mut().poll(&mut cx).is_pending() {
            tokio::spawn(future);
        }
    }

    fn join(
        self: &Arc<Self>,
        ns: Arc<Namespace>,
        request: ConnectRequest,
        restored: Option<(Session, Offset)>,
    ) {
        // A socket id in use is never given twice (a store that still
        // thought it disconnected): such a client starts afresh.
        let restored = restored.filter(|(session, _)| {
            let free = ns.get(&session.sid).is_none();
            if !free {
                (ns.stats().not_recovered).fetch_add(1, Ordering::Relaxed);
            }
            free
        });
        let socket = Socket::new(
            ns.clone(),
            self.clone(),
            request.auth,
            request.extensions,
            restored.as_ref().map(|(session, _)| session),
        );
        if let (Some(recovery), Some((session, _))) = (ns.recovery(), &restored) {
            // Held from before anything can reach the socket, and before
            // anything can close it (which keeps the session again).
            recovery.begin(session.clone(), self.engine.queue_room());
        }
        let replaced: Vec<Arc<Socket>> = {
            let mut state = self.state.lock();
            if state.closed {
                drop(state);
                if restored.is_some() {
                    // Closed meanwhile: the session is kept again for the
                    // client's next attempt.
                    socket.on_close(DisconnectReason::Transport(CloseReason::TransportClose));
                }
                return;
            }
            if let Some(timeout) = state.connect_timeout.take() {
                timeout.abort();
            }
            // A second CONNECT to the same namespace replaces the socket.
            let (replaced, kept) = std::mem::take(&mut state.sockets)
                .into_iter()
                .partition(|s| s.namespace().name() == ns.name());
            state.sockets = kept;
            state.sockets.push(socket.clone());
            replaced
        };
        for old in replaced {
            old.on_close(DisconnectReason::ClientNamespaceDisconnect);
        }
        // Registers it (unless the connection closed meanwhile), runs the
        // handler's `on_connect`, then sends the CONNECT reply.
        socket.start(restored);
    }

    /// Closes the connection unless the packet waiting for attachments
    /// completes within `attachment_timeout` (the caller aborts it then).
    fn attachment_timer(self: &Arc<Self>) -> AbortHandle {
        let weak: Weak<Client> = Arc::downgrade(self);
        let timeout = self.server.config.attachment_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(client) = weak.upgrade() {
                tracing::debug!(
                    sid = %client.engine.log_id(),
                    "binary attachments not complete in time: closing"
                );
                client.state.lock().attachment_timeout = None;
                client.close_for_parse_error();
            }
        })
        .abort_handle()
    }

    pub(crate) fn remove(&self, socket: &Socket) {
        self.state
            .lock()
            .sockets
            .retain(|s| !std::ptr::eq(&**s, socket));
    }

    /// Disconnects every namespace and closes the connection.
    pub(crate) fn disconnect_all(&self) {
        let sockets: Vec<_> = self.state.lock().sockets.clone();
        for socket in sockets {
            socket.disconnect();
        }
        self.engine.close();
    }

    fn close_sockets(&self, reason: DisconnectReason) {
        let sockets = {
            let mut state = self.state.lock();
            state.closed = true;
            for timeout in [
                state.connect_timeout.take(),
                state.attachment_timeout.take(),
            ]
            .into_iter()
            .flatten()
            {
                timeout.abort();
            }
            std::mem::take(&mut state.sockets)
        };
        for socket in sockets {
            socket.on_close(reason);
        }
    }
}

/// The auth object of a v3 CONNECT: its namespace query's pairs, as the
/// reference makes it (`Object.fromEntries(new URLSearchParams(query))`:
/// string values, `+` a space, a later duplicate wins).
fn query_auth(query: &str) -> Box<RawValue> {
    let mut object = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        object.insert(key.into_owned(), value.into_owned().into());
    }
    let json = serde_json::Value::Object(object).to_string();
    RawValue::from_string(json).unwrap_or_else(|_| unreachable!())
}

/// The Engine.IO connection of a client: decodes, then dispatches.
pub(crate) struct ClientConnection(pub(crate) Arc<Client>);

impl Connection for ClientConnection {
    fn on_message(&self, message: Message) {
        let client = &self.0;
        let decoded = {
            let mut state = client.state.lock();
            let decoded = match message {
                Message::Text(text) => state.decoder.text_for(&text, client.is_v3()),
                Message::Binary(data) => state.decoder.binary(data),
            };
            // The timer runs from a packet's header to its last attachment.
            match (&decoded, state.attachment_timeout.is_some()) {
                (Ok(Decoded::Pending), false) if !state.closed => {
                    state.attachment_timeout = Some(client.attachment_timer());
                }
                (Ok(Decoded::Packet(_)), true) | (Err(_), true) => {
                    if let Some(timer) = state.attachment_timeout.take() {
                        timer.abort();
                    }
                }
                _ => {}
            }
            decoded
        };
        match decoded {
            Ok(Decoded::Packet(packet)) => client.on_packet(packet),
            Ok(Decoded::Pending) => {}
            Err(err) => {
                tracing::debug!(sid = %client.engine.log_id(), %err, "invalid Socket.IO packet: closing");
                client.close_for_parse_error();
            }
        }
    }

    fn on_close(&self, reason: CloseReason) {
        self.0.close_sockets(DisconnectReason::Transport(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v3_namespace_query_is_the_auth_object() {
        assert_eq!(
            query_auth("token=a%2Fb+c&x=1&x=2&empty=&flag").get(),
            r#"{"empty":"","flag":"","token":"a/b c","x":"2"}"#
        );
        assert_eq!(query_auth("").get(), "{}");
    }
}
