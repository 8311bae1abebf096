//! The publish pipeline: protocol listeners (RTMP, SRT) admitted by one [`gate::Gate`] and feeding a
//! protocol-agnostic [`publisher::Publisher`], which packages media into the store through its
//! rendition writers and runs the ABR ladder ([`ladder`]) within the server's rung budget.
//!
//! Every refusal is logged with the channel and peer and counted in `onair_errors_total{kind}`;
//! only the offending connection is closed.

pub mod config;
pub mod gate;
pub mod ladder;
pub mod limits;
pub mod publisher;
pub mod rtmp;
pub mod srt;

/// Counts an ingest error of `kind` (e.g. `rtmp_protocol`, `bad_stream_key`, `media`) in
/// `onair_errors_total{kind}`.
pub fn ingest_error(kind: &'static str) {
    metrics::counter!("onair_errors_total", "kind" => kind).increment(1);
}
