//! Retention: past broadcasts are deleted (files, then index rows) once their last segment is
//! older than the retention period, and the oldest go first while the chunk files exceed the disk
//! quota. Only broadcasts recorded on this node (whose directory is here) are touched: nodes
//! sharing a database each delete their own.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::index::{BroadcastRow, Index};
use crate::objects::Objects;
use crate::ArchiveError;

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

async fn delete(dir: &Path, index: &Index, objects: Option<&Objects>, b: &BroadcastRow, why: &'static str) -> Result<u64, ArchiveError> {
    let path = dir.join(&b.channel).join(&b.id);
    let bytes = dir_bytes(&path);
    for (file, uploaded) in index.files(&b.id).await? {
        if let (true, Some(o)) = (uploaded, objects) {
            o.delete(&file).await?;
        }
    }
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    index.delete_broadcast(&b.id).await?;
    metrics::counter!("onair_archive_deleted_broadcasts_total", "reason" => why).increment(1);
    tracing::info!(channel = b.channel, broadcast = b.id, bytes, reason = why, "past broadcast deleted");
    Ok(bytes)
}

/// Now, ms since the Unix epoch (for [`sweep`]).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One pass as of `now_ms` ([`now_ms`]): deletes ended broadcasts of this node whose last
/// segment is older than `retention_s`, then, with `max_bytes` > 0, the oldest ones until the
/// archive fits. Returns how many were deleted. Errors: [`ArchiveError`].
pub async fn sweep(dir: &Path, index: &Index, objects: Option<&Objects>, retention_s: u64, max_bytes: u64, now_ms: i64) -> Result<usize, ArchiveError> {
    let cutoff = now_ms - (retention_s.min(i64::MAX as u64 / 1000) as i64) * 1000;
    // Recorded here: its directory is here (it stays, empty, after its files were uploaded).
    let here = |b: &BroadcastRow| dir.join(&b.channel).join(&b.id).is_dir();
    let mut deleted = 0;
    for b in index.ended_before(cutoff).await?.iter().filter(|b| here(b)) {
        delete(dir, index, objects, b, "retention").await?;
        deleted += 1;
    }
    if max_bytes > 0 {
        let mut total = dir_bytes(dir);
        for b in index.ended_before(i64::MAX).await?.iter().filter(|b| here(b)) {
            if total <= max_bytes {
                break;
            }
            total = total.saturating_sub(delete(dir, index, objects, b, "quota").await?);
            deleted += 1;
        }
    }
    metrics::gauge!("onair_archive_disk_bytes").set(dir_bytes(dir) as f64);
    Ok(deleted)
}
