//! The OnAir all-in-one server as a library, the composition root: configuration, the HTTP front
//! door and pages, the playback API, and [`server::start`], which wires the channel database
//! (`onair-channels`), the publish pipeline (`onair-ingest`), the store and the origin together.
//! `main.rs` is the CLI on top; tests start the same server in-process with [`server::start`].

pub mod admin;
pub mod api;
pub mod cluster;
pub mod config;
pub mod hls_front;
pub mod http;
pub mod lease;
pub mod observability;
pub mod playback;
pub mod serve;
pub mod server;
mod supervisor;
pub mod tls;
pub mod token_routes;
