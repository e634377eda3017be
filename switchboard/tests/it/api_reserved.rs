//! The publish API does not speak for the hub's components: a backend with
//! the `publish` scope cannot put a `message` into `/chat`, a
//! `notification` into `/notifications` or a `call:ringing` into `/calls`
//! (what users' devices trust to come from the component). Naming such a
//! namespace is refused with a JSON 403 (`reserved_namespace`); a publish
//! naming none skips them; `persist` and `POST /api/v1/notifications` stay
//! the way to notify.

use crate::common::{Client, api, http, start_raw, token};

const SERVER: &str = "[auth]\nhs256_secret = \"test-secret\"\n[api]\nkeys = [\"test-key\"]\n\
                      [store]\ntimeout_ms = 30000\n";

#[tokio::test]
async fn a_publish_into_a_components_namespace_is_refused() {
    let server = start_raw(SERVER).await;
    // Alice is on /chat (and nowhere else).
    let mut alice = Client::open(server.addr).await;
    alice
        .send(&format!(r#"40/chat,{{"token":"{}"}}"#, token("alice", 60)))
        .await;
    let reply = alice.recv().await;
    assert!(reply.starts_with("40/chat,{"), "{reply}");

    for (namespace, event) in [
        ("/chat", "message"),
        ("/notifications", "notification"),
        ("/calls", "call:ringing"),
        ("/presence", "presence"),
    ] {
        let body = format!(
            r#"{{"event":"{event}","users":["alice"],"namespace":"{namespace}","data":{{"text":"spoofed"}}}}"#
        );
        let (status, json) = api(server.addr, "POST", "/api/v1/publish", &body).await;
        assert_eq!(status, 403, "{namespace}: {json}");
        assert_eq!(json["ok"], false);
        assert_eq!(json["error"]["code"], "reserved_namespace", "{json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(namespace),
            "{json}"
        );
    }
    // A broadcast into one is refused too.
    let (status, json) = api(
        server.addr,
        "POST",
        "/api/v1/publish",
        r#"{"event":"message","broadcast":true,"namespace":"/chat","data":{}}"#,
    )
    .await;
    assert_eq!(
        (status, &json["error"]["code"]),
        (403, &"reserved_namespace".into())
    );

    // Naming no namespace reaches every namespace but the components'.
    let (status, json) = api(
        server.addr,
        "POST",
        "/api/v1/publish",
        r#"{"event":"message","users":["alice"],"data":{"text":"spoofed"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["delivered"], 0, "not into /chat: {json}");

    // The sanctioned way to notify still works, naming /notifications.
    let (status, json) = api(
        server.addr,
        "POST",
        "/api/v1/publish",
        r#"{"event":"invoice","users":["alice"],"namespace":"/notifications","persist":true,"title":"Paid"}"#,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["stored"], 1, "{json}");

    // Alice's /chat socket got none of it: the next packet is the answer
    // to a probe.
    alice.emit_to("/chat", 1, "nothing", "{}").await;
    let packet = alice.recv().await;
    assert!(packet.starts_with("43/chat,1["), "{packet}");

    // The refusal is in the OpenAPI document.
    let response = http(server.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    let doc: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    let forbidden = &doc["paths"]["/api/v1/publish"]["post"]["responses"]["403"]["description"];
    assert!(
        forbidden.as_str().unwrap().contains("reserved_namespace"),
        "{forbidden}"
    );
}
