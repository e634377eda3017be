//! What one WebSocket client can cost the server: a ping flood from a client
//! that never reads, messages that never complete (per connection, in total,
//! in time), outbound queues bounded in bytes, and close codes a client may
//! not send. The CPU and memory figures are the real binary's, read from
//! `/proc/PID/stat` and `/proc/PID/status`.
//!
//! One bound for what a WebSocket connection holds on its outbound side:
//! `engine.max_queued_bytes` counts the frames queued for the session and
//! the bytes its writer encoded that the kernel has not taken yet,
//! together, so a client that stops reading is closed once the server
//! holds about `max_queued_bytes` for it, not two or three times that.
//! What the kernel holds for the connection comes on top (it is not the
//! server's memory to bound) and is read from `/proc/net/tcp`.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::binary::Binary;
use crate::common::{Client, WAIT, publish_until_slow_consumer, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;

/// A client frame (masked), `fin` set unless said otherwise.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    header_len(&mut out, payload.len());
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The masked length bytes of a client frame.
fn header_len(out: &mut Vec<u8>, len: usize) {
    match len {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
}

/// The header (and zero mask) of a client text frame announcing `len` bytes;
/// the payload then goes unmasked.
fn announce_text(len: usize) -> Vec<u8> {
    let mut out = vec![0x81];
    header_len(&mut out, len);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// A WebSocket opened by hand (the Engine.IO `open` packet is left unread),
/// with a receive buffer of `recv_buffer` bytes if given.
async fn raw_ws(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut tcp = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Up to the end of the 101 response, one byte at a time so that nothing
    // after it is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut byte))
            .await
            .expect("no upgrade response")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Reads server frames until a close frame (returns its code) or the end
/// of the connection (`None`).
async fn read_until_close(tcp: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        loop {
            // Complete frames first.
            while buf.len() >= 2 {
                let (len, at) = match buf[1] & 0x7f {
                    126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                    127 if buf.len() >= 10 => {
                        let mut raw = [0u8; 8];
                        raw.copy_from_slice(&buf[2..10]);
                        (u64::from_be_bytes(raw) as usize, 10)
                    }
                    126 | 127 => break,
                    n => (n as usize, 2),
                };
                if buf.len() < at + len {
                    break;
                }
                if buf[0] & 0x0f == 0x8 {
                    return (len >= 2).then(|| u16::from_be_bytes([buf[at], buf[at + 1]]));
                }
                buf.drain(..at + len);
            }
            let mut chunk = [0u8; 65536];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    read.await.expect("the server did not close the connection")
}

/// Reads server frames until a text frame; returns it.
async fn read_text(tcp: &mut TcpStream) -> String {
    let mut head = [0u8; 2];
    loop {
        tokio::time::timeout(WAIT, tcp.read_exact(&mut head))
            .await
            .expect("no frame")
            .unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut raw = [0u8; 2];
                tcp.read_exact(&mut raw).await.unwrap();
                u16::from_be_bytes(raw) as usize
            }
            127 => {
                let mut raw = [0u8; 8];
                tcp.read_exact(&mut raw).await.unwrap();
                u64::from_be_bytes(raw) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == 0x1 {
            return String::from_utf8(payload).unwrap();
        }
    }
}

/// The real binary, configured by `toml` (after `listen` and `data_dir`),
/// logging warnings only.
async fn spawn(toml: &str) -> Binary {
    Binary::spawn(toml, |command, _| {
        command.env("SWITCHBOARD_LOG_LEVEL", "warn");
    })
    .await
}

/// CPU time (user + system) process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 (1-based): 12 and 13 here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// Resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// A client floods pings with a tiny receive buffer and never reads: the
/// server answers only the latest ping while a pong is unsent, stops
/// reading from a connection it cannot write to, and so spends almost no
/// CPU and memory on it.
#[tokio::test]
async fn a_ping_flood_from_a_client_that_never_reads_costs_little() {
    let flood_for = Duration::from_secs(
        std::env::var("SB_FLOOD_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let server = spawn("").await;
    let mut flooder = raw_ws(server.addr, Some(4096)).await;
    let (cpu_before, rss_before) = (cpu_seconds(server.pid()), rss_bytes(server.pid()));
    let ping = frame(true, 0x9, b"ping");
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 4096)
        .collect();
    let deadline = tokio::time::Instant::now() + flood_for;
    let mut sent = 0usize;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, flooder.write_all(&batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(err)) => panic!("the server closed the connection: {err}"),
            Err(_) => break, // the server stopped reading: the flood is held back
        }
    }
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let rss_after = rss_bytes(server.pid());
    let grew = rss_after.saturating_sub(rss_before);
    eprintln!(
        "ping flood {flood_for:?}: {sent} bytes of pings sent, server CPU {cpu:.2} s, \
         RSS {rss_before} -> {rss_after} (+{grew} bytes)"
    );
    assert!(cpu < 1.0, "the flood cost the server {cpu:.2} CPU-seconds");
    assert!(grew < 16 << 20, "the server's memory grew by {grew} bytes");
    // Meanwhile the server serves others.
    let mut other = raw_ws(server.addr, None).await;
    assert!(read_text(&mut other).await.starts_with('0'));
    drop(flooder);
}

/// 200 connections each send 900 KB of a 1 MB message and stop: past
/// `engine.max_partial_bytes` the connection holding the most is closed, so
/// the server holds about the budget, not 180 MB.
#[tokio::test]
async fn incomplete_messages_are_bounded_in_total() {
    let budget: usize = std::env::var("SB_PARTIAL_BUDGET")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32 << 20);
    let server = spawn(&format!("[engine]\nmax_partial_bytes = {budget}")).await;
    let rss_before = rss_bytes(server.pid());
    let started = Instant::now();
    let mut conns = Vec::new();
    let part = vec![b'x'; 900_000];
    for _ in 0..200 {
        let mut tcp = raw_ws(server.addr, None).await;
        tcp.write_all(&announce_text(1_000_000)).await.unwrap();
        // The server may close it meanwhile: that is the point.
        let _ = tcp.write_all(&part).await;
        conns.push(tcp);
    }
    // Everything sent has been read (or refused) once a fresh client is
    // answered... after the server had its turn on every connection.
    let mut probe = raw_ws(server.addr, None).await;
    let open = read_text(&mut probe).await;
    assert!(open.starts_with('0'), "{open}");
    let rss_after = rss_bytes(server.pid());
    let grew = rss_after.saturating_sub(rss_before);
    eprintln!(
        "200 x 900 KB partial messages (budget {budget}) in {:?}: RSS {rss_before} -> \
         {rss_after} (+{grew} bytes)",
        started.elapsed()
    );
    assert!(
        grew < (budget as u64) + (32 << 20),
        "the server holds {grew} bytes for incomplete messages"
    );
}

/// A frame announcing 1 MB of which 10 bytes came holds about 10 bytes (the
/// announced length is never reserved before its bytes arrive).
#[tokio::test]
async fn an_announced_length_is_not_reserved() {
    let server = start("").await;
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut tcp = raw_ws(server.addr, None).await;
        tcp.write_all(&announce_text(999_000)).await.unwrap();
        tcp.write_all(b"4x........").await.unwrap();
        conns.push(tcp);
    }
    // Every one of them has been read once the total reaches 20 headers + 10 bytes.
    let deadline = Instant::now() + WAIT;
    loop {
        let held = server.app.engine.stats().partial_bytes;
        if held >= 20 * 24 {
            assert!(held <= 20 * 8192, "{held} bytes held for 20 x 24 bytes");
            break;
        }
        assert!(Instant::now() < deadline, "only {held} bytes seen");
        tokio::task::yield_now().await;
    }
}

/// Opens a raw WebSocket and joins namespace `/` (the `open` and CONNECT
/// replies read).
async fn raw_connected(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let mut tcp = raw_ws(addr, recv_buffer).await;
    assert!(read_text(&mut tcp).await.starts_with('0'));
    tcp.write_all(&frame(true, 0x1, b"40")).await.unwrap();
    let connected = read_text(&mut tcp).await;
    assert!(connected.starts_with("40{"), "{connected}");
    tcp
}

/// Waits until the engine holds at least `bytes` for incomplete messages.
async fn until_partial_at_least(server: &common::TestServer, bytes: usize) {
    let deadline = Instant::now() + WAIT;
    while server.app.engine.stats().partial_bytes < bytes {
        assert!(
            Instant::now() < deadline,
            "{} bytes held, {bytes} expected",
            server.app.engine.stats().partial_bytes
        );
        tokio::task::yield_now().await;
    }
}

/// Past `engine.max_partial_bytes`, the connection holding the most is
/// closed; the other partial senders and the other clients go on.
#[tokio::test]
async fn past_the_partial_budget_the_largest_holder_is_closed() {
    let server = start("[engine]\nmax_partial_bytes = 400000").await;
    // A: 200 KB of a 500 KB message.
    let mut a = raw_ws(server.addr, None).await;
    a.write_all(&announce_text(500_000)).await.unwrap();
    a.write_all(&vec![b'x'; 200_000]).await.unwrap();
    until_partial_at_least(&server, 200_000).await;
    // B: all but the end of a valid event, 20 KB.
    let mut b = raw_connected(server.addr, None).await;
    let event = format!(r#"421["echo","{}"]"#, "b".repeat(20_000));
    b.write_all(&announce_text(event.len())).await.unwrap();
    b.write_all(&event.as_bytes()[..event.len() - 2])
        .await
        .unwrap();
    until_partial_at_least(&server, 220_000).await;
    // C: 100 KB, which takes the total past the budget.
    let mut c = raw_ws(server.addr, None).await;
    c.write_all(&announce_text(500_000)).await.unwrap();
    c.write_all(&vec![b'x'; 100_000]).await.unwrap();
    assert_eq!(
        read_until_close(&mut a).await,
        Some(1009),
        "A was not closed"
    );
    // B completes its message and is answered; C is still held.
    b.write_all(&event.as_bytes()[event.len() - 2..])
        .await
        .unwrap();
    let ack = read_text(&mut b).await;
    assert_eq!(ack, format!(r#"431["{}"]"#, "b".repeat(20_000)));
    assert!(server.app.engine.stats().partial_bytes >= 100_000);
    // And everyone else is served.
    let (mut other, _) = Client::connect(server.addr).await;
    other.emit(2, "echo", r#""hi""#).await;
    assert_eq!(other.recv().await, r#"432["hi"]"#);
    drop(c);
}

/// A message that does not complete within `engine.partial_timeout_ms`
/// closes its connection (1008), whether a frame or a fragmented message.
#[tokio::test]
async fn a_message_that_does_not_complete_in_time_closes_its_connection() {
    let server = start("[engine]\npartial_timeout_ms = 300").await;
    let started = Instant::now();
    let mut stalled_frame = raw_ws(server.addr, None).await;
    stalled_frame.write_all(&announce_text(1000)).await.unwrap();
    stalled_frame.write_all(b"4 not all").await.unwrap();
    let mut stalled_message = raw_ws(server.addr, None).await;
    stalled_message
        .write_all(&frame(false, 0x1, b"4first fragment"))
        .await
        .unwrap();
    assert_eq!(read_until_close(&mut stalled_frame).await, Some(1008));
    assert_eq!(read_until_close(&mut stalled_message).await, Some(1008));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the timeout"
    );
    // A client that completes its messages is not affected.
    let (mut other, _) = Client::connect(server.addr).await;
    other.emit(3, "echo", "1").await;
    assert_eq!(other.recv().await, "433[1]");
}

/// A close frame with a code a client may not send is answered with 1002,
/// never echoed; a valid code is.
#[tokio::test]
async fn a_close_with_a_code_a_client_may_not_send_is_answered_with_1002() {
    let server = start("").await;
    for (sent, answer) in [
        (1005u16, 1002u16),
        (1006, 1002),
        (999, 1002),
        (1004, 1002),
        (1015, 1002),
        (1016, 1002),
        (2999, 1002),
        (5000, 1002),
        (1000, 1000),
        (4000, 4000),
    ] {
        let mut tcp = raw_ws(server.addr, None).await;
        tcp.write_all(&frame(true, 0x8, &sent.to_be_bytes()))
            .await
            .unwrap();
        assert_eq!(
            read_until_close(&mut tcp).await,
            Some(answer),
            "close {sent}"
        );
    }
}

/// A client that never reads is disconnected once its queue passes
/// `engine.max_queued_bytes`, long before `max_queued_frames`; the
/// publisher is still served.
#[tokio::test]
async fn a_queue_past_its_byte_bound_disconnects_the_slow_consumer() {
    let server = start("[engine]\nmax_queued_bytes = 262144").await;
    let mut stalled = raw_connected(server.addr, Some(4096)).await;
    stalled
        .write_all(&frame(true, 0x1, br#"421["join","news"]"#))
        .await
        .unwrap();
    assert_eq!(read_text(&mut stalled).await, r#"431[{"ok":true}]"#);
    // From here on `stalled` reads nothing.
    let (mut publisher, _) = Client::connect(server.addr).await;
    // 4,096 frames (the frame bound) would be 256 MiB: the byte bound trips first.
    publish_until_slow_consumer(&server, &mut publisher, 1_000).await;
    publisher.emit(1, "echo", "1").await;
    assert_eq!(publisher.recv().await, "431[1]");
    assert_eq!(server.app.engine.stats().sessions, 1);
    drop(stalled);
}

/// A polling request body is read as it arrives, under the same rules: one
/// that does not arrive within `engine.partial_timeout_ms` gets a 408 with
/// a JSON body, and its session is closed.
#[tokio::test]
async fn a_polling_body_that_does_not_arrive_in_time_is_refused() {
    let server = start("[engine]\npartial_timeout_ms = 300").await;
    let path = "/socket.io/?EIO=4&transport=polling";
    let open = common::http(server.addr, "GET", path, &[], "").await;
    let open: serde_json::Value = serde_json::from_str(&open.body[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {path}&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: 100000\r\n\r\n4only the start"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&response).contains('}') {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
            }
        }
    });
    read.await.expect("the server kept waiting for the body");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains(r#""code":3"#), "{response}");
    let poll = common::http(server.addr, "GET", &format!("{path}&sid={sid}"), &[], "").await;
    assert_eq!(poll.status, 400, "the session is still open");
}

// ------------------------------------------------ the outbound byte bound

/// The default (8 MiB): well past what loopback's kernel buffers take
/// (about 2.8 MiB here), which is what lets the writer keep a lot unsent.
const MAX_QUEUED_BYTES: u64 = 8 << 20;
/// One event's data.
const CHUNK: usize = 512 * 1024;
/// What the client reads in phase 2.
const READ: u64 = 1536 * 1024;

/// A Socket.IO client on `/` whose receive buffer is `recv_buffer` bytes,
/// so that the kernel holds little of what the server sends it.
/// Returns its local port too.
async fn small_buffer_client(addr: SocketAddr, recv_buffer: u32) -> (Client, u16) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let open = common::next_text(&mut ws).await;
    assert!(open.starts_with('0'), "{open}");
    let mut client = Client {
        ws,
        engine_sid: String::new(),
    };
    client.send("40").await;
    let reply = client.recv().await;
    assert!(reply.starts_with("40{"), "{reply}");
    (client, port)
}

/// The bytes the kernel holds for the loopback connection between
/// `server_port` and `client_port`: the server's send queue (sent and not
/// acknowledged, or not sent yet) and the client's receive queue (received,
/// not read). Fields of `/proc/net/tcp`: local and remote `ADDR:PORT` in
/// hex, the state, then `tx_queue:rx_queue` in hex.
fn kernel_held(server_port: u16, client_port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    let mut held = 0;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote) = (port(fields[1]), port(fields[2]));
        let (tx, rx) = fields[4].split_once(':').unwrap();
        let (tx, rx) = (
            u64::from_str_radix(tx, 16).unwrap(),
            u64::from_str_radix(rx, 16).unwrap(),
        );
        if (local, remote) == (server_port, client_port) {
            held += tx;
        } else if (local, remote) == (client_port, server_port) {
            held += rx;
        }
    }
    held
}

/// A client stops reading while events are published to it, reads some of
/// them (enough for the server's writer to go on), and stops again: the
/// writer then holds, unsent, most of what was queued, and the queue fills
/// again behind it. The session is closed as a slow consumer once what the
/// server holds for it, queued and unsent together, passes
/// `max_queued_bytes`; bounded apart, they let about twice as much through.
#[tokio::test]
async fn queued_and_unsent_bytes_share_max_queued_bytes() {
    let server = start(&format!("[engine]\nmax_queued_bytes = {MAX_QUEUED_BYTES}")).await;
    let (mut stalled, stalled_port) = small_buffer_client(server.addr, 4096).await;
    stalled.emit(1, "join", r#""news""#).await;
    assert_eq!(stalled.recv().await, r#"431[{"ok":true}]"#);
    // From here on `stalled` is read raw, by the test, and only in phase 2.
    let MaybeTlsStream::Plain(tcp) = stalled.ws.get_mut() else {
        unreachable!("a plain connection")
    };
    let (mut publisher, _) = Client::connect(server.addr).await;
    let chunk = "y".repeat(CHUNK);
    let mut publish = async |id: u64| {
        publisher
            .emit(
                id,
                "broadcast",
                &format!(r#"{{"event":"news","rooms":["news"],"data":"{chunk}"}}"#),
            )
            .await;
        // The ack comes once the event is queued for (or refused to) every
        // member of the room.
        let ack = publisher.recv().await;
        assert!(ack.starts_with(&format!("43{id}[")), "{ack}");
        server.app.engine.stats().slow_consumer_disconnects == 0
    };
    // What the server holds for `stalled`: what was published to it, less
    // what it read and what the kernel holds.
    let (mut accepted, mut read): (u64, u64) = (0, 0);
    let server_port = server.addr.port();
    let held = |accepted: u64, read: u64| {
        accepted.saturating_sub(read + kernel_held(server_port, stalled_port))
    };
    let mut id = 10;

    // 1. The kernel's buffers fill, then the queue, to near the bound.
    while held(accepted, read) < MAX_QUEUED_BYTES - 2 * CHUNK as u64 {
        assert!(
            publish(id).await,
            "closed before the queue was near its bound"
        );
        accepted += CHUNK as u64;
        id += 1;
    }
    let held_before = held(accepted, read);

    // 2. The client reads enough for the kernel to want more (it wakes a
    //    writer once a third of its buffer is free): the writer sends what
    //    it kept, takes the whole queue, and the kernel takes only a part.
    let mut buf = vec![0u8; 64 * 1024];
    while read < READ {
        let n = tokio::time::timeout(common::WAIT, tcp.read(&mut buf))
            .await
            .expect("nothing to read")
            .unwrap();
        assert!(n > 0, "closed while reading");
        read += n as u64;
    }
    // Once the kernel took at least half of that again from the writer, the
    // writer has taken the queue (what it kept was less than one event).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while held(accepted, read) > held_before - READ / 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer did not go on: {} held, {held_before} before",
            held(accepted, read)
        );
        // The kernel's queues have no event to await: let the server's
        // tasks run (this runtime is theirs too), then look again.
        tokio::task::yield_now().await;
    }

    // 3. The client stalls again; publish until it is closed.
    let mut most = 0;
    loop {
        assert!(id < 1_000, "the stalled client was never disconnected");
        most = most.max(held(accepted, read));
        if !publish(id).await {
            break; // this one was refused; the kernel took nothing since
        }
        accepted += CHUNK as u64;
        id += 1;
    }
    eprintln!(
        "published {accepted} bytes to a client that read {read}: the server held \
         {most} bytes for it ({:.2} x max_queued_bytes = {MAX_QUEUED_BYTES}) before \
         closing it",
        most as f64 / MAX_QUEUED_BYTES as f64
    );
    let allowed = MAX_QUEUED_BYTES * 13 / 10 + CHUNK as u64;
    assert!(
        most <= allowed,
        "the server held {most} bytes for a client that does not read (allowed {allowed})"
    );
    // The others are served.
    publisher.emit(2, "echo", "1").await;
    assert_eq!(publisher.recv().await, "432[1]");
    assert_eq!(server.app.engine.stats().slow_consumer_disconnects, 1);
}
