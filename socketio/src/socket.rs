//! A socket: one client's membership of one namespace. It emits to its
//! client, joins and leaves rooms, runs the client's events through the
//! namespace handler one at a time in arrival order, and tracks acks both ways.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Context;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::adapter::BroadcastOptions;
use crate::broadcast::BroadcastOperator;
use crate::client::Client;
use crate::namespace::Namespace;
use crate::packet::{Args, Encoded, Packet, PacketType, Payload};
use crate::recovery::{Audience, Hold, Missed, NsRecovery, Offset, Session};

/// A socket id: 20 random base64url characters per socket. Its own type,
/// so that it is never confused with the Engine.IO session id (which
/// authenticates polling requests and must not leak to other users): no
/// conversion exists between the two.
///
/// ```compile_fail
/// // A socket id is not an Engine.IO session id.
/// fn session_of(id: socketio::SocketId) -> engineio::sid::Sid {
///     id
/// }
/// ```
///
/// ```compile_fail
/// // Namespace handlers never reach the Engine.IO session.
/// fn session_of(socket: &socketio::Socket) {
///     let _ = socket.conn();
/// }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId(engineio::sid::Sid);

impl SocketId {
    /// A fresh random id (never the session's: drawn separately).
    pub(crate) fn random() -> SocketId {
        SocketId(engineio::sid::Sid::random())
    }

    /// Parses an id received from a client or a backend (a room name, an
    /// API argument); `None` if it cannot be a socket id.
    pub fn parse(s: &str) -> Option<SocketId> {
        engineio::sid::Sid::parse(s).map(SocketId)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Debug for SocketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for SocketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A room name.
pub type Room = Arc<str>;

/// A boxed future, as handlers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a socket left its namespace (the reference server's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The server called [`Socket::disconnect`].
    ServerNamespaceDisconnect,
    /// The client left the namespace.
    ClientNamespaceDisconnect,
    /// The server closed the whole connection.
    ForcedServerClose,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The underlying Engine.IO session closed.
    Transport(engineio::CloseReason),
}

impl DisconnectReason {
    /// The reason as the reference server names it.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::Transport(reason) => reason.as_str(),
        }
    }

    /// Whether the client may recover the socket's state: the connection
    /// dropped or the server closed it (the reference's list: `transport
    /// error`, `transport close`, `forced close`, `ping timeout`, `server
    /// shutting down`, `forced server close`), not a namespace disconnect
    /// either side asked for, nor a client that broke the protocol.
    pub fn is_recoverable(self) -> bool {
        match self {
            DisconnectReason::ServerNamespaceDisconnect
            | DisconnectReason::ClientNamespaceDisconnect => false,
            DisconnectReason::ForcedServerClose | DisconnectReason::ServerShuttingDown => true,
            DisconnectReason::Transport(reason) => reason != engineio::CloseReason::ParseError,
        }
    }
}

/// Why an emit with ack did not get its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("operation has timed out")]
    Timeout,
    #[error("socket disconnected")]
    Disconnected,
}

/// An event from the client.
#[derive(Debug)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// Its arguments.
    pub args: Args,
    ack: Option<AckSender>,
}

impl Event {
    /// The client's ack callback, if it asked for one.
    pub fn take_ack(&mut self) -> Option<AckSender> {
        self.ack.take()
    }

    /// Whether the client asked for an ack.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }
}

/// Answers one client event's ack.
#[derive(Debug)]
pub struct AckSender {
    socket: Arc<Socket>,
    id: u64,
}

impl AckSender {
    /// Sends the ack with these arguments.
    pub fn send(self, args: &Args) {
        let packet = Encoded::ack(self.socket.ns.name(), self.id, args);
        self.socket.send_encoded(&packet, false);
    }

    /// Sends the ack with one argument.
    pub fn send_one<T: serde::Serialize + ?Sized>(self, value: &T) {
        self.send(&Args::one(value));
    }
}

/// The socket was restored by connection state recovery.
const RECOVERED: u8 = 1;
/// The restore is under way: what is delivered to the socket is held (see
/// [`crate::recovery`]) until the client has its CONNECT and missed packets.
const RECOVERING: u8 = 2;
/// The socket's session must not be kept when it leaves (a restore that
/// could not complete: the client's next attempt must not recover).
const FORGET: u8 = 4;
/// The CONNECT reply is not sent yet (`on_connect` is running): what is
/// delivered to the socket meanwhile (a broadcast to a room it joined
/// while connecting, from this node or another) waits in its outbox and
/// follows the CONNECT, as the reference server's order has it (it
/// replies before its connection handlers run).
const CONNECTING: u8 = 8;

/// One client connected to one namespace.
pub struct Socket {
    id: SocketId,
    /// [`RECOVERED`], [`RECOVERING`], [`FORGET`], [`CONNECTING`]: in what was padding
    /// after the id, so a socket is no larger for them.
    flags: AtomicU8,
    ns: Arc<Namespace>,
    client: Arc<Client>,
    auth: Box<RawValue>,
    extensions: Mutex<http::Extensions>,
    state: Mutex<State>,
}

struct State {
    /// From creation until the socket leaves; a socket that is not
    /// connected joins no room and is in none (see [`Socket::join_all`]).
    connected: bool,
    /// The handler's `on_connect` has finished, so `on_disconnect` may run.
    ready: bool,
    /// The socket left before `on_connect` finished: why, for the
    /// `on_disconnect` that runs once it has.
    left_early: Option<DisconnectReason>,
    /// The rooms the socket was in when it left, so that `on_disconnect`
    /// can still read them.
    left_rooms: Vec<Room>,
    /// Events waiting while a previous one is being handled.
    inbox: VecDeque<Event>,
    /// Bytes of the inbox's events' arguments (see
    /// [`SocketIoConfig::max_pending_bytes`](crate::SocketIoConfig::max_pending_bytes)).
    inbox_bytes: usize,
    /// An event handler is running.
    busy: bool,
    /// The inbox overflowed and the connection is closing: later events
    /// are dropped.
    overflowed: bool,
    next_ack_id: u64,
    acks: HashMap<u64, oneshot::Sender<Args>>,
    /// Packets delivered while [`CONNECTING`], sent after the CONNECT
    /// reply; bounded as the inbox is (`max_pending_events`, `_bytes`).
    outbox: Vec<(Encoded, bool)>,
    outbox_bytes: usize,
}

impl Socket {
    /// A socket; with `restored`, the socket of that session (its id).
    pub(crate) fn new(
        ns: Arc<Namespace>,
        client: Arc<Client>,
        auth: Box<RawValue>,
        extensions: http::Extensions,
        restored: Option<&Session>,
    ) -> Arc<Socket> {
        let (id, flags) = match restored {
            Some(session) => (session.sid, RECOVERED | RECOVERING),
            None => (SocketId::random(), CONNECTING),
        };
        Arc::new(Socket {
            id,
            flags: AtomicU8::new(flags),
            ns,
            client,
            auth,
            extensions: Mutex::new(extensions),
            state: Mutex::new(State {
                connected: true,
                ready: false,
                left_early: None,
                left_rooms: Vec::new(),
                inbox: VecDeque::new(),
                inbox_bytes: 0,
                // The connect handler runs first; see `Socket::start`.
                busy: true,
                overflowed: false,
                next_ack_id: 0,
                acks: HashMap::new(),
                outbox: Vec::new(),
                outbox_bytes: 0,
            }),
        })
    }

    /// The socket id.
    pub fn id(&self) -> &SocketId {
        &self.id
    }

    /// The namespace.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.ns
    }

    /// Closes the client's whole connection without a DISCONNECT for its
    /// namespaces, as a transport failure would: the client reconnects by
    /// itself. (The Engine.IO session itself is not handed out: its id
    /// authenticates polling requests.)
    pub fn close_connection(&self) {
        self.client.engine().close();
    }

    /// Takes one request from the connection's budget of costly requests
    /// ([`SocketIoConfig::connects_per_sec`](crate::SocketIoConfig)), which
    /// every CONNECT of the connection also draws on; false when it is
    /// spent. For events that cost as much as a CONNECT (verifying a
    /// signature), in whichever namespace they arrive.
    pub fn admit_costly(&self) -> bool {
        self.client.admit_costly()
    }

    /// The CONNECT packet's payload (`{}` when the client sent none).
    pub fn auth(&self) -> &RawValue {
        &self.auth
    }

    /// The query string of the client's Engine.IO handshake.
    pub fn handshake_query(&self) -> &str {
        self.client.query()
    }

    /// Data attached to the socket (by middleware or handlers).
    pub fn extensions(&self) -> parking_lot::MutexGuard<'_, http::Extensions> {
        self.extensions.lock()
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.state.lock().connected
    }

    /// Whether the socket was restored by connection state recovery: same
    /// id and rooms as before its connection dropped, and the events it
    /// missed replayed (its client's `socket.recovered`).
    pub fn recovered(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & RECOVERED != 0
    }

    /// Emits an event to this socket's client.
    pub fn emit(&self, event: &str, args: &Args) {
        self.emit_packet(event, args, None, false);
    }

    /// Emits an event that may be dropped if the client is behind.
    pub fn emit_volatile(&self, event: &str, args: &Args) {
        self.emit_packet(event, args, None, true);
    }

    /// The namespace's connection state recovery, for this socket: none
    /// for a v3 client, which can never present a session to restore
    /// (the store keeps nothing for it).
    fn recovery(&self) -> Option<&NsRecovery> {
        self.ns.recovery().filter(|_| !self.client.is_v3())
    }

    /// Encodes, counts and queues one event for this socket's client. With
    /// recovery on, an event without ack that is not volatile is recorded
    /// with an offset, as a broadcast to the socket alone (as the
    /// reference does): the client would otherwise take a string last
    /// argument of it for an offset.
    fn emit_packet(&self, event: &str, args: &Args, ack: Option<u64>, volatile: bool) {
        match self.recovery() {
            Some(recovery)
                if ack.is_none() && !volatile && recovery.store.logs_through_adapter() =>
            {
                // The log's order is the bus's: the event goes out through
                // it and comes back to this socket with its offset (counted
                // then, where it is delivered).
                let opts = BroadcastOptions {
                    rooms: vec![Room::from(self.id.as_str())],
                    ..BroadcastOptions::default()
                };
                self.ns
                    .adapter()
                    .broadcast_event(&self.ns, event, args, &opts);
            }
            Some(recovery) if ack.is_none() && !volatile => {
                self.ns.stats().events_out.add(event, 1);
                let _pass = recovery.barrier.enter();
                let packet = recovery.record(Audience::Socket(&self.id), |offset| {
                    Encoded::event_at(self.ns.name(), event, args, offset)
                });
                self.send_encoded(&packet, false);
            }
            _ => {
                self.ns.stats().events_out.add(event, 1);
                self.send_encoded(&Encoded::event(self.ns.name(), event, args, ack), volatile);
            }
        }
    }

    /// Emits an event and waits for the client's ack, at most `timeout`.
    pub fn emit_with_ack(
        self: &Arc<Self>,
        event: &str,
        args: &Args,
        timeout: Duration,
    ) -> impl Future<Output = Result<Args, AckError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.state.lock();
            if state.connected {
                let id = state.next_ack_id;
                state.next_ack_id += 1;
                state.acks.insert(id, tx);
                Some(id)
            } else {
                None
            }
        };
        if let Some(id) = id {
            self.emit_packet(event, args, Some(id), false);
        }
        let socket = Arc::downgrade(self);
        async move {
            let Some(id) = id else {
                return Err(AckError::Disconnected);
            };
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(args)) => Ok(args),
                Ok(Err(_)) => Err(AckError::Disconnected),
                Err(_) => {
                    if let Some(socket) = socket.upgrade() {
                        socket.state.lock().acks.remove(&id);
                    }
                    Err(AckError::Timeout)
                }
            }
        }
    }

    /// Joins a room; false (and nothing joined) if the socket has left
    /// (see [`join_all`](Self::join_all)).
    pub fn join(self: &Arc<Self>, room: impl Into<Room>) -> bool {
        self.join_all(&[room.into()])
    }

    /// Joins several rooms; false (and nothing joined) if the socket has
    /// left. A join decided after an `.await` (a backend's answer, a store
    /// lookup) may come after the client left: checked under the lock that
    /// its departure takes, so a socket that has left is never in a room.
    pub fn join_all(self: &Arc<Self>, rooms: &[Room]) -> bool {
        let state = self.state.lock();
        if !state.connected {
            return false;
        }
        self.ns.adapter().add_all(&self.ns, self, rooms);
        if let Some(recovery) = self.recovery() {
            recovery.store.joined(self.ns.name(), &self.id, rooms);
        }
        true
    }

    /// Leaves a room.
    pub fn leave(&self, room: &str) {
        self.ns.adapter().del(&self.ns, self, room);
        if let Some(recovery) = self.recovery() {
            recovery.store.left(self.ns.name(), &self.id, room);
        }
    }

    /// The rooms this socket is in; once it has left, the rooms it was in
    /// (so that `on_disconnect` can tell who to notify).
    pub fn rooms(&self) -> Vec<Room> {
        let state = self.state.lock();
        if state.connected {
            self.ns.adapter().rooms_of(&self.ns, self)
        } else {
            state.left_rooms.clone()
        }
    }

    /// A broadcast to `room` that leaves this socket out.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone())
            .to(room)
            .except_socket(self.id)
    }

    /// A broadcast to the whole namespace but this socket.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone()).except_socket(self.id)
    }

    /// Leaves the namespace (`server namespace disconnect`); the client may
    /// reconnect to it.
    pub fn disconnect(self: &Arc<Self>) {
        if self.connected() {
            self.send_encoded(&Encoded::disconnect(self.ns.name()), false);
            self.on_close(DisconnectReason::ServerNamespaceDisconnect);
        }
    }

    /// Disconnects every namespace of this client and closes its connection.
    pub fn disconnect_all(&self) {
        self.client.disconnect_all();
    }

    /// Queues an encoded packet for this socket's client.
    pub fn send_encoded(&self, packet: &Encoded, volatile: bool) {
        // One atomic load in the common case; the socket's lock is not taken.
        let flags = self.flags.load(Ordering::Relaxed);
        if flags & (RECOVERING | CONNECTING) != 0 {
            if flags & RECOVERING != 0 && self.hold(packet, volatile) {
                return;
            }
            if flags & CONNECTING != 0 && self.hold_until_connected(packet, volatile) {
                return;
            }
        }
        self.client.send(packet, volatile);
    }

    /// A packet for a socket whose CONNECT reply is not sent yet: kept in
    /// its outbox (true), or false when the reply went meanwhile. Past the
    /// outbox's bounds a volatile packet is dropped and any other closes
    /// the connection: the client would otherwise miss it silently.
    #[cold]
    fn hold_until_connected(&self, packet: &Encoded, volatile: bool) -> bool {
        let mut state = self.state.lock();
        // Checked again under the lock that `announce` clears it under.
        if self.flags.load(Ordering::Relaxed) & CONNECTING == 0 {
            return false;
        }
        if !state.connected {
            return true;
        }
        let bytes = state.outbox_bytes.saturating_add(packet.byte_len());
        if state.outbox.len() < self.ns.max_pending_events && bytes <= self.ns.max_pending_bytes {
            state.outbox.push((packet.clone(), volatile));
            state.outbox_bytes = bytes;
        } else if !volatile {
            drop(state);
            tracing::debug!(
                namespace = self.ns.name(),
                "too much delivered before the CONNECT reply: closing"
            );
            self.close_connection();
        }
        true
    }

    /// A packet for a socket whose restore is under way: held until the
    /// client has its CONNECT reply and missed packets. True if it was
    /// taken care of.
    #[cold]
    fn hold(&self, packet: &Encoded, volatile: bool) -> bool {
        let Some(recovery) = self.recovery() else {
            return false;
        };
        match recovery.hold(&self.id, packet, volatile) {
            Hold::Held => true,
            Hold::Send => false,
            Hold::Overflow => {
                // More than the connection could take: the restore cannot
                // deliver everything. Closed before the client was told
                // anything; its session is kept, and it tries again from
                // the same offset.
                tracing::debug!(
                    namespace = self.ns.name(),
                    "too much delivered during a restore: closing"
                );
                self.close_connection();
                true
            }
        }
    }

    /// A packet for this socket (anything but CONNECT).
    pub(crate) fn on_packet(self: &Arc<Self>, packet: Packet) {
        match (packet.kind, packet.payload) {
            (PacketType::Event | PacketType::BinaryEvent, Payload::Event(name, args)) => {
                self.ns.stats().events_in.add(&name, 1);
                let ack = packet.id.map(|id| AckSender {
                    socket: self.clone(),
                    id,
                });
                self.dispatch(Event { name, args, ack });
            }
            (PacketType::Ack | PacketType::BinaryAck, Payload::Ack(args)) => {
                let Some(id) = packet.id else { return };
                let waiter = self.state.lock().acks.remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(args);
                }
            }
            (PacketType::Disconnect, _) => {
                self.on_close(DisconnectReason::ClientNamespaceDisconnect)
            }
            _ => {}
        }
    }

    /// Runs events one at a time, in order. A handler that finishes without
    /// waiting runs inline; one that waits continues on a task of its own,
    /// and the events that arrive meanwhile queue behind it.
    fn dispatch(self: &Arc<Self>, event: Event) {
        {
            let mut state = self.state.lock();
            if !state.connected || state.overflowed {
                return;
            }
            if state.busy {
                let bytes = event.args.byte_len();
                // An event that finds the queue empty always fits: it is
                // bounded by max_payload already, and a bound below it must
                // not refuse every event behind a busy handler.
                let fits = state.inbox.is_empty()
                    || state.inbox_bytes.saturating_add(bytes) <= self.ns.max_pending_bytes;
                if state.inbox.len() < self.ns.max_pending_events && fits {
                    state.inbox_bytes += bytes;
                    state.inbox.push_back(event);
                    return;
                }
                // Once: the connection may take a while to close (a
                // polling client that never GETs), and events keep coming.
                state.overflowed = true;
                state.inbox.clear();
                state.inbox_bytes = 0;
                drop(state);
                self.overflow();
                return;
            }
            state.busy = true;
        }
        let mut event = event;
        loop {
            if let Some(mut future) = self.ns.handler().on_event(self, event) {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                if future.as_mut().poll(&mut cx).is_pending() {
                    let socket = self.clone();
                    tokio::spawn(async move {
                        future.await;
                        socket.drain_async().await;
                    });
                    return;
                }
            }
            match self.next_event() {
                Some(next) => event = next,
                None => return,
            }
        }
    }

    /// Too many events (or bytes) wait behind a slow handler: close the connection
    /// (the client reconnects; its queued events are dropped with it).
    fn overflow(&self) {
        self.ns
            .stats()
            .inbox_overflows
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            namespace = self.ns.name(),
            socket = self.id.as_str(),
            max_events = self.ns.max_pending_events,
            max_bytes = self.ns.max_pending_bytes,
            "too many events or bytes waiting for a handler: closing the connection"
        );
        self.close_connection();
    }

    /// Enters the namespace: the socket is registered, the handler's
    /// `on_connect` runs (and may wait), and only then is the client told
    /// it is connected, so the rooms joined at connect are in place when it
    /// sees `connect`. Then `on_connected`, once the CONNECT reply has
    /// reached the transport, and the events that arrived meanwhile (they
    /// wait in the inbox: the socket is busy from its creation).
    ///
    /// A socket restored from `restored` (its session, and the offset its
    /// client last received) first joins the session's rooms, then reads
    /// what it missed and waits for the deliveries under way; only then
    /// does `on_connect` run (with [`recovered`](Self::recovered) true).
    pub(crate) fn start(self: &Arc<Self>, restored: Option<(Session, Offset)>) {
        if !self.register() {
            return;
        }
        let Some(recovery) = self.recovery() else {
            self.connect_handler(None);
            return;
        };
        let Some((session, offset)) = restored else {
            let owner = self.ns.session_owner(&self.extensions());
            recovery
                .store
                .connected(&self.session(recovery, Vec::new(), owner));
            self.connect_handler(None);
            return;
        };
        recovery.store.connected(&session);
        // Joined before the log is read: a packet recorded after the read
        // finds the socket in its rooms (and is held for it).
        self.join_all(&session.rooms);
        let missed = recovery.store.missed(&session, offset);
        let socket = self.clone();
        let mut future = Box::pin(async move {
            let missed = missed.await;
            if let Some(recovery) = socket.recovery() {
                // Deliveries begun before the read are done: none of the
                // missed packets can reach the socket live any more.
                recovery.barrier.wait().await;
            }
            socket.resume(missed);
        });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if future.as_mut().poll(&mut cx).is_pending() {
            tokio::spawn(future);
        }
    }

    /// Hands the leaving socket's session to the recovery store: kept for
    /// the window if the client may come back for it.
    fn persist(
        &self,
        recovery: &NsRecovery,
        rooms: &[Room],
        owner: Option<Arc<str>>,
        reason: DisconnectReason,
    ) {
        let flags = self.flags.load(Ordering::Relaxed);
        // A restore that had not completed: its client saw nothing of it,
        // and keeps the session as it was restored.
        let restoring = if flags & RECOVERING != 0 {
            recovery.abort(&self.id)
        } else {
            None
        };
        let session = restoring.unwrap_or_else(|| self.session(recovery, rooms.to_vec(), owner));
        let keep = flags & FORGET == 0 && reason.is_recoverable();
        recovery.store.disconnected(session, keep);
    }

    /// The socket's session, in `rooms`, for the recovery store.
    fn session(&self, recovery: &NsRecovery, rooms: Vec<Room>, owner: Option<Arc<str>>) -> Session {
        Session {
            nsp: recovery.nsp().clone(),
            sid: self.id,
            pid: recovery.store.pid(self.ns.name(), &self.id),
            rooms,
            owner,
        }
    }

    /// A restore has read what the socket missed: goes on to `on_connect`
    /// if all of it can be sent; otherwise closes the connection before
    /// the client is told anything (never a partial replay), and forgets
    /// the session so that the client's next attempt starts afresh.
    fn resume(self: &Arc<Self>, missed: Option<Vec<Missed>>) {
        let fits = missed.as_ref().is_some_and(|missed| {
            let (frames, bytes) = self.client.engine().queue_room();
            let needed_frames: usize = missed.iter().map(|m| m.packet.frames.len()).sum();
            let needed_bytes: usize = missed.iter().map(|m| m.packet.byte_len()).sum();
            // One frame, and some bytes, for the CONNECT reply too.
            needed_frames < frames && needed_bytes.saturating_add(128) <= bytes
        });
        match missed {
            Some(missed) if fits => {
                self.ns.stats().recovered.fetch_add(1, Ordering::Relaxed);
                self.connect_handler(Some(missed));
            }
            _ => {
                self.ns
                    .stats()
                    .not_recovered
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    namespace = self.ns.name(),
                    "missed packets no longer held, or too many: not recovered"
                );
                self.flags.fetch_or(FORGET, Ordering::Relaxed);
                self.close_connection();
            }
        }
    }

    /// Runs the handler's `on_connect`, then tells the client.
    fn connect_handler(self: &Arc<Self>, missed: Option<Vec<Missed>>) {
        let Some(mut future) = self.ns.handler().on_connect(self) else {
            self.announce(missed);
            return;
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if future.as_mut().poll(&mut cx).is_ready() {
            self.announce(missed);
            return;
        }
        let socket = self.clone();
        tokio::spawn(async move {
            future.await;
            socket.announce(missed);
        });
    }

    /// Adds the socket to its namespace unless it has already left (its
    /// client closed meanwhile): under the lock its departure takes.
    fn register(self: &Arc<Self>) -> bool {
        let state = self.state.lock();
        if state.connected {
            self.ns.insert(self);
        }
        state.connected
    }

    /// `on_connect` is done: tells the client (under the state lock, so a
    /// socket that left meanwhile sends no CONNECT), or, if the socket left
    /// during `on_connect`, runs the `on_disconnect` it deferred. A
    /// restored socket's client then gets the packets it missed, and those
    /// held for it meanwhile.
    fn announce(self: &Arc<Self>, missed: Option<Vec<Missed>>) {
        let left_early = {
            let mut state = self.state.lock();
            state.ready = true;
            if state.connected {
                let handshake = match self.recovery() {
                    // A v3 client's CONNECT carries nothing (`40/chat,`):
                    // it makes up its socket id from the Engine.IO sid.
                    _ if self.client.is_v3() => String::new(),
                    Some(recovery) => format!(
                        r#"{{"sid":"{}","pid":"{}"}}"#,
                        self.id.as_str(),
                        recovery.store.pid(self.ns.name(), &self.id).as_str()
                    ),
                    None => format!(r#"{{"sid":"{}"}}"#, self.id.as_str()),
                };
                let connect = Encoded::connect(self.ns.name(), &handshake);
                match (self.recovery(), missed) {
                    (Some(recovery), Some(missed)) => {
                        let released = recovery
                            .release(&self.id, &connect, &missed, |p, v| self.client.send(p, v));
                        self.flags.fetch_and(!RECOVERING, Ordering::Relaxed);
                        if !released {
                            // It held more than the connection can take
                            // (and is closing already).
                            self.close_connection();
                        }
                    }
                    _ => {
                        self.client.send(&connect, false);
                        for (packet, volatile) in std::mem::take(&mut state.outbox) {
                            self.client.send(&packet, volatile);
                        }
                        state.outbox_bytes = 0;
                    }
                }
                self.flags.fetch_and(!CONNECTING, Ordering::Relaxed);
                None
            } else {
                state.left_early.take()
            }
        };
        if let Some(reason) = left_early {
            self.ns.handler().on_disconnect(self, reason);
            return;
        }
        let flushed = self.client.engine().flushed();
        let socket = self.clone();
        tokio::spawn(async move {
            flushed.await;
            if socket.connected() {
                socket.ns.handler().on_connected(&socket);
            }
            socket.drain_async().await;
        });
    }

    async fn drain_async(self: Arc<Self>) {
        while let Some(event) = self.next_event() {
            if let Some(future) = self.ns.handler().on_event(&self, event) {
                future.await;
            }
        }
    }

    /// The next queued event, or `None` (and not busy any more).
    fn next_event(&self) -> Option<Event> {
        let mut state = self.state.lock();
        let next = if state.connected {
            state.inbox.pop_front()
        } else {
            None
        };
        match &next {
            Some(event) => state.inbox_bytes -= event.args.byte_len(),
            None => state.inbox_bytes = 0,
        }
        if next.is_none() {
            state.busy = false;
        }
        next
    }

    /// Leaves the namespace for `reason`; runs once. The rooms are left
    /// under the state lock, which every join takes too (no join can land
    /// after them); `on_disconnect` runs once `on_connect` has finished,
    /// with the rooms the socket was in still readable.
    pub(crate) fn on_close(self: &Arc<Self>, reason: DisconnectReason) {
        // Read before the state lock: the extensions' lock is not taken
        // under it.
        let owner = (self.recovery()).and_then(|_| self.ns.session_owner(&self.extensions()));
        let ready = {
            let mut state = self.state.lock();
            if !state.connected {
                return;
            }
            state.connected = false;
            state.inbox.clear();
            state.inbox_bytes = 0;
            state.outbox.clear();
            state.outbox_bytes = 0;
            // Dropping the senders tells every waiting emit_with_ack.
            state.acks.clear();
            state.left_rooms = self.ns.remove(self);
            if !state.ready {
                state.left_early = Some(reason);
            }
            if let Some(recovery) = self.recovery() {
                // Still under the lock, so that a socket gone from its
                // namespace has its session kept already (the store's
                // lock is taken under no other).
                self.persist(recovery, &state.left_rooms, owner, reason);
            }
            state.ready
        };
        self.client.remove(self);
        if ready {
            self.ns.handler().on_disconnect(self, reason);
        }
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("nsp", &self.ns.name())
            .finish()
    }
}

#[cfg(test)]
mod tests;
