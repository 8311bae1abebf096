//! Playlist building: Multivariant from a broadcast's renditions, Media Playlists from a rendition
//! snapshot, with blocking reload (RFC 8216bis §6.2.5.2).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use axum::extract::{Path, State};
use axum::Extension;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use onair_hls::blocking::decide;
use onair_hls::cache::{cache_control, Response as CacheKind};
use onair_hls::{
    Decision, Directives, LiveEdge, MediaPlaylist, MediaSegment, MultivariantPlaylist, PartEntry, RenditionEntry, RenditionReport, ServerControl,
    SkipRequest,
};
use onair_store::{Broadcast, Position, Rendition};

use crate::{error, unavailable, valid_name, OriginState, PLAYLIST_CONTENT_TYPE};

/// Used for BANDWIDTH before the first part is measured, bits/s.
const UNMEASURED_BANDWIDTH: u64 = 1_000_000;

/// What a rendered Media Playlist depends on: the rendition (by its process-unique id: a new
/// broadcast has new renditions), the delta-update flag, and the version of this and of every other rendition
/// of the broadcast (their Rendition Reports), plus the upstream's reports on a relay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RenderKey {
    renditions: Vec<(u64, u64)>,
    skip: bool,
    relayed: Vec<(u64, u32)>,
    /// The DVR playlist: the recorded run it starts with, (first MSN, length); `None` for `index.m3u8`.
    dvr: Option<(u64, usize)>,
}

/// Rendered Media Playlists: a new part that wakes a thousand blocked requests renders each
/// distinct playlist once, and concurrent requests for one not yet rendered wait for that one
/// rendering (`moka`'s `get_with`); its gzip form is made once too, by the first request that
/// accepts it. Entries expire after a few seconds (a version moves on with the next part anyway).
pub(crate) struct Renders(moka::sync::Cache<RenderKey, Arc<Rendered>>);

/// A playlist rendered once, sent to many.
pub(crate) struct Rendered {
    plain: Bytes,
    gzip: std::sync::OnceLock<Option<Bytes>>,
}

impl Rendered {
    fn new(plain: impl Into<Bytes>) -> Self {
        Rendered { plain: plain.into(), gzip: std::sync::OnceLock::new() }
    }

    /// The gzip form (made on first use); `None` if compressing failed (the plain form is sent).
    fn gzipped(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(self.plain.len() / 3 + 64), flate2::Compression::default());
                e.write_all(&self.plain).and_then(|()| e.finish()).ok().map(|v| {
                    metrics::counter!("onair_playlist_gzips_total").increment(1);
                    Bytes::from(v)
                })
            })
            .as_ref()
    }
}

impl Default for Renders {
    fn default() -> Self {
        Renders(moka::sync::Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(10)).build())
    }
}

impl std::fmt::Debug for Renders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renders").field("entries", &self.0.entry_count()).finish()
    }
}

/// A playlist answer: gzip when the client takes it (`Vary: Accept-Encoding` either way), CORS,
/// and the Appendix B lifetime of `kind`.
fn playlist_response(rendered: &Rendered, kind: CacheKind, td: u32, gzip: bool) -> Response {
    let compressed = if gzip { rendered.gzipped() } else { None };
    let mut resp = compressed.unwrap_or(&rendered.plain).clone().into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PLAYLIST_CONTENT_TYPE));
    if compressed.is_some() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&cache_control(kind, true, td)) {
        h.insert(header::CACHE_CONTROL, v);
    }
    crate::cors(h);
    resp
}

pub(crate) fn edge_of(p: &Position) -> LiveEdge {
    LiveEdge { last_msn: p.last_msn, last_part: p.last_part, ended: p.ended }
}

/// `GET /hls/{channel}/master.m3u8`.
/// A [`crate::PlaybackToken`] extension puts the token in the Steering Manifest's URI.
pub(crate) async fn multivariant(State(state): State<OriginState>, Path(channel): Path<String>, headers: HeaderMap, token: Option<Extension<crate::PlaybackToken>>) -> Response {
    let token = token.map(|Extension(t)| t.0);
    let gzip = crate::media::accepts_gzip(&headers);
    let td = 2;
    if state.shutdown.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, CacheKind::Playlist, td, "server is shutting down", "shutting_down");
    }
    if !valid_name(&channel) {
        return error(StatusCode::NOT_FOUND, CacheKind::Playlist, td, "channel is not live", "not_found");
    }
    let mut relayed = None;
    if let Some(up) = &state.upstream {
        match up.multivariant(&channel).await {
            Ok(mut mirrored) => {
                metrics::counter!("onair_playlist_requests_total", "kind" => "multivariant").increment(1);
                mirrored.content_steering = steering(&state, &channel, token.as_deref());
                return playlist_response(&Rendered::new(mirrored.render()), CacheKind::Playlist, td, gzip);
            }
            Err(why) => relayed = Some(why),
        }
    }
    let Some(b) = state.store.get(&channel) else {
        return match relayed {
            Some(why) => unavailable(why),
            None => error(StatusCode::NOT_FOUND, CacheKind::Playlist, td, "channel is not live", "not_found"),
        };
    };
    let renditions: Vec<Arc<Rendition>> = b.renditions();
    if renditions.is_empty() {
        return error(StatusCode::NOT_FOUND, CacheKind::Playlist, td, "channel has no media yet", "not_found");
    }
    metrics::counter!("onair_playlist_requests_total", "kind" => "multivariant").increment(1);
    let td = renditions.iter().map(|r| r.target_duration()).max().unwrap_or(td);
    let mut m = build_multivariant(&renditions);
    m.content_steering = steering(&state, &channel, token.as_deref());
    playlist_response(&Rendered::new(m.render()), CacheKind::Playlist, td, gzip)
}

/// `GET /hls/{channel}/dvr.m3u8`: the Multivariant Playlist of the DVR window, its variants the
/// renditions' `dvr.m3u8`; served by the node that records the channel.
/// A relay redirects it toward the channel's upstream (the recording node, maybe through more
/// relays): a player follows and plays the window from there.
pub(crate) async fn dvr_multivariant(State(state): State<OriginState>, Path(channel): Path<String>, headers: HeaderMap, token: Option<Extension<crate::PlaybackToken>>) -> Response {
    let td = 2;
    let gzip = crate::media::accepts_gzip(&headers);
    let local = state.store.get(&channel).filter(|b| !b.is_relayed() && state.history.is_some());
    let Some(b) = local.filter(|_| valid_name(&channel)) else {
        return crate::dvr_elsewhere(&state, &channel, "dvr.m3u8", token.as_ref().map(|t| t.0 .0.as_str()));
    };
    let renditions = b.renditions();
    if renditions.is_empty() {
        return error(StatusCode::NOT_FOUND, CacheKind::Playlist, td, "channel has no media yet", "not_found");
    }
    metrics::counter!("onair_playlist_requests_total", "kind" => "dvr_multivariant").increment(1);
    let td = renditions.iter().map(|r| r.target_duration()).max().unwrap_or(td);
    let mut m = build_multivariant(&renditions);
    for v in &mut m.variants {
        v.uri = v.uri.replace("/index.m3u8", "/dvr.m3u8");
    }
    for a in &mut m.audio {
        a.uri = a.uri.replace("/index.m3u8", "/dvr.m3u8");
    }
    playlist_response(&Rendered::new(m.render()), CacheKind::Playlist, td, gzip)
}

/// This node's EXT-X-CONTENT-STEERING for `channel` (a valid channel name: safe in a URL), with
/// the request's playback token (URL-safe: a JWT) so the manifest's URIs can carry it.
fn steering(state: &OriginState, channel: &str, token: Option<&str>) -> Option<onair_hls::ContentSteering> {
    let s = state.steering.as_ref()?;
    let token = token.map(|t| format!("&token={t}")).unwrap_or_default();
    Some(onair_hls::ContentSteering { server_uri: format!("{}{channel}?base={}{token}", s.server, s.pathway), pathway_id: s.pathway.clone() })
}

fn build_multivariant(renditions: &[Arc<Rendition>]) -> MultivariantPlaylist {
    // One consistent read per rendition: its facts and its (peak, average) bit rate.
    let entries: Vec<RenditionEntry> = renditions
        .iter()
        .map(|r| {
            let info = r.info();
            let nominal = info.nominal_bitrate.unwrap_or(UNMEASURED_BANDWIDTH);
            let (peak, average) = r.bitrate().unwrap_or((nominal, nominal));
            RenditionEntry {
                uri: format!("{}/index.m3u8", info.name),
                name: info.name,
                is_video: info.is_video,
                codec: info.codec,
                resolution: info.resolution,
                frame_rate: info.frame_rate,
                channels: info.channels,
                peak,
                average,
            }
        })
        .collect();
    MultivariantPlaylist::from_renditions(&entries)
}

/// `GET /hls/{channel}/{rendition}/index.m3u8[?_HLS_msn=M[&_HLS_part=P]][&_HLS_skip=YES]`, and
/// `dvr.m3u8` (`dvr`) the same with the recorded segments before the RAM window in front.
pub(crate) async fn media_playlist(state: &OriginState, broadcast: Arc<Broadcast>, rendition: Arc<Rendition>, directives: Directives, dvr: bool, gzip: bool) -> Response {
    let td = rendition.target_duration();
    if state.shutdown.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, CacheKind::Playlist, td, "server is shutting down", "shutting_down");
    }
    let kind = if directives.is_blocking() { CacheKind::BlockingPlaylist } else { CacheKind::Playlist };
    metrics::counter!("onair_playlist_requests_total", "kind" => if directives.is_blocking() { "blocking" } else { "non_blocking" })
        .increment(1);
    // A rendition with no part yet: hold like a request for its first part.
    let wait_for = if rendition.position().last_msn.is_none() && !directives.is_blocking() {
        Directives { msn: Some(0), part: Some(0), skip: directives.skip }
    } else {
        directives
    };
    let part_target = rendition.part_target();
    match decide(&wait_for, &edge_of(&rendition.position()), part_target) {
        Decision::Ready => {}
        Decision::BadRequest(why) => return error(StatusCode::BAD_REQUEST, kind, td, why, "bad_directive"),
        Decision::Wait => {
            let started = std::time::Instant::now();
            let mut rx = rendition.subscribe();
            let limit = Duration::from_secs(3 * u64::from(td));
            let waited = tokio::select! {
                w = tokio::time::timeout(limit, rx.wait_for(|p| edge_of(p).satisfies(&wait_for) || p.ended)) => w.is_ok_and(|p| p.is_some()),
                _ = state.shutdown.cancelled() => {
                    return error(StatusCode::SERVICE_UNAVAILABLE, kind, td, "server is shutting down", "shutting_down");
                }
            };
            metrics::histogram!("onair_playlist_block_seconds").record(started.elapsed().as_secs_f64());
            if !waited {
                return error(StatusCode::SERVICE_UNAVAILABLE, kind, td, "the requested part did not appear in time", "block_timeout");
            }
            // Media before metadata: the part that woke this request also woke the requests
            // for the part itself (the Preload Hint); let them go out first, as the viewers are
            // waiting for those bytes, and this playlist only names the next hint.
            tokio::task::yield_now().await;
        }
    }
    let relayed_reports = state.upstream.as_ref().map(|up| up.reports(broadcast.channel())).unwrap_or_default();
    let others = broadcast.renditions();
    let mut versions = vec![(rendition.id(), rendition.version())];
    versions.extend(others.iter().filter(|r| r.id() != rendition.id()).map(|r| (r.id(), r.version())));
    // The DVR playlist looks at the window now, to find the recorded run in front of it; the live
    // one takes its snapshot only when it is not rendered yet.
    let dvr_snap = dvr.then(|| rendition.snapshot());
    let run = dvr_snap.as_ref().and_then(|snap| recorded_run(state, &broadcast, &rendition, snap));
    let key = RenderKey {
        renditions: versions,
        skip: directives.skip == SkipRequest::Yes,
        relayed: relayed_reports.iter().map(|r| (r.last_msn, r.last_part)).collect(),
        dvr: dvr.then(|| run.as_ref().map_or((0, 0), |r| (r.first_msn, r.len))),
    };
    let body = state.renders.0.get_with(key, || {
        metrics::counter!("onair_playlist_renders_total").increment(1);
        let name = if dvr { "dvr.m3u8" } else { "index.m3u8" };
        let snap = dvr_snap.clone().unwrap_or_else(|| rendition.snapshot());
        Arc::new(Rendered::new(build_media_playlist(&broadcast, &rendition, snap, directives.skip, relayed_reports, name, run.clone()).render()))
    });
    playlist_response(&body, kind, rendition.target_duration(), gzip)
}

/// URI of init segment `id`: `init.mp4` for the first, `init{id}.mp4` after a configuration change.
fn init_uri(id: u64) -> String {
    if id == 0 {
        "init.mp4".into()
    } else {
        format!("init{id}.mp4")
    }
}

/// The recorded segments that continue into the RAM window of `snap`: the [`crate::History`]'s run
/// ending at its first segment, if the two meet in time as well as in numbering (a run from an
/// earlier broadcast numbered alike does not).
fn recorded_run(state: &OriginState, broadcast: &Broadcast, rendition: &Rendition, snap: &onair_store::Snapshot) -> Option<crate::Run> {
    let first = snap.segments.first()?;
    let run = state.history.as_ref()?.before(broadcast.channel(), rendition.name(), first.msn)?;
    let last = run.segments.get(run.len.checked_sub(1)?)?;
    let end = last.program_date_time + Duration::from_secs_f64(last.duration.max(0.0));
    let apart = end.duration_since(first.program_date_time).unwrap_or_else(|e| e.duration());
    (run.first_msn + run.len as u64 == first.msn && apart < Duration::from_secs(1)).then_some(run)
}

/// The Media Playlist `name` of `rendition` from its snapshot `snap`; `relayed_reports` are the
/// upstream's Rendition Reports for renditions this node does not hold (a relay pulls only what
/// its viewers watch). `run`: recorded segments listed before the RAM window (the DVR playlist).
fn build_media_playlist(
    broadcast: &Broadcast,
    rendition: &Rendition,
    snap: onair_store::Snapshot,
    skip: SkipRequest,
    relayed_reports: Vec<RenditionReport>,
    playlist_name: &str,
    run: Option<crate::Run>,
) -> MediaPlaylist {
    let td = snap.target_duration;
    // List parts for the segments within 3 × TD of the live edge (RFC 8216bis §4.4.4.9).
    let mut parts_from = snap.segments.len();
    let mut recent = 0.0;
    for (i, s) in snap.segments.iter().enumerate().rev() {
        if recent >= 3.0 * f64::from(td) {
            break;
        }
        recent += s.duration;
        parts_from = i;
    }
    let recorded = run.as_ref().map_or(&[][..], |r| &r.segments[..r.len]);
    let first_recorded = run.as_ref().map_or(0, |r| r.first_msn);
    let mut segments: Vec<MediaSegment> = Vec::with_capacity(recorded.len() + snap.segments.len());
    // Named as they were while in RAM: a listed segment's URI never changes.
    segments.extend(recorded.iter().enumerate().map(|(i, s)| MediaSegment {
        discontinuity: s.discontinuity,
        init_uri: init_uri(s.init_id),
        program_date_time: Some(s.program_date_time),
        duration: s.duration,
        uri: Some(format!("seg{}.m4s", first_recorded + i as u64)),
        ..MediaSegment::default()
    }));
    segments.extend(snap.segments.iter().enumerate().map(|(i, s)| MediaSegment {
            discontinuity: s.discontinuity,
            init_uri: init_uri(s.init_id),
            init_range: None,
            byte_range: None,
            program_date_time: Some(s.program_date_time),
            duration: s.duration,
            uri: s.complete.then(|| format!("seg{}.m4s", s.msn)),
            parts: if i >= parts_from {
                s.parts
                    .iter()
                    .enumerate()
                    .map(|(j, (d, ind))| PartEntry { uri: format!("part{}.m4s", s.first_part_id + j as u64), duration: *d, independent: *ind })
                    .collect()
            } else {
                Vec::new()
            },
        }));
    let server_control = ServerControl::for_targets(td, snap.part_target);
    let own = rendition.name();
    let held = broadcast.renditions();
    let mut rendition_reports: Vec<RenditionReport> = held
        .iter()
        .filter_map(|r| {
            let (name, p) = (r.name(), r.position());
            if name == own {
                return None;
            }
            p.last_msn.map(|m| RenditionReport { uri: format!("../{name}/{playlist_name}"), last_msn: m, last_part: p.last_part })
        })
        .collect();
    let own_uri = format!("../{own}/index.m3u8");
    let others: Vec<RenditionReport> =
        relayed_reports.into_iter().filter(|rr| rr.uri != own_uri && !rendition_reports.iter().any(|h| h.uri == rr.uri)).collect();
    rendition_reports.extend(others);
    // The recorded run's own discontinuities come before the RAM window's first segment.
    let recorded_discontinuities = recorded.iter().filter(|s| s.discontinuity).count() as u64;
    let mut playlist = MediaPlaylist {
        target_duration: td,
        media_sequence: run.as_ref().map(|r| r.first_msn).or(snap.segments.first().map(|s| s.msn)).unwrap_or(0),
        discontinuity_sequence: snap.discontinuity_sequence.saturating_sub(recorded_discontinuities),
        playlist_type: None,
        part_target: Some(snap.part_target),
        server_control: Some(server_control),
        map_uri: "init.mp4".into(),
        skipped_segments: 0,
        segments,
        preload_hint: Some(format!("part{}.m4s", snap.next_part_id)),
        rendition_reports,
        endlist: snap.ended,
    };
    if skip == SkipRequest::Yes {
        if let Some(until) = server_control.can_skip_until {
            playlist.skip_older_than(until);
        }
    }
    playlist
}
