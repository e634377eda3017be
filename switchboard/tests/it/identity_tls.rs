//! A JWKS fetched over https, over the wire: a stand-in identity provider
//! serves its JWKS over TLS with a certificate from a CA made for the test.
//! With that CA as `auth.jwks_ca_file`, tokens of the served key are
//! accepted and a key rotated in is accepted without restart; without it
//! (the system does not trust the test CA), or with a certificate for
//! another host name, the hub refuses to start and says why; a CA file
//! that cannot be used is a clear error.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::common::idp::{Idp, connect_code, jwks_of, rs256, secure_config};
use crate::common::*;

/// An RS256 token for `alice` signed with fixture key 1 or 2, naming `kid`.
fn alice(key: u8, kid: &str) -> String {
    let claims = json!({"sub": "alice", "exp": hub::identity::now_secs() + 300});
    rs256(key, Some(kid), &claims)
}

/// A certificate authority made for one test (the Redis TLS tests use it
/// too).
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `names` (host names or IP addresses).
    fn server_cert(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let (cert, key) = self.issue(names);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    /// [`server_cert`](Ca::server_cert) as PEM: the certificate and its
    /// key (for a server configured by files, as redis-server).
    pub(crate) fn server_pem(&self, names: &[&str]) -> (String, String) {
        let (cert, key) = self.issue(names);
        (cert.pem(), key.serialize_pem())
    }

    fn issue(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert, key)
    }

    /// Writes the CA's certificate as PEM into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("ca-{}.pem", rand_suffix()));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

fn auth(url: &str, ca_file: Option<&Path>) -> String {
    let mut auth = format!("jwks_url = {url:?}\njwks_min_refresh_secs = 0\n");
    if let Some(path) = ca_file {
        auth.push_str(&format!(
            "jwks_ca_file = {:?}\n",
            path.display().to_string()
        ));
    }
    auth
}

/// Why a server with `auth` did not start.
async fn start_error(auth: &str) -> String {
    match try_start_raw(&secure_config(auth)).await {
        Ok(_) => panic!("started with {auth}"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn an_https_jwks_from_the_configured_ca_is_used_and_rotates_without_restart() {
    let (dir, _cleanup) = temp_dir("sb-tls");
    let ca = Ca::new("test internal CA");
    let idp = Idp::start_tls(
        ca.server_cert(&["127.0.0.1", "localhost"]),
        jwks_of(&["test-jwks.json"]),
    )
    .await;
    let server = start_raw(&secure_config(&auth(
        &idp.url_for("127.0.0.1"),
        Some(&ca.write(&dir)),
    )))
    .await;
    assert_eq!(idp.requests(), 1, "fetched once at start");
    let old = alice(1, "test-key-1");
    let new = alice(2, "test-key-2");
    assert_eq!(connect_code(server.addr, &old).await, Ok(()));
    assert_eq!(
        connect_code(server.addr, &new).await,
        Err("unknown_key".to_owned())
    );

    // The identity provider rotates to a new key (new kid): accepted
    // without restart.
    idp.serve(jwks_of(&["test-jwks-2.json"]));
    assert_eq!(connect_code(server.addr, &new).await, Ok(()));
    assert_eq!(idp.requests(), 3, "each unknown kid fetched the set again");
    assert_eq!(
        connect_code(server.addr, &old).await,
        Err("unknown_key".to_owned()),
        "the rotated-out key is gone"
    );
}

#[tokio::test]
async fn a_certificate_the_system_does_not_trust_stops_the_start_with_the_tls_error() {
    let (dir, _cleanup) = temp_dir("sb-tls");
    let ca = Ca::new("test internal CA");
    let idp = Idp::start_tls(ca.server_cert(&["127.0.0.1"]), jwks_of(&["test-jwks.json"])).await;
    let url = idp.url_for("127.0.0.1");

    // No CA file: only the system's roots, which do not hold the test CA.
    let error = start_error(&auth(&url, None)).await;
    assert!(
        error.contains(&format!("fetching the JWKS at {url}")),
        "{error}"
    );
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer")
            && error.contains("not signed by a trusted CA"),
        "the error names the TLS failure: {error}"
    );
    // Another CA's file trusts nothing this server shows.
    let other = Ca::new("another CA").write(&dir);
    let error = start_error(&auth(&url, Some(&other))).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert_eq!(idp.requests(), 0, "no JWKS was read over either connection");
}

#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused() {
    let (dir, _cleanup) = temp_dir("sb-tls");
    let ca = Ca::new("test internal CA");
    let ca_file = ca.write(&dir);
    // Valid for `localhost` only: not for the address 127.0.0.1, though the
    // server is there and its CA is trusted.
    let idp = Idp::start_tls(ca.server_cert(&["localhost"]), jwks_of(&["test-jwks.json"])).await;
    let error = start_error(&auth(&idp.url_for("127.0.0.1"), Some(&ca_file))).await;
    assert!(
        error.contains("invalid peer certificate: certificate not valid for name \"127.0.0.1\""),
        "the error names the TLS failure: {error}"
    );
    assert_eq!(idp.requests(), 0);

    // The same certificate, asked for by the name it is for: accepted.
    let server = start_raw(&secure_config(&auth(
        &idp.url_for("localhost"),
        Some(&ca_file),
    )))
    .await;
    assert_eq!(idp.requests(), 1);
    assert_eq!(
        connect_code(server.addr, &alice(1, "test-key-1")).await,
        Ok(())
    );

    // And a certificate for another address than the one asked for.
    let idp = Idp::start_tls(ca.server_cert(&["127.0.0.2"]), jwks_of(&["test-jwks.json"])).await;
    let error = start_error(&auth(&idp.url_for("127.0.0.1"), Some(&ca_file))).await;
    assert!(
        error.contains("not valid for name \"127.0.0.1\""),
        "{error}"
    );
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_used_is_a_clear_error() {
    let (dir, _cleanup) = temp_dir("sb-tls");
    let ca = Ca::new("test internal CA");
    let idp = Idp::start_tls(ca.server_cert(&["127.0.0.1"]), jwks_of(&["test-jwks.json"])).await;
    let url = idp.url_for("127.0.0.1");

    let missing = dir.join("missing.pem");
    let error = start_error(&auth(&url, Some(&missing))).await;
    assert!(
        error.contains(&format!("reading the CA file {}", missing.display())),
        "{error}"
    );

    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let error = start_error(&auth(&url, Some(&not_pem))).await;
    assert!(error.contains("holds no certificate"), "{error}");

    // A PEM block whose content is not a certificate.
    let broken = dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let error = start_error(&auth(&url, Some(&broken))).await;
    assert!(error.contains("a certificate is invalid"), "{error}");
    assert_eq!(idp.requests(), 0);

    // A CA file with no https URL to trust it for is refused at load.
    let ca_file = ca.write(&dir);
    let error = start_error(&auth("http://127.0.0.1:1/certs", Some(&ca_file))).await;
    assert!(error.contains("auth.jwks_ca_file"), "{error}");
}
