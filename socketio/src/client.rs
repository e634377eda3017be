//! One client connection (one Engine.IO session): decodes its packets and
//! multiplexes them over the namespaces it joined.

use std::sync::{Arc, Weak};
use std::task::Context;

use engineio::{CloseReason, Connection, Message};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::task::AbortHandle;

use crate::namespace::{ConnectRequest, Namespace};
use crate::packet::{Decoded, Decoder, Encoded, Packet, PacketType, Payload};
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
    closed: bool,
}

impl Client {
    pub(crate) fn new(
        engine: Arc<engineio::Socket>,
        server: Arc<ServerInner>,
        query: &str,
    ) -> Arc<Client> {
        let max_attachments = server.config.max_attachments;
        let timeout = server.config.connect_timeout;
        let client = Arc::new(Client {
            engine,
            server,
            query: Arc::from(query),
            state: Mutex::new(State {
                decoder: Decoder::new(max_attachments),
                sockets: Vec::new(),
                connect_timeout: None,
                closed: false,
            }),
        });
        let weak: Weak<Client> = Arc::downgrade(&client);
        let task = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(client) = weak.upgrade() {
                tracing::debug!(
                    sid = client.engine.id(),
                    "no namespace joined in time: closing"
                );
                client.engine.close();
            }
        });
        client.state.lock().connect_timeout = Some(task.abort_handle());
        client
    }

    /// The Engine.IO session.
    pub fn engine(&self) -> &Arc<engineio::Socket> {
        &self.engine
    }

    pub(crate) fn query(&self) -> &str {
        &self.query
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
        let Some(ns) = self.server.namespace(&packet.nsp) else {
            let error = r#"{"message":"Invalid namespace"}"#;
            self.send(&Encoded::connect_error(&packet.nsp, error), false);
            return;
        };
        let auth = match packet.payload {
            Payload::Json(raw) => raw,
            _ => RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!()),
        };
        let request = ConnectRequest {
            nsp: packet.nsp,
            auth,
            query: self.query.clone(),
            extensions: http::Extensions::new(),
        };
        let authorized = ns.authorize(request);
        let client = self.clone();
        let mut future = Box::pin(async move {
            match authorized.await {
                Ok(request) => client.join(ns, request),
                Err(error) => {
                    client.send(&Encoded::connect_error(ns.name(), &error.to_json()), false)
                }
            }
        });
        // Without asynchronous middleware the connection completes here.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if future.as_mut().poll(&mut cx).is_pending() {
            tokio::spawn(future);
        }
    }

    fn join(self: &Arc<Self>, ns: Arc<Namespace>, request: ConnectRequest) {
        let socket = Socket::new(ns.clone(), self.clone(), request.auth, request.extensions);
        let replaced: Vec<Arc<Socket>> = {
            let mut state = self.state.lock();
            if state.closed {
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
        ns.insert(&socket);
        let handshake = format!(r#"{{"sid":"{}"}}"#, socket.id().as_str());
        self.send(&Encoded::connect(ns.name(), &handshake), false);
        socket.start();
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
            if let Some(timeout) = state.connect_timeout.take() {
                timeout.abort();
            }
            std::mem::take(&mut state.sockets)
        };
        for socket in sockets {
            socket.on_close(reason);
        }
    }
}

/// The Engine.IO connection of a client: decodes, then dispatches.
pub(crate) struct ClientConnection(pub(crate) Arc<Client>);

impl Connection for ClientConnection {
    fn on_message(&self, message: Message) {
        let client = &self.0;
        let decoded = {
            let mut state = client.state.lock();
            match message {
                Message::Text(text) => state.decoder.text(&text),
                Message::Binary(data) => state.decoder.binary(data),
            }
        };
        match decoded {
            Ok(Decoded::Packet(packet)) => client.on_packet(packet),
            Ok(Decoded::Pending) => {}
            Err(err) => {
                tracing::debug!(sid = client.engine.id(), %err, "invalid Socket.IO packet: closing");
                client.close_sockets(DisconnectReason::Transport(CloseReason::ParseError));
                client.engine.close();
            }
        }
    }

    fn on_close(&self, reason: CloseReason) {
        self.0.close_sockets(DisconnectReason::Transport(reason));
    }
}
