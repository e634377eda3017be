//! The publish API over HTTP: keys, validation errors, publishing to users
//! and rooms, presence, room sizes, disconnects, the OpenAPI document.

use crate::common::*;

#[tokio::test]
async fn the_api_refuses_missing_keys_and_bad_input_with_json_errors() {
    let server = start("").await;
    let addr = server.addr;
    let body = r#"{"event":"x","users":["a"]}"#;
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("X-Api-Key", "test-ke")],
    ] {
        let response = http(addr, "POST", "/api/v1/publish", &headers, body).await;
        assert_eq!(response.status, 401);
        assert!(response.body.contains(r#""code":"unauthorized""#));
    }
    let cases = [
        ("{not json", 400, "invalid_json"),
        (r#"{"event":"x"}"#, 422, "invalid_request"),
        (r#"{"event":"","users":["a"]}"#, 422, "invalid_request"),
        (
            r#"{"event":"disconnect","users":["a"]}"#,
            422,
            "invalid_request",
        ),
        (
            r#"{"event":"x","users":["a"],"surprise":1}"#,
            422,
            "invalid_request",
        ),
        (r#"{"event":"x","users":"a"}"#, 422, "invalid_request"),
        (r#"{"event":"x","broadcast":true}"#, 422, "invalid_request"),
        (
            r#"{"event":"x","users":["a"],"namespace":"/nope"}"#,
            404,
            "unknown_namespace",
        ),
    ];
    for (body, status, code) in cases {
        let (got, json) = api(addr, "POST", "/api/v1/publish", body).await;
        assert_eq!(
            (got, json["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert_eq!(json["ok"], false);
    }
    let big = format!(
        r#"{{"event":"x","users":["a"],"data":"{}"}}"#,
        "z".repeat(3000)
    );
    let (status, json) = api(addr, "POST", "/api/v1/publish", &big).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    let (status, _) = api(addr, "GET", "/api/v1/publish", "").await;
    assert_eq!(status, 405);
    // X-Api-Key works too.
    let response = http(
        addr,
        "POST",
        "/api/v1/publish",
        &[("X-Api-Key", "test-key")],
        body,
    )
    .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn a_publish_to_a_user_reaches_every_socket_of_that_user_and_nobody_else() {
    let server = start("").await;
    let addr = server.addr;
    // Alice on two devices, each in two namespaces; Bob in one.
    let mut devices = Vec::new();
    for _ in 0..2 {
        let mut device = connect_pubsub(addr, "alice").await;
        device
            .send(&format!(
                r#"40/secure,{{"token":"{}"}}"#,
                token("alice", 60)
            ))
            .await;
        assert!(device.recv().await.starts_with("40/secure,{"));
        devices.push(device);
    }
    let mut bob = connect_pubsub(addr, "bob").await;
    let (status, json) = api(
        addr,
        "POST",
        "/api/v1/publish",
        r#"{"event":"notification","users":["alice"],"data":{"n":1}}"#,
    )
    .await;
    assert_eq!((status, json["delivered"].as_u64()), (200, Some(4)));
    for device in &mut devices {
        let mut got = vec![
            without_offset(device.recv().await),
            without_offset(device.recv().await),
        ];
        got.sort();
        assert_eq!(
            got,
            [
                r#"42/pubsub,["notification",{"n":1}]"#,
                r#"42/secure,["notification",{"n":1}]"#
            ]
        );
    }
    // Bob got nothing: the next thing he sees is the answer to his own event.
    bob.emit_to("/pubsub", 5, "subscribe", r#""topic:x""#).await;
    assert_eq!(
        bob.recv().await,
        r#"43/pubsub,5[{"ok":true,"room":"topic:x","rooms":["topic:x"]}]"#
    );
}

#[tokio::test]
async fn the_api_publishes_to_rooms_counts_them_and_disconnects_users() {
    let server = start("").await;
    let addr = server.addr;
    let mut alice = news_subscriber(addr, "alice").await;
    let (status, json) = api(
        addr,
        "GET",
        "/api/v1/rooms/topic%3Anews?namespace=%2Fpubsub",
        "",
    )
    .await;
    assert_eq!((status, json["sockets"].as_u64()), (200, Some(1)));
    let (_, json) = api(
        addr,
        "POST",
        "/api/v1/publish",
        r#"{"event":"message","rooms":["topic:news"],"namespace":"/pubsub","data":"hi"}"#,
    )
    .await;
    assert_eq!(json["delivered"], 1);
    assert_eq!(
        without_offset(alice.recv().await),
        r#"42/pubsub,["message",{"data":"hi","room":"topic:news"}]"#
    );
    let (_, json) = api(addr, "POST", "/api/v1/disconnect", r#"{"user":"alice"}"#).await;
    assert_eq!(json["disconnected"], 1);
    assert_eq!(alice.recv().await, "41/pubsub,");
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let server = start("").await;
    let response = http(server.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    assert_eq!(response.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/publish",
        "/api/v1/disconnect",
        "/api/v1/rooms/{room}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_event_contract_is_served_without_a_key_and_the_openapi_document_points_to_it() {
    let server = start("").await;
    let response = http(server.addr, "GET", "/api/v1/events.schema.json", &[], "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "application/json");
    let doc: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        doc["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    // What docs/events.schema.json holds (a lib test keeps that current).
    let committed = include_str!("../../../docs/events.schema.json");
    assert_eq!(response.body, committed);
    let message = &doc["components"]["chat"]["client"]["message"];
    assert_eq!(message["payload"]["$ref"], "#/$defs/SendMessage");
    assert_eq!(message["ack"]["$ref"], "#/$defs/Sent");
    assert!(doc["components"]["calls"]["server"]["call:ringing"]["payload"].is_object());
    assert!(doc["$defs"]["ErrorCode"]["enum"].is_array());

    let openapi = http(server.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    let openapi: serde_json::Value = serde_json::from_str(&openapi.body).unwrap();
    let entry = &openapi["paths"]["/api/v1/events.schema.json"]["get"];
    assert!(entry["responses"]["200"].is_object(), "{openapi}");
}

#[tokio::test]
async fn the_api_reports_presence_and_the_sockets_of_a_user_in_every_namespace() {
    let server = start("").await;
    let addr = server.addr;
    let _phone = connect_pubsub(addr, "alice").await;
    let _laptop = connect_pubsub(addr, "alice").await;
    let (status, json) = api(addr, "GET", "/api/v1/presence?user=alice&user=bob", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        json["presence"]["alice"],
        // Online is the /presence component's verdict (this server has no
        // /presence namespace); sockets counts every namespace.
        serde_json::json!({"online": false, "sockets": 2, "status": "offline", "devices": 0, "last_seen": null})
    );
    assert_eq!(
        json["presence"]["bob"],
        serde_json::json!({"online": false, "sockets": 0, "status": "offline", "devices": 0, "last_seen": null})
    );
    let (status, json) = api(addr, "GET", "/api/v1/presence", "").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (422, Some("invalid_request"))
    );
    // Operators see the API's answers by status.
    let metrics = http(addr, "GET", "/metrics", &[], "").await;
    assert!(
        metrics
            .body
            .contains("switchboard_api_requests_total{status=\"200\"} 1\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("switchboard_api_requests_total{status=\"422\"} 1\n"),
        "{}",
        metrics.body
    );
}

/// The document states what the handlers check, with this hub's own
/// namespaces and `[notifications]` bounds: the simplest request of every
/// shape it gives a publish is accepted, and the bounds are there
/// (schemathesis explores the rest: tests/schemathesis).
#[tokio::test]
async fn the_openapi_document_states_the_constraints_the_api_checks() {
    let server = start_raw(
        r#"
[auth]
hs256_secret = "test-secret"
[api]
keys = ["test-key"]
[notifications]
max_user_id_bytes = 100
max_users_per_request = 50
[[namespaces]]
name = "/"
handler = "echo"
[[namespaces]]
name = "/notifications"
handler = "notifications"
auth = true
[[namespaces]]
name = "/chat"
handler = "chat"
auth = true
[[namespaces]]
name = "/pubsub"
handler = "pubsub"
auth = true
"#,
    )
    .await;
    let addr = server.addr;
    let response = http(addr, "GET", "/api/v1/openapi.json", &[], "").await;
    let doc: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    let schemas = &doc["components"]["schemas"];

    let shapes = schemas["PublishRequest"]["anyOf"].as_array().unwrap();
    assert_eq!(shapes.len(), 5, "{shapes:#?}");
    for shape in shapes {
        let title = shape["title"].as_str().unwrap();
        // Never a component's namespace, but /notifications with persist.
        let namespaces = shape["properties"]["namespace"]["enum"].as_array().unwrap();
        assert!(namespaces.contains(&"/pubsub".into()), "{title}");
        assert!(!namespaces.contains(&"/chat".into()), "{title}");
        assert_eq!(
            namespaces.contains(&"/notifications".into()),
            title.contains("notification"),
            "{title}"
        );
        let body = simplest(shape);
        let (status, json) = api(addr, "POST", "/api/v1/publish", &body.to_string()).await;
        assert_eq!(status, 200, "{title}: {body} → {json}");
    }

    let notification = &schemas["NotificationRequest"]["properties"];
    assert_eq!(notification["users"]["maxItems"], 50);
    assert_eq!(notification["users"]["items"]["minLength"], 1);
    assert_eq!(notification["users"]["items"]["maxLength"], 100);
    let (status, json) = api(
        addr,
        "POST",
        "/api/v1/notifications",
        &serde_json::json!({"users": ["a".repeat(101)], "type": "t", "title": "t"}).to_string(),
    )
    .await;
    assert_eq!(status, 422, "{json}");

    let presence = &doc["paths"]["/api/v1/presence"]["get"]["parameters"][0];
    assert_eq!(presence["name"], "user");
    assert_eq!(presence["schema"]["minItems"], 1);
    assert_eq!(
        presence["schema"]["maxItems"],
        hub::backend_api::MAX_PRESENCE_USERS
    );
    assert_eq!(presence["schema"]["items"]["minLength"], 1);
}

/// The simplest object `shape` (an object schema) describes: its required
/// properties, each with its first allowed value or a short one.
fn simplest(shape: &serde_json::Value) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    for name in shape["required"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let property = &shape["properties"][name];
        let value = match (&property["enum"], &property["type"]) {
            (serde_json::Value::Array(allowed), _) => allowed[0].clone(),
            (_, t) if t == "array" => serde_json::json!(["alice"]),
            (_, t) if t == "boolean" => serde_json::json!(true),
            _ => serde_json::json!("x"),
        };
        body.insert(name.to_owned(), value);
    }
    body.into()
}
