//! The per-user message rate: a token bucket per user (of every device
//! together, unlike the per-socket event limit), so that opening more
//! connections does not let one user flood a conversation.
//!
//! Every write of every user takes a bucket, so the buckets are split
//! into [`SHARDS`] maps, each behind its own lock, a user's always in the
//! same one: two users' writes meet on a lock only when their ids hash to
//! the same shard (one map for all was one lock that every write of the
//! component took).

use std::hash::BuildHasher;
use std::time::Instant;

use crate::limits::KeyedBuckets;

/// How many maps the users are spread over: enough that the writes of a
/// few cores' worth of sockets seldom meet on one lock, few enough that
/// the maps cost nothing worth counting (under 2 KB empty, once a hub).
const SHARDS: usize = 16;

/// Messages per second per user, with a burst.
pub struct UserRate {
    /// Each forgets its own refilled buckets as it is used (see
    /// [`KeyedBuckets`]): memory follows the users that wrote recently.
    shards: Box<[KeyedBuckets]>,
    /// False when the limit is off (`per_sec` 0 or less, as
    /// [`KeyedBuckets`] decides): every write is admitted without hashing
    /// the user.
    limited: bool,
    /// Which shard a user is in: keyed at random per process, so ids
    /// cannot be chosen to pile into one shard.
    hasher: std::collections::hash_map::RandomState,
}

impl UserRate {
    /// `per_sec` 0 turns the limit off; the burst is at least one message.
    pub fn new(per_sec: f64, burst: f64) -> UserRate {
        UserRate {
            limited: per_sec > 0.0 || per_sec.is_nan(),
            shards: (0..SHARDS)
                .map(|_| KeyedBuckets::new(per_sec, burst.max(1.0)))
                .collect(),
            hasher: Default::default(),
        }
    }

    /// Takes one message from `user`'s bucket; false if it is empty.
    pub fn admit(&self, user: &str) -> bool {
        self.admit_at(user, Instant::now())
    }

    fn admit_at(&self, user: &str, now: Instant) -> bool {
        if !self.limited {
            return true;
        }
        // The maps hold users (authenticated ids), not client-chosen
        // strings, and forget refilled buckets as they go.
        self.shard(user).admit_at(user, now)
    }

    fn shard(&self, user: &str) -> &KeyedBuckets {
        // The remainder is below SHARDS: it fits any usize.
        &self.shards[(self.hasher.hash_one(user) % SHARDS as u64) as usize]
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

    #[test]
    fn every_user_has_a_bucket_of_their_own_whatever_their_shard() {
        let rate = UserRate::new(10.0, 2.0);
        let t0 = Instant::now();
        let users: Vec<String> = (0..200).map(|i| format!("u{i}")).collect();
        // Many users per shard: each still gets exactly their own burst.
        for user in &users {
            assert!(rate.admit_at(user, t0));
            assert!(rate.admit_at(user, t0));
        }
        for user in &users {
            assert!(!rate.admit_at(user, t0), "{user} has used their burst");
        }
        let used: usize = rate.shards.iter().filter(|s| !s.is_empty()).count();
        assert!(used > 1, "the users are spread over the shards");
        let kept: usize = rate.shards.iter().map(KeyedBuckets::len).sum();
        assert_eq!(kept, users.len(), "one bucket per user, in one shard");
    }
}
