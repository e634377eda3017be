//! The notifications service: what the server tells a user (a missed
//! call, a mention, anything a backend publishes with `persist`), stored
//! per user with a read flag, and mirrored to every device of the user
//! on the namespace the `notifications` component serves.
//!
//! [`Notifications`] (`service.rs`) is what the components (a missed call,
//! a mention), the publish API and the `/notifications` component create,
//! list and mark notifications through. The SQL is in `store.rs`, the
//! per-user ordering of writes in `locks.rs`; `store_tests.rs` tests the
//! service's store logic on SQLite and PostgreSQL.

mod locks;
mod service;
mod store;
#[cfg(test)]
mod store_tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use service::{Notifications, PruneReport, ReadElsewhere, Unread};
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// `notification`: a notification created for the user, with the user's
/// unread count after it. [`Notifications::create`] writes this shape as
/// text around one serialization of the fields every user shares (one
/// serialization for 10,000 users); this type is its contract.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NotificationEvent {
    pub notification: Notification,
    pub unread: i64,
}
