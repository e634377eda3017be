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
//! Where a send's time goes (measured on the 2-core development machine,
//! SQLite, release build, medians of 3 runs at a load average of about 2,
//! `tests/interop/chat-throughput.mjs` unless said otherwise). A run of
//! sends takes a fixed number of statements per batch, not per message
//! ([`send_all`]): one read of the conversations and one of their members,
//! one `client_id` look-up, one seq `UPDATE`, one multi-row `INSERT` (and
//! one of mentions), one read-mark `UPDATE` (before: about four statements
//! per message, each a round trip to sqlx's SQLite worker thread).
//! - 20 users, closed loop: 4,956 messages/s stored, 9,911 deliveries/s
//!   (before: 2,060 and 4,120). Batches average 10 sends (at most 20):
//!   a socket's events run one at a time, so the writer never holds more
//!   sends than there are sockets; a batch takes 1.3 ms of statements and
//!   0.55 ms of `COMMIT`.
//! - 20 users, open loop at 5,000/s: 4,415 stored/s (before: 2,397), ack
//!   p50 864 ms, p99 1,183 ms (before: 2,097 and 3,651): 20 sockets cannot
//!   carry 5,000/s one send at a time each.
//! - 100 users, open loop at 5,000/s: 4,996 stored/s, 9,993 deliveries/s,
//!   ack p50 6 ms, p99 280 ms; closed loop 5,139 stored/s, 10,279
//!   deliveries/s (batches of 52 sends: 7 ms of statements, 2 ms of
//!   `COMMIT`). The Node client and the server share the two cores there.
//! - The writer alone (`writer_alone` in the tests: no sockets, no client):
//!   about 7,000 messages/s with 20 senders, 9,000 with 200.
//!
//! What is left is CPU: SQLite's statement execution, sqlx's hand-offs to
//! its worker thread (context switches), and per message the JSON of its
//! broadcast and ack.
//!
//! Since then a send to a conversation is queued (`Chat::queue`): a socket
//! puts it in line and handles its next event, up to
//! `chat.max_sends_in_flight` sends between queued and acked, so batches
//! are no longer bounded by the number of sockets. `loadgen chat`, 100
//! users, 8 in flight each, medians of 3 runs: SQLite 5,827 → 15,230
//! stored/s (20,396 → 53,324 deliveries/s), PostgreSQL 6,118 → 16,026;
//! at 5,000/s the ack p50 is 2.6 ms and p99 160 ms on SQLite (41 ms on
//! PostgreSQL).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use super::store::{self, Message, NewMessage};
use crate::clock::now_ms;
use crate::component::HubError;
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
    /// `mentioned`: members the new text names and the old did not (to
    /// be notified).
    Edited {
        message: Message,
        members: Vec<String>,
        mentioned: Vec<String>,
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
        tasks: &crate::tasks::Tasks,
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
        self.enqueue(op).await?.await
    }

    /// Queues `op` (waiting for room in the queue) and returns, before it
    /// runs, the future of its outcome: operations queued one after
    /// another run in that order.
    pub async fn enqueue(&self, op: Op) -> Result<socketio::BoxFuture<Outcome>, HubError> {
        let (reply, done) = oneshot::channel();
        let stopped = || HubError::new("unavailable", "the server is stopping");
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| stopped())?;
        Ok(Box::pin(async move { done.await.map_err(|_| stopped())? }))
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
            // A store that did not answer would not answer each operation
            // alone either: one timeout, not one per operation of the batch.
            Err(err @ crate::store::StoreError::Timeout(_)) => {
                let failed = HubError::from(err);
                ops.iter().map(|_| Err(failed.clone())).collect()
            }
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
///
/// The store's timeout bounds the transaction's body, not its `COMMIT`:
/// once a `COMMIT` is sent only the database knows whether it took effect,
/// and an `unavailable` answered before it said so is how a message got
/// stored and never delivered (the retry found it stored and answered it as
/// a duplicate). So the writer waits for the database's answer; if that
/// answer is an error that leaves the outcome unknown (a connection lost
/// mid-`COMMIT`), [`committed_anyway`] looks the batch's new messages up.
async fn commit(
    store: &Store,
    ops: &[&Op],
    max_mentions: usize,
) -> Result<Vec<Outcome>, crate::store::StoreError> {
    let started = std::time::Instant::now();
    let (tx, outcomes) = store
        .timed(async {
            let mut tx = store.begin_write().await?;
            let mut members = Members::default();
            let mut outcomes = Vec::with_capacity(ops.len());
            let mut at = 0;
            while at < ops.len() {
                // A run of sends takes per-batch statements; anything else
                // runs alone, after the sends before it are written (an edit
                // or a read may concern them).
                let sends = ops[at..]
                    .iter()
                    .take_while(|op| matches!(op, Op::Send { .. }))
                    .count();
                if sends > 0 {
                    let run = &ops[at..at + sends];
                    outcomes.extend(send_all(&mut tx, run, &mut members, max_mentions).await?);
                    at += sends;
                } else {
                    outcomes.push(apply(&mut tx, ops[at], &mut members, max_mentions).await?);
                    at += 1;
                }
            }
            Ok((tx, outcomes))
        })
        .await?;
    let body = started.elapsed();
    // The COMMIT is not cut at the store timeout (a commit that lands late
    // must be delivered, not answered `unavailable`), but a connection that
    // hangs (a partition without a reset) must not stall every
    // conversation's writes for as long as TCP takes to give up: past
    // COMMIT_BOUND timeouts its outcome is looked up like a failed one.
    let committed = match tokio::time::timeout(store.timeout() * COMMIT_BOUND, tx.commit()).await {
        Ok(committed) => committed.map_err(crate::store::StoreError::from),
        Err(_) => Err(crate::store::StoreError::Timeout(
            store.timeout() * COMMIT_BOUND,
        )),
    };
    tracing::debug!(
        ops = ops.len(),
        body_us = body.as_micros() as u64,
        commit_us = (started.elapsed() - body).as_micros() as u64,
        ok = committed.is_ok(),
        "chat batch"
    );
    if let Err(err) = committed {
        if committed_anyway(store, &outcomes).await {
            tracing::warn!(%err, "chat batch: the COMMIT failed, yet its messages are stored");
            return Ok(outcomes);
        }
        return Err(err);
    }
    Ok(outcomes)
}

/// How many store timeouts a batch's COMMIT may take before its outcome is
/// looked up instead of waited for.
const COMMIT_BOUND: u32 = 10;

/// Whether a batch whose `COMMIT` answered an error was committed all the
/// same: its first new message is in the store (a transaction is all or
/// nothing). A batch without a new message is taken as not committed (its
/// operations are safe to retry: an edit sets the same text, a read mark
/// only moves up). PostgreSQL may still be committing when the connection
/// is lost: the look-up can then miss it, which is no worse than before.
async fn committed_anyway(store: &Store, outcomes: &[Outcome]) -> bool {
    let Some(sent) = outcomes.iter().find_map(|outcome| match outcome {
        Ok(Done::Sent {
            message,
            fresh: true,
            ..
        }) => Some(message),
        _ => None,
    }) else {
        return false;
    };
    let found = store
        .timed(async {
            let mut conn = store.pool().acquire().await?;
            store::by_client_id(&mut conn, &sent.sender, &sent.client_id).await
        })
        .await;
    matches!(found, Ok(Some(stored)) if stored.id == sent.id)
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

    /// Reads the rows and members of those of `ids` not read yet, with
    /// two statements in all (a run of sends to many conversations).
    async fn prefetch(&mut self, conn: &mut AnyConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
        let mut missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !self.1.contains_key(id))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        for (found, list) in store::conversations_with_members(conn, &missing).await? {
            self.0.entry(found.id).or_insert(list);
            self.1.entry(found.id).or_insert(found);
        }
        Ok(())
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

/// The error of a `client_id` its sender already used in another
/// conversation.
fn client_id_conflict(client_id: &str, other: i64) -> HubError {
    HubError::new(
        "conflict",
        format!("client_id {client_id:?} was used for a message in conversation {other}"),
    )
}

/// What one send of a run comes to, before anything is written.
enum Planned {
    Refused(HubError),
    /// A retry of a message stored before this run; the members now.
    Stored(Message, Vec<String>),
    /// A retry of the run's `n`th new message.
    Again(usize),
    /// The run's `n`th new message.
    New(usize),
}

/// A new message of a run, its seq to come.
struct Fresh<'a> {
    conversation: i64,
    user: &'a str,
    client_id: &'a str,
    text: &'a str,
    reply_to: Option<i64>,
    mentions: Vec<String>,
    members: Vec<String>,
    seq: i64,
}

/// Runs consecutive sends with per-run statements, whatever their number:
/// one `client_id` look-up, one seq `UPDATE` per conversation (by id, so
/// two nodes' batches lock the rows of PostgreSQL in the same order), one
/// multi-row `INSERT` (and one of mentions), one read-mark `UPDATE` per
/// conversation and sender. Every check comes before the first write, so a
/// refused send writes nothing; two sends of one `client_id` in the run
/// are one message (the second answered as the retry it is).
async fn send_all(
    conn: &mut AnyConnection,
    ops: &[&Op],
    members: &mut Members,
    max_mentions: usize,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let now = now_ms();
    // Membership, from the batch's cache (read at once for all).
    let ids: Vec<i64> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Send { conversation, .. } => Some(*conversation),
            _ => None,
        })
        .collect();
    members.prefetch(conn, &ids).await?;
    let mut checked = Vec::with_capacity(ops.len());
    for op in ops {
        let Op::Send {
            user, conversation, ..
        } = op
        else {
            checked.push(Err(HubError::new("internal", "not a send")));
            continue;
        };
        checked.push(member_of(conn, members, *conversation, user).await?);
    }
    // Retries of messages stored before this run.
    let keys: Vec<(&str, &str)> = ops
        .iter()
        .zip(&checked)
        .filter_map(|(op, checked)| match (op, checked) {
            (
                Op::Send {
                    user, client_id, ..
                },
                Ok(_),
            ) => Some((user.as_str(), client_id.as_str())),
            _ => None,
        })
        .collect();
    let mut stored: HashMap<(String, String), Message> = HashMap::new();
    if !keys.is_empty() {
        for message in store::by_client_ids(conn, &keys).await? {
            stored.insert((message.sender.clone(), message.client_id.clone()), message);
        }
    }
    // Each send's fate, in order; the new ones counted per conversation.
    let mut plans = Vec::with_capacity(ops.len());
    let mut fresh: Vec<Fresh> = Vec::new();
    let mut pending: HashMap<(&str, &str), usize> = HashMap::new();
    let mut taken: HashMap<i64, i64> = HashMap::new();
    for (op, checked) in ops.iter().zip(checked) {
        let Op::Send {
            user,
            conversation,
            client_id,
            text,
            reply_to,
        } = op
        else {
            plans.push(Planned::Refused(HubError::new("internal", "not a send")));
            continue;
        };
        let (found, list) = match checked {
            Ok(found) => found,
            Err(err) => {
                plans.push(Planned::Refused(err));
                continue;
            }
        };
        // A retry (the ack was lost): the first outcome again, whatever
        // this one carries, and nothing stored or delivered twice.
        if let Some(message) = stored.get(&(user.clone(), client_id.clone())) {
            plans.push(if message.conversation == *conversation {
                Planned::Stored(message.clone(), list)
            } else {
                Planned::Refused(client_id_conflict(client_id, message.conversation))
            });
            continue;
        }
        if let Some(&n) = pending.get(&(user.as_str(), client_id.as_str())) {
            plans.push(if fresh[n].conversation == *conversation {
                Planned::Again(n)
            } else {
                Planned::Refused(client_id_conflict(client_id, fresh[n].conversation))
            });
            continue;
        }
        let before = taken.get(conversation).copied().unwrap_or(0);
        if let Some(seq) = reply_to
            && (*seq < 1 || *seq > found.last_seq + before)
        {
            plans.push(Planned::Refused(HubError::new(
                "bad_request",
                format!("reply_to: no message {seq} in this conversation"),
            )));
            continue;
        }
        taken.insert(*conversation, before + 1);
        pending.insert((user.as_str(), client_id.as_str()), fresh.len());
        plans.push(Planned::New(fresh.len()));
        fresh.push(Fresh {
            conversation: *conversation,
            user,
            client_id,
            text,
            reply_to: *reply_to,
            mentions: super::mentions::find(text, user, &list, max_mentions),
            members: list,
            seq: 0,
        });
    }
    if !fresh.is_empty() {
        // Seqs: one UPDATE for all the run's conversations.
        let mut takes: Vec<(i64, i64)> = taken.into_iter().collect();
        takes.sort_unstable();
        let lasts = store::take_seqs_of(conn, &takes, now).await?;
        for (conversation, n) in takes {
            // Conversations are never deleted: it was read in this
            // transaction.
            let last = *lasts.get(&conversation).ok_or(sqlx::Error::RowNotFound)?;
            if let Some(cached) = members.1.get_mut(&conversation) {
                cached.last_seq = last;
                cached.last_activity = now;
            }
            let mut seq = last - n;
            for new in fresh.iter_mut().filter(|f| f.conversation == conversation) {
                seq += 1;
                new.seq = seq;
            }
        }
        let rows: Vec<NewMessage> = fresh
            .iter()
            .map(|f| NewMessage {
                conversation: f.conversation,
                seq: f.seq,
                sender: f.user,
                client_id: f.client_id,
                text: f.text,
                reply_to: f.reply_to,
                mentions: &f.mentions,
                ts: now,
            })
            .collect();
        let ids = store::insert_messages(conn, &rows).await?;
        // What one sends, one has read: the mark at one's last message.
        let mut marks: HashMap<(i64, &str), i64> = HashMap::new();
        for f in &fresh {
            let mark = marks.entry((f.conversation, f.user)).or_default();
            *mark = (*mark).max(f.seq);
        }
        let marks: Vec<(i64, &str, i64)> = marks.into_iter().map(|((c, u), s)| (c, u, s)).collect();
        store::advance_reads(conn, &marks).await?;
        let messages: Vec<Message> = fresh
            .iter()
            .zip(ids)
            .map(|(f, id)| Message {
                id,
                conversation: f.conversation,
                seq: f.seq,
                sender: f.user.to_owned(),
                client_id: f.client_id.to_owned(),
                text: Some(f.text.to_owned()),
                reply_to: f.reply_to,
                mentions: f.mentions.clone(),
                ts: now,
                edited_at: None,
                deleted: false,
            })
            .collect();
        return Ok(outcomes_of(plans, fresh, messages));
    }
    Ok(outcomes_of(plans, fresh, Vec::new()))
}

/// The outcomes of a run of sends, once its new messages are written
/// (`messages[n]` is `fresh[n]` stored).
fn outcomes_of(plans: Vec<Planned>, fresh: Vec<Fresh>, messages: Vec<Message>) -> Vec<Outcome> {
    // A retry within the run shares its message: copied before the first
    // send's message moves into its outcome.
    let plans: Vec<Planned> = plans
        .into_iter()
        .map(|plan| match plan {
            Planned::Again(n) => Planned::Stored(messages[n].clone(), fresh[n].members.clone()),
            other => other,
        })
        .collect();
    let mut news: Vec<Option<(Message, Vec<String>)>> = messages
        .into_iter()
        .zip(fresh)
        .map(|(message, f)| Some((message, f.members)))
        .collect();
    plans
        .into_iter()
        .map(|plan| match plan {
            Planned::Refused(err) => Err(err),
            Planned::Stored(message, members) => Ok(Done::Sent {
                message,
                members,
                fresh: false,
            }),
            Planned::New(n) => match news.get_mut(n).and_then(Option::take) {
                Some((message, members)) => Ok(Done::Sent {
                    message,
                    members,
                    fresh: true,
                }),
                None => Err(HubError::new("internal", "a message was lost")),
            },
            // Turned into `Stored` above.
            Planned::Again(_) => Err(HubError::new("internal", "a retry was lost")),
        })
        .collect()
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
        Op::Send { .. } => {
            let mut one = send_all(conn, &[op], members, max_mentions).await?;
            Ok(one.pop().unwrap_or_else(|| Err(not_found())))
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
            // The new text's mentions replace the old ones: who is no
            // longer named stops counting it, who is newly named is told.
            let mentions = super::mentions::find(text, user, &list, max_mentions);
            if mentions != message.mentions {
                store::set_mentions(conn, *conversation, *seq, &mentions).await?;
            }
            let mentioned = mentions
                .iter()
                .filter(|m| !message.mentions.contains(m))
                .cloned()
                .collect();
            Ok(Ok(Done::Edited {
                message: Message {
                    text: Some(text.clone()),
                    edited_at: Some(now),
                    mentions,
                    ..message
                },
                members: list,
                mentioned,
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

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
