-- Peak concurrent viewers of each broadcast (playback sessions summed over the cluster, as the
-- channel directory counts them), raised by the recording node while the broadcast is live.
ALTER TABLE archive_broadcasts ADD COLUMN peak_viewers BIGINT NOT NULL DEFAULT 0;
