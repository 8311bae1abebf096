-- Chat: per-channel moderator tokens (stored as SHA-256, never in clear) and bans/timeouts.
-- Times are ms since the Unix epoch.
CREATE TABLE chat_moderators (
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    channel TEXT NOT NULL,
    name TEXT NOT NULL,
    -- 'broadcaster' or 'moderator'.
    role TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX chat_moderators_channel ON chat_moderators (channel);

-- A ban (until_ms = 9223372036854775807) or a timeout, held against the token's subject and the
-- client address it was connected from.
CREATE TABLE chat_bans (
    channel TEXT NOT NULL,
    subject TEXT NOT NULL,
    name TEXT NOT NULL,
    ip TEXT NOT NULL,
    until_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    by_name TEXT NOT NULL,
    PRIMARY KEY (channel, subject)
);
CREATE INDEX chat_bans_ip ON chat_bans (channel, ip);
