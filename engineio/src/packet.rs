//! The Engine.IO v4 packet codec: single packets (one WebSocket frame) and
//! payloads (several packets in one HTTP long-polling body); [`v3`] holds
//! what differs in v3 (`allow_eio3`).
//!
//! Inbound data is decoded into [`Packet`]; outbound data is carried as
//! [`Frame`]s, which are already encoded so that a broadcast is encoded once
//! and its bytes shared by every recipient.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use bytes::{BufMut, Bytes, BytesMut};

pub mod v3;

/// The Engine.IO protocol revision a session speaks (its handshake's `EIO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Revision 3: socket.io 1.x and 2.x clients (client-sent pings,
    /// length-prefixed polling payloads, typed binary messages).
    V3,
    /// Revision 4, the current one.
    V4,
}

/// Separates the packets of a long-polling payload (the ASCII record separator).
pub const SEPARATOR: u8 = 0x1e;

/// Why a packet or payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("invalid base64 in binary packet")]
    Base64,
    #[error("payload is not valid UTF-8")]
    Utf8,
    #[error("invalid packet length in payload")]
    Length,
}

/// UTF-8 text held in shared bytes, so that slicing a received frame or
/// sharing an encoded broadcast costs no copy.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Str(Bytes);

impl Str {
    /// Validates `bytes` as UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, DecodeError> {
        std::str::from_utf8(&bytes).map_err(|_| DecodeError::Utf8)?;
        Ok(Str(bytes))
    }

    /// Wraps static text.
    pub const fn from_static(s: &'static str) -> Self {
        Str(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates UTF-8 or starts from a `str`,
        // and `slice_from` only cuts at char boundaries.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (valid UTF-8).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The text from byte `at` on; `at` must be a char boundary.
    pub fn slice_from(&self, at: usize) -> Str {
        assert!(self.as_str().is_char_boundary(at));
        Str(self.0.slice(at..))
    }

    /// The text between bytes `start` and `end` (char boundaries).
    pub(crate) fn slice(&self, start: usize, end: usize) -> Str {
        assert!(self.as_str().is_char_boundary(start) && self.as_str().is_char_boundary(end));
        Str(self.0.slice(start..end))
    }

    /// The bytes, giving up the UTF-8 guarantee.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<String> for Str {
    fn from(s: String) -> Self {
        Str(Bytes::from(s))
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl std::fmt::Debug for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// An application message carried by a `message` packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Str),
    Binary(Bytes),
}

/// A decoded Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Open,
    Close,
    Ping(Str),
    Pong(Str),
    Message(Message),
    Upgrade,
    Noop,
}

impl Packet {
    /// Decodes a text packet: a WebSocket text frame, or one element of a
    /// polling payload that is not base64 binary.
    pub fn decode_text(text: Str) -> Result<Packet, DecodeError> {
        let first = *text.as_bytes().first().ok_or(DecodeError::Empty)?;
        let data = || text.slice_from(1);
        Ok(match first {
            b'0' => Packet::Open,
            b'1' => Packet::Close,
            b'2' => Packet::Ping(data()),
            b'3' => Packet::Pong(data()),
            b'4' => Packet::Message(Message::Text(data())),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            _ => {
                let c = text.as_str().chars().next().unwrap_or('\0');
                return Err(DecodeError::UnknownType(c));
            }
        })
    }
}

/// Decodes an HTTP long-polling payload: packets separated by `\x1e`, binary
/// ones as `b` followed by base64.
pub fn decode_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    let body = Str::from_utf8(body)?;
    let mut packets = Vec::new();
    let mut start = 0;
    let bytes = body.as_bytes().clone();
    for end in memchr_iter(&bytes).chain(std::iter::once(bytes.len())) {
        let part = Str(bytes.slice(start..end));
        start = end + 1;
        if part.as_bytes().first() == Some(&b'b') {
            let raw = BASE64_STANDARD
                .decode(&part.as_bytes()[1..])
                .map_err(|_| DecodeError::Base64)?;
            packets.push(Packet::Message(Message::Binary(Bytes::from(raw))));
        } else {
            packets.push(Packet::decode_text(part)?);
        }
    }
    Ok(packets)
}

fn memchr_iter(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter_map(|(i, b)| (*b == SEPARATOR).then_some(i))
}

/// An encoded outbound packet, ready for either transport.
///
/// `Text` holds the whole Engine.IO text packet (type digit included) and is
/// sent as one WebSocket text frame; `Binary` is a binary message, sent as a
/// WebSocket binary frame or `b`+base64 on polling. Cloning shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Str),
    Binary(Bytes),
}

impl Frame {
    pub const PING: Frame = Frame::Text(Str::from_static("2"));
    /// The answer to a v3 client's ping (the reference sends no data back).
    pub const PONG: Frame = Frame::Text(Str::from_static("3"));
    pub const CLOSE: Frame = Frame::Text(Str::from_static("1"));
    pub const NOOP: Frame = Frame::Text(Str::from_static("6"));
    pub const PROBE_PONG: Frame = Frame::Text(Str::from_static("3probe"));

    /// A text `message` packet carrying `text`.
    pub fn message(text: &str) -> Frame {
        let mut buf = Self::message_buffer(text.len());
        buf.put_slice(text.as_bytes());
        Self::from_message_buffer(buf)
    }

    /// A buffer holding the `message` packet type, for a caller that writes
    /// the text itself (to encode a broadcast once, without a second copy).
    pub fn message_buffer(capacity: usize) -> BytesMut {
        let mut buf = BytesMut::with_capacity(capacity + 1);
        buf.put_u8(b'4');
        buf
    }

    /// Finishes a buffer from [`Frame::message_buffer`].
    ///
    /// # Panics
    /// If the caller wrote invalid UTF-8 into it.
    pub fn from_message_buffer(buf: BytesMut) -> Frame {
        match Str::from_utf8(buf.freeze()) {
            Ok(s) => Frame::Text(s),
            Err(_) => panic!("message buffer holds invalid UTF-8"),
        }
    }

    /// A binary message.
    pub fn binary(data: Bytes) -> Frame {
        Frame::Binary(data)
    }

    /// The bytes this frame holds (shared bytes counted in full: a
    /// broadcast's frame weighs as much in every queue it is in).
    pub fn byte_len(&self) -> usize {
        match self {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// The length this frame adds to a polling payload (without separator).
    pub fn payload_len(&self) -> usize {
        match self {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => 1 + b.len().div_ceil(3) * 4,
        }
    }
}

impl From<&Packet> for Frame {
    /// The frame that carries `packet` (the encoder of [`Packet::decode_text`]).
    fn from(packet: &Packet) -> Frame {
        let text =
            |prefix: &str, s: &Str| Frame::Text(Str::from(format!("{prefix}{}", s.as_str())));
        match packet {
            Packet::Open => Frame::Text(Str::from_static("0")),
            Packet::Close => Frame::CLOSE,
            Packet::Ping(s) => text("2", s),
            Packet::Pong(s) => text("3", s),
            Packet::Message(Message::Text(s)) => Frame::message(s),
            Packet::Message(Message::Binary(b)) => Frame::binary(b.clone()),
            Packet::Upgrade => Frame::Text(Str::from_static("5")),
            Packet::Noop => Frame::NOOP,
        }
    }
}

/// Encodes frames as one HTTP long-polling payload.
pub fn encode_payload(frames: &[Frame]) -> Bytes {
    let len: usize = frames.iter().map(|f| f.payload_len() + 1).sum();
    let mut out = BytesMut::with_capacity(len);
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        match frame {
            Frame::Text(s) => out.put_slice(s.as_bytes()),
            Frame::Binary(b) => {
                out.put_u8(b'b');
                let start = out.len();
                out.resize(start + b.len().div_ceil(3) * 4, 0);
                let written = BASE64_STANDARD
                    .encode_slice(b, &mut out[start..])
                    .unwrap_or(0);
                out.truncate(start + written);
            }
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Str {
        Str::from(s)
    }

    #[test]
    fn decodes_every_packet_type() {
        assert_eq!(Packet::decode_text(text("0")), Ok(Packet::Open));
        assert_eq!(Packet::decode_text(text("1")), Ok(Packet::Close));
        assert_eq!(
            Packet::decode_text(text("2probe")),
            Ok(Packet::Ping(text("probe")))
        );
        assert_eq!(Packet::decode_text(text("3")), Ok(Packet::Pong(text(""))));
        assert_eq!(
            Packet::decode_text(text("4héllo")),
            Ok(Packet::Message(Message::Text(text("héllo"))))
        );
        assert_eq!(Packet::decode_text(text("5")), Ok(Packet::Upgrade));
        assert_eq!(Packet::decode_text(text("6")), Ok(Packet::Noop));
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(Packet::decode_text(text("")), Err(DecodeError::Empty));
        assert_eq!(
            Packet::decode_text(text("abc")),
            Err(DecodeError::UnknownType('a'))
        );
        assert_eq!(
            Packet::decode_text(text("7")),
            Err(DecodeError::UnknownType('7'))
        );
        assert_eq!(
            Packet::decode_text(text("éa")),
            Err(DecodeError::UnknownType('é'))
        );
        assert_eq!(
            decode_payload(Bytes::from_static(b"4a\x1ebnot base64!")),
            Err(DecodeError::Base64)
        );
        assert_eq!(
            decode_payload(Bytes::from_static(b"4a\x1e")),
            Err(DecodeError::Empty)
        );
        assert_eq!(
            decode_payload(Bytes::from_static(b"4\xff")),
            Err(DecodeError::Utf8)
        );
    }

    #[test]
    fn payload_round_trip() {
        let body = Bytes::from_static(b"4hello\x1ebAQIDBA==\x1e2");
        let packets = decode_payload(body.clone()).unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message(Message::Text(text("hello"))),
                Packet::Message(Message::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                Packet::Ping(text("")),
            ]
        );
        let frames = [
            Frame::message("hello"),
            Frame::binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::PING,
        ];
        assert_eq!(encode_payload(&frames), body);
    }

    #[test]
    fn binary_payload_lengths_are_exact() {
        for n in 0..10 {
            let frame = Frame::binary(Bytes::from(vec![7u8; n]));
            assert_eq!(
                encode_payload(std::slice::from_ref(&frame)).len(),
                frame.payload_len()
            );
        }
    }
}
