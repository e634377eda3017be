//! `/presence`'s events as data: each client event's payload and ack, each
//! server event's payload, described by the types that (de)serialize them
//! (the payloads and acks in `mod.rs`, the service's `UserPresence`). The
//! one-line docs are `docs/EVENTS.md`'s.

use crate::contract::Contract;
use crate::services::presence::UserPresence;

use super::{StatusRequest, StatusSet, Unwatched, UsersRequest, Watched};

/// What `/presence` accepts and sends.
pub fn contract() -> Contract {
    Contract::new("presence")
        .client::<StatusRequest, StatusSet>(
            "status",
            "Sets the user's status for all their devices (kept across restarts); the ack has the user's presence after.",
        )
        .client::<UsersRequest, Watched>(
            "watch",
            "Watches users (1 to `max_watch` ids, this socket's watch list included): a snapshot of each, in order, and how many users the socket watches now.",
        )
        .client::<UsersRequest, Unwatched>(
            "unwatch",
            "Stops watching users; the ack says how many the socket still watches.",
        )
        .server::<UserPresence>(
            "presence",
            "A watched user's (or the user's own) status or number of devices changed.",
        )
}
