//! The SQL of `/notifications` (table `notifications`, migrations
//! `*_notifications*.sql`). Every function here runs on a connection or a
//! transaction it is given, so a caller can group them; the same text runs
//! on SQLite and PostgreSQL (`$n` placeholders through the Any driver).
//!
//! Statements that take a list (users, ids) are cut into chunks of
//! [`CHUNK`] items, so that no statement passes either dialect's bound on
//! placeholders, however long the list.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::{NewNotification, Notification};

/// Most list items (users, ids) bound in one statement.
pub const CHUNK: usize = 500;

/// `$from, $from+1, …` for `count` items.
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stores `new` for each of `users` (distinct ids) in as few statements
/// as [`CHUNK`] allows; returns each user's new id.
pub async fn insert_many(
    conn: &mut AnyConnection,
    users: &[String],
    new: &NewNotification,
    now_ms: i64,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let data = new.data.to_string();
    let mut ids = HashMap::with_capacity(users.len());
    for chunk in users.chunks(CHUNK) {
        // One row per user from a VALUES list; the common columns are bound
        // once. Both dialects name a VALUES list's column `column1`.
        let values = (0..chunk.len())
            .map(|i| format!("(${})", i + 6))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO notifications (user_id, kind, title, body, data, created_at) \
             SELECT column1, $1, $2, $3, $4, $5 FROM (VALUES {values}) AS v \
             RETURNING id, user_id"
        );
        let mut query = sqlx::query(&sql)
            .bind(&new.kind)
            .bind(&new.title)
            .bind(&new.body)
            .bind(&data)
            .bind(now_ms);
        for user in chunk {
            query = query.bind(user);
        }
        // RETURNING's order is not promised: rows are matched by user.
        for row in query.fetch_all(&mut *conn).await? {
            ids.insert(row.try_get::<String, _>(1)?, row.try_get::<i64, _>(0)?);
        }
    }
    Ok(ids)
}

/// How many of `user`'s notifications are unread.
pub async fn unread(conn: &mut AnyConnection, user: &str) -> Result<i64, sqlx::Error> {
    let row =
        sqlx::query("SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
            .bind(user)
            .fetch_one(&mut *conn)
            .await?;
    row.try_get::<i64, _>(0)
}

/// The unread counts of `users`, one grouped query per [`CHUNK`] (a user
/// with none is absent).
pub async fn unread_many(
    conn: &mut AnyConnection,
    users: &[String],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut counts = HashMap::with_capacity(users.len());
    for chunk in users.chunks(CHUNK) {
        let sql = format!(
            "SELECT user_id, COUNT(*) FROM notifications \
             WHERE read_at IS NULL AND user_id IN ({}) GROUP BY user_id",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for user in chunk {
            query = query.bind(user);
        }
        for row in query.fetch_all(&mut *conn).await? {
            counts.insert(row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?);
        }
    }
    Ok(counts)
}

/// Up to `limit` of `user`'s notifications with an id below `before`
/// (all when `None`), newest first.
pub async fn list(
    conn: &mut AnyConnection,
    user: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Notification>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, kind, title, body, data, created_at, read_at FROM notifications \
         WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(user)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let data: String = row.try_get(4)?;
            Ok(Notification {
                id: row.try_get(0)?,
                kind: row.try_get(1)?,
                title: row.try_get(2)?,
                body: row.try_get(3)?,
                // Written by `insert_many` from a `Value`: always JSON.
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                created_at: row.try_get(5)?,
                read: row.try_get::<Option<i64>, _>(6)?.is_some(),
            })
        })
        .collect()
}

/// Those of `ids` that are `user`'s and unread (a read that would
/// change nothing is not written).
pub async fn unread_of(
    conn: &mut AnyConnection,
    user: &str,
    ids: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut found = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id FROM notifications \
             WHERE user_id = $1 AND read_at IS NULL AND id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(user);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.push(row.try_get::<i64, _>(0)?);
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Marks those of `ids` that are `user`'s and unread as read; returns
/// them (ids of other users' notifications are left alone and not
/// returned, like ids that do not exist).
pub async fn mark_read(
    conn: &mut AnyConnection,
    user: &str,
    ids: &[i64],
    now_ms: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let mut marked = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "UPDATE notifications SET read_at = $2 \
             WHERE user_id = $1 AND read_at IS NULL AND id IN ({}) RETURNING id",
            placeholders(3, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(user).bind(now_ms);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            marked.push(row.try_get::<i64, _>(0)?);
        }
    }
    marked.sort_unstable();
    Ok(marked)
}

/// Marks every unread notification of `user` as read; returns how many.
pub async fn mark_all_read(
    conn: &mut AnyConnection,
    user: &str,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query("UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL")
            .bind(user)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
    Ok(done.rows_affected())
}

/// Up to `limit` users holding more than `max` notifications.
pub async fn users_over(
    conn: &mut AnyConnection,
    max: i64,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id FROM notifications GROUP BY user_id HAVING COUNT(*) > $1 LIMIT $2",
    )
    .bind(max)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|row| row.try_get(0)).collect()
}

/// Up to `limit` users holding notifications created before `cutoff_ms`.
pub async fn users_with_older(
    conn: &mut AnyConnection,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT DISTINCT user_id FROM notifications WHERE created_at < $1 LIMIT $2")
            .bind(cutoff_ms)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(|row| row.try_get(0)).collect()
}

/// What a prune of one user removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub deleted: u64,
    /// Of which unread (the user's count changed).
    pub unread: u64,
}

impl Pruned {
    fn of_rows(rows: &[sqlx::any::AnyRow]) -> Result<Pruned, sqlx::Error> {
        let mut pruned = Pruned::default();
        for row in rows {
            pruned.deleted += 1;
            if row.try_get::<Option<i64>, _>(0)?.is_none() {
                pruned.unread += 1;
            }
        }
        Ok(pruned)
    }
}

/// Deletes `user`'s notifications beyond the newest `keep` (≥ 1) and
/// those created before `cutoff_ms`.
pub async fn prune_user(
    conn: &mut AnyConnection,
    user: &str,
    keep: i64,
    cutoff_ms: i64,
) -> Result<Pruned, sqlx::Error> {
    // The `keep`-th newest id: everything below it goes. NULL (fewer
    // notifications) compares false, so only the age applies then.
    let rows = sqlx::query(
        "DELETE FROM notifications WHERE user_id = $1 AND (created_at < $2 OR id < \
         (SELECT id FROM notifications WHERE user_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $3)) \
         RETURNING read_at",
    )
    .bind(user)
    .bind(cutoff_ms)
    .bind(keep - 1)
    .fetch_all(&mut *conn)
    .await?;
    Pruned::of_rows(&rows)
}
