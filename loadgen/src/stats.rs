//! Measurement plumbing shared by the scenarios: the process-wide monotonic
//! clock (microseconds since start), latency histograms fed through small
//! per-task buffers, failure counting by category, and `/proc` readings
//! (memory of the server under test, CPU time of both processes, machine idle
//! time) used to tell which side is the bottleneck.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};

static START: OnceLock<Instant> = OnceLock::new();

/// Starts the process-wide clock (idempotent).
pub fn init_clock() {
    START.get_or_init(Instant::now);
}

/// The `Instant` the clock counts from.
pub fn epoch() -> Instant {
    *START.get_or_init(Instant::now)
}

/// Microseconds since the process-wide epoch.
#[inline]
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// The `Instant` that is `us` microseconds after the epoch.
pub fn instant_at(us: u64) -> Instant {
    epoch() + Duration::from_micros(us)
}

/// Highest value a histogram accepts: one hour in microseconds.
const HIST_MAX: u64 = 3_600_000_000;

/// A shared latency histogram (microseconds) plus counters, fed in batches.
pub struct Recorder {
    hist: Mutex<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, HIST_MAX, 3).expect("constant bounds are valid");
        Recorder {
            hist: Mutex::new(hist),
        }
    }

    /// Records a batch of samples under one lock.
    pub fn record_all(&self, samples: &[u32]) {
        let mut h = self.hist.lock();
        for &s in samples {
            h.saturating_record(u64::from(s));
        }
    }

    /// Records one sample.
    pub fn record(&self, us: u64) {
        self.hist.lock().saturating_record(us.min(HIST_MAX));
    }

    /// `{p50,p90,p99,p999,max,mean,count}` in microseconds.
    pub fn summary(&self) -> Value {
        let h = self.hist.lock();
        if h.is_empty() {
            return json!({"p50": null, "p90": null, "p99": null, "p999": null, "max": null, "mean": null, "count": 0});
        }
        json!({
            "p50": h.value_at_quantile(0.50),
            "p90": h.value_at_quantile(0.90),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
            "mean": (h.mean() * 10.0).round() / 10.0,
            "count": h.len(),
        })
    }
}

/// A per-task sample buffer in front of a [`Recorder`], so that the shared
/// lock is taken once per `LOCAL_BATCH` samples rather than per sample.
pub struct LocalSamples {
    buf: Vec<u32>,
}

const LOCAL_BATCH: usize = 64;

impl Default for LocalSamples {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalSamples {
    pub fn new() -> Self {
        LocalSamples {
            buf: Vec::with_capacity(LOCAL_BATCH),
        }
    }

    /// Adds a sample; returns true when the buffer is full and should be
    /// flushed (the caller flushes its counters at the same time).
    #[inline]
    pub fn push(&mut self, us: u64) -> bool {
        self.buf.push(us.min(u64::from(u32::MAX)) as u32);
        self.buf.len() >= LOCAL_BATCH
    }

    pub fn flush(&mut self, rec: &Recorder) {
        self.flush_to(rec, None);
    }

    /// [`flush`](Self::flush) into `rec` and also into `also`, if any (a
    /// breakdown beside the whole).
    pub fn flush_to(&mut self, rec: &Recorder, also: Option<&Recorder>) {
        if !self.buf.is_empty() {
            rec.record_all(&self.buf);
            if let Some(also) = also {
                also.record_all(&self.buf);
            }
            self.buf.clear();
        }
    }
}

/// Failures by category, with the first message seen for each.
#[derive(Default)]
pub struct Failures {
    by_kind: Mutex<BTreeMap<&'static str, (u64, String)>>,
}

impl Failures {
    pub fn add(&self, kind: &'static str, detail: impl FnOnce() -> String) {
        let mut m = self.by_kind.lock();
        let e = m.entry(kind).or_insert_with(|| (0, detail()));
        e.0 += 1;
    }

    pub fn total(&self) -> u64 {
        self.by_kind.lock().values().map(|v| v.0).sum()
    }

    /// `{kind: count}`.
    pub fn counts(&self) -> Value {
        let m = self.by_kind.lock();
        Value::Object(
            m.iter()
                .map(|(k, v)| ((*k).to_string(), json!(v.0)))
                .collect(),
        )
    }

    /// `{kind: first detail}`.
    pub fn samples(&self) -> Value {
        let m = self.by_kind.lock();
        Value::Object(
            m.iter()
                .map(|(k, v)| ((*k).to_string(), json!(v.1)))
                .collect(),
        )
    }
}

/// Reads a `kB` field (e.g. `VmRSS`, `VmHWM`) of `/proc/PID/status`.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field)
            && let Some(rest) = rest.strip_prefix(':')
        {
            return rest.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime+stime of a process (or `self`) in clock ticks, from `/proc/.../stat`.
fn proc_cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start at state.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // state is field 3 overall; utime is 14 and stime 15 → indices 11, 12 here.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Seconds of CPU (utime+stime) process `pid` has used so far.
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    proc_cpu_ticks(Some(pid)).map(|t| t as f64 / clk_tck() as f64)
}

/// (busy, total) jiffies of the whole machine from `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let vals: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = vals.iter().sum();
    let idle = vals.get(3).copied().unwrap_or(0) + vals.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU time sample of the generator, the server (if a PID is known) and the
/// machine, for computing utilisation over a measured window.
pub struct CpuSample {
    at: Instant,
    me: Option<u64>,
    server: Option<u64>,
    machine: Option<(u64, u64)>,
    server_pid: Option<u32>,
}

impl CpuSample {
    pub fn take(server_pid: Option<u32>) -> Self {
        CpuSample {
            at: Instant::now(),
            me: proc_cpu_ticks(None),
            server: server_pid.and_then(|p| proc_cpu_ticks(Some(p))),
            machine: machine_ticks(),
            server_pid,
        }
    }

    /// Utilisation since `self`, in percent of ONE core (so up to 200 on a
    /// 2-core machine), plus the machine's busy percentage of all cores.
    pub fn since(&self) -> Value {
        let now = CpuSample::take(self.server_pid);
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-6);
        let tck = clk_tck() as f64;
        let pct = |a: Option<u64>, b: Option<u64>| -> Value {
            match (a, b) {
                (Some(a), Some(b)) => {
                    json!(round1((b.saturating_sub(a)) as f64 / tck / secs * 100.0))
                }
                _ => Value::Null,
            }
        };
        let machine = match (self.machine, now.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                json!(round1((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0))
            }
            _ => Value::Null,
        };
        json!({
            "loadgen_cpu_pct": pct(self.me, now.me),
            "server_cpu_pct": pct(self.server, now.server),
            "machine_busy_pct": machine,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        })
    }
}

pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Parses an unsigned decimal at `b[*pos..]`, advancing `pos` past it.
#[inline]
pub fn parse_u64(b: &[u8], pos: &mut usize) -> Option<u64> {
    let start = *pos;
    let mut v: u64 = 0;
    while let Some(&c) = b.get(*pos) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        *pos += 1;
    }
    (*pos > start).then_some(v)
}

/// Appends the decimal form of `v` to `out` without allocating.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip() {
        for v in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = b"x".to_vec();
            push_u64(&mut out, v);
            let mut p = 1;
            assert_eq!(parse_u64(&out, &mut p), Some(v));
            assert_eq!(p, out.len());
        }
        let mut p = 0;
        assert_eq!(parse_u64(b",1", &mut p), None);
        let mut p = 0;
        assert_eq!(parse_u64(b"99999999999999999999999", &mut p), None);
    }

    #[test]
    fn recorder_summarises() {
        let r = Recorder::new();
        let mut l = LocalSamples::new();
        for v in 1..=100 {
            if l.push(v) {
                l.flush(&r);
            }
        }
        l.flush(&r);
        let s = r.summary();
        assert_eq!(s["count"], json!(100));
        assert_eq!(s["p50"], json!(50));
        assert_eq!(s["max"], json!(100));
    }

    #[test]
    fn own_process_cpu_is_readable() {
        assert!(proc_cpu_ticks(None).is_some());
        assert!(proc_status_kb(std::process::id(), "VmRSS").is_some());
    }
}
