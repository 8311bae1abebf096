//! The HTTP front: the LL-HLS origin, the web pages (`/`, `/watch/{channel}`), the player files
//! (`/player/`), the JSON API (`/api/v1/channels`, `/api/v1/playback/{channel}`, `/api/v1/time`),
//! `/metrics` and `/healthz`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use onair_origin::{OriginState, Upstream};
use onair_relay::Relay;
use onair_store::Store;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tokio_util::sync::CancellationToken;
use std::time::Duration;

use crate::config::PlaybackConfig;
use crate::playback::Signer;

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const WATCH_HTML: &str = include_str!("../../../web/watch.html");

/// What the pages and the playback API need besides the store.
#[derive(Clone)]
pub struct Web {
    /// Playback API settings (public URL, peers, tokens).
    pub playback: PlaybackConfig,
    /// Signs and checks playback tokens.
    pub signer: Signer,
    /// Directory served at `/player/` (the `wasm-pack` output).
    pub player_dir: PathBuf,
    /// Time to answer a page, API, metrics or player-file request (408 after it).
    pub request_timeout: Duration,
    /// Cancelled at shutdown: playlist requests get 503.
    pub shutdown: CancellationToken,
    /// The relay, on a node with upstreams: channels not ingested here come from it.
    pub relay: Option<Relay>,
}

#[derive(Clone)]
struct AppState {
    store: Arc<Store>,
    web: Web,
}

/// All routes of `onair serve`.
pub fn app(store: Arc<Store>, web: Web) -> Router {
    let state = AppState { store: store.clone(), web: web.clone() };
    let api = Router::new()
        .route("/api/v1/channels", get(channels_json))
        .route("/api/v1/playback/{channel}", get(playback_json))
        .route("/api/v1/time", get(time_json))
        .layer(CorsLayer::permissive());
    let front = Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/watch/{channel}", get(watch_page))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .merge(api)
        .nest_service("/player", ServiceBuilder::new().layer(CompressionLayer::new()).service(ServeDir::new(&web.player_dir)))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, web.request_timeout))
        .with_state(state.clone());
    // The origin's blocking requests bound themselves (3 × target duration).
    let origin = onair_origin::router(OriginState::new(store, web.shutdown.clone(), web.relay.clone().map(|r| Arc::new(r) as Arc<dyn Upstream>)))
        .layer(middleware::from_fn_with_state(state, require_token));
    front.merge(origin)
}

async fn metrics_text() -> Response {
    match crate::observability::prometheus() {
        Some(h) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n").into_response(),
    }
}

/// With `playback.require_token`, a Multivariant Playlist request needs `?token=` from the
/// playback API (403 otherwise). Media Playlists, parts and segments stay open so that CDNs
/// can cache them under one key.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.web.playback.require_token {
        let path = request.uri().path();
        if let Some(channel) = path.strip_prefix("/hls/").and_then(|p| p.strip_suffix("/master.m3u8")) {
            let token = request.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
            if let Err(e) = state.web.signer.verify(channel, token, SystemTime::now()) {
                tracing::info!(channel, error = %e, "playlist request refused");
                metrics::counter!("onair_errors_total", "kind" => "playback_token").increment(1);
                return (StatusCode::FORBIDDEN, format!("{e}\n")).into_response();
            }
        }
    }
    next.run(request).await
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
    watch: String,
}

/// The channels live here, and on a relay also those its upstreams list (relayed on demand).
async fn channels_json(State(state): State<AppState>) -> Json<Vec<LiveChannel>> {
    let mut channels = live(&state.store);
    if let Some(relay) = &state.web.relay {
        for c in relay.upstream_directory().await {
            if !channels.iter().any(|l| l.channel == c.channel) {
                channels.push(LiveChannel {
                    state: if c.is_live() { "live" } else { "reconnecting" },
                    playlist: format!("/hls/{}/master.m3u8", c.channel),
                    watch: format!("/watch/{}", c.channel),
                    started_at_ms: c.started_at_ms,
                    renditions: c.renditions,
                    channel: c.channel,
                });
            }
        }
        channels.sort_by(|a, b| a.channel.cmp(&b.channel));
    }
    Json(channels)
}

fn live(store: &Store) -> Vec<LiveChannel> {
    store
        .list()
        .into_iter()
        .filter(|b| b.live || b.reconnecting)
        .map(|b| LiveChannel {
            state: if b.live { "live" } else { "reconnecting" },
            playlist: format!("/hls/{}/master.m3u8", b.channel),
            watch: format!("/watch/{}", b.channel),
            started_at_ms: b.started.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            renditions: b.renditions,
            channel: b.channel,
        })
        .collect()
}

/// `GET /api/v1/playback/{channel}`: where a player may fetch the channel, best guess first.
#[derive(Debug, serde::Serialize)]
struct Playback {
    channel: String,
    /// Base URLs; the player appends `/hls/{channel}/master.m3u8?token=…`.
    candidates: Vec<Candidate>,
    /// Playback token (see `playback.rs`), valid on this server and on peers sharing the secret.
    token: String,
    /// Token expiry, Unix ms.
    expires_at_ms: u64,
}

#[derive(Debug, serde::Serialize)]
struct Candidate {
    base_url: String,
}

async fn playback_json(State(state): State<AppState>, Path(channel): Path<String>, headers: HeaderMap) -> Response {
    let mut live = state.store.get(&channel).is_some_and(|b| !b.renditions().is_empty() && !b.is_ended());
    if !live && onair_origin::valid_name(&channel) {
        if let Some(relay) = &state.web.relay {
            live = relay.multivariant(&channel).await.is_ok();
        }
    }
    if !live {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "channel is not live", "channel": channel}))).into_response();
    }
    let this = state.web.playback.public_url.clone().or_else(|| {
        let host = headers.get(header::HOST)?.to_str().ok()?;
        Some(format!("http://{host}"))
    });
    let mut candidates: Vec<Candidate> = this.into_iter().map(|base_url| Candidate { base_url }).collect();
    for peer in &state.web.playback.peers {
        let base_url = peer.trim_end_matches('/').to_string();
        if !candidates.iter().any(|c| c.base_url == base_url) {
            candidates.push(Candidate { base_url });
        }
    }
    let (token, expires) = state.web.signer.sign(&channel, SystemTime::now());
    metrics::counter!("onair_playback_requests_total").increment(1);
    Json(Playback { channel, candidates, token, expires_at_ms: expires * 1000 }).into_response()
}

/// `GET /api/v1/time`: the server's clock, `{"now_ms": Unix ms}`, for players' latency measurement.
async fn time_json() -> Response {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
    ([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "now_ms": now }))).into_response()
}

async fn watch_page(Path(channel): Path<String>) -> Response {
    if !onair_origin::valid_name(&channel) {
        return (StatusCode::NOT_FOUND, "no such channel\n").into_response();
    }
    // Channel names are [a-z0-9_-]: safe to place in the page as they are.
    Html(WATCH_HTML.replace("{{channel}}", &channel)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use onair_store::TimelineConfig;
    use tower::ServiceExt;

    fn web(require_token: bool) -> Web {
        Web {
            playback: PlaybackConfig { require_token, peers: vec!["http://peer:8080/".into()], ..PlaybackConfig::default() },
            signer: Signer::new(Some("k"), Duration::from_secs(60)),
            player_dir: PathBuf::from("/nonexistent"),
            request_timeout: Duration::from_secs(10),
            shutdown: CancellationToken::new(),
            relay: None,
        }
    }

    async fn status(app: &Router, uri: &str) -> StatusCode {
        app.clone().oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("response").status()
    }

    #[tokio::test]
    async fn playlists_need_a_token_only_when_required() {
        let store = Arc::new(Store::new(TimelineConfig::default()));
        let open = app(store.clone(), web(false));
        // Not live: the origin answers 404, with or without a token.
        assert_eq!(status(&open, "/hls/demo/master.m3u8").await, StatusCode::NOT_FOUND);
        let locked = app(store, web(true));
        assert_eq!(status(&locked, "/hls/demo/master.m3u8").await, StatusCode::FORBIDDEN);
        assert_eq!(status(&locked, "/hls/demo/master.m3u8?token=1.ab").await, StatusCode::FORBIDDEN);
        let (token, _) = web(true).signer.sign("demo", SystemTime::now());
        // A valid token passes the check and reaches the origin.
        assert_eq!(status(&locked, &format!("/hls/demo/master.m3u8?token={token}")).await, StatusCode::NOT_FOUND);
        // Another channel's token does not.
        let (other, _) = web(true).signer.sign("other", SystemTime::now());
        assert_eq!(status(&locked, &format!("/hls/demo/master.m3u8?token={other}")).await, StatusCode::FORBIDDEN);
        // Media Playlists and parts stay cacheable without a token.
        assert_eq!(status(&locked, "/hls/demo/source/index.m3u8").await, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn pages_and_api() {
        let store = Arc::new(Store::new(TimelineConfig::default()));
        let app = app(store, web(false));
        assert_eq!(status(&app, "/").await, StatusCode::OK);
        assert_eq!(status(&app, "/watch/demo").await, StatusCode::OK);
        assert_eq!(status(&app, "/watch/no%20such").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&app, "/api/v1/playback/demo").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&app, "/api/v1/time").await, StatusCode::OK);
        assert_eq!(status(&app, "/player/onair_player.js").await, StatusCode::NOT_FOUND);
    }
}
