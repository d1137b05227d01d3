//! A dataset's slot in the memcache: its newest known manifest, the state resident for it
//! (if any), and what the cache stats report of it. The memcache ([`super`]) owns the rules
//! for changing a slot; this module holds the slot and answers about it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use strata_daemon::metrics::Counter;
use strata_queryd_api::CacheEntry;
use strata_shared::layout::DatasetName;
use strata_shared::manifest::Manifest;

use crate::build::IndexSpec;
use crate::state::DatasetState;

/// What the config says of a dataset it declares (`[[datasets]]`); undeclared datasets get
/// the default: automatic indexes, not pinned.
#[derive(Clone, Debug, Default)]
pub struct Declared {
    pub spec: IndexSpec,
    /// Kept in memory from the start and never evicted.
    pub pinned: bool,
}

/// Where a dataset lives right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residency {
    /// In memory.
    Memory,
    /// Being loaded; requests meanwhile read Parquet.
    Loading,
    /// Not in memory (never loaded, evicted, or too big for the cache): requests read Parquet.
    Cold,
}

impl Residency {
    pub fn as_str(self) -> &'static str {
        match self {
            Residency::Memory => "memory",
            Residency::Loading => "loading",
            Residency::Cold => "cold",
        }
    }
}

/// One dataset.
pub struct Slot {
    pub name: DatasetName,
    pub(super) spec: IndexSpec,
    pub(super) resident: ArcSwapOption<DatasetState>,
    /// The newest manifest this queryd knows (what the cold path reads).
    pub(super) manifest: ArcSwap<Manifest>,
    pub(super) reload: tokio::sync::Mutex<()>,
    /// Orders manifest advances against state publication (see the module invariants).
    pub(super) publish: Mutex<()>,
    pub(super) loading: AtomicBool,
    pub(super) pinned: AtomicBool,
    /// Base rows of the newest version found bigger than the whole cache (-1: none). Not
    /// loaded again until a version's base is smaller (see `Memcache::load_unless_loading`).
    pub(super) too_big_base_rows: AtomicI64,
    /// Sharded: counted on every request.
    pub(super) hits: Counter,
    pub(super) misses: AtomicU64,
    pub(super) last_access_ms: AtomicI64,
    /// When the last load finished (ms since the epoch, -1 never) and how long it took.
    pub(super) last_load_ms: AtomicI64,
    pub(super) last_load_duration_ms: AtomicU64,
    pub(super) consecutive_failures: AtomicU64,
}

impl Slot {
    pub(super) fn new(manifest: Manifest, spec: IndexSpec, pinned: bool) -> Self {
        Self {
            name: manifest.dataset.clone(),
            spec,
            resident: ArcSwapOption::empty(),
            manifest: ArcSwap::from_pointee(manifest),
            reload: tokio::sync::Mutex::new(()),
            publish: Mutex::new(()),
            loading: AtomicBool::new(false),
            pinned: AtomicBool::new(pinned),
            too_big_base_rows: AtomicI64::new(-1),
            hits: Counter::default(),
            misses: AtomicU64::new(0),
            last_access_ms: AtomicI64::new(-1),
            last_load_ms: AtomicI64::new(-1),
            last_load_duration_ms: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
        }
    }

    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest.load_full()
    }

    pub fn resident(&self) -> Option<Arc<DatasetState>> {
        self.resident.load_full()
    }

    pub(super) fn lock_publish(&self) -> std::sync::MutexGuard<'_, ()> {
        self.publish.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `manifest` the slot's newest, unless it already knows a newer one.
    pub(super) fn advance_manifest(&self, manifest: Manifest) {
        let _publish = self.lock_publish();
        if manifest.version > self.manifest.load().version {
            self.manifest.store(Arc::new(manifest));
        }
    }

    /// (finished at, duration in ms) of the last successful load.
    pub fn last_load(&self) -> Option<(chrono::DateTime<chrono::Utc>, u64)> {
        let at = self.last_load_ms.load(Ordering::Relaxed);
        let at = chrono::DateTime::from_timestamp_millis(at).filter(|_| at >= 0)?;
        Some((at, self.last_load_duration_ms.load(Ordering::Relaxed)))
    }

    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub fn pinned(&self) -> bool {
        self.pinned.load(Ordering::Relaxed)
    }

    pub fn residency(&self) -> Residency {
        if self.resident.load().is_some() {
            Residency::Memory
        } else if self.loading.load(Ordering::Relaxed) {
            Residency::Loading
        } else {
            Residency::Cold
        }
    }

    /// The version and row count answered now: the resident state's, else the newest
    /// manifest's (base plus delta rows: an upper bound until the state is built).
    pub fn version_rows(&self) -> (u64, u64) {
        match self.resident() {
            Some(s) => (s.version, s.rows() as u64),
            None => {
                let manifest = self.manifest();
                (
                    manifest.version,
                    manifest.base_rows() + manifest.delta_rows(),
                )
            }
        }
    }

    pub fn stats(&self) -> CacheEntry {
        let (version, rows) = self.version_rows();
        let bytes = self.resident().map_or(0, |s| s.bytes as u64);
        let last = self.last_access_ms.load(Ordering::Relaxed);
        CacheEntry {
            dataset: self.name.to_string(),
            version,
            rows,
            bytes,
            residency: self.residency().as_str().to_owned(),
            pinned: self.pinned(),
            hits: self.hits.get(),
            misses: self.misses.load(Ordering::Relaxed),
            last_access: (last >= 0)
                .then(|| chrono::DateTime::from_timestamp_millis(last))
                .flatten()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        }
    }
}
