//! Engine.IO v4 / Socket.IO v5 client side over [`crate::ws`]: target URL
//! parsing (loopback only), the open handshake (`0{...}` → `40` → `40{...}`),
//! Engine.IO ping answering, the idle loop that keeps a connection alive, and
//! the ramp that opens many connections at a bounded rate and concurrency.
//! A connection joins `/` or, with a [`Connect`], one namespace with an auth
//! payload (`40/chat,{"token":…}`); [`split_packet`] takes a namespace's
//! events and acks apart and [`queue_emit`] sends one with an ack id.
//! A share of the connections ([`Ctx::eio3_share`]) may speak Engine.IO v3 /
//! Socket.IO 4 as socket.io 2.x does: `EIO=3`, no CONNECT for `/` (the
//! server sends `40` by itself), a namespace's token in its query, and the
//! client pinging every `pingInterval` ([`fill`] sends them).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::stats::{Failures, now_us};
use crate::ws::{Msg, WsConn, WsError};

/// Where the server under test listens.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path with the Engine.IO query.
    pub path: String,
    /// The same for an Engine.IO v3 connection (socket.io 2.x's).
    pub path_v3: String,
}

impl Target {
    /// Parses `ws://HOST:PORT[/path/]` (also `http://`). The host must be
    /// `127.0.0.1`, `localhost` or `::1`: the generator never sends traffic
    /// off the machine. The path defaults to `/socket.io/`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("{url}: only ws:// (or http://) URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/socket.io/"),
        };
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("{url}: unterminated [IPv6] host"))?;
            let port = r[end + 1..]
                .strip_prefix(':')
                .ok_or_else(|| format!("{url}: missing :PORT"))?;
            (&r[..end], port)
        } else {
            authority
                .rsplit_once(':')
                .ok_or_else(|| format!("{url}: missing :PORT"))?
        };
        let ip: IpAddr = match host {
            "127.0.0.1" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "::1" => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => {
                return Err(format!(
                    "{url}: host {other:?} refused: only 127.0.0.1, localhost or ::1 may be targeted"
                ));
            }
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{url}: bad port {port:?}"))?;
        let path = path.split('?').next().unwrap_or(path);
        let path = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            host: authority.to_string(),
            path: format!("{path}?EIO=4&transport=websocket"),
            path_v3: format!("{path}?EIO=3&transport=websocket"),
        })
    }
}

/// A failed connection or a dropped one, with a category for counting.
#[derive(Debug)]
pub struct Fail {
    pub kind: &'static str,
    pub detail: String,
}

impl Fail {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Fail {
            kind,
            detail: detail.into(),
        }
    }

    /// Counts this failure in `f`.
    pub fn count_in(self, f: &Failures) {
        f.add(self.kind, || self.detail);
    }
}

impl From<WsError> for Fail {
    fn from(e: WsError) -> Self {
        Fail::new(e.kind(), e.to_string())
    }
}

/// Reads once from the socket; end of stream and errors become [`Fail`]s.
/// An Engine.IO v3 connection sends its pings meanwhile, when due.
pub async fn fill(conn: &mut WsConn) -> Result<(), Fail> {
    loop {
        match conn.fill_or_ping().await {
            Ok(None) => flush(conn).await?,
            Ok(Some(0)) => return Err(Fail::new("server_closed", "end of stream")),
            Ok(Some(_)) => return Ok(()),
            Err(e) => return Err(Fail::new("io", e.to_string())),
        }
    }
}

/// Next Engine.IO packet that is not a ping/pong/noop, or `None` when the
/// buffer holds no complete message. Pings (`2`) are answered with `3`
/// (queued: the caller flushes); pongs (`3`, the answers to an Engine.IO v3
/// client's pings) are skipped; a close (`1` or a WebSocket close) is an
/// error.
#[inline]
pub fn next_packet(conn: &mut WsConn) -> Result<Option<Msg>, Fail> {
    while let Some(m) = conn.next_message()? {
        if m == Msg::Close {
            return Err(Fail::new("server_closed", "websocket close frame"));
        }
        match conn.payload(m) {
            b"2" => conn.queue_text(&[b"3"]),
            b"3" | b"6" => {}
            b"1" => return Err(Fail::new("server_closed", "engine.io close packet")),
            _ => return Ok(Some(m)),
        }
    }
    Ok(None)
}

/// Flushes queued frames (pongs, events); a write error is a [`Fail`].
pub async fn flush(conn: &mut WsConn) -> Result<(), Fail> {
    conn.flush()
        .await
        .map_err(|e| Fail::new("io", e.to_string()))
}

/// Which namespace a connection joins, and with what CONNECT payload.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// `""` for `/`, else the namespace (`/chat`).
    pub ns: String,
    /// The CONNECT payload (a JSON object, e.g. `{"token":"…"}`), if any.
    pub auth: Option<String>,
    /// The token of `auth`, which an Engine.IO v3 connection sends in the
    /// namespace's query instead (`40/chat?token=…,`).
    pub token: Option<String>,
    /// Speak Engine.IO v3 / Socket.IO 4 (socket.io 2.x): the server
    /// connects `/` by itself, and the client pings.
    pub eio3: bool,
}

impl Connect {
    /// Namespace `/`, no payload: what the peer benchmarks use.
    pub fn root() -> Connect {
        Connect::default()
    }

    /// Namespace `ns` (`/chat`) with `{"token": token}` as the payload.
    pub fn with_token(ns: &str, token: &str) -> Connect {
        Connect {
            ns: if ns == "/" {
                String::new()
            } else {
                ns.to_string()
            },
            auth: Some(serde_json::json!({ "token": token }).to_string()),
            token: Some(token.to_string()),
            eio3: false,
        }
    }

    /// `4T` plus `/ns,` when the namespace is not `/`.
    fn prefix(&self, kind: u8) -> Vec<u8> {
        let mut p = vec![b'4', kind];
        if !self.ns.is_empty() {
            p.extend_from_slice(self.ns.as_bytes());
            p.push(b',');
        }
        p
    }

    /// The CONNECT packet: `40`, `40{auth}` or `40/ns,{auth}`; for v3,
    /// `40/ns,` or `40/ns?token=…,` (tokens are URL-safe: JWTs), and none
    /// for `/`, which the server connects by itself.
    pub fn packet(&self) -> Option<Vec<u8>> {
        if self.eio3 {
            if self.ns.is_empty() {
                return None;
            }
            let mut p = b"40".to_vec();
            p.extend_from_slice(self.ns.as_bytes());
            if let Some(t) = &self.token {
                p.extend_from_slice(b"?token=");
                p.extend_from_slice(t.as_bytes());
            }
            p.push(b',');
            return Some(p);
        }
        let mut p = self.prefix(b'0');
        if let Some(a) = &self.auth {
            p.extend_from_slice(a.as_bytes());
        }
        Some(p)
    }
}

/// Takes a Socket.IO packet of namespace `ns` (`""` = `/`) apart:
/// `4T[/ns,][ID]DATA` → `(T, ID, DATA)`. `None` for another namespace or
/// anything that is not a Socket.IO packet.
pub fn split_packet<'a>(p: &'a [u8], ns: &str) -> Option<(u8, Option<u64>, &'a [u8])> {
    if p.len() < 2 || p[0] != b'4' {
        return None;
    }
    let kind = p[1];
    let mut pos = 2;
    if ns.is_empty() {
        // Another namespace's packet names it.
        if p.get(pos) == Some(&b'/') {
            return None;
        }
    } else {
        let rest = &p[pos..];
        if !rest.starts_with(ns.as_bytes()) || rest.get(ns.len()) != Some(&b',') {
            return None;
        }
        pos += ns.len() + 1;
    }
    let id = crate::stats::parse_u64(p, &mut pos);
    Some((kind, id, &p[pos..]))
}

/// The payload of an event whose `["name",` has been taken off: `{…}]`,
/// or `{…},"17"]` when the server appends a connection state recovery
/// offset (on by default in Switchboard; the reference server's
/// `connectionStateRecovery` does the same). `None` if the payload does not
/// parse as `T` or anything else follows it.
pub fn event_payload<'a, T: serde::Deserialize<'a>>(rest: &'a [u8]) -> Option<T> {
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
    let value = values.next()?.ok()?;
    let tail = &rest[values.byte_offset()..];
    let offset = (tail.strip_prefix(b",\""))
        .and_then(|t| t.strip_suffix(b"\"]"))
        .is_some_and(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
    (tail == b"]" || offset).then_some(value)
}

/// Queues `42[/ns,]ID[body…]`: an event with ack id `id`; `body` is the
/// JSON array's inside (`"message",{…}`), in parts.
pub fn queue_emit(conn: &mut WsConn, head: &mut Vec<u8>, ns: &str, id: u64, body: &[&[u8]]) {
    head.clear();
    head.extend_from_slice(b"42");
    if !ns.is_empty() {
        head.extend_from_slice(ns.as_bytes());
        head.push(b',');
    }
    crate::stats::push_u64(head, id);
    head.push(b'[');
    let mut parts: Vec<&[u8]> = Vec::with_capacity(body.len() + 2);
    parts.push(head);
    parts.extend_from_slice(body);
    parts.push(b"]");
    conn.queue_text(&parts);
}

/// Opens a Socket.IO connection to namespace `/`: WebSocket upgrade, the
/// Engine.IO open packet, `40`, and the CONNECT ack `40{...}`.
pub async fn open(target: &Target, rbuf: usize, timeout: Duration) -> Result<WsConn, Fail> {
    open_with(target, &Connect::root(), rbuf, timeout).await
}

/// Opens a Socket.IO connection to the namespace of `connect`, sending its
/// payload; a CONNECT refusal (`44`) is a `connect_error` failure.
pub async fn open_with(
    target: &Target,
    connect: &Connect,
    rbuf: usize,
    timeout: Duration,
) -> Result<WsConn, Fail> {
    match tokio::time::timeout(timeout, open_inner(target, connect, rbuf)).await {
        Ok(r) => r,
        Err(_) => Err(Fail::new(
            "handshake_timeout",
            format!("no CONNECT ack within {timeout:?}"),
        )),
    }
}

async fn open_inner(target: &Target, connect: &Connect, rbuf: usize) -> Result<WsConn, Fail> {
    let path = if connect.eio3 {
        &target.path_v3
    } else {
        &target.path
    };
    let mut conn = WsConn::connect(target.addr, &target.host, path, rbuf).await?;
    // Engine.IO open packet.
    loop {
        if let Some(m) = next_packet(&mut conn)? {
            let p = conn.payload(m);
            if p.starts_with(b"0{") {
                if connect.eio3 {
                    let every = ping_interval(&p[1..]).ok_or_else(|| {
                        Fail::new("eio_open", "no pingInterval in the open packet")
                    })?;
                    conn.ping_every(every);
                }
                break;
            }
            return Err(Fail::new(
                "eio_open",
                format!(
                    "expected the open packet, got {:?}",
                    String::from_utf8_lossy(&p[..p.len().min(80)])
                ),
            ));
        }
        fill(&mut conn).await?;
    }
    if let Some(packet) = connect.packet() {
        conn.queue_text(&[&packet]);
        flush(&mut conn).await?;
    }
    // Socket.IO CONNECT ack.
    loop {
        while let Some(m) = next_packet(&mut conn)? {
            let p = conn.payload(m);
            match split_packet(p, &connect.ns) {
                Some((b'0', _, _)) => {
                    flush(&mut conn).await?;
                    return Ok(conn);
                }
                Some((b'4', _, _)) => {
                    return Err(Fail::new(
                        "connect_error",
                        String::from_utf8_lossy(&p[..p.len().min(200)]).into_owned(),
                    ));
                }
                _ => {}
            }
        }
        flush(&mut conn).await?;
        fill(&mut conn).await?;
    }
}

/// The `pingInterval` of an open packet's JSON.
fn ping_interval(open: &[u8]) -> Option<Duration> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Open {
        ping_interval: u64,
    }
    let open: Open = serde_json::from_slice(open).ok()?;
    Some(Duration::from_millis(open.ping_interval.max(1)))
}

/// Keeps an open connection alive (answering pings, discarding everything
/// else) until `stop` fires (a send or the sender being dropped).
pub async fn hold(conn: &mut WsConn, stop: &mut oneshot::Receiver<()>) -> Result<(), Fail> {
    loop {
        tokio::select! {
            biased;
            _ = &mut *stop => return Ok(()),
            r = fill(conn) => {
                r?;
                while next_packet(conn)?.is_some() {}
                flush(conn).await?;
            }
        }
    }
}

/// What every scenario needs to open connections.
pub struct Ctx {
    /// The first server: the only one, or where `fanout`'s publisher goes.
    pub target: Arc<Target>,
    /// Every server (`target` first): [`ramp`] spreads connections over
    /// them round-robin. One for every scenario but `fanout` and `conns`.
    pub targets: Vec<Arc<Target>>,
    /// Connections started per second while ramping.
    pub ramp_per_sec: f64,
    /// Handshakes in flight at once while ramping.
    pub max_handshakes: usize,
    /// Limit for one full handshake (TCP, upgrade, open, CONNECT).
    pub handshake_timeout: Duration,
    pub failures: Arc<Failures>,
    /// The share of [`ramp`]'s connections that speak Engine.IO v3
    /// (socket.io 2.x clients), spread evenly: 0.5 is every other one.
    pub eio3_share: f64,
}

impl Ctx {
    /// Whether connection `i` of a ramp speaks Engine.IO v3: the `i`-th
    /// step that makes `floor(i × share)` grow.
    pub fn eio3_for(&self, i: usize) -> bool {
        let share = self.eio3_share.clamp(0.0, 1.0);
        ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
    }

    /// The server connection `i` goes to: the targets in turn.
    pub fn target_for(&self, i: usize) -> Arc<Target> {
        match self.targets.len() {
            0 => self.target.clone(),
            n => self.targets[i % n].clone(),
        }
    }
}

/// Opens `n` connections, starting at most `ctx.ramp_per_sec` per second with
/// at most `ctx.max_handshakes` handshakes at once, connection `i` to
/// `ctx.targets[i % len]` (a cluster's nodes in turn), each on a worker of
/// [`crate::pool`]. `make(i)` is called on the coordinator before connection
/// `i` is started and returns what that connection then runs, on the same
/// worker, once its handshake succeeds. Failed handshakes are counted in
/// `ctx.failures` and not retried. Returns once every handshake has finished,
/// with the handshake durations (microseconds) of the successful ones and the
/// handles of every connection task.
pub async fn ramp<M, C, Fut>(
    ctx: &Ctx,
    n: usize,
    rbuf: usize,
    mut make: M,
) -> (Vec<u64>, Vec<JoinHandle<()>>)
where
    M: FnMut(usize) -> C,
    C: FnOnce(WsConn) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    ramp_with(ctx, n, rbuf, |i| (Connect::root(), make(i))).await
}

/// [`ramp`] where `make(i)` also says which namespace connection `i` joins
/// and with what payload (a token per user).
pub async fn ramp_with<M, C, Fut>(
    ctx: &Ctx,
    n: usize,
    rbuf: usize,
    mut make: M,
) -> (Vec<u64>, Vec<JoinHandle<()>>)
where
    M: FnMut(usize) -> (Connect, C),
    C: FnOnce(WsConn) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(ctx.max_handshakes.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<u64>>();
    let start = tokio::time::Instant::now();
    let per_sec = ctx.ramp_per_sec.max(0.001);
    let mut launched = 0usize;
    let mut done = 0usize;
    let mut times = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    while done < n {
        let next_due = start + Duration::from_secs_f64(launched as f64 / per_sec);
        tokio::select! {
            biased;
            Some(r) = rx.recv() => {
                done += 1;
                if let Some(us) = r {
                    times.push(us);
                }
            }
            permit = sem.clone().acquire_owned(), if launched < n => {
                let Ok(permit) = permit else { break };
                tokio::time::sleep_until(next_due).await;
                let (mut connect, cont) = make(launched);
                connect.eio3 = ctx.eio3_for(launched);
                let target = ctx.target_for(launched);
                launched += 1;
                let tx = tx.clone();
                handles.push(crate::pool::spawn(connect_then_with(
                    target,
                    connect,
                    rbuf,
                    ctx.handshake_timeout,
                    ctx.failures.clone(),
                    permit,
                    move |r| {
                        let _ = tx.send(r);
                    },
                    cont,
                )));
            }
        }
    }
    (times, handles)
}

/// One connection's task: handshake (reporting its duration, or `None` on
/// failure, to `done`), then `cont`.
pub async fn connect_then<D, C, Fut>(
    target: Arc<Target>,
    rbuf: usize,
    timeout: Duration,
    failures: Arc<Failures>,
    permit: OwnedSemaphorePermit,
    done: D,
    cont: C,
) where
    D: FnOnce(Option<u64>),
    C: FnOnce(WsConn) -> Fut,
    Fut: Future<Output = ()>,
{
    connect_then_with(
        target,
        Connect::root(),
        rbuf,
        timeout,
        failures,
        permit,
        done,
        cont,
    )
    .await
}

/// [`connect_then`] joining the namespace of `connect`.
#[allow(clippy::too_many_arguments)]
pub async fn connect_then_with<D, C, Fut>(
    target: Arc<Target>,
    connect: Connect,
    rbuf: usize,
    timeout: Duration,
    failures: Arc<Failures>,
    permit: OwnedSemaphorePermit,
    done: D,
    cont: C,
) where
    D: FnOnce(Option<u64>),
    C: FnOnce(WsConn) -> Fut,
    Fut: Future<Output = ()>,
{
    let t0 = now_us();
    let r = open_with(&target, &connect, rbuf, timeout).await;
    let took = now_us() - t0;
    drop(permit);
    match r {
        Ok(conn) => {
            done(Some(took));
            cont(conn).await;
        }
        Err(f) => {
            f.count_in(&failures);
            done(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::testutil::{read_client_frame, server_frame};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Accepts one connection and reads its upgrade request's head.
    async fn accept_upgrade(
        listener: &tokio::net::TcpListener,
    ) -> (tokio::net::TcpStream, Vec<u8>) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            req.extend_from_slice(&b[..n]);
        }
        (s, req)
    }

    /// A scripted server: open packet, CONNECT ack, then a ping, an event
    /// and an Engine.IO close.
    #[tokio::test]
    async fn handshake_pings_and_close_are_handled() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, req) = accept_upgrade(&listener).await;
            assert!(req.starts_with(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1"));
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
            out.extend(server_frame(0x81, br#"0{"sid":"a","pingInterval":25000}"#));
            s.write_all(&out).await.unwrap();
            assert_eq!(read_client_frame(&mut s).await.1, b"40");
            let mut out = server_frame(0x81, br#"40{"sid":"b"}"#);
            out.extend(server_frame(0x81, b"2"));
            out.extend(server_frame(0x81, br#"42["msg",1,2,"x"]"#));
            s.write_all(&out).await.unwrap();
            assert_eq!(read_client_frame(&mut s).await.1, b"3");
            s.write_all(&server_frame(0x81, b"1")).await.unwrap();
        });
        let target = Target::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
        let mut conn = open(&target, 1024, Duration::from_secs(5)).await.unwrap();
        let mut events = 0;
        let err = loop {
            match next_packet(&mut conn) {
                Ok(Some(m)) => {
                    assert_eq!(conn.payload(m), br#"42["msg",1,2,"x"]"#);
                    events += 1;
                    continue;
                }
                Ok(None) => {}
                Err(f) => break f,
            }
            flush(&mut conn).await.unwrap();
            if let Err(f) = fill(&mut conn).await {
                break f;
            }
        };
        assert_eq!(events, 1);
        assert_eq!(err.kind, "server_closed");
        server.await.unwrap();
    }

    /// Engine.IO v3: the v3 path, no CONNECT for `/` (the server's `40`
    /// comes by itself), the client's pings every pingInterval answered
    /// with `3` (skipped), events as usual.
    #[tokio::test]
    async fn eio3_waits_for_the_servers_connect_and_pings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, req) = accept_upgrade(&listener).await;
            assert!(req.starts_with(b"GET /socket.io/?EIO=3&transport=websocket HTTP/1.1"));
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
            out.extend(server_frame(0x81, br#"0{"sid":"a","pingInterval":50}"#));
            out.extend(server_frame(0x81, b"40"));
            s.write_all(&out).await.unwrap();
            // The client's first frame is a ping, not a CONNECT.
            for _ in 0..2 {
                assert_eq!(read_client_frame(&mut s).await.1, b"2");
                s.write_all(&server_frame(0x81, b"3")).await.unwrap();
            }
            s.write_all(&server_frame(0x81, br#"42["msg",1,2,"x"]"#))
                .await
                .unwrap();
            s.write_all(&server_frame(0x81, b"1")).await.unwrap();
        });
        let target = Target::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
        let connect = Connect {
            eio3: true,
            ..Connect::root()
        };
        let mut conn = open_with(&target, &connect, 1024, Duration::from_secs(5))
            .await
            .unwrap();
        let mut events = Vec::new();
        let err = loop {
            match next_packet(&mut conn) {
                Ok(Some(m)) => {
                    events.push(conn.payload(m).to_vec());
                    continue;
                }
                Ok(None) => {}
                Err(f) => break f,
            }
            if let Err(f) = fill(&mut conn).await {
                break f;
            }
        };
        assert_eq!(events, [br#"42["msg",1,2,"x"]"#.to_vec()]);
        assert_eq!(err.kind, "server_closed");
        server.await.unwrap();
    }

    /// A namespace CONNECT carries the auth payload; the ack is the
    /// namespace's `40/chat,{…}`; events of the namespace come apart.
    #[tokio::test]
    async fn namespace_connect_with_auth() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = accept_upgrade(&listener).await;
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
            out.extend(server_frame(0x81, br#"0{"sid":"a","pingInterval":25000}"#));
            s.write_all(&out).await.unwrap();
            assert_eq!(
                read_client_frame(&mut s).await.1,
                br#"40/chat,{"token":"t.o.k"}"#
            );
            // Another namespace's packet first: not the ack.
            let mut out = server_frame(0x81, br#"40/other,{"sid":"x"}"#);
            out.extend(server_frame(0x81, br#"40/chat,{"sid":"b"}"#));
            out.extend(server_frame(0x81, br#"43/chat,7[{"ok":true}]"#));
            s.write_all(&out).await.unwrap();
            assert_eq!(
                read_client_frame(&mut s).await.1,
                br#"42/chat,8["message",{"a":1}]"#
            );
            let (mut s2, _) = accept_upgrade(&listener).await;
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
            out.extend(server_frame(0x81, br#"0{"sid":"c","pingInterval":25000}"#));
            s2.write_all(&out).await.unwrap();
            let _ = read_client_frame(&mut s2).await;
            s2.write_all(&server_frame(
                0x81,
                br#"44/chat,{"message":"unauthorized"}"#,
            ))
            .await
            .unwrap();
        });
        let target = Target::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
        let connect = Connect {
            ns: "/chat".into(),
            auth: Some(r#"{"token":"t.o.k"}"#.into()),
            ..Connect::default()
        };
        let mut conn = open_with(&target, &connect, 1024, Duration::from_secs(5))
            .await
            .unwrap();
        let ack = loop {
            if let Some(m) = next_packet(&mut conn).unwrap() {
                break conn.payload(m).to_vec();
            }
            fill(&mut conn).await.unwrap();
        };
        assert_eq!(
            split_packet(&ack, "/chat"),
            Some((b'3', Some(7), br#"[{"ok":true}]"#.as_slice()))
        );
        let mut head = Vec::new();
        queue_emit(
            &mut conn,
            &mut head,
            "/chat",
            8,
            &[b"\"message\",", br#"{"a":1}"#],
        );
        flush(&mut conn).await.unwrap();
        let err = open_with(&target, &connect, 1024, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind, "connect_error");
        server.await.unwrap();
    }

    #[test]
    fn event_payloads_parse_with_or_without_an_offset() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct P {
            n: u64,
        }
        assert_eq!(event_payload(br#"{"n":1}]"#), Some(P { n: 1 }));
        assert_eq!(event_payload(br#"{"n":1},"17"]"#), Some(P { n: 1 }));
        assert_eq!(event_payload::<P>(br#"{"n":1},"x"]"#), None);
        assert_eq!(event_payload::<P>(br#"{"n":1},2]"#), None);
        assert_eq!(event_payload::<P>(br#"{"n":1}"#), None);
        assert_eq!(event_payload::<P>(br#"{"m":1}]"#), None);
    }

    #[test]
    fn packets_come_apart() {
        assert_eq!(
            split_packet(br#"42/chat,["message",{}]"#, "/chat"),
            Some((b'2', None, br#"["message",{}]"#.as_slice()))
        );
        assert_eq!(
            split_packet(b"43/chat,12[]", "/chat"),
            Some((b'3', Some(12), b"[]".as_slice()))
        );
        assert_eq!(split_packet(b"42/chatty,[]", "/chat"), None);
        assert_eq!(split_packet(b"42/chat,[]", ""), None);
        assert_eq!(
            split_packet(b"435[1]", ""),
            Some((b'3', Some(5), b"[1]".as_slice()))
        );
        assert_eq!(split_packet(b"3", ""), None);
        assert_eq!(Connect::root().packet().unwrap(), b"40");
        assert_eq!(
            Connect::with_token("/chat", "a\"b").packet().unwrap(),
            br#"40/chat,{"token":"a\"b"}"#
        );
        assert_eq!(
            Connect::with_token("/", "t").packet().unwrap(),
            br#"40{"token":"t"}"#
        );
        // Engine.IO v3: nothing for `/` (the server connects it), the token
        // in the namespace's query.
        let v3 = |mut c: Connect| {
            c.eio3 = true;
            c.packet()
        };
        assert_eq!(v3(Connect::root()), None);
        assert_eq!(
            v3(Connect::with_token("/chat", "x.y.z")).unwrap(),
            b"40/chat?token=x.y.z,"
        );
    }

    #[test]
    fn loopback_urls_are_accepted() {
        let t = Target::parse("ws://127.0.0.1:3100").unwrap();
        assert_eq!(t.addr, "127.0.0.1:3100".parse().unwrap());
        assert_eq!(t.path, "/socket.io/?EIO=4&transport=websocket");
        let t = Target::parse("ws://localhost:80/socket.io/").unwrap();
        assert_eq!(t.host, "localhost:80");
        let t = Target::parse("ws://[::1]:3200/custom").unwrap();
        assert_eq!(t.addr, "[::1]:3200".parse().unwrap());
        assert_eq!(t.path, "/custom/?EIO=4&transport=websocket");
    }

    #[test]
    fn other_hosts_are_refused() {
        for u in [
            "ws://10.0.0.1:3100",
            "ws://example.com:80",
            "ws://127.0.0.2:3100",
            "ws://0.0.0.0:3100",
            "wss://127.0.0.1:3100",
            "ws://127.0.0.1",
            "ws://[::2]:1",
        ] {
            assert!(Target::parse(u).is_err(), "{u}");
        }
    }
}
