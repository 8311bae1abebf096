//! Live viewer counts: the one definition of a viewer (`onair_cluster::viewers`) as the directory
//! API shows it, driven by the load generator's simulated viewers (each its own playback session).

mod common;

use std::time::{Duration, Instant};

use common::TestServer;

/// `viewers` of `channel` in `/api/v1/channels` (0 when not listed).
async fn listed(server: &TestServer, channel: &str) -> u64 {
    let list = common::get_text(&server.url("/api/v1/channels")).await.unwrap_or_default();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
    list.as_array().into_iter().flatten().find(|c| c["channel"] == channel).and_then(|c| c["viewers"].as_u64()).unwrap_or(0)
}

/// Polls until the listed count is `want`; the time it took, or `None` after `limit`.
async fn until_listed(server: &TestServer, want: u64, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if listed(server, "demo").await == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_viewers_show_in_the_directory_and_leave_it() {
    // Fifty viewers from one loopback address: above the default cap of connections per address.
    let server = TestServer::start_with(|c| {
        c.transcode.enabled = false;
        c.http.max_connections_per_ip = 1000;
    })
    .await;
    let _publisher = server.publish();
    server.wait_segments("demo", 1).await;
    // The harness's own playlist requests (waiting for segments) are a viewer too, for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let harness = listed(&server, "demo").await;
    assert!(harness <= 1, "{harness}");
    let load = tokio::spawn(onair_loadgen::run(onair_loadgen::LoadConfig {
        playlists: vec![server.url("/hls/demo/source/index.m3u8")],
        viewers: 50,
        ramp_per_s: 100.0,
        duration: Duration::from_secs(15),
        http2: false,
        usher: None,
    }));
    let up = until_listed(&server, 50 + harness, Duration::from_secs(10)).await;
    println!("50 viewers listed after {up:?}");
    assert!(up.is_some(), "the directory showed {} viewers, not 50, within 10 s", listed(&server, "demo").await);
    // The recording broadcast keeps its peak concurrent viewers in the database.
    let peak = || async {
        let list = common::get_text(&server.url("/api/v1/channels/demo/broadcasts")).await.unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&list).ok().and_then(|l| l[0]["peak_viewers"].as_u64()).unwrap_or(0)
    };
    let started = Instant::now();
    while peak().await < 50 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let kept = peak().await;
    println!("peak viewers of the broadcast: {kept}");
    assert!((50..=51).contains(&kept), "peak viewers kept: {kept}");
    let report = load.await.expect("load");
    assert!(report.errors == 0, "load errors: {}", report.errors);
    let stopped = Instant::now();
    let down = until_listed(&server, 0, Duration::from_secs(45)).await;
    println!("0 viewers listed {down:?} after the viewers stopped");
    assert!(down.is_some(), "still {} viewers 45 s after they stopped", listed(&server, "demo").await);
    assert!(stopped.elapsed() > Duration::from_secs(25), "viewers stay counted ~30 s after their last request");
    assert_eq!(peak().await, kept, "the peak stays when the viewers leave");
}
