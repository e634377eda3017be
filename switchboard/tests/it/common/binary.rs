//! The real `switchboard` binary (`CARGO_BIN_EXE_switchboard`, which cargo
//! builds for every integration test), started as operators start it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::{RemoveOnDrop, rand_suffix};

/// The binary's command, killed if the test drops it.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.kill_on_drop(true);
    command
}

/// Sends SIGTERM to a running child.
pub fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A running `switchboard serve`, its folder removed when it is dropped.
pub struct Binary {
    pub child: Child,
    /// Its address, from its `listening on` line.
    pub addr: SocketAddr,
    /// What it printed before its `listening on` line (nothing, so far).
    pub before: Vec<String>,
    /// Its stdout after the `listening on` line.
    pub stdout: Lines<BufReader<ChildStdout>>,
    /// Removes its folder (data directory and `config.toml`).
    _cleanup: RemoveOnDrop,
}

impl Binary {
    /// Starts `switchboard serve --config` on a fresh folder's
    /// `config.toml`: `listen` on `127.0.0.1:0`, the folder as `data_dir`,
    /// then `toml`. `adjust` sets the rest of the command (environment,
    /// working directory: the folder is given); stderr is dropped unless
    /// it says otherwise. Waits (10 s) for the `listening on` line.
    pub async fn spawn(toml: &str, adjust: impl FnOnce(&mut Command, &Path)) -> Binary {
        let dir = std::env::temp_dir().join(format!("sb-bin-{}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let cleanup = RemoveOnDrop(dir.clone());
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"127.0.0.1:0\"]\ndata_dir = {:?}\n{toml}\n",
                dir.display().to_string()
            ),
        )
        .unwrap();
        let mut command = command();
        command
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        adjust(&mut command, &dir);
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut before = Vec::new();
        let addr = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return addr.parse().unwrap();
                }
                before.push(line);
            }
            panic!("the server exited before listening");
        })
        .await
        .expect("the server did not start");
        Binary {
            child,
            addr,
            before,
            stdout,
            _cleanup: cleanup,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends it SIGTERM.
    pub fn sigterm(&self) {
        sigterm(&self.child);
    }
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until every thread of process `pid` is stopped (`kill` returns
/// before a busy thread has taken the SIGSTOP).
pub async fn until_stopped(pid: u32) {
    let stopped = || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        tasks.flatten().all(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // `pid (name) STATE …`: the state follows the last `)`.
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            matches!(state, Some(Some('T' | 't')))
        })
    };
    tokio::time::timeout(super::WAIT, async {
        while !stopped() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the process did not stop");
}
