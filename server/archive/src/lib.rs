//! The archive: every broadcast published on this node is recorded while it is live, and kept
//! as past broadcasts (VOD) for the retention period.
//!
//! - [`recorder`](Archive::recorder): a subscriber of the in-RAM store. It queues each rendition's
//!   segments the moment they close (shared `Bytes`, no copy) into a bounded queue, and one
//!   writer thread appends them, as the exact bytes that were served, to chunk files on disk
//!   ([`record`] has the format), forces them to the disk per [`SyncPolicy`], then indexes them.
//!   The live path never waits for the disk: when the queue is full the recorder waits, and a
//!   segment that left memory meanwhile is recorded as a gap (counted and logged).
//! - [`index`]: broadcasts, renditions, chunk files and segments (byte ranges) in the node's
//!   database, SQLite embedded or PostgreSQL.
//! - [`recover`]: after a crash, torn tails are cut back and the index rebuilt from the files.
//! - [`objects`]: with `[archive.s3]`, complete chunk files go to S3-compatible storage ([`media`] reads from either).
//! - [`retention`]: past broadcasts older than the retention period, or beyond the disk quota, are deleted.
//! - [`clips`]: ranges of broadcasts (≤ 90 s) copied into files of their own, kept forever.
//! - [`routes`]: the broadcast and clip APIs, and the VOD playlists ([`vod`]) and files.
//! - [`dvr`]: the seek-back window of each live broadcast: what the origin's `dvr.m3u8` lists
//!   before its RAM window, and those segments' bytes once they left RAM.
//!
//! Recovery point: a process crash (kill -9) loses only segments not yet closed live (at most one
//! target duration per rendition) and those still queued; with `sync = "segment"` a power cut
//! loses the same, as a segment is indexed only after `fdatasync`.
//!
//! Chunk files: `DIR/{channel}/{broadcast id}/{rendition}/{first MSN:010}.mp4`, a new file when
//! the init segment changes or after `chunk_s` of media.

pub mod clips;
pub mod config;
pub mod dvr;
pub mod index;
pub mod media;
pub mod objects;
pub mod record;
pub mod recover;
pub mod retention;
pub mod routes;
pub mod vod;
mod recorder;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use config::{ArchiveConfig, SyncPolicy};
use onair_db::Database;
use onair_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Errors of the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive directory or a chunk file could not be read or written.
    #[error("archive: {0}")]
    Io(#[from] std::io::Error),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] index::IndexError),
    /// Object storage failed.
    #[error(transparent)]
    Objects(#[from] objects::ObjectError),
}

/// An open archive: its directory and index.
#[derive(Debug, Clone)]
pub struct Archive {
    config: ArchiveConfig,
    dir: PathBuf,
    index: index::Index,
    objects: Option<objects::Objects>,
    /// Announces each closed chunk file to the uploader.
    closed: Arc<tokio::sync::Notify>,
    /// The DVR windows, unless `dvr_window_s` is 0.
    dvr: Option<Arc<dvr::Dvr>>,
}

impl Archive {
    /// Opens the archive at `config.dir` (default `DATA_DIR/archive`, created if missing) with
    /// its index in `db`, and repairs what an unclean stop left ([`recover::recover`]).
    /// Errors: [`ArchiveError`].
    pub async fn open(config: &ArchiveConfig, data_dir: &Path, db: Database) -> Result<(Archive, recover::Recovery), ArchiveError> {
        let dir = config.dir.clone().unwrap_or_else(|| data_dir.join("archive"));
        std::fs::create_dir_all(&dir)?;
        let index = index::Index::new(db);
        let objects = config.s3.as_ref().map(objects::Objects::new).transpose()?;
        let recovery = recover::recover(&dir, &index).await?;
        let closed = Arc::new(tokio::sync::Notify::new());
        let dvr = (config.dvr_window_s > 0).then(|| Arc::new(dvr::Dvr::new(config.dvr_window_s, dir.clone(), objects.clone())));
        Ok((Archive { config: config.clone(), dir, index, objects, closed, dvr }, recovery))
    }

    /// The chunk files' directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index.
    pub fn index(&self) -> &index::Index {
        &self.index
    }

    /// The DVR windows the origin's `dvr.m3u8` playlists read (filled while [`Archive::recorder`]
    /// runs); `None` when `dvr_window_s` is 0.
    pub fn history(&self) -> Option<Arc<dyn onair_origin::History>> {
        self.dvr.clone().map(|d| d as Arc<dyn onair_origin::History>)
    }

    /// The HTTP routes, `(api, media)` ([`routes::routers`]); `prefix` gives playlist URLs their
    /// playback token prefix when tokens are required.
    pub fn routers(&self, prefix: Option<routes::PlaylistPrefix>) -> (axum::Router, axum::Router) {
        routes::routers(self.index.clone(), self.dir.clone(), self.objects.clone(), self.config.clips_per_minute, prefix)
    }

    /// Keeps `viewers` (concurrent, over the cluster) as the peak of `channel`'s recording
    /// broadcast when it is higher; a failure is logged and counted, never fatal.
    pub async fn note_viewers(&self, channel: &str, viewers: u64) {
        if let Err(e) = self.index.raise_peak(channel, viewers as i64).await {
            metrics::counter!("onair_archive_errors_total", "kind" => "peak_viewers").increment(1);
            tracing::warn!(channel, error = %e, "cannot store the broadcast's peak viewers");
        }
    }

    /// Makes clips whose range got recorded ([`clips::run`]) until `stop`. Run it as a task.
    pub async fn clipper(&self, stop: CancellationToken) {
        clips::run(self.index.clone(), self.dir.clone(), self.objects.clone(), self.config.sync, stop).await;
    }

    /// Deletes clip `id` with its files (a takedown); false if there is none ([`clips::delete`]).
    /// Errors: [`ArchiveError`].
    pub async fn delete_clip(&self, id: &str) -> Result<bool, ArchiveError> {
        clips::delete(&self.index, &self.dir, self.objects.as_ref(), id).await
    }

    /// With `[archive.s3]`, uploads complete chunk files until `stop` (a no-op without). Run it as a task.
    pub async fn uploader(&self, stop: CancellationToken) {
        match &self.objects {
            Some(o) => objects::upload_loop(self.index.clone(), self.dir.clone(), o.clone(), self.closed.clone(), stop).await,
            None => stop.cancelled().await,
        }
    }

    /// Records every broadcast published into `store` until `stop`, then lets the writer finish
    /// what is queued. Run it as a task.
    pub async fn recorder(&self, store: Arc<Store>, stop: CancellationToken) {
        let (jobs, queued) = mpsc::channel(self.config.queue_segments.max(1));
        let (ops, applied) = mpsc::channel(256);
        let sink = Box::new(move |op| {
            // Fails only when the runtime is going away: nothing left to index into.
            let _ = ops.blocking_send(op);
        });
        let w = writer::Writer::new(self.dir.clone(), "", self.config.sync, self.config.chunk_s, sink);
        let thread = match std::thread::Builder::new().name("onair-archive".into()).spawn(move || w.run(queued)) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the archive writer thread; nothing is recorded");
                stop.cancelled().await;
                return;
            }
        };
        let indexer = writer::apply_all(self.index.clone(), applied, self.closed.clone(), self.dvr.clone());
        let recording = async {
            recorder::run(store, jobs, stop).await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        };
        tokio::join!(recording, indexer);
    }

    /// Applies retention and the disk quota every `period` (a minute, or less for a short
    /// retention) until `stop`. Run it as a task.
    pub async fn retention(&self, stop: CancellationToken) {
        let retention_s = self.config.retention_secs();
        let period = Duration::from_secs((retention_s / 4).clamp(1, 60));
        let mut tick = tokio::time::interval(period);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            if let Err(e) = retention::sweep(&self.dir, &self.index, self.objects.as_ref(), retention_s, self.config.max_bytes, retention::now_ms()).await {
                metrics::counter!("onair_archive_errors_total", "kind" => "retention").increment(1);
                tracing::error!(error = %e, "archive retention pass failed");
            }
        }
    }
}
