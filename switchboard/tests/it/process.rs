//! The `switchboard` process as operators run it. Under SIGTERM it stops
//! accepting, closes its clients' connections (so that they reconnect
//! elsewhere), lets an API request already in flight finish, and exits
//! within `shutdown_grace_ms`; `log.format = "json"` logs JSON lines.
//! `switchboard config` prints the reference configuration and checks files.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::binary::{self, Binary};
use crate::common::{Client, RemoveOnDrop, rand_suffix};

const WAIT: Duration = Duration::from_secs(10);

/// Starts the binary with `grace_ms` of drain time.
async fn spawn_server(grace_ms: u64) -> Binary {
    Binary::spawn(
        &format!(
            "test_setup = true\n[server]\nshutdown_grace_ms = {grace_ms}\n\
             [api]\nkeys = [\"k\"]\n[[namespaces]]\nname = \"/\"\nhandler = \"testkit\"\n"
        ),
        |_, _| {},
    )
    .await
}

/// Reads until the peer closes; returns what was read.
async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("no response")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn sigterm_closes_clients_finishes_the_api_request_in_flight_and_exits() {
    let mut server = spawn_server(10_000).await;
    let addr = server.addr;
    // A WebSocket client that joined namespace `/`.
    let mut ws = Client::connect(addr).await.0.ws;

    // An API request whose body is still on its way when SIGTERM arrives.
    let body = r#"{"namespace":"/","event":"news","data":{"n":1},"rooms":["nobody"]}"#;
    let mut api = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    api.write_all(head.as_bytes()).await.unwrap();
    api.write_all(&body.as_bytes()[..10]).await.unwrap();

    server.sigterm();
    // The client's connection is closed (socket.io-client then reconnects,
    // to another node behind the load balancer).
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the client was not disconnected");
    // New connections are refused…
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    // …while the request in flight completes.
    api.write_all(&body.as_bytes()[10..]).await.unwrap();
    let response = read_to_end(&mut api).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""ok":true"#), "{response}");

    let status = tokio::time::timeout(WAIT, server.child.wait())
        .await
        .expect("the server did not exit")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn sigterm_exits_within_the_drain_time_even_if_a_request_never_ends() {
    let grace = Duration::from_millis(1500);
    let mut server = spawn_server(grace.as_millis() as u64).await;
    let addr = server.addr;
    // A request that will never be completed.
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(
            b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    // The server has accepted it once it answers another request.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_end(&mut probe).await.starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    server.sigterm();
    let status = tokio::time::timeout(WAIT, server.child.wait())
        .await
        .expect("the server did not exit")
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= grace - Duration::from_millis(100),
        "exited after {took:?}: it did not wait for the request in flight"
    );
    assert!(
        took < grace + Duration::from_secs(3),
        "exited after {took:?}, drain time {grace:?}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = std::env::temp_dir().join(format!("sb-json-logs-{}", rand_suffix()));
    let _cleanup = RemoveOnDrop(dir.clone());
    let mut child = binary::command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("SWITCHBOARD_DATA_DIR", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let entry: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            assert!(entry["level"].is_string() && entry["timestamp"].is_string());
            if entry["fields"]["message"] == "listening" {
                return entry;
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("no `listening` log line");
    assert!(
        listening["fields"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    binary::sigterm(&child);
    assert!(child.wait().await.unwrap().success());
}

/// `switchboard config ARGS`, without the `SWITCHBOARD_*` variables of
/// whoever runs the tests.
async fn config_command(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.arg("config").args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_") {
            command.env_remove(key);
        }
    }
    command.output().await.unwrap()
}

#[tokio::test]
async fn config_prints_the_reference_and_checks_files_naming_the_key_at_fault() {
    let (dir, _cleanup) = crate::common::temp_dir("sb-config-cli");

    let printed = config_command(&["--default".as_ref()]).await;
    assert!(printed.status.success(), "{printed:?}");
    let reference = String::from_utf8(printed.stdout).unwrap();
    assert!(
        reference.contains("# Environment: SWITCHBOARD_CHAT_MAX_PAGE\nmax_page = 100\n"),
        "{reference}"
    );
    let good = dir.join("reference.toml");
    std::fs::write(&good, &reference).unwrap();
    let checked = config_command(&["--check".as_ref(), good.as_os_str()]).await;
    assert!(checked.status.success(), "{checked:?}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[chat]\nmax_page = 0\n").unwrap();
    let refused = config_command(&["--check".as_ref(), bad.as_os_str()]).await;
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("chat.max_page: must be between 1 and 500, got 0"),
        "{stderr}"
    );
}
