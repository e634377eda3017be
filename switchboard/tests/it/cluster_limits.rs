//! The per-sender bounds across the nodes of a cluster (the test Redis, a
//! fresh PostgreSQL database, two nodes): a user with a device on each
//! node, or an API key sending to both, gets one bucket's worth — the
//! configured burst plus what refilled while the test ran — not one per
//! node, refused past it with the contract's answer (`rate_limited`, 429
//! with `Retry-After`); and what the victims receive is cut the same way.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::cluster_hub::until_nodes;
use crate::common::{Device, RawServer, cluster_sections_on, redis_url, start_raw};
use crate::sender_bounds::{Bucket, json_of, post, retry_after};

/// What a test configures: keys of `[api]`, `[presence]`, `[chat]` and
/// `[limits]`.
#[derive(Default)]
struct Keys {
    api: String,
    presence: String,
    chat: String,
    limits: String,
}

/// Two nodes of a fresh test cluster, with the test secret and API key
/// (`test-key`) and `keys`, each counting the other; `None` outside CI
/// without Redis or PostgreSQL.
async fn two_nodes(keys: Keys) -> Option<(RawServer, RawServer)> {
    let sections = cluster_sections_on(&redis_url()?, "").await?;
    let Keys {
        api,
        presence,
        chat,
        limits,
    } = keys;
    let toml = format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[api]\nkeys = [\"test-key\"]\n{api}\n\
         [presence]\ngrace_ms = 0\n{presence}\n[chat]\n{chat}\n[limits]\n{limits}\n{sections}\n"
    );
    let a = start_raw(&toml).await;
    let b = start_raw(&toml).await;
    until_nodes(&a, 1).await;
    until_nodes(&b, 1).await;
    Some((a, b))
}

/// Sends `event` with `payload(i, device)` from each device in turn,
/// `rounds` times, as fast as the sockets take them, then reads every ack:
/// returns how many were admitted (`ok`); every other one must be refused
/// `rate_limited`.
async fn flood(
    devices: &mut [&mut Device],
    rounds: usize,
    event: &str,
    payload: impl Fn(usize, usize) -> Value,
) -> usize {
    let mut sent = Vec::new();
    for i in 0..rounds {
        for (d, device) in devices.iter_mut().enumerate() {
            sent.push((d, device.emit(event, &payload(i, d)).await));
        }
    }
    let mut admitted = 0;
    for (d, id) in sent {
        let ack = devices[d].ack(id).await;
        if ack["ok"] == true {
            admitted += 1;
        } else {
            assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
        }
    }
    admitted
}

/// Alice, a device on each node, toggles her status as fast as she can:
/// the two nodes admit one bucket's worth between them, and bob, watching
/// her from node A, hears no more of her than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_status_changes_are_bounded_across_nodes() {
    let bound = Bucket::new(3.0, 0.5);
    let keys = bound.keys(["status_changes_per_sec", "status_change_burst"]);
    let Some((a, b)) = two_nodes(Keys {
        presence: keys,
        ..Keys::default()
    })
    .await
    else {
        return;
    };
    let mut bob = Device::connect(a.addr, "bob", "/presence").await;
    let watched = bob
        .call("watch", json!({"users": ["alice", "carol"]}))
        .await;
    assert_eq!(watched["ok"], true, "{watched}");
    let mut phone = Device::connect(a.addr, "alice", "/presence").await;
    let mut laptop = Device::connect(b.addr, "alice", "/presence").await;
    let mut carol = Device::connect(b.addr, "carol", "/presence").await;
    // Their arrivals, before the flood.
    bob.until("presence", |p| p["user"] == "carol").await;

    let started = Instant::now();
    let admitted = flood(&mut [&mut phone, &mut laptop], 10, "status", |i, d| {
        let status = if (i + d) % 2 == 0 { "busy" } else { "away" };
        json!({"status": status})
    })
    .await;
    let most = bound.allowed(started);
    assert!(
        (1..=most).contains(&admitted),
        "{admitted} of 20 status changes admitted on two nodes, at most {most} expected \
         (one bucket, not one per node)"
    );

    // Carol is not held by alice's bucket. Her change is published by
    // node B after alice's there, and alice's on node A were announced
    // before their acks: whatever bob hears of alice comes before it.
    let ack = carol.call("status", json!({"status": "busy"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let heard = bob
        .until("presence", |p| {
            p["user"] == "carol" && p["status"] == "busy"
        })
        .await;
    let of_alice = heard.iter().filter(|(_, p)| p["user"] == "alice").count();
    assert!(
        of_alice <= admitted,
        "bob heard alice {of_alice} times for {admitted} admitted changes"
    );
}

/// Alice, a device on each node, sends chat messages to a group with bob
/// as fast as she can: one bucket's worth of them is stored and
/// delivered, the rest refused `rate_limited` and never seen by bob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_chat_messages_are_bounded_across_nodes() {
    let bound = Bucket::new(4.0, 0.5);
    let keys = bound.keys(["messages_per_sec", "message_burst"]);
    let Some((a, b)) = two_nodes(Keys {
        chat: keys,
        ..Keys::default()
    })
    .await
    else {
        return;
    };
    // Bob makes the group (from his own bucket).
    let mut bob = Device::connect(a.addr, "bob", "/chat").await;
    let created = bob
        .call(
            "conversation:create",
            json!({"name": "flooded", "members": ["alice"]}),
        )
        .await;
    assert_eq!(created["ok"], true, "{created}");
    let conversation = created["conversation"]["id"].as_i64().unwrap();
    let mut phone = Device::connect(a.addr, "alice", "/chat").await;
    let mut laptop = Device::connect(b.addr, "alice", "/chat").await;

    let started = Instant::now();
    let admitted = flood(&mut [&mut phone, &mut laptop], 8, "message", |i, d| {
        json!({"conversation": conversation, "client_id": format!("m{d}-{i}"), "text": "spam"})
    })
    .await;
    let most = bound.allowed(started);
    assert!(
        (1..=most).contains(&admitted),
        "{admitted} of 16 messages admitted on two nodes, at most {most} expected \
         (one bucket, not one per node)"
    );

    // Bob's other device, on node B, sends a message last: node B
    // publishes it after alice's there, and alice's on node A were
    // delivered before their acks, so bob has every message of hers once
    // he has it — each admitted one, and none of the refused.
    let mut bob_b = Device::connect(b.addr, "bob", "/chat").await;
    let marker = json!({"conversation": conversation, "client_id": "marker", "text": "last"});
    let ack = bob_b.call("message", marker).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let heard = bob.until("message", |m| m["client_id"] == "marker").await;
    let of_alice = (heard.iter())
        .filter(|(name, m)| name == "message" && m["sender"] == "alice")
        .count();
    assert_eq!(
        of_alice, admitted,
        "bob gets each admitted message and none of the refused"
    );
}

/// One API key sends publishes to both nodes at once: between them they
/// admit one bucket's worth of recipients; the rest is refused 429 with
/// `Retry-After`, and once the key's shared bucket is empty both nodes
/// refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_keys_rate_is_bounded_across_nodes() {
    // Slow to refill, so that the bucket is still empty when the test
    // asks again.
    let bound = Bucket::new(20.0, 0.5);
    let keys = bound.keys(["recipients_per_sec", "recipient_burst"]);
    let Some((a, b)) = two_nodes(Keys {
        api: keys,
        ..Keys::default()
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    let requests = (0..8).map(|r| {
        let addr = if r % 2 == 0 { a.addr } else { b.addr };
        let users: Vec<String> = (0..5).map(|i| format!("ghost-{r}-{i}")).collect();
        let body = json!({"event": "spam", "users": users}).to_string();
        async move { post(addr, "test-key", "/api/v1/publish", &body).await }
    });
    let answers = join_all(requests).await;
    let mut recipients = 0;
    for answer in &answers {
        if answer.status == 200 {
            assert_eq!(json_of(answer)["ok"], true, "{}", answer.body);
            recipients += 5;
        } else {
            retry_after(answer);
        }
    }
    let most = bound.allowed(started);
    assert!(
        recipients > 0 && recipients <= most,
        "{recipients} recipients admitted on two nodes, at most {most} expected \
         (one bucket, not one per node)"
    );
    // Whichever node it asks now, the key's bucket has no room for five.
    let body = json!({"event": "spam", "users": ["u1", "u2", "u3", "u4", "u5"]}).to_string();
    for node in [&a, &b] {
        let answer = post(node.addr, "test-key", "/api/v1/publish", &body).await;
        retry_after(&answer);
    }
}

/// A measurement, not a check (`CI=true tests/redis/with-redis.sh
/// tests/postgres/with-postgres.sh cargo test -p switchboard --test it --
/// --ignored cluster_limits::round_trips`): the median time from a
/// client's emit to its ack of a status change and of a chat message, on
/// one node of a two-node cluster, limits on but never reached. Prints
/// the medians of `RUNS` runs (default 5) of `N` (default 200) each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn round_trips() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (runs, n) = (env("RUNS", 5), env("N", 200));
    let Some((a, _b)) = two_nodes(Keys {
        presence: "status_changes_per_sec = 1e6\nstatus_change_burst = 1e6".to_owned(),
        chat: "messages_per_sec = 1e6\nmessage_burst = 1e6".to_owned(),
        limits: "events_per_sec = 0".to_owned(),
        ..Keys::default()
    })
    .await
    else {
        return;
    };
    let mut status = Device::connect(a.addr, "alice", "/presence").await;
    let mut chat = Device::connect(a.addr, "alice", "/chat").await;
    let created = chat
        .call(
            "conversation:create",
            json!({"name": "timed", "members": ["bob"]}),
        )
        .await;
    let conversation = created["conversation"]["id"].as_i64().unwrap();
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (mut statuses, mut sends) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            let chosen = if i % 2 == 0 { "busy" } else { "away" };
            let at = Instant::now();
            let ack = status.call("status", json!({"status": chosen})).await;
            times.push(at.elapsed());
            assert_eq!(ack["ok"], true, "{ack}");
        }
        statuses.push(median(times));
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            let send = json!({"conversation": conversation, "client_id": format!("{run}-{i}"), "text": "hi"});
            let at = Instant::now();
            let ack = chat.call("message", send).await;
            times.push(at.elapsed());
            assert_eq!(ack["ok"], true, "{ack}");
        }
        sends.push(median(times));
    }
    println!(
        "round trips on a two-node cluster ({runs} runs of {n}): status median of medians {:?} \
         (runs {statuses:?}); chat message {:?} (runs {sends:?})",
        median(statuses.clone()),
        median(sends.clone()),
    );
}
