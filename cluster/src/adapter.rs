//! [`RedisAdapter`]: a namespace's adapter in a cluster. Rooms are this
//! node's, kept by a [`LocalAdapter`]; an emit is delivered here at once,
//! as on one node, and handed to the bus for the other nodes (unless it
//! is `local`); what the other nodes publish comes back through the bus to
//! the same `LocalAdapter`.

use std::sync::Arc;

use parking_lot::Mutex;
use socketio::{
    Adapter, Args, BroadcastOptions, Delivery, Encoded, LocalAdapter, Namespace, Once, Published,
    Room, Socket,
};

use crate::bus::Shared;
use crate::confirmed::Confirmed;
use crate::wire::Outbound;

/// A namespace's adapter on the Redis bus.
pub struct RedisAdapter {
    nsp: Room,
    local: Arc<LocalAdapter>,
    shared: Arc<Shared>,
    /// The bus registration, once `init` has run.
    token: Mutex<Option<u64>>,
    /// Rooms have channels of their own (dynamic sharded mode): their
    /// creation and deletion here are told to the subscriber.
    room_channels: bool,
}

impl RedisAdapter {
    pub(crate) fn new(nsp: &str, shared: Arc<Shared>) -> RedisAdapter {
        RedisAdapter {
            nsp: Room::from(nsp),
            local: Arc::new(LocalAdapter::default()),
            room_channels: shared.config.dynamic_rooms(),
            shared,
            token: Mutex::new(None),
        }
    }
}

impl Adapter for RedisAdapter {
    fn add_all(&self, ns: &Namespace, socket: &Arc<Socket>, rooms: &[Room]) {
        if !self.room_channels {
            return self.local.add_all(ns, socket, rooms);
        }
        // A room this join creates here gets its channel (the Node
        // adapter's "create-room"): noted in a set, the subscribing is the
        // subscriber task's.
        self.local.join(socket, rooms, |room| {
            self.shared.room_touched(&self.nsp, room)
        });
    }

    fn del(&self, ns: &Namespace, socket: &Socket, room: &str) {
        if !self.room_channels {
            return self.local.del(ns, socket, room);
        }
        if self.local.leave(socket, room) {
            // "delete-room": its channel goes.
            self.shared.room_touched(&self.nsp, &Room::from(room));
        }
    }

    fn del_all(&self, ns: &Namespace, socket: &Socket) -> Vec<Room> {
        if !self.room_channels {
            return self.local.del_all(ns, socket);
        }
        self.local
            .leave_all(socket, |room| self.shared.room_touched(&self.nsp, room))
    }

    fn rooms_of(&self, ns: &Namespace, socket: &Socket) -> Vec<Room> {
        self.local.rooms_of(ns, socket)
    }

    fn sockets(&self, ns: &Namespace, opts: &BroadcastOptions) -> Vec<Arc<Socket>> {
        self.local.sockets(ns, opts)
    }

    /// An encoded packet reaches this node's sockets only: the bus carries
    /// the packet object, which an encoding no longer gives
    /// ([`broadcast_event`](Adapter::broadcast_event) is the emit that
    /// crosses nodes).
    fn broadcast(&self, ns: &Namespace, packet: &Encoded, opts: &BroadcastOptions) -> usize {
        self.local.broadcast(ns, packet, opts)
    }

    fn broadcast_event(
        &self,
        ns: &Namespace,
        event: &str,
        args: &Args,
        opts: &BroadcastOptions,
    ) -> Delivery {
        if !opts.local && !opts.volatile && ns.logs_through_adapter() {
            // Recoverable: logged and published by one script, and
            // delivered here too once it is back from the bus with its
            // offset (the order of the log is the bus's). Its recipients
            // here are found then; an emitter that answers with a count
            // asks for it (`Emitted::recipients`).
            self.shared
                .publish_logged(Outbound::new(self.nsp.clone(), event, args, opts));
            return Delivery::FromBus;
        }
        if !opts.local {
            // Queued before the local delivery, as the Node adapter
            // publishes before it delivers: the other nodes start sooner.
            self.shared
                .publish(Outbound::new(self.nsp.clone(), event, args, opts));
        }
        Delivery::Now(
            self.local
                .broadcast(ns, &Encoded::event(ns.name(), event, args, None), opts),
        )
    }

    /// Queued as [`broadcast_event`](Adapter::broadcast_event) queues it,
    /// with a completion fired when Redis answered the command that
    /// published it (waited for at most `command_timeout`). Published
    /// once, it is delivered here from the bus too, as a logged one is.
    fn broadcast_event_published(
        &self,
        ns: &Namespace,
        event: &str,
        args: &Args,
        opts: &BroadcastOptions,
        once: Option<&Once>,
    ) -> (Delivery, Published) {
        if opts.local {
            return (
                self.broadcast_event(ns, event, args, opts),
                Published::done(),
            );
        }
        let logged = !opts.volatile && ns.logs_through_adapter();
        let (done, published) = Published::channel(self.shared.config.command_timeout);
        let message = Outbound::new(self.nsp.clone(), event, args, opts);
        let prefix = &self.shared.config.key_prefix;
        self.shared
            .publish_confirmed(Confirmed::new(message, logged, once, prefix, done));
        let delivery = if logged || once.is_some() {
            Delivery::FromBus
        } else {
            Delivery::Now(self.local.broadcast(
                ns,
                &Encoded::event(ns.name(), event, args, None),
                opts,
            ))
        };
        (delivery, published)
    }

    fn init(&self, ns: &Arc<Namespace>) {
        let token = self.shared.register(&self.nsp, ns, self.local.clone());
        *self.token.lock() = Some(token);
    }
}

impl Drop for RedisAdapter {
    fn drop(&mut self) {
        if let Some(token) = self.token.lock().take() {
            self.shared.unregister(&self.nsp, token);
        }
    }
}
