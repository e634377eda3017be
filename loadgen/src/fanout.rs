//! `fanout`: one publisher emits `pub` events that the server broadcasts as
//! `msg` to N subscribers (all in room `all`), measuring delivery throughput,
//! end-to-end latency and losses.
//!
//! The publisher sends `42["pub",SEQ,T_US,"<padding>"]`. Every subscriber
//! parses SEQ and T_US right after the `42["msg",` prefix, counts the
//! delivery and, if it arrives within the measured period (after the warmup,
//! before the end of publishing), records `now - T_US`; it also bumps the per-SEQ counter in a ring of atomics; whoever
//! brings a counter to N completes that message and wakes the publisher. In
//! window mode the publisher keeps at most W incomplete messages in flight (a
//! message incomplete for `--stall-secs` is given up so a loss cannot stall
//! the run forever); in rate mode it publishes on a fixed schedule. The
//! publisher's own copies of `msg` are read and ignored.
//!
//! With several URLs (a cluster's nodes) subscribers go to them in turn and
//! the publisher to the first; the metrics then also say how many
//! subscribers each URL got and split the latency between the subscribers
//! of the publisher's server and those of the others (cross-node).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

use crate::Common;
use crate::sio::{self, Ctx, Fail, Target};
use crate::stats::{
    CpuSample, Failures, LocalSamples, Recorder, instant_at, now_us, parse_u64, proc_cpu_secs,
    push_u64, round1, round2,
};
use crate::ws::WsConn;

/// Slots in the completion ring (a power of two).
const RING: usize = 1 << 16;
const RING_MASK: u64 = RING as u64 - 1;
/// Added to a slot to mark its message as given up.
const ABANDONED: u32 = 1 << 30;
/// Prefix of a broadcast as the subscribers see it.
const MSG_PREFIX: &[u8] = b"42[\"msg\",";

#[derive(Args, Serialize, Clone, Debug)]
#[command(group(ArgGroup::new("mode").required(true).args(["window", "rate"])))]
pub struct FanoutArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Subscriber connections.
    #[arg(long)]
    pub subscribers: usize,
    /// Bytes of padding in each message.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Window mode: at most W messages not yet received by every subscriber.
    #[arg(long)]
    pub window: Option<usize>,
    /// Rate mode: messages published per second, regardless of delivery.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured publishing time (after the warmup).
    #[arg(long)]
    pub duration_secs: f64,
    /// Publishing time before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// After the last publish, wait for stragglers until this long passes
    /// without any delivery (what is still missing then counts as lost).
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
    /// Hard limit for that wait, even while deliveries still trickle in.
    #[arg(long, default_value_t = 60.0)]
    pub drain_max_secs: f64,
    /// Window mode: stop waiting for a message incomplete for this long (it
    /// leaves the window; its copies are still counted if they arrive).
    #[arg(long, default_value_t = 10.0)]
    pub stall_secs: f64,
    /// Publish exactly this many messages, then stop (or at the end of the
    /// duration, whichever comes first): a fixed workload, for counting
    /// the server's instructions per delivery under callgrind, where a
    /// timed run would deliver however many the slowed server manages.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Other processes (a cluster's other nodes, its Redis) whose CPU over
    /// the measured window is reported too, in `cpu_of_pids`, in percent
    /// of one core.
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpu_pids: Vec<u32>,
}

/// State shared by the publisher, the subscribers and the coordinator.
struct Shared {
    ring: Box<[AtomicU32]>,
    /// Subscribers that completed the handshake (= copies per message).
    expected: AtomicU32,
    completed: AtomicU64,
    notify: Notify,
    measure_start: AtomicU64,
    measure_end: AtomicU64,
    deliveries: AtomicU64,
    /// Deliveries so far, bumped once per read (for the drain).
    live_deliveries: AtomicU64,
    measured_deliveries: AtomicU64,
    unparsed: AtomicU64,
    latency: Recorder,
    /// With several URLs: the latency of the first URL's subscribers (the
    /// publisher's server) and of the others' (cross-node), and how many
    /// subscribers each URL got.
    by_url: Option<ByUrl>,
    disconnects: Failures,
    dropped: AtomicU64,
}

/// The per-URL breakdown of a run against several servers.
struct ByUrl {
    same: Recorder,
    other: Recorder,
    subscribers: Vec<AtomicU64>,
}

/// What the publisher reports when it stops publishing.
struct PubDone {
    published: u64,
    abandoned: u64,
    window_full_waits: u64,
}

pub async fn run(ctx: Ctx, a: FanoutArgs) -> anyhow::Result<Value> {
    if a.subscribers == 0 {
        bail!("--subscribers must be at least 1");
    }
    if let Some(w) = a.window
        && (w == 0 || w > RING / 4)
    {
        bail!("--window must be between 1 and {}", RING / 4);
    }
    if let Some(r) = a.rate
        && !(r > 0.0 && r.is_finite())
    {
        bail!("--rate must be positive");
    }
    let sh = Arc::new(Shared {
        ring: (0..RING).map(|_| AtomicU32::new(0)).collect(),
        expected: AtomicU32::new(u32::MAX),
        completed: AtomicU64::new(0),
        notify: Notify::new(),
        measure_start: AtomicU64::new(u64::MAX),
        measure_end: AtomicU64::new(u64::MAX),
        deliveries: AtomicU64::new(0),
        live_deliveries: AtomicU64::new(0),
        measured_deliveries: AtomicU64::new(0),
        unparsed: AtomicU64::new(0),
        latency: Recorder::new(),
        by_url: (ctx.targets.len() > 1).then(|| ByUrl {
            same: Recorder::new(),
            other: Recorder::new(),
            subscribers: ctx.targets.iter().map(|_| AtomicU64::new(0)).collect(),
        }),
        disconnects: Failures::default(),
        dropped: AtomicU64::new(0),
    });

    // Subscribers.
    let mut stops = Vec::with_capacity(a.subscribers + 1);
    let n_urls = ctx.targets.len().max(1);
    let (times, mut handles) = sio::ramp(&ctx, a.subscribers, 4096, |i| {
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        let sh = sh.clone();
        move |conn| subscriber(conn, sh, i % n_urls, rx)
    })
    .await;
    let n_ok = times.len() as u64;
    if n_ok == 0 {
        bail!(
            "no subscriber connected ({} failures)",
            ctx.failures.total()
        );
    }
    sh.expected.store(n_ok as u32, Ordering::Release);

    // Publisher: opened on a worker, then given its schedule.
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), Fail>>();
    let (cfg_tx, cfg_rx) = oneshot::channel::<PubCfg>();
    let (done_tx, done_rx) = oneshot::channel::<Result<PubDone, Fail>>();
    let (pub_stop_tx, pub_stop_rx) = oneshot::channel::<()>();
    handles.push(crate::pool::spawn(publisher(
        ctx.target.clone(),
        ctx.handshake_timeout,
        sh.clone(),
        PubChannels {
            ready: ready_tx,
            cfg: cfg_rx,
            done: done_tx,
            stop: pub_stop_rx,
        },
    )));
    ready_rx
        .await
        .context("publisher task ended")?
        .map_err(|f| anyhow::anyhow!("publisher: {}: {}", f.kind, f.detail))?;
    let pub_start = now_us() + 20_000;
    let warm_us = (a.warmup_secs.max(0.0) * 1e6) as u64;
    let dur_us = (a.duration_secs.max(0.0) * 1e6) as u64;
    let m_start = pub_start + warm_us;
    let m_end = m_start + dur_us;
    sh.measure_start.store(m_start, Ordering::Release);
    sh.measure_end.store(m_end, Ordering::Release);
    let _ = cfg_tx.send(PubCfg {
        payload: a.payload,
        window: a.window,
        rate: a.rate,
        start_us: pub_start,
        end_us: m_end,
        stall_us: (a.stall_secs.max(0.001) * 1e6) as u64,
        messages: a.messages.unwrap_or(u64::MAX),
    });

    tokio::time::sleep_until(instant_at(m_start).into()).await;
    let cpu = CpuSample::take(ctx_pid(&a));
    let others = OtherCpu::take(&a.cpu_pids);
    // With --messages the publisher may be done before the duration ends:
    // then the run goes on to the drain at once.
    let (cpu, done) = if a.messages.is_some() {
        let done = done_rx.await;
        (cpu.since(), done)
    } else {
        tokio::time::sleep_until(instant_at(m_end).into()).await;
        (cpu.since(), done_rx.await)
    };
    let others = others.since();
    let done = done
        .context("publisher task ended without a report")?
        .map_err(|f| anyhow::anyhow!("publisher failed: {}: {}", f.kind, f.detail))?;

    // Drain: wait until every copy of every message has arrived, or until
    // `--drain-secs` pass without a single new delivery (or the hard cap).
    let drain_t0 = now_us();
    let idle_limit = (a.drain_secs.max(0.0) * 1e6) as u64;
    let hard_limit = drain_t0 + (a.drain_max_secs.max(a.drain_secs).max(0.0) * 1e6) as u64;
    let mut last_seen = sh.live_deliveries.load(Ordering::Relaxed);
    let mut last_progress = drain_t0;
    loop {
        let seen = sh.live_deliveries.load(Ordering::Relaxed);
        let now = now_us();
        if seen >= done.published * n_ok || now >= hard_limit {
            break;
        }
        if seen != last_seen {
            last_seen = seen;
            last_progress = now;
        } else if now - last_progress >= idle_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_secs = (now_us() - drain_t0) as f64 / 1e6;

    drop(stops);
    drop(pub_stop_tx);
    for h in handles {
        let _ = h.await;
    }

    let deliveries = sh.deliveries.load(Ordering::Acquire);
    let measured = sh.measured_deliveries.load(Ordering::Acquire);
    let expected_total = done.published * n_ok;
    let mut metrics = json!({
        "mode": if a.window.is_some() { "window" } else { "rate" },
        "subscribers_requested": a.subscribers,
        "subscribers_ok": n_ok,
        "published": done.published,
        "deliveries": deliveries,
        "deliveries_per_sec": round1(measured as f64 / a.duration_secs.max(1e-9)),
        "messages_per_sec": round1(measured as f64 / n_ok as f64 / a.duration_secs.max(1e-9)),
        "latency_us": sh.latency.summary(),
        "lost": expected_total as i64 - deliveries as i64,
        "complete_messages": sh.completed.load(Ordering::Acquire),
        "abandoned_messages": done.abandoned,
        "window_full_waits": done.window_full_waits,
        "unparsed_events": sh.unparsed.load(Ordering::Acquire),
        "drain_secs": round2(drain_secs),
        "disconnects": sh.dropped.load(Ordering::Acquire),
        "disconnect_kinds": sh.disconnects.counts(),
        "failures": ctx.failures.total(),
        "failure_kinds": ctx.failures.counts(),
        "failure_samples": ctx.failures.samples(),
        "cpu": cpu,
    });
    if let (Some(o), Value::Object(m)) = (others, &mut metrics) {
        m.insert("cpu_of_pids".into(), o);
    }
    if let (Some(b), Value::Object(m)) = (&sh.by_url, &mut metrics) {
        let counts: Vec<u64> = b
            .subscribers
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .collect();
        m.insert("subscribers_ok_by_url".into(), json!(counts));
        m.insert("latency_us_publisher_url".into(), b.same.summary());
        m.insert("latency_us_other_urls".into(), b.other.summary());
    }
    Ok(metrics)
}

/// CPU seconds of the `--cpu-pids` processes at the start of the window.
struct OtherCpu {
    at: std::time::Instant,
    secs: Vec<(u32, Option<f64>)>,
}

impl OtherCpu {
    fn take(pids: &[u32]) -> Self {
        OtherCpu {
            at: std::time::Instant::now(),
            secs: pids.iter().map(|&p| (p, proc_cpu_secs(p))).collect(),
        }
    }

    /// `{"PID": percent of one core}` since `take` (null for a process
    /// that could not be read); `None` without `--cpu-pids`.
    fn since(&self) -> Option<Value> {
        if self.secs.is_empty() {
            return None;
        }
        let wall = self.at.elapsed().as_secs_f64().max(1e-6);
        let m: serde_json::Map<String, Value> = self
            .secs
            .iter()
            .map(|&(pid, before)| {
                let pct = match (before, proc_cpu_secs(pid)) {
                    (Some(b), Some(a)) => json!(round1((a - b).max(0.0) / wall * 100.0)),
                    _ => Value::Null,
                };
                (pid.to_string(), pct)
            })
            .collect();
        Some(Value::Object(m))
    }
}

fn ctx_pid(a: &FanoutArgs) -> Option<u32> {
    a.common.pid
}

/// Parses SEQ and T_US out of `42["msg",SEQ,T_US,...`.
#[inline]
fn parse_msg(p: &[u8]) -> Option<(u64, u64)> {
    if !p.starts_with(MSG_PREFIX) {
        return None;
    }
    let mut pos = MSG_PREFIX.len();
    let seq = parse_u64(p, &mut pos)?;
    if p.get(pos) != Some(&b',') {
        return None;
    }
    pos += 1;
    let t = parse_u64(p, &mut pos)?;
    Some((seq, t))
}

/// Subscriber of URL number `url` (0: the publisher's server).
async fn subscriber(
    mut conn: WsConn,
    sh: Arc<Shared>,
    url: usize,
    mut stop: oneshot::Receiver<()>,
) {
    let also = sh.by_url.as_ref().map(|b| {
        if let Some(c) = b.subscribers.get(url) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if url == 0 { &b.same } else { &b.other }
    });
    let mut samples = LocalSamples::new();
    let mut deliveries = 0u64;
    let mut measured = 0u64;
    let mut unparsed = 0u64;
    let result: Result<(), Fail> = async {
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(()),
                r = sio::fill(&mut conn) => {
                    r?;
                    let now = now_us();
                    let m_start = sh.measure_start.load(Ordering::Relaxed);
                    let m_end = sh.measure_end.load(Ordering::Relaxed);
                    let expected = sh.expected.load(Ordering::Relaxed);
                    let before = deliveries;
                    while let Some(m) = sio::next_packet(&mut conn)? {
                        let Some((seq, t)) = parse_msg(conn.payload(m)) else {
                            unparsed += 1;
                            continue;
                        };
                        deliveries += 1;
                        if now >= m_start && now < m_end {
                            measured += 1;
                            if samples.push(now.saturating_sub(t)) {
                                samples.flush_to(&sh.latency, also);
                            }
                        }
                        let slot = &sh.ring[(seq & RING_MASK) as usize];
                        if slot.fetch_add(1, Ordering::AcqRel).wrapping_add(1) == expected {
                            sh.completed.fetch_add(1, Ordering::AcqRel);
                            sh.notify.notify_one();
                        }
                    }
                    if deliveries > before {
                        sh.live_deliveries.fetch_add(deliveries - before, Ordering::Relaxed);
                    }
                    if conn.has_pending() {
                        sio::flush(&mut conn).await?;
                    }
                }
            }
        }
    }
    .await;
    samples.flush_to(&sh.latency, also);
    sh.deliveries.fetch_add(deliveries, Ordering::AcqRel);
    sh.measured_deliveries.fetch_add(measured, Ordering::AcqRel);
    sh.unparsed.fetch_add(unparsed, Ordering::AcqRel);
    if let Err(f) = result {
        sh.dropped.fetch_add(1, Ordering::AcqRel);
        f.count_in(&sh.disconnects);
    }
}

struct PubCfg {
    payload: usize,
    window: Option<usize>,
    rate: Option<f64>,
    start_us: u64,
    end_us: u64,
    stall_us: u64,
    /// Stop once this many are published (`--messages`).
    messages: u64,
}

/// The publisher's links to the coordinator.
struct PubChannels {
    /// Handshake done (or failed).
    ready: oneshot::Sender<Result<(), Fail>>,
    /// The schedule, sent once the handshake is done.
    cfg: oneshot::Receiver<PubCfg>,
    /// Publishing finished: what was published.
    done: oneshot::Sender<Result<PubDone, Fail>>,
    /// Stop reading and close.
    stop: oneshot::Receiver<()>,
}

async fn publisher(target: Arc<Target>, timeout: Duration, sh: Arc<Shared>, ch: PubChannels) {
    let PubChannels {
        ready,
        cfg,
        done,
        mut stop,
    } = ch;
    let mut conn = match sio::open(&target, 8192, timeout).await {
        Ok(c) => c,
        Err(f) => {
            let _ = ready.send(Err(f));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let Ok(cfg) = cfg.await else { return };
    let r = publish(&mut conn, &sh, &cfg).await;
    let failed = r.is_err();
    let _ = done.send(r);
    if failed {
        return;
    }
    // Keep reading our own copies and answering pings until told to stop.
    let _ = sio::hold(&mut conn, &mut stop).await;
}

async fn publish(conn: &mut WsConn, sh: &Shared, cfg: &PubCfg) -> Result<PubDone, Fail> {
    let pad = vec![b'x'; cfg.payload];
    let mut head = Vec::with_capacity(64);
    let expected = sh.expected.load(Ordering::Acquire);
    let mut sent_at = vec![0u64; RING];
    let mut next_seq = 0u64;
    let mut oldest = 0u64;
    let mut abandoned = 0u64;
    let mut window_full_waits = 0u64;
    let interval_us = cfg.rate.map(|r| 1e6 / r);
    tokio::time::sleep_until(instant_at(cfg.start_us).into()).await;
    loop {
        let now = now_us();
        if now >= cfg.end_us || next_seq >= cfg.messages {
            break;
        }
        // Which messages may go now.
        let mut budget = match (cfg.window, interval_us) {
            (Some(w), _) => {
                // Retire complete messages; give up on stalled ones.
                while oldest < next_seq {
                    let slot = &sh.ring[(oldest & RING_MASK) as usize];
                    if slot.load(Ordering::Acquire) >= expected {
                        oldest += 1;
                    } else if now.saturating_sub(sent_at[(oldest & RING_MASK) as usize])
                        > cfg.stall_us
                    {
                        if slot.fetch_add(ABANDONED, Ordering::AcqRel) < expected {
                            abandoned += 1;
                        }
                        oldest += 1;
                    } else {
                        break;
                    }
                }
                let in_flight = next_seq - sh.completed.load(Ordering::Acquire) - abandoned;
                let by_ring = (RING as u64 / 2).saturating_sub(next_seq - oldest);
                (w as u64).saturating_sub(in_flight).min(by_ring)
            }
            (None, Some(iv)) => {
                let due = ((now - cfg.start_us) as f64 / iv).floor() as u64 + 1;
                due.saturating_sub(next_seq).min(1024)
            }
            (None, None) => 0,
        }
        .min(cfg.messages - next_seq);
        if budget == 0 && cfg.window.is_some() {
            window_full_waits += 1;
        }
        while budget > 0 {
            let seq = next_seq;
            let slot = (seq & RING_MASK) as usize;
            sh.ring[slot].store(0, Ordering::Release);
            let t = now_us();
            sent_at[slot] = t;
            head.clear();
            head.extend_from_slice(b"42[\"pub\",");
            push_u64(&mut head, seq);
            head.push(b',');
            push_u64(&mut head, t);
            head.extend_from_slice(b",\"");
            conn.queue_text(&[&head, &pad, b"\"]"]);
            next_seq += 1;
            budget -= 1;
        }
        sio::flush(conn).await?;
        // Wait for a completion, the next due time, or incoming data.
        let wake_us = match interval_us {
            Some(iv) => cfg.start_us + (next_seq as f64 * iv) as u64,
            None => now_us() + 10_000,
        }
        .min(cfg.end_us);
        tokio::select! {
            biased;
            r = sio::fill(conn) => {
                r?;
                while sio::next_packet(conn)?.is_some() {}
            }
            _ = sh.notify.notified(), if cfg.window.is_some() => {}
            _ = tokio::time::sleep_until(instant_at(wake_us).into()) => {}
        }
    }
    // Messages still incomplete at the end count as given up only if they
    // stay incomplete through the drain, which the coordinator measures.
    Ok(PubDone {
        published: next_seq,
        abandoned,
        window_full_waits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_events_are_parsed() {
        assert_eq!(parse_msg(b"42[\"msg\",12,345,\"xxxx\"]"), Some((12, 345)));
        assert_eq!(parse_msg(b"42[\"msg\",12]"), None);
        assert_eq!(parse_msg(b"42[\"other\",1,2]"), None);
        assert_eq!(parse_msg(b"42[\"msg\",\"a\",2]"), None);
    }
}
