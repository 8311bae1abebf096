//! The in-RAM store: broadcast → rendition → segment → Partial Segment, all media as shared
//! [`bytes::Bytes`] so that serving a part to many viewers never copies it.
//!
//! Writers and readers:
//! - A publish **session** ([`Session`], from [`Store::start`]) owns a broadcast until it ends,
//!   is interrupted, or another session takes the broadcast over. Its state (live, interrupted,
//!   ended, and the owning session id) is one value inside a [`tokio::sync::watch`], changed only
//!   by conditional transitions, so a stale session can never end or interrupt a broadcast that a
//!   newer one resumed.
//! - Each rendition has at most one [`RenditionWriter`] (not `Clone`), claimed by the owning
//!   session. A taken-over writer's appends are refused and its drop does nothing; dropping the
//!   live writer interrupts the rendition (its open segment closes and the next one starts after
//!   a discontinuity). The ingest's publisher, the transcoder's rungs and the relay (importing the
//!   upstream's numbering with [`Placement::At`]) all write through it; the archive reads.
//! - Each rendition's timeline sits inside a `watch` channel too, so a change and its wake-up are
//!   one step: a blocking playlist request or a request for a hinted part ([`Watcher`]) wakes the
//!   moment the part lands, and sees exactly that state.
//! - Memory is bounded by a sliding window: the playlist lists the last `window_segments` segments,
//!   and segments (with their parts) stay downloadable for 3 × target duration after they leave it,
//!   as RFC 8216bis §6.2.2 requires for parts; a segment may not grow past `max_segment`, and at
//!   most [`MAX_INIT_SEGMENTS`] init segments are held per rendition.
//!
//! The store knows nothing about RTMP, CMAF boxes or playlist syntax.

mod broadcast;
mod rendition;
mod writer;

pub use broadcast::{Broadcast, BroadcastInfo, BroadcastState, Phase, Store, StoreError};
pub use rendition::{
    NewPart, PartRef, Placement, Position, Rendition, RenditionInfo, SegmentRef, SegmentSnapshot, Snapshot, TimelineConfig, Watcher,
    MAX_INIT_SEGMENTS,
};
pub use writer::{RenditionWriter, Session, SessionRef, WriteError};

#[cfg(test)]
mod tests;
