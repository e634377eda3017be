//! The SQL of `/notifications` (table `notifications`, migrations
//! `*_notifications.sql`). Every function here runs on a connection or a
//! transaction it is given, so a caller can group them.

use sqlx::{AnyConnection, Row};

use super::NewNotification;

/// Stores `new` for `user`; returns its id.
pub async fn insert(
    conn: &mut AnyConnection,
    user: &str,
    new: &NewNotification,
    now_ms: i64,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO notifications (user_id, kind, title, body, data, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(user)
    .bind(&new.kind)
    .bind(&new.title)
    .bind(&new.body)
    .bind(new.data.to_string())
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    row.try_get::<i64, _>(0)
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
