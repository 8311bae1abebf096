//! HTTP for the archive: `GET /api/v1/channels/{channel}/broadcasts` (JSON), and under the
//! origin's `/hls/` prefix — so the playback token policy and its `/t/{token}` form apply as to
//! live media — each broadcast's playlists and files:
//! - `/hls/{channel}/vod/{id}/master.m3u8`: Multivariant Playlist (BANDWIDTH measured from the
//!   recorded segments);
//! - `/hls/{channel}/vod/{id}/{rendition}.m3u8`: Media Playlist of byte ranges ([`crate::vod`]);
//! - `/hls/{channel}/vod/{id}/files/{rendition}/{file}.mp4`: a chunk file, with HTTP Range
//!   requests (RFC 9110 §14) and conditional requests, from tower-http's `ServeFile`.
//!
//! Caching: an ended broadcast's playlists for 60 s and files for a day (its bytes never change;
//! retention or a takedown removes them); a broadcast still recording is re-read every second.
//! Errors are never cached.

use std::path::PathBuf;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use onair_hls::{MultivariantPlaylist, RenditionEntry};
use onair_origin::{valid_name, PLAYLIST_CONTENT_TYPE};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::index::{BroadcastRow, Index};
use crate::vod::{bitrate, media_playlist, FileRef};

/// What the routes read: the index and the directory of chunk files.
#[derive(Clone)]
struct Vod(std::sync::Arc<(Index, PathBuf)>);

/// The archive's routes: `(api, media)`. The media routes (`/hls/…`) go where the live origin's
/// are, behind the same playback token check; the API is public like the channel list.
pub fn routers(index: Index, dir: PathBuf) -> (Router, Router) {
    let state = Vod(std::sync::Arc::new((index, dir)));
    let api = Router::new().route("/api/v1/channels/{channel}/broadcasts", get(list)).with_state(state.clone());
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
    /// URL of its Multivariant Playlist.
    playlist: String,
}

async fn list(State(vod): State<Vod>, Path(channel): Path<String>) -> Response {
    if !valid_name(&channel) {
        return refuse(StatusCode::NOT_FOUND, "no such channel");
    }
    let index = &vod.0 .0;
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
            playlist: format!("/hls/{}/vod/{}/master.m3u8", b.channel, b.id),
            duration_ms: b.last_ms - b.started_ms,
            state: if b.ended { "ended" } else { "recording" },
            id: b.id,
            channel: b.channel,
            started_ms: b.started_ms,
            renditions,
        });
    }
    ([(header::CACHE_CONTROL, "no-cache")], Json(out)).into_response()
}

async fn broadcast_of(index: &Index, channel: &str, id: &str) -> Result<BroadcastRow, Response> {
    if !valid_name(channel) || !valid_name(id) {
        return Err(refuse(StatusCode::NOT_FOUND, "no such broadcast"));
    }
    match index.broadcast(id).await {
        Ok(Some(b)) if b.channel == channel => Ok(b),
        Ok(_) => Err(refuse(StatusCode::NOT_FOUND, "no such broadcast")),
        Err(e) => Err(index_failed(e)),
    }
}

async fn playlist(State(vod): State<Vod>, Path((channel, id, name)): Path<(String, String, String)>) -> Response {
    let index = &vod.0 .0;
    let b = match broadcast_of(index, &channel, &id).await {
        Ok(b) => b,
        Err(r) => return r,
    };
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
    let (index, dir) = (&vod.0 .0, &vod.0 .1);
    let b = match broadcast_of(index, &channel, &id).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let named = valid_name(&rendition) && file.strip_suffix(".mp4").is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
    if !named {
        return refuse(StatusCode::NOT_FOUND, "no such file");
    }
    let path = dir.join(&channel).join(&id).join(&rendition).join(&file);
    let Ok(mut response) = ServeFile::new(path).oneshot(request).await.map(IntoResponse::into_response);
    if response.status().is_client_error() || response.status().is_server_error() {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else {
        metrics::counter!("onair_archive_served_bytes_total").increment(response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0));
        response.headers_mut().insert(header::CACHE_CONTROL, cache(b.ended, 86_400));
    }
    response
}
