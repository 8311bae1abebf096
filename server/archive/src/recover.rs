//! Crash recovery at start: every broadcast directory whose broadcast the index does not show
//! as ended was being recorded when the process died. Each of its chunk files is [`scan`]ned,
//! cut back to its last whole segment (a torn tail), and every segment found is indexed again
//! (idempotently); the broadcast is then marked ended.

use std::path::Path;

use crate::index::{Index, SegmentRow};
use crate::record::scan;
use crate::ArchiveError;

/// What [`recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Broadcasts that were recording when the process stopped.
    pub broadcasts: usize,
    /// Chunk files scanned.
    pub files: usize,
    /// Whole segments found in them (indexed now if the index lacked them).
    pub segments: usize,
    /// Bytes cut off torn tails.
    pub torn_bytes: u64,
}

fn dirs(path: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(path)? {
        let e = e?;
        // `.clips` (and anything else starting with a dot) is not a channel: names never start with one.
        if e.file_type()?.is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
            out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Repairs the archive in `dir` after an unclean stop. Errors: [`ArchiveError`] (I/O, index).
pub async fn recover(dir: &Path, index: &Index) -> Result<Recovery, ArchiveError> {
    let mut report = Recovery::default();
    if !dir.exists() {
        return Ok(report);
    }
    for (channel, cdir) in dirs(dir)? {
        for (broadcast, bdir) in dirs(&cdir)? {
            let row = index.broadcast(&broadcast).await?;
            if row.as_ref().is_some_and(|r| r.ended) {
                continue;
            }
            report.broadcasts += 1;
            let mut started = row.map(|r| r.started_ms);
            for (rendition, rdir) in dirs(&bdir)? {
                let mut files: Vec<_> = std::fs::read_dir(&rdir)?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "mp4")).collect();
                files.sort();
                for path in files {
                    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
                    let rel = format!("{channel}/{broadcast}/{rendition}/{name}");
                    let scan_path = path.clone();
                    let (scan, len) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                        let data = std::fs::read(&scan_path)?;
                        Ok((scan(&data), data.len() as u64))
                    })
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))??;
                    report.files += 1;
                    if scan.valid_len < len {
                        report.torn_bytes += len - scan.valid_len;
                        tracing::warn!(file = %path.display(), kept = scan.valid_len, cut = len - scan.valid_len, "torn tail cut back to the last whole segment");
                        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                        file.set_len(scan.valid_len)?;
                        file.sync_all()?;
                    }
                    index.cut_file(&rel, scan.valid_len).await?;
                    if scan.init_len == 0 {
                        std::fs::remove_file(&path)?;
                        continue;
                    }
                    if started.is_none() {
                        started = scan.segments.first().map(|s| s.meta.pdt_ms);
                        index.add_broadcast(&broadcast, &channel, started.unwrap_or(0)).await?;
                    }
                    index.add_file(&rel, &broadcast, &rendition, scan.init_len).await?;
                    // Nothing more is appended to it: it may be uploaded.
                    index.close_file(&rel, scan.valid_len).await?;
                    for f in &scan.segments {
                        let m = &f.meta;
                        let row = SegmentRow {
                            msn: m.msn,
                            pdt_ms: m.pdt_ms,
                            duration_us: m.duration_us,
                            discontinuity: m.discontinuity,
                            gap_before: m.gap_before,
                            path: rel.clone(),
                            offset: f.offset,
                            length: m.len,
                            parts: m.parts.clone(),
                        };
                        index.add_segment(&broadcast, &rendition, &row).await?;
                        report.segments += 1;
                    }
                }
            }
            if started.is_some() {
                index.end_broadcast(&broadcast).await?;
            }
        }
    }
    if report.broadcasts > 0 {
        metrics::counter!("onair_archive_recovered_segments_total").increment(report.segments as u64);
        tracing::warn!(broadcasts = report.broadcasts, files = report.files, segments = report.segments, torn_bytes = report.torn_bytes, "archive recovered after an unclean stop");
    }
    Ok(report)
}
