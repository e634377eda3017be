//! What `/chat` answers and tells, as types: the acks of its events and
//! the server events its members get. Their fields are the contract of
//! `docs/EVENTS.md`.

use serde::Serialize;

use super::store::{Message, Summary};

/// `message`'s ack.
#[derive(Debug, Serialize)]
pub struct Sent {
    pub id: i64,
    pub seq: i64,
    pub ts: i64,
    pub conversation: i64,
    /// The `client_id` had stored this message already (a retry).
    pub duplicate: bool,
}

/// `conversations`' ack: a page, latest activity first.
#[derive(Debug, Serialize)]
pub struct Conversations {
    pub conversations: Vec<Summary>,
    pub has_more: bool,
    /// The cursor of the next page (`null`: none).
    pub next: Option<String>,
}

/// `conversation:create`'s ack.
#[derive(Debug, Serialize)]
pub struct Created<'a> {
    pub conversation: &'a Summary,
    /// `false`: the direct conversation existed.
    pub created: bool,
}

/// `conversation:add_member`'s ack.
#[derive(Debug, Serialize)]
pub struct MembersAdded {
    /// Those not members yet.
    pub added: Vec<String>,
    pub members: Vec<String>,
}

/// `conversation:leave`'s ack.
#[derive(Debug, Serialize)]
pub struct Left {
    pub conversation: i64,
}

/// `conversation:remove_member`'s ack.
#[derive(Debug, Serialize)]
pub struct MemberRemoved {
    pub conversation: i64,
    pub user: String,
}

/// `conversation:members`' ack: all of them, sorted.
#[derive(Debug, Serialize)]
pub struct Members {
    pub conversation: i64,
    pub member_count: usize,
    pub members: Vec<String>,
}

/// `message:edit`'s and `message:delete`'s ack.
#[derive(Debug, Serialize)]
pub struct Changed<'a> {
    pub message: &'a Message,
}

/// `history`'s ack: in seq order.
#[derive(Debug, Serialize)]
pub struct History {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// `read`'s ack: the read mark after the call.
#[derive(Debug, Serialize)]
pub struct ReadMark {
    pub seq: i64,
    pub unread: i64,
    pub mentions: i64,
}

/// `typing`'s ack: whether the others were told.
#[derive(Debug, Serialize)]
pub struct Relayed {
    pub relayed: bool,
}

/// `conversation:joined`: to every device of each new member.
#[derive(Debug, Serialize)]
pub struct Joined<'a> {
    pub conversation: &'a Summary,
}

/// `conversation:member_added`: to the members already there.
#[derive(Debug, Serialize)]
pub struct MemberAdded<'a> {
    pub conversation: i64,
    pub users: &'a [String],
    pub by: &'a str,
}

/// `conversation:member_left` and `conversation:member_removed` (`by`:
/// the owner who removed them; absent when they left).
#[derive(Debug, Serialize)]
pub struct MemberGone<'a> {
    pub conversation: i64,
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<&'a str>,
}

/// `read`: a receipt to the other members; to the reader's devices with
/// their unread counts.
#[derive(Debug, Serialize)]
pub struct Read<'a> {
    pub conversation: i64,
    pub user: &'a str,
    pub seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<i64>,
}

/// `typing`: to every device of the other members.
#[derive(Debug, Serialize)]
pub struct Typing<'a> {
    pub conversation: i64,
    pub user: &'a str,
    pub typing: bool,
}
