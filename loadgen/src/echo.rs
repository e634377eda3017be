//! `echo`: N clients, each with exactly one acknowledged event in flight —
//! `42<id>["echo",T_US,"<padding>"]` — sending the next as soon as the ack
//! `43<id>[...]` arrives; measures the ack rate and the round-trip time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use crate::Common;
use crate::sio::{self, Ctx, Fail};
use crate::stats::{
    CpuSample, Failures, LocalSamples, Recorder, instant_at, now_us, parse_u64, push_u64, round1,
};
use crate::ws::WsConn;

#[derive(Args, Serialize, Clone, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Client connections, each with one echo in flight.
    #[arg(long)]
    pub connections: usize,
    /// Measured time (after the warmup).
    #[arg(long)]
    pub duration_secs: f64,
    /// Bytes of padding in each echo.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Time before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
}

struct Shared {
    /// (measure start, measure end) in µs, published when all clients are up.
    window: watch::Receiver<Option<(u64, u64)>>,
    pad: Vec<u8>,
    rtt: Recorder,
    /// Measured acks of each client: fairness across connections.
    per_conn: Recorder,
    acks: AtomicU64,
    measured_acks: AtomicU64,
    unexpected: AtomicU64,
    unanswered: AtomicU64,
    dropped: AtomicU64,
    disconnects: Failures,
}

pub async fn run(ctx: Ctx, a: EchoArgs) -> anyhow::Result<Value> {
    if a.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let (win_tx, win_rx) = watch::channel(None);
    let sh = Arc::new(Shared {
        window: win_rx,
        pad: vec![b'x'; a.payload],
        rtt: Recorder::new(),
        per_conn: Recorder::new(),
        acks: AtomicU64::new(0),
        measured_acks: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
        unanswered: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        disconnects: Failures::default(),
    });
    let mut stops = Vec::with_capacity(a.connections);
    let (times, handles) = sio::ramp(&ctx, a.connections, 4096, |_| {
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        let sh = sh.clone();
        move |conn| client(conn, sh, rx)
    })
    .await;
    let n_ok = times.len() as u64;
    if n_ok == 0 {
        bail!("no client connected ({} failures)", ctx.failures.total());
    }
    let start = now_us() + 20_000;
    let m_start = start + (a.warmup_secs.max(0.0) * 1e6) as u64;
    let m_end = m_start + (a.duration_secs.max(0.0) * 1e6) as u64;
    let _ = win_tx.send(Some((m_start, m_end)));

    tokio::time::sleep_until(instant_at(m_start).into()).await;
    let cpu = CpuSample::take(a.common.pid);
    tokio::time::sleep_until(instant_at(m_end).into()).await;
    let cpu = cpu.since();
    // Let the last echoes come back, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stops);
    for h in handles {
        let _ = h.await;
    }
    let measured = sh.measured_acks.load(Ordering::Acquire);
    Ok(json!({
        "connections_requested": a.connections,
        "connections_ok": n_ok,
        "acks": sh.acks.load(Ordering::Acquire),
        "measured_acks": measured,
        "acks_per_sec": round1(measured as f64 / a.duration_secs.max(1e-9)),
        "rtt_us": sh.rtt.summary(),
        "acks_per_connection": sh.per_conn.summary(),
        "unanswered_at_end": sh.unanswered.load(Ordering::Acquire),
        "unexpected_packets": sh.unexpected.load(Ordering::Acquire),
        "disconnects": sh.dropped.load(Ordering::Acquire),
        "disconnect_kinds": sh.disconnects.counts(),
        "failures": ctx.failures.total(),
        "failure_kinds": ctx.failures.counts(),
        "failure_samples": ctx.failures.samples(),
        "cpu": cpu,
    }))
}

fn queue_echo(conn: &mut WsConn, buf: &mut Vec<u8>, id: u64, t: u64, pad: &[u8]) {
    buf.clear();
    buf.extend_from_slice(b"42");
    push_u64(buf, id);
    buf.extend_from_slice(b"[\"echo\",");
    push_u64(buf, t);
    buf.extend_from_slice(b",\"");
    conn.queue_text(&[buf, pad, b"\"]"]);
}

async fn client(mut conn: WsConn, sh: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut samples = LocalSamples::new();
    let mut acks = 0u64;
    let mut measured = 0u64;
    let mut unexpected = 0u64;
    let mut waiting = false;
    let result: Result<(), Fail> = async {
        // Wait for the start (answering pings meanwhile).
        let mut win = sh.window.clone();
        let (m_start, m_end) = loop {
            if let Some(w) = *win.borrow_and_update() {
                break w;
            }
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(()),
                r = win.changed() => if r.is_err() { return Ok(()) },
                r = sio::fill(&mut conn) => {
                    r?;
                    while sio::next_packet(&mut conn)?.is_some() {}
                    sio::flush(&mut conn).await?;
                }
            }
        };
        let mut buf = Vec::with_capacity(64);
        let mut id = 0u64;
        let mut sent = now_us();
        queue_echo(&mut conn, &mut buf, id, sent, &sh.pad);
        waiting = true;
        sio::flush(&mut conn).await?;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(()),
                r = sio::fill(&mut conn) => {
                    r?;
                    let now = now_us();
                    while let Some(m) = sio::next_packet(&mut conn)? {
                        let p = conn.payload(m);
                        let mut pos = 2;
                        let ok = p.starts_with(b"43")
                            && waiting
                            && parse_u64(p, &mut pos) == Some(id)
                            && p.get(pos) == Some(&b'[');
                        if !ok {
                            unexpected += 1;
                            continue;
                        }
                        waiting = false;
                        acks += 1;
                        if sent >= m_start && now <= m_end {
                            measured += 1;
                            if samples.push(now - sent) {
                                samples.flush(&sh.rtt);
                            }
                        }
                        if now < m_end {
                            id += 1;
                            sent = now_us();
                            queue_echo(&mut conn, &mut buf, id, sent, &sh.pad);
                            waiting = true;
                        }
                    }
                    if conn.has_pending() {
                        sio::flush(&mut conn).await?;
                    }
                }
            }
        }
    }
    .await;
    samples.flush(&sh.rtt);
    sh.acks.fetch_add(acks, Ordering::AcqRel);
    sh.measured_acks.fetch_add(measured, Ordering::AcqRel);
    sh.per_conn.record(measured);
    sh.unexpected.fetch_add(unexpected, Ordering::AcqRel);
    if waiting {
        sh.unanswered.fetch_add(1, Ordering::AcqRel);
    }
    if let Err(f) = result {
        sh.dropped.fetch_add(1, Ordering::AcqRel);
        f.count_in(&sh.disconnects);
    }
}
