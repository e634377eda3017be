//! The TURN credentials `ice_servers` hands out work with a real TURN
//! server: Debian's coturn with `use-auth-secret` and the hub's secret, on
//! loopback, grants an allocation to the credentials the hub issued over
//! the wire and refuses credentials whose expiry has passed
//! (`turnutils_uclient`, which ships with coturn, is the TURN client).
//!
//! coturn is installed with apt-get when missing (as root); in CI the test
//! never skips; elsewhere without coturn it skips with a note.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Client, start_raw, temp_dir, token};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const SECRET: &str = "turn-shared-secret";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Whether coturn is there, installing it when it can.
fn coturn_available() -> bool {
    if on_path("turnserver") && on_path("turnutils_uclient") {
        return true;
    }
    if is_root() && on_path("apt-get") {
        eprintln!("calls_turn: installing coturn (apt-get)");
        let apt = |args: &[&str]| {
            std::process::Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "coturn"]) {
            return on_path("turnserver") && on_path("turnutils_uclient");
        }
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the coturn test: coturn is missing and could not be installed"
    );
    eprintln!("calls_turn: coturn not found (apt-get install coturn, or run as root): skipping");
    false
}

/// A UDP and TCP port free on loopback right now, below the kernel's
/// ephemeral range: the other tests of this process bind port 0, which
/// takes ports from that range only, so none of them can take this one
/// between this check and coturn's bind.
fn free_port() -> u16 {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = ephemeral_low.saturating_sub(10_000).max(1);
    let start = (std::process::id() as u16 ^ common::rand_suffix() as u16) % span;
    (0..span)
        .map(|i| 10_000 + (start + i) % span)
        .find(|&port| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        })
        .expect("a free port below the ephemeral range")
}

/// Waits until a STUN Binding request to `addr` over UDP is answered.
fn wait_for_stun(addr: SocketAddr, dir: &std::path::Path) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Binding request: type 0x0001, length 0, magic cookie, transaction id.
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(b"switchboard!");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let _ = socket.send_to(&request, addr);
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && n >= 20
            && buf[0..2] == [0x01, 0x01]
            && buf[8..20] == request[8..20]
        {
            return;
        }
    }
    let log = std::fs::read_to_string(dir.join("turnserver.log")).unwrap_or_default();
    panic!("coturn did not answer STUN on {addr}; its log:\n{log}");
}

/// Runs one TURN allocation with `username` / `password`: true once the
/// server granted a relay address, false if the client gave up without.
async fn allocate(port: u16, username: &str, password: &str) -> bool {
    let mut child = Command::new("turnutils_uclient")
        .args(["-v", "-y", "-c", "-n", "1", "-p", &port.to_string()])
        .args(["-u", username, "-w", password, "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_uclient runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Received relay addr") {
                return true;
            }
        }
        false
    })
    .await
    .expect("turnutils_uclient answered in time");
    // The client goes on exchanging test packets for seconds: the
    // allocation is what this test is about.
    let _ = child.kill().await;
    outcome
}

#[tokio::test]
async fn coturn_grants_the_issued_credentials_and_refuses_expired_ones() {
    if !coturn_available() {
        return;
    }
    let (dir, _cleanup) = temp_dir("sb-coturn");
    let port = free_port();
    let coturn = Command::new("turnserver")
        .args(["-n", "--no-tls", "--no-dtls", "--no-cli", "--simple-log"])
        .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
        .arg(format!("--listening-port={port}"))
        .args(["--use-auth-secret", "--realm=switchboard.test"])
        .arg(format!("--static-auth-secret={SECRET}"))
        .arg(format!("--userdb={}", dir.join("turndb").display()))
        .arg(format!(
            "--pidfile={}",
            dir.join("turnserver.pid").display()
        ))
        .args(["--log-file=stdout", "--allow-loopback-peers"])
        .stdout(std::fs::File::create(dir.join("turnserver.log")).unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnserver starts");
    // Killed when dropped: at the end of the test, or at its panic.
    let _coturn = coturn;
    let started = Instant::now();
    wait_for_stun(SocketAddr::from(([127, 0, 0, 1], port)), &dir);

    let server = start_raw(&format!(
        "[auth]\nhs256_secret = \"test-secret\"\n\n[calls]\n\
         turn_urls = [\"turn:127.0.0.1:{port}?transport=udp\"]\n\
         turn_secret = \"{SECRET}\"\nturn_ttl_secs = 300\n"
    ))
    .await;
    let mut device = Client::open(server.addr).await;
    device
        .send(&format!(r#"40/calls,{{"token":"{}"}}"#, token("bob", 60)))
        .await;
    let connected = device.recv().await;
    assert!(connected.starts_with("40/calls,{"), "{connected}");
    device.emit_to("/calls", 1, "ice_servers", "{}").await;
    let ack = device.recv().await;
    let ack: Value = serde_json::from_str(ack.strip_prefix("43/calls,1").unwrap()).unwrap();
    let turn = &ack[0]["ice_servers"][0];
    let username = turn["username"].as_str().unwrap();
    let password = turn["credential"].as_str().unwrap();
    assert!(username.ends_with(":bob"), "{username}");

    assert!(
        allocate(port, username, password).await,
        "coturn refused the credentials the hub issued"
    );
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let (expired_user, expired_password) = hub::components::calls::credentials(SECRET, "bob", past);
    assert!(
        !allocate(port, &expired_user, &expired_password).await,
        "coturn granted credentials that expired a minute ago"
    );
    let (_, wrong_password) =
        hub::components::calls::credentials("another-secret", "bob", past + 3600);
    assert!(
        !allocate(port, username, &wrong_password).await,
        "coturn granted a password made with another secret"
    );
    eprintln!(
        "calls_turn: coturn up, three allocations tried, in {:?}",
        started.elapsed()
    );
}
