//! Socket.IO v5 server on top of [`engineio`].
//!
//! It owns the packet codec (binary attachments included), namespaces,
//! sockets, rooms, acks and broadcasts, and the [`Adapter`] trait with its
//! in-memory implementation. It knows nothing of users, components or storage:
//! a namespace is owned by a [`NamespaceHandler`].
//!
//! # Layout
//!
//! - [`packet`]: packet codec; [`Args`], event arguments as raw JSON.
//! - [`server`]: [`SocketIo`], the namespace registry and Engine.IO glue.
//! - `client`: one per connection, the namespace multiplexer.
//! - [`namespace`]: [`Namespace`], its middleware and handler.
//! - [`socket`]: [`Socket`]: emit, rooms, acks, ordered event handling.
//! - [`broadcast`]: [`BroadcastOperator`] (`to`, `except`, `volatile`, `local`).
//! - [`adapter`]: [`Adapter`], [`LocalAdapter`] and the [`AdapterFactory`]
//!   that gives each namespace its own.
//! - [`recovery`]: connection state recovery: [`SessionStore`] and its
//!   in-memory [`MemoryStore`].
//! - [`stats`]: events in and out by name (bounded), broadcast fan-out.
//! - `budget`: the token bucket of a connection's CONNECTs.

pub mod adapter;
pub mod broadcast;
mod budget;
mod client;
pub mod namespace;
pub mod packet;
pub mod recovery;
pub mod server;
pub mod socket;
pub mod stats;

pub use adapter::{
    Adapter, AdapterFactory, BroadcastOptions, Delivery, LocalAdapter, NotPublished, Once,
    Published,
};
pub use broadcast::{BroadcastOperator, Emitted};
pub use namespace::{ConnectError, ConnectRequest, Middleware, Namespace, NamespaceHandler};
pub use packet::{Args, Encoded};
pub use recovery::{MemoryStore, RecoveryConfig, SessionStore};
pub use server::{SocketIo, SocketIoConfig};
pub use socket::{AckError, AckSender, BoxFuture, DisconnectReason, Event, Room, Socket, SocketId};
