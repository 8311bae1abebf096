//! The archive with real peers: ffmpeg publishes the real sample (with a reconnect), the past
//! broadcast is listed, ffmpeg decodes its VOD playlist completely and hls.js plays it in
//! Chromium; a kill -9 of `onair serve` while recording loses at most the segment in progress.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The channel's broadcasts (`/api/v1/channels/{channel}/broadcasts`).
async fn broadcasts(base: &str, channel: &str) -> Vec<serde_json::Value> {
    let text = get_text(&format!("{base}/api/v1/channels/{channel}/broadcasts")).await.unwrap_or_default();
    serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap_or_default()
}

/// Waits (≤ 60 s) for `channel`'s newest broadcast to be `ended`; returns it.
async fn ended_broadcast(base: &str, channel: &str) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(b) = broadcasts(base, channel).await.into_iter().next().filter(|b| b["state"] == "ended") {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the broadcast ends in the archive")
}

/// Video packets' DTS (s) of `url` read by ffprobe (every packet of the first video stream).
fn video_dts(url: &str) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=dts_time", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect()
}

/// The Media Playlist `text` as two playlists, before and after its EXT-X-DISCONTINUITY, with
/// URIs made absolute against `base`.
fn split_at_discontinuity(text: &str, base: &str) -> Vec<String> {
    let text = text.replace("URI=\"files/", &format!("URI=\"{base}files/")).replace("\nfiles/", &format!("\n{base}files/"));
    let head_end = text.find("#EXT-X-MAP").expect("EXT-X-MAP");
    let (head, body) = text.split_at(head_end);
    let map = body.lines().next().expect("map line");
    let (before, after) = body.split_once("#EXT-X-DISCONTINUITY\n").expect("a discontinuity");
    let after = if after.starts_with("#EXT-X-MAP") { after.to_string() } else { format!("{map}\n{after}") };
    vec![format!("{head}{before}#EXT-X-ENDLIST\n"), format!("{head}{after}")]
}

/// Decodes every video frame of `url` with ffprobe (`-count_frames`); (frames decoded, stderr).
fn decode_every_frame(url: &str) -> (usize, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-protocol_whitelist", "file,http,tcp", "-select_streams", "v:0", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    let frames = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).max().unwrap_or(0);
    (frames, String::from_utf8_lossy(&out.stderr).trim().to_string())
}

/// Sum of EXTINF and the count of EXT-X-DISCONTINUITY in a Media Playlist.
fn extinf_and_discontinuities(text: &str) -> (f64, usize) {
    let total = text.lines().filter_map(|l| l.strip_prefix("#EXTINF:")).filter_map(|v| v.trim_end_matches(',').parse::<f64>().ok()).sum();
    (total, text.matches("#EXT-X-DISCONTINUITY\n").count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_broadcast_with_a_reconnect_plays_as_vod() {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.ingest.reconnect_grace_ms = 4_000;
    })
    .await;
    let base = server.url("");
    let fixture = obs_like_fixture();
    // The encoder's connection drops after 12 s (killed: no unpublish), and it comes back.
    let mut first = Publisher::start(&fixture, &server.rtmp_url(&server.key));
    tokio::time::sleep(Duration::from_secs(12)).await;
    first.kill();
    let second = publish_once(&fixture, &server.rtmp_url(&server.key), 10, Some(1)).await;
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let b = ended_broadcast(&base, "demo").await;
    assert_eq!(broadcasts(&base, "demo").await.len(), 1, "the reconnect continued the same broadcast");
    let master = server.url(b["playlist"].as_str().expect("playlist"));
    let id = b["id"].as_str().expect("id");
    let source = get_text(&server.url(&format!("/hls/demo/vod/{id}/source.m3u8"))).await.expect("source playlist");
    let (seconds, discontinuities) = extinf_and_discontinuities(&source);
    println!("past broadcast {id}: {seconds:.2} s recorded of ~22 s published, {discontinuities} discontinuity, duration_ms {}", b["duration_ms"]);
    assert!((18.0..=23.0).contains(&seconds), "recorded {seconds} s:\n{source}");
    assert_eq!(discontinuities, 1, "one discontinuity, at the reconnect:\n{source}");
    assert!(source.contains("#EXT-X-PLAYLIST-TYPE:VOD") && source.contains("#EXT-X-ENDLIST"));
    let parsed = parse_with_m3u8(&server.url(&format!("/hls/demo/vod/{id}/source.m3u8")));
    assert_eq!(parsed["endlist"], true, "{parsed}");
    assert_eq!(parsed["segments"].as_array().map_or(0, Vec::len), source.matches("#EXTINF").count(), "{parsed}");

    // ffprobe reads every video packet: 25 fps throughout, one jump at the reconnect.
    let dts = video_dts(&master);
    let expected = (seconds * 25.0).round() as usize;
    println!("ffprobe: {} video packets, {expected} expected from EXTINF", dts.len());
    assert!(dts.len().abs_diff(expected) <= 2, "{} packets for {seconds} s", dts.len());
    let irregular: Vec<(usize, f64)> = dts.windows(2).enumerate().map(|(i, w)| (i, w[1] - w[0])).filter(|(_, d)| (d - 0.04).abs() > 0.002).collect();
    println!("ffprobe: DTS steps other than 40 ms: {irregular:?}");
    assert!(irregular.len() <= 1, "DTS is continuous except at the reconnect: {irregular:?}");
    // Every frame decodes: each side of the reconnect as a playlist of its own (one decoder run
    // over the splice drops the first frames of the new encoder session, as it would on any
    // concatenation of two H.264 sessions without a decoder reset; players reset at the
    // discontinuity).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut decoded = 0;
    for (n, half) in split_at_discontinuity(&source, &server.url(&format!("/hls/demo/vod/{id}/"))).iter().enumerate() {
        let path = dir.path().join(format!("half{n}.m3u8"));
        std::fs::write(&path, half).expect("write playlist");
        let (frames, errors) = decode_every_frame(&path.display().to_string());
        println!("ffprobe decoded {frames} video frames of side {n} of the reconnect, errors: {errors:?}");
        assert!(errors.is_empty(), "{errors}");
        decoded += frames;
    }
    assert_eq!(decoded, dts.len(), "every recorded frame decodes");

    // hls.js plays it in Chromium.
    let report = play_hlsjs_at(&server.url("/"), &master, 8, None).await;
    let played = played_seconds(&report);
    println!("hls.js played {played:.2} s of the past broadcast");
    assert!(played >= 4.0, "hls.js played {played} s: {report}");

    // Byte ranges come back as 206 with exactly the bytes asked for.
    let uri = source.lines().find(|l| l.starts_with("files/")).expect("a file");
    let range = source.lines().find_map(|l| l.strip_prefix("#EXT-X-BYTERANGE:")).expect("a range");
    let (len, at) = range.split_once('@').expect("len@offset");
    let (len, at): (u64, u64) = (len.parse().expect("len"), at.parse().expect("offset"));
    let r = client()
        .get(server.url(&format!("/hls/demo/vod/{id}/{uri}")))
        .header("Range", format!("bytes={at}-{}", at + len - 1))
        .send()
        .await
        .expect("range request");
    assert_eq!(r.status(), 206);
    let body = r.bytes().await.expect("body");
    assert_eq!(body.len() as u64, len);
    assert_eq!(&body[4..8], b"moof", "a segment starts with its moof");
}

/// Last complete segment's MSN in a live Media Playlist (the one before the open one), if any.
fn last_complete_msn(playlist: &str) -> Option<u64> {
    let first: u64 = playlist.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?.trim().parse().ok()?;
    let complete = playlist.lines().filter(|l| l.starts_with("#EXTINF")).count() as u64;
    (complete > 0).then(|| first + complete - 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_recording_loses_at_most_the_segment_in_progress() {
    kill_9_while_recording(None).await;
}

/// The same with the archive on a real S3-compatible server (s3s-fs): after the restart the
/// recovered files are uploaded, the local copies dropped, and the past broadcast plays from the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_recording_to_s3_and_the_broadcast_plays_from_the_bucket() {
    let s3 = onair_test_engines::S3Server::start("archive");
    kill_9_while_recording(Some(&s3)).await;
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

async fn kill_9_while_recording(s3: Option<&onair_test_engines::S3Server>) {
    let mut toml = "[ingest]\nreconnect_grace_ms = 2000\n".to_string();
    if let Some(s3) = s3 {
        toml += &format!(
            "[archive.s3]\nendpoint = \"{}\"\nbucket = \"archive\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            s3.endpoint(),
            onair_test_engines::S3_ACCESS_KEY,
            onair_test_engines::S3_SECRET_KEY
        );
    }
    let mut server = ServerProcess::start(free_port(), &toml);
    let base = server.base_url();
    let _publisher = Publisher::start(&obs_like_fixture(), &server.rtmp_url());
    wait_renditions_at(&base, "demo", &["source", "audio"], 5).await;
    let live = get_text(&format!("{base}/hls/demo/source/index.m3u8")).await.expect("live playlist");
    let closed = last_complete_msn(&live).expect("complete segments");
    server.kill_and_restart();
    let b = ended_broadcast(&base, "demo").await;
    let id = b["id"].as_str().expect("id");
    let vod = get_text(&format!("{base}/hls/demo/vod/{id}/source.m3u8")).await.expect("vod playlist");
    let recorded = vod.matches("#EXTINF").count() as u64;
    // The live window starts at MSN 0 on a fresh broadcast.
    let closed_count = closed + 1;
    let lost = closed_count.saturating_sub(recorded);
    println!(
        "kill -9 while recording{}: {closed_count} segments were complete live when the process was killed, {recorded} recorded after restart, {lost} lost (RPO)",
        if s3.is_some() { " to S3" } else { "" }
    );
    assert!(server.log().contains("archive recovered after an unclean stop"), "recovery ran:\n{}", server.log());
    assert!(lost <= 1, "lost {lost} segments:\n{vod}");
    if let Some(s3) = s3 {
        let archive = server.data_dir().join("archive/demo");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !files_under(&archive).is_empty() {
            assert!(std::time::Instant::now() < deadline, "recovered files not uploaded: {:?}\n{}", files_under(&archive), server.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let objects = files_under(&s3.root().join("archive"));
        println!("in the bucket after recovery: {} objects", objects.len());
        assert!(objects.iter().any(|p| p.display().to_string().contains(id)), "{objects:?}");
    }
    let master = format!("{base}/hls/demo/vod/{id}/master.m3u8");
    let dts = video_dts(&master);
    assert!(dts.len() as u64 >= (recorded.saturating_sub(1)) * 50, "{} packets for {recorded} segments", dts.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_of_the_last_seconds_of_a_live_stream() {
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 7).await;
    let r = client()
        .post(server.url("/api/v1/clips"))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({"channel": "demo", "last_s": 10}).to_string())
        .send().await.expect("post");
    assert_eq!(r.status(), 202);
    let clip: serde_json::Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
    let id = clip["id"].as_str().expect("id").to_string();
    assert_eq!(clip["status"], "pending");
    let asked = std::time::Instant::now();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let v: serde_json::Value = serde_json::from_str(&get_text(&server.url(&format!("/api/v1/clips/{id}"))).await.unwrap_or_default()).unwrap_or_default();
            if v["status"] != "pending" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the clip gets ready");
    assert_eq!(ready["status"], "ready", "{ready}");
    let media = get_text(&server.url(&format!("/hls/demo/vod/{id}/source.m3u8"))).await.expect("clip playlist");
    let (seconds, _) = extinf_and_discontinuities(&media);
    println!("clip of the last 10 s: ready {:.1} s after the request, {seconds:.2} s long (starts at the key frame before, ends on a part)", asked.elapsed().as_secs_f64());
    // At most one segment (2 s) earlier than asked, at most one part (0.2 s) later.
    assert!((10.0 - 0.01..=12.25).contains(&seconds), "{seconds} s:\n{media}");
    let master = server.url(&format!("/hls/demo/vod/{id}/master.m3u8"));
    let packets = video_dts(&master).len();
    let (frames, errors) = decode_every_frame(&master);
    println!("clip: {packets} video packets, {frames} decoded by ffprobe");
    assert!(errors.is_empty() && frames == packets && frames.abs_diff((seconds * 25.0).round() as usize) <= 1, "{frames} frames, {packets} packets: {errors}");
    let listed = get_text(&server.url("/api/v1/channels/demo/clips")).await.expect("clip list");
    assert!(listed.contains(&id));

    // The download: one progressive MP4 (ftyp, moov, mdat: no fragments) with the video and the
    // audio, as long as the clip (± one part).
    let download = server.url(&format!("/hls/demo/vod/{id}/download.mp4"));
    let r = client().get(&download).send().await.expect("download");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-disposition").is_some_and(|v| v.to_str().unwrap_or("").contains(".mp4")));
    let bytes = r.bytes().await.expect("body");
    let mut top = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("size")) as usize;
        top.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).to_string());
        at += size.max(8);
    }
    println!("clip download: {} bytes, top-level boxes {top:?}", bytes.len());
    assert_eq!(top, ["ftyp", "moov", "mdat"], "a progressive MP4, moov first");
    let part = client().get(&download).header("Range", "bytes=100-199").send().await.expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.expect("part"), bytes.slice(100..200));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, &bytes).expect("write");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration:stream=codec_type", "-of", "default=nw=1"])
        .arg(&file)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let duration: f64 = text.lines().find_map(|l| l.strip_prefix("duration=")).and_then(|v| v.parse().ok()).expect("duration");
    let (frames, errors) = decode_every_frame(&file.display().to_string());
    println!(
        "clip download: {duration:.3} s of the 10 s asked (playlist {seconds:.3} s from the key frame before), {frames} frames shown of {packets}, streams: {}",
        text.lines().filter(|l| l.starts_with("codec_type")).collect::<Vec<_>>().join(" ")
    );
    assert!(text.contains("codec_type=video") && text.contains("codec_type=audio"), "{text}");
    // Its edit list starts it at the exact time asked (± a frame); it ends on a part boundary.
    assert!((10.0 - 0.05..=10.0 + 0.25).contains(&duration), "download {duration} s for a 10 s clip");
    assert!(errors.is_empty() && frames <= packets && frames.abs_diff((duration * 25.0).round() as usize) <= 1, "download shows {frames} of {packets} frames in {duration} s: {errors}");
}

/// The pages: the watch page's clip button makes a clip of the live stream, and the channel page
/// it links to lists it and plays it in Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clip_button_and_the_channel_page_in_chromium() {
    let server = TestServer::start().await;
    let _publisher = server.publish();
    server.wait_segments("demo", 3).await;
    let script = repo_root().join("tests/browser/channel-page.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(script).args([server.url(""), "demo".into(), screenshot_dir().display().to_string()]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "channel page run failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    println!("channel page: {report}");
    assert!(report["link"].as_str().is_some_and(|l| l.starts_with("/channel/demo#clip-")), "{report}");
    assert!(report["played"]["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{report}");
    assert!(report["played"]["error"].is_null() && report["errors"].as_array().is_some_and(Vec::is_empty), "{report}");
    assert_eq!(report["clips"], 1, "{report}");
}

/// Media Sequence Number and segment count of a Media Playlist, and whether every segment is
/// named `seg{its MSN}.m4s`.
fn window_of(text: &str) -> (u64, usize, bool) {
    let msn: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).and_then(|v| v.parse().ok()).expect("media sequence");
    let uris: Vec<&str> = text.lines().filter(|l| l.starts_with("seg")).collect();
    let named = uris.iter().enumerate().all(|(i, u)| *u == format!("seg{}.m4s", msn + i as u64));
    (msn, text.matches("#EXTINF:").count(), named)
}

/// Reads `seconds` of a live DVR Multivariant Playlist from the start of its window with ffprobe;
/// returns (video packets, jumps in their decode times other than one frame).
fn dvr_from_its_start(url: &str, seconds: u32) -> (usize, usize) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-live_start_index", "0", "-read_intervals", &format!("%+{seconds}"), "-select_streams", "v", "-show_entries", "packet=dts_time", "-of", "csv=p=0"])
        .arg(url)
        .output()
        .expect("ffprobe");
    let dts: Vec<f64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect();
    let jumps = dts.windows(2).filter(|w| !(0.0..=0.1).contains(&(w[1] - w[0]))).count();
    println!("ffprobe over the DVR window: {} video packets, {jumps} timestamp jump(s), stderr: {}", dts.len(), String::from_utf8_lossy(&out.stderr).trim());
    (dts.len(), jumps)
}

/// DVR: with an 8 s RAM window (4 segments), the live stream's `dvr.m3u8` lists the recorded
/// segments before it, named and numbered as they were live, and answers them from the archive
/// once they left RAM; delta updates skip them; ffprobe reads from the window's start across into
/// the RAM segments with continuous timestamps; the OnAir player in Chromium seeks back into the
/// recorded part, plays there and returns to live; hls.js seeks to the start of the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dvr_window_seek_back_and_return_to_live() {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.hls.window_segments = 4;
    })
    .await;
    let _publisher = server.publish();
    server.wait_segments("demo", 3).await;
    // ~30 s of stream: the DVR playlist lists ≥ 15 segments, the live one 3 (and the open one).
    let dvr_url = server.url("/hls/demo/source/dvr.m3u8");
    let dvr = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(t) = get_text(&dvr_url).await.filter(|t| window_of(t).1 >= 15) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the DVR window fills");
    let live = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("live playlist");
    let ((dvr_msn, dvr_count, dvr_named), (live_msn, live_count, _)) = (window_of(&dvr), window_of(&live));
    println!("DVR playlist: MSN {dvr_msn}, {dvr_count} segments; live: MSN {live_msn}, {live_count} segments");
    assert!(dvr_msn == 0 && live_msn >= 10 && dvr_named, "{dvr}");
    // The DVR playlist ends as the live one does (read a moment later, so its edge may have moved on).
    let last_live = live_msn + live_count as u64 - 1;
    assert!((dvr_msn + dvr_count as u64 - 1..=dvr_msn + dvr_count as u64).contains(&last_live), "{dvr}\n{live}");
    assert!(dvr.contains("#EXT-X-PART:") && dvr.contains("#EXT-X-PRELOAD-HINT") && !dvr.contains("PLAYLIST-TYPE"), "a live sliding window: {dvr}");
    // The oldest segment left RAM long ago: answered from the recording.
    let r = client().get(server.url("/hls/demo/source/seg0.m4s")).send().await.expect("seg0");
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.expect("body").len() > 10_000);
    assert!(server.metric("onair_dvr_media_bytes_total").await > 10_000.0);
    let delta = get_text(&format!("{dvr_url}?_HLS_skip=YES")).await.expect("delta update");
    let skipped: usize = delta.lines().find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS=")).and_then(|v| v.parse().ok()).expect("EXT-X-SKIP");
    println!("delta update: {} bytes instead of {}, {skipped} segments skipped", delta.len(), dvr.len());
    // CAN-SKIP-UNTIL is 6 × TD (12 s): everything older is skipped.
    assert!(skipped + 7 >= dvr_count && window_of(&delta).1 + skipped >= dvr_count, "{delta}");
    assert!(get_text(&server.url("/hls/demo/dvr.m3u8")).await.is_some_and(|m| m.contains("source/dvr.m3u8") && m.contains("audio/dvr.m3u8")));

    // ffprobe from the start of the window, 20 s of it: recorded segments, then the RAM window.
    let (packets, jumps) = dvr_from_its_start(&server.url("/hls/demo/dvr.m3u8"), 20);
    assert!(packets >= 400 && jumps == 0, "{packets} packets, {jumps} jumps");

    // The OnAir player: live, 14 s back (the RAM window holds 8 s), live again.
    let script = repo_root().join("tests/browser/dvr-play.mjs");
    let shot = screenshot_dir().join("watch-dvr.png");
    let mut cmd = Command::new("node");
    cmd.arg(script).args([server.url("/watch/demo"), "14".into(), "--screenshot".into(), shot.display().to_string(), "--hlsjs".into(), server.url("/hls/demo/dvr.m3u8")]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "DVR run failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let phase = |name: &str| -> Vec<serde_json::Value> { report[name].as_array().cloned().unwrap_or_default() };
    let last_latency = |name: &str| phase(name).iter().rev().find_map(|s| s["latency"].as_f64());
    // Media played in a phase: from the earliest playing position (a seek starts a new timeline
    // at 10 s, before where the live one had got to) to the last.
    let played = |name: &str| {
        let p = phase(name);
        let ct = |s: &serde_json::Value| s["currentTime"].as_f64().unwrap_or(0.0);
        let playing: Vec<f64> = p.iter().filter(|s| s["state"] == "playing").map(ct).collect();
        p.last().map(ct).unwrap_or(0.0) - playing.iter().copied().fold(f64::MAX, f64::min)
    };
    let (live, dvr_l, back) = (last_latency("live"), last_latency("dvr"), last_latency("back_to_live"));
    println!(
        "player: live latency {live:?} s; after seekBack(14): playing again after {} ms, {dvr_l:?} s behind live, played {:.1} s of the window; after goLive: {back:?} s; errors {}",
        report["seekToPlayingMs"],
        played("dvr"),
        report["consoleErrors"]
    );
    let trace: Vec<String> = phase("dvr").iter().map(|s| format!("{:.1}/{}", s["currentTime"].as_f64().unwrap_or(0.0), s["state"].as_str().unwrap_or(""))).collect();
    println!("after the seek, currentTime/state every 250 ms: {}", trace.join(" "));
    assert!(report["seekError"].is_null() && report["liveError"].is_null(), "{report}");
    assert!(live.is_some_and(|l| l < 4.0), "{report}");
    assert!(dvr_l.is_some_and(|l| (12.0..=22.0).contains(&l)), "{report}");
    assert!(phase("dvr").last().is_some_and(|s| s["atLive"] == false) && played("dvr") >= 4.0, "{report}");
    assert!(back.is_some_and(|l| l < 4.0) && phase("back_to_live").last().is_some_and(|s| s["atLive"] == true), "{report}");
    // hls.js on the same DVR playlists: the window is seekable, and it plays from its start.
    let h = &report["hlsjs"];
    println!("hls.js on dvr.m3u8: {h}");
    let span = h["seekable"].as_array().and_then(|s| Some(s.get(1)?.as_f64()? - s.first()?.as_f64()?)).unwrap_or(0.0);
    assert!(span >= 20.0, "the whole window is seekable: {h}");
    assert!(h["played"].as_f64().unwrap_or(0.0) >= 2.0 && h["latencyAfterSeek"].as_f64().unwrap_or(0.0) >= 15.0, "{h}");

    // The OnAir player on the recording's own EVENT playlist (any HLS server's shape: byte
    // ranges of files, fetched with Range requests; no parts, no blocking reload).
    let id = broadcasts(&server.url(""), "demo").await.first().and_then(|b| b["id"].as_str().map(str::to_string)).expect("broadcast");
    let watch = server.url(&format!("/watch/demo?src=/hls/demo/vod/{id}/master.m3u8"));
    let report = play_with_onair(&watch, 8, &[]).await;
    let ct = samples(&report["onair"], "currentTime", 0.0);
    let played = ct.last().copied().unwrap_or(0.0) - ct.iter().copied().find(|t| *t > 0.0).unwrap_or(f64::MAX);
    println!("OnAir player on the EVENT playlist of byte ranges: played {played:.1} s, {} fragments, last error {}", report["onair"]["last"]["fragments"], report["onair"]["last"]["lastError"]);
    assert!(played >= 3.0 && report["onair"]["consoleErrors"].as_array().is_some_and(Vec::is_empty), "{}", report["onair"]);
}

/// Archived media follows the playback token policy: with `playback.require_token`, the
/// broadcast list's playlist URLs carry a token prefix (as the playback API's do), which plays;
/// the same media without a token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_media_under_required_playback_tokens() {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.playback.require_token = true;
    })
    .await;
    let _publisher = server.publish();
    let (playlist, media) = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(p) = broadcasts(&server.url(""), "demo").await.first().and_then(|b| b["playlist"].as_str().map(str::to_string)) {
                let media = get_text(&server.url(&p.replace("master.m3u8", "source.m3u8"))).await.unwrap_or_default();
                if media.matches("#EXTINF").count() >= 2 {
                    return (p, media);
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await
    .expect("a recording broadcast with a tokened playlist");
    println!("tokened playlist URL: {playlist}");
    assert!(playlist.starts_with("/t/") && media.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{playlist}\n{media}");
    let file = media.lines().find(|l| l.starts_with("files/")).expect("a file URI");
    let tokened = server.url(&playlist.replace("master.m3u8", file));
    let r = client().get(&tokened).header("Range", "bytes=0-99").send().await.expect("ranged file");
    assert_eq!(r.status(), 206);
    let untokened = playlist.split_once("/hls/").map(|(_, rest)| format!("/hls/{rest}")).expect("path");
    assert_eq!(client().get(server.url(&untokened)).send().await.expect("untokened").status(), 403);
    assert_eq!(client().get(server.url(&untokened.replace("master.m3u8", file))).send().await.expect("untokened file").status(), 403);
}

/// Discontinuity Sequence Number of the last segment of a Media Playlist (§4.4.3.3).
fn last_discontinuity_sequence(text: &str) -> u64 {
    let base: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:")).and_then(|v| v.parse().ok()).unwrap_or(0);
    base + text.lines().filter(|l| *l == "#EXT-X-DISCONTINUITY").count() as u64
}

/// DVR across an encoder reconnect: once the discontinuity has left RAM, the DVR playlist still
/// lists it (in the recorded part) and numbers the live edge's discontinuity sequence as the live
/// playlist does; ffprobe reads across it; the OnAir player seeks back to before the reconnect
/// and plays through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dvr_window_across_a_reconnect() {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.hls.window_segments = 4;
        c.ingest.reconnect_grace_ms = 4_000;
    })
    .await;
    let fixture = obs_like_fixture();
    let mut first = Publisher::start(&fixture, &server.rtmp_url(&server.key));
    tokio::time::sleep(Duration::from_secs(10)).await;
    first.kill();
    let dropped_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let _second = Publisher::start(&fixture, &server.rtmp_url(&server.key));
    // Until the reconnect's discontinuity has left the live window.
    let (live, dvr) = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let live = get_text(&server.url("/hls/demo/source/index.m3u8")).await.unwrap_or_default();
            if live.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1") && !live.contains("#EXT-X-DISCONTINUITY\n") {
                let dvr = get_text(&server.url("/hls/demo/source/dvr.m3u8")).await.unwrap_or_default();
                return (live, dvr);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await
    .expect("the discontinuity leaves the live window");
    let (dvr_seq, live_seq) = (last_discontinuity_sequence(&dvr), last_discontinuity_sequence(&live));
    println!("after the reconnect: live playlist discontinuity sequence {live_seq}, DVR playlist {dvr_seq} ({} EXT-X-DISCONTINUITY in it)", dvr.matches("#EXT-X-DISCONTINUITY\n").count());
    assert!(dvr.contains("#EXT-X-DISCONTINUITY\n") && !dvr.contains("#EXT-X-DISCONTINUITY-SEQUENCE"), "{dvr}");
    assert_eq!(dvr_seq, live_seq, "{dvr}\n{live}");

    let (packets, jumps) = dvr_from_its_start(&server.url("/hls/demo/dvr.m3u8"), 14);
    assert!(packets >= 300 && jumps <= 1, "{packets} packets, {jumps} jumps");

    // Seek to 4 s before the connection dropped, then play across the reconnect.
    let script = repo_root().join("tests/browser/dvr-play.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(script).args([server.url("/watch/demo"), format!("@{}", dropped_ms - 4000)]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "DVR run failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let phase: Vec<serde_json::Value> = report["dvr"].as_array().cloned().unwrap_or_default();
    let ct = |s: &serde_json::Value| s["currentTime"].as_f64().unwrap_or(0.0);
    let playing: Vec<f64> = phase.iter().filter(|s| s["state"] == "playing").map(ct).collect();
    let played = phase.last().map(ct).unwrap_or(0.0) - playing.iter().copied().fold(f64::MAX, f64::min);
    println!("player: seekBack({}) to 4 s before the drop → played {played:.1} s across the reconnect in 10 s, stats {}", report["seekBack"], phase.last().cloned().unwrap_or_default());
    assert!(report["seekError"].is_null() && played >= 7.0, "{report}");
}
