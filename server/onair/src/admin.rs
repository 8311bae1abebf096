//! The admin API. Every request needs `Authorization: Bearer {admin.token}` and must come from a
//! network in `admin.allow` (loopback by default); without `admin.token` the admin API is off
//! (404). Each request is logged with its caller and counted in
//! `onair_admin_requests_total{action}` (refusals in `onair_admin_refused_total{reason}`).
//!
//! | route | |
//! |---|---|
//! | `POST /admin/v1/drain` | the node stops taking viewers and publishers, answers playlists with 503 so players and relays move, leaves the registry and exits (`onair drain`); 202 |
//! | `GET /admin/v1/channels` | every channel with its stream key |
//! | `POST /admin/v1/channels` `{"name", "srt_passphrase"?}` | creates a channel: 201 with its stream key; 409 when it exists, 400 for a bad name or passphrase |
//! | `POST /admin/v1/channels/{name}/key` | a new stream key (the old one is refused from now; a live publisher stays until it disconnects) |
//! | `DELETE /admin/v1/channels/{name}` | deletes a channel (its key is refused from now); 204 |
//! | `POST /admin/v1/channels/{name}/warm` | this relay pulls the channel now, ahead of its viewers (a tree change by hand); 200 when it holds it |
//! | `GET`, `PUT /admin/v1/upstreams` `{"upstreams": [URL, …]}` | this relay's static upstreams: read, or replace at run time (re-parenting it) |
//! | `DELETE /admin/v1/clips/{id}` | a clip takedown: its files and index rows go; 204 |

use std::net::IpAddr;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use onair_channels::{ChannelError, Channels};
use onair_relay::Relay;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::AdminConfig;
use crate::serve::PeerAddr;

/// What the admin routes act on.
#[derive(Clone)]
pub struct Admin {
    /// Token and allowed networks.
    pub config: AdminConfig,
    /// Cancelled to ask the server to drain and stop.
    pub drain: CancellationToken,
    /// The archive, on a node that records (clip takedowns).
    pub archive: Option<onair_archive::Archive>,
    /// The channels and stream keys (the node's database).
    pub channels: Option<Channels>,
    /// The relay, on a node that relays (upstreams, warming).
    pub relay: Option<Relay>,
}

/// The admin routes, each behind the token and network check.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/admin/v1/drain", post(drain))
        .route("/admin/v1/clips/{id}", delete(delete_clip))
        .route("/admin/v1/channels", get(list_channels).post(create_channel))
        .route("/admin/v1/channels/{name}", delete(delete_channel))
        .route("/admin/v1/channels/{name}/key", post(rotate_key))
        .route("/admin/v1/channels/{name}/warm", post(warm))
        .route("/admin/v1/upstreams", get(upstreams).put(set_upstreams))
        .route_layer(middleware::from_fn_with_state(admin.clone(), authorized))
        .with_state(admin)
}

/// Why an admin request was refused.
fn refuse(status: StatusCode, why: &'static str) -> Response {
    metrics::counter!("onair_admin_refused_total", "reason" => why).increment(1);
    (status, [(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "error": why }))).into_response()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// Checks the caller: `Err((status, why))` unless allowed and authenticated.
fn authorize(admin: &Admin, request: &Request) -> Result<(), (StatusCode, &'static str)> {
    let Some(token) = &admin.config.token else { return Err((StatusCode::NOT_FOUND, "admin API disabled (set admin.token)")) };
    let peer: Option<IpAddr> = request.extensions().get::<PeerAddr>().map(|p| p.0.ip().to_canonical());
    if !peer.is_some_and(|ip| admin.config.allow.iter().any(|n| n.contains(&ip))) {
        tracing::warn!(?peer, "admin request from a network not in admin.allow");
        return Err((StatusCode::FORBIDDEN, "address not allowed"));
    }
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compare digests: the time taken says nothing about the token.
    let digest = |t: &str| Sha256::digest(t.as_bytes());
    if given.map(digest) != Some(digest(token)) {
        tracing::warn!(?peer, "admin request with a wrong or missing bearer token");
        return Err((StatusCode::UNAUTHORIZED, "wrong or missing bearer token"));
    }
    Ok(())
}

/// The check in front of every admin route; an admitted request is logged and counted.
async fn authorized(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    if let Err((status, why)) = authorize(&admin, &request) {
        return refuse(status, why);
    }
    let action = format!("{} {}", request.method(), request.extensions().get::<axum::extract::MatchedPath>().map_or("", |p| p.as_str()));
    tracing::info!(peer = ?request.extensions().get::<PeerAddr>().map(|p| p.0), path = %request.uri().path(), action, "admin request");
    metrics::counter!("onair_admin_requests_total", "action" => action).increment(1);
    next.run(request).await
}

async fn drain(State(admin): State<Admin>) -> Response {
    tracing::info!("drain requested through the admin API");
    admin.drain.cancel();
    json(StatusCode::ACCEPTED, serde_json::json!({ "draining": true }))
}

async fn delete_clip(State(admin): State<Admin>, Path(id): Path<String>) -> Response {
    let Some(archive) = &admin.archive else { return refuse(StatusCode::NOT_FOUND, "this node keeps no archive") };
    match archive.delete_clip(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => refuse(StatusCode::NOT_FOUND, "no such clip"),
        Err(e) => {
            tracing::error!(clip = id, error = %e, "clip takedown failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "takedown failed; try again")
        }
    }
}

/// A channel database error as an answer (logged when it is the database's).
fn channel_error(e: ChannelError) -> Response {
    match e {
        ChannelError::InvalidName(_) | ChannelError::InvalidPassphrase => json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": e.to_string() })),
        ChannelError::Exists(_) => json(StatusCode::CONFLICT, serde_json::json!({ "error": e.to_string() })),
        ChannelError::Db(_) => {
            tracing::error!(error = %e, "admin: channel database");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "channel database unavailable; try again")
        }
    }
}

async fn list_channels(State(admin): State<Admin>) -> Response {
    let Some(channels) = &admin.channels else { return refuse(StatusCode::NOT_FOUND, "this node keeps no channels") };
    match channels.list().await {
        Ok(list) => json(StatusCode::OK, serde_json::json!(list)),
        Err(e) => channel_error(e),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChannel {
    name: String,
    srt_passphrase: Option<String>,
}

async fn create_channel(State(admin): State<Admin>, Json(new): Json<NewChannel>) -> Response {
    let Some(channels) = &admin.channels else { return refuse(StatusCode::NOT_FOUND, "this node keeps no channels") };
    match channels.create_with(&new.name, new.srt_passphrase.as_deref()).await {
        Ok(c) => {
            tracing::info!(channel = c.name, "admin: channel created");
            json(StatusCode::CREATED, serde_json::json!(c))
        }
        Err(e) => channel_error(e),
    }
}

async fn rotate_key(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    let Some(channels) = &admin.channels else { return refuse(StatusCode::NOT_FOUND, "this node keeps no channels") };
    match channels.rotate_key(&name).await {
        Ok(Some(c)) => {
            tracing::info!(channel = c.name, "admin: stream key replaced");
            json(StatusCode::OK, serde_json::json!(c))
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, "no such channel"),
        Err(e) => channel_error(e),
    }
}

async fn delete_channel(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    let Some(channels) = &admin.channels else { return refuse(StatusCode::NOT_FOUND, "this node keeps no channels") };
    match channels.delete(&name).await {
        Ok(true) => {
            tracing::info!(channel = name, "admin: channel deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => refuse(StatusCode::NOT_FOUND, "no such channel"),
        Err(e) => channel_error(e),
    }
}

async fn warm(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    let Some(relay) = &admin.relay else { return refuse(StatusCode::NOT_FOUND, "this node does not relay") };
    if !onair_origin::valid_name(&name) {
        return refuse(StatusCode::NOT_FOUND, "no such channel");
    }
    let started = std::time::Instant::now();
    match relay.warm(&name).await {
        Ok(()) => json(StatusCode::OK, serde_json::json!({ "channel": name, "warm_ms": started.elapsed().as_millis() as u64 })),
        Err(why) => json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "channel": name, "error": why.to_string() })),
    }
}

async fn upstreams(State(admin): State<Admin>) -> Response {
    let Some(relay) = &admin.relay else { return refuse(StatusCode::NOT_FOUND, "this node does not relay") };
    json(StatusCode::OK, serde_json::json!({ "upstreams": relay.upstreams() }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUpstreams {
    upstreams: Vec<String>,
}

async fn set_upstreams(State(admin): State<Admin>, Json(new): Json<NewUpstreams>) -> Response {
    let Some(relay) = &admin.relay else { return refuse(StatusCode::NOT_FOUND, "this node does not relay") };
    match relay.set_upstreams(&new.upstreams) {
        Ok(()) => json(StatusCode::OK, serde_json::json!({ "upstreams": relay.upstreams() })),
        Err(e) => json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": e.to_string() })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn request(method: &str, uri: &str, from: &str, token: Option<&str>, body: Option<serde_json::Value>) -> Request {
        let mut r = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            r = r.header(header::CONTENT_TYPE, "application/json");
        }
        let mut r = r.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).expect("request");
        r.extensions_mut().insert(PeerAddr(from.parse().expect("addr")));
        r
    }

    async fn call(admin: &Admin, r: Request) -> (StatusCode, serde_json::Value) {
        let response = router(admin.clone()).oneshot(r).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn admin(token: Option<&str>) -> Admin {
        let config = AdminConfig { token: token.map(str::to_string), ..AdminConfig::default() };
        Admin { config, drain: CancellationToken::new(), archive: None, channels: None, relay: None }
    }

    #[tokio::test]
    async fn every_route_needs_the_token_from_an_allowed_network() {
        let off = admin(None);
        assert_eq!(call(&off, request("POST", "/admin/v1/drain", "127.0.0.1:1", Some("x"), None)).await.0, StatusCode::NOT_FOUND);
        let admin = admin(Some("s3cret"));
        for (method, uri) in [("POST", "/admin/v1/drain"), ("GET", "/admin/v1/channels"), ("DELETE", "/admin/v1/channels/demo"), ("PUT", "/admin/v1/upstreams")] {
            assert_eq!(call(&admin, request(method, uri, "192.0.2.1:1", Some("s3cret"), None)).await.0, StatusCode::FORBIDDEN, "{uri}");
            assert_eq!(call(&admin, request(method, uri, "127.0.0.1:1", None, None)).await.0, StatusCode::UNAUTHORIZED, "{uri}");
            assert_eq!(call(&admin, request(method, uri, "127.0.0.1:1", Some("s3cre"), None)).await.0, StatusCode::UNAUTHORIZED, "{uri}");
        }
        assert!(!admin.drain.is_cancelled());
        assert_eq!(call(&admin, request("POST", "/admin/v1/drain", "[::1]:1", Some("s3cret"), None)).await.0, StatusCode::ACCEPTED);
        assert!(admin.drain.is_cancelled());
    }

    #[tokio::test]
    async fn channels_are_created_rekeyed_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let channels = Channels::new(onair_db::Database::open(None, dir.path()).await.expect("db"));
        let admin = Admin { channels: Some(channels.clone()), ..admin(Some("t")) };
        let post = |uri: &str, body: Option<serde_json::Value>| request("POST", uri, "127.0.0.1:1", Some("t"), body);
        let (status, created) = call(&admin, post("/admin/v1/channels", Some(serde_json::json!({"name": "news"})))).await;
        assert_eq!(status, StatusCode::CREATED);
        let key = created["stream_key"].as_str().expect("key").to_string();
        assert_eq!(call(&admin, post("/admin/v1/channels", Some(serde_json::json!({"name": "news"})))).await.0, StatusCode::CONFLICT);
        assert_eq!(call(&admin, post("/admin/v1/channels", Some(serde_json::json!({"name": "Bad Name"})))).await.0, StatusCode::BAD_REQUEST);
        let (status, list) = call(&admin, request("GET", "/admin/v1/channels", "127.0.0.1:1", Some("t"), None)).await;
        assert_eq!((status, list[0]["stream_key"].as_str()), (StatusCode::OK, Some(key.as_str())));
        let (status, rotated) = call(&admin, post("/admin/v1/channels/news/key", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(rotated["stream_key"].as_str(), Some(key.as_str()));
        assert_eq!(channels.by_key(&key).await.expect("lookup"), None, "the old key opens nothing");
        assert_eq!(call(&admin, request("DELETE", "/admin/v1/channels/news", "127.0.0.1:1", Some("t"), None)).await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&admin, request("DELETE", "/admin/v1/channels/news", "127.0.0.1:1", Some("t"), None)).await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&admin, post("/admin/v1/channels/news/key", None)).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_relay_is_re_parented_at_run_time() {
        let store = std::sync::Arc::new(onair_store::Store::new(onair_store::TimelineConfig::default()));
        let config = onair_relay::RelayConfig { upstreams: vec!["http://127.0.0.1:9".into()], ..onair_relay::RelayConfig::default() };
        let relay = Relay::new(store, config, CancellationToken::new()).expect("relay");
        let admin = Admin { relay: Some(relay.clone()), ..admin(Some("t")) };
        let put = |body: serde_json::Value| request("PUT", "/admin/v1/upstreams", "127.0.0.1:1", Some("t"), Some(body));
        let (status, now) = call(&admin, put(serde_json::json!({"upstreams": ["http://10.0.0.2:8080/", "http://10.0.0.3:8080"]}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(now["upstreams"], serde_json::json!(["http://10.0.0.2:8080", "http://10.0.0.3:8080"]));
        assert_eq!(relay.upstreams(), ["http://10.0.0.2:8080", "http://10.0.0.3:8080"]);
        assert_eq!(call(&admin, put(serde_json::json!({"upstreams": ["not a url"]}))).await.0, StatusCode::BAD_REQUEST);
        let (status, read) = call(&admin, request("GET", "/admin/v1/upstreams", "127.0.0.1:1", Some("t"), None)).await;
        assert_eq!((status, read["upstreams"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
        // Warming a channel no upstream has answers 503.
        assert_eq!(call(&admin, request("POST", "/admin/v1/channels/demo/warm", "127.0.0.1:1", Some("t"), None)).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
