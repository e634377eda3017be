//! The publish API over HTTP (`/api/v1/…`), on axum: API-key
//! authentication (compared in constant time), the request body limit
//! (tower-http), the publish endpoints' rate per key
//! ([`crate::api_rate`]), CORS when configured, status codes with JSON
//! bodies, and the OpenAPI document generated from the handlers. What the
//! requests do is `hub::backend_api`.

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, RawQuery, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use hub::backend_api::{self, DisconnectRequest, NotificationRequest, PublishRequest};
use hub::component::{ErrorCode, HubError};

use crate::app::App;
use crate::reply::{Failure, reply};

/// What an API key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /api/v1/publish`, `POST /api/v1/notifications`.
    Publish,
    /// `POST /api/v1/disconnect`.
    Disconnect,
    /// `GET /api/v1/presence`, `GET /api/v1/rooms/{room}`.
    Read,
}

impl Scope {
    /// Every scope: what a plain key may do.
    pub const ALL: [Scope; 3] = [Scope::Publish, Scope::Disconnect, Scope::Read];

    /// The scope named `name` in the configuration.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Disconnect => "disconnect",
            Scope::Read => "read",
        }
    }
}

/// A key and its scopes.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub key: String,
    pub scopes: Vec<Scope>,
}

/// API settings.
#[derive(Debug)]
pub struct ApiConfig {
    pub keys: Vec<ApiKey>,
    pub max_body_bytes: usize,
    /// Origins allowed by CORS: empty = none (same origin only), `*` = any.
    pub cors_origins: Vec<String>,
    /// The publish endpoints' rate, a bucket per key of `keys` (by place).
    pub rates: crate::api_rate::KeyRates,
}

impl From<HubError> for Failure {
    fn from(err: HubError) -> Failure {
        let status = match err.code {
            ErrorCode::UnknownNamespace => StatusCode::NOT_FOUND,
            ErrorCode::ReservedNamespace => StatusCode::FORBIDDEN,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Failure::new(status, err.code.as_str(), err.message)
    }
}

/// Compares without an early exit, so timing does not reveal a key.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The key a request presents, if it is one of `config`'s.
fn caller(config: &ApiConfig, headers: &HeaderMap) -> Option<Caller> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))?;
    // Every key is compared, so the time does not depend on which matched.
    let mut matched = None;
    for (index, key) in config.keys.iter().enumerate() {
        if constant_time_eq(key.key.as_bytes(), presented.as_bytes()) {
            matched = Some(Caller {
                index,
                scopes: key.scopes.clone(),
            });
        }
    }
    matched
}

/// The key a request presented (a request extension): its place in the
/// configuration (its rate's bucket) and its scopes.
#[derive(Debug, Clone)]
struct Caller {
    index: usize,
    scopes: Vec<Scope>,
}

/// Lets a request through only with a valid API key: before routing, so
/// that without a key nothing about the API's paths and methods shows.
async fn authenticate(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let Some(caller) = caller(&app.api, request.headers()) else {
        return Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer KEY)",
        )
        .into_response();
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// A scope an endpoint needs, as a type (see [`Allowed`]).
trait Needs {
    const SCOPE: Scope;
}

struct PublishScope;
impl Needs for PublishScope {
    const SCOPE: Scope = Scope::Publish;
}

struct DisconnectScope;
impl Needs for DisconnectScope {
    const SCOPE: Scope = Scope::Disconnect;
}

struct ReadScope;
impl Needs for ReadScope {
    const SCOPE: Scope = Scope::Read;
}

/// The caller's key has scope `S`, else 403 `forbidden`. Extracted before
/// the body, so a key without the scope gets nothing else done.
struct Allowed<S>(std::marker::PhantomData<S>);

impl<S: Needs> FromRequestParts<App> for Allowed<S> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &App) -> Result<Self, Failure> {
        match parts.extensions.get::<Caller>() {
            Some(Caller { scopes, .. }) if scopes.contains(&S::SCOPE) => {
                Ok(Allowed(std::marker::PhantomData))
            }
            _ => Err(Failure::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this API key lacks the {:?} scope", S::SCOPE.name()),
            )),
        }
    }
}

/// The caller's key is within its rate (`api.recipients_per_sec`), else
/// 429 `rate_limited` with `Retry-After`. Extracted before the body, so a
/// key over its rate does not have its bodies read; the handler charges
/// the request's cost ([`Metered::charge`]) once the request is valid.
struct Metered {
    key: usize,
}

impl FromRequestParts<App> for Metered {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Failure> {
        // Behind `authenticate`, which let no request without a key in.
        let Some(Caller { index, .. }) = parts.extensions.get::<Caller>() else {
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required",
            ));
        };
        app.api
            .rates
            .ready(*index)
            .map_err(|wait| rate_limited(app, wait))?;
        Ok(Metered { key: *index })
    }
}

impl Metered {
    /// Takes `recipients` from the key's rate (in a cluster, every
    /// node's), or refuses the request.
    async fn charge(&self, app: &App, recipients: usize) -> Result<(), Failure> {
        app.api
            .rates
            .charge(self.key, recipients)
            .await
            .map_err(|wait| rate_limited(app, wait))
    }
}

/// The 429 of a key over its rate, to ask again after `wait`.
fn rate_limited(app: &App, wait: std::time::Duration) -> Failure {
    let secs = crate::api_rate::retry_after_secs(wait);
    Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited.as_str(),
        format!(
            "this API key addresses at most {} recipients (users or rooms) per second: \
             retry after {secs} s",
            app.api.rates.per_sec()
        ),
    )
    .retry_after(secs)
}

/// Counts every API answer by status, for `/metrics`.
async fn count(State(app): State<App>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    *app.api_requests
        .lock()
        .entry(response.status().as_u16())
        .or_default() += 1;
    response
}

/// A JSON body: 413 past the limit (tower-http's limit layer counts the
/// bytes), 400 when it is not JSON, 422 when it is not the request.
struct ApiJson<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequest<App> for ApiJson<T> {
    type Rejection = Failure;

    async fn from_request(request: Request, app: &App) -> Result<Self, Failure> {
        let limit = app.api.max_body_bytes;
        let body = axum::body::to_bytes(request.into_body(), usize::MAX)
            .await
            .map_err(|err| {
                if is_length_limit(&err) {
                    Failure::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the body exceeds {limit} bytes"),
                    )
                } else {
                    Failure::new(StatusCode::BAD_REQUEST, "bad_body", err)
                }
            })?;
        serde_json::from_slice(&body).map(ApiJson).map_err(|err| {
            if err.is_data() {
                Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", err)
            } else {
                Failure::new(StatusCode::BAD_REQUEST, "invalid_json", err)
            }
        })
    }
}

/// Whether reading a body failed because it passed the limit.
fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The values of `name` in a query string, percent-decoded, in order.
fn query_values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = String> + 'a {
    query
        .split('&')
        .filter_map(move |kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(hub::query::percent_decode)
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

/// In cluster mode, when a node did not answer within
/// `cluster.request_timeout_ms`: the count beside it is of the nodes that
/// did.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct IncompleteReply {
    /// Nodes that did not answer.
    unanswered: u64,
    /// Those of them known by name (Switchboard nodes' uids).
    missing: Vec<String>,
    /// Why the other nodes could not be asked at all (Redis down), if so.
    error: Option<String>,
}

/// `{ok:true, delivered}`: sockets reached, on every node of a cluster;
/// with `persist`, `stored` too: notifications stored (one per distinct
/// user).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct PublishReply {
    ok: bool,
    delivered: u64,
    stored: Option<u64>,
    incomplete: Option<IncompleteReply>,
}

/// `{ok:true, stored, delivered}`: notifications stored (one per distinct
/// user), sockets of theirs reached on `/notifications`, on every node.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct NotificationsReply {
    ok: bool,
    stored: u64,
    delivered: u64,
    incomplete: Option<IncompleteReply>,
}

/// `{ok:true, disconnected}`: the user's sockets disconnected, on every
/// node.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DisconnectReply {
    ok: bool,
    disconnected: u64,
    incomplete: Option<IncompleteReply>,
}

/// `{ok:true, room, sockets}`: the room's sockets, on every node.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct RoomReply {
    ok: bool,
    room: String,
    sockets: u64,
    incomplete: Option<IncompleteReply>,
}

/// Adds `incomplete` to a reply when a node did not answer.
fn note_incomplete(body: &mut Value, incomplete: Option<hub::peers::Tally>) {
    if let Some(tally) = incomplete {
        body["incomplete"] = json!({
            "unanswered": tally.unanswered,
            "missing": tally.missing,
            "error": tally.error,
        });
    }
}

/// Publishes an event to users (every socket of each), rooms (members get
/// `{room, data}`) or a whole namespace; with `persist`, also stores a
/// notification for each user (sent on `/notifications` as
/// `notification`).
#[utoipa::path(post, path = "/api/v1/publish", request_body = PublishRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Published", body = PublishReply),
        (status = 400, description = "Not JSON", body = ErrorReply),
        (status = 401, description = "No or wrong API key", body = ErrorReply),
        (status = 403, description = "The key lacks the publish scope, or the namespace is a hub component's (`reserved_namespace`: only the component emits there)", body = ErrorReply),
        (status = 404, description = "Unknown namespace", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 422, description = "Invalid request", body = ErrorReply),
        (status = 429, description = "The key is over its rate (`api.recipients_per_sec`, each user or room named counting one; `rate_limited`): nothing stored or published", body = ErrorReply,
            headers(("Retry-After" = u64, description = "Seconds until the key's rate would let this request through"))),
        (status = 503, description = "The store is unavailable (persist): nothing stored or published", body = ErrorReply),
    ))]
async fn publish(
    State(app): State<App>,
    _: Allowed<PublishScope>,
    metered: Metered,
    ApiJson(request): ApiJson<PublishRequest>,
) -> Result<Response, Failure> {
    let published = backend_api::publish_persisted(
        &app.io,
        &app.hub.ctx.notifications,
        &app.hub.components,
        &app.hub.ctx.peers,
        &request,
        |recipients| metered.charge(&app, recipients),
    )
    .await?;
    let mut body = json!({"ok": true, "delivered": published.delivered});
    if let Some(stored) = published.stored {
        body["stored"] = json!(stored);
    }
    note_incomplete(&mut body, published.incomplete);
    Ok(reply(StatusCode::OK, body))
}

/// Stores one notification for each user (up to 10,000 at once, one
/// transaction) and sends it to their devices on `/notifications` as
/// `notification` `{notification, unread}`.
#[utoipa::path(post, path = "/api/v1/notifications", request_body = NotificationRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Stored and sent", body = NotificationsReply),
        (status = 400, description = "Not JSON", body = ErrorReply),
        (status = 401, description = "No or wrong API key", body = ErrorReply),
        (status = 403, description = "The key lacks the publish scope", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 422, description = "Invalid request (a limit of [notifications])", body = ErrorReply),
        (status = 429, description = "The key is over its rate (`api.recipients_per_sec`, each user or room named counting one; `rate_limited`): nothing stored or published", body = ErrorReply,
            headers(("Retry-After" = u64, description = "Seconds until the key's rate would let this request through"))),
        (status = 503, description = "The store is unavailable: nothing stored", body = ErrorReply),
    ))]
async fn notifications(
    State(app): State<App>,
    _: Allowed<PublishScope>,
    metered: Metered,
    ApiJson(request): ApiJson<NotificationRequest>,
) -> Result<Response, Failure> {
    let done = backend_api::notify(
        &app.io,
        &app.hub.ctx.notifications,
        &app.hub.ctx.peers,
        &request,
        |recipients| metered.charge(&app, recipients),
    )
    .await?;
    let mut body =
        json!({"ok": true, "stored": done.stored.unwrap_or(0), "delivered": done.delivered});
    note_incomplete(&mut body, done.incomplete);
    Ok(reply(StatusCode::OK, body))
}

/// Disconnects every socket of a user, in every namespace.
#[utoipa::path(post, path = "/api/v1/disconnect", request_body = DisconnectRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Disconnected", body = DisconnectReply),
        (status = 400, description = "Not JSON", body = ErrorReply),
        (status = 401, description = "No or wrong API key", body = ErrorReply),
        (status = 403, description = "The key lacks the disconnect scope", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 422, description = "Invalid request", body = ErrorReply),
    ))]
async fn disconnect(
    State(app): State<App>,
    _: Allowed<DisconnectScope>,
    ApiJson(request): ApiJson<DisconnectRequest>,
) -> Result<Response, Failure> {
    let done = backend_api::disconnect_user(&app.io, &app.hub.ctx.peers, &request).await?;
    let mut body = json!({"ok": true, "disconnected": done.count});
    note_incomplete(&mut body, done.incomplete);
    Ok(reply(StatusCode::OK, body))
}

/// One user's presence: `{online, sockets, status, devices, last_seen}`;
/// `status` is `online`, `away` or `busy` (the user's choice) while online,
/// `offline` otherwise.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UserPresenceReply {
    /// Whether the user is online (a `/presence` socket connected, or
    /// within the grace period after the last one left).
    online: bool,
    /// The user's sockets, every namespace together, on every node (of a
    /// cluster) that answered.
    sockets: u64,
    #[schema(inline)]
    status: hub::services::presence::Status,
    /// Devices: `/presence` sockets, those in their grace period included.
    devices: u64,
    /// When a device of the user last connected or left (Unix ms); null
    /// if never.
    last_seen: Option<i64>,
}

/// `{ok:true, presence: {user id: …}}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct PresenceReply {
    ok: bool,
    presence: std::collections::BTreeMap<String, UserPresenceReply>,
    incomplete: Option<IncompleteReply>,
}

/// Whether users are online, with their status, devices and last_seen —
/// what the `/presence` namespace shows its watchers — and their sockets
/// on every node.
#[utoipa::path(get, path = "/api/v1/presence",
    security(("api_key" = [])),
    params(("user" = Vec<String>, Query, description = "A user id; repeat for several (at most 100)")),
    responses(
        (status = 200, description = "Each user's presence", body = PresenceReply),
        (status = 401, description = "No or wrong API key", body = ErrorReply),
        (status = 403, description = "The key lacks the read scope", body = ErrorReply),
        (status = 422, description = "No user, or too many", body = ErrorReply),
        (status = 503, description = "The store did not answer", body = ErrorReply),
    ))]
async fn presence(
    State(app): State<App>,
    _: Allowed<ReadScope>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let users: Vec<String> = query_values(query.as_deref().unwrap_or(""), "user").collect();
    let peers = &app.hub.ctx.peers;
    let reports = backend_api::presence(&app.io, &app.hub.ctx.presence, peers, &users).await?;
    let presence: serde_json::Map<String, Value> = reports
        .users
        .into_iter()
        .map(|report| {
            let p = report.presence;
            let entry = json!({
                "online": p.status != hub::services::presence::Status::Offline,
                "sockets": report.sockets,
                "status": p.status,
                "devices": p.devices,
                "last_seen": p.last_seen,
            });
            (p.user, entry)
        })
        .collect();
    let mut body = json!({"ok": true, "presence": presence});
    note_incomplete(&mut body, reports.incomplete);
    Ok(reply(StatusCode::OK, body))
}

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
        (status = 403, description = "The key lacks the read scope", body = ErrorReply),
        (status = 404, description = "Unknown namespace", body = ErrorReply),
    ))]
async fn room(
    State(app): State<App>,
    _: Allowed<ReadScope>,
    params: RawPathParams,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    // Decoded here rather than by `Path`, which refuses what is not UTF-8
    // once decoded: a room id is what the client sent.
    let room = params
        .iter()
        .find(|(name, _)| *name == "room")
        .map(|(_, value)| hub::query::percent_decode(value))
        .unwrap_or_default();
    let namespace = query_values(query.as_deref().unwrap_or(""), "namespace").next();
    let peers = &app.hub.ctx.peers;
    let counted = backend_api::room_size(&app.io, peers, &room, namespace.as_deref()).await?;
    let mut body = json!({"ok": true, "room": room, "sockets": counted.count});
    note_incomplete(&mut body, counted.incomplete);
    Ok(reply(StatusCode::OK, body))
}

/// Any other path under `/api/v1/` (after the key check).
async fn no_such_path() -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "not_found", "no such API path")
}

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

/// The OpenAPI document's frame; the paths come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Switchboard publish API", description = "What backend services ask of the hub."),
    components(schemas(PublishRequest, NotificationRequest, DisconnectRequest, PublishReply, NotificationsReply, DisconnectReply, RoomReply, ErrorReply, ErrorBody)),
    modifiers(&ApiKeyScheme)
)]
struct ApiDoc;

/// The API's routes with the OpenAPI document they make up.
fn routes() -> (Router<App>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(publish))
        .routes(routes!(notifications))
        .routes(routes!(disconnect))
        .routes(routes!(presence))
        .routes(routes!(room))
        .split_for_parts();
    doc.paths
        .paths
        .insert(EVENTS_SCHEMA_PATH.to_owned(), events_schema_path());
    (router, doc)
}

/// Where the components' event contract is served (no key, like the
/// OpenAPI document): a JSON Schema document, not part of the publish API
/// but what its clients' front ends code against.
const EVENTS_SCHEMA_PATH: &str = "/api/v1/events.schema.json";

/// The OpenAPI entry of [`EVENTS_SCHEMA_PATH`], written by hand: it is
/// served outside the key-checked routes, so no handler describes it.
fn events_schema_path() -> utoipa::openapi::PathItem {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder};
    let response = ResponseBuilder::new()
        .description(
            "A JSON Schema (2020-12) document: for each component namespace, the payload and \
             ack of every client event and the payload of every server event.",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new()))
                .build(),
        )
        .build();
    let operation = OperationBuilder::new()
        .operation_id(Some("events_schema"))
        .summary(Some("The Socket.IO event contract of the hub's components"))
        .description(Some(
            "Generated from the hub's event types, as `switchboard contract --schema` prints it \
             (`docs/events.schema.json`). Needs no key.",
        ))
        .security(utoipa::openapi::security::SecurityRequirement::default())
        .response("200", response)
        .build();
    utoipa::openapi::PathItem::new(HttpMethod::Get, operation)
}

/// The OpenAPI document of the publish API, generated from the handlers.
/// What a hub serves is this, completed with its own constraints
/// ([`crate::openapi`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// `doc` completed with `constraints`, as JSON text.
fn document(doc: utoipa::openapi::OpenApi, constraints: &crate::openapi::Constraints) -> String {
    let mut doc = serde_json::to_value(&doc).unwrap_or_else(|_| json!({}));
    crate::openapi::complete(&mut doc, constraints);
    doc.to_string()
}

/// The publish API under `/api/v1/`. Outermost first: CORS (a browser's
/// preflight carries no key), the request counter, the key check, the
/// body limit; `openapi.json` and `events.schema.json` need no key.
pub(crate) fn router(app: &App) -> Router<App> {
    let (routes, doc) = routes();
    let doc = document(doc, &crate::openapi::Constraints::of(app));
    let events = crate::contract::document_text();
    let router = routes
        .route("/api/v1/{*rest}", axum::routing::any(no_such_path))
        .layer(RequestBodyLimitLayer::new(app.api.max_body_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
        .route(
            EVENTS_SCHEMA_PATH,
            axum::routing::get(move || {
                let events = events.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], events) }
            }),
        )
        .layer(middleware::from_fn_with_state(app.clone(), count));
    match cors(&app.api.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The CORS layer `origins` describe; none when empty (same origin only).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([http::Method::GET, http::Method::POST])
            .allow_headers([
                http::header::AUTHORIZATION,
                http::header::CONTENT_TYPE,
                http::HeaderName::from_static("x-api-key"),
            ]),
    )
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
