//! Switchboard: the realtime hub of an enterprise social network.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration and its `SWITCHBOARD_*` overrides,
//!   turned into the hub's plain configuration.
//! - [`app`]: the hub and the engines wired together.
//! - [`live`]: the hub's live state in Redis, in cluster mode.
//! - [`server`]: the listener and graceful shutdown.
//! - [`routes`]: the HTTP routes beside Engine.IO (health, readiness,
//!   metrics, the API).
//! - [`api`]: the publish API over HTTP (`/api/v1/…`).
//! - [`api_rate`]: its rate per key.
//! - [`openapi`]: its OpenAPI document as a hub serves it, with the
//!   constraints of its configuration.
//! - [`contract`]: the components' event contract as a JSON Schema document
//!   and as TypeScript declarations (`switchboard contract`).
//! - [`dev`]: dev mode's `POST /dev/token` (sign in by name).
//! - [`web`]: the web client served at `/`.
//! - [`metrics`]: the operator metrics, assembled.
//! - [`reply`]: JSON replies and failures of the HTTP routes.
//! - [`handlers`]: protocol-level namespace handlers (conformance echo,
//!   interop test kit, benchmark) provided to the hub.

pub mod api;
pub mod api_rate;
pub mod app;
pub mod config;
pub mod contract;
pub mod dev;
pub mod handlers;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod reply;
pub mod routes;
pub mod server;
pub mod web;
