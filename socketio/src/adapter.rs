//! The adapter: who is in which room, and delivery of a broadcast to them.
//! [`LocalAdapter`] keeps rooms in memory for one node; a cluster adapter
//! (Redis) implements the same trait.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::namespace::Namespace;
use crate::packet::Encoded;
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
}

/// Room membership and broadcast delivery for one namespace.
pub trait Adapter: Send + Sync + 'static {
    /// Adds a socket to rooms.
    fn add_all(&self, ns: &Namespace, socket: &Arc<Socket>, rooms: &[Room]);
    /// Removes a socket from a room.
    fn del(&self, ns: &Namespace, socket: &Socket, room: &str);
    /// Removes a socket from every room.
    fn del_all(&self, ns: &Namespace, socket: &Socket);
    /// The rooms a socket is in.
    fn rooms_of(&self, ns: &Namespace, socket: &Socket) -> Vec<Room>;
    /// The sockets a broadcast with `opts` would reach.
    fn sockets(&self, ns: &Namespace, opts: &BroadcastOptions) -> Vec<Arc<Socket>>;
    /// Delivers an encoded packet; returns how many sockets it was queued for.
    fn broadcast(&self, ns: &Namespace, packet: &Encoded, opts: &BroadcastOptions) -> usize;
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
    /// Calls `f` once for each socket `opts` reaches.
    fn for_each_target(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        mut f: impl FnMut(&Arc<Socket>),
    ) {
        let rooms = self.inner.read();
        let mut excluded: HashSet<SocketId> = HashSet::new();
        excluded.extend(opts.except_socket);
        for room in &opts.except {
            if let Some(members) = rooms.members.get(room) {
                excluded.extend(members.keys().copied());
            } else if let Some(id) = engineio::sid::Sid::parse(room) {
                excluded.insert(id);
            }
        }
        if opts.rooms.is_empty() {
            drop(rooms);
            ns.for_each_socket(|socket| {
                if !excluded.contains(socket.id()) {
                    f(socket)
                }
            });
            return;
        }
        let single = opts.rooms.len() == 1;
        let mut seen: HashSet<SocketId> = HashSet::new();
        for room in &opts.rooms {
            if let Some(members) = rooms.members.get(room) {
                for (id, socket) in members {
                    if excluded.contains(id) || (!single && !seen.insert(*id)) {
                        continue;
                    }
                    f(socket);
                }
            } else if let Some(socket) = engineio::sid::Sid::parse(room).and_then(|id| ns.get(&id))
            {
                // A socket id used as a room reaches that socket.
                if !excluded.contains(socket.id()) && (single || seen.insert(*socket.id())) {
                    f(&socket);
                }
            }
        }
    }
}

impl Adapter for LocalAdapter {
    fn add_all(&self, _ns: &Namespace, socket: &Arc<Socket>, rooms: &[Room]) {
        let mut inner = self.inner.write();
        for room in rooms {
            let members = inner.members.entry(room.clone()).or_default();
            if members.insert(*socket.id(), socket.clone()).is_none() {
                inner
                    .joined
                    .entry(*socket.id())
                    .or_default()
                    .push(room.clone());
            }
        }
    }

    fn del(&self, _ns: &Namespace, socket: &Socket, room: &str) {
        let mut inner = self.inner.write();
        if let Some(members) = inner.members.get_mut(room) {
            members.remove(socket.id());
            if members.is_empty() {
                inner.members.remove(room);
            }
        }
        if let Some(joined) = inner.joined.get_mut(socket.id()) {
            joined.retain(|r| &**r != room);
            if joined.is_empty() {
                inner.joined.remove(socket.id());
            }
        }
    }

    fn del_all(&self, _ns: &Namespace, socket: &Socket) {
        let mut inner = self.inner.write();
        let Some(joined) = inner.joined.remove(socket.id()) else {
            return;
        };
        for room in joined {
            if let Some(members) = inner.members.get_mut(&room) {
                members.remove(socket.id());
                if members.is_empty() {
                    inner.members.remove(&room);
                }
            }
        }
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
        let mut out = Vec::new();
        self.for_each_target(ns, opts, |socket| out.push(socket.clone()));
        out
    }

    fn broadcast(&self, ns: &Namespace, packet: &Encoded, opts: &BroadcastOptions) -> usize {
        let mut count = 0;
        self.for_each_target(ns, opts, |socket| {
            socket.send_encoded(packet, opts.volatile);
            count += 1;
        });
        count
    }
}
