//! The cutting policy: turns the frames of one broadcast (a video and/or an audio track) into CMAF
//! chunks that LL-HLS serves as Partial Segments, grouped into segments.
//!
//! Rules (RFC 8216bis §4.4.4.9 and the Apple authoring spec for LL-HLS):
//! - a Partial Segment never lasts longer than the part target, and closes as soon as one more
//!   sample would make it longer;
//! - a video segment starts on an IDR frame once the open segment has lasted at least
//!   `min_segment`; the first part of a segment is therefore INDEPENDENT;
//! - the audio track starts its segments at the same presentation times as the video track (at the
//!   first audio frame at or after each video boundary), so renditions switch cleanly;
//! - a sample's duration is the distance to the next sample's decode time, so tfdt is continuous and
//!   nothing drifts; the last sample of a stream reuses the previous duration;
//! - when the frame rate is steady (the last 4 decode-time intervals within 3 ms of each other,
//!   which covers ms-rounded RTMP timestamps of 29.97/30 fps and sample-counted AAC), a frame's
//!   duration is predicted instead of waited for: it goes into its part on arrival and the part
//!   closes at once when full, one frame interval earlier than waiting for the next frame. The
//!   prediction aims each sample's end at its real decode time plus the interval, so jitter is
//!   corrected on the next sample and never accumulates ([`PackagerConfig::predict_durations`]).
//!
//! The packager is pure: callers push frames in arrival order and receive [`PackagedPart`]s.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use onair_media::{Frame, TrackConfig, TrackKind, VIDEO_TIMESCALE};

use crate::boxes::{fragment, Sample};
use crate::CmafError;

/// Timing policy, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagerConfig {
    /// Part target duration (EXT-X-PART-INF PART-TARGET), ms. Default 200.
    pub part_target_ms: u32,
    /// A video segment ends at the first IDR after this much media, ms. Default 1000.
    pub min_segment_ms: u32,
    /// Segment length for audio-only broadcasts, ms. Default 2000.
    pub audio_only_segment_ms: u32,
    /// Close parts on the arrival of their last frame when the frame rate is steady (see the
    /// module docs), instead of on the arrival of the next one. Default true.
    pub predict_durations: bool,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig { part_target_ms: 200, min_segment_ms: 1000, audio_only_segment_ms: 2000, predict_durations: true }
    }
}

/// Decode-time intervals looked at to decide that the frame rate is steady.
const STEADY_INTERVALS: usize = 4;

/// A finished Partial Segment of one track.
#[derive(Debug, Clone)]
pub struct PackagedPart {
    /// Which track it belongs to.
    pub kind: TrackKind,
    /// True when this part starts a new segment.
    pub starts_segment: bool,
    /// True when the part starts with a sync sample (EXT-X-PART INDEPENDENT=YES).
    pub independent: bool,
    /// Decode time of the first sample, in the track's timescale.
    pub start: u64,
    /// Duration in the track's timescale.
    pub duration: u64,
    /// Track timescale (ticks per second).
    pub timescale: u32,
    /// The `moof`+`mdat` bytes.
    pub data: Bytes,
    /// Arrival time of each sample's ingest message, for ingest-to-part latency.
    pub received: Vec<Instant>,
}

/// Packages the tracks of one broadcast.
#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    video: Option<TrackState>,
    audio: Option<TrackState>,
}

#[derive(Debug)]
struct TrackState {
    kind: TrackKind,
    timescale: u32,
    track_id: u32,
    sequence: u32,
    pending: Option<Frame>,
    last_duration: u64,
    /// The last decode-time intervals seen (real timestamps), newest last.
    intervals: VecDeque<u64>,
    /// Decode time of the newest frame seen.
    last_dts: Option<u64>,
    /// Where the last committed sample ends on the written timeline (the next tfdt).
    end: Option<u64>,
    part: Vec<(Sample, Instant)>,
    part_start: u64,
    part_duration: u64,
    segment_duration: u64,
    next_starts_segment: bool,
    /// Audio only: decode times (in this track's ticks) at which video segments started.
    boundaries: VecDeque<u64>,
}

impl TrackState {
    fn new(kind: TrackKind, timescale: u32, track_id: u32) -> Self {
        TrackState {
            kind,
            timescale,
            track_id,
            sequence: 0,
            pending: None,
            last_duration: 0,
            intervals: VecDeque::new(),
            last_dts: None,
            end: None,
            part: Vec::new(),
            part_start: 0,
            part_duration: 0,
            segment_duration: 0,
            next_starts_segment: true,
            boundaries: VecDeque::new(),
        }
    }

    /// True once the track has taken its first frame.
    fn started(&self) -> bool {
        self.sequence > 0 || self.pending.is_some() || !self.part.is_empty()
    }

    fn ticks(&self, ms: u32) -> u64 {
        u64::from(ms) * u64::from(self.timescale) / 1000
    }

    fn close_part(&mut self, out: &mut Vec<PackagedPart>) -> Result<(), CmafError> {
        if self.part.is_empty() {
            return Ok(());
        }
        self.sequence += 1;
        let (samples, received): (Vec<Sample>, Vec<Instant>) = std::mem::take(&mut self.part).into_iter().unzip();
        let data = fragment(self.sequence, self.track_id, self.part_start, &samples)?;
        out.push(PackagedPart {
            kind: self.kind,
            starts_segment: self.next_starts_segment,
            independent: samples.first().is_some_and(|s| s.keyframe),
            start: self.part_start,
            duration: self.part_duration,
            timescale: self.timescale,
            data,
            received,
        });
        self.next_starts_segment = false;
        self.part_start += self.part_duration;
        self.part_duration = 0;
        Ok(())
    }

    fn close_segment(&mut self, out: &mut Vec<PackagedPart>) -> Result<(), CmafError> {
        self.close_part(out)?;
        self.next_starts_segment = true;
        self.segment_duration = 0;
        Ok(())
    }

    /// Records a frame's decode time for the steadiness check.
    fn observe(&mut self, dts: u64) {
        if let Some(prev) = self.last_dts.filter(|p| dts > *p) {
            self.intervals.push_back(dts - prev);
            if self.intervals.len() > STEADY_INTERVALS {
                self.intervals.pop_front();
            }
        }
        self.last_dts = Some(dts);
    }

    /// Ticks of jitter tolerated: 3 ms.
    fn tolerance(&self) -> u64 {
        u64::from(self.timescale) * 3 / 1000
    }

    /// The next frame interval, when the last intervals were steady.
    fn predicted(&self) -> Option<u64> {
        if self.intervals.len() < STEADY_INTERVALS {
            return None;
        }
        let (min, max) = self.intervals.iter().fold((u64::MAX, 0), |(lo, hi), d| (lo.min(*d), hi.max(*d)));
        (max - min <= self.tolerance() && min > 0).then(|| self.intervals.iter().sum::<u64>() / self.intervals.len() as u64)
    }

    /// (written start, duration) of a frame with decode time `dts` whose end aims at `target_end`.
    /// It starts where the previous sample ended when that is within jitter of `dts`, or before
    /// `dts` by less than 10 s (frames missing in between, e.g. shed by the transcoder: this
    /// sample then covers the gap, so the written timeline stays continuous and still sums to real
    /// time); otherwise (a jump backwards, or a long one forwards) at `dts` itself.
    fn place(&self, dts: u64, target_end: u64) -> (u64, u64) {
        let slack = self.tolerance().max(self.last_duration / 2);
        let max_gap = u64::from(self.timescale) * 10;
        let start = self.end.filter(|e| e.abs_diff(dts) <= slack || (*e < dts && dts - e < max_gap)).unwrap_or(dts);
        let fallback = if self.last_duration > 0 { self.last_duration } else { u64::from(self.timescale) / 30 };
        let duration = target_end.checked_sub(start).filter(|d| *d > 0 && *d < u64::from(self.timescale) * 10).unwrap_or(fallback);
        (start, duration)
    }

    /// Puts frame `f` into the open part, placed by [`TrackState::place`]; its written end aims at
    /// `target_end` (a real decode time).
    fn commit(&mut self, f: Frame, target_end: u64) {
        let (start, duration) = self.place(f.dts, target_end);
        self.last_duration = duration;
        if self.part.is_empty() {
            self.part_start = start;
        }
        self.end = Some(start + duration);
        let sample = Sample {
            duration: duration.min(u64::from(u32::MAX)) as u32,
            cts_offset: f.cts_offset,
            keyframe: f.keyframe,
            data: f.data,
        };
        self.part.push((sample, f.received));
        self.part_duration += duration;
        self.segment_duration += duration;
    }

    /// Moves the pending frame into the open part, now that the next decode time (`next_dts`) is known.
    fn commit_pending(&mut self, next_dts: Option<u64>) {
        let Some(f) = self.pending.take() else { return };
        let measured = next_dts.filter(|n| n.checked_sub(f.dts).is_some_and(|d| d > 0 && d < u64::from(self.timescale) * 10));
        let fallback = if self.last_duration > 0 { self.last_duration } else { u64::from(self.timescale) / 30 };
        let target = measured.unwrap_or(f.dts + fallback);
        self.commit(f, target);
    }
}

impl Packager {
    /// A packager with no tracks yet.
    pub fn new(config: PackagerConfig) -> Self {
        Packager { config, video: None, audio: None }
    }

    /// Declares (or re-declares) a track. Track ids are 1 for video and 2 for audio.
    /// A re-declared track with a new configuration starts a new segment.
    pub fn set_track(&mut self, config: &TrackConfig) {
        let kind = config.kind();
        let slot = match kind {
            TrackKind::Video => &mut self.video,
            TrackKind::Audio => &mut self.audio,
        };
        let track_id = if kind == TrackKind::Video { 1 } else { 2 };
        match slot {
            Some(t) if t.timescale == config.timescale() => t.next_starts_segment = true,
            _ => *slot = Some(TrackState::new(kind, config.timescale(), track_id)),
        }
    }

    /// Adds a frame of track `kind` (timestamps in that track's timescale) and returns the parts it
    /// completed. Frames of an undeclared track, and video frames before the first IDR, are dropped.
    ///
    /// Errors: [`CmafError`] if a part cannot be written (only for absurd sizes).
    pub fn push(&mut self, kind: TrackKind, frame: Frame) -> Result<Vec<PackagedPart>, CmafError> {
        let mut out = Vec::new();
        let cfg = self.config;
        let has_video = self.video.is_some();
        // Audio waits for video to start, so both renditions' first segments begin together.
        if kind == TrackKind::Audio && self.video.as_ref().is_some_and(|v| !v.started()) {
            return Ok(out);
        }
        let Some(track) = (match kind {
            TrackKind::Video => self.video.as_mut(),
            TrackKind::Audio => self.audio.as_mut(),
        }) else {
            return Ok(out);
        };
        if kind == TrackKind::Video && !track.started() && !frame.keyframe {
            return Ok(out);
        }
        track.observe(frame.dts);
        track.commit_pending(Some(frame.dts));
        let new_segment = match kind {
            TrackKind::Video => frame.keyframe && track.segment_duration >= track.ticks(cfg.min_segment_ms),
            TrackKind::Audio if has_video => {
                // Cut at the first frame at or after the boundary (within half a frame of it).
                let half = track.last_duration / 2;
                let mut cut = false;
                while track.boundaries.front().is_some_and(|b| frame.dts + half >= *b) {
                    track.boundaries.pop_front();
                    cut = track.segment_duration > 0;
                }
                cut
            }
            TrackKind::Audio => track.segment_duration >= track.ticks(cfg.audio_only_segment_ms),
        };
        if new_segment {
            track.close_segment(&mut out)?;
        } else if track.part_duration > 0 && track.part_duration + track.last_duration > track.ticks(cfg.part_target_ms) {
            track.close_part(&mut out)?;
        }
        let boundary_dts = frame.dts;
        match track.predicted().filter(|_| cfg.predict_durations) {
            Some(interval) => {
                let target = frame.dts + interval;
                let limit = track.ticks(cfg.part_target_ms);
                if track.part_duration > 0 && track.part_duration + track.place(frame.dts, target).1 > limit {
                    track.close_part(&mut out)?; // this frame's jitter would overfill the part
                }
                track.commit(frame, target);
                if track.part_duration + interval > limit {
                    track.close_part(&mut out)?; // full: no need to wait for the next frame
                }
            }
            None => track.pending = Some(frame),
        }
        if kind == TrackKind::Video && new_segment {
            if let Some(audio) = self.audio.as_mut() {
                let b = boundary_dts as u128 * u128::from(audio.timescale) / u128::from(VIDEO_TIMESCALE);
                audio.boundaries.push_back(b as u64);
                if audio.boundaries.len() > 16 {
                    audio.boundaries.pop_front();
                }
            }
        }
        Ok(out)
    }

    /// Ends the broadcast: the pending samples are written as final parts of their segments.
    pub fn flush(&mut self) -> Result<Vec<PackagedPart>, CmafError> {
        let mut out = Vec::new();
        for track in [self.video.as_mut(), self.audio.as_mut()].into_iter().flatten() {
            track.commit_pending(None);
            track.close_part(&mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onair_media::{AacConfig, AvcConfig};


    fn frame(dts: u64, keyframe: bool) -> Frame {
        Frame { dts, cts_offset: 0, keyframe, data: Bytes::from_static(b"x"), received: Instant::now() }
    }

    fn packager() -> Packager {
        let mut p = Packager::new(PackagerConfig::default());
        p.set_track(&TrackConfig::Avc(AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("avcc")));
        p.set_track(&TrackConfig::Aac(AacConfig::parse(&[0x11, 0x90]).expect("asc")));
        p
    }

    /// 10 s of 25 fps video with an IDR every 2 s, interleaved with 48 kHz AAC, as an encoder sends it.
    fn run(p: &mut Packager) -> Vec<PackagedPart> {
        let mut parts = Vec::new();
        let (mut v, mut a) = (0u64, 0u64);
        while v < 250 || a < 469 {
            let v_ms = v * 40;
            let a_ms = a * 1024 * 1000 / 48000;
            if v < 250 && v_ms <= a_ms {
                parts.extend(p.push(TrackKind::Video, frame(v_ms * 90, v % 50 == 0)).expect("push"));
                v += 1;
            } else {
                parts.extend(p.push(TrackKind::Audio, frame(a * 1024, true)).expect("push"));
                a += 1;
            }
        }
        parts.extend(p.flush().expect("flush"));
        parts
    }

    #[test]
    fn parts_respect_target_and_segments_start_on_idr() {
        let mut p = packager();
        let parts = run(&mut p);
        let video: Vec<_> = parts.iter().filter(|p| p.kind == TrackKind::Video).collect();
        let audio: Vec<_> = parts.iter().filter(|p| p.kind == TrackKind::Audio).collect();
        for part in &parts {
            let ms = part.duration * 1000 / u64::from(part.timescale);
            assert!(ms <= 200, "part of {ms} ms");
        }
        // 25 fps, 200 ms target: every video part is exactly 5 frames.
        assert!(video.iter().all(|p| p.duration == 18_000));
        // tfdt continuity.
        for pair in video.windows(2).chain(audio.windows(2)) {
            assert_eq!(pair[0].start + pair[0].duration, pair[1].start);
        }
        let v_seg: Vec<u64> = video.iter().filter(|p| p.starts_segment).map(|p| p.start).collect();
        assert_eq!(v_seg, vec![0, 180_000, 360_000, 540_000, 720_000]);
        assert!(video.iter().all(|p| p.independent == p.starts_segment));
        // Audio segments start within one AAC frame of the video boundaries.
        let a_seg: Vec<u64> = audio.iter().filter(|p| p.starts_segment).map(|p| p.start * 90_000 / 48_000).collect();
        assert_eq!(a_seg.len(), v_seg.len());
        for (a, v) in a_seg.iter().zip(&v_seg) {
            assert!(a.abs_diff(*v) <= 1920, "audio boundary {a} vs video {v}");
        }
    }

    #[test]
    fn video_before_first_idr_is_dropped() {
        let mut p = packager();
        assert!(p.push(TrackKind::Video, frame(0, false)).expect("push").is_empty());
        assert!(p.push(TrackKind::Video, frame(3600, false)).expect("push").is_empty());
        let mut parts = vec![];
        for i in 2..20 {
            parts.extend(p.push(TrackKind::Video, frame(i * 3600, i == 2)).expect("push"));
        }
        assert_eq!(parts[0].start, 7200);
        assert!(parts[0].independent && parts[0].starts_segment);
    }

    #[test]
    fn long_gop_makes_long_segments_but_short_parts() {
        let mut p = packager();
        let mut parts = vec![];
        for i in 0..300u64 {
            parts.extend(p.push(TrackKind::Video, frame(i * 3600, i % 132 == 0)).expect("push"));
        }
        let segs = parts.iter().filter(|p| p.starts_segment).count();
        assert_eq!(segs, 3);
        assert!(parts.iter().all(|p| p.duration <= 18_000));
    }

    /// Pushes `n` video frames with RTMP-style ms timestamps at `fps` (key frame every 2 s); returns
    /// each part with the index of the frame whose push released it.
    fn timed(predict: bool, fps: f64, n: u64) -> Vec<(u64, PackagedPart)> {
        let mut p = Packager::new(PackagerConfig { predict_durations: predict, ..Default::default() });
        p.set_track(&TrackConfig::Avc(AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("avcc")));
        let gop = (2.0 * fps).round() as u64;
        let mut out = Vec::new();
        for i in 0..n {
            let ms = (i as f64 * 1000.0 / fps).round() as u64;
            for part in p.push(TrackKind::Video, frame(ms * 90, i % gop == 0)).expect("push") {
                out.push((i, part));
            }
        }
        out
    }

    #[test]
    fn steady_parts_close_on_their_last_frame_not_the_next_one() {
        let late = timed(false, 25.0, 250);
        let early = timed(true, 25.0, 250);
        assert!(early.len() >= late.len());
        // Same parts, same bytes; only when they come out differs.
        for ((i_late, a), (i_early, b)) in late.iter().zip(&early).skip(2) {
            assert_eq!((a.start, a.duration, &a.data), (b.start, b.duration, &b.data));
            // Part k holds frames 5k..5k+4: released by frame 5k+5 when waiting, by 5k+4 when predicted.
            assert_eq!(*i_late, i_early + 1, "part at {}", a.start);
        }
    }

    #[test]
    fn ms_rounded_30_fps_stays_continuous_and_does_not_drift() {
        for fps in [30.0, 29.97, 60.0] {
            let parts = timed(true, fps, (fps * 60.0) as u64);
            for pair in parts.windows(2) {
                assert_eq!(pair[0].1.start + pair[0].1.duration, pair[1].1.start, "tfdt continuity at {fps} fps");
            }
            assert!(parts.iter().all(|(_, p)| p.duration <= 18_000), "parts within the target at {fps} fps");
            // The written timeline ends where the real timestamps do (within the 3 ms tolerance).
            let (last_i, last) = parts.last().expect("parts");
            let real_end = ((*last_i as f64 + 1.0) * 1000.0 / fps).round() * 90.0;
            let written_end = (last.start + last.duration) as f64;
            assert!((written_end - real_end).abs() <= 270.0, "{fps} fps: written {written_end} vs real {real_end}");
            // Most parts come out on their own last frame.
            let early = parts.windows(2).filter(|w| w[1].0 > w[0].0).count();
            assert!(early > parts.len() / 2, "{fps} fps");
        }
    }

    #[test]
    fn missing_frames_are_covered_by_the_next_sample_not_lost_from_the_timeline() {
        // 25 fps with frames 60..=64 missing (shed under load), key frames every 2 s.
        let mut p = Packager::new(PackagerConfig::default());
        p.set_track(&TrackConfig::Avc(AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("avcc")));
        let mut parts = Vec::new();
        for i in (0..150u64).filter(|i| !(60..65).contains(i)) {
            parts.extend(p.push(TrackKind::Video, frame(i * 3600, i % 50 == 0)).expect("push"));
        }
        for pair in parts.windows(2) {
            assert_eq!(pair[0].start + pair[0].duration, pair[1].start, "tfdt continuity across the gap");
        }
        // Segment 1 (frames 50..=99) still lasts 2 s: the gap is inside it, not cut out of it.
        let seg1: u64 = parts.iter().skip_while(|p| p.start < 180_000).take_while(|p| p.start < 360_000).map(|p| p.duration).sum();
        assert_eq!(seg1, 180_000);
    }

    #[test]
    fn timestamp_jumps_restart_the_timeline_without_panicking() {
        let mut p = packager();
        let mut parts = Vec::new();
        for i in 0..100u64 {
            let dts = if i < 50 { i * 3600 } else { 90_000 * 3600 + i * 3600 };
            parts.extend(p.push(TrackKind::Video, frame(dts, i % 50 == 0)).expect("push"));
        }
        assert!(parts.iter().any(|p| p.start >= 90_000 * 3600), "the timeline follows the jump");
        assert!(parts.iter().all(|p| p.duration <= 18_000));
    }
}
