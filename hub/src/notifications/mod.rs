//! `/notifications`: what the server tells a user (a missed call, a
//! mention, anything a backend publishes with `persist`), stored per user
//! with a read flag, and mirrored to every device of the user.
//!
//! [`Notifications`] (`service.rs`) is the service other components and
//! the publish API create notifications through, and what the component
//! asks; [`NotificationsComponent`] (here) answers the clients of the
//! namespace: `list`, `read`, `read_all`, and the `unread` count each
//! device gets once connected. The SQL is in `store.rs`, the per-user
//! ordering of writes in `locks.rs`, the client payloads in `payload.rs`.

mod locks;
mod payload;
mod service;
mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use socketio::{Args, BoxFuture, Socket};

use crate::auth::identity_of;
use crate::component::{Component, HubError, Reply};
use crate::context::Context;

pub use service::{Notifications, PruneReport};
pub use store::Pruned;

/// The component's settings (`[notifications]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Notifications kept per user: the newest; older ones are pruned.
    pub max_per_user: u32,
    /// Notifications older than this are pruned, in days.
    pub max_age_days: u32,
    /// How often the prune runs, in milliseconds.
    pub prune_interval_ms: u64,
    /// Largest `data` of one notification, in bytes of JSON.
    pub max_data_bytes: usize,
    /// Longest `type`, in characters.
    pub max_type_chars: usize,
    /// Longest `title`, in characters.
    pub max_title_chars: usize,
    /// Longest `body`, in characters.
    pub max_body_chars: usize,
    /// Longest user id a notification may be for, in bytes.
    pub max_user_id_bytes: usize,
    /// Users one creation may address (the publish API's `users`).
    pub max_users_per_request: usize,
    /// Ids one `read` may name.
    pub max_read_ids: usize,
    /// Largest `limit` of one `list`.
    pub max_list_limit: u32,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            max_per_user: 1_000,
            max_age_days: 90,
            prune_interval_ms: 600_000,
            max_data_bytes: 4_096,
            max_type_chars: 64,
            max_title_chars: 256,
            max_body_chars: 4_000,
            max_user_id_bytes: 256,
            max_users_per_request: 10_000,
            max_read_ids: 100,
            max_list_limit: 100,
        }
    }
}

/// A page of `list` when the client names no `limit`.
pub const DEFAULT_LIST_LIMIT: u32 = 20;

/// A notification to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// What it is about (`call:missed`, `chat:mention`, a backend's own).
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Anything the client needs to act on it (a conversation id, …).
    pub data: Value,
}

/// A stored notification, as the client sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// Increases with creation: the `list` cursor.
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: Value,
    /// Unix milliseconds.
    pub created_at: i64,
    pub read: bool,
}

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

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
