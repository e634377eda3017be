//! Trust between the hub, its backends and its operators, over the wire:
//! every request to a proxy namespace's backend is signed (HMAC-SHA256 of
//! `timestamp.body`), a backend's error text reaches the log and never the
//! clients, and the test kit (any client joins any room) runs only in a
//! configuration that says it is a test setup.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::fake_http;
use crate::common::*;

/// One request the backend received.
struct Seen {
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

const LEAK: &str = "password=hunter2 host=10.0.0.5";

/// A backend that reports every request it receives and answers by event:
/// `boom` with HTTP 500 and an error text a client must not see, `garbage`
/// with HTTP 200 and HTML, anything else with `{"handled": event}`.
async fn start_backend() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = fake_http::serve(None, move |request, body| {
        let call: Value = serde_json::from_slice(&body).unwrap();
        let _ = tx.send(Seen {
            headers: request.headers,
            body: body.clone(),
        });
        let (status, answer) = match call["event"].as_str().unwrap() {
            "boom" => (
                500,
                format!(r#"{{"error":"SQL failed: {LEAK}","trace":"at db.js:42"}}"#),
            ),
            "garbage" => (200, format!("<html>{LEAK}</html>")),
            "subscribe" => (200, json!({"rooms": [call["data"]]}).to_string()),
            event => (200, json!({"handled": event}).to_string()),
        };
        async move { fake_http::respond(status, answer) }
    })
    .await;
    (addr, rx)
}

/// A hub with a proxy namespace `/ext` to `backend`, signed with `secret`
/// when given.
async fn start_hub(backend: SocketAddr, secret: Option<&str>) -> RawServer {
    let secret = secret.map_or(String::new(), |s| format!("backend_secret = {s:?}\n"));
    start_raw(&format!(
        "[auth]\nhs256_secret = \"test-secret\"\n\
         [[namespaces]]\nname = \"/ext\"\nhandler = \"proxy\"\nauth = true\n\
         backend = \"http://{backend}/events\"\nbackend_timeout_ms = 2000\n{secret}"
    ))
    .await
}

async fn connect_ext(addr: SocketAddr, user: &str) -> Client {
    let mut client = Client::open(addr).await;
    client
        .send(&format!(r#"40/ext,{{"token":"{}"}}"#, token(user, 60)))
        .await;
    let reply = client.recv().await;
    assert!(reply.starts_with("40/ext,{"), "{reply}");
    client
}

/// What a backend does with a request: the timestamp is recent and the
/// signature is the HMAC of `timestamp.body` with the secret.
fn backend_accepts(secret: &str, headers: &http::HeaderMap, body: &[u8]) -> bool {
    let Some(timestamp) = headers
        .get("x-switchboard-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return false;
    };
    let Some(signature) = headers
        .get("x-switchboard-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let tolerance = 300;
    hub::identity::now_secs().abs_diff(timestamp) <= tolerance
        && hub::signature::verify(secret.as_bytes(), timestamp, body, signature)
}

#[tokio::test]
async fn every_request_to_a_backend_is_signed_with_its_secret() {
    let (backend, mut seen) = start_backend().await;
    let server = start_hub(backend, Some("whsec_backend_1")).await;
    let mut client = connect_ext(server.addr, "erin").await;

    client.emit_to("/ext", 1, "greet", r#"{"x":1}"#).await;
    assert_eq!(
        client.recv().await,
        r#"43/ext,1[{"handled":"greet","ok":true}]"#
    );
    client.emit_to("/ext", 2, "subscribe", r#""team:1""#).await;
    assert!(client.recv().await.contains(r#""ok":true"#));
    for event in ["greet", "subscribe"] {
        let request = seen.recv().await.unwrap();
        let call: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(call["event"], event);
        assert!(
            request.headers["x-switchboard-signature"]
                .to_str()
                .unwrap()
                .starts_with("sha256="),
            "{:?}",
            request.headers
        );
        assert!(
            backend_accepts("whsec_backend_1", &request.headers, &request.body),
            "{event}: the signature does not verify"
        );
        // What a backend refuses: another secret, a changed body, a replay
        // from long ago with its old signature.
        assert!(!backend_accepts(
            "another-secret",
            &request.headers,
            &request.body
        ));
        let mut tampered = request.body.to_vec();
        let at = tampered.iter().position(|b| *b == b'e').unwrap();
        tampered[at] = b'E';
        assert!(!backend_accepts(
            "whsec_backend_1",
            &request.headers,
            &tampered
        ));
        let mut replayed = request.headers.clone();
        let old = hub::identity::now_secs() - 3600;
        replayed.insert("x-switchboard-timestamp", old.into());
        assert!(!backend_accepts(
            "whsec_backend_1",
            &replayed,
            &request.body
        ));
    }
}

#[tokio::test]
async fn without_a_secret_requests_are_unsigned_and_start_warns() {
    let logs = Logs::capture();
    let (backend, mut seen) = start_backend().await;
    let server = start_hub(backend, None).await;
    assert!(logs.text().contains("no backend_secret"), "{}", logs.text());
    let mut client = connect_ext(server.addr, "erin").await;
    client.emit_to("/ext", 1, "greet", "").await;
    client.recv().await;
    let request = seen.recv().await.unwrap();
    assert!(!request.headers.contains_key("x-switchboard-signature"));
}

#[tokio::test]
async fn a_backend_error_text_is_logged_never_sent_to_the_client() {
    let logs = Logs::capture();
    let (backend, _seen) = start_backend().await;
    let server = start_hub(backend, Some("whsec")).await;
    let mut client = connect_ext(server.addr, "erin").await;
    let generic = r#"{"code":"backend_error","message":"the backend could not handle the event"}"#;

    client.emit_to("/ext", 1, "boom", "").await;
    let reply = client.recv().await;
    assert_eq!(
        reply,
        format!(r#"43/ext,1[{{"error":{generic},"ok":false}}]"#)
    );
    assert!(
        !reply.contains("hunter2") && !reply.contains("500"),
        "{reply}"
    );

    client.emit_to("/ext", 2, "garbage", "").await;
    let reply = client.recv().await;
    assert_eq!(
        reply,
        format!(r#"43/ext,2[{{"error":{generic},"ok":false}}]"#)
    );

    // The operator sees what happened.
    let log = logs.text();
    assert!(
        log.contains("500 Internal Server Error") && log.contains("SQL failed: password=hunter2"),
        "{log}"
    );
    assert!(log.contains("<html>password=hunter2"), "{log}");
}

#[tokio::test]
async fn an_unreachable_backend_gets_a_generic_message() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = closed.local_addr().unwrap();
    drop(closed);
    let server = start_hub(backend, Some("whsec")).await;
    let mut client = connect_ext(server.addr, "erin").await;
    client.emit_to("/ext", 1, "greet", "").await;
    assert_eq!(
        client.recv().await,
        r#"43/ext,1[{"error":{"code":"backend_unavailable","message":"the backend is unavailable"},"ok":false}]"#
    );
}

#[tokio::test]
async fn the_test_kit_runs_only_in_a_configuration_that_says_it_is_a_test_setup() {
    let logs = Logs::capture();
    let testkit = "[[namespaces]]\nname = \"/\"\nhandler = \"testkit\"\n";
    let error = try_start_raw(testkit).await.err().expect("testkit started");
    let text = format!("{error:#}");
    assert!(
        text.contains("testkit") && text.contains("test_setup = true"),
        "{text}"
    );

    let server = start_raw(&format!("test_setup = true\n{testkit}")).await;
    assert!(
        logs.text()
            .contains("testkit handler: any client may join any room"),
        "{}",
        logs.text()
    );
    let (mut client, _) = Client::connect(server.addr).await;
    client.emit(1, "join", r#""anything""#).await;
    assert_eq!(client.recv().await, r#"431[{"ok":true}]"#);
}
