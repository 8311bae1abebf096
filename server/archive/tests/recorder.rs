//! The recorder end to end inside one process: a broadcast written into a real store (with a
//! reconnect) is recorded into chunk files and the SQLite index, served as a VOD playlist with
//! byte ranges, and repaired after a simulated crash; on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use bytes::Bytes;
use onair_archive::{Archive, ArchiveConfig};
use onair_db::Database;
use onair_store::{NewPart, Placement, RenditionInfo, Store, TimelineConfig};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

fn info() -> RenditionInfo {
    RenditionInfo { name: "source".into(), is_video: true, codec: "avc1.64001f".into(), resolution: Some((1280, 720)), frame_rate: Some(30.0), channels: None, nominal_bitrate: None, timescale: 90_000 }
}

fn init() -> Bytes {
    let mut b = mp4_box(b"ftyp", b"iso6cmfc");
    b.extend(mp4_box(b"moov", &[1; 40]));
    Bytes::from(b)
}

/// Wall-clock start of the test broadcast's first part: a little before the broadcast starts,
/// as an encoder's first frame is (fixed once per test binary).
fn t0() -> SystemTime {
    static T0: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
    *T0.get_or_init(|| SystemTime::now() - Duration::from_millis(100))
}

/// Part `n` (1/3 s, starting n/3 s after [`t0`]): a moof and an mdat whose bytes name it.
fn part(n: u8) -> NewPart {
    let mut data = mp4_box(b"moof", &[n; 16]);
    data.extend(mp4_box(b"mdat", &[n; 200]));
    let pdt = t0() + Duration::from_millis(u64::from(n) * 1000 / 3);
    NewPart { program_date_time: pdt, duration: 30_000, independent: true, data: Bytes::from(data), produced_at: SystemTime::now() }
}

async fn post(app: &axum::Router, uri: &str, json: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(Body::from(json.to_string())).expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

async fn get(app: &axum::Router, uri: &str, range: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::get(uri);
    if let Some(r) = range {
        req = req.header(header::RANGE, r);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).expect("request")).await.expect("response");
    let status = resp.status();
    (status, axum::body::to_bytes(resp.into_body(), 1 << 24).await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_serves_and_recovers_on_sqlite() {
    records_serves_and_recovers(None).await;
}

/// The same index on a real PostgreSQL 15 (a throwaway cluster on a free loopback port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_serves_and_recovers_on_postgres() {
    let pg = onair_test_engines::PostgresServer::start();
    records_serves_and_recovers(Some(&pg.url())).await;
}

async fn records_serves_and_recovers(url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(url, dir.path()).await.expect("db");
    let (archive, recovery) = Archive::open(&ArchiveConfig::default(), dir.path(), db.clone()).await.expect("archive");
    assert_eq!(recovery.broadcasts, 0);
    let store = Arc::new(Store::new(TimelineConfig::default()));
    let stop = CancellationToken::new();
    let recorder = {
        let (a, s, stop) = (archive.clone(), store.clone(), stop.clone());
        tokio::spawn(async move { a.recorder(s, stop).await })
    };
    let clipper = {
        let (a, stop) = (archive.clone(), stop.clone());
        tokio::spawn(async move { a.clipper(stop).await })
    };

    // 4 segments of 3 parts, the publisher drops (the open segment closes), comes back, 2 more.
    let session = store.start("demo", false).expect("start");
    let w = session.writer(info(), init()).expect("writer");
    let mut n = 0u8;
    for seg in 0..4 {
        for p in 0..3 {
            w.append(Placement::Next { starts_segment: p == 0 && seg > 0 }, part(n)).expect("append");
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(w);
    assert!(session.interrupt());
    let session = store.start("demo", false).expect("resume");
    let w = session.writer(info(), init()).expect("writer again");
    for seg in 0..2 {
        for p in 0..3 {
            w.append(Placement::Next { starts_segment: p == 0 && seg > 0 }, part(n)).expect("append");
            n += 1;
        }
    }
    assert!(session.end());

    let index = archive.index();
    let b = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(b) = index.broadcasts("demo").await.expect("list").into_iter().find(|b| b.ended) {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the broadcast is recorded and ended");
    let segments = index.segments(&b.id, "source").await.expect("segments");
    assert_eq!(segments.iter().map(|s| s.msn).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(segments.iter().map(|s| s.discontinuity).collect::<Vec<_>>(), vec![false, false, false, false, true, false]);
    assert!(segments.iter().all(|s| s.duration_us == 1_000_000 && !s.gap_before));

    let (api, media) = archive.routers(None);
    let app = api.merge(media);
    let (status, list) = get(&app, "/api/v1/channels/demo/broadcasts", None).await;
    assert_eq!(status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_slice(&list).expect("json");
    assert_eq!(list[0]["id"], b.id.as_str());
    assert_eq!(list[0]["state"], "ended");
    assert_eq!(list[0]["renditions"][0], "source");

    let (status, master) = get(&app, &format!("/hls/demo/vod/{}/master.m3u8", b.id), None).await;
    assert_eq!(status, StatusCode::OK);
    let master = String::from_utf8(master).expect("utf8");
    assert!(master.contains("RESOLUTION=1280x720") && master.contains("\nsource.m3u8\n"), "{master}");

    let (status, media) = get(&app, &format!("/hls/demo/vod/{}/source.m3u8", b.id), None).await;
    assert_eq!(status, StatusCode::OK);
    let media = String::from_utf8(media).expect("utf8");
    assert_eq!(media.matches("#EXT-X-BYTERANGE:").count(), 6, "{media}");
    assert_eq!(media.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{media}");
    assert!(media.contains("#EXT-X-PLAYLIST-TYPE:VOD") && media.ends_with("#EXT-X-ENDLIST\n"), "{media}");

    // Segment 2's byte range holds parts 6, 7 and 8, exactly as served live.
    let s2 = &segments[2];
    let file = format!("/hls/demo/vod/{}/files/source/{}", b.id, s2.path.rsplit('/').next().expect("name"));
    let (status, bytes) = get(&app, &file, Some(&format!("bytes={}-{}", s2.offset, s2.offset + s2.length - 1))).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let expect: Vec<u8> = (6..9).flat_map(|i| part(i).data.to_vec()).collect();
    assert_eq!(bytes, expect);
    let (status, _) = get(&app, &format!("/hls/demo/vod/{}/files/source/../x.mp4", b.id), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&app, "/hls/other/vod/nope/master.m3u8", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A crash: the index lost its last two rows and the end, and the file got a torn tail.
    sqlx::query("DELETE FROM archive_segments WHERE msn >= 4").execute(db.pool()).await.expect("delete");
    sqlx::query("UPDATE archive_broadcasts SET ended = 0").execute(db.pool()).await.expect("update");
    let path = archive.dir().join(&segments[5].path);
    let whole = std::fs::metadata(&path).expect("file").len();
    let mut torn = std::fs::read(&path).expect("read");
    torn.extend_from_slice(&mp4_box(b"free", b"{\"kind\":\"onair-segment\""));
    torn.extend_from_slice(&[0; 100]);
    std::fs::write(&path, &torn).expect("write");
    let (_, recovery) = Archive::open(&ArchiveConfig::default(), dir.path(), db.clone()).await.expect("reopen");
    assert_eq!((recovery.broadcasts, recovery.segments), (1, 6), "{recovery:?}");
    assert_eq!(recovery.torn_bytes, torn.len() as u64 - whole);
    assert_eq!(std::fs::metadata(&path).expect("file").len(), whole);
    assert_eq!(index.segments(&b.id, "source").await.expect("segments"), segments);
    assert!(index.broadcast(&b.id).await.expect("row").is_some_and(|b| b.ended));

    // A clip from 0.5 s into segment 1 for 1 s: segment 1 whole (its key frame is before the
    // start), and segment 2 up to the part that holds the end (parts 6 and 7).
    let start_ms = segments[1].pdt_ms + 500;
    let (status, clip) = post(&app, "/api/v1/clips", &format!("{{\"channel\":\"demo\",\"start_ms\":{start_ms},\"duration_s\":1.0}}")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{clip}");
    let clip_id = clip["id"].as_str().expect("clip id").to_string();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, body) = get(&app, &format!("/api/v1/clips/{clip_id}"), None).await;
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            if v["status"] != "pending" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the clip gets made");
    assert_eq!(ready["status"], "ready", "{ready}");
    let (status, clip_media) = get(&app, &format!("/hls/demo/vod/{clip_id}/source.m3u8"), None).await;
    assert_eq!(status, StatusCode::OK);
    let clip_media = String::from_utf8(clip_media).expect("utf8");
    assert_eq!(clip_media.matches("#EXTINF:1.00000,").count(), 1, "{clip_media}");
    assert_eq!(clip_media.matches("#EXTINF:0.66667,").count(), 1, "{clip_media}");
    let clip_segments = index.segments(&clip_id, "source").await.expect("clip segments");
    let last = clip_segments.last().expect("segments");
    let file = format!("/hls/demo/vod/{clip_id}/files/source/{}", last.path.rsplit('/').next().expect("name"));
    let (status, bytes) = get(&app, &file, Some(&format!("bytes={}-{}", last.offset, last.offset + last.length - 1))).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes, (6..8).flat_map(|i| part(i).data.to_vec()).collect::<Vec<u8>>());
    let (status, _) = post(&app, "/api/v1/clips", "{\"channel\":\"demo\",\"last_s\":120}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "longer than 90 s");
    let (status, _) = post(&app, "/api/v1/clips", "{\"channel\":\"nobody\",\"last_s\":10}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for _ in 0..3 {
        post(&app, "/api/v1/clips", "{\"channel\":\"demo\",\"last_s\":10}").await;
    }
    let (status, _) = post(&app, "/api/v1/clips", "{\"channel\":\"demo\",\"last_s\":10}").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "5 clip requests a minute per address");

    // A minute later, a retention of 10 s removes the broadcast (files and rows) and leaves the clip.
    assert_eq!(onair_archive::retention::sweep(archive.dir(), index, None, 10, 0, onair_archive::retention::now_ms() + 60_000).await.expect("sweep"), 1);
    assert!(index.broadcast(&b.id).await.expect("row").is_none() && !archive.dir().join("demo").join(&b.id).exists());
    let (status, _) = get(&app, &file, Some(&format!("bytes={}-{}", last.offset, last.offset + last.length - 1))).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT, "the clip survives retention");

    // A takedown removes the clip, files and rows.
    assert!(archive.delete_clip(&clip_id).await.expect("delete"));
    assert!(!archive.delete_clip(&clip_id).await.expect("delete again"));
    assert!(!archive.dir().join(".clips/demo").join(&clip_id).exists());
    let (status, _) = get(&app, &format!("/hls/demo/vod/{clip_id}/master.m3u8"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    stop.cancel();
    recorder.await.expect("recorder stops");
    clipper.await.expect("clipper stops");

}
