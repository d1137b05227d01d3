//! The memcache: which dataset versions are in memory, within a byte budget.
//!
//! Invariants:
//! - A dataset is *resident* when its slot holds a [`DatasetState`]; `used_bytes` is the sum
//!   of the resident states' `bytes`, and the LRU list holds exactly the resident datasets.
//! - Pinned datasets are never evicted (they may push `used_bytes` over the capacity;
//!   unpinned datasets then make room or stay cold). Evicting a pinned dataset unpins it.
//! - Requests take an `Arc` of the state they start on; eviction and reload only swap the
//!   slot, so a request in flight always finishes on a whole, consistent version.
//! - Loads and reloads of one dataset are serialized by its `reload` lock; different
//!   datasets load in parallel, off the request path.
//! - The version a dataset is served at never goes back. A slot's manifest only moves
//!   forward, and a state is published only if it is at least as new as the slot's manifest
//!   (both under the slot's `publish` lock): a dataset not in memory follows new versions on
//!   its cold path at once, without waiting for a build in progress, and that build catches
//!   up before it publishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use lru::LruCache;
use object_store::ObjectStore;
use strata_daemon::config::Rebuild;
use strata_queryd_api::{CacheEntry, CacheStats};
use strata_shared::commit::{Table, list_datasets};
use strata_shared::layout::DatasetName;
use strata_shared::manifest::Manifest;

use crate::build;
use crate::delta_cache::DeltaCache;
use crate::error::QueryError;
use crate::executor;
use crate::metrics::Metrics;
use crate::source::Source;
use crate::state::DatasetState;

mod follow;
mod slot;

pub use slot::{Declared, Residency, Slot};

/// The result of a reload.
#[derive(Clone, Debug)]
pub struct Reloaded {
    pub rows: u64,
    pub version: u64,
    pub elapsed_ms: u64,
}

struct Lru {
    /// Resident datasets, least recently used first; the value is the state's bytes.
    order: LruCache<DatasetName, u64>,
    used: u64,
}

pub struct Memcache {
    /// Decoded delta files, shared with the cold path; and through it, the store.
    deltas: Arc<DeltaCache>,
    capacity: u64,
    rebuild: Rebuild,
    /// Per-dataset settings from the config (index policy, pin at start).
    configured: HashMap<String, Declared>,
    slots: RwLock<HashMap<DatasetName, Arc<Slot>>>,
    lru: Mutex<Lru>,
    /// The slot (its address) at the front of `lru`, or 0 when not known: `touch` skips the
    /// lock for it. Set by `touch`; reset by every other change of `lru`, under its lock.
    most_recent: AtomicUsize,
    evictions: AtomicU64,
    /// Set once the store's list of datasets has been read (readiness).
    catalog_read: AtomicBool,
    metrics: Arc<Metrics>,
    /// Where work that outlives a request runs (loads, catch-ups): the runtime that made the
    /// cache. Requests are served on per-core connection runtimes, whose `tokio::spawn`
    /// would tie the work to one connection thread.
    background: tokio::runtime::Handle,
    /// Where states are built and changed: the query runtime ([`executor::compute`]).
    compute: tokio::runtime::Handle,
}

/// What a load does with a state already in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resident {
    /// Bring it to the newest version (a reload, a catch-up).
    Replace,
    /// Leave it: someone else loaded it first.
    Keep,
}

/// What a load did.
#[must_use = "a released dataset must be rebuilt: `load_in_background`"]
enum Loaded {
    /// The newest version is published in memory (or the resident state was current).
    Published(Reloaded),
    /// The resident state was released ([`Rebuild::ReleaseFirst`]): the new version is
    /// served cold until the caller's background rebuild publishes it.
    Released(Reloaded),
}

impl Loaded {
    /// The answer of a load that cannot release (one that builds beside).
    fn reloaded(self) -> Reloaded {
        match self {
            Loaded::Published(r) | Loaded::Released(r) => r,
        }
    }
}

impl Memcache {
    /// Must be called inside a Tokio runtime: that runtime runs the cache's background work;
    /// `compute` (the query runtime) builds the states.
    pub fn new(
        deltas: Arc<DeltaCache>,
        capacity: u64,
        rebuild: Rebuild,
        configured: HashMap<String, Declared>,
        metrics: Arc<Metrics>,
        compute: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(Self {
            deltas,
            capacity,
            rebuild,
            configured,
            slots: RwLock::new(HashMap::new()),
            lru: Mutex::new(Lru {
                order: LruCache::unbounded(),
                used: 0,
            }),
            most_recent: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            catalog_read: AtomicBool::new(false),
            metrics,
            background: tokio::runtime::Handle::current(),
            compute,
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        self.deltas.store()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The decoded delta files (shared with the cold paths).
    pub fn deltas(&self) -> &Arc<DeltaCache> {
        &self.deltas
    }

    /// Discovers the datasets in the store and loads them in the background: pinned ones
    /// first, then the rest while they fit. Datasets the config declares that do not exist
    /// yet (storaged creates them at its start, possibly after ours) are watched for and
    /// loaded when they appear.
    pub async fn warm_up(self: &Arc<Self>) -> Result<(), QueryError> {
        let slots = self.refresh().await?;
        let (pinned, rest): (Vec<_>, Vec<_>) = slots.into_iter().partition(|s| s.pinned());
        let cache = self.clone();
        self.background.spawn(async move {
            for slot in pinned.into_iter().chain(rest) {
                cache.load_logged(&slot).await;
            }
            cache.await_declared().await;
        });
        Ok(())
    }

    /// Loads declared datasets as they appear, checking every second for up to ten minutes.
    async fn await_declared(self: &Arc<Self>) {
        let mut missing: Vec<String> = self
            .configured
            .keys()
            .filter(|name| {
                DatasetName::new(name.as_str()).is_ok_and(|n| !self.read_slots().contains_key(&n))
            })
            .cloned()
            .collect();
        for _ in 0..600 {
            if missing.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let mut still_missing = Vec::new();
            for name in missing {
                match self.slot(&name).await {
                    Ok(slot) => self.load_logged(&slot).await,
                    Err(_) => still_missing.push(name),
                }
            }
            missing = still_missing;
        }
    }

    async fn load_logged(self: &Arc<Self>, slot: &Arc<Slot>) {
        if let Err(e) = self.load(slot).await {
            tracing::warn!(dataset = %slot.name, error = %e, "background load failed");
        }
    }

    /// Lists the store and adds slots for datasets not seen before. Returns every slot,
    /// sorted by name.
    pub async fn refresh(&self) -> Result<Vec<Arc<Slot>>, QueryError> {
        let names = list_datasets(self.store().as_ref()).await?;
        for name in names {
            if !self.read_slots().contains_key(&name) {
                // A dataset being created may have no manifest yet: skip it this time.
                match self.discover(&name).await {
                    Ok(_) | Err(QueryError::DatasetNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.catalog_read.store(true, Ordering::Release);
        let mut slots: Vec<Arc<Slot>> = self.read_slots().values().cloned().collect();
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(slots)
    }

    /// How many datasets are known, once the store's list has been read (listing it now if
    /// it never was): what `/readyz` answers.
    pub async fn ready(&self) -> Result<usize, QueryError> {
        if self.catalog_read.load(Ordering::Acquire) {
            return Ok(self.read_slots().len());
        }
        Ok(self.refresh().await?.len())
    }

    fn read_slots(&self) -> std::sync::RwLockReadGuard<'_, HashMap<DatasetName, Arc<Slot>>> {
        // A panic while holding the lock cannot leave the map half-updated (inserts are
        // single operations), so a poisoned lock is still consistent.
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of `name`, reading its manifest from the store the first time.
    pub async fn slot(&self, name: &str) -> Result<Arc<Slot>, QueryError> {
        let name =
            DatasetName::new(name).map_err(|_| QueryError::DatasetNotFound(name.to_owned()))?;
        if let Some(slot) = self.read_slots().get(&name) {
            return Ok(slot.clone());
        }
        // Boxed: a store read, once per dataset, kept out of every request's future.
        Box::pin(self.discover(&name)).await
    }

    async fn discover(&self, name: &DatasetName) -> Result<Arc<Slot>, QueryError> {
        let manifest = match Table::new(self.store().clone(), name.clone())
            .load_latest()
            .await
        {
            Ok(m) => m,
            Err(strata_shared::Error::DatasetNotFound(_)) => {
                return Err(QueryError::DatasetNotFound(name.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        // The config's entry wins; else the policy the dataset was created with.
        let Declared { spec, pinned } = match self.configured.get(name.as_str()) {
            Some(declared) => declared.clone(),
            None => Declared {
                spec: manifest
                    .index
                    .clone()
                    .map(|hint| build::IndexSpec {
                        policy: hint.policy,
                        columns: hint.columns,
                    })
                    .unwrap_or_default(),
                pinned: false,
            },
        };
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let slot = slots
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Slot::new(manifest, spec, pinned)));
        Ok(slot.clone())
    }

    /// What a request on `name` reads. A dataset not in memory is answered cold while it
    /// loads in the background.
    pub async fn source(self: &Arc<Self>, name: &str) -> Result<Source, QueryError> {
        let slot = self.slot(name).await?;
        // Written only when it changed (once a millisecond under load): a store on every
        // request would move the line between the cores serving it.
        let now = chrono::Utc::now().timestamp_millis();
        if slot.last_access_ms.load(Ordering::Relaxed) != now {
            slot.last_access_ms.store(now, Ordering::Relaxed);
        }
        if let Some(state) = slot.resident() {
            slot.hits.add(1);
            self.metrics.cache_hit();
            self.touch(&slot);
            return Ok(Source::Memory(state));
        }
        slot.misses.fetch_add(1, Ordering::Relaxed);
        self.metrics.cache_miss();
        self.load_unless_loading(&slot, Retry::NewVersion);
        Ok(Source::Cold(slot.manifest()))
    }

    /// Starts loading `name` in the background if it is not in memory (a dataset just
    /// created: loaded now rather than by its first request).
    pub async fn load_soon(self: &Arc<Self>, name: &str) -> Result<(), QueryError> {
        let slot = self.slot(name).await?;
        if slot.resident().is_none() {
            self.load_unless_loading(&slot, Retry::Never);
        }
        Ok(())
    }

    /// Starts a background load of a dataset not in memory, unless one is running or it was
    /// found too big for the cache (and its base has not shrunk since, or at all with
    /// [`Retry::Never`]): a dataset that fits is loaded as soon as it is read, created or
    /// changed, not by the request that waits for it.
    fn load_unless_loading(self: &Arc<Self>, slot: &Arc<Slot>, retry: Retry) {
        let too_big = slot.too_big_base_rows.load(Ordering::Relaxed);
        let skip = too_big >= 0
            && match retry {
                // Deltas only add to a state's memory (a deleted base row stays until a
                // rebuild): only a smaller base (a compaction that dropped rows) may fit.
                Retry::NewVersion => slot.manifest().base_rows() as i64 >= too_big,
                Retry::Never => true,
            };
        if !skip && !slot.loading.swap(true, Ordering::AcqRel) {
            self.load_in_background(slot);
        }
    }

    /// The LRU order, locked to be changed (the front `touch` knows is forgotten).
    fn change_lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        let lru = self.lru.lock().unwrap_or_else(|p| p.into_inner());
        self.most_recent.store(0, Ordering::Relaxed);
        lru
    }

    /// Makes `slot` the most recently used, unless it is already (then without the lock: a
    /// dataset read by every request would otherwise take it on every request).
    fn touch(&self, slot: &Arc<Slot>) {
        let id = Arc::as_ptr(slot) as usize;
        if self.most_recent.load(Ordering::Relaxed) == id {
            return;
        }
        let mut lru = self.lru.lock().unwrap_or_else(|p| p.into_inner());
        lru.order.promote(&slot.name);
        self.most_recent.store(id, Ordering::Relaxed);
    }

    /// Loads (or reloads) the newest version of `slot`'s dataset and publishes it. A state in
    /// memory keeps answering until the new one is built, whatever `rebuild` says: the caller
    /// waits for the new state (or its error, which keeps the old state).
    pub async fn load(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<Reloaded, QueryError> {
        slot.loading.store(true, Ordering::Release);
        let loaded = self.load_locked(slot, Resident::Replace, None, Rebuild::Beside);
        Ok(loaded.await?.reloaded())
    }

    /// `resident`: what to do with a resident state (replace it by the newest version, or
    /// keep it: a background load that raced with another).
    /// `at`: load that version rather than discover the latest (a writer just told us about
    /// it, which saves the discovery's round trips); the latest if it is gone.
    /// `rebuild`: what to do when the resident state cannot apply the new version
    /// incrementally (its base files changed). [`Rebuild::ReleaseFirst`] releases the state,
    /// so the new version is served cold at once, and answers [`Loaded::Released`]: the
    /// caller then rebuilds in the background (a spawn from here would make this future
    /// recursive).
    async fn load_locked(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        resident: Resident,
        at: Option<u64>,
        rebuild: Rebuild,
    ) -> Result<Loaded, QueryError> {
        let _serial = slot.reload.lock().await;
        let started = Instant::now();
        let mut released = false;
        let result = async {
            // Someone else (a notification, another request) got there while we waited.
            if let (Some(current), Some(at)) = (slot.resident(), at)
                && current.version >= at
            {
                return Ok::<_, QueryError>((current.version, current.rows() as u64));
            }
            let manifest = self.manifest(&slot.name, at).await?;
            let current = slot.resident();
            if let Some(current) = &current
                && (current.version >= manifest.version || resident == Resident::Keep)
            {
                return Ok((current.version, current.rows() as u64));
            }
            let state = match current {
                Some(current) if build::pending(&current, &manifest).is_some() => {
                    self.catch_up_state(slot, current, manifest).await?
                }
                Some(_) if rebuild == Rebuild::ReleaseFirst => {
                    slot.advance_manifest(manifest);
                    self.release(slot);
                    released = true;
                    // Now answered cold: the manifest's version and row count.
                    return Ok(slot.version_rows());
                }
                _ => match self.build(slot, manifest).await? {
                    Some(state) => state,
                    None => return Ok(self.serve_cold(slot)),
                },
            };
            self.publish(slot, state).await
        }
        .await;
        // A released dataset is rebuilt right after this: keep it "loading" until then.
        slot.loading.store(released, Ordering::Release);
        let elapsed = started.elapsed();
        if !released {
            self.metrics.reload(elapsed, result.is_ok());
        }
        match (&result, released) {
            (Ok(_), false) => {
                slot.consecutive_failures.store(0, Ordering::Relaxed);
                slot.last_load_ms
                    .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                slot.last_load_duration_ms
                    .store(elapsed.as_millis() as u64, Ordering::Relaxed);
            }
            // Released for a rebuild, which records its own outcome: not a failure.
            (Ok(_), true) => {}
            (Err(_), _) => {
                slot.consecutive_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (version, rows) = result?;
        let reloaded = Reloaded {
            rows,
            version,
            elapsed_ms: elapsed.as_millis() as u64,
        };
        Ok(if released {
            Loaded::Released(reloaded)
        } else {
            Loaded::Published(reloaded)
        })
    }

    /// Loads the newest version of `slot` in the background (the caller set `loading`).
    fn load_in_background(self: &Arc<Self>, slot: &Arc<Slot>) {
        let (cache, slot) = (self.clone(), slot.clone());
        self.background.spawn(async move {
            let loaded = cache.load_locked(&slot, Resident::Keep, None, Rebuild::Beside);
            if let Err(e) = loaded.await {
                tracing::warn!(dataset = %slot.name, error = %e, "background load failed");
            }
        });
    }

    /// Applies the deltas `manifest` adds to `state` (same base files), off the async workers,
    /// and makes `manifest` the slot's newest (the cold path reads it after an eviction).
    async fn catch_up_state(
        &self,
        slot: &Slot,
        state: Arc<DatasetState>,
        manifest: Manifest,
    ) -> Result<Arc<DatasetState>, QueryError> {
        let Some(pending) = build::pending(&state, &manifest) else {
            return Err(QueryError::Internal(format!(
                "version {} of {} cannot be applied to version {}",
                manifest.version, manifest.dataset, state.version
            )));
        };
        let deltas = self.deltas.read(pending).await?;
        let compacted = manifest.base_watermark_seq != state.watermark;
        let target = manifest.clone();
        let applied = executor::compute(&self.compute, "applying deltas", move || {
            build::apply(&state, &target, deltas)
        })
        .await?;
        if compacted {
            self.metrics.compaction_carried();
        }
        slot.advance_manifest(manifest);
        Ok(Arc::new(applied))
    }

    /// Builds the state of `manifest` from its files; `None` when it proved bigger than the
    /// whole cache while loading (unless pinned), so the load stopped at the cache's size
    /// instead of holding the whole table first. The slot then knows `manifest` and remembers
    /// its base as too big ([`Slot::too_big_base_rows`]).
    async fn build(
        &self,
        slot: &Slot,
        manifest: Manifest,
    ) -> Result<Option<Arc<DatasetState>>, QueryError> {
        let limit = (!slot.pinned()).then(|| usize::try_from(self.capacity).unwrap_or(usize::MAX));
        let state = build::load(&self.deltas, &manifest, &slot.spec, &self.compute, limit).await?;
        let Some(state) = state else {
            tracing::info!(dataset = %slot.name, capacity = self.capacity,
                "dataset is bigger than the cache: served from Parquet");
            slot.too_big_base_rows
                .store(manifest.base_rows() as i64, Ordering::Relaxed);
            slot.advance_manifest(manifest);
            return Ok(None);
        };
        self.metrics.state_built();
        slot.advance_manifest(manifest);
        Ok(Some(Arc::new(state)))
    }

    /// After a version proved too big ([`Self::build`]): a state of an older version goes too
    /// (it cannot be brought up to it), and the slot answers cold. Its version and rows.
    fn serve_cold(&self, slot: &Slot) -> (u64, u64) {
        self.release(slot);
        slot.version_rows()
    }

    /// Publishes `state`, first bringing it up to the slot's manifest, which may have moved on
    /// while it was built (a cold slot follows new versions without waiting for the build):
    /// by new deltas, or by a rebuild if the base files changed again.
    async fn publish(
        &self,
        slot: &Arc<Slot>,
        mut state: Arc<DatasetState>,
    ) -> Result<(u64, u64), QueryError> {
        loop {
            let newest = slot.manifest();
            if newest.version > state.version {
                state = if build::pending(&state, &newest).is_some() {
                    self.catch_up_state(slot, state, (*newest).clone()).await?
                } else {
                    drop(state); // not published: free it before building the next
                    match self.build(slot, (*newest).clone()).await? {
                        Some(state) => state,
                        None => return Ok(self.serve_cold(slot)),
                    }
                };
                continue;
            }
            let _publish = slot.lock_publish();
            if slot.manifest().version <= state.version {
                let answer = (state.version, state.rows() as u64);
                self.admit(slot, state);
                return Ok(answer);
            }
        }
    }

    /// Publishes `state` and evicts least recently used unpinned datasets while over
    /// capacity. A state bigger than the whole cache is not kept unless pinned.
    fn admit(&self, slot: &Arc<Slot>, state: Arc<DatasetState>) {
        let bytes = state.bytes as u64;
        let mut lru = self.change_lru();
        if bytes > self.capacity && !slot.pinned() {
            tracing::info!(dataset = %slot.name, bytes, capacity = self.capacity,
                "dataset is bigger than the cache: served from Parquet");
            slot.too_big_base_rows
                .store(slot.manifest().base_rows() as i64, Ordering::Relaxed);
            if let Some(old) = lru.order.pop(&slot.name) {
                lru.used -= old;
            }
            slot.resident.store(None);
            return;
        }
        if let Some(old) = lru.order.put(slot.name.clone(), bytes) {
            lru.used -= old;
        }
        lru.used += bytes;
        slot.resident.store(Some(state));
        self.evict_over_capacity(&mut lru, &slot.name);
        self.metrics.set_cache_bytes(lru.used);
    }

    /// Evicts unpinned datasets, least recently used first, until within capacity; `keep`
    /// (the dataset just admitted) goes last.
    fn evict_over_capacity(&self, lru: &mut Lru, keep: &DatasetName) {
        if lru.used <= self.capacity {
            return;
        }
        let slots = self.read_slots();
        let victims: Vec<DatasetName> = lru
            .order
            .iter()
            .rev() // least recently used first
            .map(|(name, _)| name.clone())
            .filter(|name| name != keep)
            .chain(std::iter::once(keep.clone()))
            .collect();
        for name in victims {
            if lru.used <= self.capacity {
                break;
            }
            let Some(slot) = slots.get(&name) else {
                continue;
            };
            if slot.pinned() {
                continue;
            }
            if let Some(bytes) = lru.order.pop(&name) {
                lru.used -= bytes;
                slot.resident.store(None);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                self.metrics.eviction();
                tracing::info!(dataset = %name, bytes, "evicted");
            }
        }
    }

    /// Pins a dataset: loads it if needed and keeps it in memory until unpinned or evicted.
    pub async fn pin(self: &Arc<Self>, name: &str) -> Result<CacheEntry, QueryError> {
        let slot = self.slot(name).await?;
        slot.pinned.store(true, Ordering::Relaxed);
        if slot.resident().is_none() {
            self.load(&slot).await?;
        }
        Ok(slot.stats())
    }

    pub async fn unpin(&self, name: &str) -> Result<CacheEntry, QueryError> {
        let slot = self.slot(name).await?;
        slot.pinned.store(false, Ordering::Relaxed);
        let mut lru = self.change_lru();
        self.evict_over_capacity(&mut lru, &slot.name);
        self.metrics.set_cache_bytes(lru.used);
        Ok(slot.stats())
    }

    /// Drops a dataset from memory (and unpins it). Requests in flight keep their state.
    pub async fn evict(&self, name: &str) -> Result<CacheEntry, QueryError> {
        let slot = self.slot(name).await?;
        slot.pinned.store(false, Ordering::Relaxed);
        if self.release(&slot) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
            self.metrics.eviction();
        }
        Ok(slot.stats())
    }

    /// Drops `slot`'s state from memory; requests in flight keep theirs, and its memory goes
    /// with the last of them. True if it was resident.
    fn release(&self, slot: &Slot) -> bool {
        let mut lru = self.change_lru();
        let released = lru.order.pop(&slot.name);
        if let Some(bytes) = released {
            lru.used -= bytes;
        }
        slot.resident.store(None);
        self.metrics.set_cache_bytes(lru.used);
        released.is_some()
    }

    /// Forgets a dataset the store no longer has (dropped): its slot goes, and its memory
    /// with the last request in flight that holds its state. A dataset created again under
    /// the name is discovered afresh.
    pub fn forget(&self, name: &str) {
        let Ok(name) = DatasetName::new(name) else {
            return;
        };
        let slot = self.read_slots().get(&name).cloned();
        if let Some(slot) = slot {
            self.forget_slot(&slot);
        }
    }

    /// As [`Self::forget`], if `slot` is still the one serving its name.
    fn forget_slot(&self, slot: &Arc<Slot>) {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        // Only this slot: a new dataset of the name may have been discovered meanwhile.
        if slots.get(&slot.name).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(&slot.name);
            drop(slots);
            self.release(slot);
            tracing::info!(dataset = %slot.name, "dataset dropped: forgotten");
        }
    }

    /// Manifest `at`, or the latest (also when `at` no longer exists); a drop's tombstone is
    /// a dataset not found.
    async fn manifest(&self, name: &DatasetName, at: Option<u64>) -> Result<Manifest, QueryError> {
        let table = Table::new(self.store().clone(), name.clone());
        if let Some(version) = at {
            match table.read_manifest(version).await {
                Ok(m) if m.is_dropped() => {
                    return Err(QueryError::DatasetNotFound(name.to_string()));
                }
                Ok(m) => return Ok(m),
                Err(strata_shared::Error::ManifestNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(table.load_latest().await?)
    }

    /// Publishes the newest manifest version of `name`.
    pub async fn reload(self: &Arc<Self>, name: &str) -> Result<Reloaded, QueryError> {
        let slot = self.slot(name).await?;
        self.load(&slot).await
    }

    pub fn stats(&self) -> CacheStats {
        let used = self.lru.lock().unwrap_or_else(|p| p.into_inner()).used;
        let mut datasets: Vec<CacheEntry> = self.read_slots().values().map(|s| s.stats()).collect();
        datasets.sort_by(|a, b| a.dataset.cmp(&b.dataset));
        CacheStats {
            instance: String::new(),
            capacity_bytes: self.capacity,
            used_bytes: used,
            hits: datasets.iter().map(|d| d.hits).sum(),
            misses: datasets.iter().map(|d| d.misses).sum(),
            evictions: self.evictions.load(Ordering::Relaxed),
            datasets,
        }
    }
}

/// Whether a load of a dataset once found too big for the cache is tried again.
#[derive(Clone, Copy)]
enum Retry {
    /// At a version with a smaller base (a compaction dropped rows): a read.
    NewVersion,
    /// Not by this caller: a write's notification (they come often).
    Never,
}
