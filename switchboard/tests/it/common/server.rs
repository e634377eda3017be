//! Real servers on `127.0.0.1:0`, in this process, each with a data
//! folder of its own that is removed with it; a fresh PostgreSQL database
//! when the tests are given a server.

use std::net::SocketAddr;

use switchboard::config::Config;
use switchboard::server::{self, App};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server with the test kit (see [`start`]).
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: App,
    /// Its `data_dir` (config file, SQLite store).
    pub dir: std::path::PathBuf,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Removes `dir` when the test is done with the server.
    _cleanup: RemoveOnDrop,
}

impl TestServer {
    /// Its place in the cluster (a node of [`start_cluster`], or of a
    /// `toml` with a `[cluster]` section).
    pub fn cluster(&self) -> &cluster::Cluster {
        self.app.cluster.as_ref().expect("cluster mode")
    }
}

/// Removes a folder when dropped.
pub struct RemoveOnDrop(pub std::path::PathBuf);

/// A fresh folder `<prefix>-<n>` in the system's temporary folder, removed
/// when the guard is dropped.
pub fn temp_dir(prefix: &str) -> (std::path::PathBuf, RemoveOnDrop) {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    (dir.clone(), RemoveOnDrop(dir))
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a server with the test kit on `/` and `/a`, configured by `toml`
/// (a test setup: `test_setup = true`, which the test kit requires).
pub async fn start(toml: &str) -> TestServer {
    let namespaces = r#"
[auth]
hs256_secret = "test-secret"

[api]
keys = ["test-key"]
max_body_bytes = 2000

[[namespaces]]
name = "/secure"
handler = "testkit"
auth = true

[[namespaces]]
name = "/pubsub"
handler = "pubsub"
auth = true

[[namespaces]]
name = "/"
handler = "testkit"
[[namespaces]]
name = "/a"
handler = "testkit"
"#;
    let dir = std::env::temp_dir().join(format!("sb-test-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}\ntest_setup = true\n{toml}\n{namespaces}",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let config = Config::load(Some(&path), Vec::new()).unwrap();
    let app = App::new(&config).await.unwrap();
    let listeners = server::bind(&config.listen).await.unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let app = app.clone();
        async move {
            server::run(listeners, &config, app, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    TestServer {
        addr,
        app,
        _cleanup: RemoveOnDrop(dir.clone()),
        dir,
        stop: Some(stop),
        task,
    }
}

/// A number no other call in any test process returns (the clock and the
/// process id for other processes, a counter within this one).
pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    (nanos ^ (std::process::id() as u64) << 32).wrapping_add(count << 48)
}

/// A fresh database on the test PostgreSQL server (`TEST_POSTGRES_URL`, set
/// by `tests/postgres/with-postgres.sh`, which `make test` uses); `None`
/// outside CI when no server is given. Returns the admin URL and the new
/// database's URL.
pub async fn postgres_database() -> Option<(String, String)> {
    use sqlx::Connection;
    let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the PostgreSQL tests: run them through tests/postgres/with-postgres.sh"
        );
        eprintln!("TEST_POSTGRES_URL not set: skipping the PostgreSQL part");
        return None;
    };
    let name = format!("sb_test_{}", rand_suffix());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some((admin.clone(), format!("{base}/{name}")))
}

/// The test Redis (`TEST_REDIS_URL`, set by `tests/redis/with-redis.sh`,
/// which `make test` uses); `None` outside CI when none is given.
pub fn redis_url() -> Option<String> {
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the cluster tests: run them through tests/redis/with-redis.sh"
        );
        eprintln!("TEST_REDIS_URL not set: skipping the cluster part");
        return None;
    };
    Some(url)
}

/// The `[store]` and `[cluster]` sections of one test cluster: the Redis at
/// `redis` under a key prefix of its own (tests share the server, never a
/// channel) and a fresh PostgreSQL database. `None` outside CI when either
/// server is not given.
pub async fn cluster_sections_on(redis: &str, extra_cluster_keys: &str) -> Option<String> {
    let (_, database) = postgres_database().await?;
    Some(cluster_sections(
        redis,
        &format!("url = {database:?}"),
        extra_cluster_keys,
    ))
}

/// The `[store]` section (`store_keys`, its `url` included) and the
/// `[cluster]` section of one test cluster on the Redis at `redis`, under
/// a key prefix of its own.
pub fn cluster_sections(redis: &str, store_keys: &str, extra_cluster_keys: &str) -> String {
    format!(
        "[store]\n{store_keys}\n\n[cluster]\nredis_url = {redis:?}\n\
         key_prefix = \"sbtest-{}\"\nhealth_interval_ms = 100\n{extra_cluster_keys}\n",
        rand_suffix()
    )
}

/// `n` nodes of one cluster on the test Redis (see [`cluster_sections_on`]),
/// each a [`start`]ed server with the test kit, configured by `toml`
/// besides (which names no `[store]` or `[cluster]`), each connected to
/// Redis when it returns.
pub async fn start_cluster(n: usize, toml: &str) -> Option<Vec<TestServer>> {
    start_cluster_with(n, toml, "").await
}

/// [`start_cluster`] with more `[cluster]` keys.
pub async fn start_cluster_with(
    n: usize,
    toml: &str,
    extra_cluster_keys: &str,
) -> Option<Vec<TestServer>> {
    start_cluster_on(n, toml, &redis_url()?, extra_cluster_keys).await
}

/// [`start_cluster_with`] on the Redis at `redis`.
pub async fn start_cluster_on(
    n: usize,
    toml: &str,
    redis: &str,
    extra_cluster_keys: &str,
) -> Option<Vec<TestServer>> {
    let sections = cluster_sections_on(redis, extra_cluster_keys).await?;
    Some(start_nodes(n, &format!("{toml}\n{sections}")).await)
}

/// `n` [`start`]ed servers configured by `toml`, which names a cluster
/// (see [`cluster_sections`]), one after the other (the first migrates the
/// store), each connected to Redis when it returns.
pub async fn start_nodes(n: usize, toml: &str) -> Vec<TestServer> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let node = start(toml).await;
        let cluster = node.cluster();
        assert!(
            cluster.wait_up(super::WAIT).await,
            "a node did not connect to Redis: {:?}",
            cluster.health()
        );
        nodes.push(node);
    }
    nodes
}

/// Polls `/readyz` (with its detail, as an operator) until it answers
/// `status`; returns its body.
pub async fn until_readyz(addr: SocketAddr, status: u16) -> serde_json::Value {
    tokio::time::timeout(super::WAIT, async {
        loop {
            let response = super::http(addr, "GET", "/readyz", &[], "").await;
            if response.status == status {
                return serde_json::from_str(&response.body).unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/readyz of {addr} never answered {status}"))
}

/// A server configured by `toml` alone (no namespaces or keys added): its
/// public address, and its admin listener's when `server.admin_listen` is set.
pub struct RawServer {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub app: App,
    pub cleanup: RemoveOnDrop,
}

/// Starts a server configured by `toml` alone.
pub async fn start_raw(toml: &str) -> RawServer {
    try_start_raw(toml).await.unwrap()
}

/// [`start_raw`], returning why the configuration or the start failed.
pub async fn try_start_raw(toml: &str) -> anyhow::Result<RawServer> {
    try_start_raw_with(toml, |_| {}).await
}

/// [`start_raw`], with `adjust` changing the loaded configuration (what
/// TOML cannot say: a hook such as a watch policy).
pub async fn start_raw_with(toml: &str, adjust: impl FnOnce(&mut Config)) -> RawServer {
    try_start_raw_with(toml, adjust).await.unwrap()
}

async fn try_start_raw_with(
    toml: &str,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<RawServer> {
    let dir = std::env::temp_dir().join(format!("sb-test-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let cleanup = RemoveOnDrop(dir.clone());
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}\n{toml}\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let mut config = Config::load(Some(&path), Vec::new())?;
    adjust(&mut config);
    let app = App::new(&config).await?;
    let listeners = server::Listeners::bind(&config).await?;
    let addr = listeners.public[0].local_addr()?;
    let admin = listeners
        .admin
        .first()
        .map(|l| l.local_addr())
        .transpose()?;
    tokio::spawn({
        let app = app.clone();
        async move { server::run(listeners, &config, app, std::future::pending()).await }
    });
    Ok(RawServer {
        addr,
        admin,
        app,
        cleanup,
    })
}
