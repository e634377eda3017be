//! Engine.IO v4 server, and v3 beside it with `allow_eio3` (socket.io 1.x
//! and 2.x clients): the transport layer under Socket.IO.
//!
//! It owns the handshake, HTTP long-polling and WebSocket transports, the
//! upgrade from one to the other, heartbeats, the packet codec and
//! `maxPayload`. It knows nothing of namespaces, JSON events or users: a
//! [`Handler`] gets a [`Connection`] per session and receives its messages.
//!
//! # Layout
//!
//! - [`packet`]: packet and payload codec; [`Frame`], the encoded outbound unit.
//! - [`server`]: [`Engine`]: request checks, handshake, error codes, CORS.
//! - [`socket`]: [`Socket`], one session: queue, heartbeat, upgrade, close.
//! - `transports::polling`, `transports::websocket`: moving frames;
//!   `transports::jsonp`: polling as scripts and forms (`j` in the query).
//! - [`config`]: [`EngineConfig`], with the reference server's defaults.
//! - `partial`: the engine-wide budget for incomplete client messages.
//! - [`sid`]: random session ids.
//! - [`admission`]: how many sessions are admitted, in all and per client
//!   address ([`ClientAddr`]), and how fast.

pub mod admission;
pub mod config;
pub mod packet;
mod partial;
pub mod server;
pub mod sid;
pub mod socket;
mod transports;

pub use admission::{AdmissionConfig, AdmissionStats, ClientAddr, IpNet, Refusal};
pub use config::{Cors, EngineConfig};
pub use packet::{Frame, Message, Packet, Protocol, Str};
pub use server::{Body, ConnectionGuard, Engine, EngineStats, ErrorCode, Handler};
pub use sid::LogId;
pub use socket::{CloseReason, Connection, SendError, Socket, Transport};
