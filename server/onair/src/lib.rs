//! The OnAir all-in-one server as a library: configuration, channel keys, RTMP ingest, the
//! packaging pipeline and the HTTP front (origin, metrics, directory). `main.rs` is the CLI on top;
//! tests start the same server in-process with [`server::start`].

pub mod channels;
pub mod config;
pub mod http;
pub mod ingest;
pub mod observability;
pub mod playback;
pub mod serve;
pub mod server;
