//! The operator endpoints — `/metrics` and the detail of `/readyz` — kept
//! off the public listener (`server.admin_listen`) or behind a bearer token
//! (`server.metrics_token`), and usable under load on the public side: the
//! admin listener has its own connection bound, and `/readyz` requests
//! share their store check.

use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NAMESPACE: &str = "[[namespaces]]\nname = \"/\"\nhandler = \"echo\"\n";

fn json(response: &HttpResponse) -> serde_json::Value {
    assert_eq!(
        response.headers["content-type"], "application/json",
        "{}",
        response.body
    );
    serde_json::from_str(&response.body).unwrap()
}

#[tokio::test]
async fn with_an_admin_listener_the_public_one_hides_metrics_and_readiness_detail() {
    let server = start_raw(&format!(
        "[server]\nadmin_listen = \"127.0.0.1:0\"\n[api]\nkeys = [\"k\"]\n{NAMESPACE}"
    ))
    .await;
    let admin = server.admin.expect("an admin listener");
    // Public: /metrics is not there, /readyz tells the status only.
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 404);
    assert_eq!(json(&metrics)["error"]["code"], "not_found");
    let ready = http(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200);
    assert_eq!(json(&ready), serde_json::json!({"status": "ready"}));
    // The rest of the public listener is unchanged.
    assert_eq!(
        http(server.addr, "GET", "/healthz", &[], "").await.status,
        200
    );
    let (client, _) = Client::connect(server.addr).await;
    drop(client);
    let response = http(
        server.addr,
        "POST",
        "/api/v1/publish",
        &[("Authorization", "Bearer k")],
        r#"{"event":"x","users":["a"]}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    // Admin: the metrics and the detail.
    let metrics = http(admin, "GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("switchboard_connections"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("switchboard_api_requests_total{status=\"200\"} 1\n"),
        "{}",
        metrics.body
    );
    let ready = json(&http(admin, "GET", "/readyz", &[], "").await);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"]["backend"], "sqlite");
    // …and nothing else: no Engine.IO, no API.
    let engine = http(admin, "GET", "/socket.io/?EIO=4&transport=polling", &[], "").await;
    assert_eq!(engine.status, 404);
    let api = http(
        admin,
        "POST",
        "/api/v1/publish",
        &[("Authorization", "Bearer k")],
        "{}",
    )
    .await;
    assert_eq!(api.status, 404);
}

#[tokio::test]
async fn a_metrics_token_guards_metrics_and_readiness_detail() {
    let server = start_raw(&format!(
        "[server]\nmetrics_token = \"m-token\"\n{NAMESPACE}"
    ))
    .await;
    assert!(server.admin.is_none());
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "Bearer m-toke")],
    ] {
        let metrics = http(server.addr, "GET", "/metrics", &headers, "").await;
        assert_eq!(metrics.status, 401, "{headers:?}");
        assert_eq!(json(&metrics)["error"]["code"], "unauthorized");
        let ready = http(server.addr, "GET", "/readyz", &headers, "").await;
        assert_eq!(
            (ready.status, json(&ready)),
            (200, serde_json::json!({"status": "ready"}))
        );
    }
    let token = [("Authorization", "Bearer m-token")];
    let metrics = http(server.addr, "GET", "/metrics", &token, "").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("switchboard_sockets"),
        "{}",
        metrics.body
    );
    let ready = json(&http(server.addr, "GET", "/readyz", &token, "").await);
    assert_eq!(ready["store"]["backend"], "sqlite", "{ready}");
}

#[tokio::test]
async fn the_token_applies_on_the_admin_listener_too() {
    let server = start_raw(&format!(
        "[server]\nadmin_listen = \"127.0.0.1:0\"\nmetrics_token = \"t\"\n{NAMESPACE}"
    ))
    .await;
    let admin = server.admin.unwrap();
    assert_eq!(http(admin, "GET", "/metrics", &[], "").await.status, 401);
    assert_eq!(
        http(
            admin,
            "GET",
            "/metrics",
            &[("Authorization", "Bearer t")],
            ""
        )
        .await
        .status,
        200
    );
    // Public: not there at all, token or not.
    assert_eq!(
        http(
            server.addr,
            "GET",
            "/metrics",
            &[("Authorization", "Bearer t")],
            ""
        )
        .await
        .status,
        404
    );
}

/// A kept-alive connection that has been served once (so it holds a slot
/// of `server.max_tcp_connections`), then left idle.
async fn held_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // The whole response: headers, then the small JSON body.
    while !String::from_utf8_lossy(&seen).contains("\"ok\"}") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the public listener answers")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    stream
}

#[tokio::test]
async fn idle_public_connections_do_not_starve_the_admin_listener() {
    let server = start_raw(&format!(
        "[server]\nadmin_listen = \"127.0.0.1:0\"\nmax_tcp_connections = 2\n{NAMESPACE}"
    ))
    .await;
    let admin = server.admin.expect("an admin listener");
    // Both public slots are taken by idle connections.
    let _held = [
        held_connection(server.addr).await,
        held_connection(server.addr).await,
    ];
    // The operator is still served (`http` fails after its own timeout).
    let metrics = tokio::time::timeout(
        Duration::from_secs(10),
        http(admin, "GET", "/metrics", &[], ""),
    )
    .await
    .expect("the admin listener answers while the public one is full");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("switchboard_connections"));
    let ready = http(admin, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}

#[tokio::test]
async fn concurrent_readyz_requests_share_one_store_ping() {
    let server = start_raw(NAMESPACE).await;
    let pings = || async {
        let metrics = http(server.addr, "GET", "/metrics", &[], "").await.body;
        sample(
            &metrics,
            "switchboard_store_query_seconds_count{backend=\"sqlite\"}",
        )
    };
    let before = pings().await;
    let requests = (0..50).map(|_| http(server.addr, "GET", "/readyz", &[], ""));
    for ready in futures_util::future::join_all(requests).await {
        assert_eq!(ready.status, 200, "{}", ready.body);
        assert!(ready.body.contains("\"ready\""), "{}", ready.body);
    }
    let queries = pings().await - before;
    // One ping, or a few if the requests spread over more than the cache
    // period on a loaded machine; today's code made one per request.
    assert!(
        (1.0..=3.0).contains(&queries),
        "{queries} store queries for 50 /readyz"
    );
}
