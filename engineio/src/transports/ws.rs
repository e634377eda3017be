//! RFC 6455, server side, over a `TcpStream`: frame parsing, fragmented
//! messages, control frames, and writing.
//!
//! Why our own: an idle connection must cost almost nothing. The read
//! buffer exists only while bytes are being read or a frame is incomplete,
//! and there is no write buffer: every frame queued for a connection is
//! encoded into one per-thread scratch buffer and written with one call;
//! only the part the kernel did not take is kept, for that connection.
//!
//! What a client can make us hold is bounded. Inbound, the read buffer
//! grows with the bytes that actually arrived (never with the length a
//! header announces), a message is at most `maxPayload`, what is held for
//! incomplete messages counts against the engine-wide budget
//! ([`crate::partial`]), and a message must complete in time. Outbound,
//! the pongs of one read go with one call, and while bytes are unsent a
//! ping only replaces the pong waiting to go (RFC 6455 5.5.3 allows
//! answering the latest ping only: no pong is ever appended to unsent
//! bytes, which are never copied again), the unsent bytes are
//! bounded (the transport task reports them to the session, which counts
//! them against `max_queued_bytes` with its queue; `max_unsent` here is
//! the backstop), and the transport task stops reading a client it cannot
//! write to, so a client that sends without reading is held back by TCP.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::Interest;
use tokio::time::Instant;

use crate::EngineConfig;
use crate::packet::{Frame, v3};
use crate::partial::PartialHold;
use crate::socket::BinaryFraming;
use tokio::net::TcpStream;

/// Read granularity: enough for a burst of small frames.
const READ_CHUNK: usize = 4096;
/// Most bytes read in one `read_available` call, so one busy client cannot
/// keep a worker thread to itself.
const READ_BUDGET: usize = 256 * 1024;
/// The scratch buffer is given back to the allocator past this size.
const SCRATCH_KEEP: usize = 256 * 1024;

/// Close codes we send.
pub(crate) mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;

    /// Whether a client may send `code` in a close frame (RFC 6455 7.4:
    /// 1005, 1006 and 1015 never go on the wire, 1004 and 1016–2999 are
    /// unassigned or reserved, 3000–4999 are for libraries and
    /// applications).
    pub fn is_valid_from_client(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// What one connection may make us hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsLimits {
    /// Largest message, in bytes.
    pub(crate) max_payload: usize,
    /// Most bytes written and not yet taken by the kernel: a backstop, the
    /// session counting them against `max_queued_bytes` first.
    pub(crate) max_unsent: usize,
    /// How long a message may take to arrive once it started.
    pub(crate) partial_timeout: Duration,
}

impl WsLimits {
    pub(crate) fn new(config: &EngineConfig) -> WsLimits {
        WsLimits {
            max_payload: config.max_payload,
            // The writer takes a batch only once nothing is unsent, and the
            // session lets queue and unsent bytes together reach
            // `max_queued_bytes`: one batch, its frame headers (10 bytes at
            // most each) and a few control frames fit. Reaching it means
            // something else is wrong, and the connection goes.
            max_unsent: config
                .max_queued_bytes
                .saturating_add(config.max_queued_frames.saturating_mul(10))
                .saturating_add(64 * 1024),
            partial_timeout: config.partial_timeout,
        }
    }
}

/// A complete message or a close from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsEvent {
    /// A text message (UTF-8 not yet checked).
    Text(Bytes),
    Binary(Bytes),
    /// The client sent a close frame (already answered).
    Close,
}

/// Why the connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("message larger than maxPayload")]
    TooLarge,
    #[error("incomplete messages over the engine's budget")]
    OverBudget,
    #[error("message not completed in time")]
    Timeout,
    #[error("too many bytes unsent: the client does not read")]
    Unsent,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl WsError {
    /// The close code that tells the client why.
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => close_code::PROTOCOL,
            WsError::TooLarge | WsError::OverBudget => close_code::TOO_BIG,
            WsError::Timeout | WsError::Unsent => close_code::POLICY,
            WsError::Io(_) => close_code::NORMAL,
        }
    }
}

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    fn from_u8(b: u8) -> Option<Opcode> {
        Some(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One server-side WebSocket connection.
///
/// It lives in its connection's task for as long as the connection, so
/// its size is paid by every idle connection: what only some connections
/// hold now and then is in [`Occasional`], boxed, and the limits, the
/// same for every connection of an engine, are shared.
pub(crate) struct WsConn {
    tcp: TcpStream,
    /// Bytes read and not yet parsed (absent when idle).
    read: Option<BytesMut>,
    /// Encoded bytes the kernel has not taken yet, in order (empty when
    /// idle; a few entries at most: a batch, then control frames).
    unsent: VecDeque<Bytes>,
    unsent_bytes: usize,
    /// Present only while it holds something (see [`WsConn::tidy`]).
    occasional: Option<Box<Occasional>>,
    limits: Arc<WsLimits>,
    /// This connection's share of the engine's budget for incomplete
    /// messages (set once the session is known).
    hold: Option<PartialHold>,
    /// We sent a close frame: write nothing more.
    close_sent: bool,
    /// The client sent a close frame: read nothing more (a flag, so that
    /// the read loop does not scan its events for it after every chunk).
    close_received: bool,
}

/// What a connection holds only now and then: a frame or a message that
/// arrives in pieces, pongs to send. Boxed, and dropped once empty: most
/// connections hold none of it for most of their life, and its 128 bytes
/// inline would be part of every connection's task.
#[derive(Default)]
struct Occasional {
    /// Since when the read buffer holds an incomplete frame (set only then).
    read_since: Option<Instant>,
    /// A fragmented message being reassembled, and when it started.
    partial: Option<(Opcode, BytesMut, Instant)>,
    /// The answer to the latest ping received while bytes were unsent: it
    /// goes once they are, and a newer ping replaces it. Only set while
    /// `unsent` is not empty.
    pending_pong: Option<BytesMut>,
    /// Pongs for the pings of the read under way (absent otherwise).
    pongs: Option<Vec<u8>>,
}

impl Occasional {
    fn is_empty(&self) -> bool {
        self.read_since.is_none()
            && self.partial.is_none()
            && self.pending_pong.is_none()
            && self.pongs.is_none()
    }
}

impl WsConn {
    /// Wraps an upgraded connection; `leftover` holds bytes the HTTP layer
    /// read past the upgrade request.
    pub(crate) fn new(tcp: TcpStream, leftover: Bytes, limits: Arc<WsLimits>) -> WsConn {
        let read = (!leftover.is_empty()).then(|| BytesMut::from(&leftover[..]));
        WsConn {
            tcp,
            read,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            occasional: None,
            limits,
            hold: None,
            close_sent: false,
            close_received: false,
        }
    }

    /// The occasional state, created when first needed.
    fn occasional(&mut self) -> &mut Occasional {
        self.occasional.get_or_insert_with(Box::default)
    }

    /// The occasional state, if there is any.
    fn occasional_ref(&self) -> Option<&Occasional> {
        self.occasional.as_deref()
    }

    /// Frees the occasional state once it holds nothing (after a read, a
    /// flush).
    fn tidy(&mut self) {
        if self.occasional.as_ref().is_some_and(|o| o.is_empty()) {
            self.occasional = None;
        }
    }

    /// Counts what this connection holds for incomplete messages against
    /// the engine's budget, from now on.
    pub(crate) fn track_partial(&mut self, hold: PartialHold) {
        self.hold = Some(hold);
    }

    /// When the oldest incomplete message (or frame) times out, if any.
    pub(crate) fn incomplete_deadline(&self) -> Option<Instant> {
        let occasional = self.occasional_ref()?;
        let frame = occasional.read_since;
        let message = occasional.partial.as_ref().map(|(_, _, since)| *since);
        let since = match (frame, message) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(since + self.limits.partial_timeout)
    }

    /// Whether bytes read earlier are still waiting to be parsed.
    pub(crate) fn has_buffered_input(&self) -> bool {
        self.read.as_ref().is_some_and(|b| !b.is_empty())
    }

    /// Waits until the socket can be read.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.tcp.readable().await
    }

    /// Waits until the socket can take more bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Polls whether the socket can be read. For a task's loop: unlike
    /// [`readable`](Self::readable), it keeps no waiter in the future (the
    /// waker is kept by the socket's registration, one reader at a time),
    /// so the loop's future, which every idle connection holds, is smaller.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }

    /// Polls whether the socket can take more bytes (see
    /// [`poll_readable`](Self::poll_readable)).
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// The bytes written and not yet taken by the kernel (a waiting pong
    /// aside: it is at most 127 bytes).
    pub(crate) fn unsent_bytes(&self) -> usize {
        self.unsent_bytes
    }

    /// Whether written bytes are still waiting for the kernel.
    pub(crate) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Reads what the socket has (bounded) and decodes every complete
    /// message into `out`. Returns `false` once the client closed the TCP
    /// connection.
    pub(crate) fn read_available(&mut self, out: &mut Vec<WsEvent>) -> Result<bool, WsError> {
        let mut total = 0;
        let mut open = true;
        let mut progressed = false;
        // Bytes left from the upgrade request come first.
        progressed |= self.parse(out)?;
        while total < READ_BUDGET && !self.close_received {
            let buf = self
                .read
                .get_or_insert_with(|| BytesMut::with_capacity(READ_CHUNK));
            // Grows with what arrives, whatever a header announced.
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let space = buf.capacity() - buf.len();
            let tcp = &self.tcp;
            let mut got = 0;
            // A read shorter than the space offered drained the socket: say
            // so to tokio (as its own `poll_read` does), which clears the
            // readiness and saves the read that would only say WouldBlock.
            let result = tcp.try_io(Interest::READABLE, || {
                got = tcp.try_read_buf(buf)?;
                if got > 0 && got < space {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(got)
                }
            });
            match result {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => {
                    total += n;
                    progressed |= self.parse(out)?;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if got > 0 {
                        progressed |= self.parse(out)?;
                    }
                    break;
                }
                Err(err) => return Err(err.into()),
            }
        }
        if self.read.as_ref().is_some_and(|b| b.is_empty()) {
            self.read = None;
        }
        self.write_pongs()?;
        self.account(progressed)?;
        self.tidy();
        Ok(open)
    }

    /// After a read: what is held for incomplete messages, counted against
    /// the budget, and since when (a frame that completed restarts the
    /// clock of the one behind it).
    fn account(&mut self, progressed: bool) -> Result<(), WsError> {
        let read = self.read.as_ref().map_or(0, BytesMut::capacity);
        let message = self
            .occasional_ref()
            .and_then(|o| o.partial.as_ref())
            .map_or(0, |(_, m, _)| m.capacity());
        if read == 0 {
            if let Some(occasional) = self.occasional.as_mut() {
                occasional.read_since = None;
            }
        } else if progressed || self.occasional_ref().is_none_or(|o| o.read_since.is_none()) {
            self.occasional().read_since = Some(Instant::now());
        }
        match self.hold.as_mut() {
            Some(hold) => hold.set(read + message).map_err(|_| WsError::OverBudget),
            None => Ok(()),
        }
    }

    /// Writes the pongs answering this read's pings, if any.
    fn write_pongs(&mut self) -> Result<(), WsError> {
        match self.occasional.as_mut().and_then(|o| o.pongs.take()) {
            Some(pongs) => self.write_now(&pongs),
            None => Ok(()),
        }
    }

    /// Decodes the complete frames in the read buffer; returns whether one did.
    fn parse(&mut self, out: &mut Vec<WsEvent>) -> Result<bool, WsError> {
        let mut progressed = false;
        loop {
            let Some(buf) = self.read.as_mut() else {
                return Ok(progressed);
            };
            let Some(header) = FrameHeader::parse(buf, self.limits.max_payload)? else {
                return Ok(progressed);
            };
            let needed = header.header_len + header.payload_len;
            if buf.len() < needed {
                // Not reserved: the bytes announced may never come.
                return Ok(progressed);
            }
            let mut payload = buf.split_to(needed);
            payload.advance(header.header_len);
            unmask(&mut payload, header.mask);
            progressed = true;
            if self.on_frame(header, payload, out)? {
                return Ok(progressed);
            }
        }
    }

    /// Handles one frame; returns `true` when the client closed.
    fn on_frame(
        &mut self,
        header: FrameHeader,
        payload: BytesMut,
        out: &mut Vec<WsEvent>,
    ) -> Result<bool, WsError> {
        match header.opcode {
            Opcode::Close => {
                let code = match payload.len() {
                    0 => close_code::NORMAL,
                    1 => return Err(WsError::Protocol("close frame with one byte")),
                    _ => {
                        if std::str::from_utf8(&payload[2..]).is_err() {
                            return Err(WsError::Protocol("close reason not UTF-8"));
                        }
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if !close_code::is_valid_from_client(code) {
                            // Answered with 1002, never echoed (1005 and
                            // 1006 must not appear on the wire at all).
                            return Err(WsError::Protocol("invalid close code"));
                        }
                        code
                    }
                };
                self.write_pongs()?;
                self.write_control(Opcode::Close, &code.to_be_bytes())?;
                self.close_sent = true;
                self.close_received = true;
                push_event(out, WsEvent::Close);
                Ok(true)
            }
            Opcode::Ping => {
                if self.has_unsent() {
                    // Behind unsent bytes, only the latest ping is
                    // answered (RFC 6455 5.5.3): it replaces the pong that
                    // waits, and nothing is appended to the unsent bytes.
                    let pong = self
                        .occasional()
                        .pending_pong
                        .get_or_insert_with(BytesMut::new);
                    pong.clear();
                    pong.extend_from_slice(&payload);
                } else {
                    // Every ping answered, the pongs of one read written
                    // with one call. As many bytes go out as come in, so a
                    // client that pings without reading fills the kernel's
                    // buffers, and then is not read any more.
                    let pongs = self.occasional().pongs.get_or_insert_with(Vec::new);
                    encode_frame(pongs, Opcode::Pong, &payload);
                }
                Ok(false)
            }
            Opcode::Pong => Ok(false),
            Opcode::Text | Opcode::Binary => {
                if self.occasional_ref().is_some_and(|o| o.partial.is_some()) {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                if header.fin {
                    push_event(out, message(header.opcode, payload.freeze()));
                } else {
                    // Its own allocation: the read buffer is not kept alive
                    // (nor counted twice) for the message's first fragment.
                    let first = BytesMut::from(&payload[..]);
                    self.occasional().partial = Some((header.opcode, first, Instant::now()));
                }
                Ok(false)
            }
            Opcode::Continuation => {
                let taken = self.occasional.as_mut().and_then(|o| o.partial.take());
                let Some((opcode, mut message_so_far, since)) = taken else {
                    return Err(WsError::Protocol("continuation without a message"));
                };
                if message_so_far.len() + payload.len() > self.limits.max_payload {
                    return Err(WsError::TooLarge);
                }
                message_so_far.extend_from_slice(&payload);
                if header.fin {
                    push_event(out, message(opcode, message_so_far.freeze()));
                } else {
                    self.occasional().partial = Some((opcode, message_so_far, since));
                }
                Ok(false)
            }
        }
    }

    /// Writes Engine.IO frames with one call where possible. What the
    /// kernel does not take now is kept, to be flushed with
    /// [`flush`](Self::flush); callers wait for that before writing again
    /// (frames written meanwhile are kept behind it, within the bound).
    pub(crate) fn write_frames<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a Frame>,
    ) -> Result<(), WsError> {
        self.write_frames_framed(frames, BinaryFraming::Raw)
    }

    /// As [`write_frames`](Self::write_frames), binary messages framed as
    /// the session's protocol wants them (text frames are the same in v3
    /// and v4: a broadcast's shared frame serves both).
    pub(crate) fn write_frames_framed<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a Frame>,
        framing: BinaryFraming,
    ) -> Result<(), WsError> {
        if self.close_sent {
            return Ok(());
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            for frame in frames {
                match (frame, framing) {
                    (Frame::Text(text), _) => {
                        encode_frame(&mut scratch, Opcode::Text, text.as_bytes())
                    }
                    (Frame::Binary(data), BinaryFraming::Raw) => {
                        encode_frame(&mut scratch, Opcode::Binary, data)
                    }
                    (Frame::Binary(data), BinaryFraming::Typed) => {
                        encode_header(&mut scratch, Opcode::Binary, data.len() + 1);
                        scratch.push(v3::BINARY_MESSAGE_TYPE);
                        scratch.extend_from_slice(data);
                    }
                    (Frame::Binary(data), BinaryFraming::Base64) => {
                        let text = v3::base64_message(data);
                        encode_frame(&mut scratch, Opcode::Text, text.as_bytes())
                    }
                }
            }
            let result = if self.has_unsent() {
                self.keep(Bytes::copy_from_slice(&scratch))
            } else {
                self.write_now(&scratch)
            };
            if scratch.capacity() > SCRATCH_KEEP {
                *scratch = Vec::new();
            }
            result
        })
    }

    /// Writes a control frame (pong, close) at once, or behind what is
    /// unsent. A pong behind unsent bytes only replaces the one waiting:
    /// a client that pings without reading makes us hold one pong, not one
    /// per ping.
    fn write_control(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), WsError> {
        if self.close_sent {
            return Ok(());
        }
        if self.has_unsent() {
            if opcode == Opcode::Pong {
                let pong = self
                    .occasional()
                    .pending_pong
                    .get_or_insert_with(BytesMut::new);
                pong.clear();
                pong.extend_from_slice(payload);
                return Ok(());
            }
            // A close: nothing goes after it, not even the waiting pong.
            if let Some(occasional) = self.occasional.as_mut() {
                occasional.pending_pong = None;
            }
            let mut frame = Vec::with_capacity(payload.len() + 2);
            encode_frame(&mut frame, opcode, payload);
            return self.keep(Bytes::from(frame));
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            encode_frame(&mut scratch, opcode, payload);
            self.write_now(&scratch)
        })
    }

    /// Writes as much of `bytes` as the kernel takes; keeps the rest.
    fn write_now(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        let mut written = 0;
        while written < bytes.len() {
            match self.tcp.try_write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err.into()),
            }
        }
        if written < bytes.len() {
            self.keep(Bytes::copy_from_slice(&bytes[written..]))?;
        }
        Ok(())
    }

    /// Keeps bytes to send after those already kept, within the bound.
    fn keep(&mut self, bytes: Bytes) -> Result<(), WsError> {
        self.unsent_bytes += bytes.len();
        self.unsent.push_back(bytes);
        if self.unsent_bytes > self.limits.max_unsent {
            return Err(WsError::Unsent);
        }
        Ok(())
    }

    /// Writes kept bytes as far as the kernel takes them now (then the
    /// pong that waited for them).
    pub(crate) fn flush_some(&mut self) -> Result<(), WsError> {
        loop {
            let Some(front) = self.unsent.front_mut() else {
                let pong = self.occasional.as_mut().and_then(|o| o.pending_pong.take());
                if let Some(payload) = pong {
                    // Whatever the kernel does not take of it is kept.
                    self.write_control(Opcode::Pong, &payload)?;
                    self.tidy();
                }
                return Ok(());
            };
            match self.tcp.try_write(front) {
                Ok(n) => {
                    front.advance(n);
                    self.unsent_bytes -= n;
                    if front.is_empty() {
                        self.unsent.pop_front();
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Writes every kept byte, waiting for the socket as needed.
    pub(crate) async fn flush(&mut self) -> Result<(), WsError> {
        while self.has_unsent() {
            self.writable().await?;
            self.flush_some()?;
        }
        Ok(())
    }

    /// Sends a close frame (after what is kept) and flushes, bounded in time.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            let mut payload = Vec::with_capacity(2 + reason.len());
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
            let _ = self.write_control(Opcode::Close, &payload);
            self.close_sent = true;
            if self.unsent_bytes > self.limits.max_unsent {
                return; // the client does not read: no use waiting
            }
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.flush()).await;
    }
}

/// Adds a decoded event to the caller's list. The list's first
/// allocation holds exactly one event: the transport task keeps its list
/// for the connection's life, and an idle client sends one message at a
/// time (its CONNECT, then a pong per ping), where a first push would
/// reserve four (160 bytes). Past it the list grows by doubling (straight
/// to four) and keeps its capacity, so a busy connection is not
/// reallocated per read.
fn push_event(out: &mut Vec<WsEvent>, event: WsEvent) {
    if out.capacity() == 0 {
        out.reserve_exact(1);
    }
    out.push(event);
}

fn message(opcode: Opcode, payload: Bytes) -> WsEvent {
    if opcode == Opcode::Text {
        WsEvent::Text(payload)
    } else {
        WsEvent::Binary(payload)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

impl FrameHeader {
    /// Parses a client frame's header; `None` if more bytes are needed.
    fn parse(buf: &[u8], max_payload: usize) -> Result<Option<FrameHeader>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::from_u8(b0 & 0x0f).ok_or(WsError::Protocol("unknown opcode"))?;
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("client frame not masked"));
        }
        let (payload_len, len_bytes) = match b1 & 0x7f {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u16::from_be_bytes([bytes[0], bytes[1]]) as u64, 2)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                (u64::from_be_bytes(raw), 8)
            }
            n => (n as u64, 0),
        };
        if opcode.is_control() && (!fin || payload_len > 125) {
            return Err(WsError::Protocol("invalid control frame"));
        }
        if payload_len > max_payload as u64 {
            return Err(WsError::TooLarge);
        }
        let mask_at = 2 + len_bytes;
        let Some(mask) = buf.get(mask_at..mask_at + 4) else {
            return Ok(None);
        };
        Ok(Some(FrameHeader {
            fin,
            opcode,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            header_len: mask_at + 4,
            payload_len: payload_len as usize,
        }))
    }
}

/// Unmasks a payload in place, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Appends a server frame (never masked) to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    encode_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends the header of a server frame of `len` payload bytes, and
/// reserves room for them. Always inlined: it runs once per frame of every
/// broadcast, and called out of line (as the compiler chose once the v3
/// framing called it too) it cost fan-out 7 instructions per delivery
/// (callgrind, 1.6%).
#[inline(always)]
fn encode_header(out: &mut Vec<u8>, opcode: Opcode, len: usize) {
    out.reserve(len + 10);
    out.push(0x80 | opcode as u8);
    match len {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a client's key.
pub(crate) fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::prelude::BASE64_STANDARD.encode(sha.digest().bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Str;

    /// A client frame: masked with `mask`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_headers_of_every_length() {
        for len in [0usize, 1, 125, 126, 1000, 65535, 65536, 70000] {
            let frame = client_frame(true, 2, &vec![7; len], [1, 2, 3, 4]);
            let header = FrameHeader::parse(&frame, 1 << 20).unwrap().unwrap();
            assert_eq!(header.payload_len, len);
            assert_eq!(header.header_len + len, frame.len());
            // Every strict prefix of the header asks for more bytes.
            for cut in 0..header.header_len {
                assert!(
                    FrameHeader::parse(&frame[..cut], 1 << 20)
                        .unwrap()
                        .is_none()
                );
            }
        }
    }

    #[test]
    fn rejects_bad_frames() {
        let unmasked = [0x81u8, 0x01, b'a'];
        assert!(matches!(
            FrameHeader::parse(&unmasked, 100),
            Err(WsError::Protocol(_))
        ));
        let reserved = client_frame(true, 1, b"a", [0; 4]);
        let mut reserved = reserved.clone();
        reserved[0] |= 0x40;
        assert!(matches!(
            FrameHeader::parse(&reserved, 100),
            Err(WsError::Protocol(_))
        ));
        let unknown = client_frame(true, 3, b"a", [0; 4]);
        assert!(matches!(
            FrameHeader::parse(&unknown, 100),
            Err(WsError::Protocol(_))
        ));
        let long_ping = client_frame(true, 9, &[0; 126], [0; 4]);
        assert!(matches!(
            FrameHeader::parse(&long_ping, 1000),
            Err(WsError::Protocol(_))
        ));
        let fragmented_ping = client_frame(false, 9, b"x", [0; 4]);
        assert!(matches!(
            FrameHeader::parse(&fragmented_ping, 1000),
            Err(WsError::Protocol(_))
        ));
        let big = client_frame(true, 2, &[0; 2000], [0; 4]);
        assert!(matches!(
            FrameHeader::parse(&big, 1000),
            Err(WsError::TooLarge)
        ));
    }

    #[test]
    fn unmasking_inverts_masking() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mask = [0xde, 0xad, 0xbe, 0xef];
            let mut masked: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            unmask(&mut masked, mask);
            assert_eq!(masked, data);
        }
    }

    #[test]
    fn encodes_server_frames() {
        let mut out = Vec::new();
        encode_frame(&mut out, Opcode::Text, b"hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        out.clear();
        encode_frame(&mut out, Opcode::Binary, &[0; 300]);
        assert_eq!(&out[..4], &[0x82, 126, 1, 44]);
        out.clear();
        encode_frame(&mut out, Opcode::Binary, &vec![0; 70000]);
        assert_eq!(&out[..2], &[0x82, 127]);
        assert_eq!(out.len(), 70000 + 10);
    }

    async fn pair(max_payload: usize) -> (WsConn, TcpStream) {
        pair_with(WsLimits {
            max_payload,
            max_unsent: 1 << 30,
            partial_timeout: Duration::from_secs(30),
        })
        .await
    }

    async fn pair_with(limits: WsLimits) -> (WsConn, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (WsConn::new(server, Bytes::new(), Arc::new(limits)), client)
    }

    async fn read_events(conn: &mut WsConn, want: usize) -> Vec<WsEvent> {
        let mut out = Vec::new();
        while out.len() < want {
            conn.readable().await.unwrap();
            assert!(conn.read_available(&mut out).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn reassembles_fragments_and_answers_pings_between_them() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut conn, mut client) = pair(1000).await;
        let mut bytes = client_frame(false, 1, b"hel", [9, 8, 7, 6]);
        bytes.extend(client_frame(true, 9, b"p", [1, 1, 1, 1]));
        bytes.extend(client_frame(true, 0, b"lo", [5, 5, 5, 5]));
        bytes.extend(client_frame(true, 2, &[1, 2, 3], [0, 0, 0, 0]));
        // Arrives one byte at a time: every partial state is exercised.
        for b in bytes {
            client.write_all(&[b]).await.unwrap();
        }
        let events = read_events(&mut conn, 2).await;
        assert_eq!(
            events,
            vec![
                WsEvent::Text(Bytes::from_static(b"hello")),
                WsEvent::Binary(Bytes::from_static(&[1, 2, 3]))
            ]
        );
        let mut pong = [0u8; 3];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8A, 1, b'p']);
        assert!(conn.read.is_none(), "idle connection kept a read buffer");
    }

    /// The events list of an idle connection holds one message (40 bytes,
    /// not the 160 of a first push); a read of several grows it.
    #[tokio::test]
    async fn one_message_takes_room_for_one() {
        use tokio::io::AsyncWriteExt;
        let (mut conn, mut client) = pair(1000).await;
        client
            .write_all(&client_frame(true, 1, b"3", [1, 2, 3, 4]))
            .await
            .unwrap();
        let mut out = read_events(&mut conn, 1).await;
        assert_eq!(out.capacity(), 1);
        out.clear();
        let mut bytes = client_frame(true, 1, b"a", [1, 2, 3, 4]);
        bytes.extend(client_frame(true, 1, b"b", [1, 2, 3, 4]));
        client.write_all(&bytes).await.unwrap();
        while out.len() < 2 {
            conn.readable().await.unwrap();
            assert!(conn.read_available(&mut out).unwrap());
        }
        assert!(out.capacity() >= 2);
    }

    #[tokio::test]
    async fn fragmented_message_over_max_payload_is_refused() {
        use tokio::io::AsyncWriteExt;
        let (mut conn, mut client) = pair(4).await;
        let mut bytes = client_frame(false, 1, b"abc", [1, 2, 3, 4]);
        bytes.extend(client_frame(true, 0, b"de", [1, 2, 3, 4]));
        client.write_all(&bytes).await.unwrap();
        let mut out = Vec::new();
        let result = loop {
            conn.readable().await.unwrap();
            match conn.read_available(&mut out) {
                Ok(_) if out.is_empty() => continue,
                other => break other,
            }
        };
        assert!(matches!(result, Err(WsError::TooLarge)));
    }

    #[tokio::test]
    async fn close_is_answered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut conn, mut client) = pair(100).await;
        client
            .write_all(&client_frame(true, 8, &[0x03, 0xe8], [4, 3, 2, 1]))
            .await
            .unwrap();
        assert_eq!(read_events(&mut conn, 1).await, vec![WsEvent::Close]);
        let mut reply = [0u8; 4];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [0x88, 2, 0x03, 0xe8]);
    }

    /// v3: a binary message is a binary frame led by its type byte (`04`),
    /// or with `b64` a text frame `b4<base64>`; text frames are as in v4.
    #[tokio::test]
    async fn writes_v3_binary_framing() {
        use tokio::io::AsyncReadExt;
        let (mut conn, mut client) = pair(100).await;
        let frames = [
            Frame::Text(Str::from("42")),
            Frame::binary(Bytes::from_static(&[1, 2, 3])),
        ];
        conn.write_frames_framed(&frames, BinaryFraming::Typed)
            .unwrap();
        conn.write_frames_framed(&frames[1..], BinaryFraming::Base64)
            .unwrap();
        conn.flush().await.unwrap();
        let mut got = [0u8; 4 + 6 + 8];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..4], &[0x81, 2, b'4', b'2']);
        assert_eq!(&got[4..10], &[0x82, 4, 4, 1, 2, 3]);
        assert_eq!(&got[10..], b"\x81\x06b4AQID");
    }

    #[tokio::test]
    async fn writes_batches_in_order() {
        use tokio::io::AsyncReadExt;
        let (mut conn, mut client) = pair(100).await;
        let frames = [
            Frame::Text(Str::from(r#"42["a"]"#)),
            Frame::binary(Bytes::from_static(&[1, 2])),
        ];
        conn.write_frames(&frames).unwrap();
        conn.flush().await.unwrap();
        let mut got = [0u8; 13];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(
            &got[..9],
            &[0x81, 7, b'4', b'2', b'[', b'"', b'a', b'"', b']']
        );
        assert_eq!(&got[9..], &[0x82, 2, 1, 2]);
    }

    #[tokio::test]
    async fn an_announced_length_is_not_reserved() {
        use tokio::io::AsyncWriteExt;
        let (mut conn, mut client) = pair(1 << 20).await;
        let mut bytes = client_frame(true, 2, &vec![0; 1_000_000], [1, 2, 3, 4]);
        bytes.truncate(14 + 10); // the header and 10 bytes of payload
        client.write_all(&bytes).await.unwrap();
        let mut out = Vec::new();
        while conn.read.as_ref().map_or(0, |b| b.len()) < bytes.len() {
            conn.readable().await.unwrap();
            assert!(conn.read_available(&mut out).unwrap());
        }
        assert!(out.is_empty());
        let held = conn.read.as_ref().unwrap().capacity();
        assert!(held <= 2 * READ_CHUNK, "{held} bytes held for 24 received");
        assert!(conn.incomplete_deadline().is_some());
    }

    #[test]
    fn close_codes_a_client_may_send() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4999] {
            assert!(close_code::is_valid_from_client(code), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert!(!close_code::is_valid_from_client(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_close_with_a_reserved_code_is_refused_not_echoed() {
        use tokio::io::AsyncWriteExt;
        let (mut conn, mut client) = pair(100).await;
        client
            .write_all(&client_frame(true, 8, &1005u16.to_be_bytes(), [4, 3, 2, 1]))
            .await
            .unwrap();
        let mut out = Vec::new();
        let result = loop {
            conn.readable().await.unwrap();
            match conn.read_available(&mut out) {
                Ok(_) => continue,
                Err(err) => break err,
            }
        };
        assert!(matches!(result, WsError::Protocol(_)));
        assert_eq!(result.close_code(), close_code::PROTOCOL);
    }

    #[tokio::test]
    async fn pings_behind_unsent_bytes_leave_one_pong_for_the_latest() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut conn, mut client) = pair(1000).await;
        // More than the kernel buffers take while the client does not read.
        let big = Frame::binary(Bytes::from(vec![7u8; 16 << 20]));
        conn.write_frames([&big]).unwrap();
        assert!(conn.has_unsent());
        let kept = conn.unsent_bytes;
        for i in 0..1000u32 {
            let payload = i.to_be_bytes();
            client
                .write_all(&client_frame(true, 9, &payload, [1, 2, 3, 4]))
                .await
                .unwrap();
        }
        let mut out = Vec::new();
        let pending = |conn: &WsConn| {
            let pong = conn
                .occasional_ref()
                .and_then(|o| o.pending_pong.as_deref());
            pong == Some(&999u32.to_be_bytes()[..])
        };
        while conn.read.is_some() || !pending(&conn) {
            conn.readable().await.unwrap();
            assert!(conn.read_available(&mut out).unwrap());
        }
        // One pong waits, and nothing was added to the unsent bytes.
        assert_eq!(conn.unsent.len(), 1);
        assert_eq!(conn.unsent_bytes, kept);
        // Once the client reads: the big frame, then exactly one pong.
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        conn.flush().await.unwrap();
        drop(conn);
        let all = reader.await.unwrap();
        let pong = [0x8A, 4, 0, 0, 3, 231];
        assert_eq!(all.len(), 10 + (16 << 20) + pong.len());
        assert_eq!(&all[all.len() - pong.len()..], &pong);
    }

    #[tokio::test]
    async fn unsent_bytes_past_the_bound_close() {
        let (mut conn, _client) = pair_with(WsLimits {
            max_payload: 1000,
            max_unsent: 1 << 20,
            partial_timeout: Duration::from_secs(30),
        })
        .await;
        let big = Frame::binary(Bytes::from(vec![7u8; 32 << 20]));
        assert!(matches!(conn.write_frames([&big]), Err(WsError::Unsent)));
    }
}
