//! The ESN hub on top of [`socketio`]: who a client is, which component owns
//! which namespace, and what backend services publish.
//!
//! # Layout
//!
//! Four layers, the arrows running one way (a test, `layering.rs`, fails
//! on a wrong one): the components and the publish API know the services,
//! the services know the core, and only the assembly knows them all.
//!
//! The core:
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
//! - [`error`]: [`HubError`](error::HubError), what a client is refused or
//!   failed with.
//! - [`limits`]: what one socket may ask of a component namespace (event
//!   rate, rooms).
//! - [`tasks`]: background work that stops with the hub.
//! - [`peers`]: what the components do when another node of the cluster
//!   stops.
//! - [`clock`]: the time, in Unix milliseconds.
//! - [`signature`]: the HMAC signature of each request to a backend.
//! - [`query`]: percent-decoding of query values and path segments.
//! - [`contract`]: a component's events as data (payload and ack schemas
//!   from the types that carry them), which the binary renders as JSON
//!   Schema and TypeScript.
//! - [`store`]: the SQL store (SQLite by default, PostgreSQL by URL), its
//!   embedded migrations, and query latency.
//!
//! The services ([`services`]): what several components and the publish
//! API call — notifications and presence as services — and the
//! [`Context`](services::Context) a component is built with.
//!
//! The components ([`components`]), one folder each, none knowing another:
//! `notifications`, `chat`, `presence`, `calls` (the ESN's: logic, SQL in
//! `store.rs`, tests; live state behind a trait of their own with an
//! in-memory implementation, which the cluster backs with Redis; their
//! migrations are `migrations/{sqlite,postgres}/*_<component>.sql`), and
//! `pubsub` and `proxy`. Each ESN component's `contract.rs` lists its
//! events; [`assembly::contracts`] collects them. Beside them, [`backend_api`]: what backend
//! services ask through the publish API (publish to users, rooms or a
//! namespace; disconnect a user; presence; room sizes).
//!
//! The assembly:
//! - [`config`]: the hub's configuration, plain data ([`HubConfig`]).
//! - [`assembly`]: builds the [`Hub`] from it: the store, the token
//!   verifier, every namespace with its handler (the hub's components or
//!   [`Handlers`] the embedding program provides), wrapped in one order.

pub mod assembly;
pub mod auth;
pub mod backend_api;
pub mod clock;
pub mod component;
pub mod components;
pub mod config;
pub mod contract;
pub mod error;
pub mod identity;
pub mod jwks;
pub mod limits;
pub mod peers;
pub mod query;
pub mod services;
pub mod signature;
pub mod store;
pub mod tasks;

pub use assembly::{Handlers, Hub, StartError};
pub use config::{
    BackendConfig, ComponentsConfig, HubConfig, IdentityConfig, LiveConfig, NamespaceConfig,
};

#[cfg(test)]
mod layering;
