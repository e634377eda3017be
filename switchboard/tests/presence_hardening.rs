//! `/presence` against what an attacker-minded review found: choosing the
//! status one has already writes nothing (it answers while another writer
//! holds the store), and a store error while a user's first device
//! connects does not turn their stored status (busy) into `online`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, RemoveOnDrop, rand_suffix, token};
use hub::store::{Store, StoreConfig, sqlite_url_of};
use serde_json::Value;
use switchboard::config::Config;
use switchboard::server::{self, App};

/// A server with the default namespaces on the SQLite file `db`, a store
/// timeout of `timeout_ms`, no grace period.
async fn serve(db: &std::path::Path, timeout_ms: u64) -> (SocketAddr, App, RemoveOnDrop) {
    let dir = std::env::temp_dir().join(format!("sb-presence-h-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}\n[auth]\nhs256_secret = \"test-secret\"\n\
             [presence]\ngrace_ms = 0\n[store]\nurl = {:?}\ntimeout_ms = {timeout_ms}\n",
            dir.display().to_string(),
            sqlite_url_of(db),
        ),
    )
    .unwrap();
    let config = Config::load(Some(&path), Vec::new()).unwrap();
    let app = App::new(&config).await.unwrap();
    let listeners = server::Listeners::bind(&config).await.unwrap();
    let addr = listeners.public[0].local_addr().unwrap();
    tokio::spawn({
        let app = app.clone();
        async move { server::run(listeners, &config, app, std::future::pending()).await }
    });
    (addr, app, RemoveOnDrop(dir))
}

/// Another connection to the same store (another process).
async fn other(db: &std::path::Path) -> Store {
    Store::open(&StoreConfig {
        url: sqlite_url_of(db),
        max_connections: 2,
        timeout: Duration::from_secs(30),
    })
    .await
    .unwrap()
}

struct Device {
    client: Client,
    next_id: u64,
}

impl Device {
    async fn connect(addr: SocketAddr, user: &str) -> Device {
        let mut client = Client::open(addr).await;
        client
            .send(&format!(
                r#"40/presence,{{"token":"{}"}}"#,
                token(user, 600)
            ))
            .await;
        let reply = client.recv().await;
        assert!(reply.starts_with("40/presence,{"), "{reply}");
        Device { client, next_id: 1 }
    }

    /// Emits `event` and returns its ack (an event before it fails).
    async fn call(&mut self, event: &str, args: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.client.emit_to("/presence", id, event, args).await;
        let packet = self.client.recv().await;
        let rest = packet
            .strip_prefix(&format!("43/presence,{id}"))
            .unwrap_or_else(|| panic!("{event}: {packet}"));
        let mut args: Vec<Value> = serde_json::from_str(rest).unwrap();
        args.remove(0)
    }

    /// The next `presence` event's (status, devices).
    async fn presence(&mut self) -> (String, u64) {
        let packet = self.client.recv().await;
        let rest = packet
            .strip_prefix("42/presence,")
            .unwrap_or_else(|| panic!("not a /presence event: {packet}"));
        let args: Vec<Value> = serde_json::from_str(rest).unwrap();
        assert_eq!(args[0], "presence", "{packet}");
        (
            args[1]["status"].as_str().unwrap().to_owned(),
            args[1]["devices"].as_u64().unwrap(),
        )
    }

    async fn close(mut self) {
        let _ = futures_util::SinkExt::close(&mut self.client.ws).await;
    }
}

fn shown(status: &str, devices: u64) -> (String, u64) {
    (status.to_owned(), devices)
}

#[tokio::test]
async fn choosing_the_status_one_has_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("sb-presence-hs-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveOnDrop(dir.clone());
    let db = dir.join("hub.db");
    let (addr, _app, _conf) = serve(&db, 800).await;
    let mut alice = Device::connect(addr, "alice").await;
    let mut bob = Device::connect(addr, "bob").await;
    let ack = bob.call("watch", r#"{"users":["alice"]}"#).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = alice.call("status", r#"{"status":"busy"}"#).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(bob.presence().await, shown("busy", 1));

    // Another process holds SQLite's write lock: choosing busy again, and
    // the default (online) for a user who never chose, need no write.
    let store = other(&db).await;
    let held = store.begin_write().await.unwrap();
    let ack = alice.call("status", r#"{"status":"busy"}"#).await;
    assert_eq!(ack["ok"], true, "busy again writes nothing: {ack}");
    assert_eq!(ack["presence"]["status"], "busy");
    let ack = bob.call("status", r#"{"status":"online"}"#).await;
    assert_eq!(ack["ok"], true, "online is bob's already: {ack}");
    drop(held);
    // Nothing changed, so the watcher heard nothing: the next event it
    // gets is the next change.
    let ack = alice.call("status", r#"{"status":"away"}"#).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(bob.presence().await, shown("away", 1));
}

#[tokio::test]
async fn a_store_error_when_the_first_device_connects_does_not_reset_the_status() {
    let dir = std::env::temp_dir().join(format!("sb-presence-hr-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveOnDrop(dir.clone());
    let db = dir.join("hub.db");
    let (addr, _app, _conf) = serve(&db, 2000).await;
    let mut bob = Device::connect(addr, "bob").await;
    bob.call("watch", r#"{"users":["alice"]}"#).await;
    let mut alice = Device::connect(addr, "alice").await;
    assert_eq!(bob.presence().await, shown("online", 1));
    let ack = alice.call("status", r#"{"status":"busy"}"#).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(bob.presence().await, shown("busy", 1));
    alice.close().await;
    assert_eq!(bob.presence().await, shown("offline", 0));

    // The store cannot answer for presence while alice comes back.
    let store = other(&db).await;
    sqlx::query("ALTER TABLE presence RENAME TO presence_away")
        .execute(store.pool())
        .await
        .unwrap();
    let _alice = Device::connect(addr, "alice").await;
    // She is online (her device is), with the default status for now…
    assert_eq!(bob.presence().await, shown("online", 1));
    sqlx::query("ALTER TABLE presence_away RENAME TO presence")
        .execute(store.pool())
        .await
        .unwrap();
    // …and once the store answers, her stored status is hers again.
    let restored = tokio::time::timeout(Duration::from_secs(20), bob.presence())
        .await
        .expect("the stored status is restored");
    assert_eq!(restored, shown("busy", 1));
}
