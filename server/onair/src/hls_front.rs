//! The hot path of a video node. `GET /hls/{channel}/{rendition}/{file}` and its tokened form
//! `/t/{token}/hls/{channel}/{rendition}/{file}` are the requests every viewer makes several times
//! a second (a blocking Media Playlist reload and a Partial Segment per part): they go straight to
//! the origin's handler ([`onair_origin::serve_file`]) without the router and its layers (route
//! matching, per-request clones of boxed services, middleware futures, path and query strings).
//! What those layers do for these requests is done here too: the playback token check and the
//! counting of a Media Playlist's viewer (`onair_cluster::viewers`). Any request this path does
//! not take as it is (another method, another route, a percent-encoded path, a token it refuses,
//! a missing token where one is required) goes to the router, which answers it as before.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use onair_origin::{FileRequest, OriginState};

use crate::cluster::Cluster;
use crate::playback::Signer;

/// The hot path's state: the origin routes' state, the cluster (viewer sessions, the client's
/// address) and the playback token policy.
#[derive(Debug)]
pub struct HlsFront {
    /// The origin's state (the store, the relay, the rendered playlists).
    pub origin: OriginState,
    /// This node in the cluster.
    pub cluster: Arc<Cluster>,
    /// Checks playback tokens.
    pub signer: Signer,
    /// `playback.require_token`.
    pub require_token: bool,
}

/// The parts of a rendition file's path: `(token, channel, rendition, file)`.
type FilePath<'a> = (Option<&'a str>, &'a str, &'a str, &'a str);

/// Splits `/hls/C/R/F` or `/t/T/hls/C/R/F`; `None` for anything else, and for a path with a
/// percent-encoded byte (the router decodes those).
fn file_path(path: &str) -> Option<FilePath<'_>> {
    if path.contains('%') {
        return None;
    }
    let (token, rest) = match path.strip_prefix("/t/") {
        Some(tokened) => {
            let (token, rest) = tokened.split_once("/hls/")?;
            (Some(token), rest)
        }
        None => (None, path.strip_prefix("/hls/")?),
    };
    let mut parts = rest.split('/');
    let (channel, rendition, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || channel.is_empty() || rendition.is_empty() || file.is_empty() {
        return None;
    }
    Some((token, channel, rendition, file))
}

impl HlsFront {
    /// True when this path answers `request` ([`HlsFront::answer`]); else the router does.
    pub fn takes<B>(&self, request: &hyper::Request<B>) -> bool {
        request.method() == Method::GET
            && match file_path(request.uri().path()) {
                Some((None, ..)) => !self.require_token,
                Some((Some(token), channel, ..)) => self.signer.verify(channel, Some(token), SystemTime::now()).is_ok(),
                None => false,
            }
    }

    /// Answers `request` (one it [`takes`](HlsFront::takes)) from `peer`.
    pub async fn answer<B>(self: Arc<Self>, request: hyper::Request<B>, peer: SocketAddr) -> Response {
        let Some((token, channel, rendition, file)) = file_path(request.uri().path()) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let headers = request.headers();
        let playlist = file == "index.m3u8" || file == "dvr.m3u8";
        let session = if playlist { self.cluster.session(self.cluster.client_ip(peer.ip(), headers), headers) } else { None };
        let file_request = FileRequest { channel, rendition, file, query: request.uri().query(), gzip: onair_origin::accepts_gzip(headers), token };
        let response = onair_origin::serve_file(&self.origin, file_request).await;
        if let (Some(session), StatusCode::OK) = (session, response.status()) {
            self.cluster.seen(channel, session);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths() {
        assert_eq!(file_path("/hls/demo/source/part12.m4s"), Some((None, "demo", "source", "part12.m4s")));
        assert_eq!(file_path("/t/abc.def/hls/demo/720p/index.m3u8"), Some((Some("abc.def"), "demo", "720p", "index.m3u8")));
        for other in ["/hls/demo/master.m3u8", "/hls/demo/a/b/c", "/hls//source/x", "/api/v1/channels", "/hls/de%6Do/source/init.mp4", "/t/x/demo/a/b"] {
            assert_eq!(file_path(other), None, "{other}");
        }
    }
}
