//! `/notifications`: the store logic on SQLite and PostgreSQL (through the
//! service, as the component and the publish API use it), and the
//! namespace over the wire with raw Socket.IO clients — `list`, `read`,
//! `read_all`, the mirror to a user's other devices, the unread count at
//! connect, and that count under concurrent reads and arrivals.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Client, api, postgres_database, start_raw, token};
use hub::services::notifications::{NewNotification, Notifications, NotificationsConfig};
use hub::store::{Store, StoreConfig};
use serde_json::{Value, json};

/// A busy machine (tests run in parallel) must not turn into `unavailable`.
const SERVER: &str = "[auth]\nhs256_secret = \"test-secret\"\n[api]\nkeys = [\"test-key\"]\n\
                      [store]\ntimeout_ms = 30000\n";

fn new(title: &str) -> NewNotification {
    NewNotification {
        kind: "test".to_owned(),
        title: title.to_owned(),
        body: "body".to_owned(),
        data: json!({"title": title}),
    }
}

fn users(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn sqlite_store() -> (Store, common::RemoveOnDrop) {
    let dir = std::env::temp_dir().join(format!("sb-notif-{}", common::rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&StoreConfig {
        url: hub::store::sqlite_url_of(&dir.join("hub.db")),
        max_connections: 4,
        timeout: Duration::from_secs(30),
    })
    .await
    .unwrap();
    (store, common::RemoveOnDrop(dir))
}

async fn postgres_store() -> Option<Store> {
    let (_, url) = postgres_database().await?;
    Some(
        Store::open(&StoreConfig {
            url,
            max_connections: 4,
            timeout: Duration::from_secs(30),
        })
        .await
        .unwrap(),
    )
}

/// The service on `store`, with no namespace to tell (store logic only).
fn service(store: &Store, config: NotificationsConfig) -> Notifications {
    let io = socketio::SocketIo::new(socketio::SocketIoConfig::default());
    Notifications::new(store.clone(), io, None, config)
}

/// Everything the store does for the component, on one backend.
async fn store_logic(store: Store) {
    let n = service(&store, NotificationsConfig::default());
    // One creation, several users, a user named twice gets one.
    let created = n
        .create(&users(&["alice", "bob", "alice"]), &new("first"))
        .await
        .unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].0, "alice");
    assert_eq!(created[0].2, 1, "alice's unread count");
    let mut ids = vec![created[0].1.id];
    for i in 1..25 {
        let made = n
            .create(&users(&["alice"]), &new(&format!("n{i}")))
            .await
            .unwrap();
        assert_eq!(made[0].2, i + 1);
        ids.push(made[0].1.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    assert_eq!(n.unread("alice").await.unwrap(), 25);
    assert_eq!(n.unread("bob").await.unwrap(), 1);

    // Newest first, 20 by default, then the rest after the cursor; a
    // notification arriving between pages does not move the cursor.
    let (page, more) = n.list("alice", None, 20).await.unwrap();
    assert_eq!(page.len(), 20);
    assert!(more);
    assert_eq!(page[0].id, ids[24]);
    assert_eq!(page[0].title, "n24");
    assert_eq!(page[0].data, json!({"title": "n24"}));
    assert!(!page[0].read);
    let late = n.create(&users(&["alice"]), &new("late")).await.unwrap();
    let (rest, more) = n.list("alice", Some(page[19].id), 20).await.unwrap();
    assert!(!more);
    let rest_ids: Vec<i64> = rest.iter().map(|x| x.id).collect();
    assert_eq!(rest_ids, ids[..5].iter().rev().copied().collect::<Vec<_>>());
    let (exact, more) = n.list("alice", Some(ids[5]), 5).await.unwrap();
    assert_eq!(exact.len(), 5);
    assert!(!more, "exactly the last page");
    let (newest, _) = n.list("alice", None, 1).await.unwrap();
    assert_eq!(newest[0].id, late[0].1.id);
    assert!(n.list("carol", None, 20).await.unwrap().0.is_empty());

    // Read: only alice's own, only once; bob's id is not touched.
    let bob_id = created[1].1.id;
    let marked = n
        .read("alice", &[ids[0], ids[1], bob_id, 999_999_999], None)
        .await
        .unwrap();
    assert_eq!(marked, vec![ids[0], ids[1]]);
    assert!(n.read("alice", &[ids[0]], None).await.unwrap().is_empty());
    assert_eq!(n.unread("alice").await.unwrap(), 24);
    assert_eq!(n.unread("bob").await.unwrap(), 1, "bob's stays unread");
    let (oldest, _) = n.list("alice", Some(ids[1] + 1), 2).await.unwrap();
    assert!(oldest.iter().all(|x| x.read));
    assert_eq!(n.read_all("alice", None).await.unwrap(), 24);
    assert_eq!(n.read_all("alice", None).await.unwrap(), 0, "idempotent");
    assert_eq!(n.unread("alice").await.unwrap(), 0);
    assert_eq!(n.unread("bob").await.unwrap(), 1);

    // Bad input is refused before anything is written.
    for (users, bad) in [
        (users(&[]), new("x")),
        (users(&[""]), new("x")),
        (users(&["alice"]), new("")),
        (
            users(&["alice"]),
            NewNotification {
                data: json!("x".repeat(5000)),
                ..new("x")
            },
        ),
        (
            users(&["alice"]),
            NewNotification {
                kind: String::new(),
                ..new("x")
            },
        ),
    ] {
        let err = n.create(&users, &bad).await.unwrap_err();
        assert_eq!(err.code, "bad_request", "{err}");
    }
    assert_eq!(n.list("alice", None, 100).await.unwrap().0.len(), 26);

    // Pruning: the newest `max_per_user`, and nothing older than the age.
    let small = service(
        &store,
        NotificationsConfig {
            max_per_user: 3,
            max_age_days: 1,
            ..NotificationsConfig::default()
        },
    );
    sqlx::query("UPDATE notifications SET created_at = $1 WHERE id = $2")
        .bind(hub::clock::now_ms() - 2 * 86_400_000)
        .bind(bob_id)
        .execute(store.pool())
        .await
        .unwrap();
    let report = small.prune().await.unwrap();
    assert_eq!(report.users, 2, "{report:?}");
    assert_eq!(report.deleted, 23 + 1);
    let (kept, _) = small.list("alice", None, 100).await.unwrap();
    let kept: Vec<i64> = kept.iter().map(|x| x.id).collect();
    assert_eq!(kept, vec![late[0].1.id, ids[24], ids[23]]);
    assert!(small.list("bob", None, 100).await.unwrap().0.is_empty());
    assert_eq!(small.unread("bob").await.unwrap(), 0);
    assert_eq!(small.prune().await.unwrap().deleted, 0);

    // Many users at once: one transaction, counts right for each.
    let many: Vec<String> = (0..2_000).map(|i| format!("user{i}")).collect();
    n.create(&many[..1000], &new("warm")).await.unwrap();
    let created = n.create(&many, &new("many")).await.unwrap();
    assert_eq!(created.len(), 2_000);
    for (user, notification, unread) in &created {
        let index: usize = user[4..].parse().unwrap();
        assert_eq!(*unread, if index < 1000 { 2 } else { 1 }, "{user}");
        assert_eq!(notification.title, "many");
    }
    assert_eq!(n.unread("user1999").await.unwrap(), 1);

    // A store that fails answers `unavailable`.
    store.close().await;
    let err = n.create(&users(&["alice"]), &new("x")).await.unwrap_err();
    assert_eq!(err.code, "unavailable");
    assert_eq!(
        n.list("alice", None, 5).await.unwrap_err().code,
        "unavailable"
    );
}

#[tokio::test]
async fn the_store_logic_on_sqlite() {
    let (store, _dir) = sqlite_store().await;
    store_logic(store).await;
}

#[tokio::test]
async fn the_store_logic_on_postgresql() {
    let Some(store) = postgres_store().await else {
        return;
    };
    store_logic(store).await;
}

/// Creation for 10,000 users on one backend: the time until stored.
async fn ten_thousand(store: Store, backend: &str) {
    let n = service(&store, NotificationsConfig::default());
    let many: Vec<String> = (0..10_000).map(|i| format!("user{i}")).collect();
    let started = Instant::now();
    let created = n.create(&many, &new("all")).await.unwrap();
    let took = started.elapsed();
    assert_eq!(created.len(), 10_000);
    assert!(created.iter().all(|(_, _, unread)| *unread == 1));
    eprintln!("{backend}: a notification for 10,000 users stored in {took:?}");
    store.close().await;
}

#[tokio::test]
async fn a_notification_for_ten_thousand_users_is_one_transaction_on_sqlite() {
    let (store, _dir) = sqlite_store().await;
    ten_thousand(store, "sqlite").await;
}

#[tokio::test]
async fn a_notification_for_ten_thousand_users_is_one_transaction_on_postgresql() {
    let Some(store) = postgres_store().await else {
        return;
    };
    ten_thousand(store, "postgres").await;
}

// ---------------------------------------------------------------------
// Over the wire.

/// A device: a raw client on `/notifications`, with what it was told.
struct Device {
    client: Client,
    next_ack: u64,
    /// The last unread count it was told (by `unread` or `notification`).
    unread: Option<i64>,
    /// Events received, oldest first (name, payload).
    events: Vec<(String, Value)>,
    /// `notification`s whose count was not the one before plus one: a
    /// change announced out of the order the store made it.
    out_of_order: Vec<(i64, i64)>,
}

impl Device {
    async fn connect(addr: SocketAddr, user: &str) -> Device {
        let mut client = Client::open(addr).await;
        client
            .send(&format!(
                r#"40/notifications,{{"token":"{}"}}"#,
                token(user, 60)
            ))
            .await;
        let mut device = Device {
            client,
            next_ack: 1,
            unread: None,
            events: Vec::new(),
            out_of_order: Vec::new(),
        };
        // The socket is in its user's room before the client is told it is
        // connected: a notification may come first (clients buffer it).
        loop {
            let reply = device.client.recv().await;
            if reply.starts_with("40/notifications,{") {
                return device;
            }
            assert!(device.take(&reply).is_none(), "{reply}");
        }
    }

    /// Records one event packet; returns the ack `(id, value)` if it is one.
    fn take(&mut self, packet: &str) -> Option<(u64, Value)> {
        if let Some(rest) = packet.strip_prefix("42/notifications,") {
            let value: Value = serde_json::from_str(rest).unwrap();
            let name = value[0].as_str().unwrap().to_owned();
            let payload = value[1].clone();
            match name.as_str() {
                "unread" => self.unread = Some(payload["count"].as_i64().unwrap()),
                "notification" => {
                    let count = payload["unread"].as_i64().unwrap();
                    if let Some(before) = self.unread.filter(|before| before + 1 != count) {
                        self.out_of_order.push((before, count));
                    }
                    self.unread = Some(count);
                }
                _ => {}
            }
            self.events.push((name, payload));
            return None;
        }
        let rest = packet
            .strip_prefix("43/notifications,")
            .unwrap_or_else(|| panic!("unexpected packet {packet}"));
        let split = rest.find('[').unwrap();
        let id = rest[..split].parse().unwrap();
        let value: Value = serde_json::from_str(&rest[split..]).unwrap();
        Some((id, value[0].clone()))
    }

    /// Emits `event` and returns its ack, recording the events before it.
    async fn ask(&mut self, event: &str, args: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let args = if args.is_null() {
            String::new()
        } else {
            args.to_string()
        };
        self.client
            .emit_to("/notifications", id, event, &args)
            .await;
        loop {
            let packet = self.client.recv().await;
            if let Some((ack, value)) = self.take(&packet) {
                assert_eq!(ack, id, "acks come in order");
                return value;
            }
        }
    }

    /// Takes the oldest event named `name`, waiting for it if need be.
    async fn event(&mut self, name: &str) -> Value {
        loop {
            if let Some(i) = self.events.iter().position(|(n, _)| n == name) {
                return self.events.remove(i).1;
            }
            let packet = self.client.recv().await;
            assert!(
                self.take(&packet).is_none(),
                "an ack nobody asked for: {packet}"
            );
        }
    }
}

async fn create(server: &common::RawServer, who: &[&str], title: &str) -> Vec<i64> {
    server
        .app
        .hub
        .ctx
        .notifications
        .create(&users(who), &new(title))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n, _)| n.id)
        .collect()
}

#[tokio::test]
async fn list_read_and_read_all_over_the_wire_mirrored_to_the_other_devices() {
    let server = start_raw(SERVER).await;
    let mut phone = Device::connect(server.addr, "alice").await;
    assert_eq!(phone.event("unread").await, json!({"count": 0}));
    let mut laptop = Device::connect(server.addr, "alice").await;
    assert_eq!(laptop.event("unread").await, json!({"count": 0}));
    let mut bob = Device::connect(server.addr, "bob").await;
    assert_eq!(bob.event("unread").await, json!({"count": 0}));

    let a1 = create(&server, &["alice"], "one").await[0];
    let a2 = create(&server, &["alice", "bob"], "two").await[0];
    let b1 = create(&server, &["bob"], "bob's").await[0];
    for device in [&mut phone, &mut laptop] {
        let first = device.event("notification").await;
        assert_eq!(first["notification"]["id"], a1);
        assert_eq!(first["unread"], 1);
        let second = device.event("notification").await;
        assert_eq!(second["notification"]["id"], a2);
        assert_eq!(second["notification"]["title"], "two");
        assert_eq!(second["unread"], 2);
    }

    // A device connecting now is told the count.
    let mut tablet = Device::connect(server.addr, "alice").await;
    assert_eq!(tablet.event("unread").await, json!({"count": 2}));

    let page = phone.ask("list", json!({"limit": 1})).await;
    assert_eq!(page["ok"], true, "{page}");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["notifications"][0]["id"], a2);
    let page = phone.ask("list", json!({"before": a2})).await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(page["notifications"][0]["id"], a1);
    assert_eq!(
        phone.ask("list", Value::Null).await["notifications"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Bob's id is ignored, not touched; the others are told, then everyone
    // gets the count.
    let read = phone.ask("read", json!({"ids": [a1, b1]})).await;
    assert_eq!(read, json!({"ok": true, "ids": [a1]}));
    assert_eq!(phone.event("unread").await, json!({"count": 1}));
    for device in [&mut laptop, &mut tablet] {
        assert_eq!(
            device.event("notification:read").await,
            json!({"ids": [a1]})
        );
        assert_eq!(device.event("unread").await, json!({"count": 1}));
    }
    assert!(
        !phone.events.iter().any(|(n, _)| n == "notification:read"),
        "the device that read is answered by its ack"
    );
    // Again: nothing changes, nobody is told.
    assert_eq!(
        phone.ask("read", json!({"ids": [a1]})).await,
        json!({"ok": true, "ids": []})
    );
    let all = laptop.ask("read_all", Value::Null).await;
    assert_eq!(all, json!({"ok": true, "marked": 1}));
    assert_eq!(laptop.event("unread").await, json!({"count": 0}));
    assert_eq!(phone.event("notification:read").await, json!({"all": true}));
    assert_eq!(phone.event("unread").await, json!({"count": 0}));
    assert_eq!(
        laptop.ask("read_all", json!({})).await,
        json!({"ok": true, "marked": 0})
    );
    assert!(phone.events.is_empty(), "{:?}", phone.events);

    // Bob's own are untouched.
    let bobs = bob.ask("list", json!({})).await;
    let bobs = bobs["notifications"].as_array().unwrap();
    assert_eq!(bobs.len(), 2);
    assert!(bobs.iter().all(|x| x["read"] == false));
    assert!(bob.events.iter().all(|(n, _)| n == "notification"));

    // Errors.
    for (event, args, code) in [
        ("list", json!({"limit": 0}), "bad_request"),
        ("list", json!({"limit": 101}), "bad_request"),
        ("list", json!({"before": "x"}), "bad_request"),
        ("read", json!({}), "bad_request"),
        ("read", json!({"ids": []}), "bad_request"),
        (
            "read",
            json!({"ids": (0..101).collect::<Vec<_>>()}),
            "bad_request",
        ),
        ("read_all", json!({"x": 1}), "bad_request"),
        ("delete", json!({}), "unknown_event"),
    ] {
        let reply = bob.ask(event, args).await;
        assert_eq!(reply["ok"], false, "{event}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{event}: {reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_stay_exact_on_every_device_under_concurrent_reads_and_arrivals() {
    race(start_raw(SERVER).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_stay_exact_under_concurrent_reads_and_arrivals_on_postgresql() {
    let Some((_, url)) = postgres_database().await else {
        return;
    };
    race(start_raw(&format!("{SERVER}url = {url:?}\n")).await).await;
}

/// Creations racing reads and a connect, for two devices of alice and one
/// that connects in the middle; each must end with the store's count.
async fn race(server: common::RawServer) {
    let mut a = Device::connect(server.addr, "alice").await;
    let mut b = Device::connect(server.addr, "alice").await;
    let service = server.app.hub.ctx.notifications.clone();

    // Arrivals from several backends at once…
    let creators: Vec<_> = (0..4)
        .map(|c| {
            let service = service.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    service
                        .create(&users(&["alice", "bob"]), &new(&format!("{c}-{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    // …while both devices read what they have seen, and read all, and a
    // third device connects in the middle.
    let mut late = None;
    for round in 0..20 {
        let seen: Vec<i64> = a
            .events
            .iter()
            .filter(|(n, _)| n == "notification")
            .map(|(_, p)| p["notification"]["id"].as_i64().unwrap())
            .rev()
            .take(3)
            .collect();
        if !seen.is_empty() {
            a.ask("read", json!({"ids": seen})).await;
        } else {
            a.ask("list", json!({"limit": 1})).await;
        }
        if round % 7 == 3 {
            b.ask("read_all", Value::Null).await;
        } else {
            b.ask("list", json!({"limit": 1})).await;
        }
        if round == 8 {
            late = Some(Device::connect(server.addr, "alice").await);
        }
    }
    for creator in creators {
        creator.await.unwrap();
    }
    let mut late = late.unwrap();
    let store_count = service.unread("alice").await.unwrap();
    // Every change was emitted before the creators and the acks finished:
    // a `list` answered now comes after all of it on each socket.
    for device in [&mut a, &mut b, &mut late] {
        device.ask("list", json!({"limit": 1})).await;
        assert_eq!(device.unread, Some(store_count), "a device's last count");
        // Each new one counted one more than the count before it: every
        // change reached the device in the order the store made them.
        assert!(device.out_of_order.is_empty(), "{:?}", device.out_of_order);
    }
    assert_eq!(service.unread("bob").await.unwrap(), 80);
}

#[tokio::test]
async fn the_publish_api_creates_notifications_for_many_users() {
    let server = start_raw(SERVER).await;
    let mut alice = Device::connect(server.addr, "alice").await;
    assert_eq!(alice.event("unread").await, json!({"count": 0}));

    // POST /api/v1/notifications.
    let (status, body) = api(
        server.addr,
        "POST",
        "/api/v1/notifications",
        r#"{"users":["alice","bob","alice"],"type":"invoice:paid","title":"Paid","body":"42 €","data":{"invoice":42}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 2);
    assert_eq!(body["delivered"], 1);
    let got = alice.event("notification").await;
    assert_eq!(got["unread"], 1);
    assert_eq!(got["notification"]["type"], "invoice:paid");
    assert_eq!(got["notification"]["title"], "Paid");
    assert_eq!(got["notification"]["body"], "42 €");
    assert_eq!(got["notification"]["data"], json!({"invoice": 42}));

    // A publish with `persist` stores it too, and the event still reaches
    // the user's other namespaces (not /notifications twice).
    let (status, body) = api(
        server.addr,
        "POST",
        "/api/v1/publish",
        r#"{"event":"mention","users":["alice"],"persist":true,"title":"You were mentioned","data":{"conv":1}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 1);
    let got = alice.event("notification").await;
    assert_eq!(got["unread"], 2);
    assert_eq!(got["notification"]["type"], "mention");
    assert_eq!(got["notification"]["body"], "");
    let page = alice.ask("list", json!({})).await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2);
    assert!(
        alice.events.iter().all(|(n, _)| n != "mention"),
        "{:?}",
        alice.events
    );

    // Bad input: 4xx with JSON bodies, nothing stored.
    for body in [
        r#"{"users":[],"type":"t","title":"x"}"#,
        r#"{"users":["alice"],"type":"","title":"x"}"#,
        r#"{"users":["alice"],"type":"t","title":""}"#,
        r#"{"users":["alice"],"type":"t"}"#,
        r#"{"users":[""],"type":"t","title":"x"}"#,
        r#"{"users":["alice"],"type":"t","title":"x","extra":1}"#,
    ] {
        let (status, reply) = api(server.addr, "POST", "/api/v1/notifications", body).await;
        assert_eq!(status, 422, "{body}: {reply}");
        assert_eq!(reply["ok"], false);
    }
    for body in [
        r#"{"event":"e","rooms":["r"],"persist":true,"title":"x"}"#,
        r#"{"event":"e","users":["alice"],"persist":true}"#,
        r#"{"event":"e","users":["alice"],"title":"x"}"#,
    ] {
        let (status, reply) = api(server.addr, "POST", "/api/v1/publish", body).await;
        assert_eq!(status, 422, "{body}: {reply}");
    }
    let too_many: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    let (status, reply) = api(
        server.addr,
        "POST",
        "/api/v1/notifications",
        &json!({"users": too_many, "type": "t", "title": "x"}).to_string(),
    )
    .await;
    assert!(status == 422 || status == 413, "{status} {reply}");
    assert_eq!(
        server
            .app
            .hub
            .ctx
            .notifications
            .unread("alice")
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn the_background_prune_keeps_the_newest_per_user_and_tells_the_devices() {
    let server = start_raw(&format!(
        "{SERVER}[notifications]\nmax_per_user = 2\nprune_interval_ms = 50\n"
    ))
    .await;
    let mut alice = Device::connect(server.addr, "alice").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(create(&server, &["alice"], &format!("n{i}")).await[0]);
    }
    // The prune removed two unread ones: the devices get the new count.
    loop {
        let count = alice.event("unread").await["count"].as_i64().unwrap();
        if count == 2 {
            break;
        }
    }
    let page = alice.ask("list", json!({})).await;
    let kept: Vec<i64> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, vec![ids[3], ids[2]]);
    assert_eq!(
        server
            .app
            .hub
            .ctx
            .notifications
            .unread("alice")
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn creating_notifications_through_the_api_needs_the_publish_scope() {
    let server = start_raw(
        "[auth]\nhs256_secret = \"test-secret\"\n[store]\ntimeout_ms = 30000\n[[api.keys]]\nkey = \"test-key\"\nscopes = [\"read\"]\n",
    )
    .await;
    let (status, reply) = api(
        server.addr,
        "POST",
        "/api/v1/notifications",
        r#"{"users":["alice"],"type":"t","title":"x"}"#,
    )
    .await;
    assert_eq!(status, 403, "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden");
    assert_eq!(
        server
            .app
            .hub
            .ctx
            .notifications
            .unread("alice")
            .await
            .unwrap(),
        0
    );
}
