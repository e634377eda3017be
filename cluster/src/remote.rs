//! Requests between nodes (the wire is [`crate::request`]'s): this node
//! serving what the others — Switchboard or Node nodes, an emitter — ask
//! of its sockets, and asking them, within `request_timeout`, with an
//! answer that says when it is partial.
//!
//! Serving runs on the subscriber connection's task as the request is
//! read, as delivery does: it only reads this node's rooms and queues
//! frames and answers (never waits), but for a broadcast with acks, whose
//! clients' acks are awaited on a task of their own.
//!
//! How many answers to wait for is what Redis says when the request is
//! published: PUBLISH returns how many connections are subscribed to the
//! namespace's request channel — one per node, this one included — which
//! is the count the Node adapter asks with PUBSUB NUMSUB, taken at the
//! very moment the request goes out. A node that died (SIGKILL) has lost
//! its connections, so it is not counted; a frozen one (SIGSTOP) is
//! counted but never answers: the heartbeats (`nodes`) tell it, and
//! the request stops waiting for it once it is taken for dead, naming it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use socketio::{Adapter, Args, BroadcastOptions, LocalAdapter, Namespace, Room, Socket, SocketId};
use tokio::sync::mpsc;

use crate::bus::{Cluster, Shared, new_uid};
use crate::publisher::timed;
use crate::request::{
    self, Acked, ClientCount, Fetched, FetchedSocket, Nothing, Request, RequestBody, Response,
    Rooms, SocketIds, Target, kind,
};
use crate::sharded;

/// What the other nodes answered, with how complete it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// This node's part and every answer received.
    pub value: T,
    /// The other nodes asked: the connections subscribed to the
    /// namespace's request channel when the request went out, this node's
    /// excluded. `None` when it could not be sent (see `error`).
    pub asked: Option<usize>,
    /// How many of them answered within `cluster.request_timeout_ms`.
    pub answered: usize,
    /// The answering nodes that said who they are (Switchboard nodes do;
    /// Node nodes do not).
    pub answered_by: Vec<String>,
    /// The Switchboard nodes known by their heartbeats (alive when asked,
    /// or dead but still subscribed: frozen) that did not answer. A Node
    /// node that did not answer is only counted (`asked` − `answered`).
    pub missing: Vec<String>,
    /// Why the request could not be sent (Redis down), if so.
    pub error: Option<String>,
}

impl<T> Answer<T> {
    /// Every node asked answered.
    pub fn is_complete(&self) -> bool {
        self.error.is_none() && self.asked == Some(self.answered)
    }

    /// How many nodes did not answer (unknown when the request was not sent).
    pub fn unanswered(&self) -> Option<usize> {
        self.asked.map(|asked| asked.saturating_sub(self.answered))
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer {
            value: f(self.value),
            asked: self.asked,
            answered: self.answered,
            answered_by: self.answered_by,
            missing: self.missing,
            error: self.error,
        }
    }
}

/// A socket of any node, as REMOTE_FETCH describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    /// Its Socket.IO id.
    pub id: String,
    /// Its rooms, its own id first (as Node lists them).
    pub rooms: Vec<String>,
    /// Node's `socket.data` (Switchboard's: what
    /// [`Cluster::set_socket_data`] gives, `{}` by default).
    pub data: serde_json::Value,
    /// Node's `socket.handshake` (Switchboard's: `url`, `query`, `auth`,
    /// and empty `headers`).
    pub handshake: serde_json::Value,
}

/// An event another node emitted to the servers (`serverSideEmit`).
#[derive(Debug)]
pub struct ServerSideEvent {
    /// The namespace it was emitted in.
    pub namespace: String,
    /// The event name.
    pub event: String,
    /// Its arguments.
    pub args: Args,
    /// The asking node waits for this node's ack (`serverSideEmitWithAck`).
    pub reply: Option<Reply>,
}

/// Answers a server-side emit that wants an ack; dropping it unanswered
/// leaves the asker waiting until its timeout (as a Node node with no
/// listener does).
#[derive(Debug)]
pub struct Reply {
    shared: Weak<Shared>,
    nsp: String,
    channel: String,
    request_id: String,
}

impl Reply {
    /// Sends the ack: one JSON value.
    pub fn send(self, value: &RawValue) {
        if let Some(shared) = self.shared.upgrade() {
            let payload = if shared.config.sharded() {
                sharded::server_side_emit_response(&shared.uid, &self.nsp, &self.request_id, value)
            } else {
                request::response(
                    Some(kind::SERVER_SIDE_EMIT),
                    &self.request_id,
                    &shared.uid,
                    Acked { data: value },
                )
            };
            shared.publish_raw(self.channel, payload);
        }
    }
}

type ServerSideHandler = dyn Fn(ServerSideEvent) + Send + Sync;
type SocketData = dyn Fn(&Socket) -> Option<serde_json::Value> + Send + Sync;
type NodeDropped = dyn Fn(&str) + Send + Sync;
type Rejoined = dyn Fn(Rejoin) -> socketio::BoxFuture<()> + Send + Sync;

/// Why this node closes its clients so that they recover
/// ([`Cluster::on_rejoin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejoin {
    /// How long since this node's last heartbeat reached Redis.
    pub silent: std::time::Duration,
    /// Silent past `heartbeat_timeout`: the others may have dropped this
    /// node and ended the live state it held (presence, typing, calls).
    /// False when only its subscription was cut for a while: the others
    /// still count it, but it may have missed what they published.
    pub dropped: bool,
}

/// What the application plugs in.
#[derive(Default)]
pub(crate) struct Hooks {
    server_side: Option<Arc<ServerSideHandler>>,
    socket_data: Option<Arc<SocketData>>,
    pub(crate) node_dropped: Option<Arc<NodeDropped>>,
    pub(crate) rejoined: Option<Arc<Rejoined>>,
}

/// This node's requests waiting for answers, by request id. The channel
/// is unbounded because what it holds is bounded otherwise: one answer
/// per node (each at most `max_message_bytes`), and only while the
/// request waits.
pub(crate) type Pending = Mutex<HashMap<String, mpsc::UnboundedSender<Response>>>;

/// Takes a request out of the pending table however its wait ends (the
/// asking future may be dropped).
struct Waiting<'a> {
    pending: &'a Pending,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

/// The answers one request collected.
struct Collected {
    responses: Vec<Response>,
    asked: Option<usize>,
    /// The Switchboard nodes known (alive, or frozen) that did not answer.
    missing: Vec<String>,
    error: Option<String>,
}

impl Collected {
    fn answer<T>(&self, shared: &Shared, value: T) -> Answer<T> {
        let answer = Answer {
            value,
            asked: self.asked,
            answered: self.responses.len(),
            answered_by: self
                .responses
                .iter()
                .filter_map(|r| r.uid.clone())
                .collect(),
            missing: self.missing.clone(),
            error: self.error.clone(),
        };
        if !answer.is_complete() {
            shared.stats.requests_incomplete.fetch_add(1, Relaxed);
        }
        answer
    }
}

impl Shared {
    /// A message on a request or response channel (not a broadcast).
    pub(crate) fn on_channel_message(self: &Arc<Self>, channel: &str, message: Bytes) {
        if message.len() > self.config.max_message_bytes {
            self.stats.received_too_large.fetch_add(1, Relaxed);
            return;
        }
        let prefix = &self.config.key_prefix;
        if channel == crate::nodes::heartbeat_channel(prefix) {
            return self.on_heartbeat(&message);
        }
        if let Some(token) = message.strip_prefix(crate::recovery::MARKER_PREFIX.as_bytes()) {
            // A restore's marker, on this node's response channel.
            if let (Some(store), Ok(token)) = (self.recovery.get(), std::str::from_utf8(token)) {
                store.on_marker(token);
            }
            return;
        }
        if let Some(rest) = channel
            .strip_prefix(prefix.as_str())
            .and_then(|c| c.strip_prefix("-request#"))
        {
            if let Some(nsp) = rest.strip_suffix('#') {
                self.on_request(nsp, &message);
            }
        } else if channel
            .strip_prefix(prefix.as_str())
            .is_some_and(|c| c.starts_with("-response#"))
        {
            self.on_response(&message);
        }
    }

    fn on_request(self: &Arc<Self>, nsp: &str, message: &Bytes) {
        let Some((ns, local)) = self.receiver(nsp) else {
            return;
        };
        let request = match request::parse_request(message, nsp) {
            Ok(request) => request,
            Err(err) => return self.malformed_request(&err, nsp),
        };
        if request.uid.as_deref() == Some(self.uid.as_str()) {
            // Its own, back from Redis: applied (or answered) already.
            return;
        }
        self.stats.requests_served.fetch_add(1, Relaxed);
        self.serve(&ns, &local, request);
    }

    /// A request read from a shard channel (sharded mode).
    pub(crate) fn on_shard_request(self: &Arc<Self>, nsp: &str, request: Request) {
        let Some((ns, local)) = self.receiver(nsp) else {
            return;
        };
        self.stats.requests_served.fetch_add(1, Relaxed);
        self.serve(&ns, &local, request);
    }

    /// An answer read from a shard channel (sharded mode).
    pub(crate) fn on_shard_response(&self, request_id: &str, response: Response) {
        if let Some(waiter) = self.pending.lock().get(request_id).cloned() {
            let _ = waiter.send(response);
        }
    }

    /// Where requests and server-side emits of namespace `nsp` go: its
    /// request channel, or in sharded mode its channel.
    pub(crate) fn request_channel(&self, nsp: &str) -> String {
        let prefix = &self.config.key_prefix;
        if self.config.sharded() {
            sharded::channel_of(prefix, nsp)
        } else {
            request::request_channel(prefix, nsp)
        }
    }

    fn malformed_request(&self, err: &dyn std::fmt::Display, nsp: &str) {
        self.stats.requests_malformed.fetch_add(1, Relaxed);
        if let Some(held) = self.malformed_log.check() {
            tracing::warn!(%err, namespace = nsp, also_refused = held, "malformed bus request ignored");
        }
    }

    /// Where the asker reads its answers: its own response channel (a Node
    /// node reads it too), or the shared one when it did not say who it is.
    fn answer_channel(&self, nsp: &str, request: &Request) -> String {
        let prefix = &self.config.key_prefix;
        match &request.uid {
            Some(uid) if self.config.sharded() => sharded::response_channel(prefix, nsp, uid),
            Some(uid) => request::own_response_channel(prefix, nsp, uid),
            None => request::response_channel(prefix, nsp),
        }
    }

    /// Publishes an answer, if the request waits for one.
    fn answer(&self, nsp: &str, request: &Request, kind: Option<u64>, body: impl serde::Serialize) {
        if let Some(id) = &request.request_id {
            let payload = request::response(kind, id, &self.uid, body);
            self.publish_raw(self.answer_channel(nsp, request), payload);
        }
    }

    fn serve(self: &Arc<Self>, ns: &Arc<Namespace>, local: &LocalAdapter, request: Request) {
        let nsp = ns.name();
        match &request.body {
            RequestBody::Sockets { rooms } => {
                let opts = BroadcastOptions {
                    rooms: rooms.clone(),
                    ..Default::default()
                };
                let sockets = local.sockets(ns, &opts);
                let ids = sockets.iter().map(|s| s.id().as_str()).collect();
                self.answer(nsp, &request, None, SocketIds { sockets: ids });
            }
            RequestBody::AllRooms => {
                let rooms = all_rooms_here(ns, local);
                let names = rooms.iter().map(|r| &**r).collect();
                self.answer(nsp, &request, None, Rooms { rooms: names });
            }
            RequestBody::Join { target, rooms } => {
                if let Some(sockets) = targets(ns, local, target) {
                    for socket in sockets {
                        socket.join_all(rooms);
                    }
                    self.answer_one(nsp, &request, target);
                }
            }
            RequestBody::Leave { target, rooms } => {
                if let Some(sockets) = targets(ns, local, target) {
                    for socket in sockets {
                        rooms.iter().for_each(|room| socket.leave(room));
                    }
                    self.answer_one(nsp, &request, target);
                }
            }
            RequestBody::Disconnect { target, close } => {
                if let Some(sockets) = targets(ns, local, target) {
                    disconnect(&sockets, *close);
                    self.answer_one(nsp, &request, target);
                }
            }
            RequestBody::Fetch { opts } => {
                let sockets = local.sockets(ns, opts);
                let described: Vec<FetchedSocket> =
                    sockets.iter().map(|s| self.describe(s)).collect();
                if !self.config.sharded() {
                    self.answer(nsp, &request, None, Fetched { sockets: described });
                } else if let Some(id) = &request.request_id {
                    let payload = sharded::fetch_response(&self.uid, nsp, id, &described);
                    self.publish_raw(self.answer_channel(nsp, &request), payload);
                }
            }
            RequestBody::ServerSideEmit { event, args } => {
                let handler = self.hooks.read().server_side.clone();
                let Some(handler) = handler else { return };
                let reply = request.request_id.clone().map(|request_id| Reply {
                    shared: Arc::downgrade(self),
                    nsp: nsp.to_owned(),
                    channel: self.answer_channel(nsp, &request),
                    request_id,
                });
                handler(ServerSideEvent {
                    namespace: nsp.to_owned(),
                    event: event.clone(),
                    args: args.clone(),
                    reply,
                });
            }
            RequestBody::Broadcast { .. } => self.broadcast_with_acks(ns, local, &request),
            RequestBody::Unknown(kind) => {
                tracing::debug!(
                    kind,
                    namespace = nsp,
                    "bus request of an unknown type ignored"
                );
            }
        }
    }

    /// The older one-socket form of join, leave and disconnect is answered
    /// (`{requestId}`) when this node has the socket; the matching form
    /// never is.
    fn answer_one(&self, nsp: &str, request: &Request, target: &Target) {
        if matches!(target, Target::Socket(_)) {
            self.answer(nsp, request, None, Nothing {});
        }
    }

    /// A Node node's `io.timeout(ms).emit(…, callback)`: the matching
    /// clients of this node get the event with an ack id each; their
    /// count, then each ack (its first argument), go back to the asker.
    fn broadcast_with_acks(
        self: &Arc<Self>,
        ns: &Arc<Namespace>,
        local: &LocalAdapter,
        request: &Request,
    ) {
        let RequestBody::Broadcast {
            event,
            args,
            opts,
            timeout,
        } = &request.body
        else {
            return;
        };
        let Some(request_id) = request.request_id.clone() else {
            return;
        };
        let sockets = local.sockets(ns, opts);
        let channel = self.answer_channel(ns.name(), request);
        let nsp = ns.name().to_owned();
        let count = if self.config.sharded() {
            sharded::client_count(&self.uid, &nsp, &request_id, sockets.len())
        } else {
            request::response(
                Some(kind::BROADCAST_CLIENT_COUNT),
                &request_id,
                &self.uid,
                ClientCount {
                    client_count: sockets.len(),
                },
            )
        };
        self.publish_raw(channel.clone(), count);
        ns.stats().events_out.add(event, sockets.len() as u64);
        let mut acks: FuturesUnordered<_> = sockets
            .iter()
            .map(|socket| socket.emit_with_ack(event, args, *timeout))
            .collect();
        let shared = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(result) = acks.next().await {
                let (Ok(args), Some(shared)) = (result, shared.upgrade()) else {
                    continue;
                };
                let ack = if shared.config.sharded() {
                    sharded::broadcast_ack(&shared.uid, &nsp, &request_id, &args)
                } else {
                    request::broadcast_ack(&request_id, &args)
                };
                shared.publish_raw(channel.clone(), ack);
            }
        });
    }

    /// A socket of this node as REMOTE_FETCH describes it.
    fn describe(&self, socket: &Socket) -> FetchedSocket {
        let id = socket.id().as_str().to_owned();
        let mut rooms = vec![id.clone()];
        rooms.extend(socket.rooms().iter().map(|r| r.to_string()));
        let data = self.hooks.read().socket_data.clone();
        let data = data
            .and_then(|f| f(socket))
            .unwrap_or_else(|| serde_json::json!({}));
        let query = socket.handshake_query();
        let auth: serde_json::Value =
            serde_json::from_str(socket.auth().get()).unwrap_or(serde_json::Value::Null);
        FetchedSocket {
            id,
            handshake: serde_json::json!({
                "headers": {},
                "url": format!("/socket.io/?{query}"),
                "query": query_object(query),
                "auth": auth,
            }),
            rooms,
            data,
        }
    }

    fn on_response(&self, message: &Bytes) {
        let Some(id) = request::response_id(message) else {
            return;
        };
        let Some(waiter) = self.pending.lock().get(&id).cloned() else {
            // Another node's (the shared response channel carries all).
            return;
        };
        match request::parse_response(message) {
            Ok(response) => {
                let _ = waiter.send(response);
            }
            Err(err) => self.malformed_request(&err, "(response)"),
        }
    }

    /// Publishes a request on namespace `nsp`'s request channel and
    /// collects the answers of the nodes subscribed to it, until each has
    /// answered, the ones left are known not to answer (dead by heartbeats
    /// but still subscribed: frozen), or `request_timeout` has passed.
    async fn ask(&self, nsp: &str, build: impl FnOnce(&str) -> Vec<u8>) -> Collected {
        let id = format!("{}{}", self.uid, new_uid());
        let (answers, mut received) = mpsc::unbounded_channel();
        self.pending.lock().insert(id.clone(), answers);
        let _waiting = Waiting {
            pending: &self.pending,
            id: id.clone(),
        };
        self.stats.requests_sent.fetch_add(1, Relaxed);
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        let live = self.nodes.live();
        let (subscribers, mut frozen) = match self.publish_request(nsp, build(&id)).await {
            Ok(published) => published,
            Err(error) => {
                return Collected {
                    responses: Vec::new(),
                    asked: None,
                    missing: live,
                    error: Some(error),
                };
            }
        };
        // This node's own subscription is among them while it is up.
        let itself = usize::from(self.stats.subscribe_up.load(Relaxed));
        let asked = subscribers.saturating_sub(itself);
        let mut responses: Vec<Response> = Vec::with_capacity(asked);
        let answered = |responses: &[Response], uid: &String| {
            responses.iter().any(|r| r.uid.as_ref() == Some(uid))
        };
        while responses.len() < asked {
            let changed = self.nodes.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // A node alive when the request went out that died since (it
            // was heartbeating, so subscribed) will not answer either.
            let dead = self.nodes.dead();
            frozen.extend(dead.into_iter().filter(|uid| live.contains(uid)));
            frozen.sort();
            frozen.dedup();
            let silent = frozen.iter().filter(|uid| !answered(&responses, uid));
            if asked - responses.len() <= silent.count() {
                break;
            }
            tokio::select! {
                response = received.recv() => match response {
                    Some(response) => responses.push(response),
                    None => break,
                },
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let mut missing: Vec<String> = (live.iter().chain(&frozen))
            .filter(|uid| !answered(&responses, uid))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        Collected {
            responses,
            asked: Some(asked),
            missing,
            error: None,
        }
    }

    /// PUBLISHes a request; returns how many connections heard it and
    /// which of the nodes taken for dead still hold their subscriptions
    /// (PUBSUB NUMSUB of their own response channel, in the same round
    /// trip). Those whose subscriptions are gone are forgotten.
    async fn publish_request(
        &self,
        nsp: &str,
        payload: Vec<u8>,
    ) -> Result<(usize, Vec<String>), String> {
        let Some(mut conn) = self.command.lock().clone() else {
            return Err("not connected to Redis".to_owned());
        };
        let prefix = &self.config.key_prefix;
        let sharded = self.config.sharded();
        let dead = self.nodes.dead();
        let mut pipe = redis::pipe();
        if !dead.is_empty() {
            let numsub = pipe
                .cmd("PUBSUB")
                .arg(if sharded { "SHARDNUMSUB" } else { "NUMSUB" });
            for uid in &dead {
                numsub.arg(if sharded {
                    sharded::response_channel(prefix, nsp, uid)
                } else {
                    request::own_response_channel(prefix, nsp, uid)
                });
            }
        }
        pipe.cmd(if sharded { "SPUBLISH" } else { "PUBLISH" })
            .arg(self.request_channel(nsp))
            .arg(payload);
        let replies: Vec<redis::Value> =
            timed(self.config.command_timeout, pipe.query_async(&mut conn))
                .await
                .map_err(|err| err.to_string())?;
        let (numsub, published) = match replies.as_slice() {
            [published] => (None, published),
            [numsub, published] => (Some(numsub), published),
            _ => return Err("unexpected reply to PUBLISH".to_owned()),
        };
        let subscribers: usize =
            redis::from_redis_value_ref(published).map_err(|err| err.to_string())?;
        let counts: Vec<redis::Value> = match numsub {
            Some(numsub) => redis::from_redis_value_ref(numsub).map_err(|err| err.to_string())?,
            None => Vec::new(),
        };
        // [channel, count, channel, count, …] in the order asked.
        let mut frozen = Vec::new();
        for (uid, count) in dead.iter().zip(counts.chunks(2).map(|pair| pair.get(1))) {
            let subscribed = count
                .and_then(|c| redis::from_redis_value_ref::<usize>(c).ok())
                .is_some_and(|n| n > 0);
            if subscribed {
                frozen.push(uid.clone());
            } else {
                self.nodes.forget(uid);
            }
        }
        Ok((subscribers, frozen))
    }
}

/// The sockets a join, leave or disconnect concerns, `None` when it names
/// one socket this node does not have.
fn targets(ns: &Namespace, local: &LocalAdapter, target: &Target) -> Option<Vec<Arc<Socket>>> {
    match target {
        Target::Matching(opts) => Some(local.sockets(ns, opts)),
        Target::Socket(id) => SocketId::parse(id)
            .and_then(|id| ns.get(&id))
            .map(|socket| vec![socket]),
    }
}

fn disconnect(sockets: &[Arc<Socket>], close: bool) {
    for socket in sockets {
        if close {
            socket.disconnect_all();
        } else {
            socket.disconnect();
        }
    }
}

/// This node's rooms as a Node node lists them: the rooms, and each
/// socket's own id (a room every Node socket is in).
fn all_rooms_here(ns: &Namespace, local: &LocalAdapter) -> BTreeSet<Room> {
    let mut rooms: BTreeSet<Room> = local.room_names().into_iter().collect();
    ns.for_each_socket(|s| {
        rooms.insert(Room::from(s.id().as_str()));
    });
    rooms
}

/// A query string as the object Node's `handshake.query` holds: each key
/// once (its last value), `+` and `%XX` decoded.
fn query_object(query: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode_component(key), decode_component(value).into());
    }
    out
}

fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(text.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Cluster {
    /// The sockets `opts` reaches on every node of namespace `nsp`: this
    /// node's first, then each answer's (Node's `fetchSockets()`).
    pub async fn fetch_sockets(
        &self,
        nsp: &str,
        opts: &BroadcastOptions,
    ) -> Answer<Vec<RemoteSocket>> {
        let shared = self.shared();
        let here: Vec<RemoteSocket> = match shared.receiver(nsp) {
            Some((ns, local)) => (local.sockets(&ns, opts).iter())
                .map(|s| RemoteSocket::from(shared.describe(s)))
                .collect(),
            None => Vec::new(),
        };
        if opts.local {
            return Answer {
                value: here,
                asked: Some(0),
                answered: 0,
                answered_by: Vec::new(),
                missing: Vec::new(),
                error: None,
            };
        }
        self.fetched_elsewhere(nsp, opts).await.map(|elsewhere| {
            let mut sockets = here;
            sockets.extend(elsewhere);
            sockets
        })
    }

    /// The ids of the sockets of the *other* nodes in any of `rooms` of
    /// namespace `nsp` (every socket there when `rooms` is empty): the
    /// Node adapter's SOCKETS request, the lightest answer (ids only) a
    /// Node node gives too. This node's are not asked for (its caller
    /// has them).
    pub async fn socket_ids_elsewhere(&self, nsp: &str, rooms: &[Room]) -> Answer<Vec<String>> {
        let shared = self.shared();
        if shared.config.sharded() {
            // The sharded format has no SOCKETS request: the other nodes'
            // part of a fetch.
            return self
                .fetched_elsewhere(nsp, &in_any_of(rooms))
                .await
                .map(|sockets| sockets.into_iter().map(|s| s.id).collect());
        }
        let uid = shared.uid.clone();
        let collected = shared
            .ask(nsp, |id| request::sockets_request(&uid, id, rooms))
            .await;
        let ids = (collected.responses.iter())
            .flat_map(|r| r.sockets.iter().flatten())
            .filter_map(json_text)
            .collect();
        collected.answer(shared, ids)
    }

    /// Every room of namespace `nsp` on every node, sockets' own ids
    /// included (Node's `allRooms()`).
    pub async fn all_rooms(&self, nsp: &str) -> Answer<BTreeSet<String>> {
        let shared = self.shared();
        let mut rooms: BTreeSet<String> = match shared.receiver(nsp) {
            Some((ns, local)) => all_rooms_here(&ns, &local)
                .into_iter()
                .map(|r| r.to_string())
                .collect(),
            None => BTreeSet::new(),
        };
        if shared.config.sharded() {
            // No ALL_ROOMS request either: the rooms of every fetched
            // socket (its own id among them).
            let fetched = self
                .fetched_elsewhere(nsp, &BroadcastOptions::default())
                .await;
            return fetched.map(|sockets| {
                rooms.extend(sockets.into_iter().flat_map(|s| s.rooms));
                rooms
            });
        }
        let uid = shared.uid.clone();
        let collected = shared
            .ask(nsp, |id| request::all_rooms_request(&uid, id))
            .await;
        for response in &collected.responses {
            let listed = response.rooms.iter().flatten();
            rooms.extend(listed.filter_map(json_text));
        }
        collected.answer(shared, rooms)
    }

    /// The sockets `opts` reaches on the *other* nodes: REMOTE_FETCH (in
    /// sharded mode, its message of that format).
    async fn fetched_elsewhere(
        &self,
        nsp: &str,
        opts: &BroadcastOptions,
    ) -> Answer<Vec<RemoteSocket>> {
        let shared = self.shared();
        let uid = shared.uid.clone();
        let collected = shared
            .ask(nsp, |id| {
                if shared.config.sharded() {
                    sharded::fetch(&uid, nsp, id, opts)
                } else {
                    request::fetch_request(&uid, id, opts)
                }
            })
            .await;
        let sockets = (collected.responses.iter())
            .flat_map(|r| r.sockets.iter().flatten())
            .filter_map(|s| remote_socket(s.clone()))
            .collect();
        collected.answer(shared, sockets)
    }

    /// How many sockets of every node are in each of `rooms` of namespace
    /// `nsp` (a room no socket is in counts 0).
    pub async fn room_sizes(&self, nsp: &str, rooms: &[Room]) -> Answer<BTreeMap<String, usize>> {
        let opts = in_any_of(rooms);
        let sockets = self.fetch_sockets(nsp, &opts).await;
        sockets.map(|sockets| sizes(rooms, &sockets))
    }

    /// How many sockets of the *other* nodes are in each of `rooms` of
    /// namespace `nsp` (a room no socket is in counts 0): one REMOTE_FETCH
    /// for every room, which Node nodes answer too (the only request of
    /// the Node adapter's whose answer says which rooms each socket is
    /// in). This node's are not asked for (its caller counts them).
    pub async fn room_sizes_elsewhere(
        &self,
        nsp: &str,
        rooms: &[Room],
    ) -> Answer<BTreeMap<String, usize>> {
        let opts = in_any_of(rooms);
        let sockets = self.fetched_elsewhere(nsp, &opts).await;
        sockets.map(|sockets| sizes(rooms, &sockets))
    }

    /// Makes the sockets `opts` reaches on every node join `rooms`
    /// (`socketsJoin`): this node's at once, the others' when the request
    /// reaches them. Nothing is answered.
    pub fn sockets_join(&self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room]) {
        self.membership(nsp, opts, rooms, true);
    }

    /// Makes the sockets `opts` reaches on every node leave `rooms`
    /// (`socketsLeave`).
    pub fn sockets_leave(&self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room]) {
        self.membership(nsp, opts, rooms, false);
    }

    fn membership(&self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room], join: bool) {
        let shared = self.shared();
        if let Some((ns, local)) = shared.receiver(nsp) {
            for socket in local.sockets(&ns, opts) {
                if join {
                    socket.join_all(rooms);
                } else {
                    rooms.iter().for_each(|room| socket.leave(room));
                }
            }
        }
        if !opts.local {
            let payload = if shared.config.sharded() {
                sharded::membership(&shared.uid, nsp, join, opts, rooms)
            } else {
                request::membership_request(&shared.uid, join, opts, rooms)
            };
            shared.publish_raw(shared.request_channel(nsp), payload);
        }
    }

    /// Disconnects the sockets `opts` reaches on every node
    /// (`disconnectSockets`); `close` closes their whole connection.
    pub fn disconnect_sockets(&self, nsp: &str, opts: &BroadcastOptions, close: bool) {
        let shared = self.shared();
        if let Some((ns, local)) = shared.receiver(nsp) {
            disconnect(&local.sockets(&ns, opts), close);
        }
        if !opts.local {
            let payload = if shared.config.sharded() {
                sharded::disconnect(&shared.uid, nsp, opts, close)
            } else {
                request::disconnect_request(&shared.uid, opts, close)
            };
            shared.publish_raw(shared.request_channel(nsp), payload);
        }
    }

    /// Emits an event to the other nodes' servers (`serverSideEmit`).
    pub fn server_side_emit(&self, nsp: &str, event: &str, args: &Args) {
        let shared = self.shared();
        let payload = if shared.config.sharded() {
            sharded::server_side_emit(&shared.uid, nsp, None, event, args)
        } else {
            request::server_side_emit_request(&shared.uid, None, event, args)
        };
        shared.publish_raw(shared.request_channel(nsp), payload);
    }

    /// Emits an event to the other nodes' servers and collects their acks
    /// (`serverSideEmitWithAck`): one JSON value per node that answered.
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: &str,
        event: &str,
        args: &Args,
    ) -> Answer<Vec<Box<RawValue>>> {
        let shared = self.shared();
        let uid = shared.uid.clone();
        let collected = shared
            .ask(nsp, |id| {
                if shared.config.sharded() {
                    sharded::server_side_emit(&uid, nsp, Some(id), event, args)
                } else {
                    request::server_side_emit_request(&uid, Some(id), event, args)
                }
            })
            .await;
        let acks = (collected.responses.iter())
            .map(|r| match &r.data {
                Some(data) => data.clone(),
                None => RawValue::from_string("null".into()).unwrap_or_default(),
            })
            .collect();
        collected.answer(shared, acks)
    }

    /// Where the events other nodes emit to the servers go (one handler;
    /// without one they are dropped, as on a Node node with no listener).
    pub fn on_server_side_emit(&self, handler: impl Fn(ServerSideEvent) + Send + Sync + 'static) {
        self.shared().hooks.write().server_side = Some(Arc::new(handler));
    }

    /// Where the nodes this node stops counting go: one that said goodbye
    /// (stopped cleanly), or one silent for `heartbeat_timeout` while this
    /// node's own subscription was up that long (so that its silence means
    /// something: a node whose Redis was away hears nobody, and takes
    /// nobody for dead). Called on the subscriber's or the heartbeat task:
    /// the handler must not wait.
    pub fn on_node_dropped(&self, handler: impl Fn(&str) + Send + Sync + 'static) {
        self.shared().hooks.write().node_dropped = Some(Arc::new(handler));
    }

    /// What this node does when it may have missed what the cluster
    /// said: either it was silent past `heartbeat_timeout` (frozen,
    /// stuck, or cut off from Redis), so the others may have dropped it
    /// and ended the live state it held (`Rejoin::dropped`), or its
    /// subscription was cut and opened again, so broadcasts published
    /// meanwhile never reached it. Called once it is back (announced
    /// again to the others if they may have dropped it), before it
    /// delivers anything read from the bus again: until the handler
    /// returns, [`out_of_touch`](Cluster::out_of_touch) stays true and
    /// what the bus brings is not delivered. The handler drops what this
    /// node still holds of the state the others ended, and closes its
    /// clients' connections so that they come back (connection state
    /// recovery gives them what they missed; without it, they
    /// resynchronize as after any reconnection).
    pub fn on_rejoin(
        &self,
        handler: impl Fn(Rejoin) -> socketio::BoxFuture<()> + Send + Sync + 'static,
    ) {
        self.shared().hooks.write().rejoined = Some(Arc::new(handler));
    }

    /// What REMOTE_FETCH answers as a socket's `data` (Node's
    /// `socket.data`); `{}` without it or when it gives `None`.
    pub fn set_socket_data(
        &self,
        describe: impl Fn(&Socket) -> Option<serde_json::Value> + Send + Sync + 'static,
    ) {
        self.shared().hooks.write().socket_data = Some(Arc::new(describe));
    }
}

/// What reaches the sockets in any of `rooms`.
fn in_any_of(rooms: &[Room]) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms.to_vec(),
        ..Default::default()
    }
}

/// How many of `sockets` are in each of `rooms` (0 for a room none is in).
fn sizes(rooms: &[Room], sockets: &[RemoteSocket]) -> BTreeMap<String, usize> {
    let mut sizes: BTreeMap<String, usize> = rooms.iter().map(|r| (r.to_string(), 0)).collect();
    for socket in sockets {
        for room in &socket.rooms {
            if let Some(n) = sizes.get_mut(room.as_str()) {
                *n += 1;
            }
        }
    }
    sizes
}

impl From<FetchedSocket> for RemoteSocket {
    fn from(s: FetchedSocket) -> RemoteSocket {
        RemoteSocket {
            id: s.id,
            rooms: s.rooms,
            data: s.data,
            handshake: s.handshake,
        }
    }
}

/// A socket from a REMOTE_FETCH answer (a Node node's or ours).
fn remote_socket(value: serde_json::Value) -> Option<RemoteSocket> {
    let serde_json::Value::Object(mut map) = value else {
        return None;
    };
    let id = json_text(map.get("id")?)?;
    let rooms = match map.remove("rooms") {
        Some(serde_json::Value::Array(rooms)) => rooms.iter().filter_map(json_text).collect(),
        _ => Vec::new(),
    };
    Some(RemoteSocket {
        id,
        rooms,
        data: map.remove("data").unwrap_or(serde_json::Value::Null),
        handshake: map.remove("handshake").unwrap_or(serde_json::Value::Null),
    })
}

/// A room or id as text (JavaScript's may be numbers).
fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
