//! [`UserLocks`]: one writer at a time per user, so that what each device
//! is told about a user's unread count arrives in the order the store
//! changed it.
//!
//! A change (a new notification, a read, a prune) commits its transaction
//! and emits the new count while holding its user's lock; so does the
//! count a device gets when it connects. Two changes of one user can then
//! neither commit nor emit out of order, and the last count any device
//! received is the store's. The locks are striped (a fixed number, users
//! hashed onto them): memory does not grow with users, and a change for
//! many users takes each stripe once, in order, so two of them cannot
//! deadlock.
//!
//! They order one process's writers. Across the nodes of a cluster the
//! same rule needs a shared lock (or a per-user version the devices
//! compare); that is the one piece of `/notifications` the cluster
//! replaces — everything else is in the store.

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

/// Stripes: enough that unrelated users rarely wait for each other.
pub const STRIPES: usize = 256;

/// Striped per-user locks.
pub struct UserLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

/// Held locks; dropping them releases them.
pub struct Held<'a> {
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl Default for UserLocks {
    fn default() -> Self {
        UserLocks::new(STRIPES)
    }
}

impl UserLocks {
    pub fn new(stripes: usize) -> UserLocks {
        UserLocks {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn stripe(&self, user: &str) -> usize {
        (self.hasher.hash_one(user) % self.stripes.len() as u64) as usize
    }

    /// Locks every user of `users` (in stripe order: no deadlock).
    pub async fn lock<'a, I>(&'a self, users: I) -> Held<'a>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut stripes: Vec<usize> = users
            .into_iter()
            .map(|user| self.stripe(user.as_ref()))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        Held { _guards: guards }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_user_has_one_writer_at_a_time_and_many_users_do_not_deadlock() {
        let locks = Arc::new(UserLocks::new(8));
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
}
