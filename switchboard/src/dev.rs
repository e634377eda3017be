//! Development mode's sign-in: `POST /dev/token` signs a token for any
//! user name, so that the web client can sign a person in by name with no
//! identity provider. It exists only when `dev_mode` is on (the embedded
//! default; off in a configuration file unless set), and it is not part of
//! the publish API (not in its OpenAPI document): anyone who can reach the
//! listener can sign in as anyone, so the hub warns at start. Its tokens
//! carry a `dev` claim, accepted only while dev mode is on; and it answers
//! only requests addressed to `localhost` or an IP address, so that a page
//! of another site cannot reach it by rebinding its own name (DNS
//! rebinding).
//!
//! `GET /dev/mode` exists whether dev mode is on or not: an always-200
//! `{"dev_mode": bool, "sign_in_by_name": bool}` that tells the web client
//! whether to show its sign-in form, so that its first screen probes no
//! URL that fails (a 400 or 404 that the browser's console would log).
//!
//! Tokens are signed like `switchboard token`'s: the configured HS256
//! secret or the development secret in `data_dir`. A hub that verifies
//! RS256 tokens only cannot sign any, and refuses to start in dev mode.

use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::config::Config;
use crate::reply::{Failure, reply};

/// The longest request body read, in bytes (`{"user": "…"}` of 64 chars
/// fits many times over).
const MAX_BODY_BYTES: usize = 4096;

/// The longest user id signed.
const MAX_USER_LEN: usize = 64;

/// What dev mode signs tokens with.
#[derive(Debug)]
pub struct DevTokens {
    secret: String,
    ttl: Duration,
}

impl DevTokens {
    /// Whether dev mode can work here: an error when `dev_mode` is on
    /// but this hub has no HS256 secret to sign with (RS256 keys only).
    /// Checked before anything else starts.
    pub fn check(config: &Config) -> anyhow::Result<()> {
        if config.dev_mode && config.rs256_only() {
            // Refused rather than silently turned off: whoever runs this
            // expects the sign-in screen to work, or dev mode to be off.
            bail!(
                "dev_mode is on (the default without a configuration file) but tokens are \
                 verified with RS256 keys only, so the hub cannot sign any: set \
                 dev_mode = false (SWITCHBOARD_DEV_MODE=false) or give auth.hs256_secret"
            );
        }
        Ok(())
    }

    /// Dev mode's signer when `dev_mode` is on (with the warning), `None`
    /// when it is off. After the hub is built: the development secret is
    /// the one its verifier uses (created by it when missing).
    pub fn from_config(config: &Config) -> anyhow::Result<Option<DevTokens>> {
        DevTokens::check(config)?;
        if !config.dev_mode {
            if let Some(note) = &config.dev_mode_note {
                tracing::warn!("{note}");
            }
            return Ok(None);
        }
        // What `signing_secret` reads, without its warning: the hub just
        // gave it.
        let secret = match config.auth.hs256_secret.as_str() {
            "" => {
                let dir = std::path::Path::new(&config.data_dir);
                hub::identity::dev_secret(dir)
                    .with_context(|| {
                        format!("reading the development secret in {}", dir.display())
                    })?
                    .0
            }
            secret => secret.to_owned(),
        };
        tracing::warn!(
            "dev_mode is on: POST /dev/token signs a token for any user name, so anyone who \
             can reach the listener can sign in as any user. Not for production: set \
             dev_mode = false (SWITCHBOARD_DEV_MODE=false)"
        );
        Ok(Some(DevTokens {
            secret,
            ttl: Duration::from_secs(config.dev_token_ttl_secs),
        }))
    }
}

/// `POST /dev/token`, for the public router when dev mode is on.
pub fn router() -> Router<App> {
    Router::new().route("/dev/token", post(token))
}

/// `GET /dev/mode`, for the public router whether dev mode is on or not.
pub fn mode_router() -> Router<App> {
    Router::new().route("/dev/mode", get(mode))
}

/// Whether this hub is in dev mode, and whether it would sign a token for
/// this request (dev mode, and a request addressed to a local host name):
/// the web client shows its sign-in form only then.
async fn mode(State(app): State<App>, headers: http::HeaderMap) -> Response {
    let dev_mode = app.dev.is_some();
    let mut response = reply(
        StatusCode::OK,
        json!({"dev_mode": dev_mode, "sign_in_by_name": dev_mode && local_host(&headers)}),
    );
    // A hub restarted with another configuration answers otherwise.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// `{"user": "alice"}`.
#[derive(Deserialize)]
struct TokenRequest {
    user: String,
}

/// Whether `user` is a user id dev mode signs: 1 to 64 characters of
/// `[A-Za-z0-9._-]` (what the web client may put in a room name or a URL).
pub fn valid_user(user: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether the request's `Host` is `localhost` (or a name under it) or
/// an IP address. A page of another site that rebinds its own name to
/// this hub's address (DNS rebinding) sends that name: it gets no token.
fn local_host(headers: &http::HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // `[v6]:port`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn bad_request(message: impl std::fmt::Display) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// Signs a token for the user named in the body: `{token, user, expires_at}`.
async fn token(State(app): State<App>, request: Request) -> Result<Response, Failure> {
    let Some(dev) = &app.dev else {
        // The route exists only in dev mode; kept safe if wired otherwise.
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such path",
        ));
    };
    if !local_host(request.headers()) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "dev mode signs in only at localhost or an IP address (a page of another \
             site must not reach it through its own host name)",
        ));
    }
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send JSON (Content-Type: application/json): {\"user\": \"alice\"}",
        ));
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            bad_request(format!(
                "the body must be JSON of at most {MAX_BODY_BYTES} bytes"
            ))
        })?;
    let TokenRequest { user } = serde_json::from_slice(&body)
        .map_err(|err| bad_request(format!("expected {{\"user\": \"alice\"}}: {err}")))?;
    if !valid_user(&user) {
        return Err(bad_request(
            "user: 1 to 64 characters of letters, digits, `.`, `_` and `-`",
        ));
    }
    let expires_at = hub::identity::now_secs().saturating_add(dev.ttl.as_secs());
    let token = hub::identity::issue_dev_until(&dev.secret, &user, expires_at).map_err(|err| {
        tracing::error!(%err, "signing a development token");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the token could not be signed",
        )
    })?;
    let mut response = reply(
        StatusCode::OK,
        json!({"token": token, "user": user, "expires_at": expires_at}),
    );
    // A credential: no cache keeps it.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_or_ip_hosts_get_tokens() {
        let with = |host: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            local_host(&headers)
        };
        for ok in [
            "localhost:3000",
            "LOCALHOST",
            "app.localhost:1",
            "127.0.0.1:3000",
            "10.0.0.7",
            "[::1]:3000",
        ] {
            assert!(with(ok), "{ok}");
        }
        for bad in ["evil.example:3000", "localhost.evil.example", "example.com"] {
            assert!(!with(bad), "{bad}");
        }
        assert!(!local_host(&http::HeaderMap::new()), "no Host");
    }

    #[test]
    fn user_ids() {
        for ok in ["alice", "a", "Bob.Smith_2-x", &"x".repeat(64)] {
            assert!(valid_user(ok), "{ok}");
        }
        for bad in ["", "a b", "é", "a/b", "<b>", &"x".repeat(65), "a\0"] {
            assert!(!valid_user(bad), "{bad:?}");
        }
    }
}
