//! The write path of `/chat`: every change to a conversation's messages or
//! members (send, edit, delete, add members, leave) goes through one
//! writer task, which runs them one after another, many per transaction
//! (group commit), and hands each outcome to the delivery callback in
//! commit order before acking it.
//!
//! Why one task: delivery order. Two sends committed as seq 5 then 6 by two
//! tasks could be emitted 6 then 5 (each task emits after its own commit,
//! and nothing orders the two). Here the task that commits is the task that
//! emits, in commit order, and an emit only appends to each socket's
//! queue: every device of every member sees a conversation's events in seq
//! order. Membership changes take the same path, so a member who left gets
//! nothing committed after the leave, and everything committed before it
//! is delivered before the leave is acked.
//!
//! Why batches: on SQLite a commit (an fsync of the WAL) is most of the
//! cost of a send, and it is the same for one message or a hundred. The
//! task takes whatever is queued (up to `max_batch`) into one transaction.
//! A store error in a batch runs each of its operations again in its own
//! transaction, so one bad operation fails alone, and what fails is not
//! half-written.
//!
//! Several nodes on one PostgreSQL: seqs stay gapless and unique (the
//! conversation row is locked from the seq's `UPDATE` to the commit), and
//! each node delivers its own commits in order; two nodes' deliveries to
//! one device are ordered by the cluster's bus, not here (a client orders
//! by seq and fills a gap with `history`).
//!
//! Where a send's time goes today: about four statements per message
//! inside the batch (the `client_id` lookup, the seq's `UPDATE`, the
//! `INSERT`, the sender's read mark), each a round trip to the SQLite
//! worker thread. The next step for throughput is per-batch statements:
//! one `client_id` lookup for the batch, one seq `UPDATE` per conversation,
//! one multi-row `INSERT` — inside [`commit`], without changing the
//! component.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use super::store::{self, Message, NewMessage};
use crate::component::HubError;
use crate::notifications::now_ms;
use crate::store::Store;

/// A change to a conversation, by `user` (already authenticated; the
/// writer checks membership and ownership in the transaction).
#[derive(Debug, Clone)]
pub enum Op {
    Send {
        user: String,
        conversation: i64,
        client_id: String,
        text: String,
        reply_to: Option<i64>,
    },
    Edit {
        user: String,
        conversation: i64,
        seq: i64,
        text: String,
    },
    Delete {
        user: String,
        conversation: i64,
        seq: i64,
    },
    AddMembers {
        user: String,
        conversation: i64,
        users: Vec<String>,
        max_members: usize,
        /// `chat.max_conversations_per_user`: a user in that many is
        /// not added.
        max_conversations: usize,
    },
    Leave {
        user: String,
        conversation: i64,
    },
    /// The group's owner (`user`) removes `member`.
    RemoveMember {
        user: String,
        conversation: i64,
        member: String,
    },
    /// Moves `user`'s read mark up to `seq` (never down, never past the
    /// last message).
    Read {
        user: String,
        conversation: i64,
        seq: i64,
    },
}

/// What an operation did, with who is to be told.
#[derive(Debug, Clone)]
pub enum Done {
    /// A new message (`fresh`), or the one a retried `client_id` already
    /// stored (nothing to deliver again).
    Sent {
        message: Message,
        members: Vec<String>,
        fresh: bool,
    },
    Edited {
        message: Message,
        members: Vec<String>,
    },
    Deleted {
        message: Message,
        members: Vec<String>,
    },
    /// `added` joined; `before` were the members already there;
    /// `summary` is the conversation as a newcomer sees it.
    Added {
        conversation: i64,
        by: String,
        added: Vec<String>,
        before: Vec<String>,
        summary: Box<store::Summary>,
    },
    /// `user` left; `members` remain.
    Left {
        conversation: i64,
        user: String,
        members: Vec<String>,
    },
    /// `user` was removed by `by`; `members` remain.
    Removed {
        conversation: i64,
        user: String,
        by: String,
        members: Vec<String>,
    },
    /// `user`'s read mark is `seq` (`moved`: it went up), leaving
    /// `unread` messages and `mentions` unread.
    Read {
        conversation: i64,
        user: String,
        seq: i64,
        unread: i64,
        mentions: i64,
        members: Vec<String>,
        moved: bool,
    },
}

/// Called by the writer task with each outcome, in commit order, before
/// the operation is acked. Must not block (it emits).
pub type Deliver = Arc<dyn Fn(&Done) + Send + Sync>;

type Outcome = Result<Done, HubError>;

struct Job {
    op: Op,
    reply: oneshot::Sender<Outcome>,
}

/// The handle the component submits operations through. Cloning shares
/// the one writer task.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on `tasks` (it stops with the hub): up to
    /// `max_batch` operations per transaction, `queue` waiting at most
    /// (a submit beyond waits for room).
    pub fn start(
        store: Store,
        tasks: &crate::context::Tasks,
        max_batch: usize,
        queue: usize,
        mentions: usize,
        deliver: Deliver,
    ) -> Writer {
        let (jobs, rx) = mpsc::channel(queue.max(1));
        tasks.spawn(run(store, rx, max_batch.max(1), mentions, deliver));
        Writer { jobs }
    }

    /// Runs `op`; resolves once it is committed and delivered.
    pub async fn submit(&self, op: Op) -> Outcome {
        let (reply, done) = oneshot::channel();
        let stopped = || HubError::new("unavailable", "the server is stopping");
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    max_mentions: usize,
    deliver: Deliver,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        if rx.recv_many(&mut batch, max_batch).await == 0 {
            return; // every handle is gone
        }
        let ops: Vec<&Op> = batch.iter().map(|job| &job.op).collect();
        let outcomes = match commit(&store, &ops, max_mentions).await {
            Ok(outcomes) => outcomes,
            Err(err) if ops.len() > 1 => {
                tracing::warn!(%err, ops = ops.len(), "chat batch failed; one by one");
                let mut outcomes = Vec::with_capacity(ops.len());
                for op in &ops {
                    outcomes.push(match commit(&store, &[op], max_mentions).await {
                        Ok(mut one) => one.remove(0),
                        Err(err) => Err(HubError::from(err)),
                    });
                }
                outcomes
            }
            Err(err) => vec![Err(HubError::from(err))],
        };
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            if let Ok(done) = &outcome {
                deliver(done);
            }
            let _ = job.reply.send(outcome);
        }
    }
}

/// Runs `ops` in one transaction; one outcome per operation (a refusal is
/// an outcome: it wrote nothing), or the store error that rolled all back.
async fn commit(
    store: &Store,
    ops: &[&Op],
    max_mentions: usize,
) -> Result<Vec<Outcome>, crate::store::StoreError> {
    store
        .timed(async {
            let mut tx = store.begin_write().await?;
            let mut members = Members::default();
            let mut outcomes = Vec::with_capacity(ops.len());
            for op in ops {
                outcomes.push(apply(&mut tx, op, &mut members, max_mentions).await?);
            }
            tx.commit().await?;
            Ok(outcomes)
        })
        .await
}

/// The rows and members of the conversations a batch touched, read once
/// per batch and kept current by the batch's own changes (the writer is
/// the only one changing them while its transaction holds the write lock
/// — the database's on SQLite, the conversation row's on PostgreSQL once
/// a seq was taken).
#[derive(Default)]
struct Members(HashMap<i64, Vec<String>>, HashMap<i64, store::Conversation>);

impl Members {
    async fn conversation(
        &mut self,
        conn: &mut AnyConnection,
        id: i64,
    ) -> Result<Option<store::Conversation>, sqlx::Error> {
        if let Some(found) = self.1.get(&id) {
            return Ok(Some(found.clone()));
        }
        let found = store::conversation(conn, id).await?;
        if let Some(found) = &found {
            self.1.insert(id, found.clone());
        }
        Ok(found)
    }

    async fn of(
        &mut self,
        conn: &mut AnyConnection,
        conversation: i64,
    ) -> Result<&Vec<String>, sqlx::Error> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(conversation) {
            slot.insert(store::members(conn, conversation).await?);
        }
        Ok(&self.0[&conversation])
    }
}

fn forbidden() -> HubError {
    HubError::new("forbidden", "not a member of this conversation")
}

fn not_found() -> HubError {
    HubError::new("not_found", "no such conversation")
}

/// Checks that `conversation` exists and `user` is in it; its members.
async fn member_of(
    conn: &mut AnyConnection,
    members: &mut Members,
    conversation: i64,
    user: &str,
) -> Result<Result<(store::Conversation, Vec<String>), HubError>, sqlx::Error> {
    let Some(found) = members.conversation(conn, conversation).await? else {
        return Ok(Err(not_found()));
    };
    let list = members.of(conn, conversation).await?;
    if !list.iter().any(|m| m == user) {
        return Ok(Err(forbidden()));
    }
    Ok(Ok((found, list.clone())))
}

/// Runs one operation: every check before any write, so a refusal leaves
/// the transaction as it found it.
async fn apply(
    conn: &mut AnyConnection,
    op: &Op,
    members: &mut Members,
    max_mentions: usize,
) -> Result<Outcome, sqlx::Error> {
    let now = now_ms();
    match op {
        Op::Send {
            user,
            conversation,
            client_id,
            text,
            reply_to,
        } => {
            let (found, list) = match member_of(conn, members, *conversation, user).await? {
                Ok(found) => found,
                Err(err) => return Ok(Err(err)),
            };
            // A retry (the ack was lost): the first outcome again, whatever
            // this one carries, and nothing stored or delivered twice.
            if let Some(message) = store::by_client_id(conn, user, client_id).await? {
                return Ok(Ok(Done::Sent {
                    message,
                    members: list,
                    fresh: false,
                }));
            }
            if let Some(seq) = reply_to
                && (*seq < 1 || *seq > found.last_seq)
            {
                return Ok(Err(HubError::new(
                    "bad_request",
                    format!("reply_to: no message {seq} in this conversation"),
                )));
            }
            let mentions = super::mentions::find(text, user, &list, max_mentions);
            let Some(seq) = store::next_seq(conn, *conversation, now).await? else {
                return Ok(Err(not_found()));
            };
            if let Some(cached) = members.1.get_mut(conversation) {
                cached.last_seq = seq;
                cached.last_activity = now;
            }
            let new = NewMessage {
                conversation: *conversation,
                seq,
                sender: user,
                client_id,
                text,
                reply_to: *reply_to,
                mentions: &mentions,
                ts: now,
            };
            let id = store::insert_message(conn, &new).await?;
            // What one sends, one has read.
            store::advance_read(conn, *conversation, user, seq).await?;
            Ok(Ok(Done::Sent {
                message: Message {
                    id,
                    conversation: *conversation,
                    seq,
                    sender: user.clone(),
                    client_id: client_id.clone(),
                    text: Some(text.clone()),
                    reply_to: *reply_to,
                    mentions,
                    ts: now,
                    edited_at: None,
                    deleted: false,
                },
                members: list,
                fresh: true,
            }))
        }
        Op::Edit {
            user,
            conversation,
            seq,
            text,
        } => {
            let (_, list) = match member_of(conn, members, *conversation, user).await? {
                Ok(found) => found,
                Err(err) => return Ok(Err(err)),
            };
            let message = match own_message(conn, *conversation, *seq, user).await? {
                Ok(message) => message,
                Err(err) => return Ok(Err(err)),
            };
            store::edit(conn, *conversation, *seq, text, now).await?;
            Ok(Ok(Done::Edited {
                message: Message {
                    text: Some(text.clone()),
                    edited_at: Some(now),
                    ..message
                },
                members: list,
            }))
        }
        Op::Delete {
            user,
            conversation,
            seq,
        } => {
            let (_, list) = match member_of(conn, members, *conversation, user).await? {
                Ok(found) => found,
                Err(err) => return Ok(Err(err)),
            };
            let message = match own_message(conn, *conversation, *seq, user).await? {
                Ok(message) => message,
                Err(err) => return Ok(Err(err)),
            };
            store::tombstone(conn, *conversation, *seq, now).await?;
            Ok(Ok(Done::Deleted {
                message: Message {
                    text: None,
                    mentions: Vec::new(),
                    deleted: true,
                    ..message
                },
                members: list,
            }))
        }
        Op::AddMembers {
            user,
            conversation,
            users,
            max_members,
            max_conversations,
        } => {
            let (found, before) = match member_of(conn, members, *conversation, user).await? {
                Ok(found) => found,
                Err(err) => return Ok(Err(err)),
            };
            if found.kind != store::GROUP {
                return Ok(Err(HubError::new(
                    "bad_request",
                    "members are added to groups only",
                )));
            }
            let mut new: Vec<String> = users
                .iter()
                .filter(|u| !before.contains(u))
                .cloned()
                .collect();
            new.sort();
            new.dedup();
            if before.len() + new.len() > *max_members {
                return Ok(Err(HubError::new(
                    "too_many_members",
                    format!("a group has at most {max_members} members"),
                )));
            }
            let full = store::at_conversation_cap(conn, &new, *max_conversations).await?;
            if !full.is_empty() {
                return Ok(Err(super::too_many_conversations(
                    &full,
                    *max_conversations,
                )));
            }
            let added = store::add_members(conn, *conversation, &new, found.last_seq, now).await?;
            let list = members.0.entry(*conversation).or_default();
            list.extend(added.iter().cloned());
            list.sort();
            // Any newcomer's view: all start with nothing unread.
            let newcomer = added.first().map_or(user.as_str(), String::as_str);
            let summary = store::summary(conn, &found, newcomer, found.last_seq).await?;
            Ok(Ok(Done::Added {
                conversation: *conversation,
                by: user.clone(),
                added,
                before,
                summary: Box::new(summary),
            }))
        }
        Op::Leave { user, conversation } => {
            let (found, mut list) = match member_of(conn, members, *conversation, user).await? {
                Ok(found) => found,
                Err(err) => return Ok(Err(err)),
            };
            if found.kind != store::GROUP {
                return Ok(Err(HubError::new(
                    "bad_request",
                    "a direct conversation cannot be left",
                )));
            }
            store::remove_member(conn, *conversation, user).await?;
            list.retain(|m| m != user);
            members.0.insert(*conversation, list.clone());
            Ok(Ok(Done::Left {
                conversation: *conversation,
                user: user.clone(),
                members: list,
            }))
        }
        Op::RemoveMember {
            user,
            conversation,
            member,
        } => {
            let (found, mut list) = match member_of(conn, members, *conversation, user).await? {
                Ok(found) => found,
                Err(err) => return Ok(Err(err)),
            };
            if found.kind != store::GROUP {
                return Ok(Err(HubError::new(
                    "bad_request",
                    "members are removed from groups only",
                )));
            }
            if member == user {
                return Ok(Err(HubError::new(
                    "bad_request",
                    "to leave a group, send conversation:leave",
                )));
            }
            // Read now, not from the batch's cache: an owner's leave
            // earlier in this batch handed the group on.
            if store::owner(conn, *conversation).await?.as_deref() != Some(user.as_str()) {
                return Ok(Err(HubError::new(
                    "forbidden",
                    "only the group's owner removes members",
                )));
            }
            if !list.contains(member) {
                return Ok(Err(HubError::new(
                    "not_found",
                    format!("{member} is not a member"),
                )));
            }
            store::remove_member(conn, *conversation, member).await?;
            list.retain(|m| m != member);
            members.0.insert(*conversation, list.clone());
            Ok(Ok(Done::Removed {
                conversation: *conversation,
                user: member.clone(),
                by: user.clone(),
                members: list,
            }))
        }
        Op::Read {
            user,
            conversation,
            seq,
        } => {
            let (found, list) = match member_of(conn, members, *conversation, user).await? {
                Ok(found) => found,
                Err(err) => return Ok(Err(err)),
            };
            let before = store::membership(conn, *conversation, user)
                .await?
                .unwrap_or(0);
            let target = (*seq).min(found.last_seq);
            let now_read = if target > before {
                store::mark_read(conn, *conversation, user, target)
                    .await?
                    .unwrap_or(target)
            } else {
                before
            };
            let mentions = store::mention_count(conn, user, *conversation, now_read).await?;
            Ok(Ok(Done::Read {
                conversation: *conversation,
                user: user.clone(),
                seq: now_read,
                unread: (found.last_seq - now_read).max(0),
                mentions,
                members: list,
                moved: now_read > before,
            }))
        }
    }
}

/// Message `seq` of `conversation` if `user` sent it and it is not deleted.
async fn own_message(
    conn: &mut AnyConnection,
    conversation: i64,
    seq: i64,
    user: &str,
) -> Result<Result<Message, HubError>, sqlx::Error> {
    Ok(match store::message(conn, conversation, seq).await? {
        None => Err(HubError::new("not_found", format!("no message {seq}"))),
        Some(message) if message.sender != user => Err(HubError::new(
            "forbidden",
            "only its sender may change a message",
        )),
        Some(message) if message.deleted => Err(HubError::new(
            "not_found",
            format!("message {seq} was deleted"),
        )),
        Some(message) => Ok(message),
    })
}
