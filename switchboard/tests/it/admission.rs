//! Admission over the wire: `server.max_connections` counts Engine.IO
//! sessions on both transports, per-address session and handshake-rate
//! limits (with `X-Forwarded-For` believed only from trusted proxies), and
//! the separate bound on TCP connections.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::common::*;

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

/// No per-address limit: every test client comes from one address.
const NO_ADDRESS_LIMITS: &str = "max_sessions_per_address = 0\nhandshakes_per_sec_per_address = 0";

/// A kept-alive connection, speaking Engine.IO's polling handshake.
struct Conn(KeepAlive);

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn(KeepAlive::open(addr).await)
    }

    async fn from(local: &str, addr: SocketAddr) -> Conn {
        Conn(KeepAlive::from(local, addr).await)
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> RawResponse {
        self.0.request(method, path, headers, body.as_bytes()).await
    }

    /// A polling handshake: the sid, or the refusal.
    async fn handshake(&mut self, headers: &[(&str, &str)]) -> Result<String, RawResponse> {
        let response = self.request("GET", HANDSHAKE, headers, "").await;
        if response.status != 200 {
            return Err(response);
        }
        let open: serde_json::Value = serde_json::from_slice(&response.body[1..]).unwrap();
        Ok(open["sid"].as_str().unwrap().to_owned())
    }

    /// Closes a polling session (a `close` packet); the slot is free once
    /// this returns.
    async fn close_session(&mut self, sid: &str) {
        let path = format!("{HANDSHAKE}&sid={sid}");
        let response = self.request("POST", &path, &[], "1").await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
}

/// The refusal's status and JSON body.
fn refusal(response: &RawResponse) -> (u16, serde_json::Value) {
    (response.status, response.json())
}

fn server_full() -> (u16, serde_json::Value) {
    (
        503,
        serde_json::json!({"code": 6, "message": "Server full"}),
    )
}

/// A direct WebSocket handshake: the socket, or the refusal's status and body.
async fn websocket(addr: SocketAddr, query: &str) -> Result<Ws, (u16, serde_json::Value)> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket{query}");
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap(),
            ))
        }
        Err(other) => panic!("{other}"),
    }
}

async fn metrics(addr: SocketAddr) -> String {
    http(addr, "GET", "/metrics", &[], "").await.body
}

/// Waits until the engine counts `n` open sessions.
async fn sessions_become(server: &TestServer, n: usize) {
    tokio::time::timeout(WAIT, async {
        while server.app.engine.stats().sessions != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("sessions stayed {:?}", server.app.engine.stats()));
}

#[tokio::test]
async fn polling_handshakes_past_max_connections_are_refused() {
    let server = start(&format!(
        "[server]\nmax_connections = 1000\n{NO_ADDRESS_LIMITS}"
    ))
    .await;
    let addr = server.addr;
    // The figure: 5,000 handshakes that are never used.
    let started = Instant::now();
    let mut conn = Conn::open(addr).await;
    let mut sids = Vec::new();
    let mut refused = 0;
    for _ in 0..5000 {
        match conn.handshake(&[]).await {
            Ok(sid) => sids.push(sid),
            Err(response) => {
                assert_eq!(refusal(&response), server_full());
                refused += 1;
            }
        }
    }
    eprintln!(
        "5000 polling handshakes, max_connections = 1000: {} admitted, {refused} refused ({:?})",
        sids.len(),
        started.elapsed()
    );
    assert_eq!((sids.len(), refused), (1000, 4000));
    let text = metrics(addr).await;
    assert_eq!(sample(&text, "switchboard_connections"), 1000.0);
    assert_eq!(
        sample(
            &text,
            "switchboard_handshakes_refused_total{reason=\"server_full\"}"
        ),
        4000.0
    );

    // A session that closes frees its slot, once.
    conn.close_session(&sids[0]).await;
    assert_eq!(
        sample(&metrics(addr).await, "switchboard_connections"),
        999.0
    );
    conn.handshake(&[]).await.expect("the freed slot");
    let response = conn.handshake(&[]).await.unwrap_err();
    assert_eq!(refusal(&response), server_full());
}

#[tokio::test]
async fn websocket_and_polling_sessions_share_the_count() {
    let server = start(&format!(
        "[server]\nmax_connections = 2\n{NO_ADDRESS_LIMITS}"
    ))
    .await;
    let addr = server.addr;
    let mut ws = websocket(addr, "").await.expect("first session");
    assert!(next_text(&mut ws).await.starts_with('0'));
    let mut conn = Conn::open(addr).await;
    let sid = conn.handshake(&[]).await.expect("second session");
    // Full: refused on both transports, with the same JSON error.
    assert_eq!(
        refusal(&conn.handshake(&[]).await.unwrap_err()),
        server_full()
    );
    assert_eq!(websocket(addr, "").await.unwrap_err(), server_full());
    // A polling session closing frees a slot for a WebSocket one…
    conn.close_session(&sid).await;
    let mut second = websocket(addr, "").await.expect("the freed slot");
    assert!(next_text(&mut second).await.starts_with('0'));
    assert!(conn.handshake(&[]).await.is_err());
    // …and a WebSocket closing frees one for polling.
    ws.close(None).await.unwrap();
    sessions_become(&server, 1).await;
    conn.handshake(&[])
        .await
        .expect("the slot of the closed WebSocket");
}

#[tokio::test]
async fn an_upgraded_session_counts_once() {
    let server = start(&format!(
        "[server]\nmax_connections = 2\n{NO_ADDRESS_LIMITS}"
    ))
    .await;
    let addr = server.addr;
    let mut conn = Conn::open(addr).await;
    let sid = conn.handshake(&[]).await.unwrap();
    let mut ws = websocket(addr, &format!("&sid={sid}"))
        .await
        .expect("the upgrade is not a new session");
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws.send(Message::text("5")).await.unwrap();
    // The upgrade is done once the session answers on the WebSocket.
    ws.send(Message::text("40")).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("40{"));
    assert_eq!(server.app.engine.stats().sessions, 1);
    assert_eq!(sample(&metrics(addr).await, "switchboard_connections"), 1.0);
    conn.handshake(&[]).await.expect("one slot left");
    assert_eq!(
        refusal(&conn.handshake(&[]).await.unwrap_err()),
        server_full()
    );
    // The upgraded session frees its one slot when it closes.
    ws.close(None).await.unwrap();
    sessions_become(&server, 1).await;
    conn.handshake(&[])
        .await
        .expect("the upgraded session's slot");
}

#[tokio::test]
async fn a_session_that_times_out_frees_its_slot() {
    let server = start(&format!(
        "[engine]\nping_interval_ms = 100\nping_timeout_ms = 100\n\
         [server]\nmax_connections = 1\n{NO_ADDRESS_LIMITS}"
    ))
    .await;
    let mut conn = Conn::open(server.addr).await;
    conn.handshake(&[]).await.unwrap();
    assert_eq!(
        refusal(&conn.handshake(&[]).await.unwrap_err()),
        server_full()
    );
    // Never polled: the ping times out and the session closes.
    sessions_become(&server, 0).await;
    conn.handshake(&[])
        .await
        .expect("the timed-out session's slot");
}

#[tokio::test]
async fn the_per_address_limit_refuses_only_that_address() {
    let server =
        start("[server]\nmax_sessions_per_address = 2\nhandshakes_per_sec_per_address = 0").await;
    let addr = server.addr;
    let mut one = Conn::from("127.0.0.1", addr).await;
    let first = one.handshake(&[]).await.unwrap();
    one.handshake(&[]).await.unwrap();
    let (status, body) = refusal(&one.handshake(&[]).await.unwrap_err());
    assert_eq!(status, 429);
    assert_eq!(
        body,
        serde_json::json!({"code": 7, "message": "Too many sessions from this address"})
    );
    // On a new connection too, and over WebSocket: it is the address.
    let mut again = Conn::from("127.0.0.1", addr).await;
    assert_eq!(again.handshake(&[]).await.unwrap_err().status, 429);
    assert_eq!(websocket(addr, "").await.unwrap_err().0, 429);
    // Another address is admitted.
    let mut two = Conn::from("127.0.0.2", addr).await;
    two.handshake(&[]).await.expect("another address");
    two.handshake(&[]).await.expect("another address");
    assert_eq!(two.handshake(&[]).await.unwrap_err().status, 429);
    // A session closing gives its address a slot back.
    one.close_session(&first).await;
    one.handshake(&[]).await.expect("the address's freed slot");
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_an_untrusted_peer() {
    let server =
        start("[server]\nmax_sessions_per_address = 1\nhandshakes_per_sec_per_address = 0").await;
    let mut conn = Conn::open(server.addr).await;
    conn.handshake(&[("X-Forwarded-For", "198.51.100.1")])
        .await
        .unwrap();
    // A different forwarded address changes nothing: the peer is 127.0.0.1.
    let refused = conn
        .handshake(&[("X-Forwarded-For", "198.51.100.2")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, 429);
    assert_eq!(server.app.engine.stats().admission.addresses, 1);
}

#[tokio::test]
async fn forwarded_for_is_honoured_from_a_trusted_proxy() {
    let server = start(
        "[server]\nmax_sessions_per_address = 1\nhandshakes_per_sec_per_address = 0\n\
         trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]",
    )
    .await;
    let addr = server.addr;
    let xff = |v: &'static str| [("X-Forwarded-For", v)];
    let mut proxy = Conn::open(addr).await;
    proxy
        .handshake(&xff("198.51.100.1"))
        .await
        .expect("first client behind the proxy");
    proxy
        .handshake(&xff("198.51.100.2"))
        .await
        .expect("another client behind the proxy");
    assert_eq!(
        proxy
            .handshake(&xff("198.51.100.1"))
            .await
            .unwrap_err()
            .status,
        429
    );
    // The rightmost address that is not a trusted proxy is the client: what
    // the client wrote itself, to the left, does not count.
    assert_eq!(
        proxy
            .handshake(&xff("203.0.113.7, 198.51.100.2, 10.1.2.3"))
            .await
            .unwrap_err()
            .status,
        429
    );
    proxy
        .handshake(&xff("198.51.100.1, 198.51.100.3, 10.1.2.3"))
        .await
        .expect("a third client, through two proxies");
    // Without the header, the client is the proxy itself.
    proxy.handshake(&[]).await.expect("the proxy's own session");
    // A peer that is not trusted is counted by its own address.
    let mut direct = Conn::from("127.0.0.2", addr).await;
    direct
        .handshake(&xff("198.51.100.9"))
        .await
        .expect("127.0.0.2's session");
    assert_eq!(
        direct
            .handshake(&xff("198.51.100.8"))
            .await
            .unwrap_err()
            .status,
        429
    );
}

#[tokio::test]
async fn the_handshake_rate_limit_refuses_a_burst() {
    let server = start(
        "[server]\nmax_sessions_per_address = 0\n\
         handshakes_per_sec_per_address = 0.01\nhandshake_burst_per_address = 5",
    )
    .await;
    let addr = server.addr;
    let mut conn = Conn::open(addr).await;
    for i in 0..5 {
        let sid = conn
            .handshake(&[])
            .await
            .unwrap_or_else(|r| panic!("{i}: {}", r.text()));
        // Closing does not give the handshake back: it is a rate.
        conn.close_session(&sid).await;
    }
    let (status, body) = refusal(&conn.handshake(&[]).await.unwrap_err());
    assert_eq!(status, 429);
    assert_eq!(
        body,
        serde_json::json!({"code": 8, "message": "Too many handshakes from this address"})
    );
    assert_eq!(websocket(addr, "").await.unwrap_err().0, 429);
    let mut other = Conn::from("127.0.0.2", addr).await;
    other
        .handshake(&[])
        .await
        .expect("another address's bucket");
    let text = metrics(addr).await;
    assert_eq!(
        sample(
            &text,
            "switchboard_handshakes_refused_total{reason=\"rate_limited\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn tcp_connections_are_bounded_apart_from_sessions() {
    let server = start("[server]\nmax_connections = 100\nmax_tcp_connections = 2").await;
    let addr = server.addr;
    // Two idle connections take both TCP slots…
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let third = tokio::spawn(async move { http(addr, "GET", "/healthz", &[], "").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !third.is_finished(),
        "a third TCP connection was served beyond max_tcp_connections"
    );
    // …and the third is served once one closes.
    drop(first);
    let response = tokio::time::timeout(WAIT, third).await.unwrap().unwrap();
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn an_upgraded_websocket_keeps_its_tcp_slot() {
    let server = start("[server]\nmax_connections = 100\nmax_tcp_connections = 1").await;
    let addr = server.addr;
    // Hyper is done with the connection once it is upgraded: the engine
    // keeps its slot (the request's ConnectionGuard) for as long as the
    // WebSocket lives.
    let client = Client::open(addr).await;
    let second = tokio::spawn(async move { http(addr, "GET", "/healthz", &[], "").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "a TCP connection was served beside an upgraded WebSocket beyond max_tcp_connections"
    );
    // The slot is free once the WebSocket closes.
    drop(client);
    let response = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn the_address_table_is_bounded_by_open_sessions() {
    let server = start(
        "[server]\nmax_sessions_per_address = 10\nhandshakes_per_sec_per_address = 0\n\
         trusted_proxies = [\"127.0.0.1\"]",
    )
    .await;
    let mut proxy = Conn::open(server.addr).await;
    // Many forwarded addresses, each leaving at once: nothing to remember.
    for i in 0..300 {
        let xff = format!("198.51.{}.{}", i / 250, i % 250 + 1);
        let sid = proxy.handshake(&[("X-Forwarded-For", &xff)]).await.unwrap();
        proxy.close_session(&sid).await;
    }
    assert_eq!(server.app.engine.stats().admission.addresses, 0);
}

#[tokio::test]
async fn a_failed_upgrade_keeps_the_one_slot() {
    let server = start(&format!(
        "[server]\nmax_connections = 1\n{NO_ADDRESS_LIMITS}"
    ))
    .await;
    let addr = server.addr;
    let mut conn = Conn::open(addr).await;
    let sid = conn.handshake(&[]).await.unwrap();
    // The WebSocket goes away in the middle of the probe.
    let mut ws = websocket(addr, &format!("&sid={sid}"))
        .await
        .expect("an upgrade needs no slot of its own");
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    drop(ws);
    // Still one polling session, which still works and holds its slot.
    let poll = conn
        .request("POST", &format!("{HANDSHAKE}&sid={sid}"), &[], "40")
        .await;
    assert_eq!(poll.status, 200);
    assert_eq!(server.app.engine.stats().sessions, 1);
    assert_eq!(
        refusal(&conn.handshake(&[]).await.unwrap_err()),
        server_full()
    );
    conn.close_session(&sid).await;
    assert_eq!(server.app.engine.stats().sessions, 0);
}

#[tokio::test]
async fn shutdown_frees_every_slot() {
    let mut server = start(&format!(
        "[server]\nmax_connections = 10\nshutdown_grace_ms = 3000\n{NO_ADDRESS_LIMITS}"
    ))
    .await;
    let mut conn = Conn::open(server.addr).await;
    conn.handshake(&[]).await.unwrap();
    let (mut client, _) = Client::connect(server.addr).await;
    assert_eq!(server.app.engine.stats().sessions, 2);
    server.stop.take().unwrap().send(()).unwrap();
    assert!(closed_by_server(&mut client.ws).await);
    tokio::time::timeout(WAIT, &mut server.task)
        .await
        .expect("shutdown hung")
        .unwrap()
        .unwrap();
    assert_eq!(server.app.engine.stats().sessions, 0);
}
