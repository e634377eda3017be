//! Engine.IO and Socket.IO behaviour over the wire: request errors, CORS,
//! payload limits, malformed input, ordering, the events a socket has
//! waiting behind a busy handler (in number and in bytes,
//! `socketio.max_pending_bytes`), slow consumers, shutdown (the connection
//! limits are in `admission.rs`).

use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test]
async fn request_errors_use_the_reference_codes() {
    let server = start("").await;
    let addr = server.addr;
    let cases = [
        (
            "GET",
            "/socket.io/?EIO=4&transport=carrier-pigeon",
            0,
            "Transport unknown",
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            1,
            "Session ID unknown",
        ),
        (
            "POST",
            "/socket.io/?EIO=4&transport=polling",
            2,
            "Bad handshake method",
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=websocket",
            3,
            "Bad request",
        ),
        (
            "GET",
            "/socket.io/?EIO=3&transport=polling",
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            "/socket.io/?transport=polling",
            5,
            "Unsupported protocol version",
        ),
    ];
    for (method, path, code, message) in cases {
        let response = http(addr, method, path, &[], "").await;
        assert_eq!(response.status, 400, "{method} {path}");
        assert_eq!(response.headers["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": code, "message": message}),
            "{path}"
        );
    }
    let response = http(addr, "GET", "/elsewhere", &[], "").await;
    assert_eq!(response.status, 404);
}

#[tokio::test]
async fn cors_allows_configured_and_same_origins_only() {
    let server = start("[engine]\ncors_origins = [\"https://app.example.com\"]").await;
    let addr = server.addr;
    let path = "/socket.io/?EIO=4&transport=polling";

    let allowed = http(
        addr,
        "GET",
        path,
        &[("Origin", "https://app.example.com")],
        "",
    )
    .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(allowed.headers["access-control-allow-credentials"], "true");

    let foreign = http(addr, "GET", path, &[("Origin", "https://evil.example")], "").await;
    assert_eq!(foreign.status, 403);
    assert_eq!(error_code(&foreign), 4);
    assert!(!foreign.headers.contains_key("access-control-allow-origin"));

    let same = http(
        addr,
        "GET",
        path,
        &[("Origin", &format!("http://{addr}"))],
        "",
    )
    .await;
    assert_eq!(same.status, 200);

    let preflight = http(
        addr,
        "OPTIONS",
        path,
        &[
            ("Origin", "https://app.example.com"),
            ("Access-Control-Request-Headers", "x-token"),
        ],
        "",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.headers["access-control-allow-headers"], "x-token");
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
}

#[tokio::test]
async fn polling_body_over_max_payload_is_refused_and_closes_the_session() {
    let server = start("[engine]\nmax_payload = 1000").await;
    let addr = server.addr;
    let open = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], "").await;
    let sid = serde_json::from_str::<serde_json::Value>(&open.body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let big = format!("4{}", "x".repeat(2000));
    let response = http(addr, "POST", &path, &[], &big).await;
    assert_eq!(response.status, 413);
    let after = http(addr, "GET", &path, &[], "").await;
    assert_eq!(after.status, 400);
    assert_eq!(error_code(&after), 1);
}

/// A polling session is pinged `ping_interval` after its pong, also when
/// `ping_timeout` is the longer (the heartbeat used to sleep to the pong's
/// deadline, so every other ping came `ping_timeout` late, with little
/// time left to answer it).
#[tokio::test]
async fn a_polling_session_is_pinged_every_interval_after_its_pong() {
    let server = start("[engine]\nping_interval_ms = 100\nping_timeout_ms = 4000").await;
    let addr = server.addr;
    let open = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], "").await;
    let sid = serde_json::from_str::<serde_json::Value>(&open.body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    for round in 0..4 {
        let started = std::time::Instant::now();
        let ping = http(addr, "GET", &path, &[], "").await;
        let waited = started.elapsed();
        assert_eq!(ping.body, "2", "round {round}");
        assert!(
            waited < std::time::Duration::from_millis(1000),
            "round {round}: the ping came after {waited:?}"
        );
        assert_eq!(http(addr, "POST", &path, &[], "3").await.body, "ok");
    }
}

#[tokio::test]
async fn malformed_packets_close_only_the_sender() {
    let server = start("").await;
    let (mut bad, _) = Client::connect(server.addr).await;
    let (mut good, _) = Client::connect(server.addr).await;
    for garbage in ["abc", "42{}", r#"42abc["echo"]"#, "4", "47"] {
        let (mut victim, _) = Client::connect(server.addr).await;
        victim.send(garbage).await;
        assert!(
            closed_by_server(&mut victim.ws).await,
            "{garbage:?} did not close the session"
        );
    }
    bad.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert!(
        closed_by_server(&mut bad.ws).await,
        "stray binary did not close the session"
    );
    good.emit(1, "echo", r#""still here""#).await;
    assert_eq!(good.recv().await, r#"431["still here"]"#);
}

#[tokio::test]
async fn socket_ids_are_not_engine_session_ids() {
    let server = start("").await;
    let (mut client, socket_id) = Client::connect(server.addr).await;
    assert_ne!(socket_id, client.engine_sid);
    client.send("40/a,").await;
    let reply = client.recv().await;
    let a_id = serde_json::from_str::<serde_json::Value>(&reply["40/a,".len()..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(a_id, socket_id);
    assert_ne!(a_id, client.engine_sid);
}

#[tokio::test]
async fn a_waiting_handler_delays_its_own_socket_only() {
    let server = start("").await;
    let (mut slow, _) = Client::connect(server.addr).await;
    let (mut other, _) = Client::connect(server.addr).await;
    // The slow socket's next event queues behind its sleeping handler…
    slow.emit(1, "sleep", "400").await;
    slow.emit(2, "echo", r#""after""#).await;
    // …while another socket is served at once.
    other.emit(7, "echo", r#""now""#).await;
    assert_eq!(other.recv().await, r#"437["now"]"#);
    assert_eq!(slow.recv().await, r#"431[{"ok":true,"slept_ms":400}]"#);
    assert_eq!(slow.recv().await, r#"432["after"]"#);
}

#[tokio::test]
async fn too_many_events_waiting_behind_a_handler_close_that_connection_only() {
    let server = start("[socketio]\nmax_pending_events = 4\n").await;
    let (mut flooder, _) = Client::connect(server.addr).await;
    let (mut other, _) = Client::connect(server.addr).await;
    flooder.emit(1, "sleep", "3000").await;
    // Well past the limit: the connection closes, counted once.
    for id in 2..=20 {
        flooder.emit(id, "echo", r#""more""#).await;
    }
    assert!(closed_by_server(&mut flooder.ws).await);
    other.emit(7, "echo", r#""still here""#).await;
    assert_eq!(other.recv().await, r#"437["still here"]"#);
    assert_eq!(inbox_overflows(server.addr).await, 1.0);
}

#[tokio::test]
async fn a_full_queue_disconnects_the_slow_consumer_and_spares_the_others() {
    let server = start("[engine]\nmax_queued_frames = 16").await;
    let (mut stalled, _) = Client::connect(server.addr).await;
    stalled.emit(1, "join", r#""news""#).await;
    assert_eq!(stalled.recv().await, r#"431[{"ok":true}]"#);
    let (mut publisher, _) = Client::connect(server.addr).await;
    // `stalled` stops reading; the kernel buffers fill, then its queue.
    publish_until_slow_consumer(&server, &mut publisher, 2_000).await;
    // The publisher keeps being served.
    publisher.emit(1, "echo", "1").await;
    assert_eq!(publisher.recv().await, "431[1]");
    assert!(closed_by_server(&mut stalled.ws).await);
    // Operators see it.
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await;
    assert!(
        metrics
            .body
            .contains("\nswitchboard_slow_consumer_disconnects_total 1\n"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn volatile_packets_are_dropped_for_a_slow_consumer_instead() {
    let server = start("[engine]\nmax_queued_frames = 16").await;
    let (stalled, _) = Client::connect(server.addr).await;
    let (mut publisher, _) = Client::connect(server.addr).await;
    let chunk = "z".repeat(64 * 1024);
    let mut id = 10;
    while server.app.engine.stats().volatile_dropped == 0 {
        assert!(id < 2_000, "no volatile packet was ever dropped");
        publisher
            .emit(
                id,
                "broadcast",
                &format!(r#"{{"event":"v","volatile":true,"others":true,"data":"{chunk}"}}"#),
            )
            .await;
        publisher.recv().await;
        id += 1;
    }
    assert_eq!(server.app.engine.stats().slow_consumer_disconnects, 0);
    assert_eq!(server.app.engine.stats().sessions, 2);
    drop(stalled);
}

#[tokio::test]
async fn shutdown_closes_sessions_and_returns() {
    let mut server = start("[server]\nshutdown_grace_ms = 3000").await;
    let (mut client, _) = Client::connect(server.addr).await;
    server.stop.take().unwrap().send(()).unwrap();
    assert!(closed_by_server(&mut client.ws).await);
    let result = tokio::time::timeout(WAIT, server.task)
        .await
        .expect("shutdown hung");
    result.unwrap().unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_polling_clients() {
    let mut server = start("[server]\nshutdown_grace_ms = 30000").await;
    let open = http(
        server.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        "",
    )
    .await;
    assert_eq!(open.status, 200);
    assert_eq!(server.app.engine.stats().sessions, 1);
    server.stop.take().unwrap().send(()).unwrap();
    let result = tokio::time::timeout(WAIT, server.task)
        .await
        .expect("shutdown waited for an idle poller");
    result.unwrap().unwrap();
}

#[tokio::test]
async fn a_second_connect_to_a_namespace_replaces_the_socket() {
    let server = start("").await;
    let (mut client, first) = Client::connect(server.addr).await;
    client.send("40").await;
    let reply = client.recv().await;
    assert!(
        reply.starts_with("40{") && !reply.contains(&first),
        "{reply}"
    );
    let ns = server.app.io.of("/").unwrap();
    assert_eq!(ns.len(), 1, "the replaced socket is still registered");
    client.emit(1, "echo", "2").await;
    assert_eq!(client.recv().await, "431[2]");
}

#[tokio::test]
async fn big_events_waiting_behind_a_handler_close_that_connection_at_the_byte_bound() {
    // The count bound (1024 by default) is far away: only bytes can trip.
    let server = start("[socketio]\nmax_pending_bytes = 200000\n").await;
    let (mut flooder, _) = Client::connect(server.addr).await;
    let (mut other, _) = Client::connect(server.addr).await;
    flooder.emit(1, "sleep", "3000").await;
    let big = format!(r#""{}""#, "x".repeat(50_000));
    // 5 events of 50 KB pass 200 KB; 20 are far past it and far below 1024.
    for id in 2..=20 {
        flooder.emit(id, "echo", &big).await;
    }
    assert!(closed_by_server(&mut flooder.ws).await);
    other.emit(7, "echo", r#""still here""#).await;
    assert_eq!(other.recv().await, r#"437["still here"]"#);
    assert_eq!(inbox_overflows(server.addr).await, 1.0);
}

#[tokio::test]
async fn events_under_the_byte_bound_and_one_bigger_event_alone_still_wait_their_turn() {
    let server = start("[socketio]\nmax_pending_bytes = 200000\n").await;
    let (mut client, _) = Client::connect(server.addr).await;
    // Many big events in turn, well past the bound in total: none waits.
    let big = format!(r#""{}""#, "x".repeat(50_000));
    for id in 1..=10 {
        client.emit(id, "echo", &big).await;
        assert_eq!(client.recv().await, format!("43{id}[{big}]"));
    }
    // One event bigger than the bound, alone behind a busy handler, waits
    // its turn (it is within max_payload): the bound never refuses the
    // first event in the queue.
    let huge = format!(r#""{}""#, "y".repeat(300_000));
    client.emit(20, "sleep", "200").await;
    client.emit(21, "echo", &huge).await;
    assert_eq!(client.recv().await, r#"4320[{"ok":true,"slept_ms":200}]"#);
    assert_eq!(client.recv().await, format!("4321[{huge}]"));
    client.emit(22, "echo", r#""after""#).await;
    assert_eq!(client.recv().await, r#"4322["after"]"#);
    assert_eq!(inbox_overflows(server.addr).await, 0.0);
}
