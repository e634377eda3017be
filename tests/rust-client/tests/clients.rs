//! rust_socketio 0.6.0 (crates.io, Engine.IO v4 only) against a running
//! server on tests/interop/eio3-esn.toml (`SERVER_URL`, set by run.sh): over
//! WebSocket and polling, an emit with an ack, bytes both ways, a room's
//! broadcast received by another client, and /chat signed in with a token
//! (the CONNECT `auth`) with a direct message to another user.
//!
//! With `allow_eio3 = true` on the server, this is also the check that v4
//! clients other than the Node one are untouched by it.
//!
//! What the crate cannot do, and so is not asked of it: an emit of bytes
//! *with* an ack (it sends a BINARY_ACK packet, type 6, instead of a
//! BINARY_EVENT with an id: `Packet::new_from_payload`), more than one
//! attachment or bytes nested in an object (`Payload::Binary` is one
//! top-level attachment).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rust_socketio::client::Client;
use rust_socketio::{ClientBuilder, Event, Payload, RawClient, TransportType};
use serde_json::{json, Value};
use sha2::Sha256;

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(5);
/// tests/interop/eio3-esn.toml's `hs256_secret`.
const SECRET: &[u8] = b"esn-interop-secret";

fn server_url() -> String {
    std::env::var("SERVER_URL").expect("SERVER_URL (run tests/rust-client/run.sh)")
}

/// An HS256 token for `user`, valid an hour (as tests/interop/esn.mjs mints them).
fn token(user: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let claims =
        URL_SAFE_NO_PAD.encode(json!({"sub": user, "iat": now, "exp": now + 3600}).to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(format!("{header}.{claims}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{claims}.{signature}")
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}-{nanos}")
}

/// A connected client and what it received: (event, payload).
struct Conn {
    client: Client,
    events: Receiver<(String, Payload)>,
}

impl Conn {
    /// Connects to `nsp`, recording `events`; waits for the server's CONNECT.
    fn open(
        nsp: &str,
        transport: TransportType,
        auth: Option<Value>,
        events: &[&'static str],
    ) -> Conn {
        let (tx, rx) = channel();
        let (connected_tx, connected_rx) = channel::<()>();
        let mut builder = ClientBuilder::new(server_url())
            .namespace(nsp)
            .transport_type(transport)
            .on(Event::Connect, move |_, _| {
                let _ = connected_tx.send(());
            });
        let error_tx: Sender<(String, Payload)> = tx.clone();
        builder = builder.on(Event::Error, move |payload, _| {
            let _ = error_tx.send(("error".into(), payload));
        });
        for &event in events {
            let tx = tx.clone();
            builder = builder.on(event, move |payload: Payload, _: RawClient| {
                let _ = tx.send((event.to_owned(), payload));
            });
        }
        if let Some(auth) = auth {
            builder = builder.auth(auth);
        }
        let client = builder.connect().expect("connect");
        connected_rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "{nsp} did not connect within {WAIT:?}: {:?}",
                rx.try_iter().collect::<Vec<_>>()
            )
        });
        Conn { client, events: rx }
    }

    /// The next `event` received (others are skipped), within WAIT.
    fn next(&self, event: &str) -> Payload {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok((name, payload)) if name == event => return payload,
                Ok(_) => continue,
                Err(_) => panic!("no {event:?} within {WAIT:?}"),
            }
        }
    }

    /// Emits with an ack and returns the ack's arguments, within WAIT.
    fn call(&self, event: &str, data: impl Into<Payload>) -> Vec<Value> {
        let (tx, rx) = channel();
        self.client
            .emit_with_ack(event, data, WAIT, move |payload, _| {
                let _ = tx.send(payload);
            })
            .expect("emit");
        let payload = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no ack for {event:?} within {WAIT:?}"));
        // The crate hands an ack's arguments over as one JSON array (an
        // event's as a list of values).
        match text(payload).as_slice() {
            [Value::Array(args)] => args.clone(),
            other => panic!("an ack's arguments as one array, not {other:?}"),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

fn transports() -> [(&'static str, fn() -> TransportType); 2] {
    [
        ("websocket", || TransportType::Websocket),
        ("polling", || TransportType::Polling),
    ]
}

fn text(payload: Payload) -> Vec<Value> {
    match payload {
        Payload::Text(values) => values,
        other => panic!("expected text, got {other:?}"),
    }
}

#[test]
fn emit_with_an_ack() {
    for (name, transport) in transports() {
        let conn = Conn::open("/", transport(), None, &[]);
        let args = vec![
            json!(1),
            json!("two"),
            json!({"three": [3, null, true]}),
            json!("héllo € ✓ 🚀"),
        ];
        assert_eq!(conn.call("echo", args.clone()), args, "{name}");
        assert_eq!(
            conn.call("echo", json!({"one": 1})),
            vec![json!({"one": 1})],
            "{name}"
        );
    }
}

#[test]
fn bytes_both_ways() {
    for (name, transport) in transports() {
        let conn = Conn::open("/", transport(), None, &["echo"]);
        // Bytes to the server and back in an event (echo without an ack).
        let bytes = vec![0u8, 1, 2, 0xfe, 0xff];
        conn.client.emit("echo", bytes.clone()).expect("emit");
        match conn.next("echo") {
            Payload::Binary(got) => assert_eq!(got.as_ref(), &bytes[..], "{name}"),
            other => panic!("{name}: expected bytes, got {other:?}"),
        }
    }
}

#[test]
fn a_broadcast_to_a_room_reaches_its_member() {
    for (name, transport) in transports() {
        let room = unique("rust-room");
        let member = Conn::open("/", transport(), None, &["news"]);
        let sender = Conn::open("/", transport(), None, &[]);
        assert_eq!(
            member.call("join", json!(room)),
            vec![json!({"ok": true})],
            "{name}"
        );
        let data = json!({"text": "à tous", "n": [1, 2.5, null]});
        let reply = sender.call(
            "broadcast",
            json!({"event": "news", "data": data, "rooms": [room]}),
        );
        assert_eq!(reply[0]["ok"], json!(true), "{name}: {reply:?}");
        assert_eq!(text(member.next("news")), vec![data], "{name}");
    }
}

#[test]
fn chat_sign_in_and_a_direct_message() {
    for (name, transport) in transports() {
        let alice = unique("rust-alice");
        let bob = unique("rust-bob");
        let a = Conn::open(
            "/chat",
            transport(),
            Some(json!({"token": token(&alice)})),
            &[],
        );
        let b = Conn::open(
            "/chat",
            transport(),
            Some(json!({"token": token(&bob)})),
            &["message"],
        );
        let sent = a.call(
            "message",
            json!({"to": bob, "client_id": unique("c"), "text": "bonjour, ça va ?"}),
        );
        assert_eq!(sent[0]["ok"], json!(true), "{name}: {sent:?}");
        let message = text(b.next("message"));
        assert_eq!(message[0]["sender"], json!(alice), "{name}");
        assert_eq!(message[0]["text"], json!("bonjour, ça va ?"), "{name}");
        assert_eq!(message[0]["id"], sent[0]["id"], "{name}");
    }
}

#[test]
fn chat_refuses_a_bad_token() {
    let (tx, rx) = channel();
    let _client = ClientBuilder::new(server_url())
        .namespace("/chat")
        .transport_type(TransportType::Websocket)
        .auth(json!({"token": "not-a-token"}))
        .on(Event::Error, move |payload, _| {
            let _ = tx.send(payload);
        })
        .connect()
        .expect("the transport connects");
    let payload = rx.recv_timeout(WAIT).expect("an error within WAIT");
    let Payload::Text(values) = payload else {
        panic!("expected text, got {payload:?}")
    };
    let message = values[0].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Received an ConnectError frame: "),
        "{message}"
    );
    assert!(message.contains("unauthorized"), "{message}");
}
