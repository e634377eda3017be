//! Why a configuration was refused: one error type for every step of
//! loading it (reading the file, the environment, the shape, the values),
//! so that each step's `?` reaches the caller as it is.

use std::path::PathBuf;

/// A configuration that cannot be used, and where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("parsing config file {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A `SWITCHBOARD_*` variable names no key.
    #[error("unknown configuration variable {0}")]
    UnknownVariable(String),
    /// A key is unknown, or a value is not of its key's type.
    #[error("invalid configuration")]
    Shape(#[source] toml::de::Error),
    /// A value its key does not take: `chat.max_page: must be between 1
    /// and 500, got 0`.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// A value `key` does not take, and why.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}
