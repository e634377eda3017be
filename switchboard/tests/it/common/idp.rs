//! Identity as the identity-provider tests need it: the RSA keys and JWKS
//! of `hub/tests/fixtures`, RS256 tokens signed with them, a server whose
//! `/secure` namespace needs a token, and a stand-in identity provider
//! serving a JWKS that the test changes, over http or https.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{connect_secure, fake_http};

/// Where the identity provider serves its JWKS.
pub const JWKS_PATH: &str = "/realms/esn/certs";

/// A file of `hub/tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../hub/tests/fixtures")
        .join(name)
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// A JWKS holding the keys of the given fixture sets.
pub fn jwks_of(files: &[&str]) -> String {
    let keys: Vec<Value> = files
        .iter()
        .flat_map(|f| {
            let set: Value = serde_json::from_str(&fixture_text(f)).unwrap();
            set["keys"].as_array().unwrap().clone()
        })
        .collect();
    json!({"keys": keys}).to_string()
}

/// An RS256 token signed with fixture key 1 or 2, with `kid` in its header.
pub fn rs256(key: u8, kid: Option<&str>, claims: &Value) -> String {
    let file = match key {
        1 => "test-rsa-private.pem",
        _ => "test-rsa-2-private.pem",
    };
    let pem = std::fs::read(fixture(file)).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

/// A configuration whose `/secure` namespace needs a token, with `auth` as
/// its `[auth]` section.
pub fn secure_config(auth: &str) -> String {
    format!(
        "[auth]\n{auth}\n[[namespaces]]\nname = \"/secure\"\nhandler = \"pubsub\"\nauth = true\n"
    )
}

/// Sends CONNECT to `/secure` with `token`: `Ok(())` when admitted, or the
/// `connect_error` code (of an `unauthorized` refusal).
pub async fn connect_code(addr: SocketAddr, token: &str) -> Result<(), String> {
    let (_client, reply) = connect_secure(addr, &json!({"token": token}).to_string()).await;
    if reply.starts_with("40/secure,{\"sid\"") {
        return Ok(());
    }
    let body: Value = serde_json::from_str(
        reply
            .strip_prefix("44/secure,")
            .unwrap_or_else(|| panic!("{reply}")),
    )
    .unwrap();
    assert_eq!(body["message"], "unauthorized", "{reply}");
    Err(body["data"]["code"].as_str().unwrap().to_owned())
}

/// A stand-in identity provider serving a JWKS at [`JWKS_PATH`] that the
/// test changes; it counts the requests (over https, only those made
/// after a TLS handshake succeeded) and reports each one on `served`.
pub struct Idp {
    pub addr: SocketAddr,
    jwks: Arc<parking_lot::Mutex<String>>,
    requests: Arc<AtomicUsize>,
    /// The count of requests, reported as each is served.
    pub served: mpsc::UnboundedReceiver<usize>,
    tls: bool,
}

impl Idp {
    /// Over http.
    pub async fn start(jwks: String) -> Idp {
        Idp::serve_on(None, jwks).await
    }

    /// Over https with `cert` (from a CA the test made).
    pub async fn start_tls(
        cert: (CertificateDer<'static>, PrivateKeyDer<'static>),
        jwks: String,
    ) -> Idp {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.0], cert.1)
            .unwrap();
        Idp::serve_on(Some(TlsAcceptor::from(Arc::new(config))), jwks).await
    }

    async fn serve_on(tls: Option<TlsAcceptor>, jwks: String) -> Idp {
        let over_tls = tls.is_some();
        let jwks = Arc::new(parking_lot::Mutex::new(jwks));
        let requests = Arc::new(AtomicUsize::new(0));
        let (tx, served) = mpsc::unbounded_channel();
        let (set, count) = (jwks.clone(), requests.clone());
        let addr = fake_http::serve(tls, move |request, _body| {
            let body = set.lock().clone();
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = tx.send(n);
            async move {
                assert_eq!(request.uri.path(), JWKS_PATH);
                fake_http::respond(200, body)
            }
        })
        .await;
        Idp {
            addr,
            jwks,
            requests,
            served,
            tls: over_tls,
        }
    }

    /// Its JWKS URL, naming it by its address.
    pub fn url(&self) -> String {
        self.url_for(&self.addr.ip().to_string())
    }

    /// Its JWKS URL, naming it by `host` (`127.0.0.1` or `localhost`).
    pub fn url_for(&self, host: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}{JWKS_PATH}", self.addr.port())
    }

    /// Serves `jwks` from now on.
    pub fn serve(&self, jwks: String) {
        *self.jwks.lock() = jwks;
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
