-- /chat: who may remove members from a group, how many conversations
-- each user is in and how many members each conversation has.
--
-- `owner` is the group member who may remove others: its creator, and
-- when the owner leaves (or is removed), the member who joined first
-- (ties by user id). NULL for direct conversations (nobody removes
-- anyone from those) and for a group nobody is left in. Existing groups:
-- the creator if still a member, else the first to have joined.
ALTER TABLE chat_conversations ADD COLUMN owner TEXT;
UPDATE chat_conversations SET owner = COALESCE(
    (SELECT m.user_id FROM chat_members m
      WHERE m.conversation_id = chat_conversations.id
        AND m.user_id = chat_conversations.created_by),
    (SELECT m.user_id FROM chat_members m
      WHERE m.conversation_id = chat_conversations.id
      ORDER BY m.joined_at, m.user_id LIMIT 1))
WHERE kind = 'group';

-- The memberships of each user, kept by the same statements that add and
-- remove members: `chat.max_conversations_per_user` is checked against
-- one row, not a count over the user's memberships. Existing memberships
-- counted here.
CREATE TABLE chat_user_conversations (
    user_id       TEXT    PRIMARY KEY,
    conversations BIGINT NOT NULL
);
INSERT INTO chat_user_conversations (user_id, conversations)
    SELECT user_id, COUNT(*) FROM chat_members GROUP BY user_id;

-- The members of each conversation, kept likewise: a `conversations`
-- page gives each conversation's `member_count` without counting them.
ALTER TABLE chat_conversations ADD COLUMN member_count BIGINT NOT NULL DEFAULT 0;
UPDATE chat_conversations SET member_count =
    (SELECT COUNT(*) FROM chat_members m WHERE m.conversation_id = chat_conversations.id);
