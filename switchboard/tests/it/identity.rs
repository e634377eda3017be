//! Identity over the wire: tokens accepted and refused (each code), the
//! handshake query, refresh, expiry, the development secret.

use std::time::Duration;

use switchboard::config::Config;
use switchboard::server::{self, App};

use crate::common::*;

#[tokio::test]
async fn a_valid_token_admits_the_user_into_their_room() {
    let server = start("").await;
    let (mut client, reply) = connect_secure(
        server.addr,
        &format!(r#"{{"token":"{}"}}"#, token("alice", 60)),
    )
    .await;
    assert!(reply.starts_with("40/secure,{\"sid\""), "{reply}");
    client.emit_to("/secure", 1, "rooms", "").await;
    assert_eq!(client.recv().await, r#"43/secure,1[["user:alice"]]"#);
}

#[tokio::test]
async fn a_token_in_the_handshake_query_works_for_legacy_clients() {
    let server = start("").await;
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&token={}",
        server.addr,
        token("bob", 60)
    );
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut client = Client {
        ws,
        engine_sid: String::new(),
    };
    assert!(next_text(&mut client.ws).await.starts_with('0'));
    client.send("40/secure,").await;
    assert!(client.recv().await.starts_with("40/secure,{"));
}

#[tokio::test]
async fn missing_invalid_and_expired_tokens_are_refused_with_their_code() {
    let server = start("").await;
    let expired = expired_token();
    let forged = hub::identity::issue("not-the-secret", "alice", Duration::from_secs(60)).unwrap();
    for (auth, code) in [
        ("".to_owned(), "missing_token"),
        (r#"{"token":"garbage"}"#.to_owned(), "invalid_token"),
        (format!(r#"{{"token":"{forged}"}}"#), "invalid_token"),
        (format!(r#"{{"token":"{expired}"}}"#), "token_expired"),
    ] {
        let (_client, reply) = connect_secure(server.addr, &auth).await;
        let body: serde_json::Value = serde_json::from_str(
            reply
                .strip_prefix("44/secure,")
                .unwrap_or_else(|| panic!("{reply}")),
        )
        .unwrap();
        assert_eq!(body["message"], "unauthorized");
        assert_eq!(body["data"]["code"], code, "{auth}");
    }
}

/// A token signed with the test secret whose `exp` has passed.
fn expired_token() -> String {
    hub::identity::issue_until("test-secret", "alice", hub::identity::now_secs() - 10).unwrap()
}

#[tokio::test]
async fn refresh_extends_the_socket_and_only_for_the_same_user() {
    let server = start("").await;
    let (mut client, _) = connect_secure(
        server.addr,
        &format!(r#"{{"token":"{}"}}"#, token("alice", 60)),
    )
    .await;
    client
        .emit_to(
            "/secure",
            1,
            "refresh",
            &format!(r#"{{"token":"{}"}}"#, token("alice", 3600)),
        )
        .await;
    let reply = client.recv().await;
    assert!(
        reply.starts_with(r#"43/secure,1[{"expires_at":"#) && reply.contains(r#""ok":true"#),
        "{reply}"
    );
    client
        .emit_to(
            "/secure",
            2,
            "refresh",
            &format!(r#"{{"token":"{}"}}"#, token("mallory", 3600)),
        )
        .await;
    let reply = client.recv().await;
    assert!(
        reply.contains(r#""code":"wrong_user""#) && reply.contains(r#""ok":false"#),
        "{reply}"
    );
}

#[tokio::test]
async fn a_socket_whose_token_expires_is_disconnected() {
    let server = start("").await;
    let (mut client, reply) = connect_secure(
        server.addr,
        &format!(r#"{{"token":"{}"}}"#, token("alice", 1)),
    )
    .await;
    assert!(reply.starts_with("40/secure,{"), "{reply}");
    assert_eq!(
        without_offset(client.recv().await),
        r#"42/secure,["auth:expired",{"code":"token_expired"}]"#
    );
    assert_eq!(client.recv().await, "41/secure,");
}

#[tokio::test]
async fn without_keys_serve_and_token_share_the_development_secret() {
    let dir = std::env::temp_dir().join(format!("sb-dev-secret-{}", rand_suffix()));
    let mut config = Config::load(None, Vec::new()).unwrap();
    config.data_dir = dir.to_string_lossy().into_owned();
    config.listen = vec!["127.0.0.1:0".to_owned()];
    config.namespaces[0].auth = true;
    // What `switchboard token` signs with…
    let secret = server::signing_secret(&config).unwrap();
    let token = hub::identity::issue(&secret, "dana", Duration::from_secs(60)).unwrap();
    // …is what `switchboard serve` verifies with.
    let app = App::new(&config).await.unwrap();
    let listeners = server::bind(&config.listen).await.unwrap();
    let addr = listeners[0].local_addr().unwrap();
    tokio::spawn(async move { server::run(listeners, &config, app, std::future::pending()).await });
    let mut client = Client::open(addr).await;
    client.send(&format!(r#"40{{"token":"{token}"}}"#)).await;
    assert!(client.recv().await.starts_with("40{"));
    let mut stranger = Client::open(addr).await;
    let forged = hub::identity::issue("another-secret", "dana", Duration::from_secs(60)).unwrap();
    stranger.send(&format!(r#"40{{"token":"{forged}"}}"#)).await;
    assert!(stranger.recv().await.starts_with("44{"));
    std::fs::remove_dir_all(dir).unwrap();
}
