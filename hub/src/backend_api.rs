//! What backend services ask of the hub through the publish API: an event
//! for users, rooms or a whole namespace; disconnecting a user; counting a
//! room; presence. This module validates requests and carries them out on the
//! Socket.IO server; the HTTP layer (status codes, keys, limits) is the
//! binary's. A publish and a notification say what they cost
//! ([`PublishRequest::recipients`], [`NotificationRequest::recipients`]),
//! and are carried out only once the caller's `admit` took that cost,
//! after they were found valid and before anything is stored or sent: the
//! binary's per-key rate.
//!
//! In a cluster, what is counted (sockets reached, disconnected, in a
//! room, of a user) is counted on every node: this node's at once, the others' by
//! asking them ([`Peers::tally`]), all the emits' questions at once; an
//! answer that lacks a node says so ([`Tally`]: how many did not answer,
//! which by name). Alone, nobody is asked.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use socketio::{Args, BroadcastOperator, Namespace, SocketIo};

use crate::auth::user_room;
use crate::error::{ErrorCode, HubError};
use crate::peers::{Peers, Tally};
use crate::services::notifications::{NewNotification, Notifications};

/// Longest event name accepted, in bytes (UTF-8).
const MAX_EVENT_LEN: usize = 128;

/// `POST /api/v1/publish`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The event name clients receive: 1 to 128 bytes of UTF-8, not a
    /// reserved Socket.IO name.
    #[schema(min_length = 1, max_length = 128)]
    pub event: String,
    /// The event's argument: any JSON (default: null).
    #[serde(default)]
    pub data: Value,
    /// Users to reach (every socket of each, in the chosen namespaces).
    #[serde(default)]
    pub users: Vec<String>,
    /// Rooms to reach; their members get `{room, data}`.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Every socket of the namespace (requires `namespace`).
    #[serde(default)]
    pub broadcast: bool,
    /// Only this namespace; all namespaces when absent (not with
    /// `broadcast`). Never a namespace of the hub's components
    /// (`/notifications`, `/chat`, `/presence`, `/calls`): their clients
    /// trust what arrives there to come from the component, so a publish
    /// naming one is refused (`reserved_namespace`, 403) and one naming
    /// none skips them. Notifications are created with `persist` (or
    /// `POST /api/v1/notifications`).
    pub namespace: Option<String>,
    /// Also store a notification for each of `users` (not with `rooms` or
    /// `broadcast`), of `type` (default: `event`) with `title`, `body` and
    /// `data`, sent on `/notifications` as `notification` `{notification,
    /// unread}` — in place of `event`, which the user's other namespaces
    /// still get.
    #[serde(default)]
    pub persist: bool,
    /// With `persist`: the notification's type (default: `event`).
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 64)]
    pub kind: Option<String>,
    /// With `persist` (required): the notification's title.
    #[schema(min_length = 1, max_length = 256)]
    pub title: Option<String>,
    /// With `persist`: the notification's body (default: empty).
    #[schema(max_length = 4000)]
    pub body: Option<String>,
}

/// `POST /api/v1/notifications`: one notification, stored for each user
/// (a user named twice gets one) and sent to their devices.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRequest {
    /// The users (at most `notifications.max_users_per_request`, 10,000 by
    /// default).
    #[schema(min_items = 1, max_items = 10000)]
    pub users: Vec<String>,
    /// What it is about (`invoice:paid`, …).
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 64)]
    pub kind: String,
    #[schema(min_length = 1, max_length = 256)]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub body: String,
    /// Anything the client needs to act on it: any JSON (default: null),
    /// at most `notifications.max_data_bytes` once serialized.
    #[serde(default)]
    pub data: Value,
}

impl PublishRequest {
    /// What this publish costs its key's rate: one per user and room it
    /// names (with `persist`, one per notification stored; without, one
    /// emit per user room or room), one for a broadcast.
    pub fn recipients(&self) -> usize {
        (self.users.len() + self.rooms.len()).max(1)
    }
}

impl NotificationRequest {
    /// What this request costs its key's rate: one per user named (a
    /// notification stored for each).
    pub fn recipients(&self) -> usize {
        self.users.len().max(1)
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Sockets reached, on every node that answered.
    pub delivered: usize,
    /// Notifications stored (`persist`).
    pub stored: Option<usize>,
    /// In a cluster, when a node did not say how many of its sockets it
    /// reached: who (the count is of those that did).
    pub incomplete: Option<Tally>,
}

/// A count on every node that answered, and who did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub count: usize,
    /// In a cluster, when a node did not answer.
    pub incomplete: Option<Tally>,
}

/// The emits of one publish, as the other nodes are asked about them: a
/// namespace and the rooms of one emit (every socket when empty). Alone
/// (nobody to ask) nothing is kept, nor built: one node pays nothing for
/// the cluster's counts.
struct Targets {
    wanted: bool,
    list: Vec<(String, Vec<String>)>,
}

impl Targets {
    fn for_(peers: &Peers) -> Targets {
        Targets {
            wanted: peers.others().is_some(),
            list: Vec::new(),
        }
    }

    /// Keeps the emit `target` describes, in a cluster.
    fn push(&mut self, target: impl FnOnce() -> (String, Vec<String>)) {
        if self.wanted {
            self.list.push(target());
        }
    }
}

/// `local` plus what the other nodes say of `targets` (asked, and with
/// `disconnect` disconnected, only in a cluster).
async fn everywhere(peers: &Peers, local: usize, targets: Targets, disconnect: bool) -> Counted {
    if !targets.wanted {
        return Counted {
            count: local,
            incomplete: None,
        };
    }
    match peers.tally(targets.list, disconnect).await {
        Some(tally) => Counted {
            count: local + tally.count,
            incomplete: (!tally.is_complete()).then_some(tally),
        },
        None => Counted {
            count: local,
            incomplete: None,
        },
    }
}

/// `POST /api/v1/disconnect`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    /// The user id.
    #[schema(min_length = 1)]
    pub user: String,
}

fn invalid(message: impl Into<String>) -> HubError {
    HubError::new(ErrorCode::InvalidRequest, message)
}

/// Refuses a publish into a namespace served by one of the hub's
/// components (`components`): a backend must not speak for the
/// component there (a `message` in `/chat`, a `call:ringing` in
/// `/calls`). `allowed` is the one that may be named anyway (the
/// notifications namespace with `persist`, which publishes nothing
/// there itself).
fn refuse_component(
    components: &[String],
    request: &PublishRequest,
    allowed: Option<&str>,
) -> Result<(), HubError> {
    match request.namespace.as_deref() {
        Some(name) if components.iter().any(|c| c == name) && Some(name) != allowed => {
            Err(HubError::new(
                ErrorCode::ReservedNamespace,
                format!(
                    "{name:?} is served by a hub component: only the component emits there \
                     (notifications: persist, or POST /api/v1/notifications)"
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The namespaces a request addresses.
fn namespaces(io: &SocketIo, name: Option<&str>) -> Result<Vec<Arc<Namespace>>, HubError> {
    match name {
        Some(name) => io.of(name).map(|ns| vec![ns]).ok_or_else(|| {
            HubError::new(
                ErrorCode::UnknownNamespace,
                format!("no namespace {name:?}"),
            )
        }),
        None => Ok(io.namespaces()),
    }
}

/// Checks and carries out a publish; with `persist`, stores the
/// notifications first (nothing is published if that fails).
///
/// `components` are the namespaces of the hub's components: refused when
/// named, skipped otherwise (see [`PublishRequest::namespace`]). `admit`
/// is given the publish's cost ([`PublishRequest::recipients`]) once it is
/// found valid; its refusal is the answer, and nothing is done.
pub async fn publish_persisted<E: From<HubError>, A: Future<Output = Result<(), E>>>(
    io: &SocketIo,
    notifications: &Notifications,
    components: &[String],
    peers: &Peers,
    request: &PublishRequest,
    admit: impl FnOnce(usize) -> A,
) -> Result<Published, E> {
    let mut targets = Targets::for_(peers);
    if !request.persist {
        if request.kind.is_some() || request.title.is_some() || request.body.is_some() {
            return Err(invalid("type, title and body need persist: true").into());
        }
        refuse_component(components, request, None)?;
        check(io, request)?;
        admit(request.recipients()).await?;
        let local = emit(io, request, components, &mut targets)?;
        let counted = everywhere(peers, local, targets, false).await;
        return Ok(Published {
            delivered: counted.count,
            stored: None,
            incomplete: counted.incomplete,
        });
    }
    let skip = notifications.namespace_name();
    refuse_component(components, request, skip.as_deref())?;
    if !request.rooms.is_empty() || request.broadcast || request.users.is_empty() {
        return Err(invalid("persist needs users (not rooms or broadcast)").into());
    }
    let Some(title) = &request.title else {
        return Err(invalid("persist needs a title").into());
    };
    let new = NewNotification {
        kind: request
            .kind
            .clone()
            .unwrap_or_else(|| request.event.clone()),
        title: title.clone(),
        body: request.body.clone().unwrap_or_default(),
        data: request.data.clone(),
    };
    notifications.check(&request.users, &new).map_err(invalid)?;
    // Checked before anything is stored: a refused publish stores nothing.
    check(io, request)?;
    admit(request.recipients()).await?;
    let created = notifications.create(&request.users, &new).await?;
    let mut local = emit(io, request, components, &mut targets)?;
    let users = created.iter().map(|(user, _, _)| user);
    local += delivered_to(io, notifications, users, &mut targets);
    let counted = everywhere(peers, local, targets, false).await;
    Ok(Published {
        delivered: counted.count,
        stored: Some(created.len()),
        incomplete: counted.incomplete,
    })
}

/// Stores one notification for each user of `request` and sends it to
/// their devices. `admit` is given the request's cost
/// ([`NotificationRequest::recipients`]) once it is found valid; its
/// refusal is the answer, and nothing is stored.
///
/// Any user id is taken, whether or not that user ever signed in: the
/// users are the identity provider's, which the hub does not ask, and a
/// user who has not connected yet must find their notifications when they
/// do. The key's rate bounds what a caller may store this way.
pub async fn notify<E: From<HubError>, A: Future<Output = Result<(), E>>>(
    io: &SocketIo,
    notifications: &Notifications,
    peers: &Peers,
    request: &NotificationRequest,
    admit: impl FnOnce(usize) -> A,
) -> Result<Published, E> {
    let new = NewNotification {
        kind: request.kind.clone(),
        title: request.title.clone(),
        body: request.body.clone(),
        data: request.data.clone(),
    };
    notifications.check(&request.users, &new).map_err(invalid)?;
    admit(request.recipients()).await?;
    let created = notifications.create(&request.users, &new).await?;
    let mut targets = Targets::for_(peers);
    let users = created.iter().map(|(user, _, _)| user);
    let local = delivered_to(io, notifications, users, &mut targets);
    let counted = everywhere(peers, local, targets, false).await;
    Ok(Published {
        delivered: counted.count,
        stored: Some(created.len()),
        incomplete: counted.incomplete,
    })
}

/// Sockets of `users` on the notifications namespace on this node; the
/// same question for the other nodes goes to `targets` (one per user:
/// each got their own notification).
fn delivered_to<'a>(
    io: &SocketIo,
    notifications: &Notifications,
    users: impl Iterator<Item = &'a String>,
    targets: &mut Targets,
) -> usize {
    let Some(ns) = notifications.namespace_name().and_then(|name| io.of(&name)) else {
        return 0;
    };
    users
        .map(|user| {
            let room = user_room(user);
            let here = ns.to(room.as_str()).sockets().len();
            targets.push(|| (ns.name().to_owned(), vec![room]));
            here
        })
        .sum()
}

/// Why `request` cannot be published, if it cannot.
fn check(io: &SocketIo, request: &PublishRequest) -> Result<(), HubError> {
    if request.event.is_empty() || request.event.len() > MAX_EVENT_LEN {
        return Err(invalid(format!("event must be 1 to {MAX_EVENT_LEN} bytes")));
    }
    if socketio::packet::RESERVED_EVENTS.contains(&request.event.as_str()) {
        return Err(invalid(format!(
            "{:?} is a reserved event name",
            request.event
        )));
    }
    if request.users.is_empty() && request.rooms.is_empty() && !request.broadcast {
        return Err(invalid("name users, rooms, or broadcast: true"));
    }
    if request.broadcast && request.namespace.is_none() {
        return Err(invalid("broadcast needs a namespace"));
    }
    if request
        .users
        .iter()
        .chain(&request.rooms)
        .any(|s| s.is_empty())
    {
        return Err(invalid("user and room ids must not be empty"));
    }
    namespaces(io, request.namespace.as_deref())?;
    Ok(())
}

/// Carries out a publish [`check`] found valid in every namespace it
/// names but those of `skip` (the components'); returns how many sockets
/// it reached on this node, and puts each emit's namespace and rooms in
/// `targets` (to ask the other nodes the same).
fn emit(
    io: &SocketIo,
    request: &PublishRequest,
    skip: &[String],
    targets: &mut Targets,
) -> Result<usize, HubError> {
    let mut delivered = 0;
    for ns in namespaces(io, request.namespace.as_deref())? {
        if skip.iter().any(|name| name == ns.name()) {
            continue;
        }
        if request.broadcast {
            delivered += ns
                .broadcast()
                .emit(&request.event, &Args::one(&request.data))
                .recipients();
            targets.push(|| (ns.name().to_owned(), Vec::new()));
            continue;
        }
        if !request.users.is_empty() {
            let mut op: Option<BroadcastOperator> = None;
            for user in &request.users {
                let room = user_room(user);
                op = Some(match op {
                    Some(op) => op.to(room),
                    None => ns.to(room),
                });
            }
            if let Some(op) = op {
                delivered += op
                    .emit(&request.event, &Args::one(&request.data))
                    .recipients();
            }
            let users = || request.users.iter().map(|u| user_room(u)).collect();
            targets.push(|| (ns.name().to_owned(), users()));
        }
        for room in &request.rooms {
            let envelope = json!({"room": room, "data": &request.data});
            delivered += ns
                .to(room.as_str())
                .emit(&request.event, &Args::one(&envelope))
                .recipients();
            targets.push(|| (ns.name().to_owned(), vec![room.clone()]));
        }
    }
    Ok(delivered)
}

/// Disconnects every socket of a user, in every namespace, on every
/// node; returns how many.
pub async fn disconnect_user(
    io: &SocketIo,
    peers: &Peers,
    request: &DisconnectRequest,
) -> Result<Counted, HubError> {
    if request.user.is_empty() {
        return Err(invalid("user must not be empty"));
    }
    let room = user_room(&request.user);
    let mut count = 0;
    let mut targets = Targets::for_(peers);
    for ns in io.namespaces() {
        let sockets = ns.to(room.as_str()).sockets();
        count += sockets.len();
        for socket in sockets {
            socket.disconnect();
        }
        targets.push(|| (ns.name().to_owned(), vec![room.clone()]));
    }
    Ok(everywhere(peers, count, targets, true).await)
}

/// Sockets in `room` (in one namespace, or all), on every node.
pub async fn room_size(
    io: &SocketIo,
    peers: &Peers,
    room: &str,
    namespace: Option<&str>,
) -> Result<Counted, HubError> {
    let mut count = 0;
    let mut targets = Targets::for_(peers);
    for ns in namespaces(io, namespace)? {
        count += ns.to(room).sockets().len();
        targets.push(|| (ns.name().to_owned(), vec![room.to_owned()]));
    }
    Ok(everywhere(peers, count, targets, false).await)
}

/// Most users one presence request may ask about.
pub const MAX_PRESENCE_USERS: usize = 100;

/// What `GET /api/v1/presence` tells of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceReport {
    /// The user's presence, from the `/presence` component's state (the
    /// same the watchers see).
    pub presence: crate::services::presence::UserPresence,
    /// Sockets the user has connected, every namespace together, on every
    /// node that answered.
    pub sockets: usize,
}

/// What `GET /api/v1/presence` tells: each user's report, in the order
/// asked, and whether every node counted its sockets.
#[derive(Debug, Clone, PartialEq)]
pub struct Presences {
    pub users: Vec<PresenceReport>,
    /// In a cluster, when a node did not say how many sockets of these
    /// users it has: who (the counts are of those that did).
    pub incomplete: Option<Tally>,
}

/// Each user's presence (status, devices, last_seen, from the presence
/// state and the store) and their sockets in every namespace: this node's,
/// and in a cluster the other nodes' (one question per namespace for every
/// user together, asked while the presence is looked up).
pub async fn presence(
    io: &SocketIo,
    service: &crate::services::presence::PresenceService,
    peers: &Peers,
    users: &[String],
) -> Result<Presences, HubError> {
    if users.is_empty() || users.len() > MAX_PRESENCE_USERS {
        return Err(invalid(format!(
            "ask about 1 to {MAX_PRESENCE_USERS} users"
        )));
    }
    if users.iter().any(String::is_empty) {
        return Err(invalid("user ids must not be empty"));
    }
    let namespaces = io.namespaces();
    let elsewhere = async {
        if peers.others().is_none() {
            return Ok(None);
        }
        let names = namespaces.iter().map(|ns| ns.name().to_owned()).collect();
        let rooms = users.iter().map(|user| user_room(user)).collect();
        Ok::<_, HubError>(peers.sizes(names, rooms).await)
    };
    let (presence, elsewhere) = tokio::try_join!(service.lookup(users), elsewhere)?;
    let users = presence
        .into_iter()
        .map(|presence| {
            let room = user_room(&presence.user);
            let here: usize = namespaces
                .iter()
                .map(|ns| ns.to(room.as_str()).sockets().len())
                .sum();
            let there = elsewhere
                .as_ref()
                .and_then(|sizes| sizes.rooms.get(&room).copied())
                .unwrap_or(0);
            PresenceReport {
                presence,
                sockets: here + there,
            }
        })
        .collect();
    let incomplete = elsewhere
        .map(|sizes| sizes.tally)
        .filter(|tally| !tally.is_complete());
    Ok(Presences { users, incomplete })
}
