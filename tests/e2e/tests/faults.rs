//! Bad publishers and slow peers against a live channel: each bad connection is closed cleanly and
//! the live channel keeps serving parts on time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; returns how long that took.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("server did not close the connection within {limit:?}"),
        }
    }
}

/// Connects and completes the RTMP handshake.
async fn handshaken(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(server.rtmp).await.expect("connect");
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0x5a; 1536]);
    s.write_all(&c0c1).await.expect("C0C1");
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    s.read_exact(&mut s0s1s2).await.expect("S0S1S2");
    assert_eq!(s0s1s2[0], 3);
    s.write_all(&[0x5a; 1536]).await.expect("C2");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_closed_and_the_live_channel_keeps_going() {
    let server = TestServer::start_with(|c| {
        c.rtmp.handshake_timeout_ms = 1500;
        c.rtmp.idle_timeout_ms = 3000;
        c.rtmp.max_message_size = 1 << 20;
    })
    .await;
    let _publisher = server.publish();
    server.wait_segments("demo", 1).await;
    let kinds = ["rtmp_protocol", "bad_stream_key", "already_live", "handshake_timeout"];
    let before = error_counts(&server.url(""), &kinds).await;

    // Not RTMP at all.
    let mut s = TcpStream::connect(server.rtmp).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    until_closed(&mut s, Duration::from_secs(3)).await;

    // Random bytes after a good handshake.
    let mut s = handshaken(&server).await;
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = s.write_all(&garbage).await;
    until_closed(&mut s, Duration::from_secs(5)).await;

    // A chunk announcing a 16 MiB message (over the 1 MiB cap).
    let mut s = handshaken(&server).await;
    let _ = s.write_all(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0, 0xde, 0xad]).await;
    until_closed(&mut s, Duration::from_secs(3)).await;

    // Truncated handshake, then silence: closed after the handshake timeout.
    let mut s = TcpStream::connect(server.rtmp).await.expect("connect");
    s.write_all(&[3u8; 700]).await.expect("write");
    let took = until_closed(&mut s, Duration::from_secs(6)).await;
    assert!(took >= Duration::from_millis(1000), "closed too early: {took:?}");

    // Slow HTTP viewers that request media and never read it.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut v = TcpStream::connect(server.http).await.expect("connect");
        v.write_all(b"GET /hls/demo/source/init.mp4 HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        stalled.push(v);
    }

    // A wrong stream key: ffmpeg is refused and exits with an error.
    let fixture = obs_like_fixture();
    let bad_url = server.rtmp_url("live_not_a_key");
    let out = publish_once(&fixture, &bad_url, 5, Some(1)).await;
    assert!(!out.status.success(), "ffmpeg with a wrong key should fail");
    println!("wrong key: ffmpeg said {}", String::from_utf8_lossy(&out.stderr).trim());

    // A second publisher on the live channel is refused too.
    let url = server.rtmp_url(&server.key);
    let out = publish_once(&fixture, &url, 5, Some(1)).await;
    assert!(!out.status.success(), "a second publisher should be refused");

    live_channel_is_healthy(&server).await;
    assert_errors_counted(&server.url(""), &kinds, &before).await;
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_and_bitrate_limits_close_only_the_offender() {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.ingest.max_publishers = 1;
        c.ingest.max_bitrate_kbps = 2_000;
    })
    .await;
    let _publisher = server.publish();
    server.wait_segments("demo", 1).await;
    let before = error_counts(&server.url(""), &["too_many_publishers"]).await;

    // A second channel while the server has its one publisher: refused.
    let second = server.running.channels.create("second").await.expect("create channel");
    let url = server.rtmp_url(&second.stream_key);
    let fixture = obs_like_fixture();
    let out = publish_once(&fixture, &url, 5, Some(1)).await;
    assert!(!out.status.success(), "a publisher beyond max_publishers should be refused");
    assert_errors_counted(&server.url(""), &["too_many_publishers"], &before).await;

    // A publisher far above the bit-rate cap (the ~1.6 Mbit/s sample read at 4x speed) is disconnected.
    let server2 = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.ingest.max_bitrate_kbps = 2_000;
    })
    .await;
    let key = server2.running.channels.create("fast").await.expect("create").stream_key;
    let before = error_counts(&server2.url(""), &["bitrate_exceeded"]).await;
    let url = server2.rtmp_url(&key);
    let started = Instant::now();
    let out = publish_once(&fixture, &url, 60, Some(4)).await;
    assert!(!out.status.success(), "a publisher over the bit-rate cap should be disconnected");
    assert!(started.elapsed() < Duration::from_secs(30));

    assert_errors_counted(&server2.url(""), &["bitrate_exceeded"], &before).await;
    live_channel_is_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_replaces_the_attached_publisher() {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.ingest.takeover = true;
    })
    .await;
    let mut first = server.publish();
    server.wait_segments("demo", 1).await;
    let before = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("playlist");
    let (msn_before, _) = live_edge(&before);
    let _second = server.publish();
    // The first encoder is disconnected.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if first.child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the first publisher was not disconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The playlists continue after a discontinuity, without an end.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get_text(&server.url("/hls/demo/source/index.m3u8")).await.expect("playlist");
        assert!(!text.contains("#EXT-X-ENDLIST"));
        if text.contains("#EXT-X-DISCONTINUITY\n") && live_edge(&text).0 > msn_before {
            break;
        }
        assert!(Instant::now() < deadline, "no discontinuity after the takeover:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    live_channel_is_healthy(&server).await;
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_connections_does_not_disturb_the_live_channel() {
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.rtmp.handshake_timeout_ms = 2000;
    })
    .await;
    let _publisher = server.publish();
    server.wait_segments("demo", 1).await;
    let rss_before = rss_mib();
    let rtmp = server.rtmp;
    let stop = Instant::now() + Duration::from_secs(8);
    let mut attackers = Vec::new();
    for worker in 0..16u32 {
        attackers.push(tokio::spawn(async move {
            let mut seed = 0x9e37_79b9u32.wrapping_mul(worker + 1);
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed
            };
            let mut connections = 0u32;
            while Instant::now() < stop {
                let Ok(mut s) = TcpStream::connect(rtmp).await else { continue };
                connections += 1;
                let mut bytes: Vec<u8> = (0..(next() % 8192)).map(|_| next() as u8).collect();
                match next() % 4 {
                    // Truncated handshake.
                    0 => bytes.truncate(700.min(bytes.len())),
                    // Valid C0+C1, then garbage.
                    1 => {
                        let mut v = vec![3u8];
                        v.extend_from_slice(&[0; 3072]);
                        v.extend_from_slice(&bytes);
                        bytes = v;
                    }
                    // Valid C0+C1+C2, then a chunk header announcing a huge message, then garbage.
                    2 => {
                        let mut v = vec![3u8];
                        v.extend_from_slice(&[0; 3072]);
                        v.extend_from_slice(&[0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
                        v.extend_from_slice(&bytes);
                        bytes = v;
                    }
                    // Pure random bytes.
                    _ => {}
                }
                let _ = tokio::time::timeout(Duration::from_millis(300), s.write_all(&bytes)).await;
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
            }
            connections
        }));
    }
    let mut checks = 0;
    while Instant::now() < stop {
        live_channel_is_healthy(&server).await;
        checks += 1;
    }
    let mut total = 0;
    for a in attackers {
        total += a.await.expect("attacker");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_mib();
    println!("{total} malformed connections in 8 s; live channel checked {checks} times; RSS {rss_before:.1} -> {rss_after:.1} MiB");
    assert!(total > 100, "the flood was too small: {total}");
    assert!(rss_after - rss_before < 150.0, "RSS grew from {rss_before:.1} to {rss_after:.1} MiB");
    live_channel_is_healthy(&server).await;
}
