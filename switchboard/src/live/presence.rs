//! [`RedisPresence`]: the presence state ([`PresenceState`]) every node of
//! a cluster shares, in Redis. Each method is one Lua script (the scripts
//! beside this file, `common.lua` first), so each change and its version
//! are one atomic step whichever node makes it, as in the in-memory state:
//! the same model (a device per socket with its node, lingering for the
//! grace period), the same versions (one counter for every user, `INCR`ed
//! in the script, never below the clock).
//!
//! Keys, under `<key_prefix>-presence#`:
//! - `u#<user>`: a hash per user with a device (connected or lingering):
//!   chosen status, last seen, version, and a field per device naming its
//!   node; deleted with the user's last device.
//! - `n#<node>`: a set per node, the users with a device on it, so that the
//!   devices of a node that stops are dropped at once ([`drop_node`]).
//! - `version`: the counter.
//!
//! [`drop_node`]: PresenceState::drop_node

use std::sync::LazyLock;
use std::time::Duration;

use cluster::redis::{Script, Value};
use hub::services::presence::state::{
    Change, Departure, Device, Millis, PresenceState, Remembered, StateError, Status, UserPresence,
};
use socketio::BoxFuture;

use super::{DROP_BATCH, Malformed, Redis, array, integer, invoke, query, text, version_floor};

const COMMON: &str = include_str!("presence/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

static CONNECT: LazyLock<Script> = LazyLock::new(|| script(include_str!("presence/connect.lua")));
static DISCONNECT: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("presence/disconnect.lua")));
static EXPIRE: LazyLock<Script> = LazyLock::new(|| script(include_str!("presence/expire.lua")));
static SET_STATUS: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("presence/set_status.lua")));
static GET: LazyLock<Script> = LazyLock::new(|| script(include_str!("presence/get.lua")));
static DROP_NODE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("presence/drop_node.lua")));

/// The presence state in Redis. Cloning shares it.
#[derive(Clone)]
pub struct RedisPresence {
    redis: Redis,
    /// `<key_prefix>-presence#`.
    prefix: std::sync::Arc<str>,
    max_lingering: usize,
}

impl RedisPresence {
    /// The presence state of `cluster`'s nodes; at most `max_lingering`
    /// devices of one user linger (`presence.max_lingering`).
    pub fn new(
        cluster: &cluster::Cluster,
        max_lingering: usize,
        stats: std::sync::Arc<super::LiveStats>,
    ) -> RedisPresence {
        RedisPresence {
            redis: Redis {
                cluster: cluster.clone(),
                stats,
            },
            prefix: format!("{}-presence#", cluster.key_prefix()).into(),
            max_lingering,
        }
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}u#{user}", self.prefix)
    }

    fn node_prefix(&self) -> String {
        format!("{}n#", self.prefix)
    }

    fn version_key(&self) -> String {
        format!("{}version", self.prefix)
    }

    fn unavailable(&self, err: impl std::fmt::Display) -> StateError {
        let stats = &self.redis.stats;
        StateError(self.redis.failed(&stats.presence_unavailable, err))
    }

    /// Reads a reply, or counts it malformed.
    fn read<T>(&self, parse: impl FnOnce() -> Result<T, Malformed>) -> Result<T, StateError> {
        parse()
            .map_err(|err| StateError(self.redis.failed(&self.redis.stats.presence_malformed, err)))
    }

    /// Runs a script, counting a failure.
    async fn run(
        &self,
        invocation: &cluster::redis::ScriptInvocation<'_>,
    ) -> Result<Value, StateError> {
        invoke(&self.redis.cluster, invocation)
            .await
            .map_err(|err| self.unavailable(err))
    }
}

/// `{status, devices, seen or -1, version, visible}` as the scripts return it.
fn change(user: &str, value: &Value) -> Result<Change, Malformed> {
    let [status, devices, seen, version, visible] = array(value)? else {
        return Err(Malformed(format!("expected a presence, got {value:?}")));
    };
    let status = text(status)?;
    let status = match status.as_str() {
        "offline" => Status::Offline,
        other => {
            Status::chosen(other).ok_or_else(|| Malformed(format!("unknown status {other:?}")))?
        }
    };
    let devices = usize::try_from(integer(devices)?)
        .map_err(|_| Malformed("a negative device count".to_owned()))?;
    let seen = integer(seen)?;
    let version =
        u64::try_from(integer(version)?).map_err(|_| Malformed("a negative version".to_owned()))?;
    Ok(Change {
        presence: UserPresence {
            user: user.to_owned(),
            status,
            devices,
            last_seen: (seen >= 0).then_some(seen),
            version,
        },
        visible: integer(visible)? == 1,
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl PresenceState for RedisPresence {
    fn knows(&self, user: &str) -> BoxFuture<Result<bool, StateError>> {
        let this = self.clone();
        let key = self.user_key(user);
        Box::pin(async move {
            let mut command = cluster::redis::cmd("EXISTS");
            command.arg(key);
            let value = query(&this.redis.cluster, command)
                .await
                .map_err(|err| this.unavailable(err))?;
            this.read(|| Ok(integer(&value)? == 1))
        })
    }

    fn connect(
        &self,
        user: &str,
        device: Device,
        remembered: Remembered,
        now: Millis,
    ) -> BoxFuture<Result<Change, StateError>> {
        let this = self.clone();
        let user = user.to_owned();
        Box::pin(async move {
            let seen = remembered
                .last_seen
                .map(|t| t.to_string())
                .unwrap_or_default();
            let mut call = CONNECT.prepare_invoke();
            call.key(this.user_key(&user))
                .key(format!("{}{}", this.node_prefix(), device.node))
                .key(this.version_key())
                .arg(&user)
                .arg(&device.socket)
                .arg(&device.node)
                .arg(remembered.status.as_str())
                .arg(seen)
                .arg(now)
                .arg(version_floor())
                .arg(this.node_prefix());
            let value = this.run(&call).await?;
            this.read(|| change(&user, &value))
        })
    }

    fn disconnect(
        &self,
        user: &str,
        socket: &str,
        now: Millis,
        grace: Duration,
    ) -> BoxFuture<Result<Departure, StateError>> {
        let this = self.clone();
        let (user, socket) = (user.to_owned(), socket.to_owned());
        Box::pin(async move {
            let mut call = DISCONNECT.prepare_invoke();
            call.key(this.user_key(&user))
                .key(this.version_key())
                .arg(&socket)
                .arg(now)
                .arg(millis(grace))
                .arg(this.max_lingering)
                .arg(version_floor())
                .arg(&user)
                .arg(this.node_prefix());
            let value = this.run(&call).await?;
            this.read(|| {
                let items = array(&value)?;
                match (
                    items.first().map(text).transpose()?.as_deref(),
                    items.get(1),
                ) {
                    (Some("unknown"), _) => Ok(Departure::Unknown),
                    (Some("lingering"), Some(until)) => Ok(Departure::Lingering {
                        until: integer(until)?,
                    }),
                    (Some("gone"), Some(presence)) => Ok(Departure::Gone(change(&user, presence)?)),
                    _ => Err(Malformed(format!("expected a departure, got {value:?}"))),
                }
            })
        })
    }

    fn expire(&self, user: &str, until: Millis) -> BoxFuture<Result<Option<Change>, StateError>> {
        let this = self.clone();
        let user = user.to_owned();
        Box::pin(async move {
            let mut call = EXPIRE.prepare_invoke();
            call.key(this.user_key(&user))
                .key(this.version_key())
                .arg(until)
                .arg(version_floor())
                .arg(&user)
                .arg(this.node_prefix());
            let value = this.run(&call).await?;
            this.read(|| match &value {
                Value::Nil => Ok(None),
                presence => change(&user, presence).map(Some),
            })
        })
    }

    fn set_status(
        &self,
        user: &str,
        status: Status,
    ) -> BoxFuture<Result<Option<Change>, StateError>> {
        let this = self.clone();
        let user = user.to_owned();
        Box::pin(async move {
            let mut call = SET_STATUS.prepare_invoke();
            call.key(this.user_key(&user))
                .key(this.version_key())
                .arg(status.as_str())
                .arg(version_floor());
            let value = this.run(&call).await?;
            this.read(|| match &value {
                Value::Nil => Ok(None),
                presence => change(&user, presence).map(Some),
            })
        })
    }

    fn get(&self, users: &[String]) -> BoxFuture<Result<Vec<UserPresence>, StateError>> {
        let this = self.clone();
        let users = users.to_vec();
        Box::pin(async move {
            let mut call = GET.prepare_invoke();
            call.key(this.version_key());
            for user in &users {
                call.key(this.user_key(user));
            }
            call.arg(version_floor());
            let value = this.run(&call).await?;
            this.read(|| {
                let items = array(&value)?;
                if items.len() != users.len() {
                    return Err(Malformed(format!(
                        "{} presences for {} users",
                        items.len(),
                        users.len()
                    )));
                }
                (users.iter().zip(items))
                    .map(|(user, item)| Ok(change(user, item)?.presence))
                    .collect()
            })
        })
    }

    fn drop_node(&self, node: &str) -> BoxFuture<Result<Vec<Change>, StateError>> {
        let this = self.clone();
        let node = node.to_owned();
        Box::pin(async move {
            let mut changes = Vec::new();
            loop {
                let mut call = DROP_NODE.prepare_invoke();
                call.key(format!("{}{node}", this.node_prefix()))
                    .key(this.version_key())
                    .arg(&node)
                    .arg(version_floor())
                    .arg(DROP_BATCH)
                    .arg(format!("{}u#", this.prefix));
                let value = this.run(&call).await?;
                let left = this.read(|| {
                    let [left, dropped] = array(&value)? else {
                        return Err(Malformed(format!(
                            "expected {{left, changes}}, got {value:?}"
                        )));
                    };
                    for item in array(dropped)? {
                        let [user, presence] = array(item)? else {
                            return Err(Malformed(format!(
                                "expected {{user, presence}}, got {item:?}"
                            )));
                        };
                        changes.push(change(&text(user)?, presence)?);
                    }
                    integer(left)
                })?;
                if left <= 0 {
                    return Ok(changes);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    //! The scripts against a real Redis (`TEST_REDIS_URL`, set by
    //! `tests/redis/with-redis.sh`): what the in-memory state's tests
    //! check, with devices on two nodes.
    use super::*;
    use std::sync::Arc;

    use crate::live::LiveStats;

    const GRACE: Duration = Duration::from_millis(100);

    /// A presence state on the test Redis under a prefix of its own; `None`
    /// outside CI without one.
    async fn state() -> Option<(RedisPresence, Arc<LiveStats>, cluster::Cluster)> {
        let cluster = crate::live::tests::test_cluster().await?;
        let stats = Arc::new(LiveStats::default());
        Some((
            RedisPresence::new(&cluster, 2, stats.clone()),
            stats,
            cluster,
        ))
    }

    fn on(socket: &str, node: &str) -> Device {
        Device {
            socket: socket.to_owned(),
            node: node.to_owned(),
        }
    }

    async fn connect(
        state: &RedisPresence,
        user: &str,
        socket: &str,
        node: &str,
        now: Millis,
    ) -> Change {
        (state.connect(user, on(socket, node), Remembered::default(), now))
            .await
            .unwrap()
    }

    fn seen(change: &Change) -> (Status, usize, bool) {
        (
            change.presence.status,
            change.presence.devices,
            change.visible,
        )
    }

    /// A raw command on the test Redis.
    async fn redis(cluster: &cluster::Cluster, args: &[&str]) -> Value {
        let mut command = cluster::redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        query(cluster, command).await.unwrap()
    }

    #[tokio::test]
    async fn devices_on_two_nodes_count_once_each_and_a_reload_changes_nothing_visible() {
        let Some((state, _, cluster)) = state().await else {
            return;
        };
        assert!(!state.knows("alice").await.unwrap());
        let first = connect(&state, "alice", "s1", "A", 1_000).await;
        assert_eq!(seen(&first), (Status::Online, 1, true));
        assert_eq!(first.presence.last_seen, Some(1_000));
        let second = connect(&state, "alice", "s2", "B", 2_000).await;
        assert_eq!(seen(&second), (Status::Online, 2, true));
        assert!(second.presence.version > first.presence.version);
        // The version is kept as digits (not Lua's 1.7e+15).
        let stored = redis(&cluster, &["HGET", &state.user_key("alice"), "v"]).await;
        assert_eq!(text(&stored).unwrap(), second.presence.version.to_string());
        assert!(state.knows("alice").await.unwrap());

        // B's device reloads onto A: it lingers, then the new socket takes
        // its place. Nobody sees a thing.
        let left = state.disconnect("alice", "s2", 2_500, GRACE).await.unwrap();
        assert_eq!(left, Departure::Lingering { until: 2_600 });
        let back = connect(&state, "alice", "s3", "A", 2_550).await;
        assert_eq!(seen(&back), (Status::Online, 2, false));
        assert_eq!(back.presence.version, second.presence.version);
        assert_eq!(state.expire("alice", 2_600).await.unwrap(), None);
        // A departure is counted once.
        assert_eq!(
            state.disconnect("alice", "s2", 2_700, GRACE).await.unwrap(),
            Departure::Unknown
        );

        // Both leave without a grace period: offline, forgotten, and what
        // is read after is no older than the last change.
        let Departure::Gone(one) = state
            .disconnect("alice", "s1", 3_000, Duration::ZERO)
            .await
            .unwrap()
        else {
            panic!("no grace")
        };
        assert_eq!(seen(&one), (Status::Online, 1, true));
        let Departure::Gone(offline) = state
            .disconnect("alice", "s3", 3_100, Duration::ZERO)
            .await
            .unwrap()
        else {
            panic!("no grace")
        };
        assert_eq!(seen(&offline), (Status::Offline, 0, true));
        assert_eq!(offline.presence.last_seen, Some(3_100));
        assert!(!state.knows("alice").await.unwrap());
        let read = state.get(&["alice".to_owned()]).await.unwrap().remove(0);
        assert_eq!(
            (read.status, read.devices, read.last_seen),
            (Status::Offline, 0, None)
        );
        assert!(read.version >= offline.presence.version);
        let again = connect(&state, "alice", "s4", "B", 4_000).await;
        assert!(again.presence.version > read.version);
    }

    #[tokio::test]
    async fn lingering_is_bounded_and_expires_and_a_status_is_for_every_device() {
        let Some((state, _, _)) = state().await else {
            return;
        };
        assert_eq!(state.set_status("bob", Status::Busy).await.unwrap(), None);
        let remembered = Remembered {
            status: Status::Away,
            last_seen: Some(10),
        };
        let first = (state.connect("bob", on("s1", "A"), remembered, 20))
            .await
            .unwrap();
        assert_eq!(seen(&first), (Status::Away, 1, true));
        for socket in ["s2", "s3", "s4"] {
            connect(&state, "bob", socket, "B", 30).await;
        }
        let busy = state
            .set_status("bob", Status::Busy)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen(&busy), (Status::Busy, 4, true));
        let same = state
            .set_status("bob", Status::Busy)
            .await
            .unwrap()
            .unwrap();
        assert!(!same.visible && same.presence.version == busy.presence.version);
        // Two linger at most (the state's max_lingering); the third is gone.
        for socket in ["s2", "s3"] {
            let left = state.disconnect("bob", socket, 40, GRACE).await.unwrap();
            assert!(
                matches!(left, Departure::Lingering { until: 140 }),
                "{left:?}"
            );
        }
        let Departure::Gone(gone) = state.disconnect("bob", "s4", 50, GRACE).await.unwrap() else {
            panic!("past the lingering bound")
        };
        assert_eq!(seen(&gone), (Status::Busy, 3, true));
        let expired = state.expire("bob", 140).await.unwrap().unwrap();
        assert_eq!(seen(&expired), (Status::Busy, 1, true));
        let got = state
            .get(&["bob".to_owned(), "nobody".to_owned()])
            .await
            .unwrap();
        assert_eq!((got[0].status, got[0].devices), (Status::Busy, 1));
        assert_eq!(got[1].status, Status::Offline);
    }

    #[tokio::test]
    async fn a_dropped_nodes_devices_connected_or_lingering_are_gone_at_once() {
        let Some((state, _, cluster)) = state().await else {
            return;
        };
        connect(&state, "alice", "a1", "A", 0).await;
        connect(&state, "alice", "a2", "B", 0).await;
        connect(&state, "carol", "c1", "B", 0).await;
        connect(&state, "carol", "c2", "B", 0).await;
        // One of carol's lingers (its node's timer would expire it).
        state.disconnect("carol", "c2", 1, GRACE).await.unwrap();
        connect(&state, "dave", "d1", "A", 0).await;
        let before = state.get(&["alice".to_owned()]).await.unwrap().remove(0);

        let mut changes = state.drop_node("B").await.unwrap();
        changes.sort_by(|a, b| a.presence.user.cmp(&b.presence.user));
        let got: Vec<(&str, Status, usize, bool)> = (changes.iter())
            .map(|c| {
                (
                    &*c.presence.user,
                    c.presence.status,
                    c.presence.devices,
                    c.visible,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("alice", Status::Online, 1, true),
                ("carol", Status::Offline, 0, true)
            ]
        );
        assert!(changes[0].presence.version > before.version);
        assert!(!state.knows("carol").await.unwrap());
        let index = format!("{}B", state.node_prefix());
        assert_eq!(redis(&cluster, &["EXISTS", &index]).await, Value::Int(0));
        // Every node hears it; only the first gets the changes.
        assert!(state.drop_node("B").await.unwrap().is_empty());
        let dave = state.get(&["dave".to_owned()]).await.unwrap().remove(0);
        assert_eq!((dave.status, dave.devices), (Status::Online, 1));
    }

    #[tokio::test]
    async fn a_node_with_many_users_is_dropped_in_batches() {
        let Some((state, _, _)) = state().await else {
            return;
        };
        let users = DROP_BATCH * 2 + 7;
        for i in 0..users {
            connect(&state, &format!("u{i}"), "s", "B", 0).await;
        }
        let changes = state.drop_node("B").await.unwrap();
        assert_eq!(changes.len(), users);
        assert!(changes.iter().all(|c| c.presence.status == Status::Offline));
        assert!(state.drop_node("B").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn what_redis_holds_that_is_not_ours_is_a_clear_error_and_counted() {
        let Some((state, stats, cluster)) = state().await else {
            return;
        };
        // A status the state never writes.
        connect(&state, "alice", "s1", "A", 0).await;
        redis(
            &cluster,
            &["HSET", &state.user_key("alice"), "status", "sleepy"],
        )
        .await;
        let err = state.get(&["alice".to_owned()]).await.unwrap_err();
        assert!(
            err.to_string().contains("unknown status \"sleepy\""),
            "{err}"
        );
        assert_eq!(
            stats
                .presence_malformed
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // A key of another type: Redis refuses the script.
        redis(&cluster, &["SET", &state.user_key("bob"), "x"]).await;
        let err = connect_err(&state, "bob").await;
        assert!(err.to_string().contains("WRONGTYPE"), "{err}");
        assert_eq!(
            stats
                .presence_unavailable
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // A lingering device that does not say until when is dropped.
        redis(
            &cluster,
            &[
                "HSET",
                &state.user_key("alice"),
                "status",
                "online",
                "l#x",
                "soon",
            ],
        )
        .await;
        let got = state.get(&["alice".to_owned()]).await.unwrap().remove(0);
        assert_eq!(got.devices, 1);
    }

    async fn connect_err(state: &RedisPresence, user: &str) -> StateError {
        (state.connect(user, on("s", "A"), Remembered::default(), 0))
            .await
            .unwrap_err()
    }

    #[test]
    fn a_malformed_reply_is_an_error_not_a_panic() {
        for value in [
            Value::Nil,
            Value::Int(3),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![
                Value::BulkString(b"sleepy".to_vec()),
                Value::Int(1),
                Value::Int(-1),
                Value::Int(5),
                Value::Int(1),
            ]),
            Value::Array(vec![
                Value::BulkString(b"online".to_vec()),
                Value::Int(-2),
                Value::Int(-1),
                Value::Int(5),
                Value::Int(1),
            ]),
            Value::Array(vec![
                Value::BulkString(vec![0xff]),
                Value::Int(1),
                Value::Int(-1),
                Value::Int(5),
                Value::Int(1),
            ]),
        ] {
            assert!(change("alice", &value).is_err(), "{value:?}");
        }
        let good = Value::Array(vec![
            Value::BulkString(b"busy".to_vec()),
            Value::Int(2),
            Value::Int(1_000),
            Value::Int(7),
            Value::Int(1),
        ]);
        let change = change("alice", &good).unwrap();
        assert_eq!(
            (
                change.presence.status,
                change.presence.devices,
                change.presence.last_seen
            ),
            (Status::Busy, 2, Some(1_000))
        );
        assert!(change.visible);
    }
}
