//! The admin API: `POST /admin/v1/drain` (the node stops taking viewers and publishers, answers
//! playlists with 503 so players and relays move to other nodes, leaves the registry and exits;
//! `onair drain` calls it) and `DELETE /admin/v1/clips/{id}` (a takedown: the clip's files and
//! index rows go; 204, or 404 when there is no such clip). Every admin request needs `Authorization: Bearer {admin.token}` and
//! must come from a network in `admin.allow` (loopback by default); without `admin.token` the
//! admin API is off (404).

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
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
}

/// The admin routes.
pub fn router(admin: Admin) -> Router {
    Router::new().route("/admin/v1/drain", post(drain)).route("/admin/v1/clips/{id}", axum::routing::delete(delete_clip)).with_state(admin)
}

async fn delete_clip(State(admin): State<Admin>, axum::extract::Path(id): axum::extract::Path<String>, request: Request) -> Response {
    if let Err((status, why)) = authorize(&admin, &request) {
        return refuse(status, why);
    }
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

/// Why an admin request was refused.
fn refuse(status: StatusCode, why: &'static str) -> Response {
    metrics::counter!("onair_admin_refused_total", "reason" => why).increment(1);
    (status, [(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "error": why }))).into_response()
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

async fn drain(State(admin): State<Admin>, request: Request) -> Response {
    if let Err((status, why)) = authorize(&admin, &request) {
        return refuse(status, why);
    }
    tracing::info!("drain requested through the admin API");
    admin.drain.cancel();
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "draining": true }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn status(admin: &Admin, from: &str, token: Option<&str>) -> StatusCode {
        let mut request = Request::post("/admin/v1/drain").body(Body::empty()).expect("request");
        request.extensions_mut().insert(PeerAddr(from.parse().expect("addr")));
        if let Some(t) = token {
            request.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {t}").parse().expect("header"));
        }
        router(admin.clone()).oneshot(request).await.expect("response").status()
    }

    #[tokio::test]
    async fn drain_needs_the_token_from_an_allowed_network() {
        let off = Admin { config: AdminConfig::default(), drain: CancellationToken::new(), archive: None };
        assert_eq!(status(&off, "127.0.0.1:1", Some("x")).await, StatusCode::NOT_FOUND);
        let admin = Admin { config: AdminConfig { token: Some("s3cret".into()), ..AdminConfig::default() }, drain: CancellationToken::new(), archive: None };
        assert_eq!(status(&admin, "192.0.2.1:1", Some("s3cret")).await, StatusCode::FORBIDDEN);
        assert_eq!(status(&admin, "127.0.0.1:1", None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&admin, "127.0.0.1:1", Some("s3cre")).await, StatusCode::UNAUTHORIZED);
        assert!(!admin.drain.is_cancelled());
        assert_eq!(status(&admin, "[::1]:1", Some("s3cret")).await, StatusCode::ACCEPTED);
        assert!(admin.drain.is_cancelled());
    }
}
