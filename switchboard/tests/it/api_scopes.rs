//! API keys have scopes (`publish`, `disconnect`, `read`): a key without
//! the scope an endpoint needs gets 403 `forbidden` with a JSON body, a
//! plain key may do everything, and an empty key stops the start.

use crate::common::*;
use switchboard::config::Config;

const KEYS: &str = r#"
[api]
keys = [
  "all-key",
  { key = "publisher", scopes = ["publish"] },
  { key = "reader", scopes = ["read"] },
  { key = "bouncer", scopes = ["disconnect", "read"] },
]

[[namespaces]]
name = "/"
handler = "echo"
"#;

async fn call(
    addr: std::net::SocketAddr,
    key: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {key}");
    let response = http(
        addr,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(
        response.headers["content-type"], "application/json",
        "{}",
        response.body
    );
    (
        response.status,
        serde_json::from_str(&response.body).unwrap(),
    )
}

const PUBLISH: (&str, &str, &str) = ("POST", "/api/v1/publish", r#"{"event":"x","users":["a"]}"#);
const DISCONNECT: (&str, &str, &str) = ("POST", "/api/v1/disconnect", r#"{"user":"a"}"#);
const PRESENCE: (&str, &str, &str) = ("GET", "/api/v1/presence?user=a", "");
const ROOM: (&str, &str, &str) = ("GET", "/api/v1/rooms/r", "");

#[tokio::test]
async fn a_key_may_call_only_the_endpoints_its_scopes_allow() {
    let server = start_raw(KEYS).await;
    let cases = [
        ("all-key", [200, 200, 200, 200]),
        ("publisher", [200, 403, 403, 403]),
        ("reader", [403, 403, 200, 200]),
        ("bouncer", [403, 200, 200, 200]),
    ];
    for (key, expected) in cases {
        for ((method, path, body), status) in [PUBLISH, DISCONNECT, PRESENCE, ROOM]
            .into_iter()
            .zip(expected)
        {
            let (got, json) = call(server.addr, key, method, path, body).await;
            assert_eq!(got, status, "{key} {method} {path}: {json}");
            if status == 403 {
                assert_eq!(json["ok"], false);
                assert_eq!(json["error"]["code"], "forbidden", "{json}");
                assert!(json["error"]["message"].as_str().unwrap().contains("scope"));
            }
        }
    }
    // A wrong key is still 401, and a missing scope is decided before the
    // body is read: an invalid body from a key without the scope is 403.
    let (status, _) = call(server.addr, "nobody", "POST", "/api/v1/publish", "{").await;
    assert_eq!(status, 401);
    let (status, json) = call(server.addr, "reader", "POST", "/api/v1/publish", "{").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
}

#[tokio::test]
async fn the_openapi_document_lists_the_403_answers() {
    let server = start_raw(KEYS).await;
    let response = http(server.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    let doc: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    for (path, method) in [
        ("/api/v1/publish", "post"),
        ("/api/v1/disconnect", "post"),
        ("/api/v1/presence", "get"),
        ("/api/v1/rooms/{room}", "get"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"]["403"].is_object(),
            "{method} {path} has no 403"
        );
    }
}

fn load(toml: &str) -> anyhow::Result<Config> {
    let (dir, _cleanup) = temp_dir("sb-keys");
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).unwrap();
    Ok(Config::load(Some(&path), Vec::new())?)
}

#[tokio::test]
async fn empty_keys_and_unknown_scopes_are_refused_at_load() {
    for (toml, needle) in [
        ("[api]\nkeys = [\"\"]\n", "empty"),
        ("[api]\nkeys = [\"ok\", \"  \"]\n", "empty"),
        ("[[api.keys]]\nkey = \"\"\nscopes = [\"read\"]\n", "empty"),
        (
            "[[api.keys]]\nkey = \"k\"\nscopes = [\"write\"]\n",
            "unknown scope",
        ),
        ("[[api.keys]]\nkey = \"k\"\nscopes = []\n", "without scopes"),
    ] {
        let err = load(toml)
            .err()
            .unwrap_or_else(|| panic!("{toml} was accepted"));
        let message = format!("{err:#}");
        assert!(message.contains(needle), "{toml}: {message}");
    }
    // Array-of-tables and environment overrides work too.
    let config = load("[[api.keys]]\nkey = \"k\"\nscopes = [\"publish\", \"read\"]\n").unwrap();
    assert_eq!(config.api.keys.len(), 1);
    let err = Config::load(
        None,
        vec![("SWITCHBOARD_API_KEYS".to_owned(), "a,".to_owned())],
    );
    assert!(err.is_ok(), "a trailing comma is not a key");
    assert!(
        Config::load(
            None,
            vec![("SWITCHBOARD_API_KEYS".to_owned(), r#"["a", ""]"#.to_owned())]
        )
        .is_err()
    );
}
