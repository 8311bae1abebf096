//! A full disk (ENOSPC) stops recording, never the live path, is counted as an error and a gap,
//! and recording resumes by itself when space returns. The archive directory is a real 1 MiB
//! tmpfs mounted by the test (it runs as root, as CI does), grown back with `mount -o remount`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use onair_archive::{Archive, ArchiveConfig};
use onair_db::Database;
use onair_store::{NewPart, Placement, RenditionInfo, Store, TimelineConfig};
use tokio_util::sync::CancellationToken;

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// A tmpfs of `size` mounted at a fresh directory; unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir.path()).status().expect("mount");
        assert!(ok.success(), "mounting a tmpfs failed: this test needs root (CI runs as root)");
        Tmpfs(dir)
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(self.0.path()).status().expect("mount");
        assert!(ok.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_recording_not_the_live_path_and_recording_resumes() {
    let disk = Tmpfs::mount("1m");
    let data = tempfile::tempdir().expect("tempdir");
    let db = Database::open(None, data.path()).await.expect("db");
    let config = ArchiveConfig { dir: Some(disk.0.path().to_path_buf()), ..ArchiveConfig::default() };
    let (archive, _) = Archive::open(&config, data.path(), db).await.expect("archive");
    let store = Arc::new(Store::new(TimelineConfig { window_segments: 60, ..TimelineConfig::default() }));
    let stop = CancellationToken::new();
    let recorder = {
        let (a, s, stop) = (archive.clone(), store.clone(), stop.clone());
        tokio::spawn(async move { a.recorder(s, stop).await })
    };
    let session = store.start("demo", false).expect("start");
    let info = RenditionInfo { name: "source".into(), is_video: true, codec: "avc1.64001f".into(), resolution: Some((640, 360)), frame_rate: Some(30.0), channels: None, nominal_bitrate: None, timescale: 90_000 };
    let mut init = mp4_box(b"ftyp", b"iso6cmfc");
    init.extend(mp4_box(b"moov", &[1; 40]));
    let w = session.writer(info, Bytes::from(init)).expect("writer");
    // Segments of 2 parts of ~100 kB: the 1 MiB disk holds about 5.
    let mut n = 0u64;
    let mut publish = |segments: u64| {
        for _ in 0..segments {
            for p in 0..2 {
                let mut data = mp4_box(b"moof", &[0; 16]);
                data.extend(mp4_box(b"mdat", &vec![n as u8; 100_000]));
                let part = NewPart { program_date_time: SystemTime::now(), duration: 45_000, independent: true, data: Bytes::from(data), produced_at: SystemTime::now() };
                // The live path: every append succeeds whatever the disk does.
                w.append(Placement::Next { starts_segment: p == 0 && n > 0 }, part).expect("the live path never fails");
            }
            n += 1;
        }
    };
    let index = archive.index().clone();
    let recorded = |index: onair_archive::index::Index| async move {
        let b = index.broadcasts("demo").await.expect("list");
        match b.first() {
            Some(b) => index.segments(&b.id, "source").await.expect("segments"),
            None => Vec::new(),
        }
    };
    publish(12);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = recorded(index.clone()).await;
    println!("1 MiB disk: {} of 11 complete segments recorded before it filled", before.len());
    assert!((3..=9).contains(&before.len()), "{} recorded", before.len());
    assert_eq!(store.get("demo").expect("live").rendition("source").expect("rendition").position().last_msn, Some(11), "live went on");

    // Space returns: the next segments are recorded, the first after the hole marked as a gap.
    disk.resize("20m");
    publish(4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = recorded(index.clone()).await;
    let resumed: Vec<_> = after.iter().filter(|s| s.msn > before.last().map_or(0, |l| l.msn)).collect();
    println!("after the disk grew: {} segments recorded, msns {:?}", after.len(), after.iter().map(|s| s.msn).collect::<Vec<_>>());
    assert!(!resumed.is_empty(), "recording resumed");
    assert!(resumed[0].gap_before, "the hole is recorded as a gap: {resumed:?}");
    assert!(resumed.last().is_some_and(|s| s.msn == 14), "up to the last complete segment: {resumed:?}");
    stop.cancel();
    recorder.await.expect("recorder");
}
