//! Reading archived bytes from wherever they are: the local chunk file while it exists, else
//! its object in storage.

use std::ops::Range;
use std::path::Path;

use bytes::Bytes;

use crate::objects::Objects;
use crate::ArchiveError;

/// Bytes `range` of chunk file `rel` (relative to the archive directory `dir`).
/// Errors: [`ArchiveError`] (the file is in neither place, or reading it failed).
pub async fn read_range(dir: &Path, objects: Option<&Objects>, rel: &str, range: Range<u64>) -> Result<Bytes, ArchiveError> {
    let local = dir.join(rel);
    if tokio::fs::try_exists(&local).await.unwrap_or(false) {
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(local)?;
            f.seek(SeekFrom::Start(range.start))?;
            let mut buf = vec![0; (range.end - range.start) as usize];
            f.read_exact(&mut buf)?;
            Ok(Bytes::from(buf))
        });
        return Ok(read.await.map_err(|e| std::io::Error::other(e.to_string()))??);
    }
    match objects {
        Some(o) => Ok(o.get_range(rel, range).await?),
        None => Err(ArchiveError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{rel} is not on disk")))),
    }
}
