//! JSON Web Key Sets: the RS256 keys an identity provider publishes. A set
//! is read from a file or fetched from a URL; a fetched set is cached,
//! fetched again periodically and when a token names a key it does not hold
//! (rate limited, so that tokens with random `kid`s cannot hammer the
//! identity provider), so that a key rotation needs no restart.
//!
//! Keys not meant for RS256 signatures are skipped (identity providers also
//! publish encryption keys, `"use": "enc"`), never an error.
//!
//! The URL may be `http://` or `https://`. Over https the server's
//! certificate is always verified, host name (or IP address) included,
//! against the system's trusted roots plus, optionally, a PEM file of extra
//! roots (an enterprise identity provider's internal CA). TLS is rustls on
//! the *ring* provider, given explicitly to the client so that no
//! process-wide default provider has to be installed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

/// One RS256 verification key and its `kid`.
pub struct Key {
    /// The key id tokens name in their header.
    pub kid: Option<String>,
    /// The public key.
    pub key: DecodingKey,
}

/// The usable keys of a JWKS.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`), keeping the RSA keys
    /// meant for signatures with RS256 (or no stated algorithm); returns the
    /// set and how many keys were skipped.
    pub fn parse(bytes: &[u8]) -> Result<(KeySet, usize), String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        let mut skipped = 0;
        for value in document.keys {
            match usable(value) {
                Some(key) => keys.push(key),
                None => skipped += 1,
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token's `kid` names; with no `kid`, the set's key if it
    /// holds exactly one (with several, guessing would be a coin flip).
    pub fn find(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| &k.key),
            None if self.keys.len() == 1 => Some(&self.keys[0].key),
            None => None,
        }
    }
}

/// A key of the set if it can verify RS256 signatures.
fn usable(value: serde_json::Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
        return None;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_algorithm
        .is_some_and(|a| a != KeyAlgorithm::RS256)
    {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        key,
    })
}

/// Where a fetched JWKS comes from and how it is kept fresh.
#[derive(Debug, Clone)]
pub struct JwksSource {
    /// The JWKS URL (`http://…` or `https://…`).
    pub url: String,
    /// A PEM file of root certificates trusted for an https URL besides the
    /// system's (an internal CA); `None`: the system's roots only.
    pub ca_file: Option<PathBuf>,
    /// How often the set is fetched again.
    pub refresh: Duration,
    /// The least time between two fetches caused by unknown `kid`s.
    pub min_refresh: Duration,
    /// Largest JWKS document read, in bytes.
    pub max_bytes: usize,
    /// How long one fetch may take.
    pub timeout: Duration,
}

/// Why a JWKS could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fetching the JWKS at {url}: {message}")]
pub struct FetchError {
    pub url: String,
    pub message: String,
}

/// A JWKS fetched from a URL and kept fresh.
pub struct RemoteJwks {
    source: JwksSource,
    url: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// The current keys; replaced whole by each successful fetch, read by
    /// cloning the `Arc` (never held while anything waits).
    keys: RwLock<Arc<KeySet>>,
    refresh: Mutex<RefreshState>,
    /// Counts finished fetches; callers waiting for one watch it.
    done: watch::Sender<u64>,
}

#[derive(Default)]
struct RefreshState {
    /// A fetch is under way (at most one at a time).
    in_flight: bool,
    /// When an unknown `kid` last caused a fetch.
    last_on_demand: Option<Instant>,
}

impl RemoteJwks {
    /// Fetches the set once (an unreachable URL, a certificate that does not
    /// verify, an unreadable CA file or a set with no usable key is an
    /// error: better not to start than to refuse every client), then
    /// fetches it again every `source.refresh` for as long as the returned
    /// value lives.
    pub async fn start(source: JwksSource) -> Result<Arc<RemoteJwks>, FetchError> {
        let url_text = source.url.clone();
        let error = |message: String| FetchError {
            url: url_text.clone(),
            message,
        };
        let url: http::Uri = source.url.parse().map_err(|e| error(format!("{e}")))?;
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(error("the URL must be http://… or https://…".to_owned())),
        };
        if url.host().is_none() {
            return Err(error("the URL names no host".to_owned()));
        }
        let tls = tls_config(https, source.ca_file.as_deref()).map_err(error)?;
        // `https_or_http`: the scheme of the URL decides; an https URL is
        // never fetched without TLS.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let remote = Arc::new(RemoteJwks {
            url,
            client: Client::builder(TokioExecutor::new()).build(connector),
            keys: RwLock::new(Arc::new(KeySet::default())),
            refresh: Mutex::new(RefreshState::default()),
            done: watch::Sender::new(0),
            source,
        });
        let (set, skipped) = remote.fetch().await.map_err(error)?;
        if set.is_empty() {
            return Err(error(format!(
                "no RS256 signing key in the set ({skipped} other keys)"
            )));
        }
        tracing::info!(url = %remote.source.url, keys = set.len(), skipped, "JWKS fetched");
        *remote.keys.write() = Arc::new(set);
        spawn_periodic_refresh(Arc::downgrade(&remote), remote.source.refresh);
        Ok(remote)
    }

    /// The current keys.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().clone()
    }

    /// A token named a key the set does not hold: fetches the set again
    /// unless one was fetched for this reason less than `min_refresh` ago,
    /// and waits for the fetch under way, if any. Returns whether a fetch
    /// finished meanwhile (then the keys are worth looking at again).
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>) -> bool {
        let mut done = self.done.subscribe();
        let start = {
            let mut state = self.refresh.lock();
            if state.in_flight {
                false
            } else if state
                .last_on_demand
                .is_some_and(|at| at.elapsed() < self.source.min_refresh)
            {
                return false;
            } else {
                state.in_flight = true;
                state.last_on_demand = Some(Instant::now());
                true
            }
        };
        if start {
            // On a task of its own: a client that goes away while waiting
            // must not leave the fetch half done and `in_flight` set.
            let remote = self.clone();
            tokio::spawn(async move { remote.fetch_and_install().await });
        }
        // The fetch is bounded by `timeout`; the margin only covers scheduling.
        let wait = self.source.timeout + Duration::from_secs(1);
        matches!(tokio::time::timeout(wait, done.changed()).await, Ok(Ok(())))
    }

    /// Fetches the set and installs it; on failure the keys in hand stay.
    /// Called with `in_flight` set; clears it.
    async fn fetch_and_install(&self) {
        match self.fetch().await {
            Ok((set, skipped)) if !set.is_empty() => {
                tracing::debug!(url = %self.source.url, keys = set.len(), skipped, "JWKS fetched");
                *self.keys.write() = Arc::new(set);
            }
            Ok(_) => tracing::warn!(
                url = %self.source.url,
                "the JWKS has no RS256 signing key: keeping the keys in hand"
            ),
            Err(message) => tracing::warn!(
                url = %self.source.url,
                %message,
                "fetching the JWKS failed: keeping the keys in hand"
            ),
        }
        self.refresh.lock().in_flight = false;
        self.done.send_modify(|n| *n += 1);
    }

    /// One GET of the set, bounded in time and size.
    async fn fetch(&self) -> Result<(KeySet, usize), String> {
        let request = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("no answer: {}", causes(&e)))?;
            let status = response.status();
            if status != http::StatusCode::OK {
                return Err(format!("answered {status}"));
            }
            let bytes = Limited::new(response.into_body(), self.source.max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    format!(
                        "reading the answer (at most {} bytes): {e}",
                        self.source.max_bytes
                    )
                })?
                .to_bytes();
            KeySet::parse(&bytes)
        };
        tokio::time::timeout(self.source.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} ms",
                    self.source.timeout.as_millis()
                ))
            })
    }
}

/// The TLS settings of the client: the system's roots (for an https URL)
/// plus those of `ca_file`, on the *ring* provider. Certificates are always
/// verified (rustls's WebPKI verifier, host name included).
fn tls_config(https: bool, ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    if https {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "reading the system's trusted certificates");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "the system's trusted certificates");
    }
    if let Some(path) = ca_file {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| format!("reading the CA file {shown}: {e}"))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the CA file {shown} is not valid PEM: {e}"))?;
        if certs.is_empty() {
            return Err(format!("the CA file {shown} holds no certificate"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("the CA file {shown}: a certificate is invalid: {e}"))?;
        }
    }
    if https && roots.is_empty() {
        return Err(
            "no trusted root certificate: the system has none and no CA file is given".to_owned(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An error and its causes, `: `-separated: the client's own error only
/// says "client error (Connect)"; what went wrong (connection refused, the
/// certificate's issuer is unknown…) is in its causes.
///
/// An unknown issuer gets a hint, being what an internal CA missing from
/// the configuration looks like.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut unknown_issuer = false;
    let mut next = error.source();
    while let Some(cause) = next {
        let shown = cause.to_string();
        if !text.ends_with(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        unknown_issuer |= matches!(
            tls_error(cause),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        );
        next = cause.source();
    }
    if unknown_issuer {
        text.push_str(
            " (the server's certificate is not signed by a trusted CA: the system's, or \
             those of the CA file, if one is configured)",
        );
    }
    text
}

/// The TLS error `error` is, if it is one: the connector reports it inside
/// an `io::Error`, itself inside another.
fn tls_error<'a>(mut error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        error = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// Fetches the set every `period` while `remote` lives.
fn spawn_periodic_refresh(remote: std::sync::Weak<RemoteJwks>, period: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(remote) = remote.upgrade() else {
                return;
            };
            let start = {
                let mut state = remote.refresh.lock();
                !std::mem::replace(&mut state.in_flight, true)
            };
            if start {
                remote.fetch_and_install().await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_rs256_signing_keys_only() {
        let file = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-jwks.json"),
        )
        .unwrap();
        let mut document: serde_json::Value = serde_json::from_slice(&file).unwrap();
        let rsa = document["keys"][0].clone();
        let keys = document["keys"].as_array_mut().unwrap();
        // What identity providers publish beside their signing key.
        let mut enc = rsa.clone();
        enc["use"] = "enc".into();
        enc["alg"] = "RSA-OAEP".into();
        enc["kid"] = "enc-1".into();
        let mut es = rsa.clone();
        es["alg"] = "ES256".into();
        es["kid"] = "es-1".into();
        keys.push(enc);
        keys.push(es);
        keys.push(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hs"}));
        keys.push(serde_json::json!({"kty": "RSA", "kid": "broken", "n": "!", "e": "AQAB"}));
        keys.push(serde_json::json!({"kty": "future-kind"}));
        let (set, skipped) = KeySet::parse(document.to_string().as_bytes()).unwrap();
        assert_eq!((set.len(), skipped), (1, 5));
        assert!(set.find(Some("test-key-1")).is_some());
        assert!(
            set.find(None).is_some(),
            "the only key, for a token without kid"
        );
        for kid in ["enc-1", "es-1", "hs", "broken", "nope"] {
            assert!(set.find(Some(kid)).is_none(), "{kid}");
        }
        assert!(KeySet::parse(b"{\"nokeys\":1}").is_err());
        assert!(KeySet::parse(b"<html>").is_err());
    }
}
