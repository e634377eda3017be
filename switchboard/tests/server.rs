//! Black-box tests of the server over the wire: a real server on
//! `127.0.0.1:0`, raw HTTP and WebSocket clients speaking the protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard::config::Config;
use switchboard::server::{self, App};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

struct TestServer {
    addr: SocketAddr,
    app: App,
    /// Its `data_dir` (config file, SQLite store).
    dir: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts a server with the test kit on `/` and `/a`, configured by `toml`.
async fn start(toml: &str) -> TestServer {
    let namespaces = r#"
[auth]
hs256_secret = "test-secret"

[api]
keys = ["test-key"]
max_body_bytes = 2000

[[namespaces]]
name = "/secure"
handler = "testkit"
auth = true

[[namespaces]]
name = "/pubsub"
handler = "pubsub"
auth = true

[[namespaces]]
name = "/"
handler = "testkit"
[[namespaces]]
name = "/a"
handler = "testkit"
"#;
    let dir = std::env::temp_dir().join(format!("sb-test-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}\n{toml}\n{namespaces}",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let config = Config::load(Some(&path), Vec::new()).unwrap();
    let app = App::new(&config).await.unwrap();
    let listeners = server::bind(&config.listen).await.unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let app = app.clone();
        async move {
            server::run(listeners, &config, app, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    TestServer {
        addr,
        app,
        dir,
        stop: Some(stop),
        task,
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (std::process::id() as u64) << 32
}

struct HttpResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A raw Socket.IO client over WebSocket.
struct Client {
    ws: Ws,
    engine_sid: String,
}

impl Client {
    async fn open(addr: SocketAddr) -> Client {
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
    async fn connect(addr: SocketAddr) -> (Client, String) {
        let mut client = Client::open(addr).await;
        client.send("40").await;
        let reply = client.recv().await;
        assert!(reply.starts_with("40{"), "{reply}");
        let value: serde_json::Value = serde_json::from_str(&reply[2..]).unwrap();
        (client, value["sid"].as_str().unwrap().to_owned())
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text message that is not a ping (pings are answered).
    async fn recv(&mut self) -> String {
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
    async fn emit_to(&mut self, nsp: &str, id: u64, event: &str, args: &str) {
        let sep = if args.is_empty() { "" } else { "," };
        self.send(&format!(r#"42{nsp},{id}["{event}"{sep}{args}]"#))
            .await;
    }

    /// Emits `event` with `args` (JSON, without brackets) and ack id `id`.
    async fn emit(&mut self, id: u64, event: &str, args: &str) {
        let sep = if args.is_empty() { "" } else { "," };
        self.send(&format!(r#"42{id}["{event}"{sep}{args}]"#)).await;
    }
}

async fn next_text(ws: &mut Ws) -> String {
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
async fn closed_by_server(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn error_code(response: &HttpResponse) -> u64 {
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    body["code"].as_u64().unwrap()
}

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
async fn a_full_queue_disconnects_the_slow_consumer_and_spares_the_others() {
    let server = start("[engine]\nmax_queued_frames = 16").await;
    let (mut stalled, _) = Client::connect(server.addr).await;
    stalled.emit(1, "join", r#""news""#).await;
    assert_eq!(stalled.recv().await, r#"431[{"ok":true}]"#);
    let (mut publisher, _) = Client::connect(server.addr).await;
    // `stalled` stops reading; the kernel buffers fill, then its queue.
    let chunk = "y".repeat(64 * 1024);
    let mut id = 10;
    while server.app.engine.stats().slow_consumer_disconnects == 0 {
        assert!(id < 2_000, "the stalled client was never disconnected");
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
async fn upgraded_websockets_count_against_the_connection_limit() {
    let server = start("[server]\nmax_connections = 2").await;
    let (mut first, _) = Client::connect(server.addr).await;
    let (_second, _) = Client::connect(server.addr).await;
    // A third connection waits for a slot…
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let third = tokio::spawn(tokio_tungstenite::connect_async(url));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beyond the limit"
    );
    // …and gets it when one closes.
    first.ws.close(None).await.unwrap();
    let (mut ws, _) = tokio::time::timeout(WAIT, third)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next_text(&mut ws).await.starts_with('0'));
}

fn token(user: &str, ttl_secs: u64) -> String {
    hub::identity::issue("test-secret", user, Duration::from_secs(ttl_secs)).unwrap()
}

/// Opens a session and sends CONNECT to `/secure` with `auth`; returns the reply.
async fn connect_secure(addr: SocketAddr, auth: &str) -> (Client, String) {
    let mut client = Client::open(addr).await;
    client.send(&format!("40/secure,{auth}")).await;
    let reply = client.recv().await;
    (client, reply)
}

#[tokio::test]
async fn a_valid_token_admits_the_user_into_their_room() {
    let server = start("").await;
    let (mut client, reply) = connect_secure(
        server.addr,
        &format!(r#"{{"token":"{}"}}"#, token("alice", 60)),
    )
    .await;
    assert!(reply.starts_with("40/secure,{\"sid\""), "{reply}");
    client.emit_to("/secure", 1, "rooms", "").await;
    assert_eq!(client.recv().await, r#"43/secure,1[["user:alice"]]"#);
}

#[tokio::test]
async fn a_token_in_the_handshake_query_works_for_legacy_clients() {
    let server = start("").await;
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&token={}",
        server.addr,
        token("bob", 60)
    );
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut client = Client {
        ws,
        engine_sid: String::new(),
    };
    assert!(next_text(&mut client.ws).await.starts_with('0'));
    client.send("40/secure,").await;
    assert!(client.recv().await.starts_with("40/secure,{"));
}

#[tokio::test]
async fn missing_invalid_and_expired_tokens_are_refused_with_their_code() {
    let server = start("").await;
    let expired = expired_token();
    let forged = hub::identity::issue("not-the-secret", "alice", Duration::from_secs(60)).unwrap();
    for (auth, code) in [
        ("".to_owned(), "missing_token"),
        (r#"{"token":"garbage"}"#.to_owned(), "invalid_token"),
        (format!(r#"{{"token":"{forged}"}}"#), "invalid_token"),
        (format!(r#"{{"token":"{expired}"}}"#), "token_expired"),
    ] {
        let (_client, reply) = connect_secure(server.addr, &auth).await;
        let body: serde_json::Value = serde_json::from_str(
            reply
                .strip_prefix("44/secure,")
                .unwrap_or_else(|| panic!("{reply}")),
        )
        .unwrap();
        assert_eq!(body["message"], "unauthorized");
        assert_eq!(body["data"]["code"], code, "{auth}");
    }
}

/// A token signed with the test secret whose `exp` has passed.
fn expired_token() -> String {
    hub::identity::issue_until("test-secret", "alice", hub::identity::now_secs() - 10).unwrap()
}

#[tokio::test]
async fn refresh_extends_the_socket_and_only_for_the_same_user() {
    let server = start("").await;
    let (mut client, _) = connect_secure(
        server.addr,
        &format!(r#"{{"token":"{}"}}"#, token("alice", 60)),
    )
    .await;
    client
        .emit_to(
            "/secure",
            1,
            "refresh",
            &format!(r#"{{"token":"{}"}}"#, token("alice", 3600)),
        )
        .await;
    let reply = client.recv().await;
    assert!(
        reply.starts_with(r#"43/secure,1[{"expires_at":"#) && reply.contains(r#""ok":true"#),
        "{reply}"
    );
    client
        .emit_to(
            "/secure",
            2,
            "refresh",
            &format!(r#"{{"token":"{}"}}"#, token("mallory", 3600)),
        )
        .await;
    let reply = client.recv().await;
    assert!(
        reply.contains(r#""code":"wrong_user""#) && reply.contains(r#""ok":false"#),
        "{reply}"
    );
}

#[tokio::test]
async fn a_socket_whose_token_expires_is_disconnected() {
    let server = start("").await;
    let (mut client, reply) = connect_secure(
        server.addr,
        &format!(r#"{{"token":"{}"}}"#, token("alice", 1)),
    )
    .await;
    assert!(reply.starts_with("40/secure,{"), "{reply}");
    assert_eq!(
        client.recv().await,
        r#"42/secure,["auth:expired",{"code":"token_expired"}]"#
    );
    assert_eq!(client.recv().await, "41/secure,");
}

#[tokio::test]
async fn without_keys_serve_and_token_share_the_development_secret() {
    let dir = std::env::temp_dir().join(format!("sb-dev-secret-{}", rand_suffix()));
    let mut config = Config::load(None, Vec::new()).unwrap();
    config.data_dir = dir.to_string_lossy().into_owned();
    config.listen = vec!["127.0.0.1:0".to_owned()];
    config.namespaces[0].auth = true;
    // What `switchboard token` signs with…
    let secret = server::signing_secret(&config).unwrap();
    let token = hub::identity::issue(&secret, "dana", Duration::from_secs(60)).unwrap();
    // …is what `switchboard serve` verifies with.
    let app = App::new(&config).await.unwrap();
    let listeners = server::bind(&config.listen).await.unwrap();
    let addr = listeners[0].local_addr().unwrap();
    tokio::spawn(async move { server::run(listeners, &config, app, std::future::pending()).await });
    let mut client = Client::open(addr).await;
    client.send(&format!(r#"40{{"token":"{token}"}}"#)).await;
    assert!(client.recv().await.starts_with("40{"));
    let mut stranger = Client::open(addr).await;
    let forged = hub::identity::issue("another-secret", "dana", Duration::from_secs(60)).unwrap();
    stranger.send(&format!(r#"40{{"token":"{forged}"}}"#)).await;
    assert!(stranger.recv().await.starts_with("44{"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn health_and_metrics_report_connections_and_sockets() {
    let server = start("").await;
    let health = http(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    let (_client, _) = Client::connect(server.addr).await;
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    assert!(
        metrics.body.contains("\nswitchboard_connections 1\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("\nswitchboard_sockets{namespace=\"/\"} 1\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("\nswitchboard_sockets{namespace=\"/a\"} 0\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("# TYPE switchboard_slow_consumer_disconnects_total counter")
    );
}

async fn connect_pubsub(addr: SocketAddr, user: &str) -> Client {
    let mut client = Client::open(addr).await;
    client
        .send(&format!(r#"40/pubsub,{{"token":"{}"}}"#, token(user, 60)))
        .await;
    let reply = client.recv().await;
    assert!(reply.starts_with("40/pubsub,{"), "{reply}");
    client
}

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

const KEY: (&str, &str) = ("Authorization", "Bearer test-key");

async fn api(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let response = http(
        addr,
        method,
        path,
        &[KEY, ("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(response.headers["content-type"], "application/json");
    (
        response.status,
        serde_json::from_str(&response.body).unwrap(),
    )
}

#[tokio::test]
async fn the_api_refuses_missing_keys_and_bad_input_with_json_errors() {
    let server = start("").await;
    let addr = server.addr;
    let body = r#"{"event":"x","users":["a"]}"#;
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("X-Api-Key", "test-ke")],
    ] {
        let response = http(addr, "POST", "/api/v1/publish", &headers, body).await;
        assert_eq!(response.status, 401);
        assert!(response.body.contains(r#""code":"unauthorized""#));
    }
    let cases = [
        ("{not json", 400, "invalid_json"),
        (r#"{"event":"x"}"#, 422, "invalid_request"),
        (r#"{"event":"","users":["a"]}"#, 422, "invalid_request"),
        (
            r#"{"event":"disconnect","users":["a"]}"#,
            422,
            "invalid_request",
        ),
        (
            r#"{"event":"x","users":["a"],"surprise":1}"#,
            422,
            "invalid_request",
        ),
        (r#"{"event":"x","users":"a"}"#, 422, "invalid_request"),
        (r#"{"event":"x","broadcast":true}"#, 422, "invalid_request"),
        (
            r#"{"event":"x","users":["a"],"namespace":"/nope"}"#,
            404,
            "unknown_namespace",
        ),
    ];
    for (body, status, code) in cases {
        let (got, json) = api(addr, "POST", "/api/v1/publish", body).await;
        assert_eq!(
            (got, json["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert_eq!(json["ok"], false);
    }
    let big = format!(
        r#"{{"event":"x","users":["a"],"data":"{}"}}"#,
        "z".repeat(3000)
    );
    let (status, json) = api(addr, "POST", "/api/v1/publish", &big).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    let (status, _) = api(addr, "GET", "/api/v1/publish", "").await;
    assert_eq!(status, 405);
    // X-Api-Key works too.
    let response = http(
        addr,
        "POST",
        "/api/v1/publish",
        &[("X-Api-Key", "test-key")],
        body,
    )
    .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn a_publish_to_a_user_reaches_every_socket_of_that_user_and_nobody_else() {
    let server = start("").await;
    let addr = server.addr;
    // Alice on two devices, each in two namespaces; Bob in one.
    let mut devices = Vec::new();
    for _ in 0..2 {
        let mut device = connect_pubsub(addr, "alice").await;
        device
            .send(&format!(
                r#"40/secure,{{"token":"{}"}}"#,
                token("alice", 60)
            ))
            .await;
        assert!(device.recv().await.starts_with("40/secure,{"));
        devices.push(device);
    }
    let mut bob = connect_pubsub(addr, "bob").await;
    let (status, json) = api(
        addr,
        "POST",
        "/api/v1/publish",
        r#"{"event":"notification","users":["alice"],"data":{"n":1}}"#,
    )
    .await;
    assert_eq!((status, json["delivered"].as_u64()), (200, Some(4)));
    for device in &mut devices {
        let mut got = vec![device.recv().await, device.recv().await];
        got.sort();
        assert_eq!(
            got,
            [
                r#"42/pubsub,["notification",{"n":1}]"#,
                r#"42/secure,["notification",{"n":1}]"#
            ]
        );
    }
    // Bob got nothing: the next thing he sees is the answer to his own event.
    bob.emit_to("/pubsub", 5, "subscribe", r#""topic:x""#).await;
    assert_eq!(
        bob.recv().await,
        r#"43/pubsub,5[{"ok":true,"room":"topic:x","rooms":["topic:x"]}]"#
    );
}

#[tokio::test]
async fn the_api_publishes_to_rooms_counts_them_and_disconnects_users() {
    let server = start("").await;
    let addr = server.addr;
    let mut alice = connect_pubsub(addr, "alice").await;
    alice
        .emit_to("/pubsub", 1, "subscribe", r#""topic:news""#)
        .await;
    alice.recv().await;
    let (status, json) = api(
        addr,
        "GET",
        "/api/v1/rooms/topic%3Anews?namespace=%2Fpubsub",
        "",
    )
    .await;
    assert_eq!((status, json["sockets"].as_u64()), (200, Some(1)));
    let (_, json) = api(
        addr,
        "POST",
        "/api/v1/publish",
        r#"{"event":"message","rooms":["topic:news"],"namespace":"/pubsub","data":"hi"}"#,
    )
    .await;
    assert_eq!(json["delivered"], 1);
    assert_eq!(
        alice.recv().await,
        r#"42/pubsub,["message",{"data":"hi","room":"topic:news"}]"#
    );
    let (_, json) = api(addr, "POST", "/api/v1/disconnect", r#"{"user":"alice"}"#).await;
    assert_eq!(json["disconnected"], 1);
    assert_eq!(alice.recv().await, "41/pubsub,");
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
async fn the_openapi_document_describes_the_api() {
    let server = start("").await;
    let response = http(server.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    assert_eq!(response.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/publish",
        "/api/v1/disconnect",
        "/api/v1/rooms/{room}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_api_reports_presence_over_all_of_a_users_sockets() {
    let server = start("").await;
    let addr = server.addr;
    let _phone = connect_pubsub(addr, "alice").await;
    let _laptop = connect_pubsub(addr, "alice").await;
    let (status, json) = api(addr, "GET", "/api/v1/presence?user=alice&user=bob", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        json["presence"]["alice"],
        serde_json::json!({"online": true, "sockets": 2})
    );
    assert_eq!(
        json["presence"]["bob"],
        serde_json::json!({"online": false, "sockets": 0})
    );
    let (status, json) = api(addr, "GET", "/api/v1/presence", "").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (422, Some("invalid_request"))
    );
    // Operators see the API's answers by status.
    let metrics = http(addr, "GET", "/metrics", &[], "").await;
    assert!(
        metrics
            .body
            .contains("switchboard_api_requests_total{status=\"200\"} 1\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("switchboard_api_requests_total{status=\"422\"} 1\n"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn the_default_store_is_a_migrated_sqlite_file_and_readyz_checks_it() {
    let server = start("").await;
    assert!(server.dir.join("switchboard.db").exists());
    assert_eq!(
        server.app.store.applied_migrations().await.unwrap(),
        hub::store::Backend::Sqlite.embedded_migrations()
    );
    let ready = http(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"]["backend"], "sqlite");
}

#[tokio::test]
async fn a_store_url_with_an_unknown_scheme_is_a_configuration_error() {
    let dir = std::env::temp_dir().join(format!("sb-bad-store-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, "[store]\nurl = \"mysql://root:hunter2@db/hub\"\n").unwrap();
    let err = Config::load(Some(&path), Vec::new()).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("store.url"), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the password leaked: {message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fresh database on the test PostgreSQL server (`TEST_POSTGRES_URL`, set
/// by `tests/postgres/with-postgres.sh`, which `make test` uses); `None`
/// outside CI when no server is given. Returns the admin URL and the new
/// database's URL.
async fn postgres_database() -> Option<(String, String)> {
    use sqlx::Connection;
    let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the PostgreSQL tests: run them through tests/postgres/with-postgres.sh"
        );
        eprintln!("TEST_POSTGRES_URL not set: skipping the PostgreSQL part");
        return None;
    };
    let name = format!("sb_test_{}", rand_suffix());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some((admin.clone(), format!("{base}/{name}")))
}

#[tokio::test]
async fn a_postgresql_store_is_migrated_and_readyz_fails_when_it_goes_away() {
    use sqlx::Connection;
    let Some((admin, url)) = postgres_database().await else {
        return;
    };
    let server = start(&format!("[store]\nurl = {url:?}\ntimeout_ms = 1000\n")).await;
    assert_eq!(
        server.app.store.applied_migrations().await.unwrap(),
        hub::store::Backend::Postgres.embedded_migrations()
    );
    let ready = http(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready.body.contains(r#""backend":"postgres""#),
        "{}",
        ready.body
    );

    // The database disappears under the running hub.
    let name = url.rsplit_once('/').unwrap().1;
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    let ready = http(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["error"]["code"], "store_unreachable");
    // Liveness is not readiness: the process itself is fine.
    assert_eq!(
        http(server.addr, "GET", "/healthz", &[], "").await.status,
        200
    );
}

#[tokio::test]
async fn an_unreachable_postgresql_store_stops_the_start_with_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there
    let mut config = Config::load(None, Vec::new()).unwrap();
    config.store.url = format!("postgres://sb:pw@127.0.0.1:{port}/hub");
    config.store.timeout_ms = 2000;
    let err = App::new(&config).await.err().expect("the start must fail");
    let message = format!("{err:#}");
    assert!(message.contains("cannot open the store"), "{message}");
    assert!(!message.contains(":pw@"), "the password leaked: {message}");
}

/// The value of one sample line of `/metrics`, 0 if absent.
fn sample(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(line_start)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn metrics_count_events_fanout_and_store_latency() {
    let server = start("[socketio]\nmetrics_max_event_names = 3\n").await;
    let mut alice = connect_pubsub(server.addr, "alice").await;
    let mut bob = connect_pubsub(server.addr, "bob").await;
    for client in [&mut alice, &mut bob] {
        client
            .emit_to("/pubsub", 1, "subscribe", r#""topic:news""#)
            .await;
        assert!(client.recv().await.starts_with("43/pubsub,1"));
    }
    alice
        .emit_to("/pubsub", 2, "publish", r#"{"room":"topic:news","data":1}"#)
        .await;
    assert!(bob.recv().await.starts_with(r#"42/pubsub,["message""#));
    assert!(alice.recv().await.starts_with(r#"42/pubsub,["message""#));
    assert!(alice.recv().await.starts_with("43/pubsub,2"));
    // More distinct names than the bound: the rest are counted as _other.
    for (id, event) in [(3, "x1"), (4, "x2"), (5, "x3")] {
        alice.emit_to("/pubsub", id, event, "1").await;
        let ack = alice.recv().await;
        assert!(ack.contains("unknown_event"), "{ack}");
    }
    let _ = http(server.addr, "GET", "/readyz", &[], "").await;
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.body;
    let received = |event: &str| {
        sample(
            &metrics,
            &format!(
                "switchboard_events_received_total{{namespace=\"/pubsub\",event=\"{event}\"}}"
            ),
        )
    };
    assert_eq!(received("subscribe"), 2.0, "{metrics}");
    assert_eq!(received("publish"), 1.0, "{metrics}");
    assert_eq!(received("x1"), 1.0, "{metrics}");
    assert_eq!(received("_other"), 2.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "switchboard_events_sent_total{namespace=\"/pubsub\",event=\"message\"}"
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "switchboard_broadcast_fanout_bucket{namespace=\"/pubsub\",le=\"1\"}"
        ),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "switchboard_broadcast_fanout_bucket{namespace=\"/pubsub\",le=\"10\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "switchboard_broadcast_fanout_sum{namespace=\"/pubsub\"}"
        ),
        2.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "switchboard_store_query_seconds_count{backend=\"sqlite\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn events_over_the_rate_limit_are_refused_for_that_socket_only() {
    let server = start("[limits]\nevents_per_sec = 0.5\nevent_burst = 3\n").await;
    let mut alice = connect_pubsub(server.addr, "alice").await;
    let mut bob = connect_pubsub(server.addr, "bob").await;
    for id in 1..=4 {
        alice
            .emit_to("/pubsub", id, "subscribe", r#""topic:news""#)
            .await;
    }
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
}

#[tokio::test]
async fn too_many_events_waiting_behind_a_handler_close_that_connection_only() {
    let server = start("[socketio]\nmax_pending_events = 4\n").await;
    let (mut flooder, _) = Client::connect(server.addr).await;
    let (mut other, _) = Client::connect(server.addr).await;
    flooder.emit(1, "sleep", "3000").await;
    for id in 2..=6 {
        flooder.emit(id, "echo", r#""more""#).await;
    }
    assert!(closed_by_server(&mut flooder.ws).await);
    other.emit(7, "echo", r#""still here""#).await;
    assert_eq!(other.recv().await, r#"437["still here"]"#);
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.body;
    assert_eq!(
        sample(
            &metrics,
            "switchboard_inbox_overflow_disconnects_total{namespace=\"/\"}"
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
