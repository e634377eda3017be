-- /chat: conversations, their members and their messages. Times are Unix
-- milliseconds.
--
-- A direct conversation has `direct_key` = the JSON array of its two user
-- ids in order: the unique key makes "one per pair" hold even when both
-- users create it at once (insert-or-get). Groups have it NULL.
-- `last_seq` is the seq of the conversation's newest message: a message
-- takes `last_seq + 1` inside its write transaction, so seqs have no gaps.
CREATE TABLE chat_conversations (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT    NOT NULL,
    name          TEXT,
    direct_key    TEXT    UNIQUE,
    created_by    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    last_seq      BIGINT  NOT NULL DEFAULT 0,
    last_activity BIGINT  NOT NULL
);

-- Unread = last_seq - last_read_seq.
CREATE TABLE chat_members (
    conversation_id BIGINT  NOT NULL REFERENCES chat_conversations (id),
    user_id         TEXT    NOT NULL,
    joined_at       BIGINT  NOT NULL,
    last_read_seq   BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX chat_members_by_user ON chat_members (user_id, conversation_id);

-- `text` is NULL once deleted (a tombstone; the seq stays).
-- `(sender, client_id)` is unique: a retried send finds the first one.
CREATE TABLE chat_messages (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT  NOT NULL REFERENCES chat_conversations (id),
    seq             BIGINT  NOT NULL,
    sender          TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    text            TEXT,
    reply_to        BIGINT,
    mentions        TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    edited_at       BIGINT,
    deleted_at      BIGINT,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender, client_id)
);

-- One row per member mentioned by a message: the mention count is the
-- rows past the member's last_read_seq.
CREATE TABLE chat_mentions (
    user_id         TEXT    NOT NULL,
    conversation_id BIGINT  NOT NULL,
    seq             BIGINT  NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq)
);
