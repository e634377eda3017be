//! The SQL of `/presence` (table `presence`, migrations `*_presence.sql`):
//! each user's chosen status and `last_seen`, which must survive a restart.
//! Every function runs on a connection it is given and is one statement, so
//! each write is whole or not at all.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::state::{Millis, Remembered, Status};

/// Ids per `IN (…)` list: well under every dialect's bound on parameters.
const IDS_PER_QUERY: usize = 500;

/// What the store remembers of each of `users` it has a row for.
pub async fn remembered(
    conn: &mut AnyConnection,
    users: &[String],
) -> Result<HashMap<String, Remembered>, sqlx::Error> {
    let mut found = HashMap::new();
    for chunk in users.chunks(IDS_PER_QUERY) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT user_id, status, last_seen FROM presence WHERE user_id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for user in chunk {
            query = query.bind(user);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let user: String = row.try_get(0)?;
            let status: String = row.try_get(1)?;
            let last_seen: Option<i64> = row.try_get(2)?;
            found.insert(
                user,
                Remembered {
                    // Only chosen statuses are written; anything else
                    // (a hand-edited row) reads as the default.
                    status: Status::chosen(&status).unwrap_or(Status::Online),
                    last_seen,
                },
            );
        }
    }
    Ok(found)
}

/// Remembers that `user` chose `status`.
pub async fn set_status(
    conn: &mut AnyConnection,
    user: &str,
    status: Status,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO presence (user_id, status) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET status = excluded.status",
    )
    .bind(user)
    .bind(status.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Remembers that `user` was seen at `at`, unless a later time is stored
/// already: these writes run in the background and may land out of order.
pub async fn seen(conn: &mut AnyConnection, user: &str, at: Millis) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO presence (user_id, last_seen) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET last_seen = CASE \
           WHEN presence.last_seen IS NULL OR presence.last_seen < excluded.last_seen \
           THEN excluded.last_seen ELSE presence.last_seen END",
    )
    .bind(user)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
