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
//! Where a send's time goes, measured: `docs/BENCHMARKS.md` ("The chat writer").

use std::collections::HashMap;
use std::sync::Arc;

use socketio::Published;
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use super::store::{self, Message, NewMessage};
use crate::clock::now_ms;
use crate::component::{ErrorCode, HubError};
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
    /// `added` joined at `at`; `before` were the members already there;
    /// `summary` is the conversation as a newcomer sees it. Not `fresh`:
    /// a repeated add that found the members `by` added at `at` (added
    /// is then who that earlier add added, to be announced again if no
    /// node did; the ack says nobody was added).
    Added {
        conversation: i64,
        by: String,
        added: Vec<String>,
        before: Vec<String>,
        summary: Box<store::Summary>,
        at: i64,
        fresh: bool,
    },
    /// `user` left at `at`; `members` remain. Not `fresh`: a repeated
    /// leave of a user no longer a member, who left at `at` (announced
    /// again if no node did; the ack is the non-member's `forbidden`).
    Left {
        conversation: i64,
        user: String,
        members: Vec<String>,
        at: i64,
        fresh: bool,
    },
    /// `user` was removed by `by` at `at`; `members` remain. Not `fresh`:
    /// a repeated removal, by the same owner, of a user it removed at
    /// `at` (announced again if no node did; the ack is `not_found`).
    Removed {
        conversation: i64,
        user: String,
        by: String,
        members: Vec<String>,
        at: i64,
        fresh: bool,
    },
    /// `user`'s read mark is `seq` (`moved`: it went up), leaving
    /// `unread` messages and `mentions` unread. `again`: it did not move
    /// but the read asked for at least the mark it found, as a retry of
    /// the read that set it does (the receipt is announced again).
    Read {
        conversation: i64,
        user: String,
        seq: i64,
        unread: i64,
        mentions: i64,
        members: Vec<String>,
        moved: bool,
        again: bool,
    },
}

/// Called by the writer task with each outcome, in commit order, before
/// the operation is acked. Must not block (it emits); returns when the
/// other nodes have what it emitted, which the operation's ack waits for
/// (not the writer: it goes on with the next batch).
pub type Deliver = Arc<dyn Fn(&Done) -> Published + Send + Sync>;

type Outcome = Result<Done, HubError>;

/// How the writer batches, and the bound it holds messages to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Operations committed in one transaction at most (`chat.max_batch`;
    /// 0 counts as 1).
    pub max_batch: usize,
    /// Operations waiting for the writer at most; a submit beyond waits
    /// for room (`chat.write_queue`; 0 counts as 1).
    pub queue: usize,
    /// Mentions one message keeps at most (the chat component gives its
    /// `max_members`: any member may be named).
    pub max_mentions: usize,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<(Outcome, Published)>,
}

/// The handle the component submits operations through. Cloning shares
/// the one writer task.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on `tasks` (it stops with the hub).
    pub fn start(
        store: Store,
        tasks: &crate::tasks::Tasks,
        config: WriterConfig,
        deliver: Deliver,
    ) -> Writer {
        // A channel of 0 panics and a batch of 0 never drains: the binary
        // refuses both at start, these floors keep an embedder safe.
        let (jobs, rx) = mpsc::channel(config.queue.max(1));
        let max_batch = config.max_batch.max(1);
        tasks.spawn(run(store, rx, max_batch, config.max_mentions, deliver));
        Writer { jobs }
    }

    /// Runs `op`; resolves once it is committed and delivered (in a
    /// cluster: published to the other nodes; if that does not happen in
    /// time, `unavailable`, with the change stored).
    pub async fn submit(&self, op: Op) -> Outcome {
        self.enqueue(op).await?.await
    }

    /// Queues `op` (waiting for room in the queue) and returns, before it
    /// runs, the future of its outcome: operations queued one after
    /// another run in that order.
    pub async fn enqueue(&self, op: Op) -> Result<socketio::BoxFuture<Outcome>, HubError> {
        let (reply, done) = oneshot::channel();
        let stopped = || HubError::new(ErrorCode::Unavailable, "the server is stopping");
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| stopped())?;
        Ok(Box::pin(async move {
            let (outcome, published) = done.await.map_err(|_| stopped())?;
            let done = outcome?;
            published
                .wait()
                .await
                .map_err(|err| not_published(&done, err))?;
            Ok(done)
        }))
    }
}

/// The answer to a change stored whose broadcast the other nodes did not
/// get in time: retryable (a send again with the same `client_id`
/// publishes the stored message if no node did).
fn not_published(done: &Done, err: socketio::NotPublished) -> HubError {
    tracing::warn!(%err, "chat: a change is stored, its broadcast not published");
    let what = match done {
        Done::Sent { .. } => {
            "the message is stored but not yet delivered; send it again with the same client_id"
        }
        _ => "the change is stored but not yet delivered; send it again",
    };
    HubError::new(ErrorCode::Unavailable, what)
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
            let published = match &outcome {
                Ok(done) => deliver(done),
                Err(_) => Published::done(),
            };
            let _ = job.reply.send((outcome, published));
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
            let outcomes = Batch::new(&mut tx, max_mentions).run(ops).await?;
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

/// Why one operation of a batch did not go through. A refusal is that
/// operation's answer: it wrote nothing, and the batch goes on. A store
/// failure ends the transaction: everything in it rolls back.
#[derive(Debug, thiserror::Error)]
enum OpError {
    #[error("refused: {0}")]
    Refused(#[from] HubError),
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
}

impl OpError {
    /// The refusal, to answer as the operation's outcome; a store failure
    /// is passed on, to end the transaction.
    fn refusal(self) -> Result<HubError, sqlx::Error> {
        match self {
            OpError::Refused(err) => Ok(err),
            OpError::Store(err) => Err(err),
        }
    }
}

/// The refusal of an event naming a conversation its user is not in.
pub(super) fn forbidden() -> HubError {
    HubError::new(ErrorCode::Forbidden, "not a member of this conversation")
}

/// The refusal of a removal of `member`, who is not in the group.
pub(super) fn not_a_member(member: &str) -> HubError {
    HubError::new(ErrorCode::NotFound, format!("{member} is not a member"))
}

fn not_found() -> HubError {
    HubError::new(ErrorCode::NotFound, "no such conversation")
}

/// The error of a `client_id` its sender already used in another
/// conversation.
fn client_id_conflict(client_id: &str, other: i64) -> HubError {
    HubError::new(
        ErrorCode::Conflict,
        format!("client_id {client_id:?} was used for a message in conversation {other}"),
    )
}

/// The rows and members of the conversations a batch touched, read once
/// per batch and kept current by the batch's own changes (the writer is
/// the only one changing them while its transaction holds the write lock
/// — the database's on SQLite, the conversation row's on PostgreSQL once
/// a seq was taken).
#[derive(Default)]
struct Members {
    lists: HashMap<i64, Vec<String>>,
    rows: HashMap<i64, store::Conversation>,
}

impl Members {
    async fn conversation(
        &mut self,
        conn: &mut AnyConnection,
        id: i64,
    ) -> Result<Option<store::Conversation>, sqlx::Error> {
        if let Some(found) = self.rows.get(&id) {
            return Ok(Some(found.clone()));
        }
        let found = store::conversation(conn, id).await?;
        if let Some(found) = &found {
            self.rows.insert(id, found.clone());
        }
        Ok(found)
    }

    /// Reads the rows and members of those of `ids` not read yet, with
    /// two statements in all (a run of sends to many conversations).
    async fn prefetch(&mut self, conn: &mut AnyConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
        let mut missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !self.rows.contains_key(id))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        for (found, list) in store::conversations_with_members(conn, &missing).await? {
            self.lists.entry(found.id).or_insert(list);
            self.rows.entry(found.id).or_insert(found);
        }
        Ok(())
    }

    async fn of(
        &mut self,
        conn: &mut AnyConnection,
        conversation: i64,
    ) -> Result<&Vec<String>, sqlx::Error> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.lists.entry(conversation) {
            slot.insert(store::members(conn, conversation).await?);
        }
        Ok(&self.lists[&conversation])
    }
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

/// A run of sends checked, nothing written yet: each send's fate in
/// order, the new messages, and how many of them each conversation takes.
struct Plan<'a> {
    plans: Vec<Planned>,
    fresh: Vec<Fresh<'a>>,
    taken: HashMap<i64, i64>,
}

/// One transaction's operations: its connection, the conversations it
/// has read, and the mentions a message keeps at most. Each operation
/// makes every check before its first write, so a refusal leaves the
/// transaction as it found it.
struct Batch<'t> {
    conn: &'t mut AnyConnection,
    members: Members,
    max_mentions: usize,
}

impl<'t> Batch<'t> {
    fn new(conn: &'t mut AnyConnection, max_mentions: usize) -> Batch<'t> {
        Batch {
            conn,
            members: Members::default(),
            max_mentions,
        }
    }

    /// Runs `ops` in order; one outcome each, or the store error that
    /// ends the transaction.
    async fn run(mut self, ops: &[&Op]) -> Result<Vec<Outcome>, sqlx::Error> {
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
                outcomes.extend(self.send_all(&ops[at..at + sends]).await?);
                at += sends;
            } else {
                outcomes.push(match self.apply(ops[at]).await {
                    Ok(done) => Ok(done),
                    Err(err) => Err(err.refusal()?),
                });
                at += 1;
            }
        }
        Ok(outcomes)
    }

    /// Runs one operation.
    async fn apply(&mut self, op: &Op) -> Result<Done, OpError> {
        match op {
            Op::Send { .. } => self.send(op).await,
            Op::Edit {
                user,
                conversation,
                seq,
                text,
            } => self.edit(user, *conversation, *seq, text).await,
            Op::Delete {
                user,
                conversation,
                seq,
            } => self.delete(user, *conversation, *seq).await,
            Op::AddMembers {
                user,
                conversation,
                users,
                max_members,
                max_conversations,
            } => {
                self.add_members(user, *conversation, users, *max_members, *max_conversations)
                    .await
            }
            Op::Leave { user, conversation } => self.leave(user, *conversation).await,
            Op::RemoveMember {
                user,
                conversation,
                member,
            } => self.remove_member(user, *conversation, member).await,
            Op::Read {
                user,
                conversation,
                seq,
            } => self.read(user, *conversation, *seq).await,
        }
    }

    /// Checks that `conversation` exists and `user` is in it; its members.
    async fn member_of(
        &mut self,
        conversation: i64,
        user: &str,
    ) -> Result<(store::Conversation, Vec<String>), OpError> {
        let Some(found) = self.members.conversation(self.conn, conversation).await? else {
            return Err(not_found().into());
        };
        let list = self.members.of(self.conn, conversation).await?;
        if !list.iter().any(|m| m == user) {
            return Err(forbidden().into());
        }
        Ok((found, list.clone()))
    }

    /// Message `seq` of `conversation` if `user` sent it and it is not
    /// deleted.
    async fn own_message(
        &mut self,
        conversation: i64,
        seq: i64,
        user: &str,
    ) -> Result<Message, OpError> {
        match store::message(self.conn, conversation, seq).await? {
            None => Err(HubError::new(ErrorCode::NotFound, format!("no message {seq}")).into()),
            Some(message) if message.sender != user => Err(HubError::new(
                ErrorCode::Forbidden,
                "only its sender may change a message",
            )
            .into()),
            Some(message) if message.deleted => {
                Err(HubError::new(ErrorCode::NotFound, format!("message {seq} was deleted")).into())
            }
            Some(message) => Ok(message),
        }
    }

    /// One send alone: a run of one.
    async fn send(&mut self, op: &Op) -> Result<Done, OpError> {
        let mut one = self.send_all(&[op]).await?;
        Ok(one.pop().unwrap_or_else(|| Err(not_found()))?)
    }

    /// Runs consecutive sends with per-run statements, whatever their
    /// number: one `client_id` look-up, one seq `UPDATE` per conversation
    /// (by id, so two nodes' batches lock the rows of PostgreSQL in the
    /// same order), one multi-row `INSERT` (and one of mentions), one
    /// read-mark `UPDATE` per conversation and sender. Every check comes
    /// before the first write ([`plan_sends`](Self::plan_sends) writes
    /// nothing), so a refused send writes nothing; two sends of one
    /// `client_id` in the run are one message (the second answered as the
    /// retry it is).
    async fn send_all(&mut self, ops: &[&Op]) -> Result<Vec<Outcome>, sqlx::Error> {
        let now = now_ms();
        let Plan {
            plans,
            mut fresh,
            taken,
        } = self.plan_sends(ops).await?;
        if fresh.is_empty() {
            return Ok(outcomes_of(plans, fresh, Vec::new()));
        }
        let messages = self.write_sends(&mut fresh, taken, now).await?;
        Ok(outcomes_of(plans, fresh, messages))
    }

    /// Checks a run of sends and decides each one's fate, reading (the
    /// members, the `client_id`s already stored) but writing nothing.
    async fn plan_sends<'o>(&mut self, ops: &[&'o Op]) -> Result<Plan<'o>, sqlx::Error> {
        // Membership, from the batch's cache (read at once for all).
        let ids: Vec<i64> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Send { conversation, .. } => Some(*conversation),
                _ => None,
            })
            .collect();
        self.members.prefetch(self.conn, &ids).await?;
        let mut checked = Vec::with_capacity(ops.len());
        for op in ops {
            let Op::Send {
                user, conversation, ..
            } = op
            else {
                checked.push(Err(HubError::new(ErrorCode::Internal, "not a send")));
                continue;
            };
            checked.push(match self.member_of(*conversation, user).await {
                Ok(found) => Ok(found),
                Err(err) => Err(err.refusal()?),
            });
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
            for message in store::by_client_ids(self.conn, &keys).await? {
                stored.insert((message.sender.clone(), message.client_id.clone()), message);
            }
        }
        // Each send's fate, in order; the new ones counted per conversation.
        let mut plans = Vec::with_capacity(ops.len());
        let mut fresh: Vec<Fresh> = Vec::new();
        let mut pending: HashMap<(&str, &str), usize> = HashMap::new();
        let mut taken: HashMap<i64, i64> = HashMap::new();
        for (&op, checked) in ops.iter().zip(checked) {
            let Op::Send {
                user,
                conversation,
                client_id,
                text,
                reply_to,
            } = op
            else {
                plans.push(Planned::Refused(HubError::new(
                    ErrorCode::Internal,
                    "not a send",
                )));
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
                    ErrorCode::BadRequest,
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
                mentions: super::mentions::find(text, user, &list, self.max_mentions),
                members: list,
                seq: 0,
            });
        }
        Ok(Plan {
            plans,
            fresh,
            taken,
        })
    }

    /// Writes a run's new messages (`taken`: how many each conversation
    /// gets), giving each its seq; the messages as stored, in `fresh`'s
    /// order.
    async fn write_sends(
        &mut self,
        fresh: &mut [Fresh<'_>],
        taken: HashMap<i64, i64>,
        now: i64,
    ) -> Result<Vec<Message>, sqlx::Error> {
        // Seqs: one UPDATE for all the run's conversations.
        let mut takes: Vec<(i64, i64)> = taken.into_iter().collect();
        takes.sort_unstable();
        let lasts = store::take_seqs_of(self.conn, &takes, now).await?;
        for (conversation, n) in takes {
            // Conversations are never deleted: it was read in this
            // transaction.
            let last = *lasts.get(&conversation).ok_or(sqlx::Error::RowNotFound)?;
            if let Some(cached) = self.members.rows.get_mut(&conversation) {
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
        let ids = store::insert_messages(self.conn, &rows).await?;
        // What one sends, one has read: the mark at one's last message.
        let mut marks: HashMap<(i64, &str), i64> = HashMap::new();
        for f in fresh.iter() {
            let mark = marks.entry((f.conversation, f.user)).or_default();
            *mark = (*mark).max(f.seq);
        }
        let marks: Vec<(i64, &str, i64)> = marks.into_iter().map(|((c, u), s)| (c, u, s)).collect();
        store::advance_reads(self.conn, &marks).await?;
        Ok(fresh
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
            .collect())
    }

    async fn edit(
        &mut self,
        user: &str,
        conversation: i64,
        seq: i64,
        text: &str,
    ) -> Result<Done, OpError> {
        let now = now_ms();
        let (_, list) = self.member_of(conversation, user).await?;
        let message = self.own_message(conversation, seq, user).await?;
        store::edit(self.conn, conversation, seq, text, now).await?;
        // The new text's mentions replace the old ones: who is no longer
        // named stops counting it, who is newly named is told.
        let mentions = super::mentions::find(text, user, &list, self.max_mentions);
        if mentions != message.mentions {
            store::set_mentions(self.conn, conversation, seq, &mentions).await?;
        }
        let mentioned = mentions
            .iter()
            .filter(|m| !message.mentions.contains(m))
            .cloned()
            .collect();
        Ok(Done::Edited {
            message: Message {
                text: Some(text.to_owned()),
                edited_at: Some(now),
                mentions,
                ..message
            },
            members: list,
            mentioned,
        })
    }

    async fn delete(&mut self, user: &str, conversation: i64, seq: i64) -> Result<Done, OpError> {
        let now = now_ms();
        let (_, list) = self.member_of(conversation, user).await?;
        let message = self.own_message(conversation, seq, user).await?;
        store::tombstone(self.conn, conversation, seq, now).await?;
        Ok(Done::Deleted {
            message: Message {
                text: None,
                mentions: Vec::new(),
                deleted: true,
                ..message
            },
            members: list,
        })
    }

    async fn add_members(
        &mut self,
        user: &str,
        conversation: i64,
        users: &[String],
        max_members: usize,
        max_conversations: usize,
    ) -> Result<Done, OpError> {
        let now = now_ms();
        let (found, before) = self.member_of(conversation, user).await?;
        if found.kind != store::GROUP {
            return Err(
                HubError::new(ErrorCode::BadRequest, "members are added to groups only").into(),
            );
        }
        let mut new: Vec<String> = users
            .iter()
            .filter(|u| !before.contains(u))
            .cloned()
            .collect();
        new.sort();
        new.dedup();
        if new.is_empty() {
            return self.added_before(user, &found, users, before).await;
        }
        if before.len() + new.len() > max_members {
            return Err(HubError::new(
                ErrorCode::TooManyMembers,
                format!("a group has at most {max_members} members"),
            )
            .into());
        }
        let full = store::at_conversation_cap(self.conn, &new, max_conversations).await?;
        if !full.is_empty() {
            return Err(super::too_many_conversations(&full, max_conversations).into());
        }
        let added = store::add_members(
            self.conn,
            conversation,
            &new,
            found.last_seq,
            now,
            Some(user),
        )
        .await?;
        let list = self.members.lists.entry(conversation).or_default();
        list.extend(added.iter().cloned());
        list.sort();
        // Any newcomer's view: all start with nothing unread.
        let newcomer = added.first().map_or(user, String::as_str);
        let summary = store::summary(self.conn, &found, newcomer, found.last_seq).await?;
        Ok(Done::Added {
            conversation,
            by: user.to_owned(),
            added,
            before,
            summary: Box::new(summary),
            at: now,
            fresh: true,
        })
    }

    /// An add that adds nobody: if `user` added some of `users` already,
    /// it may be the retry of that add (its ack lost, or `unavailable`),
    /// whose announcement no node may have published: that add again
    /// (its latest one among them, `fresh: false`), else nobody added.
    async fn added_before(
        &mut self,
        user: &str,
        found: &store::Conversation,
        users: &[String],
        before: Vec<String>,
    ) -> Result<Done, OpError> {
        let mut asked: Vec<String> = users.iter().filter(|u| *u != user).cloned().collect();
        asked.sort();
        asked.dedup();
        let mine = store::added_by(self.conn, found.id, user, &asked).await?;
        let at = mine.iter().map(|(_, at)| *at).max();
        let mut again: Vec<String> = mine
            .into_iter()
            .filter(|(_, joined)| Some(*joined) == at)
            .map(|(added, _)| added)
            .collect();
        // In the order the first add had them (byte order, whatever the
        // database's collation): the first names the announcement.
        again.sort();
        let Some((at, newcomer)) = at.zip(again.first()) else {
            let summary = store::summary(self.conn, found, user, found.last_seq).await?;
            return Ok(Done::Added {
                conversation: found.id,
                by: user.to_owned(),
                added: Vec::new(),
                before,
                summary: Box::new(summary),
                at: now_ms(),
                fresh: true,
            });
        };
        let read = store::membership(self.conn, found.id, newcomer)
            .await?
            .unwrap_or(found.last_seq);
        let summary = store::summary(self.conn, found, newcomer, read).await?;
        Ok(Done::Added {
            conversation: found.id,
            by: user.to_owned(),
            before: before.into_iter().filter(|m| !again.contains(m)).collect(),
            added: again,
            summary: Box::new(summary),
            at,
            fresh: false,
        })
    }

    async fn leave(&mut self, user: &str, conversation: i64) -> Result<Done, OpError> {
        let (found, mut list) = match self.member_of(conversation, user).await {
            Err(OpError::Refused(refused)) if refused.code == ErrorCode::Forbidden => {
                return self.left_before(conversation, user, refused).await;
            }
            other => other?,
        };
        if found.kind != store::GROUP {
            return Err(HubError::new(
                ErrorCode::BadRequest,
                "a direct conversation cannot be left",
            )
            .into());
        }
        let now = now_ms();
        store::remove_member(self.conn, conversation, user, now, None).await?;
        list.retain(|m| m != user);
        self.members.lists.insert(conversation, list.clone());
        Ok(Done::Left {
            conversation,
            user: user.to_owned(),
            members: list,
            at: now,
            fresh: true,
        })
    }

    /// A leave by a user who is not a member: if they left, it may be the
    /// retry of that leave (its ack lost, or `unavailable`), whose
    /// announcement no node may have published: that leave again
    /// (`fresh: false`); else `refused`.
    async fn left_before(
        &mut self,
        conversation: i64,
        user: &str,
        refused: HubError,
    ) -> Result<Done, OpError> {
        let Some((at, None)) = store::departure(self.conn, conversation, user).await? else {
            return Err(refused.into());
        };
        Ok(Done::Left {
            conversation,
            user: user.to_owned(),
            members: self.members.of(self.conn, conversation).await?.clone(),
            at,
            fresh: false,
        })
    }

    async fn remove_member(
        &mut self,
        user: &str,
        conversation: i64,
        member: &str,
    ) -> Result<Done, OpError> {
        let (found, mut list) = self.member_of(conversation, user).await?;
        if found.kind != store::GROUP {
            return Err(HubError::new(
                ErrorCode::BadRequest,
                "members are removed from groups only",
            )
            .into());
        }
        if member == user {
            return Err(HubError::new(
                ErrorCode::BadRequest,
                "to leave a group, send conversation:leave",
            )
            .into());
        }
        // Read now, not from the batch's cache: an owner's leave earlier
        // in this batch handed the group on.
        if store::owner(self.conn, conversation).await?.as_deref() != Some(user) {
            return Err(HubError::new(
                ErrorCode::Forbidden,
                "only the group's owner removes members",
            )
            .into());
        }
        if !list.iter().any(|m| m == member) {
            // A removal this owner made may be retried (its ack lost, or
            // `unavailable`): announced again if no node did.
            if let Some((at, Some(by))) = store::departure(self.conn, conversation, member).await?
                && by == user
            {
                return Ok(Done::Removed {
                    conversation,
                    user: member.to_owned(),
                    by,
                    members: list,
                    at,
                    fresh: false,
                });
            }
            return Err(not_a_member(member).into());
        }
        let now = now_ms();
        store::remove_member(self.conn, conversation, member, now, Some(user)).await?;
        list.retain(|m| m != member);
        self.members.lists.insert(conversation, list.clone());
        Ok(Done::Removed {
            conversation,
            user: member.to_owned(),
            by: user.to_owned(),
            members: list,
            at: now,
            fresh: true,
        })
    }

    /// Moves `user`'s read mark up to `seq`, never down, never past the
    /// last message.
    async fn read(&mut self, user: &str, conversation: i64, seq: i64) -> Result<Done, OpError> {
        let (found, list) = self.member_of(conversation, user).await?;
        let before = store::membership(self.conn, conversation, user)
            .await?
            .unwrap_or(0);
        let target = seq.min(found.last_seq);
        let now_read = if target > before {
            store::mark_read(self.conn, conversation, user, target)
                .await?
                .unwrap_or(target)
        } else {
            before
        };
        let mentions = store::mention_count(self.conn, user, conversation, now_read).await?;
        let moved = now_read > before;
        Ok(Done::Read {
            conversation,
            user: user.to_owned(),
            seq: now_read,
            unread: (found.last_seq - now_read).max(0),
            mentions,
            members: list,
            moved,
            // A read below the mark is not a retry of the one that set it
            // (that one asked for the mark or more); a mark of 0 was never
            // announced.
            again: !moved && seq >= before && before > 0,
        })
    }
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
                None => Err(HubError::new(ErrorCode::Internal, "a message was lost")),
            },
            // Turned into `Stored` above.
            Planned::Again(_) => Err(HubError::new(ErrorCode::Internal, "a retry was lost")),
        })
        .collect()
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
