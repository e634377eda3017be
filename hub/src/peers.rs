//! [`Peers`]: what the hub's parts do when another node of the cluster
//! stops. A component whose live state names the node it came from (a
//! typing indicator, a call's device) registers a hook here when it is
//! built; [`Hub::node_dropped`](crate::Hub::node_dropped) runs them all
//! when the cluster stops counting a node. Alone, no hook ever runs.

use std::sync::Arc;

use parking_lot::Mutex;
use socketio::BoxFuture;

type Hook = Arc<dyn Fn(String) -> BoxFuture<()> + Send + Sync>;

/// The hooks run when a node of the cluster stops. Cloning shares them.
#[derive(Clone, Default)]
pub struct Peers {
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl Peers {
    /// Runs `hook` with the node's id whenever a node stops (after the
    /// hooks registered before it, one at a time).
    pub fn on_dropped(&self, hook: impl Fn(String) -> BoxFuture<()> + Send + Sync + 'static) {
        self.hooks.lock().push(Arc::new(hook));
    }

    /// Node `node` stopped: runs every hook.
    pub async fn dropped(&self, node: &str) {
        let hooks: Vec<Hook> = self.hooks.lock().clone();
        for hook in hooks {
            hook(node.to_owned()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_hook_hears_of_a_stopped_node_in_order() {
        let peers = Peers::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        for name in ["typing", "calls"] {
            let heard = heard.clone();
            peers.on_dropped(move |node| {
                heard.lock().push(format!("{name}:{node}"));
                Box::pin(async {})
            });
        }
        peers.dropped("B").await;
        assert_eq!(*heard.lock(), ["typing:B", "calls:B"]);
    }
}
