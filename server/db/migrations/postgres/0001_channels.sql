-- Channels and their stream keys.
CREATE TABLE channels (
    name TEXT PRIMARY KEY NOT NULL,
    stream_key TEXT NOT NULL UNIQUE,
    -- Seconds since the Unix epoch.
    created_at BIGINT NOT NULL,
    srt_passphrase TEXT
);
