//! Identity: who a client is. Verifies the JWT a client presents (HS256 with
//! a shared secret, RS256 with a public key file or a JWKS file), issues
//! development tokens, and keeps the development secret.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// An authenticated user, as a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`).
    pub user: String,
    /// When the token expires (`exp`, seconds since the Unix epoch).
    pub expires_at: u64,
}

/// Why a client is not let in. `code()` is what the client sees in
/// `connect_error`'s `data.code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
}

impl AuthError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Invalid => "invalid_token",
            AuthError::Expired => "token_expired",
        }
    }
}

/// Why the verifier could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no key configured: set an HS256 secret, an RS256 public key file or a JWKS file")]
    NoKey,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid key in {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Verifies tokens against the configured keys.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    /// JWKS keys by `kid`.
    jwks: Vec<(Option<String>, DecodingKey)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("jwks_keys", &self.jwks.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier with any of: an HS256 secret, an RS256 public key (PEM
    /// file), a JWKS file (RS256 keys, chosen by the token's `kid`).
    pub fn new(
        hs256_secret: Option<&str>,
        rs256_public_key: Option<&Path>,
        jwks: Option<&Path>,
    ) -> Result<Verifier, KeyError> {
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
        let hs256 = hs256_secret.map(|s| DecodingKey::from_secret(s.as_bytes()));
        let rs256 = match rs256_public_key {
            Some(path) => Some(
                DecodingKey::from_rsa_pem(&read(path)?)
                    .map_err(|e| invalid(path, e.to_string()))?,
            ),
            None => None,
        };
        let mut jwks_keys = Vec::new();
        if let Some(path) = jwks {
            let set: JwkSet =
                serde_json::from_slice(&read(path)?).map_err(|e| invalid(path, e.to_string()))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(path, e.to_string()))?;
                jwks_keys.push((jwk.common.key_id.clone(), key));
            }
        }
        if hs256.is_none() && rs256.is_none() && jwks_keys.is_empty() {
            return Err(KeyError::NoKey);
        }
        Ok(Verifier {
            hs256,
            rs256,
            jwks: jwks_keys,
        })
    }

    /// Verifies a token: signature, `exp` (no leeway), `sub`.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => match (&header.kid, &self.rs256) {
                (None, Some(key)) => Some(key),
                (kid, rs256) => self
                    .jwks
                    .iter()
                    .find(|(id, _)| kid.is_none() || id == kid)
                    .map(|(_, key)| key)
                    .or(rs256.as_ref()),
            },
            _ => None,
        }
        .ok_or(AuthError::Invalid)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::Invalid);
        }
        Ok(Identity {
            user: data.claims.sub,
            expires_at: data.claims.exp,
        })
    }
}

/// Issues an HS256 token for `user`, valid for `ttl`.
pub fn issue(
    secret: &str,
    user: &str,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    issue_until(secret, user, now_secs() + ttl.as_secs())
}

/// Issues an HS256 token for `user` expiring at `exp` (seconds since the
/// Unix epoch; a past instant makes an expired token, for tests).
pub fn issue_until(
    secret: &str,
    user: &str,
    exp: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub: user.to_owned(),
        exp,
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
        };
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&key).unwrap()).unwrap()
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
