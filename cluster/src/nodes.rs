//! Which other Switchboard nodes are alive, by heartbeats, with the
//! semantics of socket.io's cluster adapter (`ClusterAdapterWithHeartbeat`):
//! every node says it is there every `heartbeat_interval` (5 s), a node not
//! heard from for `heartbeat_timeout` (10 s) is taken for dead, one that
//! starts (or subscribes again) says so and the others answer at once, one
//! that stops cleanly says so and is dropped at once.
//!
//! `@socket.io/redis-adapter` 8.x has no heartbeats, so they travel on a
//! channel of their own, `<prefix>-heartbeat#`, which no Node node
//! subscribes to (its patterns are `<prefix>#<nsp>#*`): JSON
//! `{"uid", "type"}` with the cluster adapter's numbers (1
//! INITIAL_HEARTBEAT, 2 HEARTBEAT, 13 ADAPTER_CLOSE). Node nodes are not in
//! the registry; requests still count them through Redis.
//!
//! Requests use it to name who did not answer, and not to wait for a node
//! known dead: a frozen node (SIGSTOP, a stuck event loop) keeps its
//! connections, so Redis still counts its subscription, but it stops
//! heartbeating; once it is dead here a request checks that its
//! subscription is still there (PUBSUB NUMSUB of its own response
//! channel) and answers without waiting for it.
//!
//! # A node that was silent itself
//!
//! A node frozen past `heartbeat_timeout` (SIGSTOP, a long pause), or cut
//! off from Redis that long, was dropped by the others meanwhile: its
//! devices no longer count, its typing was stopped, its calls left. It
//! finds out by itself: its last heartbeat that reached Redis is older
//! than the timeout (`Shared::out_of_touch`, which compares the moment
//! of that heartbeat with the monotonic clock, which runs through a
//! SIGSTOP: so this is true the moment it wakes, before any task of it
//! ran). Until it has rejoined it sends no plain heartbeat, takes nobody
//! for dead (its own silence is not theirs: the nodes it counted are
//! given a fresh timeout), delivers no broadcast it reads (what Redis
//! kept for it while it was stopped: its clients recover that from the
//! log, and a packet queued to a connection being closed could reach the
//! client after its socket disconnected, then be replayed again), and the
//! application keeps its timers off the shared state
//! (`Cluster::out_of_touch`). Once both connections are up
//! it rejoins: it announces itself (INITIAL_HEARTBEAT: the others count
//! it again and answer), then runs the application's hook
//! (`Cluster::on_rejoin`), which drops what the others ended and closes
//! its clients' connections so that they come back and are recovered.
//! It is counted (`StatsSnapshot::rejoins`) and logged.
//!
//! A cut subscription (Redis restarted, the connection killed, its
//! output buffer over `client-output-buffer-limit pubsub`) goes the same
//! way, without the announce: the others still count this node, but what
//! they published until it subscribed again never reached it, so its
//! clients are closed to recover it (`Rejoin::dropped` false). Whether the
//! others did drop it is not asked: a node silent that long is one they
//! may have dropped, and a client's recovery costs little.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::bus::{Shared, stop_requested};
use crate::publisher::timed;
use crate::remote::Rejoin;

const INITIAL_HEARTBEAT: u8 = 1;
const HEARTBEAT: u8 = 2;
const ADAPTER_CLOSE: u8 = 13;

/// Dead nodes remembered (to tell a frozen node's subscription from a
/// gone one's); the oldest are forgotten past it.
const MAX_DEAD: usize = 64;

/// `<prefix>-heartbeat#`.
pub fn heartbeat_channel(prefix: &str) -> String {
    format!("{prefix}-heartbeat#")
}

#[derive(Serialize, Deserialize)]
struct Beat<'a> {
    uid: &'a str,
    #[serde(rename = "type")]
    kind: u8,
}

/// The other nodes, alive or recently dead.
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
    /// Wakes the requests waiting on a node when one dies or comes back.
    pub(crate) changed: Notify,
}

#[derive(Default)]
struct State {
    /// uid → when last heard from.
    live: HashMap<String, Instant>,
    /// Taken for dead, newest last.
    dead: VecDeque<String>,
}

impl Registry {
    /// Heard from `uid`; true if it was not known alive.
    fn seen(&self, uid: &str) -> bool {
        let mut state = self.state.lock();
        state.dead.retain(|d| d != uid);
        let new = state.live.insert(uid.to_owned(), Instant::now()).is_none();
        drop(state);
        if new {
            self.changed.notify_waiters();
        }
        new
    }

    /// `uid` stopped cleanly: its connections close with it. True if it
    /// was known alive.
    fn closed(&self, uid: &str) -> bool {
        let removed = self.state.lock().live.remove(uid).is_some();
        if removed {
            self.changed.notify_waiters();
        }
        removed
    }

    /// Takes for dead the nodes not heard from for `timeout`; returns them.
    fn sweep(&self, timeout: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let died: Vec<String> = (state.live.iter())
            .filter(|(_, last)| now.duration_since(**last) > timeout)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &died {
            state.live.remove(uid);
            state.dead.push_back(uid.clone());
        }
        while state.dead.len() > MAX_DEAD {
            state.dead.pop_front();
        }
        drop(state);
        if !died.is_empty() {
            self.changed.notify_waiters();
        }
        died
    }

    /// The nodes alive, sorted.
    pub(crate) fn live(&self) -> Vec<String> {
        let mut live: Vec<String> = self.state.lock().live.keys().cloned().collect();
        live.sort();
        live
    }

    /// The nodes taken for dead, oldest first.
    pub(crate) fn dead(&self) -> Vec<String> {
        self.state.lock().dead.iter().cloned().collect()
    }

    /// Every node alive counts as heard now: this node itself was not
    /// listening (frozen, or cut off), so their silence meant nothing.
    fn refresh(&self) {
        let now = Instant::now();
        for last in self.state.lock().live.values_mut() {
            *last = now;
        }
    }

    /// `uid` was dead and its subscription is gone too: forgotten.
    pub(crate) fn forget(&self, uid: &str) {
        self.state.lock().dead.retain(|d| d != uid);
    }
}

/// When this node's last heartbeat reached Redis, read without a lock on
/// every bus message: nanoseconds from `epoch` to that moment, plus one
/// (0: none yet), in an atomic. The moment is stored, not a flag set
/// when it grows old: whoever asks compares it with the clock, so a node
/// is out of touch the moment it wakes from a freeze, before the
/// heartbeat task (frozen with the rest, and not necessarily the first
/// task to run) could set anything. `Instant` is the monotonic clock,
/// which runs through a SIGSTOP.
pub(crate) struct LastBeat {
    epoch: Instant,
    nanos: AtomicU64,
}

impl LastBeat {
    pub(crate) fn new() -> LastBeat {
        LastBeat {
            epoch: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    /// A heartbeat reached Redis now.
    fn note(&self) {
        self.nanos.store(self.since_epoch() + 1, Relaxed);
    }

    /// How long since the last heartbeat reached Redis; `None` before the
    /// first.
    fn silent(&self) -> Option<Duration> {
        match self.nanos.load(Relaxed) {
            0 => None,
            at => Some(Duration::from_nanos(
                (self.since_epoch() + 1).saturating_sub(at),
            )),
        }
    }

    /// Nanoseconds since `epoch` (u64 holds 584 years of them).
    fn since_epoch(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

impl Shared {
    /// Publishes a heartbeat at once, on the publishing connection, not
    /// through the publish queue: one stuck behind a full queue would say
    /// nothing true, and while the connection is down there is no one to
    /// tell.
    ///
    /// Nothing is said while this node is out of touch: the others may
    /// have dropped it, and count it again only once it rejoined.
    async fn beat(&self, kind: u8) -> bool {
        if self.out_of_touch() {
            return false;
        }
        self.beat_now(kind).await
    }

    /// Publishes a heartbeat; returns whether Redis took it (and notes
    /// when).
    async fn beat_now(&self, kind: u8) -> bool {
        let Some(mut conn) = self.command.lock().clone() else {
            return false;
        };
        let payload = serde_json::to_vec(&Beat {
            uid: &self.uid,
            kind,
        })
        .unwrap_or_default();
        let sent = timed(
            self.config.command_timeout,
            redis::cmd("PUBLISH")
                .arg(heartbeat_channel(&self.config.key_prefix))
                .arg(payload)
                .query_async::<()>(&mut conn),
        )
        .await;
        match sent {
            Ok(()) => {
                self.last_beat.note();
                true
            }
            Err(err) => {
                tracing::debug!(%err, "cluster: a heartbeat was not published");
                false
            }
        }
    }

    /// This node (again) holds its subscriptions: it says so, and the
    /// others answer at once.
    pub(crate) async fn announce(&self) -> bool {
        self.beat_now(INITIAL_HEARTBEAT).await
    }

    /// This node stops: the others drop it at once.
    pub(crate) async fn farewell(&self) {
        self.beat_now(ADAPTER_CLOSE).await;
    }

    /// How long since this node's last heartbeat reached Redis, if that
    /// is past `heartbeat_timeout`: the others may have dropped it.
    fn lapsed(&self) -> Option<Duration> {
        let silent = self.last_beat.silent()?;
        (silent > self.config.heartbeat_timeout).then_some(silent)
    }

    /// Whether the others may have dropped this node and it has not
    /// rejoined yet (see the module docs).
    pub(crate) fn out_of_touch(&self) -> bool {
        self.rejoining.load(Relaxed) || self.bus_gap.load(Relaxed) || self.lapsed().is_some()
    }

    /// This node may have missed what the cluster said (see the module
    /// docs): silent past the timeout, it announces itself (the others
    /// count it again and answer); then the application drops what the
    /// others ended and closes its clients. A cut subscription only needs
    /// the clients closed. False if the announce did not reach Redis
    /// (tried again later); true if there was nothing to do.
    pub(crate) async fn rejoin(&self) -> bool {
        let _one = self.rejoin_lock.lock().await;
        let dropped = self.rejoining.load(Relaxed);
        let gap = self.bus_gap.load(Relaxed);
        if !dropped && !gap {
            return true; // another rejoin just ran
        }
        let silent = self.last_beat.silent().unwrap_or_default();
        if dropped {
            if !self.announce().await {
                return false;
            }
            // Hearing the cluster starts again now: a whole timeout before
            // a silence means anything to this node.
            *self.up_since.lock() = Some(Instant::now());
        }
        self.stats.rejoins.fetch_add(1, Relaxed);
        if dropped {
            tracing::warn!(
                ?silent,
                timeout = ?self.config.heartbeat_timeout,
                "cluster: this node was silent past the heartbeat timeout (frozen, or cut off \
                 from Redis), so the others may have dropped it and ended its live state: it \
                 rejoins, closing its clients' connections so that they reconnect and recover"
            );
        } else {
            tracing::warn!(
                "cluster: the subscription to Redis was cut and is back; broadcasts published \
                 meanwhile never reached this node: closing its clients' connections so that \
                 they reconnect and recover them"
            );
        }
        let hook = self.hooks.read().rejoined.clone();
        if let Some(hook) = hook {
            hook(Rejoin { silent, dropped }).await;
        }
        self.bus_gap.store(false, Relaxed);
        self.rejoining.store(false, Relaxed);
        true
    }

    /// Tells the application that `uid` is no longer counted.
    fn node_dropped(&self, uid: &str) {
        let hook = self.hooks.read().node_dropped.clone();
        if let Some(hook) = hook {
            hook(uid);
        }
    }

    /// Whether this node's connections have been up for a whole
    /// `heartbeat_timeout`: then every node alive has been heard from, and
    /// one not heard from is dead, not merely unheard. Never while it is
    /// out of touch (frozen meanwhile, it heard nothing).
    pub(crate) fn hears_the_others(&self) -> bool {
        !self.out_of_touch()
            && self
                .up_since
                .lock()
                .is_some_and(|since| since.elapsed() >= self.config.heartbeat_timeout)
    }

    /// A message on the heartbeat channel (read on the subscriber's task:
    /// the answer to a newcomer is sent from a task of its own).
    pub(crate) fn on_heartbeat(self: &Arc<Self>, message: &[u8]) {
        let Ok(beat) = serde_json::from_slice::<Beat>(message) else {
            self.stats
                .requests_malformed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        if beat.uid == self.uid {
            return;
        }
        match beat.kind {
            ADAPTER_CLOSE => {
                if self.nodes.closed(beat.uid) {
                    tracing::info!(node = beat.uid, "cluster: a node left");
                    self.node_dropped(beat.uid);
                }
            }
            kind => {
                if self.nodes.seen(beat.uid) {
                    tracing::info!(node = beat.uid, "cluster: a node joined");
                }
                if kind == INITIAL_HEARTBEAT {
                    let shared = self.clone();
                    tokio::spawn(async move {
                        shared.beat(HEARTBEAT).await;
                    });
                }
            }
        }
    }
}

/// The heartbeat task: beats every `heartbeat_interval`, announces the
/// node whenever its connections are up again, and takes for dead the
/// nodes silent for `heartbeat_timeout` (checked ten times per timeout, so
/// a node that stops is dropped within two intervals, as the defaults
/// are).
pub(crate) async fn run(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let timeout = shared.config.heartbeat_timeout;
    let mut beat = tokio::time::interval(shared.config.heartbeat_interval);
    let mut sweep = tokio::time::interval((timeout / 10).max(Duration::from_millis(10)));
    for tick in [&mut beat, &mut sweep] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    // Whether the others were told this node is up since it last was not.
    let mut announced = false;
    loop {
        tokio::select! {
            _ = beat.tick() => {
                shared.beat(HEARTBEAT).await;
            }
            _ = sweep.tick() => {
                let up = shared.stats.publish_up.load(Relaxed) && shared.stats.subscribe_up.load(Relaxed);
                // Silent past the timeout itself: before anything else,
                // so that the nodes it counted are not taken for dead for
                // its own silence.
                if shared.lapsed().is_some() && !shared.rejoining.swap(true, Relaxed) {
                    shared.nodes.refresh();
                }
                if shared.rejoining.load(Relaxed) || shared.bus_gap.load(Relaxed) {
                    if up && shared.rejoin().await {
                        announced = true;
                    }
                } else if up && !announced {
                    // Once both connections work (at start, after Redis
                    // came back): the others answer with their heartbeats
                    // at once.
                    announced = shared.announce().await;
                }
                if !up {
                    announced = false;
                }
                {
                    let mut since = shared.up_since.lock();
                    match (up, *since) {
                        (true, None) => *since = Some(Instant::now()),
                        (false, Some(_)) => *since = None,
                        _ => {}
                    }
                }
                // Judged before the sweep: a node that was not hearing
                // anyone takes the silent for dead, not for gone.
                let hearing = shared.hears_the_others();
                for uid in shared.nodes.sweep(timeout) {
                    tracing::warn!(
                        node = uid,
                        silent_for = ?timeout,
                        "cluster: a node stopped sending heartbeats; taken for dead"
                    );
                    if hearing {
                        shared.node_dropped(&uid);
                    }
                }
            }
            _ = stop_requested(&mut stopped) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_node_dies_a_heard_one_comes_back_a_closed_one_is_gone() {
        let nodes = Registry::default();
        assert!(nodes.seen("B"));
        assert!(!nodes.seen("B"));
        assert!(nodes.seen("C"));
        assert_eq!(nodes.live(), ["B", "C"]);
        assert!(nodes.sweep(Duration::from_secs(60)).is_empty());
        let mut died = nodes.sweep(Duration::ZERO);
        died.sort();
        assert_eq!(died, ["B", "C"]);
        assert!(nodes.live().is_empty());
        assert_eq!(nodes.dead().len(), 2);
        // Heard again: alive, no longer dead.
        assert!(nodes.seen("B"));
        assert_eq!(
            (nodes.live(), nodes.dead()),
            (vec!["B".into()], vec!["C".into()])
        );
        nodes.closed("B");
        nodes.forget("C");
        assert!(nodes.live().is_empty() && nodes.dead().is_empty());
    }

    #[test]
    fn after_this_node_was_silent_the_nodes_it_counted_get_a_fresh_timeout() {
        let nodes = Registry::default();
        nodes.seen("B");
        // Silent for longer than the timeout below, as far as this node
        // heard: without the refresh it would die.
        std::thread::sleep(Duration::from_millis(50));
        nodes.refresh();
        assert!(nodes.sweep(Duration::from_millis(40)).is_empty());
        assert_eq!(nodes.live(), ["B"]);
    }

    #[test]
    fn the_last_beat_is_none_until_one_reached_redis_then_ages_with_the_clock() {
        let last = LastBeat::new();
        assert_eq!(last.silent(), None);
        last.note();
        let first = last.silent().expect("a beat was noted");
        assert!(first < Duration::from_secs(1), "{first:?}");
        // A later reading is never younger: the clock is monotonic.
        assert!(last.silent().unwrap() >= first);
    }

    #[test]
    fn dead_nodes_are_remembered_up_to_a_bound() {
        let nodes = Registry::default();
        for i in 0..MAX_DEAD + 10 {
            nodes.seen(&i.to_string());
        }
        nodes.sweep(Duration::ZERO);
        let dead = nodes.dead();
        assert_eq!(dead.len(), MAX_DEAD);
    }
}
