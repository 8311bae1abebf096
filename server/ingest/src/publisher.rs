//! The protocol-agnostic half of a publish: FLV tag bodies in, CMAF parts into the store.
//!
//! It keeps each track's clock (RTMP ms → 90 kHz video ticks, sample-counted audio), feeds the
//! packager, anchors EXT-X-PROGRAM-DATE-TIME on the wall clock at the first frame, and appends the
//! resulting parts to the broadcast's renditions. With transcoding on, it also feeds the source
//! video to the ABR ladder ([`Ladder`]) whose rungs are packaged the same way on the transcode thread.
//! Dropping it ends the broadcast.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use onair_cmaf::{init_segment, PackagedPart, Packager, PackagerConfig};
use onair_flv::{AudioTag, VideoCodec, VideoTag};
use onair_media::aac::AAC_FRAME_SAMPLES;
use onair_media::timing::{ms_to_90khz, AudioClock, RtmpClock};
use onair_media::{AacConfig, Av1Config, AvcConfig, Frame, HevcConfig, TrackConfig, TrackKind, Vp9Config};
use onair_store::{Broadcast, NewPart, Placement, RenditionInfo, RenditionWriter, Session, WriteError};
use onair_transcoder::{plan_ladder, EncoderSettings};

use crate::config::TranscodeConfig;
use crate::ladder::{Ladder, Measuring, RungBudget, RungContext};
use crate::ingest_error;

/// Wall clock and media time (ms) of a broadcast's first frame, shared with the transcode thread.
pub(crate) type Anchor = Arc<OnceLock<(SystemTime, u64)>>;

/// Rendition name of the passed-through source video.
pub const SOURCE_RENDITION: &str = "source";
/// Rendition name of the audio track.
pub const AUDIO_RENDITION: &str = "audio";

/// Errors that end a publish; the connection is closed with this reason.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A box could not be written.
    #[error("packaging failed: {0}")]
    Cmaf(#[from] onair_cmaf::CmafError),
    /// No key frame within `ingest.max_gop_ms`: the open segment would grow without bound.
    #[error("no key frame for more than {max_ms} ms: set the encoder's keyframe interval to 1-2 s")]
    KeyframeIntervalTooLong {
        /// The bound, ms.
        max_ms: u64,
    },
    /// More track configuration changes within a minute than `ingest.max_reconfigurations_per_minute`.
    #[error("{0} track configuration changes within a minute: refused")]
    ReconfigurationStorm(usize),
    /// Another publisher took the channel over, or the broadcast ended.
    #[error("another publisher took the channel over")]
    TakenOver,
}

impl PublishError {
    /// The `onair_errors_total{kind}` label.
    pub fn kind(&self) -> &'static str {
        match self {
            PublishError::Cmaf(_) => "packaging",
            PublishError::KeyframeIntervalTooLong { .. } => "gop_too_long",
            PublishError::ReconfigurationStorm(_) => "reconfiguration_storm",
            PublishError::TakenOver => "taken_over",
        }
    }
}

impl From<WriteError> for PublishError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::SegmentTooLong { max_ms } => PublishError::KeyframeIntervalTooLong { max_ms },
            _ => PublishError::TakenOver,
        }
    }
}

/// How a publisher behaves beyond packaging: what the gate hands every new publisher.
#[derive(Debug, Clone)]
pub struct PublishPolicy {
    /// Packaging policy.
    pub packager: PackagerConfig,
    /// The ABR ladder, when transcoding is on.
    pub transcode: Option<TranscodeConfig>,
    /// The server-wide rung budget.
    pub budget: RungBudget,
    /// On a dropped connection, keep the broadcast open for the publisher to come back.
    pub resumable: bool,
    /// Track configuration changes allowed per minute (the first declaration of each track is free).
    pub max_reconfigurations_per_minute: usize,
}

/// A track being published: its rendition writer and configuration.
#[derive(Debug)]
struct Track {
    writer: RenditionWriter,
    config: TrackConfig,
}

/// One live publish of a channel.
#[derive(Debug)]
pub struct Publisher {
    session: Session,
    policy: PublishPolicy,
    packager: Packager,
    video: Option<Track>,
    audio: Option<Track>,
    video_clock: RtmpClock,
    audio_ms: RtmpClock,
    audio_clock: Option<AudioClock>,
    anchor: Anchor,
    warned: u32,
    /// A VP9 SequenceStart waiting for the first key frame, which carries the picture size.
    pending_vp9: Option<Bytes>,
    ladder: Ladder,
    /// When each track configuration change of the last minute happened.
    reconfigurations: VecDeque<Instant>,
}

impl Publisher {
    /// A publisher writing into `session`'s broadcast with `policy`.
    pub fn new(session: Session, policy: PublishPolicy) -> Self {
        Publisher {
            session,
            packager: Packager::new(policy.packager),
            policy,
            video: None,
            audio: None,
            video_clock: RtmpClock::default(),
            audio_ms: RtmpClock::default(),
            audio_clock: None,
            anchor: Arc::new(OnceLock::new()),
            warned: 0,
            pending_vp9: None,
            ladder: Ladder::Off,
            reconfigurations: VecDeque::new(),
        }
    }

    /// False once another publisher took the broadcast over; this one must stop.
    pub fn owns_broadcast(&self) -> bool {
        self.session.owns()
    }

    /// The broadcast being written.
    pub fn broadcast(&self) -> &Arc<Broadcast> {
        self.session.broadcast()
    }

    /// Handles an FLV video tag body with RTMP timestamp `ts` (ms) received at `received`.
    /// Malformed or unsupported tags are logged, counted and skipped. Errors: [`PublishError`].
    pub fn on_video(&mut self, ts: u32, body: &Bytes, received: Instant) -> Result<(), PublishError> {
        match onair_flv::parse_video(body) {
            Ok(VideoTag::SequenceHeader { codec: VideoCodec::Avc, record }) => match AvcConfig::parse(&record) {
                Ok(cfg) => self.set_video_config(cfg)?,
                Err(e) => self.media_warning("bad AVC sequence header", &e),
            },
            Ok(VideoTag::SequenceHeader { codec: VideoCodec::Hevc, record }) => match HevcConfig::parse(&record) {
                Ok(cfg) => self.set_hevc_config(cfg)?,
                Err(e) => self.media_warning("bad HEVC sequence start", &e),
            },
            Ok(VideoTag::SequenceHeader { codec: VideoCodec::Av1, record }) => match Av1Config::parse(&record) {
                Ok(cfg) => self.set_track(TrackConfig::Av1(cfg))?,
                Err(e) => self.media_warning("bad AV1 sequence start", &e),
            },
            Ok(VideoTag::SequenceHeader { codec: VideoCodec::Vp9, record }) => self.pending_vp9 = Some(record),
            Ok(VideoTag::Frame { codec, keyframe, cts_ms, data }) => {
                if codec == VideoCodec::Vp9 && keyframe {
                    if let Some(record) = self.pending_vp9.take() {
                        match Vp9Config::parse(&record, &data) {
                            Ok(cfg) => self.set_track(TrackConfig::Vp9(cfg))?,
                            Err(e) => self.media_warning("bad VP9 sequence start", &e),
                        }
                    }
                }
                let expected = match self.video.as_ref().map(|t| &t.config) {
                    Some(TrackConfig::Avc(_)) => Some(VideoCodec::Avc),
                    Some(TrackConfig::Hevc(_)) => Some(VideoCodec::Hevc),
                    Some(TrackConfig::Av1(_)) => Some(VideoCodec::Av1),
                    Some(TrackConfig::Vp9(_)) => Some(VideoCodec::Vp9),
                    _ => None,
                };
                if expected != Some(codec) {
                    self.media_warning("video frame before its sequence header", &format!("{codec:?}"));
                    return Ok(());
                }
                let ms = self.video_clock.extend(ts);
                let data = if codec == VideoCodec::Av1 { onair_media::av1::strip_temporal_delimiters(&data) } else { data };
                self.video_frame(ms_to_90khz(ms), cts_ms.saturating_mul(90), keyframe, data, received)?;
            }
            Ok(VideoTag::EndOfSequence | VideoTag::Command) => {}
            Ok(VideoTag::Unsupported(what)) => self.media_warning("unsupported video", &what),
            Err(e) => self.media_warning("malformed video tag", &e),
        }
        Ok(())
    }

    /// Handles an FLV audio tag body with RTMP timestamp `ts` (ms). Errors: [`PublishError`].
    pub fn on_audio(&mut self, ts: u32, body: &Bytes, received: Instant) -> Result<(), PublishError> {
        match onair_flv::parse_audio(body) {
            Ok(AudioTag::AacSequenceHeader(asc)) => match AacConfig::parse(&asc) {
                Ok(cfg) => self.set_audio_config(cfg)?,
                Err(e) => self.media_warning("bad AAC sequence header", &e),
            },
            Ok(AudioTag::AacRaw(data)) => {
                let ms = self.audio_ms.extend(ts);
                self.audio_frame(ms, data, received)?;
            }
            Ok(AudioTag::Unsupported(what)) => self.media_warning("unsupported audio", &what),
            Err(e) => self.media_warning("malformed audio tag", &e),
        }
        Ok(())
    }

    /// Declares the H.264 track (again when the encoder's configuration changes; an identical one
    /// is ignored). Errors: [`PublishError`].
    pub fn set_video_config(&mut self, cfg: AvcConfig) -> Result<(), PublishError> {
        self.set_track(TrackConfig::Avc(cfg))
    }

    /// Declares an HEVC video track (again when the encoder's configuration changes; an identical
    /// one is ignored). Errors: [`PublishError`].
    pub fn set_hevc_config(&mut self, cfg: HevcConfig) -> Result<(), PublishError> {
        self.set_track(TrackConfig::Hevc(cfg))
    }

    /// Declares the AAC track (an identical one is ignored). Errors: [`PublishError`].
    pub fn set_audio_config(&mut self, cfg: AacConfig) -> Result<(), PublishError> {
        let track = TrackConfig::Aac(cfg.clone());
        if self.audio.as_ref().is_some_and(|t| t.config == track) {
            return Ok(());
        }
        self.audio_clock = Some(AudioClock::new(cfg.sample_rate, AAC_FRAME_SAMPLES));
        self.set_track(track)
    }

    /// Adds one H.264 access unit (AVCC, 4-byte lengths) with decode time `dts` in 90 kHz ticks on
    /// this publisher's timeline. Frames before the track is declared are dropped. Errors: [`PublishError`].
    pub fn video_frame(&mut self, dts: u64, cts_offset: i32, keyframe: bool, data: Bytes, received: Instant) -> Result<(), PublishError> {
        if self.video.is_none() {
            return Ok(());
        }
        self.anchor.get_or_init(|| (SystemTime::now(), dts / 90));
        let frame = Frame { dts, cts_offset, keyframe, data, received };
        self.ladder.push(&frame);
        let parts = self.packager.push(TrackKind::Video, frame)?;
        self.store(parts)
    }

    /// Adds one raw AAC frame whose timestamp is `ms` milliseconds on this publisher's timeline
    /// (converted to a sample-exact decode time). Errors: [`PublishError`].
    pub fn audio_frame(&mut self, ms: u64, data: Bytes, received: Instant) -> Result<(), PublishError> {
        let Some(clock) = self.audio_clock.as_mut() else { return Ok(()) };
        self.anchor.get_or_init(|| (SystemTime::now(), ms));
        let frame = Frame { dts: clock.next_dts(ms), cts_offset: 0, keyframe: true, data, received };
        let parts = self.packager.push(TrackKind::Audio, frame)?;
        self.store(parts)
    }

    /// Counts and logs (rate-limited) a media problem that does not end the publish.
    pub fn warn(&mut self, what: &str, detail: &dyn std::fmt::Display) {
        self.media_warning(what, detail);
    }

    /// The encoder stopped publishing: flushes the last parts and ends the broadcast (EXT-X-ENDLIST).
    pub fn finish(mut self) {
        self.end(false);
    }

    /// The connection dropped: flushes the last parts and leaves the broadcast open for the
    /// publisher to resume within the grace period (or ends it if this publisher is not resumable).
    pub fn interrupt(mut self) {
        let resumable = self.policy.resumable;
        self.end(resumable);
    }

    fn end(&mut self, interrupt: bool) {
        // Closing the transcoder's queue lets its thread finish; its late parts are refused once
        // the session is no longer live.
        self.ladder = Ladder::Off;
        if !self.owns_broadcast() {
            return; // taken over: the new publisher writes now
        }
        match self.packager.flush() {
            Ok(parts) => {
                if let Err(e) = self.store(parts) {
                    tracing::debug!(channel = self.broadcast().channel(), error = %e, "last parts not stored");
                }
            }
            Err(e) => tracing::warn!(channel = self.broadcast().channel(), error = %e, "could not flush last parts"),
        }
        // Conditional on this session still owning the broadcast: a resume that landed meanwhile wins.
        if interrupt {
            self.session.interrupt();
        } else {
            self.session.end();
        }
    }

    fn set_track(&mut self, config: TrackConfig) -> Result<(), PublishError> {
        let slot = match config.kind() {
            TrackKind::Video => &self.video,
            TrackKind::Audio => &self.audio,
        };
        if slot.as_ref().is_some_and(|t| t.config == config) {
            return Ok(()); // encoders resend identical sequence headers
        }
        if slot.is_some() {
            self.count_reconfiguration()?;
        }
        let (name, track_id) = match config.kind() {
            TrackKind::Video => (SOURCE_RENDITION, 1),
            TrackKind::Audio => (AUDIO_RENDITION, 2),
        };
        let init = init_segment(track_id, &config)?;
        let info = RenditionInfo {
            name: name.to_string(),
            is_video: config.kind() == TrackKind::Video,
            codec: config.codec_string(),
            resolution: config.resolution(),
            frame_rate: config.frame_rate(),
            channels: config.channels(),
            nominal_bitrate: None,
            timescale: config.timescale(),
        };
        tracing::info!(channel = self.broadcast().channel(), rendition = name, codec = %info.codec, resolution = ?info.resolution, "track configured");
        let slot = match config.kind() {
            TrackKind::Video => &mut self.video,
            TrackKind::Audio => &mut self.audio,
        };
        match slot {
            Some(track) => {
                track.writer.reconfigure(info, init)?;
                track.config = config.clone();
            }
            None => *slot = Some(Track { writer: self.session.writer(info, init)?, config: config.clone() }),
        }
        self.packager.set_track(&config);
        if config.kind() == TrackKind::Video {
            self.start_ladder(&config);
        }
        Ok(())
    }

    /// Counts a track configuration change; too many within a minute end the publish.
    fn count_reconfiguration(&mut self) -> Result<(), PublishError> {
        let now = Instant::now();
        while self.reconfigurations.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
            self.reconfigurations.pop_front();
        }
        self.reconfigurations.push_back(now);
        let changes = self.reconfigurations.len();
        if changes > self.policy.max_reconfigurations_per_minute {
            return Err(PublishError::ReconfigurationStorm(changes));
        }
        Ok(())
    }

    fn store(&self, parts: Vec<PackagedPart>) -> Result<(), PublishError> {
        for part in parts {
            let track = match part.kind {
                TrackKind::Video => self.video.as_ref(),
                TrackKind::Audio => self.audio.as_ref(),
            };
            if let Some(track) = track {
                append_part(&track.writer, part, &self.anchor)?;
            }
        }
        Ok(())
    }

    /// (Re)starts the ladder for a new source configuration, within the server's rung budget, once
    /// 2 s of source are measured (see [`Measuring`]); a source too small for any rung gets none.
    fn start_ladder(&mut self, source: &TrackConfig) {
        let mut previous = std::mem::take(&mut self.ladder);
        previous.release_budget();
        let channel = self.broadcast().channel().to_string();
        let Some(tc) = &self.policy.transcode else {
            if !matches!(source, TrackConfig::Avc(_)) {
                tracing::warn!(channel, codec = %source.codec_string(), "non-H.264 source with transcoding off: players without that codec cannot play this channel");
            }
            return;
        };
        let Some((width, height)) = source.resolution() else { return };
        // A source that some players cannot decode (HEVC, AV1, VP9) also gets an H.264 rung of its own height.
        let same_height = !matches!(source, TrackConfig::Avc(_));
        let mut rungs = plan_ladder(&tc.ladder, width, height, same_height);
        if rungs.is_empty() {
            tracing::info!(channel, width, height, "no ladder rung below the source size");
            return;
        }
        let permit = self.policy.budget.take(rungs.len());
        if permit.granted() < rungs.len() {
            // Keep the cheapest rungs: they reach the viewers with the weakest networks.
            let dropped: Vec<String> = rungs.drain(..rungs.len() - permit.granted()).map(|r| r.name).collect();
            metrics::counter!("onair_transcode_rungs_refused_total").increment(dropped.len() as u64);
            tracing::warn!(channel, ?dropped, budget = tc.max_rungs, "transcode budget spent: channel gets fewer rungs");
        }
        if rungs.is_empty() {
            return;
        }
        let settings = EncoderSettings { preset: tc.preset.clone(), tune: tc.tune.clone(), threads: tc.threads_per_rung, ..Default::default() };
        let sink = RungContext {
            session: self.session.reference(),
            channel,
            anchor: self.anchor.clone(),
            packager_config: self.policy.packager,
            source_fps: source.frame_rate(),
        };
        let measuring = Measuring { previous: Box::new(previous), source: source.clone(), rungs, settings, sink, permit, backlog: Default::default() };
        self.ladder = Ladder::Measuring(Box::new(measuring));
    }

    fn media_warning(&mut self, what: &str, detail: &dyn std::fmt::Display) {
        ingest_error("media");
        // Log the first few, then every 100th, so a broken encoder cannot flood the log.
        self.warned += 1;
        if self.warned <= 5 || self.warned.is_multiple_of(100) {
            tracing::warn!(channel = self.broadcast().channel(), count = self.warned, "{what}: {detail}");
        }
    }
}

/// Appends a packaged part through `writer`, with EXT-X-PROGRAM-DATE-TIME from the broadcast's
/// anchor, and records the parts-produced and ingest-to-part metrics. Errors: [`WriteError`].
pub(crate) fn append_part(writer: &RenditionWriter, part: PackagedPart, anchor: &Anchor) -> Result<u64, WriteError> {
    let start_ms = part.start * 1000 / u64::from(part.timescale);
    let pdt = match anchor.get() {
        Some(&(wall, ms0)) if start_ms >= ms0 => wall + Duration::from_millis(start_ms - ms0),
        Some(&(wall, ms0)) => wall.checked_sub(Duration::from_millis(ms0 - start_ms)).unwrap_or(wall),
        None => SystemTime::now(),
    };
    let now = Instant::now();
    let placement = Placement::Next { starts_segment: part.starts_segment };
    let new = NewPart { program_date_time: pdt, duration: part.duration, independent: part.independent, data: part.data, produced_at: SystemTime::now() };
    let id = writer.append(placement, new)?;
    let name = writer.rendition().name().to_string();
    metrics::counter!("onair_parts_produced_total", "rendition" => name.clone()).increment(1);
    let latency = metrics::histogram!("onair_ingest_to_part_seconds", "rendition" => name);
    for r in &part.received {
        latency.record(now.duration_since(*r).as_secs_f64());
    }
    Ok(id)
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if self.broadcast().is_live() && self.owns_broadcast() {
            let resumable = self.policy.resumable;
            self.end(resumable);
        }
    }
}
