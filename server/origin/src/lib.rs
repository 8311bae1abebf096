//! The LL-HLS origin: HTTP routes over the in-RAM [`onair_store::Store`].
//!
//! | route | serves |
//! |---|---|
//! | `GET /hls/{channel}/master.m3u8` | Multivariant Playlist |
//! | `GET /hls/{channel}/{rendition}/index.m3u8` | Media Playlist; `_HLS_msn`/`_HLS_part` block, `_HLS_skip=YES` gives a delta update |
//! | `GET /hls/{channel}/{rendition}/init.mp4` | init segment |
//! | `GET /hls/{channel}/{rendition}/part{id}.m4s` | Partial Segment; the hinted next part waits until written |
//! | `GET /hls/{channel}/{rendition}/seg{msn}.m4s` | complete segment (its parts back to back) |
//! | `GET /hls/{channel}/dvr.m3u8`, `/hls/{channel}/{rendition}/dvr.m3u8` | the same with the DVR window: the recorded segments before the RAM window ([`History`]), named as they were live; `seg{msn}.m4s` and `init{N}.mp4` are answered from the recording once they left RAM; a relay redirects them to its upstream |
//!
//! Responses carry Cache-Control per RFC 8216bis Appendix B, CORS for browsers
//! (`Access-Control-Allow-Origin: *`; `OPTIONS` answers a preflight), and gzip for playlists when
//! asked (a rendered Media Playlist is compressed once for all its requests). Media carries [`PRODUCED_AT`] and `Age` counted from it. Channels the
//! store does not hold are asked of the [`Upstream`] (a relay), when there is one. Metrics go
//! through the `metrics` facade.

mod history;
mod media;
mod playlists;
mod upstream;

pub use history::{History, Recorded, RecordedSegment, Run};
pub use media::{accepts_gzip, serve_file, FileRequest, PART_LOOKAHEAD};
pub use upstream::{Held, Unavailable, Upstream};

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use onair_hls::cache::{cache_control, Response as CacheKind};
use onair_store::Store;
use tokio_util::sync::CancellationToken;

/// Shared state of the origin routes: one reference-counted value (axum clones it per request).
#[derive(Debug, Clone)]
pub struct OriginState(Arc<Origin>);

/// What [`OriginState`] holds.
#[derive(Debug)]
pub struct Origin {
    /// The store the routes read from.
    pub store: Arc<Store>,
    /// Cancelled when the server shuts down: blocked and new playlist requests then get 503 (no
    /// EXT-X-ENDLIST: the broadcast did not end, this server is going away), so players fail over.
    pub shutdown: CancellationToken,
    /// Where channels this node does not ingest come from (a relay); `None` on a plain origin.
    pub upstream: Option<Arc<dyn Upstream>>,
    /// Content Steering for the Multivariant Playlists, in a cluster.
    pub steering: Option<Steering>,
    /// The recorded past of the channels ingested here, for the DVR playlists; `None`: no DVR.
    pub history: Option<Arc<dyn History>>,
    renders: playlists::Renders,
}

/// The playback token a request came with, as a request extension: a front layer that checked
/// the `/t/{token}` path prefix and stripped it leaves it here, and the Multivariant Playlist's
/// Steering Manifest URI carries it (`&token=`), because that URI leaves the token's path.
#[derive(Debug, Clone)]
pub struct PlaybackToken(pub String);

/// Content Steering (RFC 8216bis §4.4.6.6, §7) of this node's Multivariant Playlists: each names
/// the Steering Manifest `{server}{channel}?base={pathway}` and puts its variants in pathway
/// `pathway` (this node), which the manifest ranks among the other servers' pathways.
#[derive(Debug, Clone, PartialEq)]
pub struct Steering {
    /// Absolute URL prefix of the Steering Manifest, the channel name appended, e.g.
    /// `https://usher.example.com/api/v1/steering/`.
    pub server: String,
    /// This node's PATHWAY-ID (its node id).
    pub pathway: String,
}

impl OriginState {
    /// The routes' state over `store`; `steering` adds EXT-X-CONTENT-STEERING to the Multivariant
    /// Playlists.
    pub fn new(store: Arc<Store>, shutdown: CancellationToken, upstream: Option<Arc<dyn Upstream>>, steering: Option<Steering>) -> Self {
        OriginState(Arc::new(Origin { store, shutdown, upstream, steering, history: None, renders: playlists::Renders::default() }))
    }

    /// The same with the DVR playlists served from `history`.
    pub fn with_history(store: Arc<Store>, shutdown: CancellationToken, upstream: Option<Arc<dyn Upstream>>, steering: Option<Steering>, history: Arc<dyn History>) -> Self {
        OriginState(Arc::new(Origin { store, shutdown, upstream, steering, history: Some(history), renders: playlists::Renders::default() }))
    }
}

impl std::ops::Deref for OriginState {
    type Target = Origin;

    fn deref(&self) -> &Origin {
        &self.0
    }
}

/// Response header on every part and segment: the wall-clock time, in Unix milliseconds, at which
/// the origin produced it (its last part, for a segment). Relays copy it from their upstream, so
/// each tier's delay is measured against the origin.
pub const PRODUCED_AT: &str = "onair-produced-at";

/// The origin's routes under `/hls` (every answer with CORS, playlists gzipped when asked).
pub fn router(state: OriginState) -> Router {
    let route = |handler: MethodRouter<OriginState>| handler.options(preflight);
    Router::new()
        .route("/hls/{channel}/master.m3u8", route(get(playlists::multivariant)))
        .route("/hls/{channel}/dvr.m3u8", route(get(playlists::dvr_multivariant)))
        .route("/hls/{channel}/{rendition}/{file}", route(get(media::rendition_file)))
        .with_state(state)
}

/// Adds the CORS headers of every origin answer (the Fetch standard's CORS protocol): any page
/// may read playlists and media (they carry no credentials), and its headers (`Age`,
/// [`PRODUCED_AT`]).
pub(crate) fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
}

/// `OPTIONS` on an origin route: a CORS preflight, allowed for any origin, method GET and any
/// request header, cached by the browser for a day.
async fn preflight() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    cors(h);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    resp
}

/// Content type of playlists (RFC 8216bis §4).
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";

/// An error response (Cache-Control: the error lifetime for `kind`, `no-store` for a 5xx), with a short text body; counted in
/// `onair_http_errors_total{kind}`.
pub(crate) fn error(status: StatusCode, kind: CacheKind, td: u32, reason: &str, metric_kind: &'static str) -> Response {
    metrics::counter!("onair_http_errors_total", "kind" => metric_kind).increment(1);
    let cc = if status.is_server_error() { "no-store".to_string() } else { cache_control(kind, false, td) };
    error_with(status, &cc, reason, metric_kind)
}

pub(crate) fn error_with(status: StatusCode, cc: &str, reason: &str, metric_kind: &'static str) -> Response {
    tracing::debug!(%status, reason, kind = metric_kind, "request refused");
    let mut resp = (status, format!("{reason}\n")).into_response();
    if let Ok(v) = HeaderValue::from_str(cc) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    cors(resp.headers_mut());
    resp
}

/// The answer to a request for a channel the store does not hold and the upstream cannot give.
/// No cache may keep it: a relay's 404 for a channel it is still looking for may turn into a 200
/// a moment later, and a 503 says "this server, now".
pub(crate) fn unavailable(why: Unavailable) -> Response {
    let (status, metric_kind) = match why {
        Unavailable::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Unavailable::UpstreamDown => (StatusCode::SERVICE_UNAVAILABLE, "upstream_down"),
        Unavailable::BadUpstream => (StatusCode::BAD_GATEWAY, "bad_upstream"),
        Unavailable::Full => (StatusCode::SERVICE_UNAVAILABLE, "relay_full"),
    };
    metrics::counter!("onair_http_errors_total", "kind" => metric_kind).increment(1);
    error_with(status, "no-store", &why.to_string(), metric_kind)
}

/// A DVR request for a channel this node does not record: on a relay, a redirect (307, not
/// cached: the tree may re-parent) to the same resource on the channel's upstream, carrying the
/// viewer's `token`; elsewhere 404.
pub(crate) fn dvr_elsewhere(state: &OriginState, channel: &str, rest: &str, token: Option<&str>) -> Response {
    let target = if valid_name(channel) { state.upstream.as_ref().and_then(|up| up.upstream_url(channel, rest, token)) } else { None };
    match target.and_then(|t| HeaderValue::from_str(&t).ok()) {
        Some(location) => {
            metrics::counter!("onair_dvr_redirects_total").increment(1);
            let mut resp = (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response();
            cors(resp.headers_mut());
            resp
        }
        None => error(StatusCode::NOT_FOUND, CacheKind::Playlist, 2, "no DVR window for this channel here", "not_found"),
    }
}

/// True for channel and rendition names we serve: 1–64 of `A-Z a-z 0-9 _ -`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
