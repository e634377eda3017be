//! A raw Socket.IO client over WebSocket, speaking the protocol frame by
//! frame, and the tokens it signs in with.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::{TestServer, WAIT};

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A raw Socket.IO client over WebSocket.
pub struct Client {
    pub ws: Ws,
    pub engine_sid: String,
}

impl Client {
    pub async fn open(addr: SocketAddr) -> Client {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let open = next_text(&mut ws).await;
        assert!(open.starts_with('0'), "{open}");
        let value: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        Client {
            ws,
            engine_sid: value["sid"].as_str().unwrap().to_owned(),
        }
    }

    /// Opens a session and joins namespace `/`; returns the socket id too.
    pub async fn connect(addr: SocketAddr) -> (Client, String) {
        let mut client = Client::open(addr).await;
        client.send("40").await;
        let reply = client.recv().await;
        assert!(reply.starts_with("40{"), "{reply}");
        let value: serde_json::Value = serde_json::from_str(&reply[2..]).unwrap();
        (client, value["sid"].as_str().unwrap().to_owned())
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text message that is not a ping (pings are answered).
    pub async fn recv(&mut self) -> String {
        loop {
            let text = next_text(&mut self.ws).await;
            if text == "2" {
                self.send("3").await;
                continue;
            }
            return text;
        }
    }

    /// Emits on namespace `nsp` (not `/`).
    pub async fn emit_to(&mut self, nsp: &str, id: u64, event: &str, args: &str) {
        let sep = if args.is_empty() { "" } else { "," };
        self.send(&format!(r#"42{nsp},{id}["{event}"{sep}{args}]"#))
            .await;
    }

    /// Emits `event` with `args` (JSON, without brackets) and ack id `id`.
    pub async fn emit(&mut self, id: u64, event: &str, args: &str) {
        let sep = if args.is_empty() { "" } else { "," };
        self.send(&format!(r#"42{id}["{event}"{sep}{args}]"#)).await;
    }
}

impl Client {
    /// The text frames the server sends until it closes the connection
    /// (pings answered, not kept); fails the test if it stays open.
    pub async fn until_closed(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the server did not close the connection")
            {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    let _ = self.ws.send(Message::text("3")).await;
                }
                Some(Ok(Message::Text(text))) => frames.push(text.to_string()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => return frames,
                Some(Ok(_)) => {}
            }
        }
    }
}

pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a message")
        {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// Whether the server closed this WebSocket (reading until close or error).
pub async fn closed_by_server(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// An event frame without the recovery offset the server appends as its
/// last argument (connection state recovery is on by default), for tests
/// of other things that compare whole frames; other frames as they are.
pub fn without_offset(frame: String) -> String {
    let Some(body) = frame
        .strip_suffix("\"]")
        .filter(|_| frame.starts_with("42"))
    else {
        return frame;
    };
    let digits = body.len() - body.bytes().rev().take_while(u8::is_ascii_digit).count();
    match body[..digits].strip_suffix(",\"") {
        Some(rest) if digits < body.len() => format!("{rest}]"),
        _ => frame,
    }
}

/// A token for `user` signed with the test servers' secret.
pub fn token(user: &str, ttl_secs: u64) -> String {
    hub::identity::issue("test-secret", user, Duration::from_secs(ttl_secs)).unwrap()
}

/// Opens a session and sends CONNECT to `/secure` with `auth`; returns the reply.
pub async fn connect_secure(addr: SocketAddr, auth: &str) -> (Client, String) {
    let mut client = Client::open(addr).await;
    client.send(&format!("40/secure,{auth}")).await;
    let reply = client.recv().await;
    (client, reply)
}

pub async fn connect_pubsub(addr: SocketAddr, user: &str) -> Client {
    let mut client = Client::open(addr).await;
    client
        .send(&format!(r#"40/pubsub,{{"token":"{}"}}"#, token(user, 60)))
        .await;
    let reply = client.recv().await;
    assert!(reply.starts_with("40/pubsub,{"), "{reply}");
    client
}

/// [`connect_pubsub`], then subscribed to `topic:news` (its ack received).
pub async fn news_subscriber(addr: SocketAddr, user: &str) -> Client {
    let mut client = connect_pubsub(addr, user).await;
    client
        .emit_to("/pubsub", 1, "subscribe", r#""topic:news""#)
        .await;
    let ack = client.recv().await;
    assert!(ack.starts_with("43/pubsub,1"), "{ack}");
    client
}

/// Broadcasts 64 KiB events to room `news` from `publisher` (each acked)
/// until the server has closed a slow consumer; panics after `max_events`.
pub async fn publish_until_slow_consumer(
    server: &TestServer,
    publisher: &mut Client,
    max_events: u64,
) {
    let chunk = "y".repeat(64 * 1024);
    let mut id = 10;
    while server.app.engine.stats().slow_consumer_disconnects == 0 {
        assert!(id < max_events, "the stalled client was never disconnected");
        publisher
            .emit(
                id,
                "broadcast",
                &format!(r#"{{"event":"news","rooms":["news"],"data":"{chunk}"}}"#),
            )
            .await;
        let ack = publisher.recv().await;
        assert!(ack.starts_with(&format!("43{id}[")), "{ack}");
        id += 1;
    }
}
