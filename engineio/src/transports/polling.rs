//! HTTP long-polling: a GET waits for what the server has to send, a POST
//! carries what the client sends. One of each may be in flight per session;
//! a second one is a protocol error that closes the session.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::packet::{self, Frame, Packet};
use crate::server::{Body, ErrorCode, error_response, json_response};
use crate::socket::{CloseReason, Socket, Transport, Upgrade};

/// The answer to the handshake GET: the `open` packet.
pub(crate) fn handshake_response(_socket: &Arc<Socket>, open: String) -> Response<Body> {
    text_response(Bytes::from(open))
}

/// A GET: answers at once with what is queued, or waits for it.
pub(crate) async fn poll(socket: &Arc<Socket>) -> Response<Body> {
    {
        let mut state = socket.lock();
        if state.closed.is_some() {
            return error_response(ErrorCode::UnknownSid);
        }
        if state.poll_waiting {
            drop(state);
            tracing::debug!(sid = socket.id(), "overlapping poll requests: closing");
            socket.close_now(CloseReason::TransportError, Frame::CLOSE);
            return error_response(ErrorCode::BadRequest);
        }
        state.poll_waiting = true;
    }
    // If the client goes away while we wait, the session is closed, as the
    // reference server does ("poll connection closed prematurely").
    let guard = PollGuard(socket);
    let (frames, finish_close) = socket
        .wait_for(|state| {
            if let Some(frame) = state.poll_terminal.take() {
                return Some((vec![frame], false));
            }
            if state.closed.is_some() {
                return Some((vec![Frame::CLOSE], false));
            }
            let polling = state.transport == Transport::Polling;
            if polling && (!state.queue.is_empty() || state.closing) {
                let mut frames = Vec::with_capacity(state.queue.len() + 1);
                Socket::take_queue(state, &mut frames);
                state.sent_total = state.queued_total;
                if state.closing {
                    frames.push(Frame::CLOSE);
                }
                return Some((frames, state.closing));
            }
            // An upgrade is under way or done: release the poll so that the
            // client can move to the WebSocket.
            if !polling || state.upgrade == Upgrade::Probed {
                return Some((vec![Frame::NOOP], false));
            }
            None
        })
        .await;
    std::mem::forget(guard);
    socket.lock().poll_waiting = false;
    socket.mark_sent(0);
    if finish_close {
        socket.close_now(CloseReason::ForcedClose, Frame::CLOSE);
    }
    text_response(packet::encode_payload(&frames))
}

struct PollGuard<'a>(&'a Arc<Socket>);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().poll_waiting = false;
        self.0.close_now(CloseReason::TransportError, Frame::CLOSE);
    }
}

/// A POST: decodes the payload and hands its packets to the session.
pub(crate) async fn post<B>(socket: &Arc<Socket>, req: Request<B>) -> Response<Body>
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
    let result = read_and_dispatch(socket, req, max).await;
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
    if content_type.is_some_and(|v| v.as_bytes() == b"application/octet-stream") {
        // v4 sends binary as base64 text; a raw binary body is not valid.
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
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => return Err(bad_request(CloseReason::TransportError)),
    };
    let packets = match packet::decode_payload(body) {
        Ok(packets) => packets,
        Err(err) => {
            tracing::debug!(sid = socket.id(), %err, "invalid polling payload");
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

fn text_response(body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
}
