//! DVR (a seek-back window on the live stream): the hook through which the routes get what left
//! the in-RAM window, recorded by the archive. The DVR playlists name recorded segments exactly
//! as the live ones did (`seg{msn}.m4s`, `init{N}.mp4`): a segment's URI never changes while it
//! is listed (RFC 8216bis §6.2.2), and the routes answer for it from RAM or, once it left RAM,
//! from the recording.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;

/// A recorded segment as a playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSegment {
    /// Its init segment's id (as the store numbered it: `init.mp4` for 0, `init{N}.mp4` after).
    pub init_id: u64,
    /// EXT-X-PROGRAM-DATE-TIME of its first sample.
    pub program_date_time: SystemTime,
    /// Duration in seconds.
    pub duration: f64,
    /// EXT-X-DISCONTINUITY before it.
    pub discontinuity: bool,
}

/// A contiguous run of recorded segments of one rendition: `segments[..len]`, numbered from
/// `first_msn`, oldest first.
#[derive(Debug, Clone)]
pub struct Run {
    /// The recorded segments (shared: a playlist render copies only what it lists).
    pub segments: Arc<Vec<RecordedSegment>>,
    /// Media Sequence Number of `segments[0]`.
    pub first_msn: u64,
    /// How many of `segments` the run covers.
    pub len: usize,
}

/// Recorded media the routes may be asked for once it left RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The segment with this Media Sequence Number.
    Segment(u64),
    /// The init segment with this id.
    Init(u64),
}

/// Where the DVR playlists (`/hls/{channel}/dvr.m3u8`, `/hls/{channel}/{rendition}/dvr.m3u8`)
/// get what left the in-RAM window.
pub trait History: Send + Sync + std::fmt::Debug {
    /// The recorded segments of `rendition` of `channel`'s broadcast that end right where MSN
    /// `before` starts (the oldest segment still in RAM), within the DVR window. `None` when
    /// nothing is recorded up to `before - 1` yet (the recorder lags, or DVR is off for it).
    fn before(&self, channel: &str, rendition: &str, before: u64) -> Option<Run>;

    /// The bytes of recorded media of `rendition` of `channel` that the DVR window lists;
    /// `None` when it does not list it or the bytes cannot be read (logged by the implementation).
    fn media<'a>(&'a self, channel: &'a str, rendition: &'a str, what: Recorded) -> BoxFuture<'a, Option<Bytes>>;
}
