//! An upload's body spooled to a file, so that an upload of any size is imported like a local
//! source ([`super::Source::spooled`]) within the import's memory, never held whole. The file
//! lives in the import's spill directory and is deleted when its [`Spool`] is dropped:
//! after the import, and on every failure, the client's going away included.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

/// Bytes written to the spool file at a time (the body arrives in chunks of a few KiB).
const WRITE_BUFFER: usize = 1 << 20;

/// Why a body could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Larger than `storaged.max_upload_bytes`: a 413.
    #[error("the upload is larger than storaged.max_upload_bytes ({max} bytes)")]
    TooLarge { max: u64 },
    /// The body broke off (the client went away, a bad chunk): a 400.
    #[error("reading the upload failed: {0}")]
    Body(String),
    /// The spill directory could not take it (disk full, not writable): the server's.
    #[error("spooling the upload to {path}: {source}")]
    Disk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A spooled upload; the file is deleted when this is dropped.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    len: u64,
}

impl Spool {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The body's size.
    pub fn bytes(&self) -> u64 {
        self.len
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e,
                "the spool file of an upload was not deleted");
        }
    }
}

/// Writes `body` to a fresh file in `dir`, refusing it past `max` bytes.
pub async fn spool<S, E>(mut body: S, dir: &Path, max: u64) -> Result<Spool, SpoolError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let disk = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SpoolError::Disk { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(disk(dir))?;
    let path = dir.join(format!("upload-{}.spool", uuid::Uuid::now_v7()));
    let file = tokio::fs::File::create(&path).await.map_err(disk(&path))?;
    // From here the file is the guard's to delete, whatever happens next.
    let mut spool = Spool { path, len: 0 };
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| SpoolError::Body(e.to_string()))?;
        spool.len += chunk.len() as u64;
        if spool.len > max {
            return Err(SpoolError::TooLarge { max });
        }
        out.write_all(&chunk).await.map_err(disk(&spool.path))?;
    }
    out.flush().await.map_err(disk(&spool.path))?;
    tracing::info!(bytes = spool.len, "import: upload spooled");
    Ok(spool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spooled_then_deleted_and_refused_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = || {
            futures::stream::iter(
                (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 1000]))),
            )
        };
        let spool = spool(chunks(), dir.path(), 4000).await.unwrap();
        assert_eq!(std::fs::read(spool.path()).unwrap().len(), 4000);
        let path = spool.path().to_path_buf();
        drop(spool);
        assert!(!path.exists());
        let e = super::spool(chunks(), dir.path(), 3999).await.unwrap_err();
        assert!(matches!(e, SpoolError::TooLarge { max: 3999 }), "{e}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing left"
        );
    }
}
