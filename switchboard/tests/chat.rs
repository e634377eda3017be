//! `/chat`: the store logic on SQLite and PostgreSQL (through the writer,
//! the one write path the component uses), and over the wire the promise a
//! chat makes — a thousand messages sent at once from four devices get
//! seqs 1..=1000, each once, in the same order on every device, retries
//! included.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{Client, RemoveOnDrop, postgres_database, rand_suffix, start_raw, token};
use futures_util::{SinkExt, StreamExt};
use hub::components::chat::store::{self, Page};
use hub::components::chat::writer::{Done, Op, Writer};
use hub::store::{Store, StoreConfig, sqlite_url_of};
use hub::tasks::Tasks;
use serde_json::{Value, json};
use std::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn open(url: &str) -> Store {
    Store::open(&StoreConfig {
        url: url.to_owned(),
        max_connections: 8,
        timeout: Duration::from_secs(10),
    })
    .await
    .unwrap()
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn send(user: &str, conversation: i64, client_id: &str, text: &str) -> Op {
    Op::Send {
        user: s(user),
        conversation,
        client_id: s(client_id),
        text: s(text),
        reply_to: None,
    }
}

/// The store logic, through the writer, on `store`.
async fn store_logic(store: Store) {
    let tasks = Tasks::new();
    let delivered: Arc<Mutex<Vec<Done>>> = Arc::default();
    let writer = Writer::start(store.clone(), &tasks, 64, 100, 256, {
        let delivered = delivered.clone();
        Arc::new(move |done: &Done| delivered.lock().unwrap().push(done.clone()))
    });

    // Both users open their direct conversation at once: one is created.
    let (a, b) = tokio::join!(
        async {
            let mut tx = store.begin_write().await.unwrap();
            let r = store::direct_get_or_create(&mut tx, "alice", "bob", 1)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            r
        },
        async {
            let mut tx = store.begin_write().await.unwrap();
            let r = store::direct_get_or_create(&mut tx, "bob", "alice", 1)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            r
        }
    );
    assert_eq!(a.0, b.0, "one conversation per pair");
    assert!(a.1 ^ b.1, "exactly one of them created it: {a:?} {b:?}");
    let direct = a.0;

    // Seqs 1, 2, 3; a retry of client_id m2 is the first outcome again.
    let mut seqs = Vec::new();
    for (user, id) in [("alice", "m1"), ("bob", "m2"), ("alice", "m3")] {
        match writer
            .submit(send(user, direct, id, "hi @bob"))
            .await
            .unwrap()
        {
            Done::Sent { message, fresh, .. } => {
                assert!(fresh);
                seqs.push((message.seq, message.id));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seqs.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    match writer
        .submit(send("bob", direct, "m2", "other text"))
        .await
        .unwrap()
    {
        Done::Sent { message, fresh, .. } => {
            assert!(!fresh);
            assert_eq!((message.seq, message.id), seqs[1]);
            assert_eq!(message.text.as_deref(), Some("hi @bob"));
        }
        other => panic!("{other:?}"),
    }
    // Another user's client_id of the same value is theirs alone.
    assert!(matches!(
        writer.submit(send("alice", direct, "m2", "mine")).await.unwrap(),
        Done::Sent { fresh: true, message, .. } if message.seq == 4
    ));

    // Refusals write nothing.
    let err = writer
        .submit(send("carol", direct, "c1", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "forbidden");
    let err = writer
        .submit(send("alice", 999_999, "c2", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "not_found");
    let err = writer
        .submit(Op::Send {
            user: s("alice"),
            conversation: direct,
            client_id: s("c3"),
            text: s("x"),
            reply_to: Some(99),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, "bad_request");
    let err = writer
        .submit(Op::Leave {
            user: s("alice"),
            conversation: direct,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, "bad_request", "a direct conversation stays");

    // Mentions: bob was mentioned by alice's m1 and m3 (his own m2 does
    // not count).
    let mut conn = store.pool().acquire().await.unwrap();
    assert_eq!(
        store::mention_count(&mut conn, "bob", direct, 0)
            .await
            .unwrap(),
        2
    );

    // Reads: monotonic, clamped to the last seq, counted.
    let read = |user: &str, seq| Op::Read {
        user: s(user),
        conversation: direct,
        seq,
    };
    match writer.submit(read("bob", 3)).await.unwrap() {
        Done::Read {
            seq,
            unread,
            mentions,
            moved,
            ..
        } => assert_eq!((seq, unread, mentions, moved), (3, 1, 0, true)),
        other => panic!("{other:?}"),
    }
    match writer.submit(read("bob", 1)).await.unwrap() {
        Done::Read { seq, moved, .. } => assert_eq!((seq, moved), (3, false)),
        other => panic!("{other:?}"),
    }
    match writer.submit(read("bob", 99)).await.unwrap() {
        Done::Read { seq, unread, .. } => assert_eq!((seq, unread), (4, 0)),
        other => panic!("{other:?}"),
    }

    // Edit and delete: the sender's only; history shows the new text and a
    // tombstone, seqs unchanged.
    let err = writer
        .submit(Op::Edit {
            user: s("bob"),
            conversation: direct,
            seq: 1,
            text: s("bob's words"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, "forbidden");
    writer
        .submit(Op::Edit {
            user: s("alice"),
            conversation: direct,
            seq: 1,
            // Still mentioning bob: an edit's mentions follow its text.
            text: s("edited @bob"),
        })
        .await
        .unwrap();
    writer
        .submit(Op::Delete {
            user: s("alice"),
            conversation: direct,
            seq: 3,
        })
        .await
        .unwrap();
    let (all, more) = store::history(&mut conn, direct, Page::After(0), 100)
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(all[0].text.as_deref(), Some("edited @bob"));
    assert!(all[0].edited_at.is_some());
    assert!(all[2].deleted && all[2].text.is_none());
    assert_eq!(
        store::mention_count(&mut conn, "bob", direct, 0)
            .await
            .unwrap(),
        1,
        "a deleted message mentions no one"
    );
    // Pages.
    let (page, more) = store::history(&mut conn, direct, Page::Before(4), 2)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
    assert!(more);
    let (page, more) = store::history(&mut conn, direct, Page::After(2), 5)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(!more);

    // Groups: members up to the maximum, add and leave.
    let group = {
        let mut tx = store.begin_write().await.unwrap();
        let id = store::create_group(&mut tx, "team", "alice", &[s("alice"), s("bob")], 5)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        id
    };
    let add = |by: &str, users: &[&str], max| Op::AddMembers {
        user: s(by),
        conversation: group,
        users: users.iter().map(|u| s(u)).collect(),
        max_members: max,
        max_conversations: usize::MAX,
    };
    let err = writer
        .submit(add("alice", &["carol", "dave"], 3))
        .await
        .unwrap_err();
    assert_eq!(err.code, "too_many_members");
    let err = writer
        .submit(add("carol", &["carol"], 3))
        .await
        .unwrap_err();
    assert_eq!(err.code, "forbidden");
    match writer
        .submit(add("bob", &["carol", "bob"], 3))
        .await
        .unwrap()
    {
        Done::Added { added, before, .. } => {
            assert_eq!(added, [s("carol")]);
            assert_eq!(before, [s("alice"), s("bob")]);
        }
        other => panic!("{other:?}"),
    }
    writer
        .submit(send("carol", group, "g1", "hello"))
        .await
        .unwrap();
    writer
        .submit(Op::Leave {
            user: s("carol"),
            conversation: group,
        })
        .await
        .unwrap();
    let err = writer
        .submit(send("carol", group, "g2", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "forbidden", "who left is no member");
    assert_eq!(
        store::members(&mut conn, group).await.unwrap(),
        [s("alice"), s("bob")]
    );

    // Conversations by latest activity; unread from seqs.
    let (listed, more) = store::user_conversations(&mut conn, "bob", None, 10)
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(
        listed.iter().map(|l| l.conversation.id).collect::<Vec<_>>(),
        [group, direct]
    );
    let summary = store::summary(
        &mut conn,
        &listed[0].conversation,
        "bob",
        listed[0].last_read_seq,
    )
    .await
    .unwrap();
    assert_eq!((summary.last_seq, summary.unread), (1, 1));
    assert_eq!(summary.last_message.unwrap().text.as_deref(), Some("hello"));
    let (first, more) = store::user_conversations(&mut conn, "bob", None, 1)
        .await
        .unwrap();
    assert!(more);
    let c = &first[0].conversation;
    let (rest, _) = store::user_conversations(&mut conn, "bob", Some((c.last_activity, c.id)), 1)
        .await
        .unwrap();
    assert_eq!(rest[0].conversation.id, direct);

    // Every fresh outcome was handed to delivery, in commit order.
    let sent: Vec<(i64, i64)> = delivered
        .lock()
        .unwrap()
        .iter()
        .filter_map(|d| match d {
            Done::Sent {
                message,
                fresh: true,
                ..
            } => Some((message.conversation, message.seq)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        [
            (direct, 1),
            (direct, 2),
            (direct, 3),
            (direct, 4),
            (group, 1)
        ]
    );
    drop(conn);
    tasks.shutdown(Duration::from_secs(5)).await;
    store.close().await;
}

#[tokio::test]
async fn store_logic_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("sb-chat-{}", rand_suffix()));
    let _cleanup = RemoveOnDrop(dir.clone());
    store_logic(open(&sqlite_url_of(&dir.join("hub.db"))).await).await;
}

#[tokio::test]
async fn store_logic_on_postgres() {
    let Some((_, url)) = postgres_database().await else {
        return;
    };
    store_logic(open(&url).await).await;
}

// ---------------------------------------------------------------- wire

const PREFIX: &str = "42/chat,";

/// A device's connection: frames it received, by a reader task.
struct Device {
    tx: futures_util::stream::SplitSink<common::Ws, WsMessage>,
    frames: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn device(addr: std::net::SocketAddr, user: &str) -> Device {
    let mut client = Client::open(addr).await;
    client
        .send(&format!(r#"40/chat,{{"token":"{}"}}"#, token(user, 600)))
        .await;
    let reply = client.recv().await;
    assert!(reply.starts_with("40/chat,{"), "{reply}");
    let (tx, mut rx) = client.ws.split();
    let (frames_tx, frames) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = rx.next().await {
            if let WsMessage::Text(text) = frame
                && frames_tx.send(text.to_string()).is_err()
            {
                return;
            }
        }
    });
    Device { tx, frames }
}

impl Device {
    async fn emit(&mut self, id: u64, event: &str, payload: &Value) {
        let frame = format!("{PREFIX}{id}{}", json!([event, payload]));
        self.tx.send(WsMessage::text(frame)).await.unwrap();
    }

    async fn next(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(30), self.frames.recv())
            .await
            .expect("timed out")
            .expect("connection ended")
    }

    /// The ack of `id` (events before it are skipped).
    async fn ack(&mut self, id: u64) -> Value {
        let head = format!("43/chat,{id}[");
        loop {
            let frame = self.next().await;
            if let Some(rest) = frame.strip_prefix(&head[..head.len() - 1]) {
                let v: Value = serde_json::from_str(rest).unwrap();
                return v[0].clone();
            }
        }
    }
}

fn parse_frame(frame: &str) -> Option<(String, Value)> {
    let rest = frame.strip_prefix(PREFIX)?;
    let v: Value = serde_json::from_str(rest).ok()?;
    Some((v[0].as_str()?.to_owned(), v[1].clone()))
}

fn parse_ack(frame: &str) -> Option<(u64, Value)> {
    let rest = frame.strip_prefix("43/chat,")?;
    let open = rest.find('[')?;
    let id = rest[..open].parse().ok()?;
    let v: Value = serde_json::from_str(&rest[open..]).ok()?;
    Some((id, v[0].clone()))
}

const TOTAL: usize = 1000;

/// Four devices of two users send 1,000 messages at once to one
/// conversation (with retries of earlier client_ids among them).
async fn a_thousand_at_once(store_toml: &str) {
    let server = start_raw(&format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[limits]\nevents_per_sec = 0\n\
         [chat]\nmessages_per_sec = 0\n{store_toml}"
    ))
    .await;
    let mut devices = [
        device(server.addr, "alice").await,
        device(server.addr, "alice").await,
        device(server.addr, "bob").await,
        device(server.addr, "bob").await,
    ];
    devices[0]
        .emit(1, "conversation:create", &json!({"direct": "bob"}))
        .await;
    let created = devices[0].ack(1).await;
    assert_eq!(created["ok"], true, "{created}");
    let conversation = created["conversation"]["id"].as_i64().unwrap();
    // Everyone learns of the new conversation first (then nothing but
    // messages and acks follow); the creating device before its ack.
    for d in devices[1..].iter_mut() {
        let (event, data) = parse_frame(&d.next().await).unwrap();
        assert_eq!(event, "conversation:joined");
        assert_eq!(data["conversation"]["id"], conversation);
    }

    let per_device = TOTAL / devices.len();
    let users = ["alice", "alice", "bob", "bob"];
    // Send everything at once from the four devices; each device's
    // retries (a lost ack: same client_id again) go between its sends.
    let sends = devices
        .iter_mut()
        .enumerate()
        .map(|(d, device)| async move {
            let mut retries = 0;
            for i in 0..per_device {
                let client_id = format!("d{d}-{i}");
                let payload = json!({"conversation": conversation, "client_id": client_id,
                                 "text": format!("{} says {i}", users[d])});
                device.emit(i as u64 + 10, "message", &payload).await;
                if i % 50 == 25 {
                    // The same message again, as a client does after a reconnect.
                    device.emit(100_000 + i as u64, "message", &payload).await;
                    retries += 1;
                }
            }
            retries
        });
    let retries: usize = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .sum();
    assert!(retries > 0);

    // Every device receives all 1,000 messages, and its own acks.
    let mut orders: Vec<Vec<(i64, String)>> = Vec::new();
    let mut acks_by_client: HashMap<String, Vec<Value>> = HashMap::new();
    for (d, device) in devices.iter_mut().enumerate() {
        let mut order = Vec::new();
        let mut acks = 0;
        let own = per_device + per_device.div_ceil(50);
        while order.len() < TOTAL || acks < own {
            let frame = device.next().await;
            if let Some((event, data)) = parse_frame(&frame) {
                assert_eq!(event, "message", "{frame}");
                order.push((
                    data["seq"].as_i64().unwrap(),
                    data["client_id"].as_str().unwrap().to_owned(),
                ));
            } else if let Some((id, ack)) = parse_ack(&frame) {
                assert_eq!(ack["ok"], true, "{ack}");
                let i = if id >= 100_000 { id - 100_000 } else { id - 10 };
                acks_by_client
                    .entry(format!("d{d}-{i}"))
                    .or_default()
                    .push(ack);
                acks += 1;
            } else {
                panic!("unexpected {frame}");
            }
        }
        orders.push(order);
    }
    // Seqs 1..=1000, in order, each client_id once, on every device.
    let expected: Vec<i64> = (1..=TOTAL as i64).collect();
    for order in &orders {
        assert_eq!(order.iter().map(|o| o.0).collect::<Vec<_>>(), expected);
        let distinct: HashSet<&String> = order.iter().map(|o| &o.1).collect();
        assert_eq!(distinct.len(), TOTAL, "a message was doubled");
        assert_eq!(order, &orders[0], "devices disagree on the order");
    }
    // Acks: every client_id got one seq; a retry got the same one.
    assert_eq!(acks_by_client.len(), TOTAL);
    let mut seen = HashSet::new();
    for (client_id, acks) in &acks_by_client {
        let seq = acks[0]["seq"].as_i64().unwrap();
        for ack in acks {
            assert_eq!(ack["seq"], seq, "{client_id}: {acks:?}");
            assert_eq!(ack["id"], acks[0]["id"]);
            assert_eq!(ack["ts"], acks[0]["ts"]);
        }
        assert!(seen.insert(seq), "seq {seq} acked twice");
        let stored = orders[0].iter().find(|o| &o.1 == client_id).unwrap();
        assert_eq!(stored.0, seq, "acked seq is the delivered one");
    }
    // And nothing extra arrives (no doubled delivery after the fact).
    devices[0]
        .emit(
            7,
            "history",
            &json!({"conversation": conversation, "after": 995}),
        )
        .await;
    let page = devices[0].ack(7).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 5, "{page}");
    assert_eq!(page["has_more"], false);
    for d in devices.iter_mut() {
        assert!(d.frames.try_recv().is_err(), "an extra frame arrived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_four_devices_at_once_on_sqlite() {
    // A generous store timeout: a loaded test machine must not turn a
    // slow fsync into `unavailable`.
    a_thousand_at_once("[store]\ntimeout_ms = 20000\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_four_devices_at_once_on_postgres() {
    let Some((_, url)) = postgres_database().await else {
        return;
    };
    a_thousand_at_once(&format!("[store]\nurl = {url:?}\ntimeout_ms = 20000\n")).await;
}

/// A member who leaves while messages stream in gets every message
/// committed before the leave, then the `member_left`, then nothing of the
/// conversation: the leave takes the messages' path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_mid_stream_gets_what_preceded_the_leave_and_nothing_after() {
    let server = start_raw(
        "[auth]\nhs256_secret = \"test-secret\"\n[limits]\nevents_per_sec = 0\n\
         [chat]\nmessages_per_sec = 0\n[store]\ntimeout_ms = 20000\n",
    )
    .await;
    let mut alice = device(server.addr, "alice").await;
    let mut leaving = device(server.addr, "carol").await;
    let mut watching = device(server.addr, "carol").await;
    alice
        .emit(
            1,
            "conversation:create",
            &json!({"name": "stream", "members": ["carol"]}),
        )
        .await;
    let conversation = alice.ack(1).await["conversation"]["id"].as_i64().unwrap();
    const SENT: u64 = 300;
    let payload = |i: u64| {
        json!({"conversation": conversation, "client_id": format!("s{i}"),
               "text": format!("m{i}")})
    };
    let mut last_seq = 0;
    // Messages in flight, some already acked (so carol must get those),
    // when the leave comes; more follow it.
    for i in 0..100 {
        alice.emit(10 + i, "message", &payload(i)).await;
    }
    for i in 0..50 {
        last_seq = last_seq.max(alice.ack(10 + i).await["seq"].as_i64().unwrap());
    }
    leaving
        .emit(
            2,
            "conversation:leave",
            &json!({"conversation": conversation}),
        )
        .await;
    for i in 100..SENT {
        alice.emit(10 + i, "message", &payload(i)).await;
    }
    for i in 50..SENT {
        let ack = alice.ack(10 + i).await;
        assert_eq!(ack["ok"], true, "{ack}");
        last_seq = last_seq.max(ack["seq"].as_i64().unwrap());
    }
    assert_eq!(last_seq, SENT as i64);
    // Then a message carol is still to get, in another conversation: once
    // it is in, everything sent to her before it is too.
    alice
        .emit(
            3,
            "message",
            &json!({"to": "carol", "client_id": "flush", "text": "flush"}),
        )
        .await;
    assert_eq!(alice.ack(3).await["ok"], true);

    let mut seqs = Vec::new();
    let mut left = false;
    loop {
        let (event, data) = parse_frame(&watching.next().await).unwrap();
        if data["conversation"] != conversation
            && !(event == "conversation:joined" && data["conversation"]["id"] == conversation)
        {
            if event == "message" && data["client_id"] == "flush" {
                break;
            }
            continue;
        }
        match event.as_str() {
            "conversation:joined" => {}
            "message" => {
                assert!(!left, "a message after the leave: {data}");
                seqs.push(data["seq"].as_i64().unwrap());
            }
            "conversation:member_left" => {
                assert_eq!(data["user"], "carol");
                left = true;
            }
            other => panic!("unexpected {other}: {data}"),
        }
    }
    assert!(left, "the leave was not announced");
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(
        seqs, expected,
        "what preceded the leave, all of it, in order"
    );
    eprintln!(
        "carol got {} of {SENT} messages before her leave",
        seqs.len()
    );
}
