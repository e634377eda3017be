//! `/notifications` over the wire with raw Socket.IO clients: `list`,
//! `read`, `read_all`, the mirror to a user's other devices, the unread
//! count at connect, and that count under concurrent reads and arrivals;
//! the publish API's notifications, and a COMMIT that outlives the store's
//! timeout, not reported as a failure (a backend's retry would store
//! everything twice).

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{Device, RawServer, api, postgres_database, start_raw};
use hub::services::notifications::NewNotification;
use hub::store::{Store, StoreConfig};
use serde_json::{Value, json};

/// A busy machine (tests run in parallel) must not turn into `unavailable`.
const SERVER: &str = "[auth]\nhs256_secret = \"test-secret\"\n[api]\nkeys = [\"test-key\"]\n\
                      [store]\ntimeout_ms = 30000\n";

/// A notification titled `title`.
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

/// A device of `user` on `/notifications`. The socket is in its user's
/// room before the client is told it is connected: a notification may
/// come first (clients buffer it).
async fn device(addr: SocketAddr, user: &str) -> Device {
    Device::connect_buffering(addr, user, &["/notifications"]).await
}

/// What a device was told, from every event it received in order: the
/// last unread count (by `unread` or `notification`), and the
/// `notification`s whose count was not the one before plus one (a change
/// announced out of the order the store made it).
fn counts(device: &Device) -> (Option<i64>, Vec<(i64, i64)>) {
    let mut unread = None;
    let mut out_of_order = Vec::new();
    for event in device.history() {
        match event.name.as_str() {
            "unread" => unread = Some(event.data["count"].as_i64().unwrap()),
            "notification" => {
                let count = event.data["unread"].as_i64().unwrap();
                if let Some(before) = unread.filter(|before| before + 1 != count) {
                    out_of_order.push((before, count));
                }
                unread = Some(count);
            }
            _ => {}
        }
    }
    (unread, out_of_order)
}

async fn create(server: &RawServer, who: &[&str], title: &str) -> Vec<i64> {
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
    let mut phone = device(server.addr, "alice").await;
    assert_eq!(phone.event("unread").await, json!({"count": 0}));
    let mut laptop = device(server.addr, "alice").await;
    assert_eq!(laptop.event("unread").await, json!({"count": 0}));
    let mut bob = device(server.addr, "bob").await;
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
    let mut tablet = device(server.addr, "alice").await;
    assert_eq!(tablet.event("unread").await, json!({"count": 2}));

    let page = phone.call("list", json!({"limit": 1})).await;
    assert_eq!(page["ok"], true, "{page}");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["notifications"][0]["id"], a2);
    let page = phone.call("list", json!({"before": a2})).await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(page["notifications"][0]["id"], a1);
    assert_eq!(
        phone.call("list", Value::Null).await["notifications"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Bob's id is ignored, not touched; the others are told, then everyone
    // gets the count.
    let read = phone.call("read", json!({"ids": [a1, b1]})).await;
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
        !phone
            .pending()
            .iter()
            .any(|e| e.name == "notification:read"),
        "the device that read is answered by its ack"
    );
    // Again: nothing changes, nobody is told.
    assert_eq!(
        phone.call("read", json!({"ids": [a1]})).await,
        json!({"ok": true, "ids": []})
    );
    let all = laptop.call("read_all", Value::Null).await;
    assert_eq!(all, json!({"ok": true, "marked": 1}));
    assert_eq!(laptop.event("unread").await, json!({"count": 0}));
    assert_eq!(phone.event("notification:read").await, json!({"all": true}));
    assert_eq!(phone.event("unread").await, json!({"count": 0}));
    assert_eq!(
        laptop.call("read_all", json!({})).await,
        json!({"ok": true, "marked": 0})
    );
    assert!(phone.pending().is_empty(), "{:?}", phone.pending());

    // Bob's own are untouched.
    let bobs = bob.call("list", json!({})).await;
    let bobs = bobs["notifications"].as_array().unwrap();
    assert_eq!(bobs.len(), 2);
    assert!(bobs.iter().all(|x| x["read"] == false));
    assert!(bob.pending().iter().all(|e| e.name == "notification"));

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
        let reply = bob.call(event, args).await;
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
async fn race(server: RawServer) {
    let mut a = device(server.addr, "alice").await;
    let mut b = device(server.addr, "alice").await;
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
            .pending()
            .iter()
            .filter(|e| e.name == "notification")
            .map(|e| e.data["notification"]["id"].as_i64().unwrap())
            .rev()
            .take(3)
            .collect();
        if !seen.is_empty() {
            a.call("read", json!({"ids": seen})).await;
        } else {
            a.call("list", json!({"limit": 1})).await;
        }
        if round % 7 == 3 {
            b.call("read_all", Value::Null).await;
        } else {
            b.call("list", json!({"limit": 1})).await;
        }
        if round == 8 {
            late = Some(device(server.addr, "alice").await);
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
        device.call("list", json!({"limit": 1})).await;
        let (unread, out_of_order) = counts(device);
        assert_eq!(unread, Some(store_count), "a device's last count");
        // Each new one counted one more than the count before it: every
        // change reached the device in the order the store made them.
        assert!(out_of_order.is_empty(), "{out_of_order:?}");
    }
    assert_eq!(service.unread("bob").await.unwrap(), 80);
}

#[tokio::test]
async fn the_publish_api_creates_notifications_for_many_users() {
    let server = start_raw(SERVER).await;
    let mut alice = device(server.addr, "alice").await;
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
    let page = alice.call("list", json!({})).await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2);
    assert!(
        alice.pending().iter().all(|e| e.name != "mention"),
        "{:?}",
        alice.pending()
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
    let mut alice = device(server.addr, "alice").await;
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
    let page = alice.call("list", json!({})).await;
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

#[tokio::test]
async fn a_commit_slower_than_the_store_timeout_is_not_reported_failed_on_postgresql() {
    let Some((_, url)) = postgres_database().await else {
        return;
    };
    let server = start_raw(&format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[api]\nkeys = [\"test-key\"]\n\
         [store]\nurl = {url:?}\ntimeout_ms = 1000\n"
    ))
    .await;
    // Every COMMIT that inserted a notification takes 1.5 s: a deferred
    // constraint trigger runs at COMMIT, after the statements.
    let admin = Store::open(&StoreConfig {
        url: url.clone(),
        max_connections: 4,
        timeout: Duration::from_secs(30),
    })
    .await
    .unwrap();
    for sql in [
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON notifications \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.title = 'slow') \
         EXECUTE FUNCTION slow_commit()",
    ] {
        sqlx::query(sql).execute(admin.pool()).await.unwrap();
    }
    let (status, body) = api(
        server.addr,
        "POST",
        "/api/v1/notifications",
        r#"{"users":["alice"],"type":"invoice:paid","title":"slow"}"#,
    )
    .await;
    let (stored,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE user_id = 'alice'")
            .fetch_one(admin.pool())
            .await
            .unwrap();
    // What the backend was told is what the store did: stored, once.
    assert_eq!(stored, 1);
    assert_eq!(status, 200, "the store committed: {body}");
    assert_eq!(body["stored"], 1, "{body}");
}
