//! The HTTP routes beside Engine.IO: the publish API (`/api/v1/…`),
//! `/healthz`, `/readyz` (the store answers) and `/metrics`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::app::App;

impl App {
    pub(crate) async fn route(self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if self.engine.matches_path(path) {
            return self.engine.handle(req).await;
        }
        if let Some(raw) = &self.raw_engine
            && raw.matches_path(path)
        {
            return raw.handle(req).await;
        }
        if path.starts_with("/api/v1/") {
            let response = crate::api::handle(&self.io, &self.api, req).await;
            *self
                .api_requests
                .lock()
                .entry(response.status().as_u16())
                .or_default() += 1;
            return response;
        }
        match (req.method(), path) {
            (&http::Method::GET, "/healthz") => {
                crate::api::reply(StatusCode::OK, serde_json::json!({"status": "ok"}))
            }
            (&http::Method::GET, "/readyz") => self.readiness().await,
            (&http::Method::GET, "/metrics") => {
                let mut response = Response::new(Full::from(self.metrics()));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => crate::api::failure(StatusCode::NOT_FOUND, "not_found", "no such path"),
        }
    }

    /// Ready to serve: the store answers (within `store.timeout_ms`).
    async fn readiness(&self) -> Response<Full<Bytes>> {
        let backend = self.store.backend().as_str();
        match self.store.ping().await {
            Ok(took) => crate::api::reply(
                StatusCode::OK,
                serde_json::json!({
                    "status": "ready",
                    "store": {"backend": backend, "latency_ms": took.as_secs_f64() * 1e3},
                }),
            ),
            Err(err) => {
                tracing::warn!(%err, "not ready: the store does not answer");
                crate::api::reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({
                        "status": "unavailable",
                        "error": {"code": "store_unreachable", "message": err.to_string()},
                        "store": {"backend": backend},
                    }),
                )
            }
        }
    }
}
