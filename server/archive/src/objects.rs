//! Object storage for the archive: complete chunk files are uploaded to an S3-compatible bucket
//! (AWS S3, MinIO, Ceph, s3s-fs...) through the `object_store` crate, after which the local copy
//! may be dropped; reads of media come from wherever the bytes are.
//!
//! Object layout: one object per chunk file, its key the file's path relative to the archive
//! directory after `prefix`: `{prefix}{channel}/{broadcast}/{rendition}/{first MSN:010}.mp4`
//! (clips under `{prefix}.clips/…`). A chunk file holds up to `chunk_s` (300 s) of one rendition,
//! tens of MiB, so uploads are multipart (8 MiB parts, above S3's 5 MiB minimum) and a segment is
//! read with a ranged GET of the byte range the index gives — never a whole object per segment.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStoreExt, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// `[archive.s3]`: where complete chunk files go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server, e.g. `http://127.0.0.1:9000`; `None`: AWS S3 in `region`.
    pub endpoint: Option<String>,
    /// Bucket name (it must exist).
    pub bucket: String,
    /// Region. Default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Prepended to every object key, e.g. `onair/`. Default empty.
    #[serde(default)]
    pub prefix: String,
    /// Keep the local copy of uploaded files (reads still prefer it). Default false.
    #[serde(default)]
    pub keep_local: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Multipart upload part size, bytes.
const PART_SIZE: usize = 8 << 20;

/// Errors of object storage.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The configuration is unusable (bad endpoint URL, ...).
    #[error("object storage configuration: {0}")]
    Config(String),
    /// The server refused or failed a request, or could not be reached.
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    /// The local file could not be read.
    #[error("reading {path}: {source}")]
    Local {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bucket the archive writes to; cheap to clone.
#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<AmazonS3>,
    prefix: String,
    /// Keep local copies after upload.
    pub keep_local: bool,
}

impl Objects {
    /// The bucket of `config`. Plain `http://` endpoints are allowed (a server on loopback or
    /// inside a private network); requests time out after 60 s. Errors: [`ObjectError::Config`].
    pub fn new(config: &S3Config) -> Result<Self, ObjectError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(60)).with_connect_timeout(Duration::from_secs(5)));
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://")).with_virtual_hosted_style_request(false);
        }
        let store = b.build().map_err(|e| ObjectError::Config(e.to_string()))?;
        Ok(Objects { store: Arc::new(store), prefix: config.prefix.clone(), keep_local: config.keep_local })
    }

    fn key(&self, rel: &str) -> Key {
        Key::from(format!("{}{rel}", self.prefix))
    }

    /// Uploads the local file `local` as `rel` (multipart, 8 MiB parts); returns its size.
    /// Errors: [`ObjectError`] (nothing is left half-visible: an unfinished upload is aborted).
    pub async fn upload(&self, rel: &str, local: &Path) -> Result<u64, ObjectError> {
        let local_err = |source| ObjectError::Local { path: local.display().to_string(), source };
        let mut file = tokio::fs::File::open(local).await.map_err(local_err)?;
        let upload = self.store.put_multipart(&self.key(rel)).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(local_err(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = w.wait_for_capacity(2).await {
                let _ = w.abort().await;
                return Err(e.into());
            }
            w.write(&buf[..n]);
            total += n as u64;
        }
        w.finish().await?;
        Ok(total)
    }

    /// Bytes `range` of object `rel`. Errors: [`ObjectError::Store`].
    pub async fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, ObjectError> {
        Ok(self.store.get_range(&self.key(rel), range).await?)
    }

    /// Size of object `rel`, bytes. Errors: [`ObjectError::Store`].
    pub async fn size(&self, rel: &str) -> Result<u64, ObjectError> {
        Ok(self.store.head(&self.key(rel)).await?.size)
    }

    /// Deletes object `rel` (absent is fine). Errors: [`ObjectError::Store`].
    pub async fn delete(&self, rel: &str) -> Result<(), ObjectError> {
        match self.store.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Uploads complete chunk files until `stop`: on every `closed` notice and every 5 s, each file
/// the index shows complete and not uploaded is uploaded, marked, and (unless `keep_local`)
/// deleted locally. A failure is counted, logged once per outage, and retried with a backoff
/// (1 s doubling to 30 s): nothing is lost and the recorder never waits.
pub(crate) async fn upload_loop(index: crate::index::Index, dir: std::path::PathBuf, objects: Objects, closed: Arc<tokio::sync::Notify>, stop: tokio_util::sync::CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let mut wait = Duration::from_secs(5);
        match index.files_to_upload().await {
            Err(e) => tracing::error!(error = %e, "archive uploads: index read failed"),
            Ok(files) => {
                for (path, _) in files {
                    let local = dir.join(&path);
                    match objects.upload(&path, &local).await {
                        Ok(bytes) => {
                            if failing {
                                tracing::warn!("object storage works again; uploads resumed");
                                failing = false;
                            }
                            backoff = Duration::from_secs(1);
                            metrics::counter!("onair_archive_uploaded_bytes_total").increment(bytes);
                            metrics::counter!("onair_archive_uploads_total", "result" => "ok").increment(1);
                            if let Err(e) = index.set_uploaded(&path).await {
                                tracing::error!(path, error = %e, "archive uploads: index write failed (uploaded again later)");
                                continue;
                            }
                            if !objects.keep_local {
                                if let Err(e) = tokio::fs::remove_file(&local).await {
                                    tracing::warn!(path, error = %e, "cannot remove the uploaded local copy");
                                }
                            }
                        }
                        Err(ObjectError::Local { path: p, source }) if source.kind() == std::io::ErrorKind::NotFound => {
                            // Gone locally and never uploaded: nothing can bring it back.
                            metrics::counter!("onair_archive_uploads_total", "result" => "missing").increment(1);
                            tracing::error!(path = p, "chunk file missing before upload; its segments are lost");
                            let _ = index.set_uploaded(&path).await;
                        }
                        Err(e) => {
                            metrics::counter!("onair_archive_uploads_total", "result" => "error").increment(1);
                            if !failing {
                                tracing::error!(path, error = %e, "upload to object storage failed; retrying (recording goes on locally)");
                                failing = true;
                            }
                            wait = backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            break;
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = closed.notified(), if !failing => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
