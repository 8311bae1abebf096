//! Per-rendition resources: the Media Playlist, the init segment, parts and segments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::Extension;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use onair_hls::Directives;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use onair_hls::cache::{cache_control, Response as CacheKind};
use onair_store::Rendition;

use crate::{error, playlists, unavailable, valid_name, OriginState, PRODUCED_AT};

/// What a file name in a rendition's folder names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    /// The Media Playlist: `index.m3u8`, or `dvr.m3u8` with the DVR window (`dvr: true`).
    Playlist { dvr: bool },
    Init(u64),
    Part(u64),
    Segment(u64),
}

fn parse_resource(file: &str) -> Option<Resource> {
    let number = |s: &str| s.parse::<u64>().ok();
    match file {
        "index.m3u8" => Some(Resource::Playlist { dvr: false }),
        "dvr.m3u8" => Some(Resource::Playlist { dvr: true }),
        "init.mp4" => Some(Resource::Init(0)),
        _ if file.starts_with("init") => {
            file.strip_prefix("init")?.strip_suffix(".mp4")?.parse().ok().filter(|n| *n > 0).map(Resource::Init)
        }
        _ => {
            let stem = file.strip_suffix(".m4s")?;
            if let Some(n) = stem.strip_prefix("part") {
                number(n).map(Resource::Part)
            } else {
                stem.strip_prefix("seg").and_then(number).map(Resource::Segment)
            }
        }
    }
}

/// One request for a file of a rendition, `GET /hls/{channel}/{rendition}/{file}?{query}`, as the
/// route hands it over, and the node's hot path, which skips the router.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileRequest<'a> {
    /// Channel name (checked here: 1–64 of `A-Z a-z 0-9 _ -`).
    pub channel: &'a str,
    /// Rendition name (checked likewise).
    pub rendition: &'a str,
    /// File name: `index.m3u8`, `dvr.m3u8`, `init.mp4`, `init{N}.mp4`, `part{N}.m4s`, `seg{N}.m4s`.
    pub file: &'a str,
    /// The raw query without `?` (`_HLS_msn=…&_HLS_part=…&_HLS_skip=YES`, RFC 8216bis §6.2.5).
    pub query: Option<&'a str>,
    /// The client accepts gzip: playlists go compressed.
    pub gzip: bool,
    /// The checked playback token of a `/t/{token}` request (a DVR redirect carries it on).
    pub token: Option<&'a str>,
}

/// True when a request's `Accept-Encoding` header lists gzip (without `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip"))
            && !parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("q=0") || p.replace(' ', "").eq_ignore_ascii_case("q=0.0"))
    })
}

/// `GET /hls/{channel}/{rendition}/{file}` (the route).
pub(crate) async fn rendition_file(
    State(state): State<OriginState>,
    Path((channel, rendition, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    token: Option<Extension<crate::PlaybackToken>>,
) -> Response {
    let request = FileRequest {
        channel: &channel,
        rendition: &rendition,
        file: &file,
        query: query.as_deref(),
        gzip: accepts_gzip(&headers),
        token: token.as_ref().map(|t| t.0 .0.as_str()),
    };
    serve_file(&state, request).await
}

/// Answers `request`: the Media Playlist (blocking reload, delta updates, gzip when accepted),
/// an init segment, a Partial Segment (the hinted next one waits until written) or a segment;
/// on a relay, a rendition it does not hold yet is pulled first. Every answer carries CORS
/// (`Access-Control-Allow-Origin: *`) and Appendix B caching; errors are counted in
/// `onair_http_errors_total{kind}`.
pub async fn serve_file(state: &OriginState, request: FileRequest<'_>) -> Response {
    let FileRequest { channel, rendition, file, query, gzip, token } = request;
    let td = 2;
    let Some(resource) = parse_resource(file) else {
        return error(StatusCode::NOT_FOUND, CacheKind::Media, td, "no such resource", "not_found");
    };
    let pairs: Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> = query.map(|q| form_urlencoded::parse(q.as_bytes()).collect()).unwrap_or_default();
    let kind = match resource {
        Resource::Playlist { .. } if pairs.iter().any(|(k, _)| k == "_HLS_msn") => CacheKind::BlockingPlaylist,
        Resource::Playlist { .. } => CacheKind::Playlist,
        _ => CacheKind::Media,
    };
    if !(valid_name(channel) && valid_name(rendition)) {
        return error(StatusCode::NOT_FOUND, kind, td, "channel or rendition is not live", "not_found");
    }
    let dvr = resource == Resource::Playlist { dvr: true };
    if dvr && (state.history.is_none() || state.store.get(channel).is_none_or(|b| b.is_relayed())) {
        // The node that records the channel (its origin) serves its DVR window.
        let rest = match query {
            Some(q) => format!("{rendition}/dvr.m3u8?{q}"),
            None => format!("{rendition}/dvr.m3u8"),
        };
        return crate::dvr_elsewhere(state, channel, &rest, token);
    }
    // On a relay, an ended broadcast may have been followed by a new one upstream: ask again.
    let current = state.store.get(channel).filter(|b| !(b.is_ended() && state.upstream.is_some()));
    let held = current.and_then(|b| b.rendition(rendition).map(|r| (b, r)));
    let (broadcast, r) = match (held, &state.upstream) {
        (Some(held), upstream) => {
            if let Some(up) = upstream {
                up.touch(channel, rendition);
                metrics::counter!("onair_relay_requests_total", "outcome" => "held").increment(1);
            }
            held
        }
        (None, Some(up)) => {
            metrics::counter!("onair_relay_requests_total", "outcome" => "pulled").increment(1);
            match up.rendition(channel, rendition).await {
                Ok(pulled) => pulled,
                Err(why) => return unavailable(why),
            }
        }
        (None, None) => return error(StatusCode::NOT_FOUND, kind, td, "channel or rendition is not live", "not_found"),
    };
    match resource {
        Resource::Playlist { dvr } => {
            let directives = match Directives::from_query(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))) {
                Ok(d) => d,
                Err(e) => return error(StatusCode::BAD_REQUEST, CacheKind::Playlist, r.target_duration(), &e.to_string(), "bad_directive"),
            };
            playlists::media_playlist(state, broadcast, r, directives, dvr, gzip).await
        }
        Resource::Init(id) => match r.init_segment(id) {
            Some(init) => media_response(&r, vec![init], None),
            None => recorded(state, &broadcast, &r, crate::Recorded::Init(id)).await,
        },
        Resource::Part(id) => part(state, &r, id).await,
        Resource::Segment(msn) => match r.segment(msn) {
            Some(seg) => media_response(&r, seg.parts, Some(seg.produced_at)),
            None => recorded(state, &broadcast, &r, crate::Recorded::Segment(msn)).await,
        },
    }
}

/// A segment or init segment no longer in RAM, from the DVR window's recording (channels
/// ingested here only); 404 when it has none.
async fn recorded(state: &OriginState, broadcast: &onair_store::Broadcast, r: &Rendition, what: crate::Recorded) -> Response {
    let history = state.history.as_ref().filter(|_| !broadcast.is_relayed());
    let bytes = match history {
        Some(h) => h.media(broadcast.channel(), r.name(), what).await,
        None => None,
    };
    match bytes {
        Some(b) => {
            metrics::counter!("onair_dvr_media_bytes_total").increment(b.len() as u64);
            media_response(r, vec![b], None)
        }
        None => error(StatusCode::NOT_FOUND, CacheKind::Media, r.target_duration(), "segment not available", "not_found"),
    }
}

/// How many parts (a count of Partial Segments, not ms) past this node's next one a part request
/// may name and wait for, as for the Preload Hint (RFC 8216bis §4.4.5.3): a player that moved
/// here from a server a little ahead (the origin, a relay one tier up; the numbering is the same
/// everywhere) asks for that server's hint, which a relay may not have heard of yet. Further
/// ahead is a 404 at once, `no-store`.
pub const PART_LOOKAHEAD: u64 = 4;

/// Serves part `id`; if it is the hinted next part, or up to [`PART_LOOKAHEAD`] − 1 parts past
/// it, waits (at most 3 × TD) until it is written.
async fn part(state: &OriginState, r: &Rendition, id: u64) -> Response {
    let td = r.target_duration();
    if let Some(p) = r.part(id) {
        return media_response(r, vec![p.data], Some(p.produced_at));
    }
    let pos = r.position();
    if id < pos.next_part_id || pos.ended {
        return error(StatusCode::NOT_FOUND, CacheKind::Media, td, "part not available", "not_found");
    }
    if id >= pos.next_part_id + PART_LOOKAHEAD {
        // It may exist in a moment: no cache may keep this answer.
        return crate::error_with(StatusCode::NOT_FOUND, "no-store", "part not yet available", "not_found");
    }
    let mut rx = r.subscribe();
    let limit = Duration::from_secs(3 * u64::from(td));
    let started = std::time::Instant::now();
    let ready = tokio::select! {
        w = tokio::time::timeout(limit, rx.wait_for(|p| p.next_part_id > id || p.ended)) => w.is_ok_and(|p| p.is_some()),
        _ = state.shutdown.cancelled() => {
            return error(StatusCode::SERVICE_UNAVAILABLE, CacheKind::Media, td, "server is shutting down", "shutting_down");
        }
    };
    metrics::histogram!("onair_hinted_part_wait_seconds").record(started.elapsed().as_secs_f64());
    match (ready, r.part(id)) {
        (true, Some(p)) => media_response(r, vec![p.data], Some(p.produced_at)),
        _ => error(StatusCode::NOT_FOUND, CacheKind::Media, td, "hinted part was not produced", "not_found"),
    }
}

/// A media response from shared chunks (no copy): Content-Type by track kind, Content-Length,
/// immutable caching for 6 × TD, and for parts and segments [`PRODUCED_AT`] and `Age` (whole
/// seconds since the origin produced it, RFC 9111 §5.1, so that a CDN in front of a relay ages it
/// from the origin). Counted in `onair_http_media_bytes_total`.
fn media_response(r: &Rendition, chunks: Vec<Bytes>, produced_at: Option<SystemTime>) -> Response {
    let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    metrics::counter!("onair_http_media_bytes_total").increment(len);
    let body = if chunks.len() == 1 {
        Body::from(chunks.into_iter().next().unwrap_or_default())
    } else {
        Body::from_stream(futures::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>)))
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    let ct = if r.is_video() { "video/mp4" } else { "audio/mp4" };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    crate::cors(h);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&cache_control(CacheKind::Media, true, r.target_duration())) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Some(at) = produced_at {
        let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        h.insert(PRODUCED_AT, HeaderValue::from(ms));
        let age = SystemTime::now().duration_since(at).map_or(0, |d| d.as_secs());
        h.insert(header::AGE, HeaderValue::from(age));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_unless_refused() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).expect("value"));
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br") && h("br;q=1.0, GZIP;q=0.5") && h("x-gzip"));
        assert!(!h("identity") && !h("gzip;q=0") && !h("gzip; q=0.0") && !h("gzipx") && !accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn resource_names() {
        assert_eq!(parse_resource("index.m3u8"), Some(Resource::Playlist { dvr: false }));
        assert_eq!(parse_resource("dvr.m3u8"), Some(Resource::Playlist { dvr: true }));
        assert_eq!(parse_resource("init.mp4"), Some(Resource::Init(0)));
        assert_eq!(parse_resource("init2.mp4"), Some(Resource::Init(2)));
        assert_eq!(parse_resource("init0.mp4"), None);
        assert_eq!(parse_resource("part17.m4s"), Some(Resource::Part(17)));
        assert_eq!(parse_resource("seg3.m4s"), Some(Resource::Segment(3)));
        assert_eq!(parse_resource("seg.m4s"), None);
        assert_eq!(parse_resource("part-1.m4s"), None);
        assert_eq!(parse_resource("../etc/passwd"), None);
    }
}
