//! One bound for what a WebSocket connection holds on its outbound side:
//! `engine.max_queued_bytes` counts the frames queued for the session and
//! the bytes its writer encoded that the kernel has not taken yet,
//! together, so a client that stops reading is closed once the server
//! holds about `max_queued_bytes` for it, not two or three times that.
//! What the kernel holds for the connection comes on top (it is not the
//! server's memory to bound) and is read from `/proc/net/tcp`.

mod common;

use std::net::SocketAddr;

use common::{Client, start};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::MaybeTlsStream;

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
