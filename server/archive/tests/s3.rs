//! The archive on a real S3-compatible server (`s3s-fs`, persisting to disk): complete chunk
//! files are uploaded and their local copies dropped, media is read back from the bucket by byte
//! range, an outage of the server is retried without loss, and retention deletes the objects.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use bytes::Bytes;
use onair_archive::objects::S3Config;
use onair_archive::{Archive, ArchiveConfig};
use onair_db::Database;
use onair_store::{NewPart, Placement, RenditionInfo, Store, TimelineConfig};
use onair_test_engines::{S3Server, S3_ACCESS_KEY, S3_SECRET_KEY};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

fn init() -> Bytes {
    let mut b = mp4_box(b"ftyp", b"iso6cmfc");
    b.extend(mp4_box(b"moov", &[1; 40]));
    Bytes::from(b)
}

fn part(n: u8) -> NewPart {
    let mut data = mp4_box(b"moof", &[n; 16]);
    data.extend(mp4_box(b"mdat", &[n; 3000]));
    NewPart { program_date_time: SystemTime::now(), duration: 30_000, independent: true, data: Bytes::from(data), produced_at: SystemTime::now() }
}

/// Publishes 3 segments of 3 parts (parts `first..first+9`) on channel `demo` and ends.
fn broadcast(store: &Store, first: u8) {
    let session = store.start("demo", false).expect("start");
    let info = RenditionInfo { name: "source".into(), is_video: true, codec: "avc1.64001f".into(), resolution: Some((640, 360)), frame_rate: Some(30.0), channels: None, nominal_bitrate: None, timescale: 90_000 };
    let w = session.writer(info, init()).expect("writer");
    for i in 0..9u8 {
        w.append(Placement::Next { starts_segment: i % 3 == 0 && i > 0 }, part(first + i)).expect("append");
    }
    assert!(session.end());
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_reads_back_survives_an_outage_and_retention_deletes() {
    let mut s3 = S3Server::start("archive");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(None, dir.path()).await.expect("db");
    let config = ArchiveConfig {
        s3: Some(S3Config {
            endpoint: Some(s3.endpoint()),
            bucket: "archive".into(),
            region: "us-east-1".into(),
            access_key_id: S3_ACCESS_KEY.into(),
            secret_access_key: S3_SECRET_KEY.into(),
            prefix: "onair/".into(),
            keep_local: false,
        }),
        ..ArchiveConfig::default()
    };
    let (archive, _) = Archive::open(&config, dir.path(), db.clone()).await.expect("archive");
    let store = Arc::new(Store::new(TimelineConfig::default()));
    let stop = CancellationToken::new();
    for task in 0..2 {
        let (a, s, stop) = (archive.clone(), store.clone(), stop.clone());
        tokio::spawn(async move {
            if task == 0 {
                a.recorder(s, stop).await
            } else {
                a.uploader(stop).await
            }
        });
    }
    let index = archive.index().clone();
    let pending = |index: onair_archive::index::Index| async move { index.files_to_upload().await.expect("index").len() };

    // 1. Recorded, uploaded, the local copy dropped; the bucket holds it under the prefix.
    broadcast(&store, 0);
    until("the first broadcast is recorded", async || index.broadcasts("demo").await.expect("list").iter().any(|b| b.ended)).await;
    let first = index.broadcasts("demo").await.expect("list").remove(0);
    until("its file is uploaded", async || pending(index.clone()).await == 0 && files_under(&archive.dir().join("demo")).is_empty()).await;
    let objects = files_under(&s3.root().join("archive"));
    println!("objects in the bucket: {objects:?}");
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].display().to_string().contains(&format!("onair/demo/{}/source/0000000000.mp4", first.id)));

    // Media is read back from the bucket by byte range.
    let (api, media) = archive.routers(None);
    let app = api.merge(media);
    let segments = index.segments(&first.id, "source").await.expect("segments");
    let s1 = &segments[1];
    let uri = format!("/hls/demo/vod/{}/files/source/0000000000.mp4", first.id);
    let req = Request::get(&uri).header(header::RANGE, format!("bytes={}-{}", s1.offset, s1.offset + s1.length - 1)).body(Body::empty()).expect("req");
    let resp = app.clone().oneshot(req).await.expect("resp");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await.expect("body");
    assert_eq!(body.to_vec(), (3..6).flat_map(|i| part(i).data.to_vec()).collect::<Vec<u8>>(), "segment 1 from S3");

    // 2. The server goes away: the next broadcast stays local, retried, and lands when it is back.
    s3.stop();
    broadcast(&store, 100);
    until("the second broadcast is recorded", async || index.broadcasts("demo").await.expect("list").iter().filter(|b| b.ended).count() == 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pending(index.clone()).await, 1, "not uploaded while the server is down");
    assert_eq!(files_under(&archive.dir().join("demo")).len(), 1, "kept locally meanwhile");
    s3.resume();
    until("the retried upload lands", async || pending(index.clone()).await == 0).await;
    let second = index.broadcasts("demo").await.expect("list").remove(0);
    let stored = files_under(&s3.root().join("archive")).into_iter().find(|p| p.display().to_string().contains(&second.id)).expect("second object");
    let bytes = std::fs::read(&stored).expect("object file");
    let segs = index.segments(&second.id, "source").await.expect("segments");
    for (n, s) in segs.iter().enumerate() {
        let expect: Vec<u8> = (0..3).flat_map(|i| part(100 + 3 * n as u8 + i).data.to_vec()).collect();
        assert_eq!(&bytes[s.offset as usize..(s.offset + s.length) as usize], expect.as_slice(), "segment {n} intact after the outage");
    }

    // 3. Retention deletes the objects with the broadcasts.
    let deleted = onair_archive::retention::sweep(archive.dir(), &index, Some(&onair_archive::objects::Objects::new(config.s3.as_ref().expect("s3")).expect("objects")), 1, 0, onair_archive::retention::now_ms() + 60_000)
        .await
        .expect("sweep");
    assert_eq!(deleted, 2);
    assert!(files_under(&s3.root().join("archive")).iter().all(|p| !p.display().to_string().ends_with(".mp4")), "objects deleted");
    stop.cancel();
}
