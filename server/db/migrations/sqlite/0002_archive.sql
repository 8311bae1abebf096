-- The archive index: past broadcasts, their renditions, the chunk files holding their media, and
-- every recorded segment's place in those files. Times are ms since the Unix epoch; flags are 0/1.
CREATE TABLE archive_broadcasts (
    id TEXT PRIMARY KEY NOT NULL,
    channel TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    -- End of the last recorded segment (PROGRAM-DATE-TIME + duration).
    last_ms BIGINT NOT NULL,
    -- 1 once the broadcast ended (the recorder saw EXT-X-ENDLIST).
    ended BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX archive_broadcasts_channel ON archive_broadcasts (channel, started_ms);

CREATE TABLE archive_renditions (
    broadcast_id TEXT NOT NULL,
    name TEXT NOT NULL,
    is_video BIGINT NOT NULL,
    codec TEXT NOT NULL,
    width BIGINT,
    height BIGINT,
    frame_rate REAL,
    channels BIGINT,
    PRIMARY KEY (broadcast_id, name)
);

-- A chunk file: the init segment at offset 0 (init_len bytes), then segments. Its path is
-- relative to the archive directory and is also its object key (after the configured prefix).
CREATE TABLE archive_files (
    path TEXT PRIMARY KEY NOT NULL,
    broadcast_id TEXT NOT NULL,
    rendition TEXT NOT NULL,
    init_len BIGINT NOT NULL,
    -- 1 once nothing more is appended (bytes is then its length).
    closed BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    -- 1 once it is in object storage.
    uploaded BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX archive_files_upload ON archive_files (closed, uploaded);
CREATE INDEX archive_files_broadcast ON archive_files (broadcast_id);

CREATE TABLE archive_segments (
    broadcast_id TEXT NOT NULL,
    rendition TEXT NOT NULL,
    msn BIGINT NOT NULL,
    pdt_ms BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    discontinuity BIGINT NOT NULL,
    -- Segments before this one are missing (the disk fell behind, or the live window lost them).
    gap_before BIGINT NOT NULL,
    path TEXT NOT NULL,
    byte_offset BIGINT NOT NULL,
    byte_length BIGINT NOT NULL,
    -- Its Partial Segments as JSON [[bytes, duration_us], ...] (a clip ends on a part boundary).
    parts TEXT NOT NULL,
    PRIMARY KEY (broadcast_id, rendition, msn)
);

-- Clips: a range of a broadcast, copied into files of its own when recorded (so retention never
-- touches them), its media indexed in the tables above under the clip's id.
CREATE TABLE archive_clips (
    id TEXT PRIMARY KEY NOT NULL,
    channel TEXT NOT NULL,
    broadcast_id TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    -- pending, ready or failed.
    status TEXT NOT NULL,
    error TEXT
);
CREATE INDEX archive_clips_channel ON archive_clips (channel, created_ms);
