//! PostgreSQL going away under a running cluster, for real: two nodes on a
//! PostgreSQL server of the test's own ([`OwnPostgres`]), stopped at once
//! (`pg_ctl stop -m immediate`) while both run and their clients stay
//! connected, then started again on its port. Meanwhile every chat send is
//! answered `unavailable` (nothing written: a retry is safe), `/readyz`
//! says `unavailable` with `store_unreachable` (so a load balancer sends
//! no new clients), and no node exits or drops a client; once the server
//! is back, `/readyz` is ready again and the same sends succeed, delivered
//! across nodes, without restarting anything.

use serde_json::{Value, json};

use crate::common::*;

/// The nodes' configuration besides the cluster: `/chat`, and `/readyz`
/// checking the store at every request.
const CHAT: &str = "[server]\nreadiness_cache_ms = 0\n\n\
                    [[namespaces]]\nname = \"/chat\"\nhandler = \"chat\"\nauth = true\n";

/// Sends `text` to `to` (the direct conversation) with `client_id`.
async fn send(device: &mut Device, to: &str, client_id: &str, text: &str) -> Value {
    device
        .call(
            "message",
            json!({"to": to, "client_id": client_id, "text": text}),
        )
        .await
}

/// The texts of the next `n` messages `device` receives.
async fn texts(device: &mut Device, n: usize) -> Vec<Value> {
    let mut texts = Vec::with_capacity(n);
    for _ in 0..n {
        texts.push(device.event("message").await["text"].clone());
    }
    texts
}

#[tokio::test]
async fn while_postgresql_is_down_sends_answer_unavailable_and_succeed_once_it_is_back() {
    let Some(redis) = redis_url() else {
        return;
    };
    let Some(mut postgres) = OwnPostgres::start().await else {
        return;
    };
    // A store query is given 500 ms: a send answers within that when the
    // server is gone (a connection refused answers sooner).
    let store = format!("url = {:?}\ntimeout_ms = 500", postgres.url());
    let nodes = start_nodes(
        2,
        &format!("{CHAT}\n{}", cluster_sections(&redis, &store, "")),
    )
    .await;
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let mut alice = Device::connect(a, "alice", "/chat").await;
    let mut bob = Device::connect(b, "bob", "/chat").await;

    let sent = send(&mut alice, "bob", "a1", "before").await;
    assert_eq!(sent["ok"], true, "{sent}");
    assert_eq!(bob.event("message").await["text"], "before");

    postgres.stop().await;
    for node in [a, b] {
        let body = until_readyz(node, 503).await;
        assert_eq!(body["status"], "unavailable", "{body}");
        assert_eq!(body["error"]["code"], "store_unreachable", "{body}");
        // Alive, though not ready: nothing restarts it.
        assert_eq!(http(node, "GET", "/healthz", &[], "").await.status, 200);
    }
    let refused = send(&mut alice, "bob", "a2", "during").await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
    let refused = send(&mut bob, "alice", "b1", "during too").await;
    assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
    // The connections stayed, and no node stopped.
    for node in &nodes {
        assert!(!node.task.is_finished());
    }

    postgres.start_again().await;
    for node in [a, b] {
        let body = until_readyz(node, 200).await;
        assert_eq!(body["store"]["backend"], "postgres", "{body}");
    }
    // The sends refused are sent again, as a client retries them: stored
    // now (not duplicates: nothing was written before), and delivered.
    let sent = send(&mut alice, "bob", "a2", "during").await;
    assert_eq!(
        (&sent["ok"], &sent["seq"], &sent["duplicate"]),
        (&json!(true), &json!(2), &json!(false)),
        "{sent}"
    );
    let sent = send(&mut bob, "alice", "b1", "during too").await;
    assert_eq!(
        (&sent["ok"], &sent["seq"]),
        (&json!(true), &json!(3)),
        "{sent}"
    );
    // Delivered across nodes, in seq order, to both (the sender's device
    // included); Bob took "before" already.
    assert_eq!(
        texts(&mut alice, 3).await,
        ["before", "during", "during too"]
    );
    assert_eq!(texts(&mut bob, 2).await, ["during", "during too"]);
}
