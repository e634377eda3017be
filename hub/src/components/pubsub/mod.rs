//! [`PubSub`]: a generic publish/subscribe component.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use socketio::{Args, Socket};

use crate::auth::user_room;
use crate::component::{Component, ErrorCode, HubError, Reply, publish_to_room};
use crate::components::kit;
use crate::identity::Identity;

/// A generic publish/subscribe component: clients subscribe to their own
/// `user:<id>` room and to `topic:*` rooms, and `publish` `{room, data}` to
/// a topic room they are subscribed to; subscribers get `message` with the
/// envelope `{room, data}`.
pub struct PubSub;

impl Component for PubSub {
    /// Anyone, signed in or not, may publish to a topic they subscribed to.
    type User = Option<Identity>;

    fn may_subscribe(&self, user: Option<&Identity>, room: &str) -> bool {
        room.starts_with("topic:") || user.is_some_and(|u| room == user_room(&u.user))
    }

    fn handle(
        &self,
        socket: &Arc<Socket>,
        _user: Option<Identity>,
        event: &str,
        args: &Args,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let result = match event {
            "publish" => publish(socket, args),
            other => Err(HubError::new(
                ErrorCode::UnknownEvent,
                format!("no handler for {other:?}"),
            )),
        };
        std::future::ready(result)
    }
}

fn publish(socket: &Arc<Socket>, args: &Args) -> Reply {
    #[derive(serde::Deserialize)]
    struct Publish {
        room: String,
        #[serde(default)]
        data: Value,
    }
    let request: Publish = args.first().map_err(|e| {
        HubError::new(
            ErrorCode::BadRequest,
            format!("expected {{room, data}}: {e}"),
        )
    })?;
    if !request.room.starts_with("topic:") {
        return Err(HubError::new(
            ErrorCode::Forbidden,
            "clients publish to topic rooms only",
        ));
    }
    if !socket.rooms().iter().any(|r| **r == *request.room) {
        return Err(HubError::new(
            ErrorCode::Forbidden,
            "subscribe to the room first",
        ));
    }
    let delivered = publish_to_room(socket.namespace(), &request.room, "message", &request.data);
    kit::reply(&Published { delivered })
}

/// `publish`'s ack: how many local sockets the message reached.
#[derive(Debug, Serialize)]
struct Published {
    delivered: usize,
}
