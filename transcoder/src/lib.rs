//! The transcoder: source H.264 frames in, encoded H.264 frames for each rung of an ABR ladder out.
//!
//! - [`ladder`]: which rungs to produce for a source (pure policy: never upscale).
//! - [`pipeline`]: one thread per live source. It decodes the source once (libavcodec), scales per
//!   rung (swscale) and encodes with libx264 (no B-frames, no lookahead), forcing an IDR exactly where
//!   the source has a key frame, so every rendition's segments start at the same presentation times.
//!
//! Real time first: [`Transcoder::push`] never blocks the caller (the ingest); a full input queue
//! drops source frames up to the next key frame, and an encoder that falls behind the live edge
//! sheds frames of the lowest-priority rungs (the last ones in the ladder) until it catches up.
//! Dropped frames and encode lag are metrics (`onair_transcode_dropped_frames_total{rendition,reason}`,
//! `onair_transcode_lag_seconds`).

pub mod ladder;
pub mod pipeline;

pub use ladder::{fit_to_source, plan_ladder, PlannedRung, Rung};
pub use pipeline::{EncoderSettings, Output, Transcoder};

/// Errors from starting a transcode session.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// FFmpeg has no H.264 decoder or no libx264 encoder.
    #[error("FFmpeg lacks {0}")]
    MissingCodec(&'static str),
    /// FFmpeg refused to open a codec or scaler.
    #[error("FFmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg_next::Error),
    /// The transcode thread could not be started.
    #[error("cannot start the transcode thread: {0}")]
    Thread(#[from] std::io::Error),
}
