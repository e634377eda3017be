//! The one-node store's rules, with the clock in the test's hands: the
//! window, the byte and session bounds, and never a partial replay; the
//! barrier; the merge of held and missed packets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::packet::Args;

const WINDOW: Duration = Duration::from_secs(120);

fn store(max_bytes: usize) -> MemoryStore {
    MemoryStore::new(RecoveryConfig {
        window: WINDOW,
        max_bytes,
        max_sessions: 100,
    })
}

fn nsp(name: &str) -> Arc<str> {
    Arc::from(name)
}

fn sid() -> SocketId {
    SocketId::random()
}

fn session(store: &MemoryStore, ns: &str, sid: SocketId, rooms: &[&str]) -> Session {
    Session {
        nsp: nsp(ns),
        sid,
        pid: store.pid(ns, &sid),
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        owner: None,
    }
}

fn to(rooms: &[&str]) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        ..Default::default()
    }
}

/// Records event `name` for `opts` at `at`; returns its offset.
fn record(
    store: &MemoryStore,
    at: Instant,
    ns: &str,
    opts: &BroadcastOptions,
    name: &str,
) -> Offset {
    let packet = store.record_at(at, &nsp(ns), Audience::Broadcast(opts), &mut |offset| {
        Encoded::event_at(ns, name, &Args::one(&1), offset)
    });
    packet.offset().unwrap()
}

/// The event names of missed packets (`["news",1,"<offset>"]` → `news`).
fn names(missed: &[Missed]) -> Vec<String> {
    missed
        .iter()
        .map(|m| {
            let text = m.packet.text();
            let start = text.find("[\"").unwrap() + 2;
            let end = start + text[start..].find('"').unwrap();
            text[start..end].to_owned()
        })
        .collect()
}

#[test]
fn offsets_grow_and_ride_as_the_last_argument() {
    let store = store(1 << 20);
    let now = Instant::now();
    let a = record(&store, now, "/", &to(&[]), "a");
    let b = record(&store, now, "/chat", &to(&["r"]), "b");
    assert!(b > a);
    let packet = store.record_at(now, &nsp("/"), Audience::Socket(&sid()), &mut |offset| {
        Encoded::event_at("/", "c", &Args::new(), offset)
    });
    assert_eq!(packet.text(), format!(r#"42["c","{}"]"#, b.0 + 1));
    assert_eq!(store.usage().packets, 3);
}

#[test]
fn a_session_gets_exactly_what_its_rooms_and_id_were_sent_after_its_offset() {
    let store = store(1 << 20);
    let now = Instant::now();
    let me = sid();
    let other = sid();
    let seen = record(&store, now, "/", &to(&["r1"]), "before");
    store.disconnected_at(now, session(&store, "/", me, &["r1", "r2"]), true);
    record(&store, now, "/", &to(&["r1"]), "r1");
    record(&store, now, "/", &to(&["elsewhere"]), "elsewhere");
    record(&store, now, "/other", &to(&["r1"]), "other-namespace");
    record(&store, now, "/", &to(&[]), "everyone");
    record(&store, now, "/", &to(&["r1", "r2"]), "both-once");
    let mut except = to(&["r2"]);
    except.except.push("r1".into());
    record(&store, now, "/", &except, "excepted");
    let mut not_me = to(&["r2"]);
    not_me.except_socket = Some(me);
    record(&store, now, "/", &not_me, "not-me");
    record(&store, now, "/", &to(&[me.as_str()]), "my-id-as-room");
    store.record_at(now, &nsp("/"), Audience::Socket(&me), &mut |offset| {
        Encoded::event_at("/", "to-me", &Args::new(), offset)
    });
    store.record_at(now, &nsp("/"), Audience::Socket(&other), &mut |offset| {
        Encoded::event_at("/", "to-other", &Args::new(), offset)
    });

    let pid = store.pid("/", &me);
    let restored = store.restore_at(now, "/", &pid, seen, None).unwrap();
    assert_eq!(restored.sid, me);
    assert_eq!(restored.rooms, vec![Room::from("r1"), Room::from("r2")]);
    let missed = store.missed_at(now, &restored, seen).unwrap();
    assert_eq!(
        names(&missed),
        ["r1", "everyone", "both-once", "my-id-as-room", "to-me"]
    );
    assert!(
        missed.windows(2).all(|w| w[0].offset < w[1].offset),
        "in order"
    );
    // Taken: a second client presenting the same pid gets nothing.
    assert_eq!(store.restore_at(now, "/", &pid, seen, None), None);
}

#[test]
fn a_session_is_restored_only_in_its_namespace_and_for_its_owner() {
    let store = store(1 << 20);
    let now = Instant::now();
    let offset = record(&store, now, "/", &to(&[]), "x");
    let me = sid();
    let mut mine = session(&store, "/chat", me, &[]);
    mine.owner = Some(Arc::from("alice"));
    store.disconnected_at(now, mine, true);
    let pid = store.pid("/chat", &me);
    assert_ne!(pid, store.pid("/", &me), "a pid is bound to its namespace");
    assert_eq!(
        store.restore_at(now, "/", &pid, offset, Some("alice")),
        None
    );
    assert_eq!(
        store.restore_at(now, "/chat", &pid, offset, Some("bob")),
        None
    );
    assert_eq!(store.restore_at(now, "/chat", &pid, offset, None), None);
    // Refusals leave the session to its owner.
    let restored = store.restore_at(now, "/chat", &pid, offset, Some("alice"));
    assert_eq!(restored.map(|s| s.sid), Some(me));
}

#[test]
fn nothing_is_kept_for_a_socket_that_left_for_good() {
    let store = store(1 << 20);
    let now = Instant::now();
    let offset = record(&store, now, "/", &to(&[]), "x");
    let me = sid();
    store.disconnected_at(now, session(&store, "/", me, &[]), false);
    assert_eq!(store.usage().sessions, 0);
    let pid = store.pid("/", &me);
    assert_eq!(store.restore_at(now, "/", &pid, offset, None), None);
}

#[test]
fn past_the_window_neither_sessions_nor_packets_are_kept() {
    let store = store(1 << 20);
    let start = Instant::now();
    let offset = record(&store, start, "/", &to(&[]), "seen");
    let me = sid();
    store.disconnected_at(start, session(&store, "/", me, &[]), true);
    let pid = store.pid("/", &me);
    let late = start + WINDOW;
    assert_eq!(store.restore_at(late, "/", &pid, offset, None), None);
    assert_eq!(
        store.usage(),
        Usage::default(),
        "packets and session pruned, their bytes with them"
    );
}

#[test]
fn packets_older_than_the_window_are_dropped_and_a_client_that_missed_them_is_not_recovered() {
    let store = store(1 << 20);
    let start = Instant::now();
    let offset = record(&store, start, "/", &to(&[]), "seen");
    record(
        &store,
        start + Duration::from_secs(1),
        "/",
        &to(&[]),
        "missed-and-old",
    );
    let me = sid();
    // Disconnected later: the session is within the window, but a packet
    // it missed is not.
    let at = start + Duration::from_secs(100);
    store.disconnected_at(at, session(&store, "/", me, &[]), true);
    let now = start + WINDOW + Duration::from_secs(2);
    record(&store, now, "/", &to(&[]), "recent");
    let pid = store.pid("/", &me);
    assert_eq!(store.restore_at(now, "/", &pid, offset, None), None);
}

#[test]
fn an_offset_whose_own_packet_aged_out_still_recovers_when_nothing_after_it_did() {
    let store = store(1 << 20);
    let start = Instant::now();
    let offset = record(&store, start, "/", &to(&[]), "seen");
    let me = sid();
    let at = start + Duration::from_secs(100);
    store.disconnected_at(at, session(&store, "/", me, &[]), true);
    let now = start + WINDOW + Duration::from_secs(1);
    let pid = store.pid("/", &me);
    let restored = store.restore_at(now, "/", &pid, offset, None).unwrap();
    assert_eq!(
        store.missed_at(now, &restored, offset).map(|m| m.len()),
        Some(0)
    );
}

#[test]
fn the_byte_bound_drops_the_oldest_and_whoever_missed_them_is_not_recovered() {
    let now = Instant::now();
    let later = now + Duration::from_secs(1);
    let (one, kept) = costs(now, &[]);
    // Room for three packets and the two sessions.
    let store = store(3 * one + 2 * kept);
    let first = record(&store, now, "/", &to(&[]), "x");
    let second = record(&store, now, "/", &to(&[]), "x");
    let early = sid();
    let late = sid();
    store.disconnected_at(later, session(&store, "/", early, &[]), true);
    store.disconnected_at(later, session(&store, "/", late, &[]), true);
    for _ in 0..3 {
        record(&store, later, "/", &to(&[]), "x");
    }
    let usage = store.usage();
    assert_eq!((usage.packets, usage.sessions), (3, 2));
    assert!(usage.bytes as usize <= 3 * one + 2 * kept);
    // `early` last saw the first packet: the second, which it missed, is gone.
    let pid = store.pid("/", &early);
    assert_eq!(store.restore_at(later, "/", &pid, first, None), None);
    // `late` saw the second: the three after it are all held.
    let pid = store.pid("/", &late);
    let restored = store.restore_at(later, "/", &pid, second, None).unwrap();
    assert_eq!(store.missed_at(later, &restored, second).unwrap().len(), 3);
}

/// What one packet (`["x",1]` to everyone) and one session in `rooms`
/// count against the byte bound.
fn costs(now: Instant, rooms: &[&str]) -> (usize, usize) {
    let probe = store(1 << 20);
    record(&probe, now, "/", &to(&[]), "x");
    let one = probe.usage().bytes as usize;
    probe.disconnected_at(now, session(&probe, "/", sid(), rooms), true);
    (one, probe.usage().bytes as usize - one)
}

#[test]
fn sessions_count_against_the_byte_bound_and_the_oldest_of_either_go_first() {
    let at = |secs| Instant::now() + Duration::from_secs(secs);
    let long = "r".repeat(400);
    let rooms = [long.as_str()];
    let (one, kept) = costs(at(0), &rooms);
    assert!(kept > 400, "a session counts its rooms: {kept}");
    assert!(kept > one);
    // Room for one packet and two sessions.
    let store = store(one + 2 * kept);
    let seen = record(&store, at(0), "/", &to(&[]), "x");
    let ids: Vec<SocketId> = (0..3).map(|_| sid()).collect();
    store.disconnected_at(at(1), session(&store, "/", ids[0], &rooms), true);
    store.disconnected_at(at(2), session(&store, "/", ids[1], &rooms), true);
    let usage = store.usage();
    assert_eq!((usage.packets, usage.sessions), (1, 2));
    assert_eq!(usage.bytes as usize, one + 2 * kept);
    // A third session: the packet goes first (the oldest), then the
    // oldest session, for want of room.
    store.disconnected_at(at(3), session(&store, "/", ids[2], &rooms), true);
    let usage = store.usage();
    assert_eq!((usage.packets, usage.sessions), (0, 2));
    assert_eq!(usage.bytes as usize, 2 * kept);
    let restore = |id: &SocketId| store.restore_at(at(3), "/", &store.pid("/", id), seen, None);
    assert_eq!(restore(&ids[0]), None, "the oldest session went");
    // Nothing after `seen` is missing: the others still recover.
    let restored = restore(&ids[1]).unwrap();
    assert_eq!(store.missed_at(at(3), &restored, seen).unwrap().len(), 0);
    assert!(restore(&ids[2]).is_some());
    assert_eq!(store.usage(), Usage::default());

    // A session larger than the whole bound is not kept at all.
    let small = self::store(kept - 1);
    let me = sid();
    small.disconnected_at(at(0), session(&small, "/", me, &rooms), true);
    assert_eq!(small.usage(), Usage::default());
}

#[test]
fn missed_answers_all_or_nothing_when_packets_go_between_restore_and_read() {
    let now = Instant::now();
    let store = store(1 << 20);
    let seen = record(&store, now, "/", &to(&[]), "x");
    record(&store, now, "/", &to(&[]), "missed");
    let me = sid();
    store.disconnected_at(now, session(&store, "/", me, &[]), true);
    let pid = store.pid("/", &me);
    let restored = store.restore_at(now, "/", &pid, seen, None).unwrap();
    // The window passes before the read: the missed packet is dropped.
    let later = now + WINDOW;
    record(&store, later, "/", &to(&[]), "new");
    assert!(store.missed_at(later, &restored, seen).is_none());
}

#[test]
fn made_up_offsets_recover_nothing() {
    let now = Instant::now();
    let store = store(1 << 20);
    let seen = record(&store, now, "/", &to(&[]), "x");
    let me = sid();
    let kept = session(&store, "/", me, &[]);
    store.disconnected_at(now, kept.clone(), true);
    let pid = store.pid("/", &me);
    // Not given yet, and zero (never given).
    assert_eq!(
        store.restore_at(now, "/", &pid, Offset(seen.0 + 1), None),
        None
    );
    store.disconnected_at(now, kept, true);
    assert_eq!(store.restore_at(now, "/", &pid, Offset(0), None), None);
}

#[test]
fn the_session_bound_forgets_the_oldest() {
    let store = MemoryStore::new(RecoveryConfig {
        window: WINDOW,
        max_bytes: 1 << 20,
        max_sessions: 2,
    });
    let now = Instant::now();
    let offset = record(&store, now, "/", &to(&[]), "x");
    let ids: Vec<SocketId> = (0..3).map(|_| sid()).collect();
    for id in &ids {
        store.disconnected_at(now, session(&store, "/", *id, &[]), true);
    }
    assert_eq!(store.usage().sessions, 2);
    let restore = |id: &SocketId| {
        store
            .restore_at(now, "/", &store.pid("/", id), offset, None)
            .is_some()
    };
    assert!(!restore(&ids[0]));
    assert!(restore(&ids[1]));
    assert!(restore(&ids[2]));
}

#[test]
fn pids_are_secret_stable_and_per_socket() {
    let store = store(1 << 20);
    let other_store = self::store(1 << 20);
    let id = sid();
    let pid = store.pid("/", &id);
    assert_eq!(pid, store.pid("/", &id));
    assert_ne!(pid, store.pid("/", &sid()));
    assert_ne!(pid, other_store.pid("/", &id), "keyed per store");
    assert_eq!(pid.as_str().len(), 20);
    assert_ne!(pid.as_str(), id.as_str());
    assert!(!format!("{pid:?}").contains(pid.as_str()));
    assert_eq!(Pid::parse(pid.as_str()), Some(pid));
}

#[test]
fn what_a_client_asks_for_in_its_connect_payload() {
    let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
    let pid = "abcdefghijABCDEFGHIJ";
    let asked = requested(&raw(&format!(
        r#"{{"token":"t","pid":"{pid}","offset":"42","x":[1]}}"#
    )));
    assert_eq!(asked, Some((Pid::parse(pid).unwrap(), Offset(42))));
    for refused in [
        r#"{}"#.to_owned(),
        format!(r#"{{"pid":"{pid}"}}"#),
        r#"{"offset":"1"}"#.to_owned(),
        format!(r#"{{"pid":"{pid}","offset":42}}"#),
        format!(r#"{{"pid":"{pid}","offset":"-1"}}"#),
        format!(r#"{{"pid":"{pid}","offset":"99999999999999999999999"}}"#),
        r#"{"pid":"short","offset":"1"}"#.to_owned(),
        r#"{"pid":null,"offset":"1"}"#.to_owned(),
    ] {
        assert_eq!(requested(&raw(&refused)), None, "{refused}");
    }
}

#[tokio::test]
async fn the_barrier_waits_for_deliveries_begun_before_it_only() {
    let barrier = Arc::new(Barrier::new());
    // Nothing under way: no wait.
    tokio::time::timeout(Duration::from_secs(1), barrier.wait())
        .await
        .unwrap();

    let before = barrier.enter();
    let waiting = {
        let barrier = barrier.clone();
        tokio::spawn(async move { barrier.wait().await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A delivery begun after the restore started does not hold it up.
    let after = barrier.enter();
    assert!(!waiting.is_finished());
    drop(before);
    tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .unwrap()
        .unwrap();
    drop(after);
    // And the next restore waits for nothing.
    tokio::time::timeout(Duration::from_secs(1), barrier.wait())
        .await
        .unwrap();
}

#[test]
fn a_restore_sends_connect_then_missed_then_live_packets_not_replayed() {
    let store: Arc<dyn SessionStore> = Arc::new(self::store(1 << 20));
    let recovery = NsRecovery::new("/", store);
    let me = sid();
    let kept = Session {
        nsp: nsp("/"),
        sid: me,
        pid: recovery.store.pid("/", &me),
        rooms: vec![],
        owner: None,
    };
    recovery.begin(kept, (100, 1 << 20));
    let packet = |n: u64| Encoded::event_at("/", "e", &Args::one(&n), Offset(n));
    // 2 was delivered live and is also in the log; 4 came after the read;
    // a volatile packet has no offset.
    for n in [2, 4] {
        assert!(matches!(recovery.hold(&me, &packet(n), false), Hold::Held));
    }
    let volatile = Encoded::event("/", "v", &Args::new(), None);
    assert!(matches!(recovery.hold(&me, &volatile, true), Hold::Held));
    assert!(matches!(
        recovery.hold(&sid(), &packet(5), false),
        Hold::Send
    ));

    let missed: Vec<Missed> = [1, 2, 3]
        .into_iter()
        .map(|n| Missed {
            offset: Offset(n),
            packet: packet(n),
        })
        .collect();
    let connect = Encoded::connect("/", "{}");
    let mut sent = Vec::new();
    assert!(recovery.release(&me, &connect, &missed, |p, _| {
        sent.push(p.text().to_owned())
    }));
    assert_eq!(
        sent,
        [
            "40{}",
            r#"42["e",1,"1"]"#,
            r#"42["e",2,"2"]"#,
            r#"42["e",3,"3"]"#,
            r#"42["e",4,"4"]"#,
            r#"42["v"]"#,
        ]
    );
    // Released: later packets go straight to the connection.
    assert!(matches!(recovery.hold(&me, &packet(6), false), Hold::Send));
}

#[test]
fn more_held_than_the_connection_can_take_fails_the_restore() {
    let store: Arc<dyn SessionStore> = Arc::new(self::store(1 << 20));
    let recovery = NsRecovery::new("/", store);
    let me = sid();
    let kept = session_for(&recovery, me);
    let packet = Encoded::event_at("/", "e", &Args::one(&1), Offset(1));
    recovery.begin(kept.clone(), (1, 1 << 20));
    assert!(matches!(recovery.hold(&me, &packet, false), Hold::Held));
    assert!(
        matches!(recovery.hold(&me, &packet, true), Hold::Held),
        "volatile: dropped"
    );
    assert!(matches!(recovery.hold(&me, &packet, false), Hold::Overflow));
    let connect = Encoded::connect("/", "{}");
    assert!(!recovery.release(&me, &connect, &[], |_, _| panic!("nothing is sent")));
    // A socket that leaves mid-restore gets its session back to keep.
    recovery.begin(kept.clone(), (1, 1 << 20));
    assert_eq!(recovery.abort(&me), Some(kept));
}

fn session_for(recovery: &NsRecovery, sid: SocketId) -> Session {
    Session {
        nsp: nsp("/"),
        sid,
        pid: recovery.store.pid("/", &sid),
        rooms: vec![Room::from("r")],
        owner: None,
    }
}
