//! The hub's features across the nodes of a cluster (the test Redis, a
//! fresh PostgreSQL database, the four components on each node): presence
//! and calls are one state for every node, and a node that dies (SIGKILL,
//! the real binary) takes its devices, typing indicators and calls with it
//! as soon as the others stop counting it, not after a TTL; the publish
//! API counts every node's sockets, and says which node did not answer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::binary::{Binary, signal, until_stopped};
use crate::common::{
    Device, RawServer, api, cluster_sections_on, connect_pubsub, redis_url, start_raw,
    without_offset,
};

/// Heartbeats of the test clusters: a node silent for two intervals is
/// dead.
const HEARTBEAT_MS: u64 = 200;

/// The configuration of one node: the components, the test secret and key,
/// no grace period, and `sections` (the cluster's store and Redis).
pub(crate) fn node_toml(sections: &str) -> String {
    format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[api]\nkeys = [\"test-key\"]\n\
         [presence]\ngrace_ms = 0\n{sections}\n"
    )
}

/// The `[store]` and `[cluster]` sections of a test cluster with fast
/// heartbeats; `None` outside CI without Redis or PostgreSQL.
async fn sections() -> Option<String> {
    let redis = redis_url()?;
    let keys = format!(
        "heartbeat_interval_ms = {HEARTBEAT_MS}\nheartbeat_timeout_ms = {}",
        2 * HEARTBEAT_MS
    );
    cluster_sections_on(&redis, &keys).await
}

/// Two nodes of a test cluster configured with `more` besides
/// [`node_toml`]'s: one in this process, one the real binary (to be
/// killed), each counting the other.
async fn node_and_binary(more: &str) -> Option<(RawServer, Binary)> {
    let toml = format!("{}{more}\n", node_toml(&sections().await?));
    let a = start_raw(&toml).await;
    let c = Binary::spawn(&toml, |_, _| {}).await;
    until_nodes(&a, 1).await;
    Some((a, c))
}

/// Waits until `node` counts `n` other nodes alive.
pub(crate) async fn until_nodes(node: &RawServer, n: usize) {
    let cluster = node.app.cluster.as_ref().expect("cluster mode");
    tokio::time::timeout(Duration::from_secs(5), async {
        while cluster.nodes().len() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {n} other nodes: {:?}", cluster.nodes()));
}

/// The `presence` events `device` receives up to the one that shows `user`
/// as `status` with `devices`; returns that one.
async fn until_shown(device: &mut Device, user: &str, status: &str, devices: u64) -> Value {
    let seen = device
        .until("presence", |p| {
            p["user"] == user && p["status"] == status && p["devices"] == devices
        })
        .await;
    seen.last().unwrap().1.clone()
}

/// A presence as the tests compare it.
fn shown(presence: &Value) -> (&str, u64) {
    (
        presence["status"].as_str().unwrap(),
        presence["devices"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_one_across_nodes_and_a_killed_nodes_devices_drop_at_once() {
    let Some(sections) = sections().await else {
        return;
    };
    let toml = node_toml(&sections);
    // The watcher's node, and alice's other node, in this process; C is
    // the real binary, to be killed.
    let a = start_raw(&toml).await;
    let b = start_raw(&toml).await;
    let mut c = Binary::spawn(&toml, |_, _| {}).await;
    until_nodes(&a, 2).await;
    until_nodes(&b, 2).await;

    let mut watcher = Device::connect(a.addr, "watcher", "/presence").await;
    let ack = watcher
        .call("watch", json!({"users": ["alice", "carol"]}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    for p in ack["presence"].as_array().unwrap() {
        assert_eq!(shown(p), ("offline", 0), "{ack}");
    }

    // Alice's devices on B and C, carol's on C only: the watcher on A sees
    // them all counted, once each.
    let mut alice_b = Device::connect(b.addr, "alice", "/presence").await;
    until_shown(&mut watcher, "alice", "online", 1).await;
    let mut alice_c = Device::connect(c.addr, "alice", "/presence").await;
    until_shown(&mut watcher, "alice", "online", 2).await;
    // Her first device hears of her second, on another node.
    until_shown(&mut alice_b, "alice", "online", 2).await;
    let _carol_c = Device::connect(c.addr, "carol", "/presence").await;
    until_shown(&mut watcher, "carol", "online", 1).await;
    // A status chosen on C reaches the watcher on A and her device on B.
    let ack = alice_c.call("status", json!({"status": "busy"})).await;
    assert_eq!(shown(&ack["presence"]), ("busy", 2), "{ack}");
    let busy = until_shown(&mut watcher, "alice", "busy", 2).await;
    until_shown(&mut alice_b, "alice", "busy", 2).await;
    // The publish API of any node reads the same state.
    let (status, body) = api(b.addr, "GET", "/api/v1/presence?user=alice", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(shown(&body["presence"]["alice"]), ("busy", 2), "{body}");

    // C dies without a word: within two heartbeat intervals of silence the
    // others stop counting it, and its devices go with it.
    let killed = Instant::now();
    c.child.kill().await.unwrap();
    // One change per user, in either order.
    let mut dropped = None;
    let mut carol_offline = false;
    while dropped.is_none() || !carol_offline {
        let p = watcher.event("presence").await;
        match (p["user"].as_str(), shown(&p)) {
            (Some("alice"), ("busy", 1)) => dropped = Some(p),
            (Some("carol"), ("offline", 0)) => carol_offline = true,
            _ => panic!("unexpected {p}"),
        }
    }
    let dropped = dropped.unwrap();
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "the killed node's devices dropped after {waited:?}"
    );
    assert!(dropped["version"].as_u64() > busy["version"].as_u64());
    until_shown(&mut alice_b, "alice", "busy", 1).await;
    let (_, body) = api(a.addr, "GET", "/api/v1/presence?user=alice&user=carol", "").await;
    assert_eq!(shown(&body["presence"]["alice"]), ("busy", 1), "{body}");
    let carol = &body["presence"]["carol"];
    assert_eq!(shown(carol), ("offline", 0), "{body}");
    assert!(
        carol["last_seen"].as_i64().is_some(),
        "the node that dropped carol remembered when: {body}"
    );
    // Both nodes heard of it; the watcher was told once.
    watcher.quiet().await;
    let told: Vec<_> = (watcher.history().iter())
        .filter(|e| e.name == "presence" && e.data["user"] == "carol")
        .filter(|e| e.data["status"] == "offline")
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_typists_stop_typing_at_once() {
    // Typing starts that would stay shown for 30 s if nobody stopped them.
    let Some((a, mut c)) = node_and_binary("[chat]\ntyping_ttl_ms = 30000").await else {
        return;
    };
    let mut bob = Device::connect(a.addr, "bob", "/chat").await;
    let mut alice = Device::connect(c.addr, "alice", "/chat").await;
    let created = alice
        .call("conversation:create", json!({"direct": "bob"}))
        .await;
    assert_eq!(created["ok"], true, "{created}");
    let conversation = created["conversation"]["id"].as_i64().unwrap();
    bob.event("conversation:joined").await;

    // Alice types on C: bob, on A, sees it.
    let ack = alice
        .call(
            "typing",
            json!({"conversation": conversation, "typing": true}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let typing = bob.event("typing").await;
    assert_eq!(
        typing,
        json!({"conversation": conversation, "typing": true, "user": "alice"})
    );

    // C dies: A stops counting it and tells bob she stopped.
    let killed = Instant::now();
    c.child.kill().await.unwrap();
    let stopped = bob.event("typing").await;
    let waited = killed.elapsed();
    assert_eq!(
        stopped,
        json!({"conversation": conversation, "typing": false, "user": "alice"})
    );
    assert!(
        waited < Duration::from_millis(1500),
        "the typing stopped after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cross_nodes_and_a_killed_nodes_devices_leave_them_at_once() {
    // Calls that would ring for a minute if nobody ended them.
    let Some((a, mut c)) = node_and_binary("[calls]\nring_timeout_ms = 60000").await else {
        return;
    };

    // Alice calls from A; bob answers on C; each hears the other.
    let mut alice = Device::connect(a.addr, "alice", "/calls").await;
    let mut bob = Device::connect(c.addr, "bob", "/calls").await;
    let ack = alice
        .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call = ack["call"].as_str().unwrap().to_owned();
    assert_eq!(bob.event("call:ringing").await["call"], call.as_str());
    // (A device that connected as the call was placed may ring twice.)
    let ack = bob.call("call:accept", json!({"call": call})).await;
    assert_eq!(
        ack["ok"], true,
        "the call placed on A is answered on C: {ack}"
    );
    let accepted = alice.event("call:accepted").await;
    assert_eq!(accepted["device"], bob.id.as_str(), "{accepted}");
    let ack = alice
        .ask(
            "signal",
            json!({"call": call, "to": bob.id, "data": {"sdp": "offer"}}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let signal = bob.event("signal").await;
    assert_eq!(signal["data"], json!({"sdp": "offer"}), "{signal}");

    // Carol, on C, rings dave, on A.
    let mut carol = Device::connect(c.addr, "carol", "/calls").await;
    let mut dave = Device::connect(a.addr, "dave", "/calls").await;
    let ack = carol
        .ask("call:invite", json!({"users": ["dave"], "kind": "video"}))
        .await;
    let ringing_call = ack["call"].as_str().unwrap().to_owned();
    assert_eq!(
        dave.event("call:ringing").await["call"],
        ringing_call.as_str()
    );

    // C dies: bob's device leaves alice's call, carol's leaves hers (which
    // stops ringing for dave), as soon as A stops counting C.
    let killed = Instant::now();
    c.child.kill().await.unwrap();
    let ended = alice.event("call:ended").await;
    assert_eq!(ended, json!({"call": call, "reason": "disconnected"}));
    let ended = dave.event("call:ended").await;
    assert_eq!(ended, json!({"call": ringing_call, "reason": "cancelled"}));
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "the calls ended after {waited:?}"
    );
    // Both are free again: a new call is placed at once.
    let ack = alice
        .ask("call:invite", json!({"users": ["dave"], "kind": "audio"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

/// The publish API's counts across nodes: `delivered`, a room's size and
/// a user's disconnection count every node's sockets; a node that does
/// not answer (frozen) makes the answer partial, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_api_counts_every_nodes_sockets_and_names_a_node_that_does_not_answer() {
    let Some(sections) = sections().await else {
        return;
    };
    let toml = format!(
        "{}[[namespaces]]\nname = \"/pubsub\"\nhandler = \"pubsub\"\nauth = true\n",
        node_toml(&sections)
    );
    let a = start_raw(&toml).await;
    let b = start_raw(&toml).await;
    let c = Binary::spawn(&toml, |_, _| {}).await;
    until_nodes(&a, 2).await;
    until_nodes(&b, 2).await;
    let b_uid = b.app.cluster.as_ref().unwrap().uid().to_owned();
    let c_uid: Vec<String> = (a.app.cluster.as_ref().unwrap().nodes().into_iter())
        .filter(|uid| *uid != b_uid)
        .collect();
    let mut devices = Vec::new();
    for addr in [a.addr, b.addr, c.addr] {
        devices.push(connect_pubsub(addr, "alice").await);
    }
    let publish = r#"{"event":"news","users":["alice"],"namespace":"/pubsub","data":1}"#;

    // Every node answers: one socket of alice's on each.
    let (status, body) = api(a.addr, "POST", "/api/v1/publish", publish).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ok": true, "delivered": 3}));
    for device in &mut devices {
        assert_eq!(
            without_offset(device.recv().await),
            r#"42/pubsub,["news",1]"#
        );
    }
    let room = "/api/v1/rooms/user:alice?namespace=/pubsub";
    let (_, body) = api(b.addr, "GET", room, "").await;
    assert_eq!(
        body,
        json!({"ok": true, "room": "user:alice", "sockets": 3})
    );

    // C freezes: its answer never comes. Once it is taken for dead the
    // answer is given without it, and says so.
    signal(c.pid(), "STOP");
    until_stopped(c.pid()).await;
    let (status, body) = api(a.addr, "POST", "/api/v1/publish", publish).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"ok": true, "delivered": 2,
               "incomplete": {"unanswered": 1, "missing": c_uid, "error": null}})
    );
    signal(c.pid(), "CONT");
    until_nodes(&a, 2).await;
    until_nodes(&b, 2).await;
    for device in &mut devices[..2] {
        assert_eq!(
            without_offset(device.recv().await),
            r#"42/pubsub,["news",1]"#
        );
    }
    // C was taken for dead: it rejoins, closing its clients' connections
    // as a transport close (they reconnect by themselves, and recover what
    // they missed: `a_node_frozen_past_the_timeout_rejoins_and_its_clients_recover_once`).
    // Alice's device there comes back.
    let frames = devices[2].until_closed().await;
    assert!(!frames.iter().any(|f| f.starts_with("41")), "{frames:?}");
    devices[2] = connect_pubsub(c.addr, "alice").await;

    // Disconnecting alice from B disconnects her sockets on every node.
    let (status, body) = api(b.addr, "POST", "/api/v1/disconnect", r#"{"user":"alice"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ok": true, "disconnected": 3}));
    for device in &mut devices {
        assert_eq!(device.recv().await, "41/pubsub,");
    }
    let (_, body) = api(a.addr, "GET", room, "").await;
    assert_eq!(
        body,
        json!({"ok": true, "room": "user:alice", "sockets": 0})
    );
}

/// Each user's `sockets` in a presence reply, in the order asked.
fn sockets_of<'a>(body: &Value, users: &[&'a str]) -> Vec<(&'a str, u64)> {
    let presence = &body["presence"];
    (users.iter())
        .map(|user| (*user, presence[*user]["sockets"].as_u64().unwrap()))
        .collect()
}

/// `GET /api/v1/presence` counts each user's sockets on every node, in
/// one question per namespace for all the users asked; a node that does
/// not answer (frozen) makes the answer partial, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_presence_api_counts_every_nodes_sockets_and_names_a_node_that_does_not_answer() {
    let Some((a, b)) = node_and_binary("").await else {
        return;
    };
    let node_a = a.app.cluster.as_ref().unwrap();
    let b_uid = node_a.nodes();
    // Alice: one socket on A, two on B (in two namespaces); bob one on B;
    // carol none.
    let _alice_a = Device::connect(a.addr, "alice", "/presence").await;
    let _alice_b = Device::connect(b.addr, "alice", "/presence").await;
    let _alice_b_chat = Device::connect(b.addr, "alice", "/chat").await;
    let _bob_b = Device::connect(b.addr, "bob", "/calls").await;
    let users = ["alice", "bob", "carol"];
    let query = "/api/v1/presence?user=alice&user=bob&user=carol";

    // Either node counts every node's sockets, every namespace together.
    let asked = node_a.stats().requests_sent;
    for addr in [a.addr, b.addr] {
        let (status, body) = api(addr, "GET", query, "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            sockets_of(&body, &users),
            [("alice", 3), ("bob", 1), ("carol", 0)],
            "{body}"
        );
        assert_eq!(body.get("incomplete"), None, "{body}");
        assert_eq!(shown(&body["presence"]["alice"]), ("online", 2), "{body}");
    }
    // A asked one question per namespace, whatever the number of users.
    let namespaces = a.app.io.namespaces().len() as u64;
    assert_eq!(node_a.stats().requests_sent - asked, namespaces);

    // B freezes: its answer never comes. Once it is taken for dead the
    // answer is given without it, and says so.
    signal(b.pid(), "STOP");
    until_stopped(b.pid()).await;
    let (status, body) = api(a.addr, "GET", query, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sockets_of(&body, &users),
        [("alice", 1), ("bob", 0), ("carol", 0)],
        "{body}"
    );
    assert_eq!(
        body["incomplete"],
        json!({"unanswered": 1, "missing": b_uid, "error": null}),
        "{body}"
    );
    signal(b.pid(), "CONT");
    until_nodes(&a, 1).await;
}

/// A node that dies while no other node is up leaves its live state in
/// Redis; the next node to start drops it once it has heard the cluster
/// for a heartbeat timeout (the dead node is listed, and not alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_died_alone_is_dropped_by_the_next_node_to_start() {
    let Some(sections) = sections().await else {
        return;
    };
    let toml = node_toml(&sections);
    let mut c = Binary::spawn(&toml, |_, _| {}).await;
    let _alice = Device::connect(c.addr, "alice", "/presence").await;
    let (_, body) = api(c.addr, "GET", "/api/v1/presence?user=alice", "").await;
    assert_eq!(shown(&body["presence"]["alice"]), ("online", 1), "{body}");
    c.child.kill().await.unwrap();

    let a = start_raw(&toml).await;
    let started = Instant::now();
    let offline = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, body) = api(a.addr, "GET", "/api/v1/presence?user=alice", "").await;
            if shown(&body["presence"]["alice"]) == ("offline", 0) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("alice is still online after her node died");
    // Not before A could tell C from a node it had not heard yet.
    assert!(
        started.elapsed() >= Duration::from_millis(2 * HEARTBEAT_MS),
        "{offline}"
    );
}

/// The namespaces of [`a_node_frozen_past_the_timeout_rejoins_and_its_clients_recover_once`]:
/// presence, chat, calls, and `/secure` (broadcasts to rooms, recovery).
const FROZEN_NAMESPACES: &str = "[[namespaces]]\nname = \"/presence\"\nhandler = \"presence\"\nauth = true\n\
    [[namespaces]]\nname = \"/chat\"\nhandler = \"chat\"\nauth = true\n\
    [[namespaces]]\nname = \"/calls\"\nhandler = \"calls\"\nauth = true\n\
    [[namespaces]]\nname = \"/secure\"\nhandler = \"testkit\"\nauth = true\n";

/// Frames that are Socket.IO DISCONNECT packets (`41…`): a client told
/// that does not reconnect by itself.
fn disconnects(frames: &[String]) -> Vec<&String> {
    frames.iter().filter(|f| f.starts_with("41")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_past_the_timeout_rejoins_and_its_clients_recover_once() {
    use crate::cluster::alice_in_room;
    use crate::recovery::broadcast;
    let Some(sections) = sections().await else {
        return;
    };
    // Typing starts and ringing that expire while A is frozen: its timers
    // would find them when it wakes.
    let toml = format!(
        "test_setup = true\n{}[chat]\ntyping_ttl_ms = 300\n[calls]\nring_timeout_ms = 300\n\
         {FROZEN_NAMESPACES}",
        node_toml(&sections)
    );
    let b = start_raw(&toml).await;
    let a = Binary::spawn(&toml, |_, _| {}).await;
    until_nodes(&b, 1).await;

    // On B: a watcher of alice and bob, bob's devices. On A: alice's.
    let mut watcher = Device::connect(b.addr, "watcher", "/presence").await;
    let ack = watcher
        .call("watch", json!({"users": ["alice", "bob"]}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let _bob_presence = Device::connect(b.addr, "bob", "/presence").await;
    until_shown(&mut watcher, "bob", "online", 1).await;
    let alice_presence = Device::connect(a.addr, "alice", "/presence").await;
    until_shown(&mut watcher, "alice", "online", 1).await;

    let mut bob_chat = Device::connect(b.addr, "bob", "/chat").await;
    let mut alice_chat = Device::connect(a.addr, "alice", "/chat").await;
    let created = alice_chat
        .call("conversation:create", json!({"direct": "bob"}))
        .await;
    assert_eq!(created["ok"], true, "{created}");
    let conversation = created["conversation"]["id"].as_i64().unwrap();
    bob_chat.event("conversation:joined").await;
    let typing = |on: bool| json!({"conversation": conversation, "typing": on});
    let shown_typing =
        |on: bool| json!({"conversation": conversation, "typing": on, "user": "alice"});
    let ack = alice_chat.call("typing", typing(true)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(bob_chat.event("typing").await, shown_typing(true));

    // Alice calls bob from A: A times the ringing.
    let mut bob_calls = Device::connect(b.addr, "bob", "/calls").await;
    let mut alice_calls = Device::connect(a.addr, "alice", "/calls").await;
    let invite = json!({"users": ["bob"], "kind": "audio"});
    let ack = alice_calls.ask("call:invite", invite.clone()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call = ack["call"].as_str().unwrap().to_owned();
    assert_eq!(bob_calls.event("call:ringing").await["call"], call.as_str());

    // Alice in room r of /secure on A; bob broadcasts there from B.
    let mut room = alice_in_room(a.addr, b.addr, &sections).await;

    // A freezes past the heartbeat timeout: B drops it. Alice goes
    // offline for the watcher, bob sees her typing stop, once.
    signal(a.pid(), "STOP");
    until_stopped(a.pid()).await;
    until_shown(&mut watcher, "alice", "offline", 0).await;
    assert_eq!(bob_chat.event("typing").await, shown_typing(false));
    // Her device left the call it placed: cancelled, for bob.
    assert_eq!(
        bob_calls.event("call:ended").await,
        json!({"call": call, "reason": "cancelled"})
    );
    // B goes on broadcasting to alice's room.
    for n in 1..=3 {
        broadcast(&mut room.bob, "r", json!(n)).await;
    }

    // A wakes: it finds it was dropped and closes its clients' connections
    // as a transport close (no DISCONNECT: they reconnect by themselves).
    // Alice comes back on A with her last offset: the same socket, and
    // every event she had not received, once, in order.
    signal(a.pid(), "CONT");
    room.closed_then_recovered_on(a.addr).await;
    for device in [alice_chat, alice_presence, alice_calls] {
        let frames = device.until_closed().await;
        assert!(disconnects(&frames).is_empty(), "{frames:?}");
    }

    // Her presence device reconnects: the watcher sees her online again,
    // once, with one device; bob was never dropped by A.
    let _alice_presence = Device::connect(a.addr, "alice", "/presence").await;
    let seen = watcher
        .until("presence", |p| {
            p["user"] == "alice" && p["status"] == "online"
        })
        .await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(shown(&seen[0].1), ("online", 1));
    watcher.quiet().await;
    let events: Vec<_> = watcher.pending();
    assert!(events.is_empty(), "{events:?}");
    assert!(
        !watcher
            .history()
            .iter()
            .any(|e| e.data["user"] == "bob" && e.data["status"] == "offline"),
        "{:?}",
        watcher.history()
    );

    // Her chat device reconnects and types again: bob's next typing event
    // is that start, not a second stop from A's expired timer.
    let mut alice_chat = Device::connect(a.addr, "alice", "/chat").await;
    let ack = alice_chat.call("typing", typing(true)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(bob_chat.event("typing").await, shown_typing(true));

    // She calls again from A: bob's next event of /calls is that call
    // ringing, not a second end of the first from A's ring timer.
    let mut alice_calls = Device::connect(a.addr, "alice", "/calls").await;
    let ack = alice_calls.ask("call:invite", invite).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (name, data) = bob_calls.until("call:ringing", |_| true).await.remove(0);
    assert_eq!(name, "call:ringing", "{data}");
    assert_eq!(data["call"], ack["call"]);

    // Counted on A.
    let metrics = crate::common::http(a.addr, "GET", "/metrics", &[], "")
        .await
        .body;
    assert_eq!(
        crate::common::sample(&metrics, "switchboard_cluster_rejoins_total"),
        1.0
    );
}
