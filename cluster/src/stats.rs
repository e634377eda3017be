//! What the bus counts, for `/metrics`, and the throttle that keeps a
//! repeated failure from flooding the log while every occurrence is still
//! counted.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The bus's counters; read with [`BusStats::snapshot`].
#[derive(Debug, Default)]
pub struct BusStats {
    pub(crate) published: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_too_large: AtomicU64,
    pub(crate) dropped_closed: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) queued: AtomicUsize,
    pub(crate) queued_bytes: AtomicUsize,
    pub(crate) delivered: AtomicU64,
    pub(crate) own: AtomicU64,
    pub(crate) unknown_room: AtomicU64,
    pub(crate) out_of_touch: AtomicU64,
    pub(crate) other_namespace: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) received_too_large: AtomicU64,
    pub(crate) publish_reconnects: AtomicU64,
    pub(crate) subscribe_reconnects: AtomicU64,
    pub(crate) rejoins: AtomicU64,
    pub(crate) requests_served: AtomicU64,
    pub(crate) requests_malformed: AtomicU64,
    pub(crate) requests_sent: AtomicU64,
    pub(crate) requests_incomplete: AtomicU64,
    pub(crate) publish_up: AtomicBool,
    pub(crate) subscribe_up: AtomicBool,
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Broadcasts Redis accepted.
    pub published: u64,
    /// Broadcasts not published because the publish queue was full
    /// (`publish_queue` or `publish_queue_bytes`).
    pub dropped_queue_full: u64,
    /// Broadcasts not published because they were over `max_message_bytes`.
    pub dropped_too_large: u64,
    /// Broadcasts emitted after the bus was closed (shutdown).
    pub dropped_closed: u64,
    /// Broadcasts in a pipeline that failed (the connection broke): they
    /// may or may not have reached Redis, and are not sent again.
    pub publish_failed: u64,
    /// Broadcasts waiting in the publish queue.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// Bus messages delivered to this node's sockets.
    pub delivered: u64,
    /// This node's own messages, back from Redis (ignored).
    pub own: u64,
    /// Messages for a room no socket of this node is in (ignored unread).
    pub unknown_room: u64,
    /// Broadcasts read while this node was out of touch (it rejoins and
    /// closes its clients, which recover them from the log): not delivered.
    pub out_of_touch: u64,
    /// Messages of another namespace on a matching channel (ignored).
    pub other_namespace: u64,
    /// Messages that are not a broadcast (counted and logged).
    pub malformed: u64,
    /// Messages over `max_message_bytes` (counted and logged, unread).
    pub received_too_large: u64,
    /// Times the publishing connection was opened again after a failure.
    pub publish_reconnects: u64,
    /// Times the subscribing connection was opened again after a failure.
    pub subscribe_reconnects: u64,
    /// Times this node found it had been silent past `heartbeat_timeout`
    /// (frozen, or cut off from Redis) and rejoined the cluster clean.
    pub rejoins: u64,
    /// Requests of other nodes (or of an emitter) served.
    pub requests_served: u64,
    /// Requests or answers that could not be read (counted and logged).
    pub requests_malformed: u64,
    /// Requests this node sent that wait for answers.
    pub requests_sent: u64,
    /// Of those, the ones that ended without every node's answer.
    pub requests_incomplete: u64,
}

impl BusStats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            published: self.published.load(Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Relaxed),
            dropped_too_large: self.dropped_too_large.load(Relaxed),
            dropped_closed: self.dropped_closed.load(Relaxed),
            publish_failed: self.publish_failed.load(Relaxed),
            queued: self.queued.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            own: self.own.load(Relaxed),
            unknown_room: self.unknown_room.load(Relaxed),
            out_of_touch: self.out_of_touch.load(Relaxed),
            other_namespace: self.other_namespace.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            received_too_large: self.received_too_large.load(Relaxed),
            publish_reconnects: self.publish_reconnects.load(Relaxed),
            subscribe_reconnects: self.subscribe_reconnects.load(Relaxed),
            rejoins: self.rejoins.load(Relaxed),
            requests_served: self.requests_served.load(Relaxed),
            requests_malformed: self.requests_malformed.load(Relaxed),
            requests_sent: self.requests_sent.load(Relaxed),
            requests_incomplete: self.requests_incomplete.load(Relaxed),
        }
    }
}

/// Lets a message through at most once per period, and says how many were
/// held back since the last one.
#[derive(Debug)]
pub(crate) struct Throttle {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub(crate) fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back)` when this occurrence is to be logged.
    pub(crate) fn check(&self) -> Option<u64> {
        let mut state = self.state.lock();
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.period => {
                state.1 += 1;
                None
            }
            _ => {
                let held = state.1;
                *state = (Some(now), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_through_per_period_and_counts_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.check(), Some(0));
        assert_eq!(throttle.check(), None);
        assert_eq!(throttle.check(), None);
        let throttle = Throttle::new(Duration::ZERO);
        assert_eq!(throttle.check(), Some(0));
        assert_eq!(throttle.check(), Some(0));
    }
}
