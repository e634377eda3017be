//! The live state of `/chat`: who is typing where. Not stored (it means
//! nothing after a restart), kept behind [`TypingState`] so that the
//! cluster can keep it in Redis; [`MemoryTyping`] is the one-process
//! implementation.
//!
//! The rules, the same for every implementation: a `typing:true` is
//! relayed to the other members when they do not already see the user
//! typing and no relay for that user and conversation happened in the
//! last `relay_interval` (a renewal only extends the expiry); a stop is
//! relayed whenever the others saw a start, so an indicator never sticks;
//! a start not renewed within `ttl` expires (the sweep relays the stop);
//! a device that disconnects stops what it started.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use socketio::BoxFuture;
use tokio::time::Instant;

use crate::component::HubError;

/// A user in a conversation: whose indicator changed.
pub type Typist = (i64, String);

/// Who is typing where.
pub trait TypingState: Send + Sync + 'static {
    /// `user` (on device `socket`) starts (`on`) or stops typing in
    /// `conversation`; `Some(on)` when the other members must be told.
    fn set(
        &self,
        conversation: i64,
        user: &str,
        socket: &str,
        on: bool,
    ) -> BoxFuture<Result<Option<bool>, HubError>>;

    /// The indicators whose start was not renewed in time, now stopped:
    /// the other members must be told `typing:false`.
    fn expire(&self) -> BoxFuture<Result<Vec<Typist>, HubError>>;

    /// Device `socket` left: the indicators it had started, now stopped.
    fn device_gone(&self, socket: &str) -> BoxFuture<Result<Vec<Typist>, HubError>>;
}

/// The timers of the typing indicator.
#[derive(Debug, Clone, Copy)]
pub struct TypingTimers {
    /// A start not renewed within this expires.
    pub ttl: Duration,
    /// At most one relay per user and conversation this often.
    pub relay_interval: Duration,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Whether the others see this user typing.
    shown: bool,
    /// When it was last relayed.
    relayed: Instant,
    /// When a shown start expires.
    expires: Instant,
    /// The device that started it.
    socket: String,
}

/// [`TypingState`] in this process's memory. An entry exists per user and
/// conversation they are a member of and typed in recently (the component
/// checks membership first): bounded by memberships, and removed once
/// stopped and past the relay interval.
pub struct MemoryTyping {
    timers: TypingTimers,
    entries: Mutex<HashMap<Typist, Entry>>,
}

impl MemoryTyping {
    pub fn new(timers: TypingTimers) -> MemoryTyping {
        MemoryTyping {
            timers,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn set_now(&self, key: Typist, socket: &str, on: bool, now: Instant) -> Option<bool> {
        let mut entries = self.entries.lock();
        let interval = self.timers.relay_interval;
        match (entries.get_mut(&key), on) {
            (Some(entry), true) if entry.shown => {
                entry.expires = now + self.timers.ttl;
                entry.socket = socket.to_owned();
                None
            }
            (Some(entry), true) => {
                if now.duration_since(entry.relayed) < interval {
                    return None;
                }
                *entry = Entry {
                    shown: true,
                    relayed: now,
                    expires: now + self.timers.ttl,
                    socket: socket.to_owned(),
                };
                Some(true)
            }
            (None, true) => {
                entries.insert(
                    key,
                    Entry {
                        shown: true,
                        relayed: now,
                        expires: now + self.timers.ttl,
                        socket: socket.to_owned(),
                    },
                );
                Some(true)
            }
            (Some(entry), false) if entry.shown => {
                entry.shown = false;
                entry.relayed = now;
                Some(false)
            }
            (_, false) => None,
        }
    }

    fn expire_now(&self, now: Instant) -> Vec<Typist> {
        let interval = self.timers.relay_interval;
        let mut expired = Vec::new();
        self.entries.lock().retain(|key, entry| {
            if entry.shown && entry.expires <= now {
                expired.push(key.clone());
                entry.shown = false;
                entry.relayed = now;
            }
            // A stopped entry is kept while it still holds back a relay.
            entry.shown || now.duration_since(entry.relayed) < interval
        });
        expired
    }

    fn device_gone_now(&self, socket: &str, now: Instant) -> Vec<Typist> {
        let mut stopped = Vec::new();
        for (key, entry) in self.entries.lock().iter_mut() {
            if entry.shown && entry.socket == socket {
                entry.shown = false;
                entry.relayed = now;
                stopped.push(key.clone());
            }
        }
        stopped
    }
}

impl TypingState for MemoryTyping {
    fn set(
        &self,
        conversation: i64,
        user: &str,
        socket: &str,
        on: bool,
    ) -> BoxFuture<Result<Option<bool>, HubError>> {
        let relay = self.set_now((conversation, user.to_owned()), socket, on, Instant::now());
        Box::pin(std::future::ready(Ok(relay)))
    }

    fn expire(&self) -> BoxFuture<Result<Vec<Typist>, HubError>> {
        Box::pin(std::future::ready(Ok(self.expire_now(Instant::now()))))
    }

    fn device_gone(&self, socket: &str) -> BoxFuture<Result<Vec<Typist>, HubError>> {
        let stopped = self.device_gone_now(socket, Instant::now());
        Box::pin(std::future::ready(Ok(stopped)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> MemoryTyping {
        MemoryTyping::new(TypingTimers {
            ttl: Duration::from_secs(5),
            relay_interval: Duration::from_secs(1),
        })
    }

    fn key() -> Typist {
        (1, "alice".to_owned())
    }

    #[test]
    fn starts_are_relayed_at_most_once_a_second_and_stops_always() {
        let typing = state();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(typing.set_now(key(), "s1", true, t0), Some(true));
        // Renewals: nothing new for the others.
        assert_eq!(typing.set_now(key(), "s1", true, ms(300)), None);
        // A stop the others must see, even right away.
        assert_eq!(typing.set_now(key(), "s1", false, ms(400)), Some(false));
        assert_eq!(typing.set_now(key(), "s1", false, ms(450)), None);
        // A new start within the second is held back, and so is its stop
        // (the others never saw it).
        assert_eq!(typing.set_now(key(), "s1", true, ms(500)), None);
        assert_eq!(typing.set_now(key(), "s1", false, ms(600)), None);
        assert_eq!(typing.set_now(key(), "s1", true, ms(1500)), Some(true));
    }

    #[test]
    fn an_unrenewed_start_expires_and_a_renewed_one_does_not() {
        let typing = state();
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        typing.set_now(key(), "s1", true, t0);
        typing.set_now((1, "bob".to_owned()), "s2", true, t0);
        typing.set_now(key(), "s1", true, s(4));
        assert_eq!(typing.expire_now(s(5)), [(1, "bob".to_owned())]);
        assert!(typing.expire_now(s(8)).is_empty());
        assert_eq!(typing.expire_now(s(9)), [key()]);
        // Stopped and past the interval: forgotten.
        typing.expire_now(s(20));
        assert!(typing.entries.lock().is_empty());
    }

    #[test]
    fn a_device_that_leaves_stops_what_it_started() {
        let typing = state();
        let t0 = Instant::now();
        typing.set_now(key(), "s1", true, t0);
        typing.set_now((2, "alice".to_owned()), "s2", true, t0);
        assert_eq!(typing.device_gone_now("s1", t0), [key()]);
        assert!(typing.device_gone_now("s1", t0).is_empty());
        assert_eq!(typing.set_now(key(), "s1", false, t0), None);
    }
}
