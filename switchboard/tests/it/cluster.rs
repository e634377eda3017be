//! Cluster mode: nodes sharing the test Redis and a PostgreSQL database
//! (`common::start_cluster`), clients on each. A broadcast from either node
//! — to a room, to a user's room, to the namespace with `except`, from the
//! publish API — reaches exactly the matching sockets of every node, once
//! each. A node asks the others (the sockets of a room, room sizes, every
//! room, joins, leaves, disconnects, server-side events with acks) and
//! hears every answer, or a partial one that says a node did not answer.
//! `/readyz` and `/metrics` report the bus; a node whose Redis is gone
//! still serves its own sockets and counts what it could not publish; a
//! connection Redis drops, and Redis itself restarting, are recovered from.
//!
//! "Did not receive" is checked without sleeping: after the broadcast
//! under test, the same socket broadcasts a marker to the whole namespace.
//! A node publishes in order and each connection delivers in order, so a
//! client holding the marker holds everything the broadcast meant for it.

use crate::common::binary::{signal, until_stopped};
use crate::common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// A client of one node in namespace `nsp` (`""` for `/`).
struct Member {
    name: &'static str,
    client: Client,
    sid: String,
    nsp: &'static str,
}

impl Member {
    async fn on(addr: std::net::SocketAddr, name: &'static str) -> Member {
        let (client, sid) = Client::connect(addr).await;
        Member {
            name,
            client,
            sid,
            nsp: "",
        }
    }

    /// On `/secure` (auth: the socket is in `user:<user>`).
    async fn secure(addr: std::net::SocketAddr, name: &'static str, user: &str) -> Member {
        let (client, reply) =
            connect_secure(addr, &format!(r#"{{"token":"{}"}}"#, token(user, 60))).await;
        assert!(reply.starts_with("40/secure,{"), "{reply}");
        let value: serde_json::Value = serde_json::from_str(&reply["40/secure,".len()..]).unwrap();
        Member {
            name,
            client,
            sid: value["sid"].as_str().unwrap().to_owned(),
            nsp: "/secure",
        }
    }

    async fn emit(&mut self, id: u64, event: &str, args: &str) {
        match self.nsp {
            "" => self.client.emit(id, event, args).await,
            nsp => self.client.emit_to(nsp, id, event, args).await,
        }
    }

    /// The packet prefix of this namespace's events (`42` or `42/secure,`).
    fn event_prefix(&self) -> String {
        match self.nsp {
            "" => "42".to_owned(),
            nsp => format!("42{nsp},"),
        }
    }

    async fn join(&mut self, room: &str) {
        self.emit(1, "join", &format!("{room:?}")).await;
        let ack = self.client.recv().await;
        assert!(ack.ends_with(r#"1[{"ok":true}]"#), "{ack}");
    }

    /// The next text frame but the acks of a [`round`]'s broadcasts (an
    /// event without its recovery offset).
    async fn next_frame(&mut self) -> String {
        loop {
            let text = without_offset(self.client.recv().await);
            if !text.starts_with("43100[") && !text.starts_with("43101[") {
                return text;
            }
        }
    }

    /// Every text frame up to the marker `n` (left out), events without
    /// their recovery offsets.
    async fn until_marker(&mut self, n: u64) -> Vec<String> {
        let marker = format!(r#"{}["marker",{n}]"#, self.event_prefix());
        let mut got = Vec::new();
        loop {
            let text = without_offset(self.client.recv().await);
            if text == marker {
                return got;
            }
            got.push(text);
        }
    }
}

/// Broadcasts `spec` (the test kit's `broadcast` event, without `event` and
/// `data`) from `members[sender]` as `news` `{id: n}`, then the marker;
/// returns who received the news, with how many copies each.
async fn round(
    members: &mut [Member],
    sender: usize,
    n: u64,
    spec: &str,
) -> Vec<(&'static str, usize)> {
    let sep = if spec.is_empty() { "" } else { "," };
    let news = format!(r#"{{"event":"news","data":{{"id":{n}}}{sep}{spec}}}"#);
    members[sender].emit(100, "broadcast", &news).await;
    let marker = format!(r#"{{"event":"marker","data":{n}}}"#);
    members[sender].emit(101, "broadcast", &marker).await;
    let mut got = Vec::new();
    for member in members.iter_mut() {
        let expected = format!(r#"{}["news",{{"id":{n}}}]"#, member.event_prefix());
        let frames = member.until_marker(n).await;
        let copies = frames.iter().filter(|f| **f == expected).count();
        if copies > 0 {
            got.push((member.name, copies));
        }
    }
    got
}

#[tokio::test]
async fn broadcasts_reach_the_matching_sockets_of_every_node_once() {
    let Some(nodes) = start_cluster(2, "").await else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let mut members = vec![
        Member::on(a, "a1").await,
        Member::on(a, "a2").await,
        Member::on(a, "a3").await,
        Member::on(b, "b1").await,
        Member::on(b, "b2").await,
        Member::on(b, "b3").await,
    ];
    members[0].join("r1").await;
    members[1].join("r2").await;
    members[3].join("r1").await;
    members[4].join("r1").await;
    members[4].join("r2").await;
    let (a1, b1) = (0, 3);

    // One room, from either node (its own channel on the bus).
    let got = round(&mut members, a1, 1, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("a1", 1), ("b1", 1), ("b2", 1)]);
    let got = round(&mut members, b1, 2, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("a1", 1), ("b1", 1), ("b2", 1)]);
    // Two rooms: the union, b2 (in both) once.
    let got = round(&mut members, b1, 3, r#""rooms":["r1","r2"]"#).await;
    assert_eq!(got, [("a1", 1), ("a2", 1), ("b1", 1), ("b2", 1)]);
    // The namespace but a room, and but the sender.
    let got = round(&mut members, a1, 4, r#""except":["r2"]"#).await;
    assert_eq!(got, [("a1", 1), ("a3", 1), ("b1", 1), ("b3", 1)]);
    let got = round(&mut members, b1, 5, r#""rooms":["r1"],"others":true"#).await;
    assert_eq!(got, [("a1", 1), ("b2", 1)]);
    // A socket id is a room: a socket of the other node, alone.
    let b3 = members[5].sid.clone();
    let got = round(&mut members, a1, 6, &format!(r#""rooms":[{b3:?}]"#)).await;
    assert_eq!(got, [("b3", 1)]);
    // And excepted as a room.
    let a2 = members[1].sid.clone();
    let got = round(&mut members, b1, 7, &format!(r#""except":[{a2:?},"r1"]"#)).await;
    assert_eq!(got, [("a3", 1), ("b3", 1)]);
    // Volatile broadcasts cross too.
    let got = round(&mut members, a1, 8, r#""rooms":["r2"],"volatile":true"#).await;
    assert_eq!(got, [("a2", 1), ("b2", 1)]);

    // Each broadcast crossed the bus once per node, not once per socket.
    let published: u64 = nodes.iter().map(|n| n.cluster().stats().published).sum();
    assert_eq!(published, 16, "8 broadcasts and 8 markers");
}

#[tokio::test]
async fn a_users_room_reaches_every_device_of_that_user_on_every_node() {
    let Some(nodes) = start_cluster(2, "").await else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let mut members = vec![
        Member::secure(a, "alice@a", "alice").await,
        Member::secure(b, "alice@b", "alice").await,
        Member::secure(b, "bob@b", "bob").await,
        Member::secure(a, "carol@a", "carol").await,
    ];
    let got = round(&mut members, 2, 1, r#""rooms":["user:alice"]"#).await;
    assert_eq!(got, [("alice@a", 1), ("alice@b", 1)]);
    // Alice's other devices, not the one that sent (socket.to(room)).
    let got = round(
        &mut members,
        1,
        2,
        r#""rooms":["user:alice"],"others":true"#,
    )
    .await;
    assert_eq!(got, [("alice@a", 1)]);
    let got = round(&mut members, 0, 3, r#""rooms":["user:bob","user:carol"]"#).await;
    assert_eq!(got, [("bob@b", 1), ("carol@a", 1)]);

    // The publish API of one node reaches the user's sockets on both.
    let mut alice_a = connect_pubsub(a, "alice").await;
    let mut alice_b = connect_pubsub(b, "alice").await;
    let mut bob_b = connect_pubsub(b, "bob").await;
    let (status, json) = api(
        a,
        "POST",
        "/api/v1/publish",
        r#"{"event":"notification","users":["alice"],"namespace":"/pubsub","data":{"n":1}}"#,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    for device in [&mut alice_a, &mut alice_b] {
        assert_eq!(
            without_offset(device.recv().await),
            r#"42/pubsub,["notification",{"n":1}]"#
        );
    }
    // Bob got nothing: the next thing he sees is the answer to his own event.
    bob_b
        .emit_to("/pubsub", 5, "subscribe", r#""topic:x""#)
        .await;
    assert!(bob_b.recv().await.starts_with("43/pubsub,5["));
}

/// Closes, from Redis's side, the connection `switchboard:<uid>:<role>`
/// (`CLIENT KILL`, with redis-cli from the Redis installation).
fn kill_connection(url: &str, uid: &str, role: &str) {
    let redis_cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .arg("-u")
            .arg(url)
            .args(args)
            .output()
            .expect("redis-cli (installed with redis-server)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let name = format!("name=switchboard:{uid}:{role} ");
    let list = redis_cli(&["CLIENT", "LIST"]);
    let line = list
        .lines()
        .find(|line| line.contains(&name))
        .unwrap_or_else(|| panic!("no connection {name} in\n{list}"));
    let id = line
        .split(' ')
        .find_map(|field| field.strip_prefix("id="))
        .unwrap();
    assert_eq!(redis_cli(&["CLIENT", "KILL", "ID", id]).trim(), "1");
}

/// Waits until `done` holds for the node's counters and it is up again.
async fn until(cluster: &cluster::Cluster, done: impl Fn(&cluster::StatsSnapshot) -> bool) {
    tokio::time::timeout(WAIT, async {
        while !(done(&cluster.stats()) && cluster.health().is_up()) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{:?} {:?}", cluster.stats(), cluster.health()));
}

#[tokio::test]
async fn a_connection_redis_drops_is_reopened_and_resubscribed() {
    let Some(nodes) = start_cluster(2, "").await else {
        return;
    };
    let url = redis_url().unwrap();
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let mut members = vec![Member::on(a, "a1").await, Member::on(b, "b1").await];
    members[1].join("r1").await;
    let (node_a, node_b) = (nodes[0].cluster(), nodes[1].cluster());

    // B's subscription is cut: B opens it again, subscribed anew, and
    // closes its client's connection as a transport (what A published
    // meanwhile never reached B: the client recovers it; see
    // `a_node_whose_subscription_was_cut_closes_its_clients_…`). The
    // client comes back.
    kill_connection(&url, node_b.uid(), "subscribe");
    let frames = members[1].client.until_closed().await;
    assert!(!frames.iter().any(|f| f.starts_with("41")), "{frames:?}");
    until(node_b, |s| s.subscribe_reconnects == 1 && s.rejoins == 1).await;
    members[1] = Member::on(b, "b1").await;
    members[1].join("r1").await;
    let got = round(&mut members, 0, 1, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("b1", 1)]);

    // A's publishing connection is cut: found by its health check, opened
    // again, and A's broadcasts reach B.
    kill_connection(&url, node_a.uid(), "publish");
    until(node_a, |s| s.publish_reconnects == 1).await;
    let got = round(&mut members, 0, 2, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("b1", 1)]);
    assert_eq!(node_a.stats().publish_failed, 0);
}

#[tokio::test]
async fn readyz_and_metrics_report_the_bus() {
    let Some(nodes) = start_cluster(1, "").await else {
        return;
    };
    let addr = nodes[0].addr;
    let response = http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(json["cluster"]["publish"], "up");
    assert_eq!(json["cluster"]["subscribe"], "up");
    assert_eq!(json["store"]["backend"], "postgres");
    let (mut client, _) = Client::connect(addr).await;
    // Volatile: not recoverable, so delivered here at once and published
    // under the node's own uid (a recoverable one comes back from Redis
    // with its offset, and this node delivers it then).
    client
        .emit(
            1,
            "broadcast",
            r#"{"event":"news","data":1,"volatile":true}"#,
        )
        .await;
    let _ = client.recv().await;
    let _ = client.recv().await;
    // Its own message came back from Redis, and was left alone: it was
    // published, so the publish queue is empty again (read before that, the
    // queue may still hold it: publishing is asynchronous).
    let cluster = nodes[0].cluster();
    tokio::time::timeout(WAIT, async {
        while cluster.stats().own == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the node's own message never came back");
    let metrics = http(addr, "GET", "/metrics", &[], "").await.body;
    for line in [
        "switchboard_cluster_redis_up{connection=\"subscribe\"} 1",
        "switchboard_cluster_publish_dropped_total{reason=\"queue_full\"} 0",
        "switchboard_cluster_publish_queue 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert_eq!(cluster.stats().delivered, 0);
}

/// With recovery on (the default), a broadcast goes out through the bus
/// and is delivered here once it is back, with its offset: the emitter
/// still answers with the sockets it reaches here (`/pubsub`'s
/// `delivered`), and `/metrics` counts each copy and the broadcast once;
/// so does an event to one socket, which goes the same way.
#[tokio::test]
async fn a_broadcast_back_from_the_bus_is_counted_once_where_it_was_emitted() {
    let Some(nodes) = start_cluster(1, "").await else {
        return;
    };
    let addr = nodes[0].addr;
    let mut alice = news_subscriber(addr, "alice").await;
    let mut bob = news_subscriber(addr, "bob").await;
    alice
        .emit_to("/pubsub", 2, "publish", r#"{"room":"topic:news","data":1}"#)
        .await;
    // The ack may come before the message (which goes round through Redis).
    let mut frames = [alice.recv().await, alice.recv().await];
    frames.sort();
    assert!(
        frames[0].starts_with(r#"42/pubsub,["message""#),
        "{frames:?}"
    );
    assert!(frames[1].starts_with("43/pubsub,2"), "{frames:?}");
    assert!(frames[1].contains(r#""delivered":2"#), "{frames:?}");
    assert!(bob.recv().await.starts_with(r#"42/pubsub,["message""#));
    // An event to one socket goes the same way (the test kit's `echo`
    // without an ack is a `socket.emit`).
    let (mut carol, _) = Client::connect(addr).await;
    carol.send(r#"42["echo",1]"#).await;
    assert!(carol.recv().await.starts_with(r#"42["echo",1,"#));
    let metrics = http(addr, "GET", "/metrics", &[], "").await.body;
    for (line, value) in [
        (
            "switchboard_events_sent_total{namespace=\"/\",event=\"echo\"}",
            1.0,
        ),
        (
            "switchboard_events_sent_total{namespace=\"/pubsub\",event=\"message\"}",
            2.0,
        ),
        (
            "switchboard_broadcast_fanout_count{namespace=\"/pubsub\"}",
            1.0,
        ),
        (
            "switchboard_broadcast_fanout_sum{namespace=\"/pubsub\"}",
            2.0,
        ),
    ] {
        assert_eq!(sample(&metrics, line), value, "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn without_redis_a_node_serves_its_sockets_counts_what_it_cannot_publish_and_is_degraded() {
    // Nothing listens on port 1: the bus never connects.
    let Some(_) = redis_url() else {
        return;
    };
    let Some((_, database)) = postgres_database().await else {
        return;
    };
    let server = start(&format!(
        "[store]\nurl = {database:?}\n\n[cluster]\nredis_url = \"redis://127.0.0.1:1\"\n\
         connect_timeout_ms = 100\npublish_queue = 2\n"
    ))
    .await;
    let addr = server.addr;
    let response = http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(response.status, 503, "{}", response.body);
    let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(json["status"], "degraded");
    assert_eq!(json["error"]["code"], "bus_unreachable");
    assert_eq!(json["cluster"]["subscribe"], "down");

    let (mut client, _) = Client::connect(addr).await;
    for n in 0..5 {
        client
            .emit(n, "broadcast", &format!(r#"{{"event":"news","data":{n}}}"#))
            .await;
        let mut frames = [client.recv().await, client.recv().await];
        frames.sort();
        assert_eq!(frames[0], format!(r#"42["news",{n}]"#));
    }
    // The queue holds two while the publisher waits to connect: the other
    // three were dropped, and counted.
    let stats = server.cluster().stats();
    assert_eq!(
        (stats.queued, stats.dropped_queue_full),
        (2, 3),
        "{stats:?}"
    );
    assert_eq!(stats.published, 0);
}

#[tokio::test]
async fn a_cluster_on_sqlite_refuses_to_start_and_says_why() {
    let err = try_start_raw(
        "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n\n[[namespaces]]\nname = \"/\"\nhandler = \"echo\"\n",
    )
    .await
    .err()
    .expect("a cluster on SQLite started");
    let message = format!("{err:#}");
    assert!(
        message.contains("cluster.redis_url: a cluster's nodes share one store"),
        "{message}"
    );
}

/// The ids of `sockets`, sorted.
fn ids(sockets: &[cluster::RemoteSocket]) -> Vec<String> {
    let mut ids: Vec<String> = sockets.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(names: &[&String]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    names.sort();
    names
}

fn in_rooms(rooms: &[&str]) -> socketio::BroadcastOptions {
    socketio::BroadcastOptions {
        rooms: rooms.iter().map(|r| socketio::Room::from(*r)).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_node_asks_the_others_about_their_sockets_and_hears_every_answer() {
    let Some(nodes) = start_cluster(2, "").await else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let (node_a, node_b) = (nodes[0].cluster(), nodes[1].cluster());
    let mut members = vec![
        Member::on(a, "a1").await,
        Member::on(b, "b1").await,
        Member::on(b, "b2").await,
    ];
    members[0].join("r1").await;
    members[1].join("r1").await;
    members[2].join("r2").await;
    let (a1, b1, b2) = (&members[0].sid, &members[1].sid, &members[2].sid);

    // The sockets of a room on every node: A's own, then B's answer.
    let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
    assert!(answer.is_complete(), "{answer:?}");
    assert_eq!((answer.asked, answer.answered), (Some(1), 1));
    assert_eq!(answer.answered_by, [node_b.uid()]);
    assert_eq!(ids(&answer.value), sorted(&[a1, b1]));
    let b1_seen = answer.value.iter().find(|s| &s.id == b1).unwrap();
    assert_eq!(b1_seen.rooms, [b1.as_str(), "r1"]);

    // Room sizes across nodes; a room nobody is in counts 0.
    let sizes = node_b
        .room_sizes("/", &["r1".into(), "r2".into(), "none".into()])
        .await;
    assert!(sizes.is_complete());
    let expected: Vec<(String, usize)> =
        vec![("none".into(), 0), ("r1".into(), 2), ("r2".into(), 1)];
    assert_eq!(sizes.value.into_iter().collect::<Vec<_>>(), expected);

    // Every room, the sockets' own ids included (as Node lists them).
    let rooms = node_a.all_rooms("/").await;
    assert!(rooms.is_complete());
    for room in ["r1", "r2", a1, b1, b2] {
        assert!(
            rooms.value.contains(room),
            "{room} not in {:?}",
            rooms.value
        );
    }

    // A signed-in socket is described with its user (Node's socket.data).
    let alice = Member::secure(b, "alice@b", "alice").await;
    let answer = node_a
        .fetch_sockets("/secure", &in_rooms(&["user:alice"]))
        .await;
    assert_eq!(ids(&answer.value), [alice.sid.as_str()]);
    assert_eq!(answer.value[0].data, serde_json::json!({"user": "alice"}));
    assert!(answer.value[0].handshake["auth"]["token"].is_string());

    // Join and leave from A reach B's sockets before A's next broadcast
    // (one queue, one connection, in order).
    node_a.sockets_join("/", &in_rooms(&["r2"]), &["r3".into()]);
    let got = round(&mut members, 0, 1, r#""rooms":["r3"]"#).await;
    assert_eq!(got, [("b2", 1)]);
    node_a.sockets_leave("/", &in_rooms(&["r3"]), &["r3".into()]);
    let got = round(&mut members, 0, 2, r#""rooms":["r3"]"#).await;
    assert_eq!(got, []);

    // Disconnecting the sockets of a room on every node.
    node_a.disconnect_sockets("/", &in_rooms(&["r1"]), false);
    for member in &mut members[..2] {
        assert_eq!(member.next_frame().await, "41", "{}", member.name);
    }
    let left = node_b.fetch_sockets("/", &in_rooms(&["r1"])).await;
    assert!(left.is_complete() && left.value.is_empty(), "{left:?}");
}

#[tokio::test]
async fn server_side_events_reach_the_other_nodes_and_their_acks_come_back() {
    let Some(nodes) = start_cluster(3, "").await else {
        return;
    };
    let [node_a, node_b, node_c] = [0, 1, 2].map(|i| nodes[i].cluster().clone());
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    for (node, name) in [(&node_b, "b"), (&node_c, "c")] {
        let heard = heard.clone();
        node.on_server_side_emit(move |event| {
            let text = format!(
                "{name}:{}:{}:{}",
                event.namespace,
                event.event,
                event.args.raw()
            );
            if let Some(reply) = event.reply {
                let value = serde_json::value::RawValue::from_string(format!("{name:?}")).unwrap();
                reply.send(&value);
            }
            heard.send(text).unwrap();
        });
    }
    let args = socketio::Args::from_parts(r#"1,{"x":"y"}"#.into(), vec![]);
    node_a.server_side_emit("/", "hello", &args);
    let mut got = vec![hearing.recv().await.unwrap(), hearing.recv().await.unwrap()];
    got.sort();
    assert_eq!(
        got,
        [r#"b:/:hello:1,{"x":"y"}"#, r#"c:/:hello:1,{"x":"y"}"#]
    );

    let answer = node_a.server_side_emit_with_ack("/", "ask", &args).await;
    assert!(answer.is_complete(), "{answer:?}");
    let mut acks: Vec<&str> = answer.value.iter().map(|v| v.get()).collect();
    acks.sort();
    assert_eq!(acks, [r#""b""#, r#""c""#]);
}

/// A connection subscribed to namespace `/`'s request channel that never
/// answers: a node that hangs (`redis-cli SUBSCRIBE`, killed on drop).
struct SilentNode(std::process::Child);

impl SilentNode {
    fn start(url: &str, prefix: &str) -> SilentNode {
        use std::io::BufRead;
        let mut child = std::process::Command::new("redis-cli")
            .args(["-u", url, "SUBSCRIBE", &format!("{prefix}-request#/#")])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-cli (installed with redis-server)");
        // `subscribe`, the channel, `1`: subscribed.
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let confirmation: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
        assert_eq!(confirmation[0], "subscribe", "{confirmation:?}");
        SilentNode(child)
    }
}

impl Drop for SilentNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_node_that_does_not_answer_makes_the_answer_partial_not_lost() {
    let Some(nodes) = start_cluster_with(2, "", "request_timeout_ms = 300").await else {
        return;
    };
    let (node_a, node_b) = (nodes[0].cluster(), nodes[1].cluster());
    let mut b1 = Member::on(nodes[1].addr, "b1").await;
    b1.join("r1").await;
    let _silent = SilentNode::start(&redis_url().unwrap(), node_a.key_prefix());

    let started = std::time::Instant::now();
    let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
    let waited = started.elapsed();
    // B's sockets are there; the answer says one node of two did not answer.
    assert_eq!(ids(&answer.value), [b1.sid.as_str()]);
    assert_eq!(
        (answer.asked, answer.answered, answer.unanswered()),
        (Some(2), 1, Some(1))
    );
    // A stand-in that never heartbeats is not a node it can name.
    assert!(answer.missing.is_empty(), "{answer:?}");
    assert_eq!(answer.answered_by, [node_b.uid()]);
    assert!(!answer.is_complete());
    assert!(
        waited >= std::time::Duration::from_millis(300) && waited < WAIT,
        "{waited:?}"
    );
    assert_eq!(node_a.stats().requests_incomplete, 1);
    let metrics = http(nodes[0].addr, "GET", "/metrics", &[], "").await.body;
    let line = "switchboard_cluster_requests_incomplete_total 1";
    assert!(metrics.contains(line), "{line} not in\n{metrics}");
}

/// A Redis server of this test's own, on a loopback port, that can be
/// killed and started again on the same port (the shared test Redis cannot
/// be: other tests use it). Killed on drop.
pub(crate) struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    /// Over TLS only (`--port 0`), with the certificate and key in `dir`.
    tls: bool,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub(crate) fn start() -> OwnRedis {
        let mut redis = OwnRedis::new(false);
        redis
            .spawn()
            .expect("redis-server (what TEST_REDIS_URL runs)");
        redis
    }

    /// A Redis that speaks TLS only, presenting `cert` (PEM, with its
    /// `key`); `Err` says why it did not start (a redis-server built
    /// without TLS refuses `--tls-port`).
    pub(crate) fn start_tls(cert: &str, key: &str) -> Result<OwnRedis, String> {
        let mut redis = OwnRedis::new(true);
        std::fs::write(redis.dir.join("redis.crt"), cert).unwrap();
        std::fs::write(redis.dir.join("redis.key"), key).unwrap();
        redis.spawn()?;
        Ok(redis)
    }

    fn new(tls: bool) -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("sb-own-redis-{}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        OwnRedis {
            port,
            dir,
            tls,
            child: None,
        }
    }

    /// Starts the server and returns once it says it accepts connections;
    /// `Err` with what it logged when it exits instead (its fatal
    /// configuration errors go to the test's stderr).
    fn spawn(&mut self) -> Result<(), String> {
        use std::io::BufRead;
        let port = self.port.to_string();
        let mut command = std::process::Command::new("redis-server");
        command.args(["--bind", "127.0.0.1"]);
        if self.tls {
            command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(self.dir.join("redis.crt"))
                .arg("--tls-key-file")
                .arg(self.dir.join("redis.key"));
        } else {
            command.args(["--port", &port]);
        }
        let mut child = command
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|err| format!("redis-server: {err}"))?;
        let stdout = child.stdout.take().unwrap();
        let (ready, is_ready) = std::sync::mpsc::channel();
        // Drained to the end on a thread: a full pipe would stop Redis.
        std::thread::spawn(move || {
            let mut said = String::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections") {
                    let _ = ready.send(Ok(()));
                }
                said.push_str(&line);
                said.push('\n');
            }
            // It exited (before getting ready, when nobody took the Ok).
            let _ = ready.send(Err(said));
        });
        let outcome = is_ready
            .recv_timeout(WAIT)
            .map_err(|_| "redis-server did not get ready".to_owned())
            .and_then(|outcome| outcome);
        if let Err(said) = outcome {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("redis-server did not start: {said}"));
        }
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: every connection drops at once.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The server's pid (to freeze it with SIGSTOP).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server running").id()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn after_redis_restarts_the_nodes_are_ready_again_and_broadcasts_cross() {
    if redis_url().is_none() {
        return;
    }
    let mut redis = OwnRedis::start();
    let Some(nodes) = start_cluster_on(2, "", &redis.url(), "reconnect_max_ms = 200").await else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let mut members = vec![Member::on(a, "a1").await, Member::on(b, "b1").await];
    members[1].join("r1").await;
    let got = round(&mut members, 0, 1, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("b1", 1)]);

    // Redis goes: both nodes say they are degraded, and why.
    redis.kill();
    for node in [a, b] {
        let body = until_readyz(node, 503).await;
        assert_eq!(body["status"], "degraded", "{body}");
        assert_eq!(body["error"]["code"], "bus_unreachable", "{body}");
    }
    // Their own sockets are still served.
    members[0].client.emit(7, "echo", r#""still here""#).await;
    assert_eq!(members[0].next_frame().await, r#"437["still here"]"#);

    // Redis comes back on the same port: both reconnect and resubscribe.
    redis.spawn().expect("redis-server restarts");
    for node in [a, b] {
        let body = until_readyz(node, 200).await;
        assert_eq!(body["cluster"]["subscribe"], "up", "{body}");
    }
    for node in &nodes {
        let stats = node.cluster().stats();
        assert!(stats.subscribe_reconnects >= 1, "{stats:?}");
        assert!(stats.publish_reconnects >= 1, "{stats:?}");
    }
    // Each node may have missed what the other published meanwhile: it
    // closes its clients' connections as a transport (no DISCONNECT), and
    // they come back (recovering what they can: this Redis lost its data).
    for member in &mut members {
        let frames = member.client.until_closed().await;
        assert!(!frames.iter().any(|f| f.starts_with("41")), "{frames:?}");
    }
    members = vec![Member::on(a, "a1").await, Member::on(b, "b1").await];
    members[1].join("r1").await;
    let got = round(&mut members, 0, 2, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("b1", 1)]);
    let got = round(&mut members, 1, 3, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("b1", 1)]);
    // Requests cross again too.
    let node_a = nodes[0].cluster();
    let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
    assert!(answer.is_complete(), "{answer:?}");
    assert_eq!(ids(&answer.value), [members[1].sid.as_str()]);
}

/// Waits until `cluster` knows `n` other nodes alive; returns them.
async fn until_nodes(cluster: &cluster::Cluster, n: usize) -> Vec<String> {
    tokio::time::timeout(WAIT, async {
        loop {
            let nodes = cluster.nodes();
            if nodes.len() == n {
                return nodes;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {n} nodes: {:?}", cluster.nodes()))
}

#[tokio::test]
async fn nodes_know_each_other_at_once_and_one_that_stops_cleanly_is_dropped_at_once() {
    // The default heartbeats (every 5 s, dead after 10 s): what happens
    // here within WAIT (5 s) is the nodes' own announcements.
    let Some(nodes) = start_cluster(3, "").await else {
        return;
    };
    let clusters: Vec<&cluster::Cluster> = nodes.iter().map(|n| n.cluster()).collect();
    for (i, cluster) in clusters.iter().enumerate() {
        let mut others: Vec<String> = (clusters.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| c.uid().to_owned())
            .collect();
        others.sort();
        assert_eq!(until_nodes(cluster, 2).await, others);
    }
    let metrics = http(nodes[0].addr, "GET", "/metrics", &[], "").await.body;
    assert!(metrics.contains("switchboard_cluster_nodes 3"), "{metrics}");

    clusters[2].close(std::time::Duration::from_secs(1)).await;
    for cluster in &clusters[..2] {
        assert!(
            !until_nodes(cluster, 1)
                .await
                .contains(&clusters[2].uid().to_owned())
        );
    }
}

#[tokio::test]
async fn a_frozen_node_is_named_and_not_waited_for_and_a_killed_one_is_dropped() {
    let Some(redis) = redis_url() else {
        return;
    };
    let keys = "heartbeat_interval_ms = 100\nheartbeat_timeout_ms = 300\nrequest_timeout_ms = 3000";
    let Some(sections) = cluster_sections_on(&redis, keys).await else {
        return;
    };
    let a = start(&sections).await;
    let node_a = a.cluster();
    assert!(node_a.wait_up(WAIT).await);
    // C: the real binary, another process of the same cluster.
    let c = crate::common::binary::Binary::spawn(
        &format!(
            "test_setup = true\n{sections}\n[[namespaces]]\nname = \"/\"\nhandler = \"testkit\"\n"
        ),
        |_, _| {},
    )
    .await;
    let c_uid = until_nodes(node_a, 1).await.remove(0);
    let mut c1 = Member::on(c.addr, "c1").await;
    c1.join("r1").await;
    let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
    assert!(answer.is_complete(), "{answer:?}");
    assert_eq!(ids(&answer.value), [c1.sid.as_str()]);

    // Frozen (SIGSTOP): its connections stay open, so Redis still counts
    // it, but its heartbeats stop. A request waits only until it is taken
    // for dead, not its whole timeout, and names it.
    signal(c.pid(), "STOP");
    until_stopped(c.pid()).await;
    let started = std::time::Instant::now();
    let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
    let waited = started.elapsed();
    assert_eq!((answer.asked, answer.answered), (Some(1), 0), "{answer:?}");
    assert_eq!(answer.missing, [c_uid.as_str()]);
    assert!(
        waited < std::time::Duration::from_millis(3000),
        "{waited:?}"
    );
    assert!(node_a.nodes().is_empty());
    // Known dead and still subscribed: the next request does not wait.
    let started = std::time::Instant::now();
    let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
    assert!(started.elapsed() < std::time::Duration::from_millis(1000));
    assert_eq!(answer.missing, [c_uid.as_str()]);

    // It thaws: heard again, answering again. Taken for dead meanwhile,
    // it closed its clients' connections as a transport close (no
    // DISCONNECT: a client reconnects by itself); one that reconnects is
    // found there.
    signal(c.pid(), "CONT");
    assert_eq!(until_nodes(node_a, 1).await, [c_uid.as_str()]);
    let frames = c1.client.until_closed().await;
    assert!(!frames.iter().any(|f| f.starts_with("41")), "{frames:?}");
    let mut c1 = Member::on(c.addr, "c1").await;
    c1.join("r1").await;
    let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
    assert!(answer.is_complete(), "{answer:?}");
    assert_eq!(ids(&answer.value), [c1.sid.as_str()]);

    // Killed (SIGKILL): its connections close, so Redis no longer counts
    // it and requests complete at once; it is dropped within about two
    // heartbeat intervals of silence.
    signal(c.pid(), "KILL");
    let killed = std::time::Instant::now();
    let answer = tokio::time::timeout(std::time::Duration::from_millis(1000), async {
        loop {
            let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
            if answer.asked == Some(0) {
                return answer;
            }
        }
    })
    .await
    .expect("Redis still counts the killed node");
    assert!(answer.value.is_empty());
    until_nodes(node_a, 0).await;
    assert!(
        killed.elapsed() < std::time::Duration::from_millis(1500),
        "{:?}",
        killed.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Connection state recovery across nodes: sessions and missed events in
// Redis, so a client comes back on another node, even after its node was
// killed.

/// The `[auth]` and `/secure` sections of a killable node of these tests
/// (the real binary; `start` gives the same to a node in this process).
const SECURE: &str = "test_setup = true\n[auth]\nhs256_secret = \"test-secret\"\n\n\
    [[namespaces]]\nname = \"/secure\"\nhandler = \"testkit\"\nauth = true\n";

/// `redis-cli` on the test Redis.
fn redis_cli(url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .output()
        .expect("redis-cli (installed with redis-server)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The key prefix that `sections` give the cluster.
fn key_prefix(sections: &str) -> String {
    let line = sections
        .lines()
        .find_map(|l| l.strip_prefix("key_prefix = "))
        .expect("a key prefix");
    line.trim_matches('"').to_owned()
}

/// Waits until the session of `pid` in Redis has `field` (its node writes
/// it off the socket's path; nothing here can be awaited but Redis).
async fn until_session_has(redis: &str, prefix: &str, pid: &str, field: &str) {
    let key = format!("{prefix}-session#{pid}");
    tokio::time::timeout(WAIT, async {
        while !redis_cli(redis, &["HKEYS", &key])
            .lines()
            .any(|l| l == field)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the session {key} never had {field}"));
}

/// Alice's socket on node A, killed (SIGKILL) after she received one
/// event: what she presents to come back, and B with Bob on it.
struct KilledNode {
    b: TestServer,
    bob: Client,
    sid: String,
    pid: String,
    offset: String,
}

impl KilledNode {
    /// Alice connects to B presenting her pid and last offset.
    async fn come_back(&self) -> (Client, String) {
        let auth = serde_json::json!({
            "token": token("alice", 600), "pid": self.pid, "offset": self.offset
        });
        connect_secure(self.b.addr, &auth.to_string()).await
    }

    /// Alice comes back when what she missed is gone: a fresh session. Her
    /// first attempt may be closed instead, before any answer, when the
    /// restore found her offset still held and the read right after found
    /// the packets trimmed (Bob's broadcasts were still being written to
    /// the log, as under load): the server then forgets her session, and
    /// the next attempt, with the same pid and offset as a client's
    /// reconnection sends, starts afresh.
    async fn come_back_fresh(&self) -> (Client, String) {
        let auth = serde_json::json!({
            "token": token("alice", 600), "pid": self.pid, "offset": self.offset
        });
        for _ in 0..2 {
            let mut client = Client::open(self.b.addr).await;
            client.send(&format!("40/secure,{auth}")).await;
            loop {
                match tokio::time::timeout(WAIT, client.ws.next()).await {
                    Ok(Some(Ok(Message::Text(reply)))) => return (client, reply.to_string()),
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                    Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => break,
                    other => panic!("no answer to the CONNECT: {other:?}"),
                }
            }
        }
        panic!("both attempts to come back were closed");
    }
}

/// Starts A (the real binary) and B (in this process) with `toml` each,
/// Alice on A in room `r`, Bob on B; Bob broadcasts `0` to `r`, Alice
/// receives it, her session is in Redis, and A is killed. `None` without
/// the test servers.
async fn killed_node(toml: &str) -> Option<KilledNode> {
    let redis = redis_url()?;
    let sections = cluster_sections_on(&redis, "").await?;
    let a =
        crate::common::binary::Binary::spawn(&format!("{SECURE}\n{toml}\n{sections}"), |_, _| {})
            .await;
    let b = start(&format!("{toml}\n{sections}")).await;
    let node_b = b.cluster();
    assert!(node_b.wait_up(WAIT).await);
    until_nodes(node_b, 1).await;

    let InRoom {
        alice,
        bob,
        sid,
        pid,
        offset,
    } = alice_in_room(a.addr, b.addr, &sections).await;
    // A dies without a word: nothing written at disconnection.
    signal(a.pid(), "KILL");
    drop(alice);
    Some(KilledNode {
        b,
        bob,
        sid,
        pid,
        offset,
    })
}

/// Alice on `/secure` of one node, in room `r`, and Bob on another.
pub(crate) struct InRoom {
    pub alice: Client,
    pub bob: Client,
    /// Alice's socket id and recovery pid.
    pub sid: String,
    pub pid: String,
    /// The offset of the last event she received.
    pub offset: String,
}

/// Alice connects to `a` and joins `r`, Bob connects to `b` and
/// broadcasts `0` there; Alice receives it, and her session in the Redis
/// of `sections` holds the room (so that she can be recovered in it).
pub(crate) async fn alice_in_room(
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    sections: &str,
) -> InRoom {
    use crate::recovery::{broadcast, event, ids, join};
    use serde_json::json;
    let (mut alice, reply) =
        connect_secure(a, &json!({"token": token("alice", 600)}).to_string()).await;
    let (sid, pid) = ids(&reply);
    join(&mut alice, "r").await;
    let (mut bob, _) = connect_secure(b, &json!({"token": token("bob", 600)}).to_string()).await;
    broadcast(&mut bob, "r", json!(0)).await;
    let (data, offset) = event(&alice.recv().await);
    assert_eq!(data, 0);
    let redis = redis_url().expect("the test Redis");
    until_session_has(&redis, &key_prefix(sections), &pid, "r:r").await;
    InRoom {
        alice,
        bob,
        sid,
        pid,
        offset,
    }
}

impl InRoom {
    /// Alice's connection closed by her node as a transport close (no
    /// DISCONNECT: her client would come back by itself), with what it
    /// delivered before; she comes back on `node` with the last offset she
    /// got: the same socket, every event of 1–3 she had not received,
    /// once, in order (0 she had), then 4 live.
    pub(crate) async fn closed_then_recovered_on(&mut self, node: std::net::SocketAddr) {
        use crate::recovery::{broadcast, event, ids};
        use serde_json::json;
        let frames = self.alice.until_closed().await;
        assert!(!frames.iter().any(|f| f.starts_with("41")), "{frames:?}");
        let mut received = vec![0];
        for frame in frames.iter().filter(|f| f.starts_with("42/secure,")) {
            let (data, at) = event(frame);
            received.push(data.as_i64().unwrap());
            self.offset = at;
        }
        let auth = json!({"token": token("alice", 600), "pid": self.pid, "offset": self.offset});
        let (alice, reply) = connect_secure(node, &auth.to_string()).await;
        self.alice = alice;
        assert_eq!(ids(&reply), (self.sid.clone(), self.pid.clone()));
        while received.len() < 4 {
            let (data, _) = event(&self.alice.recv().await);
            received.push(data.as_i64().unwrap());
        }
        assert_eq!(received, [0, 1, 2, 3]);
        broadcast(&mut self.bob, "r", json!(4)).await;
        assert_eq!(event(&self.alice.recv().await).0, 4);
    }
}

#[tokio::test]
async fn a_client_recovers_on_another_node_after_its_node_was_killed() {
    use crate::recovery::{broadcast, event, ids};
    use serde_json::json;
    let Some(mut killed) = killed_node("").await else {
        return;
    };
    // B goes on broadcasting to the room.
    for n in 1..=3 {
        broadcast(&mut killed.bob, "r", json!(n)).await;
    }

    // Alice comes back on B: the same socket, in her room, and what she
    // missed, in order, once.
    let (mut alice, reply) = killed.come_back().await;
    assert_eq!(ids(&reply), (killed.sid.clone(), killed.pid.clone()));
    let mut offsets = vec![killed.offset.clone()];
    for n in 1..=3 {
        let (data, offset) = event(&alice.recv().await);
        assert_eq!(data, n);
        offsets.push(offset);
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    // Live again: the next broadcast arrives once, and nothing before it.
    broadcast(&mut killed.bob, "r", json!(4)).await;
    assert_eq!(event(&alice.recv().await).0, 4);
    alice.emit_to("/secure", 5, "rooms", "").await;
    let rooms = alice.recv().await;
    assert!(rooms.starts_with("43/secure,5["), "{rooms}");
    assert!(rooms.contains("\"r\""), "{rooms}");
}

/// A Redis user of its own for one node (`ACL SETUSER`), so that the test
/// can keep that node from connecting again; the node's URL with it.
fn redis_user(url: &str) -> (String, String) {
    let user = format!("sbtest-{}", rand_suffix());
    let answer = redis_cli(
        url,
        &["ACL", "SETUSER", &user, "on", ">pw", "~*", "&*", "+@all"],
    );
    assert_eq!(answer.trim(), "OK", "{answer}");
    let with_user = url.replacen("redis://", &format!("redis://{user}:pw@"), 1);
    (user, with_user)
}

#[tokio::test]
async fn a_node_whose_subscription_was_cut_closes_its_clients_which_recover_what_was_published_meanwhile()
 {
    use crate::recovery::broadcast;
    use serde_json::json;
    let Some(redis) = redis_url() else {
        return;
    };
    let Some(sections) =
        cluster_sections_on(&redis, "reconnect_min_ms = 20\nreconnect_max_ms = 100").await
    else {
        return;
    };
    // B reaches Redis as a user of its own, which the test can turn off.
    let (user, b_url) = redis_user(&redis);
    let a = start(&sections).await;
    let b = start(&sections.replace(&format!("{redis:?}"), &format!("{b_url:?}"))).await;
    let (node_a, node_b) = (a.cluster(), b.cluster());
    assert!(node_b.wait_up(WAIT).await);
    until_nodes(node_a, 1).await;

    // Alice on B in room r, Bob on A; she received 0.
    let mut room = alice_in_room(b.addr, a.addr, &sections).await;

    // B's subscription is cut, and B cannot subscribe again: what A
    // publishes meanwhile never reaches B.
    redis_cli(&redis, &["ACL", "SETUSER", &user, "off"]);
    kill_connection(&redis, node_b.uid(), "subscribe");
    let published = node_a.stats().published;
    for n in 1..=3 {
        broadcast(&mut room.bob, "r", json!(n)).await;
    }
    tokio::time::timeout(WAIT, async {
        while node_a.stats().published < published + 3 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("A published the three broadcasts");
    assert!(
        !node_b.health().subscribe_up,
        "B subscribed again too soon: the gap is not covered"
    );

    // B subscribes again: it closes Alice's connection as a transport (no
    // DISCONNECT: her client comes back by itself), delivering nothing of
    // the gap; she comes back with her last offset, the same socket, and
    // gets 1–3, once, in order, then what follows.
    redis_cli(&redis, &["ACL", "SETUSER", &user, "on"]);
    room.closed_then_recovered_on(b.addr).await;
    assert_eq!(node_b.stats().rejoins, 1);
    redis_cli(&redis, &["ACL", "DELUSER", &user]);
}

#[tokio::test]
async fn a_client_whose_missed_events_are_gone_is_not_recovered_and_gets_none() {
    use crate::recovery::{broadcast, ids};
    use serde_json::json;
    // A log of a few hundred bytes: the oldest events go.
    let Some(mut killed) = killed_node("[socketio]\nrecovery_max_bytes = 400").await else {
        return;
    };
    for n in 1..=20 {
        broadcast(&mut killed.bob, "r", json!(n)).await;
    }

    let (mut alice, reply) = killed.come_back_fresh().await;
    let (sid, pid) = ids(&reply);
    assert_ne!(sid, killed.sid);
    assert_ne!(pid, killed.pid);
    // Nothing replayed, and not in the room: the next frame is the
    // answer to her own question.
    alice.emit_to("/secure", 5, "rooms", "").await;
    let rooms = alice.recv().await;
    assert!(rooms.starts_with("43/secure,5["), "{rooms}");
    assert!(!rooms.contains("\"r\""), "{rooms}");
}

/// How many connections hold the shard channel `channel` (`PUBSUB
/// SHARDNUMSUB`), once it is `n`: a node subscribes to a room's channel
/// off the join's path, so a test waits for Redis to say so.
async fn until_shard_subscribers(redis: &str, channel: &str, n: usize) {
    tokio::time::timeout(WAIT, async {
        loop {
            let out = redis_cli(redis, &["PUBSUB", "SHARDNUMSUB", channel]);
            if out
                .lines()
                .nth(1)
                .and_then(|l| l.trim().parse::<usize>().ok())
                == Some(n)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{channel} never had {n} subscribers"));
}

#[tokio::test]
async fn in_sharded_mode_room_broadcasts_reach_only_the_nodes_with_the_room_once() {
    let Some(nodes) = start_cluster_with(2, "", "pubsub = \"sharded\"").await else {
        return;
    };
    let redis = redis_url().unwrap();
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let (node_a, node_b) = (nodes[0].cluster(), nodes[1].cluster());
    let channel = |room: &str| format!("{}#/#{room}#", node_a.key_prefix());
    // ClusterAdapter's uids: sixteen hex digits.
    assert_eq!(node_a.uid().len(), 16);
    // Each node holds the namespace's channel.
    let namespace = format!("{}#/#", node_a.key_prefix());
    until_shard_subscribers(&redis, &namespace, 2).await;

    let mut members = vec![
        Member::on(a, "a1").await,
        Member::on(a, "a2").await,
        Member::on(b, "b1").await,
        Member::on(b, "b2").await,
    ];
    members[0].join("r1").await;
    members[2].join("r1").await;
    members[3].join("r2").await;
    // Dynamic mode: a room's channel is held by the nodes that have it.
    until_shard_subscribers(&redis, &channel("r1"), 2).await;
    until_shard_subscribers(&redis, &channel("r2"), 1).await;
    let (a1, b1) = (0, 2);

    // One room, either way, on its own channel.
    let got = round(&mut members, a1, 1, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("a1", 1), ("b1", 1)]);
    let got = round(&mut members, b1, 2, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("a1", 1), ("b1", 1)]);
    // A room only the other node has.
    let got = round(&mut members, a1, 3, r#""rooms":["r2"]"#).await;
    assert_eq!(got, [("b2", 1)]);
    // Two rooms, the namespace's channel: the union, once each.
    let got = round(&mut members, a1, 4, r#""rooms":["r1","r2"]"#).await;
    assert_eq!(got, [("a1", 1), ("b1", 1), ("b2", 1)]);
    let got = round(&mut members, b1, 5, r#""except":["r1"]"#).await;
    assert_eq!(got, [("a2", 1), ("b2", 1)]);
    // A socket id as the room (the namespace's channel, as Node sends it).
    let b2 = members[3].sid.clone();
    let got = round(&mut members, a1, 6, &format!(r#""rooms":[{b2:?}]"#)).await;
    assert_eq!(got, [("b2", 1)]);
    let published: u64 = [node_a, node_b].iter().map(|n| n.stats().published).sum();
    assert_eq!(published, 12, "6 broadcasts and 6 markers");

    // A request is answered: the sockets of a room on every node.
    let answer = node_a.fetch_sockets("/", &in_rooms(&["r1"])).await;
    assert!(answer.is_complete(), "{answer:?}");
    assert_eq!((answer.asked, answer.answered), (Some(1), 1));
    assert_eq!(answer.answered_by, [node_b.uid()]);
    let (a1_sid, b1_sid) = (&members[0].sid, &members[2].sid);
    assert_eq!(ids(&answer.value), sorted(&[a1_sid, b1_sid]));
    // Every room, through the same request.
    let rooms = node_b.all_rooms("/").await;
    assert!(rooms.is_complete());
    for room in ["r1", "r2", a1_sid, b1_sid] {
        assert!(
            rooms.value.contains(room),
            "{room} not in {:?}",
            rooms.value
        );
    }

    // socketsJoin from A reaches B's socket, and B takes the new room's
    // channel.
    node_a.sockets_join("/", &in_rooms(&["r2"]), &["r3".into()]);
    until_shard_subscribers(&redis, &channel("r3"), 1).await;
    let got = round(&mut members, a1, 7, r#""rooms":["r3"]"#).await;
    assert_eq!(got, [("b2", 1)]);
    // The last socket of a room gone (it left; it disconnected), its node
    // lets the channel go.
    node_a.sockets_leave("/", &in_rooms(&["r3"]), &["r3".into()]);
    until_shard_subscribers(&redis, &channel("r3"), 0).await;
    node_a.disconnect_sockets("/", &in_rooms(&["r2"]), false);
    assert_eq!(members[3].next_frame().await, "41");
    until_shard_subscribers(&redis, &channel("r2"), 0).await;
    until_shard_subscribers(&redis, &channel("r1"), 2).await;
}

#[tokio::test]
async fn in_sharded_mode_server_side_events_and_their_acks_cross() {
    let Some(nodes) = start_cluster_with(
        2,
        "",
        "pubsub = \"sharded\"\nsharded_subscription_mode = \"static\"",
    )
    .await
    else {
        return;
    };
    let (node_a, node_b) = (nodes[0].cluster(), nodes[1].cluster());
    let (heard, mut hear) = tokio::sync::mpsc::unbounded_channel();
    node_b.on_server_side_emit(move |event| {
        if let Some(reply) = event.reply {
            let value = serde_json::value::RawValue::from_string(r#""pong""#.into()).unwrap();
            reply.send(&value);
        }
        let _ = heard.send((event.event, event.args.raw().to_owned()));
    });
    node_a.server_side_emit(
        "/",
        "hello",
        &socketio::Args::from_parts("1".into(), vec![]),
    );
    assert_eq!(
        hear.recv().await.unwrap(),
        ("hello".to_owned(), "1".to_owned())
    );
    let answer = node_a
        .server_side_emit_with_ack("/", "ping", &socketio::Args::new())
        .await;
    assert!(answer.is_complete(), "{answer:?}");
    let acks: Vec<&str> = answer.value.iter().map(|v| v.get()).collect();
    assert_eq!(acks, [r#""pong""#]);
}

#[tokio::test]
async fn in_sharded_mode_a_dropped_subscription_comes_back_and_so_do_its_rooms_channels() {
    let Some(nodes) = start_cluster_with(2, "", "pubsub = \"sharded\"").await else {
        return;
    };
    let url = redis_url().unwrap();
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let node_b = nodes[1].cluster();
    let mut members = vec![Member::on(a, "a1").await, Member::on(b, "b1").await];
    members[1].join("r1").await;
    let room = format!("{}#/#r1#", node_b.key_prefix());
    until_shard_subscribers(&url, &room, 1).await;

    // B's subscription is cut: B opens it again, and closes its client's
    // connection as a transport (what was published meanwhile never
    // reached B; sharded mode has no recovery, so the client comes back as
    // a new socket and joins again). The room's channel comes back with it.
    kill_connection(&url, node_b.uid(), "subscribe");
    let frames = members[1].client.until_closed().await;
    assert!(!frames.iter().any(|f| f.starts_with("41")), "{frames:?}");
    until(node_b, |s| s.subscribe_reconnects == 1 && s.rejoins == 1).await;
    members[1] = Member::on(b, "b1").await;
    members[1].join("r1").await;
    until_shard_subscribers(&url, &room, 1).await;
    let got = round(&mut members, 0, 1, r#""rooms":["r1"]"#).await;
    assert_eq!(got, [("b1", 1)]);
}

#[tokio::test]
async fn a_subscriber_cut_by_the_pubsub_output_buffer_limit_is_noticed_and_its_clients_recover() {
    use crate::recovery::{broadcast, event, ids, join};
    use serde_json::json;
    if redis_url().is_none() {
        return;
    }
    // A Redis of its own: the limit applies to every subscriber of it.
    let redis = OwnRedis::start();
    let url = redis.url();
    let Some(sections) =
        cluster_sections_on(&url, "reconnect_min_ms = 20\nreconnect_max_ms = 100").await
    else {
        return;
    };
    let a = start(&sections).await;
    let b = start(&sections).await;
    let (node_a, node_b) = (a.cluster(), b.cluster());
    assert!(node_b.wait_up(WAIT).await);
    until_nodes(node_a, 1).await;
    // Alice on B in room r; Bob on A broadcasts 0 there.
    let (mut alice, reply) =
        connect_secure(b.addr, &json!({"token": token("alice", 600)}).to_string()).await;
    let (sid, pid) = ids(&reply);
    join(&mut alice, "r").await;
    let (mut bob, _) =
        connect_secure(a.addr, &json!({"token": token("bob", 600)}).to_string()).await;
    broadcast(&mut bob, "r", json!(0)).await;
    let (data, offset) = event(&alice.recv().await);
    assert_eq!(data, 0);
    let prefix = key_prefix(&sections);
    until_session_has(&url, &prefix, &pid, "r:r").await;

    // Redis lets a subscriber fall 1 KB behind, and 100 KB go out on the
    // namespace's channel at once: Redis closes the subscribers'
    // connections (`client-output-buffer-limit pubsub`), and whatever
    // else was published then is lost to them.
    let limit = ["CONFIG", "SET", "client-output-buffer-limit"];
    let answer = redis_cli(&url, &[&limit[..], &["pubsub 1024 0 0"]].concat());
    assert_eq!(answer.trim(), "OK", "{answer}");
    let cut = node_b.stats().subscribe_reconnects;
    let big = "x".repeat(100 * 1024);
    redis_cli(&url, &["PUBLISH", &format!("{prefix}#/secure#"), &big]);

    // B notices, subscribes again and tells its clients to resynchronize:
    // Alice's connection closes as a transport (no DISCONNECT).
    let frames = alice.until_closed().await;
    assert!(!frames.iter().any(|f| f.starts_with("41")), "{frames:?}");
    let answer = redis_cli(
        &url,
        &[&limit[..], &["pubsub 33554432 8388608 60"]].concat(),
    );
    assert_eq!(answer.trim(), "OK", "{answer}");
    assert!(node_b.stats().subscribe_reconnects > cut);
    assert!(node_b.stats().rejoins >= 1);

    // She comes back with her last offset: the same socket, in her room.
    let auth = json!({"token": token("alice", 600), "pid": pid, "offset": offset});
    let (mut alice, reply) = connect_secure(b.addr, &auth.to_string()).await;
    assert_eq!(ids(&reply), (sid, pid));
    alice.emit_to("/secure", 5, "rooms", "").await;
    let rooms = alice.recv().await;
    assert!(rooms.starts_with("43/secure,5["), "{rooms}");
    assert!(rooms.contains("\"r\""), "{rooms}");
}

#[tokio::test]
async fn an_idle_subscription_to_a_redis_gone_silent_is_noticed_by_its_probe() {
    if redis_url().is_none() {
        return;
    }
    // Redis frozen (SIGSTOP): its connections stay open and say nothing,
    // so only the node's PING on its idle subscription can tell.
    let redis = OwnRedis::start();
    // A PING unanswered for `command_timeout_ms` is a dead connection.
    let keys = "command_timeout_ms = 300\nconnect_timeout_ms = 300";
    let Some(nodes) = start_cluster_on(1, "", &redis.url(), keys).await else {
        return;
    };
    let node = nodes[0].addr;
    until_readyz(node, 200).await;
    signal(redis.pid(), "STOP");
    until_stopped(redis.pid()).await;
    let body = until_readyz(node, 503).await;
    assert_eq!(body["error"]["code"], "bus_unreachable", "{body}");
    // The publisher's heartbeat fails first; the subscription, which
    // receives nothing anyway, is found dead by its probe.
    let cluster = nodes[0].cluster();
    tokio::time::timeout(WAIT, async {
        while cluster.health().subscribe_up {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the subscription is found dead");
    signal(redis.pid(), "CONT");
    let body = until_readyz(node, 200).await;
    assert_eq!(body["cluster"]["subscribe"], "up", "{body}");
}
