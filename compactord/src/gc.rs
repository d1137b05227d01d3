//! Garbage collection runs (what each deletes: [`crate::collect`]): every dataset in the store,
//! one at a time, each under the lock its compactions take, on the `gc_schedule` and on demand.
//!
//! A run reads the dataset's compactor epoch first and deletes only if it is unchanged just
//! before deleting: a compaction that started meanwhile fences it. GC itself does not bump
//! the epoch (that would add a manifest version per dataset per run, for nothing: what GC
//! deletes is never referenced again, so two GCs at once do the same deletes).

use std::path::PathBuf;

use strata_compactord_api::{GcDataset, GcResponse};
use strata_daemon::config::Config;
use strata_shared::commit::{self, Table};
use strata_shared::layout::DatasetName;

use crate::Compactor;
use crate::collect::{self, GcPolicy};

#[derive(Clone, Debug, Default)]
pub struct GcSettings {
    pub policy: GcPolicy,
    /// The local store's directory, whose staging files are swept too (`file://` stores).
    pub staging_root: Option<PathBuf>,
}

impl GcSettings {
    pub fn from_config(config: &Config) -> Self {
        let c = &config.compactord;
        Self {
            policy: GcPolicy {
                grace: c.gc_grace,
                keep_manifests: c.gc_keep_manifests,
            },
            staging_root: config
                .store
                .url
                .strip_prefix("file://")
                .map(|rest| config.resolve_path(rest)),
        }
    }
}

impl Compactor {
    /// Collects the garbage of every dataset (a failure on one is reported, the others go on).
    pub async fn collect_garbage(&self) -> GcResponse {
        let mut response = GcResponse::default();
        let names = match commit::list_datasets(self.store().as_ref()).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "gc cannot list datasets");
                return response;
            }
        };
        for name in names {
            response.datasets.push(self.collect_dataset(&name).await);
        }
        if let Some(root) = self.gc.staging_root.clone() {
            let grace = self.gc.policy.grace;
            match tokio::task::spawn_blocking(move || collect::sweep_staging(&root, grace)).await {
                Ok(Ok(n)) => response.staging_files_deleted = n,
                Ok(Err(e)) => tracing::warn!(error = %e, "gc could not sweep staging files"),
                Err(e) => tracing::warn!(error = %e, "gc sweep task failed"),
            }
        }
        let (files, manifests): (u64, u64) = response.datasets.iter().fold((0, 0), |a, d| {
            (a.0 + d.files_deleted, a.1 + d.manifests_deleted)
        });
        tracing::info!(
            files,
            manifests,
            staging = response.staging_files_deleted,
            "gc done"
        );
        response
    }

    async fn collect_dataset(&self, name: &DatasetName) -> GcDataset {
        let lock = self.lock_of(name);
        let _running = lock.lock().await;
        let table = Table::new(self.store().clone(), name.clone());
        let result = async {
            // The head, a drop's tombstone included: a dropped dataset's files are GC's.
            let epoch = table.load_head().await?.compactor_epoch;
            collect::collect(&table, &self.gc.policy, epoch).await
        }
        .await;
        let mut out = GcDataset {
            dataset: name.to_string(),
            ..GcDataset::default()
        };
        self.metrics.gc(result.as_ref().ok());
        match result {
            Ok(report) => {
                out.manifests_deleted = report.manifests_deleted;
                out.files_deleted = report.files_deleted;
                out.bytes_deleted = report.bytes_deleted;
                out.fenced = report.fenced;
            }
            Err(e) => {
                tracing::warn!(dataset = %name, error = %e, "gc failed");
                out.error = Some(e.to_string());
            }
        }
        out
    }
}
