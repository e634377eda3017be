//! [`Notifications`]: stores notifications and tells the user's devices.
//! Every write is one transaction (nothing half-written when the store
//! fails) committed, and announced, under its users' locks (`locks.rs`),
//! so each device's unread count ends where the store's is.
//!
//! What a device is told:
//! - a new notification: `notification` `{notification, unread}`, every
//!   device of the user;
//! - a `read` / `read_all` that changed something: `notification:read`
//!   `{ids}` / `{all: true}` to the user's other devices, then `unread`
//!   `{count}` to every device (the one that read included);
//! - a prune that removed unread ones: `unread` `{count}`;
//! - once connected: `unread` `{count}`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use socketio::{Args, Namespace, Socket, SocketIo};

use super::locks::UserLocks;
use super::store::{self, Pruned};
use super::{NewNotification, Notification, NotificationsConfig};
use crate::auth::user_room;
use crate::clock::now_ms;
use crate::error::{ErrorCode, HubError};
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;

/// A write transaction whose statements ran within the store's timeout.
type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Commits `tx`, not bounded by the store's timeout: once COMMIT is sent,
/// its outcome is what the store did, and cutting it short would answer
/// "failed" for a write that may have landed (a backend retrying it would
/// store every notification twice). The statements before it are bounded
/// ([`Store::timed`]), so a store that hangs is still noticed there; a
/// COMMIT that fails rolls back, nothing half-written.
async fn commit(tx: Tx) -> Result<(), HubError> {
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// `unread`: a device's unread count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unread {
    pub count: i64,
}

/// `notification:read`: what another device of the user read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ReadElsewhere<'a> {
    /// `{ids}`: these.
    Ids {
        #[schema(value_type = Vec<i64>)]
        ids: &'a [i64],
    },
    /// `{all: true}`: every one.
    All { all: bool },
}

/// Users looked at per round of a prune.
const PRUNE_BATCH: i64 = 500;

/// Rounds of one prune at most (the rest waits for the next one), so that
/// a store that keeps answering the same users cannot hold it forever.
const PRUNE_ROUNDS: usize = 1_000;

/// Stores notifications and tells the user's devices. Cloning shares it.
#[derive(Clone)]
pub struct Notifications {
    store: Store,
    io: SocketIo,
    /// The namespace the `notifications` component serves, if any: where
    /// devices are told.
    namespace: Option<Arc<str>>,
    config: Arc<NotificationsConfig>,
    locks: Arc<UserLocks>,
}

/// What one prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Users whose notifications were pruned.
    pub users: u64,
    pub deleted: u64,
}

impl Notifications {
    pub(crate) fn new(
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
            locks: Arc::new(UserLocks::default()),
        }
    }

    pub fn config(&self) -> &NotificationsConfig {
        &self.config
    }

    /// The namespace where devices are told, if one is served.
    pub fn namespace_name(&self) -> Option<String> {
        self.namespace.as_deref().map(str::to_owned)
    }

    fn namespace(&self) -> Option<Arc<Namespace>> {
        self.namespace.as_deref().and_then(|name| self.io.of(name))
    }

    /// Why `new` for `users` cannot be created, if it cannot.
    pub fn check(&self, users: &[String], new: &NewNotification) -> Result<(), String> {
        let c = &*self.config;
        if users.is_empty() || users.len() > c.max_users_per_request {
            return Err(format!("users: 1 to {} user ids", c.max_users_per_request));
        }
        if users
            .iter()
            .any(|u| u.is_empty() || u.len() > c.max_user_id_bytes)
        {
            return Err(format!("user ids are 1 to {} bytes", c.max_user_id_bytes));
        }
        let chars = |s: &str| s.chars().count();
        if new.kind.is_empty() || chars(&new.kind) > c.max_type_chars {
            return Err(format!("type is 1 to {} characters", c.max_type_chars));
        }
        if new.title.is_empty() || chars(&new.title) > c.max_title_chars {
            return Err(format!("title is 1 to {} characters", c.max_title_chars));
        }
        if chars(&new.body) > c.max_body_chars {
            return Err(format!("body is at most {} characters", c.max_body_chars));
        }
        if new.data.to_string().len() > c.max_data_bytes {
            return Err(format!(
                "data is at most {} bytes of JSON",
                c.max_data_bytes
            ));
        }
        Ok(())
    }

    /// Stores `new` for each of `users` (all or none; a user named twice
    /// gets one), then emits `notification` `{notification, unread}` to
    /// each user's devices. Returns the stored notifications with each
    /// user's new unread count. Refused with `bad_request` by
    /// [`check`](Self::check).
    pub async fn create(
        &self,
        users: &[String],
        new: &NewNotification,
    ) -> Result<Vec<(String, Notification, i64)>, HubError> {
        self.check(users, new)
            .map_err(|message| HubError::new(ErrorCode::BadRequest, message))?;
        let mut seen = HashSet::with_capacity(users.len());
        let users: Vec<String> = users
            .iter()
            .filter(|u| seen.insert(u.as_str()))
            .cloned()
            .collect();
        let now = now_ms();
        let _held = self.locks.lock(&users).await;
        let (tx, ids, counts) = self
            .store
            .timed(async {
                let mut tx = self.store.begin_write().await?;
                let ids = store::insert_many(&mut tx, &users, new, now).await?;
                let counts = store::unread_many(&mut tx, &users).await?;
                Ok((tx, ids, counts))
            })
            .await?;
        commit(tx).await?;
        let mut created = Vec::with_capacity(users.len());
        for user in users {
            let (Some(&id), Some(&unread)) = (ids.get(&user), counts.get(&user)) else {
                // Cannot happen: every user got a row in the transaction.
                tracing::error!(user, "a created notification was not returned");
                continue;
            };
            let notification = Notification {
                id,
                kind: new.kind.clone(),
                title: new.title.clone(),
                body: new.body.clone(),
                data: new.data.clone(),
                created_at: now,
                read: false,
            };
            created.push((user, notification, unread));
        }
        if let Some(ns) = self.namespace() {
            let event = EventText::new(new, now);
            for (user, notification, unread) in &created {
                let payload = event.for_user(notification.id, *unread);
                let Ok(raw) = serde_json::value::RawValue::from_string(payload) else {
                    continue;
                };
                let mut args = Args::new();
                args.push_json(&raw);
                ns.to(user_room(user)).emit("notification", &args);
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

    /// Tells `socket` its user's unread count (`unread` `{count}`), in
    /// order with the changes of it.
    pub async fn announce_unread(&self, socket: &Arc<Socket>) -> Result<(), HubError> {
        let Some(user) = crate::auth::identity_of(socket).map(|i| i.user) else {
            return Ok(());
        };
        let _held = self.locks.lock([&user]).await;
        let count = self.unread(&user).await?;
        socket.emit("unread", &Args::one(&Unread { count }));
        Ok(())
    }

    /// `user`'s notifications below id `before` (all when `None`), newest
    /// first, at most `limit`; and whether there are more.
    pub(crate) async fn list(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<Notification>, bool), HubError> {
        let mut page = self
            .store
            .timed(async {
                let mut conn = self.store.pool().acquire().await?;
                store::list(&mut conn, user, before, i64::from(limit) + 1).await
            })
            .await?;
        let has_more = page.len() > limit as usize;
        page.truncate(limit as usize);
        Ok((page, has_more))
    }

    /// Marks those of `ids` that are `user`'s and unread as read; returns
    /// them. When some changed, `user`'s devices other than `from` are told
    /// (`notification:read` `{ids}`), then every device the new count.
    /// When none would change (all read already, or not theirs), nothing
    /// is written and nobody is told: the same `read` again is free.
    pub(crate) async fn read(
        &self,
        user: &str,
        ids: &[i64],
        from: Option<&Arc<Socket>>,
    ) -> Result<Vec<i64>, HubError> {
        let now = now_ms();
        let _held = self.locks.lock([user]).await;
        // Looked at first, without the write lock: under the user's lock no
        // other writer of theirs can change it in between.
        let unread = self
            .store
            .timed(async {
                let mut conn = self.store.pool().acquire().await?;
                store::unread_of(&mut conn, user, ids).await
            })
            .await?;
        if unread.is_empty() {
            return Ok(unread);
        }
        let (tx, marked, count) = self
            .store
            .timed(async {
                let mut tx = self.store.begin_write().await?;
                let marked = store::mark_read(&mut tx, user, &unread, now).await?;
                let count = store::unread(&mut tx, user).await?;
                Ok((tx, marked, count))
            })
            .await?;
        commit(tx).await?;
        if !marked.is_empty() {
            self.tell_read(user, &ReadElsewhere::Ids { ids: &marked }, count, from);
        }
        Ok(marked)
    }

    /// Marks every unread notification of `user` as read; returns how
    /// many. When some were, the other devices are told
    /// (`notification:read` `{all: true}`), then every device the count.
    /// With none unread, nothing is written and nobody is told.
    pub(crate) async fn read_all(
        &self,
        user: &str,
        from: Option<&Arc<Socket>>,
    ) -> Result<u64, HubError> {
        let now = now_ms();
        let _held = self.locks.lock([user]).await;
        if self.unread(user).await? == 0 {
            return Ok(0);
        }
        let (tx, marked) = self
            .store
            .timed(async {
                let mut tx = self.store.begin_write().await?;
                let marked = store::mark_all_read(&mut tx, user, now).await?;
                Ok((tx, marked))
            })
            .await?;
        commit(tx).await?;
        if marked > 0 {
            self.tell_read(user, &ReadElsewhere::All { all: true }, 0, from);
        }
        Ok(marked)
    }

    /// `notification:read` to `user`'s devices but `from`, then `unread`
    /// to all of them.
    fn tell_read(&self, user: &str, read: &ReadElsewhere, count: i64, from: Option<&Arc<Socket>>) {
        let Some(ns) = self.namespace() else { return };
        let mut others = ns.to(user_room(user));
        if let Some(socket) = from {
            others = others.except_socket(*socket.id());
        }
        others.emit("notification:read", &Args::one(read));
        ns.to(user_room(user))
            .emit("unread", &Args::one(&Unread { count }));
    }

    /// Deletes, for every user, the notifications beyond the newest
    /// `max_per_user` and those older than `max_age_days`; a user whose
    /// unread count changed is told the new one.
    pub(crate) async fn prune(&self) -> Result<PruneReport, HubError> {
        // Refused at start when 0: the floor keeps a prune from emptying
        // every user's list for an embedder that skips that check.
        let keep = i64::from(self.config.max_per_user.max(1));
        let age_ms = i64::from(self.config.max_age_days) * 86_400_000;
        let cutoff = now_ms().saturating_sub(age_ms);
        let mut report = PruneReport::default();
        // Users over the cap, then users with old ones: each round finds
        // users still to prune, until none is left (each user pruned leaves
        // both sets, so this ends).
        for _ in 0..PRUNE_ROUNDS {
            let users = self
                .store
                .timed(async {
                    let mut conn = self.store.pool().acquire().await?;
                    let mut users = store::users_over(&mut conn, keep, PRUNE_BATCH).await?;
                    if users.is_empty() {
                        users = store::users_with_older(&mut conn, cutoff, PRUNE_BATCH).await?;
                    }
                    Ok(users)
                })
                .await?;
            if users.is_empty() {
                return Ok(report);
            }
            for user in users {
                let pruned = self.prune_user(&user, keep, cutoff).await?;
                if pruned.deleted > 0 {
                    report.users += 1;
                    report.deleted += pruned.deleted;
                }
            }
        }
        Ok(report)
    }

    async fn prune_user(&self, user: &str, keep: i64, cutoff: i64) -> Result<Pruned, HubError> {
        let _held = self.locks.lock([user]).await;
        let (tx, pruned, count) = self
            .store
            .timed(async {
                let mut tx = self.store.begin_write().await?;
                let pruned = store::prune_user(&mut tx, user, keep, cutoff).await?;
                let count = if pruned.unread > 0 {
                    Some(store::unread(&mut tx, user).await?)
                } else {
                    None
                };
                Ok((tx, pruned, count))
            })
            .await?;
        commit(tx).await?;
        if let (Some(count), Some(ns)) = (count, self.namespace()) {
            ns.to(user_room(user))
                .emit("unread", &Args::one(&Unread { count }));
        }
        Ok(pruned)
    }

    /// Prunes every `prune_interval_ms` until the hub closes.
    pub fn start_pruning(&self, tasks: &Tasks) {
        // Refused at start under 10 ms; the floor keeps a busy loop out.
        let period = Duration::from_millis(self.config.prune_interval_ms.max(10));
        let notifications = self.clone();
        tasks.every(period, move || {
            let notifications = notifications.clone();
            async move {
                match notifications.prune().await {
                    Ok(report) if report.deleted > 0 => {
                        tracing::info!(
                            users = report.users,
                            deleted = report.deleted,
                            "notifications pruned"
                        );
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "pruning notifications failed"),
                }
            }
        });
    }
}

/// The `notification` event's text ([`super::NotificationEvent`]) for one
/// notification created for many users. They share every field but the id
/// and the unread count, so those fields are serialized once (10,000 users,
/// one serialization) and each user's payload is text around them.
struct EventText {
    /// The shared fields, `"body":…,"type":…}`: the notification
    /// object's text after its `id`, closing brace included.
    common: String,
}

impl EventText {
    fn new(new: &NewNotification, now: i64) -> EventText {
        // In key order, as the `json!` object this replaced wrote them.
        #[derive(Serialize)]
        struct Common<'a> {
            body: &'a str,
            created_at: i64,
            data: &'a serde_json::Value,
            read: bool,
            title: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
        }
        let common = serde_json::to_string(&Common {
            kind: &new.kind,
            title: &new.title,
            body: &new.body,
            data: &new.data,
            created_at: now,
            read: false,
        })
        // A struct of strings, a JSON value and numbers always serializes.
        .unwrap_or_else(|_| "{}".to_owned());
        let common = match common.strip_prefix('{') {
            Some(rest) => rest.to_owned(),
            None => common,
        };
        EventText { common }
    }

    /// The payload for the user whose copy has `id` and `unread` unread.
    fn for_user(&self, id: i64, unread: i64) -> String {
        format!(
            r#"{{"notification":{{"id":{id},{},"unread":{unread}}}"#,
            self.common
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::services::notifications::NotificationEvent;

    /// The text written by hand is the contract's type serialized: same
    /// fields, same values, whatever the strings and data hold.
    #[test]
    fn the_event_text_is_the_notification_event_type() {
        let cases = [
            NewNotification {
                kind: "chat:mention".into(),
                title: "Al mentioned you".into(),
                body: "in #general".into(),
                data: json!({"conversation": 7, "seq": [1, 2], "nested": {"k": null}}),
            },
            NewNotification {
                kind: "q\"uote\\".into(),
                title: "}{,\n\u{0}\u{2028}".into(),
                body: "ü €".into(),
                data: json!(null),
            },
        ];
        for new in cases {
            let text = EventText::new(&new, 1_700_000_000_123);
            for (id, unread) in [(1, 0), (i64::MAX, 42)] {
                let written: serde_json::Value =
                    serde_json::from_str(&text.for_user(id, unread)).unwrap();
                let typed = serde_json::to_value(NotificationEvent {
                    notification: Notification {
                        id,
                        kind: new.kind.clone(),
                        title: new.title.clone(),
                        body: new.body.clone(),
                        data: new.data.clone(),
                        created_at: 1_700_000_000_123,
                        read: false,
                    },
                    unread,
                })
                .unwrap();
                assert_eq!(written, typed);
            }
        }
    }
}
