//! The store: a SQL database through sqlx. SQLite by default (one file,
//! created and migrated at start), PostgreSQL when the URL says so (the
//! cluster's shared store). The migrations are embedded in the binary, one
//! set per dialect (`hub/migrations/{sqlite,postgres}`), and run at start;
//! a store already migrated is left as it is.
//!
//! Every query goes through [`Store::timed`], which bounds it in time and
//! records its latency for the operator (`/metrics`).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socketio::stats::{Histogram, HistogramSnapshot};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateError, Migrator};

#[cfg(test)]
pub(crate) mod testing;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// SQLite's durability setting, on every connection. In WAL mode `NORMAL`
/// syncs the WAL at checkpoints rather than at every `COMMIT`: the database
/// stays consistent after any crash and a crash of the process loses
/// nothing; only an OS crash or power cut may lose the last transactions
/// before the next checkpoint. It is SQLite's recommended setting for WAL,
/// and it takes the fsync off each commit: /chat's group commit measured
/// 2.3 ms per `COMMIT` with `FULL` (sqlx's default) and 0.8 ms with
/// `NORMAL` on the development machine.
const SQLITE_SYNCHRONOUS: &str = "PRAGMA synchronous = NORMAL";

/// Attempts after a failed SQLite migration (see [`Store::open`]).
const MIGRATE_RETRIES: u64 = 3;

/// Store query latency buckets, in seconds.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Where the store is and how it is used.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite:PATH` (or `sqlite://PATH`) or `postgres://user:pass@host/db`.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a query may wait for a connection and run.
    pub timeout: Duration,
}

/// Which database the URL named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Reads the backend off a URL's scheme.
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The versions of the migrations embedded for this backend.
    pub fn embedded_migrations(self) -> Vec<i64> {
        self.migrator().iter().map(|m| m.version).collect()
    }
}

/// The `sqlite:` URL of a file: `%`, `?` and `#` in the path escaped.
pub fn sqlite_url_of(path: &Path) -> String {
    let path = path.display().to_string();
    let escaped = path
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    format!("sqlite:{escaped}")
}

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL {0:?}: use sqlite:PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the store's folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the store at {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("migrating the store: {0}")]
    Migrate(#[from] MigrateError),
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
}

/// An open, migrated store. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    timeout: Duration,
    latency: Arc<Histogram>,
}

impl Store {
    /// Opens the store (creating a SQLite file and its folder if need be)
    /// and brings its schema up to date.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(&config.url)
            .ok_or_else(|| StoreError::UnsupportedUrl(redact(&config.url)))?;
        let url = match backend {
            Backend::Sqlite => sqlite_url(&config.url)?,
            Backend::Postgres => config.url.clone(),
        };
        let pool = AnyPoolOptions::new()
            // Refused at start when 0; a pool of none would time out every query.
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        sqlx::query(SQLITE_SYNCHRONOUS).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open {
                url: redact(&config.url),
                source,
            })?;
        let store = Store {
            pool,
            backend,
            timeout: config.timeout,
            latency: Arc::new(Histogram::new(LATENCY_BOUNDS)),
        };
        // SQLite has no migration lock: two processes starting on a new file
        // may race (one sees the table the other just created, or finds the
        // file locked while the other turns WAL on). The loser finds the
        // schema current when it tries again.
        let mut attempt = 0;
        loop {
            match store.prepare().await {
                Ok(()) => break,
                Err(err) if backend == Backend::Sqlite && attempt < MIGRATE_RETRIES => {
                    attempt += 1;
                    tracing::warn!(%err, attempt, "migrating the store failed; trying again");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(store)
    }

    /// Turns WAL on (SQLite: readers do not block the writer, and the
    /// setting stays with the file) and brings the schema up to date.
    async fn prepare(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            self.timed(sqlx::query("PRAGMA journal_mode=WAL").execute(&self.pool))
                .await?;
        }
        self.backend.migrator().run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The bound of one query (`store.timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection pool, for the components' queries (run them through
    /// [`timed`](Self::timed)).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`): a transaction that reads and then
    /// writes would otherwise fail with "database is locked" when another
    /// writer got there between its read and its write, where waiting
    /// (SQLite's busy timeout) is what is wanted. Run the whole transaction
    /// inside [`timed`](Self::timed); dropping it without `commit` rolls it
    /// back, so an error leaves nothing half-written.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Runs a query bounded by the configured timeout, recording its latency.
    pub async fn timed<T>(
        &self,
        query: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, query).await;
        self.latency.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Whether the store answers; how long it took.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        self.timed(sqlx::query("SELECT 1").execute(&self.pool))
            .await?;
        Ok(started.elapsed())
    }

    /// The versions of the migrations applied to this store.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let versions: Vec<(i64,)> = self
            .timed(
                sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
                    .fetch_all(&self.pool),
            )
            .await?;
        Ok(versions.into_iter().map(|(v,)| v).collect())
    }

    /// A value of the hub's own bookkeeping (`hub_meta`).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = self
            .timed(
                sqlx::query_as("SELECT value FROM hub_meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool),
            )
            .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Query latencies so far, in seconds.
    pub fn latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A SQLite URL that creates the file if missing, with its folder created.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:");
    let path = rest.trim_start_matches("//");
    // Decoded as sqlx decodes it (no `+` for space, unlike a query string).
    let path = percent_encoding::percent_decode_str(path.split('?').next().unwrap_or_default())
        .decode_utf8_lossy()
        .into_owned();
    let folder = Path::new(&path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && path != ":memory:");
    if let Some(folder) = folder {
        std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
            path: folder.display().to_string(),
            source,
        })?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// The URL without its password (in the authority or as a `password` /
/// `sslpassword` parameter), for logs and errors.
pub fn redact(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return url.to_owned();
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Unparseable: show no more than the scheme.
        let scheme = url.split(':').next().unwrap_or_default();
        return format!("{scheme}:<unparseable URL>");
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let secret =
        |key: &str| key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword");
    if parsed.query_pairs().any(|(key, _)| secret(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret(&key) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_comes_from_the_scheme() {
        assert_eq!(Backend::of("sqlite:data/x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("postgresql://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("mysql://u@h/db"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://sb:secret@db:5432/hub"),
            "postgres://sb:***@db:5432/hub"
        );
        assert_eq!(redact("postgres://sb@db/hub"), "postgres://sb@db/hub");
        // sqlx takes the last `@` as the end of the credentials.
        assert_eq!(
            redact("postgres://sb:p@ss@db/hub"),
            "postgres://sb:***@db/hub"
        );
        assert_eq!(
            redact("postgres://db/hub?user=sb&password=secret&sslmode=require"),
            "postgres://db/hub?user=sb&password=***&sslmode=require"
        );
        assert!(!redact("postgres://sb:secret@[bad/hub").contains("secret"));
        assert_eq!(redact("sqlite:data/hub.db"), "sqlite:data/hub.db");
    }

    #[test]
    fn both_dialects_embed_the_same_migrations() {
        assert_eq!(
            Backend::Sqlite.embedded_migrations(),
            Backend::Postgres.embedded_migrations()
        );
        assert!(!Backend::Sqlite.embedded_migrations().is_empty());
    }

    #[tokio::test]
    async fn a_sqlite_file_is_created_migrated_and_reopened() {
        // A folder name with the characters a URL would misread.
        let dir = std::env::temp_dir().join(format!("sb-store-{}-50%?#+", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = StoreConfig {
            url: sqlite_url_of(&dir.join("nested/hub.db")),
            max_connections: 2,
            timeout: Duration::from_secs(5),
        };
        let store = Store::open(&config).await.unwrap();
        assert!(dir.join("nested/hub.db").exists());
        assert_eq!(
            store.applied_migrations().await.unwrap(),
            Backend::Sqlite.embedded_migrations()
        );
        let created = store.meta("created_at").await.unwrap().unwrap();
        store.close().await;

        // A second start finds the schema current and keeps the data.
        let again = Store::open(&config).await.unwrap();
        assert_eq!(again.meta("created_at").await.unwrap(), Some(created));
        assert!(again.ping().await.is_ok());
        assert!(again.latency().count >= 3);
        again.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_opening_a_new_sqlite_file_at_once_both_succeed() {
        for round in 0..5 {
            let dir =
                std::env::temp_dir().join(format!("sb-store-race-{}-{round}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let config = StoreConfig {
                url: sqlite_url_of(&dir.join("hub.db")),
                max_connections: 2,
                timeout: Duration::from_secs(5),
            };
            let (a, b) = tokio::join!(Store::open(&config), Store::open(&config));
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(
                b.applied_migrations().await.unwrap(),
                Backend::Sqlite.embedded_migrations()
            );
            a.close().await;
            b.close().await;
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[tokio::test]
    async fn sqlite_connections_sync_at_checkpoints_not_at_every_commit() {
        let scratch = testing::Scratch::sqlite("store-sync");
        let store = scratch.open(2, Duration::from_secs(5)).await;
        let (mode,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, 1, "NORMAL");
        store.close().await;
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused() {
        let config = StoreConfig {
            url: "mysql://root:pw@localhost/db".to_owned(),
            max_connections: 1,
            timeout: Duration::from_secs(1),
        };
        let err = Store::open(&config).await.unwrap_err();
        assert!(
            err.to_string().contains("mysql://root:***@localhost/db"),
            "{err}"
        );
    }
}
