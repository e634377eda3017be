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
use utoipa::PartialSchema;

use hub::contract::Contract;
use hub::error::ErrorCode;

pub use typescript::typescript;

/// The `$defs` entry of the error codes, which every ack's refusal names.
const ERROR_CODE: &str = "ErrorCode";

/// The hub's event contract as one JSON Schema document: every component
/// that describes its events ([`hub::assembly::contracts`]), and the error
/// codes. Served at `/api/v1/events.schema.json`; `docs/events.schema.json`
/// is a copy.
pub fn document() -> Value {
    let mut document = json_schema(&hub::assembly::contracts());
    if let Some(defs) = document.get_mut("$defs").and_then(Value::as_object_mut) {
        defs.insert(ERROR_CODE.into(), to_json(&ErrorCode::schema()));
    }
    document
}

/// [`document`] as the text served and committed.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

/// The TypeScript declarations of [`document`] (`web/src/contract.ts`).
pub fn typescript_text() -> String {
    let mut text = typescript(&document(), Some(ERROR_CODE));
    text.push('\n');
    text
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// `path` (from the repository's root) holds `generated`, or, with
    /// `UPDATE_CONTRACT=1`, is made to.
    fn check_generated(path: &str, generated: &str) {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        if std::env::var_os("UPDATE_CONTRACT").is_some_and(|v| v == "1") {
            std::fs::write(&file, generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            committed == generated,
            "{path} is stale: the hub's event types changed. Regenerate it with\n  \
             UPDATE_CONTRACT=1 cargo test -p switchboard --lib contract\n\
             (or `switchboard contract --schema` / `--typescript`), then check web/ with \
             `cd web && npm run build`."
        );
    }

    #[test]
    fn the_committed_contract_is_current() {
        check_generated("docs/events.schema.json", &document_text());
        check_generated("web/src/contract.ts", &typescript_text());
    }

    #[test]
    fn one_name_is_one_schema_across_components() {
        let mut seen: Map<String, Value> = Map::new();
        for contract in hub::assembly::contracts() {
            for (name, schema) in &contract.schemas {
                let schema = to_json(schema);
                if let Some(before) = seen.get(name) {
                    assert_eq!(before, &schema, "two types are named {name}");
                }
                seen.insert(name.clone(), schema);
            }
        }
        assert!(
            !seen.contains_key(ERROR_CODE),
            "a type is named {ERROR_CODE}"
        );
    }

    #[test]
    fn every_reference_resolves_and_every_error_code_is_listed() {
        let document = document();
        let text = document.to_string();
        for target in text.split("\"$ref\":\"").skip(1) {
            let target = &target[..target.find('"').unwrap()];
            let name = target.strip_prefix(JSON_SCHEMA_REFS).unwrap();
            assert!(document["$defs"][name].is_object(), "{target} dangles");
        }
        let codes = document["$defs"][ERROR_CODE]["enum"].as_array().unwrap();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        assert!(codes.contains(&json!("bad_request")));
        assert!(document["components"]["chat"]["client"]["message"]["ack"].is_object());
    }
}
