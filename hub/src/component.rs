//! Components: the ESN features, one per namespace. A component answers
//! the client's events and decides which rooms a client may subscribe to;
//! the hub turns that into Socket.IO: every event gets an ack
//! `{ok:true, …}` or `{ok:false, error:{code, message}}`, and `subscribe` /
//! `unsubscribe` (a room id) are handled here, authorized by the component;
//! each socket is held to [`RoomLimits`] (its event rate is limited around
//! the whole namespace handler: [`crate::limits::RateLimited`]).

use std::sync::Arc;

use serde_json::{Value, json};
use socketio::{Args, BoxFuture, Event, Namespace, NamespaceHandler, Socket};

use crate::auth::{identity_of, user_room};
use crate::identity::Identity;
use crate::limits::RoomLimits;

/// A refusal or failure, sent to the client as `{ok:false, error}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HubError {
    pub code: &'static str,
    pub message: String,
}

impl HubError {
    pub fn new(code: &'static str, message: impl Into<String>) -> HubError {
        HubError {
            code,
            message: message.into(),
        }
    }

    /// The ack that carries it: `{ok:false, error:{code, message}}`.
    pub fn reply(&self) -> Value {
        json!({"ok": false, "error": {"code": self.code, "message": self.message}})
    }
}

/// What a component answers: the fields of `{ok:true, …}`.
pub type Reply = Result<serde_json::Map<String, Value>, HubError>;

/// An ESN feature owning one namespace.
pub trait Component: Send + Sync + 'static {
    /// Whether `user` may subscribe to `room`. By default: their own
    /// `user:<id>` room only.
    fn may_subscribe(&self, user: Option<&Identity>, room: &str) -> bool {
        user.is_some_and(|u| room == user_room(&u.user))
    }

    /// Answers `subscribe` with the rooms to join. By default: `room` if
    /// [`may_subscribe`](Self::may_subscribe) allows it.
    fn subscribe(
        &self,
        socket: &Arc<Socket>,
        room: &str,
    ) -> BoxFuture<Result<Vec<String>, HubError>> {
        let verdict = if self.may_subscribe(identity_of(socket).as_ref(), room) {
            Ok(vec![room.to_owned()])
        } else {
            Err(HubError::new(
                "forbidden",
                format!("not allowed to subscribe to {room}"),
            ))
        };
        Box::pin(std::future::ready(verdict))
    }

    /// Handles a client event other than `subscribe` / `unsubscribe`.
    fn handle(&self, socket: &Arc<Socket>, event: &str, args: &Args) -> BoxFuture<Reply>;
}

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

/// `{ok:true, …fields}` (a component may set `ok` itself).
fn ok(fields: serde_json::Map<String, Value>) -> Value {
    let mut object = fields;
    object.entry("ok").or_insert(Value::Bool(true));
    Value::Object(object)
}

/// Emits `event` to everyone in `room` with the envelope `{room, data}`;
/// returns how many local sockets it reached.
pub fn publish_to_room(ns: &Arc<Namespace>, room: &str, event: &str, data: &Value) -> usize {
    ns.to(room)
        .emit(event, &Args::one(&json!({"room": room, "data": data})))
}

impl<C: Component> NamespaceHandler for ComponentHandler<C> {
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
                    reply(HubError::new("bad_request", "expected a room id").reply());
                    return None;
                };
                if event.name == "unsubscribe" {
                    socket.leave(&room);
                    reply(json!({"ok": true, "room": room}));
                    return None;
                }
                if room.len() > self.limits.max_room_len {
                    reply(
                        HubError::new(
                            "bad_request",
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
                                    "too_many_rooms",
                                    format!("a socket may be in at most {max_rooms} rooms"),
                                )
                                .reply(),
                            );
                        }
                        Ok(rooms) => {
                            for joined in &rooms {
                                socket.join(joined.as_str());
                            }
                            reply(json!({"ok": true, "room": room, "rooms": rooms}));
                        }
                        Err(err) => reply(err.reply()),
                    }
                }))
            }
            name => {
                let future = self.component.handle(socket, name, &event.args);
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

/// A generic publish/subscribe component: clients subscribe to their own
/// `user:<id>` room and to `topic:*` rooms, and `publish` `{room, data}` to
/// a topic room they are subscribed to; subscribers get `message` with the
/// envelope `{room, data}`.
pub struct PubSub;

impl Component for PubSub {
    fn may_subscribe(&self, user: Option<&Identity>, room: &str) -> bool {
        room.starts_with("topic:") || user.is_some_and(|u| room == user_room(&u.user))
    }

    fn handle(&self, socket: &Arc<Socket>, event: &str, args: &Args) -> BoxFuture<Reply> {
        let result = match event {
            "publish" => publish(socket, args),
            other => Err(HubError::new(
                "unknown_event",
                format!("no handler for {other:?}"),
            )),
        };
        Box::pin(std::future::ready(result))
    }
}

fn publish(socket: &Arc<Socket>, args: &Args) -> Reply {
    #[derive(serde::Deserialize)]
    struct Publish {
        room: String,
        #[serde(default)]
        data: Value,
    }
    let request: Publish = args
        .first()
        .map_err(|e| HubError::new("bad_request", format!("expected {{room, data}}: {e}")))?;
    if !request.room.starts_with("topic:") {
        return Err(HubError::new(
            "forbidden",
            "clients publish to topic rooms only",
        ));
    }
    if !socket.rooms().iter().any(|r| **r == *request.room) {
        return Err(HubError::new("forbidden", "subscribe to the room first"));
    }
    let count = publish_to_room(socket.namespace(), &request.room, "message", &request.data);
    let mut fields = serde_json::Map::new();
    fields.insert("delivered".to_owned(), json!(count));
    Ok(fields)
}
