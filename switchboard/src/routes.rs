//! The HTTP routes beside Engine.IO, on axum: the publish API
//! (`/api/v1/…`), `/healthz`, `/readyz` (the store answers; in cluster
//! mode, Redis too) and `/metrics`,
//! behind tower-http's tracing and compression layers; every error answered
//! with a JSON body. Engine.IO requests never come here: the listener hands
//! them to the engine directly (`server`). In dev mode, `POST /dev/token`
//! (`dev`), and `GET /dev/mode` always (whether it is dev mode); every other path is the web client's (`web`).
//!
//! The operator endpoints — `/metrics` and the detail of `/readyz` (the
//! store's backend, latency, error) — can be kept off the public listener
//! (`server.admin_listen`: served only there) and behind a bearer token
//! (`server.metrics_token`); see [`Operator`].
//!
//! `/readyz` is unauthenticated, so its store ping is shared: concurrent
//! requests wait for one ping, and its outcome is reused for
//! `server.readiness_cache_ms` (see [`Readiness`]); a flood of `/readyz`
//! does not become a flood of database queries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use serde_json::json;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::api::constant_time_eq;
use crate::app::App;
use crate::config::Config;
use crate::reply::{Failure, json_errors, reply};

/// Where and to whom a listener shows the operator endpoints.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Whether this listener serves them (false on the public listener
    /// when an admin listener is configured).
    here: bool,
    /// The bearer token they require, if any.
    token: Option<String>,
    /// The store check `/readyz` shares between requests.
    readiness: Arc<Readiness>,
}

impl Operator {
    /// On the public listener: unless an admin listener takes them.
    pub fn public(config: &Config) -> Operator {
        Operator {
            here: config.server.admin_listen.is_empty(),
            token: Operator::token_of(config),
            readiness: Readiness::new(config),
        }
    }

    /// On the admin listener.
    pub fn admin(config: &Config) -> Operator {
        Operator {
            here: true,
            token: Operator::token_of(config),
            readiness: Readiness::new(config),
        }
    }

    fn token_of(config: &Config) -> Option<String> {
        Some(config.server.metrics_token.clone()).filter(|t| !t.is_empty())
    }

    /// Whether this request may see them: served here, and with the token
    /// when one is configured (compared in constant time).
    fn admits(&self, headers: &HeaderMap) -> Result<(), Failure> {
        if !self.here {
            return Err(not_found_failure());
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
            Ok(())
        } else {
            Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the metrics token is required (Authorization: Bearer TOKEN)",
            ))
        }
    }
}

/// What a store check found: its latency, or the error's text.
type Outcome = Result<Duration, String>;

/// The store check behind `/readyz`, shared by the requests of one
/// listener: at most one ping in flight, and its outcome reused for a
/// while. The ping runs in its own task, so a request that goes away does
/// not cancel it for the others; the lock is never held across an await.
#[derive(Debug)]
pub struct Readiness {
    /// How long an outcome is reused (`server.readiness_cache_ms`).
    ttl: Duration,
    state: parking_lot::Mutex<Check>,
}

#[derive(Debug)]
enum Check {
    None,
    /// A ping in flight; its outcome arrives on the channel.
    Pending(tokio::sync::watch::Receiver<Option<Outcome>>),
    /// The last outcome, and when it was known.
    Done(Instant, Outcome),
}

impl Readiness {
    fn new(config: &Config) -> Arc<Readiness> {
        Arc::new(Readiness {
            ttl: Duration::from_millis(config.server.readiness_cache_ms),
            state: parking_lot::Mutex::new(Check::None),
        })
    }

    /// The store's state: a recent outcome, the one of the ping in flight,
    /// or a new ping's.
    async fn check(self: &Arc<Self>, app: &App) -> Outcome {
        let mut receiver = {
            let mut state = self.state.lock();
            match &*state {
                Check::Done(at, outcome) if at.elapsed() < self.ttl => return outcome.clone(),
                Check::Pending(receiver) => receiver.clone(),
                _ => {
                    let (sender, receiver) = tokio::sync::watch::channel(None);
                    *state = Check::Pending(receiver.clone());
                    let this = self.clone();
                    let store = app.store.clone();
                    tokio::spawn(async move {
                        let outcome = store.ping().await.map_err(|err| {
                            tracing::warn!(%err, "not ready: the store does not answer");
                            err.to_string()
                        });
                        *this.state.lock() = Check::Done(Instant::now(), outcome.clone());
                        let _ = sender.send(Some(outcome));
                    });
                    receiver
                }
            }
        };
        let outcome = match receiver.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| {
            // The task ended without an outcome (the runtime is stopping):
            // let the next request start a new check.
            let mut state = self.state.lock();
            if matches!(&*state, Check::Pending(r) if r.same_channel(&receiver)) {
                *state = Check::None;
            }
            Err("the store check was interrupted".into())
        })
    }
}

/// The router of the public listener.
pub fn router(app: &App, operator: Operator) -> Router {
    let mut routes = operator_routes()
        .merge(crate::api::router(app))
        .merge(crate::dev::mode_router());
    if app.dev.is_some() {
        routes = routes.merge(crate::dev::router());
    }
    // Any other path is the web client's (or a JSON 404).
    with_layers(routes.fallback(crate::web::serve), app, operator)
}

/// The router of the admin listener: the operator endpoints only.
pub fn admin_router(app: &App, operator: Operator) -> Router {
    with_layers(operator_routes().fallback(not_found), app, operator)
}

/// What every listener's routes share: who sees the operator endpoints,
/// JSON bodies on the framework's own errors, compression, tracing.
fn with_layers(routes: Router<App>, app: &App, operator: Operator) -> Router {
    routes
        .layer(Extension(operator))
        .layer(axum::middleware::map_response(json_errors))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(app.clone())
}

fn operator_routes() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
}

fn not_found_failure() -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "not_found", "no such path")
}

async fn not_found() -> Failure {
    not_found_failure()
}

/// Alive: the process answers.
async fn healthz() -> Response {
    reply(StatusCode::OK, json!({"status": "ok"}))
}

/// Ready to serve: the store answers (within `store.timeout_ms`) and, in
/// cluster mode, both connections to Redis work — a node that cannot reach
/// the bus is `degraded` (503): its sockets would miss what other nodes
/// emit, so a load balancer should send new clients elsewhere. The detail
/// (backend, latency, the bus, the error) only for the operator.
async fn readiness(
    State(app): State<App>,
    Extension(operator): Extension<Operator>,
    headers: HeaderMap,
) -> Response {
    let detailed = operator.admits(&headers).is_ok();
    let backend = app.store.backend().as_str();
    let bus = app.cluster.as_ref().map(|cluster| {
        let health = cluster.health();
        let state = |up: bool| if up { "up" } else { "down" };
        let detail = json!({
            "uid": cluster.uid(),
            "publish": state(health.publish_up),
            "subscribe": state(health.subscribe_up),
            "nodes": cluster.nodes(),
        });
        (health, detail)
    });
    match operator.readiness.check(&app).await {
        Ok(_) if bus.as_ref().is_some_and(|(health, _)| !health.is_up()) => {
            let body = match bus.filter(|_| detailed) {
                Some((health, detail)) => json!({
                    "status": "degraded",
                    "error": {
                        "code": "bus_unreachable",
                        "message": health.error.unwrap_or_else(|| "connecting to Redis".into()),
                    },
                    "store": {"backend": backend},
                    "cluster": detail,
                }),
                None => json!({"status": "degraded"}),
            };
            reply(StatusCode::SERVICE_UNAVAILABLE, body)
        }
        Ok(_) if !detailed => reply(StatusCode::OK, json!({"status": "ready"})),
        Ok(took) => {
            let mut body = json!({
                "status": "ready",
                "store": {"backend": backend, "latency_ms": took.as_secs_f64() * 1e3},
            });
            if let Some((_, detail)) = bus {
                body["cluster"] = detail;
            }
            reply(StatusCode::OK, body)
        }
        Err(err) => {
            let body = if detailed {
                json!({
                    "status": "unavailable",
                    "error": {"code": "store_unreachable", "message": err},
                    "store": {"backend": backend},
                })
            } else {
                json!({"status": "unavailable"})
            };
            reply(StatusCode::SERVICE_UNAVAILABLE, body)
        }
    }
}

/// The operator metrics, in the Prometheus text format.
async fn metrics(
    State(app): State<App>,
    Extension(operator): Extension<Operator>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    operator.admits(&headers)?;
    Ok((
        [(http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics(),
    )
        .into_response())
}
