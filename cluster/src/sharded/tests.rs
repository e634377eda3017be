//! The sharded format against what the real npm packages produced: each
//! constant below is what `@socket.io/redis-adapter` 8.3's
//! `createShardedAdapter` (socket.io 4.8, socket.io-adapter 2.5) handed to
//! `SPUBLISH`, captured by Node with a stand-in Redis client, its uid set
//! to `0123456789abcdef`.

use super::*;
use socketio::Room;

const UID: &str = "0123456789abcdef";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn rooms(names: &[&str]) -> Vec<Room> {
    names.iter().map(|r| Room::from(*r)).collect()
}

fn outbound(nsp: &str, event: &str, args: Args, opts: BroadcastOptions) -> Outbound {
    Outbound::new(Room::from(nsp), event, &args, &opts)
}

fn text(json: &str) -> Args {
    Args::from_parts(json.to_owned(), vec![])
}

/// `io.emit("hello", "world", 1, {a: 1.5})`.
const EMIT: &str = r#"{"type":3,"data":{"packet":{"type":2,"data":["hello","world",1,{"a":1.5}]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/"}"#;
/// `io.to("room1").emit(…)`, on `socket.io#/#room1#` in dynamic mode.
const ROOM: &str = r#"{"type":3,"data":{"packet":{"type":2,"data":["hello","world",1,{"a":1.5}]},"opts":{"rooms":["room1"],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/"}"#;
/// `io.of("/chat").to(["r1","r2"]).except(["x"]).volatile.emit("ev", {b: 1})`.
const VOLATILE: &str = r#"{"type":3,"data":{"packet":{"type":2,"data":["ev",{"b":1}]},"opts":{"rooms":["r1","r2"],"except":["x"],"flags":{"volatile":true}}},"uid":"0123456789abcdef","nsp":"/chat"}"#;
/// `io.emit("file", {name: "a", data: Buffer.from([1,2,3])}, Buffer.from([9]))`: MessagePack.
const BINARY_HEX: &str = "84a47479706503a46461746182a67061636b657482a47479706502a46461746193a466696c6582a46e616d65a161a464617461c403010203c40109a46f70747383a5726f6f6d7390a665786365707490a5666c61677380a3756964b030313233343536373839616263646566a36e7370a12f";
const JOIN: &str = r#"{"type":4,"data":{"opts":{"rooms":["room1"],"except":[],"flags":{}},"rooms":["j1","j2"]},"uid":"0123456789abcdef","nsp":"/"}"#;
const LEAVE: &str = r#"{"type":5,"data":{"opts":{"rooms":["room1"],"except":["x"],"flags":{}},"rooms":["j1"]},"uid":"0123456789abcdef","nsp":"/"}"#;
const DISCONNECT: &str = r#"{"type":6,"data":{"opts":{"rooms":["room1"],"except":[],"flags":{}},"close":true},"uid":"0123456789abcdef","nsp":"/"}"#;
const SERVER_SIDE: &str =
    r#"{"type":9,"data":{"packet":["ping",1,"two"]},"uid":"0123456789abcdef","nsp":"/"}"#;
const SERVER_SIDE_ACK: &str = r#"{"type":9,"data":{"requestId":"c94d155ce978e128","packet":["ask",3]},"uid":"0123456789abcdef","nsp":"/"}"#;
const FETCH: &str = r#"{"type":7,"data":{"opts":{"rooms":["room1"],"except":[],"flags":{}},"requestId":"655e7718ff8d368c"},"uid":"0123456789abcdef","nsp":"/"}"#;
const FETCHED: &str = r#"{"type":8,"data":{"requestId":"req1","sockets":[{"id":"s1","handshake":{"url":"/"},"rooms":["s1","r"],"data":{"user":"u"}}]},"uid":"0123456789abcdef","nsp":"/"}"#;
const SERVER_SIDE_ANSWER: &str =
    r#"{"type":10,"data":{"requestId":"req2","packet":"pong"},"uid":"0123456789abcdef","nsp":"/"}"#;
const CLIENT_COUNT: &str =
    r#"{"type":11,"data":{"requestId":"req3","clientCount":2},"uid":"0123456789abcdef","nsp":"/"}"#;
const ACK: &str =
    r#"{"type":12,"data":{"requestId":"req3","packet":"ok"},"uid":"0123456789abcdef","nsp":"/"}"#;
/// `io.timeout(1000).emit("withack", 1, cb)`: a BROADCAST with a requestId.
const WITH_ACK: &str = r#"{"type":3,"data":{"packet":{"type":2,"data":["withack",1]},"requestId":"2dbe9119f83e7022","opts":{"rooms":[],"except":[],"flags":{"timeout":1000}}},"uid":"0123456789abcdef","nsp":"/"}"#;

#[test]
fn broadcasts_are_published_as_the_sharded_adapter_publishes_them() {
    let all = outbound(
        "/",
        "hello",
        text(r#""world",1,{"a":1.5}"#),
        Default::default(),
    );
    assert_eq!(
        String::from_utf8(encode_broadcast(&all, UID)).unwrap(),
        EMIT
    );
    assert_eq!(broadcast_channel("socket.io", &all, true), "socket.io#/#");

    let room = outbound(
        "/",
        "hello",
        text(r#""world",1,{"a":1.5}"#),
        BroadcastOptions {
            rooms: rooms(&["room1"]),
            ..Default::default()
        },
    );
    assert_eq!(
        String::from_utf8(encode_broadcast(&room, UID)).unwrap(),
        ROOM
    );
    assert_eq!(
        broadcast_channel("socket.io", &room, true),
        "socket.io#/#room1#"
    );
    assert_eq!(broadcast_channel("socket.io", &room, false), "socket.io#/#");

    // A socket id as the one room: the namespace's channel, as Node's
    // `looksLikeASocketId`.
    let direct = outbound(
        "/",
        "direct",
        text("2"),
        BroadcastOptions {
            rooms: rooms(&["abcdefghijklmnopqrst"]),
            ..Default::default()
        },
    );
    assert_eq!(
        broadcast_channel("socket.io", &direct, true),
        "socket.io#/#"
    );

    let volatile = outbound(
        "/chat",
        "ev",
        text(r#"{"b":1}"#),
        BroadcastOptions {
            rooms: rooms(&["r1", "r2"]),
            except: rooms(&["x"]),
            volatile: true,
            ..Default::default()
        },
    );
    assert_eq!(
        String::from_utf8(encode_broadcast(&volatile, UID)).unwrap(),
        VOLATILE
    );
    assert_eq!(
        broadcast_channel("socket.io", &volatile, true),
        "socket.io#/chat#"
    );

    let binary = outbound(
        "/",
        "file",
        Args::from_parts(
            r#"{"name":"a","data":{"_placeholder":true,"num":0}},{"_placeholder":true,"num":1}"#
                .to_owned(),
            vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[9])],
        ),
        Default::default(),
    );
    assert_eq!(encode_broadcast(&binary, UID), hex(BINARY_HEX));
}

#[test]
fn requests_and_answers_are_published_as_the_cluster_adapter_publishes_them() {
    let room1 = BroadcastOptions {
        rooms: rooms(&["room1"]),
        ..Default::default()
    };
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    assert_eq!(
        text(membership(UID, "/", true, &room1, &rooms(&["j1", "j2"]))),
        JOIN
    );
    let except = BroadcastOptions {
        except: rooms(&["x"]),
        ..room1.clone()
    };
    assert_eq!(
        text(membership(UID, "/", false, &except, &rooms(&["j1"]))),
        LEAVE
    );
    assert_eq!(text(disconnect(UID, "/", &room1, true)), DISCONNECT);
    assert_eq!(text(fetch(UID, "/", "655e7718ff8d368c", &room1)), FETCH);
    let args = Args::from_parts(r#"1,"two""#.to_owned(), vec![]);
    assert_eq!(
        text(server_side_emit(UID, "/", None, "ping", &args)),
        SERVER_SIDE
    );
    let args = Args::from_parts("3".to_owned(), vec![]);
    assert_eq!(
        text(server_side_emit(
            UID,
            "/",
            Some("c94d155ce978e128"),
            "ask",
            &args
        )),
        SERVER_SIDE_ACK
    );
    let socket = FetchedSocket {
        id: "s1".into(),
        handshake: serde_json::json!({"url": "/"}),
        rooms: vec!["s1".into(), "r".into()],
        data: serde_json::json!({"user": "u"}),
    };
    assert_eq!(text(fetch_response(UID, "/", "req1", &[socket])), FETCHED);
    let pong = RawValue::from_string(r#""pong""#.into()).unwrap();
    assert_eq!(
        text(server_side_emit_response(UID, "/", "req2", &pong)),
        SERVER_SIDE_ANSWER
    );
    assert_eq!(text(client_count(UID, "/", "req3", 2)), CLIENT_COUNT);
    let ok = Args::from_parts(r#""ok""#.to_owned(), vec![]);
    assert_eq!(text(broadcast_ack(UID, "/", "req3", &ok)), ACK);
}

#[test]
fn what_a_node_node_sends_is_read() {
    let me = "ffffffffffffffff";
    let read = |message: &[u8]| decode(&Bytes::copy_from_slice(message), me).unwrap();

    let Message::Broadcast { nsp, inbound } = read(ROOM.as_bytes()) else {
        panic!("not a broadcast")
    };
    assert_eq!(nsp, "/");
    assert_eq!(inbound.event, "hello");
    assert_eq!(inbound.args.raw(), r#""world",1,{"a":1.5}"#);
    assert_eq!(inbound.opts.rooms, rooms(&["room1"]));

    // The packet names no namespace: the message's is taken.
    let Message::Broadcast { nsp, inbound } = read(VOLATILE.as_bytes()) else {
        panic!("not a broadcast")
    };
    assert_eq!(nsp, "/chat");
    assert!(inbound.opts.volatile);
    assert_eq!(inbound.opts.except, rooms(&["x"]));

    let Message::Broadcast { inbound, .. } = read(&hex(BINARY_HEX)) else {
        panic!("not a broadcast")
    };
    assert_eq!(
        inbound.args.raw(),
        r#"{"name":"a","data":{"_placeholder":true,"num":0}},{"_placeholder":true,"num":1}"#
    );
    assert_eq!(inbound.args.attachments(), &[&[1u8, 2, 3][..], &[9][..]]);

    let Message::Request { request, .. } = read(JOIN.as_bytes()) else {
        panic!("not a request")
    };
    assert_eq!(request.uid.as_deref(), Some(UID));
    let RequestBody::Join {
        target: Target::Matching(opts),
        rooms: joined,
    } = request.body
    else {
        panic!("not a join")
    };
    assert_eq!(opts.rooms, rooms(&["room1"]));
    assert_eq!(joined, rooms(&["j1", "j2"]));

    let Message::Request { request, .. } = read(DISCONNECT.as_bytes()) else {
        panic!("not a request")
    };
    assert!(matches!(
        request.body,
        RequestBody::Disconnect { close: true, .. }
    ));

    let Message::Request { request, .. } = read(FETCH.as_bytes()) else {
        panic!("not a request")
    };
    assert_eq!(request.request_id.as_deref(), Some("655e7718ff8d368c"));
    assert!(matches!(request.body, RequestBody::Fetch { .. }));

    let Message::Request { request, .. } = read(SERVER_SIDE_ACK.as_bytes()) else {
        panic!("not a request")
    };
    let RequestBody::ServerSideEmit { event, args } = request.body else {
        panic!("not a server-side emit")
    };
    assert_eq!((event.as_str(), args.raw()), ("ask", "3"));

    let Message::Request { request, .. } = read(WITH_ACK.as_bytes()) else {
        panic!("not a request")
    };
    let RequestBody::Broadcast { event, timeout, .. } = request.body else {
        panic!("not a broadcast with acks")
    };
    assert_eq!((event.as_str(), timeout.as_millis()), ("withack", 1000));

    let Message::Response {
        request_id,
        response,
    } = read(FETCHED.as_bytes())
    else {
        panic!("not a response")
    };
    assert_eq!(request_id, "req1");
    assert_eq!(response.uid.as_deref(), Some(UID));
    assert_eq!(response.sockets.unwrap()[0]["data"]["user"], "u");

    let Message::Response { response, .. } = read(SERVER_SIDE_ANSWER.as_bytes()) else {
        panic!("not a response")
    };
    assert_eq!(response.data.unwrap().get(), r#""pong""#);

    assert!(matches!(read(CLIENT_COUNT.as_bytes()), Message::Ignored));
    // Its own, by its uid.
    assert!(matches!(
        decode(&Bytes::from_static(EMIT.as_bytes()), UID).unwrap(),
        Message::Own
    ));
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    for bad in [
        &b"{"[..],
        b"{\"type\":3}",
        b"{\"type\":3,\"nsp\":\"/\"}",
        b"{\"type\":\"x\",\"nsp\":\"/\"}",
        b"{\"type\":9,\"nsp\":\"/\",\"data\":{\"packet\":[]}}",
        b"{\"type\":8,\"nsp\":\"/\",\"data\":{}}",
        b"\xc1",
        b"",
    ] {
        assert!(
            decode(&Bytes::copy_from_slice(bad), "me").is_err(),
            "{bad:?}"
        );
    }
}

/// A stand-in for a Redis 6 on loopback: `+OK` to every command but
/// `PUBSUB SHARDNUMSUB`, which it does not know (as Redis 6 answers).
async fn redis_6() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    // One reply per command (each starts with `*`).
                    let mut reply = String::new();
                    for command in text.split('*').filter(|c| !c.is_empty()) {
                        reply.push_str(if command.contains("SHARDNUMSUB") {
                            "-ERR unknown subcommand 'SHARDNUMSUB'. Try PUBSUB HELP.\r\n"
                        } else {
                            "+OK\r\n"
                        });
                    }
                    if conn.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn sharded_mode_on_a_redis_before_7_is_refused_with_a_clear_message() {
    let addr = redis_6().await;
    let mut config = crate::ClusterConfig::new(format!("redis://{addr}"));
    config.pubsub = crate::config::PubSub::Sharded;
    let cluster = crate::Cluster::start(config.clone()).unwrap();
    let err = cluster.check_server().await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("needs Redis 7.0 or later"), "{message}");
    assert!(message.contains("unknown subcommand"), "{message}");
    cluster.close(std::time::Duration::ZERO).await;

    // Classic mode asks nothing of it.
    config.pubsub = crate::config::PubSub::Classic;
    let cluster = crate::Cluster::start(config).unwrap();
    assert!(cluster.check_server().await.is_ok());
    cluster.close(std::time::Duration::ZERO).await;
}
