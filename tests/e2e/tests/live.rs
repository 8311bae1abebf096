//! The live slice end to end: ffmpeg publishes the real sample over RTMP; ffmpeg, the `m3u8`
//! parser, plain HTTP clients and hls.js in Chromium read it back.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_video_and_audio_from_ll_hls() {
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 2).await;
    let (secs, frames) = decode_with_ffmpeg(&server.url("/hls/demo/master.m3u8"), 6).await;
    println!("ffmpeg decoded {secs:.2} s, {frames} video frames");
    assert!(secs >= 5.0, "decoded only {secs} s");
    assert!(frames >= 125, "decoded only {frames} video frames (25 fps x 5 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_sees_continuous_timestamps_across_parts() {
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 3).await;
    for (rendition, stream) in [("source", "v"), ("audio", "a")] {
        let url = server.url(&format!("/hls/demo/{rendition}/index.m3u8"));
        let out = tokio::task::spawn_blocking(move || {
            Command::new("ffprobe")
                .args(["-v", "error", "-select_streams", stream, "-show_entries", "packet=dts,duration", "-of", "csv=p=0", "-read_intervals", "%+4"])
                .arg(&url)
                .output()
                .expect("ffprobe")
        })
        .await
        .expect("join");
        assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let dts: Vec<i64> = text.lines().filter_map(|l| l.split(',').next()?.parse().ok()).collect();
        assert!(dts.len() > 50, "{rendition}: too few packets: {}", dts.len());
        let steps: Vec<i64> = dts.windows(2).map(|w| w[1] - w[0]).collect();
        let (min, max) = (steps.iter().min().copied().unwrap_or(0), steps.iter().max().copied().unwrap_or(0));
        println!("{rendition}: {} packets, dts steps {min}..={max}", dts.len());
        // 25 fps video: 3600 ticks at 90 kHz; AAC: 1024 samples at 48 kHz. No gaps, no overlaps.
        let expected = if rendition == "source" { 3600 } else { 1024 };
        assert!(min == expected && max == expected, "{rendition}: dts steps {min}..={max}, expected {expected}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_follow_the_ll_hls_checklist() {
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 4).await;

    let master = parse_with_m3u8(&server.url("/hls/demo/master.m3u8"));
    assert_eq!(master["variant"], true);
    let variant = &master["playlists"][0];
    assert_eq!(variant["uri"], "source/index.m3u8");
    assert_eq!(variant["codecs"], "avc1.64001f,mp4a.40.2");
    assert_eq!(variant["resolution"], serde_json::json!([1280, 720]));
    assert_eq!(variant["frame_rate"], 25.0);
    assert!(variant["bandwidth"].as_u64().unwrap_or(0) > 500_000);
    assert_eq!(variant["audio"], "audio");
    assert_eq!(master["media"][0]["type"], "AUDIO");
    assert_eq!(master["media"][0]["uri"], "audio/index.m3u8");

    let mut controls = Vec::new();
    for (rendition, other) in [("source", "audio"), ("audio", "source")] {
        let p = parse_with_m3u8(&server.url(&format!("/hls/demo/{rendition}/index.m3u8")));
        let pt = p["part_target"].as_f64().expect("EXT-X-PART-INF");
        let td = p["target_duration"].as_f64().expect("target duration");
        let sc = &p["server_control"];
        assert_eq!(sc["can_block_reload"], "YES");
        assert!(sc["part_hold_back"].as_f64().expect("PART-HOLD-BACK") >= 3.0 * pt - 1e-9);
        assert!(sc["hold_back"].as_f64().expect("HOLD-BACK") >= 3.0 * td);
        assert!(sc["can_skip_until"].as_f64().expect("CAN-SKIP-UNTIL") >= 6.0 * td);
        controls.push(sc.clone());
        let segments = p["segments"].as_array().expect("segments");
        let hint = &p["preload_hint"];
        assert_eq!(hint["type"], "PART", "{rendition}: preload hint");
        assert!(hint["uri"].as_str().is_some_and(|u| u.starts_with("part")));
        let reports = p["rendition_reports"].as_array().expect("reports");
        assert_eq!(reports.len(), 1, "{rendition}: one report per other rendition");
        assert_eq!(reports[0]["uri"], format!("../{other}/index.m3u8"));
        for (i, seg) in segments.iter().enumerate() {
            // The m3u8 package drops the PROGRAM-DATE-TIME of a trailing open segment; the raw text is checked below.
            assert!(seg["uri"].is_null() || seg["program_date_time"].is_string(), "{rendition}: segment {i} has no PROGRAM-DATE-TIME");
            let parts = seg["parts"].as_array().expect("parts");
            let last_segment = i + 1 == segments.len();
            for (j, part) in parts.iter().enumerate() {
                let d = part["duration"].as_f64().expect("part duration");
                assert!(d <= pt + 1e-9, "{rendition}: part {} lasts {d} > PART-TARGET {pt}", part["uri"]);
                let last_part = j + 1 == parts.len();
                let exempt = part["independent"] == true || last_part;
                assert!(exempt || d >= 0.85 * pt - 1e-9, "{rendition}: part {} lasts {d} < 85% of {pt}", part["uri"]);
                if j == 0 && rendition == "source" {
                    assert_eq!(part["independent"], true, "video segments start with an independent part");
                }
            }
            if !last_segment {
                assert!(seg["duration"].as_f64().unwrap_or(0.0) <= td + 0.5, "{rendition}: EXTINF beyond target duration");
            }
        }
        let raw = get_text(&server.url(&format!("/hls/demo/{rendition}/index.m3u8"))).await.expect("playlist");
        // Every segment block (up to and including its URI line, or the open one at the end) has a PROGRAM-DATE-TIME.
        let body = raw.split_once("#EXT-X-MAP").expect("map").1;
        for block in body.split_inclusive(".m4s\n").filter(|b| b.contains("#EXT-X-PART:") || b.contains("#EXTINF")) {
            let block = block.split("#EXT-X-PRELOAD-HINT").next().unwrap_or(block);
            if block.contains("#EXT-X-PART:") || block.contains("#EXTINF") {
                assert!(block.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{rendition}: segment without PROGRAM-DATE-TIME:\n{block}");
            }
        }
        // Parts are listed only near the live edge: the first listed segments are whole segments.
        assert!(segments.first().is_some_and(|s| s["parts"].as_array().is_some_and(|p| p.is_empty()) || segments.len() <= 4));
        let with_parts: f64 = segments.iter().filter(|s| !s["parts"].as_array().expect("parts").is_empty()).map(|s| s["duration"].as_f64().unwrap_or(0.0)).sum();
        assert!(with_parts <= 3.0 * td + td + 1e-9, "{rendition}: parts listed for {with_parts} s");
    }
    assert_eq!(controls[0], controls[1], "EXT-X-SERVER-CONTROL must match across renditions");

    // Renditions advance in step: both live edges within one part target of each other.
    let v = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("source");
    let a = get_text(&server.url("/hls/demo/audio/index.m3u8")).await.expect("audio");
    let (vm, _) = live_edge(&v);
    let (am, _) = live_edge(&a);
    assert!(vm.abs_diff(am) <= 1, "renditions out of step: video msn {vm}, audio msn {am}");

    // Cache-Control (Appendix B) and gzip.
    let raw_client = reqwest::Client::builder().no_gzip().build().expect("client");
    let r = raw_client.get(server.url("/hls/demo/source/index.m3u8")).header("accept-encoding", "gzip").send().await.expect("get");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["cache-control"], "public, max-age=1, stale-while-revalidate=0, stale-if-error=0");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = client().get(server.url("/hls/demo/source/init.mp4")).send().await.expect("get");
    assert!(r.headers()["cache-control"].to_str().expect("ascii").contains("immutable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_and_hinted_parts() {
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 2).await;
    let playlist = server.url("/hls/demo/source/index.m3u8");
    let text = get_text(&playlist).await.expect("playlist");
    let (msn, part) = live_edge(&text);

    // The next part: answered as soon as it lands, within about one part target.
    let started = Instant::now();
    let r = client().get(format!("{playlist}?_HLS_msn={msn}&_HLS_part={}", part + 1)).send().await.expect("blocking");
    let waited = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=12, stale-while-revalidate=0, stale-if-error=0");
    let body = r.text().await.expect("body");
    let (msn2, part2) = live_edge(&body);
    assert!((msn2, part2) > (msn, part), "blocking reload returned a stale playlist");
    println!("blocking reload for the next part returned after {} ms", waited.as_millis());
    assert!(waited < Duration::from_millis(1500), "blocking reload took {waited:?}");

    // Ten blocking reloads in a row track the live edge part by part.
    let (mut m, mut p) = (msn2, part2);
    let mut gaps = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let body = client().get(format!("{playlist}?_HLS_msn={m}&_HLS_part={}", p + 1)).send().await.expect("get").text().await.expect("body");
        gaps.push(t.elapsed().as_millis());
        (m, p) = live_edge(&body);
    }
    println!("successive blocking reloads (ms): {gaps:?}");
    assert!(gaps.iter().all(|g| *g < 1500));

    // Too far ahead, or _HLS_part alone: 400.
    let r = client().get(format!("{playlist}?_HLS_msn={}", m + 3)).send().await.expect("get");
    assert_eq!(r.status(), 400);
    let r = client().get(format!("{playlist}?_HLS_part=1")).send().await.expect("get");
    assert_eq!(r.status(), 400);

    // The hinted part: requested before it exists, it waits and then returns its bytes.
    let text = get_text(&playlist).await.expect("playlist");
    let hint = text.lines().find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"")).expect("hint").trim_end_matches('"').to_string();
    let t = Instant::now();
    let r = client().get(server.url(&format!("/hls/demo/source/{hint}"))).send().await.expect("hinted part");
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.expect("bytes");
    println!("hinted part {hint}: {} bytes after {} ms", bytes.len(), t.elapsed().as_millis());
    assert_eq!(&bytes[4..8], b"moof");
    // A part far beyond the hint was never hinted: 404 at once.
    let far: u64 = hint.trim_start_matches("part").trim_end_matches(".m4s").parse::<u64>().expect("id") + 50;
    let r = client().get(server.url(&format!("/hls/demo/source/part{far}.m4s"))).send().await.expect("get");
    assert_eq!(r.status(), 404);

    // Delta update once the playlist is longer than CAN-SKIP-UNTIL (12 s).
    server.wait_segments("demo", 8).await;
    let delta = get_text(&format!("{playlist}?_HLS_skip=YES")).await.expect("delta");
    assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "no EXT-X-SKIP in:\n{delta}");
    assert!(delta.contains("#EXT-X-VERSION:9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_drop_ends_the_playlist_after_the_grace_period() {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.ingest.reconnect_grace_ms = 2000;
    })
    .await;
    let mut publisher = server.publish();
    server.wait_segments("demo", 1).await;
    publisher.kill();
    let killed = Instant::now();
    loop {
        let text = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("playlist still served");
        if text.contains("#EXT-X-ENDLIST") {
            assert!(!text.contains("PRELOAD-HINT"));
            assert!(killed.elapsed() >= Duration::from_millis(1500), "ended before the grace period: {:?}", killed.elapsed());
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "no EXT-X-ENDLIST after the grace period");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The channel can go live again, as a new broadcast.
    let _again = server.publish();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get_text(&server.url("/hls/demo/source/index.m3u8")).await.unwrap_or_default();
        if !text.contains("#EXT-X-ENDLIST") && text.contains("#EXTINF") {
            assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "a new broadcast starts clean");
            assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
            break;
        }
        assert!(Instant::now() < deadline, "the channel did not go live again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reconnect_continues_the_playlist_and_hlsjs_keeps_playing() {
    let server = TestServer::start().await;
    let mut publisher = server.publish();
    server.wait_segments("demo", 2).await;
    let player = play_with_hlsjs(&server, 16, None);
    // The second publisher is handed out of the block so it keeps publishing while hls.js plays.
    let (v, _publisher) = tokio::join!(player, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("playlist");
        let (msn_before, _) = live_edge(&before);
        publisher.kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let during = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("playlist");
        assert!(!during.contains("#EXT-X-ENDLIST"), "ended inside the grace period");
        let api = get_text(&server.url("/api/v1/channels")).await.expect("api");
        assert!(api.contains("\"state\":\"reconnecting\""), "{api}");
        let _publisher = server.publish();
        let deadline = Instant::now() + Duration::from_secs(20);
        let after = loop {
            let text = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("playlist");
            let (msn, _) = live_edge(&text);
            if text.contains("#EXT-X-DISCONTINUITY\n") && msn > msn_before + 1 {
                break text;
            }
            assert!(Instant::now() < deadline, "no discontinuity after the publisher came back:\n{text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(!after.contains("#EXT-X-ENDLIST"));
        let first_msn: u64 = after.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).and_then(|v| v.parse().ok()).expect("msn");
        assert!(first_msn <= msn_before, "media sequence numbers must continue, not restart");
        let audio = get_text(&server.url("/hls/demo/audio/index.m3u8")).await.expect("audio");
        assert!(audio.contains("#EXT-X-DISCONTINUITY\n"), "audio rendition continues after a discontinuity too");
        _publisher
    });
    let played = played_seconds(&v);
    println!("hls.js across a publisher reconnect: played {played:.1} s in 16 s, stalls {}, errors {}", v["stalls"], v["errors"]);
    assert!(played >= 10.0, "playback advanced only {played} s across the reconnect");
    assert!(v["errors"].as_array().is_some_and(|e| e.iter().all(|e| !e.as_str().unwrap_or("").contains("fatal"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_plays_in_headless_chromium() {
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 1).await;
    let v = play_with_hlsjs(&server, 10, None).await;
    let samples = v["samples"].as_array().expect("samples");
    let played = played_seconds(&v);
    let mut lat: Vec<f64> = samples.iter().skip(samples.len() / 2).filter_map(|s| s["pdtLatency"].as_f64()).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let hls_lat = samples.last().and_then(|s| s["hlsLatency"].as_f64());
    println!(
        "hls.js: played {:.1} s in 10 s, first frame after {} ms, stalls {}, latency (PDT, 2nd half) p50 {:.3} s, hls.js latency {:?}, errors {}",
        played,
        v["firstFrameMs"],
        v["stalls"],
        lat.get(lat.len() / 2).copied().unwrap_or(f64::NAN),
        hls_lat,
        v["errors"]
    );
    assert!(played >= 7.0, "currentTime advanced only {played} s");
    assert!(v["errors"].as_array().is_some_and(|e| e.iter().all(|e| !e.as_str().unwrap_or("").contains("fatal"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_ingest_and_delivery() {
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 1).await;
    let _ = get_text(&server.url("/hls/demo/source/index.m3u8?_HLS_msn=0&_HLS_part=0")).await;
    let text = get_text(&server.url("/metrics")).await.expect("metrics");
    for name in [
        "onair_live_channels",
        "onair_ingest_bytes_total",
        "onair_parts_produced_total",
        "onair_ingest_to_part_seconds",
        "onair_playlist_requests_total{kind=\"blocking\"}",
        "onair_playlist_requests_total{kind=\"non_blocking\"}",
        "onair_http_open_connections",
        "onair_rtmp_connections",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
}
