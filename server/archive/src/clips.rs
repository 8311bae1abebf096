//! Clips: a range of a live or past broadcast (at most [`MAX_CLIP_MS`]), kept forever. A clip
//! is asked for at once and becomes playable when its range is recorded: the clipper then copies
//! the range of every rendition into files of its own under `DIR/.clips/` (so retention, which
//! deletes broadcasts, never touches a clip's bytes) and indexes them under the clip's id, so the
//! clip plays from the same VOD routes as a broadcast.
//!
//! Accuracy: a clip starts at the start of the segment holding the requested start (a key frame at
//! or before it, ≤ one target duration early) and ends at the end of the first Partial Segment
//! ending at or after the requested end (≤ one part target late).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::SyncPolicy;
use crate::index::{BroadcastRow, ClipRow, ClipStatus, Index, SegmentRow};
use crate::objects::Objects;
use crate::record::SegmentMeta;
use crate::writer::{apply, IndexOp, SegmentJob, Writer};
use crate::ArchiveError;

/// Longest clip, ms (Twitch's 90 s).
pub const MAX_CLIP_MS: i64 = 90_000;
/// A clip whose range is still not recorded this long after it was asked for fails, ms.
const PENDING_LIMIT_MS: i64 = 10 * 60_000;
/// Where clips' files are, relative to the archive directory (no channel name starts with a dot).
pub const CLIPS_PREFIX: &str = ".clips/";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClipRange {
    /// The last `ms` of the channel's live broadcast (as of now).
    Last {
        /// Length, ms.
        ms: i64,
    },
    /// From `start_ms` (wall clock, as PROGRAM-DATE-TIME) for `ms`, in a live or past broadcast.
    At {
        /// Start, ms since the Unix epoch.
        start_ms: i64,
        /// Length, ms.
        ms: i64,
    },
}

/// Why a clip cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// Length outside 1 ms ..= 90 s.
    #[error("a clip is 1 ms to 90 s long")]
    Length,
    /// No broadcast of the channel covers the range (or, for `Last`, none is recording).
    #[error("no broadcast of {0} covers that range")]
    NoBroadcast(String),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
}

/// Records a new pending clip of `channel`. Errors: [`ClipError`].
pub async fn create(index: &Index, channel: &str, range: ClipRange) -> Result<ClipRow, ClipError> {
    let (start_ms, ms) = match range {
        ClipRange::Last { ms } => (now_ms() - ms, ms),
        ClipRange::At { start_ms, ms } => (start_ms, ms),
    };
    if !(1..=MAX_CLIP_MS).contains(&ms) {
        return Err(ClipError::Length);
    }
    let end_ms = start_ms + ms;
    let broadcasts = index.broadcasts(channel).await?;
    let covers = |b: &&BroadcastRow| match range {
        ClipRange::Last { .. } => !b.ended,
        // A recording broadcast covers what is still to come, an ended one only what it holds.
        ClipRange::At { .. } => start_ms < b.last_ms.max(if b.ended { 0 } else { now_ms() }) && end_ms > b.started_ms,
    };
    let b = broadcasts.iter().find(covers).ok_or_else(|| ClipError::NoBroadcast(channel.into()))?;
    let clip = ClipRow {
        id: uuid::Uuid::now_v7().simple().to_string(),
        channel: channel.into(),
        broadcast_id: b.id.clone(),
        start_ms: start_ms.max(b.started_ms),
        end_ms,
        created_ms: now_ms(),
        status: ClipStatus::Pending,
        error: None,
    };
    index.add_clip(&clip).await?;
    metrics::counter!("onair_archive_clips_total", "event" => "created").increment(1);
    tracing::info!(channel, clip = clip.id, broadcast = b.id, start_ms, end_ms, "clip asked for");
    Ok(clip)
}

/// Deletes clip `id` (a takedown): its files, on disk and in object storage, then its rows.
/// Returns false if there is no such clip. Errors: [`ArchiveError`].
pub async fn delete(index: &Index, dir: &Path, objects: Option<&Objects>, id: &str) -> Result<bool, ArchiveError> {
    let Some(clip) = index.clip(id).await? else { return Ok(false) };
    for (file, uploaded) in index.files(id).await? {
        if let (true, Some(o)) = (uploaded, objects) {
            o.delete(&file).await?;
        }
    }
    let local = dir.join(format!("{CLIPS_PREFIX}{}/{id}", clip.channel));
    if local.exists() {
        std::fs::remove_dir_all(&local)?;
    }
    index.delete_clip(id).await?;
    metrics::counter!("onair_archive_clips_total", "event" => "deleted").increment(1);
    tracing::info!(clip = id, channel = clip.channel, "clip deleted");
    Ok(true)
}

/// The segments (and, for the last, how many of its parts) of one rendition that a clip of
/// `[start_ms, end_ms)` takes: from the segment holding `start_ms` (or the first after it) to the
/// part ending at or after `end_ms`.
pub fn select(segments: &[SegmentRow], start_ms: i64, end_ms: i64) -> Vec<(SegmentRow, usize)> {
    let first = segments.iter().rposition(|s| s.pdt_ms <= start_ms).unwrap_or(0);
    let mut out = Vec::new();
    for s in segments.iter().skip(first).take_while(|s| s.pdt_ms < end_ms) {
        let mut t_us = s.pdt_ms * 1000;
        let mut take = 0;
        for (_, d) in &s.parts {
            if t_us >= end_ms * 1000 {
                break;
            }
            t_us += d;
            take += 1;
        }
        out.push((s.clone(), take.max(1).min(s.parts.len().max(1))));
    }
    out
}

/// True when every rendition's recorded media reaches `end_ms`, or the broadcast ended.
fn recorded(segments: &[Vec<SegmentRow>], end_ms: i64, ended: bool) -> bool {
    ended || segments.iter().all(|r| r.last().is_some_and(|s| s.pdt_ms + s.duration_us / 1000 >= end_ms))
}

/// Makes pending clips whose range is recorded, every 500 ms until `stop`. `dir` is the
/// archive's directory. Nodes sharing a database each make the clips of the broadcasts they
/// recorded (whose directory they hold), whichever node was asked.
pub async fn run(index: Index, dir: PathBuf, objects: Option<Objects>, sync: SyncPolicy, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        let pending = match index.pending_clips().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "clips: index read failed");
                continue;
            }
        };
        for clip in pending {
            let outcome = make(&index, &dir, objects.as_ref(), sync, &clip).await;
            let (status, error) = match outcome {
                Ok(Made::Done) => (ClipStatus::Ready, None),
                Ok(Made::Elsewhere) => continue,
                Ok(Made::NotYet) if now_ms() - clip.created_ms > PENDING_LIMIT_MS => (ClipStatus::Failed, Some("its range was never recorded".to_string())),
                Ok(Made::NotYet) => continue,
                Err(e) => (ClipStatus::Failed, Some(e.to_string())),
            };
            metrics::counter!("onair_archive_clips_total", "event" => if status == ClipStatus::Ready { "ready" } else { "failed" }).increment(1);
            tracing::info!(clip = clip.id, channel = clip.channel, ?status, error, "clip done");
            if let Err(e) = index.set_clip_status(&clip.id, status, error.as_deref()).await {
                tracing::error!(clip = clip.id, error = %e, "clips: index write failed");
            }
        }
    }
}

/// What became of a pending clip this pass.
enum Made {
    /// Copied: ready.
    Done,
    /// Its range is not recorded yet.
    NotYet,
    /// Its broadcast is recorded by another node (sharing the database): that node makes it.
    Elsewhere,
}

/// Copies `clip`'s range if it is recorded here. Errors: [`ArchiveError`].
async fn make(index: &Index, dir: &Path, objects: Option<&Objects>, sync: SyncPolicy, clip: &ClipRow) -> Result<Made, ArchiveError> {
    let Some(b) = index.broadcast(&clip.broadcast_id).await? else {
        return Err(ArchiveError::Io(std::io::Error::other("its broadcast was deleted")));
    };
    if !dir.join(&b.channel).join(&b.id).is_dir() {
        return Ok(Made::Elsewhere);
    }
    let renditions = index.renditions(&b.id).await?;
    let mut all = Vec::new();
    for r in &renditions {
        all.push(index.segments(&b.id, &r.name).await?);
    }
    if !recorded(&all, clip.end_ms, b.ended) {
        return Ok(Made::NotYet);
    }
    let mut copied = 0;
    for (r, segments) in renditions.iter().zip(&all) {
        // The bytes come from the local files or object storage, read before the blocking copy.
        let mut chosen = Vec::new();
        let mut inits: Vec<(String, Bytes)> = Vec::new();
        for (s, take) in select(segments, clip.start_ms, clip.end_ms) {
            if !inits.iter().any(|(p, _)| *p == s.path) {
                let len = index.init_len(&s.path).await?.unwrap_or(0);
                inits.push((s.path.clone(), crate::media::read_range(dir, objects, &s.path, 0..len).await?));
            }
            let parts = &s.parts[..take.min(s.parts.len())];
            let len = if parts.is_empty() { s.length } else { parts.iter().map(|p| p.0).sum() };
            let data = crate::media::read_range(dir, objects, &s.path, s.offset..s.offset + len).await?;
            chosen.push((s, take, data));
        }
        if chosen.is_empty() {
            continue;
        }
        index.add_rendition(&clip.id, r).await?;
        let (dir, clip, name) = (dir.to_path_buf(), clip.clone(), r.name.clone());
        let (n, ops) = tokio::task::spawn_blocking(move || copy(&dir, sync, &clip, &name, &chosen, &inits))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        for op in &ops {
            apply(index, op).await?;
        }
        copied += n;
    }
    if copied == 0 {
        return Err(ArchiveError::Io(std::io::Error::other("nothing was recorded in that range")));
    }
    Ok(Made::Done)
}

/// Writes one rendition's chosen segments (each with its first `take` parts and their bytes)
/// into the clip's files (blocking). Returns how many, and the index rows to write.
fn copy(dir: &Path, sync: SyncPolicy, clip: &ClipRow, rendition: &str, chosen: &[(SegmentRow, usize, Bytes)], inits: &[(String, Bytes)]) -> std::io::Result<(usize, Vec<IndexOp>)> {
    let ops = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let ops = ops.clone();
        Box::new(move |op| ops.lock().unwrap_or_else(|e| e.into_inner()).push(op))
    };
    // One file per rendition and init segment: a clip is shorter than a chunk file's hour.
    let mut writer = Writer::new(dir.to_path_buf(), CLIPS_PREFIX, sync, 3600, sink);
    for (n, (s, take, bytes)) in chosen.iter().enumerate() {
        let Some(init_id) = inits.iter().position(|(p, _)| *p == s.path) else { continue };
        let init = inits[init_id].1.clone();
        let mut at = 0;
        let mut split = Vec::new();
        for (l, d) in &s.parts[..(*take).min(s.parts.len())] {
            split.push((bytes.slice(at..at + *l as usize), *d));
            at += *l as usize;
        }
        if split.is_empty() {
            split.push((bytes.clone(), s.duration_us));
        }
        let meta = SegmentMeta::new(s.msn, s.pdt_ms, n > 0 && s.discontinuity, n > 0 && s.gap_before, &split);
        let job = SegmentJob {
            broadcast: clip.id.clone(),
            channel: clip.channel.clone(),
            rendition: rendition.into(),
            init_id: init_id as u64,
            init,
            meta,
            parts: split.into_iter().map(|(b, _)| b).collect(),
        };
        writer.write_segment(&job)?;
    }
    writer.close_all();
    drop(writer);
    let ops = std::mem::take(&mut *ops.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((chosen.len(), ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, pdt_ms: i64) -> SegmentRow {
        SegmentRow {
            msn,
            pdt_ms,
            duration_us: 2_000_000,
            discontinuity: false,
            gap_before: false,
            path: "p".into(),
            offset: 0,
            length: 1000,
            parts: vec![(100, 200_000); 10],
        }
    }

    #[test]
    fn starts_at_the_segment_before_and_ends_on_a_part_boundary() {
        let segs: Vec<SegmentRow> = (0..10).map(|i| seg(i, 10_000 + 2_000 * i as i64)).collect();
        // 13.5 s .. 17.3 s: segment 1 (12-14 s) holds the start; 17.3 s is in segment 3's 7th part
        // (17.2-17.4 s), which ends the clip.
        let chosen = select(&segs, 13_500, 17_300);
        assert_eq!(chosen.iter().map(|(s, n)| (s.msn, *n)).collect::<Vec<_>>(), vec![(1, 10), (2, 10), (3, 7)]);
        // A range on exact boundaries takes exactly its segments.
        let chosen = select(&segs, 12_000, 16_000);
        assert_eq!(chosen.iter().map(|(s, n)| (s.msn, *n)).collect::<Vec<_>>(), vec![(1, 10), (2, 10)]);
        // Before the first segment: from the first.
        assert_eq!(select(&segs, 0, 11_000).iter().map(|(s, n)| (s.msn, *n)).collect::<Vec<_>>(), vec![(0, 5)]);
        assert!(recorded(std::slice::from_ref(&segs), 30_000, false) && !recorded(&[segs], 30_001, false));
    }
}
