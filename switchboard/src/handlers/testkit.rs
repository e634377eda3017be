//! The interop test kit: a namespace handler exposing the engine's features
//! as events, so that tests with the official `socket.io-client` can drive
//! every feature over the wire. Enabled only by configuration
//! (`tests/interop/interop.toml`).
//!
//! Events (each answered through the ack when the client asks for one):
//! - `echo` (…args): acks the same arguments, or emits `echo` back without ack.
//! - `join` / `leave` (room): joins or leaves the room; acks `{ok:true}`.
//! - `rooms`: acks the socket's rooms.
//! - `broadcast` ({event, data, rooms?, except?, volatile?, others?}): emits
//!   `event` with `data` to the rooms (all of the namespace when none),
//!   leaving out `except` rooms and, with `others`, the sender; acks
//!   `{ok:true, count}`.
//! - `ask` ({event, data, timeout_ms}): emits `event` to this client with an
//!   ack and acks `{ok:true, response:[…]}` or `{ok:false, error:{code:"timeout"}}`.
//! - `seq` (n): an asynchronous handler (waits up to 1 ms) recording `n`;
//!   `seq-result` acks the numbers in the order the handler saw them.
//! - `binary-reverse` (bytes): acks the bytes reversed, as binary.
//! - `sleep` (ms): an asynchronous handler that acks after `ms` (at most 10 s).
//! - `leave-namespace`: the server disconnects the socket from the namespace.
//! - `close-connection`: the server closes the whole connection (the client
//!   reconnects by itself).
//!
//! A namespace whose name contains `private` admits only clients whose
//! CONNECT payload has `token: "let-me-in"`; others get `connect_error`
//! `unauthorized` with `data: {code: "invalid_token"}`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use socketio::{
    Args, BoxFuture, ConnectError, ConnectRequest, Event, Namespace, NamespaceHandler, Socket,
};

/// Adds the test kit's middleware to a namespace (see the module docs).
pub fn add_middleware(ns: &Namespace) {
    if ns.name().contains("private") {
        ns.use_middleware(|request: ConnectRequest| async move {
            // Asynchronous on purpose: exercises the deferred connect path.
            tokio::task::yield_now().await;
            #[derive(Deserialize)]
            struct Auth {
                token: Option<String>,
            }
            let auth: Option<Auth> = serde_json::from_str(request.auth.get()).ok();
            match auth.and_then(|a| a.token) {
                Some(token) if token == "let-me-in" => Ok(request),
                _ => Err(ConnectError::with_data(
                    "unauthorized",
                    json!({"code": "invalid_token"}),
                )),
            }
        });
    }
}

/// The test kit's namespace handler.
pub struct TestKit;

/// The `seq` numbers a socket's handler has seen.
#[derive(Clone, Default)]
struct SeqLog(Arc<Mutex<Vec<u64>>>);

#[derive(Deserialize)]
struct Broadcast {
    event: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    #[serde(default)]
    volatile: bool,
    #[serde(default)]
    others: bool,
}

#[derive(Deserialize)]
struct Ask {
    event: String,
    #[serde(default)]
    data: serde_json::Value,
    timeout_ms: u64,
}

fn ack(event: &mut Event, value: serde_json::Value) {
    if let Some(ack) = event.take_ack() {
        ack.send_one(&value);
    }
}

fn bad_request(event: &mut Event, err: impl std::fmt::Display) {
    ack(
        event,
        json!({"ok": false, "error": {"code": "bad_request", "message": err.to_string()}}),
    );
}

impl NamespaceHandler for TestKit {
    fn on_connect(&self, socket: &Arc<Socket>) -> Option<BoxFuture<()>> {
        socket.extensions().insert(SeqLog::default());
        None
    }

    fn on_event(&self, socket: &Arc<Socket>, mut event: Event) -> Option<BoxFuture<()>> {
        match event.name.as_str() {
            "echo" => match event.take_ack() {
                Some(ack) => ack.send(&event.args),
                None => socket.emit("echo", &event.args),
            },
            "join" | "leave" => match event.args.first::<String>() {
                Ok(room) => {
                    if event.name == "join" {
                        socket.join(room);
                    } else {
                        socket.leave(&room);
                    }
                    ack(&mut event, json!({"ok": true}));
                }
                Err(err) => bad_request(&mut event, err),
            },
            "rooms" => {
                let rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
                ack(&mut event, json!(rooms));
            }
            "broadcast" => match event.args.first::<Broadcast>() {
                Ok(b) => {
                    let mut op = socket.namespace().broadcast();
                    for room in b.rooms {
                        op = op.to(room);
                    }
                    for room in b.except {
                        op = op.except(room);
                    }
                    if b.volatile {
                        op = op.volatile();
                    }
                    if b.others {
                        op = op.except_socket(*socket.id());
                    }
                    let count = op.emit(&b.event, &Args::one(&b.data)).recipients();
                    ack(&mut event, json!({"ok": true, "count": count}));
                }
                Err(err) => bad_request(&mut event, err),
            },
            "ask" => match event.args.first::<Ask>() {
                Ok(a) => {
                    let reply = socket.emit_with_ack(
                        &a.event,
                        &Args::one(&a.data),
                        Duration::from_millis(a.timeout_ms),
                    );
                    return Some(Box::pin(async move {
                        let answer = match reply.await {
                            Ok(args) => json!({"ok": true, "response": args.values()}),
                            Err(err) => {
                                json!({"ok": false, "error": {"code": "timeout", "message": err.to_string()}})
                            }
                        };
                        ack(&mut event, answer);
                    }));
                }
                Err(err) => bad_request(&mut event, err),
            },
            "seq" => {
                let n = event.args.first::<u64>().unwrap_or(u64::MAX);
                let log = socket
                    .extensions()
                    .get::<SeqLog>()
                    .cloned()
                    .unwrap_or_default();
                let wait = Duration::from_micros(rand::random::<u64>() % 1000);
                return Some(Box::pin(async move {
                    tokio::time::sleep(wait).await;
                    log.0.lock().push(n);
                }));
            }
            "seq-result" => {
                let log = socket
                    .extensions()
                    .get::<SeqLog>()
                    .cloned()
                    .unwrap_or_default();
                let seen = log.0.lock().clone();
                ack(&mut event, json!(seen));
            }
            "binary-reverse" => {
                let mut data = event
                    .args
                    .attachments()
                    .first()
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                data.reverse();
                if let Some(ack) = event.take_ack() {
                    let mut args = Args::new();
                    args.push_binary(Bytes::from(data));
                    ack.send(&args);
                }
            }
            "sleep" => {
                let ms = event.args.first::<u64>().unwrap_or(0).min(10_000);
                return Some(Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    ack(&mut event, json!({"ok": true, "slept_ms": ms}));
                }));
            }
            "leave-namespace" => socket.disconnect(),
            "close-connection" => socket.close_connection(),
            _ => {
                let message = format!("no handler for {:?}", event.name);
                ack(
                    &mut event,
                    json!({"ok": false, "error": {"code": "unknown_event", "message": message}}),
                );
            }
        }
        None
    }
}
