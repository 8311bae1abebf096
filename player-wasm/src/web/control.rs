//! The control loop, every 100 ms: start-up seek (also after a seek into the DVR window), latency
//! chasing (at live only), gap skipping, ABR choice, stats.

use wasm_bindgen::JsCast;

use super::mse;
use super::state::Shared;
use super::{now_ms, sleep, wall_ms};
use crate::abr::choose_variant;
use crate::gaps;
use crate::latency::Correction;

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
            // After a seek, what is buffered is the old position's until every track flushed.
            if st.pending_flush > 0 {
                continue;
            }
            let Some(&(s, e)) = ranges.first() else { continue };
            if e - s < 0.1 || !st.target_known || video.ready_state() < 1 {
                continue;
            }
            // Start `target` behind the live edge (or where a seek into the DVR window went):
            // decode from the key frame at `s`, show from `to`, once the media up to `to` (plus
            // a little) is buffered, or after 3 s anyway.
            let target = st.seek_pdt_ms.map_or(st.latency.target(), |at| (wall - at) / 1000.0);
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
        if !video.seeking() {
            // HAVE_FUTURE_DATA is 3: below it a playing element has nothing after the current frame.
            let stalled = !video.paused() && video.ready_state() < 3;
            if let Some(to) = gaps::jump_target(&ranges, ct, stalled) {
                video.set_current_time(to);
                st.stats.gap_jumps += 1;
                continue;
            }
        }
        let containing = ranges.iter().find(|(s, e)| ct >= *s - 0.05 && ct <= *e).copied();
        let end = containing.map_or(ct, |r| r.1);
        let latency = st.timeline.pdt_at(ct).map(|pdt| (wall - pdt) / 1000.0);
        let at_live = st.seek_pdt_ms.is_none();
        if !at_live && (video.playback_rate() - 1.0).abs() > 1e-3 {
            // Playing the DVR window: behind live by choice, at normal speed.
            video.set_playback_rate(1.0);
        }
        if let Some(l) = latency.filter(|_| at_live) {
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
        s.at_live = at_live;
    }
}

