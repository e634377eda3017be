//! JSON answers of the HTTP routes: a reply with a status, and the failure
//! `{ok:false, error:{code, message}}`, also given to the bare error
//! responses that axum and tower-http produce themselves (an unknown
//! method, a body over the limit), so that every 4xx carries a JSON body.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

/// `body` as JSON, with `status`.
pub fn reply(status: StatusCode, body: Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A refusal or failure, answered `{ok:false, error:{code, message}}`.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before asking again (a `Retry-After` header).
    pub retry_after: Option<u64>,
}

impl Failure {
    pub fn new(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> Failure {
        Failure {
            status,
            code,
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// The same failure, telling the client to wait `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Failure {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = reply(
            self.status,
            json!({"ok": false, "error": {"code": self.code, "message": self.message}}),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Gives an error response that is not JSON (axum's 405, tower-http's 413,
/// a path extractor's 400) the JSON failure body, keeping its status and
/// headers (`Allow`, …).
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such path"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed here"),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send JSON"),
        s if s.is_server_error() => ("internal_error", "the server could not answer"),
        _ => ("bad_request", "the request is invalid"),
    };
    let (mut parts, _) = response.into_parts();
    let mut json = Failure::new(status, code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *json.headers_mut() = parts.headers;
    json
}
