//! The writer's batches from the inside: what one transaction of many
//! sends writes (per-run statements, a `client_id` twice in one batch, one
//! used in another conversation), and a `COMMIT` slower than the store's
//! timeout (the outcome is awaited, not guessed).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;

use super::*;
use crate::store::testing::Scratch;
use crate::tasks::Tasks;

fn send(user: &str, conversation: i64, client_id: &str, text: &str) -> Op {
    Op::Send {
        user: user.to_owned(),
        conversation,
        client_id: client_id.to_owned(),
        text: text.to_owned(),
        reply_to: None,
    }
}

fn reply(mut op: Op, seq: i64) -> Op {
    if let Op::Send { reply_to, .. } = &mut op {
        *reply_to = Some(seq);
    }
    op
}

async fn direct(store: &Store, a: &str, b: &str) -> i64 {
    let mut tx = store.begin_write().await.unwrap();
    let (id, _) = store::direct_get_or_create(&mut tx, a, b, 1).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// `(conversation, seq, client_id, fresh)` of a send's outcome.
fn sent(outcome: &Outcome) -> (i64, i64, String, bool) {
    match outcome {
        Ok(Done::Sent { message, fresh, .. }) => (
            message.conversation,
            message.seq,
            message.client_id.clone(),
            *fresh,
        ),
        other => panic!("not sent: {other:?}"),
    }
}

#[tokio::test]
async fn one_batch_of_sends_to_two_conversations_gets_gapless_seqs_and_one_message_per_client_id() {
    let scratch = Scratch::sqlite("writer-batch");
    let store = scratch.open(2, Duration::from_secs(10)).await;
    let ab = direct(&store, "alice", "bob").await;
    let ac = direct(&store, "alice", "carol").await;
    let ops = [
        send("alice", ab, "a1", "one @bob"),
        send("alice", ac, "a2", "one"),
        send("bob", ab, "b1", "two"),
        // The same client_id twice in one batch: one message, the second
        // answered as its retry (whatever its text).
        send("alice", ab, "a1", "one again"),
        send("carol", ab, "c1", "not a member"),
        reply(
            send("alice", ab, "a3", "replying to a message of this batch"),
            2,
        ),
        reply(send("alice", ab, "a4", "no message 4 yet"), 4),
        send("carol", ac, "c2", "three"),
    ];
    let refs: Vec<&Op> = ops.iter().collect();
    let outcomes = commit(&store, &refs, 8).await.unwrap();
    assert_eq!(outcomes.len(), ops.len());
    assert_eq!(sent(&outcomes[0]), (ab, 1, "a1".into(), true));
    assert_eq!(sent(&outcomes[1]), (ac, 1, "a2".into(), true));
    assert_eq!(sent(&outcomes[2]), (ab, 2, "b1".into(), true));
    assert_eq!(sent(&outcomes[3]), (ab, 1, "a1".into(), false));
    match (&outcomes[0], &outcomes[3]) {
        (Ok(Done::Sent { message: first, .. }), Ok(Done::Sent { message: again, .. })) => {
            assert_eq!(first, again, "the retry answers the first send");
            assert_eq!(first.mentions, ["bob"]);
        }
        _ => unreachable!(),
    }
    assert_eq!(outcomes[4].as_ref().unwrap_err().code, "forbidden");
    assert_eq!(sent(&outcomes[5]), (ab, 3, "a3".into(), true));
    assert_eq!(outcomes[6].as_ref().unwrap_err().code, "bad_request");
    assert_eq!(sent(&outcomes[7]), (ac, 2, "c2".into(), true));

    // What is stored: exactly the new ones, in seq order, and the marks.
    let mut conn = store.pool().acquire().await.unwrap();
    let (stored, _) = store::history(&mut conn, ab, store::Page::After(0), 100)
        .await
        .unwrap();
    let seqs: Vec<(i64, &str)> = stored
        .iter()
        .map(|m| (m.seq, m.client_id.as_str()))
        .collect();
    assert_eq!(seqs, [(1, "a1"), (2, "b1"), (3, "a3")]);
    assert_eq!(stored[0].text.as_deref(), Some("one @bob"));
    assert_eq!(stored[2].reply_to, Some(2));
    let row = store::conversation(&mut conn, ab).await.unwrap().unwrap();
    assert_eq!(row.last_seq, 3);
    assert_eq!(
        store::membership(&mut conn, ab, "alice").await.unwrap(),
        Some(3)
    );
    assert_eq!(
        store::membership(&mut conn, ab, "bob").await.unwrap(),
        Some(2)
    );
    assert_eq!(
        store::membership(&mut conn, ac, "carol").await.unwrap(),
        Some(2)
    );
    assert_eq!(
        store::mention_count(&mut conn, "bob", ab, 0).await.unwrap(),
        1
    );

    // The next batch goes on from there; a retry of a stored message is
    // found by the batch's one look-up.
    let ops = [
        send("bob", ab, "b1", "retry"),
        send("bob", ab, "b2", "four"),
    ];
    let refs: Vec<&Op> = ops.iter().collect();
    let outcomes = commit(&store, &refs, 8).await.unwrap();
    assert_eq!(sent(&outcomes[0]), (ab, 2, "b1".into(), false));
    assert_eq!(sent(&outcomes[1]), (ab, 4, "b2".into(), true));
    drop(conn);
    store.close().await;
}

#[tokio::test]
async fn a_client_id_used_in_another_conversation_is_a_conflict() {
    let scratch = Scratch::sqlite("writer-conflict");
    let store = scratch.open(2, Duration::from_secs(10)).await;
    let ab = direct(&store, "alice", "bob").await;
    let ac = direct(&store, "alice", "carol").await;
    let ops = [
        send("alice", ab, "x", "to bob"),
        send("alice", ac, "x", "to carol"),
    ];
    let refs: Vec<&Op> = ops.iter().collect();
    let outcomes = commit(&store, &refs, 8).await.unwrap();
    assert_eq!(sent(&outcomes[0]), (ab, 1, "x".into(), true));
    assert_eq!(outcomes[1].as_ref().unwrap_err().code, "conflict");
    // In a later batch too, and nothing is written for it.
    let ops = [send("alice", ac, "x", "to carol")];
    let refs: Vec<&Op> = ops.iter().collect();
    let outcomes = commit(&store, &refs, 8).await.unwrap();
    let err = outcomes[0].as_ref().unwrap_err();
    assert_eq!(err.code, "conflict", "{err:?}");
    let mut conn = store.pool().acquire().await.unwrap();
    let row = store::conversation(&mut conn, ac).await.unwrap().unwrap();
    assert_eq!(row.last_seq, 0);
    drop(conn);
    store.close().await;
}

#[tokio::test]
async fn a_batch_of_more_rows_than_one_statement_takes_is_stored_whole() {
    let scratch = Scratch::sqlite("writer-many");
    let store = scratch.open(2, Duration::from_secs(10)).await;
    let ab = direct(&store, "alice", "bob").await;
    let n = store::ROWS_PER_STATEMENT * 2 + 7;
    let ops: Vec<Op> = (0..n)
        .map(|i| {
            send(
                ["alice", "bob"][i % 2],
                ab,
                &format!("m{i}"),
                "@bob @alice hi",
            )
        })
        .collect();
    let refs: Vec<&Op> = ops.iter().collect();
    let outcomes = commit(&store, &refs, 8).await.unwrap();
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(sent(outcome), (ab, i as i64 + 1, format!("m{i}"), true));
    }
    let mut conn = store.pool().acquire().await.unwrap();
    let (last, more) = store::history(&mut conn, ab, store::Page::Before(i64::MAX), 1)
        .await
        .unwrap();
    assert!(more);
    assert_eq!(last[0].seq, n as i64);
    // Every other message mentions bob (alice's), the others alice.
    let bob = store::mention_count(&mut conn, "bob", ab, 0).await.unwrap();
    assert_eq!(bob, n.div_ceil(2) as i64);
    // A retry of each, all in one batch, is found by the chunked look-up.
    let outcomes = commit(&store, &refs, 8).await.unwrap();
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(sent(outcome), (ab, i as i64 + 1, format!("m{i}"), false));
    }
    drop(conn);
    store.close().await;
}

/// A `COMMIT` that takes longer than the store's timeout: the message it
/// stores is delivered (once), and so acked, and a retry is a duplicate —
/// where the writer used to answer `unavailable` to a committed message,
/// whose retry then came back as a duplicate delivered to no one.
///
/// The slow `COMMIT` is made on purpose: in SQLite's rollback-journal mode
/// (WAL never waits for readers) a `COMMIT` waits until no reader holds
/// the database, and a reader here holds it until well past the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_slower_than_the_store_timeout_is_delivered_not_answered_unavailable() {
    let scratch = Scratch::sqlite("writer-slow-commit");
    let timeout = Duration::from_millis(200);
    // One connection: the writer's, so that the journal mode can change.
    let store = scratch.open(1, timeout).await;
    sqlx::query("PRAGMA journal_mode=DELETE")
        .execute(store.pool())
        .await
        .unwrap();
    let ab = direct(&store, "alice", "bob").await;
    let tasks = Tasks::new();
    let delivered: Arc<Mutex<Vec<Done>>> = Arc::default();
    let config = WriterConfig {
        max_batch: 16,
        queue: 16,
        max_mentions: 8,
    };
    let writer = Writer::start(store.clone(), &tasks, config, {
        let delivered = delivered.clone();
        Arc::new(move |done: &Done| {
            delivered.lock().unwrap().push(done.clone());
            socketio::Published::done()
        })
    });

    let mut reader = sqlx::AnyConnection::connect(scratch.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    sqlx::query("SELECT COUNT(*) FROM chat_messages")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    let mut first = tokio::spawn({
        let writer = writer.clone();
        async move { writer.submit(send("alice", ab, "m1", "hello")).await }
    });
    // Five timeouts long the COMMIT waits for the reader; the writer must
    // not have answered meanwhile.
    let early = tokio::time::timeout(timeout * 5, &mut first).await;
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    let first = match early {
        Ok(answered) => answered.unwrap(),
        Err(_) => first.await.unwrap(),
    };
    // Whatever the first answer, a retry follows it (as a client does).
    let retry = writer
        .submit(send("alice", ab, "m1", "hello"))
        .await
        .unwrap();
    let fresh: Vec<i64> = delivered
        .lock()
        .unwrap()
        .iter()
        .filter_map(|done| match done {
            Done::Sent {
                message,
                fresh: true,
                ..
            } => Some(message.seq),
            _ => None,
        })
        .collect();
    assert_eq!(fresh, [1], "the stored message is delivered exactly once");
    assert!(
        matches!(&first, Ok(Done::Sent { fresh: true, message, .. }) if message.seq == 1),
        "the first send is acked once its COMMIT is known: {first:?}"
    );
    assert!(matches!(retry, Done::Sent { fresh: false, message, .. } if message.seq == 1));
    tasks.shutdown(Duration::from_secs(5)).await;
    reader.close().await.unwrap();
    store.close().await;
}

/// A measurement, not a check (`cargo test --release -p hub --lib --
/// --ignored writer_alone`): the writer alone on SQLite, without sockets,
/// clients or delivery: `SENDERS` tasks (each one send in flight, as a
/// socket's events run one at a time) in `SENDERS / 2` direct
/// conversations. Prints messages/s (batch sizes and times: `RUST_LOG=debug`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn writer_alone() {
    let senders: usize = std::env::var("SENDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let per_sender = 20_000 / senders;
    let scratch = Scratch::sqlite("writer-alone");
    let store = scratch.open(4, Duration::from_secs(30)).await;
    let mut conversations = Vec::new();
    for i in (0..senders).step_by(2) {
        conversations.push(direct(&store, &format!("u{i}"), &format!("u{}", i + 1)).await);
    }
    let tasks = Tasks::new();
    let config = WriterConfig {
        max_batch: 256,
        queue: 10_000,
        max_mentions: 8,
    };
    let writer = Writer::start(
        store.clone(),
        &tasks,
        config,
        Arc::new(|_: &Done| socketio::Published::done()),
    );
    let started = std::time::Instant::now();
    let mut running = Vec::new();
    for s in 0..senders {
        let writer = writer.clone();
        let conversation = conversations[s / 2];
        running.push(tokio::spawn(async move {
            for i in 0..per_sender {
                let op = send(
                    &format!("u{s}"),
                    conversation,
                    &format!("m{i}"),
                    "hello, this is a message of fifty characters",
                );
                writer.submit(op).await.unwrap();
            }
        }));
    }
    for task in running {
        task.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "writer alone: {senders} senders, {} messages in {secs:.2} s: {:.0} messages/s",
        senders * per_sender,
        (senders * per_sender) as f64 / secs
    );
    tasks.shutdown(Duration::from_secs(5)).await;
    store.close().await;
}
