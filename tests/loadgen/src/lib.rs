//! Simulated LL-HLS viewers for load tests and benchmarks.
//!
//! Each viewer behaves like hls.js or the OnAir player in low-latency mode, driving the same
//! sans-IO follower as the player ([`onair_hls::follow`]): it loads one rendition's Media Playlist,
//! starts at the live edge, and for every part requests the Preload Hint and, in parallel, the
//! blocking reload that will list it (`_HLS_msn`/`_HLS_part`, `_HLS_skip=YES`). Each viewer has its
//! own connection pool (HTTP/1.1 keep-alive, or HTTP/2 with prior knowledge), as separate players do.
//!
//! Measured per part: the delay between the origin producing it (its `onair-produced-at` header,
//! Unix ms) and this viewer having it; a part is *late* when that exceeds one part target. A
//! *stall* is a wait of more than [`STALL`] between two parts a viewer receives.

pub mod chat;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::HeaderMap;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use onair_hls::follow::{directive_query, resolve, Next, Position, TrackPlaylist};
use onair_hls::MediaPlaylist;

/// One viewer's HTTP client (its own connection pool).
type Http = Client<HttpConnector, Empty<Bytes>>;

/// Longest a request may take (a blocked request is held at most 3 × the target duration).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A gap between two received parts longer than this counts as a stall (a player holding ~0.6 s
/// of buffer would have run dry).
pub const STALL: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Media Playlist URL of the rendition every viewer watches, or a list to spread viewers over
    /// (viewer `i` watches `playlists[i % len]`, an ABR-like mix).
    pub playlists: Vec<String>,
    /// Simulated viewers.
    pub viewers: usize,
    /// Viewers started per second (ramp-up).
    pub ramp_per_s: f64,
    /// How long the whole run lasts, from the first viewer's start.
    pub duration: Duration,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// Ask Usher first: each viewer GETs this playback-API URL
    /// (`http://usher/api/v1/playback/CHANNEL`) and watches `playlists[i % len]` (a path such as
    /// `source/index.m3u8`, below `/hls/CHANNEL/`) on the first candidate it answers.
    pub usher: Option<String>,
}

/// The header every request of viewer `i` carries: one playback session per simulated viewer
/// (the nodes' definition of a viewer, `onair_cluster::viewers`).
pub const SESSION_HEADER: &str = "x-playback-session-id";

/// What a run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Viewers started.
    pub viewers: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// All requests per second.
    pub requests_per_s: f64,
    /// Part requests per second.
    pub parts_per_s: f64,
    /// Playlist requests per second.
    pub playlists_per_s: f64,
    /// Parts received.
    pub parts: u64,
    /// Delay after the origin produced the part, ms: p50, p95, p99.
    pub delay_ms: [f64; 3],
    /// Parts later than one part target.
    pub late: u64,
    /// `late` as a percentage of `parts`.
    pub late_percent: f64,
    /// Waits longer than [`STALL`] between two parts of a viewer.
    pub stalls: u64,
    /// Failed requests (transport errors and non-200 answers).
    pub errors: u64,
    /// With Usher: viewers placed on each node (by node id; `cdn` for the CDN).
    pub placements: std::collections::BTreeMap<String, u64>,
    /// With Usher: time from Usher's answer to the viewer's first part, ms: p50, max.
    pub first_part_ms: [f64; 2],
    /// With Usher: playback-API requests that failed (no candidate).
    pub usher_errors: u64,
}

#[derive(Default)]
struct Tally {
    parts: AtomicU64,
    playlists: AtomicU64,
    late: AtomicU64,
    stalls: AtomicU64,
    errors: AtomicU64,
    delays: Mutex<Vec<f64>>,
    placements: Mutex<std::collections::BTreeMap<String, u64>>,
    first_parts: Mutex<Vec<f64>>,
    usher_errors: AtomicU64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Runs the viewers and reports.
pub async fn run(config: LoadConfig) -> Report {
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let end = started + config.duration;
    let mut tasks = Vec::with_capacity(config.viewers);
    for i in 0..config.viewers {
        let at = started + Duration::from_secs_f64(i as f64 / config.ramp_per_s.max(0.001));
        if at >= end {
            break;
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Http = Client::builder(TokioExecutor::new()).http2_only(config.http2).pool_max_idle_per_host(4).build(connector);
        let url = config.playlists[i % config.playlists.len().max(1)].clone();
        let tally = tally.clone();
        let usher = config.usher.clone();
        let session = format!("loadgen-{}-{i}", std::process::id());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let (url, placed) = match usher {
                Some(api) => match place(&client, &api, &url, &session).await {
                    Some((url, node)) => {
                        *tally.placements.lock().unwrap_or_else(|e| e.into_inner()).entry(node).or_default() += 1;
                        (url, Some(Instant::now()))
                    }
                    None => {
                        tally.usher_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
                None => (url, None),
            };
            viewer(Viewer { client, url, session, placed }, end, tally).await;
        }));
    }
    let viewers = tasks.len();
    futures::future::join_all(tasks).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut delays = std::mem::take(&mut *tally.delays.lock().unwrap_or_else(|e| e.into_inner()));
    delays.sort_by(f64::total_cmp);
    let parts = tally.parts.load(Ordering::Relaxed);
    let playlists = tally.playlists.load(Ordering::Relaxed);
    let late = tally.late.load(Ordering::Relaxed);
    let mut first_parts = std::mem::take(&mut *tally.first_parts.lock().unwrap_or_else(|e| e.into_inner()));
    first_parts.sort_by(f64::total_cmp);
    let placements = std::mem::take(&mut *tally.placements.lock().unwrap_or_else(|e| e.into_inner()));
    Report {
        placements,
        first_part_ms: [percentile(&first_parts, 50.0), first_parts.last().copied().unwrap_or(0.0)],
        usher_errors: tally.usher_errors.load(Ordering::Relaxed),
        viewers,
        seconds,
        requests_per_s: (parts + playlists) as f64 / seconds,
        parts_per_s: parts as f64 / seconds,
        playlists_per_s: playlists as f64 / seconds,
        parts,
        delay_ms: [percentile(&delays, 50.0), percentile(&delays, 95.0), percentile(&delays, 99.0)],
        late,
        late_percent: if parts == 0 { 0.0 } else { 100.0 * late as f64 / parts as f64 },
        stalls: tally.stalls.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
    }
}

/// One simulated viewer.
struct Viewer {
    client: Http,
    /// Its Media Playlist.
    url: String,
    /// Its playback session id ([`SESSION_HEADER`]).
    session: String,
    /// When Usher answered it, with Usher.
    placed: Option<Instant>,
}

/// Asks Usher (`api`) for a server; returns the Media Playlist URL `rendition` there and the
/// node id.
async fn place(client: &Http, api: &str, rendition: &str, session: &str) -> Option<(String, String)> {
    let request = hyper::Request::get(api).header(SESSION_HEADER, session).body(Empty::new()).ok()?;
    let fetch = async {
        let r = client.request(request).await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.into_body().collect().await.ok().map(|b| b.to_bytes())
    };
    let body = tokio::time::timeout(REQUEST_TIMEOUT, fetch).await.ok().flatten()?;
    let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let first = answer["candidates"].get(0)?;
    let (base, node) = (first["base_url"].as_str()?, first["node"].as_str().unwrap_or(""));
    Some((format!("{base}/hls/{}/{rendition}", answer["channel"].as_str()?), node.to_string()))
}

/// GETs `url` as session `session`: its headers and whole body, or `None` (counted as an error)
/// on any failure.
async fn get(client: &Http, url: &str, session: &str, tally: &Tally) -> Option<(HeaderMap, Bytes)> {
    let fetch = async {
        let request = hyper::Request::get(url).header(SESSION_HEADER, session).body(Empty::new()).ok()?;
        let r = client.request(request).await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        let (parts, body) = r.into_parts();
        Some((parts.headers, body.collect().await.ok()?.to_bytes()))
    };
    let got = tokio::time::timeout(REQUEST_TIMEOUT, fetch).await.ok().flatten();
    if got.is_none() {
        tally.errors.fetch_add(1, Ordering::Relaxed);
    }
    got
}

async fn playlist(v: &Viewer, query: &str, previous: Option<&TrackPlaylist>, tally: &Tally) -> Option<TrackPlaylist> {
    let (_, body) = get(&v.client, &format!("{}{query}", v.url), &v.session, tally).await?;
    tally.playlists.fetch_add(1, Ordering::Relaxed);
    let parsed = MediaPlaylist::parse(&String::from_utf8_lossy(&body)).ok()?;
    TrackPlaylist::update(previous, parsed).ok()
}

/// One viewer until `end`.
async fn viewer(v: Viewer, end: Instant, tally: Arc<Tally>) {
    let Some(mut track) = playlist(&v, "", None, &tally).await else { return };
    let part_target_ms = track.playlist.part_target.unwrap_or(1.0) * 1000.0;
    // Start at the live edge: the hinted next part.
    let mut want = track.last_msn().map_or(Position { msn: 0, part: 0 }, |m| {
        let parts = track.segment(m).map_or(0, |s| s.parts.len() as u32);
        if track.segment(m).is_some_and(|s| s.uri.is_some()) {
            Position { msn: m + 1, part: 0 }
        } else {
            Position { msn: m, part: parts }
        }
    });
    let mut last_part = Instant::now();
    let mut first = true;
    while Instant::now() < end {
        let step = tokio::time::timeout_at(end.into(), async {
            match track.next(want, false) {
                Next::Part { pos, uri } => {
                    let ok = part(&v, &resolve(&v.url, &uri), part_target_ms, &tally).await;
                    Some((ok.then_some(pos), None))
                }
                Next::Hint { pos, uri, reload } => {
                    let (q, part_url) = (directive_query(&reload, true), resolve(&v.url, &uri));
                    let (ok, reloaded) = tokio::join!(part(&v, &part_url, part_target_ms, &tally), playlist(&v, &q, Some(&track), &tally));
                    Some((ok.then_some(pos), reloaded))
                }
                Next::Reload(d) => Some((None, playlist(&v, &directive_query(&d, true), Some(&track), &tally).await)),
                Next::Segment { .. } | Next::Behind => Some((None, playlist(&v, "", None, &tally).await.inspect(|t| {
                    want = t.last_msn().map_or(want, |m| Position { msn: m + 1, part: 0 });
                }))),
                Next::Ended => None,
            }
        })
        .await;
        let Ok(Some((got, reloaded))) = step else { break };
        if let Some(pos) = got {
            if !first && last_part.elapsed() > STALL {
                tally.stalls.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(placed) = v.placed.filter(|_| first) {
                tally.first_parts.lock().unwrap_or_else(|e| e.into_inner()).push(placed.elapsed().as_secs_f64() * 1000.0);
            }
            first = false;
            last_part = Instant::now();
            want = reloaded.as_ref().unwrap_or(&track).after(pos, false);
        }
        match reloaded {
            Some(t) => track = t,
            None if got.is_none() => tokio::time::sleep(Duration::from_millis(100)).await,
            None => {}
        }
    }
}

/// GETs a part; records its delay after production. True if it arrived.
async fn part(v: &Viewer, url: &str, part_target_ms: f64, tally: &Tally) -> bool {
    let Some((headers, _body)) = get(&v.client, url, &v.session, tally).await else { return false };
    let produced: Option<f64> = headers.get("onair-produced-at").and_then(|v| v.to_str().ok()?.parse().ok());
    tally.parts.fetch_add(1, Ordering::Relaxed);
    if let Some(p) = produced {
        let delay = (now_ms() - p).max(0.0);
        if delay > part_target_ms {
            tally.late.fetch_add(1, Ordering::Relaxed);
        }
        tally.delays.lock().unwrap_or_else(|e| e.into_inner()).push(delay);
    }
    true
}
