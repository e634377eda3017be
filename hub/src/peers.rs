//! [`Peers`]: the other nodes of the cluster, as the hub's parts see
//! them. A component whose live state names the node it came from (a
//! typing indicator, a call's device) registers a hook here when it is
//! built; [`Hub::node_dropped`](crate::Hub::node_dropped) runs them all
//! when the cluster stops counting a node. The publish API asks the
//! other nodes ([`OtherNodes`], which the embedding program provides in
//! cluster mode) how many of their sockets it reached or are in rooms,
//! and disconnects theirs. Alone, no hook ever runs and nobody is asked.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use socketio::BoxFuture;

type Hook = Arc<dyn Fn(String) -> BoxFuture<()> + Send + Sync>;

/// What the other nodes answered: a count, and how complete it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// The sockets counted on the nodes that answered.
    pub count: usize,
    /// How many nodes did not answer within the cluster's request
    /// timeout (0: the count is complete).
    pub unanswered: usize,
    /// The nodes known by name (Switchboard nodes) that did not answer.
    pub missing: Vec<String>,
    /// Why the other nodes could not be asked at all, if so.
    pub error: Option<String>,
}

impl Tally {
    /// Every node asked answered.
    pub fn is_complete(&self) -> bool {
        self.unanswered == 0 && self.error.is_none()
    }

    /// Both tallies together (of two requests made at once).
    pub fn and(mut self, other: Tally) -> Tally {
        self.count += other.count;
        self.unanswered = self.unanswered.max(other.unanswered);
        for node in other.missing {
            if !self.missing.contains(&node) {
                self.missing.push(node);
            }
        }
        self.missing.sort();
        self.error = self.error.or(other.error);
        self
    }
}

/// How many sockets of the other nodes are in each of some rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Each room asked, with the sockets in it on the nodes that answered
    /// (0 when none).
    pub rooms: BTreeMap<String, usize>,
    /// How complete that is (its `count`: every room's together).
    pub tally: Tally,
}

/// An answer of the other nodes, which the answers of several questions
/// asked at once add up to.
trait Adds: Default + Send + 'static {
    /// Both answers together.
    fn and(self, other: Self) -> Self;
    /// The answer of a question that could not be asked.
    fn failed(error: String) -> Self;
}

impl Adds for Tally {
    fn and(self, other: Tally) -> Tally {
        Tally::and(self, other)
    }

    fn failed(error: String) -> Tally {
        Tally {
            error: Some(error),
            ..Tally::default()
        }
    }
}

impl Adds for Sizes {
    /// Room by room (the same rooms asked in several namespaces).
    fn and(mut self, other: Sizes) -> Sizes {
        for (room, n) in other.rooms {
            *self.rooms.entry(room).or_default() += n;
        }
        self.tally = self.tally.and(other.tally);
        self
    }

    fn failed(error: String) -> Sizes {
        Sizes {
            rooms: BTreeMap::new(),
            tally: Tally::failed(error),
        }
    }
}

/// Runs every question at once and adds up their answers.
async fn at_once<T: Adds>(questions: Vec<BoxFuture<T>>) -> T {
    let mut asked = tokio::task::JoinSet::new();
    for question in questions {
        asked.spawn(question);
    }
    let mut total = T::default();
    while let Some(answer) = asked.join_next().await {
        total = total.and(answer.unwrap_or_else(|err| T::failed(err.to_string())));
    }
    total
}

/// The other nodes of a cluster, asked about their sockets (the embedding
/// program's, over the cluster's bus).
pub trait OtherNodes: Send + Sync + 'static {
    /// How many sockets of the other nodes are in any of `rooms` of
    /// namespace `nsp` (every socket of it when `rooms` is empty).
    fn count(&self, nsp: String, rooms: Vec<String>) -> BoxFuture<Tally>;

    /// How many sockets of the other nodes are in each of `rooms` of
    /// namespace `nsp`: one question for all the rooms.
    fn sizes(&self, nsp: String, rooms: Vec<String>) -> BoxFuture<Sizes>;

    /// Disconnects the sockets of the other nodes in any of `rooms` of
    /// namespace `nsp`; the tally counts them as they were found just
    /// before.
    fn disconnect(&self, nsp: String, rooms: Vec<String>) -> BoxFuture<Tally>;
}

/// The other nodes: the hooks run when one stops, and how to ask them.
/// Cloning shares them.
#[derive(Clone, Default)]
pub struct Peers {
    hooks: Arc<Mutex<Vec<Hook>>>,
    others: Arc<std::sync::OnceLock<Arc<dyn OtherNodes>>>,
}

impl Peers {
    /// In cluster mode: how to ask the other nodes (set once).
    pub fn set_others(&self, others: Arc<dyn OtherNodes>) {
        let _ = self.others.set(others);
    }

    /// How to ask the other nodes, in cluster mode.
    pub fn others(&self) -> Option<&Arc<dyn OtherNodes>> {
        self.others.get()
    }

    /// Asks the other nodes each `(namespace, rooms)` at once and adds up
    /// the answers (`disconnect`: and disconnects them); `None` alone.
    pub async fn tally(
        &self,
        targets: Vec<(String, Vec<String>)>,
        disconnect: bool,
    ) -> Option<Tally> {
        let others = self.others.get()?.clone();
        let questions = targets
            .into_iter()
            .map(|(nsp, rooms)| {
                if disconnect {
                    others.disconnect(nsp, rooms)
                } else {
                    others.count(nsp, rooms)
                }
            })
            .collect();
        Some(at_once(questions).await)
    }

    /// Asks the other nodes, in each of `namespaces` at once, how many of
    /// their sockets are in each of `rooms` (one question per namespace,
    /// whatever the number of rooms), and adds up the namespaces' answers
    /// room by room; `None` alone.
    pub async fn sizes(&self, namespaces: Vec<String>, rooms: Vec<String>) -> Option<Sizes> {
        let others = self.others.get()?.clone();
        let questions = namespaces
            .into_iter()
            .map(|nsp| others.sizes(nsp, rooms.clone()))
            .collect();
        Some(at_once(questions).await)
    }

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

    #[test]
    fn tallies_add_up_and_say_who_did_not_answer() {
        let a = Tally {
            count: 2,
            unanswered: 1,
            missing: vec!["C".into()],
            error: None,
        };
        let b = Tally {
            count: 3,
            unanswered: 1,
            missing: vec!["C".into(), "B".into()],
            error: None,
        };
        let total = a.and(b);
        assert_eq!(total.count, 5);
        assert_eq!(total.missing, ["B", "C"]);
        assert!(!total.is_complete());
        assert!(Tally::default().is_complete());
    }

    #[test]
    fn sizes_of_several_namespaces_add_up_room_by_room() {
        let sizes = |rooms: &[(&str, usize)], missing: &[&str]| Sizes {
            rooms: rooms.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            tally: Tally {
                count: rooms.iter().map(|(_, n)| n).sum(),
                unanswered: missing.len(),
                missing: missing.iter().map(|m| m.to_string()).collect(),
                error: None,
            },
        };
        let chat = sizes(&[("user:a", 2), ("user:b", 0)], &[]);
        let calls = sizes(&[("user:a", 1), ("user:b", 1)], &["C"]);
        let total = Adds::and(chat, calls);
        assert_eq!(
            total.rooms,
            sizes(&[("user:a", 3), ("user:b", 1)], &[]).rooms
        );
        assert_eq!(total.tally.count, 4);
        assert_eq!(total.tally.missing, ["C"]);
        assert!(!total.tally.is_complete());
        let failed = Adds::and(Sizes::default(), Sizes::failed("redis down".into()));
        assert_eq!(failed.tally.error.as_deref(), Some("redis down"));
    }

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
