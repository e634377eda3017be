//! `/chat` over the wire, what devices receive and in which order: a
//! thousand messages sent at once from four devices get seqs 1..=1000,
//! each once, in the same order on every device, retries included (and,
//! with the devices on three nodes of a cluster, each seq once on every
//! device); a
//! member who leaves mid-stream gets what preceded the leave and nothing
//! after.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::{Device, cluster_sections_on, postgres_database, redis_url, start_raw};
use serde_json::{Value, json};

const PREFIX: &str = "42/chat,";

/// A device of `user` on `/chat`.
async fn device(addr: std::net::SocketAddr, user: &str) -> Device {
    Device::connect(addr, user, "/chat")
        .await
        .with_wait(Duration::from_secs(30))
}

fn parse_frame(frame: &str) -> Option<(String, Value)> {
    let rest = frame.strip_prefix(PREFIX)?;
    let v: Value = serde_json::from_str(rest).ok()?;
    Some((v[0].as_str()?.to_owned(), v[1].clone()))
}

fn parse_ack(frame: &str) -> Option<(u64, Value)> {
    let rest = frame.strip_prefix("43/chat,")?;
    let open = rest.find('[')?;
    let id = rest[..open].parse().ok()?;
    let v: Value = serde_json::from_str(&rest[open..]).ok()?;
    Some((id, v[0].clone()))
}

const TOTAL: usize = 1000;

/// The configuration of a server for [`a_thousand_at_once`]: no rate
/// limits, and `store_toml` (the store, and a cluster's section).
fn unlimited(store_toml: &str) -> String {
    format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[limits]\nevents_per_sec = 0\n\
         [chat]\nmessages_per_sec = 0\n{store_toml}"
    )
}

/// Four devices of two users, on the servers at `addrs` (one server, or
/// the nodes of a cluster), send 1,000 messages at once to one
/// conversation (with retries of earlier client_ids among them). On one
/// node every device sees them in one order; across nodes each node
/// delivers its own commits in order, and a device sees every seq once.
async fn a_thousand_at_once(addrs: [std::net::SocketAddr; 4]) {
    let one_node = addrs.iter().all(|a| *a == addrs[0]);
    let mut devices = [
        device(addrs[0], "alice").await,
        device(addrs[1], "alice").await,
        device(addrs[2], "bob").await,
        device(addrs[3], "bob").await,
    ];
    devices[0]
        .emit_with_id(1, "conversation:create", &json!({"direct": "bob"}))
        .await;
    let created = devices[0].ack(1).await;
    assert_eq!(created["ok"], true, "{created}");
    let conversation = created["conversation"]["id"].as_i64().unwrap();
    // Everyone learns of the new conversation first (then nothing but
    // messages and acks follow); the creating device before its ack (kept
    // while the ack was awaited).
    let (event, data) = parse_frame(&devices[0].next_frame().await).unwrap();
    assert_eq!(event, "conversation:joined");
    assert_eq!(data["conversation"]["id"], conversation);
    for d in devices[1..].iter_mut() {
        let (event, data) = parse_frame(&d.next_frame().await).unwrap();
        assert_eq!(event, "conversation:joined");
        assert_eq!(data["conversation"]["id"], conversation);
    }

    let per_device = TOTAL / devices.len();
    let users = ["alice", "alice", "bob", "bob"];
    // Send everything at once from the four devices; each device's
    // retries (a lost ack: same client_id again) go between its sends.
    let sends = devices
        .iter_mut()
        .enumerate()
        .map(|(d, device)| async move {
            let mut retries = 0;
            for i in 0..per_device {
                let client_id = format!("d{d}-{i}");
                let payload = json!({"conversation": conversation, "client_id": client_id,
                                 "text": format!("{} says {i}", users[d])});
                device
                    .emit_with_id(i as u64 + 10, "message", &payload)
                    .await;
                if i % 50 == 25 {
                    // The same message again, as a client does after a reconnect.
                    device
                        .emit_with_id(100_000 + i as u64, "message", &payload)
                        .await;
                    retries += 1;
                }
            }
            retries
        });
    let retries: usize = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .sum();
    assert!(retries > 0);

    // Every device receives all 1,000 messages, and its own acks.
    let mut orders: Vec<Vec<(i64, String)>> = Vec::new();
    let mut acks_by_client: HashMap<String, Vec<Value>> = HashMap::new();
    for (d, device) in devices.iter_mut().enumerate() {
        let mut order = Vec::new();
        let mut acks = 0;
        let own = per_device + per_device.div_ceil(50);
        while order.len() < TOTAL || acks < own {
            let frame = device.next_frame().await;
            if let Some((event, data)) = parse_frame(&frame) {
                assert_eq!(event, "message", "{frame}");
                order.push((
                    data["seq"].as_i64().unwrap(),
                    data["client_id"].as_str().unwrap().to_owned(),
                ));
            } else if let Some((id, ack)) = parse_ack(&frame) {
                assert_eq!(ack["ok"], true, "{ack}");
                let i = if id >= 100_000 { id - 100_000 } else { id - 10 };
                acks_by_client
                    .entry(format!("d{d}-{i}"))
                    .or_default()
                    .push(ack);
                acks += 1;
            } else {
                panic!("unexpected {frame}");
            }
        }
        orders.push(order);
    }
    // Seqs 1..=1000, each client_id once, on every device; in one order
    // on one node.
    let expected: Vec<i64> = (1..=TOTAL as i64).collect();
    for order in orders.iter_mut() {
        if !one_node {
            order.sort();
        }
        assert_eq!(order.iter().map(|o| o.0).collect::<Vec<_>>(), expected);
        let distinct: HashSet<&String> = order.iter().map(|o| &o.1).collect();
        assert_eq!(distinct.len(), TOTAL, "a message was doubled");
    }
    for order in &orders {
        assert_eq!(order, &orders[0], "devices disagree on the messages");
    }
    // Acks: every client_id got one seq; a retry got the same one.
    assert_eq!(acks_by_client.len(), TOTAL);
    let mut seen = HashSet::new();
    for (client_id, acks) in &acks_by_client {
        let seq = acks[0]["seq"].as_i64().unwrap();
        for ack in acks {
            assert_eq!(ack["seq"], seq, "{client_id}: {acks:?}");
            assert_eq!(ack["id"], acks[0]["id"]);
            assert_eq!(ack["ts"], acks[0]["ts"]);
        }
        assert!(seen.insert(seq), "seq {seq} acked twice");
        let stored = orders[0].iter().find(|o| &o.1 == client_id).unwrap();
        assert_eq!(stored.0, seq, "acked seq is the delivered one");
    }
    // And nothing extra arrives (no doubled delivery after the fact).
    devices[0]
        .emit_with_id(
            7,
            "history",
            &json!({"conversation": conversation, "after": 995}),
        )
        .await;
    let page = devices[0].ack(7).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 5, "{page}");
    assert_eq!(page["has_more"], false);
    for d in devices.iter_mut() {
        assert!(d.try_frame().is_none(), "an extra frame arrived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_four_devices_at_once_on_sqlite() {
    // A generous store timeout: a loaded test machine must not turn a
    // slow fsync into `unavailable`.
    let server = start_raw(&unlimited("[store]\ntimeout_ms = 20000\n")).await;
    a_thousand_at_once([server.addr; 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_four_devices_at_once_on_postgres() {
    let Some((_, url)) = postgres_database().await else {
        return;
    };
    let store = format!("[store]\nurl = {url:?}\ntimeout_ms = 20000\n");
    let server = start_raw(&unlimited(&store)).await;
    a_thousand_at_once([server.addr; 4]).await;
}

/// The same with the four devices on three nodes of a cluster on one
/// PostgreSQL: three writers take seqs at once, and still none is skipped
/// or given twice, and every device gets every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_four_devices_on_three_nodes_at_once() {
    let Some(redis) = redis_url() else {
        return;
    };
    let Some(sections) = cluster_sections_on(&redis, "").await else {
        return;
    };
    // The sections name the store: its timeout is added to them.
    let sections = sections.replace("[store]\n", "[store]\ntimeout_ms = 20000\n");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start_raw(&unlimited(&sections)).await);
    }
    let [a, b, c] = [0, 1, 2].map(|i| nodes[i].addr);
    a_thousand_at_once([a, b, c, a]).await;
}

/// A member who leaves while messages stream in gets every message
/// committed before the leave, then the `member_left`, then nothing of the
/// conversation: the leave takes the messages' path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_mid_stream_gets_what_preceded_the_leave_and_nothing_after() {
    let server = start_raw(
        "[auth]\nhs256_secret = \"test-secret\"\n[limits]\nevents_per_sec = 0\n\
         [chat]\nmessages_per_sec = 0\n[store]\ntimeout_ms = 20000\n",
    )
    .await;
    let mut alice = device(server.addr, "alice").await;
    let mut leaving = device(server.addr, "carol").await;
    let mut watching = device(server.addr, "carol").await;
    alice
        .emit_with_id(
            1,
            "conversation:create",
            &json!({"name": "stream", "members": ["carol"]}),
        )
        .await;
    let conversation = alice.ack(1).await["conversation"]["id"].as_i64().unwrap();
    const SENT: u64 = 300;
    let payload = |i: u64| {
        json!({"conversation": conversation, "client_id": format!("s{i}"),
               "text": format!("m{i}")})
    };
    let mut last_seq = 0;
    // Messages in flight, some already acked (so carol must get those),
    // when the leave comes; more follow it.
    for i in 0..100 {
        alice.emit_with_id(10 + i, "message", &payload(i)).await;
    }
    for i in 0..50 {
        last_seq = last_seq.max(alice.ack(10 + i).await["seq"].as_i64().unwrap());
    }
    leaving
        .emit_with_id(
            2,
            "conversation:leave",
            &json!({"conversation": conversation}),
        )
        .await;
    for i in 100..SENT {
        alice.emit_with_id(10 + i, "message", &payload(i)).await;
    }
    for i in 50..SENT {
        let ack = alice.ack(10 + i).await;
        assert_eq!(ack["ok"], true, "{ack}");
        last_seq = last_seq.max(ack["seq"].as_i64().unwrap());
    }
    assert_eq!(last_seq, SENT as i64);
    // Then a message carol is still to get, in another conversation: once
    // it is in, everything sent to her before it is too.
    alice
        .emit_with_id(
            3,
            "message",
            &json!({"to": "carol", "client_id": "flush", "text": "flush"}),
        )
        .await;
    assert_eq!(alice.ack(3).await["ok"], true);

    let mut seqs = Vec::new();
    let mut left = false;
    loop {
        let (event, data) = parse_frame(&watching.next_frame().await).unwrap();
        if data["conversation"] != conversation
            && !(event == "conversation:joined" && data["conversation"]["id"] == conversation)
        {
            if event == "message" && data["client_id"] == "flush" {
                break;
            }
            continue;
        }
        match event.as_str() {
            "conversation:joined" => {}
            "message" => {
                assert!(!left, "a message after the leave: {data}");
                seqs.push(data["seq"].as_i64().unwrap());
            }
            "conversation:member_left" => {
                assert_eq!(data["user"], "carol");
                left = true;
            }
            other => panic!("unexpected {other}: {data}"),
        }
    }
    assert!(left, "the leave was not announced");
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(
        seqs, expected,
        "what preceded the leave, all of it, in order"
    );
    eprintln!(
        "carol got {} of {SENT} messages before her leave",
        seqs.len()
    );
}
