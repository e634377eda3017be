//! `/calls`: WebRTC call signalling — invitations that ring every device
//! of each invitee, accept/decline/hangup, `signal` relayed between the
//! participants' devices, and TURN credentials.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use socketio::{Args, BoxFuture, Socket};

use crate::component::{Component, HubError, Reply};
use crate::context::Context;

/// The component's settings (`[calls]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Participants of one call, caller included (a mesh).
    pub max_participants: usize,
    /// How long an invitation rings before it is a missed call, in
    /// milliseconds.
    pub ring_timeout_ms: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            max_participants: 8,
            ring_timeout_ms: 30_000,
        }
    }
}

/// The `/calls` namespace's component.
pub struct Calls {
    #[allow(dead_code)]
    ctx: Context,
    #[allow(dead_code)]
    config: CallsConfig,
}

impl Calls {
    pub fn new(ctx: Context, config: CallsConfig) -> Calls {
        Calls { ctx, config }
    }
}

impl Component for Calls {
    fn handle(&self, _socket: &Arc<Socket>, event: &str, _args: &Args) -> BoxFuture<Reply> {
        let result = Err(HubError::new(
            "unknown_event",
            format!("no handler for {event:?}"),
        ));
        Box::pin(std::future::ready(result))
    }
}
