//! The request and response channels, in `@socket.io/redis-adapter` 8.x's
//! wire format: what a node asks the others on `<prefix>-request#<nsp>#`
//! and what they answer on `<prefix>-response#<nsp>#` (or on the asking
//! node's own `<prefix>-response#<nsp>#<uid>#`).
//!
//! A message is JSON when its first byte is `{`, MessagePack otherwise:
//! the Node adapter sends BROADCAST requests and BROADCAST_ACK responses
//! in MessagePack and everything else as JSON; `@socket.io/redis-emitter`
//! sends JSON with neither `uid` nor `requestId`. The types, as the
//! adapter numbers them:
//!
//! | type | request | answer |
//! | --- | --- | --- |
//! | 0 SOCKETS | `{uid, requestId, type, rooms}` | `{requestId, sockets: [id]}` |
//! | 1 ALL_ROOMS | `{uid, requestId, type}` | `{requestId, rooms}` |
//! | 2 REMOTE_JOIN | `{uid, type, opts: {rooms, except}, rooms}`, or `{uid, requestId, type, sid, room}` | none, or `{requestId}` |
//! | 3 REMOTE_LEAVE | the same | the same |
//! | 4 REMOTE_DISCONNECT | `{uid, type, opts, close}`, or `{uid, requestId, type, sid, close}` | the same |
//! | 5 REMOTE_FETCH | `{uid, requestId, type, opts}` | `{requestId, sockets: [{id, handshake, rooms, data}]}` |
//! | 6 SERVER_SIDE_EMIT | `{uid, type, data: [event, ...args]}`, with `requestId` when it wants acks | `{type, requestId, data}` per node |
//! | 7 BROADCAST | MessagePack `{uid, requestId, type, packet, opts}` (a broadcast with acks) | 8 then 9s |
//! | 8 BROADCAST_CLIENT_COUNT | | `{type, requestId, clientCount}` |
//! | 9 BROADCAST_ACK | | MessagePack `{type, requestId, packet}`, per client ack |
//!
//! Switchboard's answers also carry its `uid` (a key the Node adapter
//! does not read), so that a Switchboard node asking knows who answered.

use std::time::Duration;

use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketio::{Args, BroadcastOptions, Room};

use crate::msgpack::{self, Value, Writer};
use crate::wire::{self, WireError};

/// The request types, numbered as the Node adapter numbers them.
pub mod kind {
    pub const SOCKETS: u64 = 0;
    pub const ALL_ROOMS: u64 = 1;
    pub const REMOTE_JOIN: u64 = 2;
    pub const REMOTE_LEAVE: u64 = 3;
    pub const REMOTE_DISCONNECT: u64 = 4;
    pub const REMOTE_FETCH: u64 = 5;
    pub const SERVER_SIDE_EMIT: u64 = 6;
    pub const BROADCAST: u64 = 7;
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub const BROADCAST_ACK: u64 = 9;
}

/// How long a client may take to ack a BROADCAST that names no timeout.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// `<prefix>-request#<nsp>#`.
pub fn request_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}-request#{nsp}#")
}

/// `<prefix>-response#<nsp>#`: where the Node adapter answers by default.
pub fn response_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}-response#{nsp}#")
}

/// `<prefix>-response#<nsp>#<uid>#`: the answers meant for node `uid`
/// alone (where Switchboard answers, and where a Node node with
/// `publishOnSpecificResponseChannel` does).
pub fn own_response_channel(prefix: &str, nsp: &str, uid: &str) -> String {
    format!("{prefix}-response#{nsp}#{uid}#")
}

/// A request read from the request channel.
#[derive(Debug)]
pub struct Request {
    /// The asking node (`None` from the emitter).
    pub uid: Option<String>,
    /// Set when the asker waits for answers.
    pub request_id: Option<String>,
    pub body: RequestBody,
}

/// What a request asks.
#[derive(Debug)]
pub enum RequestBody {
    /// The ids of the sockets in `rooms` (all when empty).
    Sockets { rooms: Vec<Room> },
    /// Every room of the node, the sockets' own ids included.
    AllRooms,
    /// The sockets `target` names join `rooms`.
    Join { target: Target, rooms: Vec<Room> },
    /// The sockets `target` names leave `rooms`.
    Leave { target: Target, rooms: Vec<Room> },
    /// The sockets `target` names are disconnected (`close`: their whole
    /// connection).
    Disconnect { target: Target, close: bool },
    /// The sockets `opts` reaches, described.
    Fetch { opts: BroadcastOptions },
    /// An event for the servers, not the clients.
    ServerSideEmit { event: String, args: Args },
    /// A broadcast whose clients' acks go back to the asker.
    Broadcast {
        event: String,
        args: Args,
        opts: BroadcastOptions,
        timeout: Duration,
    },
    /// A type this node does not serve.
    Unknown(u64),
}

/// Which sockets a join, leave or disconnect concerns.
#[derive(Debug)]
pub enum Target {
    /// Those a broadcast with these options would reach.
    Matching(BroadcastOptions),
    /// One socket, by id.
    Socket(String),
}

/// `String(x)` of a JSON string, number or boolean: what JavaScript makes
/// of a room or an id that is not a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsText(pub(crate) String);

impl<'de> Deserialize<'de> for JsText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsText, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsText, E> {
                Ok(JsText(v.to_owned()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<JsText, E> {
                Ok(JsText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<JsText, E> {
                Ok(JsText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<JsText, E> {
                let mut out = String::new();
                wire::write_number(&mut out, v);
                Ok(JsText(out))
            }
            fn visit_bool<E>(self, v: bool) -> Result<JsText, E> {
                Ok(JsText(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

fn rooms_of(list: Option<Vec<JsText>>) -> Vec<Room> {
    list.unwrap_or_default()
        .into_iter()
        .map(|r| Room::from(r.0))
        .collect()
}

#[derive(Deserialize, Default)]
struct RawOpts {
    #[serde(default)]
    rooms: Option<Vec<JsText>>,
    #[serde(default)]
    except: Option<Vec<JsText>>,
}

impl RawOpts {
    fn into_options(self) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms_of(self.rooms),
            except: rooms_of(self.except),
            ..BroadcastOptions::default()
        }
    }
}

/// A request as JSON (or MessagePack written as JSON), every key optional
/// but `type`; unknown keys are ignored, as the Node adapter ignores them.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(default)]
    uid: Option<JsText>,
    #[serde(rename = "requestId", default)]
    request_id: Option<JsText>,
    #[serde(rename = "type")]
    kind: u64,
    #[serde(borrow, default)]
    data: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    opts: Option<RawOpts>,
    #[serde(default)]
    rooms: Option<Vec<JsText>>,
    #[serde(default)]
    room: Option<JsText>,
    #[serde(default)]
    sid: Option<JsText>,
    #[serde(default)]
    close: Option<serde_json::Value>,
}

/// Reads a request of namespace `nsp`.
pub fn parse_request(message: &Bytes, nsp: &str) -> Result<Request, WireError> {
    if message.first() == Some(&b'{') {
        let text = std::str::from_utf8(message).map_err(|_| WireError::Shape("not UTF-8"))?;
        return from_json(text);
    }
    let value = msgpack::decode(message)?;
    if value.get("type") == Some(&Value::UInt(kind::BROADCAST)) {
        return broadcast_request(&value, message, nsp);
    }
    from_json(&as_json(&value, message)?)
}

/// A MessagePack value as the JSON `JSON.stringify` gives it.
fn as_json(value: &Value, message: &Bytes) -> Result<String, WireError> {
    let mut json = String::new();
    wire::write_json(&mut json, value, message, &mut Vec::new())?;
    Ok(json)
}

fn from_json(text: &str) -> Result<Request, WireError> {
    let raw: RawRequest =
        serde_json::from_str(text).map_err(|_| WireError::Shape("not a request"))?;
    let target = |opts: Option<RawOpts>, sid: Option<JsText>| match (opts, sid) {
        (Some(opts), _) => Ok(Target::Matching(opts.into_options())),
        (None, Some(sid)) => Ok(Target::Socket(sid.0)),
        (None, None) => Err(WireError::Shape("neither opts nor sid")),
    };
    let rooms = |rooms: Option<Vec<JsText>>, room: Option<JsText>| {
        let mut rooms = rooms_of(rooms);
        rooms.extend(room.map(|r| Room::from(r.0)));
        rooms
    };
    let body = match raw.kind {
        kind::SOCKETS => RequestBody::Sockets {
            rooms: rooms_of(raw.rooms),
        },
        kind::ALL_ROOMS => RequestBody::AllRooms,
        kind::REMOTE_JOIN => RequestBody::Join {
            target: target(raw.opts, raw.sid)?,
            rooms: rooms(raw.rooms, raw.room),
        },
        kind::REMOTE_LEAVE => RequestBody::Leave {
            target: target(raw.opts, raw.sid)?,
            rooms: rooms(raw.rooms, raw.room),
        },
        kind::REMOTE_DISCONNECT => RequestBody::Disconnect {
            target: target(raw.opts, raw.sid)?,
            close: raw.close.as_ref().is_some_and(truthy),
        },
        kind::REMOTE_FETCH => RequestBody::Fetch {
            opts: raw.opts.unwrap_or_default().into_options(),
        },
        kind::SERVER_SIDE_EMIT => {
            let data = raw.data.ok_or(WireError::Shape("no data"))?;
            let (name, rest) = data.split_first().ok_or(WireError::Shape("no event"))?;
            let event: String = serde_json::from_str(name.get())
                .map_err(|_| WireError::Shape("event name is not a string"))?;
            let mut args = Args::new();
            for arg in rest {
                args.push_json(arg);
            }
            RequestBody::ServerSideEmit { event, args }
        }
        // The Node adapter sends it in MessagePack only.
        kind::BROADCAST => return Err(WireError::Shape("a BROADCAST request in JSON")),
        other => RequestBody::Unknown(other),
    };
    Ok(Request {
        uid: raw.uid.map(|u| u.0),
        request_id: raw.request_id.map(|r| r.0),
        body,
    })
}

/// JavaScript's truthiness of a JSON value.
fn truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// `{uid, requestId, type: 7, packet, opts}` in MessagePack: the packet
/// read as a broadcast is (Buffers as attachments).
fn broadcast_request(value: &Value, message: &Bytes, nsp: &str) -> Result<Request, WireError> {
    let text = |key: &str| -> Result<Option<String>, WireError> {
        match value.get(key) {
            None | Some(Value::Nil | Value::Undefined) => Ok(None),
            Some(v) => wire::js_string(v).map(Some),
        }
    };
    let packet = value.get("packet").ok_or(WireError::Shape("no packet"))?;
    let opts = value.get("opts").ok_or(WireError::Shape("no opts"))?;
    let inbound = wire::inbound(packet, opts, message, nsp)?
        .ok_or(WireError::Shape("a packet of another namespace"))?;
    let timeout = ack_timeout(opts);
    Ok(Request {
        uid: text("uid")?,
        request_id: text("requestId")?,
        body: RequestBody::Broadcast {
            event: inbound.event,
            args: inbound.args,
            opts: inbound.opts,
            timeout,
        },
    })
}

/// How long the clients of a broadcast with acks may take: its options'
/// `flags.timeout`, in milliseconds.
pub(crate) fn ack_timeout(opts: &Value) -> Duration {
    match opts.get("flags").and_then(|f| f.get("timeout")) {
        Some(Value::UInt(ms)) => Duration::from_millis(*ms),
        Some(Value::F64(ms)) if ms.is_finite() && *ms >= 0.0 => Duration::from_millis(*ms as u64),
        _ => DEFAULT_ACK_TIMEOUT,
    }
}

/// The request id of a response, read without the rest (every node reads
/// every answer on the shared response channel; most are not its own).
pub fn response_id(message: &Bytes) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        #[serde(rename = "requestId", default)]
        request_id: Option<JsText>,
    }
    if message.first() == Some(&b'{') {
        let text = std::str::from_utf8(message).ok()?;
        let id: Id = serde_json::from_str(text).ok()?;
        return id.request_id.map(|r| r.0);
    }
    let value = msgpack::decode(message).ok()?;
    let id = value.get("requestId")?;
    wire::js_string(id).ok()
}

/// An answer to one of this node's requests.
#[derive(Debug, Default, Deserialize)]
pub struct Response {
    /// The answering node, when it says (Switchboard's answers do).
    #[serde(default)]
    pub uid: Option<String>,
    /// SOCKETS: ids; REMOTE_FETCH: `{id, handshake, rooms, data}`.
    #[serde(default)]
    pub sockets: Option<Vec<serde_json::Value>>,
    /// ALL_ROOMS.
    #[serde(default)]
    pub rooms: Option<Vec<serde_json::Value>>,
    /// SERVER_SIDE_EMIT: the node's ack.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    #[serde(default, rename = "type")]
    pub kind: Option<u64>,
}

/// Reads an answer (JSON, or MessagePack written as JSON).
pub fn parse_response(message: &Bytes) -> Result<Response, WireError> {
    let parsed = if message.first() == Some(&b'{') {
        let text = std::str::from_utf8(message).map_err(|_| WireError::Shape("not UTF-8"))?;
        serde_json::from_str(text)
    } else {
        serde_json::from_str(&as_json(&msgpack::decode(message)?, message)?)
    };
    parsed.map_err(|_| WireError::Shape("not a response"))
}

/// Selection options as requests carry them.
#[derive(Serialize)]
struct OutOpts<'a> {
    rooms: Vec<&'a str>,
    except: Vec<&'a str>,
}

impl<'a> OutOpts<'a> {
    fn of(opts: &'a BroadcastOptions) -> OutOpts<'a> {
        OutOpts {
            rooms: opts.rooms.iter().map(|r| &**r).collect(),
            except: (opts.except_socket.iter().map(|id| id.as_str()))
                .chain(opts.except.iter().map(|r| &**r))
                .collect(),
        }
    }
}

/// A request of this node, in the Node adapter's key order.
#[derive(Serialize)]
struct OutRequest<'a> {
    uid: &'a str,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    opts: Option<OutOpts<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    close: Option<bool>,
}

impl<'a> OutRequest<'a> {
    fn new(uid: &'a str, request_id: Option<&'a str>, kind: u64) -> OutRequest<'a> {
        OutRequest {
            uid,
            request_id,
            kind,
            data: None,
            opts: None,
            rooms: None,
            close: None,
        }
    }

    fn json(&self) -> Vec<u8> {
        // Serializing strings, numbers and raw JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// ALL_ROOMS.
pub fn all_rooms_request(uid: &str, request_id: &str) -> Vec<u8> {
    OutRequest::new(uid, Some(request_id), kind::ALL_ROOMS).json()
}

/// SOCKETS: the ids of the sockets in any of `rooms` (every socket of
/// the namespace when empty).
pub fn sockets_request(uid: &str, request_id: &str, rooms: &[Room]) -> Vec<u8> {
    OutRequest {
        rooms: Some(rooms.iter().map(|r| &**r).collect()),
        ..OutRequest::new(uid, Some(request_id), kind::SOCKETS)
    }
    .json()
}

/// REMOTE_FETCH of the sockets `opts` reaches.
pub fn fetch_request(uid: &str, request_id: &str, opts: &BroadcastOptions) -> Vec<u8> {
    OutRequest {
        opts: Some(OutOpts::of(opts)),
        ..OutRequest::new(uid, Some(request_id), kind::REMOTE_FETCH)
    }
    .json()
}

/// REMOTE_JOIN (`join`) or REMOTE_LEAVE of `rooms` for the sockets `opts`
/// reaches: no answer is sent back.
pub fn membership_request(
    uid: &str,
    join: bool,
    opts: &BroadcastOptions,
    rooms: &[Room],
) -> Vec<u8> {
    let kind = if join {
        kind::REMOTE_JOIN
    } else {
        kind::REMOTE_LEAVE
    };
    OutRequest {
        opts: Some(OutOpts::of(opts)),
        rooms: Some(rooms.iter().map(|r| &**r).collect()),
        ..OutRequest::new(uid, None, kind)
    }
    .json()
}

/// REMOTE_DISCONNECT of the sockets `opts` reaches.
pub fn disconnect_request(uid: &str, opts: &BroadcastOptions, close: bool) -> Vec<u8> {
    OutRequest {
        opts: Some(OutOpts::of(opts)),
        close: Some(close),
        ..OutRequest::new(uid, None, kind::REMOTE_DISCONNECT)
    }
    .json()
}

/// SERVER_SIDE_EMIT of `[event, ...args]` (with `request_id` when the
/// other nodes' acks are awaited).
pub fn server_side_emit_request(
    uid: &str,
    request_id: Option<&str>,
    event: &str,
    args: &Args,
) -> Vec<u8> {
    let data = RawValue::from_string(event_array(event, args)).ok();
    OutRequest {
        data: data.as_deref(),
        ..OutRequest::new(uid, request_id, kind::SERVER_SIDE_EMIT)
    }
    .json()
}

/// `[event, ...args]` as JSON text.
pub(crate) fn event_array(event: &str, args: &Args) -> String {
    let mut data = serde_json::to_string(event).unwrap_or_default();
    data.insert(0, '[');
    if !args.is_empty() {
        data.push(',');
        data.push_str(args.raw());
    }
    data.push(']');
    data
}

/// An answer of this node: the request's id, this node's uid, then what
/// the type answers with.
#[derive(Serialize)]
struct OutResponse<'a, T: Serialize> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<u64>,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(flatten)]
    body: T,
    uid: &'a str,
}

/// Serializes an answer to request `request_id`.
pub fn response<T: Serialize>(kind: Option<u64>, request_id: &str, uid: &str, body: T) -> Vec<u8> {
    serde_json::to_vec(&OutResponse {
        kind,
        request_id,
        body,
        uid,
    })
    .unwrap_or_default()
}

/// `{sockets: [...]}`, `{rooms: [...]}` and the other bodies.
#[derive(Serialize)]
pub struct SocketIds<'a> {
    pub sockets: Vec<&'a str>,
}

#[derive(Serialize)]
pub struct Rooms<'a> {
    pub rooms: Vec<&'a str>,
}

#[derive(Serialize)]
pub struct Fetched {
    pub sockets: Vec<FetchedSocket>,
}

/// A socket as REMOTE_FETCH describes it (Node's `RemoteSocket` details).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchedSocket {
    pub id: String,
    pub handshake: serde_json::Value,
    pub rooms: Vec<String>,
    pub data: serde_json::Value,
}

#[derive(Serialize)]
pub struct Nothing {}

#[derive(Serialize)]
pub struct Acked<'a> {
    pub data: &'a RawValue,
}

#[derive(Serialize)]
pub struct ClientCount {
    #[serde(rename = "clientCount")]
    pub client_count: usize,
}

/// BROADCAST_ACK in MessagePack, `{type, requestId, packet}`: a client's
/// ack, its first argument as the value (what the Node adapter relays).
pub fn broadcast_ack(request_id: &str, args: &Args) -> Vec<u8> {
    let mut w = Writer::with_capacity(32 + args.byte_len());
    w.map(3);
    w.str("type");
    w.uint(kind::BROADCAST_ACK);
    w.str("requestId");
    w.str(request_id);
    w.str("packet");
    match first_arg(args) {
        Some(first) => wire::write_json_value(&mut w, &first, args.attachments()),
        // `undefined`, as an ack without arguments gives.
        None => w.nil(),
    }
    w.buf
}

/// The first argument's JSON text.
pub(crate) fn first_arg(args: &Args) -> Option<String> {
    if args.is_empty() {
        return None;
    }
    let text = args.to_json_array();
    let all: Vec<&RawValue> = serde_json::from_str(&text).ok()?;
    all.first().map(|v| v.get().to_owned())
}

#[cfg(test)]
mod tests;
