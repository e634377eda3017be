//! Connection state recovery through the hub's authentication, over the
//! wire: a session is restored only for its own user, whose token is
//! verified again (an expired one restores nothing and leaves the session
//! for a fresh token); the missed events come after the CONNECT reply, in
//! order, once.

use serde_json::{Value, json};

use crate::common::{Client, TestServer, WAIT, connect_secure, http, sample, start, token};

/// The `sid` and `pid` of a `/secure` CONNECT reply.
pub(crate) fn ids(reply: &str) -> (String, String) {
    let json: Value = serde_json::from_str(
        reply
            .strip_prefix("40/secure,")
            .unwrap_or_else(|| panic!("{reply}")),
    )
    .unwrap();
    (
        json["sid"].as_str().unwrap().to_owned(),
        json["pid"]
            .as_str()
            .unwrap_or_else(|| panic!("{reply}"))
            .to_owned(),
    )
}

/// An event of `/secure`: its first argument and its last (the offset).
pub(crate) fn event(frame: &str) -> (Value, String) {
    let args: Vec<Value> = serde_json::from_str(
        frame
            .strip_prefix("42/secure,")
            .unwrap_or_else(|| panic!("{frame}")),
    )
    .unwrap();
    (
        args[1].clone(),
        args.last().unwrap().as_str().unwrap().to_owned(),
    )
}

async fn connect(addr: std::net::SocketAddr, auth: Value) -> (Client, String) {
    connect_secure(addr, &auth.to_string()).await
}

/// `client` joins `room` in `/secure`.
pub(crate) async fn join(client: &mut Client, room: &str) {
    client
        .emit_to("/secure", 1, "join", &json!(room).to_string())
        .await;
    assert_eq!(client.recv().await, r#"43/secure,1[{"ok":true}]"#);
}

/// `client` broadcasts `news` with `data` to `room` in `/secure`.
pub(crate) async fn broadcast(client: &mut Client, room: &str, data: Value) {
    let args = json!({"event": "news", "rooms": [room], "data": data}).to_string();
    client.emit_to("/secure", 2, "broadcast", &args).await;
    let ack = client.recv().await;
    assert!(ack.starts_with("43/secure,2["), "{ack}");
}

#[tokio::test]
async fn a_session_is_restored_for_its_user_only_with_what_they_missed() {
    let server = start("").await;
    let addr = server.addr;
    let (mut alice, reply) = connect(addr, json!({"token": token("alice", 600)})).await;
    let (sid, pid) = ids(&reply);
    join(&mut alice, "r").await;
    let (mut bob, _) = connect(addr, json!({"token": token("bob", 600)})).await;
    broadcast(&mut bob, "r", json!(0)).await;
    let (data, offset) = event(&alice.recv().await);
    assert_eq!(data, 0);

    drop(alice);
    // Once the socket is gone from its namespace, its session is kept.
    gone(&server, &sid).await;
    let metrics = http(addr, "GET", "/metrics", &[], "").await.body;
    assert_eq!(sample(&metrics, "switchboard_recovery_sessions"), 1.0);
    assert!(sample(&metrics, "switchboard_recovery_bytes") > 0.0);
    broadcast(&mut bob, "r", json!(1)).await;
    broadcast(&mut bob, "r", json!(2)).await;

    // Another user presenting alice's pid gets a socket of their own.
    let (_mallory, reply) = connect(
        addr,
        json!({"token": token("mallory", 600), "pid": pid, "offset": offset}),
    )
    .await;
    let (other, other_pid) = ids(&reply);
    assert_ne!(other, sid);
    assert_ne!(other_pid, pid);

    // So does alice with an expired token: refused, nothing restored.
    let expired =
        hub::identity::issue_until("test-secret", "alice", hub::identity::now_secs() - 10).unwrap();
    let (_, reply) = connect(
        addr,
        json!({"token": expired, "pid": pid, "offset": offset}),
    )
    .await;
    assert!(reply.starts_with("44/secure,"), "{reply}");
    assert!(reply.contains("token_expired"), "{reply}");

    // Alice with a valid token: the same socket, then what she missed.
    let (mut alice, reply) = connect(
        addr,
        json!({"token": token("alice", 600), "pid": pid, "offset": offset}),
    )
    .await;
    assert_eq!(ids(&reply), (sid.clone(), pid.clone()));
    assert_eq!(event(&alice.recv().await).0, 1);
    assert_eq!(event(&alice.recv().await).0, 2);
    // Back in her room, live: the next broadcast arrives once.
    broadcast(&mut bob, "r", json!(3)).await;
    assert_eq!(event(&alice.recv().await).0, 3);
    alice.emit_to("/secure", 5, "rooms", "").await;
    let rooms = alice.recv().await;
    assert!(
        rooms.contains("\"r\"") && rooms.contains("user:alice"),
        "{rooms}"
    );
    // Mallory's attempt counts as not recovered; alice's as recovered.
    let metrics = http(addr, "GET", "/metrics", &[], "").await.body;
    let outcome = |outcome: &str| {
        let line =
            format!("switchboard_recoveries_total{{namespace=\"/secure\",outcome=\"{outcome}\"}}");
        sample(&metrics, &line)
    };
    assert_eq!((outcome("recovered"), outcome("not_recovered")), (1.0, 1.0));
    assert_eq!(sample(&metrics, "switchboard_recovery_sessions"), 0.0);
}

/// Waits until socket `sid` of `/secure` has left its namespace.
async fn gone(server: &TestServer, sid: &str) {
    let ns = server.app.io.of("/secure").unwrap();
    let id = socketio::SocketId::parse(sid).unwrap();
    tokio::time::timeout(WAIT, async {
        while ns.get(&id).is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("socket {sid} still connected"));
}

#[test]
fn without_offset_strips_the_offset_argument_only() {
    use crate::common::without_offset;
    let strip = |s: &str| without_offset(s.to_owned());
    assert_eq!(strip(r#"42/a,["e",{"n":1},"17"]"#), r#"42/a,["e",{"n":1}]"#);
    assert_eq!(strip(r#"42["e","3"]"#), r#"42["e"]"#);
    assert_eq!(strip(r#"42["e","text"]"#), r#"42["e","text"]"#);
    assert_eq!(strip(r#"42["e",""]"#), r#"42["e",""]"#);
    assert_eq!(strip(r#"43/a,1["5"]"#), r#"43/a,1["5"]"#);
}
