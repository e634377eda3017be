//! The publish API's OpenAPI document as this hub serves it. utoipa derives
//! it from the handlers (`api`) and the request types
//! (`hub::backend_api`), each field with the bounds its annotations state;
//! this module adds what a derive cannot know or say, so that every request
//! the document describes is one the handlers accept (schemathesis checks
//! that, `tests/schemathesis/run.sh`):
//!
//! - the bounds this hub is configured with (`[notifications]`), where the
//!   annotations can only state the defaults;
//! - the namespaces a request may name: this hub's, and for a publish not
//!   those of its components;
//! - which fields of a publish go together: users, rooms or a broadcast,
//!   and `persist`'s fields only with `persist` (an `anyOf` of the shapes
//!   a publish takes);
//! - the bounds of list items, and the event names Socket.IO reserves.
//!
//! Nothing here checks a request: the handlers do. A document that says
//! less than they check makes generated requests fail; one that says more
//! would refuse requests the hub takes.

use serde_json::{Map, Value, json};

use hub::backend_api::MAX_PRESENCE_USERS;
use hub::services::notifications::NotificationsConfig;

use crate::app::App;

/// What this hub accepts beyond what the request types' annotations say.
#[derive(Debug, Clone)]
pub struct Constraints {
    /// Every namespace of this hub.
    pub namespaces: Vec<String>,
    /// The namespaces of the hub's components, which a publish may not name.
    pub components: Vec<String>,
    /// The namespace notifications are sent on: a publish with `persist`
    /// may name it.
    pub notifications_namespace: Option<String>,
    /// The bounds of a notification.
    pub notifications: NotificationsConfig,
}

impl Constraints {
    /// The constraints of `app`'s hub.
    pub fn of(app: &App) -> Constraints {
        Constraints {
            namespaces: app
                .io
                .namespaces()
                .iter()
                .map(|ns| ns.name().to_owned())
                .collect(),
            components: app.hub.components.to_vec(),
            notifications_namespace: app.hub.ctx.notifications.namespace_name(),
            notifications: app.hub.ctx.notifications.config().clone(),
        }
    }

    /// The namespaces a publish without `persist` may name.
    fn publishable(&self) -> Vec<&str> {
        self.namespaces
            .iter()
            .filter(|ns| !self.components.contains(ns))
            .map(String::as_str)
            .collect()
    }
}

/// `doc` (as utoipa derived it) completed with `constraints`.
pub fn complete(doc: &mut Value, constraints: &Constraints) {
    if let Some(schema) = at(doc, &["components", "schemas", "PublishRequest"]) {
        *schema = publish_request(schema, constraints);
    }
    if let Some(schema) = at(doc, &["components", "schemas", "NotificationRequest"]) {
        notification_request(schema, &constraints.notifications);
    }
    if let Some(schema) = parameter(doc, "/api/v1/presence", "get", "user") {
        merge(
            schema,
            json!({"minItems": 1, "maxItems": MAX_PRESENCE_USERS, "items": id(None)}),
        );
    }
    if let Some(schema) = parameter(doc, "/api/v1/rooms/{room}", "get", "room") {
        merge(schema, json!({"minLength": 1}));
    }
    if let Some(schema) = parameter(doc, "/api/v1/rooms/{room}", "get", "namespace") {
        // A query parameter is absent or a name: never null.
        let all: Vec<&str> = constraints.namespaces.iter().map(String::as_str).collect();
        *schema = namespace(schema, &all, false);
    }
}

/// The value at `keys` in `doc`, if there is one.
fn at<'a>(doc: &'a mut Value, keys: &[&str]) -> Option<&'a mut Value> {
    keys.iter().try_fold(doc, |value, key| value.get_mut(*key))
}

/// The schema of the parameter `name` of `method path`.
fn parameter<'a>(
    doc: &'a mut Value,
    path: &str,
    method: &str,
    name: &str,
) -> Option<&'a mut Value> {
    at(doc, &["paths", path, method, "parameters"])?
        .as_array_mut()?
        .iter_mut()
        .find(|p| p["name"] == name)?
        .get_mut("schema")
}

/// Sets every key of `extra` (an object) in `schema`, replacing what was
/// there.
fn merge(schema: &mut Value, extra: Value) {
    if let (Value::Object(schema), Value::Object(extra)) = (schema, extra) {
        schema.extend(extra);
    }
}

/// `schema` with every key of `extra` set.
fn with(schema: &Value, extra: Value) -> Value {
    let mut schema = schema.clone();
    merge(&mut schema, extra);
    schema
}

/// A user or room id: not empty; at most `max_bytes` bytes of UTF-8 when
/// bounded (`maxLength` counts characters, so that many ASCII characters,
/// fewer beyond ASCII).
fn id(max_bytes: Option<usize>) -> Value {
    match max_bytes {
        None => json!({"type": "string", "minLength": 1}),
        Some(max) => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": max,
            "description": format!("At most {max} bytes of UTF-8."),
        }),
    }
}

/// A namespace property: one of `names` (or null, absent's equal, when
/// `nullable`), keeping `derived`'s description.
fn namespace(derived: &Value, names: &[&str], nullable: bool) -> Value {
    let mut schema = match (names.is_empty(), nullable) {
        (true, _) => json!({"type": "null"}),
        (false, false) => json!({"type": "string", "enum": names}),
        (false, true) => {
            let allowed: Vec<Value> = names
                .iter()
                .map(|n| json!(n))
                .chain([Value::Null])
                .collect();
            json!({"type": ["string", "null"], "enum": allowed})
        }
    };
    if let Some(description) = derived.get("description") {
        schema["description"] = description.clone();
    }
    schema
}

/// The shapes of a publish, from the derived schema's fields: to users, to
/// rooms, a broadcast, and to users with `persist` (with a `type`, or
/// without: then the event is the type).
fn publish_request(derived: &Value, c: &Constraints) -> Value {
    let field = |name: &str| derived["properties"][name].clone();
    let event = with(
        &field("event"),
        json!({"not": {"enum": socketio::packet::RESERVED_EVENTS}}),
    );
    let ids = |min_items: usize| json!({"type": "array", "items": id(None), "minItems": min_items});
    let flag = |name: &str, value: bool| with(&field(name), json!({"enum": [value]}));
    let publishable = c.publishable();
    let mut persistable = publishable.clone();
    persistable.extend(c.notifications_namespace.as_deref());
    let n = &c.notifications;
    // An event that is also the notification's type fits both bounds.
    let event_max = event["maxLength"]
        .as_u64()
        .map_or(n.max_type_chars, |max| (max as usize).min(n.max_type_chars));

    let mut shapes = vec![
        shape(
            "To users",
            &["event", "users"],
            [
                ("event", event.clone()),
                ("data", field("data")),
                ("users", with(&field("users"), ids(1))),
                ("rooms", with(&field("rooms"), ids(0))),
                (
                    "namespace",
                    namespace(&field("namespace"), &publishable, true),
                ),
                ("broadcast", flag("broadcast", false)),
                ("persist", flag("persist", false)),
            ],
        ),
        shape(
            "To rooms",
            &["event", "rooms"],
            [
                ("event", event.clone()),
                ("data", field("data")),
                ("users", with(&field("users"), ids(0))),
                ("rooms", with(&field("rooms"), ids(1))),
                (
                    "namespace",
                    namespace(&field("namespace"), &publishable, true),
                ),
                ("broadcast", flag("broadcast", false)),
                ("persist", flag("persist", false)),
            ],
        ),
    ];
    if !publishable.is_empty() {
        shapes.push(shape(
            "To a whole namespace",
            &["event", "broadcast", "namespace"],
            [
                ("event", event.clone()),
                ("data", field("data")),
                ("users", with(&field("users"), ids(0))),
                ("rooms", with(&field("rooms"), ids(0))),
                (
                    "namespace",
                    namespace(&field("namespace"), &publishable, false),
                ),
                ("broadcast", flag("broadcast", true)),
                ("persist", flag("persist", false)),
            ],
        ));
    }
    // With `persist`, a notification for each user: `type` given, or
    // absent (or null) and then `event`, which must fit a type.
    let persisted = |title: &str, kind: Value, kind_required: bool, event: Value| {
        let mut required = vec!["event", "users", "persist", "title"];
        if kind_required {
            required.push("type");
        }
        shape(
            title,
            &required,
            [
                ("event", event),
                ("data", with(&field("data"), data_bound(n))),
                (
                    "users",
                    with(
                        &field("users"),
                        json!({
                            "items": id(Some(n.max_user_id_bytes)),
                            "minItems": 1,
                            "maxItems": n.max_users_per_request,
                        }),
                    ),
                ),
                ("rooms", with(&field("rooms"), json!({"maxItems": 0}))),
                (
                    "namespace",
                    namespace(&field("namespace"), &persistable, true),
                ),
                ("broadcast", flag("broadcast", false)),
                ("persist", flag("persist", true)),
                ("type", kind),
                (
                    "title",
                    with(
                        &field("title"),
                        json!({"type": "string", "maxLength": n.max_title_chars}),
                    ),
                ),
                (
                    "body",
                    with(&field("body"), json!({"maxLength": n.max_body_chars})),
                ),
            ],
        )
    };
    shapes.push(persisted(
        "To users, stored as a notification",
        with(
            &field("type"),
            json!({"type": "string", "maxLength": n.max_type_chars}),
        ),
        true,
        event.clone(),
    ));
    shapes.push(persisted(
        "To users, stored as a notification of type `event`",
        json!({"type": "null", "description": field("type")["description"]}),
        false,
        with(&event, json!({"maxLength": event_max})),
    ));
    json!({
        "description": derived.get("description").cloned().unwrap_or(Value::Null),
        "anyOf": shapes,
    })
}

/// One shape of a request: an object with exactly `properties`, of which
/// `required`.
fn shape<const N: usize>(title: &str, required: &[&str], properties: [(&str, Value); N]) -> Value {
    let properties: Map<String, Value> = properties
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    json!({
        "title": title,
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": false,
    })
}

/// `POST /api/v1/notifications` with this hub's `[notifications]` bounds.
fn notification_request(schema: &mut Value, n: &NotificationsConfig) {
    let bounds = [
        (
            "users",
            json!({"items": id(Some(n.max_user_id_bytes)), "maxItems": n.max_users_per_request}),
        ),
        ("type", json!({"maxLength": n.max_type_chars})),
        ("title", json!({"maxLength": n.max_title_chars})),
        ("body", json!({"maxLength": n.max_body_chars})),
        ("data", data_bound(n)),
    ];
    for (name, extra) in bounds {
        if let Some(field) = at(schema, &["properties", name]) {
            merge(field, extra);
        }
    }
}

/// What a notification's `data` may hold, which a JSON Schema cannot
/// bound: said in words.
fn data_bound(n: &NotificationsConfig) -> Value {
    json!({"description": format!(
        "Any JSON the client needs to act on it: at most {} bytes once serialized.",
        n.max_data_bytes
    )})
}
