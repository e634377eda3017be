//! The presence service: who is online, their status and their devices,
//! as every part of the hub reads it — the `/presence` component, which
//! writes it as devices come and go, the other components, and the publish
//! API's `GET /api/v1/presence`.
//!
//! Modules: `state.rs` the live state behind a trait (Redis in the
//! cluster), `service.rs` the reads and writes over the state and the
//! store ([`PresenceService`]), `store.rs` the SQL (chosen status,
//! `last_seen`), `store_tests.rs` the service's stored part on SQLite and
//! PostgreSQL.

pub mod service;
pub mod state;
mod store;
#[cfg(test)]
mod store_tests;

pub use service::PresenceService;
pub use state::{MemoryState, PresenceState, Status, UserPresence};
