//! The protocol-agnostic half of a publish: FLV tag bodies in, CMAF parts into the store.
//!
//! It keeps each track's clock (RTMP ms → 90 kHz video ticks, sample-counted audio), feeds the
//! packager, anchors EXT-X-PROGRAM-DATE-TIME on the wall clock at the first frame, and appends the
//! resulting parts to the broadcast's renditions. With transcoding on, it also feeds the source
//! video to a [`Transcoder`] whose rungs are packaged the same way on the transcode thread.
//! Dropping it ends the broadcast.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use onair_cmaf::{init_segment, PackagedPart, Packager, PackagerConfig};
use onair_flv::{AudioTag, VideoCodec, VideoTag};
use onair_media::aac::AAC_FRAME_SAMPLES;
use onair_media::timing::{ms_to_90khz, AudioClock, RtmpClock};
use onair_media::{AacConfig, Av1Config, AvcConfig, Frame, HevcConfig, TrackConfig, TrackKind, Vp9Config};
use onair_store::{Broadcast, Rendition, RenditionInfo};
use onair_transcoder::{plan_ladder, EncoderSettings, Output, PlannedRung, Transcoder};

use crate::config::TranscodeConfig;
use crate::observability::ingest_error;

/// Wall clock and media time (ms) of a broadcast's first frame, shared with the transcode thread.
type Anchor = Arc<OnceLock<(SystemTime, u64)>>;

/// Rendition name of the passed-through source video.
pub const SOURCE_RENDITION: &str = "source";
/// Rendition name of the audio track.
pub const AUDIO_RENDITION: &str = "audio";

/// Errors that end a publish (the media cannot be packaged at all).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A box could not be written.
    #[error("packaging failed: {0}")]
    Cmaf(#[from] onair_cmaf::CmafError),
}

/// One live publish of a channel.
#[derive(Debug)]
pub struct Publisher {
    broadcast: Arc<Broadcast>,
    packager: Packager,
    video: Option<(Arc<Rendition>, TrackConfig)>,
    audio: Option<(Arc<Rendition>, TrackConfig)>,
    video_clock: RtmpClock,
    audio_ms: RtmpClock,
    audio_clock: Option<AudioClock>,
    anchor: Anchor,
    warned: u32,
    /// A VP9 SequenceStart waiting for the first key frame, which carries the picture size.
    pending_vp9: Option<Bytes>,
    packager_config: PackagerConfig,
    transcode: Option<TranscodeConfig>,
    transcoder: Option<Transcoder>,
    /// True once a key frame went to the transcoder (it must start on one).
    transcoder_fed: bool,
    /// On a dropped connection, keep the broadcast open for the publisher to come back.
    resumable: bool,
    /// The broadcast session this publisher owns (see [`Broadcast::session`]).
    session: u64,
}

impl Publisher {
    /// A publisher writing into `broadcast` with the given packaging policy; `transcode` enables
    /// the ABR ladder; `resumable` keeps the broadcast open when the connection drops
    /// ([`Publisher::interrupt`]).
    pub fn new(broadcast: Arc<Broadcast>, config: PackagerConfig, transcode: Option<TranscodeConfig>, resumable: bool) -> Self {
        let session = broadcast.session();
        Publisher {
            broadcast,
            packager: Packager::new(config),
            video: None,
            audio: None,
            video_clock: RtmpClock::default(),
            audio_ms: RtmpClock::default(),
            audio_clock: None,
            anchor: Arc::new(OnceLock::new()),
            warned: 0,
            pending_vp9: None,
            packager_config: config,
            transcode,
            transcoder: None,
            transcoder_fed: false,
            resumable,
            session,
        }
    }

    /// False once another publisher took the broadcast over; this one must stop.
    pub fn owns_broadcast(&self) -> bool {
        self.broadcast.session() == self.session
    }

    /// The broadcast being written.
    pub fn broadcast(&self) -> &Arc<Broadcast> {
        &self.broadcast
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
                let expected = match self.video.as_ref().map(|(_, c)| c) {
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
        if self.audio.as_ref().is_some_and(|(_, c)| *c == track) {
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
        if let Some(t) = self.transcoder.as_mut() {
            if keyframe || self.transcoder_fed {
                self.transcoder_fed = t.push(&frame) || self.transcoder_fed;
            }
        }
        let parts = self.packager.push(TrackKind::Video, frame)?;
        self.store(parts);
        Ok(())
    }

    /// Adds one raw AAC frame whose timestamp is `ms` milliseconds on this publisher's timeline
    /// (converted to a sample-exact decode time). Errors: [`PublishError`].
    pub fn audio_frame(&mut self, ms: u64, data: Bytes, received: Instant) -> Result<(), PublishError> {
        let Some(clock) = self.audio_clock.as_mut() else { return Ok(()) };
        self.anchor.get_or_init(|| (SystemTime::now(), ms));
        let frame = Frame { dts: clock.next_dts(ms), cts_offset: 0, keyframe: true, data, received };
        let parts = self.packager.push(TrackKind::Audio, frame)?;
        self.store(parts);
        Ok(())
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
        let resumable = self.resumable;
        self.end(resumable);
    }

    fn end(&mut self, interrupt: bool) {
        // Closing the transcoder's queue lets its thread finish; its late parts are ignored once ended.
        self.transcoder = None;
        if !self.owns_broadcast() {
            return; // taken over: the new publisher writes now
        }
        match self.packager.flush() {
            Ok(parts) => self.store(parts),
            Err(e) => tracing::warn!(channel = self.broadcast.channel(), error = %e, "could not flush last parts"),
        }
        if interrupt {
            self.broadcast.interrupt();
        } else {
            self.broadcast.end();
        }
    }

    fn set_track(&mut self, config: TrackConfig) -> Result<(), PublishError> {
        let slot = match config.kind() {
            TrackKind::Video => &self.video,
            TrackKind::Audio => &self.audio,
        };
        if slot.as_ref().is_some_and(|(_, c)| *c == config) {
            return Ok(()); // encoders resend identical sequence headers
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
        tracing::info!(channel = self.broadcast.channel(), rendition = name, codec = %info.codec, resolution = ?info.resolution, "track configured");
        let rendition = self.broadcast.add_rendition(info, init);
        self.packager.set_track(&config);
        if config.kind() == TrackKind::Video {
            self.start_transcoder(&config);
        }
        match config.kind() {
            TrackKind::Video => self.video = Some((rendition, config)),
            TrackKind::Audio => self.audio = Some((rendition, config)),
        }
        Ok(())
    }

    fn store(&self, parts: Vec<PackagedPart>) {
        for part in parts {
            let rendition = match part.kind {
                TrackKind::Video => self.video.as_ref(),
                TrackKind::Audio => self.audio.as_ref(),
            };
            if let Some((rendition, _)) = rendition {
                append_part(rendition, part, &self.anchor);
            }
        }
    }

    /// (Re)starts the ladder for a new source configuration; a source too small for any rung gets none.
    fn start_transcoder(&mut self, source: &TrackConfig) {
        self.transcoder = None;
        self.transcoder_fed = false;
        let Some(tc) = &self.transcode else {
            if !matches!(source, TrackConfig::Avc(_)) {
                tracing::warn!(channel = self.broadcast.channel(), codec = %source.codec_string(), "non-H.264 source with transcoding off: players without that codec cannot play this channel");
            }
            return;
        };
        let Some((width, height)) = source.resolution() else { return };
        // A source that some players cannot decode (HEVC, AV1, VP9) also gets an H.264 rung of its own height.
        let same_height = !matches!(source, TrackConfig::Avc(_));
        let rungs = plan_ladder(&tc.ladder, width, height, same_height);
        if rungs.is_empty() {
            tracing::info!(channel = self.broadcast.channel(), width, height, "no ladder rung below the source size");
            return;
        }
        let settings = EncoderSettings { preset: tc.preset.clone(), tune: tc.tune.clone(), ..Default::default() };
        let mut sink = RungSink {
            session: self.session,
            broadcast: self.broadcast.clone(),
            anchor: self.anchor.clone(),
            packager_config: self.packager_config,
            source_fps: source.frame_rate(),
            state: rungs.iter().map(|_| None).collect(),
            rungs: rungs.clone(),
        };
        let names: Vec<&str> = rungs.iter().map(|r| r.name.as_str()).collect();
        match Transcoder::start(source, rungs.clone(), settings, move |o| sink.handle(o)) {
            Ok(t) => {
                tracing::info!(channel = self.broadcast.channel(), rungs = ?names, "transcoding started");
                self.transcoder = Some(t);
            }
            Err(e) => {
                ingest_error("transcode_start");
                tracing::error!(channel = self.broadcast.channel(), error = %e, "transcoding could not start; serving the source only");
            }
        }
    }

    fn media_warning(&mut self, what: &str, detail: &dyn std::fmt::Display) {
        ingest_error("media");
        // Log the first few, then every 100th, so a broken encoder cannot flood the log.
        self.warned += 1;
        if self.warned <= 5 || self.warned.is_multiple_of(100) {
            tracing::warn!(channel = self.broadcast.channel(), count = self.warned, "{what}: {detail}");
        }
    }
}

/// Appends a packaged part to `rendition`, with EXT-X-PROGRAM-DATE-TIME from the broadcast's anchor,
/// and records the parts-produced and ingest-to-part metrics.
fn append_part(rendition: &Rendition, part: PackagedPart, anchor: &Anchor) {
    let start_ms = part.start * 1000 / u64::from(part.timescale);
    let pdt = match anchor.get() {
        Some(&(wall, ms0)) if start_ms >= ms0 => wall + Duration::from_millis(start_ms - ms0),
        Some(&(wall, ms0)) => wall.checked_sub(Duration::from_millis(ms0 - start_ms)).unwrap_or(wall),
        None => SystemTime::now(),
    };
    let now = Instant::now();
    rendition.append_part(part.starts_segment, pdt, part.duration, part.independent, part.data);
    let name = rendition.name();
    metrics::counter!("onair_parts_produced_total", "rendition" => name.clone()).increment(1);
    let latency = metrics::histogram!("onair_ingest_to_part_seconds", "rendition" => name);
    for r in &part.received {
        latency.record(now.duration_since(*r).as_secs_f64());
    }
}

/// Packages the transcoder's output into rung renditions, on the transcode thread.
struct RungSink {
    session: u64,
    broadcast: Arc<Broadcast>,
    anchor: Anchor,
    packager_config: PackagerConfig,
    source_fps: Option<f64>,
    rungs: Vec<PlannedRung>,
    state: Vec<Option<(Arc<Rendition>, Packager)>>,
}

impl RungSink {
    fn handle(&mut self, out: Output) {
        if self.broadcast.session() != self.session {
            return; // taken over or resumed by a newer publish session
        }
        match out {
            Output::Config { rung, config } => {
                let r = &self.rungs[rung];
                let track = TrackConfig::Avc(config);
                let init = match init_segment(1, &track) {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::error!(rendition = r.name, error = %e, "cannot write the rung's init segment");
                        return;
                    }
                };
                let info = RenditionInfo {
                    name: r.name.clone(),
                    is_video: true,
                    codec: track.codec_string(),
                    resolution: Some((r.width, r.height)),
                    frame_rate: Some(self.source_fps.unwrap_or(30.0).min(f64::from(r.max_fps))),
                    channels: None,
                    nominal_bitrate: Some(u64::from(r.bitrate_kbps) * 1000),
                    timescale: track.timescale(),
                };
                let rendition = self.broadcast.add_rendition(info, init);
                let mut packager = Packager::new(self.packager_config);
                packager.set_track(&track);
                self.state[rung] = Some((rendition, packager));
            }
            Output::Frame { rung, frame } => {
                let Some((rendition, packager)) = self.state.get_mut(rung).and_then(|s| s.as_mut()) else { return };
                match packager.push(TrackKind::Video, frame) {
                    Ok(parts) => parts.into_iter().for_each(|p| append_part(rendition, p, &self.anchor)),
                    Err(e) => tracing::warn!(rendition = rendition.name(), error = %e, "packaging a rung failed"),
                }
            }
            Output::Failed { rung, error } => {
                ingest_error("transcode_rung");
                if let Some((rendition, _)) = self.state[rung].take() {
                    tracing::error!(rendition = rendition.name(), error, "rung removed");
                    self.broadcast.remove_rendition(&rendition.name());
                }
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if self.broadcast.is_live() && self.owns_broadcast() {
            let resumable = self.resumable;
            self.end(resumable);
        }
    }
}
