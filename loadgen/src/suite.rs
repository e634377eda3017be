//! `loadgen suite`: runs the benchmark matrix against Switchboard and the
//! Node.js reference server, alternating them, a fresh server process for
//! every run, then reports medians, ratios and target checks (see
//! `report.rs`) and draws the chart (see `chart.rs`).
//!
//! ```text
//! loadgen suite [--reps 3] [--only SCENARIO|CASE,...] [--quick]
//!               [--out docs/BENCHMARKS.md] [--budget-mins 25]
//! ```
//!
//! The ESN cases (`chat`, `notify`) run Switchboard only, on `bench/esn.toml`,
//! once on SQLite (a fresh data directory per run) and once on PostgreSQL (a
//! fresh database per run on the server `TEST_POSTGRES_URL` names, as
//! `tests/postgres/with-postgres.sh` exports it; without one those runs are
//! skipped with a note saying so).
//!
//! Every run: pick a free port on 127.0.0.1, start the server, wait for its
//! `listening on 127.0.0.1:PORT` line, run the scenario as a child process
//! (`current_exe() SCENARIO --url ws://127.0.0.1:PORT ... --json-only`) under a
//! hard timeout, take its last stdout line as the result, then stop the server
//! (SIGTERM, SIGKILL after 5 s). Logs of every server and scenario process go
//! to `target/bench-logs/`.

#[path = "chart.rs"]
mod chart;
#[path = "report.rs"]
mod report;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use report::{Better, Case, Figure, Meta, Run, Server, Status, Target, Unit};

const USAGE: &str = "\
usage: loadgen suite [--reps N] [--only NAME,...] [--quick] [--out FILE] [--budget-mins M]
       loadgen suite --from RESULTS.jsonl [--out FILE]

Runs the benchmark matrix against Switchboard (bench/server.sh) and the Node.js
reference server (bench/peers/node/server.js), alternating them, a fresh server
for every run, and writes the report. The chat and notify cases run Switchboard
on SQLite and on PostgreSQL (TEST_POSTGRES_URL, as tests/postgres/with-postgres.sh
sets it; skipped without it) instead.

  --reps N          runs per server and case (default 3; 1 with --quick)
  --only NAME,...   only these scenarios (conns, fanout, echo, churn, chat, notify)
                    or case ids
  --quick           small sizes and 1 rep: a smoke test of a minute or two
  --out FILE        the Markdown report to regenerate (default docs/BENCHMARKS.md;
                    with --quick, target/bench-quick/BENCHMARKS.md); the raw runs
                    (bench-results.jsonl) and chart (bench-chart.svg) go beside it
  --budget-mins M   skip the runs that would end past M minutes (default 25; 5 with --quick)
  --from FILE       run nothing: redo the report from the raw runs of an earlier
                    suite (its bench-results.jsonl), written to --out or the default
";

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Pause between runs, so the previous server's sockets are gone.
const COOL_DOWN: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Options {
    reps: u32,
    only: Vec<String>,
    quick: bool,
    out: Option<PathBuf>,
    budget_mins: f64,
    from: Option<PathBuf>,
}

fn parse(args: Vec<String>) -> Result<Options> {
    let mut it = args
        .into_iter()
        .skip_while(|a| !a.starts_with('-'))
        .peekable();
    let (mut reps, mut only, mut quick, mut out, mut budget, mut from) =
        (None, Vec::new(), false, None, None, None);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "--reps" => {
                let n: u32 = value()?.parse().context("--reps")?;
                if n == 0 {
                    bail!("--reps must be at least 1");
                }
                reps = Some(n);
            }
            "--only" => only.extend(
                value()?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            ),
            "--quick" => quick = true,
            "--out" => out = Some(PathBuf::from(value()?)),
            "--from" => from = Some(PathBuf::from(value()?)),
            "--budget-mins" => budget = Some(value()?.parse::<f64>().context("--budget-mins")?),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(Options {
        reps: reps.unwrap_or(if quick { 1 } else { 3 }),
        only,
        quick,
        out,
        // The ESN cases come last: room for them after a slow peer matrix.
        budget_mins: budget.unwrap_or(if quick { 5.0 } else { 25.0 }),
        from,
    })
}

/// `10000` -> `10k`, `200` -> `200`.
fn k(n: u64) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn fig(
    key: &'static str,
    name: &'static str,
    unit: Unit,
    better: Better,
    target: Option<Target>,
    chart: bool,
) -> Figure {
    Figure {
        key,
        name,
        unit,
        better,
        target,
        chart,
    }
}

/// The benchmark matrix. `quick` keeps the shape with small sizes and short runs.
fn matrix(quick: bool) -> Vec<Case> {
    // (connections, ramp/s, hold s) for the two memory cases.
    let (conns, ramp, hold): ([u64; 2], u64, u64) = if quick {
        ([1000, 2000], 1000, 1)
    } else {
        ([10_000, 19_000], 2000, 3)
    };
    let (fan_small, fan_big) = if quick { (200, 1000) } else { (1000, 10_000) };
    let fan_secs: u64 = if quick { 4 } else { 8 };
    let rate_secs: u64 = if quick { 4 } else { 10 };
    let (echo_conns, echo_secs): (u64, u64) = if quick { (100, 3) } else { (1000, 8) };
    let (churn_pop, churn_rate, churn_secs): (u64, u64, u64) =
        if quick { (100, 100, 3) } else { (1000, 500, 8) };
    // Connection setup estimate for the budget: ~2,000 connections/s.
    let setup = |n: u64| n / 2000 + 1;
    let mut cases = Vec::new();

    // With `v3`, every connection an Engine.IO v3 one (socket.io 2.x): the
    // idle memory of those, for the smaller size; not in the quick suite
    // (its budget: fanout-1k-mixed opens v3 connections there).
    let v3_conns = (!quick).then_some((conns[0], true));
    for (n, v3) in conns.map(|n| (n, false)).into_iter().chain(v3_conns) {
        let est = n / ramp + hold + 2;
        let (suffix, what) = if v3 {
            ("-v3", " Engine.IO v3 (socket.io 2.x)")
        } else {
            ("", "")
        };
        let mut list = args(&[
            "--connections",
            &n.to_string(),
            "--ramp-per-sec",
            &ramp.to_string(),
            "--hold-secs",
            &hold.to_string(),
        ]);
        if v3 {
            list.extend(args(&["--eio3-share", "1"]));
        }
        cases.push(Case {
            id: format!("conns-{}{suffix}", k(n)),
            title: format!("conns: {} idle{what} connections", report::int(n as f64)),
            short: format!("conns {} idle{}", k(n), if v3 { " v3" } else { "" }),
            scenario: "conns",
            args: list,
            expect_connections: Some(n),
            estimate_secs: est,
            timeout_secs: est * 3 + 30,
            esn: false,
            figures: vec![fig(
                "bytes_per_connection",
                "memory per connection",
                Unit::Bytes,
                Better::Lower,
                Some(Target::SwAtMost(6.0 * 1024.0)),
                true,
            )],
        });
    }

    // The mixed case: every other subscriber a socket.io 2.x client
    // (Engine.IO v3), beside the same case all v4: what serving the second
    // protocol costs a broadcast (no target: reported).
    for (subs, target, mixed) in [
        (fan_small, Some(20.0), false),
        (fan_big, Some(7.0), false),
        (fan_big, None, true),
    ] {
        let est = setup(subs) + fan_secs + 3;
        let mut list = args(&[
            "--subscribers",
            &subs.to_string(),
            "--payload",
            "100",
            "--window",
            "64",
            "--duration-secs",
            &fan_secs.to_string(),
        ]);
        if mixed {
            list.extend(args(&["--eio3-share", "0.5"]));
        }
        cases.push(Case {
            id: format!("fanout-{}{}", k(subs), if mixed { "-mixed" } else { "" }),
            title: format!(
                "fanout: {} subscribers{}, 100 B, window 64",
                report::int(subs as f64),
                if mixed {
                    ", half socket.io 2.x (Engine.IO v3)"
                } else {
                    ""
                }
            ),
            short: format!(
                "fanout {} w64{}",
                k(subs),
                if mixed { " v3+v4" } else { "" }
            ),
            scenario: "fanout",
            args: list,
            expect_connections: None,
            estimate_secs: est,
            timeout_secs: est * 3 + 30,
            esn: false,
            figures: vec![
                fig(
                    "deliveries_per_sec",
                    "deliveries/s",
                    Unit::PerSec,
                    Better::Higher,
                    target.map(Target::RatioAtLeast),
                    true,
                ),
                fig(
                    "latency_us/p99",
                    "latency p99",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    false,
                ),
            ],
        });
    }

    {
        let rate = 2;
        let est = setup(fan_big) + rate_secs + 3;
        cases.push(Case {
            id: format!("fanout-{}-rate", k(fan_big)),
            title: format!(
                "fanout: {} subscribers, 100 B, {rate} msgs/s ({} deliveries/s)",
                report::int(fan_big as f64),
                report::int((fan_big * rate) as f64)
            ),
            short: format!("fanout {} @{}/s", k(fan_big), k(fan_big * rate)),
            scenario: "fanout",
            args: args(&[
                "--subscribers",
                &fan_big.to_string(),
                "--payload",
                "100",
                "--rate",
                &rate.to_string(),
                "--duration-secs",
                &rate_secs.to_string(),
            ]),
            expect_connections: None,
            estimate_secs: est,
            timeout_secs: est * 3 + 30,
            esn: false,
            figures: vec![
                fig(
                    "latency_us/p99",
                    "latency p99",
                    Unit::Micros,
                    Better::Lower,
                    Some(Target::RatioAtMost(0.6)),
                    true,
                ),
                fig(
                    "latency_us/p50",
                    "latency p50",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    false,
                ),
                fig(
                    "deliveries_per_sec",
                    "deliveries/s",
                    Unit::PerSec,
                    Better::Higher,
                    None,
                    false,
                ),
            ],
        });
    }

    {
        let est = setup(echo_conns) + echo_secs + 3;
        cases.push(Case {
            id: format!("echo-{}", k(echo_conns)),
            title: format!("echo: {} connections", report::int(echo_conns as f64)),
            short: format!("echo {}", k(echo_conns)),
            scenario: "echo",
            args: args(&[
                "--connections",
                &echo_conns.to_string(),
                "--duration-secs",
                &echo_secs.to_string(),
            ]),
            expect_connections: None,
            estimate_secs: est,
            timeout_secs: est * 3 + 30,
            esn: false,
            figures: vec![
                fig(
                    "acks_per_sec",
                    "acks/s",
                    Unit::PerSec,
                    Better::Higher,
                    Some(Target::RatioAtLeast(6.0)),
                    true,
                ),
                fig(
                    "rtt_us/p99",
                    "round trip p99",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    false,
                ),
            ],
        });
    }

    {
        let est = setup(churn_pop) + churn_secs + 2;
        cases.push(Case {
            id: format!("churn-{}", k(churn_pop)),
            title: format!(
                "churn: population {}, {} connects/s",
                report::int(churn_pop as f64),
                report::int(churn_rate as f64)
            ),
            short: format!("churn {} @{}/s", k(churn_pop), churn_rate),
            scenario: "churn",
            args: args(&[
                "--population",
                &churn_pop.to_string(),
                "--rate",
                &churn_rate.to_string(),
                "--duration-secs",
                &churn_secs.to_string(),
            ]),
            expect_connections: None,
            estimate_secs: est,
            timeout_secs: est * 3 + 30,
            esn: false,
            figures: vec![
                fig(
                    "connects_per_sec",
                    "connects/s",
                    Unit::PerSec,
                    Better::Higher,
                    None,
                    true,
                ),
                fig(
                    "handshake_us/p99",
                    "handshake p99",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    true,
                ),
            ],
        });
    }
    {
        // A small churn beside a large fan-out: does broadcasting to 10,000
        // sockets hold up connects and disconnects?
        let (pop, rate, secs, beside): (u64, u64, u64, u64) = if quick {
            (100, 100, 3, fan_small)
        } else {
            (100, 200, 8, fan_big)
        };
        let est = setup(pop + beside) + secs + 3;
        cases.push(Case {
            id: format!("churn-beside-fanout-{}", k(beside)),
            title: format!(
                "churn: population {pop}, {rate} connects/s, beside a {}-subscriber fan-out",
                report::int(beside as f64)
            ),
            short: format!("churn @{rate}/s + fanout {}", k(beside)),
            scenario: "churn",
            args: args(&[
                "--population",
                &pop.to_string(),
                "--rate",
                &rate.to_string(),
                "--duration-secs",
                &secs.to_string(),
                "--beside-fanout",
                &beside.to_string(),
            ]),
            expect_connections: None,
            estimate_secs: est,
            timeout_secs: est * 3 + 30,
            esn: false,
            figures: vec![
                fig(
                    "handshake_us/p99",
                    "handshake p99",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    true,
                ),
                fig(
                    "handshake_us/p50",
                    "handshake p50",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    false,
                ),
                fig(
                    "fanout_deliveries_per_sec",
                    "fan-out deliveries/s",
                    Unit::PerSec,
                    Better::Higher,
                    None,
                    false,
                ),
            ],
        });
    }
    cases.extend(esn_matrix(quick));
    cases
}

/// CPU of both processes over the measured window, reported beside an ESN
/// case's figures: is the generator the bottleneck?
fn cpu_figures() -> [Figure; 2] {
    [
        fig(
            "cpu/server_cpu_pct",
            "server CPU, % of one core",
            Unit::Percent,
            Better::Lower,
            None,
            false,
        ),
        fig(
            "cpu/loadgen_cpu_pct",
            "loadgen CPU, % of one core",
            Unit::Percent,
            Better::Lower,
            None,
            false,
        ),
    ]
}

/// The ESN cases: chat (closed and open loop) and a notification to every
/// connected user, each on SQLite and PostgreSQL.
fn esn_matrix(quick: bool) -> Vec<Case> {
    let (users, group, window, secs, rate): (u64, u64, u64, u64, u64) = if quick {
        (20, 5, 8, 2, 1000)
    } else {
        (100, 5, 8, 5, 5000)
    };
    let (devices, rounds): (u64, u64) = if quick { (1000, 3) } else { (10_000, 5) };
    // Connections, 1 s warm-up, the measured time, the drain.
    let chat_est = users / 2000 + 1 + 1 + secs + 2;
    let common = |extra: &[&str]| {
        let mut a = args(&[
            "--users",
            &users.to_string(),
            "--group-size",
            &group.to_string(),
            "--duration-secs",
            &secs.to_string(),
        ]);
        a.extend(args(extra));
        a
    };
    let mut cases = vec![
        Case {
            id: format!("chat-{}", k(users)),
            title: format!(
                "chat: {users} users, direct and groups of {group}, {window} in flight per user"
            ),
            short: format!("chat {} w{window}", k(users)),
            scenario: "chat",
            args: common(&["--window", &window.to_string()]),
            expect_connections: None,
            estimate_secs: chat_est,
            timeout_secs: chat_est * 3 + 30,
            figures: vec![
                fig(
                    "stored_per_sec",
                    "messages stored (acked)/s",
                    Unit::PerSec,
                    Better::Higher,
                    Some(Target::SwAtLeast(10_000.0)),
                    false,
                ),
                fig(
                    "delivered_per_sec",
                    "messages delivered/s",
                    Unit::PerSec,
                    Better::Higher,
                    Some(Target::SwAtLeast(10_000.0)),
                    false,
                ),
                fig(
                    "ack_us/p50",
                    "ack p50",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    false,
                ),
                fig(
                    "ack_us/p99",
                    "ack p99",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    false,
                ),
            ],
            esn: true,
        },
        Case {
            id: format!("chat-{}-rate", k(users)),
            title: format!(
                "chat: {users} users, direct and groups of {group}, {} messages/s",
                report::int(rate as f64)
            ),
            short: format!("chat {} @{}/s", k(users), k(rate)),
            scenario: "chat",
            args: common(&["--rate", &rate.to_string()]),
            expect_connections: None,
            estimate_secs: chat_est,
            timeout_secs: chat_est * 3 + 30,
            figures: vec![
                fig(
                    "ack_us/p99",
                    "ack p99",
                    Unit::Micros,
                    Better::Lower,
                    Some(Target::SwAtMost(50_000.0)),
                    false,
                ),
                fig(
                    "ack_us/p50",
                    "ack p50",
                    Unit::Micros,
                    Better::Lower,
                    None,
                    false,
                ),
                fig(
                    "stored_per_sec",
                    "messages stored (acked)/s",
                    Unit::PerSec,
                    Better::Higher,
                    None,
                    false,
                ),
                fig(
                    "delivered_per_sec",
                    "messages delivered/s",
                    Unit::PerSec,
                    Better::Higher,
                    None,
                    false,
                ),
            ],
            esn: true,
        },
    ];
    // Connections at 2,000/s, the greetings, about a second a round.
    let notify_est = devices / 2000 + 2 + rounds;
    cases.push(Case {
        id: format!("notify-{}", k(devices)),
        title: format!(
            "notify: one API notification to {} connected users, {rounds} rounds",
            report::int(devices as f64)
        ),
        short: format!("notify {}", k(devices)),
        scenario: "notify",
        args: args(&[
            "--devices",
            &devices.to_string(),
            "--rounds",
            &rounds.to_string(),
        ]),
        expect_connections: None,
        estimate_secs: notify_est,
        timeout_secs: notify_est * 3 + 30,
        figures: vec![
            fig(
                "stored_us/median",
                "until stored (API answered), median round",
                Unit::Micros,
                Better::Lower,
                None,
                false,
            ),
            fig(
                "delivered_us/median",
                "until the last device received it, median round",
                Unit::Micros,
                Better::Lower,
                None,
                false,
            ),
        ],
        esn: true,
    });
    for c in &mut cases {
        c.figures.extend(cpu_figures());
    }
    cases
}

/// The repository root: the current directory if it has `bench/server.sh`,
/// else the one above `target/release/loadgen`.
fn find_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    let mut candidates = vec![cwd];
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    candidates
        .into_iter()
        .find(|d| d.join("bench/server.sh").is_file())
        .ok_or_else(|| {
            anyhow!(
                "cannot find the repository root (a directory with bench/server.sh); run from it"
            )
        })
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".to_string());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| format!("Linux {}", s.trim()))
        .or_else(|| command_line("uname", &["-sr"]))
        .unwrap_or_else(|| "unknown".to_string());
    let unknown = || "unknown".to_string();
    vec![
        (
            "CPU".to_string(),
            format!("{cpu}, {cores} cores (nproc), shared by server and load generator"),
        ),
        ("Memory".to_string(), mem),
        ("Kernel".to_string(), kernel),
        (
            "Rust".to_string(),
            command_line("rustc", &["--version"]).unwrap_or_else(unknown),
        ),
        (
            "Node.js".to_string(),
            command_line("node", &["--version"]).unwrap_or_else(unknown),
        ),
    ]
}

/// `YYYY-MM-DD HH:MM UTC`, from the system clock.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn commit(root: &Path) -> String {
    let Some(head) = command_line(
        "git",
        &[
            "-C",
            &root.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    ) else {
        return String::new();
    };
    let dirty = command_line(
        "git",
        &[
            "-C",
            &root.to_string_lossy(),
            "status",
            "--porcelain",
            "-uno",
        ],
    )
    .is_some();
    if dirty {
        format!("{head} (with uncommitted changes)")
    } else {
        head
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `program args` through `sh` after raising the soft open-files limit
/// to the hard one (idle-connection runs need ~20,000 descriptors); `exec`
/// keeps the pid.
fn with_nofile(program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// A server process, stopped (SIGTERM, then SIGKILL) when dropped.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn start(
        root: &Path,
        server: Server,
        port: u16,
        log: &Path,
        store: Option<&EsnStore>,
    ) -> Result<Self> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = match (server, store) {
            (_, Some(store)) => {
                let mut c = with_nofile(
                    Path::new("bash"),
                    &[
                        root.join("bench/server.sh").to_string_lossy().into_owned(),
                        port.to_string(),
                        root.join("bench/esn.toml").to_string_lossy().into_owned(),
                    ],
                );
                c.env("SWITCHBOARD_DATA_DIR", &store.data_dir);
                if let Some(url) = &store.postgres_url {
                    c.env("SWITCHBOARD_STORE_URL", url);
                }
                c
            }
            (Server::Switchboard | Server::SwitchboardPg, None) => with_nofile(
                Path::new("bash"),
                &[
                    root.join("bench/server.sh").to_string_lossy().into_owned(),
                    port.to_string(),
                ],
            ),
            (Server::Node, None) => {
                let mut c = with_nofile(
                    Path::new("node"),
                    &[root
                        .join("bench/peers/node/server.js")
                        .to_string_lossy()
                        .into_owned()],
                );
                c.env("PORT", port.to_string());
                c
            }
        };
        cmd.current_dir(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file.try_clone()?));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the {} server", server.name()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let mut log_file = log_file;
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log_file, "{line}");
                let _ = tx.send(line);
            }
        });
        let mut process = ServerProcess { child };
        let wanted = format!("listening on 127.0.0.1:{port}");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(&wanted) => return Ok(process),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "{} did not print {wanted:?} within {START_TIMEOUT:?}",
                        server.name()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status =
                        wait_until(&mut process.child, Instant::now() + Duration::from_secs(1));
                    bail!(
                        "{} exited before listening ({}): {}",
                        server.name(),
                        status.map_or("still running".to_string(), |s| s.to_string()),
                        tail(log, 3)
                    )
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the server ended, if it already has.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGTERM);
            if wait_until(&mut self.child, Instant::now() + STOP_GRACE).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// The last `n` non-empty lines of a log file, on one line.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    let s = lines[start..].join(" / ");
    if s.is_empty() {
        "(no output)".to_string()
    } else {
        s
    }
}

/// The PostgreSQL server of the ESN cases' PostgreSQL runs: its URL (from
/// `TEST_POSTGRES_URL`) and the `psql` that creates a database per run.
struct Postgres {
    url: String,
    psql: PathBuf,
}

impl Postgres {
    /// The server `TEST_POSTGRES_URL` names (`BENCH_POSTGRES_URL` first), or
    /// why there is none.
    fn from_env() -> std::result::Result<Postgres, String> {
        let url = std::env::var("BENCH_POSTGRES_URL")
            .or_else(|_| std::env::var("TEST_POSTGRES_URL"))
            .ok()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                "no PostgreSQL: TEST_POSTGRES_URL is not set (make bench runs the suite under \
                 tests/postgres/with-postgres.sh, which starts one when PostgreSQL is installed)"
                    .to_string()
            })?;
        let mut candidates = vec![PathBuf::from("psql")];
        if let Ok(dirs) = fs::read_dir("/usr/lib/postgresql") {
            let mut dirs: Vec<PathBuf> = dirs.flatten().map(|d| d.path()).collect();
            dirs.sort();
            candidates.extend(dirs.into_iter().rev().map(|d| d.join("bin/psql")));
        }
        let psql = candidates
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .ok_or("no PostgreSQL: psql not found (it creates a database per run)")?;
        Ok(Postgres { url, psql })
    }

    fn sql(&self, statement: &str) -> Result<()> {
        let out = Command::new(&self.psql)
            .args([self.url.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", statement])
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql {statement:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// `postgres://u@h:p/db` with another database name.
fn with_database(url: &str, db: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    if base.len() <= scheme_end {
        bail!("{url}: not a postgres:// URL");
    }
    Ok(match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    })
}

/// The fresh store of one ESN run: a data directory (SQLite's file, the
/// development files) and, on PostgreSQL, a database of its own. Both are
/// removed when dropped.
struct EsnStore<'a> {
    data_dir: PathBuf,
    postgres_url: Option<String>,
    database: Option<(String, &'a Postgres)>,
}

impl<'a> EsnStore<'a> {
    fn create(
        root: &Path,
        name: &str,
        server: Server,
        postgres: Option<&'a Postgres>,
    ) -> Result<EsnStore<'a>> {
        let data_dir = root.join("target/bench-data").join(name);
        let _ = fs::remove_dir_all(&data_dir);
        fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let mut store = EsnStore {
            data_dir,
            postgres_url: None,
            database: None,
        };
        if server == Server::SwitchboardPg {
            let pg = postgres.context("no PostgreSQL server")?;
            let db: String = format!("sb_bench_{}_{name}", std::process::id())
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            pg.sql(&format!("DROP DATABASE IF EXISTS {db}"))?;
            pg.sql(&format!("CREATE DATABASE {db}"))?;
            store.postgres_url = Some(with_database(&pg.url, &db)?);
            store.database = Some((db, pg));
        }
        Ok(store)
    }
}

impl Drop for EsnStore<'_> {
    fn drop(&mut self) {
        if let Some((db, pg)) = &self.database
            && let Err(e) = pg.sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        {
            eprintln!("loadgen suite: {e:#}");
        }
        let _ = fs::remove_dir_all(&self.data_dir);
    }
}

/// Runs one scenario as a child process; its last stdout line is the result.
fn run_scenario(
    exe: &Path,
    case: &Case,
    server: Server,
    port: u16,
    pid: u32,
    log: &Path,
    timeout: Duration,
) -> Result<Value> {
    let mut args = vec![
        case.scenario.to_string(),
        "--url".to_string(),
        format!("ws://127.0.0.1:{port}"),
    ];
    // Every scenario takes the server's pid: `conns` measures its memory, the
    // others sample its CPU.
    args.extend(["--pid".to_string(), pid.to_string()]);
    args.extend(case.args.iter().cloned());
    // The scenario's own limit, a little inside ours, so that a stuck run
    // still reports (with an error) before it is killed.
    if timeout > Duration::from_secs(20) {
        args.extend([
            "--timeout-secs".to_string(),
            (timeout.as_secs() - 10).to_string(),
        ]);
    }
    args.extend([
        "--label".to_string(),
        server.label().to_string(),
        "--json-only".to_string(),
    ]);
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut log_writer = log_file.try_clone()?;
    let _ = writeln!(log_writer, "$ loadgen {}", args.join(" "));
    let mut child = with_nofile(exe, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .context("starting the scenario")?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let Some(status) = wait_until(&mut child, Instant::now() + timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        bail!("scenario timed out after {}s (killed)", timeout.as_secs());
    };
    let out = reader.join().unwrap_or_default();
    let _ = writeln!(log_writer, "--- stdout ({status}) ---\n{out}");
    let last = out.lines().rev().find(|l| !l.trim().is_empty());
    let parsed = last
        .and_then(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("metrics").is_some());
    match parsed {
        Some(v) => Ok(v),
        None => bail!(
            "scenario exited {status} without a JSON result: {}",
            tail(log, 3)
        ),
    }
}

/// One run: a fresh server, the scenario against it, the server stopped.
#[allow(clippy::too_many_arguments)]
fn run_once(
    root: &Path,
    exe: &Path,
    logs: &Path,
    case: &Case,
    server: Server,
    rep: u32,
    timeout: Duration,
    postgres: Option<&Postgres>,
) -> Run {
    let t0 = Instant::now();
    let name = format!("{}-{}-{rep}", case.id, server.label());
    // An ESN case: a fresh store, removed after the run.
    let store = if case.esn {
        match EsnStore::create(root, &name, server, postgres) {
            Ok(s) => Some(s),
            Err(e) => {
                return Run {
                    case_id: case.id.clone(),
                    server,
                    rep,
                    status: Status::Failed(format!("creating the store: {e:#}")),
                    wall_secs: t0.elapsed().as_secs_f64(),
                    output: None,
                };
            }
        }
    } else {
        None
    };
    let (status, output) = match free_port().and_then(|port| {
        ServerProcess::start(
            root,
            server,
            port,
            &logs.join(format!("{name}.server.log")),
            store.as_ref(),
        )
        .map(|p| (port, p))
    }) {
        Err(e) => (Status::Failed(format!("{e:#}")), None),
        Ok((port, mut process)) => {
            let result = run_scenario(
                exe,
                case,
                server,
                port,
                process.pid(),
                &logs.join(format!("{name}.loadgen.log")),
                timeout,
            );
            // A server that is gone before we stop it did not serve the whole run.
            let gone = process
                .exited()
                .map(|st| format!("the server exited during the run ({st})"));
            drop(process);
            match (result, gone) {
                (Err(e), None) => (Status::Failed(format!("{e:#}")), None),
                (Err(e), Some(g)) => (Status::Failed(format!("{g}; {e:#}")), None),
                (Ok(v), Some(g)) => (Status::Failed(g), Some(v)),
                // The scenario could not complete: its figures are kept in
                // the raw results but not counted.
                (Ok(v), None) => (status_of(&v), Some(v)),
            }
        }
    };
    drop(store);
    Run {
        case_id: case.id.clone(),
        server,
        rep,
        status,
        wall_secs: t0.elapsed().as_secs_f64(),
        output,
    }
}

/// How a run that reported its JSON line went: failed when the scenario
/// could not complete (`error`) or its figures are not to be trusted
/// (`metrics.invalid`: lost messages, error acks…), whose figures are then
/// kept in the raw results but not counted.
fn status_of(v: &Value) -> Status {
    match (v.get("error"), v["metrics"]["invalid"].as_str()) {
        (Some(e), _) => Status::Failed(format!("scenario error: {}", e.as_str().unwrap_or("?"))),
        (None, Some(why)) => Status::Failed(format!("invalid run: {why}")),
        (None, None) => Status::Ok,
    }
}

fn output_paths(root: &Path, opts: &Options) -> (PathBuf, PathBuf) {
    let docs = root.join("docs/BENCHMARKS.md");
    let out = match &opts.out {
        Some(p) => p.clone(),
        None if opts.quick => root.join("target/bench-quick/BENCHMARKS.md"),
        None => docs.clone(),
    };
    // The hand-written part comes from the output itself, or else docs/BENCHMARKS.md.
    let template = if out.is_file() { out.clone() } else { docs };
    (out, template)
}

pub fn run(args: Vec<String>) -> Result<()> {
    let opts = parse(args)?;
    let root = find_root()?;
    if let Some(from) = &opts.from {
        return rerender(&opts, &root, from);
    }
    let exe = std::env::current_exe().context("locating the loadgen binary")?;
    let mut meta_note: Option<String> = None;
    let mut cases = matrix(opts.quick);
    if !opts.only.is_empty() {
        for name in &opts.only {
            if !cases.iter().any(|c| &c.id == name || c.scenario == name) {
                let known: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
                bail!(
                    "--only {name:?}: no such scenario or case (cases: {})",
                    known.join(", ")
                );
            }
        }
        cases.retain(|c| opts.only.iter().any(|n| &c.id == n || c.scenario == n));
    }

    // Prerequisites, checked before anything runs.
    let sw_bin = std::env::var_os("SWITCHBOARD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/switchboard"));
    if !sw_bin.is_file() {
        bail!(
            "{} is missing: cargo build --release -p switchboard",
            sw_bin.display()
        );
    }
    let peers = cases.iter().any(|c| !c.esn);
    if peers && command_line("node", &["--version"]).is_none() {
        bail!("node is not installed (the reference server needs Node.js)");
    }
    if peers
        && !root
            .join("bench/peers/node/node_modules/socket.io")
            .is_dir()
    {
        bail!("bench/peers/node/node_modules is missing: (cd bench/peers/node && npm ci)");
    }
    // The ESN cases' PostgreSQL runs: skipped, with the reason, without one.
    let postgres = if cases.iter().any(|c| c.esn) {
        match Postgres::from_env() {
            Ok(pg) => {
                eprintln!("loadgen suite: PostgreSQL runs on {}", pg.url);
                Some(pg)
            }
            Err(why) => {
                eprintln!("loadgen suite: {why}; the PostgreSQL runs are skipped");
                meta_note = Some(why);
                None
            }
        }
    } else {
        None
    };

    let (out, template) = output_paths(&root, &opts);
    let out_dir = out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let logs = root.join("target/bench-logs");
    let _ = fs::remove_dir_all(&logs);
    fs::create_dir_all(&logs)?;

    let started = Instant::now();
    let budget = Duration::from_secs_f64(opts.budget_mins * 60.0);
    let mut meta = Meta {
        date: utc_now(),
        commit: commit(&root),
        machine: machine(),
        reps: opts.reps,
        quick: opts.quick,
        elapsed_secs: 0.0,
        elapsed_known: true,
    };
    if let Some(why) = &meta_note {
        meta.machine.push(("PostgreSQL".to_string(), why.clone()));
    } else if let Some(pg) = &postgres {
        let version = command_line(
            &pg.psql.to_string_lossy(),
            &[&pg.url, "-tAc", "SHOW server_version"],
        )
        .unwrap_or_else(|| "unknown version".to_string());
        meta.machine.push((
            "PostgreSQL".to_string(),
            format!("{version}, a throwaway server on loopback (tests/postgres/with-postgres.sh), a fresh database per run"),
        ));
    }
    let total = cases.len() * opts.reps as usize * 2;
    let estimate: u64 = cases
        .iter()
        .map(|c| (c.estimate_secs + 2) * 2 * u64::from(opts.reps))
        .sum();
    eprintln!(
        "loadgen suite: {} case(s) x {} rep(s) x 2 servers (or stores) = {total} runs, about {} estimated (budget {}); logs in {}",
        cases.len(),
        opts.reps,
        report::fmt_duration(estimate as f64),
        report::fmt_duration(budget.as_secs_f64()),
        logs.display()
    );

    let mut runs = Vec::new();
    let mut n = 0;
    for case in &cases {
        for rep in 1..=opts.reps {
            for server in case.servers() {
                n += 1;
                let elapsed = started.elapsed();
                let prefix = format!(
                    "[{n:>3}/{total} {}] {:<16} {:<11} rep {rep}/{}",
                    report::fmt_duration(elapsed.as_secs_f64()),
                    case.id,
                    server.label(),
                    opts.reps
                );
                let left = budget.saturating_sub(elapsed);
                if server == Server::SwitchboardPg && postgres.is_none() {
                    eprintln!("{prefix}: skipped (no PostgreSQL)");
                    runs.push(Run {
                        case_id: case.id.clone(),
                        server,
                        rep,
                        status: Status::Skipped(
                            meta_note
                                .clone()
                                .unwrap_or_else(|| "no PostgreSQL".to_string()),
                        ),
                        wall_secs: 0.0,
                        output: None,
                    });
                    continue;
                }
                if left < Duration::from_secs(case.estimate_secs + 2) {
                    eprintln!("{prefix}: skipped (time budget spent)");
                    runs.push(Run {
                        case_id: case.id.clone(),
                        server,
                        rep,
                        status: Status::Skipped("time budget spent".to_string()),
                        wall_secs: 0.0,
                        output: None,
                    });
                    continue;
                }
                let timeout = Duration::from_secs(case.timeout_secs).min(left);
                let run = run_once(
                    &root,
                    &exe,
                    &logs,
                    case,
                    server,
                    rep,
                    timeout,
                    postgres.as_ref(),
                );
                let wall = run.wall_secs;
                match &run.status {
                    Status::Ok => {
                        let figures: Vec<String> = case
                            .figures
                            .iter()
                            .filter_map(|f| {
                                Some(format!(
                                    "{} {}",
                                    f.name,
                                    report::fmt_value(run.metric(f.key)?, f.unit)
                                ))
                            })
                            .chain(
                                run.metric("failures")
                                    .filter(|f| *f > 0.0)
                                    .map(|f| format!("failures {}", report::int(f))),
                            )
                            .chain(
                                run.metric("lost")
                                    .filter(|f| *f > 0.0)
                                    .map(|f| format!("LOST {}", report::int(f))),
                            )
                            .collect();
                        eprintln!("{prefix}: ok {wall:.1}s  {}", figures.join(", "));
                    }
                    Status::Failed(e) | Status::Skipped(e) => {
                        eprintln!("{prefix}: FAILED {wall:.1}s  {e}")
                    }
                }
                runs.push(run);
                thread::sleep(COOL_DOWN);
            }
        }
    }

    meta.elapsed_secs = started.elapsed().as_secs_f64();
    let results = out_dir.join("bench-results.jsonl");
    fs::write(&results, report::jsonl(&runs, &meta))
        .with_context(|| format!("writing {}", results.display()))?;
    write_report(&cases, &runs, &meta, &out, &template)?;
    println!(
        "Suite took {} ({} runs); raw runs in {}",
        report::fmt_duration(meta.elapsed_secs),
        runs.len(),
        results.display()
    );
    Ok(())
}

/// Prints the table, draws the chart beside `out` and regenerates the
/// section of `out` between the markers (the rest comes from `template`).
fn write_report(
    cases: &[Case],
    runs: &[Run],
    meta: &Meta,
    out: &Path,
    template: &Path,
) -> Result<()> {
    let summary = report::summarize(cases, runs);
    print!("{}", report::render_text(&summary, meta));
    let out_dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let chart_path = out_dir.join("bench-chart.svg");
    let groups = summary.chart_groups();
    let chart_name = if groups.is_empty() {
        None
    } else {
        let subtitle = format!(
            "medians of {} run(s) per server, {}; {}",
            meta.reps,
            meta.date,
            if meta.quick {
                "QUICK run, small sizes"
            } else {
                "green label: Switchboard better by more than 5 %, red: worse"
            }
        );
        let svg = chart::render(&groups, &subtitle)?;
        fs::write(&chart_path, svg).with_context(|| format!("writing {}", chart_path.display()))?;
        Some("bench-chart.svg")
    };
    let doc = fs::read_to_string(template).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let section = report::render_markdown(&summary, meta, chart_name);
    fs::write(out, report::splice(&doc, &section))
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "\nWrote {}{}",
        out.display(),
        if chart_name.is_some() {
            format!(", {}", chart_path.display())
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The runs of one suite invocation in a `--from` file.
struct SuiteOfRuns {
    date: String,
    commit: String,
    elapsed: Option<f64>,
    cases: Vec<String>,
}

/// "this report joins the runs of 2 suites: …", one per suite.
fn suites_note(suites: &[SuiteOfRuns]) -> String {
    let parts: Vec<String> = suites
        .iter()
        .map(|x| {
            format!(
                "{} at `{}` ({})",
                x.date,
                if x.commit.is_empty() { "?" } else { &x.commit },
                x.cases.join(", ")
            )
        })
        .collect();
    format!(
        "this report joins the runs of {} suites: {}",
        suites.len(),
        parts.join("; ")
    )
}

/// `--from FILE`: the report again from the raw runs of an earlier suite,
/// without running anything (e.g. after a change to the report's layout).
fn rerender(opts: &Options, root: &Path, from: &Path) -> Result<()> {
    let text = fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    let mut runs = Vec::new();
    let mut meta = Meta::default();
    let mut elapsed = None;
    // A file may join the runs of several suites (`cat a.jsonl b.jsonl`):
    // each is named in the report with its date, commit and cases.
    let mut suites: Vec<SuiteOfRuns> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", from.display(), i + 1))?;
        let run = Run::from_json(&v)
            .with_context(|| format!("{} line {}: not a run", from.display(), i + 1))?;
        if runs.is_empty() {
            meta.date = v["suite_started"].as_str().unwrap_or("unknown").to_string();
            meta.commit = v["commit"].as_str().unwrap_or_default().to_string();
            meta.quick = v["quick"].as_bool().unwrap_or(false);
            elapsed = v["suite_elapsed_secs"].as_f64();
        }
        meta.reps = meta.reps.max(run.rep);
        let (date, commit) = (
            v["suite_started"].as_str().unwrap_or("unknown").to_string(),
            v["commit"].as_str().unwrap_or_default().to_string(),
        );
        let at = match suites
            .iter()
            .position(|x| x.date == date && x.commit == commit)
        {
            Some(at) => at,
            None => {
                suites.push(SuiteOfRuns {
                    date,
                    commit,
                    elapsed: v["suite_elapsed_secs"].as_f64(),
                    cases: Vec::new(),
                });
                suites.len() - 1
            }
        };
        if !suites[at].cases.contains(&run.case_id) {
            suites[at].cases.push(run.case_id.clone());
        }
        runs.push(run);
    }
    if suites.len() > 1 {
        // Every suite's date heads the report; the time is the sum.
        elapsed = suites.iter().map(|x| x.elapsed).sum::<Option<f64>>();
        let mut dates: Vec<&str> = suites.iter().map(|x| x.date.as_str()).collect();
        dates.sort_unstable();
        dates.dedup();
        meta.date = dates.join(" and ");
        meta.commit = suites
            .iter()
            .map(|x| x.commit.as_str())
            .collect::<Vec<_>>()
            .join(", ");
    }
    let mut cases = matrix(meta.quick);
    cases.retain(|c| runs.iter().any(|r| r.case_id == c.id));
    if cases.is_empty() {
        bail!("{}: no runs of a known case", from.display());
    }
    meta.machine = machine();
    meta.machine.push((
        "Report".to_string(),
        format!(
            "re-rendered from `{}`; machine details read when re-rendering",
            from.file_name().unwrap_or_default().to_string_lossy()
        ),
    ));
    if suites.len() > 1 {
        meta.machine
            .push(("Suites".to_string(), suites_note(&suites)));
    }
    // Older files have no suite time: the runs' own time is a lower bound.
    meta.elapsed_known = elapsed.is_some();
    meta.elapsed_secs = elapsed.unwrap_or_else(|| runs.iter().map(|r| r.wall_secs).sum());
    let quick = Options {
        quick: meta.quick,
        out: opts.out.clone(),
        ..Options::default()
    };
    let (out, template) = output_paths(root, &quick);
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    write_report(&cases, &runs, &meta, &out, &template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fake(case: &Case, server: Server, rep: u32) -> Run {
        let f = if server == Server::Switchboard {
            1.0
        } else {
            0.0
        };
        let r = f64::from(rep);
        let metrics = match case.scenario {
            "conns" => {
                json!({"connections_ok": 19000, "failures": 0, "bytes_per_connection": 4000.0 + 8000.0 * (1.0 - f) + r})
            }
            "fanout" => {
                json!({"published": 1000, "deliveries": 10_000_000, "deliveries_per_sec": 100_000.0 * (1.0 + 24.0 * f) + r,
                "latency_us": {"p50": 500, "p90": 900, "p99": 2000.0 - 1200.0 * f, "max": 9000}, "lost": 0, "disconnects": 0, "failures": 0})
            }
            "echo" => {
                json!({"acks": 1, "acks_per_sec": 20_000.0 * (1.0 + 5.0 * f), "rtt_us": {"p50": 1, "p90": 2, "p99": 3, "max": 4}, "failures": 0})
            }
            "chat" => {
                json!({"stored_per_sec": 8000.0 + r, "delivered_per_sec": 28_000.0 + 1000.0 * f,
                "ack_us": {"p50": 2000, "p99": 40_000.0 + 20_000.0 * (1.0 - f)}, "lost": 0, "failures": 0,
                "cpu": {"server_cpu_pct": 120.0, "loadgen_cpu_pct": 40.0}})
            }
            "notify" => {
                json!({"stored_us": {"median": 400_000.0 + r}, "delivered_us": {"median": 600_000.0}, "lost": 0, "failures": 0,
                "cpu": {"server_cpu_pct": 90.0, "loadgen_cpu_pct": 30.0}})
            }
            _ => {
                json!({"connects": 4000, "connects_per_sec": 500, "handshake_us": {"p50": 300, "p99": 900.0 + 900.0 * (1.0 - f), "max": 5000}, "failures": 0})
            }
        };
        Run {
            case_id: case.id.clone(),
            server,
            rep,
            status: Status::Ok,
            wall_secs: 1.0,
            output: Some(
                json!({"scenario": case.scenario, "label": server.label(), "params": {}, "metrics": metrics}),
            ),
        }
    }

    #[test]
    fn parses_options() {
        let o = parse(args(&[
            "suite",
            "--reps",
            "5",
            "--only=fanout,echo-1k",
            "--out",
            "x.md",
        ]))
        .unwrap();
        assert_eq!(o.reps, 5);
        assert_eq!(o.only, vec!["fanout", "echo-1k"]);
        assert_eq!(o.out, Some(PathBuf::from("x.md")));
        let q = parse(args(&["--quick"])).unwrap();
        assert_eq!((q.reps, q.quick), (1, true));
        assert!(parse(args(&["--bogus"])).is_err());
    }

    #[test]
    fn reports_fabricated_runs() {
        let cases = matrix(false);
        let mut runs = Vec::new();
        for case in &cases {
            for rep in 1..=3 {
                for server in case.servers() {
                    runs.push(fake(case, server, rep));
                }
            }
        }
        // Node could not hold 19,000 connections in any run, nor 10,000 in one.
        for r in runs.iter_mut().filter(|r| r.server == Server::Node) {
            let m = &mut r.output.as_mut().unwrap()["metrics"];
            match (r.case_id.as_str(), r.rep) {
                ("conns-19k", _) => m["connections_ok"] = json!(12_345),
                ("conns-10k", 1) => m["connections_ok"] = json!(8_000),
                ("conns-10k", _) => m["connections_ok"] = json!(10_000),
                _ => {}
            }
        }
        runs.push(Run {
            case_id: "echo-1k".into(),
            server: Server::Node,
            rep: 4,
            status: Status::Failed("scenario timed out".into()),
            wall_secs: 1.0,
            output: None,
        });
        let s = report::summarize(&cases, &runs);
        let meta = Meta {
            date: utc_now(),
            reps: 3,
            ..Meta::default()
        };
        let text = report::render_text(&s, &meta);
        assert!(text.contains("held only 12,345 of 19,000"), "{text}");
        assert!(!text.contains("held only 8,000"), "{text}");
        assert!(
            text.contains("1 of 3 run(s) held fewer than 10,000, as few as 8,000"),
            "{text}"
        );
        assert!(text.contains("met (25.0×)"), "{text}");
        // The ESN cases: their own table, the stores as the columns, the
        // absolute aims checked on SQLite.
        assert!(text.contains("ESN scenarios"), "{text}");
        assert!(text.contains("MISSED (8,002/s)"), "{text}");
        assert!(text.contains("met (29,000/s)"), "{text}");
        assert!(text.contains("met (40.0 ms)"), "{text}");
        assert!(text.contains("Switchboard (PostgreSQL)"), "{text}");
        assert!(text.contains("Switchboard (SQLite)"), "{text}");
        assert_eq!(text.matches("MISSED").count(), 1, "{text}");
        let md = report::render_markdown(&s, &meta, Some("bench-chart.svg"));
        assert!(
            md.contains(
                "| Case | Figure (median) | SQLite | PostgreSQL | Target (SQLite) | Status |"
            ),
            "{md}"
        );
        assert!(
            md.contains("no Node peer") || md.contains("There is no Node peer"),
            "{md}"
        );
        let doc = report::splice(
            "# B\n\nhand\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\ntail\n",
            &md,
        );
        assert!(doc.starts_with("# B\n\nhand\n\n<!-- bench:begin -->"));
        assert!(doc.ends_with("<!-- bench:end -->\ntail\n"));
        assert!(!doc.contains("old"));
        assert_eq!(report::splice(&doc, &md), doc);
        let svg = chart::render(&s.chart_groups(), "t").unwrap();
        assert!(svg.contains("conns 19k idle"));
        // The raw runs read back give the same report (`--from`).
        let back: Vec<Run> = report::jsonl(&runs, &meta)
            .lines()
            .map(|l| Run::from_json(&serde_json::from_str(l).unwrap()).unwrap())
            .collect();
        assert_eq!(back.len(), runs.len());
        let again = report::render_text(&report::summarize(&cases, &back), &meta);
        assert_eq!(again, text);
    }

    #[test]
    fn invalid_runs_are_failures() {
        let ok = json!({"metrics": {"stored_per_sec": 1.0}});
        assert_eq!(status_of(&ok), Status::Ok);
        let lost = json!({"metrics": {"invalid": "3 delivery(ies) lost"}});
        assert_eq!(
            status_of(&lost),
            Status::Failed("invalid run: 3 delivery(ies) lost".into())
        );
        let err = json!({"metrics": {}, "error": "global timeout"});
        assert!(matches!(status_of(&err), Status::Failed(e) if e.contains("global timeout")));
    }

    #[test]
    fn joined_suites_are_named() {
        let suites = [
            SuiteOfRuns {
                date: "2026-12-01 23:47 UTC".into(),
                commit: "152f8ec".into(),
                elapsed: Some(804.0),
                cases: vec!["conns-10k".into(), "echo-1k".into()],
            },
            SuiteOfRuns {
                date: "2026-12-02 04:40 UTC".into(),
                commit: String::new(),
                elapsed: None,
                cases: vec!["chat-100".into()],
            },
        ];
        assert_eq!(
            suites_note(&suites),
            "this report joins the runs of 2 suites: 2026-12-01 23:47 UTC at `152f8ec` (conns-10k, echo-1k); \
             2026-12-02 04:40 UTC at `?` (chat-100)"
        );
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "b2").unwrap(),
            "postgres://u:p@h:1/b2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:1", "b3").unwrap(),
            "postgres://h:1/b3"
        );
        assert!(with_database("postgres://", "x").is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(report::median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(report::median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(report::median(&[]), None);
    }

    #[test]
    fn quick_matrix_fits() {
        let est: u64 = matrix(true).iter().map(|c| (c.estimate_secs + 2) * 2).sum();
        assert!(est < 210, "{est}");
        let est: u64 = matrix(false)
            .iter()
            .map(|c| (c.estimate_secs + 2) * 6)
            .sum();
        // 16.4 min before issue 19's two Engine.IO v3 cases (3.1 min more).
        assert!(est < 20 * 60, "{est}");
        // The chat and notify cases add at most 4 minutes to `make bench`.
        let esn: u64 = esn_matrix(false)
            .iter()
            .map(|c| (c.estimate_secs + 2) * 6)
            .sum();
        assert!(esn <= 4 * 60, "{esn}");
    }
}
