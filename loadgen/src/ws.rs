//! A minimal WebSocket client (RFC 6455) on a raw `tokio::net::TcpStream`.
//!
//! Only what a load generator needs: the HTTP/1.1 upgrade handshake, frame
//! parsing out of one reusable read buffer (7/16/64-bit lengths, FIN and
//! continuation frames, ping → pong, close) and masked frame writing into one
//! reusable write buffer that is flushed in a single `write_all`. Parsed
//! messages are handed out as byte ranges of the read buffer, so the hot path
//! allocates nothing; a range stays valid until the next [`WsConn::fill`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest message accepted from a server (the benchmark servers allow 1 MB).
const MAX_MESSAGE: usize = 16 << 20;
/// Largest HTTP upgrade response accepted.
const MAX_RESPONSE_HEAD: usize = 16 << 10;

/// Frame opcodes.
const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Why a WebSocket operation failed; `kind()` is a stable category for counting.
#[derive(Debug)]
pub enum WsError {
    /// The TCP connection could not be established.
    Connect(io::Error),
    /// Socket-level failure after connecting (read or write).
    Io(io::Error),
    /// The upgrade response was not `101 Switching Protocols` (or unparsable).
    Upgrade(String),
    /// The peer broke RFC 6455 framing.
    Protocol(&'static str),
}

impl WsError {
    pub fn kind(&self) -> &'static str {
        match self {
            WsError::Connect(_) => "tcp_connect",
            WsError::Io(_) => "io",
            WsError::Upgrade(_) => "upgrade",
            WsError::Protocol(_) => "ws_protocol",
        }
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Connect(e) => write!(f, "connect: {e}"),
            WsError::Io(e) => write!(f, "io: {e}"),
            WsError::Upgrade(s) => write!(f, "upgrade: {s}"),
            WsError::Protocol(s) => write!(f, "websocket protocol: {s}"),
        }
    }
}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> Self {
        WsError::Io(e)
    }
}

/// One complete message parsed by [`WsConn::next_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// A single-frame data message at `rbuf[start..end]`.
    Data { start: usize, end: usize },
    /// A message reassembled from continuation frames (held in a side buffer).
    Assembled,
    /// The peer sent a close frame.
    Close,
}

/// A client WebSocket connection.
pub struct WsConn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// Bytes the partial frame at `rstart` needs in total (0 = unknown).
    need: usize,
    wbuf: Vec<u8>,
    frag: Vec<u8>,
    frag_active: bool,
    rng: u64,
    /// Engine.IO v3: the client pings every `.0`; `.1` wakes it when the
    /// next one is due. One timer per connection, reset only when it
    /// fires: not a timer per read. `None` for v4, where the server pings.
    client_pings: Option<(std::time::Duration, Pin<Box<tokio::time::Sleep>>)>,
}

/// Splitmix64 step, used for mask keys and handshake keys (not cryptographic;
/// RFC 6455 masking only has to defeat proxy cache poisoning).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fresh per-connection seed mixing a process-wide counter with the clock.
fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut s = t ^ n.wrapping_mul(0xA24B_AED4_963E_E407);
    splitmix64(&mut s)
}

/// Standard base64 (with padding) of `input`.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// XORs `data` with the 4-byte mask `key` (the mask starts at `data[0]`).
fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let k8 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_ne_bytes(w) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Appends one masked frame with FIN set whose payload is `parts` concatenated.
fn write_frame(wbuf: &mut Vec<u8>, rng: &mut u64, opcode: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    wbuf.push(0x80 | opcode);
    if len < 126 {
        wbuf.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        wbuf.push(0x80 | 126);
        wbuf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        wbuf.push(0x80 | 127);
        wbuf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key = (splitmix64(rng) as u32).to_ne_bytes();
    wbuf.extend_from_slice(&key);
    let start = wbuf.len();
    for p in parts {
        wbuf.extend_from_slice(p);
    }
    apply_mask(&mut wbuf[start..], key);
}

impl WsConn {
    /// Connects to `addr` and performs the upgrade handshake for `path`
    /// (which includes the query string). `rbuf_size` is the initial read
    /// buffer size; it grows only for messages that do not fit.
    pub async fn connect(
        addr: SocketAddr,
        host: &str,
        path: &str,
        rbuf_size: usize,
    ) -> Result<WsConn, WsError> {
        let stream = TcpStream::connect(addr).await.map_err(WsError::Connect)?;
        stream.set_nodelay(true)?;
        let mut rng = fresh_seed();
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&splitmix64(&mut rng).to_ne_bytes());
        key[8..].copy_from_slice(&splitmix64(&mut rng).to_ne_bytes());
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            base64(&key)
        );
        let mut conn = WsConn {
            stream,
            rbuf: vec![0; rbuf_size.max(1024)],
            rstart: 0,
            rend: 0,
            need: 0,
            wbuf: Vec::with_capacity(256),
            frag: Vec::new(),
            frag_active: false,
            rng,
            client_pings: None,
        };
        conn.stream.write_all(req.as_bytes()).await?;
        // Read until the end of the response head; bytes after it are frames.
        let head_end = loop {
            if let Some(i) = find_subslice(&conn.rbuf[..conn.rend], b"\r\n\r\n") {
                break i + 4;
            }
            if conn.rend >= MAX_RESPONSE_HEAD {
                return Err(WsError::Upgrade("response head too large".into()));
            }
            if conn.rend == conn.rbuf.len() {
                conn.rbuf.resize(conn.rbuf.len() * 2, 0);
            }
            let n = conn.stream.read(&mut conn.rbuf[conn.rend..]).await?;
            if n == 0 {
                return Err(WsError::Upgrade("connection closed during upgrade".into()));
            }
            conn.rend += n;
        };
        let head = &conn.rbuf[..head_end];
        let status_line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
        let mut parts = status_line.split(|&b| b == b' ');
        let _version = parts.next();
        if parts.next() != Some(b"101".as_slice()) {
            return Err(WsError::Upgrade(
                String::from_utf8_lossy(status_line).into_owned(),
            ));
        }
        conn.rstart = head_end;
        Ok(conn)
    }

    /// Engine.IO v3: from now on the client pings every `every` (see
    /// [`WsConn::fill_or_ping`]).
    pub fn ping_every(&mut self, every: std::time::Duration) {
        self.client_pings = Some((every, Box::pin(tokio::time::sleep(every))));
    }

    /// Reads more bytes from the socket into the read buffer (one `read`
    /// call): `Some` of how many, 0 at end of stream. Cancel-safe.
    /// Invalidates the ranges of previously returned messages. On an
    /// Engine.IO v3 connection whose next ping falls due first, queues the
    /// ping (`2`), schedules the next one and returns `None` (the caller
    /// flushes).
    pub async fn fill_or_ping(&mut self) -> io::Result<Option<usize>> {
        self.prepare_read();
        let Some((every, sleep)) = self.client_pings.as_mut() else {
            let n = self.stream.read(&mut self.rbuf[self.rend..]).await?;
            self.rend += n;
            return Ok(Some(n));
        };
        // One read() per call: dropping it for the ping loses nothing.
        let read = tokio::select! {
            r = self.stream.read(&mut self.rbuf[self.rend..]) => Some(r?),
            _ = sleep.as_mut() => {
                let next = tokio::time::Instant::now() + *every;
                sleep.as_mut().reset(next);
                None
            }
        };
        match read {
            Some(n) => self.rend += n,
            None => self.queue_text(&[b"2"]),
        }
        Ok(read)
    }

    /// Makes room at the end of the read buffer for the next read.
    fn prepare_read(&mut self) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rstart > 0
            && (self.rend == self.rbuf.len() || self.rstart + self.need > self.rbuf.len())
        {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.need > self.rbuf.len() {
            self.rbuf.resize(self.need, 0);
        } else if self.rend == self.rbuf.len() {
            let n = self.rbuf.len() * 2;
            self.rbuf.resize(n, 0);
        }
    }

    /// Parses the next complete message out of the read buffer, or `None`
    /// when more bytes are needed. Pings are answered (the pong is queued in
    /// the write buffer, see [`WsConn::has_pending`]); pongs are skipped.
    pub fn next_message(&mut self) -> Result<Option<Msg>, WsError> {
        loop {
            let avail = &self.rbuf[self.rstart..self.rend];
            if avail.len() < 2 {
                self.need = 2;
                return Ok(None);
            }
            let b0 = avail[0];
            let b1 = avail[1];
            if b0 & 0x70 != 0 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0F;
            let masked = b1 & 0x80 != 0;
            let mut hdr = 2usize;
            let len = match b1 & 0x7F {
                126 => {
                    if avail.len() < 4 {
                        self.need = 4;
                        return Ok(None);
                    }
                    hdr = 4;
                    u64::from(u16::from_be_bytes([avail[2], avail[3]]))
                }
                127 => {
                    if avail.len() < 10 {
                        self.need = 10;
                        return Ok(None);
                    }
                    hdr = 10;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[2..10]);
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            if len > MAX_MESSAGE as u64 {
                return Err(WsError::Protocol("frame too large"));
            }
            let len = len as usize;
            let key_at = hdr;
            if masked {
                hdr += 4;
            }
            let total = hdr + len;
            if avail.len() < total {
                self.need = total;
                return Ok(None);
            }
            self.need = 0;
            let pstart = self.rstart + hdr;
            let pend = pstart + len;
            if masked {
                let k = self.rstart + key_at;
                let key = [
                    self.rbuf[k],
                    self.rbuf[k + 1],
                    self.rbuf[k + 2],
                    self.rbuf[k + 3],
                ];
                apply_mask(&mut self.rbuf[pstart..pend], key);
            }
            self.rstart = pend;
            match opcode {
                OP_TEXT | OP_BINARY => {
                    if self.frag_active {
                        return Err(WsError::Protocol("data frame inside a fragmented message"));
                    }
                    if fin {
                        return Ok(Some(Msg::Data {
                            start: pstart,
                            end: pend,
                        }));
                    }
                    self.frag_active = true;
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.rbuf[pstart..pend]);
                }
                OP_CONT => {
                    if !self.frag_active {
                        return Err(WsError::Protocol("continuation without a start"));
                    }
                    if self.frag.len() + len > MAX_MESSAGE {
                        return Err(WsError::Protocol("message too large"));
                    }
                    self.frag.extend_from_slice(&self.rbuf[pstart..pend]);
                    if fin {
                        self.frag_active = false;
                        return Ok(Some(Msg::Assembled));
                    }
                }
                OP_CLOSE => return Ok(Some(Msg::Close)),
                OP_PING => {
                    if !fin || len > 125 {
                        return Err(WsError::Protocol("bad ping frame"));
                    }
                    write_frame(
                        &mut self.wbuf,
                        &mut self.rng,
                        OP_PONG,
                        &[&self.rbuf[pstart..pend]],
                    );
                }
                OP_PONG => {}
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }

    /// The payload of a message returned by [`WsConn::next_message`].
    pub fn payload(&self, msg: Msg) -> &[u8] {
        match msg {
            Msg::Data { start, end } => &self.rbuf[start..end],
            Msg::Assembled => &self.frag,
            Msg::Close => &[],
        }
    }

    /// Queues one masked text frame whose payload is `parts` concatenated.
    pub fn queue_text(&mut self, parts: &[&[u8]]) {
        write_frame(&mut self.wbuf, &mut self.rng, OP_TEXT, parts);
    }

    /// Whether frames are queued and not yet written.
    pub fn has_pending(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes every queued frame in one `write_all`. Not cancel-safe.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Sends a close frame (code 1000) and waits up to `wait` for the server
    /// to close the TCP connection, so that TIME_WAIT lands on the server
    /// side. Errors are ignored: the connection is going away anyway.
    pub async fn close(mut self, wait: std::time::Duration) {
        write_frame(
            &mut self.wbuf,
            &mut self.rng,
            OP_CLOSE,
            &[&1000u16.to_be_bytes()],
        );
        if self.flush().await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(wait, async {
            let mut sink = [0u8; 1024];
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Helpers for tests that play the server side.
#[cfg(test)]
pub(crate) mod testutil {
    use super::apply_mask;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    /// A server frame (unmasked) with FIN/opcode byte `b0`.
    pub fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        let len = payload.len();
        if len < 126 {
            f.push(len as u8);
        } else if len <= 0xFFFF {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    /// Reads one masked client frame: (opcode, unmasked payload).
    pub async fn read_client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        assert!(h[1] & 0x80 != 0, "client frames must be masked");
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).await.unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await.unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut key = [0u8; 4];
        s.read_exact(&mut key).await.unwrap();
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).await.unwrap();
        apply_mask(&mut p, key);
        (h[0] & 0x0F, p)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0u8; 16]).len(), 24);
    }

    #[test]
    fn masking_round_trips_for_all_lengths() {
        for len in 0..40 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut data = orig.clone();
            apply_mask(&mut data, [1, 2, 3, 4]);
            for (i, (a, b)) in data.iter().zip(&orig).enumerate() {
                assert_eq!(*a, b ^ [1, 2, 3, 4][i & 3]);
            }
            apply_mask(&mut data, [1, 2, 3, 4]);
            assert_eq!(data, orig);
        }
    }

    #[test]
    fn written_frames_have_the_right_length_encoding() {
        let mut rng = 1;
        for (len, hdr) in [
            (0usize, 6usize),
            (125, 6),
            (126, 8),
            (65535, 8),
            (65536, 14),
        ] {
            let mut w = Vec::new();
            let payload = vec![b'a'; len];
            write_frame(&mut w, &mut rng, OP_TEXT, &[&payload]);
            assert_eq!(w.len(), hdr + len);
            assert_eq!(w[0], 0x81);
            assert!(w[1] & 0x80 != 0);
        }
    }

    #[tokio::test]
    async fn parses_coalesced_fragmented_and_large_frames() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while find_subslice(&req, b"\r\n\r\n").is_none() {
                let n = s.read(&mut b).await.unwrap();
                req.extend_from_slice(&b[..n]);
            }
            let req = String::from_utf8(req).unwrap();
            assert!(req.starts_with("GET /p?q=1 HTTP/1.1\r\n"));
            assert!(req.contains("Sec-WebSocket-Key: "));
            // The 101 and every frame in one write, so that the client has to
            // split them out of one read.
            let mut out =
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
            out.extend(server_frame(0x81, b"small"));
            out.extend(server_frame(0x81, &[b'm'; 300]));
            out.extend(server_frame(0x01, b"frag-"));
            out.extend(server_frame(0x89, b"hi"));
            out.extend(server_frame(0x00, b"ment"));
            out.extend(server_frame(0x80, b"ed"));
            out.extend(server_frame(0x82, &[b'L'; 70_000]));
            out.extend(server_frame(0x88, &1000u16.to_be_bytes()));
            s.write_all(&out).await.unwrap();
            let (op, p) = read_client_frame(&mut s).await;
            assert_eq!((op, p.as_slice()), (OP_PONG, b"hi".as_slice()));
            let (op, p) = read_client_frame(&mut s).await;
            assert_eq!((op, p), (OP_TEXT, vec![b'z'; 200]));
        });
        let mut c = WsConn::connect(addr, "localhost", "/p?q=1", 1024)
            .await
            .unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();
        'outer: loop {
            while let Some(m) = c.next_message().unwrap() {
                if m == Msg::Close {
                    break 'outer;
                }
                got.push(c.payload(m).to_vec());
            }
            c.flush().await.unwrap();
            assert!(c.fill_or_ping().await.unwrap().unwrap() > 0);
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], b"small");
        assert_eq!(got[1], vec![b'm'; 300]);
        assert_eq!(got[2], b"frag-mented");
        assert_eq!(got[3], vec![b'L'; 70_000]);
        c.flush().await.unwrap();
        c.queue_text(&[&[b'z'; 100], &[b'z'; 100]]);
        c.flush().await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn non_101_responses_are_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let e = WsConn::connect(addr, "localhost", "/", 1024)
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), "upgrade");
    }
}
