//! The hub's configuration: plain data, built by the program that embeds
//! the hub from whatever format it reads (the `switchboard` binary: TOML
//! and environment variables). [`Hub::new`](crate::Hub::new) assembles the
//! hub from it.

use std::time::Duration;

use crate::limits::Limits;
use crate::store::StoreConfig;

pub use crate::identity::IdentityConfig;

/// Everything the hub is built from.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The SQL store.
    pub store: StoreConfig,
    /// How clients' tokens are verified.
    pub identity: IdentityConfig,
    /// What each socket of a component namespace may ask.
    pub limits: Limits,
    /// The Socket.IO server's settings.
    pub socketio: socketio::SocketIoConfig,
    /// The namespaces, each with the handler that owns it.
    pub namespaces: Vec<NamespaceConfig>,
    /// The settings of the hub's ESN components.
    pub components: ComponentsConfig,
    /// Where the live state is kept: this process, or a cluster's store.
    pub live: LiveConfig,
}

/// Where the hub keeps its live state (who is online, …): in this
/// process's memory (one node: the default), or in what a cluster shares
/// (the embedding program's Redis-backed implementations of the state
/// traits).
#[derive(Clone, Default)]
pub struct LiveConfig {
    /// This node's id in the cluster, which the entries of its devices
    /// name (they are dropped with it); `None`: a random one, alone.
    pub node: Option<String>,
    /// The presence state every node shares; `None`: in memory.
    pub presence: Option<std::sync::Arc<dyn crate::services::presence::PresenceState>>,
    /// Chat's typing state, with what the cluster must know of it (whose
    /// indicators a stopped node leaves shown); `None`: in memory.
    pub typing: Option<std::sync::Arc<dyn crate::components::chat::state::TypingState>>,
    /// The calls state every node shares; `None`: in memory.
    pub calls: Option<std::sync::Arc<dyn crate::components::calls::CallState>>,
    /// The token buckets every node shares, so that the per-user bounds
    /// (chat's writes, members added and typing, presence's status,
    /// calls' invitations) hold across the cluster; `None`: each node's
    /// own.
    pub rates: Option<std::sync::Arc<dyn crate::limits::SharedBuckets>>,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("node", &self.node)
            .field("presence", &self.presence.as_ref().map(|_| "shared"))
            .field("typing", &self.typing.as_ref().map(|_| "shared"))
            .field("calls", &self.calls.as_ref().map(|_| "shared"))
            .field("rates", &self.rates.as_ref().map(|_| "shared"))
            .finish()
    }
}

/// The settings of each ESN component (whichever namespace it serves).
#[derive(Debug, Clone, Default)]
pub struct ComponentsConfig {
    pub notifications: crate::services::notifications::NotificationsConfig,
    pub chat: crate::components::chat::ChatConfig,
    pub presence: crate::components::presence::PresenceConfig,
    pub calls: crate::components::calls::CallsConfig,
}

/// One namespace.
#[derive(Debug, Clone)]
pub struct NamespaceConfig {
    /// Its name, starting with `/`.
    pub name: String,
    /// What owns it: a component of the hub (`notifications`, `chat`,
    /// `presence`, `calls`, `pubsub`, `proxy`) or a
    /// handler the embedding program provides by that name
    /// ([`Handlers`](crate::Handlers)).
    pub handler: String,
    /// Whether clients must present a valid token.
    pub auth: bool,
    /// The HTTP backend of a `proxy` namespace.
    pub backend: Option<BackendConfig>,
}

/// The HTTP backend that owns a proxy namespace.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Its URL (`http://…`).
    pub url: String,
    /// How long one request to it may take.
    pub timeout: Duration,
    /// The secret each request is signed with ([`crate::signature`]);
    /// `None`: unsigned, with a warning at start.
    pub secret: Option<String>,
}
