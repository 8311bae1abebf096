//! Ingest: protocol listeners (RTMP today) feeding a protocol-agnostic [`publisher::Publisher`],
//! which packages media into the store.

pub mod limits;
pub mod publisher;
pub mod rtmp;
