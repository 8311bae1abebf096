//! OnAir's LL-HLS player, compiled to WebAssembly with `wasm-pack build --target web`.
//!
//! The logic is plain Rust that runs (and is tested) natively:
//! - `onair_hls::follow` (in the crate the server writes playlists with, shared with the relay):
//!   a rendition's Media Playlist as the loader sees it: part times, start position, what to fetch
//!   next (part, Preload Hint with a parallel blocking reload, whole segment), delta-update merging;
//! - [`timeline`]: EXT-X-PROGRAM-DATE-TIME ↔ media time, across discontinuities and servers;
//! - [`latency`]: the playback-rate controller that chases the target latency;
//! - [`abr`]: the bandwidth estimator and rendition choice;
//! - [`dvr`]: seeking back into the DVR window and returning to live: which playlist, where;
//! - [`selection`]: ranking candidate servers and deciding when to fail over;
//! - [`steering`]: Content Steering manifests → the servers to use, best first;
//! - [`gaps`]: holes in the buffered media the playhead is moved across;
//! - [`fmp4`]: timescale, `tfdt` and codec strings from CMAF objects;
//! - [`token`]: when an expiring playback token is renewed, and the server in use among the new URLs;
//! - [`variants`]: the SourceBuffers a variant needs and its audio rendition.
//!
//! In the browser, `web` (wasm32 only) does the I/O: `fetch`, Media Source Extensions with one
//! SourceBuffer per track behind an operation queue, timers, and the JavaScript API
//! `OnAirPlayer.attach(video, options)` documented in `player-wasm/README.md`.

pub mod abr;
pub mod dvr;
pub mod fmp4;
pub mod gaps;
pub mod latency;
pub mod selection;
pub mod steering;
pub mod timeline;
pub mod token;
pub mod variants;

#[cfg(target_arch = "wasm32")]
mod web;
