//! The publish API over HTTP (`/api/v1/…`): API-key authentication
//! (compared in constant time), the request size limit, and status codes
//! with JSON bodies. What the requests do is `hub::backend_api`.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use socketio::SocketIo;

use hub::backend_api::{self, DisconnectRequest, PublishRequest};
use hub::component::HubError;

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub keys: Vec<String>,
    pub max_body_bytes: usize,
}

pub(crate) fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn failure(
    status: StatusCode,
    code: &str,
    message: impl std::fmt::Display,
) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({"ok": false, "error": {"code": code, "message": message.to_string()}}),
    )
}

fn hub_failure(err: HubError) -> Response<Full<Bytes>> {
    let status = if err.code == "unknown_namespace" {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    failure(status, err.code, err.message)
}

/// Compares without an early exit, so timing does not reveal a key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn authorized(config: &ApiConfig, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let Some(presented) = presented else {
        return false;
    };
    // Every key is compared, so the time does not depend on which matched.
    config.keys.iter().fold(false, |found, key| {
        found | constant_time_eq(key.as_bytes(), presented.as_bytes())
    })
}

/// Reads and parses a JSON body within the size limit.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, Response<Full<Bytes>>> {
    let too_large = || {
        failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body exceeds {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(err) => return Err(failure(StatusCode::BAD_REQUEST, "bad_body", err)),
    };
    serde_json::from_slice(&body).map_err(|err| {
        if err.is_data() {
            failure(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", err)
        } else {
            failure(StatusCode::BAD_REQUEST, "invalid_json", err)
        }
    })
}

/// A failure: `{ok:false, error:{code, message}}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorReply {
    ok: bool,
    error: ErrorBody,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    code: String,
    message: String,
}

/// `{ok:true, delivered}`: sockets reached on this node.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct PublishReply {
    ok: bool,
    delivered: u64,
}

/// `{ok:true, disconnected}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DisconnectReply {
    ok: bool,
    disconnected: u64,
}

/// `{ok:true, room, sockets}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct RoomReply {
    ok: bool,
    room: String,
    sockets: u64,
}

/// Publishes an event to users (every socket of each), rooms (members get
/// `{room, data}`) or a whole namespace.
#[utoipa::path(post, path = "/api/v1/publish", request_body = PublishRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Published", body = PublishReply),
        (status = 400, description = "Not JSON", body = ErrorReply),
        (status = 401, description = "No or wrong API key", body = ErrorReply),
        (status = 404, description = "Unknown namespace", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 422, description = "Invalid request", body = ErrorReply),
    ))]
#[allow(dead_code)]
fn publish_doc() {}

/// Disconnects every socket of a user, in every namespace.
#[utoipa::path(post, path = "/api/v1/disconnect", request_body = DisconnectRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Disconnected", body = DisconnectReply),
        (status = 400, description = "Not JSON", body = ErrorReply),
        (status = 401, description = "No or wrong API key", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 422, description = "Invalid request", body = ErrorReply),
    ))]
#[allow(dead_code)]
fn disconnect_doc() {}

/// Whether users are online: their connected sockets, all namespaces together.
#[utoipa::path(get, path = "/api/v1/presence",
    security(("api_key" = [])),
    params(("user" = Vec<String>, Query, description = "A user id; repeat for several (at most 100)")),
    responses(
        (status = 200, description = "Each user's presence: {ok, presence: {id: {online, sockets}}}", body = Object),
        (status = 401, description = "No or wrong API key", body = ErrorReply),
        (status = 422, description = "No user, or too many", body = ErrorReply),
    ))]
#[allow(dead_code)]
fn presence_doc() {}

/// Counts the sockets in a room.
#[utoipa::path(get, path = "/api/v1/rooms/{room}",
    security(("api_key" = [])),
    params(
        ("room" = String, Path, description = "The room id"),
        ("namespace" = Option<String>, Query, description = "Only this namespace"),
    ),
    responses(
        (status = 200, description = "The room's size", body = RoomReply),
        (status = 401, description = "No or wrong API key", body = ErrorReply),
        (status = 404, description = "Unknown namespace", body = ErrorReply),
    ))]
#[allow(dead_code)]
fn room_doc() {}

struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the publish API, generated from the code.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Switchboard publish API", description = "What backend services ask of the hub."),
    paths(publish_doc, disconnect_doc, presence_doc, room_doc),
    components(schemas(PublishRequest, DisconnectRequest, PublishReply, DisconnectReply, RoomReply, ErrorReply, ErrorBody)),
    modifiers(&ApiKeyScheme)
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
}

/// Serves a request under `/api/v1/`.
pub async fn handle(
    io: &SocketIo,
    config: &ApiConfig,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() == Method::GET && req.uri().path() == "/api/v1/openapi.json" {
        let mut response = Response::new(Full::from(openapi_json()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return response;
    }
    if !authorized(config, req.headers()) {
        return failure(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer KEY)",
        );
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/api/v1/publish") => {
            let request: PublishRequest = match json_body(req, config.max_body_bytes).await {
                Ok(r) => r,
                Err(response) => return response,
            };
            match backend_api::publish(io, &request) {
                Ok(delivered) => reply(StatusCode::OK, json!({"ok": true, "delivered": delivered})),
                Err(err) => hub_failure(err),
            }
        }
        (Method::POST, "/api/v1/disconnect") => {
            let request: DisconnectRequest = match json_body(req, config.max_body_bytes).await {
                Ok(r) => r,
                Err(response) => return response,
            };
            match backend_api::disconnect_user(io, &request) {
                Ok(count) => reply(StatusCode::OK, json!({"ok": true, "disconnected": count})),
                Err(err) => hub_failure(err),
            }
        }
        (Method::GET, "/api/v1/presence") => {
            let users: Vec<String> = query
                .split('&')
                .filter_map(|kv| kv.strip_prefix("user="))
                .map(hub::query::percent_decode)
                .collect();
            match backend_api::presence(io, &users) {
                Ok(list) => {
                    let presence: serde_json::Map<String, Value> = list
                        .into_iter()
                        .map(|(user, sockets)| {
                            (user, json!({"online": sockets > 0, "sockets": sockets}))
                        })
                        .collect();
                    reply(StatusCode::OK, json!({"ok": true, "presence": presence}))
                }
                Err(err) => hub_failure(err),
            }
        }
        (Method::GET, p) if p.starts_with("/api/v1/rooms/") => {
            let room = hub::query::percent_decode(&p["/api/v1/rooms/".len()..]);
            let namespace = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("namespace="))
                .map(hub::query::percent_decode);
            match backend_api::room_size(io, &room, namespace.as_deref()) {
                Ok(sockets) => reply(
                    StatusCode::OK,
                    json!({"ok": true, "room": room, "sockets": sockets}),
                ),
                Err(err) => hub_failure(err),
            }
        }
        (_, "/api/v1/publish" | "/api/v1/disconnect") => failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
        ),
        _ => failure(StatusCode::NOT_FOUND, "not_found", "no such API path"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison_is_equality() {
        assert!(constant_time_eq(b"key", b"key"));
        assert!(!constant_time_eq(b"key", b"kez"));
        assert!(!constant_time_eq(b"key", b"key2"));
        assert!(!constant_time_eq(b"", b"k"));
        assert!(constant_time_eq(b"", b""));
    }
}
