//! The WebSocket transport: the HTTP upgrade, the probe that moves a polling
//! session onto a WebSocket, and the one task per connection that reads
//! frames, writes everything queued in one call, and drives the heartbeat.

use std::collections::VecDeque;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::packet::{self, Frame, Message, Packet, Protocol, Str};
use crate::server::{Body, ConnectionGuard, ErrorCode, error_response};
use crate::socket::{CloseReason, Socket, Transport, Upgrade, WriterTurn, idle_queue};
use crate::transports::ws::{WsConn, WsError, WsEvent, WsLimits, accept_key, close_code};

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
    let accept = accept_key(key.as_bytes());
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

/// The upgraded TCP connection, once hyper hands it over.
async fn connect(on_upgrade: OnUpgrade, limits: Arc<WsLimits>) -> Option<WsConn> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            tracing::debug!(%err, "WebSocket upgrade failed");
            return None;
        }
    };
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Some(WsConn::new(parts.io.into_inner(), parts.read_buf, limits)),
        Err(_) => {
            tracing::error!("WebSocket needs a plain TCP connection under hyper");
            None
        }
    }
}

/// What a connection's task serves once its WebSocket carries a session:
/// the session, the connection, what the client sent right behind the
/// upgrade, and the request's [`ConnectionGuard`], kept as long as the
/// connection.
type Attached = (Arc<Socket>, WsConn, Vec<WsEvent>, Option<ConnectionGuard>);

/// A boxed future, for the stage before a connection serves its session.
type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// The task of one WebSocket connection: `attach` (the upgrade, then the
/// `open` packet or the probe), then [`run`] for as long as the connection
/// lives.
///
/// `attach` is boxed and freed once done: what an async block captures
/// stays in its future for the future's whole life, so the request's
/// parts, the upgrade and the handshake's closure, captured directly,
/// would cost every idle connection their size for hours (640 bytes).
#[allow(clippy::manual_async_fn)] // not an async fn: see `run`
fn connection_task(attach: BoxFuture<Option<Attached>>) -> impl Future<Output = ()> + Send {
    async move {
        let Some((socket, ws, events, guard)) = attach.await else {
            return;
        };
        run(socket, ws, events).await;
        drop(guard);
    }
}

/// A new session opened directly over WebSocket. `open` creates the session
/// once the connection is upgraded and returns the `open` packet.
pub(crate) fn handshake<B, F>(mut req: Request<B>, limits: Arc<WsLimits>, open: F) -> Response<Body>
where
    F: FnOnce(&http::request::Parts) -> (Arc<Socket>, String) + Send + 'static,
{
    let (response, on_upgrade) = match accept(&mut req) {
        Ok(accepted) => accepted,
        Err(code) => return error_response(code),
    };
    let (mut parts, _body) = req.into_parts();
    let attach = Box::pin(async move {
        // Sessions are created only once the upgrade went through.
        let mut ws = connect(on_upgrade, limits).await?;
        let (socket, open_packet) = open(&parts);
        ws.track_partial(socket.shared().partial.hold(&socket));
        let guard = parts.extensions.remove::<ConnectionGuard>();
        drop(parts);
        let sent = ws
            .write_frames(&[Frame::Text(Str::from(open_packet))])
            .is_ok();
        if !sent {
            socket.close_now(CloseReason::TransportError, Frame::CLOSE);
            return None;
        }
        Some((socket, ws, Vec::new(), guard))
    });
    tokio::spawn(connection_task(attach));
    response
}

/// A WebSocket for an existing polling session: probe, then take over.
/// `b64`: a v3 client asked for binaries as base64 text on this WebSocket.
pub(crate) fn upgrade<B>(socket: Arc<Socket>, mut req: Request<B>, b64: bool) -> Response<Body> {
    if !is_upgrade_request(&req) {
        return error_response(ErrorCode::BadRequest);
    }
    let (response, on_upgrade) = match accept(&mut req) {
        Ok(accepted) => accepted,
        Err(code) => return error_response(code),
    };
    let limits = socket.shared().ws_limits.clone();
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
    let guard = req.extensions_mut().remove::<ConnectionGuard>();
    let attach = Box::pin(async move {
        let Some(mut ws) = connect(on_upgrade, limits).await else {
            reset_upgrade(&socket, refused);
            return None;
        };
        ws.track_partial(socket.shared().partial.hold(&socket));
        if refused {
            ws.close(close_code::POLICY, "already upgraded").await;
            return None;
        }
        let mut events = Vec::new();
        if probe(&socket, &mut ws, &mut events).await {
            if b64 && socket.protocol() == Protocol::V3 {
                socket.set_ws_b64();
            }
            Some((socket, ws, events, guard))
        } else {
            reset_upgrade(&socket, false);
            ws.close(close_code::NORMAL, "upgrade failed").await;
            None
        }
    });
    tokio::spawn(connection_task(attach));
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
/// session now uses this WebSocket; `events` then holds what the client sent
/// right behind the upgrade packet.
async fn probe(socket: &Arc<Socket>, ws: &mut WsConn, events: &mut Vec<WsEvent>) -> bool {
    let deadline = Instant::now() + socket.shared().config.upgrade_timeout;
    loop {
        let changed = socket.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        if socket.is_closed() {
            return false;
        }
        while !events.is_empty() {
            let WsEvent::Text(text) = events.remove(0) else {
                return false;
            };
            let Ok(text) = Str::from_utf8(text) else {
                return false;
            };
            match Packet::decode_text(text) {
                Ok(Packet::Ping(data)) if data.as_str() == "probe" => {
                    if ws.write_frames(&[Frame::PROBE_PONG]).is_err() {
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
                    tracing::debug!(sid = %socket.log_id(), "upgraded to WebSocket");
                    return true;
                }
                _ => return false,
            }
        }
        tokio::select! {
            ready = ws.readable() => {
                if ready.is_err() || !matches!(ws.read_available(events), Ok(true)) {
                    return false;
                }
            }
            writable = ws.writable(), if ws.has_unsent() => {
                if writable.is_err() || ws.flush_some().is_err() {
                    return false;
                }
            }
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

/// What [`run`] does once its loop is over. A few bytes: it is declared
/// before the loop, so its room is reserved in the loop's states too.
#[derive(Clone, Copy)]
enum Exit {
    /// The connection failed: nothing more can be sent on it.
    Gone,
    /// A close frame with this code and the reason's text.
    Close(u16, CloseReason),
    /// A graceful close (everything queued has been written): the close
    /// frame, then the session closes.
    Drained,
}

/// The session's transport loop: one task per WebSocket connection.
///
/// Each turn handles what the client sent, then takes everything queued
/// for it (one lock) and writes it with one call. The wake-up future and
/// the heartbeat timer live across turns, so an idle turn costs no
/// registration. What the kernel has not taken yet is told to the session
/// (one relaxed store when it changed), which counts it against
/// `max_queued_bytes` with the queue.
///
/// The loop only breaks out with an [`Exit`]; the close that follows is
/// awaited after it, once the loop's locals are gone: the task's future
/// is as large as its largest state, and every idle connection pays for
/// it, so no state carries the loop's locals and a close's at once.
#[allow(clippy::manual_async_fn)] // see the comment in the body
fn run(
    socket: Arc<Socket>,
    mut ws: WsConn,
    mut events: Vec<WsEvent>,
) -> impl Future<Output = ()> + Send {
    // An async block rather than an `async fn`: an async fn keeps its
    // arguments twice in its future (as captured, and as moved into its
    // body), which would cost every connection a second `WsConn`.
    async move {
        let exit = 'serve: {
            let mut batch: VecDeque<Frame> = idle_queue();
            let changed = socket.changed();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let sleep = tokio::time::sleep_until(Instant::now());
            let mut sleep = std::pin::pin!(sleep);
            if ws.has_buffered_input() {
                // Frames that came with the upgrade, or right behind the probe.
                if let Err(err) = ws.read_available(&mut events) {
                    break 'serve failed(&socket, err);
                }
            }
            loop {
                // After a flush, or pongs kept by a read. Compared with what
                // the session was last told (no copy of it in every task).
                if ws.unsent_bytes() != socket.writer_unsent() {
                    socket.set_writer_unsent(ws.unsent_bytes());
                }
                if !events.is_empty() {
                    socket.set_writer_busy();
                    for event in events.drain(..) {
                        on_event(&socket, event);
                    }
                    if events.capacity() > 64 {
                        events = Vec::new(); // give a burst's memory back
                    }
                }
                // Take the queue only once the kernel took the previous batch:
                // the session's bounded queue is what holds a slow client back.
                let turn = socket.writer_turn(&mut batch, !ws.has_unsent());
                if !batch.is_empty() {
                    let written = ws.write_frames_framed(&batch, socket.binary_framing());
                    // Taking the batch counted all of it: now only what is unsent.
                    socket.set_writer_unsent(ws.unsent_bytes());
                    batch.clear();
                    if batch.capacity() > 64 {
                        batch = idle_queue();
                    }
                    if let Err(err) = written {
                        break 'serve failed(&socket, err);
                    }
                }
                let heartbeat_at = match turn {
                    WriterTurn::Open { heartbeat_at } => heartbeat_at,
                    WriterTurn::Closed(reason) => {
                        break 'serve Exit::Close(close_code_for(reason), reason);
                    }
                    WriterTurn::Drained => break 'serve Exit::Drained,
                };
                // A message that started must complete in time; the heartbeat's
                // timer serves for both.
                let deadline = ws.incomplete_deadline();
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    break 'serve failed(&socket, WsError::Timeout);
                }
                {
                    // In a block of its own: a local that is borrowed stays
                    // in the task's future across the `select!` until its
                    // scope ends, and every idle connection would carry it.
                    let wake_at = match deadline {
                        Some(deadline) => heartbeat_at.min(deadline),
                        None => heartbeat_at,
                    };
                    // Re-armed only when its instant changed or it fired: the
                    // timer keeps its own deadline (no copy of it in every task).
                    if sleep.is_elapsed() || sleep.deadline() != wake_at {
                        sleep.as_mut().reset(wake_at);
                    }
                }
                tokio::select! {
                    // Not while the client leaves our bytes unread: what it
                    // sends then (pings, say) waits in the kernel, and TCP
                    // holds it back. The heartbeat and closes still come
                    // through the other arms.
                    ready = std::future::poll_fn(|cx| ws.poll_readable(cx)), if !ws.has_unsent() => {
                        let result = ready.map_err(WsError::from).and_then(|()| ws.read_available(&mut events));
                        match result {
                            Ok(true) => {}
                            Ok(false) => {
                                for event in events.drain(..) {
                                    on_event(&socket, event);
                                }
                                socket.close_now(CloseReason::TransportClose, Frame::NOOP);
                            }
                            Err(err) => {
                                for event in events.drain(..) {
                                    on_event(&socket, event);
                                }
                                break 'serve failed(&socket, err);
                            }
                        }
                    }
                    writable = std::future::poll_fn(|cx| ws.poll_writable(cx)), if ws.has_unsent() => {
                        let result = writable.map_err(WsError::from).and_then(|()| ws.flush_some());
                        if let Err(err) = result {
                            break 'serve failed(&socket, err);
                        }
                    }
                    _ = &mut changed => {
                        changed.set(socket.changed());
                        changed.as_mut().enable();
                    }
                    _ = &mut sleep => {}
                }
            }
        };
        // The closes are boxed: a close waits for its frame to be flushed
        // under a timeout, and that future, unboxed, would count in the size
        // of every connection's task although a connection closes once.
        match exit {
            Exit::Gone => {}
            Exit::Close(code, reason) => Box::pin(ws.close(code, reason.as_str())).await,
            Exit::Drained => {
                Box::pin(ws.close(close_code::NORMAL, CloseReason::ForcedClose.as_str())).await;
                socket.close_now(CloseReason::ForcedClose, Frame::CLOSE);
            }
        }
    }
}

/// Ends the session after a WebSocket failure; says what is left to send.
fn failed(socket: &Socket, err: WsError) -> Exit {
    tracing::debug!(sid = %socket.log_id(), %err, "WebSocket closed");
    let reason = match err {
        WsError::TooLarge | WsError::OverBudget => CloseReason::PayloadTooLarge,
        WsError::Protocol(_) => CloseReason::ParseError,
        WsError::Io(_) | WsError::Timeout => CloseReason::TransportError,
        WsError::Unsent => CloseReason::SlowConsumer,
    };
    socket.close_now(reason, Frame::CLOSE);
    match err {
        WsError::Io(_) => Exit::Gone,
        _ => Exit::Close(err.close_code(), reason),
    }
}

fn on_event(socket: &Socket, event: WsEvent) {
    let v3 = socket.protocol() == Protocol::V3;
    let decoded = match event {
        WsEvent::Text(text) if v3 => Str::from_utf8(text).and_then(packet::v3::decode_text),
        WsEvent::Text(text) => Str::from_utf8(text).and_then(Packet::decode_text),
        // v3: a binary frame starts with its packet type.
        WsEvent::Binary(data) if v3 => packet::v3::decode_binary(data),
        WsEvent::Binary(data) => Ok(Packet::Message(Message::Binary(data))),
        WsEvent::Close => Ok(Packet::Close),
    };
    match decoded {
        Ok(packet) => socket.on_packet(packet),
        Err(err) => {
            tracing::debug!(sid = %socket.log_id(), %err, "invalid packet");
            socket.close_now(CloseReason::ParseError, Frame::CLOSE);
        }
    }
}

fn close_code_for(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::PayloadTooLarge => close_code::TOO_BIG,
        CloseReason::ParseError => close_code::INVALID_DATA,
        CloseReason::TransportError => close_code::PROTOCOL,
        CloseReason::SlowConsumer => close_code::POLICY,
        _ => close_code::NORMAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<F: FnOnce(A) -> R, A, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every WebSocket connection's task is this future for as long as
    /// the connection lives: its size is memory per idle connection (2,016
    /// bytes when the task captured the handshake's request and `run` was
    /// an `async fn` selecting on `readable()`; 696 before the occasional
    /// state of `WsConn` was boxed and the loop's exit moved after it).
    ///
    /// tokio allocates a task's cell aligned to 128 bytes: its header (32
    /// bytes), scheduler and id (16), the future with its stage's tag (8)
    /// and its trailer (48), rounded up to a multiple of 128. Up to 536
    /// bytes of future, the cell is 640 bytes; past it, 768.
    #[test]
    fn a_connection_task_stays_small() {
        let size = future_size(&connection_task);
        assert!(
            size <= 536,
            "a WebSocket connection's task is {size} bytes: its cell grows to 768"
        );
    }
}
