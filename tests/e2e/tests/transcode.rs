//! The ABR ladder end to end: the real 720p sample is published over RTMP, the server encodes the
//! 480p and 360p rungs, and ffprobe, the playlists and hls.js check that they line up.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;

/// Media Playlist facts per MSN: (EXTINF duration, PROGRAM-DATE-TIME).
fn segments(playlist: &str) -> BTreeMap<u64, (String, String)> {
    let mut msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("media sequence");
    let mut out = BTreeMap::new();
    let mut pdt = String::new();
    for line in playlist.lines() {
        if let Some(p) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = p.to_string();
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            out.insert(msn, (d.trim_end_matches(',').to_string(), pdt.clone()));
            msn += 1;
        }
    }
    out
}

/// ffprobe on init + segment `msn` of a rendition: (width, height, codec, key frame pts in seconds, first pts).
async fn probe_segment(server: &TestServer, rendition: &str, msn: u64) -> (u64, u64, String, Vec<String>, String) {
    let base = server.url(&format!("/hls/demo/{rendition}"));
    let init = client().get(format!("{base}/init.mp4")).send().await.expect("init").bytes().await.expect("bytes");
    let seg = client().get(format!("{base}/seg{msn}.m4s")).send().await.expect("seg").bytes().await.expect("bytes");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seg.mp4");
    std::fs::write(&path, [&init[..], &seg[..]].concat()).expect("write");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ffprobe")
            .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_packets", "-show_entries"])
            .args(["packet=pts_time,flags:stream=width,height,codec_name"])
            .arg(&path)
            .output()
            .expect("ffprobe")
    })
    .await
    .expect("join");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = &v["streams"][0];
    let packets = v["packets"].as_array().expect("packets");
    let keys = packets
        .iter()
        .filter(|p| p["flags"].as_str().unwrap_or("").starts_with('K'))
        .map(|p| p["pts_time"].as_str().unwrap_or("").to_string())
        .collect();
    let first = packets.first().map(|p| p["pts_time"].as_str().unwrap_or("").to_string()).unwrap_or_default();
    (s["width"].as_u64().unwrap_or(0), s["height"].as_u64().unwrap_or(0), s["codec_name"].as_str().unwrap_or("").into(), keys, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ladder_renditions_are_aligned_and_switchable() {
    let server = TestServer::start_with(|c| c.transcode.enabled = true).await;
    let _publisher = server.publish();
    let renditions = ["source", "480p", "360p", "audio"];
    server.wait_renditions("demo", &renditions, 3).await;

    let master = get_text(&server.url("/hls/demo/master.m3u8")).await.expect("master");
    for (res, uri) in [("1280x720", "source/index.m3u8"), ("854x480", "480p/index.m3u8"), ("640x360", "360p/index.m3u8")] {
        assert!(master.contains(&format!("RESOLUTION={res}")) && master.contains(uri), "master lacks {uri}:\n{master}");
    }
    assert_eq!(master.matches("AVERAGE-BANDWIDTH=").count(), 3);

    // Segment boundaries: same MSNs with the same durations and PROGRAM-DATE-TIMEs in every video rendition.
    let mut tables = Vec::new();
    for r in ["source", "480p", "360p"] {
        tables.push(segments(&get_text(&server.url(&format!("/hls/demo/{r}/index.m3u8"))).await.expect("playlist")));
    }
    let common: Vec<u64> = tables[0].keys().filter(|m| tables.iter().all(|t| t.contains_key(m))).copied().collect();
    assert!(common.len() >= 2, "too few common segments: {common:?}");
    for m in &common {
        assert_eq!(tables[0][m], tables[1][m], "segment {m}: source vs 480p");
        assert_eq!(tables[0][m], tables[2][m], "segment {m}: source vs 360p");
    }

    // Key frames at the same presentation times, read back with ffprobe from the segments themselves.
    for m in common.iter().rev().take(2) {
        let src = probe_segment(&server, "source", *m).await;
        for (r, w, h) in [("480p", 854, 480), ("360p", 640, 360)] {
            let got = probe_segment(&server, r, *m).await;
            assert_eq!((got.0, got.1, got.2.as_str()), (w, h, "h264"), "{r} stream");
            assert_eq!(got.3, src.3, "segment {m}: key frames of {r} vs source");
            assert_eq!(got.4, src.4, "segment {m}: first pts of {r} vs source");
        }
        println!("segment {m}: key frames at {:?} s in every rendition", src.3);
    }

    // hls.js switches levels on command during playback.
    let v = play_with_hlsjs(&server, 12, Some("switch")).await;
    let played = played_seconds(&v);
    let switched: Vec<i64> = v["switches"].as_array().expect("switches").iter().filter_map(|s| s["level"].as_i64()).collect();
    println!(
        "hls.js with forced level switches: levels {}, switched to {switched:?}, played {played:.1} s in 12 s, stalls after start {}, errors {}",
        v["levels"], v["stallsAfterStart"], v["errors"]
    );
    assert_eq!(v["levels"].as_array().map(|l| l.len()), Some(3));
    let distinct: std::collections::BTreeSet<i64> = switched.iter().copied().collect();
    assert!(distinct.len() >= 3, "hls.js did not visit every level: {switched:?}");
    assert!(played >= 9.0, "playback advanced only {played} s");
    // hls.js switches mid-segment, part by part; on these 2 cores (three x264 rungs and Chromium)
    // it sometimes nudges over a gap once (bufferSeekOverHole). More than that is a failure.
    assert!(v["stallsAfterStart"].as_u64().unwrap_or(u64::MAX) <= 1, "hls.js stalled while switching: {}", v["stallsAfterStart"]);

    // The OnAir player switches renditions at segment boundaries, one blocking reload each.
    let report = play_with_onair(&server.url("/watch/demo"), 15, &["--cycle".into(), "2.5".into()]).await;
    let onair = &report["onair"];
    let seen: std::collections::BTreeSet<String> =
        onair["samples"].as_array().expect("samples").iter().filter_map(|s| s["rendition"].as_str().map(String::from)).collect();
    let times: Vec<f64> = onair["samples"].as_array().expect("samples").iter().filter_map(|s| s["currentTime"].as_f64()).filter(|t| *t > 0.0).collect();
    let played = times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0);
    println!("OnAir player with forced switches: renditions {seen:?}, played {played:.1} s, last stats {}", onair["last"]);
    assert_eq!(seen.len(), 3, "the player did not play every rendition: {seen:?}");
    assert_eq!(onair["last"]["stalls"], 0, "the player stalled while switching");
    assert!(played >= 10.0, "the player advanced only {played:.1} s");
}

/// (AVERAGE-BANDWIDTH, BANDWIDTH) per variant URI of a Multivariant Playlist.
fn bandwidths(master: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut pending = None;
    for line in master.lines() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let get = |k: &str| {
                attrs.split(',').find_map(|kv| kv.strip_prefix(&format!("{k}="))).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            };
            pending = Some((get("AVERAGE-BANDWIDTH"), get("BANDWIDTH")));
        } else if let Some(b) = pending.take().filter(|_| !line.starts_with('#')) {
            out.insert(line.to_string(), b);
        }
    }
    out
}

/// The finding: the real camera sample (720x576, ~0.9 Mbit/s, pushed with `-c copy`) had its 480p
/// rung advertised at 1.2 Mbit/s, above the source, so players picked a smaller, costlier picture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rungs_of_a_low_bitrate_camera_source_cost_less_than_the_source() {
    // Default settings on a separate `onair serve`, so `E2E_ONAIR_BIN` may name an older build.
    let server = ServerProcess::start(free_port(), "[transcode]\nenabled = true\n");
    let _publisher = Publisher::start(&shared_media("balle-jbart.mp4"), &server.rtmp_url());
    wait_renditions_at(&server.base_url(), "demo", &["source", "480p", "360p"], 2).await;
    let master = get_text(&format!("{}/hls/demo/master.m3u8", server.base_url())).await.expect("master");
    let b = bandwidths(&master);
    println!("camera sample ladder (AVERAGE-BANDWIDTH, BANDWIDTH): {b:?}");
    let source = b["source/index.m3u8"];
    for rung in ["480p/index.m3u8", "360p/index.m3u8"] {
        assert!(b[rung].0 < source.0, "{rung} average {} must be below the source's {}", b[rung].0, source.0);
    }
    assert!(b["360p/index.m3u8"].0 < b["480p/index.m3u8"].0);
}

/// The finding: every channel got its whole ladder (a decode thread plus one per rung), so at the
/// publisher cap a 2-core box ran hundreds of encoder threads. With a budget of 2 rungs, the first
/// channel takes both and the next one gets the source only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rung_budget_gives_later_channels_fewer_rungs() {
    let server = TestServer::start_with(|c| c.transcode.max_rungs = 2).await;
    let refused_before = server.metric("onair_transcode_rungs_refused_total").await;
    let second = server.running.channels.create("second").await.expect("channel");
    let _first = server.publish();
    server.wait_renditions("demo", &["source", "480p", "360p"], 1).await;
    let _second = Publisher::start(&obs_like_fixture(), &server.rtmp_url(&second.stream_key));
    server.wait_renditions("second", &["source", "audio"], 2).await;
    let master = get_text(&server.url("/hls/second/master.m3u8")).await.expect("master");
    assert!(!master.contains("480p") && !master.contains("360p"), "the budget is spent: {master}");
    // (A gauge of rungs in use would be shared with the other tests of this binary: one metrics
    // recorder per process. This counter only this test moves.)
    assert!(server.metric("onair_transcode_rungs_refused_total").await >= refused_before + 2.0, "both rungs refused and counted");
}
