//! Enhanced RTMP: HEVC, AV1 and VP9 published with the `hvc1`, `av01` and `vp09` FourCCs, as OBS
//! 29.1+ (and FFmpeg 6.1+) send them.
//!
//! Debian's FFmpeg 5.1 cannot publish Enhanced RTMP, so the publisher here is the `rml_rtmp`
//! crate's RTMP client session (a third-party RTMP implementation), fed with the samples of files
//! that FFmpeg encoded from the real sample (libx265, SVT-AV1, libvpx-vp9). The video messages are built as the
//! Enhanced RTMP spec lays them out: `[IsExHeader|FrameType|PacketType][FourCC]` followed by the
//! configuration record (SequenceStart: hvcC / av1C) or the frame (CodedFrames: for `hvc1` an SI24
//! composition time and length-prefixed NAL units; for `av01` the OBUs; for `vp09` the frame).
//! Audio is plain FLV AAC.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use mp4_atom::{Any, Atom, Decode};

/// The sample as AV1 640x360p25 (SVT-AV1, preset 12), a key frame every 2 s.
fn av1_fixture() -> PathBuf {
    sample_fixture(
        "bbb-av1-v1.mp4",
        &["-vf", "scale=640:360", "-c:v", "libsvtav1", "-preset", "12", "-b:v", "800k", "-g", "50", "-svtav1-params", "keyint=50:scd=0"],
    )
}

/// The sample as VP9 640x360p25 (libvpx-vp9 realtime), a key frame every 2 s.
fn vp9_fixture() -> PathBuf {
    sample_fixture(
        "bbb-vp9-v1.mp4",
        &["-vf", "scale=640:360", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "800k", "-g", "50", "-keyint_min", "50"],
    )
}

/// Reads back `rendition`'s first complete segment (with its init segment) with ffprobe, decoding
/// every frame: returns (codec, codec tag, width, height, frames).
async fn probe_first_segment(server: &TestServer, rendition: &str) -> (String, String, i64, i64, u64) {
    let playlist = get_text(&server.url(&format!("/hls/demo/{rendition}/index.m3u8"))).await.expect("playlist");
    let seg = playlist.lines().find(|l| l.starts_with("seg")).expect("a complete segment").to_string();
    let get = |path: String| async move { client().get(server.url(&path)).send().await.expect("get").bytes().await.expect("body") };
    let mut file = get(format!("/hls/demo/{rendition}/init.mp4")).await.to_vec();
    file.extend_from_slice(&get(format!("/hls/demo/{rendition}/{seg}")).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("segment.mp4");
    std::fs::write(&path, &file).expect("write");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=codec_name,codec_tag_string,width,height,nb_read_frames", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    eprintln!("ffprobe of {rendition} {seg}: {probe}");
    let s = &probe["streams"][0];
    let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
    let frames = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    (text("codec_name"), text("codec_tag_string"), s["width"].as_i64().unwrap_or(0), s["height"].as_i64().unwrap_or(0), frames)
}

/// A server with one small H.264 rung (keeps the 2 cores for the test itself), published to from
/// `fixture` over Enhanced RTMP until the returned flag is set.
async fn serve_and_publish(fixture: PathBuf) -> (TestServer, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = true;
        c.transcode.ladder = vec![onair_transcoder::Rung { name: "360p".into(), height: 360, bitrate_kbps: 600, max_fps: 25 }];
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (addr, key, stop) = (server.rtmp, server.key.clone(), stop.clone());
        std::thread::spawn(move || publish_ertmp(addr, key, fixture, stop))
    };
    server.wait_renditions("demo", &["source", "360p", "audio"], 2).await;
    (server, stop, publisher)
}

/// Plays the channel with the OnAir player for 15 s; returns (seconds played, rendition at the end).
async fn play(server: &TestServer) -> (f64, String) {
    let report = play_with_onair(&server.url("/watch/demo"), 15, &[]).await;
    let onair = &report["onair"];
    let times: Vec<f64> = onair["samples"].as_array().expect("samples").iter().filter_map(|s| s["currentTime"].as_f64()).filter(|t| *t > 0.0).collect();
    let played = times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0);
    eprintln!("OnAir player: played {played:.1} s; last stats {}", onair["last"]);
    (played, onair["last"]["rendition"].as_str().unwrap_or_default().to_string())
}

/// The two tests each run a transcoder and a browser: one at a time on 2 cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One FLV message to send: (timestamp ms, is video, body).
type Message = (u64, bool, Bytes);

/// The fixture as Enhanced RTMP video messages and FLV AAC audio messages, in time order, plus the
/// duration of one loop in ms.
fn messages(path: &PathBuf) -> (Vec<Message>, Vec<Message>, u64) {
    let file = std::fs::read(path).expect("fixture");
    // The configuration record, read from the sample entry with mp4-atom.
    let mut buf = &file[..];
    let mut config: Option<(&[u8; 4], Vec<u8>)> = None;
    while !buf.is_empty() {
        if let Ok(Any::Moov(moov)) = Any::decode(&mut buf) {
            for codec in moov.trak.iter().flat_map(|t| t.mdia.minf.stbl.stsd.codecs.iter()) {
                let mut record = Vec::new();
                match codec {
                    mp4_atom::Codec::Hev1(h) => {
                        h.hvcc.encode_body(&mut record).expect("hvcC");
                        config = Some((b"hvc1", record));
                    }
                    mp4_atom::Codec::Av01(a) => {
                        a.av1c.encode_body(&mut record).expect("av1C");
                        config = Some((b"av01", record));
                    }
                    mp4_atom::Codec::Vp09(v) => {
                        v.vpcc.encode_body(&mut record).expect("vpcC");
                        config = Some((b"vp09", record));
                    }
                    _ => {}
                }
            }
        }
    }
    let (fourcc, record) = config.expect("an hev1, av01 or vp09 sample entry");
    let mut reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(&file), file.len() as u64).expect("mp4");
    let tracks: Vec<(u32, bool, u32)> = reader
        .tracks()
        .values()
        .map(|t| (t.track_id(), &t.trak.mdia.hdlr.handler_type.value == b"vide", t.timescale()))
        .collect();
    let mut header = vec![(0, true, Bytes::from([&[0x90u8][..], fourcc, &record].concat()))];
    let mut media = Vec::new();
    let mut end_ms = 0;
    for (id, is_video, timescale) in tracks {
        if !is_video {
            let asc = reader.tracks()[&id].trak.mdia.minf.stbl.stsd.mp4a.as_ref().and_then(|a| a.esds.as_ref()).map(|e| {
                let d = &e.es_desc.dec_config.dec_specific;
                let v = (u16::from(d.profile) << 11) | (u16::from(d.freq_index) << 7) | (u16::from(d.chan_conf) << 3);
                v.to_be_bytes()
            });
            header.push((0, false, Bytes::from([&[0xaf, 0x00][..], &asc.expect("AAC config")].concat())));
        }
        for n in 1..=reader.sample_count(id).expect("samples") {
            let Some(s) = reader.read_sample(id, n).expect("sample") else { continue };
            let ms = s.start_time * 1000 / u64::from(timescale);
            end_ms = end_ms.max((s.start_time + u64::from(s.duration)) * 1000 / u64::from(timescale));
            let body = if is_video {
                // FrameType 1 (key) or 2 (inter), PacketType 1 (CodedFrames).
                let first = 0x80 | if s.is_sync { 0x10 } else { 0x20 } | 0x01;
                if fourcc == b"hvc1" {
                    // SI24 composition time, then the length-prefixed NAL units.
                    let cts = (i64::from(s.rendering_offset) * 1000 / i64::from(timescale)) as i32;
                    [&[first][..], fourcc, &cts.to_be_bytes()[1..], &s.bytes].concat()
                } else {
                    [&[first][..], fourcc, &s.bytes].concat()
                }
            } else {
                [&[0xaf, 0x01][..], &s.bytes].concat()
            };
            media.push((ms, is_video, Bytes::from(body)));
        }
    }
    media.sort_by_key(|m| m.0);
    (header, media, end_ms)
}

/// Publishes `path` in a loop, in real time, over RTMP with the rml_rtmp client, until `stop`.
fn publish_ertmp(addr: std::net::SocketAddr, key: String, path: PathBuf, stop: Arc<AtomicBool>) {
    let (header, media, loop_ms) = messages(&path);
    let mut client = RtmpClient::publish(addr, &key);
    for (ms, video, body) in &header {
        client.send(*ms, *video, body.clone()).expect("header");
    }
    let started = Instant::now();
    for lap in 0.. {
        for (ms, video, body) in &media {
            let at = lap * loop_ms + ms;
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(wait) = Duration::from_millis(at).checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            client.send(at, *video, body.clone()).expect("send");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hevc_over_enhanced_rtmp_is_packaged_and_transcoded() {
    let _serial = SERIAL.lock().await;
    let fixture = tokio::task::spawn_blocking(hevc_fixture).await.expect("join");
    let (server, stop, publisher) = serve_and_publish(fixture).await;
    let master = get_text(&server.url("/hls/demo/master.m3u8")).await.expect("master");
    eprintln!("{master}");
    assert!(master.contains("CODECS=\"hvc1.1.6.L93.90,mp4a.40.2\""), "HEVC source variant:\n{master}");
    // The 360p rung is below the 720p source: H.264.
    assert!(master.contains("avc1.") && master.contains("RESOLUTION=640x360"), "H.264 rung:\n{master}");
    let (codec, tag, w, h, frames) = probe_first_segment(&server, "source").await;
    assert_eq!((codec.as_str(), tag.as_str(), w, h), ("hevc", "hvc1", 1280, 720));
    assert!(frames >= 25, "decoded {frames} frames of one segment");
    // Chromium's MSE has no HEVC: the player leaves the source out and plays the H.264 rung.
    let (played, rendition) = play(&server).await;
    assert_eq!(rendition, "640x360");
    assert!(played > 8.0, "played only {played:.1} s");
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || publisher.join()).await;
}

/// A 640x360 source in `codec` (ffprobe's name; sample entry `tag`, CODECS prefix `codecs`):
/// packaged as such, an H.264 rung at its own height for players without that codec, and the
/// OnAir player plays the channel.
async fn small_source_is_packaged_and_transcoded(fixture: PathBuf, codecs: &str, codec: &str, tag: &str) {
    let (server, stop, publisher) = serve_and_publish(fixture).await;
    let master = get_text(&server.url("/hls/demo/master.m3u8")).await.expect("master");
    eprintln!("{master}");
    assert!(master.contains(&format!("CODECS=\"{codecs}")) && master.contains(".08,mp4a.40.2\""), "{codec} source variant:\n{master}");
    assert_eq!(master.matches("RESOLUTION=640x360").count(), 2, "{master}");
    let (got, got_tag, w, h, frames) = probe_first_segment(&server, "source").await;
    assert_eq!((got.as_str(), got_tag.as_str(), w, h), (codec, tag, 640, 360));
    assert!(frames >= 25, "decoded {frames} frames of one segment");
    let (got, _, w, h, frames) = probe_first_segment(&server, "360p").await;
    assert_eq!((got.as_str(), w, h), ("h264", 640, 360));
    assert!(frames >= 25, "decoded {frames} frames of the rung's segment");
    let (played, _) = play(&server).await;
    assert!(played > 8.0, "played only {played:.1} s");
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || publisher.join()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn av1_over_enhanced_rtmp_is_packaged_and_transcoded() {
    let _serial = SERIAL.lock().await;
    let fixture = tokio::task::spawn_blocking(av1_fixture).await.expect("join");
    small_source_is_packaged_and_transcoded(fixture, "av01.0.", "av1", "av01").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vp9_over_enhanced_rtmp_is_packaged_and_transcoded() {
    let _serial = SERIAL.lock().await;
    let fixture = tokio::task::spawn_blocking(vp9_fixture).await.expect("join");
    small_source_is_packaged_and_transcoded(fixture, "vp09.00.", "vp9", "vp09").await;
}
