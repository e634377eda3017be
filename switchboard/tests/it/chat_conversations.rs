//! `/chat` conversations over the wire, on SQLite and PostgreSQL: a
//! `conversations` page of bounded size and cost, a cap on the
//! conversations a user is in, the removal of a member (who stops
//! receiving at once), and typing stops that are not lost when the store
//! fails.

use std::time::{Duration, Instant};

use crate::common::{Device, RawServer, postgres_database, start_raw};
use serde_json::{Value, json};

/// Where a test's server keeps its store: SQLite in its folder, or a new
/// PostgreSQL database (`None` when no PostgreSQL server is given).
async fn store_toml(postgres: bool) -> Option<String> {
    // A generous timeout: a loaded test machine must not turn a slow
    // fsync into `unavailable`.
    if !postgres {
        return Some("[store]\ntimeout_ms = 20000\n".to_owned());
    }
    let (_, url) = postgres_database().await?;
    Some(format!("[store]\nurl = {url:?}\ntimeout_ms = 20000\n"))
}

fn server_toml(store: &str, chat: &str) -> String {
    format!(
        "[auth]\nhs256_secret = \"test-secret\"\n[limits]\nevents_per_sec = 0\n\
         {store}[chat]\nmessages_per_sec = 0\n{chat}\n"
    )
}

/// `body` on SQLite, and on PostgreSQL.
macro_rules! on_both_stores {
    ($body:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body(&store_toml(false).await.unwrap()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            if let Some(store) = store_toml(true).await {
                $body(&store).await;
            }
        }
    };
}

/// A device of `user` on `/chat`.
async fn device(server: &RawServer, user: &str) -> Device {
    Device::connect(server.addr, user, "/chat")
        .await
        .with_wait(Duration::from_secs(30))
}

fn code(ack: &Value) -> &str {
    ack["error"]["code"].as_str().unwrap_or("")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// ------------------------------------------------------- conversations

/// A page of 100 groups of 256 members: its size is bounded (each
/// conversation carries its `member_count` and at most
/// `chat.max_listed_members` members), its content is otherwise what it
/// was, and its time is printed (a bounded number of queries whatever the
/// page's size).
async fn a_page_of_a_hundred_big_groups_is_bounded(store: &str) {
    // 25,500 members put into groups by one user: past the default rate.
    let server = start_raw(&server_toml(store, "members_added_per_min = 0")).await;
    let mut alice = device(&server, "alice").await;
    let others: Vec<String> = (0..255).map(|i| format!("member-{i:03}")).collect();
    let mut ids = Vec::new();
    for g in 0..100 {
        let ack = alice
            .call(
                "conversation:create",
                json!({"name": format!("g{g}"), "members": others}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        let id = ack["conversation"]["id"].as_i64().unwrap();
        let ack = alice
            .call(
                "message",
                json!({"conversation": id, "client_id": format!("c{g}"),
                       "text": format!("hello @member-000 in {g}")}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        ids.push(id);
    }
    let direct = alice
        .call(
            "message",
            json!({"to": "bob", "client_id": "d", "text": "hi"}),
        )
        .await;
    assert_eq!(direct["ok"], true, "{direct}");

    let mut times = Vec::new();
    let mut page = Value::Null;
    for _ in 0..9 {
        let started = Instant::now();
        page = alice.call("conversations", json!({"limit": 100})).await;
        times.push(started.elapsed());
    }
    let bytes = page.to_string().len();
    eprintln!(
        "conversations, a page of 100 groups of 256 members: median {:?} \
         (of {times:?}), {bytes} bytes",
        median(times.clone())
    );
    assert_eq!(page["ok"], true);
    assert_eq!(page["has_more"], true);
    let list = page["conversations"].as_array().unwrap();
    assert_eq!(list.len(), 100);
    // The direct conversation came last, so it leads; then the groups,
    // newest first.
    assert_eq!(list[0]["kind"], "direct");
    assert_eq!(list[0]["members"], json!(["alice", "bob"]));
    assert_eq!(list[0]["member_count"], 2);
    for (item, id) in list[1..].iter().zip(ids.iter().rev()) {
        assert_eq!(item["id"], *id);
        assert_eq!(item["member_count"], 256, "{item}");
        let members = item["members"].as_array().unwrap();
        assert_eq!(members.len(), 20, "the first max_listed_members");
        assert_eq!(members[0], "alice");
        assert_eq!(members[1], "member-000");
        assert_eq!(item["last_seq"], 1);
        assert_eq!(item["last_message"]["seq"], 1);
        assert_eq!(item["unread"], 0);
        assert_eq!(item["mentions"], 0);
        assert_eq!(item["owner"], "alice");
    }
    assert!(bytes < 100 * 1_500, "{bytes} bytes for a page of 100");

    // The full list, for a group's member pane.
    let full = alice
        .call("conversation:members", json!({"conversation": ids[0]}))
        .await;
    assert_eq!(full["member_count"], 256, "{full}");
    assert_eq!(full["members"].as_array().unwrap().len(), 256);
    let mut stranger = device(&server, "stranger").await;
    let refused = stranger
        .call("conversation:members", json!({"conversation": ids[0]}))
        .await;
    assert_eq!(code(&refused), "forbidden", "{refused}");

    // A member's view: unread and mentions, per member.
    let mut member = device(&server, "member-000").await;
    let mut seen = 0;
    let mut before = Value::Null;
    loop {
        let page = member
            .call("conversations", json!({"limit": 60, "before": before}))
            .await;
        let list = page["conversations"].as_array().unwrap();
        seen += list.len();
        assert!(
            list.iter()
                .all(|c| c["unread"] == 1 && c["mentions"] == 1 && c["last_read_seq"] == 0),
            "{page}"
        );
        if page["has_more"] == false {
            break;
        }
        before = page["next"].clone();
    }
    assert_eq!(seen, 100);
}

// ------------------------------------------------- conversations per user

/// `chat.max_conversations_per_user`: creating, being added to and
/// starting a direct conversation beyond it are refused, nothing written;
/// a direct conversation that exists is still found; leaving makes room.
async fn a_user_is_in_at_most_max_conversations_per_user(store: &str) {
    let server = start_raw(&server_toml(store, "max_conversations_per_user = 3")).await;
    let mut alice = device(&server, "alice").await;
    let mut carol = device(&server, "carol").await;
    let mut dave = device(&server, "dave").await;
    let group = |name: &str, members: &[&str]| json!({"name": name, "members": members});
    let ack = alice
        .call("conversation:create", group("one", &["bob"]))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let one = ack["conversation"]["id"].clone();
    let ack = alice
        .call("conversation:create", json!({"direct": "bob"}))
        .await;
    assert_eq!(ack["created"], true, "{ack}");
    let ack = alice
        .call("conversation:create", group("two", &["carol"]))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // alice is in 3: no fourth, of any kind.
    let ack = alice.call("conversation:create", group("four", &[])).await;
    assert_eq!(code(&ack), "too_many_conversations", "{ack}");
    let ack = carol
        .call("conversation:create", group("c", &["alice"]))
        .await;
    assert_eq!(code(&ack), "too_many_conversations", "{ack}");
    let ack = alice
        .call(
            "message",
            json!({"to": "dave", "client_id": "x", "text": "hi"}),
        )
        .await;
    assert_eq!(code(&ack), "too_many_conversations", "{ack}");
    let ack = dave
        .call("conversation:create", json!({"direct": "alice"}))
        .await;
    assert_eq!(code(&ack), "too_many_conversations", "{ack}");
    // The one that exists is found.
    let ack = alice
        .call(
            "message",
            json!({"to": "bob", "client_id": "y", "text": "hi"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // Added to a group: refused, the group unchanged.
    let ack = carol
        .call("conversation:create", group("c", &["dave"]))
        .await;
    let c = ack["conversation"]["id"].clone();
    let ack = carol
        .call(
            "conversation:add_member",
            json!({"conversation": c, "users": ["alice", "erin"]}),
        )
        .await;
    assert_eq!(code(&ack), "too_many_conversations", "{ack}");
    assert!(ack["error"]["message"].as_str().unwrap().contains("alice"));
    let ack = carol
        .call("conversation:members", json!({"conversation": c}))
        .await;
    assert_eq!(ack["members"], json!(["carol", "dave"]), "{ack}");
    let page = alice.call("conversations", json!({})).await;
    assert_eq!(page["conversations"].as_array().unwrap().len(), 3);
    // Leaving makes room.
    let ack = alice
        .call("conversation:leave", json!({"conversation": one}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = carol
        .call(
            "conversation:add_member",
            json!({"conversation": c, "users": ["alice"]}),
        )
        .await;
    assert_eq!(ack["added"], json!(["alice"]), "{ack}");
    let ack = alice.call("conversation:create", group("five", &[])).await;
    assert_eq!(code(&ack), "too_many_conversations", "{ack}");
}

// ------------------------------------------------------------- removal

/// The owner removes a member while messages stream in: every device of
/// the removed member gets what was committed before the removal, then
/// `conversation:member_removed`, then nothing of the conversation (its
/// messages, typing), and `forbidden` for everything naming it.
async fn a_removed_member_s_devices_receive_nothing_after_the_removal(store: &str) {
    let server = start_raw(&server_toml(store, "")).await;
    let mut alice = device(&server, "alice").await;
    let mut bob = device(&server, "bob").await;
    let mut carol = [
        device(&server, "carol").await,
        device(&server, "carol").await,
    ];
    let ack = alice
        .call(
            "conversation:create",
            json!({"name": "team", "members": ["bob", "carol"]}),
        )
        .await;
    assert_eq!(ack["conversation"]["owner"], "alice", "{ack}");
    let conv = ack["conversation"]["id"].as_i64().unwrap();

    // Who may not remove, and what cannot be removed.
    let remove = |user: &str| json!({"conversation": conv, "user": user});
    let ack = bob
        .call("conversation:remove_member", remove("carol"))
        .await;
    assert_eq!(code(&ack), "forbidden", "{ack}");
    let ack = alice
        .call("conversation:remove_member", remove("zed"))
        .await;
    assert_eq!(code(&ack), "not_found", "{ack}");
    let ack = alice
        .call("conversation:remove_member", remove("alice"))
        .await;
    assert_eq!(code(&ack), "bad_request", "{ack}");
    let ack = alice
        .call(
            "conversation:remove_member",
            json!({"conversation": 999_999, "user": "bob"}),
        )
        .await;
    assert_eq!(code(&ack), "not_found", "{ack}");
    let ack = alice
        .call(
            "message",
            json!({"to": "carol", "client_id": "d0", "text": "hi"}),
        )
        .await;
    let direct = ack["conversation"].clone();
    let ack = alice
        .call(
            "conversation:remove_member",
            json!({"conversation": direct, "user": "carol"}),
        )
        .await;
    assert_eq!(code(&ack), "bad_request", "{ack}");

    const SENT: u64 = 200;
    let payload = |i: u64| json!({"conversation": conv, "client_id": format!("s{i}"), "text": format!("m{i}")});
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(alice.emit("message", &payload(i)).await);
    }
    let removal = alice
        .emit("conversation:remove_member", &remove("carol"))
        .await;
    for i in 100..SENT {
        ids.push(alice.emit("message", &payload(i)).await);
    }
    let removed = alice.ack(removal).await;
    assert_eq!(
        removed,
        json!({"ok": true, "conversation": conv, "user": "carol"})
    );
    for id in ids {
        assert_eq!(alice.ack(id).await["ok"], true);
    }
    let ack = alice
        .call("typing", json!({"conversation": conv, "typing": true}))
        .await;
    assert_eq!(ack["relayed"], true, "{ack}");
    let ack = alice
        .call(
            "message",
            json!({"to": "carol", "client_id": "flush", "text": "flush"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    for device in carol.iter_mut() {
        let seen = device.until("message", |d| d["client_id"] == "flush").await;
        let mut seqs = Vec::new();
        let mut gone = false;
        for (event, data) in &seen {
            let of_conv = data["conversation"] == conv || data["conversation"]["id"] == conv;
            if !of_conv {
                continue;
            }
            match event.as_str() {
                "conversation:joined" => {}
                "message" => {
                    assert!(!gone, "a message after the removal: {data}");
                    seqs.push(data["seq"].as_i64().unwrap());
                }
                "conversation:member_removed" => {
                    assert_eq!(
                        data,
                        &json!({"conversation": conv, "user": "carol", "by": "alice"})
                    );
                    gone = true;
                }
                other => panic!("{other} after the removal: {data}"),
            }
        }
        assert!(gone, "the removal was not told: {seen:?}");
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, expected, "what preceded the removal, in order");
    }
    let told = bob.until("conversation:member_removed", |_| true).await;
    assert_eq!(told.last().unwrap().1["user"], "carol");

    // Forbidden for everything, and not listed.
    for (event, args) in [
        ("history", json!({"conversation": conv})),
        (
            "message",
            json!({"conversation": conv, "client_id": "c1", "text": "hey"}),
        ),
        ("typing", json!({"conversation": conv, "typing": true})),
        ("read", json!({"conversation": conv, "seq": 1})),
        ("conversation:members", json!({"conversation": conv})),
        (
            "conversation:add_member",
            json!({"conversation": conv, "users": ["carol"]}),
        ),
    ] {
        let ack = carol[0].call(event, args).await;
        assert_eq!(code(&ack), "forbidden", "{event}: {ack}");
    }
    let page = carol[1].call("conversations", json!({})).await;
    assert!(
        page["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != conv),
        "{page}"
    );

    // The owner who leaves hands the group on (to the first to have
    // joined: bob), who may remove.
    let ack = alice
        .call("conversation:leave", json!({"conversation": conv}))
        .await;
    assert_eq!(ack["ok"], true);
    let ack = bob
        .call(
            "conversation:add_member",
            json!({"conversation": conv, "users": ["dave"]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = bob.call("conversation:remove_member", remove("dave")).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

// -------------------------------------------------------------- typing

/// A stop reaches the others though the store fails: sent (`typing:
/// false`) or by expiry. The store is closed after the starts were shown.
async fn typing_stops_reach_the_others_when_the_store_fails(store: &str) {
    let server = start_raw(&server_toml(
        store,
        "typing_ttl_ms = 600\ntyping_sweep_ms = 50",
    ))
    .await;
    let mut alice = device(&server, "alice").await;
    let mut bob = device(&server, "bob").await;
    let ack = alice
        .call("conversation:create", json!({"direct": "bob"}))
        .await;
    let direct = ack["conversation"]["id"].as_i64().unwrap();
    let ack = alice
        .call(
            "conversation:create",
            json!({"name": "g", "members": ["bob"]}),
        )
        .await;
    let group = ack["conversation"]["id"].as_i64().unwrap();
    for conv in [direct, group] {
        let ack = alice
            .call("typing", json!({"conversation": conv, "typing": true}))
            .await;
        assert_eq!(ack["relayed"], true, "{ack}");
        let shown = bob.event("typing").await;
        assert_eq!(
            shown,
            json!({"conversation": conv, "user": "alice", "typing": true})
        );
    }
    server.app.store.close().await;
    let ack = alice
        .call("typing", json!({"conversation": direct, "typing": false}))
        .await;
    assert_eq!(ack, json!({"ok": true, "relayed": true}));
    assert_eq!(
        bob.event("typing").await,
        json!({"conversation": direct, "user": "alice", "typing": false})
    );
    // The group's start expires (600 ms) with the store still closed.
    assert_eq!(
        bob.event("typing").await,
        json!({"conversation": group, "user": "alice", "typing": false})
    );
    // A start needs the store (membership): refused, nothing shown.
    let ack = alice
        .call("typing", json!({"conversation": direct, "typing": true}))
        .await;
    assert_eq!(code(&ack), "unavailable", "{ack}");
}

on_both_stores!(
    a_page_of_a_hundred_big_groups_is_bounded,
    a_page_of_a_hundred_big_groups_is_bounded_on_sqlite,
    a_page_of_a_hundred_big_groups_is_bounded_on_postgres
);
on_both_stores!(
    a_user_is_in_at_most_max_conversations_per_user,
    a_user_is_in_at_most_max_conversations_per_user_on_sqlite,
    a_user_is_in_at_most_max_conversations_per_user_on_postgres
);
on_both_stores!(
    a_removed_member_s_devices_receive_nothing_after_the_removal,
    a_removed_member_s_devices_receive_nothing_after_the_removal_on_sqlite,
    a_removed_member_s_devices_receive_nothing_after_the_removal_on_postgres
);
on_both_stores!(
    typing_stops_reach_the_others_when_the_store_fails,
    typing_stops_reach_the_others_when_the_store_fails_on_sqlite,
    typing_stops_reach_the_others_when_the_store_fails_on_postgres
);
