//! `/chat`: conversations (direct and group), messages with a
//! per-conversation `seq`, history, typing and read receipts.
//!
//! - `store.rs`: the SQL; `writer.rs`: the one ordered write path every
//!   change to a conversation takes (group commit, delivery in commit
//!   order); `state.rs`: who is typing (live state, behind a trait);
//!   `mentions.rs`: `@user`; `rate.rs`: messages per user; `payloads.rs`:
//!   what clients send; `replies.rs`: what they are answered and sent;
//!   `contract.rs`: the events, as data (`switchboard contract`);
//!   `store_tests.rs`: the store's logic, through the writer, on SQLite
//!   and PostgreSQL.
//!
//! Delivery: every event of a conversation is emitted to its members'
//! `user:<id>` rooms (one broadcast to the union of those rooms, encoded
//! once), with the member list read from the store in the transaction that
//! made the change. Every socket of a user is in its `user:` room before it
//! sees `connect`, on every node, so a member's devices get everything
//! without subscribing, and a member who left is simply not in the next
//! list. A `conv:<id>` room would need every device of every member joined
//! to it and left from it on each membership change, racing with devices
//! that connect meanwhile (a device that read the member list just before a
//! leave and joins just after it would keep receiving); here there is
//! nothing to keep in step. A member who is removed by the group's owner
//! (`conversation:remove_member`) stops receiving the same way.
//!
//! Typing relays are looked up (the member list) and emitted without a
//! lock held across the query: each carries the typing state's version,
//! and a relay is emitted only if no later one of that indicator was (so a
//! start that finishes after its stop is dropped, not shown forever). A
//! stop is relayed even when the store fails: to the member list its start
//! was relayed to (kept for a while per conversation, dropped on any
//! membership change), else it is handed back to the state and retried by
//! the sweep. Starts are limited per user across conversations too
//! (`typing_relays_per_sec`, each start paid for with its stop, which is
//! never refused): the state's interval holds per conversation only, and a
//! user in many groups with the same member would reach them once per
//! group.

pub mod contract;
mod mentions;
pub mod payloads;
mod rate;
pub mod replies;
pub mod state;
mod store;
mod writer;

#[cfg(test)]
mod store_tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use socketio::{Args, DisconnectReason, Namespace, Once, Published, Socket};
use tokio::sync::Semaphore;

use crate::clock::now_ms;
use crate::component::{Component, ErrorCode, HubError, Reply};
use crate::components::kit::{as_value, emit_to_users, emit_to_users_published, reply};
use crate::identity::Identity;
use crate::limits::SenderRate;
use crate::services::Context;
use crate::services::notifications::NewNotification;
use payloads::*;
use replies::*;
use state::{MemoryTyping, Relay, TypingState, TypingTimers, Typist};
use store::Page;
use writer::{Done, Op, Writer};

/// The component's settings (`[chat]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Members a group conversation may have.
    pub max_members: usize,
    /// Longest message text, in characters.
    pub max_text_chars: usize,
    /// Longest group name, in characters.
    pub max_name_chars: usize,
    /// Longest `client_id`, in bytes.
    pub max_client_id_bytes: usize,
    /// Longest user id a client may name (`to`, members), in bytes.
    pub max_user_id_bytes: usize,
    /// Most items one `history` or `conversations` page returns (500 at
    /// most: a larger value counts as 500).
    pub max_page: i64,
    /// Messages per second per user (all devices together); 0: no limit.
    pub messages_per_sec: f64,
    /// Messages a user may send at once after a quiet spell.
    pub message_burst: f64,
    /// A typing start not renewed within this expires, in ms.
    pub typing_ttl_ms: u64,
    /// At most one typing relay per user and conversation this often, in ms.
    pub typing_relay_ms: u64,
    /// Typing events (starts and the stops that follow them) one user's
    /// typing may send each other member per second, whatever the
    /// conversation, all devices together; 0: no limit. `typing_relay_ms`
    /// holds per conversation only: a user in many conversations with the
    /// same member would otherwise reach them once per conversation. A
    /// start is charged two (itself and its stop: a stop is never refused,
    /// an indicator must not stick); a start past the limit is not relayed
    /// (acked `relayed: false`).
    pub typing_relays_per_sec: f64,
    /// Typing events a user's typing may send at once after a quiet spell
    /// (at least 2: one start and its stop).
    pub typing_relay_burst: f64,
    /// How often expired typing starts are looked for, in ms.
    pub typing_sweep_ms: u64,
    /// Writes committed in one transaction at most (group commit).
    pub max_batch: usize,
    /// Writes waiting for the writer at most; more wait to be queued.
    pub write_queue: usize,
    /// Members listed per conversation in a `conversations` page (the
    /// first, by user id; `member_count` says how many there are, and
    /// `conversation:members` lists them all).
    pub max_listed_members: i64,
    /// Conversations (direct and groups) a user may be in; creating,
    /// being added to or starting a direct conversation beyond it is
    /// refused (`too_many_conversations`).
    pub max_conversations_per_user: usize,
    /// Sends of one socket queued for the writer and not yet acked; the
    /// socket's next events wait while it has this many.
    pub max_sends_in_flight: usize,
    /// Other users a user may put into groups (by creating them or adding
    /// members), per minute, all devices together; 0: no limit. Being in
    /// a group counts against the added user's
    /// `max_conversations_per_user`, so without this one user could fill
    /// other users' conversation cap quickly (a full group per write).
    pub members_added_per_min: f64,
    /// Users that may be added at once after a quiet spell (at least
    /// `max_members - 1`, the others of a full group, so that a full group
    /// can be created).
    pub members_added_burst: f64,
    /// In a cluster, how long after a change was stored its retry still
    /// publishes it if no node did (its node was killed with it queued,
    /// or Redis did not take it in time), in ms: a send again with the
    /// same `client_id`, a membership change repeated. The cluster keeps
    /// a marker this long per message published (149 bytes of Redis
    /// memory each, measured) and per membership announcement; a later
    /// retry publishes nothing. (A read asking for its mark again always
    /// announces it: a receipt carries the mark itself, so a second copy
    /// is harmless, and reads keep no marker.)
    pub retry_window_ms: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_members: 256,
            max_text_chars: 4_000,
            max_name_chars: 100,
            max_client_id_bytes: 128,
            max_user_id_bytes: 256,
            max_page: 100,
            messages_per_sec: 20.0,
            message_burst: 100.0,
            typing_ttl_ms: 5_000,
            typing_relay_ms: 1_000,
            // A person types in one conversation at a time, a start (and
            // its stop) a second at most there: 5 a second, 10 at once,
            // leaves room to switch between conversations and is never
            // reached by hand.
            typing_relays_per_sec: 5.0,
            typing_relay_burst: 10.0,
            typing_sweep_ms: 250,
            max_batch: 256,
            write_queue: 10_000,
            max_listed_members: 20,
            max_conversations_per_user: 10_000,
            max_sends_in_flight: 64,
            members_added_per_min: 60.0,
            members_added_burst: 512.0,
            // Ten minutes: a client resends an unacked message as soon as
            // it is connected again; 1,000 messages a second keep 600,000
            // markers (about 90 MB).
            retry_window_ms: 600_000,
        }
    }
}

impl ChatConfig {
    /// The typing indicator's timers.
    pub fn typing_timers(&self) -> TypingTimers {
        TypingTimers {
            ttl: Duration::from_millis(self.typing_ttl_ms),
            relay_interval: Duration::from_millis(self.typing_relay_ms),
        }
    }
}

/// The `/chat` namespace's component.
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    config: ChatConfig,
    writer: Writer,
    typing: Arc<dyn TypingState>,
    rate: rate::UserRate,
    /// Others each user has put into groups (`members_added_per_min`).
    added_by: SenderRate,
    /// Typing relays each user's starts may cause (`typing_relays_per_sec`).
    typing_rate: SenderRate,
    /// The namespace served, learnt from the first socket (delivery and
    /// the typing sweep emit to it).
    ns: Arc<OnceLock<Weak<Namespace>>>,
    /// Its name, when the assembly says it ([`Chat::in_namespace`]): the
    /// namespace is then found before any socket came (the stops of a
    /// stopped node's typists are emitted by whichever node drops it).
    name: OnceLock<String>,
    /// Typing relays of a conversation are emitted one at a time, each
    /// right after the state change it reports: a start relayed after the
    /// stop that followed it would leave the others seeing the user type
    /// forever (no later stop would be sent): the version of the last
    /// relay emitted per indicator, and when (forgotten after
    /// [`TYPING_MEMORY`]). Held only while emitting (no await).
    typing_emitted: Mutex<HashMap<Typist, (u64, Instant)>>,
    /// The members each conversation's last typing relay went to, for a
    /// stop when the store fails (forgotten after [`TYPING_MEMORY`], and
    /// on any membership change of the conversation).
    typing_audience: Arc<Audiences>,
}

/// Per conversation, the members its last typing relay went to, and when.
type Audiences = Mutex<HashMap<i64, (Arc<Vec<String>>, Instant)>>;

/// The largest `chat.max_page` honoured (a larger one counts as this).
const MAX_PAGE: i64 = 500;

/// How long the typing relay bookkeeping remembers an indicator: far
/// longer than a relay's store lookup may take.
const TYPING_MEMORY: Duration = Duration::from_secs(60);

/// What a relayed start takes from its user's `typing_relays_per_sec`: its
/// own relay and the stop that will follow it (stops are never refused, so
/// they are paid for in advance).
const TYPING_START_COST: usize = 2;

impl Chat {
    /// With the in-memory typing state.
    pub fn new(ctx: Context, config: ChatConfig) -> Chat {
        let typing = MemoryTyping::new(config.typing_timers());
        Chat::with_state(ctx, config, Arc::new(typing))
    }

    /// Says which namespace it serves, so that it can emit there before
    /// any socket connected.
    pub fn in_namespace(self, name: &str) -> Chat {
        let _ = self.inner.name.set(name.to_owned());
        self
    }

    /// With `typing` as the live state (the cluster's).
    pub fn with_state(ctx: Context, config: ChatConfig, typing: Arc<dyn TypingState>) -> Chat {
        let ns: Arc<OnceLock<Weak<Namespace>>> = Arc::new(OnceLock::new());
        let typing_audience: Arc<Audiences> = Arc::default();
        let deliver = {
            let ns = ns.clone();
            let ctx = ctx.clone();
            let audience = typing_audience.clone();
            let retry_window = Duration::from_millis(config.retry_window_ms);
            Arc::new(move |done: &Done| {
                if let Done::Added { conversation, .. }
                | Done::Left { conversation, .. }
                | Done::Removed { conversation, .. } = done
                {
                    audience.lock().remove(conversation);
                }
                match ns.get().and_then(Weak::upgrade) {
                    Some(ns) => deliver(&ctx, &ns, done, retry_window),
                    None => Published::done(),
                }
            })
        };
        let writer = Writer::start(
            ctx.store.clone(),
            &ctx.tasks,
            writer::WriterConfig {
                max_batch: config.max_batch,
                queue: config.write_queue,
                max_mentions: config.max_members,
            },
            deliver,
        );
        let inner = Arc::new(Inner {
            rate: rate::UserRate::new(
                config.messages_per_sec,
                config.message_burst,
                ctx.shared_rates.clone(),
            ),
            added_by: SenderRate::new(
                "added",
                config.members_added_per_min / 60.0,
                config
                    .members_added_burst
                    .max(config.max_members.saturating_sub(1) as f64),
                ctx.shared_rates.clone(),
            ),
            typing_rate: SenderRate::new(
                "typing",
                config.typing_relays_per_sec,
                config.typing_relay_burst,
                ctx.shared_rates.clone(),
            ),
            ctx,
            config,
            writer,
            typing,
            ns,
            name: OnceLock::new(),
            typing_emitted: Mutex::default(),
            typing_audience,
        });
        // Another node stopped: the indicators its devices showed stop.
        let weak = Arc::downgrade(&inner);
        inner.ctx.peers.on_dropped(move |node| {
            let inner = weak.clone();
            Box::pin(async move {
                let Some(inner) = inner.upgrade() else { return };
                match inner.typing.drop_node(&node).await {
                    Ok(stopped) => {
                        for relay in stopped {
                            inner.relay_typing(relay).await;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, node, "typing of a stopped node not stopped");
                    }
                }
            })
        });
        // The binary refuses a sweep under 10 ms at start; the floor keeps
        // an embedder that skips that check from a busy loop.
        let sweep = Duration::from_millis(inner.config.typing_sweep_ms.max(10));
        let weak = Arc::downgrade(&inner);
        inner.ctx.tasks.every(sweep, move || {
            let inner = weak.clone();
            async move {
                let Some(inner) = inner.upgrade() else { return };
                inner.forget_old_typing();
                match inner.typing.expire().await {
                    Ok(expired) => {
                        for relay in expired {
                            inner.relay_typing(relay).await;
                        }
                    }
                    Err(err) => tracing::warn!(%err, "typing sweep failed"),
                }
            }
        });
        Chat { inner }
    }
}

/// Longest sender id shown in a mention notification's title, in
/// characters (a user id may be far longer than a title may be).
const TITLE_SENDER_CHARS: usize = 64;

/// A `chat:mention` notification of `message` for each of `users` (in the
/// background: the writer does not wait for it).
fn notify_mentions(ctx: &Context, message: &store::Message, users: &[String]) {
    if users.is_empty() {
        return;
    }
    let body: String = message
        .text
        .as_deref()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let mut sender: String = message.sender.chars().take(TITLE_SENDER_CHARS).collect();
    if sender.len() < message.sender.len() {
        sender.push('…');
    }
    let new = NewNotification {
        kind: "chat:mention".to_owned(),
        title: format!("{sender} mentioned you"),
        body,
        data: json!({
            "conversation": message.conversation,
            "seq": message.seq,
            "id": message.id,
            "sender": message.sender,
        }),
    };
    let users = users.to_vec();
    let notifications = ctx.notifications.clone();
    ctx.tasks.spawn(async move {
        if let Err(err) = notifications.create(&users, &new).await {
            tracing::warn!(%err, "mention notification failed");
        }
    });
}

/// Tells members what the writer did (called by the writer task, in commit
/// order). Every change is acked once the other nodes have what it
/// emitted: the returned publication (at once on one node).
///
/// A change is published at most once by the cluster, under a key naming
/// it (see [`socketio::Once`]): a message by its conversation, seq and
/// time; a membership change by its conversation, kind, time and first
/// user; a read receipt by its conversation (and the conversation's
/// creation time), seq and reader. A retry finds the change stored by the
/// first attempt (a send's `client_id`; a repeated add, leave or removal;
/// a read asking for the mark it finds) and emits it again
/// (`again`): that publishes it only if no node did (its first node was
/// killed with it queued, or Redis did not take it in time and the client
/// was answered `unavailable`), within `retry_window` of when it was
/// stored; on one node, nothing (its first delivery was at once).
fn deliver(ctx: &Context, ns: &Arc<Namespace>, done: &Done, retry_window: Duration) -> Published {
    // A retry past the window publishes nothing: the marker of its first
    // publication may be gone, and a second one must not be risked.
    let stale = |at: i64| now_ms().saturating_sub(at) > retry_window.as_millis() as i64;
    let once = |key: String, again: bool| Once {
        key,
        ttl: retry_window,
        again,
    };
    match done {
        Done::Sent {
            message,
            members,
            fresh,
        } => {
            if !fresh && stale(message.ts) {
                return Published::done();
            }
            // Its time too: a store replaced (restored, or reset) while
            // Redis still holds markers gives old (conversation, seq)
            // pairs to new messages, which must not be taken as published.
            let once = once(
                format!("{}:{}:{}", message.conversation, message.seq, message.ts),
                !fresh,
            );
            let published = emit_to_users_published(ns, members, "message", message, Some(&once));
            if *fresh {
                notify_mentions(ctx, message, &message.mentions);
            }
            published
        }
        Done::Edited {
            message,
            members,
            mentioned,
        } => {
            let published = emit_to_users_published(ns, members, "message:updated", message, None);
            notify_mentions(ctx, message, mentioned);
            published
        }
        Done::Deleted { message, members } => {
            emit_to_users_published(ns, members, "message:deleted", message, None)
        }
        Done::Added {
            conversation,
            by,
            added,
            before,
            summary,
            at,
            fresh,
        } => {
            let Some(first) = added.first() else {
                return Published::done();
            };
            if !fresh && stale(*at) {
                return Published::done();
            }
            // The users one add adds are members of no other add made
            // at that time: the first names them.
            let joined = once(format!("{conversation}:joined:{at}:{first}"), !fresh);
            let told = once(format!("{conversation}:added:{at}:{first}"), !fresh);
            emit_to_users_published(
                ns,
                added,
                "conversation:joined",
                &as_value(&Joined {
                    conversation: summary,
                }),
                Some(&joined),
            )
            .and(emit_to_users_published(
                ns,
                before,
                "conversation:member_added",
                &MemberAdded {
                    by,
                    conversation: *conversation,
                    users: added,
                },
                Some(&told),
            ))
        }
        Done::Left {
            conversation,
            user,
            members,
            at,
            fresh,
        } => {
            if !fresh && stale(*at) {
                return Published::done();
            }
            let once = once(format!("{conversation}:left:{at}:{user}"), !fresh);
            emit_to_users_published(
                ns,
                members.iter().chain(std::iter::once(user)),
                "conversation:member_left",
                &MemberLeft {
                    conversation: *conversation,
                    user,
                },
                Some(&once),
            )
        }
        Done::Removed {
            conversation,
            user,
            by,
            members,
            at,
            fresh,
        } => {
            if !fresh && stale(*at) {
                return Published::done();
            }
            let once = once(format!("{conversation}:removed:{at}:{user}"), !fresh);
            emit_to_users_published(
                ns,
                members.iter().chain(std::iter::once(user)),
                "conversation:member_removed",
                &MemberRemoved {
                    by,
                    conversation: *conversation,
                    user,
                },
                Some(&once),
            )
        }
        // A read that did not move the mark but asked for it (`again`) is
        // taken as the retry of the read that set it, and its receipts are
        // announced again: a receipt lost with its node would leave the
        // others showing an old mark until they reload, while a receipt
        // carries the mark itself, so a second copy changes nothing for a
        // client. Hence no marker (it would only spare a harmless copy, at
        // two Redis keys per read for the retry window: about 200 MB at
        // 1,000 reads a second) and no window. A mark set by the reader's
        // own send was never announced: in a cluster a read asking for it
        // announces it (on one node nothing, as before).
        Done::Read {
            conversation,
            user,
            seq,
            unread,
            mentions,
            members,
            moved,
            again,
        } if *moved || *again => {
            let others = members.iter().filter(|m| *m != user);
            let mut receipt = ReadReceipt {
                conversation: *conversation,
                mentions: None,
                seq: *seq,
                unread: None,
                user,
            };
            let published = emit_to_users_published(ns, others, "read", &receipt, None);
            (receipt.mentions, receipt.unread) = (Some(*mentions), Some(*unread));
            published.and(emit_to_users_published(
                ns,
                std::iter::once(user),
                "read",
                &receipt,
                None,
            ))
        }
        Done::Read { .. } => Published::done(),
    }
}

/// Tells `members` of the conversation `summary` (created, or found by a
/// retry whose first attempt's announcement may be lost) and waits until
/// the other nodes have it; `unannounced` is the client's answer when they
/// do not in time (the conversation is stored all the same).
async fn announce_joined(
    ns: &Arc<Namespace>,
    members: &[String],
    summary: &store::Summary,
    once: Option<&Once>,
    unannounced: impl Into<String>,
) -> Result<(), HubError> {
    let joined = as_value(&Joined {
        conversation: summary,
    });
    emit_to_users_published(ns, members, "conversation:joined", &joined, once)
        .wait()
        .await
        .map_err(|err| {
            tracing::warn!(%err, "chat: a conversation is stored, its announcement not published");
            HubError::new(ErrorCode::Unavailable, unannounced)
        })
}

/// An event of `/chat`, read once (see [`Inner::parse`]).
#[derive(Debug)]
enum ChatEvent {
    Conversations(ListConversations),
    Create(Create),
    AddMembers(AddMembers),
    Leave(ConversationOnly),
    RemoveMember(RemoveMember),
    Members(ConversationOnly),
    Message(SendMessage),
    Edit(Edit),
    Delete(AtSeq),
    History(History),
    Read(AtSeq),
    Typing(Typing),
}

impl ChatEvent {
    /// Whether [`Inner::parse`] took it from the user's write bucket on
    /// this node (the cluster's share is then taken by [`Inner::handle`]).
    fn admitted_by_parse(&self) -> bool {
        matches!(
            self,
            ChatEvent::AddMembers(_)
                | ChatEvent::Leave(_)
                | ChatEvent::RemoveMember(_)
                | ChatEvent::Edit(_)
                | ChatEvent::Delete(_)
                | ChatEvent::Read(_)
        )
    }
}

/// The writer's operation for a checked send.
fn send_op(user: &str, conversation: i64, send: SendMessage) -> Op {
    Op::Send {
        user: user.to_owned(),
        conversation,
        client_id: send.client_id,
        text: send.text,
        reply_to: send.reply_to,
    }
}

/// The ack of a send.
fn sent(done: Done) -> Reply {
    match done {
        Done::Sent { message, fresh, .. } => reply(&Sent {
            conversation: message.conversation,
            duplicate: !fresh,
            id: message.id,
            seq: message.seq,
            ts: message.ts,
        }),
        _ => Ok(Map::new()),
    }
}

/// A socket's sends between queued and acked (see
/// [`Inner::queue_send`]), made with its first queued send.
#[derive(Clone)]
struct InFlight(Arc<Semaphore>);

fn in_flight(socket: &Socket, max: usize) -> Arc<Semaphore> {
    let mut extensions = socket.extensions();
    if let Some(InFlight(found)) = extensions.get::<InFlight>() {
        return found.clone();
    }
    // Zero permits would hang every send; the binary refuses 0 at start.
    let made = Arc::new(Semaphore::new(max.max(1)));
    extensions.insert(InFlight(made.clone()));
    made
}

/// Refuses U+0000 in a string that is stored: PostgreSQL's TEXT cannot
/// hold it, and the failed statement would fail its whole writer batch
/// (everyone's sends in it would be run again one by one).
fn no_nul(what: &str, value: &str) -> Result<(), HubError> {
    if value.contains('\0') {
        return Err(HubError::bad_request(format!(
            "{what} may not contain U+0000"
        )));
    }
    Ok(())
}

/// `full` are in `cap` conversations already.
pub(crate) fn too_many_conversations(full: &[String], cap: usize) -> HubError {
    HubError::new(
        ErrorCode::TooManyConversations,
        format!(
            "{} in {cap} conversations already (the most a user may be in)",
            full.join(", ")
        ),
    )
}

impl Inner {
    /// The namespace (first socket seen).
    fn namespace(&self) -> Option<Arc<Namespace>> {
        if let Some(ns) = self.ns.get().and_then(Weak::upgrade) {
            return Some(ns);
        }
        let ns = self.ctx.io.of(self.name.get()?)?;
        let _ = self.ns.set(Arc::downgrade(&ns));
        Some(ns)
    }

    fn check_text(&self, text: &str) -> Result<(), HubError> {
        if text.trim().is_empty() {
            return Err(HubError::bad_request("text is empty"));
        }
        no_nul("text", text)?;
        if text.chars().count() > self.config.max_text_chars {
            return Err(HubError::new(
                ErrorCode::PayloadTooLarge,
                format!("text is at most {} characters", self.config.max_text_chars),
            ));
        }
        Ok(())
    }

    /// Takes one from `user`'s write bucket on this node: every event that
    /// writes for others to see (sends, edits, deletes, conversation
    /// changes, reads). What it admits is then [`confirm`](Self::confirm)ed
    /// by the cluster's bucket.
    fn admit(&self, user: &str) -> Result<(), HubError> {
        if self.rate.admit(user) {
            return Ok(());
        }
        Err(self.too_many_writes())
    }

    /// Takes the write [`admit`](Self::admit) admitted from `user`'s
    /// bucket in the cluster (every node's devices together); alone, at
    /// once.
    async fn confirm(&self, user: &str) -> Result<(), HubError> {
        if self.rate.confirm(user).await {
            return Ok(());
        }
        Err(self.too_many_writes())
    }

    fn too_many_writes(&self) -> HubError {
        HubError::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} writes (messages, edits, reads…) per second per user",
                self.config.messages_per_sec
            ),
        )
    }

    /// Takes `others` from `user`'s budget of users put into groups
    /// (`members_added_per_min`, every node's together): all of them, or
    /// the event is refused.
    async fn admit_added(&self, user: &str, others: usize) -> Result<(), HubError> {
        if others == 0 || self.added_by.admit_n(user, others).await {
            return Ok(());
        }
        Err(HubError::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} other users put into groups per minute per user",
                self.config.members_added_per_min
            ),
        ))
    }

    fn check_user_id(&self, user: &str) -> Result<(), HubError> {
        if user.is_empty() || user.len() > self.config.max_user_id_bytes {
            return Err(HubError::bad_request(format!(
                "a user id is 1 to {} bytes",
                self.config.max_user_id_bytes
            )));
        }
        no_nul("a user id", user)
    }

    fn limit(&self, limit: Option<i64>) -> Result<i64, HubError> {
        // A `conversations` page is one compound SELECT of a part per
        // conversation, and SQLite takes 500 parts at most.
        let max = self.config.max_page.min(MAX_PAGE);
        match limit {
            None => Ok(max.min(50)),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(_) => Err(HubError::bad_request(format!("limit is 1 to {max}"))),
        }
    }

    /// Relays a typing change to the other members of its conversation.
    /// No lock is held across the member lookup: [`Inner::emit_typing`]
    /// drops a relay overtaken by a later one. A stop the store cannot
    /// give the members of goes to those its start went to, or back to
    /// the state to be retried.
    async fn relay_typing(&self, relay: Relay) {
        let Some(ns) = self.namespace() else { return };
        let conversation = relay.conversation;
        let looked_up = self
            .ctx
            .store
            .timed(async {
                let mut conn = self.ctx.store.pool().acquire().await?;
                store::members(&mut conn, conversation).await
            })
            .await;
        let members = match looked_up {
            Ok(members) => {
                let members = Arc::new(members);
                self.typing_audience
                    .lock()
                    .insert(conversation, (members.clone(), Instant::now()));
                members
            }
            Err(err) => {
                let known = (!relay.typing)
                    .then(|| self.typing_audience.lock().get(&conversation).cloned())
                    .flatten();
                match known {
                    Some((members, _)) => members,
                    None => {
                        tracing::warn!(%err, "typing relay failed");
                        if !relay.typing
                            && let Err(err) = self.typing.stop_failed(&relay).await
                        {
                            tracing::warn!(%err, "a typing stop is lost");
                        }
                        return;
                    }
                }
            }
        };
        self.emit_typing(&ns, &relay, &members);
    }

    /// Emits `relay` to `members` (but its typist) unless a later change
    /// of the same indicator was emitted already.
    fn emit_typing(&self, ns: &Arc<Namespace>, relay: &Relay, members: &[String]) {
        let mut emitted = self.typing_emitted.lock();
        let key = relay.typist();
        if emitted
            .get(&key)
            .is_some_and(|(version, _)| *version >= relay.version)
        {
            return;
        }
        emitted.insert(key, (relay.version, Instant::now()));
        // Under the lock, so that relays of one indicator reach the
        // sockets' queues in version order (an emit does not wait).
        emit_to_users(
            ns,
            None,
            members.iter().filter(|m| **m != relay.user),
            "typing",
            &TypingRelay {
                conversation: relay.conversation,
                typing: relay.typing,
                user: &relay.user,
            },
        );
    }

    /// Drops the typing bookkeeping older than [`TYPING_MEMORY`].
    fn forget_old_typing(&self) {
        let now = Instant::now();
        self.typing_emitted
            .lock()
            .retain(|_, (_, at)| now.duration_since(*at) < TYPING_MEMORY);
        self.typing_audience
            .lock()
            .retain(|_, (_, at)| now.duration_since(*at) < TYPING_MEMORY);
    }

    /// Reads `event` once, or says what is wrong. The events that write
    /// take from `user`'s write rate on this node first, before their
    /// payload is read (a send, and a create, once it is checked); each
    /// one taken here is [`ChatEvent::admitted_by_parse`].
    fn parse(&self, user: &str, event: &str, args: &Args) -> Result<ChatEvent, HubError> {
        Ok(match event {
            "conversations" => ChatEvent::Conversations(parse_or_default(args)?),
            "conversation:create" => ChatEvent::Create(parse(args)?),
            "conversation:add_member" => {
                self.admit(user)?;
                ChatEvent::AddMembers(parse(args)?)
            }
            "conversation:leave" => {
                self.admit(user)?;
                ChatEvent::Leave(parse(args)?)
            }
            "conversation:remove_member" => {
                self.admit(user)?;
                ChatEvent::RemoveMember(parse(args)?)
            }
            "conversation:members" => ChatEvent::Members(parse(args)?),
            "message" => ChatEvent::Message(parse(args)?),
            "message:edit" => {
                self.admit(user)?;
                ChatEvent::Edit(parse(args)?)
            }
            "message:delete" => {
                self.admit(user)?;
                ChatEvent::Delete(parse(args)?)
            }
            "history" => ChatEvent::History(parse(args)?),
            "read" => {
                self.admit(user)?;
                ChatEvent::Read(parse(args)?)
            }
            "typing" => ChatEvent::Typing(parse(args)?),
            other => {
                return Err(HubError::new(
                    ErrorCode::UnknownEvent,
                    format!("no handler for {other:?}"),
                ));
            }
        })
    }

    async fn handle(&self, socket: &Socket, user: String, event: ChatEvent) -> Reply {
        if event.admitted_by_parse() {
            self.confirm(&user).await?;
        }
        match event {
            ChatEvent::Conversations(list) => self.conversations(&user, list).await,
            ChatEvent::Create(create) => self.create(&user, create).await,
            ChatEvent::AddMembers(add) => self.add_members(user, add).await,
            ChatEvent::Leave(leave) => self.leave(user, leave).await,
            ChatEvent::RemoveMember(remove) => self.remove_member(user, remove).await,
            ChatEvent::Members(of) => self.members(&user, of).await,
            ChatEvent::Message(send) => self.send(&user, send).await,
            ChatEvent::Edit(edit) => self.edit(user, edit).await,
            ChatEvent::Delete(delete) => self.delete(user, delete).await,
            ChatEvent::History(history) => self.history(&user, history).await,
            ChatEvent::Read(read) => self.read(user, read).await,
            ChatEvent::Typing(typing) => self.typing(socket, &user, typing).await,
        }
    }

    async fn add_members(&self, user: String, add: AddMembers) -> Reply {
        if add.users.len() > self.config.max_members {
            return Err(HubError::new(
                ErrorCode::TooManyMembers,
                format!("a group has at most {} members", self.config.max_members),
            ));
        }
        for member in &add.users {
            self.check_user_id(member)?;
        }
        if add.users.is_empty() {
            return Err(HubError::bad_request("users is empty"));
        }
        let mut others: Vec<&String> = add.users.iter().filter(|u| **u != user).collect();
        others.sort();
        others.dedup();
        self.admit_added(&user, others.len()).await?;
        let done = self
            .writer
            .submit(Op::AddMembers {
                user,
                conversation: add.conversation,
                users: add.users,
                max_members: self.config.max_members,
                max_conversations: self.config.max_conversations_per_user,
            })
            .await?;
        match done {
            Done::Added {
                added,
                before,
                fresh,
                ..
            } => {
                let mut members: Vec<String> = before.into_iter().chain(added.clone()).collect();
                members.sort();
                // A repeated add (announced again if need be) added
                // nobody, as its ack has always said.
                let added = if fresh { added } else { Vec::new() };
                reply(&MembersAdded { added, members })
            }
            _ => Ok(Map::new()),
        }
    }

    async fn leave(&self, user: String, leave: ConversationOnly) -> Reply {
        let done = self
            .writer
            .submit(Op::Leave {
                user,
                conversation: leave.conversation,
            })
            .await?;
        // A repeated leave (announced again if need be) is answered as a
        // non-member's has always been.
        if let Done::Left { fresh: false, .. } = done {
            return Err(writer::forbidden());
        }
        reply(&ConversationLeft {
            conversation: leave.conversation,
        })
    }

    async fn remove_member(&self, user: String, remove: RemoveMember) -> Reply {
        self.check_user_id(&remove.user)?;
        let done = self
            .writer
            .submit(Op::RemoveMember {
                user,
                conversation: remove.conversation,
                member: remove.user.clone(),
            })
            .await?;
        // A repeated removal (announced again if need be) is answered as
        // the removal of a non-member has always been.
        if let Done::Removed { fresh: false, .. } = done {
            return Err(writer::not_a_member(&remove.user));
        }
        reply(&MemberRemovedAck {
            conversation: remove.conversation,
            user: remove.user,
        })
    }

    async fn members(&self, user: &str, of: ConversationOnly) -> Reply {
        self.member_check(of.conversation, user).await?;
        let marks = self
            .ctx
            .store
            .timed(async {
                let mut conn = self.ctx.store.pool().acquire().await?;
                store::read_marks(&mut conn, of.conversation).await
            })
            .await?;
        reply(&MemberList {
            conversation: of.conversation,
            member_count: marks.len(),
            members: marks.iter().map(|(user, _)| user.clone()).collect(),
            reads: marks.into_iter().collect(),
        })
    }

    async fn edit(&self, user: String, edit: Edit) -> Reply {
        self.check_text(&edit.text)?;
        match self
            .writer
            .submit(Op::Edit {
                user,
                conversation: edit.conversation,
                seq: edit.seq,
                text: edit.text,
            })
            .await?
        {
            Done::Edited { message, .. } => reply(&MessageAck { message }),
            _ => Ok(Map::new()),
        }
    }

    async fn delete(&self, user: String, delete: AtSeq) -> Reply {
        match self
            .writer
            .submit(Op::Delete {
                user,
                conversation: delete.conversation,
                seq: delete.seq,
            })
            .await?
        {
            Done::Deleted { message, .. } => reply(&MessageAck { message }),
            _ => Ok(Map::new()),
        }
    }

    async fn read(&self, user: String, read: AtSeq) -> Reply {
        if read.seq < 0 {
            return Err(HubError::bad_request("seq is 0 or more"));
        }
        match self
            .writer
            .submit(Op::Read {
                user,
                conversation: read.conversation,
                seq: read.seq,
            })
            .await?
        {
            Done::Read {
                seq,
                unread,
                mentions,
                ..
            } => reply(&ReadMark {
                mentions,
                seq,
                unread,
            }),
            _ => Ok(Map::new()),
        }
    }

    async fn typing(&self, socket: &Socket, user: &str, typing: Typing) -> Reply {
        let conversation = typing.conversation;
        let socket = socket.id().as_str();
        if typing.typing {
            self.member_check(conversation, user).await?;
            // Charged before the state is asked (two concurrent starts of
            // the user must not both pass on one token), given back if
            // the start is not relayed (a renewal, too soon, a failure).
            if !self.typing_rate.admit_n(user, TYPING_START_COST).await {
                return reply(&Relayed { relayed: false });
            }
        }
        // A stop is applied before any store query: one that the
        // store's failure refused would leave the others seeing
        // the user type until the start expires. Only a member's
        // start is shown, so a stop the others must see is a
        // (then) member's.
        let relay = self
            .typing
            .set(conversation, user, socket, typing.typing)
            .await;
        if typing.typing && !matches!(relay, Ok(Some(_))) {
            self.typing_rate.give_back(user, TYPING_START_COST).await;
        }
        let relay = relay?;
        let relayed = relay.is_some();
        match relay {
            Some(relay) => self.relay_typing(relay).await,
            None if !typing.typing => {
                self.member_check(conversation, user).await?;
            }
            None => {}
        }
        reply(&Relayed { relayed })
    }

    /// `not_found` / `forbidden` unless `user` is in `conversation`; its
    /// row and the user's read mark.
    async fn member_check(
        &self,
        conversation: i64,
        user: &str,
    ) -> Result<(store::Conversation, i64), HubError> {
        let found = self
            .ctx
            .store
            .timed(async {
                let mut conn = self.ctx.store.pool().acquire().await?;
                let Some(found) = store::conversation(&mut conn, conversation).await? else {
                    return Ok(None);
                };
                let read = store::membership(&mut conn, conversation, user).await?;
                Ok(Some((found, read)))
            })
            .await?;
        match found {
            None => Err(HubError::new(ErrorCode::NotFound, "no such conversation")),
            Some((_, None)) => Err(HubError::new(
                ErrorCode::Forbidden,
                "not a member of this conversation",
            )),
            Some((found, Some(read))) => Ok((found, read)),
        }
    }

    async fn conversations(&self, user: &str, list: ListConversations) -> Reply {
        let limit = self.limit(list.limit)?;
        let cursor =
            match list.before.as_deref() {
                None => None,
                Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| {
                    HubError::bad_request("before: not a cursor this server gave")
                })?),
            };
        let max_listed = self.config.max_listed_members.max(0);
        let (summaries, has_more) = self
            .ctx
            .store
            .timed(async {
                let mut conn = self.ctx.store.pool().acquire().await?;
                let (listed, has_more) =
                    store::user_conversations(&mut conn, user, cursor, limit).await?;
                let summaries = store::page_summaries(&mut conn, user, &listed, max_listed).await?;
                Ok((summaries, has_more))
            })
            .await?;
        let next = summaries
            .last()
            .filter(|_| has_more)
            .map(|s| format!("{}:{}", s.last_activity, s.id));
        reply(&ConversationsPage {
            conversations: summaries,
            has_more,
            next,
        })
    }

    async fn create(&self, user: &str, create: Create) -> Reply {
        let ns = self.namespace();
        let now = now_ms();
        self.admit(user)?;
        self.confirm(user).await?;
        if let Some(other) = create.direct {
            if create.name.is_some() || !create.members.is_empty() {
                return Err(HubError::bad_request(
                    "a direct conversation takes no name nor members",
                ));
            }
            let (summary, created) = self.direct(user, &other, now).await?;
            return reply(&Created {
                conversation: summary,
                created,
            });
        }
        let Some(name) = create.name else {
            return Err(HubError::bad_request(
                "a group needs a name (or give direct: user)",
            ));
        };
        let chars = name.chars().count();
        if name.trim().is_empty() || chars > self.config.max_name_chars {
            return Err(HubError::bad_request(format!(
                "name is 1 to {} characters",
                self.config.max_name_chars
            )));
        }
        no_nul("name", &name)?;
        if create.members.len() > self.config.max_members {
            return Err(HubError::new(
                ErrorCode::TooManyMembers,
                format!("a group has at most {} members", self.config.max_members),
            ));
        }
        let mut members = create.members;
        for member in &members {
            self.check_user_id(member)?;
        }
        members.push(user.to_owned());
        members.sort();
        members.dedup();
        if members.len() > self.config.max_members {
            return Err(HubError::new(
                ErrorCode::TooManyMembers,
                format!("a group has at most {} members", self.config.max_members),
            ));
        }
        self.admit_added(user, members.len() - 1).await?;
        let cap = self.config.max_conversations_per_user;
        let summary = self
            .ctx
            .store
            .timed(async {
                let mut tx = self.ctx.store.begin_write().await?;
                let full = store::at_conversation_cap(&mut tx, &members, cap).await?;
                if !full.is_empty() {
                    return Ok(Err(full)); // dropped: rolled back, nothing written
                }
                let id = store::create_group(&mut tx, &name, user, &members, now).await?;
                let found = store::conversation(&mut tx, id)
                    .await?
                    .ok_or(sqlx::Error::RowNotFound)?;
                let summary = store::summary(&mut tx, &found, user, 0).await?;
                tx.commit().await?;
                Ok(Ok(summary))
            })
            .await?
            .map_err(|full| too_many_conversations(&full, cap))?;
        if let Some(ns) = ns {
            // Nothing names a group before it exists, so a retry cannot
            // find it: it creates another. The answer says so.
            let unannounced = format!(
                "group {} is created but its members are not told yet (it is in their \
                 conversations); creating it again makes another group",
                summary.id
            );
            announce_joined(&ns, &members, &summary, None, unannounced).await?;
        }
        reply(&Created {
            conversation: summary,
            created: true,
        })
    }

    /// The direct conversation of `user` and `other` (created, and both
    /// told, on first use); its summary for `user`, whether it was new.
    async fn direct(
        &self,
        user: &str,
        other: &str,
        now: i64,
    ) -> Result<(store::Summary, bool), HubError> {
        self.check_user_id(other)?;
        if other == user {
            return Err(HubError::bad_request(
                "a direct conversation is with someone else",
            ));
        }
        let cap = self.config.max_conversations_per_user;
        let (summary, created) = self
            .ctx
            .store
            .timed(async {
                let mut tx = self.ctx.store.begin_write().await?;
                let (id, created) =
                    match store::direct_get_or_create_capped(&mut tx, user, other, now, cap).await?
                    {
                        Ok(found) => found,
                        Err(full) => return Ok(Err(full)), // rolled back
                    };
                let found = store::conversation(&mut tx, id)
                    .await?
                    .ok_or(sqlx::Error::RowNotFound)?;
                let read = store::membership(&mut tx, id, user).await?.unwrap_or(0);
                let summary = store::summary(&mut tx, &found, user, read).await?;
                tx.commit().await?;
                Ok(Ok((summary, created)))
            })
            .await?
            .map_err(|full| too_many_conversations(&full, cap))?;
        // Found, not created: maybe by a first attempt whose announcement
        // no node published (its node killed, or `unavailable`), announced
        // again if so. Only while it has no message, when every member
        // sees it alike (the summary is `user`'s view) — a message
        // announces it anyway.
        let window = self.config.retry_window_ms;
        let again = !created
            && summary.last_seq == 0
            && now.saturating_sub(summary.created_at) <= window as i64;
        if let Some(ns) = self.namespace()
            && (created || again)
            && let Some(first) = summary.members.iter().min()
        {
            let once = Once {
                key: format!("{}:joined:{}:{first}", summary.id, summary.created_at),
                ttl: Duration::from_millis(window),
                again,
            };
            let unannounced =
                "the conversation is created but not yet announced to its members; ask again";
            announce_joined(&ns, &summary.members, &summary, Some(&once), unannounced).await?;
        }
        Ok((summary, created))
    }

    /// The direct conversation a send `to` another user goes to: looked
    /// up with a read, created (a write transaction, both users told) only
    /// when missing — not a write transaction outside the writer per send.
    async fn direct_for_send(&self, user: &str, other: &str) -> Result<i64, HubError> {
        self.check_user_id(other)?;
        if other == user {
            return Err(HubError::bad_request(
                "a direct conversation is with someone else",
            ));
        }
        let found = self
            .ctx
            .store
            .timed(async {
                let mut conn = self.ctx.store.pool().acquire().await?;
                store::direct_id(&mut conn, user, other).await
            })
            .await?;
        match found {
            Some(id) => Ok(id),
            None => Ok(self.direct(user, other, now_ms()).await?.0.id),
        }
    }

    /// Checks a send and takes it from the sender's write rate.
    fn check_send(&self, user: &str, send: &SendMessage) -> Result<(), HubError> {
        self.check_text(&send.text)?;
        if send.client_id.is_empty() || send.client_id.len() > self.config.max_client_id_bytes {
            return Err(HubError::bad_request(format!(
                "client_id is 1 to {} bytes",
                self.config.max_client_id_bytes
            )));
        }
        no_nul("client_id", &send.client_id)?;
        if send.conversation.is_some() == send.to.is_some() {
            return Err(HubError::bad_request("give either conversation or to"));
        }
        self.admit(user)
    }

    async fn send(&self, user: &str, send: SendMessage) -> Reply {
        self.check_send(user, &send)?;
        self.confirm(user).await?;
        let conversation = match (send.conversation, &send.to) {
            (Some(id), _) => id,
            (None, Some(to)) => self.direct_for_send(user, to).await?,
            (None, None) => return Err(HubError::bad_request("give either conversation or to")),
        };
        sent(
            self.writer
                .submit(send_op(user, conversation, send))
                .await?,
        )
    }

    /// A send to a conversation, in two steps (see [`Component::queue`]):
    /// checked and queued for the writer in the order the device sent it,
    /// then acked once committed and delivered, with at most
    /// `max_sends_in_flight` of one socket between the two.
    async fn queue_send(
        self: Arc<Self>,
        in_flight: Arc<Semaphore>,
        user: String,
        conversation: i64,
        send: SendMessage,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let queued = async {
            self.check_send(&user, &send)?;
            self.confirm(&user).await?;
            let permit = in_flight
                .acquire_owned()
                .await
                .map_err(|_| HubError::new(ErrorCode::Unavailable, "the server is stopping"))?;
            let outcome = self
                .writer
                .enqueue(send_op(&user, conversation, send))
                .await?;
            Ok::<_, HubError>((permit, outcome))
        }
        .await;
        async move {
            let (permit, outcome) = queued?;
            let done = outcome.await;
            drop(permit);
            sent(done?)
        }
    }

    async fn history(&self, user: &str, history: History) -> Reply {
        let limit = self.limit(history.limit)?;
        let page = match (history.before, history.after) {
            (Some(_), Some(_)) => {
                return Err(HubError::bad_request("give before or after, not both"));
            }
            (Some(before), None) => Page::Before(before),
            (None, Some(after)) => Page::After(after),
            (None, None) => Page::Before(i64::MAX),
        };
        self.member_check(history.conversation, user).await?;
        let (messages, has_more) = self
            .ctx
            .store
            .timed(async {
                let mut conn = self.ctx.store.pool().acquire().await?;
                store::history(&mut conn, history.conversation, page, limit).await
            })
            .await?;
        reply(&HistoryPage { has_more, messages })
    }
}

/// `"<last_activity>:<id>"`, as `conversations` gives it in `next`.
fn parse_cursor(cursor: &str) -> Option<(i64, i64)> {
    let (activity, id) = cursor.split_once(':')?;
    Some((activity.parse().ok()?, id.parse().ok()?))
}

impl Component for Chat {
    type User = Identity;

    fn on_connect(
        &self,
        socket: &Arc<Socket>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let _ = self.inner.ns.set(Arc::downgrade(socket.namespace()));
        None::<std::future::Ready<()>>
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, _reason: DisconnectReason) {
        let inner = self.inner.clone();
        let id = socket.id().as_str().to_owned();
        self.inner.ctx.tasks.spawn(async move {
            match inner.typing.device_gone(&id).await {
                Ok(stopped) => {
                    for relay in stopped {
                        inner.relay_typing(relay).await;
                    }
                }
                Err(err) => tracing::warn!(%err, "clearing typing failed"),
            }
        });
    }

    fn handle(
        &self,
        socket: &Arc<Socket>,
        user: Identity,
        event: &str,
        args: &Args,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let _ = self.inner.ns.set(Arc::downgrade(socket.namespace()));
        let parsed = self.inner.parse(&user.user, event, args);
        let inner = self.inner.clone();
        let socket = socket.clone();
        async move { inner.handle(&socket, user.user, parsed?).await }
    }

    /// A `message` to a conversation is queued for the writer and acked
    /// later, so that one device's sends share the writer's batches (a
    /// send `to` a user, which may first create the conversation, and any
    /// payload `handle` refuses, go through `handle`).
    fn queue(
        &self,
        socket: &Arc<Socket>,
        user: &Identity,
        event: &str,
        args: &Args,
    ) -> Option<impl Future<Output = impl Future<Output = Reply> + Send + 'static> + Send + 'static>
    {
        if event != "message" {
            return None;
        }
        let send: SendMessage = parse(args).ok()?;
        let conversation = match (send.conversation, &send.to) {
            (Some(id), None) => id,
            _ => return None,
        };
        let _ = self.inner.ns.set(Arc::downgrade(socket.namespace()));
        let in_flight = in_flight(socket, self.inner.config.max_sends_in_flight);
        let inner = self.inner.clone();
        Some(inner.queue_send(in_flight, user.user.clone(), conversation, send))
    }
}
