//! The invariants of a socket's life (ARCHITECTURE.md), each checked on a
//! real [`SocketIo`] behind a real Engine.IO engine, driven in memory over
//! long-polling requests: a join decided after the socket left is refused
//! and leaves it in no room; `on_disconnect` runs exactly once, after
//! `on_connect`, with `rooms()` still answering; a departed socket is in no
//! room of the adapter; events wait for `on_connect` and run one at a time,
//! in arrival order.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engineio::{Engine, EngineConfig};
use http::{Method, Request};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{BoxFuture, DisconnectReason, Event, Room, Socket, SocketId};
use crate::adapter::BroadcastOptions;
use crate::namespace::{Namespace, NamespaceHandler};
use crate::server::{SocketIo, SocketIoConfig};

/// What the handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    ConnectStarted,
    ConnectDone,
    Connected,
    /// An event's handler was called (its name).
    EventStarted(String),
    /// An event's handling ended (its name).
    EventDone(String),
    /// A join the handler decided, and whether it was accepted.
    Joined(String, bool),
    /// `on_disconnect`, with what `rooms()` answered then (sorted).
    Disconnected(Vec<String>),
}

/// How the handler behaves, per test.
#[derive(Default)]
struct Script {
    /// Rooms `on_connect` joins (after `connect_gate`, when set).
    connect_rooms: Vec<&'static str>,
    /// When set, `on_connect` waits for it (a lookup that takes a while).
    connect_gate: Option<Arc<Notify>>,
}

/// A namespace handler that records what it sees. Its events, by name
/// (`<kind>:<anything>`): `quick` completes at once; `slow` yields a few
/// times before it completes; `wait` waits for `event_gate`, then joins
/// room `late` (a join decided after an `.await`).
struct Recorder {
    script: Script,
    seen: Arc<Mutex<Vec<Seen>>>,
    sockets: Arc<Mutex<Vec<Arc<Socket>>>>,
    event_gate: Arc<Notify>,
}

impl NamespaceHandler for Recorder {
    fn on_connect(&self, socket: &Arc<Socket>) -> Option<BoxFuture<()>> {
        self.seen.lock().push(Seen::ConnectStarted);
        self.sockets.lock().push(socket.clone());
        let seen = self.seen.clone();
        let rooms = self.script.connect_rooms.clone();
        let join = {
            let socket = socket.clone();
            move || {
                for room in rooms {
                    let joined = socket.join(room);
                    seen.lock().push(Seen::Joined(room.to_owned(), joined));
                }
                seen.lock().push(Seen::ConnectDone);
            }
        };
        match self.script.connect_gate.clone() {
            None => {
                join();
                None
            }
            Some(gate) => Some(Box::pin(async move {
                gate.notified().await;
                join();
            })),
        }
    }

    fn on_connected(&self, _socket: &Arc<Socket>) {
        self.seen.lock().push(Seen::Connected);
    }

    fn on_event(&self, socket: &Arc<Socket>, event: Event) -> Option<BoxFuture<()>> {
        let name = event.name;
        self.seen.lock().push(Seen::EventStarted(name.clone()));
        let seen = self.seen.clone();
        match name.split(':').next() {
            Some("slow") => Some(Box::pin(async move {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                seen.lock().push(Seen::EventDone(name));
            })),
            Some("wait") => {
                let gate = self.event_gate.clone();
                let socket = socket.clone();
                Some(Box::pin(async move {
                    gate.notified().await;
                    let joined = socket.join("late");
                    seen.lock().push(Seen::Joined("late".to_owned(), joined));
                    seen.lock().push(Seen::EventDone(name));
                }))
            }
            _ => {
                seen.lock().push(Seen::EventDone(name));
                None
            }
        }
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, _reason: DisconnectReason) {
        let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
        rooms.sort();
        self.seen.lock().push(Seen::Disconnected(rooms));
    }
}

/// A Socket.IO server with namespace `/` owned by a [`Recorder`], behind an
/// Engine.IO engine that the test drives with in-memory HTTP requests.
struct Harness {
    io: SocketIo,
    engine: Engine<SocketIo>,
    seen: Arc<Mutex<Vec<Seen>>>,
    sockets: Arc<Mutex<Vec<Arc<Socket>>>>,
    event_gate: Arc<Notify>,
}

impl Harness {
    fn new(script: Script) -> Harness {
        Harness::with_config(script, SocketIoConfig::default())
    }

    fn with_config(script: Script, config: SocketIoConfig) -> Harness {
        let io = SocketIo::new(config);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let event_gate = Arc::new(Notify::new());
        io.add_namespace(
            "/",
            Recorder {
                script,
                seen: seen.clone(),
                sockets: sockets.clone(),
                event_gate: event_gate.clone(),
            },
        );
        let engine = Engine::new(EngineConfig::default(), io.clone());
        Harness {
            io,
            engine,
            seen,
            sockets,
            event_gate,
        }
    }

    async fn request(&self, method: Method, query: &str, body: String) -> (u16, String) {
        let request = Request::builder()
            .method(method)
            .uri(format!("/socket.io/?EIO=4&transport=polling{query}"))
            .body(body)
            .unwrap();
        let response = self.engine.handle(request).await;
        let status = response.status().as_u16();
        let body: Bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Opens an Engine.IO session; returns its id.
    async fn open(&self) -> String {
        let (status, body) = self.request(Method::GET, "", String::new()).await;
        assert_eq!(status, 200, "{body}");
        let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
        open["sid"].as_str().unwrap().to_owned()
    }

    /// Sends Socket.IO packets (each wrapped in an Engine.IO message).
    async fn send(&self, sid: &str, packets: &[&str]) {
        let body = packets
            .iter()
            .map(|p| format!("4{p}"))
            .collect::<Vec<_>>()
            .join("\x1e");
        let (status, reply) = self
            .request(Method::POST, &format!("&sid={sid}"), body)
            .await;
        assert_eq!(status, 200, "{reply}");
    }

    /// Closes the whole Engine.IO session, as a client going away does.
    async fn close_session(&self, sid: &str) {
        let (status, reply) = self
            .request(Method::POST, &format!("&sid={sid}"), "1".to_owned())
            .await;
        assert_eq!(status, 200, "{reply}");
    }

    /// What the server has queued for the client (waits for something).
    async fn poll(&self, sid: &str) -> String {
        let query = format!("&sid={sid}");
        let get = self.request(Method::GET, &query, String::new());
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), get)
            .await
            .expect("nothing to poll");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A session with a socket in `/`, told it is connected, `on_connected` done.
    async fn connected(&self) -> String {
        let sid = self.open().await;
        self.send(&sid, &["0"]).await;
        let reply = self.poll(&sid).await;
        assert!(reply.starts_with("40{\"sid\":"), "{reply}");
        self.until("on_connected", |seen| seen.contains(&Seen::Connected))
            .await;
        sid
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// Waits (at most 5 s) until what the handler saw satisfies `done`.
    async fn until(&self, what: &str, done: impl Fn(&[Seen]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done(&self.seen.lock()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never saw {what}: {:?}",
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Lets spawned tasks run for a moment (for "nothing else happens").
    async fn settle(&self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    fn namespace(&self) -> Arc<Namespace> {
        self.io.of("/").unwrap()
    }

    /// The socket the handler was given (the only one of the test).
    fn socket(&self) -> Arc<Socket> {
        let sockets = self.sockets.lock();
        assert_eq!(sockets.len(), 1);
        sockets[0].clone()
    }

    /// The sockets the adapter would deliver a broadcast to `room` to.
    fn members(&self, room: &str) -> usize {
        let ns = self.namespace();
        let opts = BroadcastOptions {
            rooms: vec![room.into()],
            ..Default::default()
        };
        ns.adapter().sockets(&ns, &opts).len()
    }

    fn disconnects(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Disconnected(_)))
            .count()
    }
}

fn position(seen: &[Seen], wanted: &Seen) -> usize {
    seen.iter()
        .position(|s| s == wanted)
        .unwrap_or_else(|| panic!("no {wanted:?} in {seen:?}"))
}

fn disconnected(rooms: &[&str]) -> Seen {
    Seen::Disconnected(rooms.iter().map(|r| r.to_string()).collect())
}

#[tokio::test]
async fn a_join_decided_after_the_socket_left_is_refused_and_leaves_it_in_no_room() {
    let hub = Harness::new(Script {
        connect_rooms: vec!["early"],
        ..Default::default()
    });
    let sid = hub.connected().await;
    hub.send(&sid, &["2[\"wait:join\"]"]).await;
    hub.until("the event", |s| {
        s.contains(&Seen::EventStarted("wait:join".into()))
    })
    .await;
    // The client leaves while the handler waits (a backend's answer).
    hub.send(&sid, &["1"]).await;
    hub.until("on_disconnect", |s| s.contains(&disconnected(&["early"])))
        .await;
    hub.event_gate.notify_one();
    hub.until("the join", |s| {
        s.contains(&Seen::EventDone("wait:join".into()))
    })
    .await;

    assert!(hub.seen().contains(&Seen::Joined("late".into(), false)));
    let socket = hub.socket();
    assert!(!socket.connected());
    assert_eq!(hub.members("late"), 0);
    assert_eq!(hub.members("early"), 0);
    // What it was in when it left, for on_disconnect: not the late room.
    assert_eq!(socket.rooms(), [Room::from("early")]);
    let ns = hub.namespace();
    assert!(ns.adapter().rooms_of(&ns, &socket).is_empty());
}

#[tokio::test]
async fn a_socket_that_leaves_during_on_connect_joins_nothing_and_hears_of_it_after() {
    let gate = Arc::new(Notify::new());
    let hub = Harness::new(Script {
        connect_rooms: vec!["a", "b"],
        connect_gate: Some(gate.clone()),
    });
    let sid = hub.open().await;
    hub.send(&sid, &["0"]).await;
    hub.until("on_connect", |s| s.contains(&Seen::ConnectStarted))
        .await;
    hub.send(&sid, &["1"]).await;
    hub.close_session(&sid).await;
    hub.settle().await;
    // Left, but on_connect has not finished: on_disconnect waits for it.
    assert_eq!(hub.seen(), [Seen::ConnectStarted]);

    gate.notify_one();
    hub.until("on_disconnect", |s| {
        s.iter().any(|s| matches!(s, Seen::Disconnected(_)))
    })
    .await;
    hub.settle().await;
    assert_eq!(
        hub.seen(),
        [
            Seen::ConnectStarted,
            Seen::Joined("a".into(), false),
            Seen::Joined("b".into(), false),
            Seen::ConnectDone,
            disconnected(&[]),
        ],
        "joins refused, no on_connected, on_disconnect once and last"
    );
    assert_eq!(hub.members("a") + hub.members("b"), 0);
    assert_eq!(hub.namespace().len(), 0);
}

#[tokio::test]
async fn on_disconnect_runs_exactly_once_after_on_connect_whatever_ends_the_socket() {
    let hub = Harness::new(Script::default());
    let sid = hub.connected().await;
    let socket = hub.socket();
    // The client leaves the namespace, the server disconnects the socket,
    // then the whole session closes: one departure.
    hub.send(&sid, &["1"]).await;
    socket.disconnect();
    hub.close_session(&sid).await;
    socket.on_close(DisconnectReason::ServerShuttingDown);
    hub.settle().await;
    assert_eq!(hub.disconnects(), 1, "{:?}", hub.seen());
    let seen = hub.seen();
    assert!(position(&seen, &Seen::ConnectDone) < position(&seen, &disconnected(&[])));
    assert_eq!(seen.last(), Some(&disconnected(&[])));
}

#[tokio::test]
async fn rooms_still_answer_in_on_disconnect_and_the_adapter_forgets_the_socket() {
    let hub = Harness::new(Script {
        connect_rooms: vec!["b", "a"],
        ..Default::default()
    });
    let sid = hub.connected().await;
    let socket = hub.socket();
    assert_eq!(hub.members("a"), 1);
    assert_eq!(hub.members("b"), 1);
    // The socket's id works as a room while it is connected.
    assert_eq!(hub.members(socket.id().as_str()), 1);

    hub.close_session(&sid).await;
    hub.until("on_disconnect", |s| s.contains(&disconnected(&["a", "b"])))
        .await;

    let ns = hub.namespace();
    assert_eq!(hub.members("a"), 0);
    assert_eq!(hub.members("b"), 0);
    assert_eq!(hub.members(socket.id().as_str()), 0);
    assert!(ns.adapter().rooms_of(&ns, &socket).is_empty());
    assert!(ns.get(socket.id()).is_none());
    assert_eq!(ns.len(), 0);
    // A join after the departure is refused too.
    assert!(!socket.join("c"));
    assert_eq!(hub.members("c"), 0);
}

#[tokio::test]
async fn events_are_handled_one_at_a_time_in_arrival_order() {
    let hub = Harness::new(Script::default());
    let sid = hub.connected().await;
    let names: Vec<String> = (0..24)
        .map(|i| match i % 3 {
            0 => format!("slow:{i}"),
            _ => format!("quick:{i}"),
        })
        .collect();
    let packets: Vec<String> = names.iter().map(|n| format!("2[\"{n}\"]")).collect();
    let packets: Vec<&str> = packets.iter().map(String::as_str).collect();
    // Two requests: the second arrives while the first's events wait.
    hub.send(&sid, &packets[..12]).await;
    hub.send(&sid, &packets[12..]).await;
    let last = Seen::EventDone(names.last().unwrap().clone());
    hub.until("the last event", |s| s.contains(&last)).await;

    let events: Vec<Seen> = hub
        .seen()
        .into_iter()
        .filter(|s| matches!(s, Seen::EventStarted(_) | Seen::EventDone(_)))
        .collect();
    let expected: Vec<Seen> = names
        .iter()
        .flat_map(|n| [Seen::EventStarted(n.clone()), Seen::EventDone(n.clone())])
        .collect();
    assert_eq!(events, expected);
}

#[tokio::test]
async fn events_wait_for_on_connect_and_on_connected() {
    let gate = Arc::new(Notify::new());
    let hub = Harness::new(Script {
        connect_gate: Some(gate.clone()),
        ..Default::default()
    });
    let sid = hub.open().await;
    hub.send(&sid, &["0", "2[\"quick:early\"]"]).await;
    hub.send(&sid, &["2[\"slow:next\"]"]).await;
    hub.settle().await;
    assert_eq!(
        hub.seen(),
        [Seen::ConnectStarted],
        "events ran before on_connect ended"
    );

    gate.notify_one();
    let reply = hub.poll(&sid).await;
    assert!(reply.starts_with("40{\"sid\":"), "{reply}");
    hub.until("the events", |s| {
        s.contains(&Seen::EventDone("slow:next".into()))
    })
    .await;
    assert_eq!(
        hub.seen(),
        [
            Seen::ConnectStarted,
            Seen::ConnectDone,
            Seen::Connected,
            Seen::EventStarted("quick:early".into()),
            Seen::EventDone("quick:early".into()),
            Seen::EventStarted("slow:next".into()),
            Seen::EventDone("slow:next".into()),
        ]
    );
}

/// Socket.IO packets of a polling reply (Engine.IO messages `4…`).
fn packets(reply: &str) -> Vec<String> {
    reply
        .split('\x1e')
        .filter_map(|m| m.strip_prefix('4'))
        .map(str::to_owned)
        .collect()
}

/// The `sid` and `pid` of a CONNECT reply (`0{"sid":…,"pid":…}`).
fn connect_reply(packet: &str) -> (String, Option<String>) {
    let json: serde_json::Value = serde_json::from_str(packet.strip_prefix('0').unwrap()).unwrap();
    (
        json["sid"].as_str().unwrap().to_owned(),
        json["pid"].as_str().map(str::to_owned),
    )
}

/// The last argument of an EVENT packet, as text.
fn last_string(packet: &str) -> String {
    let args: Vec<serde_json::Value> =
        serde_json::from_str(packet.strip_prefix('2').unwrap()).unwrap();
    args.last().unwrap().as_str().unwrap().to_owned()
}

/// Polls until `count` Socket.IO packets have arrived.
async fn collect(hub: &Harness, sid: &str, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        got.extend(packets(&hub.poll(sid).await));
    }
    got
}

/// Opens a session and connects it to `/`; once the handler is past
/// `on_connected`, its Engine.IO sid, socket id and pid.
async fn connect_client(hub: &Harness) -> (String, String, Option<String>) {
    let sid = hub.open().await;
    hub.send(&sid, &["0"]).await;
    let (socket_id, pid) = connect_reply(&collect(hub, &sid, 1).await[0]);
    hub.until("on_connected", |s| s.contains(&Seen::Connected))
        .await;
    (sid, socket_id, pid)
}

#[tokio::test]
async fn a_dropped_client_comes_back_with_its_id_its_rooms_and_what_it_missed() {
    let hub = Harness::new(Script {
        connect_rooms: vec!["r"],
        ..Default::default()
    });
    let ns = hub.namespace();
    let (sid, socket_id, pid) = connect_client(&hub).await;
    let pid = pid.expect("a pid with recovery on");
    assert_ne!(pid, socket_id);
    ns.to("r").emit("news", &crate::Args::one(&0));
    let seen = collect(&hub, &sid, 1).await;
    let offset = last_string(&seen[0]);

    hub.close_session(&sid).await;
    hub.until("on_disconnect", |s| s.contains(&disconnected(&["r"])))
        .await;
    for n in 1..=3 {
        ns.to("r").emit("news", &crate::Args::one(&n));
    }
    ns.to("elsewhere").emit("news", &crate::Args::one(&99));
    ns.broadcast().emit("all", &crate::Args::new());

    let again = hub.open().await;
    let connect = format!(r#"0{{"pid":"{pid}","offset":"{offset}"}}"#);
    hub.send(&again, &[&connect]).await;
    let got = collect(&hub, &again, 5).await;
    assert_eq!(
        connect_reply(&got[0]),
        (socket_id.clone(), Some(pid.clone()))
    );
    let events: Vec<String> = got[1..]
        .iter()
        .map(|p| {
            let args: Vec<serde_json::Value> = serde_json::from_str(&p[1..]).unwrap();
            format!(
                "{}{}",
                args[0].as_str().unwrap(),
                if args.len() > 2 {
                    args[1].to_string()
                } else {
                    String::new()
                }
            )
        })
        .collect();
    assert_eq!(events, ["news1", "news2", "news3", "all"]);

    let socket = ns.get(&SocketId::parse(&socket_id).unwrap()).unwrap();
    assert!(socket.recovered());
    assert_eq!(socket.rooms(), [Room::from("r")]);
    // Live again: the next broadcast arrives once.
    ns.to("r").emit("news", &crate::Args::one(&4));
    let next = collect(&hub, &again, 1).await;
    assert!(next[0].starts_with(r#"2["news",4,"#), "{next:?}");
    // The handler saw the socket leave and come back.
    hub.until("on_connected again", |s| {
        s.iter().filter(|s| **s == Seen::Connected).count() == 2
    })
    .await;

    // Taken once: the same pid and offset again recover nothing.
    let third = hub.open().await;
    hub.send(&third, &[&connect]).await;
    let (other_id, other_pid) = connect_reply(&collect(&hub, &third, 1).await[0]);
    assert_ne!(other_id, socket_id);
    assert_ne!(other_pid, Some(pid));
}

#[tokio::test]
async fn a_client_that_left_the_namespace_itself_is_not_recovered() {
    let hub = Harness::new(Script::default());
    let ns = hub.namespace();
    let (sid, socket_id, pid) = connect_client(&hub).await;
    ns.broadcast().emit("news", &crate::Args::new());
    let offset = last_string(&collect(&hub, &sid, 1).await[0]);
    hub.send(&sid, &["1"]).await;
    hub.until("on_disconnect", |s| s.contains(&disconnected(&[])))
        .await;
    let connect = format!(r#"0{{"pid":"{}","offset":"{offset}"}}"#, pid.unwrap());
    hub.send(&sid, &[&connect]).await;
    let (again, _) = connect_reply(&collect(&hub, &sid, 1).await[0]);
    assert_ne!(again, socket_id);
}

#[tokio::test]
async fn with_recovery_off_no_pid_and_no_offset() {
    let config = SocketIoConfig {
        recovery: crate::RecoveryConfig {
            window: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    };
    let hub = Harness::with_config(Script::default(), config);
    let ns = hub.namespace();
    let (sid, _, pid) = connect_client(&hub).await;
    assert_eq!(pid, None);
    ns.broadcast().emit("news", &crate::Args::one(&"text"));
    assert_eq!(collect(&hub, &sid, 1).await, [r#"2["news","text"]"#]);
}

/// An EVENT packet's arguments without the offset (`2["e","x","7"]` →
/// `["e","x"]`), given that it has one.
fn without_offset(packet: &str) -> String {
    let mut args: Vec<serde_json::Value> =
        serde_json::from_str(packet.strip_prefix('2').unwrap()).unwrap();
    let offset = args.pop().unwrap();
    assert!(
        offset.as_str().unwrap().bytes().all(|b| b.is_ascii_digit()),
        "{packet}"
    );
    serde_json::Value::from(args).to_string()
}

#[tokio::test]
async fn only_events_without_ack_and_not_volatile_carry_an_offset_and_are_replayed() {
    let hub = Harness::new(Script {
        connect_rooms: vec!["r"],
        ..Default::default()
    });
    let ns = hub.namespace();
    let (sid, socket_id, pid) = connect_client(&hub).await;
    let socket = ns.get(&SocketId::parse(&socket_id).unwrap()).unwrap();
    let text = crate::Args::one(&"text");
    ns.to("r").emit("room", &text);
    ns.to("r").volatile().emit("volatile", &text);
    socket.emit("direct", &text);
    socket.emit_volatile("direct_volatile", &text);
    let _asked = socket.emit_with_ack("asked", &text, Duration::from_secs(5));
    let got = collect(&hub, &sid, 5).await;
    // As the reference: broadcasts and emits to the socket get an
    // offset; volatile ones and those waiting for an ack do not (a string
    // last argument is the data's own).
    assert_eq!(without_offset(&got[0]), r#"["room","text"]"#);
    assert_eq!(got[1], r#"2["volatile","text"]"#);
    assert_eq!(without_offset(&got[2]), r#"["direct","text"]"#);
    assert_eq!(got[3], r#"2["direct_volatile","text"]"#);
    assert_eq!(got[4], r#"20["asked","text"]"#);
    let seen = last_string(&got[0]);

    // Away: a volatile broadcast is not kept, a plain one is.
    hub.close_session(&sid).await;
    hub.until("on_disconnect", |s| s.contains(&disconnected(&["r"])))
        .await;
    ns.to("r").volatile().emit("volatile", &text);
    ns.to("r").emit("room", &crate::Args::one(&"missed"));
    let again = hub.open().await;
    let connect = format!(r#"0{{"pid":"{}","offset":"{seen}"}}"#, pid.unwrap());
    hub.send(&again, &[&connect]).await;
    let got = collect(&hub, &again, 3).await;
    assert_eq!(connect_reply(&got[0]).0, socket_id);
    // What followed the client's offset, sent while it was connected
    // (its client had not said it received it) or away.
    assert_eq!(without_offset(&got[1]), r#"["direct","text"]"#);
    assert_eq!(without_offset(&got[2]), r#"["room","missed"]"#);
    // Nothing else was replayed: the next packet is a live one.
    let socket = ns.get(&SocketId::parse(&socket_id).unwrap()).unwrap();
    socket.emit("marker", &crate::Args::new());
    let next = collect(&hub, &again, 1).await;
    assert!(next[0].starts_with(r#"2["marker","#), "{next:?}");
}
