//! The per-user message rate: a token bucket per user (of every device
//! together, unlike the per-socket event limit), so that opening more
//! connections does not let one user flood a conversation.

use std::time::Instant;

use crate::limits::KeyedBuckets;

/// Messages per second per user, with a burst.
pub struct UserRate {
    buckets: KeyedBuckets,
}

impl UserRate {
    /// `per_sec` 0 turns the limit off; the burst is at least one message.
    pub fn new(per_sec: f64, burst: f64) -> UserRate {
        UserRate {
            buckets: KeyedBuckets::new(per_sec, burst.max(1.0)),
        }
    }

    /// Takes one message from `user`'s bucket; false if it is empty.
    pub fn admit(&self, user: &str) -> bool {
        self.admit_at(user, Instant::now())
    }

    fn admit_at(&self, user: &str, now: Instant) -> bool {
        // The map holds users (authenticated ids), not client-chosen
        // strings, and forgets refilled buckets as it goes.
        self.buckets.admit_at(user, now)
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
