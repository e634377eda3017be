//! `conns`: open N idle Socket.IO connections, hold them while answering
//! pings, and measure what they cost the server in resident memory
//! (VmRSS of `--pid` before the ramp and after the hold). With several URLs
//! the connections go to them in turn; `--pid` is then the first URL's server,
//! and the memory per connection counts the connections it got.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::Common;
use crate::sio::{self, Ctx};
use crate::stats::{CpuSample, Failures, Recorder, proc_status_kb, round1, round2};

#[derive(Args, Serialize, Clone, Debug)]
pub struct ConnsArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Connections to open.
    #[arg(long)]
    pub connections: usize,
    /// Seconds to hold them once all handshakes are done.
    #[arg(long, default_value_t = 5.0)]
    pub hold_secs: f64,
}

pub async fn run(ctx: Ctx, a: ConnsArgs) -> anyhow::Result<Value> {
    let pid = a
        .common
        .pid
        .context("conns needs --pid PID of the server (its memory is the measurement)")?;
    let rss_before =
        proc_status_kb(pid, "VmRSS").with_context(|| format!("cannot read VmRSS of PID {pid}"))?;
    let disconnects = Arc::new(Failures::default());
    let dropped = Arc::new(AtomicU64::new(0));
    let mut stops = Vec::with_capacity(a.connections);
    let n_urls = ctx.targets.len().max(1);
    let by_url: Arc<Vec<AtomicU64>> = Arc::new((0..n_urls).map(|_| AtomicU64::new(0)).collect());

    let t0 = Instant::now();
    let (times, handles) = sio::ramp(&ctx, a.connections, 2048, |i| {
        let (tx, mut rx) = oneshot::channel::<()>();
        stops.push(tx);
        let (disconnects, dropped) = (disconnects.clone(), dropped.clone());
        let by_url = by_url.clone();
        move |mut conn| async move {
            if let Some(c) = by_url.get(i % n_urls) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            if let Err(f) = sio::hold(&mut conn, &mut rx).await {
                dropped.fetch_add(1, Ordering::Relaxed);
                f.count_in(&disconnects);
            }
        }
    })
    .await;
    let ramp_secs = t0.elapsed().as_secs_f64();
    let ok = times.len() as u64;
    let handshake = Recorder::new();
    for t in &times {
        handshake.record(*t);
    }

    let cpu = CpuSample::take(Some(pid));
    tokio::time::sleep(Duration::from_secs_f64(a.hold_secs.max(0.0))).await;
    let cpu = cpu.since();
    let rss_after = proc_status_kb(pid, "VmRSS");
    let hwm_after = proc_status_kb(pid, "VmHWM");
    let dropped_during_hold = dropped.load(Ordering::Relaxed);

    drop(stops);
    for h in handles {
        let _ = h.await;
    }

    // The connections `--pid` holds: all of them, or the first URL's.
    let counts: Vec<u64> = by_url.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let held = if n_urls > 1 {
        counts.first().copied().unwrap_or(0)
    } else {
        ok
    };
    let per_conn = match (rss_after, held) {
        (Some(after), ok) if ok > 0 => {
            json!(round1(
                (after as f64 - rss_before as f64) * 1024.0 / ok as f64
            ))
        }
        _ => Value::Null,
    };
    let mut metrics = json!({
        "connections_requested": a.connections,
        "connections_ok": ok,
        "failures": ctx.failures.total(),
        "failure_kinds": ctx.failures.counts(),
        "failure_samples": ctx.failures.samples(),
        "disconnects": dropped_during_hold,
        "disconnect_kinds": disconnects.counts(),
        "ramp_secs": round2(ramp_secs),
        "handshake_us": handshake.summary(),
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "vmhwm_after_kb": hwm_after,
        "bytes_per_connection": per_conn,
        "cpu_during_hold": cpu,
    });
    if n_urls > 1
        && let Value::Object(m) = &mut metrics
    {
        m.insert("connections_ok_by_url".into(), json!(counts));
    }
    Ok(metrics)
}
