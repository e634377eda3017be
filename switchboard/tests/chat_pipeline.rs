//! `/chat` sends are queued for the writer, not waited for: a device's
//! other events are answered while its sends wait to be committed, and the
//! acks of its sends still come in the order it sent them (seq order).

mod common;

use std::time::Duration;

use common::{Client, RemoveOnDrop, rand_suffix, start_raw, token};
use serde_json::{Value, json};
use sqlx::Connection;

/// The next ack on `/chat` as `(id, answer)`, skipping events.
async fn next_ack(client: &mut Client) -> (u64, Value) {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), client.recv())
            .await
            .expect("an ack within 10 s");
        let Some(rest) = frame.strip_prefix("43/chat,") else {
            continue;
        };
        let digits = rest.find('[').expect("an ack's arguments");
        let id: u64 = rest[..digits].parse().unwrap();
        let args: Value = serde_json::from_str(&rest[digits..]).unwrap();
        return (id, args[0].clone());
    }
}

async fn emit(client: &mut Client, id: u64, event: &str, payload: Value) {
    client
        .send(&format!("42/chat,{id}{}", json!([event, payload])))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_answered_while_its_sends_wait_and_their_acks_keep_their_order() {
    let dir = std::env::temp_dir().join(format!("sb-chat-pipeline-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveOnDrop(dir.clone());
    let url = hub::store::sqlite_url_of(&dir.join("hub.db"));
    let server = start_raw(&format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[limits]\nevents_per_sec = 0\n\
         [chat]\nmessages_per_sec = 0\n[store]\nurl = {url:?}\ntimeout_ms = 20000\n"
    ))
    .await;
    let mut alice = Client::open(server.addr).await;
    alice
        .send(&format!(r#"40/chat,{{"token":"{}"}}"#, token("alice", 600)))
        .await;
    loop {
        let reply = alice.recv().await;
        assert!(!reply.starts_with("44"), "{reply}");
        if reply.starts_with("40/chat,{") {
            break;
        }
    }
    emit(
        &mut alice,
        1,
        "conversation:create",
        json!({"direct": "bob"}),
    )
    .await;
    let (_, created) = next_ack(&mut alice).await;
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
        emit(&mut alice, id, "message", message).await;
    }
    emit(
        &mut alice,
        20,
        "history",
        json!({"conversation": conversation}),
    )
    .await;
    let (id, history) = next_ack(&mut alice).await;
    assert_eq!(
        id, 20,
        "history is answered while the sends before it wait: {history}"
    );
    assert_eq!(history["messages"], json!([]), "nothing is committed yet");

    sqlx::query("COMMIT").execute(&mut db).await.unwrap();
    let mut acks = Vec::new();
    for _ in 10..13 {
        let (id, ack) = next_ack(&mut alice).await;
        assert_eq!(ack["ok"], true, "{ack}");
        acks.push((id, ack["seq"].as_i64().unwrap()));
    }
    assert_eq!(acks, [(10, 1), (11, 2), (12, 3)], "in the order sent");
}
