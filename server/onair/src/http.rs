//! The HTTP front of a video node: the LL-HLS origin (counting viewer sessions on its Media
//! Playlists), the web pages (`/`, `/watch/{channel}`, `/channel/{channel}`, `/cluster`), the player files (`/player/`), the JSON
//! API (`/api/v1/channels` here, the rest in `api.rs`), `/metrics` and `/healthz`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::{Either, FutureExt};
use tower::ServiceExt;
use std::time::UNIX_EPOCH;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
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

use crate::cluster::Cluster;
use crate::config::PlaybackConfig;
use crate::playback::Signer;
use crate::serve::{OverTls, PeerAddr};

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const WATCH_HTML: &str = include_str!("../../../web/watch.html");
const CLUSTER_HTML: &str = include_str!("../../../web/cluster.html");
const CHANNEL_HTML: &str = include_str!("../../../web/channel.html");

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
    /// This node in the cluster (viewer sessions, Usher).
    pub cluster: Arc<Cluster>,
    /// The admin API.
    pub admin: crate::admin::Admin,
    /// The archive's `(api, media)` routes, on a node that records.
    pub archive: Option<(Router, Router)>,
    /// The archive's DVR windows, for the origin's `dvr.m3u8` playlists.
    pub history: Option<Arc<dyn onair_origin::History>>,
    /// The chat, when `[chat] enabled`.
    pub chat: Option<onair_chat::Chat>,
}

/// The pages' and middleware's state: one reference-counted value, because axum clones the state
/// of every route and middleware on every request (a `Web` holds strings, caches and configs).
#[derive(Clone)]
struct AppState(Arc<AppInner>);

struct AppInner {
    store: Arc<Store>,
    web: Web,
}

/// What a node's HTTP listeners serve: the router, and the hot path that takes rendition files
/// before it ([`crate::hls_front`]).
#[derive(Clone)]
pub struct App {
    /// Every route.
    pub router: Router,
    /// The hot path; `None` on `onair usher`.
    pub hls: Option<Arc<crate::hls_front::HlsFront>>,
}

impl App {
    /// Only `router` (no hot path).
    pub fn router(router: Router) -> App {
        App { router, hls: None }
    }

    /// Answers `request` from `peer` (over TLS when `secure`): by the hot path when it takes it,
    /// else by the router, with [`PeerAddr`] (and [`OverTls`]) in the request's extensions.
    pub fn call<B>(&self, request: hyper::Request<B>, peer: SocketAddr, secure: bool) -> impl Future<Output = Response> + Send + 'static
    where
        B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        if let Some(hls) = self.hls.as_ref().filter(|hls| hls.takes(&request)) {
            return Either::Left(hls.clone().answer(request, peer));
        }
        let mut request = request;
        request.extensions_mut().insert(PeerAddr(peer));
        if secure {
            request.extensions_mut().insert(OverTls);
        }
        Either::Right(self.router.clone().oneshot(request).map(|r| match r {
            Ok(response) => response,
            Err(never) => match never {},
        }))
    }
}

/// All routes of `onair serve`, and its hot path.
pub fn app(store: Arc<Store>, web: Web) -> App {
    let state = AppState(Arc::new(AppInner { store: store.clone(), web: web.clone() }));
    let api = Router::new().route("/api/v1/channels", get(channels_json)).layer(CorsLayer::permissive());
    let usher = crate::api::router(crate::api::Api {
        cluster: web.cluster.clone(),
        playback: web.playback.clone(),
        signer: web.signer.clone(),
        local: Some((store.clone(), web.relay.clone())),
        request_timeout: web.request_timeout,
    });
    let (archive_api, archive_media) = web.archive.clone().unwrap_or_default();
    let front = Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/watch/{channel}", get(watch_page))
        .route("/channel/{channel}", get(channel_page))
        .route("/cluster", get(|| async { Html(CLUSTER_HTML) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .merge(api)
        .nest_service("/player", ServiceBuilder::new().layer(CompressionLayer::new()).service(ServeDir::new(&web.player_dir)))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, web.request_timeout))
        .with_state(state.clone())
        .merge(archive_api.layer(middleware::from_fn_with_state(web.cluster.clone(), client_ip)).layer(CorsLayer::permissive()))
        .merge(usher)
        .merge(crate::admin::router(web.admin.clone()));
    let front = match web.chat.clone() {
        Some(chat) => front.merge(onair_chat::ws::router(chat).layer(middleware::from_fn_with_state(web.cluster.clone(), client_ip)).layer(CorsLayer::permissive())),
        None => front,
    };
    // The origin's blocking requests bound themselves (3 × target duration).
    let upstream = web.relay.clone().map(|r| Arc::new(r) as Arc<dyn Upstream>);
    let origin_state = match web.history.clone() {
        Some(h) => OriginState::with_history(store, web.shutdown.clone(), upstream, web.cluster.steering(), h),
        None => OriginState::new(store, web.shutdown.clone(), upstream, web.cluster.steering()),
    };
    let hls = crate::hls_front::HlsFront {
        origin: origin_state.clone(),
        cluster: web.cluster.clone(),
        signer: web.signer.clone(),
        require_token: web.playback.require_token,
    };
    let origin = onair_origin::router(origin_state)
        .layer(middleware::from_fn_with_state(state, count_viewers))
        .merge(archive_media.layer(CorsLayer::permissive()));
    let router = front.merge(crate::token_routes::guard(origin, web.signer.clone(), web.playback.require_token));
    App { router, hls: Some(Arc::new(hls)) }
}

/// Adds the client's address (`X-Forwarded-For` behind trusted proxies) for the archive's clip
/// rate limit and the chat's bans and token rate limit.
async fn client_ip(State(cluster): State<Arc<Cluster>>, mut request: Request, next: Next) -> Response {
    let (_, client) = crate::api::client_of(&cluster, &request);
    request.extensions_mut().insert(onair_archive::routes::ClientIp(client));
    request.extensions_mut().insert(onair_chat::ws::ClientAddr(client));
    next.run(request).await
}

/// Records the session of every 200 Media Playlist answer (`/hls/{channel}/{rendition}/index.m3u8`
/// or `dvr.m3u8`):
/// the one definition of a viewer (`onair_cluster::viewers`).
async fn count_viewers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let channel = request
        .uri()
        .path()
        .strip_prefix("/hls/")
        .and_then(|p| p.strip_suffix("/index.m3u8").or_else(|| p.strip_suffix("/dvr.m3u8")))
        .and_then(|p| p.split_once('/'))
        .map(|(channel, _)| channel.to_string());
    let Some(channel) = channel else { return next.run(request).await };
    let (_, client) = crate::api::client_of(&state.0.web.cluster, &request);
    let Some(session) = state.0.web.cluster.session(client, request.headers()) else { return next.run(request).await };
    let response = next.run(request).await;
    if response.status() == StatusCode::OK {
        state.0.web.cluster.seen(&channel, session);
    }
    response
}

/// The routes of a standalone `onair usher`: the API (playback, cluster, time), the channel list
/// from the registry, `/metrics` and `/healthz`.
pub fn usher_app(api: crate::api::Api) -> Router {
    let cluster = api.cluster.clone();
    Router::new()
        .route("/cluster", get(|| async { Html(CLUSTER_HTML) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route(
            "/api/v1/channels",
            get(move || {
                let cluster = cluster.clone();
                async move {
                    let list: Vec<LiveChannel> = cluster
                        .channels()
                        .into_iter()
                        .map(|c| LiveChannel { viewers: c.viewers, ..LiveChannel::new(c.channel, c.live, c.started_at_ms, c.renditions) })
                        .collect();
                    Json(list)
                }
            }),
        )
        .layer(CorsLayer::permissive())
        .merge(crate::api::router(api))
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
    watch: String,
    /// Viewers over the cluster (playback sessions, `onair_cluster::viewers`), as of the nodes'
    /// last reports.
    viewers: u64,
}

impl LiveChannel {
    fn new(channel: String, live: bool, started_at_ms: u64, renditions: Vec<String>) -> Self {
        LiveChannel {
            state: if live { "live" } else { "reconnecting" },
            playlist: format!("/hls/{channel}/master.m3u8"),
            watch: format!("/watch/{channel}"),
            started_at_ms,
            renditions,
            channel,
            viewers: 0,
        }
    }
}

/// The channels live here, those the cluster registry shows on other nodes, and on a relay with
/// static upstreams those they list (relayed on demand); most viewers first, then by name.
async fn channels_json(State(state): State<AppState>) -> Json<Vec<LiveChannel>> {
    let mut channels = live(&state.0.store);
    let held = state.0.web.cluster.channels();
    for c in &held {
        if !channels.iter().any(|l| l.channel == c.channel) {
            channels.push(LiveChannel::new(c.channel.clone(), c.live, c.started_at_ms, c.renditions.clone()));
        }
    }
    if let Some(relay) = &state.0.web.relay {
        for c in relay.upstream_directory().await {
            if !channels.iter().any(|l| l.channel == c.channel) {
                channels.push(LiveChannel::new(c.channel.clone(), c.is_live(), c.started_at_ms, c.renditions));
            }
        }
    }
    for l in &mut channels {
        l.viewers = held.iter().find(|c| c.channel == l.channel).map_or(0, |c| c.viewers);
    }
    channels.sort_by(|a, b| b.viewers.cmp(&a.viewers).then_with(|| a.channel.cmp(&b.channel)));
    Json(channels)
}

fn live(store: &Store) -> Vec<LiveChannel> {
    store
        .list()
        .into_iter()
        .filter(|b| b.live || b.reconnecting)
        .map(|b| {
            let started = b.started.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
            LiveChannel::new(b.channel, b.live, started, b.renditions)
        })
        .collect()
}

async fn watch_page(Path(channel): Path<String>) -> Response {
    channel_html(WATCH_HTML, &channel)
}

/// `/channel/{channel}`: its past broadcasts and clips, playable.
async fn channel_page(Path(channel): Path<String>) -> Response {
    channel_html(CHANNEL_HTML, &channel)
}

fn channel_html(page: &str, channel: &str) -> Response {
    if !onair_origin::valid_name(channel) {
        return (StatusCode::NOT_FOUND, "no such channel\n").into_response();
    }
    // Channel names are [a-z0-9_-]: safe to place in the page as they are.
    Html(page.replace("{{channel}}", channel)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use onair_store::TimelineConfig;

    fn web(store: &Arc<Store>, require_token: bool) -> Web {
        let local = crate::cluster::LocalNode {
            info: crate::cluster::node_info(&crate::config::Config::default(), 8080),
            store: store.clone(),
            relay: None,
            sessions: Default::default(),
            chat: None,
            egress: Default::default(),
        };
        Web {
            cluster: Cluster::new(&crate::config::Config::default(), Some(local)).expect("cluster"),
            playback: PlaybackConfig { require_token, peers: vec!["http://peer:8080/".into()], ..PlaybackConfig::default() },
            signer: Signer::new(&crate::playback::Keys { secret: Some("k"), ..Default::default() }, Duration::from_secs(60), Duration::from_secs(60)).expect("signer"),
            player_dir: PathBuf::from("/nonexistent"),
            request_timeout: Duration::from_secs(10),
            shutdown: CancellationToken::new(),
            relay: None,
            admin: crate::admin::Admin { config: Default::default(), drain: CancellationToken::new(), archive: None, channels: None, relay: None },
            archive: None,
            history: None,
            chat: None,
        }
    }

    async fn status(app: &App, uri: &str) -> StatusCode {
        app.call(Request::get(uri).body(Body::empty()).expect("request"), ([127, 0, 0, 1], 9).into(), false).await.status()
    }

    #[tokio::test]
    async fn origin_routes_need_a_token_only_when_required() {
        let store = Arc::new(Store::new(TimelineConfig::default()));
        let open = app(store.clone(), web(&store, false));
        // Not live: the origin answers 404.
        assert_eq!(status(&open, "/hls/demo/master.m3u8").await, StatusCode::NOT_FOUND);
        let locked = web(&store, true);
        let (token, _) = locked.signer.sign("demo", std::time::SystemTime::now()).expect("signs");
        let locked = app(store.clone(), locked);
        for path in ["master.m3u8", "source/index.m3u8", "source/init-0.mp4", "source/1.2.m4s"] {
            assert_eq!(status(&locked, &format!("/hls/demo/{path}")).await, StatusCode::FORBIDDEN, "{path}");
            // A valid token reaches the origin (not live: 404).
            assert_eq!(status(&locked, &format!("/t/{token}/hls/demo/{path}")).await, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn pages_and_api() {
        let store = Arc::new(Store::new(TimelineConfig::default()));
        let app = app(store.clone(), web(&store, false));
        assert_eq!(status(&app, "/").await, StatusCode::OK);
        assert_eq!(status(&app, "/watch/demo").await, StatusCode::OK);
        assert_eq!(status(&app, "/channel/demo").await, StatusCode::OK);
        assert_eq!(status(&app, "/channel/no%20such").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&app, "/cluster").await, StatusCode::OK);
        assert_eq!(status(&app, "/api/v1/cluster").await, StatusCode::OK);
        assert_eq!(status(&app, "/api/v1/channels/demo/tree").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&app, "/api/v1/steering/demo").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&app, "/watch/no%20such").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&app, "/api/v1/playback/demo").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&app, "/api/v1/time").await, StatusCode::OK);
        assert_eq!(status(&app, "/player/onair_player.js").await, StatusCode::NOT_FOUND);
    }
}
