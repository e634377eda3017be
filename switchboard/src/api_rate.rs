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
//!
//! In a cluster the rate is the key's on every node together: what this
//! node's bucket admits is then charged to the key's bucket every node
//! shares ([`SharedBuckets`], in Redis), whose refusal is the same 429
//! with its own wait — so one key sending to K nodes behind a load
//! balancer does not get K times its rate. The shared bucket is named by
//! a hash of the key, never the key itself. Redis not answering admits
//! what this node's bucket admitted (see [`hub::limits::SenderRate`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use hub::limits::{SharedBuckets, SharedTake, TokenBucket, refill_time};

/// A bucket per configured key, by the key's place in `[api] keys`: the
/// keys are the configuration's, so this holds no more than they are.
pub struct KeyRates {
    /// Recipients per second; 0 turns the limit off.
    per_sec: f64,
    burst: f64,
    buckets: Vec<Mutex<TokenBucket>>,
    /// In a cluster, the buckets every node shares, and each key's name
    /// there (by place).
    shared: Option<(Arc<dyn SharedBuckets>, Vec<String>)>,
}

impl std::fmt::Debug for KeyRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRates")
            .field("per_sec", &self.per_sec)
            .field("burst", &self.burst)
            .field("keys", &self.buckets.len())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl KeyRates {
    /// Full buckets for `keys` keys, each this node's alone.
    pub fn new(keys: usize, per_sec: f64, burst: f64) -> KeyRates {
        let now = Instant::now();
        KeyRates {
            per_sec,
            burst,
            buckets: (0..keys)
                .map(|_| Mutex::new(TokenBucket::new(burst, now)))
                .collect(),
            shared: None,
        }
    }

    /// The buckets of `keys` (the configured secrets, in order), charged
    /// on this node, then in `shared` (a cluster's: every node's charges
    /// together).
    pub fn shared(
        keys: &[&str],
        per_sec: f64,
        burst: f64,
        shared: Arc<dyn SharedBuckets>,
    ) -> KeyRates {
        KeyRates {
            shared: Some((shared, keys.iter().map(|key| shared_name(key)).collect())),
            ..KeyRates::new(keys.len(), per_sec, burst)
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
    /// could be taken (nothing taken): this node's bucket, then in a
    /// cluster the one every node shares. A cost the shared bucket refuses
    /// stays taken here: a key the other nodes' requests hold back is then
    /// refused here unread, without asking Redis again.
    pub async fn charge(&self, key: usize, cost: usize) -> Result<(), Duration> {
        self.charge_at(key, cost, Instant::now())?;
        let Some((shared, names)) = &self.shared else {
            return Ok(());
        };
        let Some(name) = names.get(key).filter(|_| self.per_sec > 0.0) else {
            return Ok(());
        };
        match shared
            .take(name, cost as f64, self.per_sec, self.burst)
            .await
        {
            SharedTake::Refused(wait) => Err(wait),
            SharedTake::Taken | SharedTake::Unavailable => Ok(()),
        }
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

/// A key's bucket among the shared ones: `api#` and the first 96 bits of
/// its SHA-256 (the same on every node that has the key; Redis never
/// holds the key).
fn shared_name(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("api#{hex}")
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

    /// The cluster's buckets as the test has them answer.
    struct Answering(SharedTake, Mutex<Vec<(String, f64)>>);

    impl SharedBuckets for Answering {
        fn take(&self, name: &str, n: f64, _: f64, _: f64) -> socketio::BoxFuture<SharedTake> {
            self.1.lock().push((name.to_owned(), n));
            let answer = self.0;
            Box::pin(async move { answer })
        }

        fn give_back(&self, _: &str, _: f64, _: f64) -> socketio::BoxFuture<()> {
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn in_a_cluster_the_keys_bucket_every_node_shares_has_the_last_word() {
        let refused = Arc::new(Answering(
            SharedTake::Refused(Duration::from_secs(3)),
            Mutex::default(),
        ));
        let rates = KeyRates::shared(&["secret-1", "secret-2"], 10.0, 100.0, refused.clone());
        assert_eq!(rates.charge(1, 40).await, Err(Duration::from_secs(3)));
        let (name, n) = refused.1.lock()[0].clone();
        assert_eq!(n, 40.0);
        assert!(
            name.starts_with("api#") && !name.contains("secret"),
            "{name}"
        );
        assert_eq!(name, shared_name("secret-2"), "the same on every node");
        assert_ne!(name, shared_name("secret-1"));
        // What the cluster refused stays charged here: 60 left.
        assert!(rates.charge_at(1, 61, Instant::now()).is_err());
        // Redis away: this node's bucket alone decides.
        let away = Arc::new(Answering(SharedTake::Unavailable, Mutex::default()));
        let rates = KeyRates::shared(&["k"], 10.0, 100.0, away);
        assert_eq!(rates.charge(0, 100).await, Ok(()));
        assert!(rates.charge(0, 1).await.is_err(), "refused here");
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
