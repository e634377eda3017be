//! Every writer bounded per sender, tried as an attacker would: one user
//! toggling `status` from two devices, one user starting to type in many
//! conversations shared with the same victim, one API key storing
//! notifications for users that do not exist with parallel requests. Each
//! burst is cut to the configured rate (counted in what was admitted and
//! in what the victim received, against the bucket's burst plus what it
//! refilled while the test ran), refused with the contract's answer, and
//! another sender's events still pass meanwhile.

use std::net::SocketAddr;
use std::time::Instant;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::common::{Device, HttpResponse, RawServer, http, start_raw};

/// A bound as a test configures it: a token bucket.
pub(crate) struct Bucket {
    pub(crate) burst: f64,
    pub(crate) per_sec: f64,
}

impl Bucket {
    /// `burst` at once, `per_sec` sustained.
    pub(crate) fn new(burst: f64, per_sec: f64) -> Bucket {
        Bucket { burst, per_sec }
    }

    /// Most it admits from `since` to now: what an attacker may get
    /// through, however fast they send.
    pub(crate) fn allowed(&self, since: Instant) -> usize {
        (self.burst + self.per_sec * since.elapsed().as_secs_f64()).floor() as usize
    }

    /// A server with the test secret and the default namespaces, this
    /// bound as `[section]`'s keys `rate` and `burst`, and `more` keys of
    /// that section.
    async fn serve(&self, section: &str, keys: [&str; 2], more: &str) -> RawServer {
        start_raw(&format!(
            "[auth]\nhs256_secret = \"test-secret\"\n\
             [{section}]\n{}\n{more}\n",
            self.keys(keys)
        ))
        .await
    }

    /// This bound as a section's keys `rate` and `burst`.
    pub(crate) fn keys(&self, [rate, burst]: [&str; 2]) -> String {
        format!("{rate} = {}\n{burst} = {}", self.per_sec, self.burst)
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

// ---------------------------------------------------------- publish API

/// The keys of the publish API's bound.
const API_BOUND: [&str; 2] = ["recipients_per_sec", "recipient_burst"];

/// A request with API key `key` and a JSON body.
pub(crate) async fn post(addr: SocketAddr, key: &str, path: &str, body: &str) -> HttpResponse {
    let auth = format!("Bearer {key}");
    http(
        addr,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

pub(crate) fn json_of(response: &HttpResponse) -> Value {
    assert_eq!(response.headers["content-type"], "application/json");
    serde_json::from_str(&response.body).unwrap()
}

/// A 429 as the API answers it: the JSON error, and when to retry.
pub(crate) fn retry_after(response: &HttpResponse) -> u64 {
    assert_eq!(response.status, 429, "{}", response.body);
    let body = json_of(response);
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let secs: u64 = response.headers["retry-after"].parse().unwrap();
    assert!(secs >= 1, "{secs}");
    secs
}

/// Notifications for users that do not exist, four requests at once, with
/// one key: the key's recipients, not its requests, are counted, so what
/// it stores is cut to the burst (plus what refilled meanwhile); the rest
/// is refused 429 with `Retry-After`, stores nothing, and once the bucket
/// is empty the key is refused before its body is read. Another key, and
/// the user it notifies, are not held by it.
#[tokio::test]
async fn the_publish_api_is_bounded_per_key_by_recipients() {
    // Slow to refill, so that the key's bucket is still empty when the
    // test asks again.
    let bound = Bucket::new(100.0, 0.5);
    let keys = r#"keys = ["flood-key", "other-key"]"#;
    let server = bound.serve("api", API_BOUND, keys).await;
    let addr = server.addr;
    let mut alice = Device::connect_buffering(addr, "alice", &["/notifications"]).await;
    assert_eq!(alice.event("unread").await, json!({"count": 0}));

    let started = Instant::now();
    let requests = (0..4).map(|r| {
        let users: Vec<String> = (0..50).map(|i| format!("ghost-{r}-{i}")).collect();
        let body = json!({"users": users, "type": "spam", "title": "hi"}).to_string();
        async move { post(addr, "flood-key", "/api/v1/notifications", &body).await }
    });
    let answers = join_all(requests).await;
    let mut stored = 0;
    for answer in &answers {
        if answer.status == 200 {
            stored += json_of(answer)["stored"].as_u64().unwrap() as usize;
        } else {
            retry_after(answer);
        }
    }
    let most = bound.allowed(started);
    assert!(
        stored > 0 && stored <= most,
        "{stored} notifications stored, at most {most} expected"
    );
    // The bucket is empty: the next request is refused unread (not
    // `invalid_json`), and a publish without `persist` is counted too.
    retry_after(&post(addr, "flood-key", "/api/v1/notifications", "{not json").await);
    let publish = json!({"event": "e", "users": ["ghost"]}).to_string();
    retry_after(&post(addr, "flood-key", "/api/v1/publish", &publish).await);

    // Another key has its own bucket; its user gets the notification.
    let note = json!({"users": ["alice"], "type": "note", "title": "for alice"}).to_string();
    let answer = post(addr, "other-key", "/api/v1/notifications", &note).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let arrived = alice.event("notification").await;
    assert_eq!(arrived["notification"]["title"], "for alice");
}

/// The OpenAPI document lists the 429 of both publish endpoints, with its
/// header (schemathesis holds the answers to it).
#[tokio::test]
async fn the_openapi_document_lists_the_429_and_its_retry_after() {
    let server = Bucket::new(1.0, 1.0)
        .serve("api", API_BOUND, r#"keys = ["k"]"#)
        .await;
    let doc = http(server.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    let doc = json_of(&doc);
    for path in ["/api/v1/notifications", "/api/v1/publish"] {
        let refused = &doc["paths"][path]["post"]["responses"]["429"];
        assert!(
            refused["headers"]["Retry-After"].is_object(),
            "{path}: {refused}"
        );
    }
}

/// A request naming more recipients than the burst is not refused for
/// ever: it goes through on a full bucket, and the key then waits until
/// it has paid it back.
#[tokio::test]
async fn a_request_over_the_burst_passes_once_and_puts_the_key_in_debt() {
    let bound = Bucket::new(100.0, 10.0);
    let server = bound.serve("api", API_BOUND, r#"keys = ["big-key"]"#).await;
    let users: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    let big = json!({"event": "e", "users": users}).to_string();
    let answer = post(server.addr, "big-key", "/api/v1/publish", &big).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // 200 in debt at 10 a second: about 20 s before one more passes.
    let small = json!({"event": "e", "users": ["u0"]}).to_string();
    let wait = retry_after(&post(server.addr, "big-key", "/api/v1/publish", &small).await);
    assert!((10..=21).contains(&wait), "Retry-After: {wait}");
}
