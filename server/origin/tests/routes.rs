//! The origin's routes driven in-process with `tower::ServiceExt::oneshot` over a real store,
//! with tokio's clock paused so the 3 × target duration limits run instantly.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use onair_origin::{router, OriginState};
use onair_store::{NewPart, Placement, RenditionInfo, RenditionWriter, Session, Store, TimelineConfig};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct Setup {
    app: axum::Router,
    session: Session,
    writer: RenditionWriter,
    shutdown: CancellationToken,
}

fn setup() -> Setup {
    let store = Arc::new(Store::new(TimelineConfig::default()));
    let session = store.start("demo", false).expect("start");
    let info = RenditionInfo {
        name: "source".into(),
        is_video: true,
        codec: "avc1.64001f".into(),
        resolution: Some((1280, 720)),
        frame_rate: Some(25.0),
        channels: None,
        nominal_bitrate: None,
        timescale: 90_000,
    };
    let writer = session.writer(info, Bytes::from_static(b"init")).expect("writer");
    let shutdown = CancellationToken::new();
    Setup { app: router(OriginState::new(store, shutdown.clone(), None, None)), session, writer, shutdown }
}

fn add_parts(w: &RenditionWriter, n: u64) {
    for i in 0..n {
        let id = w.rendition().position().next_part_id;
        let part = NewPart { program_date_time: SystemTime::now(), duration: 18_000, independent: id.is_multiple_of(10), data: Bytes::from(vec![i as u8; 8]), produced_at: SystemTime::now() };
        w.append(Placement::Next { starts_segment: id.is_multiple_of(10) }, part).expect("append");
    }
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, String) {
    let resp = app.clone().oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("response");
    let status = resp.status();
    let cc = resp.headers().get("cache-control").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, cc, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(start_paused = true)]
async fn blocking_request_times_out_with_503_after_three_target_durations() {
    let Setup { app, writer: r, session: _session, .. } = setup();
    add_parts(&r, 3);
    let started = tokio::time::Instant::now();
    let (status, cc, _) = get(&app, "/hls/demo/source/index.m3u8?_HLS_msn=0&_HLS_part=5").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), Duration::from_secs(6), "3 x TD with TD = 2 s");
    assert_eq!(cc, "no-store", "a 503 is about this server now: never cached");
}

#[tokio::test(start_paused = true)]
async fn blocking_request_wakes_when_the_part_lands() {
    let Setup { app, writer: r, session: _session, .. } = setup();
    add_parts(&r, 3);
    let app2 = app.clone();
    let waiter = tokio::spawn(async move { get(&app2, "/hls/demo/source/index.m3u8?_HLS_msn=0&_HLS_part=4").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "must hold until part 4 exists");
    add_parts(&r, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    add_parts(&r, 1);
    let (status, cc, body) = waiter.await.expect("join");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cc, "public, max-age=12, stale-while-revalidate=0, stale-if-error=0");
    assert!(body.contains("part4.m4s") && body.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part5.m4s\""));
}

#[tokio::test(start_paused = true)]
async fn part_past_segment_end_means_next_segment_and_endlist_releases_waiters() {
    let Setup { app, session, writer: r, .. } = setup();
    add_parts(&r, 10); // segment 0: parts 0..=9
    let app2 = app.clone();
    // Part 12 of segment 0 does not exist: it means part 0 of segment 1.
    let waiter = tokio::spawn(async move { get(&app2, "/hls/demo/source/index.m3u8?_HLS_msn=0&_HLS_part=12").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    add_parts(&r, 1); // part 10 starts segment 1
    assert_eq!(waiter.await.expect("join").0, StatusCode::OK);

    let app3 = app.clone();
    let waiter = tokio::spawn(async move { get(&app3, "/hls/demo/source/index.m3u8?_HLS_msn=2").await });
    let hinted = {
        let app4 = app.clone();
        tokio::spawn(async move { get(&app4, "/hls/demo/source/part11.m4s").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    session.end();
    let (status, _, body) = waiter.await.expect("join");
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with("#EXT-X-ENDLIST\n") && !body.contains("PRELOAD-HINT"));
    assert_eq!(hinted.await.expect("join").0, StatusCode::NOT_FOUND, "a hinted part that will never exist is a 404");
}

#[tokio::test(start_paused = true)]
async fn a_part_a_little_past_the_hint_waits_and_one_far_past_is_a_404() {
    let Setup { app, writer: r, session: _session, .. } = setup();
    add_parts(&r, 3); // parts 0..=2; the hint is part 3
    // A player coming from a server one or two parts ahead asks for part 4: it waits.
    let app2 = app.clone();
    let ahead = tokio::spawn(async move { get(&app2, "/hls/demo/source/part4.m4s").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!ahead.is_finished(), "part 4 is worth waiting for");
    let far = onair_origin::PART_LOOKAHEAD + 3;
    let (status, cc, _) = get(&app, &format!("/hls/demo/source/part{far}.m4s")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "part {far} is too far ahead to wait for");
    assert_eq!(cc, "no-store");
    add_parts(&r, 2);
    let (status, _, body) = ahead.await.expect("join");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_bytes(), [1u8; 8], "the bytes of part 4 (the second of the last two added)");
}

#[tokio::test]
async fn bad_requests_and_unknown_resources() {
    let Setup { app, writer: r, session: _session, .. } = setup();
    add_parts(&r, 3);
    assert_eq!(get(&app, "/hls/demo/source/index.m3u8?_HLS_part=1").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/hls/demo/source/index.m3u8?_HLS_msn=3").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/hls/demo/source/index.m3u8?_HLS_msn=abc").await.0, StatusCode::BAD_REQUEST);
    let (status, cc, _) = get(&app, "/hls/nope/source/index.m3u8?_HLS_msn=1").await;
    assert_eq!((status, cc.as_str()), (StatusCode::NOT_FOUND, "public, max-age=8, stale-while-revalidate=0, stale-if-error=0"));
    assert_eq!(get(&app, "/hls/demo/source/part99.m4s").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/hls/demo/source/seg0.m4s").await.0, StatusCode::NOT_FOUND, "open segment");
    assert_eq!(get(&app, "/hls/demo/source/whatever.txt").await.0, StatusCode::NOT_FOUND);
    let (status, cc, body) = get(&app, "/hls/demo/source/part1.m4s").await;
    assert_eq!((status, cc.as_str(), body.len()), (StatusCode::OK, "public, max-age=12, immutable", 8));
    let (status, _, body) = get(&app, "/hls/demo/master.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("RESOLUTION=1280x720") && body.contains("source/index.m3u8"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_blocked_and_new_playlist_requests_with_503_without_endlist() {
    let Setup { app, writer, shutdown, session: _session } = setup();
    add_parts(&writer, 3);
    let app2 = app.clone();
    let blocked = tokio::spawn(async move { get(&app2, "/hls/demo/source/index.m3u8?_HLS_msn=0&_HLS_part=4").await });
    let app3 = app.clone();
    let hinted = tokio::spawn(async move { get(&app3, "/hls/demo/source/part3.m4s").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!blocked.is_finished() && !hinted.is_finished());
    let started = tokio::time::Instant::now();
    shutdown.cancel();
    let (status, cc, _) = blocked.await.expect("join");
    assert_eq!((status, cc.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "no-store"));
    assert_eq!(hinted.await.expect("join").0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_millis(10), "released at once");
    for uri in ["/hls/demo/source/index.m3u8", "/hls/demo/master.m3u8"] {
        let (status, _, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(!body.contains("ENDLIST"));
    }
    assert!(!writer.rendition().position().ended, "the broadcast did not end");
    // Media already produced is still served while the server drains.
    assert_eq!(get(&app, "/hls/demo/source/part1.m4s").await.0, StatusCode::OK);
}

/// A [`onair_origin::History`] that recorded `n` segments before whatever MSN is asked, ending
/// `offset` after the RAM window's first segment starts (0: they meet), and has bytes for
/// segment 999 (long gone from RAM) and init 7.
#[derive(Debug)]
struct Recorded {
    n: u64,
    offset: Duration,
}

impl onair_origin::History for Recorded {
    fn before(&self, channel: &str, _rendition: &str, before: u64) -> Option<onair_origin::Run> {
        let first = before.checked_sub(self.n)?;
        let end = SystemTime::now() + self.offset;
        let segments = (0..self.n)
            .map(|i| onair_origin::RecordedSegment { init_id: 7, program_date_time: end - Duration::from_secs(2 * (self.n - i)), duration: 2.0, discontinuity: false })
            .collect();
        (channel == "demo").then(|| onair_origin::Run { segments: Arc::new(segments), first_msn: first, len: self.n as usize })
    }

    fn media<'a>(&'a self, _channel: &'a str, _rendition: &'a str, what: onair_origin::Recorded) -> futures::future::BoxFuture<'a, Option<Bytes>> {
        let bytes = match what {
            onair_origin::Recorded::Segment(999) => Some(Bytes::from_static(b"recorded segment 999")),
            onair_origin::Recorded::Init(7) => Some(Bytes::from_static(b"init 7")),
            _ => None,
        };
        Box::pin(async move { bytes })
    }
}

fn with_history(history: Recorded) -> (axum::Router, Session, RenditionWriter) {
    let store = Arc::new(Store::new(TimelineConfig { window_segments: 3, ..TimelineConfig::default() }));
    let session = store.start("demo", false).expect("start");
    let info = RenditionInfo { name: "source".into(), is_video: true, codec: "avc1.64001f".into(), resolution: None, frame_rate: None, channels: None, nominal_bitrate: None, timescale: 90_000 };
    let writer = session.writer(info, Bytes::from_static(b"init")).expect("writer");
    let state = OriginState::with_history(store, CancellationToken::new(), None, None, Arc::new(history));
    (router(state), session, writer)
}

#[tokio::test]
async fn dvr_playlist_puts_the_recorded_run_before_the_ram_window() {
    let Setup { app, writer, session: _session, .. } = setup();
    add_parts(&writer, 12);
    assert_eq!(get(&app, "/hls/demo/source/dvr.m3u8").await.0, StatusCode::NOT_FOUND, "no history: no DVR");
    assert_eq!(get(&app, "/hls/demo/dvr.m3u8").await.0, StatusCode::NOT_FOUND);

    let (app, _session, writer) = with_history(Recorded { n: 3, offset: Duration::ZERO });
    add_parts(&writer, 65);
    let (_, _, live) = get(&app, "/hls/demo/source/index.m3u8").await;
    let (status, _, dvr) = get(&app, "/hls/demo/source/dvr.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    let msn = |t: &str| t.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).and_then(|v| v.parse::<u64>().ok()).expect("msn");
    let first = msn(&dvr);
    assert_eq!(first + 3, msn(&live), "{dvr}");
    // Recorded segments are named as they were live; the RAM window follows as in index.m3u8.
    assert!(dvr.starts_with("#EXTM3U") && dvr.contains("#EXT-X-MAP:URI=\"init7.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:"), "{dvr}");
    assert!(dvr.contains(&format!("#EXTINF:2.00000,\nseg{first}.m4s\n")) && dvr.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"), "{dvr}");
    assert!(dvr.contains("#EXT-X-PRELOAD-HINT") && dvr.ends_with(&live[live.find("#EXT-X-PRELOAD-HINT").expect("hint")..]), "{dvr}");
    // Left RAM: answered from the recording.
    let (status, _, body) = get(&app, "/hls/demo/source/seg999.m4s").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "recorded segment 999"));
    assert_eq!(get(&app, "/hls/demo/source/init7.mp4").await.2, "init 7");
    assert_eq!(get(&app, "/hls/demo/source/seg998.m4s").await.0, StatusCode::NOT_FOUND);
    let (_, _, master) = get(&app, "/hls/demo/dvr.m3u8").await;
    assert!(master.contains("\nsource/dvr.m3u8\n"), "{master}");

    // A run that does not meet the window in time (an earlier broadcast numbered alike) is not listed.
    let (app, _session, writer) = with_history(Recorded { n: 3, offset: Duration::from_secs(3600) });
    add_parts(&writer, 65);
    let (_, _, dvr) = get(&app, "/hls/demo/source/dvr.m3u8").await;
    assert_eq!(msn(&dvr), msn(&get(&app, "/hls/demo/source/index.m3u8").await.2), "{dvr}");
}
