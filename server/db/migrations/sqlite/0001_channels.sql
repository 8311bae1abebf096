-- Channels and their stream keys. IF NOT EXISTS: databases made before migrations existed
-- already have this table (with the same columns).
CREATE TABLE IF NOT EXISTS channels (
    name TEXT PRIMARY KEY NOT NULL,
    stream_key TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    srt_passphrase TEXT
);
