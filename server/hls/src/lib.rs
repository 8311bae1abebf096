//! LL-HLS (draft-pantos-hls-rfc8216bis) as plain data and pure functions:
//!
//! - [`playlist`]: the Multivariant and Media Playlist model and its writer, with every Low-Latency
//!   tag (EXT-X-PART-INF, EXT-X-SERVER-CONTROL, EXT-X-PART, EXT-X-PRELOAD-HINT,
//!   EXT-X-RENDITION-REPORT, EXT-X-SKIP);
//! - [`blocking`]: the Delivery Directives (`_HLS_msn`, `_HLS_part`, `_HLS_skip`) and the rules of
//!   §6.2.5.2 for when a blocking request is answered, held or refused;
//! - [`parse`]: reading both playlist kinds back, for the player and for tests;
//! - [`cache`]: Cache-Control lifetimes from Appendix B;
//! - [`follow`]: the sans-IO follower of a live Media Playlist (what to fetch next, delta-update
//!   merges, part times), driven by the player and by a relay.
//!
//! Nothing here does I/O or depends on tokio, so the player (wasm) can share it.

pub mod blocking;
pub mod cache;
pub mod follow;
pub mod parse;
pub mod playlist;

pub use parse::ParseError;
pub use blocking::{Decision, Directives, DirectiveError, LiveEdge, SkipRequest};
pub use playlist::{
    stable_id, AudioMedia, ByteRange, ContentSteering, MediaPlaylist, MediaSegment, MultivariantPlaylist, PartEntry, PlaylistType, RenditionEntry, RenditionReport, ServerControl, Variant,
};
