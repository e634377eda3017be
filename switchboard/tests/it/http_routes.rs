//! The HTTP routes beside Engine.IO (axum and tower-http): JSON bodies on
//! every error, the body limit on streamed bodies, compression, CORS for the
//! API when configured, and Engine.IO still on the same listener.

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"
[api]
keys = ["k"]
max_body_bytes = 100
cors_origins = ["https://app.example"]

[[namespaces]]
name = "/"
handler = "echo"
"#;

#[tokio::test]
async fn errors_of_the_router_itself_have_json_bodies() {
    let server = start_raw(CONFIG).await;
    let key = [("Authorization", "Bearer k")];
    let wrong_method = http(server.addr, "DELETE", "/api/v1/publish", &key, "").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["content-type"], "application/json");
    assert!(
        wrong_method.body.contains(r#""code":"method_not_allowed""#),
        "{}",
        wrong_method.body
    );
    let unknown = http(server.addr, "GET", "/nope", &[], "").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains(r#""code":"not_found""#));
    // Over the limit as announced: refused before the body is read.
    let big = format!(
        r#"{{"event":"x","users":["a"],"data":"{}"}}"#,
        "z".repeat(200)
    );
    let response = http(server.addr, "POST", "/api/v1/publish", &key, &big).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.headers["content-type"], "application/json");
    assert!(
        response.body.contains(r#""code":"too_large""#),
        "{}",
        response.body
    );
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_refused_with_413() {
    let server = start_raw(CONFIG).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let chunk = "z".repeat(80);
    let request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\
         Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#""code":"too_large""#), "{text}");
}

#[tokio::test]
async fn responses_are_compressed_when_the_client_accepts_it() {
    let server = start_raw(CONFIG).await;
    let plain = http(server.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    assert!(!plain.headers.contains_key("content-encoding"));
    let gzip = http(
        server.addr,
        "GET",
        "/api/v1/openapi.json",
        &[("Accept-Encoding", "gzip")],
        "",
    )
    .await;
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.headers["content-encoding"], "gzip");
}

#[tokio::test]
async fn the_api_answers_cors_preflights_for_configured_origins() {
    let server = start_raw(CONFIG).await;
    let preflight = http(
        server.addr,
        "OPTIONS",
        "/api/v1/publish",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        "",
    )
    .await;
    assert_eq!(preflight.status, 200, "{}", preflight.body);
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "https://app.example"
    );
    let response = http(
        server.addr,
        "POST",
        "/api/v1/publish",
        &[
            ("Origin", "https://app.example"),
            ("Authorization", "Bearer k"),
        ],
        r#"{"event":"x","users":["a"]}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers["access-control-allow-origin"],
        "https://app.example"
    );
    // Another origin is not allowed.
    let other = http(
        server.addr,
        "OPTIONS",
        "/api/v1/publish",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .await;
    assert!(!other.headers.contains_key("access-control-allow-origin"));
    // Engine.IO still shares the listener.
    let (_client, sid) = Client::connect(server.addr).await;
    assert!(!sid.is_empty());
}
