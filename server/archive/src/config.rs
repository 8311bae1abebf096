//! `[archive]` settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// When recorded bytes are forced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// `fdatasync` after every segment, before it is indexed: a power cut loses at most the
    /// segment being written (and what waited in the queue).
    Segment,
    /// Never forced: the OS writes back within its dirty-page expiry (Linux: ~30 s), which a
    /// power cut may lose; a process crash loses nothing written.
    None,
}

/// Recording of every broadcast published on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Record broadcasts published here. Default true (relayed channels are never recorded: their origin does).
    pub enabled: bool,
    /// Where the chunk files go. Default `DATA_DIR/archive`.
    pub dir: Option<PathBuf>,
    /// Past broadcasts are deleted this many days after they ended. Default 7.
    pub retention_days: u64,
    /// Overrides `retention_days`, in seconds (tests, short-lived setups).
    pub retention_s: Option<u64>,
    /// Disk quota for the chunk files, bytes; the oldest past broadcasts go first when it is
    /// reached. Default 0: no quota.
    pub max_bytes: u64,
    /// When bytes are forced to the disk. Default `segment`.
    pub sync: SyncPolicy,
    /// Segments waiting for the disk, over all renditions; when it is full the recorder waits and,
    /// if the live window moves on meanwhile, records a gap. Default 64.
    pub queue_segments: usize,
    /// Clip requests per client address and minute. Default 5.
    pub clips_per_minute: u32,
    /// S3-compatible storage for complete chunk files (`[archive.s3]`). Default none: local disk only.
    pub s3: Option<crate::objects::S3Config>,
    /// The DVR window: how far back viewers of a live broadcast recorded here can seek
    /// (`/hls/{channel}/dvr.m3u8`), s. Default 7200 (2 h); 0 turns DVR off.
    pub dvr_window_s: u64,
    /// A chunk file holds at most this much media of one rendition before the next file starts, s. Default 300.
    pub chunk_s: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig { enabled: true, dir: None, retention_days: 7, retention_s: None, max_bytes: 0, sync: SyncPolicy::Segment, queue_segments: 64, chunk_s: 300, clips_per_minute: 5, s3: None, dvr_window_s: 7200 }
    }
}

impl ArchiveConfig {
    /// The retention period in seconds.
    pub fn retention_secs(&self) -> u64 {
        self.retention_s.unwrap_or(self.retention_days.saturating_mul(86_400))
    }
}
