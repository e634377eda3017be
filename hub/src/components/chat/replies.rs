//! What `/chat` answers and emits: one type per ack (the fields of its
//! `{ok:true, …}`) and per server event, so the wire format is written
//! down once, in types the contract ([`super::contract`]) describes.
//!
//! Field order: without serde_json's `preserve_order`, a JSON object built
//! as a value has its keys sorted, and that is the order clients have
//! always seen. Acks still go through a value (see
//! [`crate::components::kit::reply`]); the server events here are emitted
//! as they are, so their fields are declared in that (alphabetical) order,
//! and a test checks that each serializes exactly as its value would.
//! Fields always present, `null` when there is nothing, are `required` in
//! the schema: a client may rely on the key.

use serde::Serialize;
use utoipa::ToSchema;

use super::store::{Message, Summary};

/// `conversations`: a page of the user's conversations, latest activity
/// first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationsPage {
    pub conversations: Vec<Summary>,
    pub has_more: bool,
    /// The cursor of the next page (`before`), `null` on the last one.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// `conversation:create`: the conversation, and whether it was new
/// (`false`: the direct conversation existed).
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub conversation: Summary,
    pub created: bool,
}

/// `conversation:add_member`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembersAdded {
    /// Those who were not members yet.
    pub added: Vec<String>,
    /// Every member now, sorted.
    pub members: Vec<String>,
}

/// `conversation:leave`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationLeft {
    pub conversation: i64,
}

/// `conversation:remove_member`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberRemovedAck {
    pub conversation: i64,
    pub user: String,
}

/// `conversation:members`: all of them, sorted.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub conversation: i64,
    pub member_count: usize,
    pub members: Vec<String>,
    /// Each member's read mark (the highest seq they have read, 0: none),
    /// as their `read` receipts said it: a page that opens the
    /// conversation later shows where everyone is.
    pub reads: std::collections::BTreeMap<String, i64>,
}

/// `message`: where the message was stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sent {
    pub conversation: i64,
    /// The `client_id` was used already: this is the message it stored.
    pub duplicate: bool,
    pub id: i64,
    pub seq: i64,
    pub ts: i64,
}

/// `message:edit` (the new text) and `message:delete` (the tombstone).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageAck {
    pub message: Message,
}

/// `history`: messages in seq order.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub has_more: bool,
    pub messages: Vec<Message>,
}

/// `read`: the read mark after the call.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadMark {
    pub mentions: i64,
    pub seq: i64,
    pub unread: i64,
}

/// `typing`: whether the others were told.
#[derive(Debug, Serialize, ToSchema)]
pub struct Relayed {
    pub relayed: bool,
}

/// A conversation's kind, as a conversation summary's `kind` holds it (a
/// string in the store; this names the two values it takes, for the
/// schema).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    Direct,
    Group,
}

/// `conversation:joined`: a conversation the user is now in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Joined<'a> {
    pub conversation: &'a Summary,
}

/// `conversation:member_added`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberAdded<'a> {
    pub by: &'a str,
    pub conversation: i64,
    pub users: &'a [String],
}

/// `conversation:member_left`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberLeft<'a> {
    pub conversation: i64,
    pub user: &'a str,
}

/// `conversation:member_removed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberRemoved<'a> {
    pub by: &'a str,
    pub conversation: i64,
    pub user: &'a str,
}

/// `read`: a member's read mark moved. The other members get a receipt
/// (no `unread` nor `mentions`); the reader's devices get their counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadReceipt<'a> {
    pub conversation: i64,
    /// The reader's devices only (absent, never `null`, in a receipt).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64)]
    pub mentions: Option<i64>,
    pub seq: i64,
    /// The reader's devices only (absent, never `null`, in a receipt).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64)]
    pub unread: Option<i64>,
    pub user: &'a str,
}

/// `typing`: a member started or stopped typing.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypingRelay<'a> {
    pub conversation: i64,
    pub typing: bool,
    pub user: &'a str,
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

    fn summary() -> Summary {
        Summary {
            id: 1,
            kind: "group".into(),
            name: Some("g".into()),
            members: vec!["a".into()],
            member_count: 1,
            owner: None,
            created_at: 1,
            last_seq: 0,
            last_activity: 1,
            last_message: None,
            last_read_seq: 0,
            unread: 0,
            mentions: 0,
        }
    }

    #[test]
    fn server_events_keep_the_order_of_a_json_value() {
        let users = vec!["b".to_owned()];
        as_a_value_would(&MemberAdded {
            by: "a",
            conversation: 1,
            users: &users,
        });
        as_a_value_would(&MemberLeft {
            conversation: 1,
            user: "a",
        });
        as_a_value_would(&MemberRemoved {
            by: "a",
            conversation: 1,
            user: "b",
        });
        let mut read = ReadReceipt {
            conversation: 1,
            mentions: None,
            seq: 2,
            unread: None,
            user: "a",
        };
        as_a_value_would(&read);
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#"{"conversation":1,"seq":2,"user":"a"}"#
        );
        (read.mentions, read.unread) = (Some(0), Some(3));
        as_a_value_would(&read);
        as_a_value_would(&TypingRelay {
            conversation: 1,
            typing: true,
            user: "a",
        });
        // Emitted through a value: the summary inside is sorted too.
        let summary = summary();
        let joined = serde_json::to_value(Joined {
            conversation: &summary,
        })
        .unwrap();
        assert!(
            joined
                .to_string()
                .starts_with(r#"{"conversation":{"created_at":1,"#)
        );
    }
}
