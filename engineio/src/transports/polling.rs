//! HTTP long-polling: a GET waits for what the server has to send, a POST
//! carries what the client sends. One of each may be in flight per session;
//! a second one is a protocol error that closes the session.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::packet::{self, Frame, Packet, Protocol, Str};
use crate::server::{Body, ErrorCode, error_response, json_response};
use crate::socket::{CloseReason, Socket, State, Transport, Upgrade};
use crate::transports::jsonp;
use tokio::time::Instant;

/// The answer to the handshake GET: the `open` packet (in a v3 payload
/// for a v3 client: `NN:0{…}`), called back by a JSONP one (`jsonp` is
/// its callback index).
pub(crate) fn handshake_response(
    socket: &Socket,
    open: String,
    jsonp: Option<&str>,
) -> Response<Body> {
    payload_response(socket, &[Frame::Text(Str::from(open))], jsonp)
}

/// How long a poll waiting during an upgrade is held before the noop that
/// releases it (the reference server's upgrade check interval).
const UPGRADE_CHECK: Duration = Duration::from_millis(100);

/// What a waiting GET answers.
enum PollAnswer {
    Frames {
        frames: Vec<Frame>,
        finish_close: bool,
    },
    /// A GET sent while a WebSocket upgrade was under way, still waiting when
    /// it completed: the session is not on polling any more.
    Refused,
}

/// A GET: answers at once with what is queued, or waits for it. `jsonp`:
/// the callback index a JSONP session's answer calls.
pub(crate) async fn poll(socket: &Arc<Socket>, jsonp: Option<&str>) -> Response<Body> {
    let during_upgrade = {
        let mut state = socket.lock();
        if state.closed.is_some() {
            // The one GET a client-closed session still answers (see `close_now`).
            let Some(frame) = state.poll_terminal.take() else {
                return error_response(ErrorCode::UnknownSid);
            };
            drop(state);
            socket.forget();
            return payload_response(socket, &[frame], jsonp);
        }
        if state.poll_waiting {
            drop(state);
            tracing::debug!(sid = %socket.log_id(), "overlapping poll requests: closing");
            socket.close_now(CloseReason::TransportError, Frame::CLOSE);
            return error_response(ErrorCode::BadRequest);
        }
        state.poll_waiting = true;
        state.upgrade != Upgrade::None
    };
    // If the client goes away while we wait, the session is closed, as the
    // reference server does ("poll connection closed prematurely").
    let guard = PollGuard(socket);
    let answer = loop {
        let changed = socket.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let release_at = {
            let mut state = socket.lock();
            if let Some(answer) = answer_now(&mut state, during_upgrade) {
                break answer;
            }
            match state.upgrade {
                Upgrade::Probed(at) => Some(at + UPGRADE_CHECK),
                _ => None,
            }
        };
        match release_at {
            Some(at) => {
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => changed.await,
        }
    };
    std::mem::forget(guard);
    socket.finish_poll();
    match answer {
        PollAnswer::Frames {
            frames,
            finish_close,
        } => {
            if finish_close {
                socket.close_now(CloseReason::ForcedClose, Frame::CLOSE);
            }
            payload_response(socket, &frames, jsonp)
        }
        PollAnswer::Refused => error_response(ErrorCode::BadRequest),
    }
}

/// What a waiting GET answers now, if anything.
fn answer_now(state: &mut State, during_upgrade: bool) -> Option<PollAnswer> {
    let frames = |frames| {
        Some(PollAnswer::Frames {
            frames,
            finish_close: false,
        })
    };
    if let Some(frame) = state.poll_terminal.take() {
        return frames(vec![frame]);
    }
    if state.closed.is_some() {
        return frames(vec![Frame::CLOSE]);
    }
    if state.transport != Transport::Polling {
        // Upgraded. A real client waits for its poll to end before it sends
        // the upgrade packet, so a poll still here is a straggler.
        return if during_upgrade {
            Some(PollAnswer::Refused)
        } else {
            frames(vec![Frame::NOOP])
        };
    }
    if !state.queue.is_empty() || state.closing {
        let mut out = Vec::with_capacity(state.queue.len() + 1);
        out.extend(state.queue.drain(..));
        state.queued_bytes = 0;
        state.sent_total = state.queued_total;
        if state.closing {
            out.push(Frame::CLOSE);
        }
        return Some(PollAnswer::Frames {
            frames: out,
            finish_close: state.closing,
        });
    }
    // The client probed the WebSocket and waits for this poll to end before
    // it completes the upgrade.
    if let Upgrade::Probed(at) = state.upgrade
        && Instant::now() >= at + UPGRADE_CHECK
    {
        return frames(vec![Frame::NOOP]);
    }
    None
}

struct PollGuard<'a>(&'a Arc<Socket>);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().poll_waiting = false;
        self.0.close_now(CloseReason::TransportError, Frame::CLOSE);
    }
}

/// A POST: decodes the payload and hands its packets to the session.
/// `jsonp`: the body is a JSONP form (`d=<payload>`).
pub(crate) async fn post<B>(socket: &Arc<Socket>, req: Request<B>, jsonp: bool) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let max = socket.shared().config.max_payload;
    {
        let mut state = socket.lock();
        if state.closed.is_some() {
            return error_response(ErrorCode::UnknownSid);
        }
        if state.post_active {
            drop(state);
            socket.close_now(CloseReason::TransportError, Frame::CLOSE);
            return error_response(ErrorCode::BadRequest);
        }
        state.post_active = true;
    }
    let result = read_and_dispatch(socket, req, max, jsonp).await;
    socket.lock().post_active = false;
    match result {
        Ok(()) => {
            let mut response = Response::new(Body::from(Bytes::from_static(b"ok")));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
        Err((reason, response)) => {
            socket.close_now(reason, Frame::CLOSE);
            response
        }
    }
}

async fn read_and_dispatch<B>(
    socket: &Arc<Socket>,
    req: Request<B>,
    max: usize,
    jsonp: bool,
) -> Result<(), (CloseReason, Response<Body>)>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let too_large = || {
        (
            CloseReason::PayloadTooLarge,
            json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"code":3,"message":"Payload too large"}"#.to_owned(),
            ),
        )
    };
    let bad_request = |reason| (reason, error_response(ErrorCode::BadRequest));
    let content_type = req.headers().get(header::CONTENT_TYPE);
    let binary_body =
        !jsonp && content_type.is_some_and(|v| v.as_bytes() == b"application/octet-stream");
    let protocol = socket.protocol();
    if binary_body && protocol == Protocol::V4 {
        // v4 sends binary as base64 text; a raw binary body is not valid.
        // (v3 clients send the XHR2 binary form; python-engineio 3 always.)
        return Err(bad_request(CloseReason::TransportError));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let body = match read_body(socket, req.into_body(), max).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return Err(too_large()),
        Err(BodyError::Timeout) => {
            let body = r#"{"code":3,"message":"Request body not received in time"}"#;
            return Err((
                CloseReason::TransportError,
                json_response(StatusCode::REQUEST_TIMEOUT, body.to_owned()),
            ));
        }
        Err(BodyError::Failed) => return Err(bad_request(CloseReason::TransportError)),
    };
    let body = if jsonp {
        match jsonp::form_payload(&body) {
            Ok(payload) => Bytes::from(payload),
            Err(err) => {
                tracing::debug!(sid = %socket.log_id(), %err, "invalid JSONP form");
                return Err(bad_request(CloseReason::ParseError));
            }
        }
    } else {
        body
    };
    let decoded = match protocol {
        Protocol::V4 => packet::decode_payload(body),
        Protocol::V3 => packet::v3::decode_payload(body, binary_body),
    };
    let packets = match decoded {
        Ok(packets) => packets,
        Err(err) => {
            tracing::debug!(sid = %socket.log_id(), %err, "invalid polling payload");
            return Err(bad_request(CloseReason::ParseError));
        }
    };
    for packet in packets {
        let is_close = packet == Packet::Close;
        socket.on_packet(packet);
        if is_close {
            break;
        }
    }
    Ok(())
}

enum BodyError {
    /// Over `maxPayload`, or over the engine's budget for incomplete messages.
    TooLarge,
    /// Not complete within `partial_timeout`.
    Timeout,
    /// The connection failed, or the session closed meanwhile.
    Failed,
}

/// Reads a request body as it arrives: memory follows the bytes received
/// (never the announced `Content-Length`), bounded by `max`, counted
/// against the engine's budget for incomplete messages, and in time.
async fn read_body<B>(socket: &Arc<Socket>, body: B, max: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
{
    let deadline = Instant::now() + socket.shared().config.partial_timeout;
    let mut hold = socket.shared().partial.hold(socket);
    let mut body = std::pin::pin!(body);
    // The usual body comes in one chunk, kept as it is; more are joined.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    loop {
        let changed = socket.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        match socket.lock().closed {
            None => {}
            // Closed meanwhile by the budget for incomplete messages…
            Some(CloseReason::PayloadTooLarge) => return Err(BodyError::TooLarge),
            // …or by the heartbeat, or the client.
            Some(_) => return Err(BodyError::Failed),
        }
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = changed => continue,
            _ = tokio::time::sleep_until(deadline) => return Err(BodyError::Timeout),
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => return Err(BodyError::Failed),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers
            },
        };
        let held = first.as_ref().map_or(0, Bytes::len) + joined.len();
        if held + data.len() > max {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(earlier) => {
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&data);
            }
        }
        let held = first.as_ref().map_or(0, Bytes::len) + joined.capacity();
        if hold.set(held).is_err() {
            return Err(BodyError::TooLarge);
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// A GET's answer: `frames` as one payload, in the session's protocol;
/// for a JSONP session, that payload as a call of callback `jsonp`.
fn payload_response(socket: &Socket, frames: &[Frame], jsonp: Option<&str>) -> Response<Body> {
    let (body, content_type) = match socket.protocol() {
        // The v4 `open` packet is a payload of one packet, so the same.
        Protocol::V4 => (packet::encode_payload(frames), TEXT_CONTENT_TYPE),
        Protocol::V3 => packet::v3::encode_payload(frames, socket.polling_b64()),
    };
    let (body, content_type) = match jsonp {
        // A JSONP session's payloads are text (its v3 `b64` is forced).
        Some(index) => (
            jsonp::wrap(index, &String::from_utf8_lossy(&body)),
            jsonp::CONTENT_TYPE,
        ),
        None => (body, content_type),
    };
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const TEXT_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";
