//! Server selection at run time: probes candidates, moves to the best other one when the server in
//! use fails, checks every 10 s whether it lags behind the others, follows Content Steering, and
//! renews an expiring playback token.

use futures::future::join_all;
use onair_hls::{MediaPlaylist, MultivariantPlaylist};
use wasm_bindgen::JsValue;

use super::net;
use super::state::{emit, Shared};
use super::api::PlaybackApi;
use super::{log, now_ms, sleep, wall_ms};
use crate::selection::{self, Probe};
use crate::steering::Manifest;
use onair_hls::follow::{resolve, TrackPlaylist};

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
        if switch_to(&shared, &candidates[choice], choice).await {
            shared.borrow_mut().stats.failovers += 1;
        }
    }
}

/// Moves playback to candidate `choice` (`master_url`): loads its Multivariant Playlist and makes
/// it current; true when the server changed.
/// Playing the DVR window, it moves to the new server's DVR playlists, or to live where it has none.
async fn switch_to(shared: &Shared, master_url: &str, choice: usize) -> bool {
    // The playlist and the URL that answered it (a relay redirects DVR playlists to the recording node).
    let load = |url: String| async move {
        let (text, f) = net::get_text(&url, 2000.0).await.ok()?;
        let mut m = MultivariantPlaylist::parse(&text).ok()?;
        if shared.borrow().media_source.is_some() {
            super::mse::keep_playable(&mut m);
        }
        Some((m, f.url))
    };
    let dvr = shared.borrow().seek_pdt_ms.is_some();
    let live = master_url.to_string();
    let mut master_url = master_url.to_string();
    let mut master = None;
    if let Some(url) = crate::dvr::dvr_url(&master_url).filter(|_| dvr) {
        if let Some((m, answered)) = load(url).await {
            master = Some(m);
            master_url = answered;
        }
    }
    if master.is_none() {
        master = load(master_url.clone()).await.map(|(m, _)| m);
    }
    let mut st = shared.borrow_mut();
    if dvr && !crate::dvr::is_dvr(&master_url) {
        log("the new server has no DVR window: back to live");
        st.seek_pdt_ms = None;
        st.live_url = None;
    } else if dvr {
        st.live_url = Some(live);
    }
    let previous = st.current;
    if let Some(m) = master.filter(|m| !m.variants.is_empty()) {
        if m.variants.len() != st.master.variants.len() {
            st.wanted_variant = 0;
            st.video_variant = 0;
        }
        st.master = m;
    }
    st.current = choice;
    st.master_url = master_url;
    st.generation += 1;
    st.failover_wanted = false;
    st.health.ok();
    if choice != previous {
        log(&format!("now playing from {}", st.master_url));
        emit(&st.video, "server", &JsValue::from_str(&st.master_url));
    }
    choice != previous
}

/// Content Steering (RFC 8216bis §7): while the playlist in use names a steering server, asks it
/// every TTL (with `_HLS_pathway`) and moves to the server it ranks first, adding servers it names
/// to the candidates.
pub(crate) async fn steer(shared: Shared) {
    let mut reload: Option<String> = None;
    loop {
        let (stopped, steering, master_url) = {
            let st = shared.borrow();
            (st.stopped, st.master.content_steering.clone(), st.master_url.clone())
        };
        if stopped {
            return;
        }
        let Some(cs) = steering else {
            sleep(10_000.0).await;
            continue;
        };
        let base = reload.clone().unwrap_or_else(|| cs.server_uri.clone());
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}_HLS_pathway={}", cs.pathway_id);
        let manifest = match net::get_text(&url, 2000.0).await {
            Ok((text, _)) => Manifest::parse(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let manifest = match manifest {
            Ok(m) => m,
            Err(e) => {
                log(&format!("steering manifest {url}: {e}"));
                sleep(10_000.0).await;
                continue;
            }
        };
        reload = manifest.reload_uri.as_ref().map(|r| resolve(&url, r));
        if let Some(best) = manifest.servers(&cs.pathway_id, &master_url).into_iter().next().filter(|b| *b != master_url) {
            let choice = {
                let mut st = shared.borrow_mut();
                match st.candidates.iter().position(|c| *c == best) {
                    Some(i) => i,
                    None => {
                        st.candidates.push(best.clone());
                        st.candidates.len() - 1
                    }
                }
            };
            let wanted = shared.borrow().failover_wanted;
            if !wanted && probe(best.clone()).await.has_stream && switch_to(&shared, &best, choice).await {
                shared.borrow_mut().stats.steered += 1;
            }
        }
        sleep((manifest.ttl_s * 1000.0).clamp(1000.0, 600_000.0)).await;
    }
}

/// Every 10 s while playing a channel: `GET {server}/api/v1/heartbeat/{channel}?session=ID` to the
/// server in use, so this viewer counts even behind a CDN (`onair_cluster::viewers`). The id is
/// random per player; a failed heartbeat is only logged.
pub(crate) async fn heartbeat(shared: Shared, channel: String) {
    let id: String = (0..4).map(|_| format!("{:08x}", (js_sys::Math::random() * f64::from(u32::MAX)) as u32)).collect();
    loop {
        if shared.borrow().stopped {
            return;
        }
        let master = shared.borrow().master_url.clone();
        let origin = master.find("://").and_then(|s| master[s + 3..].find('/').map(|p| master[..s + 3 + p].to_string()));
        if let Some(origin) = origin {
            if let Err(e) = net::get_text(&format!("{origin}/api/v1/heartbeat/{channel}?session={id}"), 3000.0).await {
                log(&format!("heartbeat: {e}"));
            }
        }
        sleep(10_000.0).await;
    }
}

/// Asks the playback API again before the token expires (see [`crate::token::renew_at_ms`]),
/// replaces the candidates with the fresh URLs and moves to the fresh URL of the server in use
/// (same numbering: the loader continues where it was). A failed renewal is retried every 2 s.
pub(crate) async fn renew_token(shared: Shared, api: PlaybackApi, expires_at_ms: f64) {
    // Server clock, ms.
    let server_now = |shared: &Shared| wall_ms() + shared.borrow().clock_offset_ms;
    let mut renew_at = crate::token::renew_at_ms(expires_at_ms, server_now(&shared));
    loop {
        sleep(renew_at - server_now(&shared)).await;
        if shared.borrow().stopped {
            return;
        }
        let answer = match api.ask().await {
            Ok(a) => a,
            Err(e) => {
                log(&format!("cannot renew the playback token: {e}"));
                renew_at = server_now(&shared) + 2_000.0;
                continue;
            }
        };
        let Some(expires_at_ms) = answer.expires_at_ms else { return };
        renew_at = crate::token::renew_at_ms(expires_at_ms, server_now(&shared));
        let choice = {
            let mut st = shared.borrow_mut();
            st.candidates = answer.urls;
            st.stats.token_renewals += 1;
            crate::token::same_server(&st.master_url, &st.candidates)
        };
        match choice {
            // The same server under the new token: not a failover.
            Some(i) => {
                let url = shared.borrow().candidates[i].clone();
                if url != shared.borrow().master_url {
                    switch_to(&shared, &url, i).await;
                }
            }
            // The server in use is no longer offered: move to the best fresh candidate.
            None => shared.borrow_mut().failover_wanted = true,
        }
    }
}
