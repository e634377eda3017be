//! Broadcast operators: `ns.to(room).except(other).volatile().emit(…)`.
//! The packet is encoded once; every recipient's queue shares its bytes.

use std::sync::Arc;

use crate::adapter::{BroadcastOptions, Delivery, Once, Published};
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

    /// Emits (to every node, through a cluster adapter); what it returns
    /// tells how many of this node's sockets it reaches, when asked.
    pub fn emit(&self, event: &str, args: &Args) -> Emitted<'_> {
        let delivery = self
            .ns
            .adapter()
            .broadcast_event(&self.ns, event, args, &self.opts);
        self.count(event, delivery);
        Emitted { op: self, delivery }
    }

    /// Emits as [`emit`](Self::emit) does, and says when the other nodes
    /// have it (at once on one node): for an emitter that answers its
    /// client only once every node can deliver. With `once`, published at
    /// most once by the cluster under its key (see [`Once`]). Only these
    /// callers pay for the wait; `emit` is unchanged.
    pub fn emit_published(&self, event: &str, args: &Args, once: Option<&Once>) -> Published {
        let (delivery, published) = self
            .ns
            .adapter()
            .broadcast_event_published(&self.ns, event, args, &self.opts, once);
        self.count(event, delivery);
        published
    }

    /// Counts what was queued here; what comes back from the bus is
    /// counted where it is delivered.
    fn count(&self, event: &str, delivery: Delivery) {
        if let Delivery::Now(count) = delivery {
            let stats = self.ns.stats();
            stats.events_out.add(event, count as u64);
            stats.fanout.observe(count as f64);
        }
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

/// What [`BroadcastOperator::emit`] did on this node.
#[derive(Debug)]
pub struct Emitted<'a> {
    op: &'a BroadcastOperator,
    delivery: Delivery,
}

impl Emitted<'_> {
    /// How many of this node's sockets the event was queued for; or, when
    /// it is delivered here from the bus ([`Delivery::FromBus`]), how
    /// many it will reach: the sockets in its rooms now, found on this
    /// call (a walk of the rooms that the emit itself no longer makes, so
    /// that only an emitter answering with the count pays for it).
    pub fn recipients(&self) -> usize {
        match self.delivery {
            Delivery::Now(count) => count,
            Delivery::FromBus => self.op.sockets().len(),
        }
    }
}
