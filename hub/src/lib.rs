//! The ESN hub on top of [`socketio`]: who a client is, which component owns
//! which namespace, and what backend services publish.
//!
//! # Layout
//!
//! - [`config`]: the hub's configuration, plain data ([`HubConfig`]).
//! - [`assembly`]: builds the [`Hub`] from it: the store, the token
//!   verifier, every namespace with its handler (the hub's components or
//!   [`Handlers`] the embedding program provides), wrapped in one order.
//! - [`identity`]: JWT verification (HS256, RS256 key or JWKS; `exp`,
//!   `nbf`, `iss`, `aud`), development tokens and the development secret.
//! - [`jwks`]: JSON Web Key Sets, from a file or fetched from the identity
//!   provider and kept fresh (periodically, and on an unknown `kid`).
//! - [`auth`]: the connect middleware, `user:<id>` rooms, `refresh`, and the
//!   sweep that disconnects expired sockets.
//! - [`component`]: the [`Component`](component::Component) trait a feature
//!   implements (its events, its subscriptions, each socket's `on_connect`
//!   and `on_disconnect`), and `component/runner.rs`, which runs one as a
//!   namespace handler: `{ok, error}` acks, authorized `subscribe` /
//!   `unsubscribe`, the `{room, data}` envelope.
//! - [`pubsub`]: `PubSub`, a generic publish/subscribe component.
//! - [`limits`]: what one socket may ask of a component namespace (event
//!   rate, rooms).
//! - [`proxy`]: proxy namespaces, owned by an HTTP backend.
//! - [`signature`]: the HMAC signature of each request to a backend.
//! - [`backend_api`]: what backend services ask through the publish API
//!   (publish to users, rooms or a namespace; disconnect a user; presence;
//!   room sizes).
//! - [`metrics`]: the Prometheus text format.
//! - [`query`]: percent-decoding of query values and path segments.
//! - [`store`]: the SQL store (SQLite by default, PostgreSQL by URL), its
//!   embedded migrations, and query latency.

pub mod assembly;
pub mod auth;
pub mod backend_api;
pub mod component;
pub mod config;
pub mod identity;
pub mod jwks;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod pubsub;
pub mod query;
pub mod signature;
pub mod store;

pub use assembly::{Handlers, Hub, StartError};
pub use config::{BackendConfig, HubConfig, IdentityConfig, NamespaceConfig};
