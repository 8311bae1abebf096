//! One rendition's timeline: segments of parts, inside a watch channel that announces each change.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use crate::writer::WriteError;

/// Init segments held per rendition; identical ones share an id, and the oldest unused ones go first.
pub const MAX_INIT_SEGMENTS: usize = 8;

/// Window and timing settings of a rendition timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineConfig {
    /// Part target duration in seconds (EXT-X-PART-INF PART-TARGET).
    pub part_target: f64,
    /// Lower bound of EXT-X-TARGETDURATION in whole seconds; raised if the encoder's GOP is longer.
    pub min_target_duration: u32,
    /// Segments listed in the Media Playlist.
    pub window_segments: usize,
    /// Longest segment a writer may build (a key-frame interval); a part that would make the open
    /// segment longer is refused with [`WriteError::SegmentTooLong`].
    pub max_segment: Duration,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig { part_target: 0.2, min_target_duration: 2, window_segments: 12, max_segment: Duration::from_secs(10) }
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

/// Where the live edge of a rendition is.
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
    /// Id of the init segment parts are written against now.
    pub init_id: u64,
    /// Discontinuity sequence of the newest segment (0 with none).
    pub discontinuity_sequence: u64,
    /// Media Sequence Number of the newest complete segment, if any: it moves when a segment
    /// closes (the next one opened, the publisher went away, or the broadcast ended).
    pub last_complete_msn: Option<u64>,
}

/// A finished Partial Segment handed to [`crate::RenditionWriter::append`].
#[derive(Debug, Clone)]
pub struct NewPart {
    /// Wall clock time of its first sample (EXT-X-PROGRAM-DATE-TIME when it starts a segment).
    pub program_date_time: SystemTime,
    /// Duration in the rendition's timescale (ticks).
    pub duration: u64,
    /// Starts with a sync sample (EXT-X-PART INDEPENDENT=YES).
    pub independent: bool,
    /// The `moof`+`mdat` bytes.
    pub data: Bytes,
    /// Wall-clock time the origin produced it (wrote it to its store): now on the origin, the
    /// upstream's `OnAir-Produced-At` on a relay. Each tier's delay and `Age` count from it.
    pub produced_at: SystemTime,
}

/// Where an appended part goes in the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// This store numbers it: the next part id; `starts_segment` opens a new segment with the next
    /// Media Sequence Number (closing the open one).
    Next {
        /// Opens a new segment.
        starts_segment: bool,
    },
    /// The numbering comes from elsewhere (a relay mirroring its upstream): part `part_id` of
    /// segment `msn`. A new `msn` opens that segment; numbers only move forward (gaps are allowed,
    /// for a relay joining late or an upstream that restarted), and an existing segment only takes
    /// the part id right after its last one. A Media Sequence Number that skips segments restarts
    /// the window at it (a playlist's segments are numbered consecutively, RFC 8216bis §4.4.3.2).
    At {
        /// Media Sequence Number of the part's segment.
        msn: u64,
        /// The part's id (its URI is `part{id}.m4s`).
        part_id: u64,
        /// The segment has EXT-X-DISCONTINUITY before it (used when it opens).
        discontinuity: bool,
        /// The segment's Discontinuity Sequence Number: EXT-X-DISCONTINUITY tags up to and
        /// including its own (RFC 8216bis §4.4.3.3; used when it opens).
        discontinuity_sequence: u64,
    },
}

#[derive(Debug, Clone)]
struct Part {
    duration: u64,
    independent: bool,
    data: Bytes,
    produced_at: SystemTime,
}

#[derive(Debug, Clone)]
struct Segment {
    msn: u64,
    /// Id of its init segment.
    init_id: u64,
    /// EXT-X-DISCONTINUITY before it: the encoder restarted or changed its configuration.
    discontinuity: bool,
    /// Discontinuity tags up to and including its own.
    discontinuity_sequence: u64,
    first_part_id: u64,
    program_date_time: SystemTime,
    duration: u64,
    parts: Vec<Part>,
    complete: bool,
    /// When it left the playlist window (kept downloadable for 3 × TD after that).
    evicted_at: Option<SystemTime>,
}

/// The whole mutable state of a rendition; lives inside the watch channel.
#[derive(Debug)]
pub(crate) struct Timeline {
    info: RenditionInfo,
    /// (id, bytes), oldest first; a segment names its own by id.
    inits: VecDeque<(u64, Bytes)>,
    current_init: u64,
    next_init_id: u64,
    /// The next segment starts after a discontinuity.
    pending_discontinuity: bool,
    segments: VecDeque<Segment>,
    next_msn: u64,
    next_part_id: u64,
    longest_segment: u64,
    ended: bool,
    /// Bumped on every change (see [`Rendition::version`]).
    version: u64,
}

impl Timeline {
    fn position(&self) -> Position {
        let last = self.segments.back();
        Position {
            last_msn: last.map(|s| s.msn),
            last_part: last.map(|s| s.parts.len().saturating_sub(1) as u32).unwrap_or(0),
            next_part_id: self.next_part_id,
            ended: self.ended,
            init_id: self.current_init,
            discontinuity_sequence: last.map_or(0, |s| s.discontinuity_sequence),
            last_complete_msn: self.segments.iter().rev().find(|s| s.complete).map(|s| s.msn),
        }
    }

    fn target_duration(&self, config: &TimelineConfig) -> u32 {
        let longest = (self.longest_segment as f64 / f64::from(self.info.timescale.max(1))).round() as u32;
        config.min_target_duration.max(longest).max(1)
    }

    /// Closes the open segment; the next one starts after EXT-X-DISCONTINUITY.
    fn break_timeline(&mut self) {
        if let Some(last) = self.segments.back_mut() {
            last.complete = true;
            self.pending_discontinuity = true;
        }
    }

    /// Adds init segment `data` (reusing the id of an identical one held) and makes it current.
    fn set_init(&mut self, data: Bytes, id: Option<u64>) -> u64 {
        let known = self.inits.iter().find(|(i, d)| id.map_or(*d == data, |id| *i == id)).map(|(i, _)| *i);
        let id = match known {
            Some(i) => i,
            None => {
                let id = id.unwrap_or(self.next_init_id);
                self.next_init_id = self.next_init_id.max(id + 1);
                self.inits.push_back((id, data));
                id
            }
        };
        self.current_init = id;
        while self.inits.len() > MAX_INIT_SEGMENTS {
            // The oldest that no held segment uses, else simply the oldest (never the current one).
            let unused = self.inits.iter().position(|(i, _)| *i != id && !self.segments.iter().any(|s| s.init_id == *i));
            let victim = unused.or_else(|| self.inits.iter().position(|(i, _)| *i != id));
            match victim {
                Some(v) => drop(self.inits.remove(v)),
                None => break,
            }
        }
        id
    }
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
    /// When the origin produced it (see [`NewPart::produced_at`]).
    pub produced_at: SystemTime,
}

/// A complete segment's media and facts, for serving or archiving it.
#[derive(Debug, Clone)]
pub struct SegmentRef {
    /// Its parts' bytes in order: the segment is their concatenation.
    pub parts: Vec<Bytes>,
    /// When the origin produced its last part (the segment was complete from then on).
    pub produced_at: SystemTime,
    /// Media Sequence Number.
    pub msn: u64,
    /// Id of its init segment (see [`Rendition::init_segment`]).
    pub init_id: u64,
    /// EXT-X-DISCONTINUITY before it.
    pub discontinuity: bool,
    /// Wall clock time of its first sample (EXT-X-PROGRAM-DATE-TIME).
    pub program_date_time: SystemTime,
    /// Duration in the rendition's timescale (ticks; see [`RenditionInfo::timescale`]).
    pub duration: u64,
    /// Each part's duration, ticks (same order as `parts`).
    pub part_durations: Vec<u64>,
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
    pub init_id: u64,
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
    /// EXT-X-DISCONTINUITY-SEQUENCE: discontinuity tags before the first listed segment.
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

/// Waits for a rendition's live edge to move (blocking playlist reload, hinted parts).
#[derive(Debug)]
pub struct Watcher(watch::Receiver<Timeline>);

impl Watcher {
    /// Resolves with the first [`Position`] (the current one included) for which `ready` is true.
    /// `None` if the rendition is gone. Cancel-safe; bound it with a timeout.
    pub async fn wait_for(&mut self, mut ready: impl FnMut(&Position) -> bool) -> Option<Position> {
        self.0.wait_for(|t| ready(&t.position())).await.ok().map(|t| t.position())
    }
}

/// One rendition of a broadcast: init segments plus a sliding window of segments and parts.
/// Readers use its methods; writes go through its one [`crate::RenditionWriter`].
#[derive(Debug)]
pub struct Rendition {
    /// Unique in the process (see [`Rendition::id`]).
    id: u64,
    name: String,
    config: TimelineConfig,
    timeline: watch::Sender<Timeline>,
    /// Session id of the writer that holds it (0: none).
    pub(crate) claimed_by: std::sync::atomic::AtomicU64,
}

impl Rendition {
    /// A rendition with init segment `init` (ftyp+moov bytes) as init id `init_id` (0 unless
    /// imported from an upstream).
    pub(crate) fn new(info: RenditionInfo, init: Bytes, init_id: u64, config: TimelineConfig) -> Self {
        let name = info.name.clone();
        let timeline = Timeline {
            info,
            inits: VecDeque::from([(init_id, init)]),
            current_init: init_id,
            next_init_id: init_id + 1,
            pending_discontinuity: false,
            segments: VecDeque::new(),
            next_msn: 0,
            next_part_id: 0,
            longest_segment: 0,
            ended: false,
            version: 0,
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Rendition { id, name, config, timeline: watch::Sender::new(timeline), claimed_by: Default::default() }
    }

    /// Applies `change` to the timeline; if it reports a change, bumps the version and wakes the
    /// watchers, in the same step.
    fn modify(&self, change: impl FnOnce(&mut Timeline) -> bool) -> bool {
        self.timeline.send_if_modified(|t| {
            let changed = change(t);
            if changed {
                t.version += 1;
            }
            changed
        })
    }

    /// An id no other rendition of this process has had (a new broadcast's renditions get new ids).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A number that changes whenever anything a playlist shows of this rendition changes (a
    /// part, a segment closing, a new init segment, the end): equal versions render equal
    /// playlists, so a rendered playlist can be reused until it moves.
    pub fn version(&self) -> u64 {
        self.timeline.borrow().version
    }

    /// Facts about the rendition (they change only at a discontinuity).
    pub fn info(&self) -> RenditionInfo {
        self.timeline.borrow().info.clone()
    }

    /// True for a video rendition (false: audio); changes only at a discontinuity.
    pub fn is_video(&self) -> bool {
        self.timeline.borrow().info.is_video
    }

    /// The Partial Segment target duration, seconds (EXT-X-PART-INF PART-TARGET).
    pub fn part_target(&self) -> f64 {
        self.config.part_target
    }

    /// The rendition's name (never changes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of media held: the init segments and every part still downloadable (in the window,
    /// or within 3 × TD of leaving it). Walks the timeline: for periodic accounting, not per request.
    pub fn bytes_held(&self) -> u64 {
        let t = self.timeline.borrow();
        let inits: usize = t.inits.iter().map(|(_, d)| d.len()).sum();
        let parts: usize = t.segments.iter().flat_map(|s| &s.parts).map(|p| p.data.len()).sum();
        (inits + parts) as u64
    }

    /// Init segment `id` (ids are stable: 0 is the first, each new configuration gets the next), if held.
    pub fn init_segment(&self, id: u64) -> Option<Bytes> {
        self.timeline.borrow().inits.iter().find(|(i, _)| *i == id).map(|(_, d)| d.clone())
    }

    /// A watcher of the live edge.
    pub fn subscribe(&self) -> Watcher {
        Watcher(self.timeline.subscribe())
    }

    /// The current position.
    pub fn position(&self) -> Position {
        self.timeline.borrow().position()
    }

    /// Continues after the writer's encoder restarted or changed configuration: the open segment
    /// is closed, and the next starts with EXT-X-DISCONTINUITY and, if `init` is new, a new
    /// EXT-X-MAP (RFC 8216bis §4.4.4.3, §4.4.4.5). Numbering continues, so players need no reload.
    /// `init_id` imports the upstream's id (a relay); `None` numbers it here. Returns the init id.
    pub(crate) fn reconfigure(&self, info: RenditionInfo, init: Bytes, init_id: Option<u64>) -> u64 {
        let mut id = 0;
        self.modify(|t| {
            if t.ended {
                id = t.current_init;
                return false;
            }
            t.break_timeline();
            t.info = info;
            id = t.set_init(init, init_id);
            true
        });
        id
    }

    /// Closes the open segment; the next part starts a new one after a discontinuity (a writer went away).
    pub(crate) fn interrupt(&self) {
        self.modify(|t| {
            let open = t.segments.back().is_some_and(|s| !s.complete);
            t.break_timeline();
            open
        });
    }

    /// Appends a finished part at `placement`; returns its id. Errors: [`WriteError::Ended`],
    /// [`WriteError::SegmentTooLong`], [`WriteError::Numbering`] (an [`Placement::At`] that goes backwards).
    pub(crate) fn append(&self, placement: Placement, part: NewPart) -> Result<u64, WriteError> {
        let mut result = Ok(0);
        let mut raised = None;
        self.modify(|t| {
            result = self.append_to(t, placement, part);
            if result.is_ok() {
                let before = t.target_duration(&self.config);
                let open = t.segments.back().map_or(0, |s| s.duration);
                t.longest_segment = t.longest_segment.max(open);
                let after = t.target_duration(&self.config);
                if after > before && after > self.config.min_target_duration {
                    raised = Some(after);
                }
                self.evict(t);
            }
            result.is_ok()
        });
        if let Some(td) = raised {
            // RFC 8216bis §4.4.3.1 wants a constant EXT-X-TARGETDURATION: tell the operator why it moved.
            metrics::counter!("onair_target_duration_raised_total").increment(1);
            tracing::warn!(
                rendition = self.name,
                target_duration_s = td,
                "segment longer than the target duration: the encoder's key-frame interval is too long (use 1-2 s)"
            );
        }
        result
    }

    fn append_to(&self, t: &mut Timeline, placement: Placement, part: NewPart) -> Result<u64, WriteError> {
        if t.ended {
            return Err(WriteError::Ended);
        }
        let open = t.segments.back().filter(|s| !s.complete).map(|s| s.msn);
        let (opens, msn, id, discontinuity, dseq) = match placement {
            Placement::Next { starts_segment } => {
                let opens = starts_segment || open.is_none();
                let last_dseq = t.segments.back().map_or(0, |s| s.discontinuity_sequence);
                let disc = opens && t.pending_discontinuity;
                (opens, t.next_msn, t.next_part_id, disc, last_dseq + u64::from(disc))
            }
            Placement::At { msn, part_id, discontinuity, discontinuity_sequence } => {
                let numbering = |reason: &'static str| WriteError::Numbering { msn, part_id, reason };
                if part_id < t.next_part_id {
                    return Err(numbering("part id is not after the last part"));
                }
                if open == Some(msn) {
                    if part_id != t.next_part_id {
                        return Err(numbering("a part is missing inside the segment"));
                    }
                    (false, msn, part_id, false, 0)
                } else if t.segments.back().is_some_and(|s| s.msn >= msn) {
                    return Err(numbering("Media Sequence Number is not after the last segment"));
                } else {
                    if t.segments.back().is_some_and(|s| s.msn + 1 != msn) {
                        // Segments are missing in between: the window restarts at `msn`.
                        t.segments.clear();
                    }
                    (true, msn, part_id, discontinuity, discontinuity_sequence)
                }
            }
        };
        let timescale = u64::from(t.info.timescale.max(1));
        let max = self.config.max_segment.as_millis() as u64 * timescale / 1000;
        let so_far = if opens { 0 } else { t.segments.back().map_or(0, |s| s.duration) };
        if so_far + part.duration > max {
            return Err(WriteError::SegmentTooLong { max_ms: self.config.max_segment.as_millis() as u64 });
        }
        if opens {
            if let Some(last) = t.segments.back_mut() {
                last.complete = true;
            }
            t.pending_discontinuity = false;
            t.segments.push_back(Segment {
                msn,
                init_id: t.current_init,
                discontinuity,
                discontinuity_sequence: dseq,
                first_part_id: id,
                program_date_time: part.program_date_time,
                duration: 0,
                parts: Vec::new(),
                complete: false,
                evicted_at: None,
            });
            t.next_msn = msn + 1;
        }
        let Some(seg) = t.segments.back_mut() else { return Err(WriteError::Ended) };
        seg.duration += part.duration;
        seg.parts.push(Part { duration: part.duration, independent: part.independent, data: part.data, produced_at: part.produced_at });
        t.next_part_id = id + 1;
        Ok(id)
    }

    /// Marks the rendition ended: the open segment is complete and the playlist gets EXT-X-ENDLIST.
    pub(crate) fn end(&self) {
        self.modify(|t| {
            let changed = !t.ended;
            t.ended = true;
            if let Some(last) = t.segments.back_mut() {
                last.complete = true;
            }
            changed
        });
    }

    fn evict(&self, t: &mut Timeline) {
        let now = SystemTime::now();
        let keep = Duration::from_secs(3 * u64::from(t.target_duration(&self.config)));
        let window = self.config.window_segments.max(1);
        let listed_from = t.segments.len().saturating_sub(window);
        for seg in t.segments.iter_mut().take(listed_from) {
            seg.evicted_at.get_or_insert(now);
        }
        while let Some(front) = t.segments.front() {
            let expired = front.evicted_at.is_some_and(|at| now.duration_since(at).unwrap_or_default() >= keep);
            // A hard cap keeps memory bounded even if the clock misbehaves.
            if expired || t.segments.len() > 4 * window + 8 {
                t.segments.pop_front();
            } else {
                break;
            }
        }
    }

    /// A copy of the playlist window's metadata.
    pub fn snapshot(&self) -> Snapshot {
        let t = self.timeline.borrow();
        let ts = f64::from(t.info.timescale.max(1));
        let listed: Vec<&Segment> = t.segments.iter().filter(|s| s.evicted_at.is_none()).collect();
        let discontinuity_sequence = listed.first().map_or(0, |s| s.discontinuity_sequence - u64::from(s.discontinuity));
        let segments = listed
            .iter()
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
            target_duration: t.target_duration(&self.config),
            part_target: self.config.part_target,
            next_part_id: t.next_part_id,
            ended: t.ended,
        }
    }

    /// The bytes of part `id`, if it is still held.
    pub fn part(&self, id: u64) -> Option<PartRef> {
        let t = self.timeline.borrow();
        let idx = t.segments.partition_point(|s| s.first_part_id + s.parts.len() as u64 <= id);
        let seg = t.segments.get(idx)?;
        let index = id.checked_sub(seg.first_part_id)?;
        let part = seg.parts.get(usize::try_from(index).ok()?)?;
        Some(PartRef { data: part.data.clone(), msn: seg.msn, index: index as u32, produced_at: part.produced_at })
    }

    /// The media of complete segment `msn`.
    pub fn segment(&self, msn: u64) -> Option<SegmentRef> {
        let t = self.timeline.borrow();
        let idx = t.segments.partition_point(|s| s.msn < msn);
        t.segments.get(idx).filter(|s| s.msn == msn).and_then(Self::segment_ref)
    }

    /// The oldest complete segment held whose Media Sequence Number is above `after` (any, with
    /// `None`), held or evicted from the window but still downloadable: how a subscriber that
    /// records every segment (the archive) walks the timeline. A returned `msn` above `after + 1`
    /// means the segments in between are gone from memory (or never existed: a relay's gap).
    pub fn next_complete_segment(&self, after: Option<u64>) -> Option<SegmentRef> {
        let t = self.timeline.borrow();
        let idx = after.map_or(0, |a| t.segments.partition_point(|s| s.msn <= a));
        t.segments.iter().skip(idx).find(|s| s.complete).and_then(Self::segment_ref)
    }

    fn segment_ref(seg: &Segment) -> Option<SegmentRef> {
        if !seg.complete {
            return None;
        }
        Some(SegmentRef {
            parts: seg.parts.iter().map(|p| p.data.clone()).collect(),
            produced_at: seg.parts.last()?.produced_at,
            msn: seg.msn,
            init_id: seg.init_id,
            discontinuity: seg.discontinuity,
            program_date_time: seg.program_date_time,
            duration: seg.duration,
            part_durations: seg.parts.iter().map(|p| p.duration).collect(),
        })
    }

    /// Target duration in whole seconds as of now.
    pub fn target_duration(&self) -> u32 {
        self.timeline.borrow().target_duration(&self.config)
    }

    /// Bits per second: (peak, average) over the complete segments held, or over the parts so far
    /// when no segment is complete yet. `None` before the first part.
    pub fn bitrate(&self) -> Option<(u64, u64)> {
        let t = self.timeline.borrow();
        let ts = f64::from(t.info.timescale.max(1));
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
