//! What clients send to `/chat`: one struct per event, unknown fields
//! refused, so a typo is a `bad_request` rather than a silently ignored
//! option.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use socketio::Args;
use utoipa::ToSchema;

use crate::components::kit;
use crate::error::HubError;

/// The event's first argument as `T`, or a `bad_request` saying why not.
pub fn parse<T: DeserializeOwned>(args: &Args) -> Result<T, HubError> {
    kit::parse(args, "invalid payload")
}

/// Like [`parse`], with `T::default()` when no argument (or `null`) came.
pub fn parse_or_default<T: DeserializeOwned + Default>(args: &Args) -> Result<T, HubError> {
    let value: Option<T> = parse(args)?;
    Ok(value.unwrap_or_default())
}

/// `conversations`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListConversations {
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    pub before: Option<String>,
}

/// `conversation:create`: a group (`name`, `members`) or the direct
/// conversation with a user (`direct`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Create {
    pub name: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    pub direct: Option<String>,
}

/// `conversation:add_member`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    pub conversation: i64,
    pub users: Vec<String>,
}

/// `conversation:remove_member`: `user` out of a group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveMember {
    pub conversation: i64,
    pub user: String,
}

/// `conversation:leave` and `conversation:members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationOnly {
    pub conversation: i64,
}

/// `message`: to a conversation, or to a user (their direct conversation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub conversation: Option<i64>,
    pub to: Option<String>,
    pub client_id: String,
    pub text: String,
    pub reply_to: Option<i64>,
}

/// `message:edit`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    pub conversation: i64,
    pub seq: i64,
    pub text: String,
}

/// `message:delete` and `read`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AtSeq {
    pub conversation: i64,
    pub seq: i64,
}

/// `history`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub conversation: i64,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// `typing`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    pub conversation: i64,
    pub typing: bool,
}
