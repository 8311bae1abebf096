//! The publisher's ABR ladder: the server-wide rung budget, a transcoder started off the async
//! runtime, and the sink that packages each rung into its own rendition writer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use onair_cmaf::{init_segment, Packager, PackagerConfig};
use onair_media::{Frame, TrackConfig, TrackKind};
use onair_store::{RenditionInfo, RenditionWriter, SessionRef, WriteError};
use onair_transcoder::{fit_to_source, EncoderSettings, Output, PlannedRung, Transcoder};

use crate::publisher::{append_part, Anchor};
use crate::ingest_error;

/// Frames kept for a transcoder that is still measuring its source or opening its encoders (about
/// 5 s at 30 fps); past it they are dropped up to a key frame.
const STARTING_BACKLOG_FRAMES: usize = 150;

/// Source media measured before the ladder is fitted to the source's bit rate, 90 kHz ticks (2 s).
const MEASURE_TICKS: u64 = 2 * 90_000;

/// A ladder waiting for 2 s of source video to measure the source's bit rate, then
/// fitted to it ([`onair_transcoder::fit_to_source`]) and started. Frames since the first key
/// frame are kept and fed to the transcoder once it runs, so the rungs' segments line up with the
/// source's from the first one.
#[derive(Debug)]
pub struct Measuring {
    /// The ladder being replaced; finished before the new one starts.
    pub previous: Box<Ladder>,
    /// The source's configuration.
    pub source: TrackConfig,
    /// Planned rungs, before fitting.
    pub rungs: Vec<PlannedRung>,
    /// Encoder settings.
    pub settings: EncoderSettings,
    /// What the rungs' sink needs once the rungs are known.
    pub sink: RungContext,
    /// The budget's rungs.
    pub permit: RungPermit,
    /// Frames from the first key frame on.
    pub backlog: VecDeque<Frame>,
}

/// What a [`RungSink`] needs besides the rungs.
#[derive(Debug, Clone)]
pub struct RungContext {
    /// The publish session.
    pub session: SessionRef,
    /// Channel name.
    pub channel: String,
    /// The broadcast's wall-clock anchor.
    pub anchor: Anchor,
    /// Packaging policy.
    pub packager_config: PackagerConfig,
    /// Source frame rate.
    pub source_fps: Option<f64>,
}

/// The server-wide number of rungs being encoded, bounded by `transcode.max_rungs`. Shared by
/// every publisher; a channel that starts when the budget is spent gets fewer rungs.
#[derive(Debug, Clone)]
pub struct RungBudget {
    limit: usize,
    used: Arc<AtomicUsize>,
}

impl RungBudget {
    /// A budget of `limit` rungs.
    pub fn new(limit: usize) -> Self {
        RungBudget { limit, used: Arc::new(AtomicUsize::new(0)) }
    }

    /// Takes up to `wanted` rungs; the permit gives them back when dropped.
    pub fn take(&self, wanted: usize) -> RungPermit {
        let mut granted = 0;
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            granted = wanted.min(self.limit.saturating_sub(used));
            Some(used + granted)
        });
        metrics::gauge!("onair_transcode_rungs").set(self.in_use() as f64);
        RungPermit { used: self.used.clone(), granted }
    }

    /// Rungs encoding now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Rungs taken from a [`RungBudget`], returned on drop.
#[derive(Debug)]
pub struct RungPermit {
    used: Arc<AtomicUsize>,
    granted: usize,
}

impl RungPermit {
    /// How many rungs were granted.
    pub fn granted(&self) -> usize {
        self.granted
    }

    /// Gives the rungs back now (the permit holds none afterwards).
    fn release(&mut self) {
        self.shrink(0);
    }

    /// Keeps `to` rungs at most, giving the rest back.
    fn shrink(&mut self, to: usize) {
        let extra = self.granted.saturating_sub(to);
        self.granted -= extra;
        self.used.fetch_sub(extra, Ordering::AcqRel);
    }
}

impl Drop for RungPermit {
    fn drop(&mut self) {
        self.used.fetch_sub(self.granted, Ordering::AcqRel);
        metrics::gauge!("onair_transcode_rungs").set(self.used.load(Ordering::Acquire) as f64);
    }
}

/// The publisher's transcoder: none, opening on a thread of its own (x264 opens take tens of ms
/// and must not hold a runtime worker), or running.
#[derive(Debug, Default)]
pub enum Ladder {
    /// No ladder (transcoding off, a small source, or the budget spent).
    #[default]
    Off,
    /// Measuring the source's bit rate.
    Measuring(Box<Measuring>),
    /// Opening; frames since the last key frame wait in the backlog.
    Starting {
        /// The opened transcoder, or `None` if it failed.
        ready: Receiver<Option<Transcoder>>,
        /// Frames queued meanwhile, starting with a key frame.
        backlog: VecDeque<Frame>,
        /// The budget's rungs, held while the ladder runs.
        permit: RungPermit,
    },
    /// Encoding.
    Running {
        /// The transcoder.
        transcoder: Transcoder,
        /// True once a key frame went in (it must start on one).
        fed: bool,
        /// The budget's rungs.
        permit: RungPermit,
    },
}

impl Ladder {
    /// Starts a transcoder for `source` with `rungs` on a new thread, after `previous` (a ladder
    /// being replaced) has finished, so its rung writers are released first.
    pub fn start(
        previous: Ladder,
        source: &TrackConfig,
        rungs: Vec<PlannedRung>,
        settings: EncoderSettings,
        sink: RungSink,
        permit: RungPermit,
        backlog: VecDeque<Frame>,
    ) -> Ladder {
        let (tx, ready) = std::sync::mpsc::sync_channel(1);
        let source = source.clone();
        let channel = sink.ctx.channel.clone();
        let spawned = std::thread::Builder::new().name("onair-ladder-start".into()).spawn(move || {
            previous.finish();
            let mut sink = sink;
            let names: Vec<String> = rungs.iter().map(|r| r.name.clone()).collect();
            let started = match Transcoder::start(&source, rungs, settings, move |o| sink.handle(o)) {
                Ok(t) => {
                    tracing::info!(channel, rungs = ?names, "transcoding started");
                    Some(t)
                }
                Err(e) => {
                    ingest_error("transcode_start");
                    tracing::error!(channel, error = %e, "transcoding could not start; serving the source only");
                    None
                }
            };
            let _ = tx.send(started);
        });
        match spawned {
            Ok(_) => Ladder::Starting { ready, backlog, permit },
            Err(e) => {
                ingest_error("transcode_start");
                tracing::error!(error = %e, "cannot spawn the transcoder start thread");
                Ladder::Off
            }
        }
    }

    /// Gives this ladder's rungs back to the budget ahead of its threads finishing (it is being replaced).
    pub fn release_budget(&mut self) {
        match self {
            Ladder::Starting { permit, .. } | Ladder::Running { permit, .. } => permit.release(),
            Ladder::Measuring(m) => m.permit.release(),
            Ladder::Off => {}
        }
    }

    /// Feeds a source video frame; never blocks.
    pub fn push(&mut self, frame: &Frame) {
        if let Ladder::Measuring(m) = self {
            if !keep_in_backlog(&mut m.backlog, frame) {
                return;
            }
            let first = m.backlog.front().map_or(frame.dts, |f| f.dts);
            let span = frame.dts.saturating_sub(first);
            if span < MEASURE_TICKS {
                return;
            }
            let Ladder::Measuring(m) = std::mem::take(self) else { return };
            *self = m.fitted(span);
            return;
        }
        if let Ladder::Starting { ready, backlog, .. } = self {
            match ready.try_recv() {
                Ok(Some(transcoder)) => {
                    let (backlog, permit) = match std::mem::take(self) {
                        Ladder::Starting { backlog, permit, .. } => (backlog, permit),
                        _ => return,
                    };
                    *self = Ladder::Running { transcoder, fed: false, permit };
                    // The backlog waited on purpose (measuring, opening): it counts as arriving
                    // now, or the transcoder would shed it as late and the rungs' first segment
                    // would lose frames.
                    let now = std::time::Instant::now();
                    for f in backlog {
                        self.push(&Frame { received: now, ..f });
                    }
                }
                Ok(None) | Err(TryRecvError::Disconnected) => *self = Ladder::Off,
                Err(TryRecvError::Empty) => {
                    keep_in_backlog(backlog, frame);
                    return;
                }
            }
        }
        if let Ladder::Running { transcoder, fed, .. } = self {
            if frame.keyframe || *fed {
                *fed = transcoder.push(frame) || *fed;
            }
        }
    }

    /// Stops the ladder and waits for its threads (call off the runtime).
    fn finish(self) {
        match self {
            Ladder::Measuring(m) => m.previous.finish(),
            Ladder::Running { transcoder, .. } => transcoder.finish(),
            Ladder::Starting { ready, .. } => {
                if let Ok(Some(t)) = ready.recv() {
                    t.finish();
                }
            }
            Ladder::Off => {}
        }
    }
}

/// Queues `frame` in a backlog that starts on a key frame and holds at most
/// [`STARTING_BACKLOG_FRAMES`] (then starts over at the next key frame). True if it was queued.
fn keep_in_backlog(backlog: &mut VecDeque<Frame>, frame: &Frame) -> bool {
    if backlog.len() >= STARTING_BACKLOG_FRAMES {
        backlog.clear();
    }
    let keep = frame.keyframe || !backlog.is_empty();
    if keep {
        backlog.push_back(frame.clone());
    }
    keep
}

impl Measuring {
    /// Fits the rungs to the bit rate measured over the backlog (`span` ticks) and starts them.
    fn fitted(mut self, span: u64) -> Ladder {
        let bytes: u64 = self.backlog.iter().map(|f| f.data.len() as u64).sum();
        let kbps = (bytes * 8 * 90_000 / span.max(1) / 1000).min(u64::from(u32::MAX)) as u32;
        let Some((width, height)) = self.source.resolution() else { return Ladder::Off };
        let planned: Vec<String> = self.rungs.iter().map(|r| r.name.clone()).collect();
        let rungs = fit_to_source(std::mem::take(&mut self.rungs), width, height, kbps);
        let fitted: Vec<(String, u32)> = rungs.iter().map(|r| (r.name.clone(), r.bitrate_kbps)).collect();
        tracing::info!(channel = self.sink.channel, source_kbps = kbps, ?planned, ?fitted, "ladder fitted to the source's bit rate");
        if rungs.len() < planned.len() {
            metrics::counter!("onair_transcode_rungs_dropped_total", "reason" => "not_cheaper_than_source").increment((planned.len() - rungs.len()) as u64);
        }
        self.permit.shrink(rungs.len());
        if rungs.is_empty() {
            return Ladder::Off;
        }
        let sink = RungSink::new(self.sink.clone(), rungs.clone());
        Ladder::start(*self.previous, &self.source, rungs, self.settings, sink, self.permit, self.backlog)
    }
}

/// Packages the transcoder's output into rung renditions, on the transcode thread; each rung
/// writes through its own [`RenditionWriter`], claimed for the publish session.
pub struct RungSink {
    ctx: RungContext,
    rungs: Vec<PlannedRung>,
    state: Vec<Option<(RenditionWriter, Packager)>>,
}

impl RungSink {
    /// A sink for `rungs` in the session of `ctx`.
    pub fn new(ctx: RungContext, rungs: Vec<PlannedRung>) -> Self {
        let state = rungs.iter().map(|_| None).collect();
        RungSink { ctx, rungs, state }
    }

    fn handle(&mut self, out: Output) {
        match out {
            Output::Config { rung, config } => {
                let Some(r) = self.rungs.get(rung) else { return };
                let track = TrackConfig::Avc(config);
                let init = match init_segment(1, &track) {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::error!(channel = self.ctx.channel, rendition = r.name, error = %e, "cannot write the rung's init segment");
                        return;
                    }
                };
                let info = RenditionInfo {
                    name: r.name.clone(),
                    is_video: true,
                    codec: track.codec_string(),
                    resolution: Some((r.width, r.height)),
                    frame_rate: Some(self.ctx.source_fps.unwrap_or(30.0).min(f64::from(r.max_fps))),
                    channels: None,
                    nominal_bitrate: Some(u64::from(r.bitrate_kbps) * 1000),
                    timescale: track.timescale(),
                };
                match self.ctx.session.writer(info, init) {
                    Ok(writer) => {
                        // Rungs wait for each frame's successor: frames shed under load leave gaps,
                        // and only a measured duration stretches the frame before a gap, which keeps
                        // every rung's segments as long as the source's.
                        let mut packager = Packager::new(PackagerConfig { predict_durations: false, ..self.ctx.packager_config });
                        packager.set_track(&track);
                        self.state[rung] = Some((writer, packager));
                    }
                    Err(e) => tracing::debug!(channel = self.ctx.channel, rendition = r.name, error = %e, "rung not written"),
                }
            }
            Output::Frame { rung, frame } => {
                let Some((writer, packager)) = self.state.get_mut(rung).and_then(|s| s.as_mut()) else { return };
                match packager.push(TrackKind::Video, frame) {
                    Ok(parts) => {
                        for p in parts {
                            if let Err(e) = append_part(writer, p, &self.ctx.anchor) {
                                if matches!(e, WriteError::NotOwner | WriteError::Ended) {
                                    self.state[rung] = None; // the session is over: stop writing
                                    return;
                                }
                                tracing::warn!(channel = self.ctx.channel, rendition = writer.rendition().name(), error = %e, "rung part refused");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(channel = self.ctx.channel, rendition = writer.rendition().name(), error = %e, "packaging a rung failed"),
                }
            }
            Output::Failed { rung, error } => {
                ingest_error("transcode_rung");
                if let Some((writer, _)) = self.state.get_mut(rung).and_then(Option::take) {
                    tracing::error!(channel = self.ctx.channel, rendition = writer.rendition().name(), error, "rung removed");
                    writer.remove();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_grants_what_is_left_and_takes_it_back() {
        let budget = RungBudget::new(4);
        let a = budget.take(3);
        let b = budget.take(3);
        let c = budget.take(2);
        assert_eq!((a.granted(), b.granted(), c.granted()), (3, 1, 0));
        assert_eq!(budget.in_use(), 4);
        drop(a);
        assert_eq!(budget.take(5).granted(), 3);
        drop((b, c));
        assert_eq!(budget.in_use(), 0);
    }
}
