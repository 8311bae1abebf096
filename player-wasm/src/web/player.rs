//! The running player: one task per track (video, audio) that loads its Media Playlist and feeds
//! its SourceBuffer, a control loop (latency, gaps, ABR, stats, every 100 ms) and a supervisor
//! that moves to another server when the current one fails or lags.

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::{join, join_all};
use onair_hls::{Directives, MediaPlaylist, MultivariantPlaylist};
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CustomEvent, CustomEventInit, HtmlVideoElement, MediaSource};

use super::mse::{self, Track};
use super::net::{self, NetError};
use super::{log, now_ms, sleep, wall_ms};
use crate::abr::{choose_variant, BandwidthEstimator};
use crate::fmp4;
use crate::latency::{Correction, LatencyController};
use crate::selection::{self, Health, Probe};
use crate::timeline::{DomainKey, Timeline};
use crate::track::{directive_query, resolve, Next, Position, TrackPlaylist};

/// What `stats()` returns (camelCase in JavaScript). Times in seconds unless named `_ms`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    /// `starting`, `playing`, `ended` or `error`.
    pub state: String,
    /// Wall clock (server-corrected) minus the PROGRAM-DATE-TIME of the frame on screen.
    pub latency: Option<f64>,
    /// The latency the controller aims for now.
    pub target_latency: f64,
    /// Media buffered ahead of `currentTime`.
    pub buffer: f64,
    /// `playbackRate` now.
    pub playback_rate: f64,
    /// The media element's `currentTime`.
    pub current_time: f64,
    /// Video rendition playing, e.g. `1280x720`, and its BANDWIDTH (bits/s).
    pub rendition: Option<String>,
    /// BANDWIDTH of that rendition, bits/s.
    pub rendition_bandwidth: Option<u64>,
    /// Index of that rendition in the Multivariant Playlist.
    pub rendition_index: usize,
    /// Estimated throughput, bits/s.
    pub bandwidth_estimate: Option<f64>,
    /// Multivariant Playlist URL of the server in use.
    pub server: String,
    /// Stalls (`waiting` after playback started).
    pub stalls: u32,
    /// Server changes after errors or lag.
    pub failovers: u32,
    /// Gaps in the buffer skipped over.
    pub gap_jumps: u32,
    /// Parts and segments appended, and their bytes.
    pub fragments: u64,
    /// Bytes of media appended.
    pub bytes: u64,
    /// Server clock minus local clock, ms.
    pub clock_offset_ms: f64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// Player state shared by its tasks (single-threaded: `Rc<RefCell>`; no borrow is held across
/// an `.await`).
pub(crate) struct State {
    pub video: HtmlVideoElement,
    /// `None` in native mode (no Media Source Extensions: the element plays the playlist itself).
    pub media_source: Option<MediaSource>,
    pub candidates: Vec<String>,
    pub current: usize,
    pub generation: u32,
    pub failover_wanted: bool,
    pub master_url: String,
    pub master: MultivariantPlaylist,
    pub video_variant: usize,
    pub wanted_variant: usize,
    pub forced_variant: Option<usize>,
    pub timeline: Timeline,
    pub latency: LatencyController,
    pub target_configured: Option<f64>,
    pub target_known: bool,
    pub estimator: BandwidthEstimator,
    pub clock_offset_ms: f64,
    pub start_pdt_ms: Option<f64>,
    pub started: bool,
    /// Where playback started (seconds); stalls count only once playback has moved past it.
    pub start_position: f64,
    /// When media was first buffered (monotonic ms).
    pub first_data_ms: Option<f64>,
    pub stopped: bool,
    pub ended_tracks: u32,
    pub tracks: u32,
    pub health: Health,
    pub last_edge_ms: Option<f64>,
    pub stats: Stats,
}

pub(crate) type Shared = Rc<RefCell<State>>;

/// Which SourceBuffer a track task feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The video variant (or the only track of a muxed / audio-only variant).
    Main,
    /// The audio rendition of the variant's audio group.
    Audio,
}

/// Sends `onair:NAME` as a CustomEvent on the video element with `detail`. Dispatch happens in a
/// later microtask, so listeners may call the player (its state is not borrowed by then).
pub(crate) fn emit(video: &HtmlVideoElement, name: &str, detail: &JsValue) {
    let (video, name, detail) = (video.clone(), format!("onair:{name}"), detail.clone());
    wasm_bindgen_futures::spawn_local(async move {
        let init = CustomEventInit::new();
        init.set_detail(&detail);
        if let Ok(ev) = CustomEvent::new_with_event_init_dict(&name, &init) {
            let _ = video.dispatch_event(&ev);
        }
    });
}

/// The MIME types of the main and audio SourceBuffers for a variant.
pub(crate) fn mime_types(master: &MultivariantPlaylist, variant: usize) -> (String, Option<String>) {
    let v = &master.variants[variant];
    let is_audio = |c: &str| c.starts_with("mp4a") || c.starts_with("opus") || c.starts_with("ac-3") || c.starts_with("ec-3");
    let separate_audio = v.audio_group.as_ref().is_some_and(|g| master.audio.iter().any(|a| &a.group_id == g));
    let video: Vec<&str> = v.codecs.iter().map(String::as_str).filter(|c| !is_audio(c)).collect();
    let audio: Vec<&str> = v.codecs.iter().map(String::as_str).filter(|c| is_audio(c)).collect();
    let audio_codecs = if audio.is_empty() { "mp4a.40.2".to_string() } else { audio.join(",") };
    if separate_audio {
        (format!("video/mp4; codecs=\"{}\"", video.join(",")), Some(format!("audio/mp4; codecs=\"{audio_codecs}\"")))
    } else if video.is_empty() {
        (format!("audio/mp4; codecs=\"{audio_codecs}\""), None)
    } else {
        (format!("video/mp4; codecs=\"{}\"", v.codecs.join(",")), None)
    }
}

fn audio_uri(master: &MultivariantPlaylist, variant: usize) -> Option<String> {
    let group = master.variants.get(variant)?.audio_group.as_ref()?;
    let mut media = master.audio.iter().filter(|a| &a.group_id == group);
    let first = media.clone().next()?;
    Some(media.find(|a| a.default).unwrap_or(first).uri.clone())
}

/// Loads a Media Playlist, with directives when blocking, and merges a delta update.
async fn load_playlist(url: &str, directives: Option<Directives>, previous: Option<&TrackPlaylist>, timeout_ms: f64) -> Result<TrackPlaylist, String> {
    let skip = previous.is_some_and(|p| p.playlist.server_control.is_some_and(|s| s.can_skip_until.is_some()));
    let query = directive_query(&directives.unwrap_or_default(), skip);
    let full = format!("{}{}", url.split('?').next().unwrap_or(url), query);
    let (text, _) = net::get_text(&full, timeout_ms).await.map_err(|e| format!("{e} for {full}"))?;
    let parsed = MediaPlaylist::parse(&text).map_err(|e| format!("{e} in {full}"))?;
    match TrackPlaylist::update(previous, parsed) {
        Ok(p) => Ok(p),
        Err(_) => {
            // The delta skipped what we never had: ask for the whole playlist.
            let full = format!("{}{}", url.split('?').next().unwrap_or(url), directive_query(&directives.unwrap_or_default(), false));
            let (text, _) = net::get_text(&full, timeout_ms).await.map_err(|e| format!("{e} for {full}"))?;
            let parsed = MediaPlaylist::parse(&text).map_err(|e| format!("{e} in {full}"))?;
            TrackPlaylist::update(None, parsed).map_err(|e| e.to_string())
        }
    }
}

/// A track's position and what its SourceBuffer holds.
struct Cursor {
    /// Next position to fetch.
    pos: Option<Position>,
    /// Wall-clock start (ms) of `pos`: where to continue on another server.
    next_pdt: Option<f64>,
    /// The domain the SourceBuffer's timestampOffset was set for.
    domain: Option<DomainKey>,
    /// Absolute URL of the init segment appended last.
    init_url: Option<String>,
    timescale: u32,
}

fn report(shared: &Shared, what: &str) {
    let mut st = shared.borrow_mut();
    st.stats.last_error = Some(what.to_string());
    if st.health.failed() {
        st.failover_wanted = true;
    }
    log(what);
}

fn timeout_ms(p: &TrackPlaylist) -> f64 {
    (f64::from(p.playlist.target_duration.max(1)) * 3000.0).max(3000.0) + 1000.0
}

/// One track's loop. Returns when the player stops or the stream ends.
pub(crate) async fn run_track(shared: Shared, kind: Kind, mut sb: Track) {
    let mut cur = Cursor { pos: None, next_pdt: None, domain: None, init_url: None, timescale: 90_000 };
    'server: loop {
        let (generation, media_url, mut variant) = {
            let st = shared.borrow();
            if st.stopped {
                return;
            }
            let uri = match kind {
                Kind::Main => st.master.variants.get(st.wanted_variant).map(|v| v.uri.clone()),
                Kind::Audio => audio_uri(&st.master, st.wanted_variant),
            };
            let Some(uri) = uri else { return };
            (st.generation, resolve(&st.master_url, &uri), st.wanted_variant)
        };
        let mut media_url = media_url;
        let mut pl = match load_playlist(&media_url, None, None, 5000.0).await {
            Ok(p) => p,
            Err(e) => {
                report(&shared, &e);
                wait_for_new_generation(&shared, generation).await;
                continue 'server;
            }
        };
        shared.borrow_mut().health.ok();
        // Where to start on this server.
        let target_ms = {
            let mut st = shared.borrow_mut();
            if kind == Kind::Main && !st.target_known {
                let hold_back = pl.playlist.server_control.map(|s| if pl.playlist.part_target.is_some() { s.part_hold_back } else { s.hold_back });
                let default = hold_back.filter(|h| *h > 0.0).unwrap_or(3.0 * f64::from(pl.playlist.target_duration.max(1)));
                let t = st.target_configured.unwrap_or(default);
                st.latency.set_target(t);
                st.target_known = true;
            }
            st.latency.target() * 1000.0
        };
        let pos = match cur.next_pdt {
            Some(at) => pl.position_at(at, if kind == Kind::Main { 60.0 } else { 5.0 }, kind == Kind::Audio),
            None if kind == Kind::Main => {
                let p = pl.start_position(target_ms, false);
                shared.borrow_mut().start_pdt_ms = p.and_then(|p| pl.start_ms(p));
                p
            }
            None => loop {
                // Audio starts where the video starts.
                let start = shared.borrow().start_pdt_ms;
                if let Some(at) = start {
                    break pl.position_at(at, 5.0, true);
                }
                if shared.borrow().stopped || shared.borrow().generation != generation {
                    continue 'server;
                }
                sleep(20.0).await;
            },
        };
        let Some(mut pos) = pos else {
            sleep(200.0).await;
            continue 'server;
        };
        if let Some(old) = cur.domain {
            // Another server (failover): its PROGRAM-DATE-TIMEs continue ours.
            let key = DomainKey { server: generation, discontinuity: pl.discontinuity_sequence(pos.msn) };
            shared.borrow_mut().timeline.alias(key, old);
            cur.init_url = None;
        }
        loop {
            {
                let st = shared.borrow();
                if st.stopped {
                    return;
                }
                if st.generation != generation {
                    continue 'server;
                }
            }
            // ABR: switch video renditions at a segment boundary. The rendition report told the
            // server has it, so a blocking reload for (msn, 0) on the new rendition is the only request.
            let wanted = shared.borrow().wanted_variant;
            if kind == Kind::Main && pos.part == 0 && wanted != variant {
                let uri = shared.borrow().master.variants.get(wanted).map(|v| v.uri.clone());
                if let Some(uri) = uri {
                    let url = resolve(&shared.borrow().master_url, &uri);
                    let d = Directives { msn: Some(pos.msn), part: pl.playlist.part_target.map(|_| 0), ..Default::default() };
                    match load_playlist(&url, pl.can_block().then_some(d), None, timeout_ms(&pl)).await {
                        Ok(p) if p.segment(pos.msn).is_some() || p.next(pos, false) != Next::Behind => {
                            pl = p;
                            media_url = url;
                            variant = wanted;
                            let mut st = shared.borrow_mut();
                            st.video_variant = wanted;
                            let detail = JsValue::from_f64(wanted as f64);
                            emit(&st.video, "rendition", &detail);
                        }
                        Ok(_) => {}
                        Err(e) => report(&shared, &e),
                    }
                }
            }
            let behind = pl.last_msn().is_some_and(|last| last >= pos.msn + 2);
            let step = pl.next(pos, behind);
            let result: Result<(), String> = match step {
                Next::Segment { msn, uri } => {
                    let p = Position { msn, part: 0 };
                    match net::get(&resolve(&media_url, &uri), timeout_ms(&pl)).await {
                        Ok(f) => {
                            let r = append(&shared, &mut sb, &mut cur, &pl, &media_url, p, true, f, kind, generation).await;
                            pos = pl.after(p, true);
                            r
                        }
                        Err(e) => Err(format!("{e} for segment {msn}")),
                    }
                }
                Next::Part { pos: p, uri } => match net::get(&resolve(&media_url, &uri), timeout_ms(&pl)).await {
                    Ok(f) => {
                        let r = append(&shared, &mut sb, &mut cur, &pl, &media_url, p, false, f, kind, generation).await;
                        pos = pl.after(p, false);
                        r
                    }
                    Err(e) => Err(format!("{e} for part {}.{}", p.msn, p.part)),
                },
                Next::Hint { pos: p, uri, reload } => {
                    let part_url = resolve(&media_url, &uri);
                    let (part, fresh) = join(
                        net::get(&part_url, timeout_ms(&pl)),
                        load_playlist(&media_url, Some(reload), Some(&pl), timeout_ms(&pl)),
                    )
                    .await;
                    match fresh {
                        Ok(fresh) => {
                            pl = fresh;
                            match part {
                                // The hint is the part we wanted only if the new playlist lists it there.
                                Ok(f) if matches!(pl.next(p, false), Next::Part { uri: ref u, .. } if *u == uri) => {
                                    let r = append(&shared, &mut sb, &mut cur, &pl, &media_url, p, false, f, kind, generation).await;
                                    pos = pl.after(p, false);
                                    r
                                }
                                // A hinted part that was never produced (publisher gone) or moved: the playlist decides.
                                Ok(_) | Err(NetError::Status(404)) | Err(NetError::Status(410)) => Ok(()),
                                Err(e) => Err(format!("{e} for hinted part {part_url}")),
                            }
                        }
                        Err(e) => Err(e),
                    }
                }
                Next::Reload(d) => {
                    let blocking = pl.can_block();
                    if !blocking {
                        let wait = pl.playlist.part_target.unwrap_or(f64::from(pl.playlist.target_duration) / 2.0);
                        sleep(wait * 1000.0).await;
                    }
                    match load_playlist(&media_url, blocking.then_some(d), Some(&pl), timeout_ms(&pl)).await {
                        Ok(p) => {
                            pl = p;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Next::Behind => {
                    log("fell behind the playlist window; jumping to live");
                    let target_ms = shared.borrow().latency.target() * 1000.0;
                    match pl.start_position(target_ms, kind == Kind::Audio) {
                        Some(p) => pos = p,
                        None => sleep(100.0).await,
                    }
                    Ok(())
                }
                Next::Ended => {
                    let mut st = shared.borrow_mut();
                    st.ended_tracks += 1;
                    if let Some(ms) = st.media_source.as_ref().filter(|ms| st.ended_tracks >= st.tracks && mse::is_open(ms)) {
                        let _ = ms.end_of_stream();
                        st.stats.state = "ended".into();
                        emit(&st.video, "ended", &JsValue::NULL);
                    }
                    return;
                }
            };
            match result {
                Ok(()) => {
                    let mut st = shared.borrow_mut();
                    st.health.ok();
                    if kind == Kind::Main {
                        st.last_edge_ms = pl.live_edge_ms();
                    }
                }
                Err(e) => {
                    report(&shared, &e);
                    sleep(100.0).await;
                }
            }
        }
    }
}

async fn wait_for_new_generation(shared: &Shared, generation: u32) {
    loop {
        sleep(50.0).await;
        let st = shared.borrow();
        if st.stopped || st.generation != generation || !st.failover_wanted {
            return;
        }
    }
}

/// Appends a fetched part or segment at `p`: the init segment first when it changed, the
/// timestampOffset when entering a new timeline domain, then the media.
#[allow(clippy::too_many_arguments)]
async fn append(
    shared: &Shared,
    sb: &mut Track,
    cur: &mut Cursor,
    pl: &TrackPlaylist,
    media_url: &str,
    p: Position,
    whole: bool,
    fetched: net::Fetched,
    kind: Kind,
    generation: u32,
) -> Result<(), String> {
    let seg = pl.segment(p.msn).ok_or("appended position is not in the playlist")?;
    let init_url = resolve(media_url, &seg.init_uri);
    if cur.init_url.as_deref() != Some(init_url.as_str()) {
        let init = net::get(&init_url, 5000.0).await.map_err(|e| format!("{e} for {init_url}"))?;
        let mime = {
            let st = shared.borrow();
            let (main, audio) = mime_types(&st.master, st.video_variant.min(st.master.variants.len().saturating_sub(1)));
            if kind == Kind::Audio { audio.unwrap_or(main) } else { main }
        };
        sb.change_type(&mime).await.map_err(|e| e.to_string())?;
        sb.append(&init.body).await.map_err(|e| e.to_string())?;
        cur.timescale = fmp4::timescale(&init.body).map_err(|e| e.to_string())?;
        cur.init_url = Some(init_url);
    }
    let start = pl.start_ms(p).ok_or("no time for the appended position")?;
    let duration = if whole {
        seg.duration * 1000.0
    } else {
        seg.parts.get(p.part as usize).map_or(0.0, |x| x.duration * 1000.0)
    };
    let key = DomainKey { server: generation, discontinuity: pl.discontinuity_sequence(p.msn) };
    if cur.domain != Some(key) {
        let tfdt = fmp4::base_media_decode_time(&fetched.body).map_err(|e| e.to_string())?;
        let t = shared.borrow_mut().timeline.t_of(key, start, sb.buffered_end());
        sb.set_offset(t - tfdt as f64 / f64::from(cur.timescale)).await.map_err(|e| e.to_string())?;
        cur.domain = Some(key);
    }
    if let Err(e) = sb.append(&fetched.body).await {
        if !e.quota {
            return Err(e.to_string());
        }
        // Out of room: drop what was played more than 5 s ago and retry once.
        let ct = shared.borrow().video.current_time();
        let _ = sb.remove(0.0, ct - 5.0).await;
        sb.append(&fetched.body).await.map_err(|e| e.to_string())?;
    }
    cur.next_pdt = Some(start + duration);
    cur.pos = Some(p);
    {
        let mut st = shared.borrow_mut();
        st.estimator.sample(fetched.body.len() as u64, fetched.transfer_ms);
        st.stats.fragments += 1;
        st.stats.bytes += fetched.body.len() as u64;
    }
    // Keep about 30 s behind the playhead.
    let ct = shared.borrow().video.current_time();
    if sb.buffered_start().is_some_and(|s| s < ct - 40.0) {
        let _ = sb.remove(0.0, ct - 30.0).await;
    }
    Ok(())
}

/// The control loop: start-up seek, latency chasing, gap skipping, ABR choice and stats.
pub(crate) async fn control(shared: Shared) {
    loop {
        sleep(100.0).await;
        let mut st = shared.borrow_mut();
        if st.stopped {
            return;
        }
        let video = st.video.clone();
        let ct = video.current_time();
        let ranges = mse::ranges(&video.buffered());
        let wall = wall_ms() + st.clock_offset_ms;
        if st.media_source.is_none() {
            // Native HLS (Safari on iPhone): the element chases the live edge itself; report what it shows.
            let start = js_sys::Reflect::get(&video, &"getStartDate".into())
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
                .and_then(|f| f.call0(&video).ok())
                .and_then(|d| d.dyn_into::<js_sys::Date>().ok())
                .map(|d| d.get_time())
                .filter(|t| t.is_finite());
            st.stats.latency = start.map(|s| (wall - (s + ct * 1000.0)) / 1000.0);
            st.stats.current_time = ct;
            st.stats.buffer = ranges.iter().find(|(s, e)| ct >= *s && ct <= *e).map_or(0.0, |r| r.1 - ct);
            st.stats.playback_rate = video.playback_rate();
            st.stats.state = if ct > 0.0 { "playing".into() } else { "starting".into() };
            st.started = ct > 0.0;
            continue;
        }
        if !st.started {
            let Some(&(s, e)) = ranges.first() else { continue };
            if e - s < 0.1 || !st.target_known || video.ready_state() < 1 {
                continue;
            }
            // Start `target` behind the live edge: decode from the key frame at `s`, show from
            // `to`, once the media up to `to` (plus a little) is buffered, or after 3 s anyway.
            let target = st.latency.target();
            let first_data = *st.first_data_ms.get_or_insert(now_ms());
            let latency_at_start = st.timeline.pdt_at(s).map(|pdt| (wall - pdt) / 1000.0);
            let wanted = latency_at_start.map_or(s, |l| s + (l - target)).max(s);
            if e < wanted + 0.25 && now_ms() - first_data < 3000.0 {
                continue;
            }
            // Keep a quarter second in hand: parts arrive in bursts of ~one part target.
            let to = wanted.min((e - 0.25).max(s));
            video.set_current_time(to);
            let _ = video.play();
            st.started = true;
            st.start_position = to;
            st.stats.state = "playing".into();
            continue;
        }
        let containing = ranges.iter().find(|(s, e)| ct >= *s - 0.05 && ct <= *e).copied();
        if containing.is_none() && !video.seeking() {
            // A hole in the buffer (a discontinuity or a failover that left a gap), or a start-up
            // seek the element dropped: go to the next buffered range.
            let before_all = ranges.first().is_some_and(|(s, _)| ct < *s);
            if let Some(&(s, _)) = ranges.iter().find(|(s, _)| *s > ct && (*s - ct < 5.0 || before_all)) {
                video.set_current_time(s + 0.02);
                st.stats.gap_jumps += 1;
                continue;
            }
        }
        let end = containing.map_or(ct, |r| r.1);
        let latency = st.timeline.pdt_at(ct).map(|pdt| (wall - pdt) / 1000.0);
        if let Some(l) = latency {
            if !video.paused() && !video.seeking() {
                match st.latency.update(now_ms() / 1000.0, l, ct, end) {
                    Correction::Rate(r) => {
                        if (video.playback_rate() - r).abs() > 1e-3 {
                            video.set_playback_rate(r);
                        }
                    }
                    Correction::Seek(to) => {
                        video.set_current_time(to);
                        video.set_playback_rate(1.0);
                    }
                }
            }
        }
        let ahead = (end - ct).max(0.0);
        let bandwidths: Vec<u64> = st.master.variants.iter().map(|v| v.bandwidth).collect();
        let estimate = st.estimator.estimate_bps();
        st.wanted_variant = match st.forced_variant {
            Some(i) if i < bandwidths.len() => i,
            _ => choose_variant(&bandwidths, estimate, st.video_variant, ahead, 0.3),
        };
        let v = st.master.variants.get(st.video_variant).cloned();
        let server = st.master_url.clone();
        let offset = st.clock_offset_ms;
        let target = st.latency.target();
        let index = st.video_variant;
        let s = &mut st.stats;
        s.latency = latency;
        s.buffer = ahead;
        s.current_time = ct;
        s.playback_rate = video.playback_rate();
        s.target_latency = target;
        s.bandwidth_estimate = estimate;
        s.rendition = v.as_ref().map(|v| v.resolution.map_or_else(|| v.uri.clone(), |(w, h)| format!("{w}x{h}")));
        s.rendition_bandwidth = v.as_ref().map(|v| v.bandwidth);
        s.rendition_index = index;
        s.server = server;
        s.clock_offset_ms = offset;
    }
}

/// Probes a candidate's Multivariant Playlist: round-trip time and whether it has the stream.
pub(crate) async fn probe(master_url: String) -> Probe {
    let started = now_ms();
    let r = net::get(&master_url, 1500.0).await;
    Probe { rtt_ms: r.as_ref().ok().map(|_| now_ms() - started), has_stream: r.is_ok(), base_url: master_url, live_edge_ms: None }
}

/// Probes candidates and also reads each one's live edge from the rendition's Media Playlist.
async fn probe_with_edge(master_url: String, rendition_uri: String) -> Probe {
    let mut p = probe(master_url.clone()).await;
    if p.has_stream {
        let url = resolve(&master_url, &rendition_uri);
        if let Ok((text, _)) = net::get_text(&url, 1500.0).await {
            p.live_edge_ms = MediaPlaylist::parse(&text).ok().and_then(|m| TrackPlaylist::update(None, m).ok()).and_then(|t| t.live_edge_ms());
        }
    }
    p
}

/// Watches for failures (moves to the best other candidate) and, every 10 s, compares the live
/// edge of the server in use with the other candidates' (moves when it lags).
pub(crate) async fn supervise(shared: Shared) {
    let mut next_lag_check = now_ms() + 10_000.0;
    loop {
        sleep(50.0).await;
        let (stopped, wanted, candidates, current) = {
            let st = shared.borrow();
            (st.stopped, st.failover_wanted, st.candidates.clone(), st.current)
        };
        if stopped {
            return;
        }
        let mut lagging = false;
        if !wanted && candidates.len() > 1 && now_ms() >= next_lag_check {
            next_lag_check = now_ms() + 10_000.0;
            let (uri, edge) = {
                let st = shared.borrow();
                (st.master.variants.get(st.video_variant).map(|v| v.uri.clone()), st.last_edge_ms)
            };
            if let (Some(uri), Some(edge)) = (uri, edge) {
                let others: Vec<_> = candidates.iter().enumerate().filter(|(i, _)| *i != current).map(|(_, c)| probe_with_edge(c.clone(), uri.clone())).collect();
                let probes = join_all(others).await;
                lagging = selection::lags(edge, &probes);
                if lagging {
                    log("the server in use lags behind another candidate; moving");
                }
            }
        }
        if !wanted && !lagging {
            continue;
        }
        let probes = join_all(candidates.iter().cloned().map(probe)).await;
        let ranked = selection::rank(&probes);
        let choice = ranked.iter().copied().find(|&i| i != current).or(ranked.first().copied());
        let Some(choice) = choice else {
            // Nobody has the stream right now: try again shortly.
            sleep(500.0).await;
            continue;
        };
        let master = net::get_text(&candidates[choice], 2000.0).await.ok().and_then(|(t, _)| MultivariantPlaylist::parse(&t).ok());
        let mut st = shared.borrow_mut();
        if let Some(m) = master.filter(|m| !m.variants.is_empty()) {
            if m.variants.len() != st.master.variants.len() {
                st.wanted_variant = 0;
                st.video_variant = 0;
            }
            st.master = m;
        }
        st.current = choice;
        st.master_url = candidates[choice].clone();
        st.generation += 1;
        st.failover_wanted = false;
        st.health.ok();
        if choice != current {
            st.stats.failovers += 1;
            log(&format!("now playing from {}", st.master_url));
            emit(&st.video, "server", &JsValue::from_str(&st.master_url));
        }
    }
}
