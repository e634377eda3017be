//! `/chat`: conversations (direct and group), messages with a
//! per-conversation `seq`, history, typing and read receipts.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use socketio::{Args, BoxFuture, Socket};

use crate::component::{Component, HubError, Reply};
use crate::context::Context;

/// The component's settings (`[chat]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Members a group conversation may have.
    pub max_members: usize,
    /// Longest message text, in characters.
    pub max_text_chars: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_members: 256,
            max_text_chars: 4_000,
        }
    }
}

/// The `/chat` namespace's component.
pub struct Chat {
    #[allow(dead_code)]
    ctx: Context,
    #[allow(dead_code)]
    config: ChatConfig,
}

impl Chat {
    pub fn new(ctx: Context, config: ChatConfig) -> Chat {
        Chat { ctx, config }
    }
}

impl Component for Chat {
    fn handle(&self, _socket: &Arc<Socket>, event: &str, _args: &Args) -> BoxFuture<Reply> {
        let result = Err(HubError::new(
            "unknown_event",
            format!("no handler for {event:?}"),
        ));
        Box::pin(std::future::ready(result))
    }
}
