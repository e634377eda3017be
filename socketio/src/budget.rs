//! A token bucket: `burst` requests at once, refilled at `per_sec`. Each
//! connection has one for its costly requests (CONNECT packets, whatever
//! their namespace, and events that verify a signature as a CONNECT does).

use std::time::Instant;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Budget {
    /// Full: `burst` requests may come at once. `per_sec` of 0 or less
    /// turns the limit off.
    pub(crate) fn new(per_sec: f64, burst: f64) -> Budget {
        let burst = burst.max(1.0);
        Budget {
            per_sec,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one request; false when the bucket is empty.
    pub(crate) fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
    fn a_burst_then_the_sustained_rate() {
        let mut budget = Budget::new(10.0, 3.0);
        let start = budget.last;
        assert_eq!((0..5).filter(|_| budget.take_at(start)).count(), 3);
        let later = start + Duration::from_millis(100);
        assert!(budget.take_at(later));
        assert!(!budget.take_at(later));
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| budget.take_at(much_later)).count(), 3);
    }

    #[test]
    fn zero_turns_it_off() {
        let mut budget = Budget::new(0.0, 1.0);
        assert!((0..100).all(|_| budget.take()));
    }
}
