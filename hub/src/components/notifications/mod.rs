//! `/notifications`: the namespace where a user reads their notifications.
//!
//! [`NotificationsComponent`] (here) answers the clients of the namespace:
//! `list`, `read`, `read_all`, and the `unread` count each device gets once
//! connected; the client payloads are read in `payload.rs`. What it asks,
//! and what other components and the publish API create notifications
//! through, is the service ([`crate::services::notifications`]).

mod payload;

use std::sync::Arc;

use serde_json::{Map, Value, json};
use socketio::{Args, BoxFuture, Socket};

use crate::auth::identity_of;
use crate::component::{Component, HubError, Reply};
use crate::services::Context;

pub use crate::services::notifications::NotificationsConfig;

/// A page of `list` when the client names no `limit`.
pub const DEFAULT_LIST_LIMIT: u32 = 20;

/// The `/notifications` namespace's component.
pub struct NotificationsComponent {
    ctx: Context,
}

impl NotificationsComponent {
    pub fn new(ctx: Context) -> NotificationsComponent {
        NotificationsComponent { ctx }
    }
}

/// The fields of an `{ok:true, …}` ack.
fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl Component for NotificationsComponent {
    /// Once the client knows it is connected, it is told its unread count
    /// (`unread` `{count}`), in order with every other change of it.
    fn on_connected(&self, socket: &Arc<Socket>) {
        let notifications = self.ctx.notifications.clone();
        let socket = socket.clone();
        self.ctx.tasks.spawn(async move {
            if let Err(err) = notifications.announce_unread(&socket).await {
                // The device learns its count with the next change instead.
                tracing::debug!(%err, "unread count at connect");
            }
        });
    }

    fn handle(&self, socket: &Arc<Socket>, event: &str, args: &Args) -> BoxFuture<Reply> {
        let Some(user) = identity_of(socket).map(|identity| identity.user) else {
            return Box::pin(std::future::ready(Err(HubError::new(
                "unauthorized",
                "sign in first",
            ))));
        };
        let notifications = self.ctx.notifications.clone();
        let socket = socket.clone();
        match event {
            "list" => {
                let request = payload::list(args, notifications.config());
                Box::pin(async move {
                    let (before, limit) = request?;
                    let (page, has_more) = notifications.list(&user, before, limit).await?;
                    Ok(fields(json!({"notifications": page, "has_more": has_more})))
                })
            }
            "read" => {
                let request = payload::read(args, notifications.config());
                Box::pin(async move {
                    let ids = notifications.read(&user, &request?, Some(&socket)).await?;
                    Ok(fields(json!({"ids": ids})))
                })
            }
            "read_all" => {
                let request = payload::read_all(args);
                Box::pin(async move {
                    request?;
                    let marked = notifications.read_all(&user, Some(&socket)).await?;
                    Ok(fields(json!({"marked": marked})))
                })
            }
            other => Box::pin(std::future::ready(Err(HubError::new(
                "unknown_event",
                format!("no event {other:?} in /notifications (list, read, read_all)"),
            )))),
        }
    }
}
