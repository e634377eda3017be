//! The live state of calls, behind [`CallState`]: calls by id, with the
//! index of which calls are live for a user (ringing for them, or with a
//! device of theirs in it) and which calls a device is in.
//! Nothing of it survives a restart (a call does not outlive its
//! connections). [`MemoryCallState`] keeps it in this process; a cluster
//! backs the same trait with Redis (a hash per call with its version, sets
//! per user and device, `compare_and_set` as a script), and the component's
//! logic does not change.
//!
//! Every change is a compare-and-set of a whole [`Call`] on its `version`:
//! the component reads, applies a pure transition (`call.rs`), and writes
//! back only if nobody wrote in between, else reads again. "The first
//! device to answer wins" is exactly that.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use socketio::BoxFuture;

use super::call::{Call, Phase};

/// Why the state could not answer (a Redis that is down); the client gets
/// `unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("call state unavailable: {0}")]
pub struct StateError(pub String);

/// What [`CallState::insert`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// `user` already has a device in `max_calls_per_user` calls.
    #[error("{0} is in too many calls")]
    Busy(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The live state of calls. Every method is atomic on its own.
pub trait CallState: Send + Sync + 'static {
    /// Stores a new call unless one of its users (the caller or an
    /// invitee) is already busy (see [`Call::busy_users`]: has a device)
    /// in `max_calls_per_user` calls. Calls that only ring for a user do
    /// not count.
    fn insert(&self, call: Call, max_calls_per_user: usize) -> BoxFuture<Result<(), InsertError>>;

    /// The call `id`, if it is live.
    fn get(&self, id: &str) -> BoxFuture<Result<Option<Call>, StateError>>;

    /// Replaces call `next.id` with `next` if its stored version is still
    /// `expected` (false: someone wrote first, or it is gone). A call
    /// written in [`Phase::Ended`] is forgotten.
    fn compare_and_set(&self, expected: u64, next: Call) -> BoxFuture<Result<bool, StateError>>;

    /// The ids of the calls `device` is a participant of.
    fn calls_of_device(&self, device: &str) -> BoxFuture<Result<Vec<String>, StateError>>;

    /// The ids of the calls live for `user` (see [`Call::live_users`]:
    /// ringing for them, or with a device of theirs in it).
    fn calls_of_user(&self, user: &str) -> BoxFuture<Result<Vec<String>, StateError>>;

    /// Node `node` of the cluster stopped: what it left (its devices in
    /// calls, the calls whose ring timer ran there, now the caller's to
    /// run), handed to one caller. A state of one node has nothing.
    fn drop_node(&self, node: &str) -> BoxFuture<Result<Orphans, StateError>>;
}

/// What a stopped node left in the calls state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orphans {
    /// Its devices that are in calls: they leave them (disconnected).
    pub devices: Vec<String>,
    /// The calls that ring and whose ring timer ran there.
    pub ringing: Vec<String>,
}

/// [`CallState`] in this process's memory.
#[derive(Default, Clone)]
pub struct MemoryCallState {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<String, Call>,
    by_user: HashMap<String, HashSet<String>>,
    by_device: HashMap<String, HashSet<String>>,
}

impl Inner {
    fn index(&mut self, call: &Call) {
        for user in call.live_users() {
            self.by_user
                .entry(user.to_owned())
                .or_default()
                .insert(call.id.clone());
        }
        for p in &call.participants {
            self.by_device
                .entry(p.device.clone())
                .or_default()
                .insert(call.id.clone());
        }
    }

    fn unindex(&mut self, call: &Call) {
        fn remove(map: &mut HashMap<String, HashSet<String>>, key: &str, id: &str) {
            if let Some(set) = map.get_mut(key) {
                set.remove(id);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        }
        for user in call.live_users() {
            remove(&mut self.by_user, user, &call.id);
        }
        for p in &call.participants {
            remove(&mut self.by_device, &p.device, &call.id);
        }
    }

    /// Calls in which `user` has a device.
    fn busy_in(&self, user: &str) -> usize {
        self.by_user.get(user).map_or(0, |ids| {
            ids.iter()
                .filter(|id| self.calls.get(*id).is_some_and(|c| c.has_user(user)))
                .count()
        })
    }

    fn ids(map: &HashMap<String, HashSet<String>>, key: &str) -> Vec<String> {
        map.get(key)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl MemoryCallState {
    pub fn new() -> MemoryCallState {
        MemoryCallState::default()
    }

    /// Live calls (for tests: ended calls are forgotten).
    pub fn len(&self) -> usize {
        self.inner.lock().calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CallState for MemoryCallState {
    fn insert(&self, call: Call, max_calls_per_user: usize) -> BoxFuture<Result<(), InsertError>> {
        let mut inner = self.inner.lock();
        let busy = call
            .live_users()
            .into_iter()
            .find(|user| inner.busy_in(user) >= max_calls_per_user);
        let result = match busy {
            Some(user) => Err(InsertError::Busy(user.to_owned())),
            None => {
                inner.index(&call);
                inner.calls.insert(call.id.clone(), call);
                Ok(())
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn get(&self, id: &str) -> BoxFuture<Result<Option<Call>, StateError>> {
        let call = self.inner.lock().calls.get(id).cloned();
        Box::pin(std::future::ready(Ok(call)))
    }

    fn compare_and_set(&self, expected: u64, next: Call) -> BoxFuture<Result<bool, StateError>> {
        let mut inner = self.inner.lock();
        let current = match inner.calls.get(&next.id) {
            Some(current) if current.version == expected => current.clone(),
            _ => return Box::pin(std::future::ready(Ok(false))),
        };
        inner.unindex(&current);
        if next.phase == Phase::Ended {
            inner.calls.remove(&next.id);
        } else {
            inner.index(&next);
            inner.calls.insert(next.id.clone(), next);
        }
        Box::pin(std::future::ready(Ok(true)))
    }

    fn calls_of_device(&self, device: &str) -> BoxFuture<Result<Vec<String>, StateError>> {
        let ids = Inner::ids(&self.inner.lock().by_device, device);
        Box::pin(std::future::ready(Ok(ids)))
    }

    fn calls_of_user(&self, user: &str) -> BoxFuture<Result<Vec<String>, StateError>> {
        let ids = Inner::ids(&self.inner.lock().by_user, user);
        Box::pin(std::future::ready(Ok(ids)))
    }

    fn drop_node(&self, _node: &str) -> BoxFuture<Result<Orphans, StateError>> {
        // Alone, every device and timer is this node's own.
        Box::pin(std::future::ready(Ok(Orphans::default())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::calls::call::{Kind, Leave};

    fn call(id: &str, caller: &str, device: &str, invitees: &[&str]) -> Call {
        let invitees: Vec<String> = invitees.iter().map(|s| s.to_string()).collect();
        Call::new(id.into(), caller, device, Kind::Audio, &invitees, 0)
    }

    #[tokio::test]
    async fn a_write_on_a_stale_version_is_refused() {
        let state = MemoryCallState::new();
        state
            .insert(call("c", "alice", "a1", &["bob"]), 4)
            .await
            .unwrap();
        let read = state.get("c").await.unwrap().unwrap();
        // Two devices of bob read the same version and both try to answer.
        let mut first = read.clone();
        first.accept("bob", "b1", 8).unwrap();
        first.version += 1;
        let mut second = read.clone();
        second.accept("bob", "b2", 8).unwrap();
        second.version += 1;
        assert!(state.compare_and_set(read.version, first).await.unwrap());
        assert!(!state.compare_and_set(read.version, second).await.unwrap());
        let now = state.get("c").await.unwrap().unwrap();
        assert_eq!(now.participant("b1").map(|p| p.user.as_str()), Some("bob"));
        assert!(now.participant("b2").is_none());
        assert_eq!(state.calls_of_device("b1").await.unwrap(), vec!["c"]);
        assert!(state.calls_of_device("b2").await.unwrap().is_empty());
    }

    async fn accept(state: &MemoryCallState, id: &str, user: &str, device: &str) {
        let mut c = state.get(id).await.unwrap().unwrap();
        let version = c.version;
        c.accept(user, device, 8).unwrap();
        c.version += 1;
        assert!(state.compare_and_set(version, c).await.unwrap());
    }

    #[tokio::test]
    async fn a_user_is_busy_in_a_bounded_number_of_calls() {
        let state = MemoryCallState::new();
        state
            .insert(call("c1", "alice", "a1", &["bob"]), 2)
            .await
            .unwrap();
        state
            .insert(call("c2", "carol", "c1", &["bob"]), 2)
            .await
            .unwrap();
        // Ringing does not make bob busy: a third call rings too.
        state
            .insert(call("c3", "dave", "d1", &["bob"]), 2)
            .await
            .unwrap();
        assert_eq!(state.calls_of_user("bob").await.unwrap().len(), 3);
        // In two calls he is.
        accept(&state, "c1", "bob", "b1").await;
        accept(&state, "c2", "bob", "b2").await;
        assert_eq!(
            state.insert(call("c4", "erin", "e1", &["bob"]), 2).await,
            Err(InsertError::Busy("bob".into()))
        );
        assert_eq!(state.len(), 3);
        // Bob hangs up one: he has room for another.
        let mut c1 = state.get("c1").await.unwrap().unwrap();
        let version = c1.version;
        c1.leave("b1", Leave::Hangup).unwrap();
        c1.version += 1;
        assert!(state.compare_and_set(version, c1).await.unwrap());
        state
            .insert(call("c4", "erin", "e1", &["bob"]), 2)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_ended_call_is_forgotten_with_its_indexes() {
        let state = MemoryCallState::new();
        state
            .insert(call("c", "alice", "a1", &["bob"]), 4)
            .await
            .unwrap();
        let mut c = state.get("c").await.unwrap().unwrap();
        let version = c.version;
        c.leave("a1", Leave::Hangup).unwrap();
        c.version += 1;
        assert!(state.compare_and_set(version, c).await.unwrap());
        assert!(state.is_empty());
        assert!(state.get("c").await.unwrap().is_none());
        assert!(state.calls_of_user("alice").await.unwrap().is_empty());
        assert!(state.calls_of_user("bob").await.unwrap().is_empty());
        assert!(state.calls_of_device("a1").await.unwrap().is_empty());
        let inner = state.inner.lock();
        assert!(inner.by_user.is_empty() && inner.by_device.is_empty());
    }
}
