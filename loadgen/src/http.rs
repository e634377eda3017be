//! A minimal HTTP/1.1 client for the publish API (`notify` scenario): one
//! `POST` with a JSON body and a bearer key on a fresh loopback connection
//! (`Connection: close`), the answer read to its end. Only what the hub
//! answers: a `Content-Length` or chunked body, no compression asked for.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer read.
const MAX_RESPONSE: usize = 1 << 20;

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `POST path` with `body` (JSON) and `Authorization: Bearer key`.
pub async fn post_json(
    addr: SocketAddr,
    host: &str,
    path: &str,
    key: &str,
    body: &[u8],
) -> Result<Response> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_RESPONSE {
            bail!("answer larger than {MAX_RESPONSE} bytes");
        }
        // A complete answer need not wait for the close.
        if let Ok(Some(r)) = parse_response(&raw) {
            return Ok(r);
        }
    }
    match parse_response(&raw)? {
        Some(r) => Ok(r),
        None => bail!("connection closed before a complete answer"),
    }
}

/// Parses a complete answer from `raw`; `Ok(None)` while it is incomplete.
pub fn parse_response(raw: &[u8]) -> Result<Option<Response>> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&raw[..end]).context("answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            chunked = true;
        }
    }
    let rest = &raw[end + 4..];
    if chunked {
        return Ok(dechunk(rest)?.map(|body| Response { status, body }));
    }
    match length {
        Some(n) if rest.len() >= n => Ok(Some(Response {
            status,
            body: rest[..n].to_vec(),
        })),
        Some(_) => Ok(None),
        // No length: the body runs to the close (the caller's last parse).
        None => Ok(None),
    }
}

/// A chunked body, once its last chunk is in.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..eol]).context("bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        let data = &rest[eol + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_answers() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"hello".as_slice()));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
                .unwrap()
                .is_none()
        );
        let chunked =
            b"HTTP/1.1 422 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_response(chunked).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (422, b"abcde".as_slice()));
        assert!(
            parse_response(&chunked[..chunked.len() - 7])
                .unwrap()
                .is_none()
        );
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
