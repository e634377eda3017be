//! The bus's wire format, `@socket.io/redis-adapter` 8.x's byte for byte
//! (its `lib/index.ts`; `@socket.io/redis-emitter` 5 publishes the same):
//!
//! - a broadcast is the MessagePack array `[uid, packet, opts]`: `uid` the
//!   sending node's (the emitter's is `"emitter"`), `packet` the object
//!   `{type: 2, data: [event, ...args], nsp}` (binary arguments as
//!   MessagePack bin: Node's Buffers), `opts` `{rooms, except, flags}`
//!   (the emitter writes `{rooms, flags, except}`);
//! - it is published on `<prefix>#<nsp>#`, or `<prefix>#<nsp>#<room>#`
//!   when it names exactly one room, and every node PSUBSCRIBEs
//!   `<prefix>#<nsp>#*`.
//!
//! Event arguments are JSON text here ([`Args`]); what crosses the bus is
//! what a Node node would publish for the same JavaScript value: numbers
//! by their value (`1.0` is the integer 1), object keys in JavaScript's
//! order (integer-like keys first, ascending; a repeated key keeps its
//! first place and its last value), `{"_placeholder":true,"num":N}` as the
//! bytes of attachment N. Coming back, MessagePack is written as the JSON
//! that `JSON.stringify` would give the value notepack decodes (a `Date` as
//! its ISO string, `undefined` as `null` in arrays and left out of
//! objects), with bins as attachments.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use socketio::packet::RESERVED_EVENTS;
use socketio::recovery::Offset;
use socketio::{Args, BroadcastOptions, Room};

use crate::msgpack::{self, Reader, Value, Writer};

/// The Socket.IO EVENT packet type, as the packet object carries it.
const EVENT: u64 = 2;
/// BINARY_EVENT: old emitters wrote it for binary arguments.
const BINARY_EVENT: u64 = 5;

/// Why a bus message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not MessagePack: {0}")]
    Msgpack(#[from] msgpack::MsgpackError),
    #[error("not a broadcast: {0}")]
    Shape(&'static str),
    #[error("packet type {0} is not an event")]
    NotAnEvent(u64),
    #[error("reserved event name {0:?}")]
    Reserved(String),
}

/// The channel prefix of namespace `nsp`: `<prefix>#<nsp>#`.
pub fn channel_of(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// The pattern a node subscribes to for namespace `nsp`.
pub fn pattern_of(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#*")
}

/// A broadcast of this node, waiting in the publish queue: encoded by the
/// publisher task, off the emitting caller's path.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub nsp: Room,
    pub event: String,
    pub args: Args,
    /// Deduplicated, in order (Node's are a `Set`).
    pub rooms: Vec<Room>,
    /// Deduplicated, the left-out socket first (Node's `socket.to()` puts
    /// the socket's id in its `except` set before any other room).
    pub except: Vec<Room>,
    pub volatile: bool,
}

impl Outbound {
    pub fn new(nsp: Room, event: &str, args: &Args, opts: &BroadcastOptions) -> Outbound {
        let socket = opts.except_socket.map(|id| Room::from(id.as_str()));
        Outbound {
            nsp,
            event: event.to_owned(),
            args: args.clone(),
            rooms: distinct(opts.rooms.iter().cloned()),
            except: distinct(socket.into_iter().chain(opts.except.iter().cloned())),
            volatile: opts.volatile,
        }
    }

    /// What it holds, in bytes (what the publish queue counts).
    pub fn byte_len(&self) -> usize {
        let rooms: usize = self.rooms.iter().chain(&self.except).map(|r| r.len()).sum();
        self.event.len() + self.args.byte_len() + rooms + self.nsp.len()
    }

    /// The channel it is published on.
    pub fn channel(&self, prefix: &str) -> String {
        let mut channel = channel_of(prefix, &self.nsp);
        if let [room] = self.rooms.as_slice() {
            channel.push_str(room);
            channel.push('#');
        }
        channel
    }

    /// `[uid, {type, data, nsp}, {rooms, except, flags}]`, as the Node
    /// adapter's `broadcast` publishes it.
    pub fn encode(&self, uid: &str) -> Vec<u8> {
        self.encode_with(uid, false).0
    }

    /// The message as [`encode`](Self::encode) writes it, with a fourth
    /// element: a string of [`OFFSET_DIGITS`] zeros, which the recovery
    /// log's script overwrites with the offset Redis gives it. Returns the
    /// message and the position of the first zero.
    ///
    /// The offset rides beside the packet, not in it: a Switchboard node
    /// adds it as the event's last argument for its clients (as the
    /// reference server's recovery sends it), while a Node node reads
    /// `[uid, packet, opts]` and ignores what follows, so its clients get
    /// exactly the arguments emitted.
    pub fn encode_with_offset_slot(&self, uid: &str) -> (Vec<u8>, usize) {
        let (buf, slot) = self.encode_with(uid, true);
        (buf, slot.unwrap_or_default())
    }

    fn encode_with(&self, uid: &str, offset_slot: bool) -> (Vec<u8>, Option<usize>) {
        let mut w = Writer::with_capacity(64 + self.byte_len());
        w.array(3 + usize::from(offset_slot));
        w.str(uid);
        w.map(3);
        w.str("type");
        w.uint(EVENT);
        w.str("data");
        write_data(&mut w, &self.event, &self.args);
        w.str("nsp");
        w.str(&self.nsp);
        self.write_opts(&mut w);
        let slot = offset_slot.then(|| {
            w.str(&"0".repeat(OFFSET_DIGITS));
            w.buf.len() - OFFSET_DIGITS
        });
        (w.buf, slot)
    }

    /// `{rooms, except, flags}`, as `encodeOptions` gives them.
    pub(crate) fn write_opts(&self, w: &mut Writer) {
        w.map(3);
        w.str("rooms");
        w.array(self.rooms.len());
        for room in &self.rooms {
            w.str(room);
        }
        w.str("except");
        w.array(self.except.len());
        for room in &self.except {
            w.str(room);
        }
        w.str("flags");
        if self.volatile {
            w.map(1);
            w.str("volatile");
            w.bool(true);
        } else {
            w.map(0);
        }
    }
}

/// Digits of a recovery offset in a bus message (see
/// [`Outbound::encode_with_offset_slot`]): the decimal text of
/// `ms * 10^6 + seq` for the log entry `ms-seq`, 19 digits until 2286.
pub const OFFSET_DIGITS: usize = 19;

/// Writes one JSON value (`json`, its placeholders naming `attachments`)
/// as notepack writes the JavaScript value; `null` if it is not JSON.
pub(crate) fn write_json_value(w: &mut Writer, json: &str, attachments: &[Bytes]) {
    match serde_json::from_str::<Js>(json) {
        Ok(value) => value.write(w, attachments),
        Err(_) => w.nil(),
    }
}

/// JSON text as the MessagePack notepack writes for the value
/// `JSON.parse` gives (so that one reader serves both of the sharded
/// adapter's encodings); `None` if it is not JSON.
pub(crate) fn json_to_msgpack(json: &str) -> Option<Vec<u8>> {
    let value: Js = serde_json::from_str(json).ok()?;
    let mut w = Writer::with_capacity(json.len());
    value.write(&mut w, &[]);
    Some(w.buf)
}

/// The rooms once each, in their first order (a publish to a thousand
/// users names a thousand rooms: no quadratic scan).
fn distinct(rooms: impl Iterator<Item = Room>) -> Vec<Room> {
    let mut seen = std::collections::HashSet::new();
    rooms.filter(|room| seen.insert(room.clone())).collect()
}

/// Writes `[event, ...args]`: the event name, then each argument
/// converted from its JSON text.
pub(crate) fn write_data(w: &mut Writer, event: &str, args: &Args) {
    // The arguments' text came from a JSON parser or serializer: it parses.
    // Should it not, the event still goes out, with no arguments, rather
    // than a panic on the publisher task.
    let values: Vec<Js> = if args.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&args.to_json_array()).unwrap_or_else(|err| {
            tracing::error!(%err, event, "event arguments are not JSON: published without them");
            Vec::new()
        })
    };
    w.array(1 + values.len());
    w.str(event);
    for value in &values {
        value.write(w, args.attachments());
    }
}

/// A JSON value as JavaScript holds it after `JSON.parse`: numbers are
/// kept as parsed (an integer exactly), objects as their entries in the
/// order of the text.
#[derive(Debug, Clone, PartialEq)]
enum Js {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    Array(Vec<Js>),
    Object(Vec<(String, Js)>),
}

impl<'de> Deserialize<'de> for Js {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Js, D::Error> {
        deserializer.deserialize_any(JsVisitor)
    }
}

struct JsVisitor;

impl<'de> Visitor<'de> for JsVisitor {
    type Value = Js;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Js, E> {
        Ok(Js::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Js, E> {
        Ok(Js::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Js, E> {
        Ok(Js::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Js, E> {
        Ok(Js::I64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Js, E> {
        Ok(Js::F64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Js, E> {
        Ok(Js::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Js, E> {
        Ok(Js::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Js, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Js::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Js, A::Error> {
        let mut entries: Vec<(String, Js)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Js>()? {
            entries.push((key, value));
        }
        Ok(Js::Object(js_order(entries)))
    }
}

/// The entries in the order `Object.keys` gives after `JSON.parse`: a
/// repeated key at its first place with its last value, then the keys
/// that are array indices (canonical integers below 2³² − 1) first, in
/// ascending order, the others after them as they came.
fn js_order(entries: Vec<(String, Js)>) -> Vec<(String, Js)> {
    let mut out: Vec<(String, Js)> = Vec::with_capacity(entries.len());
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (key, value) in entries {
        match index.get(&key) {
            Some(&at) => out[at].1 = value,
            None => {
                index.insert(key.clone(), out.len());
                out.push((key, value));
            }
        }
    }
    if out.iter().any(|(k, _)| array_index(k).is_some()) {
        // Stable: the other keys keep their order.
        out.sort_by_key(|(k, _)| match array_index(k) {
            Some(i) => (0, i),
            None => (1, 0),
        });
    }
    out
}

/// The key as an array index, if JavaScript takes it as one.
fn array_index(key: &str) -> Option<u32> {
    let canonical = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if !canonical {
        return None;
    }
    key.parse::<u32>().ok().filter(|&i| i < u32::MAX)
}

impl Js {
    /// Writes the value as notepack writes the JavaScript value;
    /// `{"_placeholder":true,"num":N}` naming one of `attachments` as its
    /// bytes (socket.io-parser's reconstruction).
    fn write(&self, w: &mut Writer, attachments: &[Bytes]) {
        match self {
            Js::Null => w.nil(),
            Js::Bool(b) => w.bool(*b),
            Js::U64(u) => w.uint(*u),
            Js::I64(i) => w.int(*i),
            Js::F64(f) => w.number(*f),
            Js::Str(s) => w.str(s),
            Js::Array(items) => {
                w.array(items.len());
                for item in items {
                    item.write(w, attachments);
                }
            }
            Js::Object(entries) => {
                if let Some(bytes) = placeholder(entries, attachments) {
                    return w.bin(bytes);
                }
                w.map(entries.len());
                for (key, value) in entries {
                    w.str(key);
                    value.write(w, attachments);
                }
            }
        }
    }
}

/// The attachment a placeholder object names, if it is one.
fn placeholder<'a>(entries: &[(String, Js)], attachments: &'a [Bytes]) -> Option<&'a Bytes> {
    if attachments.is_empty() {
        return None;
    }
    let is = entries
        .iter()
        .any(|(k, v)| k == "_placeholder" && *v == Js::Bool(true));
    if !is {
        return None;
    }
    let num = entries.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("num", Js::U64(n)) => Some(*n),
        ("num", Js::F64(f)) if f.trunc() == *f && *f >= 0.0 => Some(*f as u64),
        _ => None,
    })?;
    attachments.get(usize::try_from(num).ok()?)
}

/// A broadcast read from the bus.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub event: String,
    pub args: Args,
    pub opts: BroadcastOptions,
    /// It is in the recovery log at this offset (its uid ends with
    /// [`LOGGED_UID_SUFFIX`], and the offset follows its options).
    pub offset: Option<Offset>,
}

/// Ends the uid of a message that a Switchboard node appended to the
/// recovery log: every node delivers it, the one that sent it too (it
/// has its offset only once Redis gave it one). A Node node's uid, six
/// alphanumeric characters, or the emitter's never end so.
pub const LOGGED_UID_SUFFIX: &str = "~log";

/// What the first element of a bus message said.
#[derive(Debug)]
pub enum Decoded {
    /// This node's own message, back from Redis.
    Own,
    /// Another namespace's (a channel name can hide a longer namespace).
    OtherNamespace,
    /// A broadcast to deliver.
    Broadcast(Inbound),
}

/// Reads a broadcast from the bus for namespace `nsp`, unless it is this
/// node's (`uid`): then only its first element is read. `message` is the
/// bytes Redis delivered (attachments share them).
pub fn decode(message: &Bytes, uid: &str, nsp: &str) -> Result<Decoded, WireError> {
    let mut reader = Reader::new(message);
    let len = reader
        .array_len()?
        .ok_or(WireError::Shape("not an array"))?;
    if len < 3 {
        return Err(WireError::Shape("fewer than three elements"));
    }
    let sender = reader.value()?;
    if sender.as_str() == Some(uid) {
        return Ok(Decoded::Own);
    }
    let logged = sender
        .as_str()
        .is_some_and(|s| s.ends_with(LOGGED_UID_SUFFIX));
    let packet = reader.value()?;
    let opts = reader.value()?;
    // The recovery offset follows the options (no Node publisher sends
    // a fourth element; a Node node ignores it).
    let mut offset = None;
    for i in 3..len {
        let value = reader.value()?;
        if i == 3 {
            offset = value.as_str().and_then(Offset::parse);
        }
    }
    reader.finish()?;
    if logged && offset.is_none() {
        return Err(WireError::Shape("a logged message without its offset"));
    }
    Ok(match inbound(&packet, &opts, message, nsp)? {
        Some(inbound) => Decoded::Broadcast(Inbound { offset, ..inbound }),
        None => Decoded::OtherNamespace,
    })
}

/// The broadcast a packet object `{type, data, nsp}` and its options
/// `{rooms, except, flags}` describe, for namespace `nsp` (`None` when the
/// packet is another namespace's); bins become attachments sharing
/// `message`. Also what a BROADCAST request carries.
pub(crate) fn inbound(
    packet: &Value,
    opts: &Value,
    message: &Bytes,
    nsp: &str,
) -> Result<Option<Inbound>, WireError> {
    inbound_or(packet, opts, message, nsp, "/")
}

/// [`inbound`], a packet without `nsp` taken for namespace `unnamed` (the
/// sharded adapter's packets leave it out: their message names it).
pub(crate) fn inbound_or(
    packet: &Value,
    opts: &Value,
    message: &Bytes,
    nsp: &str,
    unnamed: &str,
) -> Result<Option<Inbound>, WireError> {
    let packet_nsp = match packet.get("nsp") {
        None | Some(Value::Undefined) => unnamed,
        Some(value) => value.as_str().ok_or(WireError::Shape("nsp"))?,
    };
    if packet_nsp != nsp {
        return Ok(None);
    }
    match packet.get("type") {
        Some(Value::UInt(EVENT | BINARY_EVENT)) => {}
        Some(Value::UInt(other)) => return Err(WireError::NotAnEvent(*other)),
        _ => return Err(WireError::Shape("packet type")),
    }
    let Some(Value::Array(data)) = packet.get("data") else {
        return Err(WireError::Shape("packet data"));
    };
    let (name, rest) = data.split_first().ok_or(WireError::Shape("no event"))?;
    let event = match name {
        Value::Str(s) => s.to_string(),
        Value::UInt(_) | Value::Int(_) | Value::F64(_) => js_string(name)?,
        _ => return Err(WireError::Shape("event name")),
    };
    if RESERVED_EVENTS.contains(&event.as_str()) {
        return Err(WireError::Reserved(event));
    }
    let mut json = String::new();
    let mut attachments = Vec::new();
    for (i, value) in rest.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        write_json(&mut json, value, message, &mut attachments)?;
    }
    let flags = opts.get("flags");
    Ok(Some(Inbound {
        event,
        args: Args::from_parts(json, attachments),
        opts: BroadcastOptions {
            rooms: rooms(opts.get("rooms"))?,
            except: rooms(opts.get("except"))?,
            except_socket: None,
            volatile: flags
                .and_then(|f| f.get("volatile"))
                .is_some_and(Value::truthy),
            local: false,
        },
        offset: None,
    }))
}

/// A list of rooms (JavaScript rooms may be numbers); absent = none.
pub(crate) fn rooms(value: Option<&Value>) -> Result<Vec<Room>, WireError> {
    match value {
        None | Some(Value::Nil | Value::Undefined) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|v| js_string(v).map(Room::from)).collect(),
        Some(_) => Err(WireError::Shape("rooms")),
    }
}

/// `String(value)` for a string, number or boolean.
pub(crate) fn js_string(value: &Value) -> Result<String, WireError> {
    Ok(match value {
        Value::Str(s) => s.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Int(i) => i.to_string(),
        Value::F64(f) => {
            let mut out = String::new();
            write_number(&mut out, *f);
            if out == "null" {
                // String(NaN), String(Infinity): rooms nobody is in.
                out = if f.is_nan() {
                    "NaN".into()
                } else if *f > 0.0 {
                    "Infinity".into()
                } else {
                    "-Infinity".into()
                };
            }
            out
        }
        Value::Bool(b) => b.to_string(),
        Value::Nil => "null".into(),
        _ => return Err(WireError::Shape("a key or room that is not text")),
    })
}

/// Appends the JSON `JSON.stringify` would give the value notepack decodes
/// from `value`; bins become placeholders, their bytes (sharing `message`)
/// pushed to `attachments`.
pub(crate) fn write_json(
    out: &mut String,
    value: &Value,
    message: &Bytes,
    attachments: &mut Vec<Bytes>,
) -> Result<(), WireError> {
    match value {
        Value::Nil | Value::Undefined => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::UInt(u) => out.push_str(itoa::Buffer::new().format(*u)),
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        Value::F64(f) => write_number(out, *f),
        Value::Str(s) => write_str(out, s),
        Value::Bin(bytes) => {
            let _ = write!(
                out,
                r#"{{"_placeholder":true,"num":{}}}"#,
                attachments.len()
            );
            attachments.push(message.slice_ref(bytes));
        }
        Value::Date(ms) => match iso_date(*ms) {
            Some(text) => write_str(out, &text),
            None => out.push_str("null"),
        },
        // notepack's other extensions: `[type, Buffer]`.
        Value::Ext(kind, bytes) => {
            let _ = write!(out, "[{kind},");
            write_json(out, &Value::Bin(bytes), message, attachments)?;
            out.push(']');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item, message, attachments)?;
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            let mut first = true;
            for (key, item) in entries {
                // `JSON.stringify` leaves out what is undefined.
                if matches!(item, Value::Undefined) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                write_str(out, &js_string(key)?);
                out.push(':');
                write_json(out, item, message, attachments)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A string as JSON text.
fn write_str(out: &mut String, s: &str) {
    // Serializing a str to a String cannot fail.
    if let Ok(text) = serde_json::to_string(s) {
        out.push_str(&text);
    }
}

/// A number as `JSON.stringify` writes it: `null` when not finite, an
/// integral value below 10²¹ without a fraction.
pub(crate) fn write_number(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
    } else if f.trunc() == f && f.abs() < 1e21 {
        out.push_str(itoa::Buffer::new().format(f as i128));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(f));
    }
}

/// `Date.prototype.toISOString` of `ms` since the epoch; `None` for an
/// invalid date (beyond ±8.64e15 ms, which `toJSON` turns into `null`).
fn iso_date(ms: f64) -> Option<String> {
    if !ms.is_finite() || ms.abs() > 8.64e15 {
        return None;
    }
    let ms = ms.trunc() as i64;
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.abs())
    };
    Some(format!(
        "{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z"
    ))
}

#[cfg(test)]
mod tests;
