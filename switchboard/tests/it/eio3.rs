//! Engine.IO v3 clients (socket.io 1.x/2.x, python-socketio 4), served
//! beside v4 ones when `engine.allow_eio3` is on, spoken frame by frame as
//! those clients speak it: the handshake matrix, the length-prefixed
//! polling payloads (text and XHR2 binary), the client-driven heartbeat,
//! namespaces with their credentials in the name's query, refusals, and
//! binary over both transports. Real old clients are in `tests/interop`.

use bytes::Bytes;
use engineio::packet::v3;
use engineio::{Message as EioMessage, Packet};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

const ON: &str = "[engine]\nallow_eio3 = true";

/// `packets` as one v3 text payload: each `<UTF-16 length>:<packet>`.
fn payload(packets: &[&str]) -> String {
    packets
        .iter()
        .map(|p| format!("{}:{p}", p.encode_utf16().count()))
        .collect()
}

/// A v3 long-polling client.
struct Poller {
    addr: SocketAddr,
    sid: String,
}

impl Poller {
    /// The handshake GET, `query` appended: checks the open packet's
    /// framing (`NN:0{…}`) and returns its JSON.
    async fn open(addr: SocketAddr, query: &str) -> (Poller, serde_json::Value) {
        let path = format!("/socket.io/?EIO=3&transport=polling{query}");
        let response = http_raw(addr, "GET", &path, &[], b"").await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=UTF-8")
        );
        let body = response.text();
        let (len, open) = body.split_once(':').expect("a length-prefixed payload");
        assert_eq!(len.parse::<usize>().unwrap(), open.encode_utf16().count());
        let json: serde_json::Value =
            serde_json::from_str(open.strip_prefix('0').expect("the open packet")).unwrap();
        let sid = json["sid"].as_str().unwrap().to_owned();
        (Poller { addr, sid }, json)
    }

    fn path(&self) -> String {
        format!("/socket.io/?EIO=3&transport=polling&sid={}", self.sid)
    }

    async fn get(&self) -> RawResponse {
        let response = http_raw(self.addr, "GET", &self.path(), &[], b"").await;
        assert_eq!(response.status, 200, "{}", response.text());
        response
    }

    /// A GET's body as text (a text payload).
    async fn get_text(&self) -> String {
        let response = self.get().await;
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=UTF-8")
        );
        response.text()
    }

    async fn post_raw(&self, content_type: &str, body: &[u8]) -> RawResponse {
        let headers = [("Content-Type", content_type)];
        http_raw(self.addr, "POST", &self.path(), &headers, body).await
    }

    async fn post(&self, packets: &[&str]) {
        let body = payload(packets);
        let response = self
            .post_raw("text/plain;charset=UTF-8", body.as_bytes())
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text(), "ok");
    }
}

#[tokio::test]
async fn eio3_is_refused_with_the_flag_off() {
    let server = start("").await;
    for path in [
        "/socket.io/?EIO=3&transport=polling",
        "/socket.io/?transport=polling",
        "/socket.io/?EIO=3&transport=polling&b64=1",
        "/socket.io/?EIO=3&transport=polling&j=0",
    ] {
        let response = http(server.addr, "GET", path, &[], "").await;
        assert_eq!((response.status, error_code(&response)), (400, 5), "{path}");
    }
}

/// The handshake and a session as socket.io-client 2.x has it over
/// polling: the open packet alone, then the implicit CONNECT to `/`; the
/// client pings, the server answers; namespaces joined with their query.
#[tokio::test]
async fn eio3_polling_session_connects_pings_and_joins_namespaces() {
    let server = start(ON).await;
    // A missing `EIO` is v3 too, as with the reference.
    for query in ["", "&b64=1"] {
        let path = format!("/socket.io/?transport=polling{query}");
        let response = http(server.addr, "GET", &path, &[], "").await;
        assert_eq!(response.status, 200);
        let (_, open) = response.body.split_once(':').unwrap();
        assert!(
            open.starts_with("0{") && open.contains("\"sid\":"),
            "{open}"
        );
    }
    let (client, open) = Poller::open(server.addr, "&b64=1&t=Nx1").await;
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert!(open["pingInterval"].as_u64().is_some() && open["pingTimeout"].as_u64().is_some());
    assert!(server.app.engine.stats().sessions_v3 >= 1);
    // The server put the client in `/`; its CONNECT has no payload.
    assert_eq!(client.get_text().await, "2:40");
    // The client pings; the pong carries nothing, as from the reference.
    client.post(&["2"]).await;
    assert_eq!(client.get_text().await, "1:3");
    // A namespace with its query: the reply has neither.
    client.post(&["40/a?token=t,"]).await;
    assert_eq!(client.get_text().await, "5:40/a,");
    client.post(&[r#"42/a,1["echo","héllo €"]"#]).await;
    assert_eq!(client.get_text().await, payload(&[r#"43/a,1["héllo €"]"#]));
    // socket.io-client 1.x and python-socketio 4 write no comma after it.
    client.post(&["40/a?token=t"]).await;
    assert_eq!(client.get_text().await, "5:40/a,");
    // An unknown namespace: the reference's object, on that namespace only.
    client.post(&["40/nope,"]).await;
    assert_eq!(
        client.get_text().await,
        payload(&[r#"44/nope,{"message":"Invalid namespace"}"#])
    );
    // A refused one: the middleware's data, as 2.x's `error` event gets it.
    client.post(&["40/secure?token=forged,"]).await;
    let refused = client.get_text().await;
    let (_, packet) = refused.split_once(':').unwrap();
    let data = packet.strip_prefix("44/secure,").expect(&refused);
    let data: serde_json::Value = serde_json::from_str(data).unwrap();
    assert!(
        data["code"].is_string() && data["message"].is_string(),
        "{data}"
    );
    // A token in the query, behind 2 KB of other query (a long JWT): the
    // name's bound is for the name.
    let pad = "p".repeat(2048);
    let nsp = format!("40/secure?pad={pad}&token={},", token("alice", 600));
    client.post(&[&nsp]).await;
    assert_eq!(client.get_text().await, "10:40/secure,");
    // The session is still whole: `/` answers.
    client.post(&[r#"421["echo",1]"#]).await;
    assert_eq!(client.get_text().await, payload(&["431[1]"]));
}

/// A pong from a v3 client, or a payload that breaks its framing, ends
/// the session.
#[tokio::test]
async fn eio3_polling_session_closes_on_a_pong_or_a_bad_payload() {
    let server = start(ON).await;
    let (client, _) = Poller::open(server.addr, "").await;
    assert_eq!(client.get_text().await, "2:40");
    client.post(&["3"]).await;
    let response = http_raw(server.addr, "GET", &client.path(), &[], b"").await;
    assert_eq!(response.status, 400, "{}", response.text());

    let (client, _) = Poller::open(server.addr, "").await;
    assert_eq!(client.get_text().await, "2:40");
    let response = client.post_raw("text/plain", b"9:4ab").await;
    assert_eq!(response.status, 400, "{}", response.text());
    let response = http_raw(server.addr, "GET", &client.path(), &[], b"").await;
    assert_eq!(response.status, 400, "{}", response.text());
}

/// Binary over polling: the XHR2 payload both ways for a client that
/// reads binary (python-socketio 4 posts nothing else), `b4<base64>` for
/// one that asked for `b64`.
#[tokio::test]
async fn eio3_polling_carries_binary_in_both_forms() {
    let server = start(ON).await;
    let (client, _) = Poller::open(server.addr, "").await;
    assert_eq!(client.get_text().await, "2:40");
    let header = r#"451-1["echo",{"_placeholder":true,"num":0}]"#;
    let mut body = vec![0x00];
    body.extend(header.len().to_string().bytes().map(|d| d - b'0'));
    body.push(0xFF);
    body.extend_from_slice(header.as_bytes());
    body.extend_from_slice(&[0x01, 0x04, 0xFF, 0x04, 1, 2, 3]);
    let response = client.post_raw("application/octet-stream", &body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let response = client.get().await;
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    let packets = v3::decode_payload(Bytes::from(response.body), true).unwrap();
    assert_eq!(
        packets,
        vec![
            Packet::Message(EioMessage::Text(
                r#"61-1[{"_placeholder":true,"num":0}]"#.into()
            )),
            Packet::Message(EioMessage::Binary(Bytes::from_static(&[1, 2, 3]))),
        ]
    );

    let (client, _) = Poller::open(server.addr, "&b64=1").await;
    assert_eq!(client.get_text().await, "2:40");
    client.post(&[header, "b4AQID"]).await;
    assert_eq!(
        client.get_text().await,
        payload(&[r#"461-1[{"_placeholder":true,"num":0}]"#, "b4AQID"])
    );
}

async fn ws_open(addr: SocketAddr, query: &str) -> Ws {
    let url = format!("ws://{addr}/socket.io/?EIO=3&transport=websocket{query}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await;
    assert!(
        open.starts_with("0{") && open.contains("\"sid\":"),
        "{open}"
    );
    assert_eq!(next_text(&mut ws).await, "40");
    ws
}

async fn next_frame(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame")
        {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(frame)) => return frame,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// v3 binary WebSocket messages are led by their type byte, both ways
/// (`b4<base64>` text frames with `b64`); text frames are as in v4.
#[tokio::test]
async fn eio3_websocket_binary_carries_its_type_byte() {
    let server = start(ON).await;
    let mut ws = ws_open(server.addr, "").await;
    let header = r#"451-1["echo",{"_placeholder":true,"num":0}]"#;
    ws.send(Message::text(header)).await.unwrap();
    ws.send(Message::binary(vec![4u8, 1, 2, 3])).await.unwrap();
    assert_eq!(
        next_frame(&mut ws).await,
        Message::text(r#"461-1[{"_placeholder":true,"num":0}]"#)
    );
    assert_eq!(
        next_frame(&mut ws).await,
        Message::binary(vec![4u8, 1, 2, 3])
    );
    // A base64 binary from a client with `forceBase64`.
    ws.send(Message::text(header)).await.unwrap();
    ws.send(Message::text("b4CQg=")).await.unwrap();
    next_frame(&mut ws).await;
    assert_eq!(next_frame(&mut ws).await, Message::binary(vec![4u8, 9, 8]));
    // A binary frame of another type breaks the protocol.
    ws.send(Message::text(header)).await.unwrap();
    ws.send(Message::binary(vec![2u8, 1])).await.unwrap();
    assert!(closed_by_server(&mut ws).await);

    let mut ws = ws_open(server.addr, "&b64=1").await;
    ws.send(Message::text(header)).await.unwrap();
    ws.send(Message::binary(vec![4u8, 1, 2, 3])).await.unwrap();
    next_frame(&mut ws).await;
    assert_eq!(next_frame(&mut ws).await, Message::text("b4AQID"));
}

/// The v3 heartbeat: the server never pings, answers each ping, and ends
/// a session whose client stays silent for `pingInterval + pingTimeout`.
#[tokio::test]
async fn eio3_heartbeat_is_driven_by_the_client() {
    let server =
        start("[engine]\nallow_eio3 = true\nping_interval_ms = 200\nping_timeout_ms = 100").await;
    let mut ws = ws_open(server.addr, "").await;
    ws.send(Message::text("2")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3");
    let silent_since = std::time::Instant::now();
    // Nothing comes (no ping) until the server gives up on the client.
    match tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("never closed")
    {
        Some(Ok(Message::Close(_)) | Err(_)) | None => {}
        other => panic!("the server sent {other:?}"),
    }
    let waited = silent_since.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(290),
        "closed after {waited:?}"
    );
    // A pong from the client is the wrong direction.
    let mut ws = ws_open(server.addr, "").await;
    ws.send(Message::text("3")).await.unwrap();
    assert!(closed_by_server(&mut ws).await);
    // v4 clients beside them are as before.
    let (mut v4, _) = Client::connect(server.addr).await;
    v4.emit(1, "echo", "1").await;
    assert_eq!(v4.recv().await, "431[1]");
}

/// The upgrade as a 2.x client makes it: probe on the WebSocket, the
/// waiting poll released with a v3 noop (`1:6`), then `5`; the WebSocket
/// request's own `b64` decides its binary framing.
#[tokio::test]
async fn eio3_upgrade_moves_the_session_to_websocket() {
    let server = start(ON).await;
    let (client, _) = Poller::open(server.addr, "").await;
    assert_eq!(client.get_text().await, "2:40");
    let waiting = tokio::spawn({
        let (addr, path) = (client.addr, client.path());
        async move { http_raw(addr, "GET", &path, &[], b"").await }
    });
    let url = format!(
        "ws://{}/socket.io/?EIO=3&transport=websocket&sid={}&b64=1",
        server.addr, client.sid
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    let released = waiting.await.unwrap();
    assert_eq!((released.status, released.text()), (200, "1:6".to_owned()));
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("2")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3");
    ws.send(Message::text(
        r#"451-1["echo",{"_placeholder":true,"num":0}]"#,
    ))
    .await
    .unwrap();
    ws.send(Message::binary(vec![4u8, 7])).await.unwrap();
    assert_eq!(
        next_frame(&mut ws).await,
        Message::text(r#"461-1[{"_placeholder":true,"num":0}]"#)
    );
    assert_eq!(next_frame(&mut ws).await, Message::text("b4Bw=="));
}

/// v3 and v4 clients share rooms: a broadcast reaches both, as the same
/// bytes (one encoding for every client), either way round.
#[tokio::test]
async fn eio3_and_v4_clients_share_rooms_and_broadcasts() {
    let server = start(ON).await;
    let mut old = ws_open(server.addr, "").await;
    let (mut new, _) = Client::connect(server.addr).await;
    old.send(Message::text(r#"421["join","r"]"#)).await.unwrap();
    assert_eq!(next_text(&mut old).await, r#"431[{"ok":true}]"#);
    new.emit(1, "join", r#""r""#).await;
    assert_eq!(new.recv().await, r#"431[{"ok":true}]"#);
    let news = r#"{"event":"news","data":"é","rooms":["r"]}"#;
    new.emit(2, "broadcast", news).await;
    let mut to_new = Vec::new();
    for _ in 0..2 {
        to_new.push(new.recv().await);
    }
    // The ack and the event, in either order: the event first once sorted.
    to_new.sort();
    assert_eq!(to_new[1], r#"432[{"count":2,"ok":true}]"#);
    let to_old = next_text(&mut old).await;
    assert_eq!(to_old, to_new[0]);
    assert_eq!(without_offset(to_old), r#"42["news","é"]"#);
    // And from the v3 client.
    old.send(Message::text(format!(r#"423["broadcast",{news}]"#)))
        .await
        .unwrap();
    let mut to_old = [next_text(&mut old).await, next_text(&mut old).await];
    to_old.sort();
    assert_eq!(to_old[1], r#"433[{"count":2,"ok":true}]"#);
    assert_eq!(new.recv().await, to_old[0]);
}
