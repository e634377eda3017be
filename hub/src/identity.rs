//! Identity: who a client is. Verifies the JWT a client presents (HS256 with
//! a shared secret, RS256 with a public key file, a JWKS file or a JWKS
//! fetched from the identity provider's URL and kept fresh), checks its
//! claims (`exp`, `nbf`, and `iss` / `aud` when configured, within a
//! leeway), issues development tokens, and keeps the development secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::jwks::{JwksSource, KeySet, RemoteJwks};

/// The keys tokens are verified with, and what their claims must say. With
/// no key at all, the development secret kept in `data_dir` is used (with a
/// warning).
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// An HS256 shared secret.
    pub hs256_secret: Option<String>,
    /// An RS256 public key, PEM file.
    pub rs256_public_key_file: Option<PathBuf>,
    /// RS256 keys, JWKS file (chosen by the token's `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Where the development secret is kept (`dev-secret`).
    pub data_dir: PathBuf,
    /// RS256 keys fetched from the identity provider, kept fresh.
    pub jwks_url: Option<JwksSource>,
    /// What the claims must say (`iss`, `aud`, leeway).
    pub claims: ClaimRules,
}

/// An authenticated user, as a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`).
    pub user: String,
    /// Until when this hub accepts the token (seconds since the Unix
    /// epoch): its `exp` plus the configured leeway. The socket is
    /// disconnected then unless refreshed.
    pub expires_at: u64,
}

/// Why a client is not let in. `code()` is what the client sees in
/// `connect_error`'s `data.code` (and in a refused `refresh`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// Validly signed, but `iss` is not the configured issuer.
    #[error("token from another issuer")]
    WrongIssuer,
    /// Validly signed, but no `aud` is a configured audience.
    #[error("token for another audience")]
    WrongAudience,
    /// The token names a key (`kid`) that none of the configured key sets
    /// holds, even after fetching the JWKS again (when allowed).
    #[error("token signed with an unknown key")]
    UnknownKey,
}

impl AuthError {
    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::MissingToken,
            AuthError::Invalid => ErrorCode::InvalidToken,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::NotYetValid => ErrorCode::TokenNotYetValid,
            AuthError::WrongIssuer => ErrorCode::InvalidIssuer,
            AuthError::WrongAudience => ErrorCode::InvalidAudience,
            AuthError::UnknownKey => ErrorCode::UnknownKey,
        }
    }
}

/// Why the verifier could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no key configured: set an HS256 secret, an RS256 public key file, a JWKS file or a JWKS URL"
    )]
    NoKey,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid key in {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Fetch(#[from] crate::jwks::FetchError),
}

/// What a token's claims must say, beyond `sub` and `exp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRules {
    /// The `iss` every token must carry; `None`: not checked.
    pub issuer: Option<String>,
    /// Audiences of this hub: a token's `aud` (a string or a list) must
    /// name one. Empty: any `aud`, or none, is accepted.
    pub audience: Vec<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Whether tokens signed by development mode's sign-in (marked with
    /// the `dev` claim, see [`issue_dev_until`]) are accepted: only while dev
    /// mode is on, so a token minted then is refused once it is off,
    /// whatever secret signed it.
    pub accept_dev: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    /// Signed by development mode's sign-in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    dev: bool,
}

/// Verifies tokens against the configured keys and claim rules.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    /// The keys of the JWKS file.
    jwks: KeySet,
    /// The keys of the JWKS URL.
    remote: Option<Arc<RemoteJwks>>,
    claims: ClaimRules,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("jwks_keys", &self.jwks.len())
            .field(
                "jwks_url_keys",
                &self.remote.as_ref().map(|r| r.keys().len()),
            )
            .field("claims", &self.claims)
            .finish()
    }
}

impl Verifier {
    /// A verifier with any of: an HS256 secret, an RS256 public key (PEM
    /// file), a JWKS file (RS256 keys, chosen by the token's `kid`); no
    /// claim rules beyond `exp`, `nbf` and `sub`.
    pub fn new(
        hs256_secret: Option<&str>,
        rs256_public_key: Option<&Path>,
        jwks: Option<&Path>,
    ) -> Result<Verifier, KeyError> {
        Verifier::from_files(&IdentityConfig {
            hs256_secret: hs256_secret.map(str::to_owned),
            rs256_public_key_file: rs256_public_key.map(Path::to_owned),
            jwks_file: jwks.map(Path::to_owned),
            ..IdentityConfig::default()
        })
    }

    /// The verifier `config` describes (its `hs256_secret` as given: the
    /// development secret is [`crate::assembly::verifier`]'s business). A
    /// JWKS URL is fetched before this returns (an unreachable one is an
    /// error), then kept fresh for as long as the verifier lives; needs a
    /// Tokio runtime then.
    pub async fn start(config: &IdentityConfig) -> Result<Verifier, KeyError> {
        let mut verifier = Verifier::from_files(config)?;
        if let Some(source) = &config.jwks_url {
            verifier.remote = Some(RemoteJwks::start(source.clone()).await?);
        }
        if verifier.hs256.is_none()
            && verifier.rs256.is_none()
            && verifier.jwks.is_empty()
            && verifier.remote.is_none()
        {
            return Err(KeyError::NoKey);
        }
        Ok(verifier)
    }

    /// Everything but the JWKS URL; `NoKey` only when no source at all is
    /// configured.
    fn from_files(config: &IdentityConfig) -> Result<Verifier, KeyError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| KeyError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let invalid = |path: &Path, message: String| KeyError::Invalid {
            path: path.to_owned(),
            message,
        };
        let hs256 = config
            .hs256_secret
            .as_deref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let rs256 = match &config.rs256_public_key_file {
            Some(path) => Some(
                DecodingKey::from_rsa_pem(&read(path)?)
                    .map_err(|e| invalid(path, e.to_string()))?,
            ),
            None => None,
        };
        let jwks = match &config.jwks_file {
            Some(path) => {
                let (set, skipped) = KeySet::parse(&read(path)?).map_err(|e| invalid(path, e))?;
                if set.is_empty() {
                    return Err(invalid(
                        path,
                        format!("no RS256 signing key ({skipped} other keys)"),
                    ));
                }
                set
            }
            None => KeySet::default(),
        };
        if hs256.is_none() && rs256.is_none() && jwks.is_empty() && config.jwks_url.is_none() {
            return Err(KeyError::NoKey);
        }
        Ok(Verifier {
            hs256,
            rs256,
            jwks,
            remote: None,
            claims: config.claims.clone(),
        })
    }

    /// The same verifier, holding tokens to `claims`.
    pub fn with_claims(mut self, claims: ClaimRules) -> Verifier {
        self.claims = claims;
        self
    }

    /// Verifies a token with the keys in hand: signature, `exp` and `nbf`
    /// (within the leeway), `iss` and `aud` when configured, `sub`. A token
    /// naming a key not in hand is [`AuthError::UnknownKey`]; see
    /// [`verify_fresh`](Self::verify_fresh).
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        match header.alg {
            Algorithm::HS256 => {
                let key = self.hs256.as_ref().ok_or(AuthError::Invalid)?;
                self.check(token, key, header.alg)
            }
            Algorithm::RS256 => {
                let kid = header.kid.as_deref();
                let remote = self.remote.as_ref().map(|r| r.keys());
                let from_sets = || {
                    self.jwks
                        .find(kid)
                        .or_else(|| remote.as_deref().and_then(|set| set.find(kid)))
                };
                match (kid, &self.rs256) {
                    // The PEM key signs tokens without a key id.
                    (None, Some(pem)) => self.check(token, pem, header.alg),
                    (None, None) => match from_sets() {
                        Some(key) => self.check(token, key, header.alg),
                        None => Err(AuthError::Invalid),
                    },
                    (Some(_), pem) => match (from_sets(), pem) {
                        (Some(key), _) => self.check(token, key, header.alg),
                        // A PEM-signed token may carry a key id too; if the
                        // PEM key is not it, the JWKS URL may have it.
                        (None, Some(pem)) => match self.check(token, pem, header.alg) {
                            Err(AuthError::Invalid) if self.remote.is_some() => {
                                Err(AuthError::UnknownKey)
                            }
                            verdict => verdict,
                        },
                        (None, None) => Err(AuthError::UnknownKey),
                    },
                }
            }
            _ => Err(AuthError::Invalid),
        }
    }

    /// [`verify`](Self::verify), and when the token names a key not in
    /// hand and a JWKS URL is configured, fetches the set again (at most
    /// once per `jwks_min_refresh`, so a flood of unknown `kid`s costs the
    /// identity provider one request) and tries once more: a key the
    /// identity provider has just rotated in is accepted without restart.
    pub async fn verify_fresh(&self, token: &str) -> Result<Identity, AuthError> {
        match self.verify(token) {
            Err(AuthError::UnknownKey) => match &self.remote {
                Some(remote) if remote.refresh_for_unknown_kid().await => self.verify(token),
                _ => Err(AuthError::UnknownKey),
            },
            verdict => verdict,
        }
    }

    fn check(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Identity, AuthError> {
        let rules = &self.claims;
        let mut validation = Validation::new(alg);
        validation.leeway = rules.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if rules.audience.is_empty() {
            // No audience of our own: whatever the token was meant for.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&rules.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
            _ => AuthError::Invalid,
        })?;
        if data.claims.sub.is_empty() || (data.claims.dev && !rules.accept_dev) {
            return Err(AuthError::Invalid);
        }
        Ok(Identity {
            user: data.claims.sub,
            expires_at: data.claims.exp.saturating_add(rules.leeway_secs),
        })
    }
}

/// Issues an HS256 token for `user`, valid for `ttl`.
pub fn issue(
    secret: &str,
    user: &str,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    issue_until(secret, user, now_secs().saturating_add(ttl.as_secs()))
}

/// Issues an HS256 token for `user` expiring at `exp` (seconds since the
/// Unix epoch; a past instant makes an expired token, for tests).
pub fn issue_until(
    secret: &str,
    user: &str,
    exp: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    sign(secret, user, exp, false)
}

/// Issues an HS256 token for `user` expiring at `exp`, marked as signed
/// by development mode (accepted only by a hub whose [`ClaimRules`] say
/// `accept_dev`).
pub fn issue_dev_until(
    secret: &str,
    user: &str,
    exp: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    sign(secret, user, exp, true)
}

fn sign(
    secret: &str,
    user: &str,
    exp: u64,
    dev: bool,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub: user.to_owned(),
        exp,
        dev,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The development secret kept in `data_dir/dev-secret`, created (random,
/// owner-readable only) on first use. Returns it and whether it was created.
pub fn dev_secret(data_dir: &Path) -> std::io::Result<(String, bool)> {
    use base64::Engine as _;
    let path = data_dir.join("dev-secret");
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok((secret.trim().to_owned(), false)),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    std::fs::create_dir_all(data_dir)?;
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    let secret = base64::prelude::BASE64_URL_SAFE_NO_PAD.encode(raw);
    write_private(&path, &secret)?;
    Ok((secret, true))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn rs256_token(kid: Option<&str>, sub: &str, exp: u64) -> String {
        let key = std::fs::read(fixture("test-rsa-private.pem")).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let claims = Claims {
            sub: sub.to_owned(),
            exp,
            dev: false,
        };
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&key).unwrap()).unwrap()
    }

    #[test]
    fn dev_mode_tokens_are_accepted_only_while_dev_mode_is_on() {
        let token = issue_dev_until("s3cret", "alice", now_secs() + 60).unwrap();
        let off = Verifier::new(Some("s3cret"), None, None).unwrap();
        assert_eq!(off.verify(&token), Err(AuthError::Invalid));
        let on = Verifier::new(Some("s3cret"), None, None)
            .unwrap()
            .with_claims(ClaimRules {
                accept_dev: true,
                ..ClaimRules::default()
            });
        assert_eq!(on.verify(&token).unwrap().user, "alice");
        // Ordinary tokens are accepted either way.
        let plain = issue("s3cret", "bob", Duration::from_secs(60)).unwrap();
        assert_eq!(off.verify(&plain).unwrap().user, "bob");
        assert_eq!(on.verify(&plain).unwrap().user, "bob");
    }

    #[test]
    fn hs256_tokens_round_trip_and_expire() {
        let verifier = Verifier::new(Some("s3cret"), None, None).unwrap();
        let token = issue("s3cret", "alice", Duration::from_secs(60)).unwrap();
        let identity = verifier.verify(&token).unwrap();
        assert_eq!(identity.user, "alice");
        assert!(identity.expires_at >= now_secs() + 59);

        let expired = issue_until("s3cret", "alice", now_secs() - 1).unwrap();
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));
    }

    #[test]
    fn refuses_bad_tokens() {
        let verifier = Verifier::new(Some("s3cret"), None, None).unwrap();
        let forged = issue("other", "alice", Duration::from_secs(60)).unwrap();
        assert_eq!(verifier.verify(&forged), Err(AuthError::Invalid));
        assert_eq!(verifier.verify("not.a.jwt"), Err(AuthError::Invalid));
        assert_eq!(verifier.verify(""), Err(AuthError::Missing));
        let no_sub = jsonwebtoken::encode(
            &Header::default(),
            &serde_json::json!({"exp": now_secs() + 60}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(verifier.verify(&no_sub), Err(AuthError::Invalid));
        // An RS256 token is refused when only a secret is configured.
        assert_eq!(
            verifier.verify(&rs256_token(None, "bob", now_secs() + 60)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn rs256_with_a_public_key_or_a_jwks() {
        let pem = Verifier::new(None, Some(&fixture("test-rsa-public.pem")), None).unwrap();
        assert_eq!(
            pem.verify(&rs256_token(None, "bob", now_secs() + 60))
                .unwrap()
                .user,
            "bob"
        );
        let jwks = Verifier::new(None, None, Some(&fixture("test-jwks.json"))).unwrap();
        let token = rs256_token(Some("test-key-1"), "carol", now_secs() + 60);
        assert_eq!(jwks.verify(&token).unwrap().user, "carol");
        // A secret does not pass for an RS256 key (algorithm confusion).
        let hs = issue("whatever", "mallory", Duration::from_secs(60)).unwrap();
        assert_eq!(jwks.verify(&hs), Err(AuthError::Invalid));
        assert!(matches!(
            Verifier::new(None, None, None),
            Err(KeyError::NoKey)
        ));
    }

    fn hs256_with(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap()
    }

    fn rules(issuer: Option<&str>, audience: &[&str], leeway_secs: u64) -> ClaimRules {
        ClaimRules {
            issuer: issuer.map(str::to_owned),
            audience: audience.iter().map(|a| a.to_string()).collect(),
            leeway_secs,
            accept_dev: false,
        }
    }

    #[test]
    fn a_token_with_an_audience_is_accepted_when_none_is_configured() {
        // jsonwebtoken refuses any `aud` by default: identity providers always set one.
        let verifier = Verifier::new(Some("s3cret"), None, None).unwrap();
        let exp = now_secs() + 60;
        for aud in [serde_json::json!("account"), serde_json::json!(["a", "b"])] {
            let token = hs256_with(serde_json::json!({"sub": "al", "exp": exp, "aud": aud}));
            assert_eq!(verifier.verify(&token).unwrap().user, "al");
        }
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let verifier = Verifier::new(Some("s3cret"), None, None)
            .unwrap()
            .with_claims(rules(
                Some("https://idp/realms/esn"),
                &["switchboard", "esn"],
                0,
            ));
        let exp = now_secs() + 60;
        let iss = "https://idp/realms/esn";
        let verdict = |claims: serde_json::Value| verifier.verify(&hs256_with(claims));
        assert!(
            verdict(serde_json::json!({"sub": "a", "exp": exp, "iss": iss, "aud": "esn"})).is_ok()
        );
        assert!(
            verdict(serde_json::json!({"sub": "a", "exp": exp, "iss": iss, "aud": ["account", "switchboard"]}))
                .is_ok()
        );
        for (claims, refused) in [
            (
                serde_json::json!({"sub": "a", "exp": exp, "iss": "https://evil", "aud": "esn"}),
                AuthError::WrongIssuer,
            ),
            (
                serde_json::json!({"sub": "a", "exp": exp, "aud": "esn"}),
                AuthError::WrongIssuer,
            ),
            (
                serde_json::json!({"sub": "a", "exp": exp, "iss": iss, "aud": "account"}),
                AuthError::WrongAudience,
            ),
            (
                serde_json::json!({"sub": "a", "exp": exp, "iss": iss, "aud": ["x", "y"]}),
                AuthError::WrongAudience,
            ),
            (
                serde_json::json!({"sub": "a", "exp": exp, "iss": iss}),
                AuthError::WrongAudience,
            ),
        ] {
            assert_eq!(verdict(claims.clone()), Err(refused), "{claims}");
        }
        // A forged token learns nothing about the claims: the signature comes first.
        let forged = jsonwebtoken::encode(
            &Header::default(),
            &serde_json::json!({"sub": "a", "exp": exp, "iss": "https://evil"}),
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        assert_eq!(verifier.verify(&forged), Err(AuthError::Invalid));
    }

    #[test]
    fn nbf_is_enforced_and_the_leeway_applies_to_exp_and_nbf() {
        let strict = Verifier::new(Some("s3cret"), None, None).unwrap();
        let lenient = Verifier::new(Some("s3cret"), None, None)
            .unwrap()
            .with_claims(rules(None, &[], 30));
        let now = now_secs();
        let early = hs256_with(serde_json::json!({"sub": "a", "exp": now + 120, "nbf": now + 10}));
        assert_eq!(strict.verify(&early), Err(AuthError::NotYetValid));
        assert!(lenient.verify(&early).is_ok());
        let much_too_early =
            hs256_with(serde_json::json!({"sub": "a", "exp": now + 120, "nbf": now + 60}));
        assert_eq!(lenient.verify(&much_too_early), Err(AuthError::NotYetValid));
        let started = hs256_with(serde_json::json!({"sub": "a", "exp": now + 120, "nbf": now - 1}));
        assert!(strict.verify(&started).is_ok());

        let just_expired = hs256_with(serde_json::json!({"sub": "a", "exp": now - 10}));
        assert_eq!(strict.verify(&just_expired), Err(AuthError::Expired));
        // Accepted within the leeway, and the socket lives until exp + leeway.
        assert_eq!(lenient.verify(&just_expired).unwrap().expires_at, now + 20);
        let long_expired = hs256_with(serde_json::json!({"sub": "a", "exp": now - 60}));
        assert_eq!(lenient.verify(&long_expired), Err(AuthError::Expired));
    }

    #[test]
    fn an_unknown_kid_is_told_apart_from_a_bad_signature() {
        let jwks = Verifier::new(None, None, Some(&fixture("test-jwks.json"))).unwrap();
        let token = rs256_token(Some("rotated-in"), "carol", now_secs() + 60);
        assert_eq!(jwks.verify(&token), Err(AuthError::UnknownKey));
        // No kid and a set of one: that key.
        assert!(
            jwks.verify(&rs256_token(None, "carol", now_secs() + 60))
                .is_ok()
        );
    }

    #[test]
    fn the_dev_secret_is_created_once_and_kept() {
        let dir = std::env::temp_dir().join(format!(
            "hub-dev-secret-{}",
            now_secs() ^ std::process::id() as u64
        ));
        let (first, created) = dev_secret(&dir).unwrap();
        assert!(created);
        let (again, created_again) = dev_secret(&dir).unwrap();
        assert_eq!((again.as_str(), created_again), (first.as_str(), false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("dev-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
