//! [`RedisCalls`]: the calls state ([`CallState`]) every node of a
//! cluster shares, so that a call placed on one node is answered, signalled
//! and hung up on any. A call is its JSON (as the hub serializes [`Call`])
//! with its version; every write is one Lua script: the insert with its
//! busy check, the compare-and-set on the version, each keeping the
//! indexes in the same step.
//!
//! Keys, under `<key_prefix>-calls#`:
//! - `c#<id>`: a hash per live call: `call` (JSON), `v` (version), `idx`
//!   (the users and devices it indexes), `timer` (the node whose ring
//!   timer runs for it while it rings); deleted when the call ends.
//! - `u#<user>`, `b#<user>`, `d#<device>`: sets of call ids: live for the
//!   user, keeping the user busy, with the device in; an id goes with its
//!   call's change, a set with its last id.
//! - `dn`: a hash, device = the node it joined a call on; `n#<node>`: the
//!   devices of a node in calls; `t#<node>`: the calls a node times. A
//!   device goes when it is in no call; a node's sets when it is dropped:
//!   its devices leave their calls, its ringing calls are timed by the
//!   node that dropped it.

use std::sync::{Arc, LazyLock};

use cluster::redis::{Script, Value};
use hub::components::calls::{Call, CallState, InsertError, Orphans, Phase, StateError};
use serde::Serialize;
use socketio::BoxFuture;

use super::{Malformed, Redis, array, invoke, query, text};

const COMMON: &str = include_str!("calls/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

static INSERT: LazyLock<Script> = LazyLock::new(|| script(include_str!("calls/insert.lua")));
static CAS: LazyLock<Script> = LazyLock::new(|| script(include_str!("calls/cas.lua")));
static DROP_NODE: LazyLock<Script> = LazyLock::new(|| script(include_str!("calls/drop_node.lua")));

/// What a call indexes.
#[derive(Serialize)]
struct Index<'a> {
    live: Vec<&'a str>,
    busy: Vec<&'a str>,
    devices: Vec<&'a str>,
}

impl<'a> Index<'a> {
    fn of(call: &'a Call) -> Index<'a> {
        Index {
            live: call.live_users(),
            busy: call.busy_users(),
            devices: call
                .participants
                .iter()
                .map(|p| p.device.as_str())
                .collect(),
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The calls state in Redis. Cloning shares it.
#[derive(Clone)]
pub struct RedisCalls {
    redis: Redis,
    /// `<key_prefix>-calls#`.
    prefix: Arc<str>,
    /// This node's uid.
    node: Arc<str>,
}

impl RedisCalls {
    /// The calls state of `cluster`'s nodes.
    pub fn new(cluster: &cluster::Cluster, stats: Arc<super::LiveStats>) -> RedisCalls {
        RedisCalls {
            redis: Redis {
                cluster: cluster.clone(),
                stats,
            },
            prefix: format!("{}-calls#", cluster.key_prefix()).into(),
            node: cluster.uid().into(),
        }
    }

    fn unavailable(&self, err: impl std::fmt::Display) -> StateError {
        StateError(self.redis.failed(&self.redis.stats.calls_unavailable, err))
    }

    fn malformed(&self, err: Malformed) -> StateError {
        StateError(self.redis.failed(&self.redis.stats.calls_malformed, err))
    }

    async fn run(&self, call: &cluster::redis::ScriptInvocation<'_>) -> Result<Value, StateError> {
        invoke(&self.redis.cluster, call)
            .await
            .map_err(|err| self.unavailable(err))
    }

    /// The members of a set (call ids).
    async fn members(&self, key: String) -> Result<Vec<String>, StateError> {
        let mut command = cluster::redis::cmd("SMEMBERS");
        command.arg(key);
        let value = query(&self.redis.cluster, command)
            .await
            .map_err(|err| self.unavailable(err))?;
        strings(&value).map_err(|err| self.malformed(err))
    }
}

fn strings(value: &Value) -> Result<Vec<String>, Malformed> {
    array(value)?.iter().map(text).collect()
}

/// Whether `call` still rings for someone (its ring timer matters).
fn rings(call: &Call) -> bool {
    call.phase != Phase::Ended && !call.ringing().is_empty()
}

impl CallState for RedisCalls {
    fn insert(&self, call: Call, max_calls_per_user: usize) -> BoxFuture<Result<(), InsertError>> {
        let this = self.clone();
        Box::pin(async move {
            let json = serde_json::to_string(&call).map_err(|err| this.unavailable(err))?;
            let mut invocation = INSERT.prepare_invoke();
            invocation
                .arg(&*this.prefix)
                .arg(&call.id)
                .arg(json)
                .arg(call.version)
                .arg(max_calls_per_user)
                .arg(&*this.node)
                .arg(Index::of(&call).json())
                .arg(if rings(&call) { "1" } else { "0" });
            let value = this.run(&invocation).await?;
            let reply = strings(&value).map_err(|err| this.malformed(err))?;
            match reply.as_slice() {
                [ok] if ok == "ok" => Ok(()),
                [busy, user] if busy == "busy" => Err(InsertError::Busy(user.clone())),
                _ => Err(this
                    .malformed(Malformed(format!("expected ok or busy, got {value:?}")))
                    .into()),
            }
        })
    }

    fn get(&self, id: &str) -> BoxFuture<Result<Option<Call>, StateError>> {
        let this = self.clone();
        let key = format!("{}c#{id}", self.prefix);
        Box::pin(async move {
            let mut command = cluster::redis::cmd("HGET");
            command.arg(key).arg("call");
            let value = query(&this.redis.cluster, command)
                .await
                .map_err(|err| this.unavailable(err))?;
            if value == Value::Nil {
                return Ok(None);
            }
            let json = text(&value).map_err(|err| this.malformed(err))?;
            serde_json::from_str(&json)
                .map(Some)
                .map_err(|err| this.malformed(Malformed(format!("a call's JSON: {err}"))))
        })
    }

    fn compare_and_set(&self, expected: u64, next: Call) -> BoxFuture<Result<bool, StateError>> {
        let this = self.clone();
        Box::pin(async move {
            let json = serde_json::to_string(&next).map_err(|err| this.unavailable(err))?;
            let mut invocation = CAS.prepare_invoke();
            invocation
                .arg(&*this.prefix)
                .arg(&next.id)
                .arg(expected)
                .arg(json)
                .arg(next.version)
                .arg(if next.phase == Phase::Ended { "1" } else { "0" })
                .arg(&*this.node)
                .arg(Index::of(&next).json())
                .arg(if rings(&next) { "1" } else { "0" });
            match this.run(&invocation).await? {
                Value::Int(written) => Ok(written == 1),
                other => Err(this.malformed(Malformed(format!("expected 0 or 1, got {other:?}")))),
            }
        })
    }

    fn calls_of_device(&self, device: &str) -> BoxFuture<Result<Vec<String>, StateError>> {
        let this = self.clone();
        let key = format!("{}d#{device}", self.prefix);
        Box::pin(async move { this.members(key).await })
    }

    fn calls_of_user(&self, user: &str) -> BoxFuture<Result<Vec<String>, StateError>> {
        let this = self.clone();
        let key = format!("{}u#{user}", self.prefix);
        Box::pin(async move { this.members(key).await })
    }

    fn drop_node(&self, node: &str) -> BoxFuture<Result<Orphans, StateError>> {
        let this = self.clone();
        let node = node.to_owned();
        Box::pin(async move {
            let mut invocation = DROP_NODE.prepare_invoke();
            invocation.arg(&*this.prefix).arg(&node).arg(&*this.node);
            let value = this.run(&invocation).await?;
            let parse = || {
                let [devices, ringing] = array(&value)? else {
                    return Err(Malformed(format!(
                        "expected {{devices, ringing}}, got {value:?}"
                    )));
                };
                Ok(Orphans {
                    devices: strings(devices)?,
                    ringing: strings(ringing)?,
                })
            };
            parse().map_err(|err| this.malformed(err))
        })
    }
}

#[cfg(test)]
mod tests {
    //! The scripts against the test Redis: what the in-memory state's
    //! tests check, and a stopped node's devices and timers.
    use super::*;
    use hub::components::calls::{Kind, Leave};

    async fn state() -> Option<(RedisCalls, RedisCalls)> {
        let a = crate::live::tests::test_cluster().await?;
        let stats = Arc::new(super::super::LiveStats::default());
        // B: another node on the same keys.
        let mut config = cluster::ClusterConfig::new(std::env::var("TEST_REDIS_URL").ok()?);
        config.key_prefix = a.key_prefix().to_owned();
        let b = cluster::Cluster::start(config).unwrap();
        assert!(b.wait_up(std::time::Duration::from_secs(5)).await);
        Some((
            RedisCalls::new(&a, stats.clone()),
            RedisCalls::new(&b, stats),
        ))
    }

    fn call(id: &str, caller: &str, device: &str, invitees: &[&str]) -> Call {
        let invitees: Vec<String> = invitees.iter().map(|s| s.to_string()).collect();
        Call::new(id.into(), caller, device, Kind::Audio, &invitees, 0)
    }

    /// Applies `change` to call `id` on `state` with a compare-and-set.
    async fn update(state: &RedisCalls, id: &str, change: impl FnOnce(&mut Call)) -> bool {
        let mut c = state.get(id).await.unwrap().unwrap();
        let version = c.version;
        change(&mut c);
        c.version += 1;
        state.compare_and_set(version, c).await.unwrap()
    }

    #[tokio::test]
    async fn one_answer_wins_whichever_node_writes_and_busy_users_are_refused() {
        let Some((a, b)) = state().await else {
            return;
        };
        a.insert(call("c1", "alice", "a1", &["bob"]), 1)
            .await
            .unwrap();
        // Placed on A, read on B.
        let read = b.get("c1").await.unwrap().unwrap();
        assert_eq!(read, call("c1", "alice", "a1", &["bob"]));
        assert_eq!(b.calls_of_user("bob").await.unwrap(), ["c1"]);
        // Two of bob's devices, on two nodes, answer from the same version.
        let mut first = read.clone();
        first.accept("bob", "b1", 8).unwrap();
        first.version += 1;
        let mut second = read.clone();
        second.accept("bob", "b2", 8).unwrap();
        second.version += 1;
        assert!(b.compare_and_set(read.version, first).await.unwrap());
        assert!(!a.compare_and_set(read.version, second).await.unwrap());
        assert_eq!(a.calls_of_device("b1").await.unwrap(), ["c1"]);
        assert!(a.calls_of_device("b2").await.unwrap().is_empty());
        // Alice and bob are busy in one call: a second is refused.
        let refused = a.insert(call("c2", "carol", "c9", &["bob"]), 1).await;
        assert_eq!(refused, Err(InsertError::Busy("bob".into())));
        // Ringing alone does not make busy.
        a.insert(call("c3", "carol", "c9", &["dave"]), 1)
            .await
            .unwrap();
        a.insert(call("c4", "erin", "e9", &["dave"]), 1)
            .await
            .unwrap();
        // The call ends: forgotten with its indexes.
        assert!(update(&a, "c1", |c| drop(c.leave("a1", Leave::Hangup))).await);
        assert!(a.get("c1").await.unwrap().is_none());
        assert!(b.calls_of_user("bob").await.unwrap().is_empty());
        assert!(b.calls_of_device("b1").await.unwrap().is_empty());
        // Bob is free again (carol still calls dave: busy in c3).
        a.insert(call("c5", "frank", "f1", &["bob"]), 1)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_stopped_nodes_devices_and_ring_timers_are_handed_over_once() {
        let Some((a, b)) = state().await else {
            return;
        };
        // Placed on B (its timer there); answered on A; another on B
        // answered on B.
        b.insert(call("c1", "alice", "a1", &["bob", "carol"]), 4)
            .await
            .unwrap();
        assert!(update(&a, "c1", |c| c.accept("bob", "b1", 8).unwrap()).await);
        b.insert(call("c2", "dave", "d1", &["erin"]), 4)
            .await
            .unwrap();
        assert!(update(&b, "c2", |c| c.accept("erin", "e1", 8).unwrap()).await);
        // B stops; A drops it.
        let mut orphans = a.drop_node(&b.node).await.unwrap();
        orphans.devices.sort();
        assert_eq!(orphans.devices, ["a1", "d1", "e1"]);
        // c1 still rings for carol: A times it now; c2 rings for nobody.
        assert_eq!(orphans.ringing, ["c1"]);
        assert_eq!(a.drop_node(&b.node).await.unwrap(), Orphans::default());
        // A's own device is A's: dropping A hands it and c1's timer over.
        let orphans = b.drop_node(&a.node).await.unwrap();
        assert_eq!(
            (orphans.devices, orphans.ringing),
            (vec!["b1".to_owned()], vec!["c1".to_owned()])
        );
    }

    #[tokio::test]
    async fn a_call_redis_holds_that_is_not_json_is_an_error_not_a_panic() {
        let Some((a, _)) = state().await else {
            return;
        };
        let mut command = cluster::redis::cmd("HSET");
        command
            .arg(format!("{}c#x", a.prefix))
            .arg("call")
            .arg("{not json");
        query(&a.redis.cluster, command).await.unwrap();
        let err = a.get("x").await.unwrap_err();
        assert!(err.to_string().contains("a call's JSON"), "{err}");
        let malformed = &a.redis.stats.calls_malformed;
        assert_eq!(malformed.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
