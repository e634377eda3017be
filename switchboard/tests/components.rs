//! Component namespaces over the wire: acks, authorized subscriptions, the
//! `{room, data}` envelope, proxy namespaces, per-socket limits.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

#[tokio::test]
async fn a_user_cannot_subscribe_to_another_users_room() {
    let server = start("").await;
    let mut alice = connect_pubsub(server.addr, "alice").await;
    alice
        .emit_to("/pubsub", 1, "subscribe", r#""user:bob""#)
        .await;
    let reply = alice.recv().await;
    assert!(
        reply.starts_with(r#"43/pubsub,1[{"error":{"code":"forbidden""#)
            && reply.contains(r#""ok":false"#),
        "{reply}"
    );
    alice
        .emit_to("/pubsub", 2, "subscribe", r#""user:alice""#)
        .await;
    assert_eq!(
        alice.recv().await,
        r#"43/pubsub,2[{"ok":true,"room":"user:alice","rooms":["user:alice"]}]"#
    );
}

#[tokio::test]
async fn every_event_is_acked_with_ok_or_an_error() {
    let server = start("").await;
    let mut alice = connect_pubsub(server.addr, "alice").await;
    alice.emit_to("/pubsub", 1, "frobnicate", "").await;
    let reply = alice.recv().await;
    assert!(
        reply.contains(r#""code":"unknown_event""#) && reply.contains(r#""ok":false"#),
        "{reply}"
    );
    alice.emit_to("/pubsub", 2, "subscribe", "").await;
    assert!(alice.recv().await.contains(r#""code":"bad_request""#));
    alice
        .emit_to("/pubsub", 3, "publish", r#"{"room":"topic:news","data":1}"#)
        .await;
    assert!(alice.recv().await.contains("subscribe to the room first"));
}

#[tokio::test]
async fn room_events_reach_subscribers_only_in_a_room_data_envelope() {
    let server = start("").await;
    let mut alice = connect_pubsub(server.addr, "alice").await;
    let mut bob = connect_pubsub(server.addr, "bob").await;
    let mut carol = connect_pubsub(server.addr, "carol").await;
    for (client, id) in [(&mut alice, 1), (&mut bob, 1)] {
        client
            .emit_to("/pubsub", id, "subscribe", r#""topic:news""#)
            .await;
        assert_eq!(
            client.recv().await,
            r#"43/pubsub,1[{"ok":true,"room":"topic:news","rooms":["topic:news"]}]"#
        );
    }
    alice
        .emit_to(
            "/pubsub",
            2,
            "publish",
            r#"{"room":"topic:news","data":{"headline":"hi"}}"#,
        )
        .await;
    let expected = r#"42/pubsub,["message",{"data":{"headline":"hi"},"room":"topic:news"}]"#;
    assert_eq!(bob.recv().await, expected);
    // alice is subscribed too: her copy, then her ack.
    assert_eq!(alice.recv().await, expected);
    assert_eq!(
        alice.recv().await,
        r#"43/pubsub,2[{"delivered":2,"ok":true}]"#
    );
    // carol did not subscribe: the next thing she sees is her own ack.
    carol
        .emit_to("/pubsub", 9, "subscribe", r#""topic:other""#)
        .await;
    assert_eq!(
        carol.recv().await,
        r#"43/pubsub,9[{"ok":true,"room":"topic:other","rooms":["topic:other"]}]"#
    );
}

/// A backend for a proxy namespace: answers `greet` with a greeting for the
/// user, `boom` with HTTP 500, `slow` too late, and `subscribe` to
/// `team:1` with the rooms to join (refusing any other room).
async fn start_backend() -> SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let call: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let (status, answer) = match call["event"].as_str().unwrap() {
                            "greet" => (
                                200,
                                serde_json::json!({
                                    "greeting": format!("hello {}", call["user"].as_str().unwrap()),
                                    "namespace": call["namespace"], "echo": call["data"],
                                    "socket_given": call["socket"].as_str().is_some_and(|s| s.len() == 20),
                                }),
                            ),
                            "boom" => (500, serde_json::json!({})),
                            "slow" => {
                                tokio::time::sleep(Duration::from_millis(2000)).await;
                                (200, serde_json::json!({}))
                            }
                            "subscribe" if call["data"] == "team:1" => (
                                200,
                                serde_json::json!({"rooms": ["team:1", "team:1:admins"]}),
                            ),
                            _ => (200, serde_json::json!({"ok": false})),
                        };
                        let mut response = http::Response::new(
                            http_body_util::Full::<bytes::Bytes>::from(answer.to_string()),
                        );
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_proxy_namespace_forwards_events_and_subscriptions_to_its_backend() {
    let backend = start_backend().await;
    let server = start(&format!(
        "[[namespaces]]\nname = \"/ext\"\nhandler = \"proxy\"\nauth = true\nbackend = \"http://{backend}/events\"\nbackend_timeout_ms = 300"
    ))
    .await;
    let mut client = Client::open(server.addr).await;
    client
        .send(&format!(r#"40/ext,{{"token":"{}"}}"#, token("erin", 60)))
        .await;
    assert!(client.recv().await.starts_with("40/ext,{"));

    client.emit_to("/ext", 1, "greet", r#"{"x":1}"#).await;
    assert_eq!(
        client.recv().await,
        r#"43/ext,1[{"echo":{"x":1},"greeting":"hello erin","namespace":"/ext","ok":true,"socket_given":true}]"#
    );
    client.emit_to("/ext", 2, "boom", "").await;
    let reply = client.recv().await;
    assert!(
        reply.contains(r#""code":"backend_error""#) && reply.contains(r#""ok":false"#),
        "{reply}"
    );
    client.emit_to("/ext", 3, "slow", "").await;
    let reply = client.recv().await;
    assert!(reply.contains(r#""code":"backend_timeout""#), "{reply}");

    client.emit_to("/ext", 4, "subscribe", r#""team:1""#).await;
    assert_eq!(
        client.recv().await,
        r#"43/ext,4[{"ok":true,"room":"team:1","rooms":["team:1","team:1:admins"]}]"#
    );
    client.emit_to("/ext", 5, "subscribe", r#""team:2""#).await;
    assert!(client.recv().await.contains(r#""code":"forbidden""#));
}

#[tokio::test]
async fn events_over_the_rate_limit_are_refused_for_that_socket_only() {
    let server = start("[limits]\nevents_per_sec = 0.5\nevent_burst = 3\n").await;
    let mut alice = connect_pubsub(server.addr, "alice").await;
    let mut bob = connect_pubsub(server.addr, "bob").await;
    for id in 1..=3 {
        alice
            .emit_to("/pubsub", id, "subscribe", r#""topic:news""#)
            .await;
    }
    // `refresh` (a signature to verify) is rate-limited like any event.
    alice
        .emit_to("/pubsub", 4, "refresh", r#"{"token":"not-checked"}"#)
        .await;
    for id in 1..=3 {
        let ack = alice.recv().await;
        assert!(
            ack.starts_with(&format!(r#"43/pubsub,{id}[{{"ok":true"#)),
            "{ack}"
        );
    }
    let refused = alice.recv().await;
    assert!(
        refused.starts_with(r#"43/pubsub,4[{"error":{"code":"rate_limited""#),
        "{refused}"
    );
    // Bob has a bucket of his own, and alice stays connected.
    bob.emit_to("/pubsub", 1, "subscribe", r#""topic:news""#)
        .await;
    assert!(bob.recv().await.starts_with(r#"43/pubsub,1[{"ok":true"#));
    assert_eq!(server.app.engine.stats().sessions, 2);
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.body;
    assert_eq!(
        sample(
            &metrics,
            "switchboard_events_rate_limited_total{namespace=\"/pubsub\"}"
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn subscriptions_are_bounded_in_number_and_room_length() {
    // A socket starts in one room: user:alice.
    let server = start("[limits]\nmax_rooms_per_socket = 2\nmax_room_len = 16\n").await;
    let mut alice = connect_pubsub(server.addr, "alice").await;
    let long = format!("\"topic:{}\"", "x".repeat(20));
    alice.emit_to("/pubsub", 1, "subscribe", &long).await;
    let ack = alice.recv().await;
    assert!(ack.contains(r#""code":"bad_request""#), "{ack}");
    alice
        .emit_to("/pubsub", 2, "subscribe", r#""topic:a""#)
        .await;
    assert!(alice.recv().await.starts_with(r#"43/pubsub,2[{"ok":true"#));
    // Subscribing again to a room it is in takes no new place.
    alice
        .emit_to("/pubsub", 6, "subscribe", r#""topic:a""#)
        .await;
    assert!(alice.recv().await.starts_with(r#"43/pubsub,6[{"ok":true"#));
    alice
        .emit_to("/pubsub", 3, "subscribe", r#""topic:b""#)
        .await;
    let ack = alice.recv().await;
    assert!(ack.contains(r#""code":"too_many_rooms""#), "{ack}");
    // Leaving one makes room again.
    alice
        .emit_to("/pubsub", 4, "unsubscribe", r#""topic:a""#)
        .await;
    assert!(alice.recv().await.starts_with(r#"43/pubsub,4[{"ok":true"#));
    alice
        .emit_to("/pubsub", 5, "subscribe", r#""topic:b""#)
        .await;
    assert!(alice.recv().await.starts_with(r#"43/pubsub,5[{"ok":true"#));
}
