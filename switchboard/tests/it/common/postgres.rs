//! A PostgreSQL server of a test's own, on a loopback port, that can be
//! stopped and started again on that port with its data (the shared test
//! server, `TEST_POSTGRES_URL`, cannot be: other tests use it). Stopped and
//! its folder removed on drop.

use std::path::PathBuf;
use std::process::Command;

use super::{RemoveOnDrop, postgres_database, temp_dir};

/// A server started with `initdb` and `pg_ctl` from Debian's packages
/// (what `tests/postgres/with-postgres.sh` installs and runs), superuser
/// `postgres`, trust authentication.
pub struct OwnPostgres {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    /// As root, PostgreSQL runs as the `postgres` user
    /// (`with-postgres.sh` creates it).
    as_postgres: bool,
    running: bool,
    _cleanup: RemoveOnDrop,
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

impl OwnPostgres {
    /// Creates and starts the server; `None` where the PostgreSQL tests
    /// are skipped (no `TEST_POSTGRES_URL`, outside CI).
    pub async fn start() -> Option<OwnPostgres> {
        // The shared server is the sign that PostgreSQL is installed here.
        postgres_database().await?;
        let bindir = bindir().expect("PostgreSQL's binaries (what TEST_POSTGRES_URL runs)");
        let (dir, cleanup) = temp_dir("sb-own-postgres");
        let as_postgres = is_root();
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("postgres").arg(&dir);
            run(chown).await;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = OwnPostgres {
            bindir,
            dir,
            port,
            as_postgres,
            running: false,
            _cleanup: cleanup,
        };
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(server.data());
        initdb.args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(initdb).await;
        server.start_again().await;
        Some(server)
    }

    /// Its admin URL (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it at once (`pg_ctl stop -m immediate`: every connection
    /// drops, as when the server crashes), and returns once it is down.
    pub async fn stop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(self.data());
        stop.args(["-m", "immediate", "-w", "stop"]);
        run(stop).await;
        self.running = false;
    }

    /// Starts it (again) on its port, and returns once it accepts
    /// connections (`pg_ctl -w`).
    pub async fn start_again(&mut self) {
        let options = format!("-h 127.0.0.1 -p {} -k {} -F", self.port, self.dir.display());
        let mut start = self.command("pg_ctl");
        start.arg("-D").arg(self.data());
        start.arg("-l").arg(self.dir.join("server.log"));
        start.args(["-w", "-t", "30", "-o", &options, "start"]);
        run(start).await;
        self.running = true;
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `program` from PostgreSQL's binaries, as the user that owns the data.
    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// Whether this process runs as root (`id -u`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Runs `command` without blocking the runtime (the servers under test
/// run on it); fails the test with its output if it fails.
async fn run(command: Command) {
    let what = format!("{command:?}");
    let out = tokio::process::Command::from(command)
        .output()
        .await
        .expect("PostgreSQL's tools");
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
