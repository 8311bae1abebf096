//! The archive index in the node's database (SQLite embedded, PostgreSQL when configured): which
//! broadcasts exist, their renditions, and where each recorded segment's bytes are (file and byte
//! range), so any time range maps to byte ranges without reading media. Schema:
//! `onair-db/migrations/*/0002_archive.sql`.

use onair_db::Database;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Errors of the index: the database failed.
#[derive(Debug, thiserror::Error)]
#[error("archive index: {0}")]
pub struct IndexError(#[from] sqlx::Error);

/// A past or recording broadcast.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BroadcastRow {
    /// Stable id (a UUIDv7 in hex: ordered by start time).
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// When the publish started, ms since the Unix epoch.
    pub started_ms: i64,
    /// End of the last recorded segment, ms since the Unix epoch.
    pub last_ms: i64,
    /// True once the broadcast ended; false while it records (or if the node died while it did).
    pub ended: bool,
    /// Peak concurrent viewers while it was live ([`Index::raise_peak`]).
    pub peak_viewers: i64,
}

/// A rendition of a recorded broadcast: what its Multivariant Playlist entry needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionRow {
    /// URL-safe name (`source`, `720p`, `audio`, ...).
    pub name: String,
    /// True for video.
    pub is_video: bool,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Width × height in pixels (video).
    pub resolution: Option<(u32, u32)>,
    /// Frames per second (video).
    pub frame_rate: Option<f64>,
    /// Audio channels (audio).
    pub channels: Option<u16>,
}

/// One recorded segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRow {
    /// Media Sequence Number it had live.
    pub msn: u64,
    /// EXT-X-PROGRAM-DATE-TIME, ms since the Unix epoch.
    pub pdt_ms: i64,
    /// Duration in µs.
    pub duration_us: i64,
    /// EXT-X-DISCONTINUITY before it live.
    pub discontinuity: bool,
    /// Segments before it are missing from the archive.
    pub gap_before: bool,
    /// Chunk file, relative to the archive directory.
    pub path: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length.
    pub length: u64,
    /// Its Partial Segments: (bytes, duration µs) each, in order.
    pub parts: Vec<(u64, i64)>,
}

/// Where a clip is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipStatus {
    /// Its range is not recorded yet.
    Pending,
    /// Copied into its own files: playable.
    Ready,
    /// Its range was never recorded (see `error`).
    Failed,
}

impl ClipStatus {
    fn as_str(self) -> &'static str {
        match self {
            ClipStatus::Pending => "pending",
            ClipStatus::Ready => "ready",
            ClipStatus::Failed => "failed",
        }
    }
}

/// A clip: a range of a broadcast, kept forever once ready.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClipRow {
    /// Stable id (UUIDv7 hex).
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// The broadcast it comes from.
    pub broadcast_id: String,
    /// Requested start, ms since the Unix epoch (the clip starts at the key frame at or before it).
    pub start_ms: i64,
    /// Requested end, ms since the Unix epoch (the clip ends on the first part boundary at or after it).
    pub end_ms: i64,
    /// When it was asked for, ms since the Unix epoch.
    pub created_ms: i64,
    /// Pending, ready or failed.
    pub status: ClipStatus,
    /// Why it failed.
    pub error: Option<String>,
}

fn clip_row(r: &AnyRow) -> Result<ClipRow, sqlx::Error> {
    let status = match r.try_get::<String, _>("status")?.as_str() {
        "ready" => ClipStatus::Ready,
        "failed" => ClipStatus::Failed,
        _ => ClipStatus::Pending,
    };
    Ok(ClipRow {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        broadcast_id: r.try_get("broadcast_id")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        created_ms: r.try_get("created_ms")?,
        status,
        error: r.try_get("error")?,
    })
}

const CLIP_COLUMNS: &str = "id, channel, broadcast_id, start_ms, end_ms, created_ms, status, error";

/// The index; cheap to clone.
#[derive(Debug, Clone)]
pub struct Index {
    db: Database,
}

fn broadcast_row(r: &AnyRow) -> Result<BroadcastRow, sqlx::Error> {
    Ok(BroadcastRow {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        started_ms: r.try_get("started_ms")?,
        last_ms: r.try_get("last_ms")?,
        ended: r.try_get::<i64, _>("ended")? != 0,
        peak_viewers: r.try_get("peak_viewers")?,
    })
}

impl Index {
    /// The index in `db` (migrated at open).
    pub fn new(db: Database) -> Self {
        Index { db }
    }

    /// Records a broadcast's start (idempotent).
    pub async fn add_broadcast(&self, id: &str, channel: &str, started_ms: i64) -> Result<(), IndexError> {
        sqlx::query("INSERT INTO archive_broadcasts (id, channel, started_ms, last_ms, ended) VALUES ($1, $2, $3, $3, 0) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(channel)
            .bind(started_ms)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Records a rendition of broadcast `id` (the first description wins).
    pub async fn add_rendition(&self, id: &str, r: &RenditionRow) -> Result<(), IndexError> {
        sqlx::query(
            "INSERT INTO archive_renditions (broadcast_id, name, is_video, codec, width, height, frame_rate, channels) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (broadcast_id, name) DO NOTHING",
        )
        .bind(id)
        .bind(&r.name)
        .bind(i64::from(r.is_video))
        .bind(&r.codec)
        .bind(r.resolution.map(|(w, _)| i64::from(w)))
        .bind(r.resolution.map(|(_, h)| i64::from(h)))
        .bind(r.frame_rate)
        .bind(r.channels.map(i64::from))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Records a chunk file whose init segment is its first `init_len` bytes (idempotent).
    pub async fn add_file(&self, path: &str, broadcast_id: &str, rendition: &str, init_len: u64) -> Result<(), IndexError> {
        sqlx::query("INSERT INTO archive_files (path, broadcast_id, rendition, init_len) VALUES ($1, $2, $3, $4) ON CONFLICT (path) DO NOTHING")
            .bind(path)
            .bind(broadcast_id)
            .bind(rendition)
            .bind(init_len as i64)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Records a segment (idempotent: a rebuild after a crash may offer it again) and moves the
    /// broadcast's end.
    pub async fn add_segment(&self, broadcast_id: &str, rendition: &str, s: &SegmentRow) -> Result<(), IndexError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "INSERT INTO archive_segments (broadcast_id, rendition, msn, pdt_ms, duration_us, discontinuity, gap_before, path, byte_offset, byte_length, parts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (broadcast_id, rendition, msn) DO NOTHING",
        )
        .bind(broadcast_id)
        .bind(rendition)
        .bind(s.msn as i64)
        .bind(s.pdt_ms)
        .bind(s.duration_us)
        .bind(i64::from(s.discontinuity))
        .bind(i64::from(s.gap_before))
        .bind(&s.path)
        .bind(s.offset as i64)
        .bind(s.length as i64)
        .bind(serde_json::to_string(&s.parts).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE archive_broadcasts SET last_ms = $2 WHERE id = $1 AND last_ms < $2")
            .bind(broadcast_id)
            .bind(s.pdt_ms + s.duration_us / 1000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks broadcast `id` ended.
    pub async fn end_broadcast(&self, id: &str) -> Result<(), IndexError> {
        sqlx::query("UPDATE archive_broadcasts SET ended = 1 WHERE id = $1").bind(id).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Drops the rows of segments in `path` that end after `valid_len` (the file was cut back to
    /// its last whole segment after a crash). Returns how many.
    pub async fn cut_file(&self, path: &str, valid_len: u64) -> Result<u64, IndexError> {
        let r = sqlx::query("DELETE FROM archive_segments WHERE path = $1 AND byte_offset + byte_length > $2")
            .bind(path)
            .bind(valid_len as i64)
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// Raises the peak concurrent viewers of `channel`'s broadcast that is recording to
    /// `viewers` when that is higher. Returns the rows changed (0 or 1).
    pub async fn raise_peak(&self, channel: &str, viewers: i64) -> Result<u64, IndexError> {
        let r = sqlx::query("UPDATE archive_broadcasts SET peak_viewers = $2 WHERE channel = $1 AND ended = 0 AND peak_viewers < $2")
            .bind(channel)
            .bind(viewers)
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// Broadcasts of `channel`, newest first.
    pub async fn broadcasts(&self, channel: &str) -> Result<Vec<BroadcastRow>, IndexError> {
        let rows = sqlx::query("SELECT id, channel, started_ms, last_ms, ended, peak_viewers FROM archive_broadcasts WHERE channel = $1 ORDER BY started_ms DESC")
            .bind(channel)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().map(broadcast_row).collect::<Result<_, _>>()?)
    }

    /// Broadcast `id`.
    pub async fn broadcast(&self, id: &str) -> Result<Option<BroadcastRow>, IndexError> {
        let row = sqlx::query("SELECT id, channel, started_ms, last_ms, ended, peak_viewers FROM archive_broadcasts WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(broadcast_row).transpose()?)
    }

    /// Ended broadcasts whose last segment ends before `ms` (retention candidates), oldest first.
    pub async fn ended_before(&self, ms: i64) -> Result<Vec<BroadcastRow>, IndexError> {
        let rows = sqlx::query("SELECT id, channel, started_ms, last_ms, ended, peak_viewers FROM archive_broadcasts WHERE ended = 1 AND last_ms < $1 ORDER BY started_ms")
            .bind(ms)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().map(broadcast_row).collect::<Result<_, _>>()?)
    }

    /// The renditions of broadcast `id`, video first, in the order recorded.
    pub async fn renditions(&self, id: &str) -> Result<Vec<RenditionRow>, IndexError> {
        let rows = sqlx::query("SELECT name, is_video, codec, width, height, frame_rate, channels FROM archive_renditions WHERE broadcast_id = $1 ORDER BY is_video DESC, name")
            .bind(id)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let (w, h): (Option<i64>, Option<i64>) = (r.try_get("width")?, r.try_get("height")?);
                Ok(RenditionRow {
                    name: r.try_get("name")?,
                    is_video: r.try_get::<i64, _>("is_video")? != 0,
                    codec: r.try_get("codec")?,
                    resolution: w.zip(h).map(|(w, h)| (w as u32, h as u32)),
                    frame_rate: r.try_get("frame_rate")?,
                    channels: r.try_get::<Option<i64>, _>("channels")?.map(|c| c as u16),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(IndexError)
    }

    /// The recorded segments of a rendition, in Media Sequence order.
    pub async fn segments(&self, id: &str, rendition: &str) -> Result<Vec<SegmentRow>, IndexError> {
        let rows = sqlx::query(
            "SELECT msn, pdt_ms, duration_us, discontinuity, gap_before, path, byte_offset, byte_length, parts FROM archive_segments \
             WHERE broadcast_id = $1 AND rendition = $2 ORDER BY msn",
        )
        .bind(id)
        .bind(rendition)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SegmentRow {
                    msn: r.try_get::<i64, _>("msn")? as u64,
                    pdt_ms: r.try_get("pdt_ms")?,
                    duration_us: r.try_get("duration_us")?,
                    discontinuity: r.try_get::<i64, _>("discontinuity")? != 0,
                    gap_before: r.try_get::<i64, _>("gap_before")? != 0,
                    path: r.try_get("path")?,
                    offset: r.try_get::<i64, _>("byte_offset")? as u64,
                    length: r.try_get::<i64, _>("byte_length")? as u64,
                    parts: serde_json::from_str(&r.try_get::<String, _>("parts")?).unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(IndexError)
    }

    /// Init segment length of chunk file `path`, if indexed.
    pub async fn init_len(&self, path: &str) -> Result<Option<u64>, IndexError> {
        let row = sqlx::query("SELECT init_len FROM archive_files WHERE path = $1").bind(path).fetch_optional(self.db.pool()).await?;
        Ok(row.map(|r| r.try_get::<i64, _>("init_len")).transpose()?.map(|l| l as u64))
    }

    /// The chunk files of broadcast (or clip) `id`: (path, uploaded).
    pub async fn files(&self, id: &str) -> Result<Vec<(String, bool)>, IndexError> {
        let rows = sqlx::query("SELECT path, uploaded FROM archive_files WHERE broadcast_id = $1").bind(id).fetch_all(self.db.pool()).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("path")?, r.try_get::<i64, _>("uploaded")? != 0)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(IndexError)
    }

    /// Marks chunk file `path` complete at `bytes` long: it can be uploaded.
    pub async fn close_file(&self, path: &str, bytes: u64) -> Result<(), IndexError> {
        sqlx::query("UPDATE archive_files SET closed = 1, bytes = $2 WHERE path = $1").bind(path).bind(bytes as i64).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Complete chunk files not yet in object storage, oldest first: (path, bytes).
    pub async fn files_to_upload(&self) -> Result<Vec<(String, u64)>, IndexError> {
        let rows = sqlx::query("SELECT path, bytes FROM archive_files WHERE closed = 1 AND uploaded = 0 ORDER BY path").fetch_all(self.db.pool()).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("path")?, r.try_get::<i64, _>("bytes")? as u64)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(IndexError)
    }

    /// Marks chunk file `path` stored in object storage.
    pub async fn set_uploaded(&self, path: &str) -> Result<(), IndexError> {
        sqlx::query("UPDATE archive_files SET uploaded = 1 WHERE path = $1").bind(path).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Whether chunk file `path` is in object storage (`None`: not indexed).
    pub async fn uploaded(&self, path: &str) -> Result<Option<bool>, IndexError> {
        let row = sqlx::query("SELECT uploaded FROM archive_files WHERE path = $1").bind(path).fetch_optional(self.db.pool()).await?;
        Ok(row.map(|r| r.try_get::<i64, _>("uploaded")).transpose()?.map(|u| u != 0))
    }

    /// Records a new clip.
    pub async fn add_clip(&self, c: &ClipRow) -> Result<(), IndexError> {
        sqlx::query(&format!("INSERT INTO archive_clips ({CLIP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
            .bind(&c.id)
            .bind(&c.channel)
            .bind(&c.broadcast_id)
            .bind(c.start_ms)
            .bind(c.end_ms)
            .bind(c.created_ms)
            .bind(c.status.as_str())
            .bind(&c.error)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Clip `id`.
    pub async fn clip(&self, id: &str) -> Result<Option<ClipRow>, IndexError> {
        let row = sqlx::query(&format!("SELECT {CLIP_COLUMNS} FROM archive_clips WHERE id = $1")).bind(id).fetch_optional(self.db.pool()).await?;
        Ok(row.as_ref().map(clip_row).transpose()?)
    }

    /// Clips of `channel`, newest first.
    pub async fn clips(&self, channel: &str) -> Result<Vec<ClipRow>, IndexError> {
        let rows = sqlx::query(&format!("SELECT {CLIP_COLUMNS} FROM archive_clips WHERE channel = $1 ORDER BY created_ms DESC"))
            .bind(channel)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().map(clip_row).collect::<Result<_, _>>()?)
    }

    /// Clips still waiting for their range, oldest first.
    pub async fn pending_clips(&self) -> Result<Vec<ClipRow>, IndexError> {
        let rows = sqlx::query(&format!("SELECT {CLIP_COLUMNS} FROM archive_clips WHERE status = 'pending' ORDER BY created_ms")).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(clip_row).collect::<Result<_, _>>()?)
    }

    /// Sets clip `id`'s status (and the reason, for a failure).
    pub async fn set_clip_status(&self, id: &str, status: ClipStatus, error: Option<&str>) -> Result<(), IndexError> {
        sqlx::query("UPDATE archive_clips SET status = $2, error = $3 WHERE id = $1").bind(id).bind(status.as_str()).bind(error).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Removes clip `id` and its media rows (a takedown).
    pub async fn delete_clip(&self, id: &str) -> Result<(), IndexError> {
        let mut tx = self.db.pool().begin().await?;
        for table in ["archive_segments", "archive_files", "archive_renditions"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE broadcast_id = $1")).bind(id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM archive_clips WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes broadcast `id` and everything indexed under it.
    pub async fn delete_broadcast(&self, id: &str) -> Result<(), IndexError> {
        let mut tx = self.db.pool().begin().await?;
        for table in ["archive_segments", "archive_files", "archive_renditions"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE broadcast_id = $1")).bind(id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM archive_broadcasts WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
