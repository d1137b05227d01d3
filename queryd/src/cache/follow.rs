//! Following new versions: catching a slot up to a version a writer or compactord announced
//! (notifications) or the store has (the poll). A resident state applies the new deltas (or
//! is carried over or rebuilt after a compaction, as [`Memcache::load_locked`] decides); a
//! dataset not in memory just moves its manifest forward for the cold path.

use std::sync::Arc;

use strata_shared::commit::Table;
use strata_shared::layout::DatasetName;

use super::{Loaded, Memcache, Resident, Retry, Slot};
use crate::error::QueryError;

impl Memcache {
    /// The version served now, if the dataset is known.
    pub fn served_version(&self, name: &str) -> Option<u64> {
        let name = DatasetName::new(name).ok()?;
        let slot = self.read_slots().get(&name)?.clone();
        Some(slot.version_rows().0)
    }

    /// Brings `name` to its newest manifest version and returns the version now served: a
    /// resident state applies the new deltas (or rebuilds, after a compaction); a dataset
    /// not in memory just reads the newer manifest on its cold path.
    pub async fn catch_up(self: &Arc<Self>, name: &str) -> Result<u64, QueryError> {
        self.catch_up_to(name, None).await
    }

    /// As [`Self::catch_up`], to version `at` (or the latest if `at` is gone), when the caller
    /// knows the version it waits for.
    pub async fn catch_up_to(
        self: &Arc<Self>,
        name: &str,
        at: Option<u64>,
    ) -> Result<u64, QueryError> {
        let slot = self.slot(name).await?;
        let caught_up = self.catch_up_slot(&slot, at).await;
        if caught_up
            .as_ref()
            .is_err_and(QueryError::is_dataset_not_found)
        {
            self.forget_slot(&slot);
        }
        caught_up
    }

    async fn catch_up_slot(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        at: Option<u64>,
    ) -> Result<u64, QueryError> {
        if slot.resident().is_none() {
            // Cold or loading: the cold path reads the newer manifest at once, and a build in
            // progress catches up to it before it publishes (`publish`).
            slot.advance_manifest(self.manifest(&slot.name, at).await?);
            if slot.resident().is_none() {
                // A write to a dataset that was too big once does not load it again (writes
                // come often); a read of a new version still tries (`source`).
                self.load_unless_loading(slot, Retry::Never);
                return Ok(slot.manifest().version);
            }
            // A build published meanwhile, perhaps just before the advance: bring it up.
        }
        match self
            .load_locked(slot, Resident::Replace, at, self.rebuild)
            .await?
        {
            Loaded::Published(reloaded) => Ok(reloaded.version),
            Loaded::Released(reloaded) => {
                self.load_in_background(slot);
                Ok(reloaded.version)
            }
        }
    }

    /// Starts [`Self::catch_up_to`] `version` in the background, unless `name` is served at
    /// `version` or newer already (a notification of a commit this queryd applied itself).
    pub fn catch_up_in_background(self: &Arc<Self>, name: String, version: u64) {
        if self.served_version(&name).is_some_and(|v| v >= version) {
            return;
        }
        let cache = self.clone();
        self.background.spawn(async move {
            if let Err(e) = cache.catch_up_to(&name, Some(version)).await {
                tracing::warn!(dataset = %name, error = %e, "catching up after a notification failed");
            }
        });
    }

    /// The newest version of each known dataset, caught up where the store has a newer one
    /// (the poll that makes queryd converge without notifications).
    pub async fn poll(self: &Arc<Self>) {
        let slots: Vec<Arc<Slot>> = self.read_slots().values().cloned().collect();
        for slot in slots {
            let known = slot
                .resident()
                .map_or(slot.manifest().version, |s| s.version);
            let table = Table::new(self.store().clone(), slot.name.clone());
            match table.latest_version().await {
                Ok(latest) if latest > known => {
                    if let Err(e) = self.catch_up(slot.name.as_str()).await {
                        tracing::warn!(dataset = %slot.name, error = %e, "catching up failed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(dataset = %slot.name, error = %e, "poll failed"),
            }
        }
    }
}
