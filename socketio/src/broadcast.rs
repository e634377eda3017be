//! Broadcast operators: `ns.to(room).except(other).volatile().emit(…)`.
//! The packet is encoded once; every recipient's queue shares its bytes.

use std::sync::Arc;

use crate::adapter::{BroadcastOptions, Once, Published};
use crate::namespace::Namespace;
use crate::packet::Args;
use crate::socket::{Room, Socket, SocketId};

/// A broadcast being built.
#[derive(Debug, Clone)]
pub struct BroadcastOperator {
    ns: Arc<Namespace>,
    opts: BroadcastOptions,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Arc<Namespace>) -> BroadcastOperator {
        BroadcastOperator {
            ns,
            opts: BroadcastOptions::default(),
        }
    }

    /// Also reach the sockets in `room`.
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        self.opts.rooms.push(room.into());
        self
    }

    /// Leave out the sockets in `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        self.opts.except.push(room.into());
        self
    }

    /// Leave out one socket.
    pub fn except_socket(mut self, id: SocketId) -> Self {
        self.opts.except_socket = Some(id);
        self
    }

    /// Drop the packet for sockets that are behind.
    pub fn volatile(mut self) -> Self {
        self.opts.volatile = true;
        self
    }

    /// This node's sockets only (a cluster adapter does not publish it).
    pub fn local(mut self) -> Self {
        self.opts.local = true;
        self
    }

    /// Emits (to every node, through a cluster adapter); returns how many
    /// of this node's sockets it was queued for.
    pub fn emit(&self, event: &str, args: &Args) -> usize {
        let count = self
            .ns
            .adapter()
            .broadcast_event(&self.ns, event, args, &self.opts);
        self.count(event, count);
        count
    }

    /// Emits as [`emit`](Self::emit) does, and says when the other nodes
    /// have it (at once on one node): for an emitter that answers its
    /// client only once every node can deliver. With `once`, published at
    /// most once by the cluster under its key (see [`Once`]). Only these
    /// callers pay for the wait; `emit` is unchanged.
    pub fn emit_published(&self, event: &str, args: &Args, once: Option<&Once>) -> Published {
        let (count, published) = self
            .ns
            .adapter()
            .broadcast_event_published(&self.ns, event, args, &self.opts, once);
        self.count(event, count);
        published
    }

    fn count(&self, event: &str, count: usize) {
        let stats = self.ns.stats();
        stats.events_out.add(event, count as u64);
        stats.fanout.observe(count as f64);
    }

    /// The sockets of this node this broadcast reaches (other nodes' are
    /// not asked yet).
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.ns.adapter().sockets(&self.ns, &self.opts)
    }

    /// Makes the sockets of this node reached join `room`.
    pub fn join(&self, room: impl Into<Room>) {
        let room = room.into();
        for socket in self.sockets() {
            socket.join(room.clone());
        }
    }

    /// Disconnects the sockets of this node reached from the namespace.
    pub fn disconnect(&self) {
        for socket in self.sockets() {
            socket.disconnect();
        }
    }
}
