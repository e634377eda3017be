//! The hub's components, one folder each: an ESN feature owning a
//! namespace ([`Component`](crate::component::Component)). A component
//! knows the core and the services ([`crate::services`]), never another
//! component: what two of them share is a service.
//!
//! - [`notifications`]: a user's notifications (`list`, `read`, …).
//! - [`chat`]: conversations, messages, history, typing, read marks.
//! - [`presence`]: who is online, watched by other users.
//! - [`calls`]: WebRTC call signalling and TURN credentials.
//! - [`pubsub`]: a generic publish/subscribe component.
//! - [`proxy`]: a namespace owned by an HTTP backend.
//!
//! [`kit`] holds what they all do the same way (reading arguments,
//! answering, emitting to a list of users).

pub mod calls;
pub mod chat;
pub mod kit;
pub mod notifications;
pub mod presence;
pub mod proxy;
pub mod pubsub;
