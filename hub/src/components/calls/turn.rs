//! ICE servers for `ice_servers`: the configured STUN URLs, and the TURN
//! URLs with time-limited credentials per the TURN REST API convention
//! (draft-uberti-behave-turn-rest-00, what coturn's `use-auth-secret`
//! checks): username `<expiry unix time>:<user id>`, password
//! `base64(HMAC-SHA1(shared secret, username))`. The TURN server needs no
//! call to the hub: it recomputes the password from the shared secret and
//! refuses an expiry in the past.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

/// One entry of `RTCConfiguration.iceServers`, as the browser takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IceServer {
    pub urls: Vec<String>,
    // Absent, never `null`: the browser takes no `null` here.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub credential: Option<String>,
}

/// TURN REST API credentials for `user`, valid until `expires_at` (Unix
/// seconds): `(username, password)`.
pub fn credentials(secret: &str, user: &str, expires_at: u64) -> (String, String) {
    let username = format!("{expires_at}:{user}");
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// The ICE servers for `user` at `now` (Unix seconds): one entry with the
/// STUN URLs (if any), one with the TURN URLs and their credentials (if
/// any, and a secret is configured).
pub fn ice_servers(
    stun_urls: &[String],
    turn_urls: &[String],
    secret: &str,
    ttl_secs: u64,
    user: &str,
    now: u64,
) -> Vec<IceServer> {
    let mut servers = Vec::new();
    if !stun_urls.is_empty() {
        servers.push(IceServer {
            urls: stun_urls.to_vec(),
            username: None,
            credential: None,
        });
    }
    if !turn_urls.is_empty() && !secret.is_empty() {
        let (username, password) = credentials(secret, user, now.saturating_add(ttl_secs));
        servers.push(IceServer {
            urls: turn_urls.to_vec(),
            username: Some(username),
            credential: Some(password),
        });
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_api() {
        // The vector: `printf %s 1700000000:alice | openssl dgst -binary
        // -sha1 -hmac north | base64`.
        assert_eq!(
            credentials("north", "alice", 1_700_000_000),
            (
                "1700000000:alice".to_owned(),
                "Cd/49soE35ICqcJF/bCTn8Z4OyE=".to_owned()
            )
        );
    }

    #[test]
    fn turn_urls_get_credentials_that_expire_after_the_ttl() {
        let stun = vec!["stun:stun.example.org:3478".to_owned()];
        let turn = vec![
            "turn:turn.example.org:3478?transport=udp".to_owned(),
            "turns:turn.example.org:443?transport=tcp".to_owned(),
        ];
        let servers = ice_servers(&stun, &turn, "north", 86_400, "bob", 1_000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, stun);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].urls, turn);
        assert_eq!(servers[1].username.as_deref(), Some("87400:bob"));
        assert_eq!(
            servers[1].credential,
            Some(credentials("north", "bob", 87_400).1)
        );
        // No secret: TURN URLs would be useless without credentials.
        assert_eq!(ice_servers(&stun, &turn, "", 60, "bob", 0).len(), 1);
        assert!(ice_servers(&[], &[], "north", 60, "bob", 0).is_empty());
    }
}
