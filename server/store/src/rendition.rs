//! One rendition's timeline: segments of parts, with a watch channel announcing each new part.

use std::collections::VecDeque;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

/// Window and timing settings of a rendition timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineConfig {
    /// Part target duration in seconds (EXT-X-PART-INF PART-TARGET).
    pub part_target: f64,
    /// Lower bound of EXT-X-TARGETDURATION in whole seconds; raised if the encoder's GOP is longer.
    pub min_target_duration: u32,
    /// Segments listed in the Media Playlist.
    pub window_segments: usize,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig { part_target: 0.2, min_target_duration: 2, window_segments: 12 }
    }
}

/// Static facts about a rendition, for the Multivariant Playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionInfo {
    /// URL-safe name, e.g. `source` or `audio`.
    pub name: String,
    /// True for video renditions.
    pub is_video: bool,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Width and height in pixels (video).
    pub resolution: Option<(u32, u32)>,
    /// Frames per second (video), when known.
    pub frame_rate: Option<f64>,
    /// Audio channel count (audio), when known.
    pub channels: Option<u16>,
    /// Configured bit rate in bits/s (transcoded renditions), used for BANDWIDTH until measured.
    pub nominal_bitrate: Option<u64>,
    /// Timescale of the part timestamps, ticks per second.
    pub timescale: u32,
}

/// Where the live edge of a rendition is; sent on the watch channel after every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Media Sequence Number of the newest segment (complete or open), if any part exists.
    pub last_msn: Option<u64>,
    /// Index (within `last_msn`) of the newest part.
    pub last_part: u32,
    /// Id of the part that will be written next (the Preload Hint's target).
    pub next_part_id: u64,
    /// True once the broadcast ended (EXT-X-ENDLIST).
    pub ended: bool,
}

#[derive(Debug, Clone)]
struct Part {
    duration: u64,
    independent: bool,
    data: Bytes,
}

#[derive(Debug, Clone)]
struct Segment {
    msn: u64,
    /// Index of its init segment in `Timeline::inits`.
    init_id: usize,
    /// EXT-X-DISCONTINUITY before it: the encoder restarted or changed its configuration.
    discontinuity: bool,
    first_part_id: u64,
    program_date_time: SystemTime,
    duration: u64,
    parts: Vec<Part>,
    complete: bool,
    /// When it left the playlist window (kept downloadable for 3 × TD after that).
    evicted_at: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Timeline {
    /// Init segments, oldest first; a segment names its own.
    inits: Vec<Bytes>,
    /// The next segment starts after a discontinuity.
    pending_discontinuity: bool,
    /// Discontinuities in segments dropped from the playlist window (EXT-X-DISCONTINUITY-SEQUENCE).
    dropped_discontinuities: u64,
    segments: VecDeque<Segment>,
    next_msn: u64,
    next_part_id: u64,
    longest_segment: u64,
    ended: bool,
}

/// A reference to a part's bytes and facts, for serving it.
#[derive(Debug, Clone)]
pub struct PartRef {
    /// The `moof`+`mdat` bytes.
    pub data: Bytes,
    /// Media Sequence Number of its segment.
    pub msn: u64,
    /// Index within the segment.
    pub index: u32,
}

/// A segment's facts in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSnapshot {
    /// Media Sequence Number.
    pub msn: u64,
    /// Id of its first part; part `i` has id `first_part_id + i`.
    pub first_part_id: u64,
    /// Wall clock time of its first sample (EXT-X-PROGRAM-DATE-TIME).
    pub program_date_time: SystemTime,
    /// Id of its init segment (see [`Rendition::init_segment`]).
    pub init_id: usize,
    /// EXT-X-DISCONTINUITY before it.
    pub discontinuity: bool,
    /// Duration in seconds (of the parts so far, for the open segment).
    pub duration: f64,
    /// Each part's (duration in seconds, INDEPENDENT).
    pub parts: Vec<(f64, bool)>,
    /// False for the open segment at the live edge.
    pub complete: bool,
}

/// A consistent copy of a rendition's playlist window (metadata only; no media bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Segments in the playlist window, oldest first; the last one may be open.
    pub segments: Vec<SegmentSnapshot>,
    /// EXT-X-DISCONTINUITY-SEQUENCE: discontinuities before the first listed segment.
    pub discontinuity_sequence: u64,
    /// EXT-X-TARGETDURATION in whole seconds.
    pub target_duration: u32,
    /// PART-TARGET in seconds.
    pub part_target: f64,
    /// Id of the next part (the Preload Hint).
    pub next_part_id: u64,
    /// EXT-X-ENDLIST.
    pub ended: bool,
}

/// One rendition of a broadcast: init segment plus a sliding window of segments and parts.
#[derive(Debug)]
pub struct Rendition {
    info: RwLock<RenditionInfo>,
    config: TimelineConfig,
    timeline: RwLock<Timeline>,
    position: watch::Sender<Position>,
}

impl Rendition {
    /// A rendition with init segment `init` (ftyp+moov bytes).
    pub fn new(info: RenditionInfo, init: Bytes, config: TimelineConfig) -> Self {
        let timeline = Timeline { inits: vec![init], ..Default::default() };
        Rendition { info: RwLock::new(info), config, timeline: RwLock::new(timeline), position: watch::Sender::new(Position::default()) }
    }

    /// Facts about the rendition (they change only at a discontinuity).
    pub fn info(&self) -> RenditionInfo {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The rendition's name (never changes).
    pub fn name(&self) -> String {
        self.info.read().unwrap_or_else(|e| e.into_inner()).name.clone()
    }

    /// Init segment number `id` (0 is the first), if it exists.
    pub fn init_segment(&self, id: usize) -> Option<Bytes> {
        self.read().inits.get(id).cloned()
    }

    /// Continues the rendition after its encoder restarted or changed configuration: the open
    /// segment is closed, and the next segment starts with EXT-X-DISCONTINUITY and, if `init` differs
    /// from the current one, a new EXT-X-MAP (RFC 8216bis §4.4.4.3, §4.4.4.5). Media Sequence
    /// Numbers and part ids continue, so players need no reload.
    pub fn restart(&self, info: RenditionInfo, init: Bytes) {
        let mut t = self.write();
        if t.ended {
            return;
        }
        if t.inits.last() != Some(&init) {
            t.inits.push(init);
        }
        if let Some(last) = t.segments.back_mut() {
            last.complete = true;
            t.pending_discontinuity = true;
        }
        *self.info.write().unwrap_or_else(|e| e.into_inner()) = info;
        let pos = Self::position_of(&t);
        drop(t);
        self.position.send_replace(pos);
    }

    /// A receiver that sees every new [`Position`].
    pub fn subscribe(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    /// The current position.
    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Timeline> {
        self.timeline.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Timeline> {
        self.timeline.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a finished part. `starts_segment` opens a new segment (closing the previous one);
    /// `program_date_time` is the wall clock of its first sample; `duration` is in the rendition's
    /// timescale. Returns the part's id. Ignored after [`Rendition::end`].
    pub fn append_part(&self, starts_segment: bool, program_date_time: SystemTime, duration: u64, independent: bool, data: Bytes) -> u64 {
        let mut t = self.write();
        if t.ended {
            return t.next_part_id;
        }
        let id = t.next_part_id;
        if starts_segment || t.segments.is_empty() {
            if let Some(last) = t.segments.back_mut() {
                last.complete = true;
            }
            let msn = t.next_msn;
            t.next_msn += 1;
            let discontinuity = std::mem::take(&mut t.pending_discontinuity);
            let init_id = t.inits.len().saturating_sub(1);
            t.segments.push_back(Segment {
                msn,
                init_id,
                discontinuity,
                first_part_id: id,
                program_date_time,
                duration: 0,
                parts: Vec::new(),
                complete: false,
                evicted_at: None,
            });
        }
        let Some(seg) = t.segments.back_mut() else { return id };
        seg.parts.push(Part { duration, independent, data });
        seg.duration += duration;
        let seg_duration = seg.duration;
        let td_before = self.target_duration_of(&t);
        t.longest_segment = t.longest_segment.max(seg_duration);
        let td_after = self.target_duration_of(&t);
        if td_after > td_before && td_after > self.config.min_target_duration {
            // RFC 8216bis §4.4.3.1 wants a constant EXT-X-TARGETDURATION: tell the operator why it moved.
            metrics::counter!("onair_target_duration_raised_total").increment(1);
            tracing::warn!(
                rendition = self.name(),
                target_duration_s = td_after,
                "segment longer than the target duration: the encoder's key-frame interval is too long (use 1-2 s)"
            );
        }
        t.next_part_id += 1;
        self.evict(&mut t);
        let pos = Self::position_of(&t);
        drop(t);
        self.position.send_replace(pos);
        id
    }

    /// Marks the rendition ended: the open segment is complete and the playlist gets EXT-X-ENDLIST.
    pub fn end(&self) {
        let mut t = self.write();
        t.ended = true;
        if let Some(last) = t.segments.back_mut() {
            last.complete = true;
        }
        let pos = Self::position_of(&t);
        drop(t);
        self.position.send_replace(pos);
    }

    fn position_of(t: &Timeline) -> Position {
        let last = t.segments.back();
        Position {
            last_msn: last.map(|s| s.msn),
            last_part: last.map(|s| s.parts.len().saturating_sub(1) as u32).unwrap_or(0),
            next_part_id: t.next_part_id,
            ended: t.ended,
        }
    }

    fn target_duration_of(&self, t: &Timeline) -> u32 {
        let timescale = self.info.read().unwrap_or_else(|e| e.into_inner()).timescale;
        let longest = (t.longest_segment as f64 / f64::from(timescale)).round() as u32;
        self.config.min_target_duration.max(longest).max(1)
    }

    fn evict(&self, t: &mut Timeline) {
        let now = SystemTime::now();
        let keep = Duration::from_secs(3 * u64::from(self.target_duration_of(t)));
        let window = self.config.window_segments.max(1);
        let listed_from = t.segments.len().saturating_sub(window);
        for seg in t.segments.iter_mut().take(listed_from) {
            seg.evicted_at.get_or_insert(now);
        }
        while let Some(front) = t.segments.front() {
            let expired = front.evicted_at.is_some_and(|at| now.duration_since(at).unwrap_or_default() >= keep);
            // A hard cap keeps memory bounded even if the clock misbehaves.
            if expired || t.segments.len() > 4 * window + 8 {
                if t.segments.pop_front().is_some_and(|s| s.discontinuity) {
                    t.dropped_discontinuities += 1;
                }
            } else {
                break;
            }
        }
    }

    /// A copy of the playlist window's metadata.
    pub fn snapshot(&self) -> Snapshot {
        let t = self.read();
        let ts = f64::from(self.info.read().unwrap_or_else(|e| e.into_inner()).timescale);
        let discontinuity_sequence = t.dropped_discontinuities
            + t.segments.iter().filter(|s| s.evicted_at.is_some() && s.discontinuity).count() as u64;
        let segments = t
            .segments
            .iter()
            .filter(|s| s.evicted_at.is_none())
            .map(|s| SegmentSnapshot {
                msn: s.msn,
                first_part_id: s.first_part_id,
                program_date_time: s.program_date_time,
                init_id: s.init_id,
                discontinuity: s.discontinuity,
                duration: s.duration as f64 / ts,
                parts: s.parts.iter().map(|p| (p.duration as f64 / ts, p.independent)).collect(),
                complete: s.complete,
            })
            .collect();
        Snapshot {
            segments,
            discontinuity_sequence,
            target_duration: self.target_duration_of(&t),
            part_target: self.config.part_target,
            next_part_id: t.next_part_id,
            ended: t.ended,
        }
    }

    /// The bytes of part `id`, if it is still held.
    pub fn part(&self, id: u64) -> Option<PartRef> {
        let t = self.read();
        let idx = t.segments.partition_point(|s| s.first_part_id + s.parts.len() as u64 <= id);
        let seg = t.segments.get(idx)?;
        let index = id.checked_sub(seg.first_part_id)?;
        let part = seg.parts.get(usize::try_from(index).ok()?)?;
        Some(PartRef { data: part.data.clone(), msn: seg.msn, index: index as u32 })
    }

    /// The parts of complete segment `msn`, in order (a segment is the concatenation of its parts).
    pub fn segment(&self, msn: u64) -> Option<Vec<Bytes>> {
        let t = self.read();
        let first = t.segments.front()?.msn;
        let seg = t.segments.get(usize::try_from(msn.checked_sub(first)?).ok()?)?;
        seg.complete.then(|| seg.parts.iter().map(|p| p.data.clone()).collect())
    }

    /// Target duration in whole seconds as of now.
    pub fn target_duration(&self) -> u32 {
        self.target_duration_of(&self.read())
    }

    /// Bits per second: (peak, average) over the complete segments held, or over the parts so far
    /// when no segment is complete yet. `None` before the first part.
    pub fn bitrate(&self) -> Option<(u64, u64)> {
        let t = self.read();
        let ts = f64::from(self.info.read().unwrap_or_else(|e| e.into_inner()).timescale);
        let rate = |bytes: u64, dur: u64| if dur == 0 { 0.0 } else { bytes as f64 * 8.0 * ts / dur as f64 };
        let complete: Vec<(u64, u64)> = t
            .segments
            .iter()
            .filter(|s| s.complete && s.duration > 0)
            .map(|s| (s.parts.iter().map(|p| p.data.len() as u64).sum(), s.duration))
            .collect();
        let (peak, total_bytes, total_dur) = if complete.is_empty() {
            let seg = t.segments.back()?;
            let b: u64 = seg.parts.iter().map(|p| p.data.len() as u64).sum();
            (rate(b, seg.duration), b, seg.duration)
        } else {
            let peak = complete.iter().map(|(b, d)| rate(*b, *d)).fold(0.0, f64::max);
            (peak, complete.iter().map(|c| c.0).sum(), complete.iter().map(|c| c.1).sum())
        };
        Some((peak.ceil() as u64, rate(total_bytes, total_dur).ceil() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendition(window: usize) -> Rendition {
        let info = RenditionInfo {
            name: "source".into(),
            is_video: true,
            codec: "avc1.64001f".into(),
            resolution: Some((1280, 720)),
            frame_rate: Some(25.0),
            channels: None,
            nominal_bitrate: None,
            timescale: 90_000,
        };
        Rendition::new(info, Bytes::from_static(b"init"), TimelineConfig { window_segments: window, ..Default::default() })
    }

    #[test]
    fn parts_segments_and_positions() {
        let r = rendition(3);
        let now = SystemTime::now();
        assert_eq!(r.position().last_msn, None);
        for i in 0..12u64 {
            let id = r.append_part(i % 5 == 0, now, 18_000, i % 5 == 0, Bytes::from(vec![i as u8; 10]));
            assert_eq!(id, i);
        }
        let pos = r.position();
        assert_eq!((pos.last_msn, pos.last_part, pos.next_part_id), (Some(2), 1, 12));
        let part = r.part(7).expect("part 7");
        assert_eq!((part.msn, part.index, part.data[0]), (1, 2, 7));
        assert!(r.part(12).is_none());
        assert_eq!(r.segment(1).expect("segment 1").len(), 5);
        assert!(r.segment(2).is_none(), "open segment is not served whole");
        let snap = r.snapshot();
        assert_eq!(snap.segments.len(), 3);
        assert!((snap.segments[0].duration - 1.0).abs() < 1e-9);
        assert_eq!(snap.target_duration, 2);
        r.end();
        assert!(r.position().ended);
        assert!(r.segment(2).is_some());
    }

    #[test]
    fn window_evicts_but_keeps_parts_downloadable() {
        let r = rendition(2);
        let now = SystemTime::now();
        for i in 0..10u64 {
            r.append_part(true, now, 90_000, true, Bytes::from_static(b"p"));
            assert!(r.snapshot().segments.len() <= 2, "after {i}");
        }
        // Evicted from the playlist a moment ago: still downloadable (3 x TD has not passed).
        assert!(r.part(0).is_some());
        let snap = r.snapshot();
        assert_eq!(snap.segments.first().map(|s| s.msn), Some(8));
    }

    #[test]
    fn restart_continues_numbering_after_a_discontinuity() {
        let r = rendition(10);
        let now = SystemTime::now();
        r.append_part(true, now, 90_000, true, Bytes::from_static(b"a"));
        r.append_part(false, now, 90_000, false, Bytes::from_static(b"b"));
        let mut info = r.info();
        info.resolution = Some((640, 360));
        r.restart(info, Bytes::from_static(b"init2"));
        assert!(r.segment(0).is_some(), "the interrupted segment is complete");
        r.append_part(true, now, 90_000, true, Bytes::from_static(b"c"));
        let snap = r.snapshot();
        assert_eq!(snap.segments.iter().map(|s| (s.msn, s.discontinuity, s.init_id)).collect::<Vec<_>>(), vec![(0, false, 0), (1, true, 1)]);
        assert_eq!(r.init_segment(1).as_deref(), Some(&b"init2"[..]));
        assert_eq!(r.info().resolution, Some((640, 360)));
        assert_eq!(r.part(2).map(|p| (p.msn, p.index)), Some((1, 0)));
        // The same init again does not add a version.
        r.restart(r.info(), Bytes::from_static(b"init2"));
        r.append_part(true, now, 90_000, true, Bytes::from_static(b"d"));
        assert_eq!(r.snapshot().segments.last().map(|s| (s.discontinuity, s.init_id)), Some((true, 1)));
    }

    #[test]
    fn long_gop_raises_target_duration() {
        let r = rendition(5);
        let now = SystemTime::now();
        r.append_part(true, now, 90_000 * 5, true, Bytes::from_static(b"p"));
        r.append_part(false, now, 90_000 / 4, false, Bytes::from_static(b"p"));
        assert_eq!(r.target_duration(), 5);
    }

    #[tokio::test]
    async fn waiters_wake_on_new_part() {
        let r = std::sync::Arc::new(rendition(3));
        let mut rx = r.subscribe();
        let r2 = r.clone();
        let waiter = tokio::spawn(async move { rx.wait_for(|p| p.last_part == 1).await.map(|p| p.next_part_id).ok() });
        r2.append_part(true, SystemTime::now(), 1, true, Bytes::new());
        r2.append_part(false, SystemTime::now(), 1, false, Bytes::new());
        assert_eq!(waiter.await.expect("join"), Some(2));
    }
}
