//! `notify`: D users, one device each, connected to `/notifications` with a
//! token; then, round after round, one `POST /api/v1/notifications` for all
//! D users through the publish API (a key with the `publish` scope). Per
//! round: the time until stored (the API answered: the transaction
//! committed and every device was queued its `notification`) and until
//! delivered (the last device received it). The same measurement as
//! `tests/interop/measure-notifications.mjs`, with the Rust client.
//!
//! Checked: the greeting `unread` of a fresh store is 0; the API answers
//! 200 with `stored` and `delivered` = D; every device receives each round's
//! notification once, with `unread` = the rounds so far. Anything else is
//! counted and the run marked `invalid`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

use crate::Common;
use crate::sio::{self, Connect, Ctx, Fail};
use crate::stats::{CpuSample, Failures, now_us, round1};
use crate::ws::WsConn;

#[derive(Args, Serialize, Clone, Debug)]
pub struct NotifyArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Users, one device each; every round notifies them all (the API takes
    /// up to `notifications.max_users_per_request`, 10,000 by default).
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Notifications sent (one API request each, one after another).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Longest wait for one round's deliveries.
    #[arg(long, default_value_t = 30.0)]
    pub round_timeout_secs: f64,
    /// HS256 secret of the server's `[auth]` (bench/esn.toml's).
    #[arg(long, default_value = "bench-esn-secret")]
    pub jwt_secret: String,
    /// A publish API key with the `publish` scope (bench/esn.toml's).
    #[arg(long, default_value = "bench-esn-publish-key")]
    pub api_key: String,
    /// The notifications namespace.
    #[arg(long, default_value = "/notifications")]
    pub namespace: String,
}

struct Shared {
    ns: String,
    /// Devices that received their greeting `unread`.
    ready: AtomicUsize,
    ready_notify: Notify,
    /// Per round: devices that received it, and when the last did (µs).
    received: Vec<AtomicU64>,
    last_at: Vec<AtomicU64>,
    round_notify: Notify,
    errors: Failures,
    dropped: AtomicU64,
    disconnects: Failures,
}

/// A `notification` event, as far as the check needs it.
#[derive(Deserialize, Debug, PartialEq)]
pub struct NotificationEvent {
    pub notification: NotificationBody,
    pub unread: u64,
}

#[derive(Deserialize, Debug, PartialEq)]
pub struct NotificationBody {
    pub data: RoundData,
}

#[derive(Deserialize, Debug, PartialEq)]
pub struct RoundData {
    pub round: usize,
}

/// An event of the namespace, parsed.
#[derive(Debug, PartialEq)]
pub enum Event {
    Unread(u64),
    Notification(NotificationEvent),
    /// A `notification` or `unread` that does not parse.
    Bad,
    Other,
}

/// Parses an event's data (`["unread",{"count":0}]`, `["notification",{…}]`).
pub fn parse_event(data: &[u8]) -> Event {
    #[derive(Deserialize)]
    struct Count {
        count: u64,
    }
    // Each perhaps with a recovery offset after its payload.
    if let Some(rest) = data.strip_prefix(b"[\"unread\",") {
        return match sio::event_payload::<Count>(rest) {
            Some(c) => Event::Unread(c.count),
            None => Event::Bad,
        };
    }
    if let Some(rest) = data.strip_prefix(b"[\"notification\",") {
        return match sio::event_payload::<NotificationEvent>(rest) {
            Some(n) => Event::Notification(n),
            None => Event::Bad,
        };
    }
    Event::Other
}

/// The publish API's answer, as far as the check needs it.
#[derive(Deserialize, Debug, Default)]
pub struct ApiAnswer {
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub stored: u64,
    #[serde(default)]
    pub delivered: u64,
}

/// What is wrong with an answer for `users` users, if anything.
pub fn check_answer(status: u16, body: &[u8], users: u64) -> Option<String> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if status != 200 {
        return Some(format!("status {status}: {}", text()));
    }
    match serde_json::from_slice::<ApiAnswer>(body) {
        Ok(a) if a.ok && a.stored == users && a.delivered == users => None,
        Ok(a) => Some(format!(
            "stored {} and delivered {} of {users}: {}",
            a.stored,
            a.delivered,
            text()
        )),
        Err(_) => Some(format!("not JSON: {}", text())),
    }
}

fn user_name(i: usize) -> String {
    format!("n{i}")
}

/// The request body of round `round` for users `n0..n{devices}`.
pub fn request_body(devices: usize, round: usize) -> Vec<u8> {
    let users: Vec<String> = (0..devices).map(user_name).collect();
    json!({
        "users": users,
        "type": "bench",
        "title": format!("round {round}"),
        "body": "a notification for every user",
        "data": {"round": round},
    })
    .to_string()
    .into_bytes()
}

pub async fn run(ctx: Ctx, a: NotifyArgs) -> anyhow::Result<Value> {
    if a.devices == 0 || a.rounds == 0 {
        bail!("--devices and --rounds must be at least 1");
    }
    let ns = if a.namespace == "/" {
        String::new()
    } else {
        a.namespace.clone()
    };
    let sh = Arc::new(Shared {
        ns,
        ready: AtomicUsize::new(0),
        ready_notify: Notify::new(),
        received: (0..a.rounds).map(|_| AtomicU64::new(0)).collect(),
        last_at: (0..a.rounds).map(|_| AtomicU64::new(0)).collect(),
        round_notify: Notify::new(),
        errors: Failures::default(),
        dropped: AtomicU64::new(0),
        disconnects: Failures::default(),
    });
    let secret = a.jwt_secret.clone().into_bytes();
    let now = crate::jwt::unix_now();
    let t_connect = now_us();
    let mut stops = Vec::with_capacity(a.devices);
    let (times, handles) = sio::ramp_with(&ctx, a.devices, 2048, |i| {
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        let sh = sh.clone();
        let token = crate::jwt::hs256(&secret, &user_name(i), now, 3600);
        (Connect::with_token(&a.namespace, &token), move |conn| {
            device(conn, sh, rx)
        })
    })
    .await;
    let n_ok = times.len();
    let ramp_secs = (now_us() - t_connect) as f64 / 1e6;
    if n_ok < a.devices {
        bail!(
            "only {n_ok} of {} devices connected ({} failures: {})",
            a.devices,
            ctx.failures.total(),
            ctx.failures.samples()
        );
    }
    // Each device has its greeting.
    let greeted = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let notified = sh.ready_notify.notified();
            if sh.ready.load(Ordering::Acquire) >= a.devices {
                return;
            }
            notified.await;
        }
    })
    .await;
    if greeted.is_err() {
        bail!(
            "{} of {} devices got their `unread` greeting within 30 s",
            sh.ready.load(Ordering::Acquire),
            a.devices
        );
    }
    let connect_secs = (now_us() - t_connect) as f64 / 1e6;

    let target = ctx.target.clone();
    let users = a.devices as u64;
    let mut stored_us = Vec::new();
    let mut delivered_us = Vec::new();
    let mut api_errors = 0u64;
    let mut missing = 0u64;
    let cpu = CpuSample::take(a.common.pid);
    for round in 0..a.rounds {
        let body = request_body(a.devices, round);
        let t0 = now_us();
        let answer = crate::http::post_json(
            target.addr,
            &target.host,
            "/api/v1/notifications",
            &a.api_key,
            &body,
        )
        .await
        .context("POST /api/v1/notifications")?;
        let answered = now_us();
        if let Some(e) = check_answer(answer.status, &answer.body, users) {
            api_errors += 1;
            sh.errors.add("api", || format!("round {round}: {e}"));
            continue;
        }
        let all = tokio::time::timeout(Duration::from_secs_f64(a.round_timeout_secs), async {
            loop {
                let notified = sh.round_notify.notified();
                if sh.received[round].load(Ordering::Acquire) >= users {
                    return;
                }
                notified.await;
            }
        })
        .await;
        let got = sh.received[round].load(Ordering::Acquire);
        if all.is_err() {
            missing += users.saturating_sub(got);
            sh.errors.add("round_incomplete", || {
                format!("round {round}: {got} of {users} devices got it")
            });
        }
        stored_us.push(answered - t0);
        delivered_us.push(sh.last_at[round].load(Ordering::Acquire).saturating_sub(t0));
    }
    let cpu = cpu.since();
    drop(stops);
    for h in handles {
        let _ = h.await;
    }
    let errors = sh.errors.total();
    let dropped = sh.dropped.load(Ordering::Acquire);
    let failures = ctx.failures.total() + errors + dropped;
    let med = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let mut out = json!({
        "devices": a.devices,
        "devices_ok": n_ok,
        "rounds": a.rounds,
        "connect_secs": round1(connect_secs),
        "ramp_secs": round1(ramp_secs),
        "stored_us": {"median": med(&stored_us), "rounds": stored_us},
        "delivered_us": {"median": med(&delivered_us), "rounds": delivered_us},
        "api_errors": api_errors,
        "lost": missing,
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
    if let (Some(reason), Value::Object(m)) = (
        crate::chat::invalid_reason(failures, missing as i64, 0, 0),
        &mut out,
    ) {
        m.insert("invalid".into(), reason.into());
    }
    Ok(out)
}

async fn device(mut conn: WsConn, sh: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let result: Result<(), Fail> = async {
        let mut greeted = false;
        let mut rounds_seen = 0usize;
        loop {
            // What was read already first: the greeting may have come with
            // the CONNECT ack.
            let now = now_us();
            while let Some(m) = sio::next_packet(&mut conn)? {
                let p = conn.payload(m);
                let Some((b'2', None, data)) = sio::split_packet(p, &sh.ns) else {
                    continue;
                };
                match parse_event(data) {
                    Event::Unread(count) if !greeted => {
                        greeted = true;
                        if count != 0 {
                            sh.errors
                                .add("stale_store", || format!("unread {count} at connect"));
                        }
                        sh.ready.fetch_add(1, Ordering::AcqRel);
                        sh.ready_notify.notify_one();
                    }
                    Event::Notification(n) => {
                        let round = n.notification.data.round;
                        if round != rounds_seen || n.unread != round as u64 + 1 {
                            sh.errors.add("wrong_notification", || {
                                format!(
                                    "round {round} (unread {}) where round {rounds_seen} was due",
                                    n.unread
                                )
                            });
                        }
                        rounds_seen = rounds_seen.max(round + 1);
                        if let (Some(c), Some(t)) = (sh.received.get(round), sh.last_at.get(round))
                        {
                            t.fetch_max(now, Ordering::AcqRel);
                            c.fetch_add(1, Ordering::AcqRel);
                            sh.round_notify.notify_one();
                        }
                    }
                    Event::Bad => sh.errors.add("unparsable_event", || {
                        String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned()
                    }),
                    _ => {}
                }
            }
            if conn.has_pending() {
                sio::flush(&mut conn).await?;
            }
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(()),
                r = sio::fill(&mut conn) => r?,
            }
        }
    }
    .await;
    if let Err(f) = result {
        sh.dropped.fetch_add(1, Ordering::AcqRel);
        f.count_in(&sh.disconnects);
    }
}

/// What a run should take (seconds), for the global timeout in `main.rs`.
pub fn estimate_secs(a: &NotifyArgs) -> f64 {
    a.common.ramp_secs(a.devices) + 5.0 + a.rounds as f64 * 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse() {
        assert_eq!(parse_event(br#"["unread",{"count":3}]"#), Event::Unread(3));
        assert_eq!(
            parse_event(br#"["unread",{"count":3},"41"]"#),
            Event::Unread(3)
        );
        let n = parse_event(
            br#"["notification",{"notification":{"id":1,"type":"bench","title":"round 2","body":"","data":{"round":2},"created_at":5,"read":false},"unread":3}]"#,
        );
        assert_eq!(
            n,
            Event::Notification(NotificationEvent {
                notification: NotificationBody {
                    data: RoundData { round: 2 }
                },
                unread: 3
            })
        );
        assert_eq!(parse_event(br#"["notification",{"unread":3}]"#), Event::Bad);
        assert_eq!(
            parse_event(br#"["notification:read",{"all":true}]"#),
            Event::Other
        );
    }

    #[test]
    fn answers_are_checked() {
        assert_eq!(
            check_answer(200, br#"{"ok":true,"stored":3,"delivered":3}"#, 3),
            None
        );
        assert!(
            check_answer(200, br#"{"ok":true,"stored":3,"delivered":2}"#, 3)
                .unwrap()
                .contains("delivered 2 of 3")
        );
        assert!(
            check_answer(503, br#"{"ok":false}"#, 3)
                .unwrap()
                .starts_with("status 503")
        );
        assert!(
            check_answer(200, b"<html>", 3)
                .unwrap()
                .contains("not JSON")
        );
    }

    #[test]
    fn request_names_every_user() {
        let v: Value = serde_json::from_slice(&request_body(3, 1)).unwrap();
        assert_eq!(v["users"], json!(["n0", "n1", "n2"]));
        assert_eq!(v["data"], json!({"round": 1}));
        assert_eq!(v["title"], "round 1");
    }
}
