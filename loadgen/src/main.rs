//! `loadgen`: a load generator speaking raw Engine.IO v4 / Socket.IO v5 over
//! WebSocket (and, for a share of the connections, `--eio3-share`, Engine.IO
//! v3 as socket.io 2.x), used to measure Switchboard against the reference
//! Node server.
//!
//! Each scenario subcommand (`conns`, `fanout`, `echo`, `churn`, and the ESN
//! ones, `chat` and `notify`, which sign in with tokens) is one bounded
//! run against one server on the loopback interface. It prints exactly one
//! JSON line on stdout — `{"scenario":..,"label":..,"params":{..},"metrics":{..}}`
//! — and, unless `--json-only`, a short human table on stderr. `suite` is the
//! orchestrator that runs scenarios as subprocesses (see `suite.rs`).
//!
//! Exit codes: 0 run completed (failures are counted in the metrics), 1 the
//! run could not complete (an `"error"` field is in the JSON line), 2 bad
//! arguments (including a non-loopback target).

mod chat;
mod churn;
mod conns;
mod echo;
mod fanout;
mod http;
mod jwt;
mod notify;
mod pool;
mod sio;
mod stats;
mod suite;
mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;

use crate::sio::{Ctx, Target};
use crate::stats::Failures;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Engine.IO v4 / Socket.IO v5 load generator (loopback targets only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open N idle connections, hold them, measure the server's memory.
    Conns(conns::ConnsArgs),
    /// One publisher broadcasting to N subscribers through room `all`.
    Fanout(fanout::FanoutArgs),
    /// N clients each with one acknowledged `echo` in flight.
    Echo(echo::EchoArgs),
    /// Keep P connections while replacing the oldest at a fixed rate.
    Churn(churn::ChurnArgs),
    /// N users on /chat sending acknowledged messages (closed or open loop).
    Chat(chat::ChatArgs),
    /// One API notification to D connected users, round after round.
    Notify(notify::NotifyArgs),
    /// Run the benchmark suite (scenarios as subprocesses).
    Suite {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Options shared by every scenario.
#[derive(Args, Serialize, Clone, Debug)]
pub struct Common {
    /// Server URL, ws://HOST:PORT[/path/]; HOST must be 127.0.0.1, localhost or ::1.
    /// `fanout` and `conns` take several, comma-separated (a cluster's
    /// nodes): connections go to them in turn, `fanout`'s publisher to the first.
    #[arg(long)]
    pub url: String,
    /// Name of the server under test, copied into the JSON line.
    #[arg(long, default_value = "")]
    pub label: String,
    /// PID of the server under test, for memory and CPU readings from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Connections started per second while opening connections.
    #[arg(long, default_value_t = 2000.0)]
    pub ramp_per_sec: f64,
    /// Handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 256)]
    pub max_handshakes: usize,
    /// Limit for one handshake (TCP + upgrade + open + CONNECT ack).
    #[arg(long, default_value_t = 10.0)]
    pub handshake_timeout_secs: f64,
    /// Worker threads, each with its own single-threaded runtime; connections
    /// are spread over them round-robin.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// `per-core`: each worker thread runs its own single-threaded runtime
    /// (fair under saturation); `multi`: one work-stealing tokio runtime.
    #[arg(long, value_enum, default_value_t = RuntimeKind::PerCore)]
    pub runtime: RuntimeKind,
    /// Limit for the whole run; the default is derived from the scenario's sizes.
    #[arg(long)]
    pub timeout_secs: Option<f64>,
    /// The share of the connections (`conns`, `fanout`'s subscribers, …)
    /// that speak Engine.IO v3 / Socket.IO 4, as socket.io 2.x clients do
    /// (they ping the server; the server connects `/` by itself). The server
    /// must allow them (`[engine] allow_eio3`, the reference's `allowEIO3`).
    #[arg(long, default_value_t = 0.0)]
    pub eio3_share: f64,
    /// Print only the JSON line (no table on stderr).
    #[arg(long)]
    #[serde(skip)]
    pub json_only: bool,
}

/// How connection tasks are scheduled (see `pool.rs`).
#[derive(clap::ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    PerCore,
    Multi,
}

impl Common {
    /// Seconds a ramp of `n` connections should take at the configured rate.
    pub fn ramp_secs(&self, n: usize) -> f64 {
        n as f64 / self.ramp_per_sec.max(0.001)
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Suite { args } => match suite::run(args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("loadgen suite: {e:#}");
                1
            }
        },
        Cmd::Conns(a) => {
            let est = a.common.ramp_secs(a.connections) + a.hold_secs;
            let params = serde_json::to_value(&a);
            run_scenario("conns", true, &a.common, params, est, |ctx| {
                conns::run(ctx, a.clone())
            })
        }
        Cmd::Fanout(a) => {
            let est = a.common.ramp_secs(a.subscribers)
                + a.warmup_secs
                + a.duration_secs
                + a.drain_max_secs;
            let params = serde_json::to_value(&a);
            run_scenario("fanout", true, &a.common, params, est, |ctx| {
                fanout::run(ctx, a.clone())
            })
        }
        Cmd::Echo(a) => {
            let est = a.common.ramp_secs(a.connections) + a.warmup_secs + a.duration_secs;
            let params = serde_json::to_value(&a);
            run_scenario("echo", false, &a.common, params, est, |ctx| {
                echo::run(ctx, a.clone())
            })
        }
        Cmd::Churn(a) => {
            let est = a.common.ramp_secs(a.population + a.beside_fanout) + a.duration_secs;
            let params = serde_json::to_value(&a);
            run_scenario("churn", false, &a.common, params, est, |ctx| {
                churn::run(ctx, a.clone())
            })
        }
        Cmd::Chat(a) => {
            let est = chat::estimate_secs(&a);
            let mut params = serde_json::to_value(&a);
            redact(&mut params, "jwt_secret");
            run_scenario("chat", false, &a.common, params, est, |ctx| {
                chat::run(ctx, a.clone())
            })
        }
        Cmd::Notify(a) => {
            let est = notify::estimate_secs(&a);
            let mut params = serde_json::to_value(&a);
            redact(&mut params, "jwt_secret");
            redact(&mut params, "api_key");
            run_scenario("notify", false, &a.common, params, est, |ctx| {
                notify::run(ctx, a.clone())
            })
        }
    };
    std::process::exit(code);
}

/// Keeps a secret out of the JSON line (the raw results are committed).
fn redact(params: &mut Result<Value, serde_json::Error>, key: &str) {
    if let Ok(Value::Object(m)) = params
        && m.contains_key(key)
    {
        m.insert(key.to_string(), "(set)".into());
    }
}

/// Raises the soft open-file limit to the hard one (one fd per connection).
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// Validates the target, runs `scenario` on a fresh runtime under the global
/// timeout, prints the JSON line (and table) and returns the exit code.
fn run_scenario<F, Fut>(
    name: &str,
    several_urls: bool,
    common: &Common,
    params: Result<Value, serde_json::Error>,
    estimated_secs: f64,
    scenario: F,
) -> i32
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    let targets = match parse_targets(&common.url, several_urls) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    let params = params.unwrap_or(Value::Null);
    stats::init_clock();
    let nofile = raise_nofile_limit();
    let ctx = Ctx {
        target: targets[0].clone(),
        targets,
        ramp_per_sec: common.ramp_per_sec,
        max_handshakes: common.max_handshakes,
        handshake_timeout: Duration::from_secs_f64(common.handshake_timeout_secs.max(0.1)),
        failures: Arc::new(Failures::default()),
        eio3_share: common.eio3_share,
    };
    let failures = ctx.failures.clone();
    let limit = common
        .timeout_secs
        .unwrap_or(estimated_secs * 1.5 + common.handshake_timeout_secs + 60.0);
    let built = if common.runtime == RuntimeKind::Multi {
        // One work-stealing runtime for everything (for comparison).
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.workers.max(1))
            .enable_all()
            .build()
    } else {
        if let Err(e) = pool::start(common.workers) {
            eprintln!("loadgen: cannot start the worker threads: {e}");
            return 1;
        }
        // The coordinator: sleeps, counts and signals on the main thread.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs_f64(limit), scenario(ctx)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("global timeout of {limit:.1} s reached")),
        }
    });
    let (metrics, error) = match result {
        Ok(mut m) => {
            if let Value::Object(map) = &mut m {
                map.insert("open_files_limit".into(), nofile.into());
            }
            (m, None)
        }
        Err(e) => (
            serde_json::json!({
                "failures": failures.total(),
                "failure_kinds": failures.counts(),
                "failure_samples": failures.samples(),
            }),
            Some(format!("{e:#}")),
        ),
    };
    let mut line = format!(
        "{{\"scenario\":{},\"label\":{},\"params\":{},\"metrics\":{}",
        Value::from(name),
        Value::from(common.label.as_str()),
        params,
        metrics
    );
    if let Some(e) = &error {
        line.push_str(&format!(",\"error\":{}", Value::from(e.as_str())));
    }
    line.push('}');
    if !common.json_only {
        eprintln!("{name} [{}] {}", common.label, common.url);
        print_table("", &metrics);
        if let Some(e) = &error {
            eprintln!("  ERROR: {e}");
        }
    }
    println!("{line}");
    // Connection tasks may still be parked; the process exit closes them.
    rt.shutdown_timeout(Duration::from_millis(200));
    if error.is_some() { 1 } else { 0 }
}

/// The targets of `--url`: one URL, or with `several` a comma-separated
/// list of them (never empty).
fn parse_targets(url: &str, several: bool) -> Result<Vec<Arc<Target>>, String> {
    let urls: Vec<&str> = url.split(',').map(str::trim).collect();
    if urls.len() > 1 && !several {
        return Err(format!(
            "{url}: this scenario takes one URL (only fanout and conns take several)"
        ));
    }
    urls.into_iter()
        .map(|u| Target::parse(u).map(Arc::new))
        .collect()
}

/// Prints `metrics` as an indented `key value` table on stderr.
fn print_table(prefix: &str, v: &Value) {
    if let Value::Object(map) = v {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(inner)
                    if inner.len() <= 8 && inner.values().all(|x| !x.is_object()) =>
                {
                    let cells: Vec<String> =
                        inner.iter().map(|(a, b)| format!("{a}={b}")).collect();
                    eprintln!("  {key:<28} {}", cells.join(" "));
                }
                Value::Object(_) => print_table(&key, v),
                other => eprintln!("  {key:<28} {other}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_and_conns_take_several_urls_in_order() {
        let t = parse_targets(
            "ws://127.0.0.1:3101, ws://127.0.0.1:3102,ws://[::1]:3103",
            true,
        )
        .unwrap();
        let ports: Vec<u16> = t.iter().map(|t| t.addr.port()).collect();
        assert_eq!(ports, [3101, 3102, 3103]);
        let ctx = Ctx {
            target: t[0].clone(),
            targets: t,
            ramp_per_sec: 1.0,
            max_handshakes: 1,
            handshake_timeout: Duration::from_secs(1),
            failures: Arc::new(Failures::default()),
            eio3_share: 0.5,
        };
        // Connections go to the servers in turn.
        let ports: Vec<u16> = (0..5).map(|i| ctx.target_for(i).addr.port()).collect();
        assert_eq!(ports, [3101, 3102, 3103, 3101, 3102]);
        // Half of them speak Engine.IO v3: every other one.
        let v3: Vec<bool> = (0..6).map(|i| ctx.eio3_for(i)).collect();
        assert_eq!(v3, [false, true, false, true, false, true]);
    }

    #[test]
    fn other_scenarios_refuse_several_urls() {
        let err = parse_targets("ws://127.0.0.1:3101,ws://127.0.0.1:3102", false).unwrap_err();
        assert!(err.contains("only fanout and conns"), "{err}");
        assert_eq!(
            parse_targets("ws://127.0.0.1:3101", false).unwrap().len(),
            1
        );
        // Every URL of the list is checked (loopback only).
        assert!(parse_targets("ws://127.0.0.1:3101,ws://10.0.0.1:3102", true).is_err());
        assert!(parse_targets("", true).is_err());
    }
}
