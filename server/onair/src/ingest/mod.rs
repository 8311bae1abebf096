//! Ingest: protocol listeners (RTMP, SRT) admitted by one [`gate::Gate`] and feeding a
//! protocol-agnostic [`publisher::Publisher`], which packages media into the store.

pub mod gate;
pub mod ladder;
pub mod limits;
pub mod publisher;
pub mod rtmp;
pub mod srt;
