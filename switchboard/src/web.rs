//! The web client at `/`: the built `web/dist` (an `index.html`, hashed
//! files under `assets/`, and the build's `.br` and `.gz` beside each
//! compressible file) served by tower-http's `ServeDir` — ETag,
//! Last-Modified, Range, the precompressed files chosen by
//! `Accept-Encoding` (with `Vary: accept-encoding`; the router's
//! compression layer leaves a response that has a `Content-Encoding`
//! alone) and paths that leave the directory refused.
//!
//! On top of it, this module decides what the browser may keep and do:
//! hashed assets are cached for a year (`immutable`), everything else
//! (`index.html`, which names the current assets) is revalidated every
//! time; every static response carries the Content-Security-Policy of the
//! client (no inline script or style), `nosniff` and `no-referrer`.
//!
//! The directory is `web.dir` when set, else found beside the binary (see
//! [`candidates`]), so `target/release/switchboard serve` works from any
//! folder. The API's and dev mode's paths never fall through to it.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

use crate::app::App;
use crate::config::Config;
use crate::reply::Failure;

/// What the page may load and where from: its own files only, the hub's
/// WebSocket (`'self'` covers `ws:`/`wss:` to the same host in CSP 3: no
/// socket to any other host), camera streams and blobs for calls.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; \
     img-src 'self' data:; media-src 'self' blob: mediastream:; style-src 'self'; \
     script-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'";

/// Hashed assets: their name changes with their content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The rest: the browser asks again each time (an ETag makes it a 304).
const NO_CACHE: &str = "no-cache";

/// The built web client, served at `/`.
#[derive(Debug, Clone)]
pub struct WebClient {
    /// The directory served.
    pub dir: PathBuf,
    files: ServeDir,
}

impl WebClient {
    /// The web client of the configuration, if its directory exists (else
    /// a warning naming the paths tried, and `/` says it is not built).
    pub fn from_config(config: &Config) -> Option<WebClient> {
        let tried = candidates(config);
        match tried.iter().find(|dir| dir.join("index.html").is_file()) {
            Some(dir) => {
                tracing::info!(dir = %dir.display(), "serving the web client at /");
                Some(WebClient::new(dir))
            }
            None => {
                let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                tracing::warn!(
                    tried = %tried.join(", "),
                    "the web client is not built (no index.html found): run `make web`"
                );
                None
            }
        }
    }

    /// Serves `dir`.
    pub fn new(dir: &Path) -> WebClient {
        WebClient {
            dir: dir.to_owned(),
            files: ServeDir::new(dir)
                .precompressed_br()
                .precompressed_gzip()
                // `/assets` is no page: no redirect to `/assets/`.
                .redirect_to_trailing_slash(false),
        }
    }
}

/// Where the web client is looked for: `web.dir` (relative to the working
/// directory) when set; else `<exe dir>/../../web/dist` (the repository's
/// `target/release/switchboard` → `<repo>/web/dist`), then `<exe dir>/web`
/// (an installed layout).
pub fn candidates(config: &Config) -> Vec<PathBuf> {
    if !config.web.dir.is_empty() {
        return vec![PathBuf::from(&config.web.dir)];
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned));
    exe_dir.map_or_else(Vec::new, |dir| beside(&dir))
}

/// The candidates beside a binary in `exe_dir`.
fn beside(exe_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // Only for a binary built in a repository (`<repo>/target/<profile>/`,
    // with the workspace's Cargo.toml): elsewhere `../../web/dist` is some
    // other folder (`~/.cargo/bin` → `~/web/dist`), whose `index.html`
    // would run as this origin's script.
    if let Some(repo) = exe_dir
        .parent()
        .filter(|target| target.file_name().is_some_and(|n| n == "target"))
        .and_then(Path::parent)
        .filter(|repo| repo.join("Cargo.toml").is_file())
    {
        dirs.push(repo.join("web").join("dist"));
    }
    dirs.push(exe_dir.join("web"));
    dirs
}

/// Whether `path` belongs to the API or to dev mode, whose unknown paths
/// answer the JSON 404 whatever the method, never a file.
fn reserved(path: &str) -> bool {
    ["/api", "/dev"]
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
}

/// The public router's fallback: a file of the web client, or a JSON 404.
pub async fn serve(State(app): State<App>, request: Request) -> Response {
    let path = request.uri().path();
    if reserved(path) {
        return Failure::new(StatusCode::NOT_FOUND, "not_found", "no such path").into_response();
    }
    let Some(web) = &app.web else {
        let message = match path {
            "/" | "/index.html" => "the web client is not built: run `make web`",
            _ => "no such path",
        };
        return Failure::new(StatusCode::NOT_FOUND, "not_found", message).into_response();
    };
    let cache = if path.starts_with("/assets/") {
        IMMUTABLE
    } else {
        NO_CACHE
    };
    let response = match web.files.clone().oneshot(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    };
    with_headers(response, cache)
}

/// The caching and security headers of a static response. Only what was
/// found is cached; an error is kept by no cache (a CDN's default
/// negative caching would keep an asset's 404 during a deploy).
fn with_headers(mut response: Response, cache: &'static str) -> Response {
    let status = response.status();
    let headers = response.headers_mut();
    let cache = if status.is_success() || status == StatusCode::NOT_MODIFIED {
        cache
    } else {
        "no-store"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_dev_paths_are_reserved() {
        for path in ["/api", "/api/", "/api/v1/nope", "/dev", "/dev/token"] {
            assert!(reserved(path), "{path}");
        }
        for path in ["/", "/apiary.js", "/developer", "/assets/app.js"] {
            assert!(!reserved(path), "{path}");
        }
    }

    #[test]
    fn the_directory_is_configured_or_beside_the_binary() {
        let mut config = Config::default();
        config.web.dir = "public".into();
        assert_eq!(candidates(&config), vec![PathBuf::from("public")]);
        config.web.dir.clear();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(candidates(&config), beside(exe.parent().unwrap()));
        // In a repository's target/<profile>: the repository's web/dist.
        let repo = std::env::temp_dir().join(format!("sb-web-beside-{}", std::process::id()));
        let release = repo.join("target/release");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::write(repo.join("Cargo.toml"), "").unwrap();
        assert_eq!(
            beside(&release),
            vec![repo.join("web/dist"), release.join("web")]
        );
        // Anywhere else (~/.cargo/bin, /usr/local/bin): only <exe dir>/web,
        // never a folder two levels up.
        let bin = repo.join("home/.cargo/bin");
        assert_eq!(beside(&bin), vec![bin.join("web")]);
        std::fs::remove_file(repo.join("Cargo.toml")).unwrap();
        assert_eq!(beside(&release), vec![release.join("web")], "no Cargo.toml");
        std::fs::remove_dir_all(repo).unwrap();
    }
}
