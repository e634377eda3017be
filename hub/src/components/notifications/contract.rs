//! `/notifications`' events as data: each client event's payload and ack,
//! each server event's payload, described by the types that (de)serialize
//! them (`payload.rs`, the acks in `mod.rs`, the service's events). The
//! one-line docs are `docs/EVENTS.md`'s.

use crate::contract::Contract;
use crate::services::notifications::{NotificationEvent, ReadElsewhere, Unread};

use super::payload::{ListRequest, ReadRequest};
use super::{Listed, MarkedAllRead, MarkedRead};

/// What `/notifications` accepts and sends.
pub fn contract() -> Contract {
    Contract::new("notifications")
        .client::<ListRequest, Listed>(
            "list",
            "A page of the user's notifications, newest first (`before`: the previous page's last id; `limit`: 1 to `max_list_limit`, 20 by default).",
        )
        .client::<ReadRequest, MarkedRead>(
            "read",
            "Marks these notifications read; the ack has the ids this read marked (those unread and the user's).",
        )
        .client_bare::<MarkedAllRead>(
            "read_all",
            "Marks every unread notification of the user read; the ack says how many.",
        )
        .server::<Unread>(
            "unread",
            "The user's unread count: once connected (the namespace's first event), and after every change by a read or a prune.",
        )
        .server::<NotificationEvent>(
            "notification",
            "A notification was created for the user (every device), with the unread count after it.",
        )
        .server::<ReadElsewhere<'static>>(
            "notification:read",
            "Another device of the user read these (`ids`) or all (`all: true`).",
        )
}
