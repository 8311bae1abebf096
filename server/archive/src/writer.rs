//! The disk side of the recorder: one thread that takes jobs from the bounded queue, appends
//! segments to chunk files (see [`crate::record`]), forces them to the disk per the
//! [`SyncPolicy`], and only then hands their index rows ([`IndexOp`]s, in order) to an async
//! task that writes them to the database ([`apply`]): the thread itself never waits on the runtime. A failed write (ENOSPC, EIO) cuts the file back
//! to its last whole segment, is counted and logged once per outage, and the next segment tries
//! again: recording resumes by itself when space returns, with the hole marked as a gap.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::SyncPolicy;
use crate::index::{Index, RenditionRow, SegmentRow};
use crate::record::SegmentMeta;

/// Work for the writer thread.
#[derive(Debug)]
pub(crate) enum Job {
    /// A broadcast started being recorded.
    Broadcast { id: String, channel: String, started_ms: i64 },
    /// A rendition of it appeared.
    Rendition { broadcast: String, row: RenditionRow },
    /// A complete segment.
    Segment(Box<SegmentJob>),
    /// The broadcast ended and every segment of it was queued.
    End { broadcast: String },
}

/// A change to the index, emitted by the writer once the bytes it describes are on disk.
#[derive(Debug)]
pub(crate) enum IndexOp {
    Broadcast { id: String, channel: String, started_ms: i64 },
    Rendition { broadcast: String, row: RenditionRow },
    /// A chunk file was started; its init segment (the store's `init_id`) is `init_len` bytes at offset 0.
    File { path: String, broadcast: String, rendition: String, init_len: u64, init_id: u64 },
    Segment { broadcast: String, rendition: String, row: SegmentRow },
    /// Nothing more goes into file `path` (`bytes` long): it may be uploaded.
    Closed { path: String, bytes: u64 },
    End { broadcast: String },
}

/// Writes `op` to the index. Errors: the database failed.
pub(crate) async fn apply(index: &Index, op: &IndexOp) -> Result<(), crate::index::IndexError> {
    match op {
        IndexOp::Broadcast { id, channel, started_ms } => index.add_broadcast(id, channel, *started_ms).await,
        IndexOp::Rendition { broadcast, row } => index.add_rendition(broadcast, row).await,
        IndexOp::File { path, broadcast, rendition, init_len, .. } => index.add_file(path, broadcast, rendition, *init_len).await,
        IndexOp::Segment { broadcast, rendition, row } => index.add_segment(broadcast, rendition, row).await,
        IndexOp::Closed { path, bytes } => index.close_file(path, *bytes).await,
        IndexOp::End { broadcast } => index.end_broadcast(broadcast).await,
    }
}

/// Applies the writer's operations in order until it stops; a failure is counted and logged
/// (a segment's bytes stay on disk and are indexed again by the next start's recovery). Each
/// closed file is announced on `closed` (the uploader's wake-up), and every applied operation
/// goes to the DVR windows.
pub(crate) async fn apply_all(index: Index, mut ops: mpsc::Receiver<IndexOp>, closed: std::sync::Arc<tokio::sync::Notify>, dvr: Option<std::sync::Arc<crate::dvr::Dvr>>) {
    while let Some(op) = ops.recv().await {
        match apply(&index, &op).await {
            Ok(()) => {
                if matches!(op, IndexOp::Closed { .. }) {
                    closed.notify_one();
                }
                if let Some(d) = &dvr {
                    d.observe(&op);
                }
            }
            Err(e) => {
                metrics::counter!("onair_archive_errors_total", "kind" => "index").increment(1);
                tracing::error!(error = %e, ?op, "archive index write failed");
            }
        }
    }
}

/// One complete segment to append.
#[derive(Debug)]
pub(crate) struct SegmentJob {
    pub broadcast: String,
    pub channel: String,
    pub rendition: String,
    pub init_id: u64,
    pub init: Bytes,
    pub meta: SegmentMeta,
    pub parts: Vec<Bytes>,
}

/// The file a rendition is being recorded into.
struct Chunk {
    /// Relative to the archive directory.
    rel: String,
    file: File,
    len: u64,
    init_id: u64,
    first_pdt_ms: i64,
}

pub(crate) struct Writer {
    /// The archive directory.
    dir: PathBuf,
    /// Prepended to every file's path (`.clips/` for clips).
    prefix: &'static str,
    sync: SyncPolicy,
    chunk_ms: i64,
    /// Where index operations go (a channel to [`apply_all`], or a clip's list).
    sink: Box<dyn FnMut(IndexOp) + Send>,
    open: HashMap<(String, String), Chunk>,
    /// Renditions whose last write failed: their next segment starts after a gap.
    failing: HashMap<(String, String), u64>,
}

fn kind(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(28) => "disk_full",
        _ => "io",
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Writer {
    pub fn new(dir: PathBuf, prefix: &'static str, sync: SyncPolicy, chunk_s: u64, sink: Box<dyn FnMut(IndexOp) + Send>) -> Self {
        let chunk_ms = i64::try_from(chunk_s.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        Writer { dir, prefix, sync, chunk_ms, sink, open: HashMap::new(), failing: HashMap::new() }
    }

    /// Runs until the queue closes (the recorder stopped).
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.blocking_recv() {
            metrics::gauge!("onair_archive_queue_depth").set(jobs.len() as f64);
            self.handle(job);
        }
        tracing::debug!("archive writer stopped");
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Broadcast { id, channel, started_ms } => (self.sink)(IndexOp::Broadcast { id, channel, started_ms }),
            Job::Rendition { broadcast, row } => (self.sink)(IndexOp::Rendition { broadcast, row }),
            Job::End { broadcast } => {
                let done: Vec<(String, String)> = self.open.keys().filter(|(b, _)| *b == broadcast).cloned().collect();
                for key in done {
                    self.close(&key);
                }
                self.failing.retain(|(b, _), _| *b != broadcast);
                tracing::info!(broadcast, "recording finished");
                (self.sink)(IndexOp::End { broadcast });
            }
            Job::Segment(seg) => self.segment(*seg),
        }
    }

    /// Closes the file `key` is recorded into, if any.
    fn close(&mut self, key: &(String, String)) {
        if let Some(c) = self.open.remove(key) {
            (self.sink)(IndexOp::Closed { path: c.rel, bytes: c.len });
        }
    }

    /// Closes every open file (a clip's copy is complete).
    pub fn close_all(&mut self) {
        let keys: Vec<(String, String)> = self.open.keys().cloned().collect();
        for key in keys {
            self.close(&key);
        }
    }

    /// Appends `seg` and emits its index row (a clip's copy, whose caller handles the failure).
    pub fn write_segment(&mut self, seg: &SegmentJob) -> std::io::Result<()> {
        let key = (seg.broadcast.clone(), seg.rendition.clone());
        let row = self.append(&key, seg)?;
        (self.sink)(IndexOp::Segment { broadcast: seg.broadcast.clone(), rendition: seg.rendition.clone(), row });
        Ok(())
    }

    fn segment(&mut self, mut seg: SegmentJob) {
        let key = (seg.broadcast.clone(), seg.rendition.clone());
        if self.failing.contains_key(&key) {
            seg.meta.gap_before = true;
        }
        match self.append(&key, &seg) {
            Ok(row) => {
                if let Some(lost) = self.failing.remove(&key) {
                    tracing::warn!(channel = seg.channel, rendition = seg.rendition, segments_lost = lost, "archive writes work again; recording resumed after a gap");
                }
                metrics::counter!("onair_archive_segments_total").increment(1);
                metrics::counter!("onair_archive_bytes_total").increment(row.length);
                (self.sink)(IndexOp::Segment { broadcast: seg.broadcast.clone(), rendition: seg.rendition.clone(), row });
            }
            Err(e) => {
                metrics::counter!("onair_archive_errors_total", "kind" => kind(&e)).increment(1);
                metrics::counter!("onair_archive_gaps_total").increment(1);
                let lost = self.failing.entry(key).or_insert(0);
                if *lost == 0 {
                    tracing::error!(channel = seg.channel, rendition = seg.rendition, msn = seg.meta.msn, error = %e, "archive write failed; recording stops until writes work again (the live stream is not affected)");
                }
                *lost += 1;
            }
        }
    }

    /// Appends `seg` to its rendition's chunk file (a new one if none is open, the init segment
    /// changed, or the file holds `chunk_s` of media); returns its index row.
    fn append(&mut self, key: &(String, String), seg: &SegmentJob) -> std::io::Result<SegmentRow> {
        let fresh = match self.open.get(key) {
            Some(c) => c.init_id != seg.init_id || seg.meta.pdt_ms - c.first_pdt_ms >= self.chunk_ms,
            None => true,
        };
        if fresh {
            self.close(key);
            let chunk = self.create(seg)?;
            self.open.insert(key.clone(), chunk);
        }
        let Some(chunk) = self.open.get_mut(key) else { return Err(std::io::Error::other("chunk file vanished")) };
        let header = seg.meta.to_box();
        let start = chunk.len;
        let written = (|| {
            // After a failed write the file was cut back: write from its end again.
            chunk.file.seek(SeekFrom::Start(start))?;
            chunk.file.write_all(&header)?;
            for p in &seg.parts {
                chunk.file.write_all(p)?;
            }
            if self.sync == SyncPolicy::Segment {
                chunk.file.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            // Cut back to the last whole segment; if even that fails, start a new file next time.
            if chunk.file.set_len(start).is_err() {
                chunk.len = start;
                self.close(key);
            }
            return Err(e);
        }
        chunk.len = start + header.len() as u64 + seg.meta.len;
        Ok(SegmentRow {
            msn: seg.meta.msn,
            pdt_ms: seg.meta.pdt_ms,
            duration_us: seg.meta.duration_us,
            discontinuity: seg.meta.discontinuity,
            gap_before: seg.meta.gap_before,
            path: chunk.rel.clone(),
            offset: start + header.len() as u64,
            length: seg.meta.len,
            parts: seg.meta.parts.clone(),
        })
    }

    /// A new chunk file named after its first segment, holding the init segment, forced to the
    /// disk with its directory entry, and indexed.
    fn create(&mut self, seg: &SegmentJob) -> std::io::Result<Chunk> {
        let rel = format!("{}{}/{}/{}/{:010}.mp4", self.prefix, seg.channel, seg.broadcast, seg.rendition, seg.meta.msn);
        let path = self.dir.join(&rel);
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.dir.clone());
        std::fs::create_dir_all(&parent)?;
        let mut file = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
        let init = (|| {
            file.write_all(&seg.init)?;
            if self.sync == SyncPolicy::Segment {
                file.sync_data()?;
                sync_dir(&parent)?;
            }
            Ok(())
        })();
        if let Err(e) = init {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let init_len = seg.init.len() as u64;
        (self.sink)(IndexOp::File { path: rel.clone(), broadcast: seg.broadcast.clone(), rendition: seg.rendition.clone(), init_len, init_id: seg.init_id });
        Ok(Chunk { rel, file, len: init_len, init_id: seg.init_id, first_pdt_ms: seg.meta.pdt_ms })
    }
}
