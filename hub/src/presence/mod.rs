//! `/presence`: who is online (any socket connected, offline after a grace
//! period), their status and devices, watched by other users.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use socketio::{Args, BoxFuture, Socket};

use crate::component::{Component, HubError, Reply};
use crate::context::Context;

/// The component's settings (`[presence]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// How long a user stays online after their last socket left, in
    /// milliseconds (absorbs a page reload).
    pub grace_ms: u64,
    /// Users one socket may watch.
    pub max_watch: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            grace_ms: 10_000,
            max_watch: 500,
        }
    }
}

/// The `/presence` namespace's component.
pub struct Presence {
    #[allow(dead_code)]
    ctx: Context,
    #[allow(dead_code)]
    config: PresenceConfig,
}

impl Presence {
    pub fn new(ctx: Context, config: PresenceConfig) -> Presence {
        Presence { ctx, config }
    }
}

impl Component for Presence {
    fn handle(&self, _socket: &Arc<Socket>, event: &str, _args: &Args) -> BoxFuture<Reply> {
        let result = Err(HubError::new(
            "unknown_event",
            format!("no handler for {event:?}"),
        ));
        Box::pin(std::future::ready(result))
    }
}
