//! Spooled exports: a Parquet export written once to local disk, then answered from the file
//! with its length and in byte ranges (`api::export`). Readers of remote Parquet (DuckDB's
//! httpfs, Polars, Arrow's HTTP filesystems) ask for the length first, then read the footer
//! and the row groups they need in ranges: each of those requests must see the same bytes,
//! which a fresh encoding per request would not promise.
//!
//! Invariants:
//! - An entry is keyed by the dataset, the version its rows are of, and the request that
//!   selected them: its bytes never change, so its ETag is fixed.
//! - Entries are evicted least recently used first once their bytes pass the budget. An
//!   evicted entry's file is deleted when the last answer reading it is done (the `Arc`).
//! - Concurrent requests for the same entry write it once (the first writes, the others wait).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use crate::error::QueryError;

/// What an entry holds: one dataset's rows at one version, as one request selected them.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SpoolKey {
    pub dataset: String,
    pub version: u64,
    /// The request, as JSON: what selects the rows, and their encoding.
    pub request: String,
}

/// A spooled export on local disk. Deleted when dropped.
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub len: u64,
    pub version: u64,
    /// A strong validator: the entry's bytes never change.
    pub etag: String,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "spooled export not removed");
        }
    }
}

type Slot = Arc<OnceCell<Arc<Spooled>>>;

pub struct ExportSpool {
    dir: PathBuf,
    budget: u64,
    state: Mutex<State>,
}

struct State {
    /// Written entries, most recently used first.
    written: lru::LruCache<SpoolKey, Arc<Spooled>>,
    used: u64,
    /// Entries being written: later requests for them wait on the first.
    writing: HashMap<SpoolKey, Slot>,
}

impl ExportSpool {
    /// A spool of up to `budget` bytes in `dir` (created if missing); `None` with a zero
    /// budget (exports then stream, without length or ranges).
    pub fn new(dir: PathBuf, budget: u64) -> Option<Self> {
        (budget > 0).then(|| Self {
            dir,
            budget,
            state: Mutex::new(State {
                written: lru::LruCache::unbounded(),
                used: 0,
                writing: HashMap::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few field writes that cannot panic halfway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `key`, if it is written.
    pub fn get(&self, key: &SpoolKey) -> Option<Arc<Spooled>> {
        self.state().written.get(key).cloned()
    }

    /// The entry for `key`, written from `chunks` unless it is already written (or being
    /// written by another request, which this one then waits for; its own `chunks` are
    /// dropped unread, which cancels their production). An entry bigger than the budget is
    /// answered, then let go.
    pub async fn write<S>(&self, key: SpoolKey, chunks: S) -> Result<Arc<Spooled>, QueryError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
    {
        let slot = {
            let mut state = self.state();
            if let Some(found) = state.written.get(&key) {
                return Ok(found.clone());
            }
            state.writing.entry(key.clone()).or_default().clone()
        };
        let written = slot
            .get_or_try_init(|| self.write_file(&key, chunks))
            .await
            .cloned();
        let mut state = self.state();
        if state
            .writing
            .get(&key)
            .is_some_and(|s| Arc::ptr_eq(s, &slot))
        {
            state.writing.remove(&key);
            if let Ok(spooled) = &written {
                state.used += spooled.len;
                state.written.put(key, spooled.clone());
                while state.used > self.budget {
                    let Some((_, evicted)) = state.written.pop_lru() else {
                        break;
                    };
                    state.used -= evicted.len;
                }
            }
        }
        written
    }

    async fn write_file<S>(&self, key: &SpoolKey, mut chunks: S) -> Result<Arc<Spooled>, QueryError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
    {
        let io = |what: &str, e: std::io::Error| {
            QueryError::Internal(format!("spooling the export ({what}): {e}"))
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io("creating the spool directory", e))?;
        let path = self
            .dir
            .join(format!("strata-export-{}.parquet", uuid::Uuid::now_v7()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| io("creating the file", e))?;
        // From here the file is removed with `Spooled`, also when writing it fails.
        let mut spooled = Spooled {
            path,
            len: 0,
            version: key.version,
            etag: etag(key),
        };
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(query_error)?;
            out.write_all(&chunk).await.map_err(|e| io("writing", e))?;
            spooled.len += chunk.len() as u64;
        }
        out.flush().await.map_err(|e| io("writing", e))?;
        Ok(Arc::new(spooled))
    }
}

/// The query's own error inside a stream's I/O error (`QueryService::stream`).
fn query_error(e: std::io::Error) -> QueryError {
    let text = e.to_string();
    match e.into_inner().map(|inner| inner.downcast::<QueryError>()) {
        Some(Ok(query)) => *query,
        _ => QueryError::Internal(format!("the export failed: {text}")),
    }
}

/// A strong ETag of an entry: its key, hashed (the request text can be long).
fn etag(key: &SpoolKey) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    format!(
        "\"{}-v{}-{:016x}\"",
        key.dataset,
        key.version,
        hasher.finish()
    )
}
