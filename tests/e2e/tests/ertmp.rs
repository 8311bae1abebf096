//! Enhanced RTMP: HEVC published with the `hvc1` FourCC, as OBS 29.1+ sends it.
//!
//! Debian's FFmpeg 5.1 cannot publish Enhanced RTMP, so the publisher here is the `rml_rtmp`
//! crate's RTMP client session (a third-party RTMP implementation), fed with the samples of an
//! HEVC file that FFmpeg's libx265 encoded from the real sample. The video messages are built as
//! the Enhanced RTMP spec lays them out: `[IsExHeader|FrameType|PacketType]['hvc1']` followed by
//! the HEVCDecoderConfigurationRecord (SequenceStart) or an SI24 composition time and the
//! length-prefixed NAL units (CodedFrames). Audio is plain FLV AAC.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use mp4_atom::{Any, Atom, Decode};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType};
use rml_rtmp::time::RtmpTimestamp;

/// One FLV message to send: (timestamp ms, is video, body).
type Message = (u64, bool, Bytes);

/// The fixture as Enhanced RTMP video messages and FLV AAC audio messages, in time order, plus the
/// duration of one loop in ms.
fn messages(path: &PathBuf) -> (Vec<Message>, Vec<Message>, u64) {
    let file = std::fs::read(path).expect("fixture");
    // The HEVCDecoderConfigurationRecord, read from the sample entry with mp4-atom.
    let mut buf = &file[..];
    let mut hvcc = None;
    while !buf.is_empty() {
        if let Ok(Any::Moov(moov)) = Any::decode(&mut buf) {
            for trak in &moov.trak {
                for codec in &trak.mdia.minf.stbl.stsd.codecs {
                    if let mp4_atom::Codec::Hev1(h) = codec {
                        hvcc = Some(h.hvcc.clone());
                    }
                }
            }
        }
    }
    let mut record = Vec::new();
    hvcc.expect("hev1 sample entry").encode_body(&mut record).expect("hvcC");
    let mut reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(&file), file.len() as u64).expect("mp4");
    let tracks: Vec<(u32, bool, u32)> = reader
        .tracks()
        .values()
        .map(|t| (t.track_id(), matches!(t.track_type(), Ok(mp4::TrackType::Video)), t.timescale()))
        .collect();
    let mut header = vec![(0, true, Bytes::from([&[0x90u8][..], b"hvc1", &record].concat()))];
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
                let cts = (i64::from(s.rendering_offset) * 1000 / i64::from(timescale)) as i32;
                // FrameType 1 (key) or 2 (inter), PacketType 1 (CodedFrames), SI24 composition time.
                let first = 0x80 | if s.is_sync { 0x10 } else { 0x20 } | 0x01;
                [&[first][..], b"hvc1", &cts.to_be_bytes()[1..], &s.bytes].concat()
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
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    let mut hs = Handshake::new(PeerType::Client);
    sock.write_all(&hs.generate_outbound_p0_and_p1().expect("c0c1")).expect("write");
    let mut buf = vec![0u8; 8192];
    let leftover = loop {
        let n = sock.read(&mut buf).expect("read");
        assert!(n > 0, "server closed during the handshake");
        match hs.process_bytes(&buf[..n]).expect("handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => sock.write_all(&response_bytes).expect("write"),
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                sock.write_all(&response_bytes).expect("write");
                break remaining_bytes;
            }
        }
    };
    let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).expect("session");
    let send = |sock: &mut TcpStream, r: ClientSessionResult| {
        if let ClientSessionResult::OutboundResponse(p) = r {
            sock.write_all(&p.bytes).expect("write");
        }
    };
    // Feeds input until `event` is raised.
    let mut pending = leftover;
    let mut wait_for = |sock: &mut TcpStream, session: &mut ClientSession, want: fn(&ClientSessionEvent) -> bool| loop {
        let input = if pending.is_empty() {
            let n = sock.read(&mut buf).expect("read");
            assert!(n > 0, "server closed the connection");
            buf[..n].to_vec()
        } else {
            std::mem::take(&mut pending)
        };
        let mut done = false;
        for r in session.handle_input(&input).expect("input") {
            match r {
                ClientSessionResult::RaisedEvent(e) => {
                    assert!(!matches!(e, ClientSessionEvent::ConnectionRequestRejected { .. }), "rejected: {e:?}");
                    done |= want(&e);
                }
                other => send(sock, other),
            }
        }
        if done {
            return;
        }
    };
    send(&mut sock, session.request_connection("live".into()).expect("connect"));
    wait_for(&mut sock, &mut session, |e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted));
    send(&mut sock, session.request_publishing(key, PublishRequestType::Live).expect("publish"));
    wait_for(&mut sock, &mut session, |e| matches!(e, ClientSessionEvent::PublishRequestAccepted));
    // Drain what the server sends from now on, so its window never fills.
    let mut reader = sock.try_clone().expect("clone");
    std::thread::spawn(move || while matches!(reader.read(&mut [0u8; 4096]), Ok(n) if n > 0) {});
    let emit = |sock: &mut TcpStream, session: &mut ClientSession, (ms, video, body): &Message| {
        let ts = RtmpTimestamp::new(*ms as u32);
        let r = if *video { session.publish_video_data(body.clone(), ts, false) } else { session.publish_audio_data(body.clone(), ts, false) };
        send(sock, r.expect("serialize"));
    };
    for m in &header {
        emit(&mut sock, &mut session, m);
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
            emit(&mut sock, &mut session, &(at, *video, body.clone()));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hevc_over_enhanced_rtmp_is_packaged_and_transcoded() {
    let fixture = tokio::task::spawn_blocking(hevc_fixture).await.expect("join");
    // One small H.264 rung keeps the 2 cores for the test itself.
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

    let master = get_text(&server.url("/hls/demo/master.m3u8")).await.expect("master");
    eprintln!("{master}");
    assert!(master.contains("CODECS=\"hvc1.1.6.L93.90,mp4a.40.2\""), "HEVC source variant:\n{master}");
    assert!(master.contains("avc1.") && master.contains("RESOLUTION=640x360"), "H.264 rung:\n{master}");

    // ffprobe reads the source rendition back as HEVC (init segment + a whole segment).
    let source = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("playlist");
    let seg = source.lines().find(|l| l.starts_with("seg")).expect("a complete segment").to_string();
    let mut file = client().get(server.url("/hls/demo/source/init.mp4")).send().await.expect("init").bytes().await.expect("init").to_vec();
    file.extend_from_slice(&client().get(server.url(&format!("/hls/demo/source/{seg}"))).send().await.expect("seg").bytes().await.expect("seg"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("source.mp4");
    std::fs::write(&path, &file).expect("write");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=codec_name,codec_tag_string,width,height,nb_read_frames", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    eprintln!("ffprobe of source {seg}: {probe}");
    let s = &probe["streams"][0];
    assert_eq!((s["codec_name"].as_str(), s["codec_tag_string"].as_str()), (Some("hevc"), Some("hvc1")));
    assert_eq!((s["width"].as_i64(), s["height"].as_i64()), (Some(1280), Some(720)));
    let frames: u64 = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(frames >= 25, "decoded {frames} frames of one segment");

    // The browser (no HEVC in Chromium's MSE) plays the H.264 rung with the OnAir player.
    let report = play_with_onair(&server.url("/watch/demo"), 15, &[]).await;
    let onair = &report["onair"];
    let times: Vec<f64> = onair["samples"].as_array().expect("samples").iter().filter_map(|s| s["currentTime"].as_f64()).filter(|t| *t > 0.0).collect();
    let played = times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0);
    eprintln!("OnAir player on the HEVC channel: played {played:.1} s; last stats {}", onair["last"]);
    assert_eq!(onair["last"]["rendition"], "640x360");
    assert!(played > 8.0, "played only {played:.1} s");
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || publisher.join()).await;
}
