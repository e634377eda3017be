//! What one client may ask of a component namespace: events per second (a
//! token bucket of `burst` events refilled at `per_sec`; an event over it is
//! answered `{ok:false, error:{code:"rate_limited"}}` and not handled, the
//! socket stays connected), and how many rooms it may subscribe to, with
//! names how long.
//!
//! The one token bucket of the hub is here too ([`TokenBucket`]), with its
//! keyed form ([`KeyedBuckets`], one bucket per user of every device
//! together): the per-socket event limit, the calls' signal and invitation
//! limits, chat's per-user message and typing rates, presence's status
//! rate and the publish API's per-key rate all count with it.
//!
//! A per-sender bound must hold across a cluster too, or a sender whose
//! connections (or requests) a load balancer spreads over K nodes gets K
//! times it: [`SenderRate`] is a node's [`KeyedBuckets`] checked first
//! (free: a flood is refused here without asking anyone), then, for what
//! it admits, a bucket every node shares ([`SharedBuckets`], the embedding
//! program's, on the cluster's store; none when alone).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socketio::{BoxFuture, DisconnectReason, Event, NamespaceHandler, Socket};
use std::future::Future;

use crate::error::{ErrorCode, HubError};

/// Limits on each socket of a component namespace.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Enforced by [`RateLimited`] around the namespace handler.
    pub rate: RateLimit,
    /// Enforced by the component handler on `subscribe`.
    pub rooms: RoomLimits,
}

/// What a socket may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoomLimits {
    /// Rooms a socket may be in through `subscribe` (its own `user:` room
    /// included).
    pub max_rooms_per_socket: usize,
    /// Longest room id a client may subscribe to, in bytes.
    pub max_room_len: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            max_rooms_per_socket: 1000,
            max_room_len: 256,
        }
    }
}

/// Events per second a socket may send, with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained events per second; 0 turns the limit off.
    pub per_sec: f64,
    /// Events a socket may send at once after being quiet.
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_sec: 100.0,
            burst: 200.0,
        }
    }
}

/// A token bucket: holds up to a burst of tokens, refilled at a rate;
/// each admitted thing takes one. The rate and the burst are the caller's
/// (passed to each call, so one bucket type serves every limit without
/// storing them per bucket); a caller that wants at least one token of
/// burst clamps it itself.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket holding `tokens` at `now` (a new bucket starts full: its
    /// burst).
    pub fn new(tokens: f64, now: Instant) -> TokenBucket {
        TokenBucket { tokens, last: now }
    }

    /// Refills it at `per_sec` up to `burst` for the time since it was
    /// last used, then takes one token; false (nothing taken) if less
    /// than one is left.
    pub fn take(&mut self, per_sec: f64, burst: f64, now: Instant) -> bool {
        self.take_n(1.0, per_sec, burst, now)
    }

    /// [`take`](Self::take) for `n` tokens at once: all of them, or none
    /// (false) if fewer are left.
    pub fn take_n(&mut self, n: f64, per_sec: f64, burst: f64, now: Instant) -> bool {
        let refill = now.duration_since(self.last).as_secs_f64() * per_sec;
        self.tokens = (self.tokens + refill).min(burst);
        self.last = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether it has refilled to `burst` by `now`: then it is the same as
    /// a new bucket, and a keyed map may forget it.
    pub fn is_full(&self, per_sec: f64, burst: f64, now: Instant) -> bool {
        self.available(per_sec, burst, now) >= burst
    }

    /// The tokens it holds at `now` (below zero while in debt, see
    /// [`charge`](Self::charge)), nothing taken.
    pub fn available(&self, per_sec: f64, burst: f64, now: Instant) -> f64 {
        (self.tokens + now.duration_since(self.last).as_secs_f64() * per_sec).min(burst)
    }

    /// Takes a cost of `n` tokens, or says how long until it could be
    /// taken. Unlike [`take_n`](Self::take_n), a cost larger than the
    /// burst is not refused for ever: a full bucket pays it and goes into
    /// debt (below zero), refilling from there, so that the rate holds for
    /// large costs too. A wait too long to say (a rate of almost nothing)
    /// is [`Duration::MAX`].
    pub fn charge(
        &mut self,
        n: f64,
        per_sec: f64,
        burst: f64,
        now: Instant,
    ) -> Result<(), Duration> {
        self.tokens = self.available(per_sec, burst, now);
        self.last = now;
        let needed = n.min(burst);
        if self.tokens >= needed {
            self.tokens -= n;
            return Ok(());
        }
        Err(refill_time(needed - self.tokens, per_sec))
    }
}

/// How long a bucket refilled at `per_sec` takes to gain `missing` tokens;
/// [`Duration::MAX`] when that is more than a `Duration` holds (a rate of
/// almost nothing, which the configuration's checks let through, or 0):
/// `Duration::from_secs_f64` would panic on it, in a request's handler.
pub fn refill_time(missing: f64, per_sec: f64) -> Duration {
    Duration::try_from_secs_f64(missing / per_sec).unwrap_or(Duration::MAX)
}

/// Keys looked at for forgetting per [`KeyedBuckets::admit`]: at least one
/// more than the one key an admit may add, so the map shrinks back to the
/// keys in use, and a bounded amount of work per call (never a scan of the
/// whole map).
const PRUNE_STEP: usize = 2;

/// One [`TokenBucket`] per key (a user id: every device of the user
/// together), refilled at `per_sec` up to `burst`. A bucket that has
/// refilled is the same as none, so the map forgets it: each admit looks
/// at the `PRUNE_STEP` oldest keys of a round-robin queue and drops those
/// that are full, so memory follows the keys in recent use, at a bounded
/// cost per call.
pub struct KeyedBuckets {
    per_sec: f64,
    burst: f64,
    inner: Mutex<Keyed>,
}

#[derive(Default)]
struct Keyed {
    buckets: HashMap<String, TokenBucket>,
    /// Every key of `buckets` once, in the order they are next looked at.
    queue: VecDeque<String>,
}

impl KeyedBuckets {
    /// `per_sec` 0 (or less) turns the limit off. `burst` is used as given.
    pub fn new(per_sec: f64, burst: f64) -> KeyedBuckets {
        KeyedBuckets {
            per_sec,
            burst,
            inner: Mutex::new(Keyed::default()),
        }
    }

    /// Takes one token from `key`'s bucket; false if it is empty.
    pub fn admit(&self, key: &str) -> bool {
        self.admit_at(key, Instant::now())
    }

    /// [`admit`](Self::admit) at `now` (for tests).
    pub fn admit_at(&self, key: &str, now: Instant) -> bool {
        self.admit_n_at(key, 1, now)
    }

    /// Takes `n` tokens at once from `key`'s bucket: all or none (false).
    /// More than the burst is never admitted.
    pub fn admit_n(&self, key: &str, n: usize) -> bool {
        self.admit_n_at(key, n, Instant::now())
    }

    /// [`admit_n`](Self::admit_n) at `now` (for tests).
    pub fn admit_n_at(&self, key: &str, n: usize, now: Instant) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let (per_sec, burst) = (self.per_sec, self.burst);
        let mut inner = self.inner.lock();
        let Keyed { buckets, queue } = &mut *inner;
        for _ in 0..PRUNE_STEP.min(queue.len()) {
            let Some(oldest) = queue.pop_front() else {
                break;
            };
            let full = buckets
                .get(&oldest)
                .is_none_or(|b| b.is_full(per_sec, burst, now));
            if full && oldest != key {
                buckets.remove(&oldest);
            } else {
                queue.push_back(oldest);
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert_with(|| {
            queue.push_back(key.to_owned());
            TokenBucket::new(burst, now)
        });
        bucket.take_n(n as f64, per_sec, burst, now)
    }

    /// Gives `n` tokens back to `key`'s bucket (up to its burst): what an
    /// admit took for something that then did not happen.
    pub fn give_back(&self, key: &str, n: usize) {
        if let Some(bucket) = self.inner.lock().buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + n as f64).min(self.burst);
        }
    }

    /// Keys with a bucket (for tests).
    pub fn len(&self) -> usize {
        self.inner.lock().buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a bucket every node of a cluster shares answered a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedTake {
    /// Taken.
    Taken,
    /// Not enough tokens: nothing taken, and this long until there would
    /// be.
    Refused(Duration),
    /// The cluster's store did not answer (down, or not within its
    /// timeout): nothing is known, nothing was taken.
    Unavailable,
}

/// Token buckets every node of a cluster shares, by name: the embedding
/// program's, on the cluster's store (the hub knows none), so that a
/// per-sender bound counts what every node admitted.
pub trait SharedBuckets: Send + Sync + 'static {
    /// Takes `n` tokens from bucket `name`, which holds up to `burst`
    /// refilled at `per_sec` (a new bucket is full): all or none, and, as
    /// [`TokenBucket::charge`], a cost over the burst is taken from a full
    /// bucket, into debt.
    fn take(&self, name: &str, n: f64, per_sec: f64, burst: f64) -> BoxFuture<SharedTake>;

    /// Gives `n` tokens back to bucket `name` (refilled at `per_sec`, never
    /// fuller than full): what a take took for something that then did
    /// not happen. A failure is the implementation's to count; the tokens
    /// then come back as the bucket refills.
    fn give_back(&self, name: &str, n: f64, per_sec: f64) -> BoxFuture<()>;
}

/// A per-sender bound (a user of every device together) that holds across
/// a cluster: `burst` at once, `per_sec` sustained, whichever nodes the
/// sender's connections are on.
///
/// Two steps. [`admit_here`](Self::admit_here) is this node's
/// [`KeyedBuckets`]: free, and what refuses a flood without a round trip
/// (a refused event never reaches the shared bucket, so the store's work
/// follows what the nodes admit, not what a sender sends). What it admits
/// is then [`confirm`](Self::confirm)ed by the sender's bucket in the
/// cluster's store ([`SharedBuckets`]), which every node takes from: the
/// sum of what the nodes admit is one bucket's worth. A refusal there
/// gives nothing back here on purpose: a sender that the cluster holds
/// back empties this node's bucket too, and is then refused here, without
/// asking the store again.
///
/// When the store does not answer, the event is admitted (fail-open):
/// each node's own bucket still holds the sender to the bound on that
/// node (what a cluster allowed before it shared them), and a bound that
/// refused everything while the store is away would stop writes that do
/// not need it (a chat message is stored in SQL, an API publish is
/// queued for the bus) for want of a count. The implementation counts
/// and logs each such failure.
pub struct SenderRate {
    /// The bucket's kind in its shared name (`<kind>#<sender>`).
    kind: &'static str,
    per_sec: f64,
    burst: f64,
    local: KeyedBuckets,
    shared: Option<Arc<dyn SharedBuckets>>,
}

impl SenderRate {
    /// `per_sec` 0 (or less) turns the limit off; `burst` is used as given.
    /// `kind` names the limit among the shared buckets (`status`,
    /// `typing`, …); `shared` is the cluster's buckets, `None` alone.
    pub fn new(
        kind: &'static str,
        per_sec: f64,
        burst: f64,
        shared: Option<Arc<dyn SharedBuckets>>,
    ) -> SenderRate {
        SenderRate {
            kind,
            per_sec,
            burst,
            local: KeyedBuckets::new(per_sec, burst),
            shared: shared.filter(|_| per_sec > 0.0),
        }
    }

    /// The first step: takes `n` tokens from `key`'s bucket on this node;
    /// false (nothing taken) if it has fewer. Once it admitted, the
    /// cluster's share is [`confirm`](Self::confirm)ed.
    pub fn admit_here(&self, key: &str, n: usize) -> bool {
        self.local.admit_n(key, n)
    }

    /// [`admit_here`](Self::admit_here) at `now` (for tests).
    pub fn admit_here_at(&self, key: &str, n: usize, now: Instant) -> bool {
        self.local.admit_n_at(key, n, now)
    }

    /// The second step, for what [`admit_here`](Self::admit_here)
    /// admitted: takes the same `n` from `key`'s bucket in the cluster;
    /// false if the sender's other nodes used it up. True at once alone,
    /// and when the cluster's store does not answer (see [`SenderRate`]).
    pub fn confirm(&self, key: &str, n: usize) -> impl Future<Output = bool> + Send + use<> {
        let asked = self
            .shared
            .as_ref()
            .map(|shared| shared.take(&self.name(key), n as f64, self.per_sec, self.burst));
        async move {
            match asked {
                Some(asked) => !matches!(asked.await, SharedTake::Refused(_)),
                None => true,
            }
        }
    }

    /// Both steps: takes `n` tokens from `key`'s buckets, here then in the
    /// cluster; false if either refused.
    pub fn admit_n(&self, key: &str, n: usize) -> impl Future<Output = bool> + Send + use<> {
        let confirmed = self.admit_here(key, n).then(|| self.confirm(key, n));
        async move {
            match confirmed {
                Some(confirmed) => confirmed.await,
                None => false,
            }
        }
    }

    /// Gives back `n` tokens that [`admit_n`](Self::admit_n) took (both
    /// steps admitted) for something that then did not happen: here at
    /// once, in the cluster when the future is awaited.
    pub fn give_back(&self, key: &str, n: usize) -> impl Future<Output = ()> + Send + use<> {
        self.local.give_back(key, n);
        let asked = self
            .shared
            .as_ref()
            .map(|shared| shared.give_back(&self.name(key), n as f64, self.per_sec));
        async move {
            if let Some(asked) = asked {
                asked.await;
            }
        }
    }

    /// `key`'s bucket among the shared ones.
    fn name(&self, key: &str) -> String {
        format!("{}#{key}", self.kind)
    }
}

impl RateLimit {
    /// Takes one event from `socket`'s bucket; false if it is empty.
    pub fn admit(&self, socket: &Socket) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut extensions = socket.extensions();
        let bucket = extensions.get_or_insert_with(|| TokenBucket::new(self.burst, now));
        self.take(bucket, now)
    }

    /// This limit's clamping: at least one event of burst.
    fn take(&self, bucket: &mut TokenBucket, now: Instant) -> bool {
        bucket.take(self.per_sec, self.burst.max(1.0), now)
    }
}

/// Runs a namespace handler behind a per-socket [`RateLimit`]: an event over
/// the limit is answered `rate_limited`, counted in the namespace's
/// `events_refused`, and reaches nothing inside (not even an authenticated
/// namespace's `refresh`, which verifies a signature).
pub struct RateLimited {
    inner: Arc<dyn NamespaceHandler>,
    rate: RateLimit,
}

impl RateLimited {
    pub fn wrap(inner: Arc<dyn NamespaceHandler>, rate: RateLimit) -> Arc<dyn NamespaceHandler> {
        Arc::new(RateLimited { inner, rate })
    }
}

impl NamespaceHandler for RateLimited {
    fn on_connect(&self, socket: &Arc<Socket>) -> Option<BoxFuture<()>> {
        self.inner.on_connect(socket)
    }

    fn on_connected(&self, socket: &Arc<Socket>) {
        self.inner.on_connected(socket);
    }

    fn on_event(&self, socket: &Arc<Socket>, mut event: Event) -> Option<BoxFuture<()>> {
        if self.rate.admit(socket) {
            return self.inner.on_event(socket, event);
        }
        socket
            .namespace()
            .stats()
            .events_refused
            .fetch_add(1, Ordering::Relaxed);
        if let Some(ack) = event.take_ack() {
            let refusal = HubError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} events per second: slow down",
                    self.rate.per_sec
                ),
            );
            ack.send_one(&refusal.reply());
        }
        None
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        self.inner.on_disconnect(socket, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limit = RateLimit {
            per_sec: 10.0,
            burst: 3.0,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::new(limit.burst, start);
        let admitted = (0..5).filter(|_| limit.take(&mut bucket, start)).count();
        assert_eq!(admitted, 3);
        // 100 ms at 10/s refills one event, not more.
        let later = start + Duration::from_millis(100);
        assert!(limit.take(&mut bucket, later));
        assert!(!limit.take(&mut bucket, later));
        // A long pause refills up to the burst only.
        let much_later = later + Duration::from_secs(60);
        let admitted = (0..10)
            .filter(|_| limit.take(&mut bucket, much_later))
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn keyed_buckets_forget_refilled_keys_a_few_at_a_time() {
        let rate = KeyedBuckets::new(10.0, 2.0);
        let t0 = Instant::now();
        for i in 0..1_000 {
            assert!(rate.admit_at(&format!("u{i}"), t0));
        }
        assert_eq!(rate.len(), 1_000, "none has refilled yet");
        // A second later every bucket is full again: each admit forgets up
        // to PRUNE_STEP of them, never all at once.
        let t1 = t0 + Duration::from_secs(1);
        assert!(rate.admit_at("late", t1));
        assert_eq!(rate.len(), 1_000 - PRUNE_STEP + 1);
        for _ in 0..1_000 {
            rate.admit_at("late", t1);
        }
        assert_eq!(rate.len(), 1, "only the key in use is left");
        // A key being limited is kept while it is not full.
        assert!(!rate.admit_at("late", t1));
        assert!(rate.admit_at("other", t1));
        assert!(!rate.admit_at("late", t1), "its empty bucket was kept");
        assert!(KeyedBuckets::new(0.0, 1.0).admit_at("x", t0));
    }

    #[test]
    fn keyed_buckets_take_several_tokens_all_or_none() {
        let rate = KeyedBuckets::new(1.0, 10.0);
        let t0 = Instant::now();
        assert!(rate.admit_n_at("a", 7, t0));
        assert!(!rate.admit_n_at("a", 4, t0), "3 left: 4 are refused");
        assert!(rate.admit_n_at("a", 3, t0), "and nothing was taken");
        assert!(!rate.admit_n_at("b", 11, t0), "never more than the burst");
        assert!(rate.admit_n_at("a", 2, t0 + Duration::from_secs(2)));
    }

    #[test]
    fn a_charge_over_the_burst_is_paid_from_a_full_bucket_into_debt() {
        let (per_sec, burst) = (10.0, 20.0);
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(burst, t0);
        assert_eq!(bucket.charge(5.0, per_sec, burst, t0), Ok(()));
        // 15 left: 50 is more than the burst, so it waits for a full
        // bucket (0.5 s more at 10/s).
        assert_eq!(
            bucket.charge(50.0, per_sec, burst, t0),
            Err(Duration::from_millis(500))
        );
        let full = t0 + Duration::from_millis(500);
        assert_eq!(bucket.charge(50.0, per_sec, burst, full), Ok(()));
        assert!(bucket.available(per_sec, burst, full) < -29.0, "in debt");
        // The debt is paid back at the rate before one more is let through:
        // 31 tokens, 3.1 s.
        let wait = bucket.charge(1.0, per_sec, burst, full).unwrap_err();
        assert!((wait.as_secs_f64() - 3.1).abs() < 1e-6, "{wait:?}");
        let early = full + Duration::from_secs(3);
        assert!(bucket.charge(1.0, per_sec, burst, early).is_err());
        let paid = full + Duration::from_secs(4);
        assert_eq!(bucket.charge(1.0, per_sec, burst, paid), Ok(()));
    }

    #[test]
    fn a_wait_too_long_for_a_duration_is_the_longest_one() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1.0, t0);
        assert_eq!(bucket.charge(1.0, 1e-300, 1.0, t0), Ok(()));
        assert_eq!(bucket.charge(1.0, 1e-300, 1.0, t0), Err(Duration::MAX));
        assert_eq!(refill_time(1.0, 0.0), Duration::MAX);
        assert_eq!(refill_time(3.0, 2.0), Duration::from_millis(1_500));
    }

    /// A cluster's buckets as a test drives them: one bucket's answers in
    /// turn, every call recorded.
    #[derive(Default)]
    struct FakeShared {
        answers: Mutex<VecDeque<SharedTake>>,
        calls: Mutex<Vec<(String, f64)>>,
    }

    impl SharedBuckets for FakeShared {
        fn take(&self, name: &str, n: f64, _: f64, _: f64) -> BoxFuture<SharedTake> {
            self.calls.lock().push((name.to_owned(), n));
            let answer = self.answers.lock().pop_front().unwrap_or(SharedTake::Taken);
            Box::pin(async move { answer })
        }

        fn give_back(&self, name: &str, n: f64, _: f64) -> BoxFuture<()> {
            self.calls.lock().push((name.to_owned(), -n));
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn a_sender_rate_asks_the_cluster_only_for_what_this_node_admitted() {
        let shared = Arc::new(FakeShared::default());
        let rate = SenderRate::new("status", 1.0, 2.0, Some(shared.clone()));
        assert!(rate.admit_n("alice", 1).await);
        // The sender's other nodes used the shared bucket up: refused,
        // and what this node took is not given back (its bucket empties
        // too, so the next ones are refused without asking).
        shared
            .answers
            .lock()
            .push_back(SharedTake::Refused(Duration::from_secs(1)));
        assert!(!rate.admit_n("alice", 1).await);
        assert!(!rate.admit_n("alice", 1).await, "refused here");
        assert!(!rate.admit_n("alice", 1).await, "refused here");
        assert_eq!(
            *shared.calls.lock(),
            [
                ("status#alice".to_owned(), 1.0),
                ("status#alice".to_owned(), 1.0)
            ],
            "a flood refused here costs the store nothing"
        );
        // The store does not answer: this node's bucket alone decides.
        shared.answers.lock().push_back(SharedTake::Unavailable);
        assert!(rate.admit_n("bob", 2).await, "fail-open");
        rate.give_back("bob", 2).await;
        assert_eq!(
            shared.calls.lock().last().unwrap(),
            &("status#bob".to_owned(), -2.0)
        );
        assert!(rate.admit_here("bob", 2), "given back here too");
        // Alone, or with the limit off, nothing is asked.
        let alone = SenderRate::new("status", 1.0, 1.0, None);
        assert!(alone.admit_n("alice", 1).await);
        assert!(!alone.admit_n("alice", 1).await);
        let off = SenderRate::new("status", 0.0, 1.0, Some(shared.clone()));
        let before = shared.calls.lock().len();
        assert!(off.admit_n("alice", 5).await);
        assert_eq!(shared.calls.lock().len(), before);
    }

    #[test]
    fn keyed_buckets_take_back_what_was_given_back_up_to_the_burst() {
        let rate = KeyedBuckets::new(1.0, 4.0);
        let t0 = Instant::now();
        assert!(rate.admit_n_at("a", 4, t0));
        assert!(!rate.admit_n_at("a", 2, t0));
        rate.give_back("a", 2);
        assert!(rate.admit_n_at("a", 2, t0), "given back");
        rate.give_back("a", 100);
        assert!(rate.admit_n_at("a", 4, t0));
        assert!(!rate.admit_n_at("a", 1, t0), "never more than the burst");
        rate.give_back("unknown", 1);
        assert_eq!(rate.len(), 1, "giving back adds no key");
    }
}
