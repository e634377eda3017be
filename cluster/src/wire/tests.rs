//! The wire format against bytes the real npm packages produced: each
//! `*_HEX` below is notepack.io 3.0.1's `encode` of the message the Node
//! adapter (`@socket.io/redis-adapter` 8.3's `broadcast`) or the emitter
//! (`@socket.io/redis-emitter` 5.1's `emit`) builds, printed by Node.

use super::*;
use socketio::SocketId;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn args(json: &str, attachments: Vec<Bytes>) -> Args {
    Args::from_parts(json.to_owned(), attachments)
}

fn outbound(nsp: &str, event: &str, args: Args, opts: BroadcastOptions) -> Outbound {
    Outbound::new(Room::from(nsp), event, &args, &opts)
}

fn rooms(names: &[&str]) -> Vec<Room> {
    names.iter().map(|r| Room::from(*r)).collect()
}

/// `io.to("room1").emit("hello", "world", 1, {a: 1.5})` on a Node node.
const ROOM_HEX: &str = "93a641424344454683a47479706502a46461746194a568656c6c6fa5776f726c640181a161cb3ff8000000000000a36e7370a12f83a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380";
/// Two rooms, two excepted, volatile; an object with integer-like keys and
/// numbers of every width, `1.0` among them.
const ORDER_HEX: &str = "93a641424344454683a47479706502a46461746192a2657684a1319501fbcd012cce00011170cf000000012a05f200a132c3a16201a161c0a36e7370a52f6368617483a5726f6f6d7392a27231a27232a665786365707492a6736964313233a178a5666c61677381a8766f6c6174696c65c3";
/// Buffers, nested and as an argument.
const BINARY_HEX: &str = "93a641424344454683a47479706502a46461746193a466696c6582a46e616d65a161a464617461c403010203c40109a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380";
/// The emitter's `emitter.to("user:alice").except("vip").emit("news", "x"×40, "é")`.
const EMITTER_HEX: &str = "93a7656d697474657283a47479706502a46461746193a46e657773d92878787878787878787878787878787878787878787878787878787878787878787878787878787878a2c3a9a36e7370a12f83a5726f6f6d7391aa757365723a616c696365a5666c61677380a665786365707491a3766970";

#[test]
fn a_broadcast_is_published_as_the_node_adapter_publishes_it() {
    let message = outbound(
        "/",
        "hello",
        args(r#""world",1,{"a":1.5}"#, vec![]),
        BroadcastOptions {
            rooms: rooms(&["room1"]),
            ..Default::default()
        },
    );
    assert_eq!(message.encode("ABCDEF"), hex(ROOM_HEX));
    assert_eq!(message.channel("socket.io"), "socket.io#/#room1#");

    let message = outbound(
        "/chat",
        "ev",
        args(
            r#"{"b":1,"2":true,"a":null,"1":[1.0,-5,300,70000,5000000000]}"#,
            vec![],
        ),
        BroadcastOptions {
            rooms: rooms(&["r1", "r2", "r1"]),
            except: rooms(&["sid123", "x", "x"]),
            volatile: true,
            ..Default::default()
        },
    );
    assert_eq!(message.encode("ABCDEF"), hex(ORDER_HEX));
    // Two rooms: the namespace's channel.
    assert_eq!(message.channel("socket.io"), "socket.io#/chat#");

    let message = outbound(
        "/",
        "file",
        args(
            r#"{"name":"a","data":{"_placeholder":true,"num":0}},{"_placeholder":true,"num":1}"#,
            vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[9])],
        ),
        BroadcastOptions::default(),
    );
    assert_eq!(message.encode("ABCDEF"), hex(BINARY_HEX));
    assert_eq!(message.channel("socket.io"), "socket.io#/#");
}

#[test]
fn object_keys_follow_javascripts_order_after_json_parse() {
    // notepack.encode(JSON.parse('{"b":1,"10":2,"a":3,"2":4,"b":5,"01":6}')).
    let mut w = Writer::default();
    let value: Js = serde_json::from_str(r#"{"b":1,"10":2,"a":3,"2":4,"b":5,"01":6}"#).unwrap();
    value.write(&mut w, &[]);
    assert_eq!(w.buf, hex("85a13204a2313002a16205a16103a2303106"));
    assert_eq!(array_index("4294967294"), Some(4_294_967_294));
    assert_eq!(array_index("4294967295"), None);
    assert_eq!(array_index("-1"), None);
}

#[test]
fn the_socket_left_out_is_excepted_first_as_nodes_socket_to_does() {
    // Twenty base64url characters, as Node's `base64id`.
    let id = SocketId::parse("AAAAAAAAAAAAAAAAAAAA").unwrap();
    let message = outbound(
        "/",
        "e",
        Args::new(),
        BroadcastOptions {
            rooms: rooms(&["r"]),
            except: rooms(&["x"]),
            except_socket: Some(id),
            ..Default::default()
        },
    );
    assert_eq!(message.except, rooms(&[id.as_str(), "x"]));
}

fn decoded(bytes: &[u8], uid: &str, nsp: &str) -> Result<Decoded, WireError> {
    decode(&Bytes::copy_from_slice(bytes), uid, nsp)
}

fn broadcast(bytes: &[u8], nsp: &str) -> Inbound {
    match decoded(bytes, "XXXXXX", nsp).unwrap() {
        Decoded::Broadcast(inbound) => inbound,
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_the_emitter_and_node_nodes_publish_is_read_back() {
    let inbound = broadcast(&hex(EMITTER_HEX), "/");
    assert_eq!(inbound.event, "news");
    assert_eq!(inbound.args.raw(), format!(r#""{}","é""#, "x".repeat(40)));
    assert_eq!(inbound.opts.rooms, rooms(&["user:alice"]));
    assert_eq!(inbound.opts.except, rooms(&["vip"]));
    assert!(!inbound.opts.volatile);

    let inbound = broadcast(&hex(ORDER_HEX), "/chat");
    assert_eq!(
        inbound.args.raw(),
        r#"{"1":[1,-5,300,70000,5000000000],"2":true,"b":1,"a":null}"#
    );
    assert!(inbound.opts.volatile);

    let inbound = broadcast(&hex(BINARY_HEX), "/");
    assert_eq!(
        inbound.args.raw(),
        r#"{"name":"a","data":{"_placeholder":true,"num":0}},{"_placeholder":true,"num":1}"#
    );
    assert_eq!(
        inbound.args.attachments(),
        &[Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[9])]
    );
    // And what we publish reads back as itself.
    let again = outbound("/", &inbound.event, inbound.args.clone(), inbound.opts);
    assert_eq!(again.encode("ABCDEF"), hex(BINARY_HEX));
}

#[test]
fn own_and_other_namespaces_messages_are_told_apart() {
    assert!(matches!(
        decoded(&hex(ROOM_HEX), "ABCDEF", "/"),
        Ok(Decoded::Own)
    ));
    assert!(matches!(
        decoded(&hex(ROOM_HEX), "XXXXXX", "/chat"),
        Ok(Decoded::OtherNamespace)
    ));
}

/// A message with `data` and `opts` as given.
fn message(data: impl FnOnce(&mut Writer), opts: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::default();
    w.array(3);
    w.str("emitter");
    w.map(2);
    w.str("type");
    w.uint(2);
    w.str("data");
    data(&mut w);
    opts(&mut w);
    w.buf
}

#[test]
fn values_json_has_no_words_for_come_back_as_json_stringify_writes_them() {
    let bytes = message(
        |w| {
            w.array(6);
            w.str("e");
            w.f64(f64::NAN);
            w.f64(2.0);
            w.f64(0.1);
            // A Date (timestamp 64) and `undefined` in an object.
            w.buf.extend_from_slice(&hex("d7ff1d5353006553f100"));
            w.map(2);
            w.str("gone");
            w.buf.extend_from_slice(&[0xd4, 0, 0]);
            w.uint(7);
            w.str("seven");
        },
        |w| w.nil(),
    );
    // No nsp: "/"; no opts: no rooms.
    let inbound = broadcast(&bytes, "/");
    assert_eq!(
        inbound.args.raw(),
        r#"null,2,0.1,"2023-11-14T22:13:20.123Z",{"7":"seven"}"#
    );
    assert!(inbound.opts.rooms.is_empty());
    assert_eq!(
        iso_date(1000.0).as_deref(),
        Some("1970-01-01T00:00:01.000Z")
    );
    assert_eq!(iso_date(-1.0).as_deref(), Some("1969-12-31T23:59:59.999Z"));
    assert_eq!(iso_date(9e15), None);
}

#[test]
fn malformed_messages_are_errors() {
    let not_event = {
        let mut w = Writer::default();
        w.array(3);
        w.str("emitter");
        w.map(2);
        w.str("type");
        w.uint(3);
        w.str("data");
        w.array(1);
        w.str("e");
        w.map(0);
        w.buf
    };
    let reserved = message(
        |w| {
            w.array(1);
            w.str("connect");
        },
        |w| w.map(0),
    );
    let no_event = message(|w| w.array(0), |w| w.map(0));
    let bad_rooms = message(
        |w| {
            w.array(1);
            w.str("e");
        },
        |w| {
            w.map(1);
            w.str("rooms");
            w.array(1);
            w.bin(&[1]);
        },
    );
    for (bytes, what) in [
        (vec![], "empty"),
        (vec![0x92, 0xa1, b'a', 0xc0], "two elements"),
        (hex("93a6414243444546"), "truncated"),
        (not_event, "an ack"),
        (reserved, "a reserved name"),
        (no_event, "no event"),
        (bad_rooms, "a binary room"),
        (
            {
                let mut b = hex(ROOM_HEX);
                b.push(0);
                b
            },
            "trailing bytes",
        ),
    ] {
        assert!(decoded(&bytes, "XXXXXX", "/").is_err(), "{what}");
    }
}

#[test]
fn a_logged_message_is_the_node_adapters_with_the_offset_after_it() {
    let out = outbound(
        "/chat",
        "news",
        args(r#"{"id":1},"two""#, Vec::new()),
        BroadcastOptions {
            rooms: rooms(&["r"]),
            ..BroadcastOptions::default()
        },
    );
    let uid = format!("node{LOGGED_UID_SUFFIX}");
    let plain = out.encode(&uid);
    let (logged, slot) = out.encode_with_offset_slot(&uid);
    // `[uid, packet, opts]` as the Node adapter publishes it (what a Node
    // node reads: its clients get the arguments emitted, no more), then
    // the offset's slot.
    assert_eq!((plain[0], logged[0]), (0x93, 0x94));
    assert_eq!(&logged[1..plain.len()], &plain[1..]);
    assert_eq!(logged[plain.len()], 0xa0 | OFFSET_DIGITS as u8);
    assert_eq!(slot, plain.len() + 1);
    assert_eq!(&logged[slot..], "0".repeat(OFFSET_DIGITS).as_bytes());

    // With the offset the log's script writes there, a Switchboard node
    // reads the packet as emitted and the offset beside it.
    let mut written = logged.clone();
    written[slot..].copy_from_slice(b"1796660077191000003");
    let inbound = broadcast(&written, "/chat");
    assert_eq!(inbound.args.raw(), r#"{"id":1},"two""#);
    assert_eq!(
        inbound.offset,
        Some(socketio::recovery::Offset(1_796_660_077_191_000_003))
    );
    // A message of another node has none; one that says it is logged
    // must carry it.
    assert_eq!(broadcast(&out.encode("node"), "/chat").offset, None);
    assert!(decoded(&plain, "other", "/chat").is_err());
}
