//! One Engine.IO session: its outbound queue, heartbeat, transport state,
//! upgrade and close. The transports (`transports::polling`,
//! `transports::websocket`) move bytes; this module decides what they mean.
//!
//! Locking: all mutable state sits behind one short-held mutex; the
//! transports wait on `changed` (a `Notify` used with `notify_waiters`, each
//! waiter enabling its `Notified` before looking at the state, so no wake-up
//! is lost).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::admission::SessionPermit;
use crate::packet::{Frame, Message, Packet, Protocol};
use crate::server::Shared;
use crate::sid::Sid;

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

impl Transport {
    /// The name used in the `transport` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// Why a session closed (the reference server's reasons, plus slow consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the connection or sent a `close` packet.
    TransportClose,
    /// The connection failed, or the client broke the transport's rules.
    TransportError,
    /// No pong within `pingTimeout`.
    PingTimeout,
    /// The client sent a packet that could not be decoded.
    ParseError,
    /// The server closed the session.
    ForcedClose,
    /// The session's outbound queue and unsent bytes passed their bound.
    SlowConsumer,
    /// The client sent more than `maxPayload` bytes at once.
    PayloadTooLarge,
}

impl CloseReason {
    /// The reason as the reference server names it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError
            | CloseReason::SlowConsumer
            | CloseReason::PayloadTooLarge => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
        }
    }
}

/// Receives what one session's client sends. Created by
/// [`Handler::on_open`](crate::Handler::on_open) for each new session.
pub trait Connection: Send + Sync + 'static {
    /// A message from the client. Calls for one session never overlap and
    /// arrive in the client's order.
    fn on_message(&self, message: Message);
    /// The session closed; called once, after which no message arrives.
    fn on_close(&self, reason: CloseReason);
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("session closed")]
    Closed,
    #[error("outbound queue full: slow consumer disconnected")]
    SlowConsumer,
    #[error("outbound queue full: volatile frame dropped")]
    Dropped,
}

/// How a session frames what differs between protocol revisions: bits of
/// `Socket::flags`.
mod flag {
    /// The session speaks Engine.IO v3.
    pub(super) const V3: u8 = 1;
    /// v3 polling: the client cannot read binary payloads (`b64` on its
    /// handshake), so binaries travel as base64 text.
    pub(super) const POLLING_B64: u8 = 2;
    /// v3 WebSocket: the same, for the request that opened the WebSocket.
    pub(super) const WS_B64: u8 = 4;
    /// Polling answered as JSONP scripts (`j` on the handshake).
    pub(super) const JSONP: u8 = 8;
}

/// How the WebSocket writer frames a binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryFraming {
    /// v4: the bytes as they are.
    Raw,
    /// v3: a binary frame led by the `message` type byte (`04`).
    Typed,
    /// v3 with `b64`: a text frame `b4<base64>`.
    Base64,
}

/// An Engine.IO session, shared by its transports and its [`Connection`].
pub struct Socket {
    id: Sid,
    /// Protocol revision and `b64` bits (see [`flag`]). Set at creation,
    /// but for the WebSocket bit set by an upgrade; in what was padding
    /// after `id`, so a session weighs no more for it.
    flags: AtomicU8,
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// The WebSocket task is handling the client's messages and will take
    /// the queue right after: frames queued meanwhile need no wake-up.
    writer_busy: AtomicBool,
    /// The bytes the WebSocket writer holds for this session: from when it
    /// takes a batch from the queue (set then, under the state lock) until
    /// the kernel has taken them (stored by the writer after each write and
    /// flush, without the lock). They count against `max_queued_bytes`
    /// together with the queue, so that the bound an operator sets is what
    /// a connection that stops reading can make the server hold. Always 0
    /// on polling, whose replies hyper writes.
    writer_unsent: AtomicUsize,
    /// Woken when frames are queued, the transport changes, or the session closes.
    changed: Notify,
}

pub(crate) struct State {
    pub(crate) transport: Transport,
    pub(crate) upgrade: Upgrade,
    pub(crate) queue: VecDeque<Frame>,
    /// The bytes of the frames in `queue` (see [`Frame::byte_len`]).
    pub(crate) queued_bytes: usize,
    /// A GET is waiting for frames.
    pub(crate) poll_waiting: bool,
    /// A POST is being processed.
    pub(crate) post_active: bool,
    /// What the waiting GET answers once the session closed under it.
    pub(crate) poll_terminal: Option<Frame>,
    /// A graceful close: send what is queued, then close.
    pub(crate) closing: bool,
    pub(crate) closed: Option<CloseReason>,
    conn: Option<Arc<dyn Connection>>,
    awaiting_pong: bool,
    /// Frames ever queued, and how many of them the transport has taken.
    pub(crate) queued_total: u64,
    pub(crate) sent_total: u64,
    /// Someone waits in [`Socket::flushed`].
    pub(crate) flush_waiters: bool,
    /// When the heartbeat next acts: send a ping, or give up waiting for the pong.
    heartbeat_at: Instant,
    /// The session's admission slot, freed when it closes.
    permit: Option<SessionPermit>,
}

/// What the heartbeat decided.
enum Heartbeat {
    /// Nothing more to do before this instant (a ping may have been queued).
    Wait(Instant),
    /// The session must close.
    Expired(CloseReason),
}

/// What the WebSocket task does after its turn.
pub(crate) enum WriterTurn {
    /// Keep serving; wake for the heartbeat at this instant.
    Open { heartbeat_at: Instant },
    /// The session closed.
    Closed(CloseReason),
    /// A graceful close: everything queued has been taken.
    Drained,
}

/// A queue of frames as an idle connection needs it: room for exactly
/// one. An idle connection is sent one frame at a time (the CONNECT reply,
/// then a ping every `pingInterval`), where a first push into an empty
/// queue would reserve four (160 bytes, in the session's queue and, once
/// swapped, in the WebSocket task's batch). Made so once, where the queue
/// and the batch are created, and not checked on every send: a check in
/// `send_all` cost fan-out 11 instructions per delivery (callgrind, 2.6%).
/// Past it a queue grows by doubling (straight to four) and keeps its
/// capacity, so a busy connection's queue is not reallocated per message
/// (giving capacity back after each turn cost fan-out 11–14%).
pub(crate) fn idle_queue() -> VecDeque<Frame> {
    VecDeque::with_capacity(1)
}

impl State {
    /// Sends the ping when due, expires a missed pong or an unfinished
    /// graceful close.
    fn heartbeat_step(&mut self, now: Instant, config: &crate::EngineConfig) -> Heartbeat {
        if now < self.heartbeat_at {
            return Heartbeat::Wait(self.heartbeat_at);
        }
        if self.closing {
            return Heartbeat::Expired(CloseReason::ForcedClose);
        }
        if self.awaiting_pong {
            return Heartbeat::Expired(CloseReason::PingTimeout);
        }
        self.awaiting_pong = true;
        // From when the ping was due, not from when the timer fired.
        self.heartbeat_at += config.ping_timeout;
        self.queue.push_back(Frame::PING);
        self.queued_bytes += Frame::PING.byte_len();
        self.queued_total += 1;
        Heartbeat::Wait(self.heartbeat_at)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// No WebSocket attached.
    None,
    /// A WebSocket is attached and has not probed yet.
    Attached,
    /// The WebSocket sent `2probe` at this instant: a pending poll is
    /// released with a noop shortly after, so the client can finish.
    Probed(Instant),
    /// The session moved to WebSocket.
    Done,
}

impl Socket {
    /// A session of `protocol` on `transport`; `b64` says the client cannot
    /// read binary on it (v3 only).
    pub(crate) fn new(
        id: Sid,
        shared: Arc<Shared>,
        transport: Transport,
        protocol: Protocol,
        b64: bool,
    ) -> Arc<Socket> {
        let mut flags = 0;
        // v3: the client pings; the session always awaits its next ping,
        // within `pingInterval + pingTimeout` (the reference's deadline).
        let (awaiting_pong, heartbeat_at) = match protocol {
            Protocol::V4 => (false, Instant::now() + shared.config.ping_interval),
            Protocol::V3 => {
                flags |= flag::V3;
                if b64 {
                    flags |= match transport {
                        Transport::Polling => flag::POLLING_B64,
                        Transport::WebSocket => flag::WS_B64,
                    };
                }
                shared.counters.v3_sessions.fetch_add(1, Ordering::Relaxed);
                let config = &shared.config;
                (
                    true,
                    Instant::now() + config.ping_interval + config.ping_timeout,
                )
            }
        };
        Arc::new(Socket {
            id,
            flags: AtomicU8::new(flags),
            shared,
            state: Mutex::new(State {
                transport,
                upgrade: Upgrade::None,
                queue: idle_queue(),
                queued_bytes: 0,
                poll_waiting: false,
                post_active: false,
                poll_terminal: None,
                closing: false,
                closed: None,
                conn: None,
                awaiting_pong,
                queued_total: 0,
                sent_total: 0,
                flush_waiters: false,
                heartbeat_at,
                permit: None,
            }),
            writer_busy: AtomicBool::new(false),
            writer_unsent: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    pub(crate) fn set_permit(&self, permit: SessionPermit) {
        self.state.lock().permit = Some(permit);
    }

    pub(crate) fn set_connection(&self, conn: Arc<dyn Connection>) {
        self.state.lock().conn = Some(conn);
    }

    /// The session id (authenticates polling requests: never show it to others).
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// What logs show for this session instead of its id (see [`Sid::log_id`]).
    pub fn log_id(&self) -> crate::sid::LogId {
        self.id.log_id()
    }

    /// The Engine.IO protocol revision the client speaks.
    pub fn protocol(&self) -> Protocol {
        if self.flags.load(Ordering::Relaxed) & flag::V3 != 0 {
            Protocol::V3
        } else {
            Protocol::V4
        }
    }

    /// Whether a v3 polling client asked for binaries as base64 text.
    pub(crate) fn polling_b64(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & flag::POLLING_B64 != 0
    }

    /// How the WebSocket writer frames binary messages for this client.
    pub(crate) fn binary_framing(&self) -> BinaryFraming {
        let flags = self.flags.load(Ordering::Relaxed);
        if flags & flag::V3 == 0 {
            BinaryFraming::Raw
        } else if flags & flag::WS_B64 != 0 {
            BinaryFraming::Base64
        } else {
            BinaryFraming::Typed
        }
    }

    /// A session opened by a JSONP handshake: its polling requests are
    /// scripts and forms (see `transports::jsonp`).
    pub(crate) fn set_jsonp(&self) {
        self.flags.fetch_or(flag::JSONP, Ordering::Relaxed);
    }

    /// Whether the session polls by JSONP.
    pub(crate) fn is_jsonp(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & flag::JSONP != 0
    }

    /// A v3 client upgrading with `b64` on its WebSocket request.
    pub(crate) fn set_ws_b64(&self) {
        self.flags.fetch_or(flag::WS_B64, Ordering::Relaxed);
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.state.lock().transport
    }

    /// Whether the session has closed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Queues a frame. A full queue marks a slow consumer and closes the session.
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_all(std::iter::once(frame), 1, false)
    }

    /// Queues frames that belong together (a packet and its attachments): all
    /// or none. `volatile` frames are dropped when the queue is full instead
    /// of closing the session.
    pub fn send_all(
        &self,
        frames: impl IntoIterator<Item = Frame>,
        count: usize,
        volatile: bool,
    ) -> Result<(), SendError> {
        let mut state = self.state.lock();
        if state.closed.is_some() || state.closing {
            return Err(SendError::Closed);
        }
        // Queued first, taken back if they do not fit: the frames' sizes are
        // known only by going through them.
        let queued_before = state.queue.len();
        let mut bytes = 0;
        state
            .queue
            .extend(frames.into_iter().inspect(|f| bytes += f.byte_len()));
        let config = &self.shared.config;
        // Read under the lock, under which the writer sets it when it takes
        // a batch: a batch always counts, in the queue or here. The
        // writer's later stores lower it (or raise it by frame headers).
        let unsent = self.writer_unsent.load(Ordering::Relaxed);
        if queued_before + count > config.max_queued_frames
            || state.queued_bytes + unsent + bytes > config.max_queued_bytes
        {
            state.queue.truncate(queued_before);
            if volatile {
                self.shared
                    .counters
                    .volatile_dropped
                    .fetch_add(1, Ordering::Relaxed);
                return Err(SendError::Dropped);
            }
            drop(state);
            self.shared
                .counters
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                sid = %self.log_id(),
                "slow consumer: outbound queue and unsent bytes full, closing"
            );
            self.close_with(CloseReason::SlowConsumer, Frame::CLOSE, true);
            return Err(SendError::SlowConsumer);
        }
        let was_empty = queued_before == 0;
        state.queued_bytes += bytes;
        state.queued_total += count as u64;
        // Read under the lock, which the writer holds when it clears it.
        let writer_busy = self.writer_busy.load(Ordering::Relaxed);
        drop(state);
        if was_empty && !writer_busy {
            self.changed.notify_waiters();
        }
        Ok(())
    }

    /// How many more frames, and bytes, the session can queue now before
    /// it is a slow consumer (see [`send_all`](Self::send_all)). For a
    /// sender about to queue a batch it must not cut in two (a replay):
    /// one that does not fit is better not started.
    pub fn queue_room(&self) -> (usize, usize) {
        let state = self.state.lock();
        let config = &self.shared.config;
        let unsent = self.writer_unsent.load(Ordering::Relaxed);
        (
            config.max_queued_frames.saturating_sub(state.queue.len()),
            config
                .max_queued_bytes
                .saturating_sub(state.queued_bytes + unsent),
        )
    }

    /// Completes once every frame queued so far has been handed to the
    /// transport (written to the WebSocket, or taken by a poll), or the
    /// session closed.
    pub fn flushed(self: &Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let socket = self.clone();
        let target = self.state.lock().queued_total;
        async move {
            socket
                .wait_for(|state| {
                    if state.sent_total >= target || state.closed.is_some() {
                        Some(())
                    } else {
                        state.flush_waiters = true;
                        None
                    }
                })
                .await
        }
    }

    /// A poll has been answered: frees the slot and wakes whoever waits
    /// in [`flushed`](Self::flushed).
    pub(crate) fn finish_poll(&self) {
        let mut state = self.state.lock();
        state.poll_waiting = false;
        if std::mem::take(&mut state.flush_waiters) {
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// Closes the session once what is queued has been sent.
    pub fn close(&self) {
        let mut state = self.state.lock();
        if state.closed.is_some() || state.closing {
            return;
        }
        state.closing = true;
        // A polling client that never polls again is let go at the next
        // heartbeat deadline.
        state.heartbeat_at = Instant::now() + self.shared.config.ping_timeout;
        drop(state);
        self.changed.notify_waiters();
    }

    /// Closes the session for a server shutdown: gracefully where a
    /// transport can carry the close now (a WebSocket, a waiting poll), at
    /// once for a polling client between polls, which may never come back.
    pub fn shutdown(&self) {
        let idle_poller = {
            let state = self.state.lock();
            state.transport == Transport::Polling && !state.poll_waiting
        };
        if idle_poller {
            self.close_now(CloseReason::ForcedClose, Frame::CLOSE);
        } else {
            self.close();
        }
    }

    /// Closes the session at once. `poll_reply` answers a waiting GET (`1`
    /// when the server ends the session, `6` when the client did).
    pub(crate) fn close_now(&self, reason: CloseReason, poll_reply: Frame) {
        self.close_with(reason, poll_reply, false);
    }

    /// As [`close_now`](Self::close_now); with `deferred`, the connection
    /// hears of it on another task (for closes decided inside a send).
    fn close_with(&self, reason: CloseReason, poll_reply: Frame, deferred: bool) {
        let (conn, linger, permit) = {
            let mut state = self.state.lock();
            if state.closed.is_some() {
                return;
            }
            state.closed = Some(reason);
            // Only here, once: the slot is free as soon as the session is
            // closed, even while it lingers for a last GET.
            let permit = state.permit.take();
            // A polling client closes with a POST while its next GET may
            // still be on the way (on another connection): keep the session
            // a moment so that this GET gets the noop rather than an error.
            let linger = reason == CloseReason::TransportClose
                && state.transport == Transport::Polling
                && !state.poll_waiting;
            if state.poll_waiting || linger {
                state.poll_terminal = Some(poll_reply);
            }
            state.queue.clear();
            state.queued_bytes = 0;
            (state.conn.take(), linger, permit)
        };
        if self.protocol() == Protocol::V3 {
            let v3 = &self.shared.counters.v3_sessions;
            v3.fetch_sub(1, Ordering::Relaxed);
        }
        drop(permit);
        self.changed.notify_waiters();
        if linger {
            let shared = self.shared.clone();
            let id = self.id;
            tokio::spawn(async move {
                tokio::time::sleep(shared.config.ping_timeout).await;
                shared.remove(&id);
            });
        } else {
            self.shared.remove(&self.id);
        }
        tracing::debug!(sid = %self.log_id(), reason = reason.as_str(), "session closed");
        if let Some(conn) = conn {
            if deferred {
                // We may be inside the caller's broadcast, under its locks:
                // tell the connection from a task of its own.
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(async move { conn.on_close(reason) });
                    }
                    Err(_) => conn.on_close(reason),
                }
            } else {
                conn.on_close(reason);
            }
        }
    }

    /// Handles a packet from the client, whatever the transport.
    pub(crate) fn on_packet(&self, packet: Packet) {
        match packet {
            Packet::Message(message) => {
                let conn = {
                    let state = self.state.lock();
                    if state.closed.is_some() {
                        return;
                    }
                    state.conn.clone()
                };
                if let Some(conn) = conn {
                    conn.on_message(message);
                }
            }
            // v3: only the client pings ("invalid heartbeat direction").
            Packet::Pong(_) if self.protocol() == Protocol::V3 => {
                self.close_now(CloseReason::TransportError, Frame::CLOSE)
            }
            Packet::Pong(_) => {
                let mut state = self.state.lock();
                if state.awaiting_pong {
                    state.awaiting_pong = false;
                    state.heartbeat_at = Instant::now() + self.shared.config.ping_interval;
                }
            }
            // v3: the next ping is due within `pingInterval + pingTimeout`.
            Packet::Ping(_) if self.protocol() == Protocol::V3 => {
                {
                    let mut state = self.state.lock();
                    // A closing session keeps its deadline: a client that
                    // pings but never polls must not hold it open.
                    if state.closed.is_some() || state.closing {
                        return;
                    }
                    let config = &self.shared.config;
                    state.heartbeat_at =
                        Instant::now() + config.ping_interval + config.ping_timeout;
                }
                // Fails only on a closing session, which needs no pong.
                let _ = self.send(Frame::PONG);
            }
            // In v4 only the server pings ("invalid heartbeat direction").
            Packet::Ping(_) => self.close_now(CloseReason::TransportError, Frame::CLOSE),
            Packet::Close => self.close_now(CloseReason::TransportClose, Frame::NOOP),
            Packet::Open | Packet::Upgrade | Packet::Noop => {}
        }
    }

    /// Closes the session if its pong is overdue (timers may fire a little
    /// late; a request must not revive a session the protocol says is dead).
    /// Returns whether the session is closed.
    pub(crate) fn check_expired(&self) -> bool {
        let state = self.state.lock();
        if state.closed.is_some() {
            return true;
        }
        if state.awaiting_pong && Instant::now() >= state.heartbeat_at {
            drop(state);
            self.close_now(CloseReason::PingTimeout, Frame::CLOSE);
            return true;
        }
        false
    }

    /// Runs the heartbeat: sends the ping when due, closes on a missed pong,
    /// finishes a graceful close that did not drain. Returns when to call
    /// again, or `None` once the session is closed.
    pub(crate) fn heartbeat(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return None;
        }
        let was_empty = state.queue.is_empty();
        match state.heartbeat_step(now, &self.shared.config) {
            Heartbeat::Wait(at) => {
                let pinged = was_empty && !state.queue.is_empty();
                drop(state);
                if pinged {
                    self.changed.notify_waiters();
                }
                Some(at)
            }
            Heartbeat::Expired(reason) => {
                drop(state);
                self.close_now(reason, Frame::CLOSE);
                None
            }
        }
    }

    /// The WebSocket writer's unsent bytes as last told (see `writer_unsent`).
    pub(crate) fn writer_unsent(&self) -> usize {
        self.writer_unsent.load(Ordering::Relaxed)
    }

    /// The WebSocket writer's unsent bytes after a write or a flush (see
    /// `writer_unsent`).
    pub(crate) fn set_writer_unsent(&self, bytes: usize) {
        self.writer_unsent.store(bytes, Ordering::Relaxed);
    }

    /// Marks the WebSocket task as handling inbound messages (see `writer_busy`).
    pub(crate) fn set_writer_busy(&self) {
        self.writer_busy.store(true, Ordering::Relaxed);
    }

    /// The WebSocket task's turn, under one lock: takes what is queued into
    /// `batch` (when `may_take`: the previous batch is fully written), runs
    /// the heartbeat, and says what comes next.
    pub(crate) fn writer_turn(&self, batch: &mut VecDeque<Frame>, may_take: bool) -> WriterTurn {
        let now = Instant::now();
        let mut state = self.state.lock();
        self.writer_busy.store(false, Ordering::Relaxed);
        if let Some(reason) = state.closed {
            return WriterTurn::Closed(reason);
        }
        let heartbeat = state.heartbeat_step(now, &self.shared.config);
        let mut notify_flushed = false;
        if may_take && !state.queue.is_empty() {
            std::mem::swap(&mut state.queue, batch);
            // The writer holds them now, until the kernel takes them.
            self.writer_unsent
                .store(state.queued_bytes, Ordering::Relaxed);
            state.queued_bytes = 0;
            state.sent_total = state.queued_total;
            notify_flushed = std::mem::take(&mut state.flush_waiters);
        }
        let drained = state.closing && may_take && state.queue.is_empty();
        drop(state);
        if notify_flushed {
            self.changed.notify_waiters();
        }
        match heartbeat {
            Heartbeat::Expired(reason) => {
                self.close_now(reason, Frame::CLOSE);
                WriterTurn::Closed(reason)
            }
            Heartbeat::Wait(_) if drained => WriterTurn::Drained,
            Heartbeat::Wait(at) => WriterTurn::Open { heartbeat_at: at },
        }
    }

    /// Waits until `check` returns a value. `check` runs under the state lock
    /// each time the session changes.
    pub(crate) async fn wait_for<T>(&self, mut check: impl FnMut(&mut State) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = check(&mut self.state.lock()) {
                return value;
            }
            notified.await;
        }
    }

    /// Locks the state (for the transports).
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Wakes every waiter after a transport changed the state.
    pub(crate) fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// A future that completes on the next change (enable it before checking state).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Forgets the session (after a lingering close was answered).
    pub(crate) fn forget(&self) {
        self.shared.remove(&self.id);
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.log_id())
            .finish()
    }
}

/// Drives the heartbeat of a polling session until it closes or moves to
/// WebSocket (whose task then drives it). Holds only a weak reference, so
/// a closed session is freed at once.
///
/// While a pong is awaited it wakes at least every `pingInterval`, not
/// only at the pong's deadline: a pong (on a POST, which does not wake
/// this task) brings the next ping forward to `pingInterval` after it, and
/// when `pingTimeout` is the longer of the two, sleeping to the deadline
/// sent that ping late, with less than `pingTimeout` left to answer it.
pub(crate) async fn polling_heartbeat(socket: std::sync::Weak<Socket>) {
    loop {
        let Some(strong) = socket.upgrade() else {
            return;
        };
        if strong.lock().upgrade == Upgrade::Done {
            return;
        }
        let now = Instant::now();
        let Some(next) = strong.heartbeat(now) else {
            return;
        };
        let next = next.min(now + strong.shared.config.ping_interval);
        drop(strong);
        tokio::time::sleep_until(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<Socket> {
        let shared = Shared::for_tests(crate::EngineConfig::default());
        Socket::new(
            Sid::random(),
            shared,
            Transport::WebSocket,
            Protocol::V4,
            false,
        )
    }

    fn v3_session(transport: Transport, b64: bool) -> (Arc<Socket>, crate::EngineConfig) {
        let config = crate::EngineConfig {
            ping_interval: std::time::Duration::from_millis(300),
            ping_timeout: std::time::Duration::from_millis(200),
            ..crate::EngineConfig::default()
        };
        let shared = Shared::for_tests(config.clone());
        let socket = Socket::new(Sid::random(), shared, transport, Protocol::V3, b64);
        (socket, config)
    }

    /// The protocol byte sits in what was padding after the 20-byte id
    /// (with `writer_busy`): a session weighs what it weighed before v3.
    #[test]
    fn the_protocol_costs_a_session_no_memory() {
        use std::mem::size_of;
        let words = size_of::<Arc<Shared>>()
            + size_of::<Mutex<State>>()
            + size_of::<AtomicUsize>()
            + size_of::<Notify>();
        let bytes_before_v3 = size_of::<Sid>() + size_of::<AtomicBool>();
        assert_eq!(
            size_of::<Socket>(),
            words + bytes_before_v3.next_multiple_of(8)
        );
    }

    #[test]
    fn protocol_and_framing_follow_the_handshake() {
        assert_eq!(session().protocol(), Protocol::V4);
        assert_eq!(session().binary_framing(), BinaryFraming::Raw);
        let (polling, _) = v3_session(Transport::Polling, true);
        assert_eq!(polling.protocol(), Protocol::V3);
        assert!(polling.polling_b64());
        assert_eq!(polling.binary_framing(), BinaryFraming::Typed);
        polling.set_ws_b64();
        assert_eq!(polling.binary_framing(), BinaryFraming::Base64);
        let (ws, _) = v3_session(Transport::WebSocket, true);
        assert!(!ws.polling_b64());
        assert_eq!(ws.binary_framing(), BinaryFraming::Base64);
    }

    /// v3: the client pings, the server never does; each ping is answered
    /// with `3` and moves the deadline to `pingInterval + pingTimeout`.
    #[tokio::test(start_paused = true)]
    async fn a_v3_session_answers_pings_and_never_sends_one() {
        let (socket, config) = v3_session(Transport::WebSocket, false);
        let deadline = config.ping_interval + config.ping_timeout;
        let mut batch = idle_queue();
        tokio::time::advance(deadline - std::time::Duration::from_millis(1)).await;
        assert!(matches!(
            socket.writer_turn(&mut batch, true),
            WriterTurn::Open { .. }
        ));
        assert!(batch.is_empty(), "the server sent {batch:?}");
        socket.on_packet(Packet::Ping(crate::Str::from("")));
        socket.writer_turn(&mut batch, true);
        assert_eq!(batch.drain(..).collect::<Vec<_>>(), vec![Frame::PONG]);
        // The ping moved the deadline: past the first one, still open.
        tokio::time::advance(std::time::Duration::from_millis(2)).await;
        assert!(!socket.check_expired());
        tokio::time::advance(deadline).await;
        assert!(matches!(
            socket.writer_turn(&mut batch, true),
            WriterTurn::Closed(CloseReason::PingTimeout)
        ));
        assert!(batch.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn pings_do_not_keep_a_closing_v3_session_open() {
        let (socket, config) = v3_session(Transport::Polling, false);
        socket.close();
        socket.on_packet(Packet::Ping(crate::Str::from("")));
        tokio::time::advance(config.ping_timeout).await;
        assert_eq!(socket.heartbeat(Instant::now()), None);
        assert_eq!(socket.lock().closed, Some(CloseReason::ForcedClose));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_v3_client_expires_at_interval_plus_timeout() {
        let (socket, config) = v3_session(Transport::Polling, false);
        tokio::time::advance(config.ping_interval + config.ping_timeout / 2).await;
        assert!(!socket.check_expired());
        tokio::time::advance(config.ping_timeout / 2).await;
        assert!(socket.check_expired());
        assert_eq!(socket.lock().closed, Some(CloseReason::PingTimeout));
    }

    #[test]
    fn a_pong_from_a_v3_client_closes_it() {
        let (socket, _) = v3_session(Transport::WebSocket, false);
        socket.on_packet(Packet::Pong(crate::Str::from("")));
        assert_eq!(socket.lock().closed, Some(CloseReason::TransportError));
        let v4 = session();
        v4.on_packet(Packet::Ping(crate::Str::from("")));
        assert_eq!(v4.lock().closed, Some(CloseReason::TransportError));
    }

    #[test]
    fn v3_sessions_are_counted_while_open() {
        let (socket, _) = v3_session(Transport::Polling, false);
        let count = || socket.shared.counters.v3_sessions.load(Ordering::Relaxed);
        assert_eq!(count(), 1);
        socket.close_now(CloseReason::ForcedClose, Frame::CLOSE);
        assert_eq!(count(), 0);
    }

    /// An idle connection is sent one frame at a time: its queue, and the
    /// writer's batch it is swapped with, hold one frame each (40 bytes,
    /// not the 160 of a first push); a burst still grows them, and they
    /// keep what they grew to.
    #[test]
    fn an_idle_sessions_queue_holds_one_frame() {
        let socket = session();
        let mut batch = idle_queue();
        socket.send(Frame::NOOP).unwrap();
        assert_eq!(socket.lock().queue.capacity(), 1);
        socket.writer_turn(&mut batch, true);
        batch.clear();
        socket.send(Frame::NOOP).unwrap();
        socket.writer_turn(&mut batch, true);
        assert_eq!((socket.lock().queue.capacity(), batch.capacity()), (1, 1));
        batch.clear();
        for _ in 0..3 {
            socket.send(Frame::NOOP).unwrap();
        }
        assert!(socket.lock().queue.capacity() >= 3);
        socket.writer_turn(&mut batch, true);
        batch.clear();
        assert!(
            batch.capacity() >= 3,
            "the writer's batch kept the burst's room"
        );
    }
}
