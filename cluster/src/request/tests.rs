//! Requests and answers against what the npm packages send: the JSON
//! below is what `@socket.io/redis-emitter` 5.1 and
//! `@socket.io/redis-adapter` 8.3 `JSON.stringify`, the hex notepack.io
//! 3.0.1's `encode` of the objects they build, printed by Node.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn parse(json: &str) -> Request {
    parse_request(&Bytes::from(json.to_owned()), "/").unwrap()
}

fn names(rooms: &[Room]) -> Vec<&str> {
    rooms.iter().map(|r| &**r).collect()
}

/// `io.to("r1").timeout(1500).emit("ask", 1, {b: Buffer.from([7, 8])}, cb)`
/// on a Node node: the BROADCAST request its adapter publishes.
const BROADCAST_HEX: &str = "85a3756964a64e4f44453031a9726571756573744964a6524551303031a47479706507a67061636b657483a47479706502a46461746193a361736b0181a162c4020708a36e7370a12fa46f70747383a5726f6f6d7391a27231a665786365707490a5666c61677381a774696d656f7574cd05dc";
/// `{type: 9, requestId: "REQ001", packet: {ok: true, n: 2.5}}`.
const ACK_HEX: &str = "83a47479706509a9726571756573744964a6524551303031a67061636b657482a26f6bc3a16ecb4004000000000000";
/// The same with a Buffer `[1, 2]` as the ack.
const BINARY_ACK_HEX: &str =
    "83a47479706509a9726571756573744964a6524551303031a67061636b6574c4020102";

#[test]
fn the_emitters_requests_are_read() {
    // emitter.to("r1").except("r2").socketsJoin(["a", "b"])
    let r = parse(r#"{"type":2,"opts":{"rooms":["r1"],"except":["r2"]},"rooms":["a","b"]}"#);
    assert_eq!((r.uid, r.request_id), (None, None));
    let RequestBody::Join {
        target: Target::Matching(opts),
        rooms,
    } = r.body
    else {
        panic!("{:?}", r.body)
    };
    assert_eq!(
        (names(&opts.rooms), names(&opts.except)),
        (vec!["r1"], vec!["r2"])
    );
    assert_eq!(names(&rooms), ["a", "b"]);

    // emitter.socketsLeave("a"): JavaScript rooms may be numbers.
    let r = parse(r#"{"type":3,"opts":{"rooms":[],"except":[]},"rooms":["a",7]}"#);
    let RequestBody::Leave { rooms, .. } = r.body else {
        panic!()
    };
    assert_eq!(names(&rooms), ["a", "7"]);

    // emitter.in("r1").disconnectSockets(true)
    let r = parse(r#"{"type":4,"opts":{"rooms":["r1"],"except":[]},"close":true}"#);
    assert!(matches!(
        r.body,
        RequestBody::Disconnect {
            target: Target::Matching(_),
            close: true
        }
    ));

    // emitter.serverSideEmit("hello", {a: [1]}, "x")
    let r = parse(r#"{"uid":"emitter","type":6,"data":["hello",{"a":[1]},"x"]}"#);
    let RequestBody::ServerSideEmit { event, args } = r.body else {
        panic!()
    };
    assert_eq!((event.as_str(), args.raw()), ("hello", r#"{"a":[1]},"x""#));
}

#[test]
fn the_node_adapters_requests_are_read() {
    // fetchSockets() on io.in("r1").except("r2")
    let r = parse(
        r#"{"uid":"NODE01","requestId":"REQ001","type":5,"opts":{"rooms":["r1"],"except":["r2"]}}"#,
    );
    assert_eq!(r.uid.as_deref(), Some("NODE01"));
    assert_eq!(r.request_id.as_deref(), Some("REQ001"));
    let RequestBody::Fetch { opts } = r.body else {
        panic!()
    };
    assert_eq!(names(&opts.rooms), ["r1"]);
    assert_eq!(names(&opts.except), ["r2"]);

    let r = parse(r#"{"uid":"NODE01","requestId":"REQ002","type":1}"#);
    assert!(matches!(r.body, RequestBody::AllRooms));
    let r = parse(r#"{"uid":"NODE01","requestId":"REQ003","type":0,"rooms":["r1"]}"#);
    assert!(matches!(r.body, RequestBody::Sockets { rooms } if names(&rooms) == ["r1"]));

    // The one-socket forms of older adapters.
    let r = parse(r#"{"uid":"NODE01","requestId":"R","type":2,"sid":"abc","room":"r9"}"#);
    let RequestBody::Join {
        target: Target::Socket(sid),
        rooms,
    } = r.body
    else {
        panic!()
    };
    assert_eq!((sid.as_str(), names(&rooms)), ("abc", vec!["r9"]));

    // A type of a later version is left alone, not an error.
    assert!(matches!(
        parse(r#"{"uid":"N","type":42}"#).body,
        RequestBody::Unknown(42)
    ));
}

#[test]
fn a_broadcast_with_acks_is_read_from_messagepack_buffers_and_timeout_included() {
    let message = Bytes::from(hex(BROADCAST_HEX));
    let r = parse_request(&message, "/").unwrap();
    assert_eq!(r.uid.as_deref(), Some("NODE01"));
    assert_eq!(r.request_id.as_deref(), Some("REQ001"));
    let RequestBody::Broadcast {
        event,
        args,
        opts,
        timeout,
    } = r.body
    else {
        panic!()
    };
    assert_eq!(event, "ask");
    assert_eq!(args.raw(), r#"1,{"b":{"_placeholder":true,"num":0}}"#);
    assert_eq!(&args.attachments()[0][..], [7, 8]);
    assert_eq!(names(&opts.rooms), ["r1"]);
    assert_eq!(timeout, Duration::from_millis(1500));
    // For another namespace it is refused, not delivered.
    assert!(parse_request(&message, "/chat").is_err());
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    for bad in [
        &b"{"[..],
        b"{\"type\":\"x\"}",
        b"{\"type\":6,\"data\":[]}",
        b"{\"type\":6,\"data\":[1]}",
        b"{\"type\":2,\"rooms\":[\"a\"]}",
        b"{\"type\":7}",
        b"\xc1",
        b"\x81\xa4type\x07",
        b"",
    ] {
        assert!(
            parse_request(&Bytes::from_static(bad), "/").is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn answers_are_what_the_node_adapter_reads() {
    let ids = response(
        None,
        "REQ001",
        "SB0001",
        SocketIds {
            sockets: vec!["a", "b"],
        },
    );
    assert_eq!(
        String::from_utf8(ids).unwrap(),
        r#"{"requestId":"REQ001","sockets":["a","b"],"uid":"SB0001"}"#
    );
    let count = response(
        Some(kind::BROADCAST_CLIENT_COUNT),
        "REQ001",
        "SB0001",
        ClientCount { client_count: 3 },
    );
    assert_eq!(
        String::from_utf8(count).unwrap(),
        r#"{"type":8,"requestId":"REQ001","clientCount":3,"uid":"SB0001"}"#
    );
    // A client's ack, its first argument as notepack writes it.
    let ack = broadcast_ack(
        "REQ001",
        &Args::from_parts(r#"{"ok":true,"n":2.5},"ignored""#.into(), vec![]),
    );
    assert_eq!(ack, hex(ACK_HEX));
    let ack = broadcast_ack(
        "REQ001",
        &Args::from_parts(
            r#"{"_placeholder":true,"num":0}"#.into(),
            vec![Bytes::from_static(&[1, 2])],
        ),
    );
    assert_eq!(ack, hex(BINARY_ACK_HEX));
}

#[test]
fn requests_are_what_the_node_adapter_sends() {
    let opts = BroadcastOptions {
        rooms: vec![Room::from("r1")],
        except: vec![Room::from("r2")],
        ..Default::default()
    };
    let text = |v: Vec<u8>| String::from_utf8(v).unwrap();
    assert_eq!(
        text(fetch_request("SB0001", "REQ", &opts)),
        r#"{"uid":"SB0001","requestId":"REQ","type":5,"opts":{"rooms":["r1"],"except":["r2"]}}"#
    );
    assert_eq!(
        text(all_rooms_request("SB0001", "REQ")),
        r#"{"uid":"SB0001","requestId":"REQ","type":1}"#
    );
    assert_eq!(
        text(membership_request(
            "SB0001",
            true,
            &opts,
            &[Room::from("x")]
        )),
        r#"{"uid":"SB0001","type":2,"opts":{"rooms":["r1"],"except":["r2"]},"rooms":["x"]}"#
    );
    assert_eq!(
        text(disconnect_request("SB0001", &opts, true)),
        r#"{"uid":"SB0001","type":4,"opts":{"rooms":["r1"],"except":["r2"]},"close":true}"#
    );
    assert_eq!(
        text(server_side_emit_request(
            "SB0001",
            None,
            "ping",
            &Args::from_parts(r#"1,{"a":"b"}"#.into(), vec![])
        )),
        r#"{"uid":"SB0001","type":6,"data":["ping",1,{"a":"b"}]}"#
    );
}

#[test]
fn an_answers_id_is_read_without_the_rest() {
    let json = Bytes::from_static(br#"{"requestId":"R1","sockets":[{"id":"x"}]}"#);
    assert_eq!(response_id(&json).as_deref(), Some("R1"));
    assert_eq!(
        response_id(&Bytes::from(hex(ACK_HEX))).as_deref(),
        Some("REQ001")
    );
    assert_eq!(response_id(&Bytes::from_static(b"{}")), None);
    let parsed = parse_response(&json).unwrap();
    assert_eq!(parsed.sockets.unwrap().len(), 1);
}
