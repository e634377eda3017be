//! `/presence`: who is online, their status and their devices, watched by
//! other users.
//!
//! A user is online while any of their sockets *of this namespace* is
//! connected (a client that wants its user shown online opens `/presence`;
//! the web client always does), and offline once the last one left and its
//! grace period (`grace_ms`) is over: a page reload does not flicker. The
//! status a user chooses (`online`, `away`, `busy`) applies to all their
//! devices and is stored, as is `last_seen`; a user may choose it
//! `status_changes_per_sec` times a second, all devices together (each
//! change is a store write and an event to every watcher). A socket
//! `watch`es users: it joins one room per watched user (`presence:<id>`),
//! so a change is one broadcast, encoded once, however many watch it.
//!
//! Convergence: every presence sent carries the version the state gave the
//! change (see [`crate::services::presence::state`]), and a client keeps
//! the highest, so the order announcements arrive in does not matter. What
//! remains is that each device hears the last change: the socket whose
//! arrival made it hears it too, unless it is the user's first device (a
//! device that arrives while the user has others may have been counted
//! after them whatever order they connected in, and it missed the
//! announcements made before it was there); the socket that chose a status
//! has it in its ack.
//!
//! The live state, the stored status and `last_seen` are the presence
//! service's ([`crate::services::presence`]), which the publish API reads
//! too; this component writes it as devices come and go. `policy.rs`: who
//! may watch whom.

pub mod contract;
pub mod policy;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use socketio::{Args, DisconnectReason, Namespace, Socket};

use crate::auth::{identity_of, user_room};
use crate::clock::now_ms;
use crate::component::{Component, ErrorCode, HubError, Reply};
use crate::components::kit;
use crate::identity::Identity;
use crate::limits::SenderRate;
use crate::services::Context;
use crate::services::presence::state::{Departure, Device, Remembered};
use crate::services::presence::{MemoryState, PresenceService, Status, UserPresence};
pub use policy::{AnyoneMayWatch, WatchHook, WatchPolicy};

/// The component's settings (`[presence]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// How long a user stays online after their last socket left, in
    /// milliseconds (absorbs a page reload). Every departing device
    /// lingers this long; a new socket of the user takes its place.
    pub grace_ms: u64,
    /// Users one socket may watch.
    pub max_watch: usize,
    /// Longest user id `watch` / `unwatch` accept, in bytes.
    pub max_user_bytes: usize,
    /// Devices of one user lingering in their grace period at most; past
    /// that a departing device is gone at once.
    pub max_lingering: usize,
    /// `status` events per second per user, all devices together; 0: no
    /// limit. Each one that changes the status is a store write and an
    /// event to every watcher, so without it one user toggling their
    /// status reaches each watcher as fast as their sockets may send.
    pub status_changes_per_sec: f64,
    /// `status` events a user may send at once after a quiet spell.
    pub status_change_burst: f64,
    /// Who may watch whom (set in code by the embedding program; by
    /// default any signed-in user may watch any other).
    #[serde(skip)]
    pub watch_policy: WatchHook,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            grace_ms: 10_000,
            max_watch: 500,
            max_user_bytes: 256,
            max_lingering: 32,
            // A person changes their status a few times a day: 2 a second
            // (5 at once) is never reached by hand, and keeps a watcher's
            // stream of one user's changes (and its store writes) small.
            status_changes_per_sec: 2.0,
            status_change_burst: 5.0,
            watch_policy: WatchHook::default(),
        }
    }
}

impl PresenceConfig {
    /// The shared presence service this configuration describes, in
    /// memory (one node).
    pub(crate) fn service(&self, store: crate::store::Store) -> PresenceService {
        PresenceService::new(Arc::new(MemoryState::new(self.max_lingering)), store)
    }
}

/// The room of the sockets watching `user`.
pub fn watch_room(user: &str) -> String {
    format!("{WATCH_PREFIX}{user}")
}

const WATCH_PREFIX: &str = "presence:";

/// `status`'s payload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    /// `online`, `away` or `busy`.
    #[schema(value_type = ChosenStatus)]
    status: String,
}

/// The statuses a user may choose (`offline` is what others see once
/// every device is gone): the schema of `status`'s argument, which the
/// component reads as text and checks against [`Status`].
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
enum ChosenStatus {
    Online,
    Away,
    Busy,
}

/// `watch`'s and `unwatch`'s payload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UsersRequest {
    users: Vec<String>,
}

/// Tells the watchers of the user and the user's own devices (but `except`,
/// the socket that caused it and hears it otherwise) of `presence`.
/// Called after the state changed, outside its lock: two announcements of
/// one user may be sent in the other order than their changes were made,
/// which their versions put right.
fn announce(ns: &Arc<Namespace>, presence: &UserPresence, except: Option<&Socket>) {
    let mut op = ns
        .to(watch_room(&presence.user))
        .to(user_room(&presence.user));
    if let Some(socket) = except {
        op = op.except_socket(*socket.id());
    }
    op.emit("presence", &Args::one(presence));
}

/// The users `socket` watches now.
/// Whether `socket` may watch `users` too without watching more than
/// `max` users (those it watches already count once): the rooms it is in
/// now, or `too_many_watched`.
fn within_watch_limit(
    socket: &Socket,
    users: &[String],
    max: usize,
) -> Result<HashSet<socketio::Room>, HubError> {
    let current: HashSet<socketio::Room> = socket.rooms().into_iter().collect();
    let new = users
        .iter()
        .filter(|u| !current.contains(watch_room(u).as_str()))
        .count();
    let already = current
        .iter()
        .filter(|room| room.starts_with(WATCH_PREFIX))
        .count();
    if already + new > max {
        return Err(HubError::new(
            ErrorCode::TooManyWatched,
            format!(
                "a socket may watch at most {max} users (it watches {already}, \
                 {new} more asked)"
            ),
        ));
    }
    Ok(current)
}

fn watching(socket: &Socket) -> usize {
    socket
        .rooms()
        .iter()
        .filter(|room| room.starts_with(WATCH_PREFIX))
        .count()
}

/// First pause before the stored status of a user who connected while the
/// store did not answer is read again; it doubles up to
/// [`RESTORE_PAUSE_MAX`].
const RESTORE_PAUSE_FIRST: Duration = Duration::from_millis(100);

/// Longest pause between two reads of a stored status to restore.
const RESTORE_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Reads of a stored status to restore before giving up (then the user's
/// next choice, or next first device, sets it).
const RESTORE_ATTEMPTS: usize = 20;

/// `user`'s first device connected while the store did not answer, so the
/// live entry started from the default status: reads the stored one until
/// the store answers and applies it (the watchers hear of it if it
/// differs). The store is written before the live state on every choice,
/// so what it holds is never older than the live state's.
async fn restore_status(service: PresenceService, ns: Arc<Namespace>, user: String) {
    let mut pause = RESTORE_PAUSE_FIRST;
    for _ in 0..RESTORE_ATTEMPTS {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RESTORE_PAUSE_MAX);
        let Ok(mut found) = service.remembered(std::slice::from_ref(&user)).await else {
            continue;
        };
        let status = found.remove(&user).unwrap_or_default().status;
        match service.state().set_status(&user, status).await {
            Ok(Some(change)) if change.visible => {
                announce(&ns, &change.presence, None);
            }
            // Offline meanwhile (the next device reads the store), or
            // nothing to change.
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "presence: a stored status could not be restored"),
        }
        return;
    }
    tracing::warn!(user, "presence: the stored status could not be read back");
}

/// Node `node` of the cluster stopped: its devices stop counting at once
/// (see [`PresenceState::drop_node`](crate::services::presence::PresenceState::drop_node)),
/// the watchers of each user it changed hear of it in every presence
/// namespace, and a user it took offline is remembered as last seen now.
pub(crate) async fn node_dropped(
    service: &PresenceService,
    namespaces: &[Arc<Namespace>],
    node: &str,
) {
    let changes = match service.state().drop_node(node).await {
        Ok(changes) => changes,
        Err(err) => {
            tracing::warn!(%err, node, "presence: the devices of a stopped node could not be dropped");
            return;
        }
    };
    if !changes.is_empty() {
        tracing::info!(
            node,
            users = changes.len(),
            "presence: a stopped node's devices dropped"
        );
    }
    // Those it took offline are remembered first (then every read that
    // finds them offline finds when they left), many in one transaction.
    let now = now_ms();
    let mut writes = tokio::task::JoinSet::new();
    for change in &changes {
        if change.visible && change.presence.status == Status::Offline {
            let (service, user) = (service.clone(), change.presence.user.clone());
            writes.spawn(async move {
                let _ = service.record_seen(&user, now).await;
            });
        }
    }
    writes.join_all().await;
    for change in changes.iter().filter(|c| c.visible) {
        for ns in namespaces {
            announce(ns, &change.presence, None);
        }
    }
}

/// What a device that arrived while its user had others is told once its
/// client knows it is connected (see [`Presence::on_connected`]): the
/// user's presence as its arrival left it.
#[derive(Debug, Clone)]
struct Arrival(UserPresence);

/// The `/presence` namespace's component.
pub struct Presence {
    ctx: Context,
    config: Arc<PresenceConfig>,
    /// `status` events per user (`status_changes_per_sec`): a bucket per
    /// user who chose a status lately, forgotten once refilled, and in a
    /// cluster the user's bucket every node shares.
    status_rate: SenderRate,
}

impl Presence {
    /// Serves `/presence` from `ctx.presence`, the hub's shared state.
    pub fn new(ctx: Context, config: PresenceConfig) -> Presence {
        Presence {
            status_rate: SenderRate::new(
                "status",
                config.status_changes_per_sec,
                config.status_change_burst,
                ctx.shared_rates.clone(),
            ),
            ctx,
            config: Arc::new(config),
        }
    }

    /// Takes one `status` from `user`'s bucket on this node (every device
    /// of the user together), or refuses it `rate_limited`; the cluster's
    /// share is [`confirm_status`](Self::confirm_status)ed after.
    fn admit_status(&self, user: &str) -> Result<(), HubError> {
        if self.status_rate.admit_here(user, 1) {
            return Ok(());
        }
        Err(self.too_many_statuses())
    }

    /// Takes the admitted `status` from `user`'s bucket in the cluster
    /// (every node's devices together), or refuses it `rate_limited`.
    fn confirm_status(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<(), HubError>> + Send + use<> {
        let confirmed = self.status_rate.confirm(user, 1);
        let refusal = self.too_many_statuses();
        async move {
            if confirmed.await {
                Ok(())
            } else {
                Err(refusal)
            }
        }
    }

    fn too_many_statuses(&self) -> HubError {
        HubError::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} status changes per second per user (all devices together)",
                self.config.status_changes_per_sec
            ),
        )
    }

    /// `watch` / `unwatch`'s user ids: 1 to `max_watch` of them, each 1 to
    /// `max_user_bytes` long, without duplicates (first one kept).
    fn users(&self, args: &Args) -> Result<Vec<String>, HubError> {
        let request: UsersRequest = kit::parse(args, "expected {users: [user id, …]}")?;
        let max = self.config.max_watch;
        if request.users.is_empty() {
            return Err(HubError::bad_request("users: name at least one user id"));
        }
        if request.users.len() > max {
            return Err(HubError::new(
                ErrorCode::TooManyWatched,
                format!("a socket may watch at most {max} users"),
            ));
        }
        let max_bytes = self.config.max_user_bytes;
        if let Some(bad) = request
            .users
            .iter()
            .find(|u| u.is_empty() || u.len() > max_bytes)
        {
            return Err(HubError::bad_request(format!(
                "user ids are 1 to {max_bytes} bytes (got {} bytes)",
                bad.len()
            )));
        }
        let mut seen = HashSet::new();
        Ok(request
            .users
            .into_iter()
            .filter(|u| seen.insert(u.clone()))
            .collect())
    }

    /// Reads `event` and its arguments once, or says what is wrong.
    fn parse(&self, event: &str, args: &Args) -> Result<PresenceEvent, HubError> {
        match event {
            "status" => {
                let request: StatusRequest = kit::parse(args, "expected {status}")?;
                let status = Status::chosen(&request.status).ok_or_else(|| {
                    HubError::bad_request(format!(
                        "status is online, away or busy (got {:?})",
                        request.status
                    ))
                })?;
                Ok(PresenceEvent::Status(status))
            }
            "watch" => Ok(PresenceEvent::Watch(self.users(args)?)),
            "unwatch" => Ok(PresenceEvent::Unwatch(self.users(args)?)),
            _ => Err(HubError::new(
                ErrorCode::UnknownEvent,
                format!("no handler for {event:?}"),
            )),
        }
    }
}

/// An event of `/presence`, checked.
#[derive(Debug)]
enum PresenceEvent {
    /// The user chooses a status (all their devices).
    Status(Status),
    /// Watch these users (1 to `max_watch`, no repeats).
    Watch(Vec<String>),
    /// Stop watching these users.
    Unwatch(Vec<String>),
}

/// `status`'s ack: the user's presence after.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StatusSet {
    presence: UserPresence,
}

/// `watch`'s ack: a snapshot of each user asked, in order, and how many
/// users the socket watches now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Watched {
    presence: Vec<UserPresence>,
    watching: usize,
}

/// `unwatch`'s ack.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Unwatched {
    watching: usize,
}

/// `status`: stored, then the watchers (and the user's other devices)
/// hear of it; the ack has the user's presence after.
async fn set_status(
    service: PresenceService,
    socket: Arc<Socket>,
    user: String,
    status: Status,
) -> Reply {
    let presence = match service.set_status(&user, status).await? {
        Some(change) => {
            if change.visible {
                announce(socket.namespace(), &change.presence, Some(&socket));
            }
            change.presence
        }
        // No live entry (its state failed at connect): what the
        // store and the state say now.
        None => service.lookup(std::slice::from_ref(&user)).await?.remove(0),
    };
    kit::reply(&StatusSet { presence })
}

/// `watch`: what the policy allows of `users`, within the socket's limit,
/// joined, then a snapshot of each.
async fn watch(
    service: PresenceService,
    policy: Arc<dyn WatchPolicy>,
    max: usize,
    socket: Arc<Socket>,
    identity: Identity,
    users: Vec<String>,
) -> Reply {
    // A first look, to refuse a watch over the limit before asking
    // the policy; the one that counts is made again with the join.
    within_watch_limit(&socket, &users, max)?;
    let refused = policy.refused(&identity, &users).await?;
    if !refused.is_empty() {
        let named: Vec<&str> = refused.iter().take(10).map(String::as_str).collect();
        return Err(HubError::new(
            ErrorCode::Forbidden,
            format!("not allowed to watch {}", named.join(", ")),
        ));
    }
    // Joined before the snapshot is read: a change from now on is
    // an event, and one that arrives before this ack is older than
    // (or the same as) the snapshot.
    //
    // The limit is checked again here, with nothing awaited between
    // the count and the join: the rooms may have changed while the
    // policy was asked, and the check must hold for what is joined.
    let current = within_watch_limit(&socket, &users, max)?;
    let rooms: Vec<socketio::Room> = users.iter().map(|u| watch_room(u).into()).collect();
    if !socket.join_all(&rooms) {
        return Err(HubError::new(ErrorCode::Unavailable, "the socket left"));
    }
    let presence = match service.lookup(&users).await {
        Ok(presence) => presence,
        Err(err) => {
            // Refused as a whole: the rooms this watch joined are
            // left again.
            for user in users
                .iter()
                .filter(|u| !current.contains(watch_room(u).as_str()))
            {
                socket.leave(&watch_room(user));
            }
            return Err(err);
        }
    };
    kit::reply(&Watched {
        presence,
        watching: watching(&socket),
    })
}

/// `unwatch`: leaves the users' rooms.
fn unwatch(socket: &Socket, users: &[String]) -> Reply {
    for user in users {
        socket.leave(&watch_room(user));
    }
    kit::reply(&Unwatched {
        watching: watching(socket),
    })
}

impl Component for Presence {
    type User = Identity;

    fn on_connect(
        &self,
        socket: &Arc<Socket>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let user = identity_of(socket)?.user;
        let service = self.ctx.presence.clone();
        let tasks = self.ctx.tasks.clone();
        let socket = socket.clone();
        Some(async move {
            let state = service.state().clone();
            // The user's first device starts from what the store remembers
            // (their chosen status); later ones join the live entry. When
            // the store cannot say, the device connects with the default
            // and the stored status is restored once the store answers: a
            // store error must not turn a busy user online.
            let mut unsure = false;
            let remembered = match state.knows(&user).await {
                Ok(true) => Remembered::default(),
                Ok(false) | Err(_) => match service.remembered(std::slice::from_ref(&user)).await {
                    Ok(mut found) => found.remove(&user).unwrap_or_default(),
                    Err(_) => {
                        unsure = true;
                        Remembered::default()
                    }
                },
            };
            let device = Device {
                socket: socket.id().as_str().to_owned(),
                node: service.node().to_owned(),
            };
            let now = now_ms();
            match state.connect(&user, device, remembered, now).await {
                Ok(change) => {
                    let first = change.visible && change.presence.devices == 1;
                    if change.visible {
                        // Not to this socket: its client is not told it is
                        // connected yet (it hears it in `on_connected`).
                        announce(socket.namespace(), &change.presence, Some(&socket));
                    }
                    if first {
                        // Came online: remembered in the background, so a
                        // crash leaves a last_seen no older than this.
                        let (service, user) = (service.clone(), user.clone());
                        tasks.spawn(async move {
                            let _ = service.record_seen(&user, now).await;
                        });
                    } else {
                        // The user has other devices (connected or
                        // lingering), which may have arrived at the same
                        // time and been counted first: their announcements
                        // were made before this socket was there, or
                        // counted fewer devices. This socket hears where
                        // the user stands now, as they do (a reload that
                        // changed nothing visible included: a status may
                        // have been chosen while it was away).
                        socket.extensions().insert(Arrival(change.presence));
                    }
                }
                Err(err) => tracing::warn!(%err, "presence: a device could not be recorded"),
            }
            if unsure {
                let ns = socket.namespace().clone();
                tasks.spawn(restore_status(service, ns, user));
            }
        })
    }

    /// A device that arrived while its user had others hears the user's
    /// presence as its arrival left it, now that its client knows it is
    /// connected (an event before the CONNECT reply is one a client must
    /// buffer). Changes made since have reached it already or will, with a
    /// higher version.
    fn on_connected(&self, socket: &Arc<Socket>) {
        let arrival = socket.extensions().remove::<Arrival>();
        if let Some(Arrival(presence)) = arrival {
            socket.emit("presence", &Args::one(&presence));
        }
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, _reason: DisconnectReason) {
        let Some(identity) = identity_of(socket) else {
            return;
        };
        let user = identity.user;
        let service = self.ctx.presence.clone();
        let ns = socket.namespace().clone();
        let grace = Duration::from_millis(self.config.grace_ms);
        let departure = service
            .state()
            .disconnect(&user, socket.id().as_str(), now_ms(), grace);
        self.ctx.tasks.spawn(async move {
            let change = match departure.await {
                Ok(Departure::Lingering { until }) => {
                    tokio::time::sleep(grace).await;
                    // Stored before the state may forget the user: once
                    // watchers hear "offline", every read (the API, a new
                    // watch) finds when they left.
                    let left = until.saturating_sub(grace.as_millis() as i64);
                    let _ = service.record_seen(&user, left).await;
                    match service.state().expire(&user, until).await {
                        Ok(change) => change,
                        Err(err) => {
                            tracing::warn!(%err, "presence: a grace period could not end");
                            None
                        }
                    }
                }
                Ok(Departure::Gone(change)) => {
                    if change.presence.status == Status::Offline
                        && let Some(at) = change.presence.last_seen
                    {
                        let _ = service.record_seen(&user, at).await;
                    }
                    Some(change).filter(|c| c.visible)
                }
                Ok(Departure::Unknown) => None,
                Err(err) => {
                    tracing::warn!(%err, "presence: a departure could not be recorded");
                    None
                }
            };
            if let Some(change) = change {
                announce(&ns, &change.presence, None);
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
        // A status over the user's rate is refused before it reaches the
        // store or the watchers; the map holds authenticated ids only.
        let parsed = self.parse(event, args).and_then(|parsed| match parsed {
            PresenceEvent::Status(_) => self.admit_status(&user.user).map(|()| parsed),
            _ => Ok(parsed),
        });
        let confirmed =
            matches!(parsed, Ok(PresenceEvent::Status(_))).then(|| self.confirm_status(&user.user));
        let service = self.ctx.presence.clone();
        let policy = self.config.watch_policy.0.clone();
        let max = self.config.max_watch;
        let socket = socket.clone();
        async move {
            let parsed = parsed?;
            if let Some(confirmed) = confirmed {
                confirmed.await?;
            }
            match parsed {
                PresenceEvent::Status(status) => {
                    set_status(service, socket, user.user, status).await
                }
                PresenceEvent::Watch(users) => {
                    watch(service, policy, max, socket, user, users).await
                }
                PresenceEvent::Unwatch(users) => unwatch(&socket, &users),
            }
        }
    }
}
