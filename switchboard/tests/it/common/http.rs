//! Raw HTTP/1.1 requests as a client on the wire sends them: the path as
//! it is (undecoded), the headers given (repeated ones too), any bytes as
//! the body; one per fresh connection ([`http_raw`]), or many in a row on
//! one kept-alive connection from a chosen local address ([`KeepAlive`]:
//! what admission counts).

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::WAIT;

/// A response as received: every value of a repeated header, the body's
/// bytes (a chunked body decoded).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// By lower-case name, each value in the order received.
    pub headers: HashMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The one value of a header (a test fails on a repeated one).
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.headers.get(name)?;
        assert_eq!(values.len(), 1, "{name} repeated: {values:?}");
        Some(&values[0])
    }

    /// The body as text (lossy), for a failure's message.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body, a JSON document by its content type.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), its
/// whole response read (`Content-Length` or chunked). `Host` is the
/// server's address unless `headers` has one.
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = request_bytes(addr, method, path, headers, body, true);
    stream.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("no response in time")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut rest = raw[split + 4..].to_vec();
    let (status, headers) = parse_head(&head);
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.iter().any(|v| v == "chunked"))
    {
        rest = dechunk(&rest);
    }
    RawResponse {
        status,
        headers,
        body: rest,
    }
}

/// A request's bytes: `Host` is `addr` unless `headers` has one.
fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// A response head's status and headers (by lower-case name).
fn parse_head(head: &str) -> (u16, HashMap<String, Vec<String>>) {
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        headers
            .entry(name.trim().to_ascii_lowercase())
            .or_default()
            .push(value.trim().to_owned());
    }
    (status, headers)
}

/// A TCP connection to `addr` from `local` (a loopback address such as
/// `127.0.0.2`: another client address, as far as the server can tell).
async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(local.parse().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// One kept-alive HTTP/1.1 connection, for many requests in a row; each
/// response has a `Content-Length`.
pub struct KeepAlive {
    stream: BufReader<TcpStream>,
    host: SocketAddr,
}

impl KeepAlive {
    /// A connection from `127.0.0.1`.
    pub async fn open(addr: SocketAddr) -> KeepAlive {
        KeepAlive::from("127.0.0.1", addr).await
    }

    /// A connection from `local`.
    pub async fn from(local: &str, addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            stream: BufReader::new(connect_from(local, addr).await),
            host: addr,
        }
    }

    /// Sends a request and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let request = request_bytes(self.host, method, path, headers, body, false);
        let stream = &mut self.stream;
        stream.get_mut().write_all(&request).await.unwrap();
        tokio::time::timeout(WAIT, async {
            let mut head = String::new();
            loop {
                let start = head.len();
                stream.read_line(&mut head).await.unwrap();
                if head[start..].trim_end().is_empty() {
                    break;
                }
            }
            let (status, headers) = parse_head(&head);
            let length: usize = headers["content-length"][0].parse().unwrap();
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await.unwrap();
            RawResponse {
                status,
                headers,
                body,
            }
        })
        .await
        .expect("no answer")
    }
}

/// A chunked body's content.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&rest[..end]).unwrap();
        let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[end + 2 + size + 2..];
    }
}

/// A response as text: one value per header (the last of a repeated one).
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// [`http_raw`] with a text body, its response as text.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let raw = http_raw(addr, method, path, headers, body.as_bytes()).await;
    HttpResponse {
        status: raw.status,
        headers: raw
            .headers
            .into_iter()
            .filter_map(|(name, mut values)| Some((name, values.pop()?)))
            .collect(),
        body: String::from_utf8_lossy(&raw.body).into_owned(),
    }
}

/// The `code` of a JSON error body.
pub fn error_code(response: &HttpResponse) -> u64 {
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    body["code"].as_u64().unwrap()
}

/// The publish API's test key, as a header.
pub const KEY: (&str, &str) = ("Authorization", "Bearer test-key");

/// A publish API call with the test key: its status and JSON body.
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
