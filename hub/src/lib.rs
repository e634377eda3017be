//! The ESN hub on top of [`socketio`]: who a client is, which component owns
//! which namespace, and what backend services publish.
//!
//! Being built (issue 4); so far:
//!
//! # Layout
//!
//! - [`identity`]: JWT verification (HS256, RS256 key or JWKS), development
//!   tokens and the development secret.
//! - [`auth`]: the connect middleware, `user:<id>` rooms, `refresh`, and the
//!   sweep that disconnects expired sockets.
//! - [`metrics`]: the Prometheus text format.

pub mod auth;
pub mod identity;
pub mod metrics;
