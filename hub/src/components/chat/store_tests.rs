//! The chat store's logic on SQLite and PostgreSQL, through the writer
//! (the one write path the `/chat` component uses): direct and group
//! conversations, sends and their retries, refusals, mentions, reads,
//! edits and deletes, history pages, and delivery in commit order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::store::{self, Page};
use super::writer::{Done, Op, Writer, WriterConfig};
use crate::store::Store;
use crate::store::testing::Scratch;
use crate::tasks::Tasks;

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
    let config = WriterConfig {
        max_batch: 64,
        queue: 100,
        max_mentions: 256,
    };
    let writer = Writer::start(store.clone(), &tasks, config, {
        let delivered = delivered.clone();
        Arc::new(move |done: &Done| {
            delivered.lock().unwrap().push(done.clone());
            socketio::Published::done()
        })
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

/// A repeated membership change or read finds the change the first one
/// stored (the retry of a change whose announcement may be lost, which
/// the component announces again if no node did); what merely resembles
/// one is no repeat.
async fn repeats(store: Store) {
    let tasks = Tasks::new();
    let config = WriterConfig {
        max_batch: 64,
        queue: 100,
        max_mentions: 256,
    };
    let writer = Writer::start(
        store.clone(),
        &tasks,
        config,
        Arc::new(|_: &Done| socketio::Published::done()),
    );
    let group = {
        let mut tx = store.begin_write().await.unwrap();
        let id = store::create_group(&mut tx, "team", "alice", &[s("alice"), s("bob")], 5)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        id
    };
    let add = |by: &str, users: &[&str]| Op::AddMembers {
        user: s(by),
        conversation: group,
        users: users.iter().map(|u| s(u)).collect(),
        max_members: 10,
        max_conversations: usize::MAX,
    };
    let leave = |user: &str| Op::Leave {
        user: s(user),
        conversation: group,
    };
    let remove = |by: &str, member: &str| Op::RemoveMember {
        user: s(by),
        conversation: group,
        member: s(member),
    };
    let read = |user: &str, seq| Op::Read {
        user: s(user),
        conversation: group,
        seq,
    };

    // An add, then the same again: the newcomers of the first, and when.
    let first = match writer.submit(add("bob", &["carol", "dave"])).await.unwrap() {
        Done::Added {
            added,
            at,
            fresh: true,
            ..
        } => {
            assert_eq!(added, [s("carol"), s("dave")]);
            at
        }
        other => panic!("{other:?}"),
    };
    match writer
        .submit(add("bob", &["dave", "carol", "bob"]))
        .await
        .unwrap()
    {
        Done::Added {
            added,
            before,
            at,
            fresh: false,
            ..
        } => {
            assert_eq!(added, [s("carol"), s("dave")]);
            assert_eq!(before, [s("alice"), s("bob")]);
            assert_eq!(at, first);
        }
        other => panic!("{other:?}"),
    }
    // Not a repeat: another member naming them, the members a group was
    // created with.
    for (by, users) in [("alice", ["carol"]), ("alice", ["bob"])] {
        match writer.submit(add(by, &users)).await.unwrap() {
            Done::Added {
                added, fresh: true, ..
            } => assert!(added.is_empty(), "{added:?}"),
            other => panic!("{other:?}"),
        }
    }

    // A leave, then the same again: who left, when, who remains.
    let first = match writer.submit(leave("carol")).await.unwrap() {
        Done::Left {
            at, fresh: true, ..
        } => at,
        other => panic!("{other:?}"),
    };
    match writer.submit(leave("carol")).await.unwrap() {
        Done::Left {
            user,
            members,
            at,
            fresh: false,
            ..
        } => {
            assert_eq!((user, at), (s("carol"), first));
            assert_eq!(members, [s("alice"), s("bob"), s("dave")]);
        }
        other => panic!("{other:?}"),
    }
    let err = writer.submit(leave("zed")).await.unwrap_err();
    assert_eq!(err.code, "forbidden", "never a member");

    // A removal by the owner, then the same again; who left by themselves
    // was removed by no one.
    let first = match writer.submit(remove("alice", "dave")).await.unwrap() {
        Done::Removed {
            at, fresh: true, ..
        } => at,
        other => panic!("{other:?}"),
    };
    match writer.submit(remove("alice", "dave")).await.unwrap() {
        Done::Removed {
            user,
            by,
            members,
            at,
            fresh: false,
            ..
        } => {
            assert_eq!((user, by, at), (s("dave"), s("alice"), first));
            assert_eq!(members, [s("alice"), s("bob")]);
        }
        other => panic!("{other:?}"),
    }
    let err = writer.submit(remove("alice", "carol")).await.unwrap_err();
    assert_eq!(err.code, "not_found", "carol left");
    // Back and gone again: the last departure counts.
    writer.submit(add("bob", &["carol"])).await.unwrap();
    writer.submit(remove("alice", "carol")).await.unwrap();
    assert!(matches!(
        writer.submit(leave("carol")).await,
        Err(err) if err.code == "forbidden"
    ));
    assert!(matches!(
        writer.submit(remove("alice", "carol")).await.unwrap(),
        Done::Removed { fresh: false, .. }
    ));

    // Reads: the mark asked for again (or more than there is) is a
    // repeat, a lower seq is not, and neither is a mark never set.
    let moved_again = |done: Done| match done {
        Done::Read { moved, again, .. } => (moved, again),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        moved_again(writer.submit(read("bob", 0)).await.unwrap()),
        (false, false)
    );
    for n in 1..=2 {
        writer
            .submit(send("alice", group, &format!("r{n}"), "hi"))
            .await
            .unwrap();
    }
    for (seq, expected) in [(2, (true, false)), (2, (false, true)), (9, (false, true))] {
        let done = writer.submit(read("bob", seq)).await.unwrap();
        assert_eq!(moved_again(done), expected, "read {seq}");
    }
    assert_eq!(
        moved_again(writer.submit(read("bob", 1)).await.unwrap()),
        (false, false)
    );
    tasks.shutdown(Duration::from_secs(5)).await;
    store.close().await;
}

#[tokio::test]
async fn repeats_on_sqlite() {
    let scratch = Scratch::sqlite("chat-repeats");
    repeats(scratch.open(8, Duration::from_secs(10)).await).await;
}

#[tokio::test]
async fn repeats_on_postgres() {
    let Some(scratch) = Scratch::postgres().await else {
        return;
    };
    repeats(scratch.open(8, Duration::from_secs(10)).await).await;
}

#[tokio::test]
async fn store_logic_on_sqlite() {
    let scratch = Scratch::sqlite("chat-store");
    store_logic(scratch.open(8, Duration::from_secs(10)).await).await;
}

#[tokio::test]
async fn store_logic_on_postgres() {
    let Some(scratch) = Scratch::postgres().await else {
        return;
    };
    store_logic(scratch.open(8, Duration::from_secs(10)).await).await;
}
