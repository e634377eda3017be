//! `/presence` over the wire: online while any device is connected,
//! offline only after the grace period (a reload does not flicker), a
//! status for every device that survives a restart (SQLite and
//! PostgreSQL), watch limits and errors, a restricting watch policy, one
//! broadcast for all the watchers of a user, and the publish API reading
//! the same state.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Client, RemoveOnDrop, api, postgres_database, rand_suffix, token};
use hub::components::presence::{WatchHook, WatchPolicy};
use hub::identity::Identity;
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::server::{self, App};

const GRACE_MS: u64 = 300;

/// A server with the default namespaces (the four components), the test
/// secret and key, `[presence]` settings `presence`, and `store` as its
/// store section; `adjust` may change the configuration (a watch policy).
async fn serve(
    presence: &str,
    store: &str,
    adjust: impl FnOnce(&mut Config),
) -> (SocketAddr, App, RemoveOnDrop) {
    let dir = std::env::temp_dir().join(format!("sb-presence-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}\n[auth]\nhs256_secret = \"test-secret\"\n\
             [api]\nkeys = [\"test-key\"]\n[presence]\n{presence}\n{store}\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let mut config = Config::load(Some(&path), Vec::new()).unwrap();
    adjust(&mut config);
    let app = App::new(&config).await.unwrap();
    let listeners = server::Listeners::bind(&config).await.unwrap();
    let addr = listeners.public[0].local_addr().unwrap();
    tokio::spawn({
        let app = app.clone();
        async move { server::run(listeners, &config, app, std::future::pending()).await }
    });
    (addr, app, RemoveOnDrop(dir))
}

async fn start(presence: &str) -> (SocketAddr, App, RemoveOnDrop) {
    serve(presence, "", |_| {}).await
}

fn grace() -> String {
    format!("grace_ms = {GRACE_MS}")
}

/// One device of a user: a connection with its `/presence` socket.
struct Device {
    client: Client,
    next_id: u64,
    /// Events that arrived while an ack was awaited, in order.
    events: std::collections::VecDeque<Value>,
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
        Device {
            client,
            next_id: 1,
            events: Default::default(),
        }
    }

    /// Emits `event` with `args` (JSON) and returns its ack.
    async fn call(&mut self, event: &str, args: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.client.emit_to("/presence", id, event, args).await;
        let prefix = format!("43/presence,{id}");
        loop {
            let packet = self.client.recv().await;
            if let Some(rest) = packet.strip_prefix(&prefix) {
                let mut args: Vec<Value> = serde_json::from_str(rest).unwrap();
                return args.remove(0);
            }
            self.events.push_back(event_of(&packet));
        }
    }

    /// The next `presence` event's payload.
    async fn presence(&mut self) -> Value {
        if let Some(event) = self.events.pop_front() {
            return event;
        }
        event_of(&self.client.recv().await)
    }

    async fn close(mut self) {
        let _ = futures_util::SinkExt::close(&mut self.client.ws).await;
    }
}

fn event_of(packet: &str) -> Value {
    let rest = packet
        .strip_prefix("42/presence,")
        .unwrap_or_else(|| panic!("not a /presence event: {packet}"));
    let mut args: Vec<Value> = serde_json::from_str(rest).unwrap();
    assert_eq!(args[0], "presence", "{packet}");
    args.remove(1)
}

/// What the watchers compare: status and devices.
fn seen(presence: &Value) -> (String, u64) {
    (
        presence["status"].as_str().unwrap().to_owned(),
        presence["devices"].as_u64().unwrap(),
    )
}

fn shown(status: &str, devices: u64) -> (String, u64) {
    (status.to_owned(), devices)
}

#[tokio::test]
async fn a_user_is_online_while_any_device_is_and_offline_only_after_the_grace_period() {
    let (addr, _app, _dir) = start(&grace()).await;
    let mut bob = Device::connect(addr, "bob").await;
    let snapshot = bob.call("watch", r#"{"users":["alice"]}"#).await;
    assert_eq!(snapshot["ok"], true, "{snapshot}");
    assert_eq!(snapshot["watching"], 1);
    assert_eq!(
        snapshot["presence"],
        json!([{"user": "alice", "status": "offline", "devices": 0, "last_seen": null}])
    );

    let phone = Device::connect(addr, "alice").await;
    let online = bob.presence().await;
    assert_eq!(online["user"], "alice");
    assert_eq!(seen(&online), shown("online", 1));
    assert!(online["last_seen"].as_i64().unwrap() > 0);
    let laptop = Device::connect(addr, "alice").await;
    assert_eq!(seen(&bob.presence().await), shown("online", 2));

    // Each device that leaves lingers for the grace period, then counts
    // no more; the last one takes the user offline.
    phone.close().await;
    let left = Instant::now();
    assert_eq!(seen(&bob.presence().await), shown("online", 1));
    assert!(
        left.elapsed() >= Duration::from_millis(GRACE_MS - 50),
        "a device counted {:?}, less than the grace period",
        left.elapsed()
    );
    laptop.close().await;
    let left = Instant::now();
    let offline = bob.presence().await;
    assert_eq!(seen(&offline), shown("offline", 0));
    assert!(
        left.elapsed() >= Duration::from_millis(GRACE_MS - 50),
        "offline after {:?}, before the grace period",
        left.elapsed()
    );
    assert!(offline["last_seen"].as_i64().unwrap() >= online["last_seen"].as_i64().unwrap());
}

#[tokio::test]
async fn a_reload_within_the_grace_period_shows_watchers_no_flicker() {
    let (addr, _app, _dir) = start(&grace()).await;
    let mut bob = Device::connect(addr, "bob").await;
    bob.call("watch", r#"{"users":["alice"]}"#).await;
    let tab = Device::connect(addr, "alice").await;
    assert_eq!(seen(&bob.presence().await), shown("online", 1));

    // The page reloads: the old socket goes, a new one comes at once.
    tab.close().await;
    let mut tab = Device::connect(addr, "alice").await;
    // Past the grace period of the old socket: still nothing to tell.
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 200)).await;
    let ack = tab.call("status", r#"{"status":"away"}"#).await;
    assert_eq!(ack["presence"]["status"], "away", "{ack}");
    // Bob's next event is the status change: no offline, no online again.
    assert_eq!(seen(&bob.presence().await), shown("away", 1));
}

async fn status_survives_a_restart(store: &str) {
    let (addr, _app, _dir) = serve(&grace(), store, |_| {}).await;
    let mut phone = Device::connect(addr, "alice").await;
    let mut laptop = Device::connect(addr, "alice").await;
    let mut bob = Device::connect(addr, "bob").await;
    bob.call("watch", r#"{"users":["alice"]}"#).await;
    let ack = phone.call("status", r#"{"status":"busy"}"#).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(seen(&ack["presence"]), shown("busy", 2));
    // Every device of alice hears it, and her watchers.
    assert_eq!(seen(&laptop.presence().await), shown("busy", 2));
    assert_eq!(seen(&bob.presence().await), shown("busy", 2));
    phone.close().await;
    laptop.close().await;
    // Offline once the grace period of both is over (one event or two,
    // as the two departures fall in one millisecond or not).
    let mut offline = bob.presence().await;
    if seen(&offline) == shown("busy", 1) {
        offline = bob.presence().await;
    }
    assert_eq!(seen(&offline), shown("offline", 0));
    // Stored before the watchers are told.

    // Another server on the same store: nothing live, the store remembers.
    let (addr, _app2, _dir2) = serve(&grace(), store, |_| {}).await;
    let mut carol = Device::connect(addr, "carol").await;
    let snapshot = carol.call("watch", r#"{"users":["alice"]}"#).await;
    assert_eq!(
        snapshot["presence"][0],
        json!({"user": "alice", "status": "offline", "devices": 0, "last_seen": offline["last_seen"]})
    );
    let _alice = Device::connect(addr, "alice").await;
    assert_eq!(
        seen(&carol.presence().await),
        shown("busy", 1),
        "her choice stays"
    );
}

#[tokio::test]
async fn a_chosen_status_reaches_every_device_and_survives_a_restart_on_sqlite() {
    let dir = RemoveOnDrop(std::env::temp_dir().join(format!("sb-presence-db-{}", rand_suffix())));
    let url = hub::store::sqlite_url_of(&dir.0.join("hub.db"));
    status_survives_a_restart(&format!("[store]\nurl = {url:?}")).await;
}

#[tokio::test]
async fn a_chosen_status_reaches_every_device_and_survives_a_restart_on_postgresql() {
    let Some((_admin, url)) = postgres_database().await else {
        return;
    };
    status_survives_a_restart(&format!("[store]\nurl = {url:?}")).await;
}

#[tokio::test]
async fn watch_is_bounded_per_socket_and_bad_input_is_refused_clearly() {
    let (addr, _app, _dir) = start("max_watch = 3\nmax_user_bytes = 8").await;
    let mut bob = Device::connect(addr, "bob").await;
    let code = |ack: &Value| ack["error"]["code"].as_str().unwrap_or("none").to_owned();

    let ack = bob.call("watch", r#"{"users":["a","b","c","d"]}"#).await;
    assert_eq!(code(&ack), "too_many_watched", "{ack}");
    // Duplicates count once.
    let ack = bob.call("watch", r#"{"users":["a","b","a"]}"#).await;
    assert_eq!(ack["watching"], 2, "{ack}");
    assert_eq!(ack["presence"].as_array().unwrap().len(), 2);
    let ack = bob.call("watch", r#"{"users":["b","c","d"]}"#).await;
    assert_eq!(code(&ack), "too_many_watched", "2 + 2 new > 3: {ack}");
    let ack = bob.call("watch", r#"{"users":["b","c"]}"#).await;
    assert_eq!(ack["watching"], 3, "{ack}");
    let ack = bob.call("unwatch", r#"{"users":["a","zz"]}"#).await;
    assert_eq!(ack, json!({"ok": true, "watching": 2}));
    let ack = bob.call("watch", r#"{"users":["d"]}"#).await;
    assert_eq!(ack["watching"], 3, "room again after unwatch: {ack}");

    for (event, args) in [
        ("watch", r#"{"users":[]}"#),
        ("watch", r#"{"users":[""]}"#),
        ("watch", r#"{"users":["nine-byte"]}"#),
        ("watch", r#"{"users":[7]}"#),
        ("watch", r#"["a"]"#),
        ("watch", r#"{"users":["a"],"extra":1}"#),
        ("unwatch", ""),
        ("status", r#"{"status":"offline"}"#),
        ("status", r#"{"status":"invisible"}"#),
        ("status", r#""away""#),
        ("status", ""),
    ] {
        let ack = bob.call(event, args).await;
        assert_eq!(code(&ack), "bad_request", "{event} {args}: {ack}");
        assert!(!ack["error"]["message"].as_str().unwrap().is_empty());
    }
    let ack = bob.call("presence", "").await;
    assert_eq!(code(&ack), "unknown_event", "{ack}");
}

/// Users of one organization (the part of the id before `@`) may watch
/// each other only.
struct SameOrganization;

impl WatchPolicy for SameOrganization {
    fn refused(
        &self,
        watcher: &Identity,
        users: &[String],
    ) -> socketio::BoxFuture<Result<Vec<String>, hub::component::HubError>> {
        let org = |user: &str| user.split('@').nth(1).unwrap_or_default().to_owned();
        let mine = org(&watcher.user);
        let refused = users.iter().filter(|u| org(u) != mine).cloned().collect();
        Box::pin(std::future::ready(Ok(refused)))
    }
}

#[tokio::test]
async fn a_deployment_restricts_who_may_watch_whom_with_its_policy() {
    let (addr, _app, _dir) = serve(&grace(), "", |config| {
        config.presence.watch_policy = WatchHook::new(SameOrganization);
    })
    .await;
    let mut bob = Device::connect(addr, "bob@acme").await;
    let ack = bob
        .call("watch", r#"{"users":["alice@acme","eve@evil"]}"#)
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("eve@evil")
    );
    // Refused as a whole: nothing is watched.
    let ack = bob.call("unwatch", r#"{"users":["alice@acme"]}"#).await;
    assert_eq!(ack["watching"], 0, "{ack}");
    let ack = bob.call("watch", r#"{"users":["alice@acme"]}"#).await;
    assert_eq!(ack["watching"], 1, "{ack}");

    // Bob hears of alice, not of eve (whom he could not watch).
    let _eve = Device::connect(addr, "eve@evil").await;
    let _alice = Device::connect(addr, "alice@acme").await;
    let event = bob.presence().await;
    assert_eq!(event["user"], "alice@acme", "{event}");
}

/// `switchboard_broadcast_fanout`'s count and sum for `/presence`.
async fn presence_fanout(addr: SocketAddr) -> (f64, f64) {
    let metrics = common::http(addr, "GET", "/metrics", &[], "").await.body;
    let line = |name: &str| {
        common::sample(
            &metrics,
            &format!("switchboard_broadcast_fanout_{name}{{namespace=\"/presence\"}}"),
        )
    };
    (line("count"), line("sum"))
}

/// 200 watchers here; the measurement of 10,000 runs this test against a
/// release server of its own (too many descriptors for one process):
/// `PRESENCE_SERVER=127.0.0.1:PORT PRESENCE_WATCHERS=10000`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_change_reaches_every_watcher_as_one_broadcast() {
    let watchers: usize = std::env::var("PRESENCE_WATCHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let external: Option<SocketAddr> = std::env::var("PRESENCE_SERVER")
        .ok()
        .map(|a| a.parse().unwrap());
    let _server;
    let addr = match external {
        Some(addr) => addr,
        None => {
            let (addr, app, dir) = start(&grace()).await;
            _server = (app, dir);
            addr
        }
    };
    let watched = format!("alice-{}", rand_suffix());
    let mut alice = Device::connect(addr, &watched).await;
    let watch = format!(r#"{{"users":["{watched}"]}}"#);
    // Connected a few dozen at a time (a debug build is slow at it).
    let mut devices: Vec<Device> =
        futures_util::StreamExt::collect(futures_util::StreamExt::buffer_unordered(
            futures_util::stream::iter((0..watchers).map(|i| {
                let watch = watch.clone();
                async move {
                    let mut device = Device::connect(addr, &format!("w{i}")).await;
                    let ack = device.call("watch", &watch).await;
                    assert_eq!(ack["ok"], true, "{ack}");
                    device
                }
            })),
            64,
        ))
        .await;
    let before = presence_fanout(addr).await;
    let started = Instant::now();
    let ack = alice.call("status", r#"{"status":"away"}"#).await;
    assert_eq!(ack["ok"], true);
    let acked = started.elapsed();
    let mut tasks = tokio::task::JoinSet::new();
    for mut device in devices.drain(..) {
        tasks.spawn(async move { (seen(&device.presence().await), device) });
    }
    while let Some(outcome) = tasks.join_next().await {
        let (shown_to_one, device) = outcome.unwrap();
        assert_eq!(shown_to_one, shown("away", 1));
        // Kept connected: a departure would be a broadcast of its own.
        devices.push(device);
    }
    let delivered = started.elapsed();
    let after = presence_fanout(addr).await;
    assert_eq!(after.0 - before.0, 1.0, "one broadcast");
    assert_eq!(after.1 - before.1, watchers as f64, "to every watcher");
    eprintln!(
        "a status change: one broadcast to {watchers} watchers, acked in {acked:?}, \
         received by all in {delivered:?}"
    );
}

#[tokio::test]
async fn the_publish_api_answers_from_the_presence_state() {
    let (addr, _app, _dir) = start(&grace()).await;
    let mut phone = Device::connect(addr, "alice").await;
    let laptop = Device::connect(addr, "alice").await;
    phone.call("status", r#"{"status":"busy"}"#).await;
    let (status, body) = api(addr, "GET", "/api/v1/presence?user=alice&user=bob", "").await;
    assert_eq!(status, 200, "{body}");
    let alice = &body["presence"]["alice"];
    assert_eq!(
        (
            &alice["online"],
            &alice["status"],
            &alice["devices"],
            &alice["sockets"]
        ),
        (&json!(true), &json!("busy"), &json!(2), &json!(2)),
        "{body}"
    );
    assert!(alice["last_seen"].as_i64().unwrap() > 0);
    assert_eq!(
        body["presence"]["bob"],
        json!({"online": false, "status": "offline", "devices": 0, "sockets": 0, "last_seen": null})
    );
    // Within the grace period she is still online, with no socket.
    laptop.close().await;
    phone.close().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, body) = api(addr, "GET", "/api/v1/presence?user=alice", "").await;
    let alice = &body["presence"]["alice"];
    assert_eq!(
        (&alice["online"], &alice["devices"]),
        (&json!(true), &json!(2)),
        "{body}"
    );
}

#[tokio::test]
async fn a_store_that_fails_changes_nothing_and_answers_unavailable() {
    let (addr, app, _dir) = start(&grace()).await;
    let mut alice = Device::connect(addr, "alice").await;
    let mut bob = Device::connect(addr, "bob").await;
    bob.call("watch", r#"{"users":["alice"]}"#).await;
    app.store.close().await;
    let ack = alice.call("status", r#"{"status":"busy"}"#).await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    // Online users are answered from the live state; offline ones need
    // the store.
    let ack = bob.call("watch", r#"{"users":["alice"]}"#).await;
    assert_eq!(seen(&ack["presence"][0]), shown("online", 1), "{ack}");
    let ack = bob.call("watch", r#"{"users":["carol"]}"#).await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    let ack = bob.call("unwatch", r#"{"users":["carol"]}"#).await;
    assert_eq!(ack["watching"], 1, "a failed watch watches nothing: {ack}");
    let (status, body) = api(addr, "GET", "/api/v1/presence?user=carol", "").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("unavailable"))
    );
    // Nothing changed for the watchers: the next event bob gets is
    // alice's next real change.
    let ack = alice.call("status", r#"{"status":"away"}"#).await;
    assert_eq!(ack["error"]["code"], "unavailable");
    let _laptop = Device::connect(addr, "alice").await;
    assert_eq!(seen(&bob.presence().await), shown("online", 2));
}

/// The stored part on one store: a chosen status, and `last_seen` written
/// many at once (one transaction for those that wait together), a later
/// time winning whatever the order.
async fn the_store_remembers_status_and_last_seen(url: &str) {
    use hub::{components::presence::PresenceConfig, services::presence::Status};
    let store = hub::store::Store::open(&hub::store::StoreConfig {
        url: url.to_owned(),
        max_connections: 4,
        timeout: Duration::from_secs(10),
    })
    .await
    .unwrap();
    let service = PresenceConfig::default().service(store.clone());
    let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let mut writes = tokio::task::JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        for at in [1_000 + i as i64, 500] {
            let service = service.clone();
            let user = user.clone();
            writes.spawn(async move { service.record_seen(&user, at).await });
        }
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap().unwrap();
    }
    // A user who never chose keeps `online`; a choice is kept.
    assert_eq!(
        service.set_status("user-7", Status::Busy).await.unwrap(),
        None
    );
    let remembered = service.remembered(&users).await.unwrap();
    assert_eq!(remembered.len(), 300);
    for (i, user) in users.iter().enumerate() {
        let r = remembered[user];
        assert_eq!(r.last_seen, Some(1_000 + i as i64), "{user}");
        let status = if i == 7 { Status::Busy } else { Status::Online };
        assert_eq!(r.status, status, "{user}");
    }
    service.record_seen("user-7", 10).await.unwrap();
    let looked = service
        .lookup(&["user-7".to_owned(), "nobody".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        (looked[0].status, looked[0].last_seen),
        (Status::Offline, Some(1_007))
    );
    assert_eq!(
        (looked[1].status, looked[1].last_seen),
        (Status::Offline, None)
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_remembers_status_and_last_seen_on_sqlite() {
    let dir = RemoveOnDrop(std::env::temp_dir().join(format!("sb-presence-st-{}", rand_suffix())));
    the_store_remembers_status_and_last_seen(&hub::store::sqlite_url_of(&dir.0.join("hub.db")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_remembers_status_and_last_seen_on_postgresql() {
    let Some((_admin, url)) = postgres_database().await else {
        return;
    };
    the_store_remembers_status_and_last_seen(&url).await;
}
