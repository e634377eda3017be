//! What clients send to `/calls`: one struct per event, unknown fields
//! refused.

use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::call::Kind;

/// `call:invite`: users to ring (not oneself; duplicates count once).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteArgs {
    pub users: Vec<String>,
    pub kind: Kind,
}

/// `call:accept`, `call:decline`, `call:hangup`: the call's id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRef {
    pub call: String,
}

/// `signal`: `data` for one participant device.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalArgs {
    pub call: String,
    /// The receiving device (its socket id).
    pub to: String,
    /// Any JSON: an SDP offer or answer, an ICE candidate.
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
}

/// `ice_servers`: nothing, or `{}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}
