//! The SQL of `/chat` (tables `chat_*`, migrations `*_chat.sql`). Every
//! function runs on a connection or transaction it is given, so a caller
//! groups them into one transaction per logical write; none of them checks
//! permissions (the component does, inside the same transaction).

use std::collections::HashMap;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// Kinds of conversation, as stored and as the client sees them.
pub const DIRECT: &str = "direct";
pub const GROUP: &str = "group";

/// A conversation's own row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: i64,
    pub kind: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub last_seq: i64,
    pub last_activity: i64,
    /// The member who may remove others (groups; see [`remove_member`]).
    pub owner: Option<String>,
}

/// A stored message as the client sees it (history, `message`,
/// `message:updated`). A deleted one keeps its seq with `text: null` and
/// `deleted: true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: i64,
    pub conversation: i64,
    pub seq: i64,
    pub sender: String,
    pub client_id: String,
    /// `null` once deleted.
    #[schema(required = true)]
    pub text: Option<String>,
    /// The seq it answers.
    #[schema(required = true)]
    pub reply_to: Option<i64>,
    /// Members the text mentions (`@user`), as sent.
    pub mentions: Vec<String>,
    /// When it was stored.
    pub ts: i64,
    /// When it was last edited.
    #[schema(required = true)]
    pub edited_at: Option<i64>,
    /// A tombstone: the seq stays, the text is gone.
    pub deleted: bool,
}

/// A message to store (its seq taken by [`take_seqs_of`]).
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub conversation: i64,
    pub seq: i64,
    pub sender: &'a str,
    pub client_id: &'a str,
    pub text: &'a str,
    pub reply_to: Option<i64>,
    pub mentions: &'a [String],
    pub ts: i64,
}

const CONVERSATION_COLUMNS: &str = "id, kind, name, created_at, last_seq, last_activity, owner";
const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, sender, client_id, text, reply_to, \
                               mentions, created_at, edited_at, deleted_at";

fn conversation_of(row: &AnyRow) -> Result<Conversation, sqlx::Error> {
    Ok(Conversation {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        name: row.try_get(2)?,
        created_at: row.try_get(3)?,
        last_seq: row.try_get(4)?,
        last_activity: row.try_get(5)?,
        owner: row.try_get(6)?,
    })
}

fn message_of(row: &AnyRow) -> Result<Message, sqlx::Error> {
    let mentions: String = row.try_get(7)?;
    let deleted_at: Option<i64> = row.try_get(10)?;
    Ok(Message {
        id: row.try_get(0)?,
        conversation: row.try_get(1)?,
        seq: row.try_get(2)?,
        sender: row.try_get(3)?,
        client_id: row.try_get(4)?,
        text: row.try_get(5)?,
        reply_to: row.try_get(6)?,
        // Written by this module only; a damaged value reads as none.
        mentions: serde_json::from_str(&mentions).unwrap_or_default(),
        ts: row.try_get(8)?,
        edited_at: row.try_get(9)?,
        deleted: deleted_at.is_some(),
    })
}

/// The key of the direct conversation of two users: the same whichever
/// of them asks (the pair in order, as JSON, so no user id can forge
/// another pair's key).
pub fn direct_key(a: &str, b: &str) -> String {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    serde_json::json!([low, high]).to_string()
}

/// The conversation `id`, if it exists.
pub async fn conversation(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<Conversation>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM chat_conversations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(conversation_of).transpose()
}

/// The conversations of `ids` that exist, and their members (by user
/// id): two statements per [`ROWS_PER_STATEMENT`] ids, for a batch's
/// conversations at once.
pub async fn conversations_with_members(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<Vec<(Conversation, Vec<String>)>, sqlx::Error> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let list = placeholders(1, chunk.len());
        let sql =
            format!("SELECT {CONVERSATION_COLUMNS} FROM chat_conversations WHERE id IN ({list})");
        let mut rows = sqlx::query(&sql);
        for id in chunk {
            rows = rows.bind(*id);
        }
        let rows = rows.fetch_all(&mut *conn).await?;
        let mut at = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let conversation = conversation_of(row)?;
            at.insert(conversation.id, found.len());
            found.push((conversation, Vec::new()));
        }
        let sql = format!(
            "SELECT conversation_id, user_id FROM chat_members WHERE conversation_id IN ({list}) \
             ORDER BY conversation_id, user_id"
        );
        let mut members = sqlx::query(&sql);
        for id in chunk {
            members = members.bind(*id);
        }
        for row in members.fetch_all(&mut *conn).await? {
            let conversation: i64 = row.try_get(0)?;
            if let Some(&i) = at.get(&conversation) {
                found[i].1.push(row.try_get(1)?);
            }
        }
    }
    Ok(found)
}

/// Bind parameter `n` (from 1) of a statement whose parameters appear
/// once each, in order: `?` on SQLite, `$n` on PostgreSQL. SQLite finds a
/// numbered parameter's number by a linear search of the statement's
/// parameter names, once per parameter — quadratic in a multi-row
/// `INSERT` (a quarter of the writer's time with `$n`); an anonymous `?`
/// needs no search.
fn param(sqlite: bool, n: usize) -> String {
    if sqlite {
        "?".to_owned()
    } else {
        format!("${n}")
    }
}

fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

/// `user`'s read mark in `conversation`, or `None` if not a member.
pub async fn membership(
    conn: &mut AnyConnection,
    conversation: i64,
    user: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT last_read_seq FROM chat_members WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// The members of `conversation`, by user id.
pub async fn members(
    conn: &mut AnyConnection,
    conversation: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT user_id FROM chat_members WHERE conversation_id = $1 ORDER BY user_id")
            .bind(conversation)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Each member of `conversation` with their read mark (`last_read_seq`),
/// by user id: what other members' read receipts have said, for a page
/// that opens the conversation after they were sent.
pub async fn read_marks(
    conn: &mut AnyConnection,
    conversation: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, last_read_seq FROM chat_members WHERE conversation_id = $1 \
         ORDER BY user_id",
    )
    .bind(conversation)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The id of the direct conversation of `a` and `b`, if it exists (a
/// read: a send `to` a user looks here before creating anything).
pub async fn direct_id(
    conn: &mut AnyConnection,
    a: &str,
    b: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT id FROM chat_conversations WHERE direct_key = $1")
        .bind(direct_key(a, b))
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// [`direct_get_or_create_capped`] without a cap: the tests' shorthand
/// (the component always caps).
#[cfg(test)]
pub async fn direct_get_or_create(
    conn: &mut AnyConnection,
    a: &str,
    b: &str,
    now: i64,
) -> Result<(i64, bool), sqlx::Error> {
    match direct_get_or_create_capped(conn, a, b, now, usize::MAX).await? {
        Ok(found) => Ok(found),
        Err(_) => Err(sqlx::Error::RowNotFound), // no cap: never
    }
}

/// The direct conversation of `a` and `b`, created (with both as members)
/// if it did not exist; whether this call created it. Safe when both users
/// create it at once: the unique `direct_key` lets one insert win and the
/// other find it. Refuses to create it (`Err`: who is at the cap) when `a`
/// or `b` is in `cap` conversations already; an existing one is found
/// whatever the counts.
pub async fn direct_get_or_create_capped(
    conn: &mut AnyConnection,
    a: &str,
    b: &str,
    now: i64,
    cap: usize,
) -> Result<Result<(i64, bool), Vec<String>>, sqlx::Error> {
    let key = direct_key(a, b);
    let existing = sqlx::query("SELECT id FROM chat_conversations WHERE direct_key = $1")
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = existing {
        return Ok(Ok((row.try_get(0)?, false)));
    }
    if cap != usize::MAX {
        let full = at_conversation_cap(conn, &[a.to_owned(), b.to_owned()], cap).await?;
        if !full.is_empty() {
            return Ok(Err(full));
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO chat_conversations (kind, name, direct_key, created_by, created_at, \
         last_seq, last_activity) VALUES ($1, NULL, $2, $3, $4, 0, $4) \
         ON CONFLICT (direct_key) DO NOTHING RETURNING id",
    )
    .bind(DIRECT)
    .bind(&key)
    .bind(a)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = inserted {
        let id: i64 = row.try_get(0)?;
        add_members(conn, id, &[a.to_owned(), b.to_owned()], 0, now, None).await?;
        return Ok(Ok((id, true)));
    }
    // The other side created it meanwhile.
    let row = sqlx::query("SELECT id FROM chat_conversations WHERE direct_key = $1")
        .bind(&key)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Ok((row.try_get(0)?, false)))
}

/// Creates a group named `name` with `members` (the creator among them).
pub async fn create_group(
    conn: &mut AnyConnection,
    name: &str,
    creator: &str,
    members: &[String],
    now: i64,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO chat_conversations (kind, name, direct_key, created_by, created_at, \
         last_seq, last_activity, owner) VALUES ($1, $2, NULL, $3, $4, 0, $4, $3) RETURNING id",
    )
    .bind(GROUP)
    .bind(name)
    .bind(creator)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = row.try_get(0)?;
    add_members(conn, id, members, 0, now, None).await?;
    Ok(id)
}

/// Adds `users` to `conversation` with their read mark at `read_seq` (a
/// newcomer has nothing unread), added `by` a member (`None`: with the
/// conversation); returns those that were not members yet.
pub async fn add_members(
    conn: &mut AnyConnection,
    conversation: i64,
    users: &[String],
    read_seq: i64,
    now: i64,
    by: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut added = Vec::new();
    for user in users {
        let row = sqlx::query(
            "INSERT INTO chat_members (conversation_id, user_id, joined_at, last_read_seq, \
             added_by) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (conversation_id, user_id) DO NOTHING RETURNING user_id",
        )
        .bind(conversation)
        .bind(user)
        .bind(now)
        .bind(read_seq)
        .bind(by)
        .fetch_optional(&mut *conn)
        .await?;
        if row.is_some() {
            sqlx::query(
                "INSERT INTO chat_user_conversations (user_id, conversations) VALUES ($1, 1) \
                 ON CONFLICT (user_id) DO UPDATE \
                 SET conversations = chat_user_conversations.conversations + 1",
            )
            .bind(user)
            .execute(&mut *conn)
            .await?;
            added.push(user.clone());
        }
    }
    if !added.is_empty() {
        sqlx::query("UPDATE chat_conversations SET member_count = member_count + $2 WHERE id = $1")
            .bind(conversation)
            .bind(added.len() as i64)
            .execute(&mut *conn)
            .await?;
    }
    Ok(added)
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Those of `users` who are in `cap` conversations or more already (one
/// more would be too many). Locks their counts until the transaction ends
/// (PostgreSQL; SQLite's write transaction locks everything), so two
/// transactions adding the same user at once cannot both pass the check.
pub async fn at_conversation_cap(
    conn: &mut AnyConnection,
    users: &[String],
    cap: usize,
) -> Result<Vec<String>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    // A no-op UPDATE: the portable row lock (SQLite has no FOR UPDATE).
    let sql = format!(
        "UPDATE chat_user_conversations SET conversations = conversations \
         WHERE user_id IN ({}) RETURNING user_id, conversations",
        placeholders(1, users.len())
    );
    let mut query = sqlx::query(&sql);
    for user in users {
        query = query.bind(user);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    let mut full = Vec::new();
    for row in &rows {
        let count: i64 = row.try_get(1)?;
        if count >= cap {
            full.push(row.try_get(0)?);
        }
    }
    full.sort();
    Ok(full)
}

/// Those of `users` in `conversation` whom `by` added, with when (a
/// repeated `add_member` finds what the first one did).
pub async fn added_by(
    conn: &mut AnyConnection,
    conversation: i64,
    by: &str,
    users: &[String],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT user_id, joined_at FROM chat_members \
         WHERE conversation_id = $1 AND added_by = $2 AND user_id IN ({}) ORDER BY user_id",
        placeholders(3, users.len())
    );
    let mut query = sqlx::query(&sql).bind(conversation).bind(by);
    for user in users {
        query = query.bind(user);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// `user`'s last departure from `conversation`: when, and the owner who
/// removed them (`None`: they left).
pub async fn departure(
    conn: &mut AnyConnection,
    conversation: i64,
    user: &str,
) -> Result<Option<(i64, Option<String>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT left_at, removed_by FROM chat_departures \
         WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Removes `user` from `conversation` at `now`, `removed_by` its owner
/// (`None`: they left), and records the departure; whether they were a
/// member.
pub async fn remove_member(
    conn: &mut AnyConnection,
    conversation: i64,
    user: &str,
    now: i64,
    removed_by: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM chat_members WHERE conversation_id = $1 AND user_id = $2")
        .bind(conversation)
        .bind(user)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO chat_departures (conversation_id, user_id, left_at, removed_by) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (conversation_id, user_id) \
         DO UPDATE SET left_at = excluded.left_at, removed_by = excluded.removed_by",
    )
    .bind(conversation)
    .bind(user)
    .bind(now)
    .bind(removed_by)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE chat_user_conversations SET conversations = conversations - 1 \
         WHERE user_id = $1 AND conversations > 0",
    )
    .bind(user)
    .execute(&mut *conn)
    .await?;
    // An owner who goes hands the group to the member who joined first
    // (a group is never left without someone who may remove members).
    sqlx::query(
        "UPDATE chat_conversations SET member_count = member_count - 1, \
         owner = CASE WHEN owner = $2 THEN (SELECT m.user_id FROM chat_members m \
           WHERE m.conversation_id = $1 ORDER BY m.joined_at, m.user_id LIMIT 1) \
           ELSE owner END \
         WHERE id = $1",
    )
    .bind(conversation)
    .bind(user)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// The owner of `conversation` as stored now (the writer's cached row may
/// predate an owner's leave in the same batch).
pub async fn owner(
    conn: &mut AnyConnection,
    conversation: i64,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT owner FROM chat_conversations WHERE id = $1")
        .bind(conversation)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.flatten())
}

/// Most rows (or keys) one multi-row statement carries: well under both
/// dialects' bound on bind parameters (SQLite 32,766, PostgreSQL 65,535)
/// whatever `chat.max_batch` is; a bigger batch takes several statements.
pub const ROWS_PER_STATEMENT: usize = 200;

/// The message `sender` sent with `client_id`, if any (a retried send).
pub async fn by_client_id(
    conn: &mut AnyConnection,
    sender: &str,
    client_id: &str,
) -> Result<Option<Message>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE sender = $1 AND client_id = $2"
    ))
    .bind(sender)
    .bind(client_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(message_of).transpose()
}

/// The messages stored under any of `keys` (`(sender, client_id)`): a
/// batch's retries, found with one statement per [`ROWS_PER_STATEMENT`]
/// keys. The keys of one sender share one `sender = … AND client_id IN
/// (…)` term, the terms joined by `OR`: each term is a search of the
/// unique `(sender, client_id)` index on both dialects (SQLite scans the
/// whole index for a row-value `IN`).
pub async fn by_client_ids(
    conn: &mut AnyConnection,
    keys: &[(&str, &str)],
) -> Result<Vec<Message>, sqlx::Error> {
    let sqlite = is_sqlite(conn);
    let mut found = Vec::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut by_sender: Vec<(&str, Vec<&str>)> = Vec::new();
        for (sender, client_id) in chunk {
            match by_sender.iter_mut().find(|(s, _)| s == sender) {
                Some((_, ids)) => ids.push(client_id),
                None => by_sender.push((sender, vec![client_id])),
            }
        }
        let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE ");
        let mut n = 0;
        for (i, (_, ids)) in by_sender.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            n += 1;
            sql.push_str(&format!(
                "(sender = {} AND client_id IN (",
                param(sqlite, n)
            ));
            for j in 0..ids.len() {
                n += 1;
                sql.push_str(if j == 0 { "" } else { ", " });
                sql.push_str(&param(sqlite, n));
            }
            sql.push_str("))");
        }
        let mut query = sqlx::query(&sql);
        for (sender, ids) in &by_sender {
            query = query.bind(*sender);
            for id in ids {
                query = query.bind(*id);
            }
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.push(message_of(&row)?);
        }
    }
    Ok(found)
}

/// Takes the next `n` seqs of each `(conversation, n)` (`last_seq + 1 ..=
/// last_seq + n`) and marks it active at `now`, one `UPDATE` per
/// [`ROWS_PER_STATEMENT`] conversations; the new `last_seq` of each
/// conversation found. Inside the write transaction that stores the
/// messages: the rows stay locked until commit (PostgreSQL) or the whole
/// database does (SQLite), so two senders never get the same seq, and a
/// rollback gives the seqs back (no gap).
pub async fn take_seqs_of(
    conn: &mut AnyConnection,
    takes: &[(i64, i64)],
    now: i64,
) -> Result<std::collections::HashMap<i64, i64>, sqlx::Error> {
    let mut last = std::collections::HashMap::with_capacity(takes.len());
    for chunk in takes.chunks(ROWS_PER_STATEMENT) {
        let mut cases = String::new();
        for i in 0..chunk.len() {
            cases.push_str(&format!(" WHEN ${} THEN ${}", 2 + 2 * i, 3 + 2 * i));
        }
        let ids = (0..chunk.len())
            .map(|i| format!("${}", 2 + 2 * i))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE chat_conversations SET last_seq = last_seq + CASE id{cases} ELSE 0 END, \
             last_activity = $1 WHERE id IN ({ids}) RETURNING id, last_seq"
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (conversation, n) in chunk {
            query = query.bind(*conversation).bind(*n);
        }
        for row in query.fetch_all(&mut *conn).await? {
            last.insert(row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?);
        }
    }
    Ok(last)
}

/// [`advance_read`] for several `(conversation, user, seq)` at once, one
/// `UPDATE` per [`ROWS_PER_STATEMENT`] of them (each pair once).
pub async fn advance_reads(
    conn: &mut AnyConnection,
    marks: &[(i64, &str, i64)],
) -> Result<(), sqlx::Error> {
    for chunk in marks.chunks(ROWS_PER_STATEMENT) {
        let mut cases = String::new();
        let mut terms = Vec::with_capacity(chunk.len());
        for i in 0..chunk.len() {
            let (c, u, s) = (1 + 3 * i, 2 + 3 * i, 3 + 3 * i);
            cases.push_str(&format!(
                " WHEN conversation_id = ${c} AND user_id = ${u} THEN ${s}"
            ));
            terms.push(format!(
                "(conversation_id = ${c} AND user_id = ${u} AND last_read_seq < ${s})"
            ));
        }
        let sql = format!(
            "UPDATE chat_members SET last_read_seq = CASE{cases} ELSE last_read_seq END \
             WHERE {}",
            terms.join(" OR ")
        );
        let mut query = sqlx::query(&sql);
        for (conversation, user, seq) in chunk {
            query = query.bind(*conversation).bind(*user).bind(*seq);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Stores `news` and their mentions, a multi-row `INSERT` per
/// [`ROWS_PER_STATEMENT`] messages; returns their ids, in the order of
/// `news`. (Neither dialect promises `RETURNING` rows in `VALUES` order:
/// they are matched by `(conversation, seq)`.)
pub async fn insert_messages(
    conn: &mut AnyConnection,
    news: &[NewMessage<'_>],
) -> Result<Vec<i64>, sqlx::Error> {
    let sqlite = is_sqlite(conn);
    let mut ids = std::collections::HashMap::with_capacity(news.len());
    for chunk in news.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO chat_messages (conversation_id, seq, sender, client_id, text, \
             reply_to, mentions, created_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            let row: Vec<String> = (b + 1..=b + 8).map(|n| param(sqlite, n)).collect();
            sql.push_str(&format!("({})", row.join(", ")));
        }
        sql.push_str(" RETURNING id, conversation_id, seq");
        let mut query = sqlx::query(&sql);
        for new in chunk {
            query = query
                .bind(new.conversation)
                .bind(new.seq)
                .bind(new.sender)
                .bind(new.client_id)
                .bind(new.text)
                .bind(new.reply_to)
                .bind(serde_json::to_string(new.mentions).unwrap_or_else(|_| "[]".to_owned()))
                .bind(new.ts);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let id: i64 = row.try_get(0)?;
            ids.insert((row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?), id);
        }
    }
    let mentions: Vec<(&str, i64, i64)> = news
        .iter()
        .flat_map(|new| {
            new.mentions
                .iter()
                .map(|user| (user.as_str(), new.conversation, new.seq))
        })
        .collect();
    insert_mentions(conn, &mentions).await?;
    news.iter()
        .map(|new| {
            ids.get(&(new.conversation, new.seq))
                .copied()
                .ok_or(sqlx::Error::RowNotFound)
        })
        .collect()
}

/// Records mentions `(user, conversation, seq)`, several per statement.
async fn insert_mentions(
    conn: &mut AnyConnection,
    mentions: &[(&str, i64, i64)],
) -> Result<(), sqlx::Error> {
    let sqlite = is_sqlite(conn);
    for chunk in mentions.chunks(ROWS_PER_STATEMENT) {
        let mut sql =
            String::from("INSERT INTO chat_mentions (user_id, conversation_id, seq) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 3;
            if i > 0 {
                sql.push_str(", ");
            }
            let row: Vec<String> = (b + 1..=b + 3).map(|n| param(sqlite, n)).collect();
            sql.push_str(&format!("({})", row.join(", ")));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut query = sqlx::query(&sql);
        for (user, conversation, seq) in chunk {
            query = query.bind(*user).bind(*conversation).bind(*seq);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Makes `mentions` the mentions of message `seq` (an edit): its
/// `mentions` column and its rows, those no longer named removed.
pub async fn set_mentions(
    conn: &mut AnyConnection,
    conversation: i64,
    seq: i64,
    mentions: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE chat_messages SET mentions = $3 WHERE conversation_id = $1 AND seq = $2")
        .bind(conversation)
        .bind(seq)
        .bind(serde_json::to_string(mentions).unwrap_or_else(|_| "[]".to_owned()))
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM chat_mentions WHERE conversation_id = $1 AND seq = $2")
        .bind(conversation)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    let rows: Vec<(&str, i64, i64)> = mentions
        .iter()
        .map(|user| (user.as_str(), conversation, seq))
        .collect();
    insert_mentions(conn, &rows).await
}

/// Message `seq` of `conversation`, if any.
pub async fn message(
    conn: &mut AnyConnection,
    conversation: i64,
    seq: i64,
) -> Result<Option<Message>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE conversation_id = $1 AND seq = $2"
    ))
    .bind(conversation)
    .bind(seq)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(message_of).transpose()
}

/// Replaces the text of a message (not deleted).
pub async fn edit(
    conn: &mut AnyConnection,
    conversation: i64,
    seq: i64,
    text: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE chat_messages SET text = $3, edited_at = $4 \
         WHERE conversation_id = $1 AND seq = $2 AND deleted_at IS NULL",
    )
    .bind(conversation)
    .bind(seq)
    .bind(text)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Turns a message into a tombstone: no text, no mentions, its seq kept.
pub async fn tombstone(
    conn: &mut AnyConnection,
    conversation: i64,
    seq: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE chat_messages SET text = NULL, mentions = '[]', deleted_at = $3 \
         WHERE conversation_id = $1 AND seq = $2",
    )
    .bind(conversation)
    .bind(seq)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM chat_mentions WHERE conversation_id = $1 AND seq = $2")
        .bind(conversation)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Where a page of history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages before this seq.
    Before(i64),
    /// The oldest messages after this seq.
    After(i64),
}

/// Up to `limit` messages of `conversation` on the side of the page, in
/// seq order; whether more lie beyond.
pub async fn history(
    conn: &mut AnyConnection,
    conversation: i64,
    page: Page,
    limit: i64,
) -> Result<(Vec<Message>, bool), sqlx::Error> {
    let (condition, order, bound) = match page {
        Page::Before(seq) => ("seq < $2", "DESC", seq),
        Page::After(seq) => ("seq > $2", "ASC", seq),
    };
    let rows = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE conversation_id = $1 AND {condition} \
         ORDER BY seq {order} LIMIT $3"
    ))
    .bind(conversation)
    .bind(bound)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let mut messages = rows.iter().map(message_of).collect::<Result<Vec<_>, _>>()?;
    let has_more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    if matches!(page, Page::Before(_)) {
        messages.reverse();
    }
    Ok((messages, has_more))
}

/// One of a user's conversations, with their read mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub conversation: Conversation,
    pub last_read_seq: i64,
    pub member_count: i64,
}

/// `user`'s conversations, most recently active first, up to `limit`,
/// starting after the cursor `(last_activity, id)` if given; whether more
/// follow.
pub async fn user_conversations(
    conn: &mut AnyConnection,
    user: &str,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<(Vec<Listed>, bool), sqlx::Error> {
    let (activity, id) = after.unwrap_or((i64::MAX, i64::MAX));
    let rows = sqlx::query(
        "SELECT c.id, c.kind, c.name, c.created_at, c.last_seq, c.last_activity, c.owner, \
         m.last_read_seq, c.member_count \
         FROM chat_members m JOIN chat_conversations c ON c.id = m.conversation_id \
         WHERE m.user_id = $1 \
           AND (c.last_activity < $2 OR (c.last_activity = $2 AND c.id < $3)) \
         ORDER BY c.last_activity DESC, c.id DESC LIMIT $4",
    )
    .bind(user)
    .bind(activity)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let mut listed = rows
        .iter()
        .map(|row| {
            Ok(Listed {
                conversation: conversation_of(row)?,
                last_read_seq: row.try_get(7)?,
                member_count: row.try_get(8)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let has_more = listed.len() as i64 > limit;
    listed.truncate(limit as usize);
    Ok((listed, has_more))
}

/// Mentions of `user` in `conversation` past seq `after`.
pub async fn mention_count(
    conn: &mut AnyConnection,
    user: &str,
    conversation: i64,
    after: i64,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM chat_mentions WHERE user_id = $1 AND conversation_id = $2 \
         AND seq > $3",
    )
    .bind(user)
    .bind(conversation)
    .bind(after)
    .fetch_one(&mut *conn)
    .await?;
    row.try_get(0)
}

/// Moves `user`'s read mark in `conversation` up to `seq`; never down.
pub async fn advance_read(
    conn: &mut AnyConnection,
    conversation: i64,
    user: &str,
    seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE chat_members SET last_read_seq = $3 \
         WHERE conversation_id = $1 AND user_id = $2 AND last_read_seq < $3",
    )
    .bind(conversation)
    .bind(user)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves `user`'s read mark in `conversation` up to `seq`; never down.
/// Returns the mark after the call (`None`: not a member).
pub async fn mark_read(
    conn: &mut AnyConnection,
    conversation: i64,
    user: &str,
    seq: i64,
) -> Result<Option<i64>, sqlx::Error> {
    advance_read(conn, conversation, user, seq).await?;
    membership(conn, conversation, user).await
}

/// A conversation as one member sees it (`conversations`,
/// `conversation:joined`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub id: i64,
    /// `"direct"` or `"group"` (the store writes no other).
    #[schema(value_type = super::replies::ConversationKind)]
    pub kind: String,
    /// Groups only.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Sorted; in a `conversations` page, the first
    /// `chat.max_listed_members` only (all of them: `member_count`).
    pub members: Vec<String>,
    pub member_count: i64,
    /// Who may remove members (groups).
    #[schema(required = true)]
    pub owner: Option<String>,
    pub created_at: i64,
    pub last_seq: i64,
    pub last_activity: i64,
    #[schema(required = true)]
    pub last_message: Option<Message>,
    /// This member's read mark.
    pub last_read_seq: i64,
    /// `last_seq - last_read_seq`.
    pub unread: i64,
    /// Unread messages that mention this member.
    pub mentions: i64,
}

/// `conversation` as `user` (read mark `last_read_seq`) sees it.
pub async fn summary(
    conn: &mut AnyConnection,
    conversation: &Conversation,
    user: &str,
    last_read_seq: i64,
) -> Result<Summary, sqlx::Error> {
    let members = members(conn, conversation.id).await?;
    let last_message = if conversation.last_seq > 0 {
        message(conn, conversation.id, conversation.last_seq).await?
    } else {
        None
    };
    let mentions = mention_count(conn, user, conversation.id, last_read_seq).await?;
    Ok(Summary {
        id: conversation.id,
        kind: conversation.kind.clone(),
        name: conversation.name.clone(),
        member_count: members.len() as i64,
        members,
        owner: conversation.owner.clone(),
        created_at: conversation.created_at,
        last_seq: conversation.last_seq,
        last_activity: conversation.last_activity,
        last_message,
        last_read_seq,
        unread: (conversation.last_seq - last_read_seq).max(0),
        mentions,
    })
}

/// The summaries of a page of `user`'s conversations (as
/// [`user_conversations`] listed them), each with its first `max_listed`
/// members: three queries whatever the page's length (members, last
/// messages, mention counts), each reading only the rows it returns or
/// counts (index ranges), and a page's size bounded by `max_listed` ids per
/// conversation rather than by the groups' sizes. SQLite allows 500 parts
/// in a compound SELECT and 32,766 parameters: a page is at most
/// `chat.max_page`, which the component caps at 500.
pub async fn page_summaries(
    conn: &mut AnyConnection,
    user: &str,
    listed: &[Listed],
    max_listed: i64,
) -> Result<Vec<Summary>, sqlx::Error> {
    if listed.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = listed.iter().map(|l| l.conversation.id).collect();

    // The first members of each, by user id: one index range of at most
    // `max_listed` rows per conversation (how many there are is kept in
    // the conversation's row).
    let mut members: HashMap<i64, Vec<String>> = HashMap::new();
    if max_listed > 0 {
        let parts: Vec<String> = (0..ids.len())
            .map(|i| {
                format!(
                    "SELECT * FROM (SELECT conversation_id, user_id FROM chat_members \
                     WHERE conversation_id = ${} ORDER BY user_id LIMIT $1) AS m{i}",
                    i + 2
                )
            })
            .collect();
        let sql = parts.join(" UNION ALL ");
        let mut query = sqlx::query(&sql).bind(max_listed);
        for id in &ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            members
                .entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        for list in members.values_mut() {
            list.sort(); // the order of a UNION's rows is not promised
        }
    }

    // The last messages: one index lookup each.
    let with_messages: Vec<&Conversation> = listed
        .iter()
        .map(|l| &l.conversation)
        .filter(|c| c.last_seq > 0)
        .collect();
    let mut last: HashMap<i64, Message> = HashMap::new();
    if !with_messages.is_empty() {
        let terms: Vec<String> = (0..with_messages.len())
            .map(|i| {
                format!(
                    "(conversation_id = ${} AND seq = ${})",
                    2 * i + 1,
                    2 * i + 2
                )
            })
            .collect();
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE {}",
            terms.join(" OR ")
        );
        let mut query = sqlx::query(&sql);
        for c in &with_messages {
            query = query.bind(c.id).bind(c.last_seq);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let message = message_of(&row)?;
            last.insert(message.conversation, message);
        }
    }

    // Unread mentions: one index range each (past the read mark the page
    // was listed with, so they agree with `unread`).
    let terms: Vec<String> = (0..listed.len())
        .map(|i| {
            format!(
                "(user_id = $1 AND conversation_id = ${} AND seq > ${})",
                2 * i + 2,
                2 * i + 3
            )
        })
        .collect();
    let sql = format!(
        "SELECT conversation_id, COUNT(*) FROM chat_mentions WHERE {} GROUP BY conversation_id",
        terms.join(" OR ")
    );
    let mut query = sqlx::query(&sql).bind(user);
    for l in listed {
        query = query.bind(l.conversation.id).bind(l.last_read_seq);
    }
    let mut mentions: HashMap<i64, i64> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        mentions.insert(row.try_get(0)?, row.try_get(1)?);
    }

    Ok(listed
        .iter()
        .map(|l| {
            let c = &l.conversation;
            let list = members.remove(&c.id).unwrap_or_default();
            Summary {
                id: c.id,
                kind: c.kind.clone(),
                name: c.name.clone(),
                members: list,
                member_count: l.member_count,
                owner: c.owner.clone(),
                created_at: c.created_at,
                last_seq: c.last_seq,
                last_activity: c.last_activity,
                last_message: last.remove(&c.id),
                last_read_seq: l.last_read_seq,
                unread: (c.last_seq - l.last_read_seq).max(0),
                mentions: mentions.get(&c.id).copied().unwrap_or(0),
            }
        })
        .collect())
}
