//! The ESN components as a deployment gets them: the default configuration
//! serves `/notifications`, `/chat`, `/presence` and `/calls` to signed-in
//! users, and the notifications service reaches every device of a user.

use crate::common::{Client, start_raw, token, without_offset};
use hub::services::notifications::NewNotification;
use serde_json::{Value, json};

const SECRET: &str = "[auth]\nhs256_secret = \"test-secret\"\n";

/// Opens a connection and CONNECTs to `nsp` with `user`'s token; returns
/// the reply packet.
async fn connect_as(addr: std::net::SocketAddr, nsp: &str, user: &str) -> (Client, String) {
    let mut client = Client::open(addr).await;
    client
        .send(&format!(r#"40{nsp},{{"token":"{}"}}"#, token(user, 60)))
        .await;
    let reply = client.recv().await;
    (client, reply)
}

#[tokio::test]
async fn the_default_configuration_serves_the_four_components_to_signed_in_users() {
    let server = start_raw(SECRET).await;
    for nsp in ["/notifications", "/chat", "/presence", "/calls"] {
        let mut anonymous = Client::open(server.addr).await;
        anonymous.send(&format!("40{nsp},")).await;
        let refused = anonymous.recv().await;
        assert!(
            refused.starts_with(&format!("44{nsp},")),
            "{nsp}: {refused}"
        );

        let (_client, reply) = connect_as(server.addr, nsp, "alice").await;
        assert!(reply.starts_with(&format!("40{nsp},{{")), "{nsp}: {reply}");
    }
}

#[tokio::test]
async fn a_notification_reaches_every_device_of_its_user_with_the_unread_count() {
    let server = start_raw(SECRET).await;
    let (mut phone, _) = connect_as(server.addr, "/notifications", "alice").await;
    let (mut laptop, _) = connect_as(server.addr, "/notifications", "alice").await;
    let (mut other, _) = connect_as(server.addr, "/notifications", "bob").await;
    // Each device is told its unread count once connected.
    for device in [&mut phone, &mut laptop, &mut other] {
        let packet = without_offset(device.recv().await);
        assert_eq!(packet, r#"42/notifications,["unread",{"count":0}]"#);
    }
    let new = NewNotification {
        kind: "test".to_owned(),
        title: "Hello".to_owned(),
        body: "world".to_owned(),
        data: json!({"n": 1}),
    };
    let created = server
        .app
        .hub
        .ctx
        .notifications
        .create(&["alice".to_owned()], &new)
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    for device in [&mut phone, &mut laptop] {
        let packet = device.recv().await;
        let payload = packet
            .strip_prefix("42/notifications,")
            .unwrap_or_else(|| panic!("{packet}"));
        let value: Value = serde_json::from_str(payload).unwrap();
        assert_eq!(value[0], "notification");
        assert_eq!(value[1]["unread"], 1);
        assert_eq!(value[1]["notification"]["title"], "Hello");
        assert_eq!(value[1]["notification"]["type"], "test");
        assert_eq!(value[1]["notification"]["read"], false);
    }
    // Bob is told nothing: his next packet is the answer to his own event.
    other.emit_to("/notifications", 1, "nope", "").await;
    let reply = other.recv().await;
    assert!(reply.starts_with("43/notifications,1"), "{reply}");
    assert!(reply.contains("unknown_event"), "{reply}");
}
