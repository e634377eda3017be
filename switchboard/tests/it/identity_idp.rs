//! Identity with real identity providers, over the wire: RS256 tokens, a
//! token shaped as Keycloak issues them (`iss`, `aud` list, `azp`, `typ`),
//! `iss` / `aud` / `nbf` refused with their codes, and a JWKS fetched from
//! the identity provider's URL that rotates: a new key is accepted without
//! restart, a removed key stops working, and unknown `kid`s cannot make the
//! hub hammer the identity provider.

use serde_json::{Value, json};

use crate::common::idp::{Idp, connect_code, fixture, jwks_of, rs256, secure_config};
use crate::common::*;

const ISSUER: &str = "https://idp.example.com/realms/esn";

/// What Keycloak puts in an access token (trimmed), for user `sub`.
fn keycloak_claims(sub: &str) -> Value {
    let now = hub::identity::now_secs();
    json!({
        "exp": now + 300,
        "iat": now,
        "auth_time": now,
        "jti": "6b0d3f7e-8f0c-4c52-9a55-0d3f1d0b2a11",
        "iss": ISSUER,
        "aud": ["switchboard", "account"],
        "sub": sub,
        "typ": "Bearer",
        "azp": "esn-web",
        "session_state": "c0a8",
        "scope": "openid profile email",
        "sid": "c0a8",
        "email_verified": true,
        "preferred_username": "alice",
        "realm_access": {"roles": ["offline_access", "uma_authorization"]},
    })
}

/// A server whose `/secure` namespace needs a token, with `auth` as its
/// `[auth]` section.
async fn start_with_auth(auth: &str) -> RawServer {
    start_raw(&secure_config(auth)).await
}

#[tokio::test]
async fn rs256_tokens_are_accepted_with_a_public_key_or_a_jwks_file() {
    let server = start_with_auth(&format!(
        "rs256_public_key_file = {:?}",
        fixture("test-rsa-public.pem").display().to_string()
    ))
    .await;
    let exp = hub::identity::now_secs() + 60;
    let token = rs256(1, None, &json!({"sub": "bob", "exp": exp}));
    assert_eq!(connect_code(server.addr, &token).await, Ok(()));
    let other_key = rs256(2, None, &json!({"sub": "bob", "exp": exp}));
    assert_eq!(
        connect_code(server.addr, &other_key).await,
        Err("invalid_token".to_owned())
    );

    let server = start_with_auth(&format!(
        "jwks_file = {:?}",
        fixture("test-jwks.json").display().to_string()
    ))
    .await;
    let token = rs256(1, Some("test-key-1"), &json!({"sub": "carol", "exp": exp}));
    assert_eq!(connect_code(server.addr, &token).await, Ok(()));
}

#[tokio::test]
async fn an_identity_provider_token_with_iss_aud_azp_and_typ_is_accepted() {
    // No audience configured: a token carrying `aud` is accepted (it was
    // refused before, as jsonwebtoken does by default).
    let server = start_with_auth(&format!(
        "jwks_file = {:?}",
        fixture("test-jwks.json").display().to_string()
    ))
    .await;
    let token = rs256(1, Some("test-key-1"), &keycloak_claims("alice"));
    assert_eq!(connect_code(server.addr, &token).await, Ok(()));

    // Issuer and audience configured: the same token, and it lands in the
    // user's room.
    let server = start_with_auth(&format!(
        "jwks_file = {:?}\nissuer = {ISSUER:?}\naudience = [\"switchboard\"]",
        fixture("test-jwks.json").display().to_string()
    ))
    .await;
    let (mut client, reply) =
        connect_secure(server.addr, &json!({"token": token}).to_string()).await;
    assert!(reply.starts_with("40/secure,{\"sid\""), "{reply}");
    client
        .emit_to("/secure", 1, "subscribe", r#""user:alice""#)
        .await;
    assert!(client.recv().await.contains(r#""ok":true"#));
}

#[tokio::test]
async fn wrong_issuer_wrong_audience_and_a_future_nbf_are_refused_with_their_code() {
    // `audience` as a single string works as well as a list.
    let server = start_with_auth(&format!(
        "jwks_file = {:?}\nissuer = {ISSUER:?}\naudience = \"switchboard\"",
        fixture("test-jwks.json").display().to_string()
    ))
    .await;
    let now = hub::identity::now_secs();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = keycloak_claims("alice");
        change(&mut claims);
        rs256(1, Some("test-key-1"), &claims)
    };
    let cases: Vec<(&str, String, Result<(), String>)> = vec![
        ("as issued", with(&|_| {}), Ok(())),
        (
            "single aud",
            with(&|c| c["aud"] = json!("switchboard")),
            Ok(()),
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example.com/realms/esn")),
            Err("invalid_issuer".into()),
        ),
        (
            "no iss",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            Err("invalid_issuer".into()),
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!(["account", "other-app"])),
            Err("invalid_audience".into()),
        ),
        (
            "no aud",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Err("invalid_audience".into()),
        ),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now + 120)),
            Err("token_not_yet_valid".into()),
        ),
        ("nbf passed", with(&|c| c["nbf"] = json!(now - 5)), Ok(())),
        (
            "expired",
            with(&|c| c["exp"] = json!(now - 5)),
            Err("token_expired".into()),
        ),
        (
            "unknown kid",
            rs256(2, Some("test-key-2"), &keycloak_claims("alice")),
            Err("unknown_key".into()),
        ),
        (
            "known kid, other key",
            rs256(2, Some("test-key-1"), &keycloak_claims("alice")),
            Err("invalid_token".into()),
        ),
    ];
    for (case, token, expected) in cases {
        assert_eq!(connect_code(server.addr, &token).await, expected, "{case}");
    }
}

#[tokio::test]
async fn the_leeway_admits_a_token_whose_nbf_is_a_little_ahead() {
    let server = start_with_auth(&format!(
        "jwks_file = {:?}\nleeway_secs = 30",
        fixture("test-jwks.json").display().to_string()
    ))
    .await;
    let now = hub::identity::now_secs();
    let mut claims = keycloak_claims("alice");
    claims["nbf"] = json!(now + 10);
    assert_eq!(
        connect_code(server.addr, &rs256(1, Some("test-key-1"), &claims)).await,
        Ok(())
    );
    claims["nbf"] = json!(now + 90);
    assert_eq!(
        connect_code(server.addr, &rs256(1, Some("test-key-1"), &claims)).await,
        Err("token_not_yet_valid".to_owned())
    );
}

#[tokio::test]
async fn a_key_rotated_in_at_the_identity_provider_is_accepted_without_restart() {
    let idp = Idp::start(jwks_of(&["test-jwks.json"])).await;
    let server = start_with_auth(&format!(
        "jwks_url = {:?}\njwks_min_refresh_secs = 0\nissuer = {ISSUER:?}",
        idp.url()
    ))
    .await;
    assert_eq!(idp.requests(), 1, "fetched once at start");
    let old = rs256(1, Some("test-key-1"), &keycloak_claims("alice"));
    let new = rs256(2, Some("test-key-2"), &keycloak_claims("alice"));
    assert_eq!(connect_code(server.addr, &old).await, Ok(()));
    assert_eq!(idp.requests(), 1, "a known key needs no fetch");

    // The identity provider rotates: the new key only.
    idp.serve(jwks_of(&["test-jwks-2.json"]));
    assert_eq!(connect_code(server.addr, &new).await, Ok(()));
    assert_eq!(idp.requests(), 2, "the unknown kid fetched the set again");
    assert_eq!(connect_code(server.addr, &new).await, Ok(()));
    assert_eq!(idp.requests(), 2);
    // The old key is gone from the set the hub holds.
    assert_eq!(
        connect_code(server.addr, &old).await,
        Err("unknown_key".to_owned())
    );

    // `refresh` on a connected socket takes the same path.
    idp.serve(jwks_of(&["test-jwks.json", "test-jwks-2.json"]));
    let (mut client, reply) = connect_secure(server.addr, &json!({"token": new}).to_string()).await;
    assert!(reply.starts_with("40/secure,{\"sid\""), "{reply}");
    client
        .emit_to("/secure", 1, "refresh", &json!({"token": old}).to_string())
        .await;
    let reply = client.recv().await;
    assert!(reply.contains(r#""ok":true"#), "{reply}");
}

#[tokio::test]
async fn unknown_kids_fetch_the_jwks_at_most_once_per_min_refresh() {
    let idp = Idp::start(jwks_of(&["test-jwks.json"])).await;
    let server = start_with_auth(&format!(
        "jwks_url = {:?}\njwks_min_refresh_secs = 3600",
        idp.url()
    ))
    .await;
    assert_eq!(idp.requests(), 1);
    // A flood of tokens naming random keys, all at once.
    let attempts: Vec<_> = (0..30)
        .map(|i| {
            let token = rs256(2, Some(&format!("random-{i}")), &keycloak_claims("mallory"));
            let addr = server.addr;
            tokio::spawn(async move { connect_code(addr, &token).await })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(attempt.await.unwrap(), Err("unknown_key".to_owned()));
    }
    assert_eq!(idp.requests(), 2, "one fetch for the whole flood");
    // Within the interval, even a real rotation waits for the periodic refresh.
    idp.serve(jwks_of(&["test-jwks-2.json"]));
    let new = rs256(2, Some("test-key-2"), &keycloak_claims("alice"));
    assert_eq!(
        connect_code(server.addr, &new).await,
        Err("unknown_key".to_owned())
    );
    assert_eq!(idp.requests(), 2);
}

#[tokio::test]
async fn the_jwks_is_fetched_again_periodically_and_a_removed_key_stops_working() {
    let mut idp = Idp::start(jwks_of(&["test-jwks.json"])).await;
    let server = start_with_auth(&format!(
        "jwks_url = {:?}\njwks_refresh_secs = 1\njwks_min_refresh_secs = 3600",
        idp.url()
    ))
    .await;
    assert_eq!(idp.served.recv().await, Some(1));
    let old = rs256(1, Some("test-key-1"), &keycloak_claims("alice"));
    assert_eq!(connect_code(server.addr, &old).await, Ok(()));
    idp.serve(jwks_of(&["test-jwks-2.json"]));
    // The key stays known until a periodic fetch replaces the set, so no
    // token can cause this refusal: only the periodic fetch can. Each try
    // follows a fetch the identity provider saw (the hub installs the set
    // an instant later, so a try may come too early once).
    let mut refused = false;
    for _ in 0..5 {
        let seen = tokio::time::timeout(WAIT, idp.served.recv()).await;
        assert!(matches!(seen, Ok(Some(_))), "no periodic fetch");
        if connect_code(server.addr, &old).await == Err("unknown_key".to_owned()) {
            refused = true;
            break;
        }
    }
    assert!(refused, "the removed key still works");
}

#[tokio::test]
async fn start_fails_clearly_when_the_jwks_url_cannot_be_fetched() {
    // A port nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", closed.local_addr().unwrap());
    drop(closed);
    let error = try_start_raw(&secure_config(&format!("jwks_url = {url:?}")))
        .await
        .err()
        .expect("started without its keys");
    let text = format!("{error:#}");
    assert!(
        text.contains("fetching the JWKS at") && text.contains(&url),
        "{text}"
    );

    // A set with no usable key is no better.
    let idp = Idp::start(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_owned()).await;
    let error = try_start_raw(&secure_config(&format!("jwks_url = {:?}", idp.url())))
        .await
        .err()
        .expect("started without a usable key");
    assert!(
        format!("{error:#}").contains("no RS256 signing key"),
        "{error:#}"
    );

    // A set larger than jwks_max_bytes is not read past the bound.
    let idp = Idp::start(jwks_of(&["test-jwks.json"])).await;
    let error = try_start_raw(&secure_config(&format!(
        "jwks_url = {:?}\njwks_max_bytes = 100",
        idp.url()
    )))
    .await
    .err()
    .expect("read a JWKS over jwks_max_bytes");
    assert!(
        format!("{error:#}").contains("at most 100 bytes"),
        "{error:#}"
    );

    // A URL of neither http nor https is refused at config load (https is
    // tested in identity_tls.rs).
    let error = try_start_raw(&secure_config("jwks_url = \"ftp://127.0.0.1/certs\""))
        .await
        .err()
        .unwrap();
    assert!(
        format!("{error:#}").contains("must be http://… or https://…"),
        "{error:#}"
    );
}
