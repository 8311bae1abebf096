//! Playback tokens on the HTTP front (`playback.rs` signs and checks them): the `/t/{token}/hls/…`
//! routes, which check the token for the channel in the path, strip the prefix and hand the
//! request to the LL-HLS origin; and, with `playback.require_token`, 403 for `/hls/…` without one.
//!
//! The playlists' URIs are relative, so a player that loaded `/t/{token}/hls/{channel}/master.m3u8`
//! requests every Media Playlist, part and init segment under the same prefix, and a CDN caches
//! them under it: one copy per channel per token bucket.

use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use onair_origin::PlaybackToken;
use tower::ServiceExt;

use crate::playback::{Signer, TokenError};
use crate::serve::PeerAddr;

/// Cloned on every tokened request (axum clones route state per request): one `Arc`.
#[derive(Clone)]
struct Gate(std::sync::Arc<GateInner>);

struct GateInner {
    signer: Signer,
    origin: Router,
}

/// `origin` (the `/hls/…` routes) behind the token check, plus `/t/{token}/hls/…`.
pub fn guard(origin: Router, signer: Signer, require: bool) -> Router {
    let origin = origin.layer(middleware::from_fn_with_state(require, require_token));
    let gate = Gate(std::sync::Arc::new(GateInner { signer, origin: origin.clone() }));
    Router::new().route("/t/{token}/hls/{*rest}", get(tokened)).with_state(gate).merge(origin)
}

/// 403 for a refused token, never cached (a CDN must not serve the refusal to valid tokens),
/// logged and counted in `onair_playback_token_refusals_total{reason}`.
pub fn token_refused(channel: &str, e: &TokenError) -> Response {
    tracing::info!(channel, error = %e, "playback token refused");
    metrics::counter!("onair_playback_token_refusals_total", "reason" => e.label()).increment(1);
    (StatusCode::FORBIDDEN, [(header::CACHE_CONTROL, "no-store")], format!("{e}\n")).into_response()
}

/// `/hls/…` without a checked token, when tokens are required.
async fn require_token(State(require): State<bool>, request: Request, next: Next) -> Response {
    if require && request.extensions().get::<PlaybackToken>().is_none() {
        let channel = request.uri().path().strip_prefix("/hls/").and_then(|p| p.split('/').next()).unwrap_or("").to_string();
        return token_refused(&channel, &TokenError::Missing);
    }
    next.run(request).await
}

/// `GET /t/{token}/hls/{channel}/…`: checks the token for the channel, then serves
/// `/hls/{channel}/…` (query kept) with the token as a [`PlaybackToken`] extension.
async fn tokened(State(gate): State<Gate>, mut request: Request) -> Response {
    let path = request.uri().path();
    let Some((token, rest)) = path.strip_prefix("/t/").and_then(|p| p.split_once("/hls/")) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (token, rest) = (token.to_string(), rest.to_string());
    let channel = rest.split('/').next().unwrap_or("");
    if let Err(e) = gate.0.signer.verify(channel, Some(&token), SystemTime::now()) {
        return token_refused(channel, &e);
    }
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let Ok(uri) = format!("/hls/{rest}{query}").parse::<Uri>() else { return StatusCode::BAD_REQUEST.into_response() };
    *request.uri_mut() = uri;
    // A fresh set of extensions: this route's own path parameters would otherwise be added to
    // the origin's. The client address goes along.
    let peer = request.extensions().get::<PeerAddr>().cloned();
    let extensions = request.extensions_mut();
    extensions.clear();
    extensions.insert(PlaybackToken(token));
    if let Some(peer) = peer {
        extensions.insert(peer);
    }
    match gate.0.origin.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::Path;

    use super::*;
    use crate::playback::Keys;

    fn app(require: bool) -> (Router, Signer) {
        let signer = Signer::new(&Keys { secret: Some("k"), ..Keys::default() }, Duration::from_secs(60), Duration::from_secs(60)).expect("signer");
        let origin = Router::new().route("/hls/{channel}/{*rest}", get(|Path((_, _)): Path<(String, String)>, request: Request| async move {
            let token = request.extensions().get::<PlaybackToken>().map(|t| t.0.clone()).unwrap_or_default();
            format!("{} {token}", request.uri())
        }));
        (guard(origin, signer.clone(), require), signer)
    }

    async fn get_text(app: &Router, uri: &str) -> (StatusCode, String, Option<String>) {
        let r = app.clone().oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("response");
        let cache = r.headers().get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_string);
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned(), cache)
    }

    #[tokio::test]
    async fn every_request_needs_the_channels_token_when_required() {
        let (locked, signer) = app(true);
        let (token, _) = signer.sign("demo", SystemTime::now()).expect("signs");
        let (status, _, cache) = get_text(&locked, "/hls/demo/source/3.0.m4s").await;
        assert_eq!((status, cache.as_deref()), (StatusCode::FORBIDDEN, Some("no-store")));
        // The prefix is stripped, the query kept, the token handed to the origin.
        let (status, body, _) = get_text(&locked, &format!("/t/{token}/hls/demo/source/index.m3u8?_HLS_msn=3")).await;
        assert_eq!((status, body), (StatusCode::OK, format!("/hls/demo/source/index.m3u8?_HLS_msn=3 {token}")));
        // Another channel's token, a forged one: refused, not cached.
        let (status, _, cache) = get_text(&locked, &format!("/t/{token}/hls/other/master.m3u8")).await;
        assert_eq!((status, cache.as_deref()), (StatusCode::FORBIDDEN, Some("no-store")));
        assert_eq!(get_text(&locked, "/t/e30.e30.e30/hls/demo/master.m3u8").await.0, StatusCode::FORBIDDEN);
        // Without the requirement, both forms work.
        let (open, _) = app(false);
        assert_eq!(get_text(&open, "/hls/demo/master.m3u8").await.0, StatusCode::OK);
        assert_eq!(get_text(&open, &format!("/t/{token}/hls/demo/master.m3u8")).await.0, StatusCode::OK);
    }
}
