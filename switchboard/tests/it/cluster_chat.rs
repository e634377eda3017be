//! Chat across a cluster when a node dies (two nodes on one PostgreSQL
//! and one Redis; the node killed is the real binary): a send is acked
//! only once the other nodes have it, and a retry with the same
//! `client_id` publishes the stored message if, and only if, no node did —
//! every device of every member gets every message once, in order. The
//! same for membership changes (add, leave, remove) and read receipts:
//! acked once published, and a repeat announces what the first stored if
//! no node did, once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::OwnRedis;
use crate::cluster_hub::{node_toml, until_nodes};
use crate::common::binary::{Binary, signal, until_stopped};
use crate::common::{Device, RawServer, cluster_sections_on, http, redis_url, sample, start_raw};

/// The `message` payload of the `n`th send.
fn send(conversation: i64, n: u64) -> Value {
    json!({"conversation": conversation, "client_id": format!("m{n}"), "text": format!("message {n}")})
}

/// The seqs of the `message` events `device` received, in order.
fn seqs(device: &Device) -> Vec<i64> {
    (device.history().iter())
        .filter(|e| e.name == "message")
        .map(|e| e.data["seq"].as_i64().unwrap())
        .collect()
}

/// A round trip to `device`'s node: what that node queued for it before
/// is received (kept, in its history).
async fn round_trip(device: &mut Device) {
    let ack = device.call("nothing", json!({})).await;
    assert_eq!(ack["error"]["code"], "unknown_event", "{ack}");
}

/// Creates the direct conversation of `alice` (on `from`) with bob and
/// waits until each of `devices` heard of it; returns its id.
async fn direct(from: &mut Device, devices: &mut [&mut Device]) -> i64 {
    let created = from
        .call("conversation:create", json!({"direct": "bob"}))
        .await;
    assert_eq!(created["ok"], true, "{created}");
    for device in devices {
        device.event("conversation:joined").await;
    }
    created["conversation"]["id"].as_i64().unwrap()
}

/// What recovery off adds to the nodes' configuration: broadcasts are
/// then published by a script of their own, not the log's.
const RECOVERY_OFF: &str = "[socketio]\nrecovery_window_ms = 0";

/// Two nodes on a Redis of their own, which the test freezes: B runs in
/// the test, A is the real binary, which the test kills.
struct Killable {
    redis: OwnRedis,
    a: Binary,
    b: RawServer,
}

impl Killable {
    /// Nodes configured with `more`; `None` outside CI without Redis or
    /// PostgreSQL.
    async fn start(more: &str) -> Option<Killable> {
        redis_url()?;
        let redis = OwnRedis::start();
        let sections = cluster_sections_on(&redis.url(), "").await?;
        let toml = format!("{}{more}\n", node_toml(&sections));
        let b = start_raw(&toml).await;
        let a = Binary::spawn(&toml, |_, _| {}).await;
        until_nodes(&b, 1).await;
        Some(Killable { redis, a, b })
    }

    /// Redis stops answering.
    async fn freeze(&self) {
        signal(self.redis.pid(), "STOP");
        until_stopped(self.redis.pid()).await;
    }

    /// Holds A's publisher (Redis frozen): `device`, on A, sends a message
    /// to `conversation` (`probe`, on B, sees it stored), whose pipeline
    /// then waits for the frozen Redis, and what A publishes next waits
    /// behind it, in A only: it dies with A. (The pipeline itself is in
    /// Redis's socket buffer, run when Redis resumes.)
    async fn plug(&self, device: &mut Device, probe: &mut Device, conversation: i64) {
        let plug = json!({"conversation": conversation, "client_id": "plug", "text": "plug"});
        device.emit("message", &plug).await;
        let history = json!({"conversation": conversation});
        until_answered(probe, "history", history, |page| {
            (page["messages"].as_array())
                .is_some_and(|m| m.iter().any(|m| m["client_id"] == "plug"))
        })
        .await;
    }

    /// Until A holds at least `n` broadcasts behind its plug, unpublished.
    async fn until_held(&self, n: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let metrics = http(self.a.addr, "GET", "/metrics", &[], "").await.body;
            let held = sample(&metrics, "switchboard_cluster_publish_queue");
            if held >= n {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "A holds {held}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A dies, with what it did not publish; Redis comes back.
    async fn kill_a_and_resume(&mut self) {
        self.a.child.kill().await.unwrap();
        signal(self.redis.pid(), "CONT");
    }
}

/// Asks `event` of `device` until its ack satisfies `done` (what node A
/// stored, read from PostgreSQL by B); fails after 5 s.
async fn until_answered(
    device: &mut Device,
    event: &str,
    payload: Value,
    done: impl Fn(&Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ack = device.call(event, payload.clone()).await;
        if done(&ack) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {ack}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `device` gets no ack for half a second (what it emitted is stored, and
/// Redis is frozen: not published).
async fn not_acked(device: &mut Device, what: &str) {
    let acked = tokio::time::timeout(Duration::from_millis(500), device.next_ack()).await;
    assert!(
        acked.is_err(),
        "{what} was acked while Redis could not publish it: {acked:?}"
    );
}

/// How many events `name` whose data satisfies `which` `device` received.
fn count(device: &Device, name: &str, which: impl Fn(&Value) -> bool) -> usize {
    (device.history().iter())
        .filter(|e| e.name == name && which(&e.data))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_of_a_node_killed_before_publishing_reach_every_device_once_when_retried() {
    killed_before_publishing("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recovery_sends_of_a_node_killed_before_publishing_reach_every_device_once() {
    killed_before_publishing(RECOVERY_OFF).await;
}

/// Nodes configured with `more`: Redis frozen, three sends on A stored
/// and not acked, A killed, Redis resumed, the sends retried on B.
async fn killed_before_publishing(more: &str) {
    let Some(mut nodes) = Killable::start(more).await else {
        return;
    };
    let mut alice_a = Device::connect(nodes.a.addr, "alice", "/chat").await;
    let mut alice_b = Device::connect(nodes.b.addr, "alice", "/chat").await;
    let mut bob_b = Device::connect(nodes.b.addr, "bob", "/chat").await;
    let conversation = direct(&mut alice_a, &mut [&mut alice_b, &mut bob_b]).await;

    // Redis stops answering: three sends on A are stored (B's history,
    // read from PostgreSQL, has them) and not acked.
    nodes.freeze().await;
    for n in 1..=3 {
        alice_a.emit("message", &send(conversation, n)).await;
    }
    let history = json!({"conversation": conversation});
    until_answered(&mut bob_b, "history", history, |page| {
        page["messages"].as_array().is_some_and(|m| m.len() == 3)
    })
    .await;
    not_acked(&mut alice_a, "a send").await;

    // A dies with them; Redis comes back.
    nodes.kill_a_and_resume().await;

    // Alice's device reconnects to B and sends them again: each is
    // answered as the one stored.
    let mut alice_again = Device::connect(nodes.b.addr, "alice", "/chat").await;
    for n in 1..=3 {
        let ack = alice_again.call("message", send(conversation, n)).await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(ack["seq"], n, "{ack}");
        assert_eq!(ack["duplicate"], true, "{ack}");
    }
    // Every device on B that was there throughout has each message once,
    // in order; the new one each it was there for, once, in order.
    for device in [&mut bob_b, &mut alice_b] {
        device.until("message", |m| m["seq"] == 3).await;
        round_trip(device).await;
        assert_eq!(seqs(device), [1, 2, 3]);
    }
    round_trip(&mut alice_again).await;
    let got = seqs(&alice_again);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    assert!(got.iter().all(|s| (1..=3).contains(s)), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_already_published_publishes_nothing_more() {
    retried_after_published("", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recovery_a_retried_send_already_published_publishes_nothing_more() {
    retried_after_published(RECOVERY_OFF, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sharded_mode_a_retried_send_already_published_publishes_nothing_more() {
    // Sharded pub/sub (recovery off there): the same script, on SPUBLISH
    // in the sharded adapter's format.
    retried_after_published("", "pubsub = \"sharded\"").await;
}

/// Nodes configured with `more` and the `[cluster]` keys `cluster`: a
/// send acked, then sent again from both nodes, then another.
async fn retried_after_published(more: &str, cluster: &str) {
    let Some(redis) = redis_url() else {
        return;
    };
    let Some(sections) = cluster_sections_on(&redis, cluster).await else {
        return;
    };
    let toml = format!("{}{more}\n", node_toml(&sections));
    let a = start_raw(&toml).await;
    let b = start_raw(&toml).await;
    until_nodes(&a, 1).await;
    let mut alice = Device::connect(a.addr, "alice", "/chat").await;
    let mut bob = Device::connect(b.addr, "bob", "/chat").await;
    let conversation = direct(&mut alice, &mut [&mut bob]).await;

    let ack = alice.call("message", send(conversation, 1)).await;
    assert_eq!(
        (ack["seq"].as_i64(), &ack["duplicate"]),
        (Some(1), &json!(false)),
        "{ack}"
    );
    // The same send again, from alice's other device on the other node
    // and from the first: answered as the stored one, published by no one.
    let mut alice_b = Device::connect(b.addr, "alice", "/chat").await;
    for device in [&mut alice_b, &mut alice] {
        let ack = device.call("message", send(conversation, 1)).await;
        assert_eq!(
            (ack["seq"].as_i64(), &ack["duplicate"]),
            (Some(1), &json!(true)),
            "{ack}"
        );
    }
    let ack = alice.call("message", send(conversation, 2)).await;
    assert_eq!(ack["seq"], 2, "{ack}");
    for device in [&mut bob, &mut alice, &mut alice_b] {
        device.until("message", |m| m["seq"] == 2).await;
        round_trip(device).await;
    }
    assert_eq!(seqs(&bob), [1, 2]);
    assert_eq!(seqs(&alice), [1, 2]);
    // (The first publish may reach B after alice's device there connected.)
    let got = seqs(&alice_b);
    assert!(matches!(got[..], [2] | [1, 2]), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_redis_does_not_take_in_time_is_acked_unavailable_and_its_retry_delivers_it_once() {
    if redis_url().is_none() {
        return;
    }
    let redis = OwnRedis::start();
    let Some(sections) = cluster_sections_on(&redis.url(), "reconnect_max_ms = 200").await else {
        return;
    };
    // A waits 300 ms for Redis; B the default 5 s (its connections outlive
    // the freeze, so its devices miss nothing published).
    let a_sections = sections.replace("[cluster]\n", "[cluster]\ncommand_timeout_ms = 300\n");
    let a = start_raw(&node_toml(&a_sections)).await;
    let b = start_raw(&node_toml(&sections)).await;
    until_nodes(&b, 1).await;
    let mut alice = Device::connect(a.addr, "alice", "/chat").await;
    let mut bob = Device::connect(b.addr, "bob", "/chat").await;
    let conversation = direct(&mut alice, &mut [&mut bob]).await;

    signal(redis.pid(), "STOP");
    until_stopped(redis.pid()).await;
    let ack = alice.call("message", send(conversation, 1)).await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    signal(redis.pid(), "CONT");

    // The client sends it again until it is acked (A reconnects first).
    let mut attempts = 0;
    let ack = loop {
        let ack = alice.call("message", send(conversation, 1)).await;
        if ack["ok"] == true {
            break ack;
        }
        assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
        attempts += 1;
        assert!(attempts < 50, "never acked: {ack}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (ack["seq"].as_i64(), &ack["duplicate"]),
        (Some(1), &json!(true)),
        "{ack}"
    );
    let ack = alice.call("message", send(conversation, 2)).await;
    assert_eq!(
        (ack["seq"].as_i64(), &ack["ok"]),
        (Some(2), &json!(true)),
        "{ack}"
    );
    bob.until("message", |m| m["seq"] == 2).await;
    round_trip(&mut bob).await;
    assert_eq!(seqs(&bob), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_of_a_node_killed_before_publishing_reach_every_member_once_when_repeated()
 {
    let Some(mut nodes) = Killable::start("").await else {
        return;
    };
    let (a, b) = (nodes.a.addr, nodes.b.addr);
    // Alice owns the group; she adds carol on one device of hers on A and
    // removes erin on another (one socket's events wait for its previous
    // one's ack), while dave leaves on A.
    let mut alice_adds = Device::connect(a, "alice", "/chat").await;
    let mut alice_removes = Device::connect(a, "alice", "/chat").await;
    let mut dave_a = Device::connect(a, "dave", "/chat").await;
    let mut bob_a = Device::connect(a, "bob", "/chat").await;
    let mut bob = Device::connect(b, "bob", "/chat").await;
    let mut carol = Device::connect(b, "carol", "/chat").await;
    let mut dave = Device::connect(b, "dave", "/chat").await;
    let mut erin = Device::connect(b, "erin", "/chat").await;
    let created = alice_adds
        .call(
            "conversation:create",
            json!({"name": "team", "members": ["bob", "dave", "erin"]}),
        )
        .await;
    assert_eq!(created["ok"], true, "{created}");
    let group = created["conversation"]["id"].as_i64().unwrap();
    for device in [&mut bob, &mut bob_a, &mut dave, &mut dave_a, &mut erin] {
        device.event("conversation:joined").await;
    }

    // Redis stops answering: the three changes are stored (B reads the
    // members from PostgreSQL) and not acked; their four broadcasts wait
    // in A.
    nodes.freeze().await;
    nodes.plug(&mut bob_a, &mut bob, group).await;
    let add = json!({"conversation": group, "users": ["carol"]});
    let leave = json!({"conversation": group});
    let remove = json!({"conversation": group, "user": "erin"});
    alice_adds.emit("conversation:add_member", &add).await;
    dave_a.emit("conversation:leave", &leave).await;
    alice_removes
        .emit("conversation:remove_member", &remove)
        .await;
    let members = json!({"conversation": group});
    until_answered(&mut bob, "conversation:members", members, |ack| {
        ack["members"] == json!(["alice", "bob", "carol"])
    })
    .await;
    nodes.until_held(4.0).await;
    not_acked(&mut alice_adds, "an add").await;
    not_acked(&mut dave_a, "a leave").await;
    not_acked(&mut alice_removes, "a removal").await;

    // A dies with them; Redis comes back. The devices on A come back on B
    // and repeat them, twice (the second as if its ack were lost too):
    // each answered as a repeat has always been, and announced once.
    nodes.kill_a_and_resume().await;
    let mut alice_again = Device::connect(b, "alice", "/chat").await;
    let mut dave_again = Device::connect(b, "dave", "/chat").await;
    for _ in 0..2 {
        let ack = alice_again
            .call("conversation:add_member", add.clone())
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(ack["added"], json!([]), "{ack}");
        let ack = dave_again.call("conversation:leave", leave.clone()).await;
        assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
        let ack = alice_again
            .call("conversation:remove_member", remove.clone())
            .await;
        assert_eq!(ack["error"]["code"], "not_found", "{ack}");
    }
    // Published after anything the repeats published: once bob and carol
    // have it, B's devices have everything before it.
    let ack = alice_again
        .call(
            "message",
            json!({"conversation": group, "client_id": "after", "text": "welcome"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    for device in [&mut bob, &mut carol] {
        device.until("message", |m| m["client_id"] == "after").await;
    }
    for device in [&mut dave, &mut erin] {
        round_trip(device).await;
    }
    let of_group = |e: &Value| e["conversation"] == group;
    let joined = |e: &Value| e["conversation"]["id"] == group;
    assert_eq!(count(&carol, "conversation:joined", joined), 1);
    assert_eq!(count(&bob, "conversation:member_added", of_group), 1);
    let added = bob
        .history()
        .iter()
        .find(|e| e.name == "conversation:member_added");
    let added = &added.unwrap().data;
    assert_eq!(
        (&added["users"], &added["by"]),
        (&json!(["carol"]), &json!("alice"))
    );
    for device in [&bob, &dave] {
        assert_eq!(count(device, "conversation:member_left", of_group), 1);
    }
    for device in [&bob, &erin] {
        assert_eq!(count(device, "conversation:member_removed", of_group), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_a_node_killed_before_publishing_reaches_the_others_once_when_repeated() {
    let Some(mut nodes) = Killable::start("").await else {
        return;
    };
    let mut alice = Device::connect(nodes.b.addr, "alice", "/chat").await;
    let mut alice_a = Device::connect(nodes.a.addr, "alice", "/chat").await;
    let mut bob_a = Device::connect(nodes.a.addr, "bob", "/chat").await;
    let mut bob_b = Device::connect(nodes.b.addr, "bob", "/chat").await;
    let conversation = direct(&mut alice, &mut [&mut alice_a, &mut bob_a, &mut bob_b]).await;
    let ack = alice.call("message", send(conversation, 1)).await;
    assert_eq!(ack["seq"], 1, "{ack}");
    bob_a.until("message", |m| m["seq"] == 1).await;

    // Redis stops answering (alice's plug, seq 2, holds A's publisher):
    // bob's read on A is stored (his conversations on B say so) and not
    // acked; its two receipts wait in A.
    nodes.freeze().await;
    nodes.plug(&mut alice_a, &mut bob_b, conversation).await;
    let read = json!({"conversation": conversation, "seq": 1});
    bob_a.emit("read", &read).await;
    until_answered(&mut bob_b, "conversations", json!({}), |page| {
        page["conversations"][0]["last_read_seq"] == 1
    })
    .await;
    nodes.until_held(2.0).await;
    not_acked(&mut bob_a, "a read").await;

    // A dies with it; Redis comes back. Bob's device comes back on B and
    // reads again: the mark is unchanged, and announced (each repeat
    // announces it again: a receipt carries the mark, so a copy is
    // harmless, and reads keep no marker in Redis).
    nodes.kill_a_and_resume().await;
    let mut bob_again = Device::connect(nodes.b.addr, "bob", "/chat").await;
    let ack = bob_again.call("read", read.clone()).await;
    assert_eq!(
        (&ack["ok"], &ack["seq"], &ack["unread"]),
        (&json!(true), &json!(1), &json!(1)),
        "{ack}"
    );
    let ack = alice.call("message", send(conversation, 3)).await;
    assert_eq!(ack["seq"], 3, "{ack}");
    for device in [&mut alice, &mut bob_b] {
        device.until("message", |m| m["seq"] == 3).await;
    }
    let receipt = |e: &Value| e["user"] == "bob" && e["seq"] == 1;
    assert_eq!(count(&alice, "read", receipt), 1, "{:?}", alice.history());
    // Bob's other device: his unread count (the plug is unread), once.
    let own = |e: &Value| receipt(e) && e["unread"] == 1;
    assert_eq!(count(&bob_b, "read", own), 1, "{:?}", bob_b.history());
}
