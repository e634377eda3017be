//! The recovery log against a real Redis (`TEST_REDIS_URL`, set by
//! `tests/redis/with-redis.sh`); each test under a key prefix of its own.

use super::*;
use socketio::Args;

/// A log on the test Redis with `max_bytes`, or `None` outside CI when no
/// Redis is given.
async fn log(max_bytes: usize) -> Option<(RecoveryLog, MultiplexedConnection)> {
    log_with(Duration::from_secs(120), max_bytes).await
}

async fn log_with(
    window: Duration,
    max_bytes: usize,
) -> Option<(RecoveryLog, MultiplexedConnection)> {
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the Redis tests: run them through tests/redis/with-redis.sh"
        );
        eprintln!("TEST_REDIS_URL not set: skipping");
        return None;
    };
    let client = redis::Client::open(url.as_str()).expect("TEST_REDIS_URL");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis");
    let prefix = format!("test-recovery-{}", rand::random::<u64>());
    let shared = conn.clone();
    let log = RecoveryLog::new(
        &prefix,
        window,
        max_bytes,
        Duration::from_secs(5),
        Arc::new(move || Some(shared.clone())),
    );
    Some((log, conn))
}

fn outbound(nsp: &str, event: &str, json: &str, rooms: &[&str]) -> Outbound {
    let opts = BroadcastOptions {
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        ..BroadcastOptions::default()
    };
    Outbound::new(
        Room::from(nsp),
        event,
        &Args::from_parts(json.to_owned(), Vec::new()),
        &opts,
    )
}

fn session(nsp: &str, rooms: &[&str], owner: Option<&str>) -> Session {
    let sid = SocketId::parse(Pid::from_bytes(rand::random()).as_str()).expect("a socket id");
    let pid = Pid::from_bytes(rand::random());
    Session {
        nsp: Arc::from(nsp),
        sid,
        pid,
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        owner: owner.map(Arc::from),
    }
}

/// The text of each missed packet's frame.
fn texts(missed: &[Missed]) -> Vec<String> {
    missed
        .iter()
        .map(|m| match &m.packet.frames[..] {
            [engineio::Frame::Text(text)] => text.as_str().to_owned(),
            other => panic!("not one text frame: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn missed_packets_are_the_sessions_rooms_in_order_with_their_offsets() {
    let Some((log, _conn)) = log(1 << 20).await else {
        return;
    };
    let first = log
        .append(&outbound("/", "news", "1", &["a"]), "node-a")
        .await
        .unwrap();
    let s = session("/", &["a"], None);
    let mut offsets = Vec::new();
    for (i, rooms) in [&["a"][..], &["b"], &[], &["a", "b"]].iter().enumerate() {
        let event = format!("e{i}");
        offsets.push(
            log.append(&outbound("/", &event, "{\"x\":1}", rooms), "node-a")
                .await
                .unwrap(),
        );
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]) && first < offsets[0]);
    let missed = log
        .missed(&s, first, None)
        .await
        .unwrap()
        .expect("all held");
    let expected: Vec<String> = [0, 2, 3]
        .iter()
        .map(|&i| format!("42[\"e{i}\",{{\"x\":1}},\"{}\"]", offset_text(offsets[i])))
        .collect();
    assert_eq!(texts(&missed), expected);
    let got: Vec<Offset> = missed.iter().map(|m| m.offset).collect();
    assert_eq!(got, vec![offsets[0], offsets[2], offsets[3]]);
    assert!(missed.iter().all(|m| m.packet.offset() == Some(m.offset)));
    // Up to date: nothing missed, and recoverable.
    assert_eq!(
        log.missed(&s, offsets[3], None)
            .await
            .unwrap()
            .map(|m| m.len()),
        Some(0)
    );
    // Another namespace's log is its own.
    let other = session("/other", &["a"], None);
    assert!(log.missed(&other, first, None).await.unwrap().is_none());
}

#[tokio::test]
async fn the_published_message_carries_the_packet_as_emitted_and_the_offset_beside_it() {
    let Some((log, mut conn)) = log(1 << 20).await else {
        return;
    };
    let offset = log
        .append(&outbound("/", "news", "\"hi\"", &[]), "node-a")
        .await
        .unwrap();
    // The log holds what was published: the Node adapter's message.
    /// XRANGE's answer: (id, [(field, value)]) per entry.
    type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;
    let entries: Entries = redis::cmd("XRANGE")
        .arg(log.stream_key("/"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, entry_id(offset));
    let message = Bytes::from(entries[0].1[0].1.clone());
    let Decoded::Broadcast(inbound) = wire::decode(&message, "other-node", "/").unwrap() else {
        panic!("not a broadcast");
    };
    assert_eq!(inbound.event, "news");
    // The packet as emitted (what a Node node delivers), the offset beside
    // it (what a Switchboard node adds as the last argument).
    assert_eq!(inbound.args.raw(), "\"hi\"");
    assert_eq!(inbound.offset, Some(offset));
}

#[tokio::test]
async fn a_session_is_in_redis_from_connect_and_taken_once_by_its_owner() {
    let Some((log, _conn)) = log(1 << 20).await else {
        return;
    };
    let offset = log
        .append(&outbound("/chat", "e", "1", &[]), "n")
        .await
        .unwrap();
    let s = session("/chat", &["a", "b"], Some("alice"));
    log.connected(&s).await.unwrap();
    log.joined(&s.pid, &[Room::from("c")]).await.unwrap();
    log.left(&s.pid, "a").await.unwrap();
    // Not for another user, nor another namespace: and left for its own.
    let restore =
        |nsp: &'static str, owner: Option<&'static str>| log.restore(nsp, &s.pid, offset, owner);
    assert_eq!(restore("/chat", Some("mallory")).await.unwrap(), None);
    assert_eq!(restore("/chat", None).await.unwrap(), None);
    assert_eq!(restore("/", Some("alice")).await.unwrap(), None);
    // Restored as it is now (no disconnect was written: a node killed
    // leaves its sessions as they were).
    let mut restored = restore("/chat", Some("alice"))
        .await
        .unwrap()
        .expect("restored");
    restored.rooms.sort();
    assert_eq!(restored.sid, s.sid);
    assert_eq!(restored.rooms, vec![Room::from("b"), Room::from("c")]);
    assert_eq!(restore("/chat", Some("alice")).await.unwrap(), None);
}

#[tokio::test]
async fn a_session_ended_on_purpose_is_not_restored() {
    let Some((log, _conn)) = log(1 << 20).await else {
        return;
    };
    let offset = log
        .append(&outbound("/", "e", "1", &[]), "n")
        .await
        .unwrap();
    let dropped = session("/", &[], None);
    let ended = session("/", &[], None);
    for s in [&dropped, &ended] {
        log.connected(s).await.unwrap();
    }
    log.disconnected(&dropped.pid, true).await.unwrap();
    log.disconnected(&ended.pid, false).await.unwrap();
    assert!(
        log.restore("/", &dropped.pid, offset, None)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        log.restore("/", &ended.pid, offset, None)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_offset_whose_followers_were_trimmed_is_not_recovered_at_all() {
    // Room for a few entries only: the byte bound trims the oldest.
    let Some((log, _conn)) = log(600).await else {
        return;
    };
    let s = session("/", &[], None);
    log.connected(&s).await.unwrap();
    let first = log
        .append(&outbound("/", "e", "0", &[]), "n")
        .await
        .unwrap();
    let mut last = first;
    for i in 1..20 {
        last = log
            .append(&outbound("/", "e", &i.to_string(), &[]), "n")
            .await
            .unwrap();
    }
    // Never some of them: none, and the session is not restored.
    assert!(log.missed(&s, first, None).await.unwrap().is_none());
    assert!(
        log.restore("/", &s.pid, first, None)
            .await
            .unwrap()
            .is_none()
    );
    // A recent offset still has everything after it.
    let t = session("/", &[], None);
    assert_eq!(
        log.missed(&t, last, None).await.unwrap().map(|m| m.len()),
        Some(0)
    );
}

#[tokio::test]
async fn offsets_from_before_the_log_or_made_up_are_not_recovered() {
    let Some((log, _conn)) = log(1 << 20).await else {
        return;
    };
    let s = session("/", &[], None);
    // No log yet.
    assert!(
        log.missed(&s, Offset(1_700_000_000_000_000_000), None)
            .await
            .unwrap()
            .is_none()
    );
    let first = log
        .append(&outbound("/", "e", "1", &[]), "n")
        .await
        .unwrap();
    // Before the log began, after its last entry, or not 19 digits.
    for offset in [Offset(first.0 - 1), Offset(first.0 + 1_000_000), Offset(5)] {
        assert!(
            log.missed(&s, offset, None).await.unwrap().is_none(),
            "{offset:?}"
        );
    }
    assert_eq!(
        log.missed(&s, first, None).await.unwrap().map(|m| m.len()),
        Some(0)
    );
}

#[tokio::test]
async fn packets_older_than_the_window_are_trimmed_and_their_followers_not_replayed() {
    let Some((log, mut conn)) = log_with(Duration::from_millis(20), 1 << 20).await else {
        return;
    };
    let s = session("/", &[], None);
    let old = log
        .append(&outbound("/", "e", "0", &[]), "n")
        .await
        .unwrap();
    let trimmed = log
        .append(&outbound("/", "e", "1", &[]), "n")
        .await
        .unwrap();
    // Time has to pass on Redis's clock: nothing to await but the clock.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let recent = log
        .append(&outbound("/", "e", "2", &[]), "n")
        .await
        .unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(log.stream_key("/"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 1, "the old entries are trimmed");
    // `old` missed `trimmed`, which is gone: nothing. `trimmed` missed
    // nothing that is gone.
    assert!(log.missed(&s, old, None).await.unwrap().is_none());
    let after_trimmed = log
        .missed(&s, trimmed, None)
        .await
        .unwrap()
        .expect("all held");
    assert_eq!(
        after_trimmed.iter().map(|m| m.offset).collect::<Vec<_>>(),
        [recent]
    );
    assert_eq!(
        log.missed(&s, recent, None).await.unwrap().map(|m| m.len()),
        Some(0)
    );
}

#[tokio::test]
async fn the_append_publishes_what_the_log_holds() {
    let Some((log, _conn)) = log(1 << 20).await else {
        return;
    };
    let url = std::env::var("TEST_REDIS_URL").expect("set when log() is Some");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    let out = outbound("/", "news", "2", &["r"]);
    pubsub.subscribe(out.channel(&log.prefix)).await.unwrap();
    let offset = log.append(&out, "node-a").await.unwrap();
    let message = {
        use futures_util::StreamExt as _;
        let mut messages = pubsub.on_message();
        messages.next().await.expect("the published message")
    };
    let payload = Bytes::from(message.get_payload_bytes().to_vec());
    let Decoded::Broadcast(inbound) = wire::decode(&payload, "other-node", "/").unwrap() else {
        panic!("not a broadcast");
    };
    assert_eq!(inbound.args.raw(), "2");
    assert_eq!(inbound.offset, Some(offset));
    assert_eq!(inbound.opts.rooms, vec![Room::from("r")]);
}

#[test]
fn an_entry_costs_what_redis_was_measured_to_spend_on_it_or_more() {
    // (message bytes, bytes an entry in Redis, measured)
    for (message, measured) in [(117, 149), (348, 419), (1_099, 1_358), (2_099, 2_949)] {
        let cost = entry_cost(message);
        assert!(cost >= measured, "{message}: {cost} < {measured}");
        assert!(
            cost < measured * 3 / 2,
            "{message}: {cost} is far above {measured}"
        );
    }
}

#[tokio::test]
async fn an_append_after_a_script_flush_loads_the_script_and_appends_once() {
    let Some((log, mut conn)) = log(1 << 20).await else {
        return;
    };
    // Redis forgot its scripts (SCRIPT FLUSH): EVALSHA answers NOSCRIPT,
    // which means the script did not run.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let first = log
        .append(&outbound("/", "news", "1", &[]), "node-a")
        .await
        .unwrap();
    let second = log
        .append(&outbound("/", "news", "2", &[]), "node-a")
        .await
        .unwrap();
    assert!(second.0 > first.0);
    // Appended once each, and the script is known by its SHA-1 again.
    let len: usize = redis::cmd("XLEN")
        .arg(log.stream_key("/"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 2);
    let known: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(append_sha())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(known, [true]);
}
