//! Switchboard: the realtime hub of an enterprise social network.
//!
//! # Layout
//!
//! - [`api`]: the publish API over HTTP (`/api/v1/…`).
//! - [`config`]: the TOML configuration and its `SWITCHBOARD_*` overrides.
//! - [`server`]: the listener, request routing and graceful shutdown.
//! - [`handlers`]: protocol-level namespace handlers (conformance echo, interop test kit).

pub mod api;
pub mod config;
pub mod handlers;
pub mod server;
