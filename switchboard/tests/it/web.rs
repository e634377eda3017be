//! The web client's side of the hub: the static files at `/` (caching,
//! precompressed files, conditional requests, security headers, paths that
//! leave the directory), the URL `serve` prints, and dev mode's
//! `POST /dev/token` and `GET /dev/mode`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::common::binary::Binary;
use crate::common::{
    Client, RawResponse, RemoveOnDrop, http_raw, rand_suffix, start_raw, try_start_raw,
};

const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     media-src 'self' blob: mediastream:; style-src 'self'; script-src 'self'; \
     frame-ancestors 'self'; base-uri 'none'; form-action 'self'";

const INDEX: &str = "<!doctype html><title>Switchboard</title><script type=module src=/assets/app-abc123.js></script>";

/// The script, big enough for the compression layer to want to compress it.
fn script() -> String {
    "console.log('switchboard');\n".repeat(100)
}

/// Stand-ins for the build's precompressed files: the hub serves them as
/// they are, so distinct bytes show which one was picked.
const SCRIPT_BR: &[u8] = b"\x8b\x02\x80brotli-bytes-of-app-abc123\x03";
const SCRIPT_GZ: &[u8] = b"\x1f\x8b\x08\x00gzip-bytes-of-app-abc123";

/// A fake `web/dist` in a fresh folder, with a file beside it (outside
/// the served directory) that no request may read.
fn fake_dist() -> (PathBuf, RemoveOnDrop) {
    let root = std::env::temp_dir().join(format!("sb-web-{}", rand_suffix()));
    let dist = root.join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), INDEX).unwrap();
    std::fs::write(dist.join("assets/app-abc123.js"), script()).unwrap();
    std::fs::write(dist.join("assets/app-abc123.js.br"), SCRIPT_BR).unwrap();
    std::fs::write(dist.join("assets/app-abc123.js.gz"), SCRIPT_GZ).unwrap();
    std::fs::write(root.join("secret.txt"), "top-secret-outside-dist").unwrap();
    (dist, RemoveOnDrop(root))
}

fn web_config(dist: &Path, dev_mode: bool) -> String {
    format!(
        "dev_mode = {dev_mode}\n[web]\ndir = {:?}\n",
        dist.display().to_string()
    )
}

/// One raw request, its body text sent as it is.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    http_raw(addr, method, path, headers, body.as_bytes()).await
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(addr, "GET", path, headers, "").await
}

fn assert_security_headers(reply: &RawResponse) {
    assert_eq!(reply.header("content-security-policy"), Some(CSP));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
}

#[tokio::test]
async fn the_page_is_served_at_the_root_and_revalidated_every_time() {
    let (dist, _dist) = fake_dist();
    let server = start_raw(&web_config(&dist, false)).await;
    for path in ["/", "/index.html"] {
        let page = get(server.addr, path, &[]).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.body, INDEX.as_bytes(), "{path}");
        assert!(
            page.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(page.header("cache-control"), Some("no-cache"), "{path}");
        assert!(page.header("last-modified").is_some());
        assert_security_headers(&page);
    }
    let head = request(server.addr, "HEAD", "/", &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // A conditional request with the page's ETag: nothing to send again.
    let page = get(server.addr, "/", &[]).await;
    let etag = page.header("etag").expect("an ETag").to_owned();
    let again = get(server.addr, "/", &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("cache-control"), Some("no-cache"));
    let changed = get(server.addr, "/", &[("If-None-Match", "\"other\"")]).await;
    assert_eq!(changed.status, 200);
}

#[tokio::test]
async fn hashed_assets_are_immutable_and_precompressed_files_are_sent_as_they_are() {
    let (dist, _dist) = fake_dist();
    let server = start_raw(&web_config(&dist, false)).await;
    let path = "/assets/app-abc123.js";

    let plain = get(server.addr, path, &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body, script().as_bytes());
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(plain.header("content-type").unwrap().contains("javascript"));
    assert_eq!(plain.header("content-encoding"), None);
    assert_security_headers(&plain);

    // The brotli file, byte for byte: not compressed again on the way out.
    let br = get(server.addr, path, &[("Accept-Encoding", "br, gzip")]).await;
    assert_eq!(br.status, 200);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.body, SCRIPT_BR);
    assert_eq!(br.header("vary"), Some("accept-encoding"));
    assert!(br.header("content-type").unwrap().contains("javascript"));

    let gz = get(server.addr, path, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.body, SCRIPT_GZ);
    assert_eq!(gz.header("vary"), Some("accept-encoding"));

    let etag = br.header("etag").unwrap().to_owned();
    let again = get(
        server.addr,
        path,
        &[("Accept-Encoding", "br"), ("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert_eq!(
        again.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    let range = get(server.addr, path, &[("Range", "bytes=0-6")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.body, b"console");
}

#[tokio::test]
async fn unknown_paths_and_paths_out_of_the_directory_answer_a_json_404() {
    let (dist, _dist) = fake_dist();
    let server = start_raw(&web_config(&dist, false)).await;
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/%2fetc%2fpasswd",
        "/nope.js",
        "/assets/nope-123.js",
    ] {
        let reply = get(server.addr, path, &[]).await;
        assert_eq!(reply.status, 404, "{path}");
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("top-secret"),
            "{path}"
        );
        assert_eq!(reply.json()["error"]["code"], "not_found", "{path}");
        // A miss is kept by no cache (not for a year, nor by a CDN's
        // negative caching).
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
    }
    // The API's unknown paths stay the API's, whatever the method.
    for (method, path) in [("GET", "/api/nope"), ("POST", "/api/v2/x"), ("GET", "/api")] {
        let reply = request(server.addr, method, path, &[], "").await;
        assert_eq!(reply.status, 404, "{method} {path}");
        assert_eq!(reply.json()["error"]["code"], "not_found");
        assert_eq!(reply.header("content-security-policy"), None);
    }
    // Files are read, never written.
    for method in ["POST", "PUT", "DELETE"] {
        let reply = request(server.addr, method, "/index.html", &[], "x").await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.json()["error"]["code"], "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("GET,HEAD"));
    }
    // The health check is still its own.
    assert_eq!(get(server.addr, "/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn without_a_built_client_the_root_says_so() {
    let root = std::env::temp_dir().join(format!("sb-web-missing-{}", rand_suffix()));
    let server = start_raw(&web_config(&root.join("dist"), false)).await;
    assert!(server.app.web.is_none());
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(reply.status, 404);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "not_found");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not built") && message.contains("make web"),
        "{message}"
    );
    assert_eq!(get(server.addr, "/healthz", &[]).await.status, 200);
}

async fn dev_token(addr: SocketAddr, body: &str) -> RawResponse {
    request(
        addr,
        "POST",
        "/dev/token",
        &[("Content-Type", "application/json")],
        body,
    )
    .await
}

#[tokio::test]
async fn dev_mode_off_has_no_token_endpoint() {
    let (dist, _dist) = fake_dist();
    let server = start_raw(&web_config(&dist, false)).await;
    let reply = dev_token(server.addr, r#"{"user":"alice"}"#).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], "not_found");
    assert_eq!(get(server.addr, "/dev/token", &[]).await.status, 404);
    // Nor is it in the publish API's document.
    let doc = get(server.addr, "/api/v1/openapi.json", &[]).await;
    assert_eq!(doc.status, 200);
    assert!(!String::from_utf8_lossy(&doc.body).contains("/dev/"));
}

#[tokio::test]
async fn dev_mode_signs_a_token_a_socket_connects_with() {
    let (dist, _dist) = fake_dist();
    let server = start_raw(&format!(
        "dev_token_ttl_secs = 600\n{}",
        web_config(&dist, true)
    ))
    .await;
    let reply = dev_token(server.addr, r#"{"user":"alice.smith-2"}"#).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["user"], "alice.smith-2");
    let expires_at = body["expires_at"].as_u64().unwrap();
    let now = hub::identity::now_secs();
    assert!(
        (now + 590..=now + 610).contains(&expires_at),
        "{expires_at} vs {now}"
    );
    let token = body["token"].as_str().unwrap();

    // The ESN's namespaces take it (the default ones: /chat with auth).
    let mut client = Client::open(server.addr).await;
    client
        .send(&format!(r#"40/chat,{{"token":"{token}"}}"#))
        .await;
    let connected = client.recv().await;
    assert!(connected.starts_with("40/chat,{\"sid\""), "{connected}");
    // A made-up token is still refused there.
    let mut other = Client::open(server.addr).await;
    other.send(r#"40/chat,{"token":"not-a-token"}"#).await;
    let refused = other.recv().await;
    assert!(refused.starts_with("44/chat,"), "{refused}");
}

/// The web client's sign-in page asks `GET /dev/mode` whether to show its
/// form: a 200 in either mode (a failing probe is an error in the
/// browser's console on every fresh load), and a name only where
/// `/dev/token` would sign one.
#[tokio::test]
async fn dev_mode_says_whether_sign_in_by_name_is_available() {
    let (dist, _dist) = fake_dist();
    for dev_mode in [false, true] {
        let server = start_raw(&web_config(&dist, dev_mode)).await;
        let reply = get(server.addr, "/dev/mode", &[]).await;
        assert_eq!(reply.status, 200, "dev_mode = {dev_mode}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let body = reply.json();
        assert_eq!(body["dev_mode"], dev_mode);
        assert_eq!(body["sign_in_by_name"], dev_mode);
        // Asked through a host name that is not local, dev mode signs no
        // token (403): the page is told so and shows no form.
        let remote = get(server.addr, "/dev/mode", &[("Host", "chat.example.com")]).await;
        assert_eq!(remote.status, 200);
        assert_eq!(remote.json()["dev_mode"], dev_mode);
        assert_eq!(remote.json()["sign_in_by_name"], false);
        let status = dev_token(server.addr, r#"{"user":"alice"}"#).await.status;
        assert_eq!(status, if dev_mode { 200 } else { 404 });
    }
}

#[tokio::test]
async fn dev_mode_refuses_bad_user_names_and_bodies() {
    let (dist, _dist) = fake_dist();
    let server = start_raw(&web_config(&dist, true)).await;
    let long = format!(r#"{{"user":"{}"}}"#, "x".repeat(65));
    for body in [
        r#"{"user":""}"#,
        r#"{"user":"a b"}"#,
        r#"{"user":"<script>"}"#,
        r#"{"user":"al/ice"}"#,
        r#"{"user":"élise"}"#,
        r#"{"user":42}"#,
        r#"{"name":"alice"}"#,
        long.as_str(),
        "user=alice",
        "",
    ] {
        let reply = dev_token(server.addr, body).await;
        assert_eq!(reply.status, 400, "{body}");
        let json = reply.json();
        assert_eq!(json["error"]["code"], "bad_request", "{body}");
        assert!(json["error"]["message"].as_str().unwrap().len() > 5);
    }
    let reply = request(
        server.addr,
        "POST",
        "/dev/token",
        &[("Content-Type", "text/plain")],
        r#"{"user":"alice"}"#,
    )
    .await;
    assert_eq!(reply.status, 415);
    assert_eq!(reply.json()["error"]["code"], "unsupported_media_type");
    let reply = get(server.addr, "/dev/token", &[]).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.json()["error"]["code"], "method_not_allowed");
    let big = format!(r#"{{"user":"alice","pad":"{}"}}"#, "x".repeat(10_000));
    assert_eq!(dev_token(server.addr, &big).await.status, 400);
}

#[tokio::test]
async fn dev_mode_cannot_start_when_tokens_are_rs256_only() {
    let err =
        try_start_raw("dev_mode = true\n[auth]\nrs256_public_key_file = \"/nowhere/key.pem\"\n")
            .await
            .err()
            .expect("the start is refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("dev_mode") && message.contains("RS256"),
        "{message}"
    );
}

/// Runs the binary on `web_dir` from a folder of its own; its stdout lines
/// until it is killed, once `/healthz` answered (the first is the
/// `listening on` line).
async fn binary_output(web_dir: &Path) -> Vec<String> {
    let mut server = Binary::spawn(&web_config(web_dir, false), |command, dir| {
        command.current_dir(dir);
    })
    .await;
    assert_eq!(
        server.before,
        Vec::<String>::new(),
        "the first line listens"
    );
    assert_eq!(get(server.addr, "/healthz", &[]).await.status, 200);
    server.child.kill().await.unwrap();
    let mut output = vec![format!("listening on {}", server.addr)];
    while let Some(line) = server.stdout.next_line().await.unwrap() {
        output.push(line);
    }
    output
}

#[tokio::test]
async fn the_binary_prints_the_url_to_open_after_the_listening_line() {
    let (dist, _dist) = fake_dist();
    let output = binary_output(&dist).await;
    let addr = output[0].strip_prefix("listening on ").unwrap();
    assert_eq!(output[1], format!("open http://{addr}/ in a browser"));

    let missing = std::env::temp_dir().join(format!("sb-web-none-{}", rand_suffix()));
    let output = binary_output(&missing).await;
    assert!(
        !output.iter().any(|line| line.starts_with("open ")),
        "{output:?}"
    );
}

#[tokio::test]
async fn dev_mode_tokens_stop_working_once_dev_mode_is_off_and_other_sites_get_none() {
    let (dist, _dist) = fake_dist();
    let auth = "[auth]\nhs256_secret = \"one-secret-for-both\"\n";
    let dev = start_raw(&format!("{}{auth}", web_config(&dist, true))).await;
    let prod = start_raw(&format!("{}{auth}", web_config(&dist, false))).await;
    let reply = dev_token(dev.addr, r#"{"user":"ceo"}"#).await;
    assert_eq!(reply.status, 200);
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    // The same secret verifies it, but the hub without dev mode refuses
    // a token its dev mode signed; the dev hub takes it.
    for (addr, taken) in [(dev.addr, true), (prod.addr, false)] {
        let mut client = Client::open(addr).await;
        client
            .send(&format!(r#"40/chat,{{"token":"{token}"}}"#))
            .await;
        let reply = client.recv().await;
        assert_eq!(reply.starts_with("40/chat,{\"sid\""), taken, "{reply}");
    }
    // A page of another site whose name was rebound to this address.
    let reply = request(
        dev.addr,
        "POST",
        "/dev/token",
        &[
            ("Content-Type", "application/json"),
            ("Host", "rebound.example:3000"),
        ],
        r#"{"user":"ceo"}"#,
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["code"], "forbidden");
}
