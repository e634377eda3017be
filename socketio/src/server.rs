//! The Socket.IO server: settings, the namespace registry, and the glue that
//! makes it an Engine.IO [`Handler`](engineio::Handler).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::client::{Client, ClientConnection};
use crate::namespace::{Namespace, NamespaceHandler};
use crate::recovery::{MemoryStore, RecoveryConfig, SessionStore};

/// Socket.IO settings. Defaults are the reference server's.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// How long a new connection has to join a namespace before it is closed.
    pub connect_timeout: Duration,
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
    /// Bounds on the per-namespace event counters.
    pub stats: crate::stats::StatsConfig,
    /// Events one socket may have waiting behind a handler that has not
    /// finished; one more closes the connection (the client reconnects),
    /// so a client cannot grow the server's memory without bound.
    pub max_pending_events: usize,
    /// Bytes (arguments' JSON text and attachments) of the events one
    /// socket may have waiting behind a handler that has not finished; an
    /// event that would pass it closes the connection, as one event past
    /// `max_pending_events` does. An event that finds the queue empty is
    /// always queued, whatever its size (it is already bounded by the
    /// engine's `max_payload`), so any bound lets one event wait.
    pub max_pending_bytes: usize,
    /// Bytes (header and attachments) one packet may hold while it waits
    /// for its binary attachments; past it the connection is closed
    /// (`parse error`). The engine's `max_payload` is a sane value.
    pub max_attachment_bytes: usize,
    /// How long a packet may wait for its binary attachments; past it the
    /// connection is closed (`parse error`).
    pub attachment_timeout: Duration,
    /// CONNECT packets per second one connection may send, whatever their
    /// namespace, failing ones included (each may verify a signature), and
    /// events that cost as much ([`Socket::admit_costly`](crate::Socket::admit_costly));
    /// 0 turns the limit off. A connection over it is closed.
    pub connects_per_sec: f64,
    /// CONNECTs a connection may send at once (a client opening its
    /// namespaces), before `connects_per_sec` applies.
    pub connect_burst: f64,
    /// Makes each namespace's adapter: in memory (one node) by default, a
    /// cluster adapter when the nodes share a bus.
    pub adapter: crate::adapter::AdapterFactory,
    /// Connection state recovery (see [`crate::recovery`]); on by default,
    /// off with a zero window. An adapter whose `broadcast_event` does not
    /// deliver through [`Namespace::deliver_event`](crate::Namespace::deliver_event)
    /// (the default does) sends events without offsets: run it with
    /// recovery off.
    pub recovery: RecoveryConfig,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            connect_timeout: Duration::from_secs(45),
            max_attachments: 10,
            stats: crate::stats::StatsConfig::default(),
            max_pending_events: 1024,
            max_pending_bytes: 4 << 20,
            max_attachment_bytes: 1_000_000,
            attachment_timeout: Duration::from_secs(30),
            connects_per_sec: 5.0,
            connect_burst: 20.0,
            adapter: crate::adapter::AdapterFactory::default(),
            recovery: RecoveryConfig::default(),
        }
    }
}

pub(crate) struct ServerInner {
    pub(crate) config: SocketIoConfig,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    /// Where recovery keeps sessions and packets, when it is on.
    store: Option<Arc<dyn SessionStore>>,
}

impl ServerInner {
    pub(crate) fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.read().get(name).cloned()
    }
}

/// A Socket.IO server. Cloning shares it. Mount it with
/// `engineio::Engine::new(config, io.clone())`.
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<ServerInner>,
}

impl SocketIo {
    /// A server with no namespace yet. With recovery on
    /// (`config.recovery`), its sessions and packets are kept in the
    /// adapters' store when they have one (a cluster's), else in memory
    /// ([`MemoryStore`]).
    pub fn new(config: SocketIoConfig) -> SocketIo {
        let store = config.recovery.enabled().then(|| {
            if let Some(store) = config.adapter.session_store() {
                return store.clone();
            }
            let store = Arc::new(MemoryStore::new(config.recovery));
            store.spawn_pruning();
            store as Arc<dyn SessionStore>
        });
        SocketIo::with_store(config, store)
    }

    /// A server whose recovery keeps sessions and packets in `store` (a
    /// cluster's), or that recovers nothing (`None`), whatever
    /// `config.recovery` says.
    pub fn with_store(config: SocketIoConfig, store: Option<Arc<dyn SessionStore>>) -> SocketIo {
        SocketIo {
            inner: Arc::new(ServerInner {
                config,
                namespaces: RwLock::new(HashMap::new()),
                store,
            }),
        }
    }

    /// The recovery store, when recovery is on.
    pub fn session_store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.inner.store.as_ref()
    }

    /// Adds a namespace owned by `handler` (replacing one of the same name).
    pub fn add_namespace(&self, name: &str, handler: impl NamespaceHandler) -> Arc<Namespace> {
        self.add_namespace_arc(name, Arc::new(handler))
    }

    /// Adds a namespace owned by a shared handler.
    pub fn add_namespace_arc(
        &self,
        name: &str,
        handler: Arc<dyn NamespaceHandler>,
    ) -> Arc<Namespace> {
        let ns = Arc::new(Namespace::new(
            name.to_owned(),
            handler,
            &self.inner.config,
            self.inner.store.clone(),
        ));
        ns.adapter().init(&ns);
        self.inner
            .namespaces
            .write()
            .insert(name.to_owned(), ns.clone());
        ns
    }

    /// A namespace by name.
    pub fn of(&self, name: &str) -> Option<Arc<Namespace>> {
        self.inner.namespace(name)
    }

    /// Every namespace.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.inner.namespaces.read().values().cloned().collect()
    }
}

impl engineio::Handler for SocketIo {
    fn on_open(
        &self,
        socket: &Arc<engineio::Socket>,
        request: &http::request::Parts,
    ) -> Arc<dyn engineio::Connection> {
        let query = request.uri.query().unwrap_or("");
        let client = Client::new(socket.clone(), self.inner.clone(), query);
        if client.is_v3() {
            client.connect_implicitly();
        }
        Arc::new(ClientConnection(client))
    }
}
