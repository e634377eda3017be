//! The environment: every key can be overridden by a variable
//! `SWITCHBOARD_<SECTION>_<KEY>` (upper case), e.g.
//! `SWITCHBOARD_ENGINE_PING_INTERVAL_MS=300`, applied after the file. A
//! `SWITCHBOARD_*` variable that names no key is an error, not ignored: a
//! typo would otherwise leave a setting at its default unnoticed.

use super::ConfigError;

/// The prefix of the configuration's variables.
pub(super) const PREFIX: &str = "SWITCHBOARD_";

/// The variable that overrides the key at dotted `path`
/// (`engine.ping_interval_ms` → `SWITCHBOARD_ENGINE_PING_INTERVAL_MS`).
pub(super) fn variable_of(path: &str) -> String {
    format!("{PREFIX}{}", path.replace('.', "_").to_ascii_uppercase())
}

/// Applies every `SWITCHBOARD_*` variable of `env` to `value` (the
/// defaults with the file laid over them); other variables are ignored.
pub(super) fn apply(
    value: &mut toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix(PREFIX) else {
            continue;
        };
        if !apply_one(value, &rest.to_ascii_lowercase(), &raw) {
            return Err(ConfigError::UnknownVariable(key));
        }
    }
    Ok(())
}

/// Sets the key named by `path` (`engine_ping_interval_ms`) from an
/// environment value. Keys contain underscores, so every split is tried
/// against the keys that exist. Returns whether a key matched.
fn apply_one(value: &mut toml::Value, path: &str, raw: &str) -> bool {
    let toml::Value::Table(table) = value else {
        return false;
    };
    if let Some(slot) = table.get_mut(path) {
        *slot = parse_value(slot, raw);
        return true;
    }
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        if let Some(rest) = path.strip_prefix(&key).and_then(|r| r.strip_prefix('_'))
            && let Some(child) = table.get_mut(&key)
            && apply_one(child, rest, raw)
        {
            return true;
        }
    }
    // Optional sections absent from the defaults (e.g. raw_engine_path).
    if path == "raw_engine_path" {
        let mut section = toml::Table::new();
        section.insert("path".into(), toml::Value::String(raw.to_owned()));
        table.insert("raw_engine".into(), toml::Value::Table(section));
        return true;
    }
    false
}

/// Parses an environment value in the type of the key it replaces: a
/// string as it is, a list as TOML or comma-separated, anything else as a
/// TOML value (a value that is none stays a string, for the type check to
/// refuse with the key's name).
fn parse_value(current: &toml::Value, raw: &str) -> toml::Value {
    match current {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Array(_) => {
            let parsed: Result<toml::Table, _> = toml::from_str(&format!("v = {raw}"));
            match parsed.ok().and_then(|mut t| t.remove("v")) {
                Some(v @ toml::Value::Array(_)) => v,
                _ => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ),
            }
        }
        _ => {
            let parsed: Result<toml::Table, _> = toml::from_str(&format!("v = {raw}"));
            parsed
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::env;

    #[test]
    fn environment_overrides_nested_keys() {
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_ENGINE_PING_INTERVAL_MS", "300"),
                ("SWITCHBOARD_LISTEN", "127.0.0.1:0, [::1]:0"),
                ("SWITCHBOARD_ENGINE_CORS_ORIGINS", "*"),
                ("SWITCHBOARD_LOG_FORMAT", "json"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.engine.ping_interval_ms, 300);
        assert_eq!(config.listen, vec!["127.0.0.1:0", "[::1]:0"]);
        assert_eq!(config.engine_config().cors, engineio::Cors::Any);
        assert_eq!(config.log.format, "json");
    }

    #[test]
    fn rejects_unknown_and_invalid_settings() {
        assert!(Config::load(None, env(&[("SWITCHBOARD_NOPE", "1")])).is_err());
        assert!(
            Config::load(
                None,
                env(&[("SWITCHBOARD_ENGINE_PING_INTERVAL_MS", "soon")])
            )
            .is_err()
        );
        assert!(
            Config::load(
                None,
                env(&[("SWITCHBOARD_ENGINE_TRANSPORTS", "carrier-pigeon")])
            )
            .is_err()
        );
    }
}
