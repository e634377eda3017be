//! `/chat`'s write path over the wire: a send `to` a user whose direct
//! conversation exists writes nothing outside the writer, an edit's
//! mentions follow its text (notified, counted), a mention by a user with
//! a very long id still notifies, and a `client_id` reused in another
//! conversation is a `conflict`, a user cannot put others into groups
//! faster than `chat.members_added_per_min`, and sends are queued for the
//! writer, not waited for: a device's other events are answered while its
//! sends wait to be committed, and the acks of its sends still come in the
//! order it sent them (seq order).

use std::time::Duration;

use crate::common::{Device, RawServer, RemoveOnDrop, rand_suffix, start_raw, temp_dir};
use serde_json::{Value, json};
use sqlx::Connection;

/// One connection of `user`, in `/chat` and `/notifications`.
async fn device(addr: std::net::SocketAddr, user: &str) -> Device {
    Device::connect_buffering(addr, user, &["/chat", "/notifications"])
        .await
        .with_wait(Duration::from_secs(20))
}

/// The next `/notifications` `notification` event's notification.
async fn notification(device: &mut Device) -> Value {
    device.event_on("/notifications", "notification").await["notification"].take()
}

struct Server {
    server: RawServer,
    url: String,
    _dir: RemoveOnDrop,
}

async fn server() -> Server {
    server_with("").await
}

/// With `chat` settings added to the `[chat]` section.
async fn server_with(chat: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("sb-chat-writes-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = hub::store::sqlite_url_of(&dir.join("hub.db"));
    let server = start_raw(&format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[limits]\nevents_per_sec = 0\n\
         [chat]\nmessages_per_sec = 0\n{chat}\n[store]\nurl = {url:?}\ntimeout_ms = 20000\n"
    ))
    .await;
    Server {
        server,
        url,
        _dir: RemoveOnDrop(dir),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_user_whose_direct_conversation_exists_writes_nothing_before_the_writer() {
    let s = server().await;
    let mut alice = device(s.server.addr, "alice").await;
    let created = alice
        .call("conversation:create", json!({"direct": "bob"}))
        .await;
    let conversation = created["conversation"]["id"].as_i64().unwrap();
    // From now on no conversation can be created: a send `to` bob that
    // still ran the get-or-create's INSERT fails.
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&s.url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER no_new_conversations BEFORE INSERT ON chat_conversations \
         BEGIN SELECT RAISE(ABORT, 'no new conversations'); END",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let ack = alice
        .call(
            "message",
            json!({"to": "bob", "client_id": "t1", "text": "hi"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["conversation"], conversation);
    assert_eq!(ack["seq"], 1);
    // The trigger does bite where a conversation must be created.
    let ack = alice
        .call(
            "message",
            json!({"to": "carol", "client_id": "t2", "text": "hi"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_notifies_who_it_newly_mentions_and_uncounts_who_it_no_longer_does() {
    let s = server().await;
    let mut alice = device(s.server.addr, "alice").await;
    let mut bob = device(s.server.addr, "bob").await;
    let sent = alice
        .call(
            "message",
            json!({"to": "bob", "client_id": "e1", "text": "hello"}),
        )
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    let conversation = sent["conversation"].clone();
    let edit = |text: &str| json!({"conversation": conversation, "seq": 1, "text": text});

    let edited = alice.call("message:edit", edit("hello @bob")).await;
    assert_eq!(edited["message"]["mentions"], json!(["bob"]), "{edited}");
    let note = notification(&mut bob).await;
    assert_eq!(note["type"], "chat:mention");
    assert_eq!(note["data"]["seq"], 1);
    let listed = bob.call("conversations", json!({})).await;
    assert_eq!(listed["conversations"][0]["mentions"], 1, "{listed}");

    let edited = alice.call("message:edit", edit("hello again")).await;
    assert_eq!(edited["message"]["mentions"], json!([]), "{edited}");
    let listed = bob.call("conversations", json!({})).await;
    assert_eq!(listed["conversations"][0]["mentions"], 0, "{listed}");
    let page = bob
        .call("history", json!({"conversation": conversation}))
        .await;
    assert_eq!(page["messages"][0]["mentions"], json!([]), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_by_a_user_with_a_long_id_notifies_with_a_bounded_title() {
    let s = server().await;
    let long = "l".repeat(400);
    let mut sender = device(s.server.addr, &long).await;
    let mut bob = device(s.server.addr, "bob").await;
    let sent = sender
        .call(
            "message",
            json!({"to": "bob", "client_id": "m1", "text": "look @bob"}),
        )
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    let note = notification(&mut bob).await;
    let title = note["title"].as_str().unwrap();
    assert!(title.chars().count() <= 100, "{title}");
    assert!(title.starts_with("llll") && title.ends_with("… mentioned you"));
    assert_eq!(note["data"]["sender"], long.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_sent_again_to_another_conversation_is_a_conflict() {
    let s = server().await;
    let mut alice = device(s.server.addr, "alice").await;
    let first = alice
        .call(
            "message",
            json!({"to": "bob", "client_id": "same", "text": "to bob"}),
        )
        .await;
    assert_eq!(first["ok"], true, "{first}");
    let again = alice
        .call(
            "message",
            json!({"to": "carol", "client_id": "same", "text": "to carol"}),
        )
        .await;
    assert_eq!(again["error"]["code"], "conflict", "{again}");
    let page = alice.call("conversations", json!({})).await;
    let carol = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["members"] == json!(["alice", "carol"]))
        .unwrap()
        .clone();
    assert_eq!(carol["last_seq"], 0, "nothing stored: {carol}");
    // The retry in the right conversation is still the first message.
    let retry = alice
        .call(
            "message",
            json!({"to": "bob", "client_id": "same", "text": "to bob"}),
        )
        .await;
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["id"], first["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_refused_before_it_reaches_the_store() {
    let s = server().await;
    let mut alice = device(s.server.addr, "alice").await;
    let created = alice
        .call("conversation:create", json!({"direct": "bob"}))
        .await;
    let conversation = created["conversation"]["id"].as_i64().unwrap();
    for payload in [
        json!({"conversation": conversation, "client_id": "m1", "text": "a\u{0}b"}),
        json!({"conversation": conversation, "client_id": "m\u{0}2", "text": "hi"}),
        json!({"to": "b\u{0}b", "client_id": "m3", "text": "hi"}),
    ] {
        let ack = alice.call("message", payload).await;
        assert_eq!(ack["error"]["code"], "bad_request", "{ack}");
    }
    let group = alice
        .call(
            "conversation:create",
            json!({"name": "a\u{0}", "members": ["bob"]}),
        )
        .await;
    assert_eq!(group["error"]["code"], "bad_request", "{group}");
    // Nothing was stored, and the next send is seq 1.
    let ack = alice
        .call(
            "message",
            json!({"conversation": conversation, "client_id": "m4", "text": "hi"}),
        )
        .await;
    assert_eq!(ack["seq"], 1, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn putting_others_into_groups_is_limited_per_user_so_nobody_fills_their_cap() {
    // A group has at most 4 members, so the burst is 3 others; one more
    // per minute after that.
    let s =
        server_with("max_members = 4\nmembers_added_per_min = 1\nmembers_added_burst = 0").await;
    let mut mallory = device(s.server.addr, "mallory").await;
    let ack = mallory
        .call(
            "conversation:create",
            json!({"name": "g1", "members": ["v1", "v2", "v3"]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let group = ack["conversation"]["id"].as_i64().unwrap();
    // The budget is spent: another group with the victims is refused,
    // and so is adding one of them to an existing group.
    let ack = mallory
        .call(
            "conversation:create",
            json!({"name": "g2", "members": ["v1"]}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    let ack = mallory
        .call("conversation:create", json!({"name": "g3", "members": []}))
        .await;
    assert_eq!(ack["ok"], true, "a group of one's own costs nothing: {ack}");
    let ack = mallory
        .call(
            "conversation:add_member",
            json!({"conversation": ack["conversation"]["id"], "users": ["v1"]}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    // Nothing was added by the refused events.
    let mut v1 = device(s.server.addr, "v1").await;
    let page = v1.call("conversations", json!({})).await;
    let ids: Vec<i64> = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![group], "{page}");
    // The budget is the adder's: another user may still add v1.
    let mut carol = device(s.server.addr, "carol").await;
    let ack = carol
        .call(
            "conversation:create",
            json!({"name": "g4", "members": ["v1"]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_answered_while_its_sends_wait_and_their_acks_keep_their_order() {
    let (dir, _cleanup) = temp_dir("sb-chat-pipeline");
    let url = hub::store::sqlite_url_of(&dir.join("hub.db"));
    let server = start_raw(&format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[limits]\nevents_per_sec = 0\n\
         [chat]\nmessages_per_sec = 0\n[store]\nurl = {url:?}\ntimeout_ms = 20000\n"
    ))
    .await;
    let mut alice = Device::connect_buffering(server.addr, "alice", &["/chat"])
        .await
        .with_wait(Duration::from_secs(10));
    alice
        .emit_with_id(1, "conversation:create", &json!({"direct": "bob"}))
        .await;
    let (_, created) = alice.next_ack().await;
    let conversation = created["conversation"]["id"].as_i64().unwrap();

    // Another process holds SQLite's write lock: the sends wait in the writer.
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut db)
        .await
        .unwrap();
    for id in 10..13 {
        let message =
            json!({"conversation": conversation, "client_id": format!("m{id}"), "text": "hi"});
        alice.emit_with_id(id, "message", &message).await;
    }
    alice
        .emit_with_id(20, "history", &json!({"conversation": conversation}))
        .await;
    let (id, history) = alice.next_ack().await;
    assert_eq!(
        id, 20,
        "history is answered while the sends before it wait: {history}"
    );
    assert_eq!(history["messages"], json!([]), "nothing is committed yet");

    sqlx::query("COMMIT").execute(&mut db).await.unwrap();
    let mut acks = Vec::new();
    for _ in 10..13 {
        let (id, ack) = alice.next_ack().await;
        assert_eq!(ack["ok"], true, "{ack}");
        acks.push((id, ack["seq"].as_i64().unwrap()));
    }
    assert_eq!(acks, [(10, 1), (11, 2), (12, 3)], "in the order sent");
}
