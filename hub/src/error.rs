//! [`HubError`]: a refusal or failure the hub answers a client (or a
//! backend service) with, whatever part of the hub decided it.

use serde_json::{Value, json};

/// A refusal or failure, sent to the client as `{ok:false, error}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HubError {
    pub code: &'static str,
    pub message: String,
}

impl HubError {
    pub fn new(code: &'static str, message: impl Into<String>) -> HubError {
        HubError {
            code,
            message: message.into(),
        }
    }

    /// The ack that carries it: `{ok:false, error:{code, message}}`.
    pub fn reply(&self) -> Value {
        json!({"ok": false, "error": {"code": self.code, "message": self.message}})
    }
}

impl From<crate::store::StoreError> for HubError {
    /// A store that failed or did not answer: the client is told to try
    /// again later, the operator finds the cause in the log.
    fn from(err: crate::store::StoreError) -> HubError {
        tracing::warn!(%err, "store error");
        HubError::new("unavailable", "the store is unavailable; try again")
    }
}
