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
//!
//! Each change to relay carries a `version`, increasing with every change
//! the state makes: relays are looked up and emitted without a lock held
//! (the member list is a store query), so two relays of one indicator may
//! finish out of order, and the component emits a relay only if no later
//! version of that indicator was emitted before it. A stop whose relay
//! failed (the store did not answer) is handed back with
//! [`TypingState::stop_failed`] and stopped again by the next sweep.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use socketio::BoxFuture;
use tokio::time::Instant;

use crate::error::HubError;

/// A user in a conversation: whose indicator changed.
pub type Typist = (i64, String);

/// A change the other members of `conversation` must be told of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub conversation: i64,
    pub user: String,
    /// The indicator is shown (`true`) or stopped.
    pub typing: bool,
    /// Later changes of the state have higher versions.
    pub version: u64,
}

impl Relay {
    /// Whose indicator it is.
    pub fn typist(&self) -> Typist {
        (self.conversation, self.user.clone())
    }
}

/// Who is typing where.
pub trait TypingState: Send + Sync + 'static {
    /// `user` (on device `socket`) starts (`on`) or stops typing in
    /// `conversation`; `Some` when the other members must be told.
    fn set(
        &self,
        conversation: i64,
        user: &str,
        socket: &str,
        on: bool,
    ) -> BoxFuture<Result<Option<Relay>, HubError>>;

    /// The indicators whose start was not renewed in time, now stopped:
    /// the other members must be told `typing:false`.
    fn expire(&self) -> BoxFuture<Result<Vec<Relay>, HubError>>;

    /// Device `socket` left: the indicators it had started, now stopped.
    fn device_gone(&self, socket: &str) -> BoxFuture<Result<Vec<Relay>, HubError>>;

    /// The stop `relay` could not be told to the others: unless the
    /// indicator changed since, it is shown again, already expired, so
    /// that the next [`TypingState::expire`] stops it again (a stop is
    /// never lost; the others see the user typing until it is told).
    fn stop_failed(&self, relay: &Relay) -> BoxFuture<Result<(), HubError>>;

    /// Node `node` of the cluster stopped: the indicators its devices
    /// showed, now stopped (the others must be told `typing:false`), each
    /// handed to one caller. A state of one node has none.
    fn drop_node(&self, node: &str) -> BoxFuture<Result<Vec<Relay>, HubError>>;
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
    /// The version of its last change.
    version: u64,
}

/// [`TypingState`] in this process's memory. An entry exists per user and
/// conversation they are a member of and typed in recently (the component
/// checks membership first): bounded by memberships, and removed once
/// stopped and past the relay interval.
pub struct MemoryTyping {
    timers: TypingTimers,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Typist, Entry>,
    /// The last version given.
    version: u64,
}

impl Entries {
    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }
}

fn relay(key: &Typist, typing: bool, version: u64) -> Relay {
    Relay {
        conversation: key.0,
        user: key.1.clone(),
        typing,
        version,
    }
}

impl MemoryTyping {
    pub fn new(timers: TypingTimers) -> MemoryTyping {
        MemoryTyping {
            timers,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// A version later than every change made so far (for a relay this
    /// state did not make: a stopped node's typist's stop).
    pub fn next_version(&self) -> u64 {
        self.entries.lock().next_version()
    }

    /// Forgets every indicator without stopping any: another node already
    /// told the others they stopped (this node was dropped from its
    /// cluster while it was frozen). Versions go on from where they were,
    /// so a later relay still wins over any before.
    pub fn forget_all(&self) -> usize {
        let mut guard = self.entries.lock();
        let forgotten = guard.map.len();
        guard.map.clear();
        forgotten
    }

    fn set_now(&self, key: Typist, socket: &str, on: bool, now: Instant) -> Option<Relay> {
        let mut guard = self.entries.lock();
        let version = guard.next_version();
        let entries = &mut guard.map;
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
                    version,
                };
                Some(relay(&key, true, version))
            }
            (None, true) => {
                let started = relay(&key, true, version);
                entries.insert(
                    key,
                    Entry {
                        shown: true,
                        relayed: now,
                        expires: now + self.timers.ttl,
                        socket: socket.to_owned(),
                        version,
                    },
                );
                Some(started)
            }
            (Some(entry), false) if entry.shown => {
                entry.shown = false;
                entry.relayed = now;
                entry.version = version;
                Some(relay(&key, false, version))
            }
            (_, false) => None,
        }
    }

    fn expire_now(&self, now: Instant) -> Vec<Relay> {
        let interval = self.timers.relay_interval;
        let mut expired = Vec::new();
        let mut guard = self.entries.lock();
        let Entries { map, version } = &mut *guard;
        map.retain(|key, entry| {
            if entry.shown && entry.expires <= now {
                *version += 1;
                expired.push(relay(key, false, *version));
                entry.shown = false;
                entry.relayed = now;
                entry.version = *version;
            }
            // A stopped entry is kept while it still holds back a relay.
            entry.shown || now.duration_since(entry.relayed) < interval
        });
        expired
    }

    fn device_gone_now(&self, socket: &str, now: Instant) -> Vec<Relay> {
        let mut stopped = Vec::new();
        let mut guard = self.entries.lock();
        let Entries { map, version } = &mut *guard;
        for (key, entry) in map.iter_mut() {
            if entry.shown && entry.socket == socket {
                *version += 1;
                entry.shown = false;
                entry.relayed = now;
                entry.version = *version;
                stopped.push(relay(key, false, *version));
            }
        }
        stopped
    }

    fn stop_failed_now(&self, failed: &Relay, now: Instant) {
        let mut guard = self.entries.lock();
        let again = Entry {
            shown: true,
            relayed: now,
            expires: now,
            socket: String::new(),
            version: failed.version,
        };
        match guard.map.get_mut(&failed.typist()) {
            // Changed since (a new start, or its stop retried already).
            Some(entry) if entry.version != failed.version || entry.shown => {}
            Some(entry) => {
                entry.shown = true;
                entry.expires = now;
            }
            // Forgotten once past the relay interval; nothing changed it.
            None => {
                guard.map.insert(failed.typist(), again);
            }
        }
    }
}

impl TypingState for MemoryTyping {
    fn set(
        &self,
        conversation: i64,
        user: &str,
        socket: &str,
        on: bool,
    ) -> BoxFuture<Result<Option<Relay>, HubError>> {
        let relay = self.set_now((conversation, user.to_owned()), socket, on, Instant::now());
        Box::pin(std::future::ready(Ok(relay)))
    }

    fn expire(&self) -> BoxFuture<Result<Vec<Relay>, HubError>> {
        Box::pin(std::future::ready(Ok(self.expire_now(Instant::now()))))
    }

    fn device_gone(&self, socket: &str) -> BoxFuture<Result<Vec<Relay>, HubError>> {
        let stopped = self.device_gone_now(socket, Instant::now());
        Box::pin(std::future::ready(Ok(stopped)))
    }

    fn stop_failed(&self, relay: &Relay) -> BoxFuture<Result<(), HubError>> {
        self.stop_failed_now(relay, Instant::now());
        Box::pin(std::future::ready(Ok(())))
    }

    fn drop_node(&self, _node: &str) -> BoxFuture<Result<Vec<Relay>, HubError>> {
        // Alone, every indicator is this node's own.
        Box::pin(std::future::ready(Ok(Vec::new())))
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

    /// What a relay says, without its version.
    fn on(relay: Option<Relay>) -> Option<bool> {
        relay.map(|r| r.typing)
    }

    fn typists(relays: Vec<Relay>) -> Vec<Typist> {
        relays.iter().map(Relay::typist).collect()
    }

    #[test]
    fn starts_are_relayed_at_most_once_a_second_and_stops_always() {
        let typing = state();
        let set = |key, socket, start, at| on(typing.set_now(key, socket, start, at));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(set(key(), "s1", true, t0), Some(true));
        // Renewals: nothing new for the others.
        assert_eq!(set(key(), "s1", true, ms(300)), None);
        // A stop the others must see, even right away.
        assert_eq!(set(key(), "s1", false, ms(400)), Some(false));
        assert_eq!(set(key(), "s1", false, ms(450)), None);
        // A new start within the second is held back, and so is its stop
        // (the others never saw it).
        assert_eq!(set(key(), "s1", true, ms(500)), None);
        assert_eq!(set(key(), "s1", false, ms(600)), None);
        assert_eq!(set(key(), "s1", true, ms(1500)), Some(true));
    }

    #[test]
    fn an_unrenewed_start_expires_and_a_renewed_one_does_not() {
        let typing = state();
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        typing.set_now(key(), "s1", true, t0);
        typing.set_now((1, "bob".to_owned()), "s2", true, t0);
        typing.set_now(key(), "s1", true, s(4));
        assert_eq!(typists(typing.expire_now(s(5))), [(1, "bob".to_owned())]);
        assert!(typing.expire_now(s(8)).is_empty());
        assert_eq!(typists(typing.expire_now(s(9))), [key()]);
        // Stopped and past the interval: forgotten.
        typing.expire_now(s(20));
        assert!(typing.entries.lock().map.is_empty());
    }

    #[test]
    fn a_device_that_leaves_stops_what_it_started() {
        let typing = state();
        let t0 = Instant::now();
        typing.set_now(key(), "s1", true, t0);
        typing.set_now((2, "alice".to_owned()), "s2", true, t0);
        assert_eq!(typists(typing.device_gone_now("s1", t0)), [key()]);
        assert!(typing.device_gone_now("s1", t0).is_empty());
        assert_eq!(typing.set_now(key(), "s1", false, t0), None);
    }

    #[test]
    fn forgotten_starts_neither_expire_nor_stop_with_their_device_and_versions_go_on() {
        let typing = state();
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let start = typing.set_now(key(), "s1", true, t0).unwrap();
        typing.set_now((2, "bob".to_owned()), "s2", true, t0);
        assert_eq!(typing.forget_all(), 2);
        assert!(typing.expire_now(s(9)).is_empty());
        assert!(typing.device_gone_now("s1", s(9)).is_empty());
        let again = typing.set_now(key(), "s1", true, s(10)).unwrap();
        assert!(again.typing && again.version > start.version);
    }

    #[test]
    fn later_changes_have_higher_versions() {
        let typing = state();
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let start = typing.set_now(key(), "s1", true, t0).unwrap();
        let stop = typing.set_now(key(), "s1", false, s(1)).unwrap();
        let again = typing.set_now(key(), "s1", true, s(3)).unwrap();
        let expired = typing.expire_now(s(9)).remove(0);
        assert!(start.version < stop.version && stop.version < again.version);
        assert!(again.version < expired.version);
        assert!(!expired.typing);
    }

    #[test]
    fn a_stop_not_told_is_stopped_again_by_the_next_sweep_unless_it_changed() {
        let typing = state();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        typing.set_now(key(), "s1", true, t0);
        let stop = typing.set_now(key(), "s1", false, ms(100)).unwrap();
        typing.stop_failed_now(&stop, ms(200));
        let again = typing.expire_now(ms(250));
        assert_eq!(typists(again.clone()), [key()]);
        assert!(!again[0].typing && again[0].version > stop.version);
        // Failed again, long after (the entry was forgotten): still retried.
        typing.expire_now(ms(5_000));
        typing.stop_failed_now(&again[0], ms(5_000));
        assert_eq!(typists(typing.expire_now(ms(5_001))), [key()]);
        // A start since the failed stop: the start stands.
        let stop = typing.set_now((2, "bob".to_owned()), "s2", true, t0);
        assert!(stop.is_some());
        let stop = typing
            .set_now((2, "bob".to_owned()), "s2", false, ms(100))
            .unwrap();
        let start = typing.set_now((2, "bob".to_owned()), "s2", true, ms(1_200));
        assert!(start.is_some());
        typing.stop_failed_now(&stop, ms(1_300));
        assert!(typing.expire_now(ms(1_400)).is_empty());
    }
}
