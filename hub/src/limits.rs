//! What one client may ask of a component namespace: events per second (a
//! token bucket of `burst` events refilled at `per_sec`; an event over it is
//! answered `{ok:false, error:{code:"rate_limited"}}` and not handled, the
//! socket stays connected), and how many rooms it may subscribe to, with
//! names how long.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use socketio::{BoxFuture, DisconnectReason, Event, NamespaceHandler, Socket};

use crate::component::HubError;

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

/// A socket's bucket, kept in its extensions.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// Takes one event from `socket`'s bucket; false if it is empty.
    pub fn admit(&self, socket: &Socket) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut extensions = socket.extensions();
        let bucket = extensions.get_or_insert_with(|| Bucket {
            tokens: self.burst,
            last: now,
        });
        self.take(bucket, now)
    }

    fn take(&self, bucket: &mut Bucket, now: Instant) -> bool {
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst.max(1.0));
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
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
                "rate_limited",
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
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limit = RateLimit {
            per_sec: 10.0,
            burst: 3.0,
        };
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: limit.burst,
            last: start,
        };
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
}
