//! Switchboard's cluster layer: N nodes sharing a Redis, speaking the wire
//! format of Node's `@socket.io/redis-adapter` 8.x byte for byte, so that a
//! Node service with `@socket.io/redis-emitter` (or a Node socket.io node
//! with the Redis adapter) emits through Switchboard unchanged.
//!
//! It depends on `socketio` (the [`Adapter`](socketio::Adapter) trait it
//! implements) and knows nothing of the hub's components: a user's room
//! `user:<id>` is a room like any other here.
//!
//! # How a broadcast crosses the cluster
//!
//! `BroadcastOperator::emit` calls [`RedisAdapter`]'s `broadcast_event`,
//! which hands the event to the bus (a bounded queue, never waiting) and
//! delivers it to this node's sockets at once, as on one node. The
//! publisher task encodes it as `[uid, packet, opts]` in MessagePack and
//! PUBLISHes it on `<prefix>#<nsp>#` (or `<prefix>#<nsp>#<room>#` for one
//! room): once per node, whatever the number of sockets. Every node
//! PSUBSCRIBEs `<prefix>#<nsp>#*`; the subscriber decodes each message
//! (its own, recognized by the uid, is left unread past that), encodes the
//! Socket.IO packet once, and the namespace's `LocalAdapter` queues it to
//! the matching sockets — rooms, `except` and socket ids as rooms work as
//! in the Node adapter.
//!
//! # Asking the other nodes
//!
//! The request channel `<prefix>-request#<nsp>#` carries what one node
//! asks of every other's sockets (the Node adapter's fetchSockets,
//! allRooms, socketsJoin, disconnectSockets, serverSideEmit, broadcasts
//! with acks; the emitter's socketsJoin, socketsLeave, disconnectSockets),
//! and the response channels the answers. Every node SUBSCRIBEs them, so a
//! Node node counts and asks Switchboard nodes like its own, and
//! [`Cluster`]'s `fetch_sockets`, `all_rooms`, `room_sizes`, … ask Node
//! nodes too. An answer that lacks a node's part after `request_timeout`
//! comes back partial and says so ([`Answer`]).
//!
//! # Sharded pub/sub
//!
//! With [`PubSub::Sharded`](config::PubSub) the same tasks speak the
//! format of the Node package's `createShardedAdapter` ([`sharded`]):
//! SPUBLISH on `<prefix>#<nsp>#` (or a room's own channel in dynamic
//! mode), SSUBSCRIBE of it and of this node's answers channel, requests
//! and answers on the same channels. redis-rs's multiplexed connection has
//! no `ssubscribe`: the subscriber sends the raw commands (an SSUBSCRIBE's
//! one confirmation is its reply; a SUNSUBSCRIBE's is dropped by redis-rs
//! 1.8, so a PING behind it is what is awaited) and reads `smessage`
//! pushes. Heartbeats stay on classic pub/sub; recovery is refused (its
//! log publishes the classic format).
//!
//! # Choices
//!
//! - **The Redis client is redis-rs** (crate `redis` 1.x, actively
//!   released), on its multiplexed async connection: RESP3 pushes reach a
//!   callback of ours as the connection reads them. Its `ConnectionManager`
//!   reconnects and, with RESP3, resubscribes — but it forwards pushes
//!   through an unbounded channel and does not say when it is connected
//!   again; fred resubscribes only through `manage_subscriptions()` and
//!   its last release is older. So this crate keeps the two connections
//!   itself (`publisher`, `subscriber`): it knows at every moment whether
//!   each works (`/readyz`), resubscribes every pattern before it counts
//!   as up, and nothing between Redis and the sockets buffers without
//!   bound.
//! - **Publishing never waits and never drops silently.** Emitting is
//!   synchronous and fast (a broadcast is queued to local sockets without
//!   an await), so the bus publish is a `try_send` on a queue bounded in
//!   messages (`publish_queue`) and bytes (`publish_queue_bytes`). When it
//!   is full — Redis down or slower than the node for that long — the
//!   broadcast is still delivered on this node, its publish is dropped,
//!   counted (`switchboard_cluster_publish_dropped_total`) and logged (at
//!   most every 10 s, with the number held back). Blocking the emitter
//!   instead would stall the socket handler or API request that emits,
//!   and with it every socket behind it: a Redis outage would become a
//!   node outage. What waits in the queue is published, in order, once
//!   the connection is back. A pipeline that fails mid-way is counted and
//!   not sent again (Redis pub/sub is at most once; a resend could
//!   deliver twice). An emitter that must know (the chat, before it acks
//!   a change) asks for a completion instead of waiting on the queue:
//!   it hears when Redis took the broadcast, or that it did not, and its
//!   client retries; a marker set by the publishing script makes a
//!   publish and its retry race to one (`confirmed`).
//! - **Receiving holds Redis back rather than buffering.** A message is
//!   decoded and delivered on the subscriber connection's task as it is
//!   read; a node that cannot keep up stops reading, and Redis's own
//!   `client-output-buffer-limit pubsub` bounds what waits (Redis then
//!   closes the connection, which is reopened and counted). Malformed
//!   messages are counted and logged, never a panic.
//!
//! # Layout
//!
//! - [`config`]: [`ClusterConfig`], every bound of the bus, TLS to Redis;
//!   [`check_url`], [`check`].
//! - `bus`: [`Cluster`] (start, health, stats, close) and what the
//!   adapters and tasks share: the uid, the publish queue, the namespaces
//!   that receive, inbound delivery.
//! - `adapter`: [`RedisAdapter`], a namespace's adapter.
//! - `publisher`: the task draining the queue into PUBLISH pipelines.
//! - `confirmed`: broadcasts whose emitter waits for their publication,
//!   and publication at most once under a key.
//! - `subscriber`: the task holding the subscribing connection.
//! - `remote`: requests between nodes, served and sent; [`Answer`].
//! - `nodes`: the other Switchboard nodes, by heartbeats; whether this
//!   node was silent itself past the timeout, and its rejoining.
//! - [`request`]: the requests' and answers' wire format.
//! - [`wire`]: the Node adapter's message format and channels.
//! - [`sharded`]: the sharded adapter's (`cluster.pubsub = "sharded"`):
//!   Redis 7's SPUBLISH/SSUBSCRIBE in socket.io-adapter's `ClusterAdapter`
//!   format, read into the same requests and broadcasts.
//! - [`msgpack`]: MessagePack as notepack.io writes and reads it.
//! - [`stats`]: the counters, for `/metrics`.
//! - [`recovery`]: connection state recovery's log and sessions in Redis.
//! - `error`: [`ClusterError`].

mod adapter;
mod bus;
pub mod config;
mod confirmed;
mod error;
pub mod msgpack;
mod nodes;
mod publisher;
pub mod recovery;
mod remote;
pub mod request;
pub mod sharded;
pub mod stats;
mod subscriber;
pub mod wire;

pub use adapter::RedisAdapter;
pub use bus::{Cluster, Health};
pub use config::{ClusterConfig, check, check_url};
pub use error::ClusterError;
pub use remote::{Answer, Rejoin, RemoteSocket, Reply, ServerSideEvent};
pub use stats::StatsSnapshot;

/// The Redis client this crate speaks through, for the state kept in
/// Redis beside the bus ([`Cluster::connection`]).
pub use redis;
