//! `churn`: keep a population of P connections and, every 1/rate seconds,
//! open a new one (full handshake including the Socket.IO CONNECT) and close
//! the oldest once the new one is up; measures the achieved connect rate and
//! the handshake time under that churn. With `--beside-fanout N`, N more
//! connections are held open (the bench handler puts every socket in room
//! `all`) and one publisher broadcasts to all of them back to back while the
//! churn runs: the handshake time then shows whether a large fan-out holds
//! up connects and disconnects.

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
use crate::sio::{self, Ctx, Fail};
use crate::stats::{CpuSample, Failures, Recorder, instant_at, now_us, push_u64, round1};
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
    /// Subscribers held open beside the churn, all in room `all`, with one
    /// publisher broadcasting `pub` (100 B) to them back to back (the next
    /// once the previous is acked) during the churn; 0: none.
    #[arg(long, default_value_t = 0)]
    pub beside_fanout: usize,
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

    // The fan-out beside the churn: its subscribers, then its publisher.
    let mut fan_stops = Vec::with_capacity(a.beside_fanout);
    let mut fan_ok = 0;
    let mut publisher = None;
    let (pub_stop_tx, pub_stop_rx) = oneshot::channel::<()>();
    if a.beside_fanout > 0 {
        let (fan_times, fan_handles) = sio::ramp(&ctx, a.beside_fanout, 2048, |_| {
            let (tx, cont) = keeper(dropped.clone(), disconnects.clone());
            fan_stops.push(tx);
            cont
        })
        .await;
        fan_ok = fan_times.len();
        handles.extend(fan_handles);
        publisher = Some(crate::pool::spawn(broadcast_back_to_back(
            ctx.target.clone(),
            ctx.handshake_timeout,
            pub_stop_rx,
        )));
    }
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
    drop(pub_stop_tx);
    let broadcasts = match publisher {
        Some(task) => Some(
            task.await
                .unwrap_or_else(|_| Err(Fail::new("publisher", "the publisher task ended"))),
        ),
        None => None,
    };
    drop(population);
    drop(fan_stops);
    reap(handles).await;
    let (fanout_broadcasts, fanout_error) = match broadcasts {
        Some(Ok(n)) => (n, None),
        Some(Err(f)) => (0, Some(format!("{}: {}", f.kind, f.detail))),
        None => (0, None),
    };

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
        "beside_fanout_requested": a.beside_fanout,
        "beside_fanout_ok": fan_ok,
        "fanout_broadcasts_per_sec": round1(fanout_broadcasts as f64 / dur),
        "fanout_deliveries_per_sec": round1(fanout_broadcasts as f64 * (fan_ok + a.population) as f64 / dur),
        "fanout_error": fanout_error,
        "disconnects": dropped.load(Ordering::Relaxed),
        "disconnect_kinds": disconnects.counts(),
        "cpu": cpu,
    }))
}

/// Broadcasts to room `all` back to back: sends `pub` with an ack id, waits
/// for the ack (the bench handler acks once the broadcast is queued to
/// every socket), sends the next, until `stop`. Returns how many were acked.
async fn broadcast_back_to_back(
    target: Arc<crate::sio::Target>,
    timeout: Duration,
    mut stop: oneshot::Receiver<()>,
) -> Result<u64, Fail> {
    let mut conn = sio::open(&target, 8192, timeout).await?;
    let pad = vec![b'x'; 100];
    let mut acked = 0u64;
    let mut head = Vec::with_capacity(32);
    loop {
        head.clear();
        head.extend_from_slice(b"42");
        push_u64(&mut head, acked);
        head.extend_from_slice(b"[\"pub\",0,0,\"");
        conn.queue_text(&[&head, &pad, b"\"]"]);
        sio::flush(&mut conn).await?;
        let mut ack = Vec::with_capacity(24);
        ack.extend_from_slice(b"43");
        push_u64(&mut ack, acked);
        ack.push(b'[');
        'wait: loop {
            tokio::select! {
                biased;
                _ = &mut stop => {
                    conn.close(Duration::from_secs(1)).await;
                    return Ok(acked);
                }
                r = sio::fill(&mut conn) => {
                    r?;
                    let mut got = false;
                    while let Some(m) = sio::next_packet(&mut conn)? {
                        got |= conn.payload(m).starts_with(&ack);
                    }
                    if conn.has_pending() {
                        sio::flush(&mut conn).await?;
                    }
                    if got {
                        break 'wait;
                    }
                }
            }
        }
        acked += 1;
    }
}

/// Waits for every connection task (closing ones take up to a second).
async fn reap(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
