//! The live presence state behind a trait ([`PresenceState`]), so that a
//! cluster can keep it in Redis (the binary's `live/presence.rs`: a hash
//! per user, a device per field naming its node, dropped with its node)
//! without touching the component's logic; [`MemoryState`] is the
//! one-node implementation.
//!
//! The model is Phoenix.Presence's: per user, one entry per device (a
//! socket of `/presence`, with the node it is on). A device that leaves
//! *lingers* for the grace period: it still counts, and a new socket of the
//! same user within the grace period takes its place. So a page reload
//! (one socket leaves, a new one arrives a moment later) changes nothing
//! anyone sees, and the user goes offline only once the last lingering
//! device expires. The state keeps no entry for an offline user (their
//! chosen status and `last_seen` are in the store), so its memory follows
//! the users online.
//!
//! Every change others see takes a new *version*, in the same atomic step
//! as the change, and every presence carries its version: the announcements
//! of two changes may reach a client in either order (they are sent after
//! the step, by whichever task made it, on whichever node), and the client
//! keeps the one with the higher version, which is what the state holds.
//! So every device and watcher ends on the same presence, whatever order
//! concurrent connects, departures and status changes are made in.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use socketio::BoxFuture;

/// Unix time in milliseconds.
pub type Millis = i64;

/// Orders the changes of a user's presence: a later change has a higher
/// version (see [`PresenceState`]).
pub type Version = u64;

/// A user's status as others see it: `online`, `away` or `busy` (the
/// user's choice) while a device of theirs is connected, `offline` once
/// none is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Away,
    Busy,
    Offline,
}

impl Status {
    /// Its name on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Busy => "busy",
            Status::Offline => "offline",
        }
    }

    /// The status named `name`, if it is one a user may choose.
    pub fn chosen(name: &str) -> Option<Status> {
        [Status::Online, Status::Away, Status::Busy]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// Whether a user may choose it (everything but `offline`).
    pub fn is_chosen(self) -> bool {
        self != Status::Offline
    }
}

/// One user's presence, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserPresence {
    pub user: String,
    /// The chosen status while any device is connected (or lingering),
    /// `offline` otherwise.
    pub status: Status,
    /// Devices connected, those in their grace period included.
    pub devices: usize,
    /// When a device of the user last connected or left (Unix ms); `null`
    /// if never.
    #[schema(value_type = Option<i64>, required = true)]
    pub last_seen: Option<Millis>,
    /// Grows with every change of `status` or `devices` (not by one, and
    /// across restarts too): of two presences of the user, the one with
    /// the higher version is the newer. Events and acks may arrive out of
    /// order; a client keeps the highest version it has seen.
    #[schema(value_type = u64)]
    pub version: Version,
}

impl UserPresence {
    /// An offline user's presence: `version` is the state's at the time it
    /// was read (the user's next change will be higher).
    pub fn offline(user: &str, last_seen: Option<Millis>, version: Version) -> UserPresence {
        UserPresence {
            user: user.to_owned(),
            status: Status::Offline,
            devices: 0,
            last_seen,
            version,
        }
    }
}

/// A connected device: a socket of the presence namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The socket's id (unique per namespace, so per device).
    pub socket: String,
    /// The node it is connected to (in a cluster, a node that stops takes
    /// its devices with it: [`PresenceState::drop_node`]).
    pub node: String,
}

/// What the store remembers of a user, for the state to start from when
/// the user's first device arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remembered {
    pub status: Status,
    pub last_seen: Option<Millis>,
}

impl Default for Remembered {
    fn default() -> Self {
        Remembered {
            status: Status::Online,
            last_seen: None,
        }
    }
}

/// The user's presence after a change, and whether watchers must hear of
/// it (their status or device count changed; a newer `last_seen` alone is
/// not news). A visible change has a version of its own; an invisible one
/// keeps the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub presence: UserPresence,
    pub visible: bool,
}

/// What a departure left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// The device lingers until `until`: call [`PresenceState::expire`]
    /// then. Nothing anyone sees has changed.
    Lingering { until: Millis },
    /// The device is gone at once (no grace period, or too many devices
    /// lingering already): tell the watchers.
    Gone(Change),
    /// No such device (it left already).
    Unknown,
}

/// The state could not be read or written (the cluster's Redis did not
/// answer); the in-memory state never fails.
#[derive(Debug, Clone, thiserror::Error)]
#[error("presence state unavailable: {0}")]
pub struct StateError(pub String);

/// The live presence of every user, shared by every node of a cluster.
/// Every method is one atomic step on one user's entries.
///
/// Versions: every visible change gives the user's presence a version
/// higher than any it had before, in the same step — even after the state
/// forgot the user (offline) and after a restart — and the presence of a
/// user without entries carries a version at least as high as their last
/// change's. [`MemoryState`] counts with one counter for all users that
/// starts from the clock; a Redis state can `INCR` a counter in the same
/// script as the change (one for all users, or one per user kept after
/// the user's entries are deleted).
pub trait PresenceState: Send + Sync + 'static {
    /// Whether the state has entries for `user` (a device connected or
    /// lingering); if not, their first device starts from what the store
    /// remembers.
    fn knows(&self, user: &str) -> BoxFuture<Result<bool, StateError>>;

    /// `device` of `user` connected at `now`. A lingering device of the
    /// user, if any, is replaced by it (a reload: nothing visible changes).
    /// `remembered` is used only if the state has no entry for the user.
    fn connect(
        &self,
        user: &str,
        device: Device,
        remembered: Remembered,
        now: Millis,
    ) -> BoxFuture<Result<Change, StateError>>;

    /// The device with socket id `socket` of `user` left at `now`; it
    /// lingers for `grace` (at most `max_lingering` devices of one user
    /// linger; past that it is gone at once).
    fn disconnect(
        &self,
        user: &str,
        socket: &str,
        now: Millis,
        grace: Duration,
    ) -> BoxFuture<Result<Departure, StateError>>;

    /// The grace period of the devices of `user` lingering until `until`
    /// (or before) is over: they are gone. `Some` when that changed what
    /// watchers see (fewer devices, or offline: then the state forgets the
    /// user).
    fn expire(&self, user: &str, until: Millis) -> BoxFuture<Result<Option<Change>, StateError>>;

    /// `user` chose `status` (for every device of theirs). `None` when the
    /// state has no entry for the user.
    fn set_status(
        &self,
        user: &str,
        status: Status,
    ) -> BoxFuture<Result<Option<Change>, StateError>>;

    /// The presence of each of `users`, in order: from their entries, or,
    /// for a user without any, offline with a `last_seen` of `None` (the
    /// store knows it).
    fn get(&self, users: &[String]) -> BoxFuture<Result<Vec<UserPresence>, StateError>>;

    /// Node `node` stopped (the cluster no longer counts it): every device
    /// on it, connected or lingering, is gone at once. Returns the visible
    /// changes, for the watchers (a user with no device left is offline,
    /// and forgotten). Only one caller gets a given change: every node
    /// hears that a node stopped, and the watchers hear it once.
    fn drop_node(&self, node: &str) -> BoxFuture<Result<Vec<Change>, StateError>>;
}

/// One user's entries.
#[derive(Debug)]
struct Entry {
    status: Status,
    last_seen: Option<Millis>,
    connected: Vec<Device>,
    /// Until when each lingering device counts, oldest departure first.
    lingering: Vec<Millis>,
    /// Its last visible change's.
    version: Version,
}

impl Entry {
    fn devices(&self) -> usize {
        self.connected.len() + self.lingering.len()
    }

    fn presence(&self, user: &str) -> UserPresence {
        let devices = self.devices();
        UserPresence {
            user: user.to_owned(),
            status: if devices > 0 {
                self.status
            } else {
                Status::Offline
            },
            devices,
            last_seen: self.last_seen,
            version: self.version,
        }
    }

    fn seen(&mut self, now: Millis) {
        self.last_seen = Some(self.last_seen.map_or(now, |t| t.max(now)));
    }
}

/// The presence of one node's users, in memory.
#[derive(Debug)]
pub struct MemoryState {
    users: Mutex<Users>,
    max_lingering: usize,
}

/// Every user's entries, and the versions' counter: one lock for both, so
/// that a change and its version are one step.
#[derive(Debug)]
struct Users {
    entries: HashMap<String, Entry>,
    /// The last version given (to any user's change).
    version: Version,
}

impl MemoryState {
    /// At most `max_lingering` devices of one user linger after leaving.
    pub fn new(max_lingering: usize) -> MemoryState {
        // Versions start from the clock, in thousandths of a millisecond,
        // so they keep growing across a restart (a client that held one
        // from before does not take what follows for older) unless more
        // than 1,000 changes a millisecond went on for long.
        let start = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
        MemoryState {
            users: Mutex::new(Users {
                entries: HashMap::new(),
                version: start.saturating_mul(1_000),
            }),
            max_lingering,
        }
    }

    /// Users with entries (connected or lingering), for tests and metrics.
    pub fn len(&self) -> usize {
        self.users.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn connect_now(
        &self,
        user: &str,
        device: Device,
        remembered: Remembered,
        now: Millis,
    ) -> Change {
        let mut users = self.users.lock();
        let Users { entries, version } = &mut *users;
        let entry = entries.entry(user.to_owned()).or_insert_with(|| Entry {
            status: remembered.status,
            last_seen: remembered.last_seen,
            connected: Vec::new(),
            lingering: Vec::new(),
            version: 0,
        });
        let before = entry.presence(user);
        if !entry.lingering.is_empty() {
            // The new socket is the lingering device back (a reload).
            entry.lingering.remove(0);
        }
        if !entry.connected.iter().any(|d| d.socket == device.socket) {
            entry.connected.push(device);
        }
        entry.seen(now);
        changed(user, &before, entry, version)
    }

    fn disconnect_now(&self, user: &str, socket: &str, now: Millis, grace: Duration) -> Departure {
        let mut users = self.users.lock();
        let Users { entries, version } = &mut *users;
        let Some(entry) = entries.get_mut(user) else {
            return Departure::Unknown;
        };
        let Some(index) = entry.connected.iter().position(|d| d.socket == socket) else {
            return Departure::Unknown;
        };
        let before = entry.presence(user);
        entry.connected.remove(index);
        entry.seen(now);
        if !grace.is_zero() && entry.lingering.len() < self.max_lingering {
            let until = now.saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
            entry.lingering.push(until);
            return Departure::Lingering { until };
        }
        let change = changed(user, &before, entry, version);
        if entry.devices() == 0 {
            entries.remove(user);
        }
        Departure::Gone(change)
    }

    fn expire_now(&self, user: &str, until: Millis) -> Option<Change> {
        let mut users = self.users.lock();
        let Users { entries, version } = &mut *users;
        let entry = entries.get_mut(user)?;
        let before = entry.presence(user);
        entry.lingering.retain(|&t| t > until);
        let change = changed(user, &before, entry, version);
        if entry.devices() == 0 {
            entries.remove(user);
        }
        change.visible.then_some(change)
    }

    fn drop_node_now(&self, node: &str) -> Vec<Change> {
        let mut users = self.users.lock();
        let Users { entries, version } = &mut *users;
        let mut changes = Vec::new();
        entries.retain(|user, entry| {
            if !entry.connected.iter().any(|d| d.node == node) {
                return true;
            }
            let before = entry.presence(user);
            entry.connected.retain(|d| d.node != node);
            changes.push(changed(user, &before, entry, version));
            entry.devices() > 0
        });
        changes
    }

    fn set_status_now(&self, user: &str, status: Status) -> Option<Change> {
        let mut users = self.users.lock();
        let Users { entries, version } = &mut *users;
        let entry = entries.get_mut(user)?;
        let before = entry.presence(user);
        entry.status = status;
        Some(changed(user, &before, entry, version))
    }
}

/// `user`'s entry after a change that found it as `before`: visible if its
/// status or device count changed, then with the next version (`last` is
/// the last one given).
fn changed(user: &str, before: &UserPresence, entry: &mut Entry, last: &mut Version) -> Change {
    let mut after = entry.presence(user);
    let visible = before.status != after.status || before.devices != after.devices;
    if visible {
        *last += 1;
        entry.version = *last;
        after.version = *last;
    }
    Change {
        presence: after,
        visible,
    }
}

/// The in-memory state answers at once: the work is done when the method
/// is called, and the future only carries the outcome (so calls made in
/// order take effect in order).
fn ready<T: Send + 'static>(value: T) -> BoxFuture<Result<T, StateError>> {
    Box::pin(std::future::ready(Ok(value)))
}

impl PresenceState for MemoryState {
    fn knows(&self, user: &str) -> BoxFuture<Result<bool, StateError>> {
        ready(self.users.lock().entries.contains_key(user))
    }

    fn connect(
        &self,
        user: &str,
        device: Device,
        remembered: Remembered,
        now: Millis,
    ) -> BoxFuture<Result<Change, StateError>> {
        ready(self.connect_now(user, device, remembered, now))
    }

    fn disconnect(
        &self,
        user: &str,
        socket: &str,
        now: Millis,
        grace: Duration,
    ) -> BoxFuture<Result<Departure, StateError>> {
        ready(self.disconnect_now(user, socket, now, grace))
    }

    fn expire(&self, user: &str, until: Millis) -> BoxFuture<Result<Option<Change>, StateError>> {
        ready(self.expire_now(user, until))
    }

    fn set_status(
        &self,
        user: &str,
        status: Status,
    ) -> BoxFuture<Result<Option<Change>, StateError>> {
        ready(self.set_status_now(user, status))
    }

    fn drop_node(&self, node: &str) -> BoxFuture<Result<Vec<Change>, StateError>> {
        ready(self.drop_node_now(node))
    }

    fn get(&self, users: &[String]) -> BoxFuture<Result<Vec<UserPresence>, StateError>> {
        let state = self.users.lock();
        ready(
            users
                .iter()
                .map(|user| match state.entries.get(user) {
                    Some(entry) => entry.presence(user),
                    None => UserPresence::offline(user, None, state.version),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_millis(100);

    fn device(socket: &str) -> Device {
        Device {
            socket: socket.to_owned(),
            node: "n1".to_owned(),
        }
    }

    async fn connect(state: &MemoryState, user: &str, socket: &str, now: Millis) -> Change {
        state
            .connect(user, device(socket), Remembered::default(), now)
            .await
            .unwrap()
    }

    /// `user` (who has a device) chooses `status`.
    async fn choose(state: &MemoryState, user: &str, status: Status) -> Change {
        state.set_status(user, status).await.unwrap().unwrap()
    }

    /// `user`'s presence if online (or lingering).
    async fn shown(state: &MemoryState, user: &str) -> Option<UserPresence> {
        Some(state.get(&[user.to_owned()]).await.unwrap().remove(0))
            .filter(|p| p.status != Status::Offline)
    }

    #[tokio::test]
    async fn a_user_is_online_while_any_device_is_and_counts_each() {
        let state = MemoryState::new(8);
        let first = connect(&state, "alice", "s1", 1_000).await;
        assert!(first.visible);
        assert_eq!(first.presence.status, Status::Online);
        assert_eq!(first.presence.devices, 1);
        assert_eq!(first.presence.last_seen, Some(1_000));
        let second = connect(&state, "alice", "s2", 2_000).await;
        assert!(second.visible, "a second device is news");
        assert_eq!(second.presence.devices, 2);
        assert_eq!(shown(&state, "bob").await, None, "bob never connected");
    }

    #[tokio::test]
    async fn a_reload_within_the_grace_period_changes_nothing_visible() {
        let state = MemoryState::new(8);
        connect(&state, "alice", "s1", 1_000).await;
        let left = state.disconnect("alice", "s1", 1_500, GRACE).await.unwrap();
        assert_eq!(left, Departure::Lingering { until: 1_600 });
        let during = shown(&state, "alice").await.unwrap();
        assert_eq!((during.status, during.devices), (Status::Online, 1));
        let back = connect(&state, "alice", "s2", 1_550).await;
        assert!(!back.visible, "the reload is invisible: {back:?}");
        assert_eq!(back.presence.devices, 1);
        assert_eq!(back.presence.last_seen, Some(1_550));
        // The first departure's timer fires: nothing lingers any more.
        assert_eq!(state.expire("alice", 1_600).await.unwrap(), None);
        assert_eq!(shown(&state, "alice").await.unwrap().devices, 1);
    }

    #[tokio::test]
    async fn the_last_device_leaving_is_offline_only_once_its_grace_is_over() {
        let state = MemoryState::new(8);
        connect(&state, "alice", "s1", 1_000).await;
        connect(&state, "alice", "s2", 1_000).await;
        let Departure::Lingering { until: first } =
            state.disconnect("alice", "s1", 2_000, GRACE).await.unwrap()
        else {
            panic!("lingers")
        };
        let Departure::Lingering { until: second } =
            state.disconnect("alice", "s2", 2_050, GRACE).await.unwrap()
        else {
            panic!("lingers")
        };
        assert_eq!(shown(&state, "alice").await.unwrap().devices, 2);
        let one_left = state.expire("alice", first).await.unwrap().unwrap();
        assert!(one_left.visible);
        assert_eq!(
            (one_left.presence.status, one_left.presence.devices),
            (Status::Online, 1)
        );
        let offline = state.expire("alice", second).await.unwrap().unwrap();
        assert_eq!(
            offline.presence,
            UserPresence {
                user: "alice".to_owned(),
                status: Status::Offline,
                devices: 0,
                last_seen: Some(2_050),
                version: offline.presence.version,
            }
        );
        assert!(offline.presence.version > one_left.presence.version);
        assert!(state.is_empty(), "an offline user is forgotten");
        assert_eq!(state.expire("alice", second).await.unwrap(), None);
    }

    #[tokio::test]
    async fn without_a_grace_period_or_past_the_lingering_bound_a_device_is_gone_at_once() {
        let state = MemoryState::new(1);
        connect(&state, "alice", "s1", 0).await;
        connect(&state, "alice", "s2", 0).await;
        connect(&state, "alice", "s3", 0).await;
        assert!(matches!(
            state.disconnect("alice", "s1", 1, GRACE).await.unwrap(),
            Departure::Lingering { .. }
        ));
        let Departure::Gone(change) = state.disconnect("alice", "s2", 2, GRACE).await.unwrap()
        else {
            panic!("one device lingers at most")
        };
        assert!(change.visible);
        assert_eq!(change.presence.devices, 2);
        let Departure::Gone(change) = state
            .disconnect("alice", "s3", 3, Duration::ZERO)
            .await
            .unwrap()
        else {
            panic!("no grace")
        };
        assert_eq!(change.presence.devices, 1, "s1 still lingers");
        assert_eq!(
            state.disconnect("alice", "s3", 4, GRACE).await.unwrap(),
            Departure::Unknown,
            "a departure is counted once"
        );
    }

    #[tokio::test]
    async fn a_chosen_status_applies_to_every_device_and_is_remembered_on_return() {
        let state = MemoryState::new(8);
        assert_eq!(state.set_status("alice", Status::Busy).await.unwrap(), None);
        let remembered = Remembered {
            status: Status::Away,
            last_seen: Some(10),
        };
        let first = state
            .connect("alice", device("s1"), remembered, 20)
            .await
            .unwrap();
        assert_eq!(first.presence.status, Status::Away);
        connect(&state, "alice", "s2", 30).await;
        let busy = choose(&state, "alice", Status::Busy).await;
        assert!(busy.visible);
        assert_eq!(
            (busy.presence.status, busy.presence.devices),
            (Status::Busy, 2)
        );
        let again = choose(&state, "alice", Status::Busy).await;
        assert!(!again.visible, "the same status again is no news");
        // A later connect keeps the state's status, not the store's.
        let third = state
            .connect("alice", device("s3"), Remembered::default(), 40)
            .await
            .unwrap();
        assert_eq!(third.presence.status, Status::Busy);
    }

    #[tokio::test]
    async fn every_visible_change_has_a_higher_version_even_after_the_user_was_forgotten() {
        let state = MemoryState::new(8);
        let absent = state.get(&["alice".to_owned()]).await.unwrap().remove(0);
        let first = connect(&state, "alice", "s1", 1_000).await;
        assert!(
            first.presence.version > absent.version,
            "{first:?} {absent:?}"
        );
        let second = connect(&state, "alice", "s2", 1_000).await;
        assert!(second.presence.version > first.presence.version);
        // Another user's change takes a version too; alice's stay ordered.
        connect(&state, "bob", "s3", 1_000).await;
        let busy = choose(&state, "alice", Status::Busy).await;
        assert!(busy.presence.version > second.presence.version);
        let again = choose(&state, "alice", Status::Busy).await;
        assert_eq!(
            again.presence.version, busy.presence.version,
            "no news, no version"
        );
        // A departure that lingers shows nothing, and a reload neither.
        state.disconnect("alice", "s1", 2_000, GRACE).await.unwrap();
        assert_eq!(
            shown(&state, "alice").await.unwrap().version,
            busy.presence.version
        );
        let back = connect(&state, "alice", "s4", 2_010).await;
        assert_eq!(back.presence.version, busy.presence.version);
        // Offline: the state forgets alice, and what it answers for her
        // after is no older than her last change, and her return newer.
        let mut gone = Vec::new();
        for socket in ["s2", "s4"] {
            match state
                .disconnect("alice", socket, 3_000, Duration::ZERO)
                .await
            {
                Ok(Departure::Gone(change)) => gone.push(change),
                other => panic!("no grace: {other:?}"),
            }
        }
        let [one, offline] = &gone[..] else {
            panic!("two departures")
        };
        assert!(offline.presence.version > one.presence.version);
        assert_eq!(offline.presence.status, Status::Offline);
        let forgotten = state.get(&["alice".to_owned()]).await.unwrap().remove(0);
        assert!(forgotten.version >= offline.presence.version);
        let returned = connect(&state, "alice", "s5", 4_000).await;
        assert!(returned.presence.version > forgotten.version);
    }

    #[tokio::test]
    async fn versions_keep_growing_across_a_restart() {
        let before = MemoryState::new(8);
        for i in 0..100 {
            connect(&before, &format!("u{i}"), "s", 0).await;
        }
        let last = connect(&before, "alice", "s1", 0).await.presence.version;
        // A new state (the node restarted) a millisecond later.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let after = MemoryState::new(8);
        let first = connect(&after, "alice", "s1", 0).await.presence.version;
        assert!(first > last, "{first} after a restart, {last} before");
    }

    #[tokio::test]
    async fn a_dropped_nodes_devices_are_gone_at_once() {
        let state = MemoryState::new(8);
        let on = |socket: &str, node: &str| Device {
            socket: socket.to_owned(),
            node: node.to_owned(),
        };
        for (user, socket, node) in [
            ("alice", "s1", "A"),
            ("alice", "s2", "B"),
            ("bob", "s3", "B"),
        ] {
            (state.connect(user, on(socket, node), Remembered::default(), 0))
                .await
                .unwrap();
        }
        let before = shown(&state, "alice").await.unwrap().version;
        let mut changes = state.drop_node("B").await.unwrap();
        changes.sort_by(|a, b| a.presence.user.cmp(&b.presence.user));
        let seen: Vec<(&str, Status, usize)> = (changes.iter())
            .map(|c| (&*c.presence.user, c.presence.status, c.presence.devices))
            .collect();
        assert_eq!(
            seen,
            [("alice", Status::Online, 1), ("bob", Status::Offline, 0)]
        );
        assert!(changes.iter().all(|c| c.visible));
        assert!(changes[0].presence.version > before);
        assert_eq!(state.len(), 1, "bob is forgotten");
        assert!(state.drop_node("B").await.unwrap().is_empty());
    }

    #[test]
    fn only_online_away_and_busy_may_be_chosen() {
        assert_eq!(Status::chosen("away"), Some(Status::Away));
        assert_eq!(Status::chosen("offline"), None);
        assert_eq!(Status::chosen("Busy"), None);
        assert!(!Status::Offline.is_chosen());
    }
}
