//! `churn`: keep a population of P connections and, every 1/rate seconds,
//! open a new one (full handshake including the Socket.IO CONNECT) and close
//! the oldest once the new one is up; measures the achieved connect rate and
//! the handshake time under that churn.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Common;
use crate::sio::{self, Ctx};
use crate::stats::{CpuSample, Failures, Recorder, instant_at, now_us, round1};
use crate::ws::WsConn;

#[derive(Args, Serialize, Clone, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Connections kept open.
    #[arg(long)]
    pub population: usize,
    /// New connections per second (each replaces the oldest).
    #[arg(long)]
    pub rate: f64,
    /// Measured churn time.
    #[arg(long)]
    pub duration_secs: f64,
}

/// The future a kept connection runs.
type KeepFut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a kept connection runs: it holds the connection until its stop
/// sender is dropped, then closes it with a WebSocket close handshake.
fn keeper(
    dropped: Arc<AtomicU64>,
    disconnects: Arc<Failures>,
) -> (
    oneshot::Sender<()>,
    impl FnOnce(WsConn) -> KeepFut + Send + 'static,
) {
    let (tx, mut rx) = oneshot::channel::<()>();
    let cont = move |mut conn: WsConn| -> KeepFut {
        Box::pin(async move {
            match sio::hold(&mut conn, &mut rx).await {
                Ok(()) => conn.close(Duration::from_secs(1)).await,
                Err(f) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    f.count_in(&disconnects);
                }
            }
        })
    };
    (tx, cont)
}

pub async fn run(ctx: Ctx, a: ChurnArgs) -> anyhow::Result<Value> {
    if !(a.rate > 0.0 && a.rate.is_finite()) {
        bail!("--rate must be positive");
    }
    let dropped = Arc::new(AtomicU64::new(0));
    let disconnects = Arc::new(Failures::default());
    let mut population: VecDeque<oneshot::Sender<()>> = VecDeque::with_capacity(a.population + 1);
    let (times, mut handles) = sio::ramp(&ctx, a.population, 2048, |_| {
        let (tx, cont) = keeper(dropped.clone(), disconnects.clone());
        population.push_back(tx);
        cont
    })
    .await;
    let initial_ok = times.len();
    let initial_failures = ctx.failures.total();

    // Churn phase.
    let sem = Arc::new(Semaphore::new(ctx.max_handshakes.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Option<u64>)>();
    // Stop senders of connections whose handshake is under way, by launch.
    let mut pending: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let handshake = Recorder::new();
    let start = now_us() + 20_000;
    let end = start + (a.duration_secs.max(0.0) * 1e6) as u64;
    let interval = 1e6 / a.rate;
    let mut launched = 0u64;
    let mut finished = 0u64;
    let mut connects = 0u64;
    let mut connects_in_window = 0u64;
    let mut closes = 0u64;
    let mut late_launches = 0u64;
    tokio::time::sleep_until(instant_at(start).into()).await;
    let cpu = CpuSample::take(a.common.pid);
    let mut cpu_result = None;
    loop {
        let due = start + (launched as f64 * interval) as u64;
        let launching = due < end;
        if !launching && cpu_result.is_none() && now_us() >= end {
            cpu_result = Some(cpu.since());
        }
        if !launching && finished == launched {
            break;
        }
        tokio::select! {
            biased;
            Some((k, r)) = rx.recv() => {
                finished += 1;
                let stop = pending.remove(&k);
                if let (Some(us), Some(stop)) = (r, stop) {
                    let done_at = now_us();
                    connects += 1;
                    if done_at <= end {
                        connects_in_window += 1;
                    }
                    handshake.record(us);
                    population.push_back(stop);
                    if population.len() > a.population && population.pop_front().is_some() {
                        closes += 1;
                    }
                }
            }
            permit = sem.clone().acquire_owned(), if launching => {
                let Ok(permit) = permit else { break };
                if now_us() > due + 100_000 {
                    late_launches += 1;
                }
                tokio::time::sleep_until(instant_at(due).into()).await;
                let k = launched;
                launched += 1;
                let (stop, cont) = keeper(dropped.clone(), disconnects.clone());
                pending.insert(k, stop);
                let tx = tx.clone();
                handles.push(crate::pool::spawn(sio::connect_then(
                    ctx.target.clone(),
                    2048,
                    ctx.handshake_timeout,
                    ctx.failures.clone(),
                    permit,
                    move |r| {
                        let _ = tx.send((k, r));
                    },
                    cont,
                )));
            }
            _ = tokio::time::sleep_until(instant_at(end).into()), if !launching && cpu_result.is_none() => {}
        }
    }
    let cpu = cpu_result.unwrap_or_else(|| cpu.since());
    let dur = a.duration_secs.max(1e-9);
    drop(population);
    reap(handles).await;

    Ok(json!({
        "population_requested": a.population,
        "population_ok": initial_ok,
        "initial_failures": initial_failures,
        "launched": launched,
        "connects": connects,
        "connects_in_window": connects_in_window,
        "connects_per_sec": round1(connects_in_window as f64 / dur),
        "target_connects_per_sec": a.rate,
        "closes": closes,
        "late_launches": late_launches,
        "handshake_us": handshake.summary(),
        "failures": ctx.failures.total() - initial_failures,
        "failure_kinds": ctx.failures.counts(),
        "failure_samples": ctx.failures.samples(),
        "disconnects": dropped.load(Ordering::Relaxed),
        "disconnect_kinds": disconnects.counts(),
        "cpu": cpu,
    }))
}

/// Waits for every connection task (closing ones take up to a second).
async fn reap(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
