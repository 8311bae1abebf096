//! The player's shared state, its stats, and its events.

use std::cell::RefCell;
use std::rc::Rc;

use onair_hls::MultivariantPlaylist;
use serde::Serialize;
use wasm_bindgen::JsValue;
use web_sys::{CustomEvent, CustomEventInit, HtmlVideoElement, MediaSource};

use crate::abr::BandwidthEstimator;
use crate::latency::LatencyController;
use crate::selection::Health;
use crate::timeline::Timeline;

/// What `stats()` returns (camelCase in JavaScript). Times in seconds unless named `_ms`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    /// `starting`, `playing`, `ended` or `error`.
    pub state: String,
    /// Wall clock (server-corrected) minus the PROGRAM-DATE-TIME of the frame on screen.
    pub latency: Option<f64>,
    /// The latency the controller aims for now.
    pub target_latency: f64,
    /// Media buffered ahead of `currentTime`.
    pub buffer: f64,
    /// `playbackRate` now.
    pub playback_rate: f64,
    /// The media element's `currentTime`.
    pub current_time: f64,
    /// Video rendition playing, e.g. `1280x720`, and its BANDWIDTH (bits/s).
    pub rendition: Option<String>,
    /// BANDWIDTH of that rendition, bits/s.
    pub rendition_bandwidth: Option<u64>,
    /// Index of that rendition in the Multivariant Playlist.
    pub rendition_index: usize,
    /// Estimated throughput, bits/s.
    pub bandwidth_estimate: Option<f64>,
    /// Multivariant Playlist URL of the server in use.
    pub server: String,
    /// Stalls (`waiting` after playback started).
    pub stalls: u32,
    /// Server changes after errors or lag.
    pub failovers: u32,
    /// Server changes because the Content Steering manifest ranked another server first.
    pub steered: u32,
    /// Playback tokens renewed through the playback API before they expired.
    pub token_renewals: u32,
    /// Gaps in the buffer skipped over.
    pub gap_jumps: u32,
    /// Parts and segments appended, and their bytes.
    pub fragments: u64,
    /// Bytes of media appended.
    pub bytes: u64,
    /// Server clock minus local clock, ms.
    pub clock_offset_ms: f64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// False after `seekBack` (playing the DVR window, latency not chased), true at live.
    pub at_live: bool,
    /// Wall-clock ms of the oldest media the DVR window holds (while seeking back is possible
    /// and the DVR playlist was loaded), else `None`.
    pub dvr_start_ms: Option<f64>,
}

/// Player state shared by its tasks (single-threaded: `Rc<RefCell>`; no borrow is held across
/// an `.await`).
pub(crate) struct State {
    pub video: HtmlVideoElement,
    /// `None` in native mode (no Media Source Extensions: the element plays the playlist itself).
    pub media_source: Option<MediaSource>,
    pub candidates: Vec<String>,
    pub current: usize,
    pub generation: u32,
    pub failover_wanted: bool,
    pub master_url: String,
    pub master: MultivariantPlaylist,
    pub video_variant: usize,
    pub wanted_variant: usize,
    pub forced_variant: Option<usize>,
    pub timeline: Timeline,
    pub latency: LatencyController,
    pub target_configured: Option<f64>,
    pub target_known: bool,
    pub estimator: BandwidthEstimator,
    pub clock_offset_ms: f64,
    pub start_pdt_ms: Option<f64>,
    pub started: bool,
    /// Where playback started (seconds); stalls count only once playback has moved past it.
    pub start_position: f64,
    /// When media was first buffered (monotonic ms).
    pub first_data_ms: Option<f64>,
    pub stopped: bool,
    pub ended_tracks: u32,
    pub tracks: u32,
    pub health: Health,
    pub last_edge_ms: Option<f64>,
    /// Seeks so far (`seekBack`, `goLive`): a track whose cursor saw fewer flushes its buffer and starts over.
    pub seeks: u32,
    /// Where the last seek went (wall-clock ms, DVR playlists); `None` at live.
    pub seek_pdt_ms: Option<f64>,
    /// The live Multivariant Playlist played before seeking back (`goLive` returns to it: a relay
    /// may have redirected the DVR playlist to the recording node).
    pub live_url: Option<String>,
    /// Tracks that have not flushed their SourceBuffer since the last seek: playback restarts once 0.
    pub pending_flush: u32,
    pub stats: Stats,
}

pub(crate) type Shared = Rc<RefCell<State>>;

/// Which SourceBuffer a track task feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The video variant (or the only track of a muxed / audio-only variant).
    Main,
    /// The audio rendition of the variant's audio group.
    Audio,
}

/// Sends `onair:NAME` as a CustomEvent on the video element with `detail`. Dispatch happens in a
/// later microtask, so listeners may call the player (its state is not borrowed by then).
pub(crate) fn emit(video: &HtmlVideoElement, name: &str, detail: &JsValue) {
    let (video, name, detail) = (video.clone(), format!("onair:{name}"), detail.clone());
    wasm_bindgen_futures::spawn_local(async move {
        let init = CustomEventInit::new();
        init.set_detail(&detail);
        if let Ok(ev) = CustomEvent::new_with_event_init_dict(&name, &init) {
            let _ = video.dispatch_event(&ev);
        }
    });
}

