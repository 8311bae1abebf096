//! One task per track (video, audio): loads its Media Playlist (blocking reloads, delta updates),
//! fetches parts, hinted parts and segments, and feeds its SourceBuffer.

use futures::future::join;
use onair_hls::{Directives, MediaPlaylist};
use wasm_bindgen::JsValue;

use super::mse::{self, Track};
use super::net::{self, NetError};
use super::state::{emit, Kind, Shared};
use super::{log, sleep};
use crate::fmp4;
use crate::timeline::DomainKey;
use onair_hls::follow::{directive_query, resolve, Next, Position, TrackPlaylist};
use crate::variants::{audio_uri, mime_types};

/// Loads a Media Playlist, with directives when blocking, and merges a delta update.
pub(crate) async fn load_playlist(url: &str, directives: Option<Directives>, previous: Option<&TrackPlaylist>, timeout_ms: f64) -> Result<TrackPlaylist, String> {
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
    /// Absolute URL (and byte range) of the init segment appended last.
    init_url: Option<String>,
    timescale: u32,
    /// The player's seek count this cursor belongs to.
    seeks: u32,
}

impl Cursor {
    fn new(seeks: u32) -> Self {
        Cursor { pos: None, next_pdt: None, domain: None, init_url: None, timescale: 90_000, seeks }
    }
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
    let mut cur = Cursor::new(0);
    'server: loop {
        let seeks = shared.borrow().seeks;
        if seeks != cur.seeks {
            // A seek (into the DVR window or back to live): drop everything buffered and start
            // over where the seek went, on a fresh timeline.
            if let Err(e) = sb.remove(0.0, f64::INFINITY).await {
                log(&format!("flushing the buffer for a seek: {e}"));
            }
            cur = Cursor::new(seeks);
            let mut st = shared.borrow_mut();
            st.pending_flush = st.pending_flush.saturating_sub(1);
        }
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
                let seek = shared.borrow().seek_pdt_ms;
                let p = match seek {
                    Some(at) => pl.position_at(at, 60.0, false),
                    None => pl.start_position(target_ms, false),
                };
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
                Next::Segment { msn, uri, range } => {
                    let p = Position { msn, part: 0 };
                    match net::get_range(&resolve(&media_url, &uri), range, timeout_ms(&pl)).await {
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
                            // The hint is the part we wanted only if the new playlist lists it next, and it
                            // goes where that playlist puts it: a hinted part may open the next segment,
                            // after a discontinuity (a publisher that reconnected).
                            let listed = match pl.next(p, false) {
                                Next::Part { pos: at, uri: u } if u == uri => Some(at),
                                _ => None,
                            };
                            // A hinted part that opens a segment is where a pending rendition switch
                            // happens: it is fetched again from the new rendition instead.
                            let switch_here = listed.is_some_and(|at| at.part == 0)
                                && kind == Kind::Main
                                && shared.borrow().wanted_variant != variant;
                            match (part, listed) {
                                (Ok(_), Some(at)) if switch_here => {
                                    pos = at;
                                    Ok(())
                                }
                                (Ok(f), Some(at)) => {
                                    let r = append(&shared, &mut sb, &mut cur, &pl, &media_url, at, false, f, kind, generation).await;
                                    pos = pl.after(at, false);
                                    r
                                }
                                // A hinted part that was never produced (publisher gone) or moved: the playlist decides.
                                (Ok(_), None) | (Err(NetError::Status(404)), _) | (Err(NetError::Status(410)), _) => Ok(()),
                                (Err(e), _) => Err(format!("{e} for hinted part {part_url}")),
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
                    // Behind the window: to live, or (playing the DVR window) to its oldest media.
                    let (target_ms, dvr) = {
                        let st = shared.borrow();
                        (st.latency.target() * 1000.0, st.seek_pdt_ms.is_some())
                    };
                    log(if dvr { "fell behind the DVR window; moving to its start" } else { "fell behind the playlist window; jumping to live" });
                    match pl.start_position(if dvr { f64::INFINITY } else { target_ms }, kind == Kind::Audio) {
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
                        let first = pl.playlist.segments.first().and_then(|s| s.program_date_time);
                        st.stats.dvr_start_ms = first
                            .filter(|_| crate::dvr::is_dvr(&media_url))
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map(|d| d.as_secs_f64() * 1000.0);
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
    mut fetched: net::Fetched,
    kind: Kind,
    generation: u32,
) -> Result<(), String> {
    let seg = pl.segment(p.msn).ok_or("appended position is not in the playlist")?;
    let init_url = resolve(media_url, &seg.init_uri);
    let init_key = match seg.init_range {
        Some(r) => format!("{init_url}#{}", r.http_range()),
        None => init_url.clone(),
    };
    if cur.init_url.as_deref() != Some(init_key.as_str()) {
        let mut init = net::get_range(&init_url, seg.init_range, 5000.0).await.map_err(|e| format!("{e} for {init_url}"))?;
        let mime = {
            let st = shared.borrow();
            let (main, audio) = mime_types(&st.master, st.video_variant.min(st.master.variants.len().saturating_sub(1)));
            if kind == Kind::Audio { audio.unwrap_or(main) } else { main }
        };
        sb.change_type(&mime).await.map_err(|e| e.to_string())?;
        sb.append(&mut init.body).await.map_err(|e| e.to_string())?;
        cur.timescale = fmp4::timescale(&init.body).map_err(|e| e.to_string())?;
        cur.init_url = Some(init_key);
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
        // A new domain starts where *every* track's media ends (the element's buffered ranges are
        // the tracks' intersection): starting it at this track's own end, when this track ran
        // ahead of the other, would leave the other a gap it never plays across. An overlap is
        // harmless: the new media replaces what it covers.
        let common_end = mse::last_end(&shared.borrow().video.buffered());
        let t = shared.borrow_mut().timeline.t_of(key, start, common_end.or_else(|| sb.buffered_end()));
        sb.set_offset(t - tfdt as f64 / f64::from(cur.timescale)).await.map_err(|e| e.to_string())?;
        cur.domain = Some(key);
    }
    if let Err(e) = sb.append(&mut fetched.body).await {
        if !e.quota {
            return Err(e.to_string());
        }
        // Out of room: drop what was played more than 5 s ago and retry once.
        let ct = shared.borrow().video.current_time();
        let _ = sb.remove(0.0, ct - 5.0).await;
        sb.append(&mut fetched.body).await.map_err(|e| e.to_string())?;
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

