//! The event contract of the hub's components, rendered for the people who
//! code against it: a JSON Schema document (served at
//! `/api/v1/events.schema.json`, beside the OpenAPI document) and
//! TypeScript declarations in the shape socket.io-client's typed sockets
//! take (`web/src/contract.ts`). Both are generated from the Rust types the
//! components (de)serialize ([`hub::contract`]); `switchboard contract`
//! writes them, and a test fails when the copies in the repository are
//! stale.

mod typescript;

use serde_json::{Map, Value, json};

use hub::contract::Contract;

pub use typescript::typescript;

/// Where a schema's references point in an OpenAPI document, and where
/// they point in the JSON Schema document.
const OPENAPI_REFS: &str = "#/components/schemas/";
const JSON_SCHEMA_REFS: &str = "#/$defs/";

/// The JSON Schema (2020-12) document of every component's events: each
/// type once under `$defs`, and under `components`, per component, what a
/// client emits (payload and ack fields) and what the server emits.
pub fn json_schema(contracts: &[Contract]) -> Value {
    let mut defs = Map::new();
    let mut components = Map::new();
    for contract in contracts {
        for (name, schema) in &contract.schemas {
            defs.entry(name.clone()).or_insert_with(|| to_json(schema));
        }
        let events = |events: &[hub::contract::Event]| -> Value {
            let mut out = Map::new();
            for event in events {
                let mut entry = Map::new();
                entry.insert("description".into(), event.doc.into());
                if let Some(payload) = &event.payload {
                    entry.insert("payload".into(), to_json(payload));
                }
                if let Some(ack) = &event.ack {
                    entry.insert("ack".into(), to_json(ack));
                }
                out.insert(event.name.into(), Value::Object(entry));
            }
            Value::Object(out)
        };
        components.insert(
            contract.component.into(),
            json!({"client": events(&contract.client), "server": events(&contract.server)}),
        );
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Switchboard component events",
        "description": "Every event of the hub's component namespaces: for each component, what a client emits (its one argument, `payload`, and the fields of its `{ok: true, …}` ack; a refusal is `{ok: false, error: {code, message}}`) and what the server emits. Generated from the hub's types by `switchboard contract`.",
        "$defs": defs,
        "components": components,
    })
}

/// A utoipa schema as JSON, its references rewritten for `$defs`.
fn to_json<T: serde::Serialize>(schema: &T) -> Value {
    let mut value = serde_json::to_value(schema).unwrap_or(Value::Null);
    rewrite_refs(&mut value);
    value
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = v
                    && let Some(name) = target.strip_prefix(OPENAPI_REFS)
                {
                    *target = format!("{JSON_SCHEMA_REFS}{name}");
                } else {
                    rewrite_refs(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}
