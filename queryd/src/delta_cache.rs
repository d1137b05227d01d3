//! Decoded delta files, shared by every reader in this queryd: the cold path (key lookups and
//! DataFusion), state builds and catch-ups.
//!
//! Invariant: a delta file is immutable — a manifest names it by a path no writer reuses — so
//! a decoded copy is valid as long as it is kept, and entries are never checked for staleness.
//!
//! Why: every cold request used to read every delta file of its version from the store. Under
//! a steady stream of writes (hundreds of deltas before a compaction), a key lookup on a
//! restarted queryd took 10–30 s, with storaged serving each file again for each request.
//! Now a file is fetched once (misses 16 at a time) and kept within `capacity` bytes, least
//! recently used first out.

use std::sync::{Arc, Mutex};

use arrow::compute::concat_batches;
use futures::{StreamExt, TryStreamExt};
use lru::LruCache;
use object_store::ObjectStore;
use object_store::path::Path;
use strata_shared::manifest::DeltaFile;
use strata_shared::parquet_io;

use crate::deltas::LoadedDelta;
use crate::error::QueryError;
use crate::metrics::Metrics;

/// Delta files fetched at once on a miss.
const FETCH_CONCURRENCY: usize = 16;

pub struct DeltaCache {
    store: Arc<dyn ObjectStore>,
    capacity: usize,
    inner: Mutex<Inner>,
    /// One reader fetches misses at a time, so readers that miss the same files at once (a
    /// build and the cold requests meanwhile) read each file once.
    fetching: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

struct Inner {
    files: LruCache<String, LoadedDelta>,
    /// Arrow memory of the entries in `files`.
    bytes: usize,
}

impl DeltaCache {
    /// A cache over `store` that keeps up to `capacity` bytes of decoded deltas (0: none).
    pub fn new(store: Arc<dyn ObjectStore>, capacity: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            capacity,
            inner: Mutex::new(Inner {
                files: LruCache::unbounded(),
                bytes: 0,
            }),
            fetching: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    /// The store the deltas come from.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `files`, decoded, in the order given.
    pub async fn read(&self, files: &[DeltaFile]) -> Result<Vec<LoadedDelta>, QueryError> {
        let mut found = self.cached(files);
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        let _fetching = self.fetching.lock().await;
        // Another reader may have fetched some of them while this one waited.
        for (slot, again) in found.iter_mut().zip(self.cached(files)) {
            if slot.is_none() {
                *slot = again;
            }
        }
        let missing: Vec<usize> = (0..files.len()).filter(|&i| found[i].is_none()).collect();
        // Owned futures: a stream of futures borrowing `self` or `files` is not `Send` for
        // every lifetime, which the request futures above this need.
        let fetches: Vec<_> = missing
            .iter()
            .map(|&i| fetch(self.store.clone(), files[i].clone()))
            .collect();
        let fetched: Vec<LoadedDelta> = futures::stream::iter(fetches)
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        self.metrics.delta_files_read(fetched.len() as u64);
        let mut inner = self.lock();
        for (i, delta) in missing.into_iter().zip(fetched) {
            inner.insert(delta.clone(), self.capacity);
            found[i] = Some(delta);
        }
        Ok(found.into_iter().flatten().collect())
    }

    fn cached(&self, files: &[DeltaFile]) -> Vec<Option<LoadedDelta>> {
        let mut inner = self.lock();
        files
            .iter()
            .map(|f| inner.files.get(&f.path).cloned())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn insert(&mut self, delta: LoadedDelta, capacity: usize) {
        let size = delta.batch.get_array_memory_size();
        if size > capacity || self.files.contains(&delta.path) {
            return;
        }
        self.bytes += size;
        self.files.put(delta.path.clone(), delta);
        while self.bytes > capacity {
            match self.files.pop_lru() {
                Some((_, old)) => self.bytes -= old.batch.get_array_memory_size(),
                None => break,
            }
        }
    }
}

async fn fetch(store: Arc<dyn ObjectStore>, file: DeltaFile) -> Result<LoadedDelta, QueryError> {
    let path = Path::parse(&file.path).map_err(strata_shared::Error::from)?;
    let (schema, batches) = parquet_io::read(store.as_ref(), &path).await?;
    Ok(LoadedDelta {
        seq: file.seq,
        path: file.path,
        batch: concat_batches(&schema, &batches)?,
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch, UInt8Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    async fn delta_file(store: &InMemory, name: &str, seq: u64, ids: Vec<i64>) -> DeltaFile {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("_op", DataType::UInt8, false),
        ]));
        let ops = UInt8Array::from(vec![0; ids.len()]);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(ops)],
        )
        .unwrap();
        let bytes = parquet_io::encode(schema, &[batch]).unwrap();
        let path = format!("deltas/{name}.parquet");
        store
            .put(&Path::from(path.as_str()), PutPayload::from(bytes.clone()))
            .await
            .unwrap();
        DeltaFile {
            path,
            seq,
            rows: 1,
            bytes: bytes.len() as u64,
            upserts: 1,
            deletes: 0,
            created_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn reads_each_file_once_in_order_within_capacity() {
        let store = Arc::new(InMemory::new());
        let a = delta_file(&store, "a", 1, vec![1, 2]).await;
        let b = delta_file(&store, "b", 2, vec![3]).await;
        let cache = DeltaCache::new(store.clone(), 1 << 20, Arc::default());
        let read = cache.read(&[b.clone(), a.clone()]).await.unwrap();
        assert_eq!(read.iter().map(|d| d.seq).collect::<Vec<_>>(), [2, 1]);
        // Gone from the store, still answered: each file was fetched once.
        store.delete(&Path::from(a.path.as_str())).await.unwrap();
        let again = cache.read(&[a.clone(), b.clone()]).await.unwrap();
        assert_eq!(again[0].batch, read[1].batch);

        // Without room, nothing is kept: every read goes to the store.
        let none = DeltaCache::new(store.clone(), 0, Arc::default());
        assert!(none.read(std::slice::from_ref(&a)).await.is_err());
        assert_eq!(none.read(std::slice::from_ref(&b)).await.unwrap().len(), 1);
        assert_eq!(none.lock().bytes, 0);

        // Over capacity, the least recently used goes first.
        let small = DeltaCache::new(
            store.clone(),
            read[0].batch.get_array_memory_size(),
            Arc::default(),
        );
        let c = delta_file(&store, "c", 3, vec![4]).await;
        small.read(std::slice::from_ref(&b)).await.unwrap();
        small.read(std::slice::from_ref(&c)).await.unwrap();
        let inner = small.lock();
        assert!(inner.files.contains(&c.path) && !inner.files.contains(&b.path));
        assert!(inner.bytes <= small.capacity);
    }
}
