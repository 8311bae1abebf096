//! HTTP for the archive: `GET /api/v1/channels/{channel}/broadcasts` (JSON), and under the
//! origin's `/hls/` prefix — so the playback token policy and its `/t/{token}` form apply as to
//! live media — each broadcast's playlists and files:
//! - `/hls/{channel}/vod/{id}/master.m3u8`: Multivariant Playlist (BANDWIDTH measured from the
//!   recorded segments);
//! - `/hls/{channel}/vod/{id}/{rendition}.m3u8`: Media Playlist of byte ranges ([`crate::vod`]);
//! - `/hls/{channel}/vod/{id}/download.mp4`: one progressive MP4 of the best video and the audio
//!   (clips and ended broadcasts up to 512 MiB), with Range requests;
//! - `/hls/{channel}/vod/{id}/files/{rendition}/{file}.mp4`: a chunk file, with HTTP Range
//!   requests (RFC 9110 §14) and conditional requests, from tower-http's `ServeFile`.
//!
//!
//! Clips: `POST /api/v1/clips` (`{"channel", "last_s"}` or `{"channel", "start_ms", "duration_s"}`,
//! ≤ 90 s; rate limited per client address, `archive.clips_per_minute`) answers 202 at once with
//! the clip's id and URLs; `GET /api/v1/clips/{id}` gives its status (`pending` until its range is
//! recorded, then `ready`, or `failed` with the reason); `GET /api/v1/channels/{channel}/clips` lists
//! them. A ready clip plays from `/hls/{channel}/vod/{clip id}/master.m3u8` like a broadcast.
//!
//! Caching: an ended broadcast's playlists for 60 s and files for a day (its bytes never change;
//! retention or a takedown removes them); a broadcast still recording is re-read every second.
//! Errors are never cached.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use axum::{Json, Router};
use onair_hls::{MultivariantPlaylist, RenditionEntry};
use onair_origin::{valid_name, PLAYLIST_CONTENT_TYPE};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::clips::{ClipError, ClipRange, CLIPS_PREFIX};
use crate::objects::Objects;
use crate::index::{ClipRow, ClipStatus, Index};
use crate::vod::{bitrate, media_playlist, FileRef};

/// The client's address, as the front door determined it (behind trusted proxies, from
/// `X-Forwarded-For`): a request extension the composition root adds; loopback without it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The path prefix a channel's playlist URLs need under the playback token policy
/// (`/t/{token}` for a fresh token), or `None` when media is public.
pub type PlaylistPrefix = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

struct VodInner {
    index: Index,
    prefix: Option<PlaylistPrefix>,
    dir: PathBuf,
    objects: Option<Objects>,
    /// Clip requests per client address.
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
}

/// What the routes read: the index, the directory of chunk files, the clip rate limiter.
#[derive(Clone)]
struct Vod(std::sync::Arc<VodInner>);

/// The archive's routes: `(api, media)`. The media routes (`/hls/…`) go where the live origin's
/// are, behind the same playback token check; the API is public like the channel list.
/// `clips_per_minute`: clip requests per client address and minute (a burst of as many).
/// `objects`: where uploaded files are read from when their local copy is gone. `prefix`: with
/// playback tokens required, the token path prefix the JSON's playlist URLs get.
pub fn routers(index: Index, dir: PathBuf, objects: Option<Objects>, clips_per_minute: u32, prefix: Option<PlaylistPrefix>) -> (Router, Router) {
    let rate = NonZeroU32::new(clips_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    let limiter = governor::RateLimiter::keyed(governor::Quota::per_minute(rate));
    let state = Vod(std::sync::Arc::new(VodInner { index, prefix, dir, objects, limiter }));
    let api = Router::new()
        .route("/api/v1/channels/{channel}/broadcasts", get(list))
        .route("/api/v1/channels/{channel}/clips", get(list_clips))
        .route("/api/v1/clips", axum::routing::post(create_clip))
        .route("/api/v1/clips/{id}", get(clip_status))
        .with_state(state.clone());
    let media = Router::new()
        .route("/hls/{channel}/vod/{id}/{name}", get(playlist))
        .route("/hls/{channel}/vod/{id}/files/{rendition}/{file}", get(file))
        .with_state(state);
    (api, media)
}

fn refuse(status: StatusCode, why: &str) -> Response {
    metrics::counter!("onair_http_errors_total", "kind" => if status.is_server_error() { "archive" } else { "not_found" }).increment(1);
    (status, [(header::CACHE_CONTROL, "no-store")], format!("{why}\n")).into_response()
}

fn index_failed(e: crate::index::IndexError) -> Response {
    tracing::error!(error = %e, "archive index read failed");
    refuse(StatusCode::SERVICE_UNAVAILABLE, "archive index unavailable")
}

fn cache(ended: bool, long_s: u32) -> HeaderValue {
    let v = if ended { format!("public, max-age={long_s}") } else { "public, max-age=1".into() };
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("no-cache"))
}

/// A past broadcast in the JSON list.
#[derive(Debug, serde::Serialize)]
struct Listed {
    id: String,
    channel: String,
    started_ms: i64,
    duration_ms: i64,
    /// `recording` or `ended`.
    state: &'static str,
    renditions: Vec<String>,
    /// Peak concurrent viewers while it was live.
    peak_viewers: i64,
    /// URL of its Multivariant Playlist.
    playlist: String,
}

async fn list(State(vod): State<Vod>, Path(channel): Path<String>) -> Response {
    if !valid_name(&channel) {
        return refuse(StatusCode::NOT_FOUND, "no such channel");
    }
    let index = &vod.0.index;
    let rows = match index.broadcasts(&channel).await {
        Ok(r) => r,
        Err(e) => return index_failed(e),
    };
    let mut out = Vec::with_capacity(rows.len());
    for b in rows {
        let renditions = match index.renditions(&b.id).await {
            Ok(r) => r.into_iter().map(|r| r.name).collect(),
            Err(e) => return index_failed(e),
        };
        out.push(Listed {
            playlist: vod.playlist(&b.channel, &b.id),
            duration_ms: b.last_ms - b.started_ms,
            state: if b.ended { "ended" } else { "recording" },
            id: b.id,
            channel: b.channel,
            started_ms: b.started_ms,
            renditions,
            peak_viewers: b.peak_viewers,
        });
    }
    ([(header::CACHE_CONTROL, "no-cache")], Json(out)).into_response()
}

/// A recorded broadcast or a ready clip, as the VOD routes serve it.
struct Recorded {
    /// No more media will come (an ended broadcast, a clip).
    ended: bool,
    /// Its files' paths start with this (`.clips/` for a clip).
    prefix: &'static str,
    /// A clip's requested start, ms since the Unix epoch (its media starts at the key frame before).
    start_ms: Option<i64>,
}

async fn recorded(vod: &Vod, channel: &str, id: &str) -> Result<Recorded, Response> {
    if !valid_name(channel) || !valid_name(id) {
        return Err(refuse(StatusCode::NOT_FOUND, "no such broadcast"));
    }
    let index = &vod.0.index;
    match index.broadcast(id).await {
        Ok(Some(b)) if b.channel == channel => return Ok(Recorded { ended: b.ended, prefix: "", start_ms: None }),
        Ok(Some(_)) => return Err(refuse(StatusCode::NOT_FOUND, "no such broadcast")),
        Ok(None) => {}
        Err(e) => return Err(index_failed(e)),
    }
    match index.clip(id).await {
        Ok(Some(c)) if c.channel == channel && c.status == ClipStatus::Ready => Ok(Recorded { ended: true, prefix: CLIPS_PREFIX, start_ms: Some(c.start_ms) }),
        Ok(Some(c)) if c.channel == channel && c.status == ClipStatus::Pending => Err(refuse(StatusCode::NOT_FOUND, "clip not ready yet")),
        Ok(_) => Err(refuse(StatusCode::NOT_FOUND, "no such broadcast")),
        Err(e) => Err(index_failed(e)),
    }
}

/// A clip in the API.
#[derive(Debug, serde::Serialize)]
struct ClipView {
    #[serde(flatten)]
    clip: ClipRow,
    /// Its Multivariant Playlist (playable once `status` is `ready`).
    playlist: String,
}

impl Vod {
    /// URL path of the Multivariant Playlist of broadcast or clip `id` of `channel`, with the
    /// token prefix when playback tokens are required.
    fn playlist(&self, channel: &str, id: &str) -> String {
        let prefix = self.0.prefix.as_ref().and_then(|p| p(channel)).unwrap_or_default();
        format!("{prefix}/hls/{channel}/vod/{id}/master.m3u8")
    }

    fn clip_view(&self, clip: ClipRow) -> ClipView {
        ClipView { playlist: self.playlist(&clip.channel, &clip.id), clip }
    }
}

/// `POST /api/v1/clips`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClipAsk {
    channel: String,
    /// The last this many seconds of the live broadcast.
    last_s: Option<f64>,
    /// Or: from this wall-clock time (ms since the Unix epoch, as PROGRAM-DATE-TIME) ...
    start_ms: Option<i64>,
    /// ... for this many seconds.
    duration_s: Option<f64>,
}

async fn create_clip(State(vod): State<Vod>, client: Option<axum::Extension<ClientIp>>, ask: Result<Json<ClipAsk>, axum::extract::rejection::JsonRejection>) -> Response {
    let Ok(Json(ask)) = ask else { return refuse(StatusCode::BAD_REQUEST, "expected {\"channel\", \"last_s\"} or {\"channel\", \"start_ms\", \"duration_s\"}") };
    let ip = client.map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0 .0);
    if vod.0.limiter.check_key(&ip).is_err() {
        metrics::counter!("onair_archive_clips_total", "event" => "rate_limited").increment(1);
        return refuse(StatusCode::TOO_MANY_REQUESTS, "too many clips from this address; try again in a minute");
    }
    if !valid_name(&ask.channel) {
        return refuse(StatusCode::NOT_FOUND, "no such channel");
    }
    let ms = |s: f64| if s.is_finite() { (s * 1000.0).round() as i64 } else { 0 };
    let range = match (ask.last_s, ask.start_ms, ask.duration_s) {
        (Some(last), None, None) => ClipRange::Last { ms: ms(last) },
        (None, Some(start_ms), Some(d)) => ClipRange::At { start_ms, ms: ms(d) },
        _ => return refuse(StatusCode::BAD_REQUEST, "give either last_s, or start_ms and duration_s"),
    };
    match crate::clips::create(&vod.0.index, &ask.channel, range).await {
        Ok(clip) => (StatusCode::ACCEPTED, [(header::CACHE_CONTROL, "no-store")], Json(vod.clip_view(clip))).into_response(),
        Err(e @ ClipError::Length) => refuse(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e @ ClipError::NoBroadcast(_)) => refuse(StatusCode::NOT_FOUND, &e.to_string()),
        Err(ClipError::Index(e)) => index_failed(e),
    }
}

async fn clip_status(State(vod): State<Vod>, Path(id): Path<String>) -> Response {
    match vod.0.index.clip(&id).await {
        Ok(Some(c)) => ([(header::CACHE_CONTROL, "no-cache")], Json(vod.clip_view(c))).into_response(),
        Ok(None) => refuse(StatusCode::NOT_FOUND, "no such clip"),
        Err(e) => index_failed(e),
    }
}

async fn list_clips(State(vod): State<Vod>, Path(channel): Path<String>) -> Response {
    match vod.0.index.clips(&channel).await {
        Ok(c) => ([(header::CACHE_CONTROL, "no-cache")], Json(c.into_iter().map(|c| vod.clip_view(c)).collect::<Vec<_>>())).into_response(),
        Err(e) => index_failed(e),
    }
}

async fn playlist(State(vod): State<Vod>, Path((channel, id, name)): Path<(String, String, String)>, headers: axum::http::HeaderMap) -> Response {
    let index = &vod.0.index;
    let b = match recorded(&vod, &channel, &id).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if name == "download.mp4" {
        return download(&vod, &channel, &id, &b, headers.get(header::RANGE)).await;
    }
    let text = if name == "master.m3u8" {
        let renditions = match index.renditions(&id).await {
            Ok(r) => r,
            Err(e) => return index_failed(e),
        };
        let mut entries = Vec::new();
        for r in renditions {
            let segments = match index.segments(&id, &r.name).await {
                Ok(s) => s,
                Err(e) => return index_failed(e),
            };
            if segments.is_empty() {
                continue;
            }
            let (peak, average) = bitrate(&segments);
            entries.push(RenditionEntry {
                uri: format!("{}.m3u8", r.name),
                name: r.name,
                is_video: r.is_video,
                codec: r.codec,
                resolution: r.resolution,
                frame_rate: r.frame_rate,
                channels: r.channels,
                peak,
                average,
            });
        }
        if entries.is_empty() {
            return refuse(StatusCode::NOT_FOUND, "nothing recorded yet");
        }
        MultivariantPlaylist::from_renditions(&entries).render()
    } else {
        let Some(rendition) = name.strip_suffix(".m3u8").filter(|r| valid_name(r)) else { return refuse(StatusCode::NOT_FOUND, "no such playlist") };
        let segments = match index.segments(&id, rendition).await {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return refuse(StatusCode::NOT_FOUND, "no such rendition"),
            Err(e) => return index_failed(e),
        };
        let mut files = std::collections::HashMap::new();
        for s in &segments {
            if files.contains_key(&s.path) {
                continue;
            }
            match index.init_len(&s.path).await {
                Ok(l) => files.insert(s.path.clone(), l),
                Err(e) => return index_failed(e),
            };
        }
        media_playlist(&segments, b.ended, |path| {
            let init_len = (*files.get(path)?)?;
            let base = path.rsplit('/').next()?;
            Some(FileRef { path: path.into(), uri: format!("files/{rendition}/{base}"), init_len })
        })
    };
    metrics::counter!("onair_playlist_requests_total", "kind" => "vod").increment(1);
    ([(header::CONTENT_TYPE, HeaderValue::from_static(PLAYLIST_CONTENT_TYPE)), (header::CACHE_CONTROL, cache(b.ended, 60))], text).into_response()
}

async fn file(State(vod): State<Vod>, Path((channel, id, rendition, file)): Path<(String, String, String, String)>, request: Request) -> Response {
    let b = match recorded(&vod, &channel, &id).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let named = valid_name(&rendition) && file.strip_suffix(".mp4").is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
    if !named {
        return refuse(StatusCode::NOT_FOUND, "no such file");
    }
    let rel = format!("{}{channel}/{id}/{rendition}/{file}", b.prefix);
    let local = vod.0.dir.join(&rel);
    let mut response = if tokio::fs::try_exists(&local).await.unwrap_or(false) {
        let Ok(r) = ServeFile::new(local).oneshot(request).await.map(IntoResponse::into_response);
        r
    } else {
        match (&vod.0.objects, vod.0.index.uploaded(&rel).await) {
            (Some(objects), Ok(Some(true))) => from_objects(objects, &rel, request.headers().get(header::RANGE)).await,
            (_, Err(e)) => return index_failed(e),
            _ => return refuse(StatusCode::NOT_FOUND, "no such file"),
        }
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else {
        metrics::counter!("onair_archive_served_bytes_total").increment(response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0));
        response.headers_mut().insert(header::CACHE_CONTROL, cache(b.ended, 86_400));
    }
    response
}

/// Largest download, bytes (a 90 s clip of a 6 Mbit/s source is ~70 MB).
const MAX_DOWNLOAD: u64 = 512 << 20;

/// `…/download.mp4`: the highest-bandwidth video rendition and the first audio rendition in one
/// progressive MP4 (`moov` first, sample tables, one `mdat`: [`onair_cmaf::progressive`]) that any
/// player or editor opens; for clips and ended broadcasts up to [`MAX_DOWNLOAD`]. Answers `range`
/// requests (a `<video>` element seeking in it).
async fn download(vod: &Vod, channel: &str, id: &str, b: &Recorded, range: Option<&HeaderValue>) -> Response {
    if !b.ended {
        return refuse(StatusCode::CONFLICT, "still recording: download it once it ended");
    }
    let index = &vod.0.index;
    let renditions = match index.renditions(id).await {
        Ok(r) => r,
        Err(e) => return index_failed(e),
    };
    let mut video: Option<(u64, Vec<crate::index::SegmentRow>)> = None;
    let mut audio: Option<Vec<crate::index::SegmentRow>> = None;
    for r in renditions {
        let segments = match index.segments(id, &r.name).await {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => continue,
            Err(e) => return index_failed(e),
        };
        if r.is_video {
            let peak = bitrate(&segments).0;
            if video.as_ref().is_none_or(|(p, _)| peak > *p) {
                video = Some((peak, segments));
            }
        } else if audio.is_none() {
            audio = Some(segments);
        }
    }
    let chosen: Vec<Vec<crate::index::SegmentRow>> = video.map(|(_, s)| s).into_iter().chain(audio).collect();
    let total: u64 = chosen.iter().flatten().map(|s| s.length).sum();
    if chosen.is_empty() {
        return refuse(StatusCode::NOT_FOUND, "nothing recorded");
    }
    if total > MAX_DOWNLOAD {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "too long to download as one file: play it, or clip a part of it");
    }
    let mut tracks = Vec::new();
    for segments in &chosen {
        let first = &segments[0].path;
        if segments.iter().any(|s| s.path != *first) {
            return refuse(StatusCode::CONFLICT, "it spans several chunk files (an encoder change): play it instead");
        }
        let init_len = match index.init_len(first).await {
            Ok(Some(l)) => l,
            Ok(None) => return refuse(StatusCode::NOT_FOUND, "no such file"),
            Err(e) => return index_failed(e),
        };
        let read = |r: std::ops::Range<u64>| crate::media::read_range(&vod.0.dir, vod.0.objects.as_ref(), first, r);
        let Ok(init) = read(0..init_len).await else { return refuse(StatusCode::BAD_GATEWAY, "archived media unavailable") };
        let mut media = Vec::new();
        for s in segments {
            let Ok(bytes) = read(s.offset..s.offset + s.length).await else { return refuse(StatusCode::BAD_GATEWAY, "archived media unavailable") };
            media.push((s.pdt_ms as f64 / 1000.0, bytes));
        }
        tracks.push(onair_cmaf::progressive::TrackMedia { init, media });
    }
    // A clip's download shows from the exact time asked (an edit list over the frames before it).
    let (head, payload) = match onair_cmaf::progressive::progressive(&tracks, b.start_ms.map(|ms| ms as f64 / 1000.0)) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(channel, id, error = %e, "cannot build the download");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot build the download");
        }
    };
    let mut file = Vec::with_capacity(head.len() + payload.iter().map(Bytes::len).sum::<usize>());
    file.extend_from_slice(&head);
    payload.iter().for_each(|p| file.extend_from_slice(p));
    let size = file.len() as u64;
    let (status, r) = match byte_range(range, size) {
        None => (StatusCode::OK, 0..size),
        Some(Some(r)) => (StatusCode::PARTIAL_CONTENT, r),
        Some(None) => return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))]).into_response(),
    };
    if status == StatusCode::OK {
        metrics::counter!("onair_archive_downloads_total").increment(1);
    }
    let disposition = format!("attachment; filename=\"{channel}-{id}.mp4\"");
    let mut resp = (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
            (header::CACHE_CONTROL, cache(true, 86_400)),
            (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment"))),
        ],
        Bytes::from(file).slice(r.start as usize..r.end as usize),
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1))) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// A single `bytes=FIRST-[LAST]` range (RFC 9110 §14.1.2) against a `size`-byte object, as
/// `first..last+1`; `None` for no header, `Some(None)` for one this cannot satisfy (416).
fn byte_range(header: Option<&HeaderValue>, size: u64) -> Option<Option<std::ops::Range<u64>>> {
    let spec = header?.to_str().ok().and_then(|v| v.strip_prefix("bytes="));
    let Some((first, last)) = spec.and_then(|s| s.split_once('-')) else { return Some(None) };
    let range = match (first.trim().parse::<u64>(), last.trim()) {
        (Ok(f), "") => Some(f..size),
        (Ok(f), l) => l.parse::<u64>().ok().map(|l| f..(l + 1).min(size)),
        // A suffix range: the last N bytes.
        (Err(_), l) if first.trim().is_empty() => l.parse::<u64>().ok().map(|n| size.saturating_sub(n)..size),
        _ => None,
    };
    Some(range.filter(|r| r.start < r.end))
}

/// Serves object `rel` (or its requested range) from object storage.
async fn from_objects(objects: &Objects, rel: &str, range: Option<&HeaderValue>) -> Response {
    let size = match objects.size(rel).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = rel, error = %e, "archived object unavailable");
            return refuse(StatusCode::BAD_GATEWAY, "archived media unavailable");
        }
    };
    let (status, r) = match byte_range(range, size) {
        None => (StatusCode::OK, 0..size),
        Some(Some(r)) => (StatusCode::PARTIAL_CONTENT, r),
        Some(None) => {
            return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))]).into_response();
        }
    };
    match objects.get_range(rel, r.clone()).await {
        Ok(bytes) => {
            let mut resp = (status, [(header::CONTENT_TYPE, "video/mp4"), (header::ACCEPT_RANGES, "bytes")], bytes).into_response();
            if status == StatusCode::PARTIAL_CONTENT {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1)) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            resp
        }
        Err(e) => {
            tracing::warn!(path = rel, error = %e, "archived object read failed");
            refuse(StatusCode::BAD_GATEWAY, "archived media unavailable")
        }
    }
}
