//! [`RedisTyping`]: chat's typing state in a cluster. Who is typing is
//! decided where the typist's device is, by the in-memory state
//! ([`MemoryTyping`]: its timers, relay interval and versions are that
//! node's); what the cluster must know is which indicators a node shows,
//! so that when it stops the others stop them at once rather than leave
//! them shown. So every relayed start is marked, and every relayed stop
//! unmarked, in the node's index in Redis; a node dropping another takes
//! that index (one script: one node gets it) and relays a stop for each.
//!
//! Keys: `<key_prefix>-typing#n#<node>`, a hash of `<conversation>#<user>`
//! = the version of the start shown; a field goes with its stop, the hash
//! with its node (taken when the node is dropped).
//!
//! A mark Redis refuses (down) is counted and logged; the relay is made
//! all the same (typing is shown as on one node), only that indicator
//! would then not be stopped if its node died.

use std::sync::{Arc, LazyLock};

use cluster::redis::Script;
use hub::components::chat::state::{MemoryTyping, Relay, TypingState};
use hub::error::{ErrorCode, HubError};
use socketio::BoxFuture;

use super::{Malformed, Redis, array, invoke, text};

static MARK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("typing/mark.lua")));
static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("typing/take.lua")));

/// The typing state of a node of a cluster. Cloning shares it.
#[derive(Clone)]
pub struct RedisTyping {
    local: Arc<MemoryTyping>,
    redis: Redis,
    /// `<key_prefix>-typing#n#`.
    prefix: Arc<str>,
    /// This node's uid.
    node: Arc<str>,
}

impl RedisTyping {
    /// `local` decides; its relays are marked in this node's index.
    pub fn new(
        cluster: &cluster::Cluster,
        local: MemoryTyping,
        stats: Arc<super::LiveStats>,
    ) -> RedisTyping {
        RedisTyping {
            local: Arc::new(local),
            redis: Redis {
                cluster: cluster.clone(),
                stats,
            },
            prefix: format!("{}-typing#n#", cluster.key_prefix()).into(),
            node: cluster.uid().into(),
        }
    }

    /// This node rejoins its cluster after the others dropped it: the
    /// indicators its devices showed were stopped by the node that dropped
    /// it (it took this node's index), so they are forgotten here without
    /// a second stop. Returns how many.
    pub fn forget_local(&self) -> usize {
        self.local.forget_all()
    }

    /// While this node is out of touch ([`cluster::Cluster::out_of_touch`]),
    /// the node that dropped it stopped its indicators: what its own
    /// timers or departures decide now is not told again.
    fn stale(&self) -> bool {
        self.redis.cluster.out_of_touch()
    }

    fn index(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    /// Marks (or unmarks) each relay in this node's index; a failure is
    /// counted, not returned.
    async fn mark(&self, relays: &[Relay]) {
        for relay in relays {
            let mut call = MARK.prepare_invoke();
            call.key(self.index(&self.node))
                .arg(field(relay.conversation, &relay.user))
                .arg(relay.version)
                .arg(if relay.typing { "1" } else { "0" });
            if let Err(err) = invoke(&self.redis.cluster, &call).await {
                self.redis.failed(&self.redis.stats.typing_unavailable, err);
            }
        }
    }
}

/// An indicator's field: `<conversation>#<user>`.
fn field(conversation: i64, user: &str) -> String {
    format!("{conversation}#{user}")
}

/// The conversation and user of a field.
fn typist(field: &str) -> Result<(i64, String), Malformed> {
    let (conversation, user) = field
        .split_once('#')
        .ok_or_else(|| Malformed(format!("a typing field without '#': {field:?}")))?;
    let conversation = conversation
        .parse()
        .map_err(|_| Malformed(format!("a typing field's conversation: {field:?}")))?;
    Ok((conversation, user.to_owned()))
}

fn unavailable(err: String) -> HubError {
    HubError::new(
        ErrorCode::Unavailable,
        format!("typing state unavailable: {err}"),
    )
}

impl TypingState for RedisTyping {
    fn set(
        &self,
        conversation: i64,
        user: &str,
        socket: &str,
        on: bool,
    ) -> BoxFuture<Result<Option<Relay>, HubError>> {
        if self.stale() {
            // Shown now, it could be forgotten unstopped when the node
            // rejoins: the client tries again once reconnected.
            return Box::pin(async {
                Err(unavailable("this node is rejoining its cluster".to_owned()))
            });
        }
        let decided = self.local.set(conversation, user, socket, on);
        let this = self.clone();
        Box::pin(async move {
            let relay = decided.await?;
            if let Some(relay) = &relay {
                this.mark(std::slice::from_ref(relay)).await;
            }
            Ok(relay)
        })
    }

    fn expire(&self) -> BoxFuture<Result<Vec<Relay>, HubError>> {
        let decided = self.local.expire();
        let this = self.clone();
        Box::pin(async move {
            let stopped = decided.await?;
            if this.stale() {
                return Ok(Vec::new());
            }
            this.mark(&stopped).await;
            Ok(stopped)
        })
    }

    fn device_gone(&self, socket: &str) -> BoxFuture<Result<Vec<Relay>, HubError>> {
        let decided = self.local.device_gone(socket);
        let this = self.clone();
        Box::pin(async move {
            let stopped = decided.await?;
            if this.stale() {
                return Ok(Vec::new());
            }
            this.mark(&stopped).await;
            Ok(stopped)
        })
    }

    fn stop_failed(&self, relay: &Relay) -> BoxFuture<Result<(), HubError>> {
        // Shown again until its stop is told: marked again.
        let shown = Relay {
            typing: true,
            ..relay.clone()
        };
        let decided = self.local.stop_failed(relay);
        let this = self.clone();
        Box::pin(async move {
            decided.await?;
            this.mark(&[shown]).await;
            Ok(())
        })
    }

    fn drop_node(&self, node: &str) -> BoxFuture<Result<Vec<Relay>, HubError>> {
        let this = self.clone();
        let key = self.index(node);
        Box::pin(async move {
            let mut call = TAKE.prepare_invoke();
            call.key(key);
            let value = invoke(&this.redis.cluster, &call).await.map_err(|err| {
                unavailable(this.redis.failed(&this.redis.stats.typing_unavailable, err))
            })?;
            let fields = array(&value).map_err(|err| {
                unavailable(this.redis.failed(&this.redis.stats.typing_malformed, err))
            })?;
            let mut stopped = Vec::with_capacity(fields.len());
            for field in fields {
                // One field that is not ours does not keep the others shown.
                match text(field).and_then(|f| typist(&f)) {
                    Ok((conversation, user)) => stopped.push(Relay {
                        conversation,
                        user,
                        typing: false,
                        // Later than anything this node relayed of it.
                        version: this.local.next_version(),
                    }),
                    Err(err) => {
                        this.redis.failed(&this.redis.stats.typing_malformed, err);
                    }
                }
            }
            Ok(stopped)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use hub::components::chat::state::TypingTimers;

    #[test]
    fn a_field_names_a_conversation_and_a_user_or_is_refused() {
        assert_eq!(typist("12#alice#x").unwrap(), (12, "alice#x".to_owned()));
        assert!(typist("alice").is_err());
        assert!(typist("x#alice").is_err());
    }

    #[tokio::test]
    async fn the_indicators_a_stopped_node_showed_are_stopped_once() {
        let Some(cluster) = super::super::tests::test_cluster().await else {
            return;
        };
        let stats = Arc::new(super::super::LiveStats::default());
        let timers = TypingTimers {
            ttl: Duration::from_secs(5),
            relay_interval: Duration::from_millis(1),
        };
        let typing = RedisTyping::new(&cluster, MemoryTyping::new(timers), stats.clone());
        let on = |c, user: &'static str, start| typing.set(c, user, "s1", start);
        assert!(on(1, "alice", true).await.unwrap().is_some());
        assert!(on(2, "alice", true).await.unwrap().is_some());
        assert!(on(1, "bob", true).await.unwrap().is_some());
        // Bob stopped: his indicator is no longer the node's.
        assert!(on(1, "bob", false).await.unwrap().is_some());
        // What another node takes when this one stops.
        let mut stopped: Vec<(i64, String, bool)> = (typing.drop_node(cluster.uid()).await)
            .unwrap()
            .into_iter()
            .map(|r| (r.conversation, r.user, r.typing))
            .collect();
        stopped.sort();
        assert_eq!(
            stopped,
            [
                (1, "alice".to_owned(), false),
                (2, "alice".to_owned(), false)
            ]
        );
        assert!(typing.drop_node(cluster.uid()).await.unwrap().is_empty());
        assert_eq!(
            stats
                .typing_unavailable
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}
