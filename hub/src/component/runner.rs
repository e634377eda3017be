//! [`ComponentHandler`]: runs a [`Component`] as a namespace handler. Every
//! client event is acked `{ok:true, …}` or `{ok:false, error:{code,
//! message}}`; `subscribe` / `unsubscribe` (a room id) are handled here,
//! authorized by the component, each socket held to [`RoomLimits`] (its
//! event rate is limited around the whole namespace handler:
//! [`crate::limits::RateLimited`]); the component's `on_connect` and
//! `on_disconnect` are the socket's. The sender of an event is resolved
//! here, once ([`super::Caller`]): a component that needs a signed-in user
//! never sees an event without one.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use socketio::{BoxFuture, DisconnectReason, Event, NamespaceHandler, Room, Socket};

use super::{Caller, Component, ErrorCode, HubError};
use crate::limits::RoomLimits;

/// Runs a [`Component`] as a namespace handler.
pub struct ComponentHandler<C> {
    component: Arc<C>,
    limits: RoomLimits,
}

impl<C: Component> ComponentHandler<C> {
    /// With the default [`RoomLimits`].
    pub fn new(component: C) -> ComponentHandler<C> {
        ComponentHandler {
            component: Arc::new(component),
            limits: RoomLimits::default(),
        }
    }

    /// Holds each socket's subscriptions to `limits`.
    pub fn with_limits(mut self, limits: RoomLimits) -> ComponentHandler<C> {
        self.limits = limits;
        self
    }
}

/// How many rooms `socket` would be in after joining `rooms`.
fn rooms_after_joining(socket: &Socket, rooms: &[String]) -> usize {
    let current = socket.rooms();
    let mut new: Vec<&str> = rooms
        .iter()
        .map(String::as_str)
        .filter(|room| !current.iter().any(|r| &**r == *room))
        .collect();
    new.sort_unstable();
    new.dedup();
    current.len() + new.len()
}

/// A socket's queued events (see [`Component::queue`]): the last one's
/// "acked" signal, which the next one waits for before its own ack.
#[derive(Clone, Default)]
struct AckChain(Arc<parking_lot::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>);

fn ack_chain(
    socket: &Socket,
) -> Arc<parking_lot::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>> {
    socket
        .extensions()
        .get_or_insert_default::<AckChain>()
        .0
        .clone()
}

/// `{ok:true, …fields}` (a component may set `ok` itself).
fn ok(fields: serde_json::Map<String, Value>) -> Value {
    let mut object = fields;
    object.entry("ok").or_insert(Value::Bool(true));
    Value::Object(object)
}

impl<C: Component> NamespaceHandler for ComponentHandler<C> {
    fn on_connect(&self, socket: &Arc<Socket>) -> Option<BoxFuture<()>> {
        let future = self.component.on_connect(socket)?;
        Some(Box::pin(future))
    }

    fn on_connected(&self, socket: &Arc<Socket>) {
        self.component.on_connected(socket);
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        self.component.on_disconnect(socket, reason);
    }

    fn on_event(&self, socket: &Arc<Socket>, mut event: Event) -> Option<BoxFuture<()>> {
        let ack = event.take_ack();
        let reply = |value: Value| {
            if let Some(ack) = ack {
                ack.send_one(&value);
            }
        };
        match event.name.as_str() {
            "subscribe" | "unsubscribe" => {
                let Ok(room) = event.args.first::<String>() else {
                    reply(HubError::new(ErrorCode::BadRequest, "expected a room id").reply());
                    return None;
                };
                if event.name == "unsubscribe" {
                    socket.leave(&room);
                    reply(ok_value(Unsubscribed { ok: true, room }));
                    return None;
                }
                if room.len() > self.limits.max_room_len {
                    reply(
                        HubError::new(
                            ErrorCode::BadRequest,
                            format!("room ids are at most {} bytes", self.limits.max_room_len),
                        )
                        .reply(),
                    );
                    return None;
                }
                let max_rooms = self.limits.max_rooms_per_socket;
                let verdict = self.component.subscribe(socket, &room);
                let socket = socket.clone();
                Some(Box::pin(async move {
                    match verdict.await {
                        Ok(rooms) if rooms_after_joining(&socket, &rooms) > max_rooms => {
                            reply(
                                HubError::new(
                                    ErrorCode::TooManyRooms,
                                    format!("a socket may be in at most {max_rooms} rooms"),
                                )
                                .reply(),
                            );
                        }
                        Ok(rooms) => {
                            let joining: Vec<Room> =
                                rooms.iter().map(|r| Room::from(r.as_str())).collect();
                            // The answer may come after the client left: then
                            // nothing is joined, and there is no one to ack.
                            if socket.join_all(&joining) {
                                reply(ok_value(Subscribed {
                                    ok: true,
                                    room,
                                    rooms,
                                }));
                            }
                        }
                        Err(err) => reply(err.reply()),
                    }
                }))
            }
            name => {
                // Who sends it, resolved once for the component.
                let user = match C::User::of(socket) {
                    Ok(user) => user,
                    Err(err) => {
                        reply(err.reply());
                        return None;
                    }
                };
                if let Some(queued) = self.component.queue(socket, &user, name, &event.args) {
                    let socket = socket.clone();
                    return Some(Box::pin(async move {
                        let rest = queued.await;
                        // In line: the socket's next event may run while
                        // this one finishes. Its ack still follows the acks
                        // of the events queued before it.
                        let (acked, ack_done) = tokio::sync::oneshot::channel::<()>();
                        let before = ack_chain(&socket).lock().replace(ack_done);
                        tokio::spawn(async move {
                            let value = match rest.await {
                                Ok(fields) => ok(fields),
                                Err(err) => err.reply(),
                            };
                            if let Some(before) = before {
                                let _ = before.await;
                            }
                            reply(value);
                            let _ = acked.send(());
                        });
                    }));
                }
                let future = self.component.handle(socket, user, name, &event.args);
                Some(Box::pin(async move {
                    let value = match future.await {
                        Ok(fields) => ok(fields),
                        Err(err) => err.reply(),
                    };
                    reply(value);
                }))
            }
        }
    }
}

/// `unsubscribe`'s ack: the room left.
#[derive(Serialize)]
struct Unsubscribed {
    ok: bool,
    room: String,
}

/// `subscribe`'s ack: the room asked for, and the rooms the component
/// joined for it.
#[derive(Serialize)]
struct Subscribed {
    ok: bool,
    room: String,
    rooms: Vec<String>,
}

/// An ack's value, through which the runner's `reply` sends every answer
/// (a refusal's too).
fn ok_value(reply: impl Serialize) -> Value {
    // Strings and lists of strings: serializing cannot fail.
    serde_json::to_value(reply).unwrap_or(Value::Null)
}
