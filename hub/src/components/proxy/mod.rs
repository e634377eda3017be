//! Proxy namespaces: a component written in another language owns a
//! namespace through HTTP. Each client event is POSTed to the backend as
//! `{namespace, event, user, socket, data}` (`data`: the event's first
//! argument) and the response body becomes the ack; `subscribe` goes the
//! same way and the backend answers `{rooms: [...]}`, the rooms to join.
//! A backend error or timeout becomes `{ok:false, error}` with a generic
//! message (`backend_error`, `backend_unavailable`, `backend_timeout`): what
//! the backend said goes to the log, never to clients. A backend's own
//! `{ok:false, error}` answer (HTTP 2xx) is its reply and reaches the client.
//!
//! With a secret, every request is signed ([`crate::signature`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use socketio::{Args, Socket};

use crate::auth::identity_of;
use crate::component::{Component, ErrorCode, HubError, Reply};
use crate::identity::Identity;

/// Largest backend response read, in bytes.
const MAX_RESPONSE: usize = 1 << 20;

/// A namespace owned by an HTTP backend.
pub struct Proxy {
    url: http::Uri,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Signs each request when set.
    secret: Option<Arc<[u8]>>,
}

/// What the client sees when the backend failed; the detail is logged.
const BACKEND_FAILED: &str = "the backend could not handle the event";

/// The first bytes of a backend's answer, for the log.
fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 256;
    let cut = &bytes[..bytes.len().min(MAX)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > MAX {
        text.push('…');
    }
    text
}

impl Proxy {
    /// A proxy to `url` (http://…), waiting at most `timeout` per request.
    pub fn new(url: &str, timeout: Duration) -> Result<Proxy, HubError> {
        let url: http::Uri = url
            .parse()
            .map_err(|e| HubError::new(ErrorCode::InvalidBackend, format!("{url:?}: {e}")))?;
        if url.scheme_str() != Some("http") {
            return Err(HubError::new(
                ErrorCode::InvalidBackend,
                "backend URLs must be http://",
            ));
        }
        Ok(Proxy {
            url,
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
            secret: None,
        })
    }

    /// Signs every request with `secret` (see [`crate::signature`]).
    pub fn with_secret(mut self, secret: &str) -> Proxy {
        self.secret = Some(Arc::from(secret.as_bytes()));
        self
    }

    /// POSTs a request for `socket` and returns the backend's JSON object.
    fn call(
        &self,
        socket: &Arc<Socket>,
        user: Option<Identity>,
        event: &str,
        data: Value,
    ) -> impl Future<Output = Result<serde_json::Map<String, Value>, HubError>> + Send + 'static
    {
        let body = json!({
            "namespace": socket.namespace().name(),
            "event": event,
            "user": user.map(|id| id.user),
            "socket": socket.id().as_str(),
            "data": data,
        });
        let body = Bytes::from(body.to_string());
        let mut request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let timestamp = crate::identity::now_secs();
            request = request
                .header(crate::signature::TIMESTAMP_HEADER, timestamp)
                .header(
                    crate::signature::SIGNATURE_HEADER,
                    crate::signature::sign(secret, timestamp, &body),
                );
        }
        let request = request.body(Full::new(body));
        let client = self.client.clone();
        let timeout = self.timeout;
        let namespace = socket.namespace().name().to_owned();
        let event = event.to_owned();
        async move {
            // Every failure is logged with its detail and answered with a
            // generic message: a backend's error text may hold anything.
            let failed = |code: ErrorCode, client_message: &str, detail: String| {
                // Debug-quoted: a backend's text cannot forge log lines.
                tracing::warn!(%namespace, %event, code = code.as_str(), ?detail, "backend request failed");
                HubError::new(code, client_message)
            };
            let request = request
                .map_err(|e| failed(ErrorCode::BackendError, BACKEND_FAILED, e.to_string()))?;
            let exchange = async {
                let response = client.request(request).await.map_err(|e| {
                    failed(
                        ErrorCode::BackendUnavailable,
                        "the backend is unavailable",
                        format!("{e:?}"),
                    )
                })?;
                let status = response.status();
                let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
                    .collect()
                    .await
                    .map_err(|e| {
                        failed(
                            ErrorCode::BackendError,
                            BACKEND_FAILED,
                            format!("reading the answer ({status}): {e}"),
                        )
                    })?
                    .to_bytes();
                if !status.is_success() {
                    return Err(failed(
                        ErrorCode::BackendError,
                        BACKEND_FAILED,
                        format!("answered {status}: {}", excerpt(&bytes)),
                    ));
                }
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(object)) => Ok(object),
                    _ => Err(failed(
                        ErrorCode::BackendError,
                        BACKEND_FAILED,
                        format!("answered {status} but no JSON object: {}", excerpt(&bytes)),
                    )),
                }
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(outcome) => outcome,
                Err(_) => Err(failed(
                    ErrorCode::BackendTimeout,
                    "the backend did not answer in time",
                    format!("no answer within {} ms", timeout.as_millis()),
                )),
            }
        }
    }
}

fn first_arg(args: &Args) -> Value {
    args.first::<Value>().unwrap_or(Value::Null)
}

impl Component for Proxy {
    /// The backend decides: it is told the user, or `null`.
    type User = Option<Identity>;

    fn subscribe(
        &self,
        socket: &Arc<Socket>,
        room: &str,
    ) -> impl Future<Output = Result<Vec<String>, HubError>> + Send + 'static {
        let answer = self.call(
            socket,
            identity_of(socket),
            "subscribe",
            Value::String(room.to_owned()),
        );
        async move {
            let object = answer.await?;
            if object.get("ok") == Some(&Value::Bool(false)) {
                return Err(HubError::new(
                    ErrorCode::Forbidden,
                    "the backend refused the subscription",
                ));
            }
            let rooms = object
                .get("rooms")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    HubError::new(ErrorCode::BackendError, "the backend's answer has no rooms")
                })?;
            Ok(rooms
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect())
        }
    }

    fn handle(
        &self,
        socket: &Arc<Socket>,
        user: Option<Identity>,
        event: &str,
        args: &Args,
    ) -> impl Future<Output = Reply> + Send + 'static {
        self.call(socket, user, event, first_arg(args))
    }
}
