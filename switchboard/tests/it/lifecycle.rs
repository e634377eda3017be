//! The socket lifecycle over the wire: a socket that left is in no room and
//! released, the rooms joined at connect are in place when the client sees
//! `connect`, a component sees `on_connect` before any event and
//! `on_disconnect` once after it, binary attachments are bounded in bytes
//! and time, and CONNECT / `refresh` are rate limited per connection.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::common::fake_http;
use crate::common::*;
use futures_util::SinkExt;
use hub::component::{Component, ComponentHandler, Reply};
use socketio::{Args, DisconnectReason, Socket};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Waits, a bounded number of times, for `done` to hold (for what no event
/// announces: an `Arc` released, a gauge back to 0).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 5 s: {what}");
}

/// A backend whose `subscribe` answers only once the test says so: it
/// reports each request on `requests` and waits for a release on `release`,
/// then answers `{rooms: [<the room>]}` and reports it on `answered`.
struct SlowBackend {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<()>,
    release: mpsc::UnboundedSender<()>,
    answered: mpsc::UnboundedReceiver<()>,
}

async fn start_slow_backend() -> SlowBackend {
    let (request_tx, requests) = mpsc::unbounded_channel();
    let (release, release_rx) = mpsc::unbounded_channel::<()>();
    let (answered_tx, answered) = mpsc::unbounded_channel();
    let release_rx = Arc::new(tokio::sync::Mutex::new(release_rx));
    let addr = fake_http::serve(None, move |_request, body| {
        let (request_tx, answered_tx, release_rx) =
            (request_tx.clone(), answered_tx.clone(), release_rx.clone());
        async move {
            let call: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let _ = request_tx.send(());
            release_rx.lock().await.recv().await;
            let answer = serde_json::json!({"rooms": [call["data"]]});
            let _ = answered_tx.send(());
            fake_http::respond(200, answer.to_string())
        }
    })
    .await;
    SlowBackend {
        addr,
        requests,
        release,
        answered,
    }
}

/// The sockets gauge of `namespace` in `/metrics`.
async fn sockets_gauge(addr: SocketAddr, namespace: &str) -> f64 {
    let metrics = http(addr, "GET", "/metrics", &[], "").await.body;
    sample(
        &metrics,
        &format!("switchboard_sockets{{namespace=\"{namespace}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_left_while_its_backend_decided_a_subscribe_is_in_no_room() {
    let mut backend = start_slow_backend().await;
    let server = start(&format!(
        "[[namespaces]]\nname = \"/ext\"\nhandler = \"proxy\"\nauth = true\nbackend = \"http://{}/events\"\nbackend_timeout_ms = 5000",
        backend.addr
    ))
    .await;
    let mut client = Client::open(server.addr).await;
    client
        .send(&format!(r#"40/ext,{{"token":"{}"}}"#, token("dora", 60)))
        .await;
    assert!(client.recv().await.starts_with("40/ext,{"));
    let ns = server.app.io.of("/ext").unwrap();
    let mut socket: Weak<Socket> = Weak::new();
    ns.for_each_socket(|s| socket = Arc::downgrade(s));

    client
        .emit_to("/ext", 1, "subscribe", r#""team:late""#)
        .await;
    // The backend has the request; the client leaves before it answers.
    backend.requests.recv().await.unwrap();
    client.ws.close(None).await.unwrap();
    eventually("the socket leaves its namespace", || ns.is_empty()).await;
    backend.release.send(()).unwrap();
    backend.answered.recv().await.unwrap();

    // The answer reached the hub once the subscription's future let go of
    // the socket; a socket still in a room would never be released.
    eventually("the socket is released", || socket.upgrade().is_none()).await;
    let (status, body) = api(
        server.addr,
        "GET",
        "/api/v1/rooms/team%3Alate?namespace=%2Fext",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sockets"], 0, "{body}");
    assert!(ns.to("team:late").sockets().is_empty());
    assert_eq!(sockets_gauge(server.addr, "/ext").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_sent_right_after_connect_reaches_the_users_room() {
    let server = start("").await;
    let ns = server.app.io.of("/pubsub").unwrap();
    for i in 0..50 {
        let user = format!("quick{i}");
        let mut client = Client::open(server.addr).await;
        client
            .send(&format!(r#"40/pubsub,{{"token":"{}"}}"#, token(&user, 60)))
            .await;
        let reply = client.recv().await;
        assert!(reply.starts_with("40/pubsub,{"), "{reply}");
        let reached = ns
            .to(format!("user:{user}"))
            .emit("hello", &Args::one(&i))
            .recipients();
        assert_eq!(
            reached, 1,
            "iteration {i}: the socket is not in user:{user} yet"
        );
        assert_eq!(
            without_offset(client.recv().await),
            format!(r#"42/pubsub,["hello",{i}]"#)
        );
    }
}

/// What the test component saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connect { joined: bool },
    Event(String),
    Disconnect { rooms: Vec<String>, reason: String },
}

/// A component that reports its hooks on a channel. Its `on_connect` waits
/// for the test's go-ahead (as a store lookup would), then joins `lobby`.
struct Recorder {
    seen: mpsc::UnboundedSender<Seen>,
    gates: Arc<parking_lot::Mutex<mpsc::UnboundedReceiver<oneshot::Receiver<()>>>>,
}

impl Component for Recorder {
    type User = Option<hub::identity::Identity>;

    fn on_connect(
        &self,
        socket: &Arc<Socket>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let gate = self.gates.lock().try_recv().ok();
        let (socket, seen) = (socket.clone(), self.seen.clone());
        Some(Box::pin(async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            let joined = socket.join("lobby");
            let _ = seen.send(Seen::Connect { joined });
        }))
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
        rooms.sort();
        let _ = self.seen.send(Seen::Disconnect {
            rooms,
            reason: reason.as_str().to_owned(),
        });
    }

    fn handle(
        &self,
        _socket: &Arc<Socket>,
        _user: Self::User,
        event: &str,
        _args: &Args,
    ) -> impl std::future::Future<Output = Reply> + Send + 'static {
        let _ = self.seen.send(Seen::Event(event.to_owned()));
        std::future::ready(Ok(serde_json::Map::new()))
    }
}

/// Adds `/life`, run by a [`Recorder`]; returns what it sees and the sender
/// of the gates its `on_connect`s wait for (one per connect, in order; a
/// connect without a gate goes ahead at once).
fn add_recorder(
    server: &TestServer,
) -> (
    mpsc::UnboundedReceiver<Seen>,
    mpsc::UnboundedSender<oneshot::Receiver<()>>,
) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (gate_tx, gate_rx) = mpsc::unbounded_channel();
    server.app.io.add_namespace(
        "/life",
        ComponentHandler::new(Recorder {
            seen: seen_tx,
            gates: Arc::new(parking_lot::Mutex::new(gate_rx)),
        }),
    );
    (seen, gate_tx)
}

async fn next_seen(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("the component saw nothing")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_reaches_a_socket_before_its_connect_reply_follows_the_reply() {
    let server = start("").await;
    let (mut seen, gates) = add_recorder(&server);
    let (go, gate) = oneshot::channel();
    gates.send(gate).unwrap();
    let ns = server.app.io.of("/life").unwrap();

    let mut client = Client::open(server.addr).await;
    client.send("40/life,").await;
    // In the namespace while its on_connect waits: a broadcast reaches it
    // (as one to a room it joined while connecting would, from another
    // node say). The client is told it is connected first, as the
    // reference server, which replies before its connection handlers run,
    // always does: some clients drop an event of a namespace they are not
    // connected to.
    eventually("the socket is in its namespace", || !ns.is_empty()).await;
    assert_eq!(ns.broadcast().emit("early", &Args::new()).recipients(), 1);
    go.send(()).unwrap();
    assert_eq!(next_seen(&mut seen).await, Seen::Connect { joined: true });
    let reply = client.recv().await;
    assert!(reply.starts_with("40/life,{"), "{reply}");
    assert_eq!(without_offset(client.recv().await), r#"42/life,["early"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_sees_on_connect_first_and_on_disconnect_once_with_its_rooms() {
    let server = start("").await;
    let (mut seen, gates) = add_recorder(&server);
    let (go, gate) = oneshot::channel();
    gates.send(gate).unwrap();

    let mut client = Client::open(server.addr).await;
    client.send("40/life,").await;
    // An event sent before the connect completes waits behind on_connect.
    client.emit_to("/life", 1, "early", "").await;
    go.send(()).unwrap();
    assert_eq!(next_seen(&mut seen).await, Seen::Connect { joined: true });
    let reply = client.recv().await;
    assert!(reply.starts_with("40/life,{"), "{reply}");
    // The room joined in on_connect is in place once the client is told.
    let ns = server.app.io.of("/life").unwrap();
    assert_eq!(ns.to("lobby").emit("hi", &Args::new()).recipients(), 1);
    // The early event's ack and "hi" may come in either order.
    let mut got = vec![
        without_offset(client.recv().await),
        without_offset(client.recv().await),
    ];
    got.sort();
    assert_eq!(got, [r#"42/life,["hi"]"#, r#"43/life,1[{"ok":true}]"#]);
    assert_eq!(next_seen(&mut seen).await, Seen::Event("early".into()));

    client.send("41/life,").await;
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Disconnect {
            rooms: vec!["lobby".into()],
            reason: "client namespace disconnect".into()
        }
    );
    // Closing the connection afterwards does not report it twice: the next
    // thing the component sees is the next socket.
    client.send("40/life,").await;
    assert!(client.recv().await.starts_with("40/life,{"));
    assert_eq!(next_seen(&mut seen).await, Seen::Connect { joined: true });
    client.ws.close(None).await.unwrap();
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Disconnect {
            rooms: vec!["lobby".into()],
            reason: "transport close".into()
        }
    );
    assert!(seen.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_leaves_during_on_connect_joins_nothing_and_is_reported_after_it() {
    let server = start("").await;
    let (mut seen, gates) = add_recorder(&server);
    let (go, gate) = oneshot::channel();
    gates.send(gate).unwrap();
    let ns = server.app.io.of("/life").unwrap();

    let mut client = Client::open(server.addr).await;
    client.send("40/life,").await;
    eventually("the socket is registered", || ns.len() == 1).await;
    client.ws.close(None).await.unwrap();
    eventually("the socket leaves", || ns.is_empty()).await;
    // on_disconnect waits for on_connect, whose join is refused.
    assert!(seen.try_recv().is_err());
    go.send(()).unwrap();
    assert_eq!(next_seen(&mut seen).await, Seen::Connect { joined: false });
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Disconnect {
            rooms: vec![],
            reason: "transport close".into()
        }
    );
    assert!(ns.to("lobby").sockets().is_empty());
    assert_eq!(sockets_gauge(server.addr, "/life").await, 0.0);
}

/// A binary event header announcing one attachment, for the test kit's `echo`.
const BINARY_ECHO: &str = r#"451-1["echo",{"_placeholder":true,"num":0}]"#;

#[tokio::test]
async fn attachments_within_the_byte_bound_are_delivered() {
    let server = start("[socketio]\nmax_attachment_bytes = 1000").await;
    let (mut client, _) = Client::connect(server.addr).await;
    client.send(BINARY_ECHO).await;
    client
        .ws
        .send(Message::binary(vec![7u8; 900]))
        .await
        .unwrap();
    assert_eq!(
        client.recv().await,
        r#"461-1[{"_placeholder":true,"num":0}]"#
    );
}

#[tokio::test]
async fn attachments_over_the_byte_bound_close_the_connection() {
    let server = start("[socketio]\nmax_attachment_bytes = 1000").await;
    let (mut client, _) = Client::connect(server.addr).await;
    client
        .send(r#"452-1["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        .await;
    client
        .ws
        .send(Message::binary(vec![1u8; 600]))
        .await
        .unwrap();
    client
        .ws
        .send(Message::binary(vec![2u8; 600]))
        .await
        .unwrap();
    assert!(closed_by_server(&mut client.ws).await);
}

#[tokio::test]
async fn attachments_that_do_not_arrive_in_time_close_the_connection() {
    let server = start("[socketio]\nattachment_timeout_ms = 200").await;
    let (mut client, _) = Client::connect(server.addr).await;
    client.send(BINARY_ECHO).await;
    assert!(closed_by_server(&mut client.ws).await);
}

#[tokio::test]
async fn a_client_looping_on_connect_is_closed() {
    let server = start("").await;
    let mut client = Client::open(server.addr).await;
    let mut closed = false;
    for _ in 0..200 {
        if client.ws.send(Message::text("40/a,")).await.is_err()
            || client.ws.send(Message::text("41/a,")).await.is_err()
        {
            closed = true;
            break;
        }
    }
    assert!(closed || closed_by_server(&mut client.ws).await);
}

#[tokio::test]
async fn failing_connects_count_too() {
    let server = start("").await;
    let mut client = Client::open(server.addr).await;
    let mut refusals = 0;
    for _ in 0..200 {
        if client.ws.send(Message::text("40/nowhere,")).await.is_err() {
            break;
        }
    }
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut client.ws)).await {
            Ok(Some(Ok(Message::Text(text)))) if text.starts_with("44/nowhere,") => refusals += 1,
            Ok(Some(Ok(Message::Text(_)))) => {}
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("not closed after {refusals} refused CONNECTs"),
        }
    }
    assert!((1..200).contains(&refusals), "{refusals}");
}

#[tokio::test]
async fn a_client_opening_several_namespaces_is_not_limited() {
    let server = start("").await;
    let mut client = Client::open(server.addr).await;
    let token = token("nina", 60);
    for nsp in ["/", "/a", "/secure", "/pubsub"] {
        let prefix = if nsp == "/" {
            "40".to_owned()
        } else {
            format!("40{nsp},")
        };
        client
            .send(&format!(r#"{prefix}{{"token":"{token}"}}"#))
            .await;
        let reply = client.recv().await;
        assert!(reply.starts_with(&format!("{prefix}{{\"sid\"")), "{reply}");
    }
    client.emit(1, "echo", r#""still here""#).await;
    assert_eq!(client.recv().await, r#"431["still here"]"#);
}

#[tokio::test]
async fn refresh_is_limited_per_connection_in_a_namespace_without_a_component() {
    let server = start("").await;
    let (mut client, reply) = connect_secure(
        server.addr,
        &format!(r#"{{"token":"{}"}}"#, token("otto", 60)),
    )
    .await;
    assert!(reply.starts_with("40/secure,{"), "{reply}");
    let fresh = token("otto", 120);
    let mut refused = 0;
    for id in 0..40 {
        client
            .emit_to(
                "/secure",
                id,
                "refresh",
                &format!(r#"{{"token":"{fresh}"}}"#),
            )
            .await;
        let reply = client.recv().await;
        if reply.contains(r#""code":"rate_limited""#) {
            refused += 1;
        } else {
            assert!(reply.contains(r#""ok":true"#), "{reply}");
        }
    }
    // 20 at once (one taken by the CONNECT), then about 5 a second.
    assert!((15..=25).contains(&refused), "{refused} refreshes refused");
}
