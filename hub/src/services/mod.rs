//! The services: what several components, and the publish API, call —
//! notifications and presence as services (distinct from the components
//! that serve their namespaces) — and [`Context`], the services a
//! component is built with.
//!
//! A service knows the core (store, auth rooms, tasks, the clock), never a
//! component.

mod context;
pub mod notifications;
pub mod presence;

pub use context::Context;
