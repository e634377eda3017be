//! Chat messages across a cluster when a node dies (two nodes on one
//! PostgreSQL and one Redis; the node killed is the real binary): a send
//! is acked only once the other nodes have it, and a retry with the same
//! `client_id` publishes the stored message if, and only if, no node did —
//! every device of every member gets every message once, in order.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::OwnRedis;
use crate::cluster_hub::{node_toml, until_nodes};
use crate::common::binary::{Binary, signal, until_stopped};
use crate::common::{Device, cluster_sections_on, redis_url, start_raw};

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
    if redis_url().is_none() {
        return;
    }
    // A Redis of its own: it is frozen here.
    let redis = OwnRedis::start();
    let Some(sections) = cluster_sections_on(&redis.url(), "").await else {
        return;
    };
    let toml = format!("{}{more}\n", node_toml(&sections));
    let b = start_raw(&toml).await;
    let mut a = Binary::spawn(&toml, |_, _| {}).await;
    until_nodes(&b, 1).await;

    let mut alice_a = Device::connect(a.addr, "alice", "/chat").await;
    let mut alice_b = Device::connect(b.addr, "alice", "/chat").await;
    let mut bob_b = Device::connect(b.addr, "bob", "/chat").await;
    let conversation = direct(&mut alice_a, &mut [&mut alice_b, &mut bob_b]).await;

    // Redis stops answering: three sends on A are stored (B's history,
    // read from PostgreSQL, has them) and not acked.
    signal(redis.pid(), "STOP");
    until_stopped(redis.pid()).await;
    for n in 1..=3 {
        alice_a.emit("message", &send(conversation, n)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = bob_b
            .call("history", json!({"conversation": conversation}))
            .await;
        if page["messages"].as_array().is_some_and(|m| m.len() == 3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stored: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked = tokio::time::timeout(Duration::from_millis(500), alice_a.next_ack()).await;
    assert!(
        acked.is_err(),
        "a send was acked while Redis could not publish it: {acked:?}"
    );

    // A dies with them; Redis comes back.
    a.child.kill().await.unwrap();
    signal(redis.pid(), "CONT");

    // Alice's device reconnects to B and sends them again: each is
    // answered as the one stored.
    let mut alice_again = Device::connect(b.addr, "alice", "/chat").await;
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
