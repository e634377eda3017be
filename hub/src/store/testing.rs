//! Scratch stores for the hub's tests, one fixture for all of them: a
//! SQLite store in a folder of its own, removed when the test is done with
//! it, and a fresh database on the test PostgreSQL server, so that every
//! test of the SQL can run on both backends.
//!
//! The PostgreSQL server is the one `tests/postgres/with-postgres.sh`
//! starts and names in `TEST_POSTGRES_URL` (`make test` runs the Rust tests
//! under it). Without it the PostgreSQL part of a test skips with a note,
//! except under `CI`, where it fails: CI must not pass by skipping.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::Connection;

use super::{Store, StoreConfig, sqlite_url_of};

/// Where a test's store lives: a SQLite file or a PostgreSQL database of
/// its own. Keep it alive while the store is open (a SQLite folder is
/// removed on drop).
pub(crate) struct Scratch {
    url: String,
    /// The SQLite store's folder, removed on drop; `None` for PostgreSQL,
    /// whose throwaway server takes its databases with it.
    dir: Option<PathBuf>,
}

impl Scratch {
    /// A SQLite store `hub.db` in a new folder of the system's temporary
    /// folder, named after `name` (the store creates it when opened).
    pub(crate) fn sqlite(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "sb-{name}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        // A folder left by a crashed run of the same name starts afresh.
        let _ = std::fs::remove_dir_all(&dir);
        Scratch {
            url: sqlite_url_of(&dir.join("hub.db")),
            dir: Some(dir),
        }
    }

    /// A fresh database `sb_test_<random>` on the test PostgreSQL server;
    /// `None` (after a note) when no server is given, outside CI.
    ///
    /// # Panics
    ///
    /// Under `CI` without `TEST_POSTGRES_URL`, and when the server refuses
    /// the database.
    pub(crate) async fn postgres() -> Option<Scratch> {
        let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the PostgreSQL tests: run them through tests/postgres/with-postgres.sh"
            );
            eprintln!("TEST_POSTGRES_URL not set: skipping the PostgreSQL part");
            return None;
        };
        let name = format!("sb_test_{}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let (server, _) = admin
            .rsplit_once('/')
            .expect("TEST_POSTGRES_URL names a database");
        Some(Scratch {
            url: format!("{server}/{name}"),
            dir: None,
        })
    }

    /// The store's URL (for a second store on the same database, or a raw
    /// connection).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Opens (and migrates) the store with `connections` in its pool and
    /// `timeout` for each query.
    pub(crate) async fn open(&self, connections: u32, timeout: Duration) -> Store {
        Store::open(&StoreConfig {
            url: self.url.clone(),
            max_connections: connections,
            timeout,
        })
        .await
        .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
