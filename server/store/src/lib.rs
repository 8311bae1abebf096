//! The in-RAM store: broadcast → rendition → segment → Partial Segment, all media as shared
//! [`bytes::Bytes`] so that serving a part to many viewers never copies it.
//!
//! - One writer per broadcast appends parts ([`Rendition::append_part`]); any number of readers take
//!   snapshots or look up bytes under a short read lock.
//! - Each rendition has a [`tokio::sync::watch`] channel carrying its [`Position`], so a blocking
//!   playlist request or a request for a hinted part wakes the moment the part lands.
//! - Memory is bounded by a sliding window: the playlist lists the last `window_segments` segments,
//!   and segments (with their parts) stay downloadable for 3 × target duration after they leave it,
//!   as RFC 8216bis §6.2.2 requires for parts.
//!
//! The store knows nothing about RTMP, CMAF boxes or playlist syntax.

mod broadcast;
mod rendition;

pub use broadcast::{Broadcast, BroadcastInfo, Store, StoreError};
pub use rendition::{PartRef, Position, Rendition, RenditionInfo, SegmentSnapshot, Snapshot, TimelineConfig};
