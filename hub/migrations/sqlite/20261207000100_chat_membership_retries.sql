-- /chat: what a retried membership change needs to find the change it
-- repeats. In a cluster a change is acked once Redis took its broadcast;
-- a client that got no ack (its node was killed) or `unavailable` sends
-- it again, and the retry announces the change stored by the first if no
-- node did (at most once: the cluster's marker). Times are Unix
-- milliseconds.
--
-- `added_by`: who added the member (`conversation:add_member`); NULL for
-- the members a conversation was created with. A repeated add by the same
-- user finds the members it added, and when.
ALTER TABLE chat_members ADD COLUMN added_by TEXT;

-- The last departure of each user from each conversation: `removed_by`
-- the owner who removed them, NULL when they left. A repeated leave or
-- removal finds it (the member row is gone). One row per pair, replaced
-- by the next departure.
CREATE TABLE chat_departures (
    conversation_id INTEGER NOT NULL REFERENCES chat_conversations (id),
    user_id         TEXT    NOT NULL,
    left_at         INTEGER NOT NULL,
    removed_by      TEXT,
    PRIMARY KEY (conversation_id, user_id)
);
