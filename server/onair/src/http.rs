//! The HTTP front: the LL-HLS origin plus `/metrics`, `/healthz`, `/api/v1/channels` and a plain
//! directory page at `/`.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use onair_origin::OriginState;
use onair_store::Store;

/// All routes of `onair serve`.
pub fn app(store: Arc<Store>) -> Router {
    let front = Router::new()
        .route("/", get(directory_page))
        .route("/api/v1/channels", get(channels_json))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .with_state(store.clone());
    front.merge(onair_origin::router(OriginState { store }))
}

async fn metrics_text() -> Response {
    match crate::observability::prometheus() {
        Some(h) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n").into_response(),
    }
}

/// One live channel in `/api/v1/channels`.
#[derive(Debug, serde::Serialize)]
struct LiveChannel {
    channel: String,
    /// `live`, or `reconnecting` while a dropped publisher may still come back.
    state: &'static str,
    started_at_ms: u64,
    renditions: Vec<String>,
    playlist: String,
}

async fn channels_json(State(store): State<Arc<Store>>) -> Json<Vec<LiveChannel>> {
    Json(live(&store))
}

fn live(store: &Store) -> Vec<LiveChannel> {
    store
        .list()
        .into_iter()
        .filter(|b| b.live || b.reconnecting)
        .map(|b| LiveChannel {
            state: if b.live { "live" } else { "reconnecting" },
            playlist: format!("/hls/{}/master.m3u8", b.channel),
            started_at_ms: b.started.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            renditions: b.renditions,
            channel: b.channel,
        })
        .collect()
}

async fn directory_page(State(store): State<Arc<Store>>) -> Html<String> {
    let mut rows = String::new();
    for c in live(&store) {
        // Channel names are restricted to [a-z0-9_-], so they need no escaping.
        rows.push_str(&format!(
            "<li><b>{0}</b> ({3}): <a href=\"{1}\">{1}</a> ({2})</li>\n",
            c.channel,
            c.playlist,
            c.renditions.join(", "),
            c.state
        ));
    }
    if rows.is_empty() {
        rows.push_str("<li>No channel is live. Publish with OBS or ffmpeg to rtmp://HOST:1935/live/STREAM_KEY.</li>\n");
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>OnAir</title></head><body>\
         <h1>OnAir: live channels</h1><ul>\n{rows}</ul>\
         <p>Open a playlist URL in ffplay, VLC, Safari or any hls.js player.</p></body></html>\n"
    ))
}
