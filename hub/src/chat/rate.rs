//! The per-user message rate: a token bucket per user (of every device
//! together, unlike the per-socket event limit), so that opening more
//! connections does not let one user flood a conversation.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

/// Buckets tracked before full (idle) ones are forgotten.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Messages per second per user, with a burst.
pub struct UserRate {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl UserRate {
    /// `per_sec` 0 turns the limit off.
    pub fn new(per_sec: f64, burst: f64) -> UserRate {
        UserRate {
            per_sec,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one message from `user`'s bucket; false if it is empty.
    pub fn admit(&self, user: &str) -> bool {
        self.admit_at(user, Instant::now())
    }

    fn admit_at(&self, user: &str, now: Instant) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() >= PRUNE_AT && !buckets.contains_key(user) {
            // The map holds users (authenticated ids), not client-chosen
            // strings, but is still bounded: a bucket that has refilled is
            // the same as no bucket.
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec < burst
            });
        }
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_user_gets_the_burst_then_the_rate() {
        let rate = UserRate::new(10.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rate.admit_at("alice", t0));
        }
        assert!(!rate.admit_at("alice", t0));
        assert!(rate.admit_at("bob", t0), "buckets are per user");
        assert!(rate.admit_at("alice", t0 + Duration::from_millis(100)));
        assert!(!rate.admit_at("alice", t0 + Duration::from_millis(100)));
        assert!(UserRate::new(0.0, 1.0).admit_at("x", t0));
    }
}
