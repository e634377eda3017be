//! [`UserLocks`]: one writer at a time per user, so that what each device
//! is told about a user's unread count arrives in the order the store
//! changed it.
//!
//! A change (a new notification, a read, a prune) commits its transaction
//! and emits the new count while holding its user's lock; so does the
//! count a device gets when it connects. Two changes of one user can then
//! neither commit nor emit out of order, and the last count any device
//! received is the store's.
//!
//! One lock per user, made when someone asks for it and forgotten when
//! nobody holds or waits for it: memory follows the users being written,
//! and a change for 10,000 users (the API's largest) holds exactly their
//! locks, never another user's (striped locks, hashed, would have it hold
//! nearly every stripe, and stall every other user's `read` behind it). A
//! change for many users takes their locks in the order of their ids, so
//! two of them cannot deadlock.
//!
//! They order one process's writers. Across the nodes of a cluster the
//! same rule needs a shared lock (or a per-user version the devices
//! compare); that is the one piece of `/notifications` the cluster
//! replaces — everything else is in the store.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// Per-user locks.
#[derive(Default)]
pub struct UserLocks {
    /// The lock of each user someone holds or waits for. An entry whose
    /// only reference is this map is unused and removed.
    users: parking_lot::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// Held locks; dropping them releases them.
pub struct Held<'a> {
    locks: &'a UserLocks,
    guards: Vec<(String, OwnedMutexGuard<()>)>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.guards);
        let mut users = self.locks.users.lock();
        for (user, guard) in held {
            drop(guard);
            // Nobody else holds or waits for it (each waiter took its
            // reference under this map's lock): forget it.
            if users.get(&user).is_some_and(|l| Arc::strong_count(l) == 1) {
                users.remove(&user);
            }
        }
    }
}

impl UserLocks {
    /// Users with a lock entry (held or waited for), for tests.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.users.lock().is_empty()
    }

    /// Locks every user of `users` (in id order: no deadlock).
    pub async fn lock<'a, I>(&'a self, users: I) -> Held<'a>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut wanted: Vec<String> = users
            .into_iter()
            .map(|user| user.as_ref().to_owned())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut held = Held {
            locks: self,
            guards: Vec::with_capacity(wanted.len()),
        };
        for user in wanted {
            let lock = self.users.lock().entry(user.clone()).or_default().clone();
            // Pushed as it is taken: a drop while waiting (the caller gave
            // up) releases those held so far.
            let guard = lock.lock_owned().await;
            held.guards.push((user, guard));
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_user_has_one_writer_at_a_time_and_many_users_do_not_deadlock() {
        let locks = Arc::new(UserLocks::default());
        let held = locks.lock(["alice"]).await;
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move {
                let _held = locks.lock(["bob", "alice"]).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "alice's lock is held");
        drop(held);
        waiting.await.unwrap();

        // Overlapping sets taken from many tasks at once all finish.
        let users: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let locks = locks.clone();
            let mut mine = users.clone();
            mine.rotate_left(i * 5);
            tasks.push(tokio::spawn(async move {
                let _held = locks.lock(&mine).await;
                tokio::task::yield_now().await;
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("no deadlock")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_change_for_many_users_does_not_hold_another_users_lock() {
        let locks = UserLocks::default();
        let many: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let held = locks.lock(&many).await;
        // Someone else reads meanwhile: not one of the 10,000, not waiting.
        let other = tokio::time::timeout(Duration::from_millis(500), locks.lock(["zed"]))
            .await
            .expect("an unrelated user is not blocked by a large change");
        drop(other);
        drop(held);
        assert!(locks.is_empty(), "unused locks are forgotten");
    }
}
