-- /presence: what must survive a restart, one row per user seen. `status`
-- is the one the user chose (online, away, busy); `last_seen` when a device
-- of theirs last connected or left (Unix milliseconds), NULL if never.
CREATE TABLE presence (
    user_id   TEXT    PRIMARY KEY,
    status    TEXT    NOT NULL DEFAULT 'online',
    last_seen INTEGER
);
