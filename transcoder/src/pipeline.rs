//! The transcode threads: one decodes the source once and scales it for every rung; each rung has
//! its own encoder thread (x264 is the heavy part), fed through a small bounded queue. Key frames
//! are forced exactly where the source has them.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ffmpeg_next as ff;
use ff::codec::threading;
use ff::format::Pixel;
use ff::software::scaling;
use ff::util::frame::video::Video as VideoFrame;
use ff::{Dictionary, Packet, Rational};
use onair_media::avc::{annexb_nal_units, avcc_nal_units, nal_type, to_avcc};
use onair_media::{AvcConfig, Frame, TrackConfig, VIDEO_TIMESCALE};

use crate::ladder::PlannedRung;
use crate::TranscodeError;

/// libx264 settings shared by every rung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSettings {
    /// x264 preset. Default `veryfast`.
    pub preset: String,
    /// x264 tune. Default `zerolatency` (no lookahead, no frame threading delay).
    pub tune: String,
    /// Frames the input queue holds before source frames are dropped (to the next key frame).
    pub queue_frames: usize,
    /// Encode lag (source arrival to encoded frame) past which low-priority rungs shed frames.
    pub max_lag: Duration,
    /// x264 threads per rung (slice threads under `zerolatency`), fixed so that a server-wide
    /// budget counted in rungs bounds the threads too. Default 1.
    pub threads: u32,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings {
            preset: "veryfast".into(),
            tune: "zerolatency".into(),
            queue_frames: 60,
            max_lag: Duration::from_millis(400),
            threads: 1,
        }
    }
}

/// What the transcoder produces, delivered to the sink on the transcode thread.
#[derive(Debug)]
pub enum Output {
    /// Rung `rung` (index into the planned ladder) has this decoder configuration (sent before its
    /// first frame, and again if it changes).
    Config {
        /// Index into the planned ladder.
        rung: usize,
        /// SPS/PPS of the encoded stream.
        config: AvcConfig,
    },
    /// An encoded frame of rung `rung`, timestamps in 90 kHz ticks on the source's timeline.
    Frame {
        /// Index into the planned ladder.
        rung: usize,
        /// The frame; `received` is the source frame's ingest arrival time.
        frame: Frame,
    },
    /// Rung `rung` failed and was stopped; the others go on.
    Failed {
        /// Index into the planned ladder.
        rung: usize,
        /// What went wrong.
        error: String,
    },
}

/// A running transcode session. Dropping it stops the thread after the frames already queued.
#[derive(Debug)]
pub struct Transcoder {
    tx: Option<SyncSender<Frame>>,
    resync: bool,
    thread: Option<JoinHandle<()>>,
    encoder_threads: Vec<JoinHandle<()>>,
    rung_names: Vec<String>,
}

impl Transcoder {
    /// Starts a session for a video source (H.264, HEVC, AV1 or VP9) with configuration `source`, producing
    /// H.264 `rungs` with `settings`. `sink` is called on the transcode thread for every [`Output`].
    ///
    /// Errors: [`TranscodeError::MissingCodec`] when `source` is not video, or FFmpeg has no decoder
    /// for its codec or no libx264;
    /// [`TranscodeError::Ffmpeg`] when a codec cannot be opened; [`TranscodeError::Thread`].
    pub fn start(
        source: &TrackConfig,
        rungs: Vec<PlannedRung>,
        settings: EncoderSettings,
        sink: impl FnMut(Output) + Send + 'static,
    ) -> Result<Self, TranscodeError> {
        let (codec_id, parameter_sets, nal_length_size) = match source {
            TrackConfig::Avc(avc) => {
                let sets: Vec<&Vec<u8>> = avc.avcc.sequence_parameter_sets.iter().chain(&avc.avcc.picture_parameter_sets).collect();
                (ff::codec::Id::H264, annexb(sets), avc.nal_length_size())
            }
            TrackConfig::Hevc(hevc) => {
                let sets: Vec<&Vec<u8>> = hevc.hvcc.arrays.iter().flat_map(|a| a.nalus.iter()).collect();
                (ff::codec::Id::HEVC, annexb(sets), hevc.nal_length_size())
            }
            // AV1 samples are OBUs; the sequence header OBU goes in front of key frames instead.
            TrackConfig::Av1(av1) => (ff::codec::Id::AV1, av1.av1c.config_obus.clone(), 0),
            // VP9 frames are self-contained.
            TrackConfig::Vp9(_) => (ff::codec::Id::VP9, Vec::new(), 0),
            TrackConfig::Aac(_) => return Err(TranscodeError::MissingCodec("a video source")),
        };
        ff::init()?;
        ff::util::log::set_level(ff::util::log::Level::Error);
        let fps = source.frame_rate().unwrap_or(30.0);
        let (tx, rx) = sync_channel(settings.queue_frames.max(1));
        let rung_names = rungs.iter().map(|r| r.name.clone()).collect();
        let sink: SharedSink = Arc::new(Mutex::new(Box::new(sink)));
        // Encoders are opened on their own threads; each reports success before `start` returns.
        let mut rung_queues = Vec::with_capacity(rungs.len());
        let mut encoder_threads = Vec::with_capacity(rungs.len());
        for (i, r) in rungs.iter().enumerate() {
            let (ftx, frx) = sync_channel::<(VideoFrame, Option<Instant>)>(RUNG_QUEUE_FRAMES);
            let (ready_tx, ready_rx) = sync_channel::<Result<(), TranscodeError>>(1);
            let (rung, settings, sink) = (r.clone(), settings.clone(), sink.clone());
            let handle = std::thread::Builder::new().name(format!("onair-x264-{}", r.name)).spawn(move || {
                match RungEncoder::open(&rung, &settings, fps) {
                    Ok(enc) => {
                        let _ = ready_tx.send(Ok(()));
                        enc.run(i, rung.name, frx, sink);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
            encoder_threads.push(handle);
            ready_rx.recv().map_err(|_| TranscodeError::MissingCodec("a working encoder thread"))??;
            rung_queues.push((ftx, r.width, r.height, frame_interval(r)));
        }
        // The decoder and the scalers (not Send) live on the decode thread.
        let (ready_tx, ready_rx) = sync_channel::<Result<(), TranscodeError>>(1);
        let thread = std::thread::Builder::new().name("onair-decode".into()).spawn(move || {
            let decoder = match open_decoder(codec_id) {
                Ok(d) => {
                    let _ = ready_tx.send(Ok(()));
                    d
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let rung_queues = rung_queues
                .into_iter()
                .map(|(tx, width, height, frame_interval)| Some(RungQueue { tx, scaler: None, width, height, frame_interval, next_pts: None }))
                .collect();
            let worker = Worker {
                decoder,
                rungs: rung_queues,
                names: rungs.iter().map(|r| r.name.clone()).collect(),
                settings,
                parameter_sets,
                nal_length_size,
                keyframes: VecDeque::new(),
                received: HashMap::new(),
                sink,
            };
            worker.run(rx);
        })?;
        ready_rx.recv().map_err(|_| TranscodeError::MissingCodec("a working decode thread"))??;
        Ok(Transcoder { tx: Some(tx), resync: false, thread: Some(thread), encoder_threads, rung_names })
    }

    /// Queues a source frame without ever blocking. When the queue is full the frame is dropped
    /// and so is every following frame up to the next key frame (the decoder needs whole GOPs).
    /// Returns false when the frame was dropped.
    pub fn push(&mut self, frame: &Frame) -> bool {
        let Some(tx) = &self.tx else { return false };
        if self.resync && !frame.keyframe {
            self.count_drop("queue_full");
            return false;
        }
        match tx.try_send(frame.clone()) {
            Ok(()) => {
                self.resync = false;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.resync = true;
                self.count_drop("queue_full");
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.tx = None;
                false
            }
        }
    }

    /// Queues a source frame, waiting for room: for offline work (benchmarks, files), never for
    /// live ingest. Returns false if the transcode thread has stopped.
    pub fn push_wait(&mut self, frame: &Frame) -> bool {
        match &self.tx {
            Some(tx) => tx.send(frame.clone()).is_ok(),
            None => false,
        }
    }

    fn count_drop(&self, reason: &'static str) {
        for name in &self.rung_names {
            metrics::counter!("onair_transcode_dropped_frames_total", "rendition" => name.clone(), "reason" => reason).increment(1);
        }
    }

    /// Ends the session and waits for every thread to flush and exit.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for t in self.encoder_threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish on its own; never block the caller here.
        self.tx = None;
    }
}

fn open_decoder(id: ff::codec::Id) -> Result<ff::decoder::Video, TranscodeError> {
    // FFmpeg 5.1's native AV1 decoder needs a hardware device; dav1d decodes in software.
    let preferred = if id == ff::codec::Id::AV1 { ff::decoder::find_by_name("libdav1d") } else { None };
    let codec = preferred.or_else(|| ff::decoder::find(id)).ok_or(TranscodeError::MissingCodec("a decoder for the source codec"))?;
    let mut ctx = ff::codec::Context::new_with_codec(codec);
    // Slice threads only: frame threads would add one frame of delay per thread.
    ctx.set_threading(threading::Config { kind: threading::Type::Slice, count: 0, safe: false });
    let mut dec = ctx.decoder();
    dec.set_packet_time_base(Rational(1, VIDEO_TIMESCALE as i32));
    Ok(dec.video()?)
}

/// Parameter sets (H.264 SPS + PPS; HEVC VPS + SPS + PPS) in Annex B form, put in front of every
/// key frame for the decoder.
fn annexb<'a>(sets: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for ps in sets {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(ps);
    }
    out
}

/// Frames waiting for a rung's encoder thread; small, so a slow encoder shows up as lag quickly.
const RUNG_QUEUE_FRAMES: usize = 4;

type SharedSink = Arc<Mutex<Box<dyn FnMut(Output) + Send>>>;

fn frame_interval(r: &PlannedRung) -> i64 {
    (f64::from(VIDEO_TIMESCALE) / f64::from(r.max_fps.max(1))).floor() as i64
}

fn emit(sink: &SharedSink, out: Output) {
    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
    (s)(out);
}

/// The decode thread's handle on one rung: its scaler and the queue to its encoder thread.
struct RungQueue {
    tx: SyncSender<(VideoFrame, Option<Instant>)>,
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    width: u32,
    height: u32,
    frame_interval: i64,
    next_pts: Option<i64>,
}

impl RungQueue {
    /// Scales `src` to this rung's size (recreating the scaler if the source format or size changed).
    fn scale(&mut self, src: &VideoFrame) -> Result<VideoFrame, ff::Error> {
        let key = (src.format(), src.width(), src.height());
        if self.scaler.as_ref().map(|(_, f, w, h)| (*f, *w, *h)) != Some(key) {
            let ctx = scaling::Context::get(key.0, key.1, key.2, Pixel::YUV420P, self.width, self.height, scaling::Flags::BILINEAR)?;
            self.scaler = Some((ctx, key.0, key.1, key.2));
        }
        let mut out = VideoFrame::empty();
        if let Some((ctx, ..)) = self.scaler.as_mut() {
            ctx.run(src, &mut out)?;
        }
        Ok(out)
    }
}

/// One rung's libx264 encoder, on its own thread.
struct RungEncoder {
    encoder: ff::encoder::Video,
    config: Option<AvcConfig>,
}

impl RungEncoder {
    fn open(r: &PlannedRung, s: &EncoderSettings, source_fps: f64) -> Result<Self, TranscodeError> {
        let codec = ff::encoder::find_by_name("libx264").ok_or(TranscodeError::MissingCodec("libx264"))?;
        let mut enc = ff::codec::Context::new_with_codec(codec).encoder().video()?;
        enc.set_width(r.width);
        enc.set_height(r.height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(Rational(1, VIDEO_TIMESCALE as i32));
        let fps = source_fps.min(f64::from(r.max_fps));
        enc.set_frame_rate(Some(Rational((fps * 1000.0).round() as i32, 1000)));
        enc.set_bit_rate(r.bitrate_kbps as usize * 1000);
        enc.set_max_bit_rate(r.bitrate_kbps as usize * 1000);
        enc.set_max_b_frames(0);
        let mut opts = Dictionary::new();
        opts.set("preset", &s.preset);
        opts.set("tune", &s.tune);
        opts.set("forced-idr", "1");
        // Key frames only where the source has them: no scene cuts, no periodic key frames.
        let params = format!(
            "keyint=infinite:min-keyint=1:scenecut=0:bframes=0:rc-lookahead=0:vbv-maxrate={0}:vbv-bufsize={0}:threads={1}",
            r.bitrate_kbps,
            s.threads.max(1)
        );
        opts.set("x264-params", &params);
        Ok(RungEncoder { encoder: enc.open_with(opts)?, config: None })
    }

    fn run(mut self, rung: usize, name: String, rx: Receiver<(VideoFrame, Option<Instant>)>, sink: SharedSink) {
        while let Ok((frame, received)) = rx.recv() {
            if let Err(e) = self.encoder.send_frame(&frame) {
                return self.fail(rung, &name, &sink, format!("encode: {e}"));
            }
            if let Err(e) = self.drain(rung, &sink, received) {
                return self.fail(rung, &name, &sink, e);
            }
        }
        let _ = self.encoder.send_eof();
        let _ = self.drain(rung, &sink, None);
    }

    fn fail(&self, rung: usize, name: &str, sink: &SharedSink, error: String) {
        metrics::counter!("onair_transcode_errors_total", "kind" => "rung_failed").increment(1);
        tracing::error!(rendition = name, error, "transcode rung failed and was stopped");
        emit(sink, Output::Failed { rung, error });
    }

    /// Sends every packet the encoder has ready to the sink (as AVCC samples, parameter sets moved
    /// to the configuration). Errors: unusable SPS/PPS from the encoder.
    fn drain(&mut self, rung: usize, sink: &SharedSink, received: Option<Instant>) -> Result<(), String> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let (Some(pts), Some(dts), Some(data)) = (packet.pts(), packet.dts(), packet.data()) else { continue };
            let units = annexb_nal_units(data);
            let kind = |u: &&[u8]| u.first().map(|b| b & 0x1f);
            let sps = units.iter().find(|u| kind(u) == Some(nal_type::SPS));
            let pps = units.iter().find(|u| kind(u) == Some(nal_type::PPS));
            if let (Some(sps), Some(pps)) = (sps, pps) {
                let cfg = AvcConfig::from_parameter_sets(sps, pps).map_err(|e| format!("encoder parameter sets: {e}"))?;
                if self.config.as_ref() != Some(&cfg) {
                    self.config = Some(cfg.clone());
                    emit(sink, Output::Config { rung, config: cfg });
                }
            }
            if self.config.is_none() {
                continue;
            }
            let samples: Vec<&[u8]> =
                units.iter().copied().filter(|u| !matches!(kind(u), Some(nal_type::SPS | nal_type::PPS | nal_type::AUD))).collect();
            let keyframe = packet.is_key() || samples.iter().any(|u| kind(u) == Some(nal_type::IDR));
            let received = received.unwrap_or_else(Instant::now);
            metrics::histogram!("onair_transcode_lag_seconds").record(received.elapsed().as_secs_f64());
            let frame = Frame {
                dts: dts.max(0) as u64,
                cts_offset: (pts - dts).clamp(0, i64::from(i32::MAX)) as i32,
                keyframe,
                data: to_avcc(&samples).into(),
                received,
            };
            emit(sink, Output::Frame { rung, frame });
        }
        Ok(())
    }
}

/// The decode thread: decodes the source once and hands scaled frames to the rung encoders.
struct Worker {
    decoder: ff::decoder::Video,
    rungs: Vec<Option<RungQueue>>,
    names: Vec<String>,
    settings: EncoderSettings,
    parameter_sets: Vec<u8>,
    /// Bytes of each NAL unit's length prefix in the source's samples; 0 for AV1 and VP9.
    nal_length_size: u8,
    /// Presentation times of source key frames not yet decoded.
    keyframes: VecDeque<i64>,
    /// Ingest arrival time by presentation time.
    received: HashMap<i64, Instant>,
    sink: SharedSink,
}

impl Worker {
    fn run(mut self, rx: Receiver<Frame>) {
        while let Ok(frame) = rx.recv() {
            self.decode(&frame);
        }
        let _ = self.decoder.send_eof();
        self.drain_decoder();
        // Dropping the rung queues ends the encoder threads after they flush.
    }

    fn decode(&mut self, frame: &Frame) {
        let pts = frame.dts as i64 + i64::from(frame.cts_offset);
        let mut annexb = Vec::with_capacity(frame.data.len() + 64);
        if frame.keyframe {
            annexb.extend_from_slice(&self.parameter_sets);
            self.keyframes.push_back(pts);
            if self.keyframes.len() > 64 {
                self.keyframes.pop_front();
            }
        }
        if self.nal_length_size == 0 {
            // AV1 OBUs and VP9 frames: passed as they are.
            annexb.extend_from_slice(&frame.data);
        } else {
            match avcc_nal_units(&frame.data, self.nal_length_size) {
                Ok(units) => {
                    for u in units {
                        annexb.extend_from_slice(&[0, 0, 0, 1]);
                        annexb.extend_from_slice(u);
                    }
                }
                Err(e) => {
                    metrics::counter!("onair_transcode_errors_total", "kind" => "bad_sample").increment(1);
                    tracing::debug!(error = %e, "skipping malformed source sample");
                    return;
                }
            }
        }
        self.received.insert(pts, frame.received);
        if self.received.len() > 512 {
            // Frames the decoder never returned (errors): forget the oldest.
            if let Some(k) = self.received.keys().min().copied() {
                self.received.remove(&k);
            }
        }
        let mut packet = Packet::copy(&annexb);
        packet.set_pts(Some(pts));
        packet.set_dts(Some(frame.dts as i64));
        if let Err(e) = self.decoder.send_packet(&packet) {
            metrics::counter!("onair_transcode_errors_total", "kind" => "decode").increment(1);
            tracing::debug!(error = %e, "decoder refused a packet");
        }
        self.drain_decoder();
    }

    fn drain_decoder(&mut self) {
        let mut decoded = VideoFrame::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let Some(pts) = decoded.timestamp().or(decoded.pts()) else { continue };
            while self.keyframes.front().is_some_and(|k| *k < pts) {
                self.keyframes.pop_front();
            }
            let force_idr = self.keyframes.front() == Some(&pts);
            if force_idr {
                self.keyframes.pop_front();
            }
            let received = self.received.remove(&pts);
            let lag = received.map(|r| r.elapsed()).unwrap_or_default();
            for i in 0..self.rungs.len() {
                self.hand_over(i, &decoded, pts, force_idr, lag, received);
            }
        }
    }

    /// Scales the frame for rung `i` and queues it for its encoder, unless the rung skips it
    /// (frame-rate cap, or shedding under lag; never a forced IDR).
    fn hand_over(&mut self, i: usize, src: &VideoFrame, pts: i64, force_idr: bool, lag: Duration, received: Option<Instant>) {
        let n = self.rungs.len();
        let Some(q) = self.rungs[i].as_mut() else { return };
        if !force_idr {
            if q.next_pts.is_some_and(|next| pts < next) {
                return; // frame-rate cap
            }
            // Behind the live edge: the last rungs shed frames first (rung n-1 at 1 × max_lag, n-2 at 2 × ...).
            if lag > self.settings.max_lag * (n - i) as u32 {
                metrics::counter!("onair_transcode_dropped_frames_total", "rendition" => self.names[i].clone(), "reason" => "lag")
                    .increment(1);
                return;
            }
        }
        q.next_pts = Some(q.next_pts.map_or(pts, |next| next.max(pts - q.frame_interval)) + q.frame_interval);
        let scaled = q.scale(src).map(|mut f| {
            f.set_pts(Some(pts));
            f.set_kind(if force_idr { ff::picture::Type::I } else { ff::picture::Type::None });
            f
        });
        let result = match scaled {
            Ok(f) => q.tx.send((f, received)).map_err(|_| "encoder thread stopped".to_string()),
            Err(e) => Err(format!("scale: {e}")),
        };
        if let Err(error) = result {
            self.rungs[i] = None;
            if error.starts_with("scale") {
                metrics::counter!("onair_transcode_errors_total", "kind" => "rung_failed").increment(1);
                tracing::error!(rendition = self.names[i], error, "transcode rung failed and was stopped");
                emit(&self.sink, Output::Failed { rung: i, error });
            }
        }
    }
}
