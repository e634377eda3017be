//! Who may watch whom: one hook ([`WatchPolicy`]) the deployment chooses.
//! By default any signed-in user may watch any other, as in one
//! organization; a deployment with several (or with private profiles)
//! restricts it.

use std::fmt;
use std::sync::Arc;

use socketio::BoxFuture;

use crate::error::HubError;
use crate::identity::Identity;

/// Decides which users a user may watch.
pub trait WatchPolicy: Send + Sync + 'static {
    /// Which of `users` `watcher` may *not* watch (empty: all of them).
    /// An error (a directory that did not answer) refuses the whole
    /// `watch` with it.
    fn refused(
        &self,
        watcher: &Identity,
        users: &[String],
    ) -> BoxFuture<Result<Vec<String>, HubError>>;
}

/// Any signed-in user may watch any other.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyoneMayWatch;

impl WatchPolicy for AnyoneMayWatch {
    fn refused(&self, _: &Identity, _: &[String]) -> BoxFuture<Result<Vec<String>, HubError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// The policy in the component's settings (`PresenceConfig::watch_policy`):
/// set in code by the program that embeds the hub, not in the file.
#[derive(Clone)]
pub struct WatchHook(pub Arc<dyn WatchPolicy>);

impl WatchHook {
    pub fn new(policy: impl WatchPolicy) -> WatchHook {
        WatchHook(Arc::new(policy))
    }
}

impl Default for WatchHook {
    fn default() -> Self {
        WatchHook::new(AnyoneMayWatch)
    }
}

impl fmt::Debug for WatchHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WatchHook")
    }
}
