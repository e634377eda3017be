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
//! - [`context`]: what a component is built with: the store, the server
//!   (emit to any namespace and room), the notifications service, and
//!   background tasks that stop with the hub.
//! - The ESN components, one folder each (logic, SQL in `store.rs`, tests):
//!   [`notifications`], [`chat`], [`presence`], [`calls`]. Each keeps its
//!   live state behind a trait of its own with an in-memory implementation
//!   (the cluster backs it with Redis); their migrations are
//!   `migrations/{sqlite,postgres}/*_<component>.sql`.
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
pub mod calls;
pub mod chat;
pub mod component;
pub mod config;
pub mod context;
pub mod identity;
pub mod jwks;
pub mod limits;
pub mod metrics;
pub mod notifications;
pub mod presence;
pub mod proxy;
pub mod pubsub;
pub mod query;
pub mod signature;
pub mod store;

pub use assembly::{Handlers, Hub, StartError};
pub use config::{BackendConfig, ComponentsConfig, HubConfig, IdentityConfig, NamespaceConfig};
