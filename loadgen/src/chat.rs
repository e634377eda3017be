//! `chat`: N users, one device each, connected to `/chat` with a token
//! (HS256, `--jwt-secret`), each a member of one direct conversation (with
//! its neighbour: users 0 and 1, 2 and 3, …) and one group (`--group-size`
//! consecutive users), sending `message` with acks alternately to the two:
//! `42/chat,ID["message",{"conversation":C,"client_id":"mK","text":"…"}]`
//! → `43/chat,ID[{"ok":true,"id":…,"seq":…,"ts":…,…}]`. Every member's
//! device (the sender's included) receives `message` `{conversation, seq, …}`.
//!
//! Closed loop (`--window W`): each user keeps W messages unanswered, the
//! most the server stores. Open loop (`--rate R`): R messages per second in
//! all, on a fixed schedule whatever the answers: the ack latency at that
//! rate. Measured: acks per second (messages stored), `message` events per
//! second received by the devices (deliveries), ack latency of the messages
//! sent in the measured window.
//!
//! Every ack is checked (ok, not a duplicate, the conversation sent to, a
//! seq above the sender's previous one in that conversation), every
//! delivery too (each device sees each conversation's seqs 1, 2, 3… with no
//! gap, no repeat); after the sends stop, the run waits for every ack and
//! every delivery. Anything wrong — an error ack, an unanswered message, a
//! seq gap, a lost delivery, a dropped connection — is counted, and the run
//! is then marked `invalid` (the suite reports it as failed, not as a figure).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::bail;
use clap::{ArgGroup, Args};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot, watch};

use crate::Common;
use crate::sio::{self, Connect, Ctx, Fail};
use crate::stats::{
    CpuSample, Failures, LocalSamples, Recorder, instant_at, now_us, push_u64, round1, round2,
};
use crate::ws::WsConn;

#[derive(Args, Serialize, Clone, Debug)]
#[command(group(ArgGroup::new("mode").required(true).args(["window", "rate"])))]
pub struct ChatArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Users, one device each (even, and a multiple of --group-size).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Members of each group conversation.
    #[arg(long, default_value_t = 5)]
    pub group_size: usize,
    /// Closed loop: messages each user keeps unanswered.
    #[arg(long)]
    pub window: Option<usize>,
    /// Open loop: messages per second, all users together.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured sending time (after the warmup).
    #[arg(long)]
    pub duration_secs: f64,
    /// Sending time before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// Characters of text in each message.
    #[arg(long, default_value_t = 50)]
    pub text_chars: usize,
    /// After the last send: the longest wait for the acks and deliveries
    /// still due (what is missing then is a failure).
    #[arg(long, default_value_t = 15.0)]
    pub drain_max_secs: f64,
    /// HS256 secret of the server's `[auth]` (bench/esn.toml's).
    #[arg(long, default_value = "bench-esn-secret")]
    pub jwt_secret: String,
    /// The chat namespace.
    #[arg(long, default_value = "/chat")]
    pub namespace: String,
}

/// When to send, published once every conversation exists.
#[derive(Clone, Copy, Debug)]
struct Plan {
    start: u64,
    m_start: u64,
    m_end: u64,
}

/// State shared by the devices and the coordinator.
struct Shared {
    ns: String,
    users: usize,
    group_size: usize,
    window: Option<usize>,
    /// Interval between one user's sends in open loop (µs).
    interval_us: Option<f64>,
    text: String,
    /// Server id of each conversation slot (0: not created yet): direct
    /// conversations first (`users / 2`), then the groups.
    conv_ids: Vec<AtomicU64>,
    created: AtomicUsize,
    created_notify: Notify,
    plan: watch::Receiver<Option<Plan>>,
    /// Per slot: messages acked, highest seq acked.
    acked: Vec<AtomicU64>,
    max_seq: Vec<AtomicU64>,
    /// Sent and not answered, all devices.
    in_flight: AtomicI64,
    sent: AtomicU64,
    acks: AtomicU64,
    measured_acks: AtomicU64,
    /// Valid `message` events received (live, for the drain).
    deliveries: AtomicU64,
    measured_deliveries: AtomicU64,
    late_sends: AtomicU64,
    other_events: AtomicU64,
    ack_latency: Recorder,
    /// Wrong acks, wrong deliveries, unparsable packets.
    errors: Failures,
    dropped: AtomicU64,
    disconnects: Failures,
}

impl Shared {
    fn direct_slot(&self, user: usize) -> usize {
        user / 2
    }

    fn group_slot(&self, user: usize) -> usize {
        self.users / 2 + user / self.group_size
    }

    fn slots(&self) -> usize {
        self.users / 2 + self.users / self.group_size
    }

    /// Devices receiving each message of slot `s`.
    fn members(&self, s: usize) -> u64 {
        if s < self.users / 2 {
            2
        } else {
            self.group_size as u64
        }
    }
}

fn user_name(i: usize) -> String {
    format!("u{i}")
}

pub async fn run(ctx: Ctx, a: ChatArgs) -> anyhow::Result<Value> {
    if a.users < 2 || !a.users.is_multiple_of(2) {
        bail!("--users must be even and at least 2");
    }
    if a.group_size < 2 || !a.users.is_multiple_of(a.group_size) {
        bail!("--group-size must be at least 2 and divide --users");
    }
    if a.window == Some(0) {
        bail!("--window must be at least 1");
    }
    if let Some(r) = a.rate
        && !(r > 0.0 && r.is_finite())
    {
        bail!("--rate must be positive");
    }
    if a.text_chars == 0 {
        bail!("--text-chars must be at least 1");
    }
    let ns = if a.namespace == "/" {
        String::new()
    } else {
        a.namespace.clone()
    };
    let slots = a.users / 2 + a.users / a.group_size;
    let (plan_tx, plan_rx) = watch::channel(None);
    let sh = Arc::new(Shared {
        ns: ns.clone(),
        users: a.users,
        group_size: a.group_size,
        window: a.window,
        interval_us: a.rate.map(|r| 1e6 * a.users as f64 / r),
        text: "x".repeat(a.text_chars),
        conv_ids: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        created: AtomicUsize::new(0),
        created_notify: Notify::new(),
        plan: plan_rx,
        acked: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        max_seq: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        in_flight: AtomicI64::new(0),
        sent: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        measured_acks: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        measured_deliveries: AtomicU64::new(0),
        late_sends: AtomicU64::new(0),
        other_events: AtomicU64::new(0),
        ack_latency: Recorder::new(),
        errors: Failures::default(),
        dropped: AtomicU64::new(0),
        disconnects: Failures::default(),
    });
    debug_assert_eq!(sh.slots(), slots);

    let secret = a.jwt_secret.clone().into_bytes();
    let now = crate::jwt::unix_now();
    let mut stops = Vec::with_capacity(a.users);
    let (times, handles) = sio::ramp_with(&ctx, a.users, 16 << 10, |i| {
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        let sh = sh.clone();
        let token = crate::jwt::hs256(&secret, &user_name(i), now, 3600);
        (Connect::with_token(&a.namespace, &token), move |conn| {
            device(conn, i, sh, rx)
        })
    })
    .await;
    let n_ok = times.len();
    if n_ok < a.users {
        bail!(
            "only {n_ok} of {} users connected ({} failures: {})",
            a.users,
            ctx.failures.total(),
            ctx.failures.samples()
        );
    }
    // Every conversation created (by its first member).
    let setup = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let notified = sh.created_notify.notified();
            if sh.created.load(Ordering::Acquire) >= slots {
                return;
            }
            notified.await;
        }
    })
    .await;
    if setup.is_err() {
        bail!(
            "{} of {slots} conversations created in 30 s ({})",
            sh.created.load(Ordering::Acquire),
            sh.errors.samples()
        );
    }

    let start = now_us() + 20_000;
    let m_start = start + (a.warmup_secs.max(0.0) * 1e6) as u64;
    let m_end = m_start + (a.duration_secs.max(0.0) * 1e6) as u64;
    let _ = plan_tx.send(Some(Plan {
        start,
        m_start,
        m_end,
    }));
    tokio::time::sleep_until(instant_at(m_start).into()).await;
    let cpu = CpuSample::take(a.common.pid);
    tokio::time::sleep_until(instant_at(m_end).into()).await;
    let cpu = cpu.since();

    // Drain: every ack, then every delivery of what was acked.
    let drain_t0 = now_us();
    let hard = drain_t0 + (a.drain_max_secs.max(0.0) * 1e6) as u64;
    while sh.in_flight.load(Ordering::Acquire) > 0 && now_us() < hard {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stored: u64 = sh.max_seq.iter().map(|s| s.load(Ordering::Acquire)).sum();
    let expected: u64 = (0..slots)
        .map(|s| sh.max_seq[s].load(Ordering::Acquire) * sh.members(s))
        .sum();
    while sh.deliveries.load(Ordering::Acquire) < expected && now_us() < hard {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_secs = (now_us() - drain_t0) as f64 / 1e6;
    drop(stops);
    for h in handles {
        let _ = h.await;
    }

    // Every seq of every conversation acked once: the stored messages are
    // exactly the acked ones.
    let mut seq_gaps = 0u64;
    for s in 0..slots {
        let (n, max) = (
            sh.acked[s].load(Ordering::Acquire),
            sh.max_seq[s].load(Ordering::Acquire),
        );
        if n != max {
            seq_gaps += 1;
            sh.errors.add("seq_gap", || {
                format!("conversation slot {s}: {n} acks, highest seq {max}")
            });
        }
    }
    let deliveries = sh.deliveries.load(Ordering::Acquire);
    let lost = expected as i64 - deliveries as i64;
    let unanswered = sh.in_flight.load(Ordering::Acquire).max(0) as u64;
    let dur = a.duration_secs.max(1e-9);
    let errors = sh.errors.total();
    let dropped = sh.dropped.load(Ordering::Acquire);
    let failures = ctx.failures.total() + errors + dropped + unanswered;
    let verdict = invalid_reason(failures - unanswered, lost, unanswered, seq_gaps);
    let mut out = json!({
        "mode": if a.window.is_some() { "closed" } else { "open" },
        "users": a.users,
        "devices_ok": n_ok,
        "direct_conversations": a.users / 2,
        "group_conversations": a.users / a.group_size,
        "sent": sh.sent.load(Ordering::Acquire),
        "acks": sh.acks.load(Ordering::Acquire),
        "stored": stored,
        "stored_per_sec": round1(sh.measured_acks.load(Ordering::Acquire) as f64 / dur),
        "delivered_per_sec": round1(sh.measured_deliveries.load(Ordering::Acquire) as f64 / dur),
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "lost": lost,
        "unanswered": unanswered,
        "seq_gaps": seq_gaps,
        "late_sends": sh.late_sends.load(Ordering::Acquire),
        "other_events": sh.other_events.load(Ordering::Acquire),
        "ack_us": sh.ack_latency.summary(),
        "drain_secs": round2(drain_secs),
        "disconnects": dropped,
        "disconnect_kinds": sh.disconnects.counts(),
        "errors": errors,
        "error_kinds": sh.errors.counts(),
        "error_samples": sh.errors.samples(),
        "failures": failures,
        "failure_kinds": ctx.failures.counts(),
        "failure_samples": ctx.failures.samples(),
        "cpu": cpu,
    });
    if let (Some(reason), Value::Object(m)) = (verdict, &mut out) {
        m.insert("invalid".into(), reason.into());
    }
    Ok(out)
}

/// Why a run's figures must not be reported, if they must not: `failures`
/// besides the `unanswered` messages, deliveries `lost` (negative: more
/// than the acked messages account for, which unanswered ones explain).
pub fn invalid_reason(failures: u64, lost: i64, unanswered: u64, seq_gaps: u64) -> Option<String> {
    let mut why = Vec::new();
    if failures > 0 {
        why.push(format!("{failures} failure(s)"));
    }
    if lost > 0 {
        why.push(format!("{lost} delivery(ies) lost"));
    } else if lost < 0 {
        why.push(format!(
            "{} delivery(ies) of messages whose ack never came",
            -lost
        ));
    }
    if unanswered > 0 {
        why.push(format!("{unanswered} message(s) unanswered"));
    }
    if seq_gaps > 0 {
        why.push(format!("{seq_gaps} conversation(s) with seq gaps"));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// The ack of a `message` or a `conversation:create`.
#[derive(Deserialize, Debug, Default)]
pub struct Ack {
    pub ok: bool,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub conversation: Option<ConvRef>,
    #[serde(default)]
    pub duplicate: Option<bool>,
    #[serde(default)]
    pub error: Option<AckError>,
}

/// `conversation` is an id in a message's ack, an object in a creation's.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(untagged)]
pub enum ConvRef {
    Id(u64),
    Object { id: u64 },
}

impl ConvRef {
    pub fn id(&self) -> u64 {
        match self {
            ConvRef::Id(id) | ConvRef::Object { id } => *id,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
pub struct AckError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The first argument of an ack packet's data (`[{…}]`).
pub fn parse_ack(data: &[u8]) -> Option<Ack> {
    let mut args: Vec<Ack> = serde_json::from_slice(data).ok()?;
    (!args.is_empty()).then(|| args.swap_remove(0))
}

/// A `message` event as far as the check needs it.
#[derive(Deserialize, Debug, PartialEq)]
pub struct Delivered {
    pub conversation: u64,
    pub seq: u64,
}

const MESSAGE_EVENT: &[u8] = b"[\"message\",";

/// `Some` for a `message` event's data (`["message",{…}]`, perhaps with a
/// recovery offset after it), `None` for another event; `Some(None)` for a
/// `message` that does not parse.
pub fn parse_message_event(data: &[u8]) -> Option<Option<Delivered>> {
    let body = data.strip_prefix(MESSAGE_EVENT)?;
    Some(sio::event_payload(body))
}

/// One sent message waiting for its ack.
struct Pending {
    sent_us: u64,
    /// 0: the direct conversation, 1: the group.
    which: usize,
}

/// What one device keeps.
struct Device {
    user: usize,
    /// Server ids of (direct, group).
    conv: [u64; 2],
    slot: [usize; 2],
    /// Highest seq this device was acked per conversation.
    last_ack: [u64; 2],
    /// Last seq delivered to this device per conversation.
    last_seen: [u64; 2],
    pending: HashMap<u64, Pending>,
    next_id: u64,
    next_client: u64,
    head: Vec<u8>,
    body: Vec<u8>,
    samples: LocalSamples,
}

impl Device {
    fn send(&mut self, conn: &mut WsConn, sh: &Shared, which: usize, now: u64) {
        let id = self.next_id;
        self.next_id += 1;
        self.body.clear();
        self.body
            .extend_from_slice(b"\"message\",{\"conversation\":");
        push_u64(&mut self.body, self.conv[which]);
        self.body.extend_from_slice(b",\"client_id\":\"m");
        push_u64(&mut self.body, self.next_client);
        self.next_client += 1;
        self.body.extend_from_slice(b"\",\"text\":\"");
        let body = std::mem::take(&mut self.body);
        sio::queue_emit(
            conn,
            &mut self.head,
            &sh.ns,
            id,
            &[&body, sh.text.as_bytes(), b"\"}"],
        );
        self.body = body;
        self.pending.insert(
            id,
            Pending {
                sent_us: now,
                which,
            },
        );
        sh.in_flight.fetch_add(1, Ordering::AcqRel);
        sh.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Checks a `message` ack; returns whether it was one of ours.
    fn on_ack(&mut self, sh: &Shared, id: u64, data: &[u8], now: u64, plan: &Plan) -> bool {
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        sh.in_flight.fetch_sub(1, Ordering::AcqRel);
        let Some(ack) = parse_ack(data) else {
            sh.errors.add("ack_unparsable", || {
                String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned()
            });
            return true;
        };
        if !ack.ok {
            let e = ack.error.unwrap_or_default();
            sh.errors
                .add("ack_error", || format!("{}: {}", e.code, e.message));
            return true;
        }
        let conv = ack.conversation.as_ref().map(ConvRef::id);
        let (Some(seq), Some(conv)) = (ack.seq, conv) else {
            sh.errors.add("ack_incomplete", || {
                String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned()
            });
            return true;
        };
        if conv != self.conv[p.which] {
            sh.errors.add("ack_wrong_conversation", || {
                format!("sent to {}, acked for {conv}", self.conv[p.which])
            });
            return true;
        }
        if ack.duplicate == Some(true) {
            sh.errors.add("ack_duplicate", || {
                format!("seq {seq} acked as a duplicate")
            });
        }
        if seq <= self.last_ack[p.which] {
            sh.errors.add("ack_seq_not_increasing", || {
                format!(
                    "user {}: seq {seq} after {} in conversation {conv}",
                    self.user, self.last_ack[p.which]
                )
            });
        }
        self.last_ack[p.which] = self.last_ack[p.which].max(seq);
        let slot = self.slot[p.which];
        sh.acked[slot].fetch_add(1, Ordering::AcqRel);
        sh.max_seq[slot].fetch_max(seq, Ordering::AcqRel);
        sh.acks.fetch_add(1, Ordering::Relaxed);
        if now >= plan.m_start && now <= plan.m_end {
            sh.measured_acks.fetch_add(1, Ordering::Relaxed);
        }
        if p.sent_us >= plan.m_start && p.sent_us < plan.m_end && self.samples.push(now - p.sent_us)
        {
            self.samples.flush(&sh.ack_latency);
        }
        true
    }

    /// Checks a delivery: the next seq of one of this device's conversations.
    fn on_delivery(&mut self, sh: &Shared, d: &Delivered) -> bool {
        let Some(which) = self.conv.iter().position(|c| *c == d.conversation) else {
            sh.errors.add("delivery_unknown_conversation", || {
                format!("user {} got conversation {}", self.user, d.conversation)
            });
            return false;
        };
        let want = self.last_seen[which] + 1;
        if d.seq != want {
            sh.errors.add("delivery_out_of_order", || {
                format!(
                    "user {} conversation {}: seq {} where {want} was due",
                    self.user, d.conversation, d.seq
                )
            });
            self.last_seen[which] = self.last_seen[which].max(d.seq);
            return false;
        }
        self.last_seen[which] = d.seq;
        true
    }
}

/// Sends `conversation:create` for the conversations user `i` opens (the
/// first member of each) and waits for the acks, storing the ids.
async fn create_conversations(
    conn: &mut WsConn,
    i: usize,
    sh: &Shared,
    dev: &mut Device,
) -> Result<(), Fail> {
    let mut want: HashMap<u64, usize> = HashMap::new();
    if i.is_multiple_of(2) {
        let body = json!({"direct": user_name(i + 1)}).to_string();
        sio::queue_emit(
            conn,
            &mut dev.head,
            &sh.ns,
            dev.next_id,
            &[b"\"conversation:create\",", body.as_bytes()],
        );
        want.insert(dev.next_id, sh.direct_slot(i));
        dev.next_id += 1;
    }
    if i.is_multiple_of(sh.group_size) {
        let members: Vec<String> = (i + 1..i + sh.group_size).map(user_name).collect();
        let body =
            json!({"name": format!("group {}", i / sh.group_size), "members": members}).to_string();
        sio::queue_emit(
            conn,
            &mut dev.head,
            &sh.ns,
            dev.next_id,
            &[b"\"conversation:create\",", body.as_bytes()],
        );
        want.insert(dev.next_id, sh.group_slot(i));
        dev.next_id += 1;
    }
    sio::flush(conn).await?;
    while !want.is_empty() {
        sio::fill(conn).await?;
        // The acks; events that come with them stay for the run loop.
        while !want.is_empty()
            && let Some(m) = sio::next_packet(conn)?
        {
            let p = conn.payload(m);
            let Some((b'3', Some(id), data)) = sio::split_packet(p, &sh.ns) else {
                continue;
            };
            let Some(slot) = want.remove(&id) else {
                continue;
            };
            match parse_ack(data) {
                Some(Ack {
                    ok: true,
                    conversation: Some(c),
                    ..
                }) => {
                    sh.conv_ids[slot].store(c.id(), Ordering::Release);
                    sh.created.fetch_add(1, Ordering::AcqRel);
                    sh.created_notify.notify_one();
                }
                _ => {
                    let text = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
                    return Err(Fail::new("create_failed", text));
                }
            }
        }
        sio::flush(conn).await?;
    }
    Ok(())
}

async fn device(mut conn: WsConn, i: usize, sh: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut dev = Device {
        user: i,
        conv: [0; 2],
        slot: [sh.direct_slot(i), sh.group_slot(i)],
        last_ack: [0; 2],
        last_seen: [0; 2],
        pending: HashMap::new(),
        next_id: 1,
        next_client: 0,
        head: Vec::with_capacity(32),
        body: Vec::with_capacity(128),
        samples: LocalSamples::new(),
    };
    let result = run_device(&mut conn, i, &sh, &mut stop, &mut dev).await;
    dev.samples.flush(&sh.ack_latency);
    if let Err(f) = result {
        sh.dropped.fetch_add(1, Ordering::AcqRel);
        f.count_in(&sh.disconnects);
    }
}

async fn run_device(
    conn: &mut WsConn,
    i: usize,
    sh: &Shared,
    stop: &mut oneshot::Receiver<()>,
    dev: &mut Device,
) -> Result<(), Fail> {
    if let Err(f) = create_conversations(conn, i, sh, dev).await {
        sh.errors.add("create_failed", || f.detail.clone());
        return Err(f);
    }
    // Wait for the plan. The socket is not read meanwhile: what arrives
    // (a `conversation:joined`, an early message of a faster device) waits
    // in it for the loop below; the setup is far shorter than the server's
    // ping interval.
    let mut plan_rx = sh.plan.clone();
    let plan = loop {
        if let Some(p) = *plan_rx.borrow_and_update() {
            break p;
        }
        tokio::select! {
            biased;
            _ = &mut *stop => return Ok(()),
            r = plan_rx.changed() => if r.is_err() { return Ok(()) },
        }
    };
    dev.conv = [
        sh.conv_ids[dev.slot[0]].load(Ordering::Acquire),
        sh.conv_ids[dev.slot[1]].load(Ordering::Acquire),
    ];
    tokio::time::sleep_until(instant_at(plan.start).into()).await;
    // Open loop: user i's sends are spread over the interval.
    let interval = sh.interval_us;
    let offset = interval.map_or(0.0, |iv| iv * i as f64 / sh.users as f64);
    let mut k_sent = 0u64;
    let due = |k: u64| plan.start + (offset + k as f64 * interval.unwrap_or(0.0)) as u64;
    let mut which = i % 2;
    loop {
        // Everything already read (packets that came with an earlier one
        // included), then the window topped up.
        let now = now_us();
        let mut delivered = 0u64;
        let mut measured = 0u64;
        while let Some(m) = sio::next_packet(conn)? {
            let p = conn.payload(m);
            match sio::split_packet(p, &sh.ns) {
                Some((b'3', Some(id), data)) => {
                    if !dev.on_ack(sh, id, data, now, &plan) {
                        sh.errors.add("ack_unexpected", || format!("ack id {id}"));
                    }
                }
                Some((b'2', None, data)) => match parse_message_event(data) {
                    Some(Some(d)) => {
                        if dev.on_delivery(sh, &d) {
                            delivered += 1;
                            if now >= plan.m_start && now <= plan.m_end {
                                measured += 1;
                            }
                        }
                    }
                    Some(None) => sh.errors.add("delivery_unparsable", || {
                        String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned()
                    }),
                    None => {
                        sh.other_events.fetch_add(1, Ordering::Relaxed);
                    }
                },
                _ => {
                    sh.other_events.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if delivered > 0 {
            sh.deliveries.fetch_add(delivered, Ordering::AcqRel);
            sh.measured_deliveries
                .fetch_add(measured, Ordering::Relaxed);
        }
        if let Some(w) = sh.window {
            let now = now_us();
            while now < plan.m_end && dev.pending.len() < w {
                dev.send(conn, sh, which, now);
                which ^= 1;
            }
        }
        if conn.has_pending() {
            sio::flush(conn).await?;
        }
        let next_due = due(k_sent);
        let open_sending = interval.is_some() && next_due < plan.m_end;
        tokio::select! {
            biased;
            _ = &mut *stop => return Ok(()),
            r = sio::fill(conn) => r?,
            _ = tokio::time::sleep_until(instant_at(next_due).into()), if open_sending => {
                let now = now_us();
                if now > next_due + 10_000 {
                    sh.late_sends.fetch_add(1, Ordering::Relaxed);
                }
                // Whatever the schedule owes by now.
                while due(k_sent) <= now && due(k_sent) < plan.m_end {
                    dev.send(conn, sh, which, now);
                    which ^= 1;
                    k_sent += 1;
                }
            }
        }
    }
}

/// What a run should take (seconds), for the global timeout in `main.rs`.
pub fn estimate_secs(a: &ChatArgs) -> f64 {
    a.common.ramp_secs(a.users) + 2.0 + a.warmup_secs + a.duration_secs + a.drain_max_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse() {
        let a = parse_ack(
            br#"[{"conversation":7,"duplicate":false,"id":31,"ok":true,"seq":12,"ts":1764640000000}]"#,
        )
        .unwrap();
        assert!(a.ok);
        assert_eq!(
            (a.seq, a.conversation, a.duplicate),
            (Some(12), Some(ConvRef::Id(7)), Some(false))
        );
        let c = parse_ack(
            br#"[{"ok":true,"created":true,"conversation":{"id":3,"kind":"group","members":["u0","u1"]}}]"#,
        )
        .unwrap();
        assert_eq!(c.conversation.map(|c| c.id()), Some(3));
        let e =
            parse_ack(br#"[{"ok":false,"error":{"code":"rate_limited","message":"slow down"}}]"#)
                .unwrap();
        assert!(!e.ok);
        assert_eq!(e.error.unwrap().code, "rate_limited");
        assert!(parse_ack(b"[]").is_none());
        assert!(parse_ack(b"[{\"ok\":").is_none());
    }

    #[test]
    fn message_events_parse() {
        let d = parse_message_event(
            br#"["message",{"id":5,"conversation":9,"seq":4,"sender":"u1","client_id":"m1","text":"x]","reply_to":null,"mentions":[],"ts":1,"edited_at":null,"deleted":false}]"#,
        );
        assert_eq!(
            d,
            Some(Some(Delivered {
                conversation: 9,
                seq: 4
            }))
        );
        assert_eq!(
            parse_message_event(br#"["typing",{"conversation":9}]"#),
            None
        );
        assert_eq!(parse_message_event(br#"["message",{"seq":4}]"#), Some(None));
        // With the recovery offset the server appends by default.
        assert_eq!(
            parse_message_event(br#"["message",{"conversation":9,"seq":4},"12"]"#),
            Some(Some(Delivered {
                conversation: 9,
                seq: 4
            }))
        );
    }

    #[test]
    fn runs_with_anything_wrong_are_invalid() {
        assert_eq!(invalid_reason(0, 0, 0, 0), None);
        assert_eq!(
            invalid_reason(2, 4, 3, 1).unwrap(),
            "2 failure(s), 4 delivery(ies) lost, 3 message(s) unanswered, 1 conversation(s) with seq gaps"
        );
        assert_eq!(
            invalid_reason(0, -62, 10, 0).unwrap(),
            "62 delivery(ies) of messages whose ack never came, 10 message(s) unanswered"
        );
        assert!(invalid_reason(0, 5, 0, 0).unwrap().contains("5 delivery"));
    }

    fn shared(users: usize, group: usize) -> Shared {
        let (_tx, rx) = watch::channel(None);
        let slots = users / 2 + users / group;
        Shared {
            ns: "/chat".into(),
            users,
            group_size: group,
            window: Some(1),
            interval_us: None,
            text: "x".into(),
            conv_ids: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            created: AtomicUsize::new(0),
            created_notify: Notify::new(),
            plan: rx,
            acked: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            max_seq: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            in_flight: AtomicI64::new(0),
            sent: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            measured_acks: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            measured_deliveries: AtomicU64::new(0),
            late_sends: AtomicU64::new(0),
            other_events: AtomicU64::new(0),
            ack_latency: Recorder::new(),
            errors: Failures::default(),
            dropped: AtomicU64::new(0),
            disconnects: Failures::default(),
        }
    }

    #[test]
    fn conversation_slots() {
        let sh = shared(20, 5);
        assert_eq!(sh.slots(), 14);
        assert_eq!((sh.direct_slot(0), sh.direct_slot(1)), (0, 0));
        assert_eq!(sh.direct_slot(19), 9);
        assert_eq!((sh.group_slot(4), sh.group_slot(5)), (10, 11));
        assert_eq!((sh.members(9), sh.members(10)), (2, 5));
    }

    #[test]
    fn deliveries_and_acks_are_checked() {
        let sh = shared(4, 2);
        let mut dev = Device {
            user: 0,
            conv: [11, 12],
            slot: [0, 2],
            last_ack: [0; 2],
            last_seen: [0; 2],
            pending: HashMap::new(),
            next_id: 1,
            next_client: 0,
            head: Vec::new(),
            body: Vec::new(),
            samples: LocalSamples::new(),
        };
        let d = |conversation, seq| Delivered { conversation, seq };
        assert!(dev.on_delivery(&sh, &d(11, 1)));
        assert!(dev.on_delivery(&sh, &d(12, 1)));
        assert!(dev.on_delivery(&sh, &d(11, 2)));
        assert_eq!(sh.errors.total(), 0);
        assert!(!dev.on_delivery(&sh, &d(11, 4)), "a gap");
        assert!(!dev.on_delivery(&sh, &d(11, 4)), "a repeat");
        assert!(!dev.on_delivery(&sh, &d(99, 1)), "not a member");
        assert_eq!(sh.errors.total(), 3);

        let plan = Plan {
            start: 0,
            m_start: 0,
            m_end: u64::MAX,
        };
        for (id, which) in [(1, 0), (2, 0), (3, 1)] {
            dev.pending.insert(id, Pending { sent_us: 0, which });
        }
        sh.in_flight.store(3, Ordering::Release);
        let ok = |conv: u64, seq: u64| {
            format!(
                r#"[{{"ok":true,"conversation":{conv},"seq":{seq},"id":1,"ts":1,"duplicate":false}}]"#
            )
        };
        assert!(dev.on_ack(&sh, 1, ok(11, 5).as_bytes(), 10, &plan));
        assert!(dev.on_ack(&sh, 2, ok(11, 5).as_bytes(), 10, &plan));
        assert!(dev.on_ack(&sh, 3, ok(11, 1).as_bytes(), 10, &plan));
        assert!(!dev.on_ack(&sh, 4, ok(11, 6).as_bytes(), 10, &plan));
        let kinds = sh.errors.counts();
        assert_eq!(kinds["ack_seq_not_increasing"], 1, "{kinds}");
        assert_eq!(kinds["ack_wrong_conversation"], 1, "{kinds}");
        assert_eq!(sh.in_flight.load(Ordering::Acquire), 0);
        assert_eq!(sh.acked[0].load(Ordering::Acquire), 2);
    }
}
