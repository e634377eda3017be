//! The per-user message rate: a token bucket per user (of every device
//! together, unlike the per-socket event limit), so that opening more
//! connections does not let one user flood a conversation; in a cluster,
//! of every node together ([`SenderRate`]: this node's bucket first, then
//! the one the nodes share).
//!
//! One lock for every user's bucket, on purpose: an admit holds it about a
//! quarter of a microsecond, and splitting the map into shards measured
//! no faster (`docs/BENCHMARKS.md`, "The chat writer").

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::limits::{SenderRate, SharedBuckets};

/// Messages per second per user, with a burst.
pub struct UserRate {
    buckets: SenderRate,
}

impl UserRate {
    /// `per_sec` 0 turns the limit off; the burst is at least one message.
    /// `shared`: the cluster's buckets, `None` alone.
    pub fn new(per_sec: f64, burst: f64, shared: Option<Arc<dyn SharedBuckets>>) -> UserRate {
        UserRate {
            buckets: SenderRate::new("write", per_sec, burst.max(1.0), shared),
        }
    }

    /// Takes one message from `user`'s bucket on this node; false if it
    /// is empty. What it admits is [`confirm`](Self::confirm)ed next.
    pub fn admit(&self, user: &str) -> bool {
        self.admit_at(user, Instant::now())
    }

    fn admit_at(&self, user: &str, now: Instant) -> bool {
        // The map holds users (authenticated ids), not client-chosen
        // strings, and forgets refilled buckets as it goes.
        self.buckets.admit_here_at(user, 1, now)
    }

    /// Takes the message [`admit`](Self::admit) admitted from `user`'s
    /// bucket in the cluster; false if the user's other nodes used it up
    /// (true at once alone).
    pub fn confirm(&self, user: &str) -> impl Future<Output = bool> + Send + use<> {
        self.buckets.confirm(user, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_user_gets_the_burst_then_the_rate() {
        let rate = UserRate::new(10.0, 3.0, None);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rate.admit_at("alice", t0));
        }
        assert!(!rate.admit_at("alice", t0));
        assert!(rate.admit_at("bob", t0), "buckets are per user");
        assert!(rate.admit_at("alice", t0 + Duration::from_millis(100)));
        assert!(!rate.admit_at("alice", t0 + Duration::from_millis(100)));
        assert!(UserRate::new(0.0, 1.0, None).admit_at("x", t0));
    }

    /// A measurement, not a check (`cargo test --release -p hub --lib --
    /// --ignored user_rate_under_threads`): `THREADS` threads (default 4)
    /// taking writes of 1,000 users from one `UserRate` as fast as they
    /// can, the limit on but never reached. Prints admits/s.
    #[test]
    #[ignore]
    fn user_rate_under_threads() {
        let threads: usize = std::env::var("THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4);
        let per_thread = 2_000_000 / threads;
        let rate = UserRate::new(1e12, 1e12, None);
        let users: Vec<String> = (0..1_000).map(|i| format!("user-{i}")).collect();
        let started = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (rate, users) = (&rate, &users);
                scope.spawn(move || {
                    for i in 0..per_thread {
                        assert!(rate.admit(&users[(i * 7 + t * 131) % users.len()]));
                    }
                });
            }
        });
        let secs = started.elapsed().as_secs_f64();
        println!(
            "user rate: {threads} threads, {} admits in {secs:.3} s: {:.0} admits/s",
            threads * per_thread,
            (threads * per_thread) as f64 / secs
        );
    }
}
