//! The Delta Lake view of datasets with `delta_mirror` (`strata_shared::delta_log`), which
//! compactord keeps up to date: its snapshot is the base files, so only a compaction changes
//! it. The log is written right after each compaction commits and after every manual run (so
//! `POST …/compact` forces it), and the periodic threshold check catches up any dataset whose
//! log lags its manifest (a crash between a commit and its log write, a failed write, or a
//! failed write at creation in storaged).
//!
//! A failed write never fails the compaction: the run is committed and answered as such, with
//! `delta_log_error` saying what failed; the failure is logged and counted, and the next check
//! repairs it.

use std::sync::PoisonError;

use strata_shared::commit::Table;
use strata_shared::delta_log;
use strata_shared::layout::DatasetName;
use strata_shared::manifest::Manifest;

use crate::Compactor;

impl Compactor {
    /// Brings `dataset`'s Delta log up to its newest manifest, when it has `delta_mirror`; the
    /// caller holds the dataset's lock. `Ok` with the log version written, if any; `Err` with
    /// why not (logged and counted here).
    pub(crate) async fn sync_delta_log(
        &self,
        dataset: &DatasetName,
    ) -> Result<Option<u64>, strata_shared::Error> {
        let synced = async {
            let manifest = Table::new(self.store().clone(), dataset.clone())
                .load_latest()
                .await?;
            if !manifest.delta_mirror || self.log_holds_base(&manifest) {
                return Ok(None);
            }
            let written = delta_log::sync(self.store().as_ref(), &manifest).await?;
            self.remember_log_base(&manifest);
            Ok::<_, strata_shared::Error>(written)
        }
        .await;
        synced.inspect_err(|e| {
            let failures = self.metrics.delta_log_failure();
            tracing::warn!(%dataset, error = %e, failures,
                "the Delta log was not written; the next threshold check retries");
        })
    }

    /// The threshold check's catch-up for a dataset whose newest manifest it just read: writes
    /// the log if this process does not know it to hold `manifest`'s base, unless a run of the
    /// dataset is in progress (that run writes it).
    pub(crate) async fn catch_up_delta_log(&self, manifest: &Manifest) {
        if !manifest.delta_mirror || self.log_holds_base(manifest) {
            return;
        }
        let lock = self.lock_of(&manifest.dataset);
        let Ok(_running) = lock.try_lock() else {
            return;
        };
        if let Ok(Some(version)) = self.sync_delta_log(&manifest.dataset).await {
            tracing::info!(dataset = %manifest.dataset, version, "Delta log caught up");
        }
    }

    /// How many Delta log writes failed since this process started.
    pub fn delta_log_failures(&self) -> u64 {
        self.metrics.delta_log_failures()
    }

    /// True when this process wrote or found the log holding exactly `manifest`'s base files:
    /// then nothing needs reading (the log is replayed in full, so the checks stay cheap).
    fn log_holds_base(&self, manifest: &Manifest) -> bool {
        let known = self
            .delta_log_bases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        known.get(&manifest.dataset).is_some_and(|paths| {
            paths
                .iter()
                .map(String::as_str)
                .eq(manifest.base_files.iter().map(|f| f.path.as_str()))
        })
    }

    fn remember_log_base(&self, manifest: &Manifest) {
        let paths = manifest.base_files.iter().map(|f| f.path.clone()).collect();
        self.delta_log_bases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(manifest.dataset.clone(), paths);
    }
}
