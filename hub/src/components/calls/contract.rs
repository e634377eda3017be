//! `/calls`' events as data: each client event's payload and ack, each
//! server event's payload, described by the types that (de)serialize them
//! (`payloads.rs`, `replies.rs`). The one-line docs are `docs/EVENTS.md`'s.

use crate::contract::Contract;

use super::payloads::*;
use super::replies::*;

/// What `/calls` accepts and sends.
pub fn contract() -> Contract {
    Contract::new("calls")
        .client::<InviteArgs, CallPlaced<'static>>(
            "call:invite",
            "Rings users (1..`max_participants`−1, not oneself; duplicates count once).",
        )
        .client::<CallRef, CallJoined<'static>>(
            "call:accept",
            "Answers a call on this device: the devices already in it, and this device's role towards each.",
        )
        .client::<CallRef, CallOutcome<'static>>(
            "call:decline",
            "Declines a call (`ended`: the reason if this ended it, else `null`).",
        )
        .client::<CallRef, CallOutcome<'static>>("call:hangup", "This device leaves the call.")
        .client_plain::<SignalArgs>("signal", "Relays `data` to one participant device.")
        .client_bare::<IceServers>(
            "ice_servers",
            "ICE servers for `new RTCPeerConnection({iceServers})` (TURN credentials valid `ttl_secs`).",
        )
        .server::<CallRinging<'static>>(
            "call:ringing",
            "A call rings for the user (every device, and one that connects while it rings).",
        )
        .server::<CallOutgoing<'static>>(
            "call:outgoing",
            "The user placed a call from another device (`device`: the calling one).",
        )
        .server::<CallAccepted<'static>>(
            "call:accepted",
            "A device joined the call (to each participant device), and the receiving device's role towards it.",
        )
        .server::<CallAnsweredElsewhere<'static>>(
            "call:answered_elsewhere",
            "Another device of the user answered (stop ringing).",
        )
        .server::<CallDeclined<'static>>(
            "call:declined",
            "An invitee declined (everyone involved but the declining device).",
        )
        .server::<CallLeft<'static>>(
            "call:left",
            "A device left; the call goes on.",
        )
        .server::<CallUnanswered<'static>>(
            "call:unanswered",
            "These users' ringing timed out; the call goes on.",
        )
        .server::<CallEnded<'static>>(
            "call:ended",
            "The call ended (everyone involved but the device whose ack said it).",
        )
        .server::<Signal<'static>>(
            "signal",
            "A signal from a participant device (`from`); `polite`: the receiver's role towards it.",
        )
}
