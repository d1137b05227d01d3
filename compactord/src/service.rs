//! Running compactions: at most one per dataset at a time in this process, each recorded in
//! the history and followed by a notification to queryd when it committed, and by the write
//! of the dataset's Delta log when it has one ([`crate::mirror`]).
//!
//! Manual runs wait for a running compaction of their dataset to finish and then run (usually
//! as a no-op); scheduled and threshold runs skip a dataset that is busy. A no-op run is
//! answered to its caller but recorded only when it was manual, so a frequent schedule over
//! idle datasets does not push real runs out of the history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use object_store::ObjectStore;
use strata_compactord_api::{CompactionRun, RunOutcome, Trigger};
use strata_daemon::config::Config;
use strata_shared::commit::Table;
use strata_shared::layout::DatasetName;

use crate::compact::{self, CompactError, CompactOptions, CompactOutcome, CompactReport};
use crate::gc::GcSettings;
use crate::history::History;
use crate::metrics::Metrics;
use strata_queryd_api::internal::Notifier;

/// Why a requested run did not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The request named no existing dataset (or the store failed before the run).
    #[error(transparent)]
    Table(#[from] strata_shared::Error),
    #[error("the compaction task of dataset {dataset} stopped before finishing: {reason}")]
    TaskFailed {
        dataset: DatasetName,
        reason: String,
    },
}

/// The compaction service; cheap to clone (every clone shares locks and history).
#[derive(Clone)]
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    options: CompactOptions,
    pub(crate) gc: GcSettings,
    locks: Arc<Mutex<HashMap<DatasetName, Arc<tokio::sync::Mutex<()>>>>>,
    history: History,
    notifier: Notifier,
    /// What `GET /metrics` answers.
    pub metrics: Arc<Metrics>,
    /// The base files each dataset's Delta log is known to hold ([`crate::mirror`]).
    pub(crate) delta_log_bases: Arc<Mutex<HashMap<DatasetName, Vec<String>>>>,
}

impl Compactor {
    pub fn new(store: Arc<dyn ObjectStore>, options: CompactOptions, notifier: Notifier) -> Self {
        Self {
            store,
            options,
            gc: GcSettings::default(),
            locks: Arc::default(),
            history: History::default(),
            notifier,
            metrics: Arc::default(),
            delta_log_bases: Arc::default(),
        }
    }

    pub fn from_config(config: &Config, store: Arc<dyn ObjectStore>) -> Self {
        let options = CompactOptions {
            target_file_bytes: config.compactord.target_file_bytes,
            batch_rows: config.compactord.batch_rows,
        };
        let mut this = Self::new(store, options, Notifier::from_config(config));
        this.gc = GcSettings::from_config(config);
        this
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Compacts `dataset` now, after any running compaction of it, and answers the run.
    ///
    /// The run is a task of its own: it finishes (and is recorded) even if the caller goes away.
    pub async fn run(&self, dataset: &str, trigger: Trigger) -> Result<CompactionRun, RunError> {
        let name = DatasetName::new(dataset)?;
        // An unknown (or dropped) dataset is an error, not a run.
        Table::new(self.store.clone(), name.clone())
            .load_latest()
            .await?;
        let this = self.clone();
        let task_name = name.clone();
        let task = tokio::spawn(async move {
            let lock = this.lock_of(&task_name);
            let _running = lock.lock().await;
            this.execute(&task_name, trigger).await
        });
        task.await.map_err(|e| RunError::TaskFailed {
            dataset: name,
            reason: e.to_string(),
        })
    }

    /// Compacts `dataset` unless a compaction of it is running here (then `None`).
    pub async fn run_if_idle(
        &self,
        dataset: &DatasetName,
        trigger: Trigger,
    ) -> Option<CompactionRun> {
        let lock = self.lock_of(dataset);
        let Ok(_running) = lock.try_lock() else {
            tracing::debug!(%dataset, ?trigger, "compaction already running; skipped");
            return None;
        };
        Some(self.execute(dataset, trigger).await)
    }

    pub(crate) fn lock_of(&self, dataset: &DatasetName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(dataset.clone()).or_default().clone()
    }

    /// One run, start to finish; the caller holds the dataset's lock.
    async fn execute(&self, dataset: &DatasetName, trigger: Trigger) -> CompactionRun {
        let id = uuid::Uuid::now_v7().to_string();
        let started_at = Utc::now();
        let table = Table::new(self.store.clone(), dataset.clone());
        let result = compact::compact(&table, &self.options).await;
        let mut run = to_run(id, dataset, trigger, started_at, result);
        match run.outcome {
            RunOutcome::Committed => {
                tracing::info!(%dataset, ?trigger, version = ?run.version, deltas = run.deltas_merged,
                    rows = run.rows_out, bytes = run.bytes_written, "compaction committed");
                if let Some(version) = run.version {
                    self.notifier.notify(dataset.as_str(), version);
                }
            }
            RunOutcome::Noop => tracing::debug!(%dataset, ?trigger, "nothing to compact"),
            RunOutcome::Fenced | RunOutcome::Failed => {
                tracing::warn!(%dataset, ?trigger, outcome = ?run.outcome, error = ?run.error,
                    "compaction did not commit");
            }
        }
        // A new base is a new Delta snapshot; a manual run also repairs a log that lags.
        if run.outcome == RunOutcome::Committed || trigger == Trigger::Manual {
            run.delta_log_error = self
                .sync_delta_log(dataset)
                .await
                .err()
                .map(|e| e.to_string());
        }
        self.metrics.run(&run);
        if run.outcome != RunOutcome::Noop || trigger == Trigger::Manual {
            self.history.record(run.clone());
        }
        run
    }
}

fn to_run(
    id: String,
    dataset: &DatasetName,
    trigger: Trigger,
    started_at: chrono::DateTime<Utc>,
    result: Result<CompactReport, CompactError>,
) -> CompactionRun {
    let mut run = CompactionRun {
        id,
        dataset: dataset.to_string(),
        trigger,
        started_at,
        finished_at: Utc::now(),
        deltas_merged: 0,
        rows_in: 0,
        rows_out: 0,
        bytes_written: 0,
        outcome: RunOutcome::Failed,
        error: None,
        version: None,
        delta_log_error: None,
    };
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            run.error = Some(e.to_string());
            return run;
        }
    };
    let stats = &report.stats;
    run.deltas_merged = stats.deltas_merged;
    run.rows_in = stats.rows_in;
    run.rows_out = stats.rows_out;
    run.bytes_written = stats.bytes_written;
    match report.outcome {
        CompactOutcome::Committed { version } => {
            run.outcome = RunOutcome::Committed;
            run.version = Some(version);
        }
        CompactOutcome::Noop => run.outcome = RunOutcome::Noop,
        CompactOutcome::Fenced { epoch, current } => {
            run.outcome = RunOutcome::Fenced;
            run.error = Some(format!(
                "fenced: this run held compactor epoch {epoch}, a newer compactor set {current}"
            ));
        }
        CompactOutcome::Aborted { reason } => {
            run.outcome = RunOutcome::Failed;
            run.error = Some(format!("aborted: {reason}"));
        }
    }
    run
}
