//! The JavaScript API (see `player-wasm/README.md`):
//!
//! ```js
//! import init, { OnAirPlayer } from '/player/onair_player.js';
//! await init();
//! const player = await OnAirPlayer.attach(video, { channel: 'demo', targetLatency: 0.6 });
//! video.addEventListener('onair:server', (e) => console.log('server', e.detail));
//! console.log(player.stats());
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::join_all;
use onair_hls::MultivariantPlaylist;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use web_sys::{Event, HtmlVideoElement};

use super::mse::{self, Track};
use super::net;
use super::loader;
use super::state::{emit, Kind, Shared, State, Stats};
use super::{control, supervisor};
use super::{describe, now_ms, wall_ms};
use crate::abr::BandwidthEstimator;
use crate::latency::{LatencyConfig, LatencyController};
use crate::selection::{self, Health};
use crate::timeline::Timeline;

/// Options of `OnAirPlayer.attach` (camelCase in JavaScript).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Options {
    /// Channel name; with `baseUrl`, the player asks `GET {baseUrl}/api/v1/playback/{channel}`.
    channel: Option<String>,
    /// The OnAir server to ask; defaults to the page's origin.
    base_url: Option<String>,
    /// A Multivariant Playlist URL to play directly (any LL-HLS server), instead of `channel`.
    src: Option<String>,
    /// Target latency in seconds; defaults to the playlist's PART-HOLD-BACK.
    target_latency: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct PlaybackCandidate {
    base_url: String,
}

#[derive(Debug, Deserialize)]
struct Playback {
    candidates: Vec<PlaybackCandidate>,
    token: Option<String>,
    /// When `token` expires, Unix ms (server clock).
    expires_at_ms: Option<f64>,
}

/// Where the player asks for its servers and playback token: `GET {base}/api/v1/playback/{channel}`.
#[derive(Debug, Clone)]
pub(crate) struct PlaybackApi {
    base: String,
    channel: String,
}

/// A playback API answer as the player uses it.
pub(crate) struct Answer {
    /// Multivariant Playlist URLs, best first; a token goes in their path prefix, so every
    /// relative URI below them carries it.
    pub urls: Vec<String>,
    /// When their token expires, Unix ms (server clock); `None` without a token.
    pub expires_at_ms: Option<f64>,
}

impl PlaybackApi {
    /// `{base}[/t/{token}]/hls/{channel}/master.m3u8`.
    fn playlist(&self, base: &str, token: Option<&str>) -> String {
        let prefix = token.map(|t| format!("/t/{t}")).unwrap_or_default();
        format!("{}{prefix}/hls/{}/master.m3u8", base.trim_end_matches('/'), self.channel)
    }

    /// Asks the API. Errors: the request's [`net::NetError`]; an answer that is not the API's
    /// JSON or lists no candidate is [`net::NetError::Network`] with the reason.
    pub(crate) async fn ask(&self) -> Result<Answer, net::NetError> {
        let (text, _) = net::get_text(&format!("{}/api/v1/playback/{}", self.base, self.channel), 3000.0).await?;
        let p: Playback = serde_json::from_str(&text).map_err(|e| net::NetError::Network(format!("playback API: {e}")))?;
        if p.candidates.is_empty() {
            return Err(net::NetError::Network("playback API returned no candidates".into()));
        }
        let urls = p.candidates.iter().map(|c| self.playlist(&c.base_url, p.token.as_deref())).collect();
        Ok(Answer { urls, expires_at_ms: p.token.and(p.expires_at_ms) })
    }
}

/// A player attached to a `<video>` element.
#[wasm_bindgen]
pub struct OnAirPlayer {
    shared: Shared,
    _waiting: Closure<dyn FnMut(Event)>,
}

fn js_err(msg: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&msg.to_string()).into()
}

/// Candidate Multivariant Playlist URLs for the options, and the playback API they came from
/// when its token expires (to renew it).
async fn candidates(opts: &Options) -> Result<(Vec<String>, Option<(PlaybackApi, f64)>), JsValue> {
    if let Some(src) = &opts.src {
        // A relative `src` is relative to the page: every URI below it resolves from an absolute URL.
        let page = web_sys::window().and_then(|w| w.location().href().ok()).unwrap_or_default();
        return Ok((vec![onair_hls::follow::resolve(&page, src)], None));
    }
    let channel = opts.channel.as_deref().ok_or_else(|| js_err("either `channel` or `src` is required"))?;
    let base = match &opts.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => web_sys::window().and_then(|w| w.location().origin().ok()).ok_or_else(|| js_err("no baseUrl and no page origin"))?,
    };
    let api = PlaybackApi { base: base.clone(), channel: channel.to_string() };
    match api.ask().await {
        Ok(answer) => Ok((answer.urls, answer.expires_at_ms.map(|at| (api, at)))),
        Err(net::NetError::Status(404)) => Err(js_err(format!("channel {channel} is not live"))),
        // Not an OnAir server (or an old one): play its playlist directly.
        Err(_) => Ok((vec![api.playlist(&base, None)], None)),
    }
}

/// Server clock minus local clock (ms) from `GET /api/v1/time` (NTP-style midpoint); 0 when
/// the server has no such endpoint (then the local clock is assumed right).
async fn clock_offset(master_url: &str) -> f64 {
    let origin = master_url.find("://").and_then(|s| master_url[s + 3..].find('/').map(|p| &master_url[..s + 3 + p]));
    let Some(origin) = origin else { return 0.0 };
    let sent = wall_ms();
    match net::get_text(&format!("{origin}/api/v1/time"), 2000.0).await {
        Ok((text, _)) => {
            let received = wall_ms();
            let server = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.get("now_ms")?.as_f64());
            server.map_or(0.0, |s| s - (sent + received) / 2.0)
        }
        Err(_) => 0.0,
    }
}

/// Codec strings of a variant from its init segment (EXT-X-MAP of its Media Playlist).
async fn discover_codecs(master_url: &str, variant_uri: &str) -> Result<Vec<String>, JsValue> {
    let media_url = onair_hls::follow::resolve(master_url, variant_uri);
    let (text, _) = net::get_text(&media_url, 3000.0).await.map_err(|e| js_err(format!("{e} for {media_url}")))?;
    let playlist = onair_hls::MediaPlaylist::parse(&text).map_err(js_err)?;
    let map = playlist.segments.first().map_or(playlist.map_uri.as_str(), |s| s.init_uri.as_str());
    if map.is_empty() {
        return Err(js_err("the stream has no CODECS and no EXT-X-MAP: only CMAF (fMP4) is supported"));
    }
    let init_url = onair_hls::follow::resolve(&media_url, map);
    let init = net::get(&init_url, 3000.0).await.map_err(|e| js_err(format!("{e} for {init_url}")))?;
    let codecs = crate::fmp4::codecs(&init.body).map_err(js_err)?;
    if codecs.is_empty() {
        return Err(js_err("no supported codec in the init segment"));
    }
    Ok(codecs)
}

#[wasm_bindgen]
impl OnAirPlayer {
    /// Starts playing into `video`. `options`: `{channel, baseUrl?, targetLatency?}` or `{src}`.
    /// Picks the best candidate server (probing each), opens Media Source Extensions and starts
    /// loading. Rejects when no candidate has the stream or MSE cannot play its codecs.
    pub async fn attach(video: HtmlVideoElement, options: JsValue) -> Result<OnAirPlayer, JsValue> {
        let opts: Options = if options.is_undefined() || options.is_null() {
            Options::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| js_err(format!("options: {e}")))?
        };
        let (candidates, renewal) = candidates(&opts).await?;
        let probes = join_all(candidates.iter().cloned().map(supervisor::probe)).await;
        let ranked = selection::rank(&probes);
        let current = *ranked.first().ok_or_else(|| js_err("no candidate server has the stream"))?;
        let master_url = candidates[current].clone();
        let (text, _) = net::get_text(&master_url, 3000.0).await.map_err(|e| js_err(format!("{e} for {master_url}")))?;
        let mut master = MultivariantPlaylist::parse(&text).map_err(js_err)?;
        if master.variants.is_empty() && text.contains("#EXT-X-TARGETDURATION") {
            // A Media Playlist given directly: it is the only variant.
            master.variants.push(onair_hls::Variant {
                uri: master_url.clone(),
                bandwidth: 0,
                average_bandwidth: None,
                codecs: Vec::new(),
                resolution: None,
                frame_rate: None,
                audio_group: None,
            });
        }
        if master.variants.is_empty() {
            return Err(js_err("the Multivariant Playlist lists no variant"));
        }
        // Only OnAir servers have the time endpoint (their playlists live at /hls/CHANNEL/master.m3u8).
        let onair_server = master_url.split('?').next().is_some_and(|u| u.contains("/hls/") && u.ends_with("/master.m3u8"));
        let clock_offset_ms = if onair_server { clock_offset(&master_url).await } else { 0.0 };
        let mse_available = web_sys::window().is_some_and(|w| js_sys::Reflect::has(&w, &"MediaSource".into()).unwrap_or(false));
        if mse_available {
            mse::keep_playable(&mut master);
            if master.variants.is_empty() {
                return Err(js_err("this browser can decode none of the stream's codecs"));
            }
        }
        // Start on the lowest rendition that is at least 1 Mbit/s, or the highest: ABR moves from there.
        let start = (0..master.variants.len()).filter(|&i| master.variants[i].bandwidth >= 1_000_000).min_by_key(|&i| master.variants[i].bandwidth).unwrap_or(0);
        let (media_source, tracks) = if mse_available {
            if master.variants[start].codecs.is_empty() {
                // No CODECS attribute (FFmpeg's HLS muxer writes none): read them from the init segment.
                let codecs = discover_codecs(&master_url, &master.variants[start].uri).await?;
                for v in master.variants.iter_mut().filter(|v| v.codecs.is_empty()) {
                    v.codecs = codecs.clone();
                }
            }
            let (main_mime, audio_mime) = crate::variants::mime_types(&master, start);
            let (media_source, _url) = mse::open(&video).await?;
            let main = Track::add(&media_source, &main_mime).map_err(js_err)?;
            let audio = match &audio_mime {
                Some(m) => Some(Track::add(&media_source, m).map_err(js_err)?),
                None => None,
            };
            (Some(media_source), Some((main, audio)))
        } else if !video.can_play_type("application/vnd.apple.mpegurl").is_empty() {
            // Safari on iPhone: no MSE, but native (LL-)HLS. The element loads and chases the edge itself.
            video.set_src(&master_url);
            let _ = video.play();
            (None, None)
        } else {
            return Err(js_err("this browser has neither Media Source Extensions nor native HLS"));
        };
        let shared: Shared = Rc::new(RefCell::new(State {
            video: video.clone(),
            media_source,
            candidates,
            current,
            generation: 0,
            failover_wanted: false,
            master_url: master_url.clone(),
            master,
            video_variant: start,
            wanted_variant: start,
            forced_variant: None,
            timeline: Timeline::new(),
            latency: LatencyController::new(LatencyConfig::for_target(opts.target_latency.unwrap_or(1.0))),
            target_configured: opts.target_latency,
            target_known: false,
            estimator: BandwidthEstimator::new(),
            clock_offset_ms,
            start_pdt_ms: None,
            started: false,
            start_position: 0.0,
            first_data_ms: None,
            stopped: false,
            ended_tracks: 0,
            tracks: tracks.as_ref().map_or(0, |(_, audio)| 1 + u32::from(audio.is_some())),
            health: Health::new(2),
            last_edge_ms: None,
            seeks: 0,
            seek_pdt_ms: None,
            live_url: None,
            pending_flush: 0,
            stats: Stats { state: "starting".into(), server: master_url, clock_offset_ms, at_live: true, ..Stats::default() },
        }));
        let waiting = {
            let shared = shared.clone();
            Closure::<dyn FnMut(Event)>::new(move |_e: Event| {
                let mut st = shared.borrow_mut();
                // The start-up seek makes the element wait too: only count stalls after playback moved.
                if st.started && st.video.current_time() > st.start_position + 0.5 && st.stats.state == "playing" {
                    st.stats.stalls += 1;
                    st.latency.on_stall(now_ms() / 1000.0);
                    emit(&st.video, "stall", &JsValue::from_f64(f64::from(st.stats.stalls)));
                }
            })
        };
        video.add_event_listener_with_callback("waiting", waiting.as_ref().unchecked_ref())?;
        if let Some((main, audio)) = tracks {
            wasm_bindgen_futures::spawn_local(loader::run_track(shared.clone(), Kind::Main, main));
            if let Some(a) = audio {
                wasm_bindgen_futures::spawn_local(loader::run_track(shared.clone(), Kind::Audio, a));
            }
            wasm_bindgen_futures::spawn_local(supervisor::supervise(shared.clone()));
            wasm_bindgen_futures::spawn_local(supervisor::steer(shared.clone()));
            if let Some((api, expires_at_ms)) = renewal {
                wasm_bindgen_futures::spawn_local(supervisor::renew_token(shared.clone(), api, expires_at_ms));
            }
            if let Some(channel) = opts.channel.clone().filter(|_| opts.src.is_none()) {
                wasm_bindgen_futures::spawn_local(supervisor::heartbeat(shared.clone(), channel));
            }
        }
        wasm_bindgen_futures::spawn_local(control::control(shared.clone()));
        Ok(OnAirPlayer { shared, _waiting: waiting })
    }

    /// A snapshot: `{state, latency, targetLatency, buffer, playbackRate, currentTime, rendition,
    /// renditionBandwidth, renditionIndex, bandwidthEstimate, server, stalls, failovers, steered,
    /// tokenRenewals, gapJumps, fragments, bytes, clockOffsetMs, lastError}`. Seconds, bits/s, bytes.
    pub fn stats(&self) -> JsValue {
        let stats = self.shared.borrow().stats.clone();
        stats.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).unwrap_or(JsValue::NULL)
    }

    /// The renditions: `[{index, bandwidth, resolution, codecs}]`.
    pub fn renditions(&self) -> JsValue {
        let st = self.shared.borrow();
        let list: Vec<serde_json::Value> = st
            .master
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::json!({
                    "index": i, "bandwidth": v.bandwidth, "codecs": v.codecs.join(","),
                    "resolution": v.resolution.map(|(w, h)| format!("{w}x{h}")),
                })
            })
            .collect();
        serde_json::Value::Array(list).serialize(&serde_wasm_bindgen::Serializer::json_compatible()).unwrap_or(JsValue::NULL)
    }

    /// Forces a rendition by index (from `renditions()`), or `-1` for automatic (ABR).
    #[wasm_bindgen(js_name = setRendition)]
    pub fn set_rendition(&self, index: i32) {
        self.shared.borrow_mut().forced_variant = usize::try_from(index).ok();
    }

    /// Sets the target latency in seconds.
    #[wasm_bindgen(js_name = setTargetLatency)]
    pub fn set_target_latency(&self, seconds: f64) {
        let mut st = self.shared.borrow_mut();
        st.target_configured = Some(seconds);
        st.latency.set_target(seconds);
    }

    /// Seeks `seconds` behind the live edge, into the DVR window of the server in use (an OnAir
    /// origin's `/hls/{channel}/dvr.m3u8`; not before its oldest media). Playback continues at
    /// normal speed from there, latency not chased, until [`OnAirPlayer::go_live`]. Resolves when
    /// the DVR playlist is loaded and the tracks start over; rejects when the server has no DVR
    /// window for the channel, or in native HLS mode.
    #[wasm_bindgen(js_name = seekBack)]
    pub fn seek_back(&self, seconds: f64) -> js_sys::Promise {
        let shared = self.shared.clone();
        wasm_bindgen_futures::future_to_promise(async move { seek(&shared, Some(seconds)).await.map(|()| JsValue::UNDEFINED) })
    }

    /// Returns to the live edge after [`OnAirPlayer::seek_back`] (target latency chased again).
    #[wasm_bindgen(js_name = goLive)]
    pub fn go_live(&self) -> js_sys::Promise {
        let shared = self.shared.clone();
        wasm_bindgen_futures::future_to_promise(async move { seek(&shared, None).await.map(|()| JsValue::UNDEFINED) })
    }

    /// Stops loading and detaches from the video element.
    pub fn destroy(&self) {
        let mut st = self.shared.borrow_mut();
        st.stopped = true;
        let _ = st.video.remove_event_listener_with_callback("waiting", self._waiting.as_ref().unchecked_ref());
        st.video.remove_attribute("src").unwrap_or_else(|e| super::log(&describe(&e)));
        st.video.load();
    }
}

/// A seek: `back_s` seconds behind the live edge on the DVR playlists, or (`None`) back to the
/// live ones. Loads the Multivariant Playlist to play, then has every track flush its buffer and
/// start over on a fresh timeline (see `loader::run_track`).
async fn seek(shared: &Shared, back_s: Option<f64>) -> Result<(), JsValue> {
    let (now_url, native) = {
        let st = shared.borrow();
        (st.master_url.clone(), st.media_source.is_none())
    };
    if native {
        return Err(js_err("seeking back needs Media Source Extensions (native HLS mode)"));
    }
    let live = shared.borrow().live_url.clone();
    let url = match back_s {
        Some(_) if crate::dvr::is_dvr(&now_url) => now_url.clone(),
        Some(_) => crate::dvr::dvr_url(&now_url).ok_or_else(|| js_err("this server offers no DVR window"))?,
        None => live.clone().or_else(|| crate::dvr::live_url(&now_url)).unwrap_or(now_url.clone()),
    };
    // A relay redirects the DVR playlist to the node that records the channel: play it from there.
    let (text, url) = match net::get_text(&url, 3000.0).await {
        Ok((t, f)) => (t, f.url),
        Err(net::NetError::Status(404)) => return Err(js_err("this server has no DVR window for the channel")),
        Err(e) => return Err(js_err(format!("{e} for {url}"))),
    };
    let mut master = MultivariantPlaylist::parse(&text).map_err(js_err)?;
    mse::keep_playable(&mut master);
    if master.variants.is_empty() {
        return Err(js_err("the playlist lists no playable variant"));
    }
    let mut st = shared.borrow_mut();
    if master.variants.len() != st.master.variants.len() {
        st.wanted_variant = 0;
        st.video_variant = 0;
    }
    st.master = master;
    st.master_url = url;
    st.live_url = match back_s {
        Some(_) => live.or(Some(now_url)),
        None => None,
    };
    let edge = st.last_edge_ms.unwrap_or_else(|| wall_ms() + st.clock_offset_ms);
    st.seek_pdt_ms = back_s.map(|b| crate::dvr::seek_target_ms(edge, b, st.stats.dvr_start_ms));
    st.start_pdt_ms = None;
    st.seeks += 1;
    st.pending_flush = st.tracks;
    st.generation += 1;
    st.started = false;
    st.first_data_ms = None;
    st.ended_tracks = 0;
    st.timeline = Timeline::new();
    st.stats.state = "seeking".into();
    if back_s.is_none() {
        st.stats.dvr_start_ms = None;
    }
    let detail = JsValue::from_f64(st.seek_pdt_ms.unwrap_or(f64::NAN));
    emit(&st.video, "seek", &detail);
    Ok(())
}

use serde::Serialize as _;
