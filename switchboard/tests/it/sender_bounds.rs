//! Every writer bounded per sender, tried as an attacker would: one user
//! toggling `status` from two devices, one user starting to type in many
//! conversations shared with the same victim.
//! Each burst is cut to the configured rate (counted in what was admitted
//! and in what the victim received, against the bucket's burst plus what
//! it refilled while the test ran), refused with the contract's answer,
//! and another sender's events still pass meanwhile.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{Value, json};

use crate::common::{Device, RawServer, start_raw};

/// A bound as a test configures it: a token bucket.
struct Bucket {
    burst: f64,
    per_sec: f64,
}

impl Bucket {
    /// `burst` at once, `per_sec` sustained.
    fn new(burst: f64, per_sec: f64) -> Bucket {
        Bucket { burst, per_sec }
    }

    /// Most it admits from `since` to now: what an attacker may get
    /// through, however fast they send.
    fn allowed(&self, since: Instant) -> usize {
        (self.burst + self.per_sec * since.elapsed().as_secs_f64()).floor() as usize
    }

    /// A server with the test secret and the default namespaces, this
    /// bound as `[section]`'s keys `rate` and `burst`, and `more` keys of
    /// that section.
    async fn serve(&self, section: &str, [rate, burst]: [&str; 2], more: &str) -> RawServer {
        start_raw(&format!(
            "[auth]\nhs256_secret = \"test-secret\"\n\
             [{section}]\n{rate} = {}\n{burst} = {}\n{more}\n",
            self.per_sec, self.burst
        ))
        .await
    }
}

/// A device of each of `users` on `nsp`, connected in order.
async fn devices<const N: usize>(addr: SocketAddr, nsp: &str, users: [&str; N]) -> [Device; N] {
    let mut connected = Vec::new();
    for user in users {
        connected.push(Device::connect(addr, user, nsp).await);
    }
    match connected.try_into() {
        Ok(devices) => devices,
        Err(_) => unreachable!("one device per user"),
    }
}
// ------------------------------------------------------------ presence

/// Two devices of alice send 20 status changes at once: the user's bucket
/// (not each socket's) lets the burst through and refuses the rest
/// `rate_limited`; her watcher hears no more of her than was admitted,
/// and carol's status still reaches him.
#[tokio::test]
async fn status_changes_are_bounded_per_user_across_devices() {
    let bound = Bucket::new(3.0, 1.0);
    let server = bound
        .serve(
            "presence",
            ["status_changes_per_sec", "status_change_burst"],
            "",
        )
        .await;
    let [mut phone, mut laptop, mut carol, mut bob] =
        devices(server.addr, "/presence", ["alice", "alice", "carol", "bob"]).await;
    let watched = bob
        .call("watch", json!({"users": ["alice", "carol"]}))
        .await;
    assert_eq!(watched["ok"], true, "{watched}");

    let started = Instant::now();
    let mut sent = Vec::new();
    for i in 0..10 {
        for (d, device) in [&mut phone, &mut laptop].into_iter().enumerate() {
            let status = if (i + d) % 2 == 0 { "busy" } else { "away" };
            sent.push((d, device.emit("status", &json!({"status": status})).await));
        }
    }
    let mut admitted = 0;
    for (d, id) in sent {
        let device = if d == 0 { &mut phone } else { &mut laptop };
        let ack = device.ack(id).await;
        if ack["ok"] == true {
            admitted += 1;
        } else {
            assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
        }
    }
    let most = bound.allowed(started);
    assert!(
        (1..=most).contains(&admitted),
        "{admitted} of 20 status changes admitted, at most {most} expected"
    );

    // Another user is not held by alice's bucket.
    let ack = carol.call("status", json!({"status": "busy"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    // Each of alice's admitted changes was announced before its ack, so
    // whatever bob hears of her comes before carol's.
    let heard = bob.until("presence", |p| p["user"] == "carol").await;
    let of_alice = heard.iter().filter(|(_, p)| p["user"] == "alice").count();
    assert!(
        of_alice <= admitted,
        "bob heard alice {of_alice} times for {admitted} admitted changes"
    );
}

// -------------------------------------------------------------- typing

/// Alice, in eight groups with bob, starts typing in all of them at once:
/// the per-conversation interval does not hold her (each is another
/// conversation), her per-user bound does. Past it her starts are acked
/// `relayed: false` (no error); the stops of those that were relayed
/// still are, within the same bound; carol's typing reaches bob.
#[tokio::test]
async fn typing_is_bounded_per_user_across_conversations() {
    let bound = Bucket::new(4.0, 1.0);
    let server = bound
        .serve("chat", ["typing_relays_per_sec", "typing_relay_burst"], "")
        .await;
    let [mut alice, mut bob, mut carol] =
        devices(server.addr, "/chat", ["alice", "bob", "carol"]).await;
    let mut groups = Vec::new();
    for i in 0..8 {
        let created = alice
            .call(
                "conversation:create",
                json!({"name": format!("g{i}"), "members": ["bob"]}),
            )
            .await;
        assert_eq!(created["ok"], true, "{created}");
        groups.push(created["conversation"]["id"].as_i64().unwrap());
    }
    let with_carol = carol
        .call(
            "conversation:create",
            json!({"name": "carol's", "members": ["bob"]}),
        )
        .await["conversation"]["id"]
        .as_i64()
        .unwrap();

    let started = Instant::now();
    let mut ids = Vec::new();
    for conversation in &groups {
        let start = json!({"conversation": conversation, "typing": true});
        ids.push(alice.emit("typing", &start).await);
    }
    let mut relayed = Vec::new();
    for (conversation, id) in groups.iter().zip(ids) {
        let ack = alice.ack(id).await;
        assert_eq!(ack["ok"], true, "{ack}");
        if ack["relayed"] == true {
            relayed.push(*conversation);
        } else {
            assert_eq!(ack["relayed"], false, "{ack}");
        }
    }
    for conversation in &groups {
        let stop = json!({"conversation": conversation, "typing": false});
        let ack = alice.call("typing", stop).await;
        assert_eq!(
            ack["relayed"],
            relayed.contains(conversation),
            "a stop is relayed exactly when its start was: {ack}"
        );
    }
    // A start costs two (itself and its stop).
    let most = bound.allowed(started);
    assert!(
        !relayed.is_empty() && 2 * relayed.len() <= most,
        "{} of 8 starts relayed, at most {} expected",
        relayed.len(),
        most / 2
    );

    let start = json!({"conversation": with_carol, "typing": true});
    let ack = carol.call("typing", start).await;
    assert_eq!(
        ack["relayed"], true,
        "carol is not held by alice's bound: {ack}"
    );
    let heard = bob.until("typing", |t| t["user"] == "carol").await;
    let of_alice: Vec<&Value> = heard
        .iter()
        .filter(|(name, t)| name == "typing" && t["user"] == "alice")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        of_alice.len(),
        2 * relayed.len(),
        "bob sees each relayed start and its stop, nothing else: {of_alice:?}"
    );
    assert!(2 * relayed.len() <= most);
}
