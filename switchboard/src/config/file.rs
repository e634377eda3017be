//! The configuration file: a TOML table laid over the defaults, table by
//! table, so that a file names only the keys it changes.

use std::path::Path;

use super::ConfigError;

/// Reads the TOML file at `path`.
pub(super) fn read(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Overlays `over` onto `base`, table by table: a key of `over` replaces
/// the same key of `base` unless both are tables, which are merged.
pub(super) fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(base), toml::Value::Table(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_changes_only_the_keys_it_names() {
        let mut base: toml::Value = toml::from_str("a = 1\n[s]\nx = 1\ny = 2\n").unwrap();
        let over: toml::Value = toml::from_str("[s]\ny = 3\nz = 4\n").unwrap();
        merge(&mut base, over);
        let expected: toml::Value = toml::from_str("a = 1\n[s]\nx = 1\ny = 3\nz = 4\n").unwrap();
        assert_eq!(base, expected);
    }
}
