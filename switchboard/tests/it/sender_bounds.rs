//! Every writer bounded per sender, tried as an attacker would: one user
//! toggling `status` from two devices.
//! Each burst is cut to the configured rate (counted in what was admitted
//! and in what the victim received, against the bucket's burst plus what
//! it refilled while the test ran), refused with the contract's answer,
//! and another sender's events still pass meanwhile.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;

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
