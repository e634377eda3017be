//! [`RedisRates`]: the token buckets every node of a cluster shares
//! ([`SharedBuckets`]), so that a per-sender bound — a user's status
//! changes, typing relays, chat writes, members added and invitations, an
//! API key's recipients — holds for the sender, not for each node: a load
//! balancer spreading one user's sockets (or one key's requests) over K
//! nodes no longer gives them K times it.
//!
//! Each bucket is one key and each take one script ([`TAKE`], GCRA: the
//! key holds when the bucket would be full again), run by its SHA-1
//! (`EVALSHA`, loaded on the first `NOSCRIPT`): one round trip per write a
//! node's own bucket admitted — a write it refuses asks nothing. Time is
//! Redis's (`TIME`), so the nodes' clocks need not agree.
//!
//! Keys: `<key_prefix>-rate#<kind>#<sender>`, a string (the time, in µs,
//! at which the bucket is full), with a TTL to that time: a sender idle
//! long enough to have refilled has no key. So Redis holds at most one key
//! per sender a node admitted within a refill time, never one per
//! attempt.
//!
//! When Redis does not answer (not connected, or not within
//! `cluster.rate_timeout_ms`), or answers what the script does not
//! return, the take is [`SharedTake::Unavailable`] — counted, logged, and
//! admitted by the hub on its node's bucket alone (see
//! [`hub::limits::SenderRate`] for why fail-open). The wait is short
//! (100 ms by default, not the command timeout's seconds) and, once Redis
//! failed, the takes of the next [`PAUSE`] are answered `Unavailable` at
//! once without asking: a Redis that hangs would otherwise hold every
//! write of the node for the whole wait — a chat message would not even
//! be stored until then — when the nodes' own buckets bound it anyway.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use cluster::redis::Script;
use hub::limits::{SharedBuckets, SharedTake};
use parking_lot::Mutex;
use socketio::BoxFuture;

use super::{Redis, integer, invoke_within};

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("rates/take.lua")));

/// The longest time between two tokens the script is given, in µs (about
/// 31 years): a rate of almost nothing, which the configuration lets
/// through, is that rather than an infinite interval Lua would choke on.
const MAX_INTERVAL_US: f64 = 1e15;

/// How long after Redis failed a take the node asks it nothing, each take
/// admitted on the node's own bucket meanwhile: at most one write a second
/// waits out `cluster.rate_timeout_ms` while Redis hangs.
pub const PAUSE: Duration = Duration::from_secs(1);

/// The buckets of a cluster's nodes, in Redis. Cloning shares them.
#[derive(Clone)]
pub struct RedisRates {
    redis: Redis,
    /// `<key_prefix>-rate#`.
    prefix: Arc<str>,
    /// How long a take may wait for Redis (`cluster.rate_timeout_ms`).
    timeout: Duration,
    /// Until when Redis is not asked, after a failure.
    paused_until: Arc<Mutex<Option<Instant>>>,
}

impl RedisRates {
    /// The buckets `cluster`'s nodes share; a take waits at most `timeout`
    /// for Redis.
    pub fn new(
        cluster: &cluster::Cluster,
        timeout: Duration,
        stats: Arc<super::LiveStats>,
    ) -> RedisRates {
        RedisRates {
            redis: Redis {
                cluster: cluster.clone(),
                stats,
            },
            prefix: format!("{}-rate#", cluster.key_prefix()).into(),
            timeout,
            paused_until: Arc::default(),
        }
    }

    /// Whether Redis failed a take less than [`PAUSE`] ago.
    fn paused(&self) -> bool {
        let mut until = self.paused_until.lock();
        match *until {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Runs the script on bucket `name`: `n` tokens (negative: given
    /// back) at `per_sec`, up to `burst`.
    fn run(&self, name: &str, n: f64, per_sec: f64, burst: f64) -> BoxFuture<SharedTake> {
        if per_sec <= 0.0 {
            // The limit is off.
            return Box::pin(async { SharedTake::Taken });
        }
        let stats = &self.redis.stats;
        if self.paused() {
            // Counted, not logged: the failure that paused it was.
            stats
                .rates_unavailable
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Box::pin(async { SharedTake::Unavailable });
        }
        let this = self.clone();
        let key = format!("{}{name}", self.prefix);
        let interval = (1e6 / per_sec).min(MAX_INTERVAL_US);
        Box::pin(async move {
            let mut call = TAKE.prepare_invoke();
            call.key(key).arg(n).arg(interval).arg(burst);
            let stats = &this.redis.stats;
            let value = match invoke_within(&this.redis.cluster, &call, this.timeout).await {
                Ok(value) => value,
                Err(err) => {
                    *this.paused_until.lock() = Some(Instant::now() + PAUSE);
                    this.redis.failed(&stats.rates_unavailable, err);
                    return SharedTake::Unavailable;
                }
            };
            match integer(&value).map(u64::try_from) {
                Ok(Ok(0)) => SharedTake::Taken,
                Ok(Ok(wait)) => SharedTake::Refused(Duration::from_micros(wait)),
                Ok(Err(_)) => {
                    let err = format!("a negative wait from the rate script: {value:?}");
                    this.redis.failed(&stats.rates_malformed, err);
                    SharedTake::Unavailable
                }
                Err(err) => {
                    this.redis.failed(&stats.rates_malformed, err);
                    SharedTake::Unavailable
                }
            }
        })
    }
}

impl SharedBuckets for RedisRates {
    fn take(&self, name: &str, n: f64, per_sec: f64, burst: f64) -> BoxFuture<SharedTake> {
        self.run(name, n, per_sec, burst)
    }

    fn give_back(&self, name: &str, n: f64, per_sec: f64) -> BoxFuture<()> {
        let given = self.run(name, -n, per_sec, 0.0);
        Box::pin(async move {
            // A failure was counted; the tokens come back as it refills.
            let _ = given.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use cluster::redis;

    /// The TTL of bucket `name`, in ms (-2: no key).
    async fn ttl(cluster: &cluster::Cluster, rates: &RedisRates, name: &str) -> i64 {
        let mut command = redis::cmd("PTTL");
        command.arg(format!("{}{name}", rates.prefix));
        integer(&super::super::query(cluster, command).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_shared_bucket_gives_its_burst_then_says_how_long_to_wait() {
        let Some(cluster) = super::super::tests::test_cluster().await else {
            return;
        };
        let stats = Arc::new(super::super::LiveStats::default());
        let rates = RedisRates::new(&cluster, Duration::from_secs(5), stats.clone());
        // Two "nodes" taking from one bucket: 3 at once, 1 a second.
        let other = RedisRates::new(&cluster, Duration::from_secs(5), stats.clone());
        assert_eq!(
            rates.take("t#alice", 2.0, 1.0, 3.0).await,
            SharedTake::Taken
        );
        assert_eq!(
            other.take("t#alice", 1.0, 1.0, 3.0).await,
            SharedTake::Taken
        );
        let SharedTake::Refused(wait) = other.take("t#alice", 1.0, 1.0, 3.0).await else {
            panic!("the burst was taken");
        };
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // All or none: two are refused while one would be there.
        assert!(matches!(
            rates.take("t#alice", 1.0, 1.0, 3.0).await,
            SharedTake::Refused(_)
        ));
        assert_eq!(
            rates.take("t#bob", 3.0, 1.0, 3.0).await,
            SharedTake::Taken,
            "per sender"
        );
        // Gone once full again: 3 s at 1 a second, no more.
        let left = ttl(&cluster, &rates, "t#alice").await;
        assert!((2_900..=3_000).contains(&left), "{left} ms");
        // Given back: taken again, and never fuller than the burst.
        rates.give_back("t#bob", 2.0, 1.0).await;
        assert_eq!(rates.take("t#bob", 2.0, 1.0, 3.0).await, SharedTake::Taken);
        rates.give_back("t#bob", 100.0, 1.0).await;
        assert_eq!(ttl(&cluster, &rates, "t#bob").await, -2, "full: no key");
        assert!(
            matches!(
                rates.take("t#bob", 4.0, 0.001, 3.0).await,
                SharedTake::Taken
            ),
            "more than the burst, from a full bucket: into debt"
        );
        let SharedTake::Refused(debt) = rates.take("t#bob", 1.0, 0.001, 3.0).await else {
            panic!("in debt");
        };
        assert!(debt > Duration::from_secs(1_999), "{debt:?}");
        // A rate of almost nothing neither fails nor panics.
        assert_eq!(
            rates.take("t#slow", 1.0, 1e-300, 1.0).await,
            SharedTake::Taken
        );
        assert!(matches!(
            rates.take("t#slow", 1.0, 1e-300, 1.0).await,
            SharedTake::Refused(_)
        ));
        assert_eq!(stats.rates_unavailable.load(Relaxed), 0);
        assert_eq!(stats.rates_malformed.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn a_bucket_redis_cannot_read_is_a_failure_counted_not_a_refusal() {
        let Some(cluster) = super::super::tests::test_cluster().await else {
            return;
        };
        let stats = Arc::new(super::super::LiveStats::default());
        let rates = RedisRates::new(&cluster, Duration::from_secs(5), stats.clone());
        let mut list = redis::cmd("RPUSH");
        list.arg(format!("{}t#list", rates.prefix)).arg("x");
        super::super::query(&cluster, list).await.unwrap();
        assert_eq!(
            rates.take("t#list", 1.0, 1.0, 1.0).await,
            SharedTake::Unavailable,
            "GET on a list: WRONGTYPE"
        );
        assert_eq!(stats.rates_unavailable.load(Relaxed), 1);
        // Redis is not asked again for a while: a good bucket is not
        // refused, nor counted as taken.
        assert_eq!(
            rates.take("t#fine", 1.0, 1.0, 1.0).await,
            SharedTake::Unavailable
        );
        assert_eq!(stats.rates_unavailable.load(Relaxed), 2);
        assert_eq!(ttl(&cluster, &rates, "t#fine").await, -2, "not asked");
        tokio::time::sleep(PAUSE).await;
        assert_eq!(rates.take("t#fine", 1.0, 1.0, 1.0).await, SharedTake::Taken);
    }
}
