//! `/chat`'s events as data: each client event's payload and ack, each
//! server event's payload, described by the types that (de)serialize them
//! (`payloads.rs`, `replies.rs`, the store's `Message` and `Summary`). The
//! one-line docs are `docs/EVENTS.md`'s.

use crate::contract::Contract;

use super::payloads::*;
use super::replies::*;
use super::store::Message;

/// What `/chat` accepts and sends.
pub fn contract() -> Contract {
    Contract::new("chat")
        .client::<ListConversations, ConversationsPage>(
            "conversations",
            "A page of the user's conversations, latest activity first (`before`: the previous page's `next`).",
        )
        .client::<Create, Created>(
            "conversation:create",
            "Creates a group `{name, members}` (the creator is added) or finds or creates the direct conversation `{direct: user}`.",
        )
        .client::<AddMembers, MembersAdded>(
            "conversation:add_member",
            "Adds users to a group.",
        )
        .client::<ConversationOnly, ConversationLeft>(
            "conversation:leave",
            "Leaves a group.",
        )
        .client::<RemoveMember, MemberRemovedAck>(
            "conversation:remove_member",
            "Removes a member from a group (the owner only).",
        )
        .client::<ConversationOnly, MemberList>(
            "conversation:members",
            "Every member of a conversation, sorted.",
        )
        .client::<SendMessage, Sent>(
            "message",
            "Sends a message to a conversation, or `to` a user (their direct conversation, created if need be); idempotent per `client_id`.",
        )
        .client::<Edit, MessageAck>("message:edit", "Edits one's own message.")
        .client::<AtSeq, MessageAck>(
            "message:delete",
            "Deletes one's own message (the ack has the tombstone).",
        )
        .client::<History, HistoryPage>(
            "history",
            "Messages of a conversation in seq order, `before` or `after` a seq (neither: the newest).",
        )
        .client::<AtSeq, ReadMark>(
            "read",
            "Moves the user's read mark (never backwards).",
        )
        .client::<Typing, Relayed>(
            "typing",
            "Starts or stops the user's typing indicator.",
        )
        .server::<Message>(
            "message",
            "A new message, to every device of every member, the sender's included.",
        )
        .server::<Message>("message:updated", "A message was edited (the new text, `edited_at`).")
        .server::<Message>("message:deleted", "A message was deleted (the tombstone).")
        .server::<Joined<'static>>(
            "conversation:joined",
            "The user is in a new conversation (every device; a created one: all members, the creator's devices included).",
        )
        .server::<MemberAdded<'static>>(
            "conversation:member_added",
            "Users were added (to the members already there).",
        )
        .server::<MemberLeft<'static>>(
            "conversation:member_left",
            "A member left (to the remaining members and every device of the one who left).",
        )
        .server::<MemberRemoved<'static>>(
            "conversation:member_removed",
            "A member was removed (to the remaining members and every device of the one removed).",
        )
        .server::<ReadReceipt<'static>>(
            "read",
            "A member's read mark moved: a receipt to the other members; with `unread` and `mentions` to every device of the reader.",
        )
        .server::<TypingRelay<'static>>(
            "typing",
            "A member started or stopped typing (every device of the other members).",
        )
}
