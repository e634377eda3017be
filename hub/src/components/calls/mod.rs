//! `/calls`: WebRTC call signalling — invitations that ring every device
//! of each invitee, accept/decline/hangup, `signal` relayed between the
//! participants' devices, and TURN credentials.
//!
//! A device is a socket of the namespace; its id (the Socket.IO socket id,
//! `socket.id` on the client) is what `signal` names. A call lives in
//! [`CallState`] (`state.rs`), its transitions are pure (`call.rs`), the
//! TURN REST API credentials are in `turn.rs`. Nothing is stored: a missed
//! call becomes a notification through the notifications service.
//!
//! Perfect negotiation: of two participant devices, the one that joined the
//! call later is the polite peer (the caller's device joined first, so it
//! is impolite towards everyone). The server says so in every place a
//! client meets a peer (`call:accept`'s ack, `call:accepted`, `signal`).

mod call;
pub mod contract;
pub mod payloads;
pub mod replies;
mod state;
mod turn;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use payloads::*;
use replies::*;
use socketio::{Args, DisconnectReason, Namespace, Socket, SocketId};

use crate::auth::identity_of;
use crate::clock::now_ms;
use crate::component::{Component, ErrorCode, HubError, Reply};
use crate::components::kit::{emit_to_users, parse, reply};
use crate::identity::Identity;
use crate::limits::{SenderRate, TokenBucket};
use crate::services::Context;
use crate::services::notifications::NewNotification;

pub use call::{Answer, Call, EndReason, Invitee, Kind, Leave, Participant, Phase, Refusal};
pub use state::{CallState, InsertError, MemoryCallState, Orphans, StateError};
pub use turn::{IceServer, credentials, ice_servers};

/// The component's settings (`[calls]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Participants of one call, caller included (a mesh).
    pub max_participants: usize,
    /// How long an invitation rings before it is a missed call, in
    /// milliseconds.
    pub ring_timeout_ms: u64,
    /// Calls one user may be busy in at once (placed, or answered and
    /// still live; a call that only rings them does not count: call
    /// waiting); an invitation past it is refused `busy`.
    pub max_calls_per_user: usize,
    /// Longest user id an invitation may name, in bytes.
    pub max_user_id_bytes: usize,
    /// Largest `signal` payload, in bytes of JSON.
    pub max_signal_bytes: usize,
    /// Signals one device may send per second (sustained).
    pub signals_per_sec: f64,
    /// Signals one device may send at once (ICE candidates come in bursts).
    pub signal_burst: f64,
    /// Invitations one user may send per minute (all their devices
    /// together), all at once at most (each may ring several users and
    /// leave them a missed-call notification).
    pub invites_per_minute: f64,
    /// STUN URLs handed out by `ice_servers` (`stun:host:3478`).
    pub stun_urls: Vec<String>,
    /// TURN URLs handed out by `ice_servers`, with credentials
    /// (`turn:host:3478?transport=udp`, `turns:host:443?transport=tcp`).
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's
    /// `static-auth-secret`); without it no TURN URL is handed out.
    pub turn_secret: String,
    /// How long issued TURN credentials are valid, in seconds.
    pub turn_ttl_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            max_participants: 8,
            ring_timeout_ms: 30_000,
            max_calls_per_user: 4,
            max_user_id_bytes: 256,
            max_signal_bytes: 65_536,
            signals_per_sec: 50.0,
            signal_burst: 200.0,
            invites_per_minute: 10.0,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: String::new(),
            turn_ttl_secs: 86_400,
        }
    }
}

/// Longest call or device id a client may name (ours are far shorter).
const MAX_ID_BYTES: usize = 64;

/// Compare-and-set attempts before giving up on a contended call.
const MAX_WRITE_ATTEMPTS: usize = 16;

/// First pause before a ring timeout that could not be written is tried
/// again; it doubles up to [`RING_RETRY_MAX`].
const RING_RETRY_FIRST: Duration = Duration::from_millis(50);

/// Longest pause between two tries of a ring timeout.
const RING_RETRY_MAX: Duration = Duration::from_secs(5);

/// The `/calls` namespace's component.
pub struct Calls {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    config: CallsConfig,
    state: Arc<dyn CallState>,
    /// The namespace's name, when the assembly says it
    /// ([`Calls::in_namespace`]): what a stopped node left is handled by
    /// whichever node drops it, sockets or not.
    name: std::sync::OnceLock<String>,
    /// Invitations per user, of all their devices together (in a cluster,
    /// on every node together): more connections do not ring more phones.
    invites: SenderRate,
}

impl Calls {
    /// With the in-memory state.
    pub fn new(ctx: Context, config: CallsConfig) -> Calls {
        Calls::with_state(ctx, config, Arc::new(MemoryCallState::new()))
    }

    /// With the live state `state` (a cluster's).
    pub fn with_state(ctx: Context, config: CallsConfig, state: Arc<dyn CallState>) -> Calls {
        if !config.turn_urls.is_empty() && config.turn_secret.is_empty() {
            tracing::warn!("calls.turn_urls without calls.turn_secret: no TURN server handed out");
        }
        let per_minute = config.invites_per_minute;
        let invites = SenderRate::new(
            "invite",
            per_minute / 60.0,
            per_minute.max(1.0),
            ctx.shared_rates.clone(),
        );
        let inner = Arc::new(Inner {
            ctx,
            config,
            state,
            name: std::sync::OnceLock::new(),
            invites,
        });
        // Another node stopped: its devices leave their calls, and the
        // calls it timed ring out here.
        let weak = Arc::downgrade(&inner);
        inner.ctx.peers.on_dropped(move |node| {
            let inner = weak.clone();
            Box::pin(async move {
                if let Some(inner) = inner.upgrade() {
                    inner.node_dropped(&node).await;
                }
            })
        });
        Calls { inner }
    }

    /// Says which namespace it serves.
    pub fn in_namespace(self, name: &str) -> Calls {
        let _ = self.inner.name.set(name.to_owned());
        self
    }
}

fn check_id(what: &str, id: &str) -> Result<(), HubError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(HubError::new(
            ErrorCode::BadRequest,
            format!("{what} must be 1..={MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn refused(refusal: Refusal) -> HubError {
    match refusal {
        Refusal::NotInvited => {
            HubError::new(ErrorCode::Forbidden, "you are not invited to this call")
        }
        Refusal::AlreadyAnswered => HubError::new(
            ErrorCode::AlreadyAnswered,
            "another of your devices answered",
        ),
        Refusal::NotRinging => {
            HubError::new(ErrorCode::NotRinging, "this call no longer rings for you")
        }
        Refusal::NotParticipant => {
            HubError::new(ErrorCode::Forbidden, "this device is not in the call")
        }
        Refusal::Full => HubError::new(
            ErrorCode::CallFull,
            "the call has its maximum of participants",
        ),
        Refusal::Ended => not_found(),
    }
}

fn not_found() -> HubError {
    HubError::new(ErrorCode::NotFound, "no such call (or it has ended)")
}

fn unavailable(err: StateError) -> HubError {
    tracing::warn!(%err, "call state error");
    HubError::new(ErrorCode::Unavailable, "call state unavailable; try again")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_id() -> String {
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// A device's signal bucket, kept in its socket's extensions (apart from
/// the namespace's event rate limit).
#[derive(Clone, Copy)]
struct SignalBucket(TokenBucket);

/// Takes one token from `socket`'s signal bucket (`burst` tokens refilled
/// at `per_sec`, used as given); false if it is empty.
fn admit_signal(socket: &Socket, per_sec: f64, burst: f64) -> bool {
    if per_sec <= 0.0 {
        return true;
    }
    let now = Instant::now();
    let mut extensions = socket.extensions();
    let bucket = extensions.get_or_insert_with(|| SignalBucket(TokenBucket::new(burst, now)));
    bucket.0.take(per_sec, burst, now)
}

// --- emitting ---------------------------------------------------------------

/// Emits to one device (a socket of this namespace): at once if it is on
/// this node, else to its id as a room (in a cluster, the node it is on
/// delivers it; alone, nobody).
fn to_device<T: Serialize + ?Sized>(ns: &Arc<Namespace>, device: &str, event: &str, payload: &T) {
    match SocketId::parse(device).and_then(|id| ns.get(&id)) {
        Some(socket) => {
            socket.emit(event, &Args::one(payload));
        }
        None => {
            ns.to(device).emit(event, &Args::one(payload));
        }
    }
}

// --- the events -------------------------------------------------------------

/// An event of `/calls`, checked (and admitted: invitations and signals
/// have rates of their own).
#[derive(Debug)]
enum CallsEvent {
    Invite(InviteArgs),
    Accept(CallRef),
    Decline(CallRef),
    Hangup(CallRef),
    Signal(SignalArgs),
    IceServers,
}

impl Inner {
    /// Reads `event` from `user`'s `socket` once, or says what is wrong.
    /// A signal's size and rate are looked at before its payload is read.
    fn parse(
        &self,
        socket: &Socket,
        user: &str,
        event: &str,
        args: &Args,
    ) -> Result<CallsEvent, HubError> {
        let config = &self.config;
        match event {
            "call:invite" => {
                let args = parse::<InviteArgs>(args, event)?;
                // The cluster's share is taken by `invite`.
                if !self.invites.admit_here(user, 1) {
                    return Err(self.too_many_invites());
                }
                Ok(CallsEvent::Invite(args))
            }
            "call:accept" => Ok(CallsEvent::Accept(parse(args, event)?)),
            "call:decline" => Ok(CallsEvent::Decline(parse(args, event)?)),
            "call:hangup" => Ok(CallsEvent::Hangup(parse(args, event)?)),
            "signal" => {
                if args.byte_len() > config.max_signal_bytes {
                    return Err(HubError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("a signal is at most {} bytes", config.max_signal_bytes),
                    ));
                }
                if !admit_signal(socket, config.signals_per_sec, config.signal_burst) {
                    return Err(HubError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "at most {} signals per second per device",
                            config.signals_per_sec
                        ),
                    ));
                }
                Ok(CallsEvent::Signal(parse(args, event)?))
            }
            "ice_servers" => {
                if !args.is_empty() {
                    parse::<NoArgs>(args, event)?;
                }
                Ok(CallsEvent::IceServers)
            }
            other => Err(HubError::new(
                ErrorCode::UnknownEvent,
                format!("no handler for {other:?}"),
            )),
        }
    }

    /// Reads call `id`, applies `change` to a copy and writes it back if
    /// nobody wrote in between (else reads again). Returns the call as
    /// written and what `change` returned.
    async fn update<T>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Call) -> Result<T, Refusal>,
    ) -> Result<(Call, T), HubError> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let Some(current) = self.state.get(id).await.map_err(unavailable)? else {
                return Err(not_found());
            };
            let mut next = current.clone();
            let out = change(&mut next).map_err(refused)?;
            next.version = current.version + 1;
            if self
                .state
                .compare_and_set(current.version, next.clone())
                .await
                .map_err(unavailable)?
            {
                return Ok((next, out));
            }
        }
        Err(HubError::new(
            ErrorCode::Unavailable,
            "the call is busy; try again",
        ))
    }

    fn too_many_invites(&self) -> HubError {
        HubError::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} invitations a minute per user",
                self.config.invites_per_minute
            ),
        )
    }

    async fn invite(
        self: &Arc<Self>,
        socket: &Arc<Socket>,
        caller: &str,
        args: InviteArgs,
    ) -> Reply {
        // Admitted on this node by `parse`; now by the cluster.
        if !self.invites.confirm(caller, 1).await {
            return Err(self.too_many_invites());
        }
        let config = &self.config;
        let mut users: Vec<String> = Vec::with_capacity(args.users.len());
        for user in args.users {
            if user.is_empty() || user.len() > config.max_user_id_bytes {
                return Err(HubError::new(
                    ErrorCode::BadRequest,
                    format!("user ids are 1..={} bytes", config.max_user_id_bytes),
                ));
            }
            if user == caller {
                return Err(HubError::new(
                    ErrorCode::BadRequest,
                    "you cannot invite yourself",
                ));
            }
            if !users.contains(&user) {
                users.push(user);
            }
            // Checked as the list grows: a long list is refused early.
            if users.len() + 1 > config.max_participants {
                return Err(HubError::new(
                    ErrorCode::TooManyParticipants,
                    format!(
                        "a call has at most {} participants, caller included",
                        config.max_participants
                    ),
                ));
            }
        }
        if users.is_empty() {
            return Err(HubError::new(
                ErrorCode::BadRequest,
                "invite at least one user",
            ));
        }
        let device = socket.id().as_str();
        let call = Call::new(random_id(), caller, device, args.kind, &users, now_ms());
        match self
            .state
            .insert(call.clone(), config.max_calls_per_user)
            .await
        {
            Ok(()) => {}
            Err(InsertError::Busy(user)) if user == caller => {
                return Err(HubError::new(
                    ErrorCode::Busy,
                    format!("you are in {} calls already", config.max_calls_per_user),
                ));
            }
            Err(InsertError::Busy(_)) => {
                // Which invitee is not said: whose phone rings is theirs.
                return Err(HubError::new(
                    ErrorCode::Busy,
                    "an invitee cannot take another call now",
                ));
            }
            Err(InsertError::State(err)) => return Err(unavailable(err)),
        }
        let ns = socket.namespace().clone();
        let ringing = ringing(&call, config);
        emit_to_users(
            &ns,
            None,
            users.iter().map(String::as_str),
            "call:ringing",
            &ringing,
        );
        let outgoing = CallOutgoing {
            call: &call.id,
            created_at: call.created_at,
            device,
            invitees: &users,
            kind: call.kind,
        };
        emit_to_users(
            &ns,
            Some(*socket.id()),
            [caller],
            "call:outgoing",
            &outgoing,
        );
        self.start_ring_timer(&ns, &call.id);
        // The caller may have left while the call was created: then its
        // disconnect found nothing to leave.
        if !socket.connected() {
            self.leave(&ns, &call.id, device, Leave::Disconnect, None)
                .await
                .ok();
        }
        reply(&CallPlaced {
            call: &call.id,
            created_at: call.created_at,
            invitees: &users,
            kind: call.kind,
            ring_timeout_ms: config.ring_timeout_ms,
        })
    }

    /// A device of `user` just connected (a new tab, a reload): it rings
    /// for every call still ringing for its user, as the user's other
    /// devices do.
    async fn ring_new_device(&self, socket: &Arc<Socket>, user: &str) {
        let ids = match self.state.calls_of_user(user).await {
            Ok(ids) => ids,
            Err(err) => {
                tracing::warn!(%err, "calls of a new device's user could not be read");
                return;
            }
        };
        for id in ids {
            let Ok(Some(call)) = self.state.get(&id).await else {
                continue;
            };
            let pending = call
                .invitees
                .iter()
                .any(|i| i.user == user && i.answer == Answer::Pending);
            if call.phase != Phase::Ended && pending {
                socket.emit("call:ringing", &Args::one(&ringing(&call, &self.config)));
            }
        }
    }

    fn start_ring_timer(self: &Arc<Self>, ns: &Arc<Namespace>, id: &str) {
        self.ring_timer_after(ns, id, Duration::from_millis(self.config.ring_timeout_ms));
    }

    /// Node `node` of the cluster stopped: its devices leave their calls
    /// (as if disconnected: the others are told), and the calls whose ring
    /// timer ran there ring out here when they were due to.
    async fn node_dropped(self: &Arc<Self>, node: &str) {
        let Some(ns) = self.name.get().and_then(|name| self.ctx.io.of(name)) else {
            return;
        };
        let orphans = match self.state.drop_node(node).await {
            Ok(orphans) => orphans,
            Err(err) => {
                tracing::warn!(%err, node, "the calls of a stopped node were not ended");
                return;
            }
        };
        for device in &orphans.devices {
            self.disconnected(&ns, device).await;
        }
        for id in &orphans.ringing {
            let Ok(Some(call)) = self.state.get(id).await else {
                continue;
            };
            let due = call
                .created_at
                .saturating_add(self.config.ring_timeout_ms as i64);
            let left = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
            self.ring_timer_after(&ns, id, Duration::from_millis(left));
        }
    }

    fn ring_timer_after(self: &Arc<Self>, ns: &Arc<Namespace>, id: &str, after: Duration) {
        let inner = Arc::downgrade(self);
        let ns: Weak<Namespace> = Arc::downgrade(ns);
        let id = id.to_owned();
        self.ctx.tasks.spawn(async move {
            tokio::time::sleep(after).await;
            let (Some(inner), Some(ns)) = (inner.upgrade(), ns.upgrade()) else {
                return;
            };
            inner.ring_timeout(&ns, &id).await;
        });
    }

    /// The ring timeout of call `id` passed: the ringing ends. A write
    /// the state refused (an error, or contention) is tried again, later
    /// and later, until it lands or the call is gone: no call rings
    /// forever, and none stays busy for its users.
    async fn ring_timeout(&self, ns: &Arc<Namespace>, id: &str) {
        let mut pause = RING_RETRY_FIRST;
        let (call, missed) = loop {
            match self.update(id, |call| Ok(call.ring_timeout())).await {
                Ok(done) => break done,
                // Ended before: nothing rings.
                Err(err) if err.code == "not_found" => return,
                Err(err) => {
                    tracing::warn!(%err, ?pause, "call ring timeout not written; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RING_RETRY_MAX);
                }
            }
        };
        if call.phase != Phase::Ended && !missed.is_empty() {
            let payload = CallUnanswered {
                call: &call.id,
                users: &missed,
            };
            emit_to_users(ns, None, call.involved(), "call:unanswered", &payload);
        }
        self.finish(ns, &call, missed, None);
    }

    /// After a write: tells everyone concerned (but `except`, the device
    /// whose ack says it) that the call ended, if it did, and who missed it
    /// (a notification each).
    fn finish(
        &self,
        ns: &Arc<Namespace>,
        call: &Call,
        missed: Vec<String>,
        except: Option<SocketId>,
    ) {
        if let Some(reason) = call.ended.filter(|_| call.phase == Phase::Ended) {
            let payload = CallEnded {
                call: &call.id,
                reason,
            };
            emit_to_users(ns, except, call.involved(), "call:ended", &payload);
        }
        if missed.is_empty() {
            return;
        }
        let notifications = self.ctx.notifications.clone();
        let new = NewNotification {
            kind: "call:missed".to_owned(),
            title: "Missed call".to_owned(),
            body: format!("{} called you", call.caller),
            data: json!({
                "call": call.id,
                "from": call.caller,
                "kind": call.kind,
                "created_at": call.created_at,
            }),
        };
        self.ctx.tasks.spawn(async move {
            if let Err(err) = notifications.create(&missed, &new).await {
                tracing::warn!(%err, "missed-call notification not stored");
            }
        });
    }

    async fn accept(&self, socket: &Arc<Socket>, user: &str, args: CallRef) -> Reply {
        check_id("call", &args.call)?;
        let device = socket.id().as_str();
        let max = self.config.max_participants;
        let (call, ()) = self
            .update(&args.call, |call| call.accept(user, device, max))
            .await?;
        let ns = socket.namespace().clone();
        for peer in call.participants.iter().filter(|p| p.device != device) {
            let payload = CallAccepted {
                call: &call.id,
                device,
                polite: call.polite(&peer.device, device),
                user,
            };
            to_device(&ns, &peer.device, "call:accepted", &payload);
        }
        let elsewhere = CallAnsweredElsewhere {
            call: &call.id,
            device,
        };
        emit_to_users(
            &ns,
            Some(*socket.id()),
            [user],
            "call:answered_elsewhere",
            &elsewhere,
        );
        if !socket.connected() {
            self.leave(&ns, &call.id, device, Leave::Disconnect, None)
                .await
                .ok();
        }
        let peers: Vec<Peer> = call
            .participants
            .iter()
            .filter(|p| p.device != device)
            .map(|p| Peer {
                user: &p.user,
                device: &p.device,
                polite: call.polite(device, &p.device),
            })
            .collect();
        reply(&CallJoined {
            call: &call.id,
            kind: call.kind,
            participants: peers,
        })
    }

    async fn decline(&self, socket: &Arc<Socket>, user: &str, args: CallRef) -> Reply {
        check_id("call", &args.call)?;
        let (call, missed) = self.update(&args.call, |call| call.decline(user)).await?;
        let ns = socket.namespace().clone();
        let payload = CallDeclined {
            call: &call.id,
            user,
        };
        let except = Some(*socket.id());
        emit_to_users(&ns, except, call.involved(), "call:declined", &payload);
        self.finish(&ns, &call, missed, except);
        reply(&CallOutcome {
            call: &call.id,
            ended: call.ended,
        })
    }

    /// `device` leaves call `id`; everyone concerned is told (but
    /// `except`, the device whose ack says it).
    async fn leave(
        &self,
        ns: &Arc<Namespace>,
        id: &str,
        device: &str,
        how: Leave,
        except: Option<SocketId>,
    ) -> Result<Call, HubError> {
        let mut user = String::new();
        let (call, missed) = self
            .update(id, |call| {
                user = call
                    .participant(device)
                    .map(|p| p.user.clone())
                    .unwrap_or_default();
                call.leave(device, how)
            })
            .await?;
        if call.phase != Phase::Ended {
            let reason = match how {
                Leave::Hangup => LeftReason::Hangup,
                Leave::Disconnect => LeftReason::Disconnected,
            };
            let payload = CallLeft {
                call: &call.id,
                device,
                reason,
                user: &user,
            };
            emit_to_users(ns, except, call.involved(), "call:left", &payload);
        }
        self.finish(ns, &call, missed, except);
        Ok(call)
    }

    async fn hangup(&self, socket: &Arc<Socket>, args: CallRef) -> Reply {
        check_id("call", &args.call)?;
        let ns = socket.namespace().clone();
        let call = self
            .leave(
                &ns,
                &args.call,
                socket.id().as_str(),
                Leave::Hangup,
                Some(*socket.id()),
            )
            .await?;
        reply(&CallOutcome {
            call: &call.id,
            ended: call.ended,
        })
    }

    async fn signal(&self, socket: &Arc<Socket>, user: &str, args: SignalArgs) -> Reply {
        check_id("call", &args.call)?;
        check_id("to", &args.to)?;
        let device = socket.id().as_str();
        if args.to == device {
            return Err(HubError::new(
                ErrorCode::BadRequest,
                "a device does not signal itself",
            ));
        }
        let Some(call) = self.state.get(&args.call).await.map_err(unavailable)? else {
            return Err(not_found());
        };
        if call.participant(device).is_none() {
            return Err(refused(Refusal::NotParticipant));
        }
        if call.participant(&args.to).is_none() {
            return Err(HubError::new(
                ErrorCode::Forbidden,
                "the recipient is not a participant of this call",
            ));
        }
        let out = Signal {
            call: &call.id,
            from: device,
            user,
            data: &args.data,
            polite: call.polite(&args.to, device),
        };
        to_device(socket.namespace(), &args.to, "signal", &out);
        Ok(Map::new())
    }

    fn ice_servers(&self, user: &str) -> Reply {
        let config = &self.config;
        let now = now_secs();
        let servers = ice_servers(
            &config.stun_urls,
            &config.turn_urls,
            &config.turn_secret,
            config.turn_ttl_secs,
            user,
            now,
        );
        reply(&IceServers {
            expires_at: now.saturating_add(config.turn_ttl_secs),
            ice_servers: servers,
            max_participants: config.max_participants,
            ttl_secs: config.turn_ttl_secs,
        })
    }

    /// A device left: it leaves every call it was in.
    async fn disconnected(&self, ns: &Arc<Namespace>, device: &str) {
        let ids = match self.state.calls_of_device(device).await {
            Ok(ids) => ids,
            Err(err) => {
                tracing::warn!(%err, "calls of a disconnected device");
                return;
            }
        };
        for id in ids {
            if let Err(err) = self.leave(ns, &id, device, Leave::Disconnect, None).await
                && err.code == "unavailable"
            {
                tracing::warn!(%err, "a disconnected device could not leave its call");
            }
        }
    }
}

/// What an invitee's devices get while `call` rings for them.
fn ringing<'a>(call: &'a Call, config: &CallsConfig) -> CallRinging<'a> {
    CallRinging {
        call: &call.id,
        created_at: call.created_at,
        from: &call.caller,
        invitees: call.invitees.iter().map(|i| i.user.as_str()).collect(),
        kind: call.kind,
        ring_timeout_ms: config.ring_timeout_ms,
    }
}

impl Component for Calls {
    type User = Identity;

    fn on_connected(&self, socket: &Arc<Socket>) {
        let Some(identity) = identity_of(socket) else {
            return;
        };
        let inner = self.inner.clone();
        let socket = socket.clone();
        self.inner.ctx.tasks.spawn(async move {
            inner.ring_new_device(&socket, &identity.user).await;
        });
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, _reason: DisconnectReason) {
        let inner = self.inner.clone();
        let ns = socket.namespace().clone();
        let device = socket.id().as_str().to_owned();
        self.inner.ctx.tasks.spawn(async move {
            inner.disconnected(&ns, &device).await;
        });
    }

    fn handle(
        &self,
        socket: &Arc<Socket>,
        user: Identity,
        event: &str,
        args: &Args,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let parsed = self.inner.parse(socket, &user.user, event, args);
        let inner = self.inner.clone();
        let socket = socket.clone();
        let user = user.user;
        async move {
            match parsed? {
                CallsEvent::Invite(args) => inner.invite(&socket, &user, args).await,
                CallsEvent::Accept(args) => inner.accept(&socket, &user, args).await,
                CallsEvent::Decline(args) => inner.decline(&socket, &user, args).await,
                CallsEvent::Hangup(args) => inner.hangup(&socket, args).await,
                CallsEvent::Signal(args) => inner.signal(&socket, &user, args).await,
                CallsEvent::IceServers => inner.ice_servers(&user),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketio::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::services::notifications::NotificationsConfig;
    use crate::services::presence::{MemoryState, PresenceService};
    use crate::store::testing::Scratch;

    /// The in-memory state, whose next `failures` writes fail (a Redis
    /// that is briefly down).
    struct Flaky {
        inner: MemoryCallState,
        failures: AtomicUsize,
    }

    impl CallState for Flaky {
        fn insert(&self, call: Call, max: usize) -> BoxFuture<Result<(), InsertError>> {
            self.inner.insert(call, max)
        }
        fn get(&self, id: &str) -> BoxFuture<Result<Option<Call>, StateError>> {
            self.inner.get(id)
        }
        fn compare_and_set(
            &self,
            expected: u64,
            next: Call,
        ) -> BoxFuture<Result<bool, StateError>> {
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Box::pin(std::future::ready(Err(StateError("down".into()))));
            }
            self.inner.compare_and_set(expected, next)
        }
        fn calls_of_device(&self, device: &str) -> BoxFuture<Result<Vec<String>, StateError>> {
            self.inner.calls_of_device(device)
        }
        fn calls_of_user(&self, user: &str) -> BoxFuture<Result<Vec<String>, StateError>> {
            self.inner.calls_of_user(user)
        }
        fn drop_node(&self, node: &str) -> BoxFuture<Result<Orphans, StateError>> {
            self.inner.drop_node(node)
        }
    }

    struct Silent;

    impl socketio::NamespaceHandler for Silent {
        fn on_event(
            &self,
            _socket: &Arc<Socket>,
            _event: socketio::Event,
        ) -> Option<BoxFuture<()>> {
            None
        }
    }

    #[tokio::test]
    async fn a_ring_timeout_the_state_refused_is_written_later_and_the_call_ends() {
        let scratch = Scratch::sqlite("calls-ring");
        let store = scratch.open(2, Duration::from_secs(5)).await;
        let io = socketio::SocketIo::new(Default::default());
        let ns = io.add_namespace("/calls", Silent);
        let ctx = Context {
            store: store.clone(),
            io: io.clone(),
            notifications: crate::services::notifications::Notifications::new(
                store.clone(),
                io.clone(),
                None,
                NotificationsConfig::default(),
            ),
            presence: PresenceService::new(Arc::new(MemoryState::new(4)), store.clone()),
            tasks: crate::tasks::Tasks::new(),
            peers: Default::default(),
            shared_rates: None,
        };
        let flaky = Arc::new(Flaky {
            inner: MemoryCallState::new(),
            failures: AtomicUsize::new(0),
        });
        let calls = Calls::with_state(ctx.clone(), CallsConfig::default(), flaky.clone());
        let invitees = vec!["bob".to_owned()];
        let call = Call::new("c1".into(), "alice", "a1", Kind::Audio, &invitees, 0);
        flaky.inner.insert(call, 4).await.unwrap();
        // The state fails the timeout's first writes.
        flaky.failures.store(3, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(10), calls.inner.ring_timeout(&ns, "c1"))
            .await
            .expect("the ring timeout finishes once the state answers");
        assert_eq!(flaky.failures.load(Ordering::SeqCst), 0);
        assert!(flaky.inner.is_empty(), "the call ended");
        assert!(flaky.inner.calls_of_user("bob").await.unwrap().is_empty());
        ctx.tasks.shutdown(Duration::from_secs(5)).await;
        store.close().await;
    }
}
