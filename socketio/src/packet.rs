//! The Socket.IO v5 packet codec, binary attachments included.
//!
//! A packet is `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`. Event
//! arguments are kept as raw JSON text ([`Args`]) so that relaying an event
//! (the common case: a chat message, a broadcast) never re-serialises it.

use bytes::{BufMut, Bytes, BytesMut};
use engineio::{Frame, Str};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::recovery::Offset;

/// Event names a client may not use: they mean something to the library.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Longest namespace name accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 256;

/// Longest query a v3 client may put behind a namespace name in its
/// CONNECT (`/chat?token=…`), in bytes: room for a JWT, which is routinely
/// longer than a name may be. (The packet is within `max_payload` anyway.)
pub const MAX_NAMESPACE_QUERY_LEN: usize = 8 << 10;

/// The type of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    fn from_byte(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown packet type")]
    UnknownType,
    #[error("illegal attachments")]
    IllegalAttachments,
    #[error("too many attachments")]
    TooManyAttachments,
    #[error("invalid ack id")]
    InvalidAckId,
    #[error("invalid payload")]
    InvalidPayload,
    #[error("invalid namespace")]
    InvalidNamespace,
    #[error("binary data received while no binary packet was pending")]
    UnexpectedBinary,
    #[error("text packet received while binary attachments were pending")]
    UnexpectedText,
    #[error("binary attachments larger than allowed")]
    AttachmentsTooLarge,
}

/// Event or ack arguments: a JSON array's elements as raw JSON text, plus
/// the binary attachments their placeholders refer to.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// The elements, comma-separated, without the brackets (`1,"a",{}`).
    inner: Str,
    attachments: Vec<Bytes>,
}

impl Args {
    /// No arguments.
    pub fn new() -> Args {
        Args::default()
    }

    /// One argument.
    pub fn one<T: Serialize + ?Sized>(value: &T) -> Args {
        let mut args = Args::new();
        args.push(value);
        args
    }

    /// Appends an argument.
    pub fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Args {
        let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        self.push_raw(&json)
    }

    /// Appends a binary argument (sent as an attachment).
    pub fn push_binary(&mut self, data: Bytes) -> &mut Args {
        let placeholder = format!(
            r#"{{"_placeholder":true,"num":{}}}"#,
            self.attachments.len()
        );
        self.attachments.push(data);
        self.push_raw(&placeholder)
    }

    /// Arguments from their JSON text without brackets (`1,"a",{}`), whose
    /// `{"_placeholder":true,"num":N}` objects name `attachments[N]`: what
    /// a cluster adapter rebuilds from a bus message. The text must be
    /// valid JSON elements (it is sent as it is).
    pub fn from_parts(json: String, attachments: Vec<Bytes>) -> Args {
        Args {
            inner: Str::from(json),
            attachments,
        }
    }

    /// Appends an argument given as JSON text.
    pub fn push_json(&mut self, json: &RawValue) -> &mut Args {
        self.push_raw(json.get())
    }

    fn push_raw(&mut self, json: &str) -> &mut Args {
        let mut s = String::with_capacity(self.inner.len() + json.len() + 1);
        s.push_str(&self.inner);
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(json);
        self.inner = Str::from(s);
        self
    }

    /// Bytes the arguments hold: their JSON text and their attachments
    /// (what a queued event costs in memory, give or take bookkeeping).
    pub fn byte_len(&self) -> usize {
        self.inner.len() + self.attachments.iter().map(Bytes::len).sum::<usize>()
    }

    /// The arguments as JSON text without brackets.
    pub fn raw(&self) -> &str {
        &self.inner
    }

    /// The binary attachments.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The arguments as a JSON array text.
    pub fn to_json_array(&self) -> String {
        format!("[{}]", self.raw())
    }

    /// The arguments as JSON values (binary arguments stay placeholders).
    pub fn values(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.to_json_array()).unwrap_or_default()
    }

    /// The first argument, deserialised.
    pub fn first<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let mut values: Vec<Box<RawValue>> = serde_json::from_str(&self.to_json_array())?;
        if values.is_empty() {
            return serde_json::from_str("null");
        }
        serde_json::from_str(values.swap_remove(0).get())
    }

    /// All arguments, deserialised as one tuple or sequence.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.to_json_array())
    }
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.raw())?;
        if !self.attachments.is_empty() {
            write!(f, " +{} attachments", self.attachments.len())?;
        }
        Ok(())
    }
}

/// What a packet carries after its header.
#[derive(Debug, Clone)]
pub enum Payload {
    None,
    /// CONNECT (the `auth` object) or CONNECT_ERROR (its object or string).
    Json(Box<RawValue>),
    /// EVENT: the event name and its arguments.
    Event(String, Args),
    /// ACK: the arguments.
    Ack(Args),
}

/// A decoded packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub kind: PacketType,
    pub nsp: String,
    pub id: Option<u64>,
    pub payload: Payload,
}

impl Packet {
    fn attachments_mut(&mut self) -> Option<&mut Vec<Bytes>> {
        match &mut self.payload {
            Payload::Event(_, args) | Payload::Ack(args) => Some(&mut args.attachments),
            _ => None,
        }
    }
}

/// A packet whose header said it has binary attachments still to come.
#[derive(Debug)]
pub struct PartialPacket {
    packet: Packet,
    expected: usize,
    /// Bytes held so far: the header's text and the attachments received.
    bytes: usize,
}

/// The result of feeding one Engine.IO message to a [`Decoder`].
#[derive(Debug)]
pub enum Decoded {
    /// A complete packet.
    Packet(Packet),
    /// Waiting for more binary attachments.
    Pending,
}

/// Decodes a client's messages, reassembling binary packets.
#[derive(Debug)]
pub struct Decoder {
    /// Boxed: every connection has a decoder for its whole life, and a
    /// packet waiting for attachments is rare, so the idle decoder is a
    /// null pointer rather than room for a whole packet.
    partial: Option<Box<PartialPacket>>,
    max_attachments: usize,
    max_pending_bytes: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(0)
    }
}

impl Decoder {
    /// A decoder refusing packets with more than `max_attachments`.
    pub fn new(max_attachments: usize) -> Decoder {
        Decoder {
            partial: None,
            max_attachments,
            max_pending_bytes: usize::MAX,
        }
    }

    /// Also refuses a packet waiting for attachments once it holds more
    /// than `max` bytes (its header's text and the attachments received):
    /// what a client announces is never held beyond it.
    pub fn with_max_pending_bytes(mut self, max: usize) -> Decoder {
        self.max_pending_bytes = max;
        self
    }

    /// Whether a packet is waiting for attachments.
    pub fn is_pending(&self) -> bool {
        self.partial.is_some()
    }

    /// Feeds a text message.
    pub fn text(&mut self, text: &str) -> Result<Decoded, DecodeError> {
        self.text_for(text, false)
    }

    /// Feeds a text message from a client speaking Engine.IO v3 (`v3`):
    /// its CONNECT's namespace may carry a query (`/chat?token=…`), which
    /// is bounded apart from the name ([`MAX_NAMESPACE_QUERY_LEN`]) and
    /// kept in [`Packet::nsp`] for the caller to split.
    pub fn text_for(&mut self, text: &str, v3: bool) -> Result<Decoded, DecodeError> {
        if self.partial.is_some() {
            return Err(DecodeError::UnexpectedText);
        }
        let (packet, expected) = decode_header(text, self.max_attachments, v3)?;
        if expected == 0 {
            if packet.kind.is_binary() {
                check_placeholders(&packet, 0)?;
            }
            return Ok(Decoded::Packet(packet));
        }
        if text.len() > self.max_pending_bytes {
            return Err(DecodeError::AttachmentsTooLarge);
        }
        self.partial = Some(Box::new(PartialPacket {
            packet,
            expected,
            bytes: text.len(),
        }));
        Ok(Decoded::Pending)
    }

    /// Feeds a binary message (an attachment).
    pub fn binary(&mut self, data: Bytes) -> Result<Decoded, DecodeError> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        partial.bytes = partial.bytes.saturating_add(data.len());
        if partial.bytes > self.max_pending_bytes {
            self.partial = None;
            return Err(DecodeError::AttachmentsTooLarge);
        }
        let attachments = partial
            .packet
            .attachments_mut()
            .ok_or(DecodeError::UnexpectedBinary)?;
        attachments.push(data);
        if attachments.len() < partial.expected {
            return Ok(Decoded::Pending);
        }
        let partial = self.partial.take().ok_or(DecodeError::UnexpectedBinary)?;
        check_placeholders(&partial.packet, partial.expected)?;
        Ok(Decoded::Packet(partial.packet))
    }
}

/// Every `{"_placeholder":true,"num":N}` must name one of the `count`
/// attachments, as the reference parser requires.
fn check_placeholders(packet: &Packet, count: usize) -> Result<(), DecodeError> {
    fn walk(value: &serde_json::Value, count: usize) -> bool {
        match value {
            serde_json::Value::Array(items) => items.iter().all(|v| walk(v, count)),
            serde_json::Value::Object(map) => {
                if map.get("_placeholder") == Some(&serde_json::Value::Bool(true)) {
                    return map
                        .get("num")
                        .and_then(serde_json::Value::as_u64)
                        .is_some_and(|n| (n as usize) < count);
                }
                map.values().all(|v| walk(v, count))
            }
            _ => true,
        }
    }
    let args = match &packet.payload {
        Payload::Event(_, args) | Payload::Ack(args) => args,
        _ => return Ok(()),
    };
    let values: serde_json::Value =
        serde_json::from_str(&args.to_json_array()).map_err(|_| DecodeError::InvalidPayload)?;
    if walk(&values, count) {
        Ok(())
    } else {
        Err(DecodeError::IllegalAttachments)
    }
}

/// Decodes a text packet; returns it and how many attachments follow.
fn decode_header(
    s: &str,
    max_attachments: usize,
    v3: bool,
) -> Result<(Packet, usize), DecodeError> {
    let bytes = s.as_bytes();
    let kind = bytes
        .first()
        .and_then(|b| PacketType::from_byte(*b))
        .ok_or(DecodeError::UnknownType)?;
    let mut i = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let dash = s[i..].find('-').ok_or(DecodeError::IllegalAttachments)? + i;
        let digits = &s[i..dash];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::IllegalAttachments);
        }
        attachments = digits
            .parse::<usize>()
            .map_err(|_| DecodeError::TooManyAttachments)?;
        if attachments > max_attachments {
            return Err(DecodeError::TooManyAttachments);
        }
        i = dash + 1;
    }

    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        let end = s[i..].find(',').map_or(s.len(), |c| c + i);
        nsp = &s[i..end];
        // Names are echoed in replies: no control characters (a record
        // separator would split a polling payload), and a sane length.
        let (name, query) = match nsp.split_once('?') {
            Some((name, query)) if v3 => (name, query),
            _ => (nsp, ""),
        };
        if name.len() > MAX_NAMESPACE_LEN
            || query.len() > MAX_NAMESPACE_QUERY_LEN
            || nsp.chars().any(char::is_control)
        {
            return Err(DecodeError::InvalidNamespace);
        }
        i = (end + 1).min(s.len());
    }

    let mut id = None;
    let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 {
        let value = s[i..i + digits]
            .parse::<u64>()
            .map_err(|_| DecodeError::InvalidAckId)?;
        // Ack ids are JavaScript numbers: keep them exact.
        if value > (1u64 << 53) {
            return Err(DecodeError::InvalidAckId);
        }
        id = Some(value);
        i += digits;
    }

    let data = &s[i..];
    let payload = decode_payload(kind, data)?;
    Ok((
        Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            payload,
        },
        attachments,
    ))
}

fn decode_payload(kind: PacketType, data: &str) -> Result<Payload, DecodeError> {
    let invalid = |_| DecodeError::InvalidPayload;
    if data.is_empty() {
        return match kind {
            PacketType::Connect | PacketType::Disconnect | PacketType::ConnectError => {
                Ok(Payload::None)
            }
            _ => Err(DecodeError::InvalidPayload),
        };
    }
    match kind {
        PacketType::Disconnect => Err(DecodeError::InvalidPayload),
        PacketType::Connect | PacketType::ConnectError => {
            let raw: Box<RawValue> = serde_json::from_str(data).map_err(invalid)?;
            let first = raw.get().as_bytes().first().copied();
            let ok =
                first == Some(b'{') || (kind == PacketType::ConnectError && first == Some(b'"'));
            if !ok {
                return Err(DecodeError::InvalidPayload);
            }
            Ok(Payload::Json(raw))
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let elements: Vec<&RawValue> = serde_json::from_str(data).map_err(invalid)?;
            let first = elements.first().ok_or(DecodeError::InvalidPayload)?;
            let name = match serde_json::from_str::<serde_json::Value>(first.get()) {
                Ok(serde_json::Value::String(name))
                    if !RESERVED_EVENTS.contains(&name.as_str()) =>
                {
                    name
                }
                Ok(serde_json::Value::Number(n)) => n.to_string(),
                _ => return Err(DecodeError::InvalidPayload),
            };
            Ok(Payload::Event(name, args_after(data, &elements, 1)))
        }
        PacketType::Ack | PacketType::BinaryAck => {
            let elements: Vec<&RawValue> = serde_json::from_str(data).map_err(invalid)?;
            Ok(Payload::Ack(args_after(data, &elements, 0)))
        }
    }
}

/// The raw text of `elements[skip..]` inside the array text `data`.
fn args_after(data: &str, elements: &[&RawValue], skip: usize) -> Args {
    let inner = match (elements.get(skip), elements.last()) {
        (Some(first), Some(last)) => {
            let base = data.as_ptr() as usize;
            let start = first.get().as_ptr() as usize - base;
            let end = last.get().as_ptr() as usize - base + last.get().len();
            Str::from(&data[start..end])
        }
        _ => Str::default(),
    };
    Args {
        inner,
        attachments: Vec::new(),
    }
}

/// An encoded packet: the text frame and its attachments, ready to be
/// queued on any number of sessions (cloning shares the bytes).
#[derive(Debug, Clone)]
pub struct Encoded {
    pub frames: Vec<Frame>,
    /// The recovery offset the packet carries as its last argument, if it
    /// is a recoverable event (see [`Encoded::event_at`]): a socket whose
    /// state is being recovered tells a packet it was already replayed by it.
    offset: Option<Offset>,
}

impl Encoded {
    /// Encodes a packet. `data` is the JSON after the header, if any.
    fn new(
        kind: PacketType,
        nsp: &str,
        id: Option<u64>,
        data: &[&str],
        attachments: &[Bytes],
    ) -> Encoded {
        let kind = match (kind, attachments.is_empty()) {
            (PacketType::Event, false) => PacketType::BinaryEvent,
            (PacketType::Ack, false) => PacketType::BinaryAck,
            (kind, _) => kind,
        };
        let data_len: usize = data.iter().map(|d| d.len()).sum();
        let mut buf: BytesMut = Frame::message_buffer(data_len + nsp.len() + 24);
        buf.put_u8(b'0' + kind as u8);
        if kind.is_binary() {
            buf.put_slice(itoa::Buffer::new().format(attachments.len()).as_bytes());
            buf.put_u8(b'-');
        }
        if nsp != "/" {
            buf.put_slice(nsp.as_bytes());
            buf.put_u8(b',');
        }
        if let Some(id) = id {
            buf.put_slice(itoa::Buffer::new().format(id).as_bytes());
        }
        for part in data {
            buf.put_slice(part.as_bytes());
        }
        let mut frames = Vec::with_capacity(1 + attachments.len());
        frames.push(Frame::from_message_buffer(buf));
        frames.extend(attachments.iter().cloned().map(Frame::binary));
        Encoded {
            frames,
            offset: None,
        }
    }

    /// An EVENT packet.
    pub fn event(nsp: &str, name: &str, args: &Args, id: Option<u64>) -> Encoded {
        let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
        let sep = if args.is_empty() { "" } else { "," };
        Encoded::new(
            PacketType::Event,
            nsp,
            id,
            &["[", &name, sep, args.raw(), "]"],
            &args.attachments,
        )
    }

    /// A recoverable EVENT packet: `offset` is appended as its last
    /// argument, a string, as the reference server's connection state
    /// recovery does. The official client keeps the last one it received
    /// and presents it when it reconnects.
    pub fn event_at(nsp: &str, name: &str, args: &Args, offset: Offset) -> Encoded {
        let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
        let mut digits = itoa::Buffer::new();
        let offset_text = digits.format(offset.0);
        let sep = if args.is_empty() { "" } else { "," };
        let mut packet = Encoded::new(
            PacketType::Event,
            nsp,
            None,
            &["[", &name, sep, args.raw(), ",\"", offset_text, "\"]"],
            &args.attachments,
        );
        packet.offset = Some(offset);
        packet
    }

    /// The packet, known to carry `offset` as its last argument already
    /// (an event whose arguments came with it, as a cluster's recovery log
    /// keeps them): a socket being restored then tells it was replayed.
    pub fn with_offset(mut self, offset: Offset) -> Encoded {
        self.offset = Some(offset);
        self
    }

    /// The recovery offset the packet carries, if any.
    pub fn offset(&self) -> Option<Offset> {
        self.offset
    }

    /// Bytes of the packet's frames (its text and its attachments): what
    /// queueing it costs a session, and what keeping it for recovery holds.
    pub fn byte_len(&self) -> usize {
        self.frames.iter().map(Frame::byte_len).sum()
    }

    /// An ACK packet.
    pub fn ack(nsp: &str, id: u64, args: &Args) -> Encoded {
        Encoded::new(
            PacketType::Ack,
            nsp,
            Some(id),
            &["[", args.raw(), "]"],
            &args.attachments,
        )
    }

    /// A CONNECT packet (the server's answer, with the socket id).
    pub fn connect(nsp: &str, data: &str) -> Encoded {
        Encoded::new(PacketType::Connect, nsp, None, &[data], &[])
    }

    /// A CONNECT_ERROR packet.
    pub fn connect_error(nsp: &str, data: &str) -> Encoded {
        Encoded::new(PacketType::ConnectError, nsp, None, &[data], &[])
    }

    /// A DISCONNECT packet.
    pub fn disconnect(nsp: &str) -> Encoded {
        Encoded::new(PacketType::Disconnect, nsp, None, &[], &[])
    }

    /// The text of the first frame (for tests and logs).
    pub fn text(&self) -> &str {
        match self.frames.first() {
            Some(Frame::Text(s)) => s.as_str(),
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<Packet, DecodeError> {
        match Decoder::new(10).text(s)? {
            Decoded::Packet(p) => Ok(p),
            Decoded::Pending => panic!("pending"),
        }
    }

    #[test]
    fn decodes_connect_packets() {
        let p = decode("0").unwrap();
        assert_eq!((p.kind, p.nsp.as_str()), (PacketType::Connect, "/"));
        assert!(matches!(p.payload, Payload::None));
        let p = decode("0/custom,").unwrap();
        assert_eq!(p.nsp, "/custom");
        let p = decode("0/custom").unwrap();
        assert_eq!(p.nsp, "/custom");
        let p = decode(r#"0/custom,{"token":"abc"}"#).unwrap();
        match p.payload {
            Payload::Json(raw) => assert_eq!(raw.get(), r#"{"token":"abc"}"#),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode("0[1]").unwrap_err(), DecodeError::InvalidPayload);
        assert_eq!(decode(r#"0"x""#).unwrap_err(), DecodeError::InvalidPayload);
    }

    #[test]
    fn decodes_events_with_ids() {
        let p = decode(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#).unwrap();
        assert_eq!(p.id, Some(456));
        match p.payload {
            Payload::Event(name, args) => {
                assert_eq!(name, "message-with-ack");
                assert_eq!(args.raw(), r#"1,"2",{"3":[false]}"#);
            }
            other => panic!("{other:?}"),
        }
        let p = decode(r#"2/chat,7[ "hi" ]"#).unwrap();
        assert_eq!((p.nsp.as_str(), p.id), ("/chat", Some(7)));
        match p.payload {
            Payload::Event(name, args) => assert_eq!((name.as_str(), args.raw()), ("hi", "")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_packets_of_every_type() {
        for bad in [
            "",
            "7",
            "a",
            "4abc",
            "2",
            "2{}",
            "2[]",
            "2[1",
            r#"2["connect"]"#,
            r#"2["disconnect",1]"#,
            "2[true]",
            "2[null]",
            r#"2abc["x"]"#,
            "1{}",
            "1[]",
            "3",
            "3{}",
            "3\"x\"",
            "5[\"a\"]",
            "5-[\"a\"]",
            "5x-[\"a\"]",
            "511-[\"a\"]",
            "6-1[]",
            "0/ns,[",
            "4[1]",
            "299999999999999999999[\"a\"]",
            "29007199254740993[\"a\"]",
        ] {
            assert!(decode_header(bad, 10, false).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn placeholders_must_name_an_attachment() {
        let mut d = Decoder::new(10);
        d.text(r#"51-["x",{"_placeholder":true,"num":5}]"#).unwrap();
        assert_eq!(
            d.binary(Bytes::from_static(&[1])).unwrap_err(),
            DecodeError::IllegalAttachments
        );
        let mut d = Decoder::new(10);
        d.text(r#"51-["x",{"_placeholder":true,"num":-1}]"#)
            .unwrap();
        assert_eq!(
            d.binary(Bytes::from_static(&[1])).unwrap_err(),
            DecodeError::IllegalAttachments
        );
        let mut d = Decoder::new(10);
        assert_eq!(
            d.text(r#"50-["x",{"_placeholder":true,"num":0}]"#)
                .unwrap_err(),
            DecodeError::IllegalAttachments
        );
        let mut d = Decoder::new(10);
        d.text(r#"51-["x",{"a":[{"_placeholder":true,"num":0}]}]"#)
            .unwrap();
        assert!(matches!(
            d.binary(Bytes::from_static(&[1])),
            Ok(Decoded::Packet(_))
        ));
    }

    #[test]
    fn namespaces_with_control_characters_are_refused() {
        assert_eq!(
            decode("0/a\x1eb,").unwrap_err(),
            DecodeError::InvalidNamespace
        );
        assert_eq!(
            decode(&format!("0/{},", "n".repeat(300))).unwrap_err(),
            DecodeError::InvalidNamespace
        );
    }

    /// A v3 CONNECT carries its credentials in the name's query: a JWT is
    /// longer than a name may be, so the query has its own bound.
    #[test]
    fn a_v3_namespace_query_is_bounded_apart_from_the_name() {
        let v3 = |s: &str| match Decoder::new(10).text_for(s, true) {
            Ok(Decoded::Packet(p)) => Ok(p),
            Ok(Decoded::Pending) => panic!("pending"),
            Err(err) => Err(err),
        };
        let jwt = "t".repeat(2048);
        let packet = v3(&format!("0/chat?token={jwt},")).unwrap();
        assert_eq!(packet.nsp, format!("/chat?token={jwt}"));
        // socket.io-client 1.x and python-socketio 4 write no comma.
        assert_eq!(v3("0/chat?token=abc").unwrap().nsp, "/chat?token=abc");
        // v4 unchanged: the whole name is bounded.
        assert_eq!(
            decode(&format!("0/chat?token={jwt},")).unwrap_err(),
            DecodeError::InvalidNamespace
        );
        let long_name = format!("0/{}?a=b,", "n".repeat(300));
        let long_query = format!("0/chat?t={},", "q".repeat(MAX_NAMESPACE_QUERY_LEN));
        let control = "0/chat?t=\x1e,";
        for bad in [long_name.as_str(), long_query.as_str(), control] {
            assert_eq!(v3(bad).unwrap_err(), DecodeError::InvalidNamespace);
        }
    }

    #[test]
    fn a_packet_waiting_for_attachments_holds_at_most_its_byte_bound() {
        let header =
            r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        let mut d = Decoder::new(10).with_max_pending_bytes(header.len() + 100);
        d.text(header).unwrap();
        assert!(d.is_pending());
        assert!(matches!(
            d.binary(Bytes::from(vec![0u8; 60])),
            Ok(Decoded::Pending)
        ));
        assert_eq!(
            d.binary(Bytes::from(vec![0u8; 41])).unwrap_err(),
            DecodeError::AttachmentsTooLarge
        );
        assert!(!d.is_pending());
        // Exactly at the bound is fine.
        let mut d = Decoder::new(10).with_max_pending_bytes(header.len() + 100);
        d.text(header).unwrap();
        d.binary(Bytes::from(vec![0u8; 60])).unwrap();
        assert!(matches!(
            d.binary(Bytes::from(vec![0u8; 40])),
            Ok(Decoded::Packet(_))
        ));
        // A header alone over the bound is refused.
        let mut d = Decoder::new(10).with_max_pending_bytes(10);
        assert_eq!(
            d.text(header).unwrap_err(),
            DecodeError::AttachmentsTooLarge
        );
    }

    #[test]
    fn reassembles_binary_packets() {
        let mut d = Decoder::new(10);
        let header =
            r#"52-789["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert!(matches!(d.text(header), Ok(Decoded::Pending)));
        assert!(matches!(
            d.text("2[\"x\"]"),
            Err(DecodeError::UnexpectedText)
        ));
        let mut d = Decoder::new(10);
        d.text(header).unwrap();
        assert!(matches!(
            d.binary(Bytes::from_static(&[1])),
            Ok(Decoded::Pending)
        ));
        let Ok(Decoded::Packet(p)) = d.binary(Bytes::from_static(&[2])) else {
            panic!()
        };
        assert_eq!(p.id, Some(789));
        let Payload::Event(_, args) = p.payload else {
            panic!()
        };
        assert_eq!(
            args.attachments(),
            &[Bytes::from_static(&[1]), Bytes::from_static(&[2])]
        );
        assert!(matches!(
            d.binary(Bytes::new()),
            Err(DecodeError::UnexpectedBinary)
        ));
    }

    #[test]
    fn encodes_like_the_reference() {
        let args = Args::one(&serde_json::json!({"token":"123"}));
        assert_eq!(
            Encoded::event("/", "auth", &args, None).text(),
            r#"42["auth",{"token":"123"}]"#
        );
        assert_eq!(
            Encoded::event("/custom", "auth", &Args::one(&serde_json::json!({})), None).text(),
            r#"42/custom,["auth",{}]"#
        );
        assert_eq!(
            Encoded::ack("/", 456, &decode_args(r#"[1,"2"]"#)).text(),
            r#"43456[1,"2"]"#
        );
        assert_eq!(
            Encoded::event("/", "e", &Args::new(), Some(3)).text(),
            r#"423["e"]"#
        );
        assert_eq!(
            Encoded::connect_error("/random", r#"{"message":"Invalid namespace"}"#).text(),
            r#"44/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(Encoded::disconnect("/a").text(), "41/a,");
        let mut bin = Args::new();
        bin.push_binary(Bytes::from_static(&[1, 2, 3]));
        let e = Encoded::ack("/", 789, &bin);
        assert_eq!(e.text(), r#"461-789[{"_placeholder":true,"num":0}]"#);
        assert_eq!(e.frames.len(), 2);
    }

    #[test]
    fn a_recoverable_event_carries_its_offset_as_the_last_argument() {
        let e = Encoded::event_at("/", "news", &decode_args(r#"[1,{"a":2}]"#), Offset(17));
        assert_eq!(e.text(), r#"42["news",1,{"a":2},"17"]"#);
        assert_eq!(e.offset(), Some(Offset(17)));
        assert_eq!(
            Encoded::event_at("/chat", "ping", &Args::new(), Offset(3)).text(),
            r#"42/chat,["ping","3"]"#
        );
        // Binary arguments keep their placeholders; the offset follows them.
        let mut bin = Args::new();
        bin.push_binary(Bytes::from_static(&[1]));
        let e = Encoded::event_at("/", "b", &bin, Offset(9));
        assert_eq!(e.text(), r#"451-["b",{"_placeholder":true,"num":0},"9"]"#);
        assert_eq!(e.frames.len(), 2);
        assert_eq!(e.byte_len(), e.text().len() + 1);
        assert_eq!(Encoded::event("/", "x", &Args::new(), None).offset(), None);
    }

    fn decode_args(json: &str) -> Args {
        let elements: Vec<&RawValue> = serde_json::from_str(json).unwrap();
        args_after(json, &elements, 0)
    }
}
