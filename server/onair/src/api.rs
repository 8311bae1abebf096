//! The JSON API every node and `onair usher` serve: `GET /api/v1/playback/{channel}` (Usher's
//! answer: ranked servers and a playback token), `GET /api/v1/cluster` (the registry view),
//! `GET /api/v1/channels/{channel}/tree` (the channel's replication tree) and
//! `GET /api/v1/time` (the server clock, for players' latency measurement).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use onair_origin::Upstream;
use onair_relay::Relay;
use onair_store::Store;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;

use crate::cluster::Cluster;
use onair_cluster::Offered;
use crate::config::PlaybackConfig;
use crate::playback::Signer;
use crate::serve::PeerAddr;

/// What the API needs.
#[derive(Clone)]
pub struct Api {
    /// Usher and the registry view.
    pub cluster: Arc<Cluster>,
    /// Playback settings (static peers, token lifetime).
    pub playback: PlaybackConfig,
    /// Signs playback tokens.
    pub signer: Signer,
    /// On a video node: its store and relay, to know at once whether it holds a channel (its
    /// own report may be up to a report interval old). `None` on `onair usher`.
    pub local: Option<(Arc<Store>, Option<Relay>)>,
    /// Time to answer, ms (408 after it).
    pub request_timeout: Duration,
}

/// The API routes (CORS open: players on other origins call them).
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/v1/playback/{channel}", get(playback_json))
        .route("/api/v1/cluster", get(cluster_json))
        .route("/api/v1/channels/{channel}/tree", get(tree_json))
        .route("/api/v1/steering/{channel}", get(steering_json))
        .route("/api/v1/time", get(time_json))
        .route("/api/v1/heartbeat/{channel}", get(heartbeat))
        .layer(CorsLayer::permissive())
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, api.request_timeout))
        .with_state(api)
}

/// The client address of a request: the peer (a [`PeerAddr`] extension; loopback when absent, as
/// in in-process tests), or `X-Forwarded-For` behind a trusted proxy.
pub fn client_of(cluster: &Cluster, request: &Request) -> (IpAddr, IpAddr) {
    let peer = request.extensions().get::<PeerAddr>().map_or(IpAddr::from([127, 0, 0, 1]), |p| p.0.ip());
    (peer, cluster.client_ip(peer, request.headers()))
}

#[derive(Debug, serde::Deserialize)]
struct HeartbeatQuery {
    session: Option<String>,
}

/// `GET /api/v1/heartbeat/{channel}?session=ID`: the OnAir player says it is watching (every
/// 10 s); 204, never cached (a viewer behind a CDN counts only through this). 400 for a missing
/// or malformed id (1–128 of `A-Z a-z 0-9 - _`) or channel; 404 on `onair usher`.
async fn heartbeat(State(api): State<Api>, Path(channel): Path<String>, Query(q): Query<HeartbeatQuery>, request: Request) -> Response {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    if api.local.is_none() {
        return (StatusCode::NOT_FOUND, no_store).into_response();
    }
    let (_, client) = client_of(&api.cluster, &request);
    let id = q.session.unwrap_or_default();
    if !onair_origin::valid_name(&channel) || !api.cluster.heartbeat(&channel, &id, client, request.headers()) {
        return (StatusCode::BAD_REQUEST, no_store, "bad channel or session id\n").into_response();
    }
    metrics::counter!("onair_heartbeats_total").increment(1);
    (StatusCode::NO_CONTENT, no_store).into_response()
}

/// `GET /api/v1/playback/{channel}`.
#[derive(Debug, serde::Serialize)]
struct Playback {
    channel: String,
    /// Servers, best first; the player appends `[/t/{token}]/hls/{channel}/master.m3u8`.
    candidates: Vec<Offered>,
    /// With `playback.require_token`: the playback token (a JWT, see `playback.rs`), valid on
    /// every node with the same key; the player requests `{base_url}/t/{token}/hls/…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// Token expiry, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
    /// With `?explain=1`: the client's address and region and every node's score.
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<serde_json::Value>,
}

#[derive(Debug, serde::Deserialize)]
struct PlaybackQuery {
    explain: Option<String>,
}

async fn playback_json(State(api): State<Api>, Path(channel): Path<String>, Query(q): Query<PlaybackQuery>, request: Request) -> Response {
    let (peer, client) = client_of(&api.cluster, &request);
    if !api.cluster.trusted(client) && !api.cluster.allow(client) {
        metrics::counter!("onair_playback_rate_limited_total").increment(1);
        tracing::debug!(%peer, %client, channel, "playback API rate limit");
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], Json(serde_json::json!({"error": "too many requests", "channel": channel})))
            .into_response();
    }
    metrics::counter!("onair_playback_requests_total").increment(1);
    let held_here = match &api.local {
        Some(_) if !onair_origin::valid_name(&channel) => false,
        Some((store, relay)) => {
            let mut held = store.get(&channel).is_some_and(|b| !b.renditions().is_empty() && !b.is_ended());
            // A relay with static upstreams and no holder in the registry: ask its upstreams.
            if !held && !api.cluster.is_held(&channel) {
                if let Some(relay) = relay {
                    held = relay.multivariant(&channel).await.is_ok();
                }
            }
            held
        }
        None => false,
    };
    let origin = crate::serve::request_origin(&request);
    let placed = api.cluster.place(&channel, client, origin.as_deref(), held_here);
    let explain = q.explain.filter(|v| v != "0").map(|_| {
        serde_json::json!({
            "client": client.to_string(),
            "region": placed.region,
            "outcome": placed.decision.outcome,
            "scores": placed.decision.scores,
        })
    });
    let mut candidates = placed.offered;
    if candidates.is_empty() {
        let mut body = serde_json::json!({"channel": channel});
        if let Some(explain) = explain {
            body["explain"] = explain;
        }
        return if placed.decision.outcome == onair_cluster::Outcome::NotLive {
            body["error"] = "channel is not live".into();
            (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        } else {
            body["error"] = "every server is full; retry shortly".into();
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "2"), (header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        };
    }
    for peer in &api.playback.peers {
        let base_url = peer.trim_end_matches('/').to_string();
        if !candidates.iter().any(|c| c.base_url == base_url) {
            candidates.push(Offered { node: String::new(), base_url });
        }
    }
    let signed = if api.playback.require_token { api.signer.sign(&channel, SystemTime::now()) } else { None };
    if api.playback.require_token && signed.is_none() {
        tracing::warn!(channel, "playback API on a node without a signing key: the player gets no token");
    }
    let (token, expires_at_ms) = (signed.as_ref().map(|s| s.0.clone()), signed.map(|s| s.1 * 1000));
    ([(header::CACHE_CONTROL, "no-store")], Json(Playback { channel, candidates, token, expires_at_ms, explain })).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct SteeringQuery {
    /// PATHWAY-ID of the Multivariant Playlist the client loaded (the SERVER-URI carries it).
    base: Option<String>,
    /// The client's current pathway (added by the client, §7.2).
    #[serde(rename = "_HLS_pathway")]
    pathway: Option<String>,
    /// The playback token of the Multivariant Playlist (its SERVER-URI carries it).
    token: Option<String>,
}

/// `GET /api/v1/steering/{channel}?base=PATHWAY`: the Steering Manifest (RFC 8216bis §7.1) of
/// the channel for this client, ranked by Usher. 404 when not live, 429 over the rate limit.
async fn steering_json(State(api): State<Api>, Path(channel): Path<String>, Query(q): Query<SteeringQuery>, request: Request) -> Response {
    let (_, client) = client_of(&api.cluster, &request);
    if !api.cluster.trusted(client) && !api.cluster.allow(client) {
        metrics::counter!("onair_playback_rate_limited_total").increment(1);
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "10")], "too many requests\n").into_response();
    }
    let base = q.base.or(q.pathway).filter(|b| onair_cluster::node::valid_id(b)).unwrap_or_else(|| ".".into());
    if let Some(token) = q.token.as_deref() {
        if let Err(e) = api.signer.verify(&channel, Some(token), SystemTime::now()) {
            return crate::token_routes::token_refused(&channel, &e);
        }
    }
    match api.cluster.steering_manifest(&channel, client, &base, q.token.as_deref()) {
        Some(m) => ([(header::CACHE_CONTROL, "no-store")], Json(m)).into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({"error": "channel is not live", "channel": channel}))).into_response(),
    }
}

/// `GET /api/v1/channels/{channel}/tree`: `{channel, nodes: [{node, base_url, origin, parent,
/// depth, children, viewers, load}]}`, every node holding the channel (404 when none does).
async fn tree_json(State(api): State<Api>, Path(channel): Path<String>) -> Response {
    let nodes = api.cluster.tree(&channel);
    let status = if nodes.is_empty() { StatusCode::NOT_FOUND } else { StatusCode::OK };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "channel": channel, "nodes": nodes }))).into_response()
}

async fn cluster_json(State(api): State<Api>) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(api.cluster.status())).into_response()
}

/// `GET /api/v1/time`: the server's clock, `{"now_ms": Unix ms}`, for players' latency measurement.
async fn time_json() -> Response {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
    ([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "now_ms": now }))).into_response()
}
