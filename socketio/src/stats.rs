//! Counters an operator reads: events in and out by name, and how far each
//! broadcast fans out. Cheap on the hot path (a read lock and an atomic add)
//! and bounded: event names come from clients, so only the first
//! [`StatsConfig::max_event_names`] names of a namespace get a counter of
//! their own; later names, and names longer than
//! [`StatsConfig::max_event_name_len`], are counted under [`OTHER`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

/// The name under which events beyond the bound are counted.
pub const OTHER: &str = "_other";

/// Bounds on what the counters remember.
#[derive(Debug, Clone, Copy)]
pub struct StatsConfig {
    /// Distinct event names counted separately per namespace and direction.
    pub max_event_names: usize,
    /// Longer names are counted under [`OTHER`].
    pub max_event_name_len: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            max_event_names: 64,
            max_event_name_len: 64,
        }
    }
}

/// Events counted by name, with a bounded number of names.
#[derive(Debug, Default)]
pub struct EventCounts {
    config: StatsConfig,
    named: RwLock<HashMap<Box<str>, AtomicU64>>,
    other: AtomicU64,
}

impl EventCounts {
    pub fn new(config: StatsConfig) -> EventCounts {
        EventCounts {
            config,
            named: RwLock::default(),
            other: AtomicU64::new(0),
        }
    }

    /// Adds `n` to the count of `name`.
    pub fn add(&self, name: &str, n: u64) {
        {
            let named = self.named.read();
            if let Some(counter) = named.get(name) {
                counter.fetch_add(n, Ordering::Relaxed);
                return;
            }
            // Once full, new names never take the write lock: a client
            // sending random names must not serialize the namespace.
            if named.len() >= self.config.max_event_names {
                self.other.fetch_add(n, Ordering::Relaxed);
                return;
            }
        }
        // A client may name an event `_other`: it must not become a second
        // series with the overflow's label.
        if name.len() <= self.config.max_event_name_len && name != OTHER {
            let mut named = self.named.write();
            if let Some(counter) = named.get(name) {
                counter.fetch_add(n, Ordering::Relaxed);
                return;
            }
            if named.len() < self.config.max_event_names {
                named.insert(name.into(), AtomicU64::new(n));
                return;
            }
        }
        self.other.fetch_add(n, Ordering::Relaxed);
    }

    /// Every count, by name, sorted; [`OTHER`] last when not zero.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = self
            .named
            .read()
            .iter()
            .map(|(name, n)| (name.to_string(), n.load(Ordering::Relaxed)))
            .collect();
        counts.sort();
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            counts.push((OTHER.to_owned(), other));
        }
        counts
    }
}

/// A histogram with fixed upper bounds (Prometheus-style: cumulative when
/// read, plus the sum and count of observations).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus one for values above the last bound.
    buckets: Box<[AtomicU64]>,
    /// Sum of observations, as `f64` bits.
    sum: AtomicU64,
}

/// What a [`Histogram`] holds at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations ≤ bound)`, cumulative, ending at `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// A histogram with these ascending upper bounds.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            buckets,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
            count: cumulative,
        }
    }
}

/// Recipients per broadcast: the buckets of the fan-out histogram.
pub const FANOUT_BOUNDS: &[f64] = &[0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// What one namespace counts.
#[derive(Debug)]
pub struct NamespaceStats {
    /// Events received from clients, by name.
    pub events_in: EventCounts,
    /// Event packets queued to clients, by name (a broadcast counts once
    /// per recipient).
    pub events_out: EventCounts,
    /// Recipients per broadcast.
    pub fanout: Histogram,
    /// Connections closed because a socket had more than
    /// `max_pending_events` events (or `max_pending_bytes` bytes) waiting.
    pub inbox_overflows: AtomicU64,
    /// Events the namespace's handler refused unhandled (over a rate limit,
    /// say): counted by the handler.
    pub events_refused: AtomicU64,
    /// CONNECTs that recovered their socket (connection state recovery).
    pub recovered: AtomicU64,
    /// CONNECTs that asked to recover a socket and did not: its session
    /// unknown, expired, dropped for room or another owner's; or its
    /// missed packets no longer all held, or more than the connection
    /// could take (then the connection is closed before the client is
    /// told anything, and its next attempt is counted too).
    pub not_recovered: AtomicU64,
}

impl NamespaceStats {
    pub fn new(config: StatsConfig) -> NamespaceStats {
        NamespaceStats {
            events_in: EventCounts::new(config),
            events_out: EventCounts::new(config),
            fanout: Histogram::new(FANOUT_BOUNDS),
            inbox_overflows: AtomicU64::new(0),
            events_refused: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            not_recovered: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_beyond_the_bound_are_counted_as_other() {
        let counts = EventCounts::new(StatsConfig {
            max_event_names: 2,
            max_event_name_len: 7,
        });
        counts.add(OTHER, 0); // not a name of its own, even with room left
        counts.add("a", 1);
        counts.add("b", 2);
        counts.add("a", 3);
        counts.add("c", 1);
        counts.add("toolong!", 10);
        counts.add(OTHER, 100);
        assert_eq!(
            counts.snapshot(),
            vec![
                ("a".to_owned(), 4),
                ("b".to_owned(), 2),
                (OTHER.to_owned(), 111)
            ]
        );
    }

    #[test]
    fn a_histogram_is_cumulative_with_sum_and_count() {
        let histogram = Histogram::new(&[1.0, 10.0]);
        for value in [0.5, 1.0, 5.0, 50.0] {
            histogram.observe(value);
        }
        assert_eq!(
            histogram.snapshot(),
            HistogramSnapshot {
                buckets: vec![(1.0, 2), (10.0, 3), (f64::INFINITY, 4)],
                sum: 56.5,
                count: 4,
            }
        );
    }
}
