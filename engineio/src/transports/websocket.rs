//! The WebSocket transport: the HTTP upgrade, the probe that moves a polling
//! session onto a WebSocket, and the one task per connection that reads
//! frames, writes everything queued in one flush, and drives the heartbeat.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};

use crate::config::EngineConfig;
use crate::packet::{Frame, Message, Packet, Str};
use crate::server::{Body, ErrorCode, error_response};
use crate::socket::{CloseReason, Socket, Transport, Upgrade};

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// Accepts the upgrade: returns the `101` response and where the upgraded
/// connection will arrive.
fn accept<B>(req: &mut Request<B>) -> Result<(Response<Body>, OnUpgrade), ErrorCode> {
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (Some(key), true) = (key, version_ok) else {
        return Err(ErrorCode::BadRequest);
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err(ErrorCode::BadRequest);
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok((response, on_upgrade))
}

fn ws_config(config: &EngineConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.ws_read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_payload))
        .max_frame_size(Some(config.max_payload))
}

async fn connect(on_upgrade: OnUpgrade, config: WebSocketConfig) -> Option<Ws> {
    match on_upgrade.await {
        Ok(upgraded) => Some(
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await,
        ),
        Err(err) => {
            tracing::debug!(%err, "WebSocket upgrade failed");
            None
        }
    }
}

/// A new session opened directly over WebSocket. `open` creates the session
/// once the connection is upgraded and returns the `open` packet.
pub(crate) fn handshake<B, F>(mut req: Request<B>, config: &EngineConfig, open: F) -> Response<Body>
where
    F: FnOnce(&http::request::Parts) -> (Arc<Socket>, String) + Send + 'static,
{
    let (response, on_upgrade) = match accept(&mut req) {
        Ok(accepted) => accepted,
        Err(code) => return error_response(code),
    };
    let (mut parts, _body) = req.into_parts();
    let config = ws_config(config);
    tokio::spawn(async move {
        // Sessions are created only once the upgrade went through.
        let Some(mut ws) = connect(on_upgrade, config).await else {
            return;
        };
        let (socket, open_packet) = open(&parts);
        // The request's extensions live as long as the connection (the
        // server may keep a connection-limit permit there).
        let _extensions = std::mem::take(&mut parts.extensions);
        drop(parts);
        if ws.send(WsMessage::text(open_packet)).await.is_err() {
            socket.close_now(CloseReason::TransportError, Frame::CLOSE);
            return;
        }
        run(socket, ws).await;
    });
    response
}

/// A WebSocket for an existing polling session: probe, then take over.
pub(crate) fn upgrade<B>(socket: Arc<Socket>, mut req: Request<B>) -> Response<Body> {
    if !is_upgrade_request(&req) {
        return error_response(ErrorCode::BadRequest);
    }
    let (response, on_upgrade) = match accept(&mut req) {
        Ok(accepted) => accepted,
        Err(code) => return error_response(code),
    };
    let config = ws_config(&socket.shared().config);
    // The reference server accepts a second upgrade and closes it at once.
    let refused = {
        let mut state = socket.lock();
        let refused = state.closed.is_some()
            || state.upgrade != Upgrade::None
            || state.transport == Transport::WebSocket;
        if !refused {
            state.upgrade = Upgrade::Attached;
        }
        refused
    };
    let extensions = std::mem::take(req.extensions_mut());
    tokio::spawn(async move {
        let _extensions = extensions;
        let Some(mut ws) = connect(on_upgrade, config).await else {
            reset_upgrade(&socket, refused);
            return;
        };
        if refused {
            let _ = ws.close(None).await;
            return;
        }
        if probe(&socket, &mut ws).await {
            run(socket, ws).await;
        } else {
            reset_upgrade(&socket, false);
            let _ = ws.close(None).await;
        }
    });
    response
}

fn reset_upgrade(socket: &Socket, refused: bool) {
    if !refused {
        let mut state = socket.lock();
        if state.upgrade != Upgrade::Done {
            state.upgrade = Upgrade::None;
        }
    }
}

/// The upgrade handshake: `2probe` → `3probe`, then `5`. Returns whether the
/// session now uses this WebSocket.
async fn probe(socket: &Arc<Socket>, ws: &mut Ws) -> bool {
    let deadline = Instant::now() + socket.shared().config.upgrade_timeout;
    loop {
        let changed = socket.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        if socket.is_closed() {
            return false;
        }
        tokio::select! {
            message = ws.next() => {
                let Some(Ok(WsMessage::Text(text))) = message else { return false };
                let Ok(text) = Str::from_utf8(Bytes::from(text)) else { return false };
                match Packet::decode_text(text) {
                    Ok(Packet::Ping(data)) if data.as_str() == "probe" => {
                        if ws.send(frame_to_ws(Frame::PROBE_PONG)).await.is_err() {
                            return false;
                        }
                        socket.lock().upgrade = Upgrade::Probed(Instant::now());
                        socket.notify();
                    }
                    Ok(Packet::Upgrade) => {
                        {
                            let mut state = socket.lock();
                            if state.closed.is_some() {
                                return false;
                            }
                            state.transport = Transport::WebSocket;
                            state.upgrade = Upgrade::Done;
                        }
                        socket.notify();
                        tracing::debug!(sid = socket.id(), "upgraded to WebSocket");
                        return true;
                    }
                    _ => return false,
                }
            }
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

fn frame_to_ws(frame: Frame) -> WsMessage {
    match frame {
        // SAFETY: `Str` always holds valid UTF-8.
        Frame::Text(text) => {
            WsMessage::Text(unsafe { Utf8Bytes::from_bytes_unchecked(text.into_bytes()) })
        }
        Frame::Binary(data) => WsMessage::Binary(data),
    }
}

/// The session's transport loop: one task per WebSocket connection.
async fn run(socket: Arc<Socket>, mut ws: Ws) {
    let mut outbox: Vec<Frame> = Vec::new();
    loop {
        let changed = socket.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let (closed, closing, upto) = {
            let mut state = socket.lock();
            Socket::take_queue(&mut state, &mut outbox);
            (state.closed, state.closing, state.queued_total)
        };
        if !outbox.is_empty() {
            let mut failed = false;
            for frame in outbox.drain(..) {
                if ws.feed(frame_to_ws(frame)).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || ws.flush().await.is_err() {
                outbox.clear();
                socket.close_now(CloseReason::TransportError, Frame::CLOSE);
                return;
            }
            socket.mark_sent(upto);
        }
        if let Some(reason) = closed {
            close_ws(&mut ws, reason).await;
            return;
        }
        if closing {
            close_ws(&mut ws, CloseReason::ForcedClose).await;
            socket.close_now(CloseReason::ForcedClose, Frame::CLOSE);
            return;
        }
        let Some(heartbeat_at) = socket.heartbeat(Instant::now()) else {
            continue; // closed by the heartbeat: close the WebSocket above
        };
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(message)) => on_ws_message(&socket, message),
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                    socket.close_now(CloseReason::PayloadTooLarge, Frame::CLOSE);
                }
                Some(Err(err)) => {
                    tracing::debug!(sid = socket.id(), %err, "WebSocket error");
                    socket.close_now(CloseReason::TransportError, Frame::CLOSE);
                }
                None => socket.close_now(CloseReason::TransportClose, Frame::NOOP),
            },
            _ = changed => {}
            _ = tokio::time::sleep_until(heartbeat_at) => {}
        }
    }
}

fn on_ws_message(socket: &Socket, message: WsMessage) {
    let packet = match message {
        WsMessage::Text(text) => {
            match Str::from_utf8(Bytes::from(text)).and_then(Packet::decode_text) {
                Ok(packet) => packet,
                Err(err) => {
                    tracing::debug!(sid = socket.id(), %err, "invalid packet");
                    socket.close_now(CloseReason::ParseError, Frame::CLOSE);
                    return;
                }
            }
        }
        WsMessage::Binary(data) => Packet::Message(Message::Binary(data)),
        WsMessage::Close(_) => Packet::Close,
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => return,
    };
    socket.on_packet(packet);
}

async fn close_ws(ws: &mut Ws, reason: CloseReason) {
    let code = match reason {
        CloseReason::PayloadTooLarge => CloseCode::Size,
        CloseReason::ParseError | CloseReason::TransportError => CloseCode::Protocol,
        CloseReason::SlowConsumer => CloseCode::Policy,
        _ => CloseCode::Normal,
    };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason.as_str()),
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), ws.close(Some(frame))).await;
}
