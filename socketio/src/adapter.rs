//! The adapter: who is in which room, and delivery of a broadcast to them.
//! [`LocalAdapter`] keeps rooms in memory for one node; a cluster adapter
//! (the `cluster` crate's Redis adapter) implements the same trait, wraps a
//! `LocalAdapter` for this node's sockets and publishes each broadcast to
//! the other nodes. [`AdapterFactory`] (in [`SocketIoConfig`](crate::SocketIoConfig))
//! makes each namespace's adapter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::namespace::Namespace;
use crate::packet::{Args, Encoded};
use crate::recovery::SessionStore;
use crate::socket::{Room, Socket, SocketId};

/// Whom a broadcast reaches.
#[derive(Debug, Clone, Default)]
pub struct BroadcastOptions {
    /// The rooms to reach (a socket in several receives once); empty means
    /// every socket of the namespace. A socket id also works as a room.
    pub rooms: Vec<Room>,
    /// Rooms whose sockets are left out.
    pub except: Vec<Room>,
    /// A socket left out (the sender, for `socket.to(room)`).
    pub except_socket: Option<SocketId>,
    /// Drop the packet for sockets that are behind instead of disconnecting them.
    pub volatile: bool,
    /// This node's sockets only: a cluster adapter does not publish it.
    pub local: bool,
}

/// A broadcast that the whole cluster publishes at most once, under
/// `key`: a retry of an operation whose first emission may or may not
/// have left this node (it was killed, or Redis did not answer in time)
/// emits it again with `again`, and only the emission that finds `key`
/// unused reaches anyone.
#[derive(Debug, Clone)]
pub struct Once {
    /// Names the broadcast in its namespace (the application's: a chat
    /// message's conversation and seq, a membership change's kind and
    /// time).
    pub key: String,
    /// How long the cluster remembers that `key` was published (a retry
    /// after that would publish it again).
    pub ttl: Duration,
    /// A retry: on one node, whose first emission was delivered at once
    /// and cannot have been lost, it delivers nothing.
    pub again: bool,
}

/// Why a broadcast was not handed to the other nodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotPublished {
    /// The bus did not take it within the bound (Redis down or slow).
    #[error("the bus did not take the broadcast within {0:?}")]
    Timeout(Duration),
    /// The bus dropped it (its queue full, the publish failed, the node
    /// stopping).
    #[error("the bus dropped the broadcast")]
    Dropped,
}

/// When a broadcast was handed to the other nodes (Redis answered the
/// command that publishes it): what an emitter that answers its client
/// only after the other nodes have it waits for
/// ([`BroadcastOperator::emit_published`](crate::BroadcastOperator::emit_published)).
/// On one node it is ready at once. Several broadcasts of one change
/// (a read receipt to the others and to the reader's devices) are waited
/// for together ([`Published::and`]).
#[derive(Debug)]
#[must_use = "a publication is only known by waiting for it"]
pub struct Published(Vec<(oneshot::Receiver<()>, Duration)>);

impl Published {
    /// Already published (one node: delivered at once).
    pub fn done() -> Published {
        Published(Vec::new())
    }

    /// A publication to come: the sender is fired once the broadcast is
    /// published, dropped if it never is; waiting gives up after `bound`.
    pub fn channel(bound: Duration) -> (oneshot::Sender<()>, Published) {
        let (tx, rx) = oneshot::channel();
        (tx, Published(vec![(rx, bound)]))
    }

    /// Ready once both this and `other` are.
    pub fn and(mut self, other: Published) -> Published {
        self.0.extend(other.0);
        self
    }

    /// Resolves once every broadcast was published, or says why one was
    /// not. Each is given its bound from the moment the wait starts (they
    /// were emitted together), not one after the other.
    pub async fn wait(self) -> Result<(), NotPublished> {
        let start = tokio::time::Instant::now();
        for (rx, bound) in self.0 {
            match tokio::time::timeout_at(start + bound, rx).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(NotPublished::Dropped),
                Err(_) => return Err(NotPublished::Timeout(bound)),
            }
        }
        Ok(())
    }
}

/// Where an emit stands on this node once
/// [`Adapter::broadcast_event`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for this many of this node's sockets (and counted in the
    /// namespace's stats by the emitter).
    Now(usize),
    /// Delivered to this node's sockets once back from the bus (a
    /// cluster's recoverable broadcasts, whose order the bus decides, and
    /// those published at most once), and counted then, by what delivers
    /// it. Nothing has walked the rooms:
    /// an emitter that needs a count asks for one
    /// ([`Emitted::recipients`](crate::broadcast::Emitted::recipients)).
    FromBus,
}

/// Room membership and broadcast delivery for one namespace. Joins come
/// from [`Socket::join_all`], under the socket's state lock (so none lands
/// after the socket left); an adapter must not call back into the socket's
/// state under its own locks, and must not hold them while it delivers.
pub trait Adapter: Send + Sync + 'static {
    /// Adds a socket to rooms.
    fn add_all(&self, ns: &Namespace, socket: &Arc<Socket>, rooms: &[Room]);
    /// Removes a socket from a room.
    fn del(&self, ns: &Namespace, socket: &Socket, room: &str);
    /// Removes a socket from every room; returns the rooms it was in.
    fn del_all(&self, ns: &Namespace, socket: &Socket) -> Vec<Room>;
    /// The rooms a socket is in.
    fn rooms_of(&self, ns: &Namespace, socket: &Socket) -> Vec<Room>;
    /// The sockets a broadcast with `opts` would reach.
    fn sockets(&self, ns: &Namespace, opts: &BroadcastOptions) -> Vec<Arc<Socket>>;
    /// Delivers an encoded packet to this node's sockets; returns how many
    /// it was queued for.
    fn broadcast(&self, ns: &Namespace, packet: &Encoded, opts: &BroadcastOptions) -> usize;

    /// Emits an event: what [`BroadcastOperator::emit`](crate::BroadcastOperator::emit)
    /// calls. Encodes it once and delivers it to this node's sockets
    /// (through [`Namespace::deliver_event`], which gives it its recovery
    /// offset); a cluster adapter also hands the event (not its encoding:
    /// the bus carries the packet object) to the other nodes, unless
    /// `opts.local`. Returns how many of this node's sockets it was queued
    /// for, or that it is delivered here from the bus.
    fn broadcast_event(
        &self,
        ns: &Namespace,
        event: &str,
        args: &Args,
        opts: &BroadcastOptions,
    ) -> Delivery {
        Delivery::Now(
            ns.deliver_event(event, args, opts, |packet| self.broadcast(ns, packet, opts)),
        )
    }

    /// Emits an event as [`broadcast_event`](Adapter::broadcast_event)
    /// does, and says when the other nodes have it; with `once`, the
    /// cluster publishes it at most once under its key. One node: the
    /// first emission is delivered at once (a retry, `once.again`,
    /// delivers nothing: the first cannot have been lost), and the
    /// publication is ready. Returns where it stands on this node, as
    /// `broadcast_event` does.
    fn broadcast_event_published(
        &self,
        ns: &Namespace,
        event: &str,
        args: &Args,
        opts: &BroadcastOptions,
        once: Option<&Once>,
    ) -> (Delivery, Published) {
        if once.is_some_and(|once| once.again) {
            return (Delivery::Now(0), Published::done());
        }
        (
            self.broadcast_event(ns, event, args, opts),
            Published::done(),
        )
    }

    /// The namespace was created with this adapter (once, before any
    /// socket joins): where a cluster adapter subscribes to the bus and
    /// keeps a weak reference to deliver what other nodes publish.
    fn init(&self, _ns: &Arc<Namespace>) {}
}

/// What makes a namespace's adapter from its name.
type MakeAdapter = dyn Fn(&str) -> Box<dyn Adapter> + Send + Sync;

/// Makes the adapter of each namespace, given its name; by default a
/// [`LocalAdapter`] (one node). Cloning shares it.
#[derive(Clone)]
pub struct AdapterFactory {
    make: Arc<MakeAdapter>,
    /// Where connection state recovery keeps its sessions and log when the
    /// adapters' nodes share them (a cluster's); `None`: in memory.
    store: Option<Arc<dyn SessionStore>>,
}

impl AdapterFactory {
    /// A factory calling `make` with each namespace's name.
    pub fn new(make: impl Fn(&str) -> Box<dyn Adapter> + Send + Sync + 'static) -> AdapterFactory {
        AdapterFactory {
            make: Arc::new(make),
            store: None,
        }
    }

    /// The same adapters, with the recovery store they go with.
    pub fn with_session_store(mut self, store: Arc<dyn SessionStore>) -> AdapterFactory {
        self.store = Some(store);
        self
    }

    /// The recovery store the adapters go with, if any.
    pub fn session_store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.store.as_ref()
    }

    /// The adapter of namespace `nsp`.
    pub fn make(&self, nsp: &str) -> Box<dyn Adapter> {
        (self.make)(nsp)
    }
}

impl Default for AdapterFactory {
    fn default() -> Self {
        AdapterFactory::new(|_| Box::new(LocalAdapter::default()))
    }
}

impl std::fmt::Debug for AdapterFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdapterFactory")
    }
}

/// In-memory rooms.
#[derive(Default)]
pub struct LocalAdapter {
    inner: RwLock<Rooms>,
}

#[derive(Default)]
struct Rooms {
    members: HashMap<Room, HashMap<SocketId, Arc<Socket>>>,
    joined: HashMap<SocketId, Vec<Room>>,
}

impl LocalAdapter {
    /// Whether a socket of this node is in `room` (a socket id counts as
    /// the room of its socket only through the namespace: see
    /// [`Namespace::get`]).
    pub fn has_room(&self, room: &str) -> bool {
        self.inner.read().members.contains_key(room)
    }

    /// The rooms at least one socket of this node is in (sockets' own ids
    /// are not rooms here: see [`Namespace::get`]).
    pub fn room_names(&self) -> Vec<Room> {
        self.inner.read().members.keys().cloned().collect()
    }

    /// Adds `socket` to `rooms`; `created` is called, under the lock, with
    /// each room this join makes (none of this node's sockets was in it):
    /// the Node adapter's "create-room", which a sharded cluster adapter
    /// follows. Told under the lock so that a join and a leave racing on
    /// one room are told in the order they happened.
    pub fn join(&self, socket: &Arc<Socket>, rooms: &[Room], mut created: impl FnMut(&Room)) {
        let mut inner = self.inner.write();
        for room in rooms {
            let entry = inner.members.entry(room.clone());
            if matches!(entry, std::collections::hash_map::Entry::Vacant(_)) {
                created(room);
            }
            // The room's own name, when it exists: its members' lists share
            // one allocation of it rather than one per join (10,000 sockets
            // in `all` held 10,000 copies of "all").
            let name = entry.key().clone();
            if entry
                .or_default()
                .insert(*socket.id(), socket.clone())
                .is_none()
            {
                inner
                    .joined
                    .entry(*socket.id())
                    // Most sockets are in one room or two: room for one
                    // (16 bytes) rather than the four a first push makes.
                    .or_insert_with(|| Vec::with_capacity(1))
                    .push(name);
            }
        }
    }

    /// Takes `socket` out of `room`; returns whether that emptied the room
    /// (the Node adapter's "delete-room").
    pub fn leave(&self, socket: &Socket, room: &str) -> bool {
        let mut inner = self.inner.write();
        let mut emptied = false;
        if let Some(members) = inner.members.get_mut(room) {
            members.remove(socket.id());
            if members.is_empty() {
                inner.members.remove(room);
                emptied = true;
            }
        }
        if let Some(joined) = inner.joined.get_mut(socket.id()) {
            joined.retain(|r| &**r != room);
            if joined.is_empty() {
                inner.joined.remove(socket.id());
            }
        }
        emptied
    }

    /// Takes `socket` out of every room; returns them, and calls `emptied`,
    /// under the lock, with each room left without a socket.
    pub fn leave_all(&self, socket: &Socket, mut emptied: impl FnMut(&Room)) -> Vec<Room> {
        let mut inner = self.inner.write();
        let Some(joined) = inner.joined.remove(socket.id()) else {
            return Vec::new();
        };
        for room in &joined {
            if let Some(members) = inner.members.get_mut(room) {
                members.remove(socket.id());
                if members.is_empty() {
                    inner.members.remove(room);
                    emptied(room);
                }
            }
        }
        joined
    }

    /// The sockets `opts` reaches, each once. Taken under the read lock
    /// (cheap clones of `Arc`s), delivered to by the caller outside it: a
    /// broadcast to 10,000 sockets does not hold up the joins and leaves of
    /// connects and disconnects while it queues.
    fn targets(&self, ns: &Namespace, opts: &BroadcastOptions) -> Vec<Arc<Socket>> {
        let rooms = self.inner.read();
        let mut excluded: HashSet<SocketId> = HashSet::new();
        excluded.extend(opts.except_socket);
        for room in &opts.except {
            if let Some(members) = rooms.members.get(room) {
                excluded.extend(members.keys().copied());
            } else if let Some(id) = SocketId::parse(room) {
                excluded.insert(id);
            }
        }
        if opts.rooms.is_empty() {
            drop(rooms);
            let mut all = ns.sockets();
            if !excluded.is_empty() {
                all.retain(|socket| !excluded.contains(socket.id()));
            }
            return all;
        }
        let single = opts.rooms.len() == 1;
        let mut out = Vec::new();
        let mut seen: HashSet<SocketId> = HashSet::new();
        for room in &opts.rooms {
            if let Some(members) = rooms.members.get(room) {
                out.reserve(members.len());
                for (id, socket) in members {
                    if excluded.contains(id) || (!single && !seen.insert(*id)) {
                        continue;
                    }
                    out.push(socket.clone());
                }
            } else if let Some(socket) = SocketId::parse(room).and_then(|id| ns.get(&id)) {
                // A socket id used as a room reaches that socket.
                if !excluded.contains(socket.id()) && (single || seen.insert(*socket.id())) {
                    out.push(socket);
                }
            }
        }
        out
    }
}

impl Adapter for LocalAdapter {
    fn add_all(&self, _ns: &Namespace, socket: &Arc<Socket>, rooms: &[Room]) {
        self.join(socket, rooms, |_| {});
    }

    fn del(&self, _ns: &Namespace, socket: &Socket, room: &str) {
        self.leave(socket, room);
    }

    fn del_all(&self, _ns: &Namespace, socket: &Socket) -> Vec<Room> {
        self.leave_all(socket, |_| {})
    }

    fn rooms_of(&self, _ns: &Namespace, socket: &Socket) -> Vec<Room> {
        self.inner
            .read()
            .joined
            .get(socket.id())
            .cloned()
            .unwrap_or_default()
    }

    fn sockets(&self, ns: &Namespace, opts: &BroadcastOptions) -> Vec<Arc<Socket>> {
        self.targets(ns, opts)
    }

    fn broadcast(&self, ns: &Namespace, packet: &Encoded, opts: &BroadcastOptions) -> usize {
        let targets = self.targets(ns, opts);
        for socket in &targets {
            socket.send_encoded(packet, opts.volatile);
        }
        targets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publications_together_are_ready_only_when_each_is() {
        let bound = Duration::from_secs(5);
        let (first, a) = Published::channel(bound);
        let (second, b) = Published::channel(bound);
        let both = Published::done().and(a).and(b);
        first.send(()).unwrap();
        second.send(()).unwrap();
        assert_eq!(both.wait().await, Ok(()));

        // One of them dropped (its queue full): the whole is not published.
        let (first, a) = Published::channel(bound);
        let (second, b) = Published::channel(bound);
        first.send(()).unwrap();
        drop(second);
        assert_eq!(a.and(b).wait().await, Err(NotPublished::Dropped));

        // Five never answered: the bound counts from the start of the wait, once
        // for all of them (one after the other, five would take 500 ms).
        let short = Duration::from_millis(100);
        let (first, mut all) = Published::channel(short);
        first.send(()).unwrap();
        let mut unanswered = Vec::new();
        for _ in 0..5 {
            let (tx, one) = Published::channel(short);
            unanswered.push(tx);
            all = all.and(one);
        }
        let started = std::time::Instant::now();
        assert_eq!(all.wait().await, Err(NotPublished::Timeout(short)));
        assert!(started.elapsed() < short * 4, "{:?}", started.elapsed());
    }
}
