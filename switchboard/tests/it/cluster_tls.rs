//! Cluster mode over TLS to Redis (`rediss://`): a redis-server of the
//! test's own speaks TLS only, with a certificate from a CA made for the
//! test. Two nodes given that CA (`cluster.redis_ca_file`) connect, and a
//! broadcast from one reaches a socket on the other; a node given another
//! CA never becomes ready and `/readyz` says the certificate is why; a CA
//! file that cannot be used stops the start.
//!
//! Skipped, with a message, outside CI when the test Redis is not given or
//! the local redis-server is built without TLS; in CI both must work.

use crate::cluster::OwnRedis;
use crate::common::*;
use crate::identity_tls::Ca;

/// A TLS-only Redis with a certificate for 127.0.0.1 from `ca`, or `None`
/// (after saying why) when this machine cannot run one outside CI.
fn tls_redis(ca: &Ca) -> Option<OwnRedis> {
    redis_url()?;
    let (cert, key) = ca.server_pem(&["127.0.0.1", "localhost"]);
    match OwnRedis::start_tls(&cert, &key) {
        Ok(redis) => Some(redis),
        Err(why) if std::env::var("CI").is_err() => {
            eprintln!("no redis-server with TLS here ({why}): skipping the TLS cluster test");
            None
        }
        Err(why) => panic!("CI must run the TLS cluster tests: {why}"),
    }
}

/// The `[cluster]` key trusting the CA written at `path`.
fn ca_key(path: &std::path::Path) -> String {
    format!("redis_ca_file = {:?}\n", path.display().to_string())
}

#[tokio::test]
async fn nodes_trusting_the_redis_ca_connect_over_tls_and_broadcasts_cross() {
    let ca = Ca::new("test redis CA");
    let Some(redis) = tls_redis(&ca) else {
        return;
    };
    let (dir, _cleanup) = temp_dir("sb-redis-tls");
    let Some(nodes) = start_cluster_on(2, "", &redis.url(), &ca_key(&ca.write(&dir))).await else {
        return;
    };
    let body = until_readyz(nodes[1].addr, 200).await;
    assert_eq!(body["cluster"]["subscribe"], "up", "{body}");

    let (mut sender, _) = Client::connect(nodes[0].addr).await;
    let (mut receiver, _) = Client::connect(nodes[1].addr).await;
    sender
        .emit(1, "broadcast", r#"{"event":"news","data":"over tls"}"#)
        .await;
    assert_eq!(
        without_offset(receiver.recv().await),
        r#"42["news","over tls"]"#
    );
    let stats = nodes[1].app.cluster.as_ref().unwrap().stats();
    assert!(stats.delivered >= 1, "{stats:?}");
}

#[tokio::test]
async fn a_node_that_does_not_trust_the_redis_certificate_stays_unready_and_says_why() {
    let ca = Ca::new("test redis CA");
    let Some(redis) = tls_redis(&ca) else {
        return;
    };
    let Some((_, database)) = postgres_database().await else {
        return;
    };
    let (dir, _cleanup) = temp_dir("sb-redis-tls");
    let other = Ca::new("another CA").write(&dir);
    let server = start(&cluster_sections(
        &redis.url(),
        &format!("url = {database:?}"),
        &format!("connect_timeout_ms = 500\n{}", ca_key(&other)),
    ))
    .await;
    // Not ready while it connects, nor after the handshake failed: wait
    // for the failure itself to be reported.
    let body = tokio::time::timeout(WAIT, async {
        loop {
            let response = http(server.addr, "GET", "/readyz", &[], "").await;
            assert_eq!(response.status, 503, "{}", response.body);
            let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
            if body["error"]["message"] != "connecting to Redis" {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("/readyz never reported the TLS failure");
    assert_eq!(body["error"]["code"], "bus_unreachable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    // What failed, and which trust to fix.
    assert!(message.contains("invalid peer certificate"), "{message}");
    assert!(message.contains("cluster.redis_ca_file"), "{message}");
    assert!(!server.app.cluster.as_ref().unwrap().health().is_up());
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_used_stops_the_start_and_says_why() {
    let (dir, _cleanup) = temp_dir("sb-redis-tls");
    let not_pem = dir.join("not-a-ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let cases = [
        (
            "rediss://127.0.0.1:6379",
            dir.join("missing.pem"),
            "cluster.redis_ca_file: cannot read",
        ),
        (
            "rediss://127.0.0.1:6379",
            not_pem.clone(),
            "holds no PEM certificate",
        ),
        (
            "redis://127.0.0.1:6379",
            not_pem,
            "cluster.redis_ca_file: is set but cluster.redis_url is redis://",
        ),
    ];
    for (url, path, expected) in cases {
        let err = try_start_raw(&cluster_sections(
            url,
            "url = \"postgres://127.0.0.1:1/none\"",
            &ca_key(&path),
        ))
        .await
        .err()
        .expect("a cluster with an unusable CA file started");
        let message = format!("{err:#}");
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    // redis-rs's "verify nothing" is refused, pointing to the CA file.
    let err = try_start_raw(&cluster_sections(
        "rediss://127.0.0.1:6379/#insecure",
        "url = \"postgres://127.0.0.1:1/none\"",
        "",
    ))
    .await
    .err()
    .expect("a cluster with #insecure started");
    let message = format!("{err:#}");
    assert!(message.contains("cluster.redis_ca_file"), "{message}");
}
