//! Configuration as data: a TOML file whose every key can be overridden by
//! an environment variable `SWITCHBOARD_<SECTION>_<KEY>` (upper case), e.g.
//! `SWITCHBOARD_ENGINE_PING_INTERVAL_MS=300`. With no file, defaults apply.
//!
//! [`Config::load`] runs the steps in order, each in its module:
//!
//! - `schema`: the sections and every key's default value;
//! - `file`: the file, laid over the defaults;
//! - `env`: the `SWITCHBOARD_*` variables, laid over both;
//! - `dev_mode`: whether dev mode's sign-in by name is on;
//! - `validate`: every key's value checked, the error naming the key;
//! - `convert`: the engine's, Socket.IO's and the hub's settings.
//!
//! `reference` documents every key; `switchboard config --default`
//! prints it as an annotated TOML file, and `docs/CONFIGURATION.md` holds
//! a copy that a test keeps current.

mod convert;
mod dev_mode;
mod env;
mod error;
mod file;
pub mod reference;
mod schema;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use schema::*;

impl Config {
    /// Reads `path` (if any), then applies `SWITCHBOARD_*` variables from
    /// `env`, then checks every value.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        // The embedded default is for trying the hub out: the web client's
        // sign-in works (`serve` warns about it).
        let implicit = dev_mode::implicit(path.is_some(), &env);
        let mut value = Config::default().to_toml();
        if implicit && let toml::Value::Table(table) = &mut value {
            table.insert("dev_mode".into(), toml::Value::Boolean(true));
        }
        if let Some(path) = path {
            file::merge(&mut value, toml::Value::Table(file::read(path)?));
        }
        env::apply(&mut value, env)?;
        let mut config: Config = value.try_into().map_err(ConfigError::Shape)?;
        config.dev_mode_implicit = implicit;
        config.settle_dev_mode();
        config.validate()?;
        Ok(config)
    }

    /// Reads and checks the file at `path` alone (no environment): what
    /// `switchboard config --check` does.
    pub fn check(path: &Path) -> Result<Config, ConfigError> {
        Config::load(Some(path), Vec::new())
    }

    /// This configuration as a TOML value (every key, the optional
    /// sections that are set).
    fn to_toml(&self) -> toml::Value {
        // Every field is a string, number, bool, list or table that TOML
        // holds; `raw_engine`, an `Option`, is left out when `None`.
        toml::Value::try_from(self).expect("the configuration is TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A file holding `text`, removed with its directory when dropped.
    pub(super) struct TempFile {
        dir: std::path::PathBuf,
        pub path: std::path::PathBuf,
    }

    impl TempFile {
        pub fn new(text: &str) -> TempFile {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "sb-config-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("config.toml");
            std::fs::write(&path, text).unwrap();
            TempFile { dir, path }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn reads_the_conformance_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance.toml");
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(config.engine.ping_interval_ms, 300);
        assert_eq!(config.raw_engine.unwrap().path, "/engine.io/");
    }

    #[test]
    fn accepts_every_configuration_file_of_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for file in [
            "bench/bench.toml",
            "bench/esn.toml",
            "tests/conformance.toml",
            "tests/interop/interop.toml",
            "tests/interop/esn.toml",
            "tests/schemathesis/api.toml",
        ] {
            if let Err(err) = Config::check(&root.join(file)) {
                panic!("{file}: {err}: {:?}", std::error::Error::source(&err));
            }
        }
    }

    #[test]
    fn a_missing_or_malformed_file_says_which() {
        let missing = Path::new("/nonexistent/switchboard.toml");
        let err = Config::check(missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/switchboard.toml"));
        let file = TempFile::new("listen = [\n");
        let err = Config::check(&file.path).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let file = TempFile::new("[chat]\nmax_pages = 10\n");
        let err = Config::check(&file.path).unwrap_err();
        let shown = format!("{:#}", anyhow::Error::from(err));
        assert!(shown.contains("max_pages"), "{shown}");
    }
}
