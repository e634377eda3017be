//! What `/calls` answers and emits: one type per ack (the fields of its
//! `{ok:true, …}`) and per server event, described by the contract
//! ([`super::contract`]).
//!
//! Field order: a JSON value (what `json!` built) has its keys sorted,
//! and that is the order clients have always seen. Acks still go through a
//! value ([`crate::components::kit::reply`]); the server events are
//! emitted as they are, so their fields are declared in that order (a test
//! checks each) — but for [`Signal`], which was always a struct and keeps
//! its declared order.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::call::{EndReason, Kind};
use super::turn::IceServer;

/// `call:invite`: the call placed, ringing.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallPlaced<'a> {
    pub call: &'a str,
    /// Unix milliseconds.
    pub created_at: i64,
    pub invitees: &'a [String],
    pub kind: Kind,
    pub ring_timeout_ms: u64,
}

/// A device already in a call, as the one told sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Peer<'a> {
    pub user: &'a str,
    pub device: &'a str,
    /// Whether the device told is the polite peer towards this one.
    pub polite: bool,
}

/// `call:accept`: the devices already in the call.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallJoined<'a> {
    pub call: &'a str,
    pub kind: Kind,
    pub participants: Vec<Peer<'a>>,
}

/// `call:decline`, `call:hangup`: the reason if this ended the call.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallOutcome<'a> {
    pub call: &'a str,
    #[schema(required = true)]
    pub ended: Option<EndReason>,
}

/// `ice_servers`: for `new RTCPeerConnection({iceServers})`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IceServers {
    /// Unix seconds.
    pub expires_at: u64,
    pub ice_servers: Vec<IceServer>,
    /// `calls.max_participants`: the most devices a call takes, the
    /// caller's included (a page offers a group call only up to it).
    pub max_participants: usize,
    pub ttl_secs: u64,
}

/// `call:ringing`: a call rings for the user.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallRinging<'a> {
    pub call: &'a str,
    pub created_at: i64,
    /// The caller.
    pub from: &'a str,
    pub invitees: Vec<&'a str>,
    pub kind: Kind,
    pub ring_timeout_ms: u64,
}

/// `call:outgoing`: the user placed a call from another device.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallOutgoing<'a> {
    pub call: &'a str,
    pub created_at: i64,
    /// The calling device.
    pub device: &'a str,
    pub invitees: &'a [String],
    pub kind: Kind,
}

/// `call:accepted`: a device joined the call.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallAccepted<'a> {
    pub call: &'a str,
    pub device: &'a str,
    /// The receiving device's role towards the one that joined.
    pub polite: bool,
    pub user: &'a str,
}

/// `call:answered_elsewhere`: another device of the user answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallAnsweredElsewhere<'a> {
    pub call: &'a str,
    pub device: &'a str,
}

/// `call:declined`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallDeclined<'a> {
    pub call: &'a str,
    pub user: &'a str,
}

/// Why a device left a call that goes on.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    Hangup,
    Disconnected,
}

/// `call:left`: a device left; the call goes on.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallLeft<'a> {
    pub call: &'a str,
    pub device: &'a str,
    pub reason: LeftReason,
    pub user: &'a str,
}

/// `call:unanswered`: these users' ringing timed out; the call goes on.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallUnanswered<'a> {
    pub call: &'a str,
    pub users: &'a [String],
}

/// `call:ended`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallEnded<'a> {
    pub call: &'a str,
    pub reason: EndReason,
}

/// `signal`, relayed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Signal<'a> {
    pub call: &'a str,
    /// The sending device.
    pub from: &'a str,
    pub user: &'a str,
    #[schema(value_type = Value)]
    pub data: &'a RawValue,
    /// Whether the receiving device is the polite peer towards the sender.
    pub polite: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Serialized as is, exactly as through a (key-sorted) value.
    fn as_a_value_would<T: Serialize>(event: &T) {
        let direct = serde_json::to_string(event).unwrap();
        let value: Value = serde_json::to_value(event).unwrap();
        assert_eq!(direct, value.to_string());
    }

    #[test]
    fn server_events_keep_the_order_of_a_json_value() {
        let users = vec!["b".to_owned()];
        as_a_value_would(&CallRinging {
            call: "c",
            created_at: 1,
            from: "a",
            invitees: vec!["b"],
            kind: Kind::Video,
            ring_timeout_ms: 30_000,
        });
        as_a_value_would(&CallOutgoing {
            call: "c",
            created_at: 1,
            device: "d",
            invitees: &users,
            kind: Kind::Audio,
        });
        as_a_value_would(&CallAccepted {
            call: "c",
            device: "d",
            polite: true,
            user: "b",
        });
        as_a_value_would(&CallAnsweredElsewhere {
            call: "c",
            device: "d",
        });
        as_a_value_would(&CallDeclined {
            call: "c",
            user: "b",
        });
        let left = CallLeft {
            call: "c",
            device: "d",
            reason: LeftReason::Disconnected,
            user: "b",
        };
        as_a_value_would(&left);
        assert!(
            serde_json::to_string(&left)
                .unwrap()
                .contains(r#""reason":"disconnected""#)
        );
        as_a_value_would(&CallUnanswered {
            call: "c",
            users: &users,
        });
        as_a_value_would(&CallEnded {
            call: "c",
            reason: EndReason::NoAnswer,
        });
    }
}
