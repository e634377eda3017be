//! The hub's configuration: plain data, built by the program that embeds
//! the hub from whatever format it reads (the `switchboard` binary: TOML
//! and environment variables). [`Hub::new`](crate::Hub::new) assembles the
//! hub from it.

use std::path::PathBuf;
use std::time::Duration;

use crate::identity::ClaimRules;
use crate::jwks::JwksSource;
use crate::limits::Limits;
use crate::store::StoreConfig;

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
}

/// The settings of each ESN component (whichever namespace it serves).
#[derive(Debug, Clone, Default)]
pub struct ComponentsConfig {
    pub notifications: crate::notifications::NotificationsConfig,
    pub chat: crate::chat::ChatConfig,
    pub presence: crate::presence::PresenceConfig,
    pub calls: crate::calls::CallsConfig,
}

/// The keys tokens are verified with, and what their claims must say. With
/// no key at all, the development secret kept in `data_dir` is used (with a
/// warning).
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// An HS256 shared secret.
    pub hs256_secret: Option<String>,
    /// An RS256 public key, PEM file.
    pub rs256_public_key_file: Option<PathBuf>,
    /// RS256 keys, JWKS file (chosen by the token's `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Where the development secret is kept (`dev-secret`).
    pub data_dir: PathBuf,
    /// RS256 keys fetched from the identity provider, kept fresh.
    pub jwks_url: Option<JwksSource>,
    /// What the claims must say (`iss`, `aud`, leeway).
    pub claims: ClaimRules,
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
