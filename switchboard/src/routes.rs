//! The HTTP routes beside Engine.IO, on axum: the publish API
//! (`/api/v1/…`), `/healthz`, `/readyz` (the store answers) and `/metrics`,
//! behind tower-http's tracing and compression layers; every error answered
//! with a JSON body. Engine.IO requests never come here: the listener hands
//! them to the engine directly (`server`).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::reply::{Failure, json_errors, reply};

/// The router of the public listener.
pub fn router(app: &App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        .merge(crate::api::router(app))
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(app.clone())
}

async fn not_found() -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "not_found", "no such path")
}

/// Alive: the process answers.
async fn healthz() -> Response {
    reply(StatusCode::OK, json!({"status": "ok"}))
}

/// Ready to serve: the store answers (within `store.timeout_ms`).
async fn readiness(State(app): State<App>) -> Response {
    let store = &app.store;
    let backend = store.backend().as_str();
    match store.ping().await {
        Ok(took) => reply(
            StatusCode::OK,
            json!({
                "status": "ready",
                "store": {"backend": backend, "latency_ms": took.as_secs_f64() * 1e3},
            }),
        ),
        Err(err) => {
            tracing::warn!(%err, "not ready: the store does not answer");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "status": "unavailable",
                    "error": {"code": "store_unreachable", "message": err.to_string()},
                    "store": {"backend": backend},
                }),
            )
        }
    }
}

/// The operator metrics, in the Prometheus text format.
async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics(),
    )
        .into_response()
}
