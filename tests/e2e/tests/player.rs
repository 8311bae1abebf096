//! The OnAir Wasm player (player-wasm, served by the watch page) in Debian's headless Chromium:
//! 30 s of playback, its latency beside hls.js on the same stream, failover between two
//! `onair serve` processes, and the directory and watch pages.
//!
//! The browser tests take a lock so they do not share the 2 cores with one another.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn plays_30_seconds_without_stalls_and_reports_latency() {
    let _b = BROWSER.lock().await;
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 2).await;
    let shot = screenshot_dir().join("player-30s.png");
    let report = play_with_onair(&server.url("/watch/demo"), 30, &["--screenshot".into(), shot.display().to_string()]).await;
    let onair = &report["onair"];
    let playing: Vec<&serde_json::Value> =
        onair["samples"].as_array().expect("samples").iter().filter(|s| s["state"] == "playing" && s["currentTime"].as_f64().unwrap_or(0.0) > 0.0).collect();
    let first = playing.first().expect("playback started");
    let last = playing.last().expect("playback started");
    let played = last["currentTime"].as_f64().unwrap_or(0.0) - first["currentTime"].as_f64().unwrap_or(0.0);
    let wall = last["t"].as_f64().unwrap_or(0.0) - first["t"].as_f64().unwrap_or(0.0);
    let latencies = samples(onair, "latency", 10.0);
    eprintln!(
        "OnAir player: first frame after {} ms, played {played:.1} s in {wall:.1} s, stalls {}, latency p50 {:.3} s p95 {:.3} s, last stats {}",
        onair["firstFrameMs"], onair["last"]["stalls"], percentile(&latencies, 50.0), percentile(&latencies, 95.0), onair["last"]
    );
    assert!(played > wall - 3.0 && played > 20.0, "currentTime advanced {played:.1} s in {wall:.1} s");
    assert_eq!(onair["last"]["stalls"], 0, "stalls after start-up");
    assert!(!latencies.is_empty() && latencies.iter().all(|l| *l > 0.0 && *l < 5.0), "latency reported: {latencies:?}");
    assert_eq!(onair["consoleErrors"].as_array().map(Vec::len), Some(0), "console errors: {}", onair["consoleErrors"]);
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "screenshot saved");
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_side_by_side_with_hlsjs() {
    let _b = BROWSER.lock().await;
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 2).await;
    let report =
        play_with_onair(&server.url("/watch/demo"), 40, &["--hlsjs".into(), server.url("/hls/demo/master.m3u8")]).await;
    // Both measured the same way: wall clock minus the PROGRAM-DATE-TIME of the frame on screen.
    // The first 10 s (start-up and convergence) are left out for both.
    let ours = samples(&report["onair"], "latency", 10.0);
    let theirs = samples(&report["hlsjs"], "latency", 10.0);
    assert!(ours.len() > 50 && theirs.len() > 50, "enough samples: {} and {}", ours.len(), theirs.len());
    let (p50, p95) = (percentile(&ours, 50.0), percentile(&ours, 95.0));
    let (h50, h95) = (percentile(&theirs, 50.0), percentile(&theirs, 95.0));
    let part_hold_back = report["onair"]["last"]["targetLatency"].as_f64().unwrap_or(0.0);
    eprintln!(
        "latency, same stream, same browser, same run: OnAir player p50 {p50:.3} s p95 {p95:.3} s; hls.js p50 {h50:.3} s p95 {h95:.3} s; \
         ratio p50 {:.2}, p95 {:.2}; OnAir target at the end {part_hold_back:.2} s, stalls {}",
        p50 / h50,
        p95 / h95,
        report["onair"]["last"]["stalls"]
    );
    assert!(p50 <= h50 + 0.05, "OnAir p50 {p50:.3} s is worse than hls.js p50 {h50:.3} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_over_to_the_other_server_when_its_server_dies() {
    let _b = BROWSER.lock().await;
    let (port_a, port_b) = (free_port(), free_port());
    let peers = |other: u16| format!("[playback]\npeers = [\"http://127.0.0.1:{other}\"]\ntoken_secret = \"shared-by-both\"\n");
    let a = ServerProcess::start(port_a, &peers(port_b));
    let b = ServerProcess::start(port_b, &peers(port_a));
    // One encoder, one publish, fanned out to both servers (ffmpeg's tee muxer); a dead output is
    // ignored so the other keeps receiving.
    // The tee muxer keeps the input's codec tags, which FLV refuses for MP4's `avc1`: read FLV.
    let flv = obs_like_fixture().with_extension("flv");
    if !flv.exists() {
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(obs_like_fixture())
            .args(["-c", "copy"])
            .arg(&flv)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "remuxing the fixture to FLV");
    }
    let tee = format!("[f=flv:onfail=ignore]{}|[f=flv:onfail=ignore]{}", a.rtmp_url(), b.rtmp_url());
    let publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(&flv)
        .args(["-map", "0:v", "-map", "0:a", "-c", "copy", "-f", "tee", &tee])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let _publisher = Publisher { child: publisher };
    wait_renditions_at(&a.base_url(), "demo", &["source"], 2).await;
    wait_renditions_at(&b.base_url(), "demo", &["source"], 2).await;
    let pids = format!("{}={},{}={}", a.base_url(), a.child.id(), b.base_url(), b.child.id());
    let report = play_with_onair(
        &format!("{}/watch/demo", a.base_url()),
        25,
        &["--kill-at".into(), "10".into(), "--pids".into(), pids],
    )
    .await;
    let onair = &report["onair"];
    let kill = &onair["kill"];
    eprintln!("failover: {kill}; last stats {}", onair["last"]);
    assert!(!kill.is_null(), "the server in use was found and killed");
    let frozen = kill["frozenSeconds"].as_f64().unwrap_or(f64::MAX);
    let switched = kill["switchedAfter"].as_f64().unwrap_or(f64::MAX);
    let played = kill["playedAfter"].as_f64().unwrap_or(0.0);
    eprintln!("failover: moved to the other server {switched:.2} s after the kill; picture stood still for {frozen:.2} s at most; played {played:.1} s after");
    assert!(switched < 2.0, "moved to the other server after {switched:.2} s");
    assert!(frozen < 2.0, "playback stood still for {frozen:.2} s");
    assert!(played > 10.0, "kept playing after the failover: {played:.1} s");
    assert_eq!(onair["last"]["failovers"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_and_watch_pages() {
    let _b = BROWSER.lock().await;
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 1).await;
    let dir = screenshot_dir();
    let script = repo_root().join("tests/browser/pages.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(script).arg(server.url("")).arg(&dir);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "page test failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    eprintln!("pages: {r}");
    let cards = r["cards"].as_array().expect("cards");
    assert!(cards.iter().any(|c| c["channel"] == "demo" && c["href"] == "/watch/demo"), "directory lists demo: {cards:?}");
    assert!(r["href"].as_str().unwrap_or("").ends_with("/watch/demo"));
    assert!(r["title"].as_str().unwrap_or("").contains("demo"));
    assert!(r["stats"]["latency"].as_f64().is_some(), "stats report latency");
    let overlay = r["overlay"].as_str().unwrap_or("");
    for field in ["latency", "buffer", "rendition", "bandwidth", "server", "stalls"] {
        assert!(overlay.contains(field), "overlay shows {field}: {overlay}");
    }
    let chat = &r["chat"];
    assert!(chat["head"].as_str().unwrap_or("").contains("room 1"), "chat joined a room: {chat}");
    assert!(chat["lines"].as_array().is_some_and(|l| l.iter().any(|t| t.as_str().is_some_and(|t| t.ends_with(": hello from the watch page <b>not bold</b>")))), "chat message shown as text: {chat}");
    assert_eq!((chat["markup"].as_u64(), chat["beside"].as_bool()), (Some(0), Some(true)), "no HTML from a message; chat beside the player: {chat}");
    assert!(r["viewers"].as_str().is_some_and(|v| v.ends_with(" viewer") || v.ends_with(" viewers")), "the watch page shows the viewer count: {}", r["viewers"]);
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "page errors: {}", r["errors"]);
    for png in ["directory.png", "watch.png"] {
        let len = std::fs::metadata(dir.join(png)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{png} saved ({len} bytes)");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_playing_across_a_publisher_reconnect() {
    let _b = BROWSER.lock().await;
    let server = TestServer::start().await;
    let mut publisher = server.publish();
    server.wait_segments("demo", 2).await;
    let watch = server.url("/watch/demo");
    let player = tokio::spawn(async move { play_with_onair(&watch, 28, &[]).await });
    // 10 s in, the encoder drops; it comes back 3 s later (within the grace period).
    tokio::time::sleep(Duration::from_secs(10)).await;
    publisher.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _publisher = server.publish();
    let report = player.await.expect("join");
    let onair = &report["onair"];
    let playlist = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("playlist");
    assert!(playlist.contains("#EXT-X-DISCONTINUITY"), "the reconnect is a discontinuity:\n{playlist}");
    let times: Vec<(f64, f64)> = onair["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| Some((s["t"].as_f64()?, s["currentTime"].as_f64()?)))
        .filter(|(_, ct)| *ct > 0.0)
        .collect();
    let after: Vec<&(f64, f64)> = times.iter().filter(|(t, _)| *t > 20.0).collect();
    let played_late = after.last().map_or(0.0, |l| l.1) - after.first().map_or(0.0, |f| f.1);
    let span = after.last().map_or(0.0, |l| l.0) - after.first().map_or(0.0, |f| f.0);
    eprintln!("reconnect: played {played_late:.1} s in the last {span:.1} s; last stats {}", onair["last"]);
    assert!(played_late > span - 1.0 && span > 5.0, "playback resumed after the reconnect");
    let latency = onair["last"]["latency"].as_f64().unwrap_or(f64::MAX);
    assert!(latency < 3.0, "latency after the reconnect {latency:.2} s");
    assert_eq!(onair["consoleErrors"].as_array().map(Vec::len), Some(0), "console errors: {}", onair["consoleErrors"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn plays_a_plain_hls_server_by_segments() {
    let _b = BROWSER.lock().await;
    // FFmpeg's own HLS muxer (fMP4, 1 s target, no parts, no CODECS attribute, basic-offset dates)
    // behind a plain static file server: the player must fall back to whole segments.
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hls = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(obs_like_fixture())
        .args(["-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "8", "-hls_segment_type", "fmp4"])
        .args(["-hls_flags", "delete_segments+program_date_time", "-master_pl_name", "master.m3u8", "stream.m3u8"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let _hls = Publisher { child: hls };
    let port = free_port();
    let files = Command::new("python3")
        .arg(repo_root().join("tests/browser/static_server.py"))
        .arg(dir.path())
        .arg(port.to_string())
        .spawn()
        .expect("python3");
    let _files = Publisher { child: files };
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_text(&format!("{base}/stream.m3u8")).await.is_none_or(|t| t.matches("#EXTINF").count() < 4) {
        assert!(Instant::now() < deadline, "ffmpeg's HLS output did not appear");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let report = play_with_onair(&server.url(&format!("/watch/demo?src={base}/master.m3u8")), 20, &[]).await;
    let onair = &report["onair"];
    let times: Vec<f64> = onair["samples"].as_array().expect("samples").iter().filter_map(|s| s["currentTime"].as_f64()).filter(|t| *t > 0.0).collect();
    let played = times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0);
    let latencies = samples(onair, "latency", 8.0);
    eprintln!(
        "plain HLS (FFmpeg muxer, 1 s segments): played {played:.1} s, latency p50 {:.2} s, last stats {}",
        percentile(&latencies, 50.0),
        onair["last"]
    );
    assert!(played > 12.0, "played only {played:.1} s");
    assert!(!latencies.is_empty(), "latency measured from PROGRAM-DATE-TIME");
    assert_eq!(onair["consoleErrors"].as_array().map(Vec::len), Some(0), "console errors: {}", onair["consoleErrors"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn plays_in_firefox() {
    let _b = BROWSER.lock().await;
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 2).await;
    let script = repo_root().join("tests/browser/firefox-play.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(script).args([server.url("/watch/demo"), "20".into()]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "Firefox run failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let times: Vec<f64> = r["samples"].as_array().expect("samples").iter().filter_map(|s| s["currentTime"].as_f64()).filter(|t| *t > 0.0).collect();
    let played = times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0);
    let latencies = samples(&r, "latency", 8.0);
    eprintln!(
        "{}: played {played:.1} s, latency p50 {:.3} s, stalls {}",
        r["userAgent"],
        percentile(&latencies, 50.0),
        r["last"]["stalls"]
    );
    assert!(r["userAgent"].as_str().unwrap_or("").contains("Firefox"));
    assert!(played > 12.0, "played only {played:.1} s");
    assert!(!latencies.is_empty(), "latency reported");
    // One stall is tolerated: the suite runs this beside other tests on 2 cores (it lost one such
    // stall to a busy machine once); the played time above still demands near-continuous playback.
    assert!(r["last"]["stalls"].as_u64().unwrap_or(u64::MAX) <= 1, "stalls after start-up: {}", r["last"]["stalls"]);
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "page errors: {}", r["errors"]);
}

/// Signed playback with short-lived tokens (8–12 s here; 6 h by default): the player renews its
/// token through the playback API before it expires and plays on from the same server. Without
/// the renewal every request is refused (403) once the first token expires.
#[tokio::test(flavor = "multi_thread")]
async fn the_player_renews_its_playback_token_before_it_expires() {
    let _b = BROWSER.lock().await;
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.playback.require_token = true;
        c.playback.token_secret = Some("player-token-test".into());
        c.playback.token_ttl_s = 8;
        c.playback.token_bucket_s = 4;
    })
    .await;
    let _publisher = server.publish();
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let answer: serde_json::Value = serde_json::from_str(&get_text(&server.url("/api/v1/playback/demo")).await.unwrap_or_default()).unwrap_or_default();
        if let Some(t) = answer["token"].as_str() {
            break t.to_string();
        }
        assert!(Instant::now() < deadline, "the playback API never answered for demo");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_renditions_at(&server.url(&format!("/t/{token}")), "demo", &["source", "audio"], 2).await;
    let refused_before = server.metric("onair_playback_token_refusals_total").await;
    let report = play_with_onair(&server.url("/watch/demo"), 40, &[]).await;
    let onair = &report["onair"];
    let last = &onair["last"];
    let list = onair["samples"].as_array().cloned().unwrap_or_default();
    let playing: Vec<&serde_json::Value> = list.iter().filter(|s| s["state"] == "playing").collect();
    let (first, end) = (playing.first().expect("playback started"), playing.last().expect("playback started"));
    let played = end["currentTime"].as_f64().unwrap_or(0.0) - first["currentTime"].as_f64().unwrap_or(0.0);
    let wall = end["t"].as_f64().unwrap_or(0.0) - first["t"].as_f64().unwrap_or(0.0);
    let refused = server.metric("onair_playback_token_refusals_total").await - refused_before;
    eprintln!(
        "tokens of 8-12 s: {} renewals in 40 s, played {played:.1} s in {wall:.1} s, stalls {}, failovers {}, {refused} requests refused meanwhile; server {}",
        last["tokenRenewals"], last["stalls"], last["failovers"], last["server"]
    );
    assert!(last["tokenRenewals"].as_u64().unwrap_or(0) >= 3, "{last}");
    assert!(played > wall - 3.0 && played > 25.0, "currentTime advanced {played:.1} s in {wall:.1} s");
    assert!(last["stalls"].as_u64().unwrap_or(99) <= 1, "{last}");
    assert_eq!(last["failovers"].as_u64(), Some(0), "renewing is not a failover: {last}");
    assert!(last["server"].as_str().is_some_and(|s| s.contains("/t/") && !s.contains(&token)), "on a renewed token: {last}");
}
