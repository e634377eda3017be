//! `/notifications`: what the server tells a user (a missed call, a
//! mention, anything a backend publishes with `persist`), stored per user
//! with a read flag, and mirrored to every device of the user.
//!
//! [`Notifications`] is the service other components and the publish API
//! create notifications through; [`NotificationsComponent`] answers the
//! clients of the namespace. The SQL is in `store.rs`.

mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketio::{Args, BoxFuture, Socket, SocketIo};

use crate::auth::user_room;
use crate::component::{Component, HubError, Reply};
use crate::store::Store;

/// The component's settings (`[notifications]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Notifications kept per user: the newest; older ones are pruned.
    pub max_per_user: u32,
    /// Notifications older than this are pruned, in days.
    pub max_age_days: u32,
    /// Largest `data` of one notification, in bytes of JSON.
    pub max_data_bytes: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            max_per_user: 1_000,
            max_age_days: 90,
            max_data_bytes: 4_096,
        }
    }
}

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

/// Stores notifications and tells the user's devices. Cloning shares it.
#[derive(Clone)]
pub struct Notifications {
    store: Store,
    io: SocketIo,
    /// The namespace the `notifications` component serves, if any: where
    /// devices are told.
    namespace: Option<Arc<str>>,
    config: Arc<NotificationsConfig>,
}

impl Notifications {
    pub fn new(
        store: Store,
        io: SocketIo,
        namespace: Option<&str>,
        config: NotificationsConfig,
    ) -> Notifications {
        Notifications {
            store,
            io,
            namespace: namespace.map(Arc::from),
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &NotificationsConfig {
        &self.config
    }

    /// Stores `new` for each of `users` (all or none), then emits
    /// `notification` `{notification, unread}` to each user's devices.
    /// Returns the stored notifications, by user.
    pub async fn create(
        &self,
        users: &[String],
        new: &NewNotification,
    ) -> Result<Vec<(String, Notification, i64)>, HubError> {
        let data_bytes = new.data.to_string().len();
        if data_bytes > self.config.max_data_bytes {
            return Err(HubError::new(
                "payload_too_large",
                format!(
                    "notification data is at most {} bytes of JSON",
                    self.config.max_data_bytes
                ),
            ));
        }
        let now = now_ms();
        let stored = self
            .store
            .timed(async {
                let mut tx = self.store.begin_write().await?;
                let mut stored = Vec::with_capacity(users.len());
                for user in users {
                    let id = store::insert(&mut tx, user, new, now).await?;
                    let unread = store::unread(&mut tx, user).await?;
                    stored.push((user.clone(), id, unread));
                }
                tx.commit().await?;
                Ok(stored)
            })
            .await?;
        let created: Vec<(String, Notification, i64)> = stored
            .into_iter()
            .map(|(user, id, unread)| {
                let notification = Notification {
                    id,
                    kind: new.kind.clone(),
                    title: new.title.clone(),
                    body: new.body.clone(),
                    data: new.data.clone(),
                    created_at: now,
                    read: false,
                };
                (user, notification, unread)
            })
            .collect();
        if let Some(ns) = self.namespace.as_deref().and_then(|name| self.io.of(name)) {
            for (user, notification, unread) in &created {
                let payload = json!({"notification": notification, "unread": unread});
                ns.to(user_room(user))
                    .emit("notification", &Args::one(&payload));
            }
        }
        Ok(created)
    }

    /// How many of `user`'s notifications are unread.
    pub async fn unread(&self, user: &str) -> Result<i64, HubError> {
        let count = self
            .store
            .timed(async {
                let mut conn = self.store.pool().acquire().await?;
                store::unread(&mut conn, user).await
            })
            .await?;
        Ok(count)
    }
}

/// The `/notifications` namespace's component.
pub struct NotificationsComponent {
    notifications: Notifications,
}

impl NotificationsComponent {
    pub fn new(notifications: Notifications) -> NotificationsComponent {
        NotificationsComponent { notifications }
    }
}

impl Component for NotificationsComponent {
    fn handle(&self, _socket: &Arc<Socket>, event: &str, _args: &Args) -> BoxFuture<Reply> {
        let _ = &self.notifications;
        let result = Err(HubError::new(
            "unknown_event",
            format!("no handler for {event:?}"),
        ));
        Box::pin(std::future::ready(result))
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
