//! Proxy namespaces: a component written in another language owns a
//! namespace through HTTP. Each client event is POSTed to the backend as
//! `{namespace, event, user, socket, data}` (`data`: the event's first
//! argument) and the response body becomes the ack; `subscribe` goes the
//! same way and the backend answers `{rooms: [...]}`, the rooms to join.
//! A backend error or timeout becomes `{ok:false, error}`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use socketio::{Args, BoxFuture, Socket};

use crate::auth::identity_of;
use crate::component::{Component, HubError, Reply};

/// Largest backend response read, in bytes.
const MAX_RESPONSE: usize = 1 << 20;

/// A namespace owned by an HTTP backend.
pub struct Proxy {
    url: http::Uri,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Proxy {
    /// A proxy to `url` (http://…), waiting at most `timeout` per request.
    pub fn new(url: &str, timeout: Duration) -> Result<Proxy, HubError> {
        let url: http::Uri = url
            .parse()
            .map_err(|e| HubError::new("invalid_backend", format!("{url:?}: {e}")))?;
        if url.scheme_str() != Some("http") {
            return Err(HubError::new(
                "invalid_backend",
                "backend URLs must be http://",
            ));
        }
        Ok(Proxy {
            url,
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// POSTs a request for `socket` and returns the backend's JSON object.
    fn call(
        &self,
        socket: &Arc<Socket>,
        event: &str,
        data: Value,
    ) -> BoxFuture<Result<serde_json::Map<String, Value>, HubError>> {
        let body = json!({
            "namespace": socket.namespace().name(),
            "event": event,
            "user": identity_of(socket).map(|id| id.user),
            "socket": socket.id().as_str(),
            "data": data,
        });
        let request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::from(body.to_string()));
        let client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let request = request.map_err(|e| HubError::new("backend_error", e.to_string()))?;
            let exchange = async {
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| HubError::new("backend_unavailable", e.to_string()))?;
                let status = response.status();
                let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
                    .collect()
                    .await
                    .map_err(|e| HubError::new("backend_error", e.to_string()))?
                    .to_bytes();
                if !status.is_success() {
                    return Err(HubError::new(
                        "backend_error",
                        format!("the backend answered {status}"),
                    ));
                }
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(object)) => Ok(object),
                    _ => Err(HubError::new(
                        "backend_error",
                        "the backend did not answer a JSON object",
                    )),
                }
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(HubError::new(
                        "backend_timeout",
                        format!("no answer within {} ms", timeout.as_millis()),
                    ))
                })
        })
    }
}

fn first_arg(args: &Args) -> Value {
    args.first::<Value>().unwrap_or(Value::Null)
}

impl Component for Proxy {
    fn subscribe(
        &self,
        socket: &Arc<Socket>,
        room: &str,
    ) -> BoxFuture<Result<Vec<String>, HubError>> {
        let answer = self.call(socket, "subscribe", Value::String(room.to_owned()));
        Box::pin(async move {
            let object = answer.await?;
            if object.get("ok") == Some(&Value::Bool(false)) {
                return Err(HubError::new(
                    "forbidden",
                    "the backend refused the subscription",
                ));
            }
            let rooms = object
                .get("rooms")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    HubError::new("backend_error", "the backend's answer has no rooms")
                })?;
            Ok(rooms
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect())
        })
    }

    fn handle(&self, socket: &Arc<Socket>, event: &str, args: &Args) -> BoxFuture<Reply> {
        self.call(socket, event, first_arg(args))
    }
}
