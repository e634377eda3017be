//! [`PresenceService`]: the presence every part of the hub reads — the
//! `/presence` component and the publish API's `GET /api/v1/presence` —
//! from the live state ([`PresenceState`]) and, for users offline, the
//! store.

use std::collections::HashMap;
use std::sync::Arc;

use super::state::{Change, Millis, PresenceState, Remembered, Status, UserPresence};
use super::store;
use crate::error::{ErrorCode, HubError};
use crate::store::Store;

/// Live presence plus what the store remembers. Cloning shares it.
#[derive(Clone)]
pub struct PresenceService {
    state: Arc<dyn PresenceState>,
    store: Store,
    /// This node's id in the device entries.
    node: Arc<str>,
    seen: Arc<SeenWrites>,
}

/// `last_seen` writes waiting for the store, written many in one
/// transaction (group commit): a node restart takes thousands of users
/// offline at once, and one transaction each would queue their `offline`
/// events behind thousands of commits.
#[derive(Default)]
struct SeenWrites {
    pending: parking_lot::Mutex<PendingSeen>,
    /// Held by the caller writing a batch; the others wait for it, then
    /// find their write done or write the next batch, theirs included.
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct PendingSeen {
    /// The batch being filled.
    batch: u64,
    /// Latest time per user in it.
    users: HashMap<String, Millis>,
}

impl From<super::state::StateError> for HubError {
    fn from(err: super::state::StateError) -> HubError {
        tracing::warn!(%err, "presence state error");
        HubError::new(ErrorCode::Unavailable, "presence is unavailable; try again")
    }
}

impl PresenceService {
    pub fn new(state: Arc<dyn PresenceState>, store: Store) -> PresenceService {
        // A random node id: entries of a node that restarted are not
        // mistaken for its new ones.
        let node = format!("node-{:016x}", rand::random::<u64>());
        PresenceService::on_node(state, store, &node)
    }

    /// On node `node` of a cluster (its id on the bus: the entries of its
    /// devices are dropped with it when it stops).
    pub fn on_node(state: Arc<dyn PresenceState>, store: Store, node: &str) -> PresenceService {
        PresenceService {
            state,
            store,
            node: node.into(),
            seen: Arc::default(),
        }
    }

    /// The live state.
    pub fn state(&self) -> &Arc<dyn PresenceState> {
        &self.state
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The presence of each of `users`, in order: the live state's for
    /// users online (or in their grace period), `offline` with the stored
    /// `last_seen` for the others.
    pub(crate) async fn lookup(&self, users: &[String]) -> Result<Vec<UserPresence>, HubError> {
        let mut presence = self.state.get(users).await?;
        let missing: Vec<String> = presence
            .iter()
            .filter(|p| p.status == Status::Offline)
            .map(|p| p.user.clone())
            .collect();
        if missing.is_empty() {
            return Ok(presence);
        }
        let stored = self.remembered(&missing).await?;
        for p in presence.iter_mut().filter(|p| p.status == Status::Offline) {
            p.last_seen = stored.get(&p.user).and_then(|r| r.last_seen);
        }
        Ok(presence)
    }

    /// What the store remembers of each of `users` it knows.
    pub(crate) async fn remembered(
        &self,
        users: &[String],
    ) -> Result<HashMap<String, Remembered>, HubError> {
        Ok(self
            .store
            .timed(async {
                let mut conn = self.store.pool().acquire().await?;
                store::remembered(&mut conn, users).await
            })
            .await?)
    }

    /// `user` chooses `status`: stored first (an error changes nothing),
    /// then applied to the live state. `None` when the user has no device.
    /// A status the store holds already is not written again (the same
    /// choice twice is free, and takes no write lock).
    pub(crate) async fn set_status(
        &self,
        user: &str,
        status: Status,
    ) -> Result<Option<Change>, HubError> {
        debug_assert!(status.is_chosen());
        let stored = self
            .remembered(std::slice::from_ref(&user.to_owned()))
            .await?
            .remove(user)
            .unwrap_or_default()
            .status;
        if stored != status {
            self.store
                .timed(async {
                    let mut conn = self.store.pool().acquire().await?;
                    store::set_status(&mut conn, user, status).await
                })
                .await?;
        }
        Ok(self.state.set_status(user, status).await?)
    }

    /// Remembers that `user` was seen at `at` (a later time stored already
    /// wins). Returns once it is written, with the other writes that came
    /// meanwhile, in one transaction.
    pub(crate) async fn record_seen(&self, user: &str, at: Millis) -> Result<(), HubError> {
        let mine = {
            let mut pending = self.seen.pending.lock();
            let time = pending.users.entry(user.to_owned()).or_insert(at);
            *time = (*time).max(at);
            pending.batch
        };
        let _flushing = self.seen.flushing.lock().await;
        let batch: Vec<(String, Millis)> = {
            let mut pending = self.seen.pending.lock();
            if pending.batch > mine {
                // Written by the caller before us.
                return Ok(());
            }
            pending.batch += 1;
            std::mem::take(&mut pending.users).into_iter().collect()
        };
        self.store
            .timed(async {
                let mut tx = self.store.begin_write().await?;
                for (user, at) in &batch {
                    store::seen(&mut tx, user, *at).await?;
                }
                tx.commit().await
            })
            .await?;
        Ok(())
    }
}
