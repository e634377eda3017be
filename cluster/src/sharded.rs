//! The sharded bus's wire format: what `@socket.io/redis-adapter` 8.x's
//! `createShardedAdapter` (socket.io-adapter 2.5's `ClusterAdapter`)
//! sends with Redis 7's SPUBLISH, byte for byte for what Switchboard sends.
//!
//! - Every message is `{type, data, uid, nsp}`, `type` one of [`kind`]:
//!   broadcasts, requests and answers share the format.
//! - It is JSON, or MessagePack (notepack) when its data holds binary
//!   (the Node adapter checks only broadcasts, their acks, fetched sockets
//!   and server-side emits and their answers); a reader tells them by the
//!   first byte (`{`).
//! - A node SSUBSCRIBEs `<prefix>#<nsp>#` (everything but answers) and
//!   `<prefix>#<nsp>#<uid>#` (the answers to its own requests); in dynamic
//!   mode also `<prefix>#<nsp>#<room>#` for each public room it has a
//!   socket in, and a broadcast without ack to exactly one room that does
//!   not look like a socket id (20 UTF-16 units) goes on that channel.
//! - How many nodes a request reaches is what SPUBLISH returns on
//!   `<prefix>#<nsp>#` (the Node adapter asks `PUBSUB SHARDNUMSUB`).
//!
//! The broadcast's packet carries no `nsp` (the message does). What a Node
//! node sends is read into the same [`Inbound`], [`Request`] and
//! [`Response`] as the classic format, so one code serves both.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use socketio::{Args, BroadcastOptions};

use crate::msgpack::{self, Value, Writer};
use crate::request::{self, FetchedSocket, Request, RequestBody, Response, Target};
use crate::wire::{self, Inbound, Outbound, WireError};

/// The message types, numbered as socket.io-adapter's `MessageType`.
pub mod kind {
    pub const INITIAL_HEARTBEAT: u64 = 1;
    pub const HEARTBEAT: u64 = 2;
    pub const BROADCAST: u64 = 3;
    pub const SOCKETS_JOIN: u64 = 4;
    pub const SOCKETS_LEAVE: u64 = 5;
    pub const DISCONNECT_SOCKETS: u64 = 6;
    pub const FETCH_SOCKETS: u64 = 7;
    pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
    pub const SERVER_SIDE_EMIT: u64 = 9;
    pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    pub const BROADCAST_CLIENT_COUNT: u64 = 11;
    pub const BROADCAST_ACK: u64 = 12;
    pub const ADAPTER_CLOSE: u64 = 13;
}

/// `<prefix>#<nsp>#`: the namespace's channel.
pub fn channel_of(prefix: &str, nsp: &str) -> String {
    wire::channel_of(prefix, nsp)
}

/// `<prefix>#<nsp>#<uid>#`: the answers to node `uid`'s requests.
pub fn response_channel(prefix: &str, nsp: &str, uid: &str) -> String {
    format!("{prefix}#{nsp}#{uid}#")
}

/// `<prefix>#<nsp>#<room>#`: a room's channel, in dynamic mode.
pub fn room_channel(prefix: &str, nsp: &str, room: &str) -> String {
    format!("{prefix}#{nsp}#{room}#")
}

/// The Node adapter's `looksLikeASocketId`: 20 characters as JavaScript
/// counts them (UTF-16 units).
pub fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

/// The channel a broadcast (without ack) goes on: its room's in dynamic
/// mode when it names exactly one that does not look like a socket id,
/// the namespace's otherwise.
pub fn broadcast_channel(prefix: &str, message: &Outbound, dynamic: bool) -> String {
    match message.rooms.as_slice() {
        [room] if dynamic && !looks_like_a_socket_id(room) => {
            room_channel(prefix, &message.nsp, room)
        }
        _ => channel_of(prefix, &message.nsp),
    }
}

/// A broadcast, `{type: 3, data: {packet: {type: 2, data}, opts}, uid,
/// nsp}`: JSON, or MessagePack when it has binary arguments.
pub fn encode_broadcast(message: &Outbound, uid: &str) -> Vec<u8> {
    if message.args.attachments().is_empty() {
        return broadcast_json(message, uid).into_bytes();
    }
    let mut w = Writer::with_capacity(96 + message.byte_len());
    w.map(4);
    w.str("type");
    w.uint(kind::BROADCAST);
    w.str("data");
    w.map(2);
    w.str("packet");
    w.map(2);
    w.str("type");
    w.uint(2);
    w.str("data");
    wire::write_data(&mut w, &message.event, &message.args);
    w.str("opts");
    message.write_opts(&mut w);
    w.str("uid");
    w.str(uid);
    w.str("nsp");
    w.str(&message.nsp);
    w.buf
}

/// The JSON form, written directly: the arguments are JSON text already.
fn broadcast_json(message: &Outbound, uid: &str) -> String {
    let mut out = String::with_capacity(128 + message.byte_len());
    out.push_str(r#"{"type":3,"data":{"packet":{"type":2,"data":"#);
    out.push_str(&request::event_array(&message.event, &message.args));
    out.push_str(r#"},"opts":{"rooms":"#);
    json_list(&mut out, &message.rooms);
    out.push_str(r#","except":"#);
    json_list(&mut out, &message.except);
    out.push_str(if message.volatile {
        r#","flags":{"volatile":true}}},"uid":"#
    } else {
        r#","flags":{}}},"uid":"#
    });
    json_str(&mut out, uid);
    out.push_str(r#","nsp":"#);
    json_str(&mut out, &message.nsp);
    out.push('}');
    out
}

fn json_list(out: &mut String, items: &[socketio::Room]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, item);
    }
    out.push(']');
}

fn json_str(out: &mut String, s: &str) {
    // Serializing a str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// `{type, data, uid, nsp}`, in that order.
#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: u64,
    data: D,
    uid: &'a str,
    nsp: &'a str,
}

impl<D: Serialize> Envelope<'_, D> {
    fn json(&self) -> Vec<u8> {
        // Strings, numbers and raw JSON: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `{rooms, except, flags}`, as `encodeOptions` writes it.
#[derive(Serialize)]
struct Opts<'a> {
    rooms: Vec<&'a str>,
    except: Vec<&'a str>,
    flags: Empty,
}

#[derive(Serialize)]
struct Empty {}

impl<'a> Opts<'a> {
    fn of(opts: &'a BroadcastOptions) -> Opts<'a> {
        Opts {
            rooms: opts.rooms.iter().map(|r| &**r).collect(),
            except: (opts.except_socket.iter().map(|id| id.as_str()))
                .chain(opts.except.iter().map(|r| &**r))
                .collect(),
            flags: Empty {},
        }
    }
}

/// SOCKETS_JOIN (`join`) or SOCKETS_LEAVE of `rooms`, for the sockets
/// `opts` reaches.
pub fn membership(
    uid: &str,
    nsp: &str,
    join: bool,
    opts: &BroadcastOptions,
    rooms: &[socketio::Room],
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Data<'a> {
        opts: Opts<'a>,
        rooms: Vec<&'a str>,
    }
    Envelope {
        kind: if join {
            kind::SOCKETS_JOIN
        } else {
            kind::SOCKETS_LEAVE
        },
        data: Data {
            opts: Opts::of(opts),
            rooms: rooms.iter().map(|r| &**r).collect(),
        },
        uid,
        nsp,
    }
    .json()
}

/// DISCONNECT_SOCKETS of the sockets `opts` reaches.
pub fn disconnect(uid: &str, nsp: &str, opts: &BroadcastOptions, close: bool) -> Vec<u8> {
    #[derive(Serialize)]
    struct Data<'a> {
        opts: Opts<'a>,
        close: bool,
    }
    Envelope {
        kind: kind::DISCONNECT_SOCKETS,
        data: Data {
            opts: Opts::of(opts),
            close,
        },
        uid,
        nsp,
    }
    .json()
}

/// FETCH_SOCKETS of the sockets `opts` reaches.
pub fn fetch(uid: &str, nsp: &str, request_id: &str, opts: &BroadcastOptions) -> Vec<u8> {
    #[derive(Serialize)]
    struct Data<'a> {
        opts: Opts<'a>,
        #[serde(rename = "requestId")]
        request_id: &'a str,
    }
    Envelope {
        kind: kind::FETCH_SOCKETS,
        data: Data {
            opts: Opts::of(opts),
            request_id,
        },
        uid,
        nsp,
    }
    .json()
}

/// SERVER_SIDE_EMIT of `[event, ...args]`, with `request_id` when the
/// other nodes' acks are awaited.
pub fn server_side_emit(
    uid: &str,
    nsp: &str,
    request_id: Option<&str>,
    event: &str,
    args: &Args,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
        packet: Option<Box<RawValue>>,
    }
    Envelope {
        kind: kind::SERVER_SIDE_EMIT,
        data: Data {
            request_id,
            packet: RawValue::from_string(request::event_array(event, args)).ok(),
        },
        uid,
        nsp,
    }
    .json()
}

/// FETCH_SOCKETS_RESPONSE: this node's sockets.
pub fn fetch_response(
    uid: &str,
    nsp: &str,
    request_id: &str,
    sockets: &[FetchedSocket],
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "requestId")]
        request_id: &'a str,
        sockets: &'a [FetchedSocket],
    }
    Envelope {
        kind: kind::FETCH_SOCKETS_RESPONSE,
        data: Data {
            request_id,
            sockets,
        },
        uid,
        nsp,
    }
    .json()
}

/// SERVER_SIDE_EMIT_RESPONSE: this node's ack, one JSON value.
pub fn server_side_emit_response(
    uid: &str,
    nsp: &str,
    request_id: &str,
    value: &RawValue,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "requestId")]
        request_id: &'a str,
        packet: &'a RawValue,
    }
    Envelope {
        kind: kind::SERVER_SIDE_EMIT_RESPONSE,
        data: Data {
            request_id,
            packet: value,
        },
        uid,
        nsp,
    }
    .json()
}

/// BROADCAST_CLIENT_COUNT: how many clients of this node were asked to ack.
pub fn client_count(uid: &str, nsp: &str, request_id: &str, count: usize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "requestId")]
        request_id: &'a str,
        #[serde(rename = "clientCount")]
        client_count: usize,
    }
    Envelope {
        kind: kind::BROADCAST_CLIENT_COUNT,
        data: Data {
            request_id,
            client_count: count,
        },
        uid,
        nsp,
    }
    .json()
}

/// BROADCAST_ACK: a client's ack, its first argument as the value;
/// MessagePack when it has binary.
pub fn broadcast_ack(uid: &str, nsp: &str, request_id: &str, args: &Args) -> Vec<u8> {
    let first = request::first_arg(args);
    if args.attachments().is_empty() {
        #[derive(Serialize)]
        struct Data<'a> {
            #[serde(rename = "requestId")]
            request_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            packet: Option<Box<RawValue>>,
        }
        return Envelope {
            kind: kind::BROADCAST_ACK,
            data: Data {
                request_id,
                packet: first.and_then(|f| RawValue::from_string(f).ok()),
            },
            uid,
            nsp,
        }
        .json();
    }
    let mut w = Writer::with_capacity(64 + args.byte_len());
    w.map(4);
    w.str("type");
    w.uint(kind::BROADCAST_ACK);
    w.str("data");
    w.map(2);
    w.str("requestId");
    w.str(request_id);
    w.str("packet");
    match first {
        Some(first) => wire::write_json_value(&mut w, &first, args.attachments()),
        None => w.nil(),
    }
    w.str("uid");
    w.str(uid);
    w.str("nsp");
    w.str(nsp);
    w.buf
}

/// A message read from a shard channel.
#[derive(Debug)]
pub enum Message {
    /// This node's own, back from Redis.
    Own,
    /// A heartbeat, a close, or an answer to a kind of request this node
    /// never sends (a broadcast with acks): nothing to do.
    Ignored,
    /// A broadcast to deliver in namespace `nsp`.
    Broadcast { nsp: String, inbound: Inbound },
    /// A request to serve in namespace `nsp`.
    Request { nsp: String, request: Request },
    /// An answer to the request `request_id`.
    Response {
        request_id: String,
        response: Response,
    },
}

/// Reads a message (JSON or MessagePack) of the sharded format; `uid` is
/// this node's.
pub fn decode(message: &Bytes, uid: &str) -> Result<Message, WireError> {
    let converted;
    let bytes = if message.first() == Some(&b'{') {
        let text = std::str::from_utf8(message).map_err(|_| WireError::Shape("not UTF-8"))?;
        converted = Bytes::from(wire::json_to_msgpack(text).ok_or(WireError::Shape("not JSON"))?);
        &converted
    } else {
        message
    };
    let value = msgpack::decode(bytes)?;
    let sender = match value.get("uid") {
        None | Some(Value::Nil | Value::Undefined) => None,
        Some(v) => Some(wire::js_string(v)?),
    };
    if sender.as_deref() == Some(uid) {
        return Ok(Message::Own);
    }
    let nsp = match value.get("nsp") {
        Some(Value::Str(s)) => s.to_string(),
        _ => return Err(WireError::Shape("nsp")),
    };
    let Some(Value::UInt(kind)) = value.get("type") else {
        return Err(WireError::Shape("type"));
    };
    let empty = Value::Map(Vec::new());
    let data = value.get("data").unwrap_or(&empty);
    let request_id = match data.get("requestId") {
        None | Some(Value::Nil | Value::Undefined) => None,
        Some(v) => Some(wire::js_string(v)?),
    };
    let request = |body: RequestBody| Message::Request {
        nsp: nsp.clone(),
        request: Request {
            uid: sender.clone(),
            request_id: request_id.clone(),
            body,
        },
    };
    Ok(match *kind {
        kind::BROADCAST => {
            let packet = data.get("packet").ok_or(WireError::Shape("no packet"))?;
            let opts = data.get("opts").unwrap_or(&empty);
            let Some(inbound) = wire::inbound_or(packet, opts, bytes, &nsp, &nsp)? else {
                return Ok(Message::Ignored);
            };
            if request_id.is_none() {
                return Ok(Message::Broadcast { nsp, inbound });
            }
            request(RequestBody::Broadcast {
                event: inbound.event,
                args: inbound.args,
                opts: inbound.opts,
                timeout: request::ack_timeout(opts),
            })
        }
        kind::SOCKETS_JOIN | kind::SOCKETS_LEAVE => {
            let target = Target::Matching(options(data.get("opts"))?);
            let rooms = wire::rooms(data.get("rooms"))?;
            request(if *kind == kind::SOCKETS_JOIN {
                RequestBody::Join { target, rooms }
            } else {
                RequestBody::Leave { target, rooms }
            })
        }
        kind::DISCONNECT_SOCKETS => request(RequestBody::Disconnect {
            target: Target::Matching(options(data.get("opts"))?),
            close: data.get("close").is_some_and(Value::truthy),
        }),
        kind::FETCH_SOCKETS => request(RequestBody::Fetch {
            opts: options(data.get("opts"))?,
        }),
        kind::SERVER_SIDE_EMIT => {
            let Some(Value::Array(packet)) = data.get("packet") else {
                return Err(WireError::Shape("no packet"));
            };
            let (name, rest) = packet.split_first().ok_or(WireError::Shape("no event"))?;
            let event = name
                .as_str()
                .ok_or(WireError::Shape("event name is not a string"))?
                .to_owned();
            request(RequestBody::ServerSideEmit {
                event,
                args: args_of(rest, bytes)?,
            })
        }
        kind::FETCH_SOCKETS_RESPONSE | kind::SERVER_SIDE_EMIT_RESPONSE => {
            let request_id = request_id.ok_or(WireError::Shape("no requestId"))?;
            let mut response = Response {
                uid: sender,
                ..Response::default()
            };
            if *kind == kind::FETCH_SOCKETS_RESPONSE {
                let Some(Value::Array(sockets)) = data.get("sockets") else {
                    return Err(WireError::Shape("no sockets"));
                };
                let mut listed = Vec::with_capacity(sockets.len());
                for socket in sockets {
                    listed.push(as_json_value(socket, bytes)?);
                }
                response.sockets = Some(listed);
            } else {
                let mut text = String::new();
                match data.get("packet") {
                    Some(packet) => wire::write_json(&mut text, packet, bytes, &mut Vec::new())?,
                    None => text.push_str("null"),
                }
                response.data = RawValue::from_string(text).ok();
            }
            Message::Response {
                request_id,
                response,
            }
        }
        // Heartbeats (ClusterAdapterWithHeartbeat's; the sharded adapter
        // sends none), a closing node, and the answers to broadcasts with
        // acks, which Switchboard does not send.
        kind::INITIAL_HEARTBEAT
        | kind::HEARTBEAT
        | kind::ADAPTER_CLOSE
        | kind::BROADCAST_CLIENT_COUNT
        | kind::BROADCAST_ACK => Message::Ignored,
        other => request(RequestBody::Unknown(other)),
    })
}

/// `{rooms, except}` as a selection; absent = every socket.
fn options(opts: Option<&Value>) -> Result<BroadcastOptions, WireError> {
    Ok(match opts {
        Some(opts) => BroadcastOptions {
            rooms: wire::rooms(opts.get("rooms"))?,
            except: wire::rooms(opts.get("except"))?,
            ..BroadcastOptions::default()
        },
        None => BroadcastOptions::default(),
    })
}

/// Values as event arguments (bins as attachments sharing `message`).
fn args_of(values: &[Value], message: &Bytes) -> Result<Args, WireError> {
    let mut json = String::new();
    let mut attachments = Vec::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        wire::write_json(&mut json, value, message, &mut attachments)?;
    }
    Ok(Args::from_parts(json, attachments))
}

/// A value as `JSON.parse(JSON.stringify(value))` would give it.
fn as_json_value(value: &Value, message: &Bytes) -> Result<serde_json::Value, WireError> {
    let mut text = String::new();
    wire::write_json(&mut text, value, message, &mut Vec::new())?;
    serde_json::from_str(&text).map_err(|_| WireError::Shape("not JSON"))
}

#[cfg(test)]
mod tests;
