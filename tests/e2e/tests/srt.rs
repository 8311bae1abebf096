//! SRT ingest end to end: ffmpeg publishes MPEG-TS over SRT (libsrt, a peer we did not write) with
//! each `streamid` form; ffmpeg reads the LL-HLS output back.

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn decoded_seconds(server: &TestServer) -> f64 {
    decode_with_ffmpeg(&server.url("/hls/demo/master.m3u8"), 5).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_publish_with_access_control_streamid_plays_back() {
    let server = TestServer::start().await;
    let url = server.srt_url(&format!("#!::r=live/{},m=publish", server.key), "");
    let _publisher = Publisher::start(&obs_like_fixture(), &url);
    server.wait_segments("demo", 2).await;
    let secs = decoded_seconds(&server).await;
    println!("SRT (#!:: streamid): ffmpeg decoded {secs:.2} s from LL-HLS");
    assert!(secs >= 4.9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_publish_of_hevc_is_packaged_as_hevc_cmaf() {
    let fixture = tokio::task::spawn_blocking(hevc_fixture).await.expect("join");
    let server = TestServer::start().await;
    // ffmpeg turns the mp4's hvcC samples into Annex B with in-band VPS/SPS/PPS (stream_type 0x24).
    let url = server.srt_url(&format!("publish:live/{}", server.key), "");
    let _publisher = Publisher::start(&fixture, &url);
    server.wait_segments("demo", 2).await;
    let master = get_text(&server.url("/hls/demo/master.m3u8")).await.expect("master");
    assert!(master.contains("CODECS=\"hvc1.1.6.L93.90,mp4a.40.2\"") && master.contains("RESOLUTION=1280x720"), "{master}");
    let (secs, frames) = decode_with_ffmpeg(&server.url("/hls/demo/master.m3u8"), 4).await;
    println!("SRT HEVC: ffmpeg decoded {secs:.2} s, {frames} frames from LL-HLS");
    assert!(secs >= 3.9 && frames >= 95, "decoded {secs} s, {frames} frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_publish_with_short_streamid_and_passphrase_plays_back() {
    let server = TestServer::start().await;
    // A second channel with a passphrase; the demo channel is unencrypted.
    let secret = server.running.channels.create_with("secret", Some("correct horse battery")).await.expect("channel");
    for extra in ["&passphrase=wrong horse battery&pbkeylen=16", ""] {
        let url = server.srt_url(&format!("publish:live/{}", secret.stream_key), extra);
        let out = publish_once(&obs_like_fixture(), &url, 2, None).await;
        assert!(!out.status.success(), "publishing with passphrase {extra:?} should fail");
    }
    let url = server.srt_url(&format!("publish:live/{}", secret.stream_key), "&passphrase=correct horse battery&pbkeylen=16");
    let _publisher = Publisher::start(&obs_like_fixture(), &url);
    server.wait_renditions("secret", &["source", "audio"], 2).await;
    let master = get_text(&server.url("/hls/secret/master.m3u8")).await.expect("master");
    assert!(master.contains("RESOLUTION=1280x720"));

    let url = server.srt_url(&format!("publish:live/{}", server.key), "");
    let _plain = Publisher::start(&obs_like_fixture(), &url);
    server.wait_segments("demo", 2).await;
    assert!(decoded_seconds(&server).await >= 4.9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_refusals_and_garbage_leave_the_live_channel_alone() {
    let server = TestServer::start().await;
    let _publisher = server.publish(); // RTMP
    server.wait_segments("demo", 1).await;
    let fixture = obs_like_fixture();
    let kinds = ["bad_stream_key", "bad_stream_id"];
    let before = error_counts(&server.url(""), &kinds).await;
    for stream_id in ["publish:live/live_wrong_key".to_string(), format!("#!::r=live/{},m=request", server.key)] {
        let url = server.srt_url(&stream_id, "");
        let started = Instant::now();
        let out = publish_once(&fixture, &url, 3, Some(1)).await;
        assert!(!out.status.success(), "streamid {stream_id} should be refused");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // Random datagrams at the SRT port.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let mut seed = 0x1234_5678u32;
    for _ in 0..5000 {
        let len = (seed % 1400) as usize + 1;
        let packet: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let _ = udp.send_to(&packet, server.running.srt_addr.expect("SRT listener")).await;
    }
    // The live channel still gets its next part promptly.
    live_channel_is_healthy(&server).await;
    assert_errors_counted(&server.url(""), &kinds, &before).await;
}
