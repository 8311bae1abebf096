//! The DVR window: for each channel recorded here, the last `dvr_window_s` of every rendition's
//! recorded segments, in memory: what the origin's `dvr.m3u8` lists before its RAM window (named
//! as they were live) and where their bytes are, so that `seg{msn}.m4s` and `init{N}.mp4` are
//! still answered once they left RAM (from the chunk file, or its object in storage). Fed by
//! the writer's index operations once they are in the index. Only the broadcast live now is
//! kept: a server restart starts new broadcasts, and what came before is a past broadcast (VOD).
//!
//! Memory: about 100 bytes per segment: a 2 h window of 2 s segments is 3,600 per rendition
//! (`onair_dvr_segments` counts them over every window).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use onair_origin::{History, Recorded, RecordedSegment, Run};

use crate::index::SegmentRow;
use crate::objects::Objects;
use crate::writer::IndexOp;

/// Bytes of a chunk file: its path (relative to the archive directory) and a range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    path: String,
    offset: u64,
    length: u64,
}

/// The recorded segments of one rendition: contiguous, numbered from `first_msn`, and where
/// each is; plus where each init segment they use is.
#[derive(Debug, Default)]
struct Window {
    first_msn: u64,
    segments: Arc<Vec<RecordedSegment>>,
    locations: VecDeque<Location>,
    inits: HashMap<u64, Location>,
}

#[derive(Debug)]
struct Channel {
    broadcast: String,
    renditions: HashMap<String, Window>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Broadcast id → channel, for the broadcasts being recorded.
    broadcasts: HashMap<String, String>,
    /// Channel → its current broadcast's windows.
    channels: HashMap<String, Channel>,
    /// Chunk file path → (init id, length of the init segment at its start).
    files: HashMap<String, (u64, u64)>,
}

/// The DVR windows of the channels recorded here: the origin's [`History`].
#[derive(Debug)]
pub struct Dvr {
    window_ms: i64,
    dir: PathBuf,
    objects: Option<Objects>,
    inner: Mutex<Inner>,
}

impl Dvr {
    /// Windows of `window_s` seconds over the chunk files in `dir` (or, once uploaded, `objects`).
    pub fn new(window_s: u64, dir: PathBuf, objects: Option<Objects>) -> Self {
        let window_ms = i64::try_from(window_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Dvr { window_ms, dir, objects, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in an index operation that was applied.
    pub(crate) fn observe(&self, op: &IndexOp) {
        let mut inner = self.lock();
        match op {
            IndexOp::Broadcast { id, channel, .. } => {
                inner.broadcasts.insert(id.clone(), channel.clone());
                inner.channels.insert(channel.clone(), Channel { broadcast: id.clone(), renditions: HashMap::new() });
            }
            IndexOp::File { path, init_len, init_id, .. } => {
                inner.files.insert(path.clone(), (*init_id, *init_len));
            }
            IndexOp::Segment { broadcast, rendition, row } => {
                let Some((init_id, init_len)) = inner.files.get(&row.path).copied() else { return };
                let Some(channel) = inner.broadcasts.get(broadcast).cloned() else { return };
                let Some(ch) = inner.channels.get_mut(&channel).filter(|c| c.broadcast == *broadcast) else { return };
                let w = ch.renditions.entry(rendition.clone()).or_default();
                w.inits.insert(init_id, Location { path: row.path.clone(), offset: 0, length: init_len });
                push(w, row, init_id, self.window_ms);
            }
            IndexOp::End { broadcast } => {
                if let Some(channel) = inner.broadcasts.remove(broadcast) {
                    if inner.channels.get(&channel).is_some_and(|c| c.broadcast == *broadcast) {
                        inner.channels.remove(&channel);
                    }
                    let dir = format!("{channel}/{broadcast}/");
                    inner.files.retain(|path, _| !path.starts_with(&dir));
                }
            }
            IndexOp::Rendition { .. } | IndexOp::Closed { .. } => return,
        }
        let held: usize = inner.channels.values().flat_map(|c| c.renditions.values()).map(|w| w.segments.len()).sum();
        metrics::gauge!("onair_dvr_segments").set(held as f64);
    }

    fn location(&self, channel: &str, rendition: &str, what: Recorded) -> Option<Location> {
        let inner = self.lock();
        let w = inner.channels.get(channel)?.renditions.get(rendition)?;
        match what {
            Recorded::Segment(msn) => w.locations.get(usize::try_from(msn.checked_sub(w.first_msn)?).ok()?).cloned(),
            Recorded::Init(id) => w.inits.get(&id).cloned(),
        }
    }
}

/// Appends `row` to `w`, starting over after a hole, and drops what is older than `window_ms`
/// before it.
fn push(w: &mut Window, row: &SegmentRow, init_id: u64, window_ms: i64) {
    let segments = Arc::make_mut(&mut w.segments);
    if segments.is_empty() || w.first_msn + segments.len() as u64 != row.msn {
        segments.clear();
        w.locations.clear();
        w.first_msn = row.msn;
    }
    segments.push(RecordedSegment {
        init_id,
        program_date_time: UNIX_EPOCH + Duration::from_millis(row.pdt_ms.max(0) as u64),
        duration: row.duration_us as f64 / 1e6,
        discontinuity: row.discontinuity,
    });
    w.locations.push_back(Location { path: row.path.clone(), offset: row.offset, length: row.length });
    let from = UNIX_EPOCH + Duration::from_millis(row.pdt_ms.saturating_sub(window_ms).max(0) as u64);
    let old = segments.iter().take_while(|s| s.program_date_time < from).count();
    segments.drain(..old);
    w.locations.drain(..old);
    w.first_msn += old as u64;
    let used: Vec<u64> = segments.iter().map(|s| s.init_id).collect();
    w.inits.retain(|id, _| used.contains(id));
}

impl History for Dvr {
    fn before(&self, channel: &str, rendition: &str, before: u64) -> Option<Run> {
        let inner = self.lock();
        let w = inner.channels.get(channel)?.renditions.get(rendition)?;
        let len = usize::try_from(before.checked_sub(w.first_msn)?).ok()?;
        (len > 0 && len <= w.segments.len()).then(|| Run { segments: w.segments.clone(), first_msn: w.first_msn, len })
    }

    fn media<'a>(&'a self, channel: &'a str, rendition: &'a str, what: Recorded) -> BoxFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let at = self.location(channel, rendition, what)?;
            match crate::media::read_range(&self.dir, self.objects.as_ref(), &at.path, at.offset..at.offset + at.length).await {
                Ok(b) => Some(b),
                Err(e) => {
                    metrics::counter!("onair_archive_errors_total", "kind" => "dvr_read").increment(1);
                    tracing::warn!(channel, rendition, ?what, path = at.path, error = %e, "cannot read recorded media for the DVR window");
                    None
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(msn: u64, path: &str) -> SegmentRow {
        SegmentRow { msn, pdt_ms: 1_000_000 + msn as i64 * 2000, duration_us: 2_000_000, discontinuity: false, gap_before: false, path: path.into(), offset: 100 + msn * 10, length: 10, parts: vec![] }
    }

    fn seg(msn: u64) -> IndexOp {
        IndexOp::Segment { broadcast: "b1".into(), rendition: "source".into(), row: row(msn, "demo/b1/source/0000000003.mp4") }
    }

    #[tokio::test]
    async fn window_of_the_live_broadcast() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("demo/b1/source/0000000003.mp4");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, (0..=255u8).collect::<Vec<u8>>()).expect("write");
        let dvr = Dvr::new(10, dir.path().to_path_buf(), None);
        dvr.observe(&IndexOp::Broadcast { id: "b1".into(), channel: "demo".into(), started_ms: 0 });
        dvr.observe(&IndexOp::File { path: "demo/b1/source/0000000003.mp4".into(), broadcast: "b1".into(), rendition: "source".into(), init_len: 90, init_id: 2 });
        for msn in 3..12 {
            dvr.observe(&seg(msn));
        }
        // 10 s of 2 s segments back from the newest (msn 11 at 1 022 000 ms): msn 6 onwards.
        let run = dvr.before("demo", "source", 10).expect("recorded up to 9");
        assert_eq!((run.first_msn, run.len), (6, 4));
        assert_eq!((run.segments[0].init_id, run.segments[0].duration), (2, 2.0));
        assert!(dvr.before("demo", "source", 13).is_none(), "not recorded that far yet");
        assert!(dvr.before("demo", "source", 6).is_none(), "nothing before the window");
        assert!(dvr.before("demo", "audio", 10).is_none());
        // The bytes: segment 7 is 10 bytes at 170, the init 90 at 0.
        let seg7 = dvr.media("demo", "source", Recorded::Segment(7)).await.expect("segment 7");
        assert_eq!(&seg7[..], &(170..180).map(|b| b as u8).collect::<Vec<u8>>()[..]);
        assert_eq!(dvr.media("demo", "source", Recorded::Init(2)).await.map(|b| b.len()), Some(90));
        assert!(dvr.media("demo", "source", Recorded::Segment(5)).await.is_none(), "left the window");
        // A hole starts the window over.
        dvr.observe(&seg(14));
        assert!(dvr.before("demo", "source", 10).is_none());
        assert_eq!(dvr.before("demo", "source", 15).map(|r| (r.first_msn, r.len)), Some((14, 1)));
        // The broadcast ended: nothing is kept.
        dvr.observe(&IndexOp::End { broadcast: "b1".into() });
        assert!(dvr.before("demo", "source", 15).is_none());
        assert!(dvr.media("demo", "source", Recorded::Segment(14)).await.is_none());
    }
}
