//! What operators rely on: health, readiness and the store (SQLite and
//! PostgreSQL), metrics.

use switchboard::config::Config;
use switchboard::server::App;

use crate::common::*;

#[tokio::test]
async fn health_and_metrics_report_connections_and_sockets() {
    let server = start("").await;
    let health = http(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    let (_client, _) = Client::connect(server.addr).await;
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    assert!(
        metrics.body.contains("\nswitchboard_connections 1\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("\nswitchboard_sockets{namespace=\"/\"} 1\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("\nswitchboard_sockets{namespace=\"/a\"} 0\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("# TYPE switchboard_slow_consumer_disconnects_total counter")
    );
}

#[tokio::test]
async fn the_default_store_is_a_migrated_sqlite_file_and_readyz_checks_it() {
    let server = start("").await;
    assert!(server.dir.join("switchboard.db").exists());
    assert_eq!(
        server.app.store.applied_migrations().await.unwrap(),
        hub::store::Backend::Sqlite.embedded_migrations()
    );
    let ready = http(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"]["backend"], "sqlite");
}

#[tokio::test]
async fn a_store_url_with_an_unknown_scheme_is_a_configuration_error() {
    let dir = std::env::temp_dir().join(format!("sb-bad-store-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, "[store]\nurl = \"mysql://root:hunter2@db/hub\"\n").unwrap();
    let err = Config::load(Some(&path), Vec::new()).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("store.url"), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the password leaked: {message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_postgresql_store_is_migrated_and_readyz_fails_when_it_goes_away() {
    use sqlx::Connection;
    let Some((admin, url)) = postgres_database().await else {
        return;
    };
    // No reuse of /readyz's outcome: the check right after the drop must
    // see it.
    let server = start(&format!(
        "[store]\nurl = {url:?}\ntimeout_ms = 1000\n[server]\nreadiness_cache_ms = 0\n"
    ))
    .await;
    assert_eq!(
        server.app.store.applied_migrations().await.unwrap(),
        hub::store::Backend::Postgres.embedded_migrations()
    );
    let ready = http(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready.body.contains(r#""backend":"postgres""#),
        "{}",
        ready.body
    );

    // The database disappears under the running hub.
    let name = url.rsplit_once('/').unwrap().1;
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    let ready = http(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["error"]["code"], "store_unreachable");
    // Liveness is not readiness: the process itself is fine.
    assert_eq!(
        http(server.addr, "GET", "/healthz", &[], "").await.status,
        200
    );
}

#[tokio::test]
async fn an_unreachable_postgresql_store_stops_the_start_with_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there
    let mut config = Config::load(None, Vec::new()).unwrap();
    config.store.url = format!("postgres://sb:pw@127.0.0.1:{port}/hub");
    config.store.timeout_ms = 2000;
    let err = App::new(&config).await.err().expect("the start must fail");
    let message = format!("{err:#}");
    assert!(message.contains("cannot open the store"), "{message}");
    assert!(!message.contains(":pw@"), "the password leaked: {message}");
}

#[tokio::test]
async fn metrics_count_events_fanout_and_store_latency() {
    let server = start("[socketio]\nmetrics_max_event_names = 3\n").await;
    let mut alice = news_subscriber(server.addr, "alice").await;
    let mut bob = news_subscriber(server.addr, "bob").await;
    alice
        .emit_to("/pubsub", 2, "publish", r#"{"room":"topic:news","data":1}"#)
        .await;
    assert!(bob.recv().await.starts_with(r#"42/pubsub,["message""#));
    assert!(alice.recv().await.starts_with(r#"42/pubsub,["message""#));
    assert!(alice.recv().await.starts_with("43/pubsub,2"));
    // More distinct names than the bound: the rest are counted as _other.
    for (id, event) in [(3, "x1"), (4, "x2"), (5, "x3")] {
        alice.emit_to("/pubsub", id, event, "1").await;
        let ack = alice.recv().await;
        assert!(ack.contains("unknown_event"), "{ack}");
    }
    let _ = http(server.addr, "GET", "/readyz", &[], "").await;
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.body;
    let received = |event: &str| {
        sample(
            &metrics,
            &format!(
                "switchboard_events_received_total{{namespace=\"/pubsub\",event=\"{event}\"}}"
            ),
        )
    };
    assert_eq!(received("subscribe"), 2.0, "{metrics}");
    assert_eq!(received("publish"), 1.0, "{metrics}");
    assert_eq!(received("x1"), 1.0, "{metrics}");
    assert_eq!(received("_other"), 2.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "switchboard_events_sent_total{namespace=\"/pubsub\",event=\"message\"}"
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "switchboard_broadcast_fanout_bucket{namespace=\"/pubsub\",le=\"1\"}"
        ),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "switchboard_broadcast_fanout_bucket{namespace=\"/pubsub\",le=\"10\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "switchboard_broadcast_fanout_sum{namespace=\"/pubsub\"}"
        ),
        2.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "switchboard_store_query_seconds_count{backend=\"sqlite\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn an_event_name_is_escaped_in_its_metrics_label() {
    // Event names come from clients: a quote, a backslash or a newline in
    // one must not end the label value or the line.
    let server = start("").await;
    let mut alice = connect_pubsub(server.addr, "alice").await;
    alice.emit_to("/pubsub", 1, r#"we\"i\\rd\n"#, "1").await;
    let ack = alice.recv().await;
    assert!(ack.contains("unknown_event"), "{ack}");
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.body;
    assert_eq!(
        sample(
            &metrics,
            r#"switchboard_events_received_total{namespace="/pubsub",event="we\"i\\rd\n"}"#
        ),
        1.0,
        "{metrics}"
    );
}
