//! What the over-the-wire tests share: a real server on `127.0.0.1:0`
//! configured per test, raw HTTP requests, and a raw Socket.IO client over
//! WebSocket speaking the protocol.

#![allow(dead_code)] // each test file uses a part of it

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

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    pub app: App,
    /// Its `data_dir` (config file, SQLite store).
    pub dir: std::path::PathBuf,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Removes `dir` when the test is done with the server.
    pub cleanup: RemoveOnDrop,
}

/// Removes a folder when dropped.
pub struct RemoveOnDrop(pub std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a server with the test kit on `/` and `/a`, configured by `toml`
/// (a test setup: `test_setup = true`, which the test kit requires).
pub async fn start(toml: &str) -> TestServer {
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
            "listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}\ntest_setup = true\n{toml}\n{namespaces}",
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
        cleanup: RemoveOnDrop(dir.clone()),
        dir,
        stop: Some(stop),
        task,
    }
}

/// A number no other call in any test process returns (the clock and the
/// process id for other processes, a counter within this one).
pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    (nanos ^ (std::process::id() as u64) << 32).wrapping_add(count << 48)
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn http(
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

pub fn error_code(response: &HttpResponse) -> u64 {
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    body["code"].as_u64().unwrap()
}

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

pub const KEY: (&str, &str) = ("Authorization", "Bearer test-key");

pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
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

/// The value of one sample line of `/metrics`, 0 if absent.
pub fn sample(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(line_start)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// Connections of namespace `/` closed for an inbox overflow, from `/metrics`.
pub async fn inbox_overflows(addr: SocketAddr) -> f64 {
    let metrics = http(addr, "GET", "/metrics", &[], "").await.body;
    sample(
        &metrics,
        "switchboard_inbox_overflow_disconnects_total{namespace=\"/\"}",
    )
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

/// A fresh database on the test PostgreSQL server (`TEST_POSTGRES_URL`, set
/// by `tests/postgres/with-postgres.sh`, which `make test` uses); `None`
/// outside CI when no server is given. Returns the admin URL and the new
/// database's URL.
pub async fn postgres_database() -> Option<(String, String)> {
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

/// A server configured by `toml` alone (no namespaces or keys added): its
/// public address, and its admin listener's when `server.admin_listen` is set.
pub struct RawServer {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub app: App,
    pub cleanup: RemoveOnDrop,
}

pub async fn start_raw(toml: &str) -> RawServer {
    try_start_raw(toml).await.unwrap()
}

/// [`start_raw`], returning why the configuration or the start failed.
pub async fn try_start_raw(toml: &str) -> anyhow::Result<RawServer> {
    let dir = std::env::temp_dir().join(format!("sb-test-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let cleanup = RemoveOnDrop(dir.clone());
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}\n{toml}\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let config = Config::load(Some(&path), Vec::new())?;
    let app = App::new(&config).await?;
    let listeners = server::Listeners::bind(&config).await?;
    let addr = listeners.public[0].local_addr()?;
    let admin = listeners
        .admin
        .first()
        .map(|l| l.local_addr())
        .transpose()?;
    tokio::spawn({
        let app = app.clone();
        async move { server::run(listeners, &config, app, std::future::pending()).await }
    });
    Ok(RawServer {
        addr,
        admin,
        app,
        cleanup,
    })
}
