//! CMAF packaging (ISO/IEC 23000-19) for LL-HLS.
//!
//! - [`boxes`]: pure writers for the init segment (`ftyp`+`moov` with `mvex`) and for CMAF chunks
//!   (`moof`+`mdat`), which LL-HLS serves as Partial Segments (RFC 8216bis §4.4.4.9).
//! - [`packager`]: the cutting policy: frames in, Partial Segments out, with segments that start on
//!   IDR frames and audio segments cut at the same presentation times as video.
//! - [`inspect`]: reading a track's timescale and a fragment's duration back (for a relay).
//! - [`progressive`]: one progressive (non-fragmented, fast-start) MP4 from single-track
//!   renditions, without re-encoding (a clip's download).

pub mod boxes;
pub mod inspect;
pub mod packager;
pub mod progressive;

pub use boxes::{fragment, init_segment, Sample};
pub use packager::{PackagedPart, Packager, PackagerConfig};

/// Errors from writing boxes.
#[derive(Debug, thiserror::Error)]
pub enum CmafError {
    /// mp4-atom refused to encode a box (a value out of its field's range).
    #[error("box encoding failed: {0}")]
    Encode(#[from] mp4_atom::Error),
    /// A fragment's mdat would exceed 4 GiB or a sample's duration 2^32 ticks.
    #[error("fragment too large: {0}")]
    TooLarge(&'static str),
}
