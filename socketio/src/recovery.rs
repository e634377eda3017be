//! Connection state recovery, as the reference server's
//! `connectionStateRecovery` does it: a client whose connection dropped
//! comes back within a window with the same socket id, in the same rooms,
//! and receives every event it missed meanwhile, in order, once.
//!
//! On the wire: the CONNECT reply carries a private session id, `pid`,
//! besides the socket id; every recoverable event carries an offset as its
//! last argument (a string). The official client keeps the `pid` and the
//! last offset it received, and presents both in the CONNECT payload when
//! it reconnects; it reports `socket.recovered` when the reply carries the
//! same `pid`.
//!
//! What is recoverable is what the reference stores: EVENT packets sent
//! without an ack and not volatile, whether broadcast to rooms or emitted
//! to one socket (the reference sends those through the adapter as a
//! broadcast to the socket's own room). Acks, volatile events and events
//! waiting for an ack carry no offset and are not replayed.
//!
//! The storage is behind [`SessionStore`]: the sessions (socket id, `pid`,
//! rooms, owner) and the log of recoverable packets. [`MemoryStore`] is the
//! one-node implementation, shared by every namespace of a server and
//! bounded in bytes and in sessions; a cluster implements the same trait
//! (restoring is asynchronous for that reason).
//!
//! Never a partial replay: a store answers a restore with every missed
//! packet or with nothing. A recovery that cannot be completed (the packets
//! were dropped meanwhile, or they do not fit in the connection's queue)
//! closes the connection before the client is told anything, and the
//! client's next attempt is not recovered.
//!
//! Exactly once: the socket being restored joins its rooms first and holds
//! the packets delivered to it live ([`NsRecovery::hold`]); the store's log
//! is read after that; then [`Barrier::wait`] lets every broadcast that was
//! under way finish its delivery. The client is then sent the CONNECT
//! reply, the missed packets, and the live packets that are not among them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::adapter::BroadcastOptions;
use crate::packet::Encoded;
use crate::socket::{BoxFuture, Room, SocketId};

/// The position of a recoverable packet in the log, sent to the client as
/// the decimal text of the number. Offsets grow with every recoverable
/// packet of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub u64);

impl Offset {
    /// Parses an offset a client presented; `None` if it cannot be one.
    pub fn parse(s: &str) -> Option<Offset> {
        // Digits only (no sign, no spaces), and short enough for a u64.
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().map(Offset)
    }
}

/// A private session id: what a client presents to recover its socket.
/// A secret, unguessable, and not the socket id (which other users may
/// see); [`Debug`] shows a hash of it only.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pid(engineio::sid::Sid);

impl Pid {
    /// A pid from 15 bytes (a MAC, or random bytes): 20 base64url characters.
    pub fn from_bytes(bytes: [u8; 15]) -> Pid {
        let mut text = [0u8; 20];
        let written = BASE64_URL_SAFE_NO_PAD
            .encode_slice(bytes, &mut text)
            .unwrap_or(0);
        debug_assert_eq!(written, 20);
        let text = std::str::from_utf8(&text).unwrap_or_default();
        // 15 bytes are always 20 base64url characters: parse cannot fail.
        Pid(engineio::sid::Sid::parse(text).unwrap_or_else(engineio::sid::Sid::random))
    }

    /// Parses a pid a client presented; `None` if it cannot be one.
    pub fn parse(s: &str) -> Option<Pid> {
        engineio::sid::Sid::parse(s).map(Pid)
    }

    /// The pid as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Debug for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pid({})", self.0.log_id())
    }
}

/// Computes pids: HMAC-SHA256 of the namespace and the socket id under a
/// secret key, cut to 15 bytes. Unguessable without the key, and the same
/// for the same socket on every node that holds the same key.
#[derive(Clone)]
pub struct PidMac {
    /// The key already absorbed: each pid is a clone of it and two
    /// compressions, not four.
    mac: Hmac<Sha256>,
}

impl PidMac {
    /// A MAC under `key`.
    pub fn new(key: &[u8]) -> PidMac {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        PidMac { mac }
    }

    /// A MAC under a fresh random key (one node's).
    pub fn random() -> PidMac {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        PidMac::new(&key)
    }

    /// The pid of socket `sid` in namespace `nsp`.
    pub fn pid(&self, nsp: &str, sid: &SocketId) -> Pid {
        let mut mac = self.mac.clone();
        mac.update(nsp.as_bytes());
        mac.update(&[0]);
        mac.update(sid.as_str().as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut bytes = [0u8; 15];
        bytes.copy_from_slice(&tag[..15]);
        Pid::from_bytes(bytes)
    }
}

/// Recovery settings. A zero `window` turns recovery off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// How long a disconnected socket's session, and the packets it may
    /// miss, are kept (the reference's `maxDisconnectionDuration`).
    pub window: Duration,
    /// Bytes the store keeps, all namespaces together: the packets (their
    /// encoded frames plus bookkeeping) and the sessions of disconnected
    /// sockets (their rooms plus bookkeeping). Past it the oldest of
    /// either are dropped, even inside the window: a client whose session
    /// went, or that missed a packet that went, is not recovered.
    pub max_bytes: usize,
    /// Sessions of disconnected sockets kept, all namespaces together; past
    /// it the oldest are forgotten.
    pub max_sessions: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            window: Duration::from_millis(120_000),
            max_bytes: 64 << 20,
            max_sessions: 100_000,
        }
    }
}

impl RecoveryConfig {
    /// Whether recovery is on.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }
}

/// A socket's session: what recovering it restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its namespace: a session is restored in this namespace only.
    pub nsp: Arc<str>,
    /// The socket id, which the recovered socket keeps.
    pub sid: SocketId,
    /// The private id the client presents.
    pub pid: Pid,
    /// The rooms the socket is (or was) in, besides its own id.
    pub rooms: Vec<Room>,
    /// Whom the session belongs to (the signed-in user; see
    /// [`Namespace::set_session_owner`](crate::Namespace::set_session_owner)):
    /// it is restored only for a client the namespace's middleware finds
    /// to be the same owner.
    pub owner: Option<Arc<str>>,
}

/// Whom a recoverable packet was sent to.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// A broadcast (rooms, exceptions).
    Broadcast(&'a BroadcastOptions),
    /// One socket (`socket.emit`).
    Socket(&'a SocketId),
}

/// A packet a recovering socket missed.
#[derive(Debug, Clone)]
pub struct Missed {
    pub offset: Offset,
    pub packet: Encoded,
}

/// Where sessions and recoverable packets are kept. One per server, shared
/// by its namespaces. The calls on a socket's life are synchronous and
/// cheap (a store that writes elsewhere queues the write); `restore` and
/// `missed`, which answer a reconnecting client, may wait.
///
/// The contract: [`record`](Self::record) gives each packet an offset
/// greater than any before; [`missed`](Self::missed) answers every packet
/// recorded after the offset that the session would have received, in
/// offset order, or `None` when it no longer has all of them — never some.
pub trait SessionStore: Send + Sync + 'static {
    /// The private id of socket `sid` in namespace `nsp`, sent in its
    /// CONNECT reply: unguessable, the same for the same socket every time
    /// (a recovered socket is told the same one), and the same on every
    /// node that may restore it.
    fn pid(&self, nsp: &str, sid: &SocketId) -> Pid;

    /// Whether the namespaces' adapter writes the log as it publishes
    /// (a cluster's: the order of the log is then the bus's, which only
    /// the bus knows). Recoverable events then all go through the
    /// adapter's `broadcast_event` — an emit to one socket as a broadcast
    /// to its own room, as the reference does — and reach the sockets with
    /// their offsets from there; [`record`](Self::record) is not called.
    fn logs_through_adapter(&self) -> bool {
        false
    }

    /// A socket entered its namespace (fresh, or recovered with its
    /// session's rooms). A store that must survive the node keeps the
    /// session from here on; the one-node store needs nothing before the
    /// socket leaves.
    fn connected(&self, _session: &Session) {}

    /// A connected socket joined rooms.
    fn joined(&self, _nsp: &str, _sid: &SocketId, _rooms: &[Room]) {}

    /// A connected socket left a room.
    fn left(&self, _nsp: &str, _sid: &SocketId, _room: &str) {}

    /// A socket left its namespace, in these rooms. With `keep`, its
    /// session is kept for the window (the connection dropped); without,
    /// it is forgotten (the client or the server ended it).
    fn disconnected(&self, session: Session, keep: bool);

    /// Records a recoverable packet for `audience` in namespace `nsp`:
    /// `encode` builds it with the offset the store assigns (called once),
    /// and the packet is returned for delivery.
    fn record(
        &self,
        nsp: &Arc<str>,
        audience: Audience<'_>,
        encode: &mut dyn FnMut(Offset) -> Encoded,
    ) -> Encoded;

    /// Takes the session `pid` of namespace `nsp` for a client that last
    /// received `offset`, if it is still kept, belongs to `owner`, and
    /// every packet after `offset` is still held. A session taken is no
    /// longer kept (one client gets it, once).
    fn restore(
        &self,
        nsp: &str,
        pid: &Pid,
        offset: Offset,
        owner: Option<&str>,
    ) -> BoxFuture<Option<Session>>;

    /// The packets recorded after `after` that `session` would have
    /// received, in order; `None` if some of them are no longer held.
    fn missed(&self, session: &Session, after: Offset) -> BoxFuture<Option<Vec<Missed>>>;

    /// What the store holds on this node, for metrics.
    fn usage(&self) -> Usage;
}

/// What a client asks for in its CONNECT payload: `{pid, offset, …}`.
pub(crate) fn requested(auth: &RawValue) -> Option<(Pid, Offset)> {
    #[derive(serde::Deserialize)]
    struct Asked<'a> {
        #[serde(borrow)]
        pid: Option<&'a RawValue>,
        #[serde(borrow)]
        offset: Option<&'a RawValue>,
    }
    let asked: Asked = serde_json::from_str(auth.get()).ok()?;
    let text = |raw: Option<&RawValue>| -> Option<String> {
        raw.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    };
    let pid = Pid::parse(&text(asked.pid)?)?;
    let offset = Offset::parse(&text(asked.offset)?)?;
    Some((pid, offset))
}

// ---------------------------------------------------------------------------
// The one-node store.

/// Bookkeeping counted for each packet held, beyond its frames: the entry,
/// its frame list, its room names' pointers.
const ENTRY_OVERHEAD: usize = 160;

/// Bookkeeping counted for each session kept, beyond its rooms' names: the
/// session, its map and age-order entries, its namespace's pointer.
const SESSION_OVERHEAD: usize = 192;

/// What the store holds, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes counted against [`RecoveryConfig::max_bytes`]: packets and
    /// sessions, with their bookkeeping.
    pub bytes: u64,
    /// Recoverable packets held.
    pub packets: u64,
    /// Sessions of disconnected sockets kept.
    pub sessions: u64,
}

/// The in-memory [`SessionStore`] of one node: one log for every namespace
/// (a `VecDeque` dropped from the front, so that holding a packet means
/// holding every later one), and the sessions of disconnected sockets. A
/// connected socket costs it nothing: its session is taken from the socket
/// when it leaves, and its `pid` is a MAC of its id under a key drawn at
/// start, so it is never stored.
pub struct MemoryStore {
    config: RecoveryConfig,
    /// Under a key drawn at start.
    mac: PidMac,
    inner: Mutex<Log>,
    pruning: AtomicBool,
}

struct Log {
    entries: VecDeque<Entry>,
    /// The offset the next packet gets (the first is 1).
    next: u64,
    /// Bytes of the packets and sessions held (see [`Entry::bytes`],
    /// [`Kept::bytes`]).
    bytes: usize,
    sessions: HashMap<Pid, Kept>,
    /// Sessions by age (the key of each is its `order`).
    order: BTreeMap<u64, Pid>,
    next_order: u64,
}

struct Entry {
    offset: u64,
    at: Instant,
    nsp: Arc<str>,
    to: Recipients,
    packet: Encoded,
    bytes: usize,
}

enum Recipients {
    Socket(SocketId),
    Rooms {
        rooms: Box<[Room]>,
        except: Box<[Room]>,
        except_socket: Option<SocketId>,
    },
}

impl Recipients {
    fn of(audience: Audience<'_>) -> Recipients {
        match audience {
            Audience::Socket(id) => Recipients::Socket(*id),
            Audience::Broadcast(opts) => Recipients::Rooms {
                rooms: opts.rooms.clone().into_boxed_slice(),
                except: opts.except.clone().into_boxed_slice(),
                except_socket: opts.except_socket,
            },
        }
    }

    /// Whether a socket of `session` was meant to receive it (the rooms
    /// it was in at disconnection, and its own id, which is a room too).
    fn reach(&self, session: &Session) -> bool {
        let sid = session.sid.as_str();
        let member = |room: &Room| &**room == sid || session.rooms.contains(room);
        match self {
            Recipients::Socket(id) => *id == session.sid,
            Recipients::Rooms {
                rooms,
                except,
                except_socket,
            } => {
                *except_socket != Some(session.sid)
                    && !except.iter().any(member)
                    && (rooms.is_empty() || rooms.iter().any(member))
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Recipients::Socket(_) => 0,
            Recipients::Rooms { rooms, except, .. } => {
                rooms.iter().chain(except.iter()).map(|r| r.len()).sum()
            }
        }
    }
}

struct Kept {
    session: Session,
    at: Instant,
    order: u64,
    /// What keeping it counts against the byte bound.
    bytes: usize,
}

impl Kept {
    fn bytes_of(session: &Session) -> usize {
        // Each room: its name and the Arc's counts, and the pointer to it.
        let rooms: usize = session.rooms.iter().map(|room| room.len() + 32).sum();
        SESSION_OVERHEAD + rooms + session.owner.as_ref().map_or(0, |o| o.len() + 16)
    }
}

impl Log {
    /// The offset of the oldest packet held (`next` when none is).
    fn first(&self) -> u64 {
        self.entries.front().map_or(self.next, |e| e.offset)
    }

    /// Whether every packet after `offset` is held, `offset` being one
    /// this store gave (a client cannot make one up to reach back further).
    fn holds_after(&self, offset: Offset) -> bool {
        offset.0 >= 1 && offset.0 < self.next && offset.0 + 1 >= self.first()
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(entry) = self.entries.front() {
            if now.saturating_duration_since(entry.at) < window {
                break;
            }
            self.bytes -= entry.bytes;
            self.entries.pop_front();
        }
        while let Some((&order, pid)) = self.order.first_key_value() {
            let expired = self
                .sessions
                .get(pid)
                .is_none_or(|kept| now.saturating_duration_since(kept.at) >= window);
            if !expired {
                break;
            }
            let pid = *pid;
            self.order.remove(&order);
            if let Some(kept) = self.sessions.remove(&pid) {
                self.bytes -= kept.bytes;
            }
        }
    }

    fn forget(&mut self, pid: &Pid) -> Option<Kept> {
        let kept = self.sessions.remove(pid)?;
        self.order.remove(&kept.order);
        self.bytes -= kept.bytes;
        Some(kept)
    }

    /// Forgets the oldest session.
    fn forget_oldest_session(&mut self) -> bool {
        let Some((_, pid)) = self.order.pop_first() else {
            return false;
        };
        if let Some(kept) = self.sessions.remove(&pid) {
            self.bytes -= kept.bytes;
        }
        true
    }

    /// Drops the oldest of packets and sessions alike until what is held
    /// fits in `max_bytes`: a packet kept for sessions that are gone, or a
    /// session whose packets are gone, would be of no use.
    fn shrink(&mut self, max_bytes: usize) {
        while self.bytes > max_bytes {
            let oldest_session = (self.order.first_key_value())
                .and_then(|(_, pid)| self.sessions.get(pid))
                .map(|kept| kept.at);
            let oldest_packet = self.entries.front().map(|entry| entry.at);
            let dropped = match (oldest_packet, oldest_session) {
                (Some(packet), Some(session)) if session < packet => self.forget_oldest_session(),
                (Some(_), _) => self
                    .entries
                    .pop_front()
                    .map(|e| self.bytes -= e.bytes)
                    .is_some(),
                (None, _) => self.forget_oldest_session(),
            };
            if !dropped {
                break;
            }
        }
    }
}

impl MemoryStore {
    /// A store with `config` and a fresh random key for its pids.
    pub fn new(config: RecoveryConfig) -> MemoryStore {
        MemoryStore {
            config,
            mac: PidMac::random(),
            inner: Mutex::new(Log {
                entries: VecDeque::new(),
                next: 1,
                bytes: 0,
                sessions: HashMap::new(),
                order: BTreeMap::new(),
                next_order: 0,
            }),
            pruning: AtomicBool::new(false),
        }
    }

    /// Drops, every so often, what the window let go of, so that an idle
    /// server does not hold the last burst's packets until the next one
    /// (without a Tokio runtime, pruning happens on use only). Stops when
    /// the store is dropped.
    pub fn spawn_pruning(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.pruning.swap(true, Ordering::Relaxed) {
            return;
        }
        let period =
            (self.config.window / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let store: Weak<MemoryStore> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                store.prune(Instant::now());
            }
        });
    }

    fn prune(&self, now: Instant) {
        self.inner.lock().prune(now, self.config.window);
    }

    fn usage_now(&self) -> Usage {
        let log = self.inner.lock();
        Usage {
            bytes: log.bytes as u64,
            packets: log.entries.len() as u64,
            sessions: log.sessions.len() as u64,
        }
    }

    fn record_at(
        &self,
        now: Instant,
        nsp: &Arc<str>,
        audience: Audience<'_>,
        encode: &mut dyn FnMut(Offset) -> Encoded,
    ) -> Encoded {
        let to = Recipients::of(audience);
        let mut log = self.inner.lock();
        log.prune(now, self.config.window);
        let offset = log.next;
        log.next += 1;
        // Encoded under the lock: packets enter the log in offset order,
        // so that a reader never sees one before an earlier one.
        let packet = encode(Offset(offset));
        let bytes = packet.byte_len() + to.bytes() + ENTRY_OVERHEAD;
        log.bytes += bytes;
        log.entries.push_back(Entry {
            offset,
            at: now,
            nsp: nsp.clone(),
            to,
            packet: packet.clone(),
            bytes,
        });
        log.shrink(self.config.max_bytes);
        packet
    }

    fn disconnected_at(&self, now: Instant, session: Session, keep: bool) {
        let mut log = self.inner.lock();
        log.prune(now, self.config.window);
        log.forget(&session.pid);
        if keep && self.config.max_sessions > 0 {
            while log.sessions.len() >= self.config.max_sessions && log.forget_oldest_session() {}
            let order = log.next_order;
            log.next_order += 1;
            let pid = session.pid;
            let bytes = Kept::bytes_of(&session);
            log.order.insert(order, pid);
            log.bytes += bytes;
            log.sessions.insert(
                pid,
                Kept {
                    session,
                    at: now,
                    order,
                    bytes,
                },
            );
            log.shrink(self.config.max_bytes);
        }
    }

    fn restore_at(
        &self,
        now: Instant,
        nsp: &str,
        pid: &Pid,
        offset: Offset,
        owner: Option<&str>,
    ) -> Option<Session> {
        let mut log = self.inner.lock();
        log.prune(now, self.config.window);
        let kept = log.sessions.get(pid)?;
        // Another namespace's pid, or another user's: not theirs to take,
        // and the session stays for its own client.
        if &*kept.session.nsp != nsp || kept.session.owner.as_deref() != owner {
            return None;
        }
        let held = log.holds_after(offset);
        // A session whose packets are gone cannot be recovered any more:
        // forgotten either way.
        let kept = log.forget(pid)?;
        held.then_some(kept.session)
    }

    fn missed_at(&self, now: Instant, session: &Session, after: Offset) -> Option<Vec<Missed>> {
        let mut log = self.inner.lock();
        log.prune(now, self.config.window);
        if !log.holds_after(after) {
            return None;
        }
        // Offsets are consecutive: the packet after `after` is at a known
        // index, and the scan covers the missed packets only.
        let start = (after.0 + 1 - log.first()) as usize;
        let missed = log
            .entries
            .range(start..)
            .filter(|e| *e.nsp == *session.nsp && e.to.reach(session))
            .map(|e| Missed {
                offset: Offset(e.offset),
                packet: e.packet.clone(),
            })
            .collect();
        Some(missed)
    }
}

impl SessionStore for MemoryStore {
    fn pid(&self, nsp: &str, sid: &SocketId) -> Pid {
        self.mac.pid(nsp, sid)
    }

    fn disconnected(&self, session: Session, keep: bool) {
        self.disconnected_at(Instant::now(), session, keep);
    }

    fn record(
        &self,
        nsp: &Arc<str>,
        audience: Audience<'_>,
        encode: &mut dyn FnMut(Offset) -> Encoded,
    ) -> Encoded {
        self.record_at(Instant::now(), nsp, audience, encode)
    }

    fn restore(
        &self,
        nsp: &str,
        pid: &Pid,
        offset: Offset,
        owner: Option<&str>,
    ) -> BoxFuture<Option<Session>> {
        let session = self.restore_at(Instant::now(), nsp, pid, offset, owner);
        Box::pin(std::future::ready(session))
    }

    fn missed(&self, session: &Session, after: Offset) -> BoxFuture<Option<Vec<Missed>>> {
        let missed = self.missed_at(Instant::now(), session, after);
        Box::pin(std::future::ready(missed))
    }

    fn usage(&self) -> Usage {
        self.usage_now()
    }
}

// ---------------------------------------------------------------------------
// Per namespace: the barrier and the sockets being restored.

/// Lets a restore wait until every delivery that began before it has
/// ended, without stopping the deliveries that begin meanwhile: each
/// delivery counts itself in one of two slots, the current epoch's; a
/// restore moves the epoch on and waits for the old slot to empty.
pub(crate) struct Barrier {
    epoch: AtomicU64,
    inflight: [AtomicU64; 2],
    /// A restore waits: deliveries that end must wake it.
    waiting: AtomicBool,
    drained: tokio::sync::Notify,
    /// One restore at a time moves the epoch (a second move would reuse
    /// the slot the first still waits on).
    turn: tokio::sync::Mutex<()>,
}

/// A delivery under way (see [`Barrier::enter`]).
pub(crate) struct Pass<'a> {
    barrier: &'a Barrier,
    slot: usize,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.barrier.exit(self.slot);
    }
}

impl Barrier {
    fn new() -> Barrier {
        Barrier {
            epoch: AtomicU64::new(0),
            inflight: [AtomicU64::new(0), AtomicU64::new(0)],
            waiting: AtomicBool::new(false),
            drained: tokio::sync::Notify::new(),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts a delivery until the pass is dropped.
    pub(crate) fn enter(&self) -> Pass<'_> {
        loop {
            let epoch = self.epoch.load(Ordering::SeqCst);
            let slot = (epoch & 1) as usize;
            self.inflight[slot].fetch_add(1, Ordering::SeqCst);
            // Counted in the slot of an epoch that is still current: a
            // restore that moves it on later will wait for this delivery.
            if self.epoch.load(Ordering::SeqCst) == epoch {
                return Pass {
                    barrier: self,
                    slot,
                };
            }
            self.exit(slot);
        }
    }

    fn exit(&self, slot: usize) {
        if self.inflight[slot].fetch_sub(1, Ordering::SeqCst) == 1
            && self.waiting.load(Ordering::SeqCst)
        {
            self.drained.notify_waiters();
        }
    }

    /// Completes once every delivery that entered before the call has ended.
    pub(crate) async fn wait(&self) {
        let _turn = self.turn.lock().await;
        self.waiting.store(true, Ordering::SeqCst);
        let old = (self.epoch.fetch_add(1, Ordering::SeqCst) & 1) as usize;
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.inflight[old].load(Ordering::SeqCst) == 0 {
                break;
            }
            drained.await;
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}

/// A namespace's side of recovery: its store, the barrier its deliveries
/// pass, and the sockets being restored with the packets held for them.
pub(crate) struct NsRecovery {
    pub(crate) store: Arc<dyn SessionStore>,
    nsp: Arc<str>,
    pub(crate) barrier: Barrier,
    holding: Mutex<HashMap<SocketId, Holding>>,
}

/// A socket being restored: its session as it was, and what was delivered
/// to it live meanwhile.
struct Holding {
    session: Session,
    live: Vec<(Encoded, bool)>,
    frames: usize,
    bytes: usize,
    /// What the connection's queue could take when the restore began: more
    /// held than that would not be sent anyway.
    room: (usize, usize),
    overflowed: bool,
}

/// What [`NsRecovery::hold`] did with a packet.
pub(crate) enum Hold {
    /// Held for the socket being restored.
    Held,
    /// The socket is not being restored (any more): send it.
    Send,
    /// Past what can be held: the restore cannot complete (close the connection).
    Overflow,
}

impl NsRecovery {
    pub(crate) fn new(nsp: &str, store: Arc<dyn SessionStore>) -> NsRecovery {
        NsRecovery {
            store,
            nsp: Arc::from(nsp),
            barrier: Barrier::new(),
            holding: Mutex::new(HashMap::new()),
        }
    }

    /// The namespace's name, shared by its sessions and packets.
    pub(crate) fn nsp(&self) -> &Arc<str> {
        &self.nsp
    }

    /// Records a recoverable packet (see [`SessionStore::record`]).
    pub(crate) fn record(
        &self,
        audience: Audience<'_>,
        mut encode: impl FnMut(Offset) -> Encoded,
    ) -> Encoded {
        self.store.record(&self.nsp, audience, &mut encode)
    }

    /// Starts holding what is delivered to the socket of `session`.
    pub(crate) fn begin(&self, session: Session, room: (usize, usize)) {
        self.holding.lock().insert(
            session.sid,
            Holding {
                session,
                live: Vec::new(),
                frames: 0,
                bytes: 0,
                room,
                overflowed: false,
            },
        );
    }

    /// A packet delivered to a socket that may be being restored.
    pub(crate) fn hold(&self, id: &SocketId, packet: &Encoded, volatile: bool) -> Hold {
        let mut holding = self.holding.lock();
        let Some(held) = holding.get_mut(id) else {
            return Hold::Send;
        };
        if held.overflowed {
            return Hold::Held;
        }
        let frames = held.frames + packet.frames.len();
        let bytes = held.bytes + packet.byte_len();
        if frames > held.room.0 || bytes > held.room.1 {
            if volatile {
                // Dropped, as a full queue drops it.
                return Hold::Held;
            }
            held.overflowed = true;
            held.live = Vec::new();
            return Hold::Overflow;
        }
        held.frames = frames;
        held.bytes = bytes;
        held.live.push((packet.clone(), volatile));
        Hold::Held
    }

    /// Stops holding for a socket that left before its restore completed;
    /// returns its session as it was restored (what to keep for the
    /// client's next attempt).
    pub(crate) fn abort(&self, id: &SocketId) -> Option<Session> {
        self.holding.lock().remove(id).map(|held| held.session)
    }

    /// Completes a restore: `send` gets the CONNECT reply, every missed
    /// packet, then what was delivered live and is not among them, under
    /// the lock that holding takes, so nothing delivered meanwhile can
    /// pass them. False if the socket was not being restored any more, or
    /// held more than its connection could take.
    pub(crate) fn release(
        &self,
        id: &SocketId,
        connect: &Encoded,
        missed: &[Missed],
        mut send: impl FnMut(&Encoded, bool),
    ) -> bool {
        let mut holding = self.holding.lock();
        let Some(held) = holding.remove(id) else {
            return false;
        };
        if held.overflowed {
            return false;
        }
        send(connect, false);
        for missed in missed {
            send(&missed.packet, false);
        }
        for (packet, volatile) in &held.live {
            // Delivered live and read from the log both: sent once.
            let replayed = packet
                .offset()
                .is_some_and(|offset| missed.binary_search_by_key(&offset, |m| m.offset).is_ok());
            if !replayed {
                send(packet, *volatile);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
