//! The publish API's rate per key (`api.recipients_per_sec`, bursts of
//! `api.recipient_burst`): a token bucket per configured key, charged what
//! each publish and notification request costs — the users and rooms it
//! names ([`hub::backend_api::PublishRequest::recipients`]) — rather than
//! one per request, so that a key's store writes and fan-out stay bounded
//! whatever the size of its requests. A request over it is answered 429
//! with `Retry-After`, and nothing of it is done.
//!
//! A key whose bucket is empty is refused before its body is read (a key
//! over its rate does not get its bodies parsed either); one with tokens
//! left has its request read, checked, then charged its cost, all of it or
//! nothing. A cost over the burst is not refused for ever: it waits for a
//! full bucket and leaves the key in debt
//! ([`hub::limits::TokenBucket::charge`]).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use hub::limits::{TokenBucket, refill_time};

/// A bucket per configured key, by the key's place in `[api] keys`: the
/// keys are the configuration's, so this holds no more than they are.
#[derive(Debug)]
pub struct KeyRates {
    /// Recipients per second; 0 turns the limit off.
    per_sec: f64,
    burst: f64,
    buckets: Vec<Mutex<TokenBucket>>,
}

impl KeyRates {
    /// Full buckets for `keys` keys.
    pub fn new(keys: usize, per_sec: f64, burst: f64) -> KeyRates {
        let now = Instant::now();
        KeyRates {
            per_sec,
            burst,
            buckets: (0..keys)
                .map(|_| Mutex::new(TokenBucket::new(burst, now)))
                .collect(),
        }
    }

    /// The sustained rate, for the refusal's message.
    pub fn per_sec(&self) -> f64 {
        self.per_sec
    }

    /// Whether key `key` may be heard now (its bucket holds at least one
    /// token), or how long until it may; nothing is taken.
    pub fn ready(&self, key: usize) -> Result<(), Duration> {
        self.ready_at(key, Instant::now())
    }

    fn ready_at(&self, key: usize, now: Instant) -> Result<(), Duration> {
        let Some(bucket) = self.bucket(key) else {
            return Ok(());
        };
        let available = bucket.lock().available(self.per_sec, self.burst, now);
        if available >= 1.0 {
            return Ok(());
        }
        Err(refill_time(1.0 - available, self.per_sec))
    }

    /// Takes `cost` from key `key`'s bucket, or says how long until it
    /// could be taken (nothing taken).
    pub fn charge(&self, key: usize, cost: usize) -> Result<(), Duration> {
        self.charge_at(key, cost, Instant::now())
    }

    fn charge_at(&self, key: usize, cost: usize, now: Instant) -> Result<(), Duration> {
        let Some(bucket) = self.bucket(key) else {
            return Ok(());
        };
        bucket
            .lock()
            .charge(cost as f64, self.per_sec, self.burst, now)
    }

    /// Key `key`'s bucket; none when the limit is off.
    fn bucket(&self, key: usize) -> Option<&Mutex<TokenBucket>> {
        if self.per_sec <= 0.0 {
            return None;
        }
        self.buckets.get(key)
    }
}

/// `wait` as a `Retry-After` value: whole seconds, rounded up, at least 1
/// (a client retrying at once would be refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_charged_its_costs_and_told_how_long_to_wait() {
        let rates = KeyRates::new(2, 100.0, 1_000.0);
        let t0 = Instant::now();
        assert_eq!(rates.charge_at(0, 600, t0), Ok(()));
        let wait = rates.charge_at(0, 600, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6, "{wait:?}");
        assert_eq!(rates.ready_at(0, t0), Ok(()), "400 left");
        assert_eq!(rates.charge_at(1, 1_000, t0), Ok(()), "keys are apart");
        assert!(rates.ready_at(1, t0).is_err(), "empty: refused unread");
        // Over the burst: taken from a full bucket, into debt.
        let full = t0 + Duration::from_secs(10);
        assert_eq!(rates.charge_at(1, 3_000, full), Ok(()));
        let wait = rates.ready_at(1, full).unwrap_err();
        assert!((wait.as_secs_f64() - 20.01).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn no_limit_at_zero_and_retry_after_rounds_up() {
        let off = KeyRates::new(1, 0.0, 1.0);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(off.charge_at(0, 1_000_000, t0), Ok(()));
        }
        assert_eq!(off.ready_at(0, t0), Ok(()));
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2_001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn a_rate_of_almost_nothing_refuses_without_panicking() {
        // 1e-300 a second passes the configuration's check (finite, not
        // negative); the wait it gives is beyond what a Duration holds.
        let rates = KeyRates::new(1, 1e-300, 1.0);
        let t0 = Instant::now();
        assert_eq!(rates.charge_at(0, 1, t0), Ok(()));
        assert_eq!(rates.ready_at(0, t0), Err(Duration::MAX));
        assert_eq!(rates.charge_at(0, 1, t0), Err(Duration::MAX));
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }
}
