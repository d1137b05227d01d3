//! What starts compactions besides a request: cron schedules and thresholds.
//!
//! - **Schedules** (`tokio-cron-scheduler`; six or seven fields, seconds first, UTC): the global
//!   `compactord.schedule` compacts every dataset in the store that has deltas, except those
//!   with their own `[[datasets]] compact_schedule`, which follow only their own.
//! - **Thresholds**, checked every `compactord.check_interval` (`"0s"`: never) on every dataset
//!   in the store: compact when the delta count reaches `max_deltas`, the deltas' bytes exceed
//!   `max_delta_ratio` × the base's bytes, or the oldest delta is `max_delta_age` old.
//!
//! A dataset that is busy (a compaction of it is running in this process) is skipped until the
//! next tick. Invalid schedules fail the start of compactord. The threshold check also catches
//! up the Delta log of datasets with `delta_mirror` ([`crate::mirror`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use strata_compactord_api::Trigger;
use strata_daemon::config::Config;
use strata_shared::commit::{self, Table};
use strata_shared::layout::DatasetName;
use strata_shared::manifest::Manifest;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::{Compactor, CompactordError};

/// When a dataset's deltas call for a compaction.
#[derive(Clone, Debug)]
pub struct Thresholds {
    pub max_deltas: usize,
    pub max_delta_ratio: f64,
    pub max_delta_age: Duration,
}

impl Thresholds {
    pub fn from_config(config: &Config) -> Self {
        let c = &config.compactord;
        Self {
            max_deltas: c.max_deltas,
            max_delta_ratio: c.max_delta_ratio,
            max_delta_age: c.max_delta_age,
        }
    }

    /// The threshold `manifest` crossed at `now`, if any. A dataset without deltas never does;
    /// one with an empty base crosses the byte ratio with its first delta.
    pub fn crossed(&self, manifest: &Manifest, now: DateTime<Utc>) -> Option<&'static str> {
        let oldest = manifest.deltas.iter().map(|d| d.created_at).min()?;
        let delta_bytes: u64 = manifest.deltas.iter().map(|d| d.bytes).sum();
        let base_bytes: u64 = manifest.base_files.iter().map(|f| f.bytes).sum();
        let age = (now - oldest).to_std().unwrap_or_default();
        if manifest.deltas.len() >= self.max_deltas {
            Some("delta count")
        } else if delta_bytes as f64 > self.max_delta_ratio * base_bytes as f64 {
            Some("delta bytes against base bytes")
        } else if age >= self.max_delta_age {
            Some("oldest delta age")
        } else {
            None
        }
    }
}

/// The running triggers; [`Triggers::stop`] ends them.
pub struct Triggers {
    scheduler: Option<JobScheduler>,
    checker: Option<JoinHandle<()>>,
}

impl Triggers {
    pub async fn start(config: &Config, compactor: Compactor) -> Result<Self, CompactordError> {
        let scheduler = schedules(config, &compactor).await?;
        let interval = config.compactord.check_interval;
        let checker = (!interval.is_zero()).then(|| {
            let thresholds = Thresholds::from_config(config);
            tokio::spawn(check_loop(compactor, thresholds, interval))
        });
        Ok(Self { scheduler, checker })
    }

    /// Stops starting runs. Runs in progress finish on their own tasks (or are cut off with the
    /// process, which leaves only unreferenced files behind).
    pub async fn stop(self) {
        if let Some(checker) = self.checker {
            checker.abort();
        }
        if let Some(mut scheduler) = self.scheduler
            && let Err(e) = scheduler.shutdown().await
        {
            tracing::debug!(error = %e, "cron scheduler did not shut down cleanly");
        }
    }
}

/// Registers every configured schedule; `None` when there is none.
async fn schedules(
    config: &Config,
    compactor: &Compactor,
) -> Result<Option<JobScheduler>, CompactordError> {
    let own: HashSet<DatasetName> = config
        .datasets
        .iter()
        .filter(|d| d.compact_schedule.is_some())
        .filter_map(|d| DatasetName::new(d.name.as_str()).ok())
        .collect();
    let mut jobs = Vec::new();
    if let Some(schedule) = &config.compactord.schedule {
        let (compactor, own) = (compactor.clone(), Arc::new(own));
        let job = Job::new_async(schedule.as_str(), move |_, _| {
            let (compactor, own) = (compactor.clone(), own.clone());
            Box::pin(
                async move { run_all(&compactor, Trigger::Schedule, |n| !own.contains(n)).await },
            )
        })
        .map_err(|source| CompactordError::Schedule {
            schedule: schedule.clone(),
            owner: "compactord.schedule".into(),
            source,
        })?;
        jobs.push(job);
    }
    for dataset in &config.datasets {
        let (Some(schedule), Ok(name)) = (
            &dataset.compact_schedule,
            DatasetName::new(dataset.name.as_str()),
        ) else {
            continue;
        };
        let compactor = compactor.clone();
        let job = Job::new_async(schedule.as_str(), move |_, _| {
            let (compactor, name) = (compactor.clone(), name.clone());
            Box::pin(async move {
                compactor.run_if_idle(&name, Trigger::Schedule).await;
            })
        })
        .map_err(|source| CompactordError::Schedule {
            schedule: schedule.clone(),
            owner: format!("dataset {}", dataset.name),
            source,
        })?;
        jobs.push(job);
    }
    // An empty schedule turns GC off (a config file cannot unset a default).
    if let Some(schedule) = config
        .compactord
        .gc_schedule
        .as_ref()
        .filter(|s| !s.is_empty())
    {
        let compactor = compactor.clone();
        let job = Job::new_async(schedule.as_str(), move |_, _| {
            let compactor = compactor.clone();
            Box::pin(async move {
                compactor.collect_garbage().await;
            })
        })
        .map_err(|source| CompactordError::Schedule {
            schedule: schedule.clone(),
            owner: "compactord.gc_schedule".into(),
            source,
        })?;
        jobs.push(job);
    }
    if jobs.is_empty() {
        return Ok(None);
    }
    let scheduler = JobScheduler::new()
        .await
        .map_err(CompactordError::Scheduler)?;
    for job in jobs {
        scheduler
            .add(job)
            .await
            .map_err(CompactordError::Scheduler)?;
    }
    scheduler
        .start()
        .await
        .map_err(CompactordError::Scheduler)?;
    Ok(Some(scheduler))
}

/// Compacts every dataset in the store that `wanted` selects (one at a time: compaction is
/// heavy, and the machine is shared with queryd).
async fn run_all(compactor: &Compactor, trigger: Trigger, wanted: impl Fn(&DatasetName) -> bool) {
    let names = match commit::list_datasets(compactor.store().as_ref()).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, ?trigger, "cannot list datasets");
            return;
        }
    };
    for name in names.iter().filter(|n| wanted(n)) {
        compactor.run_if_idle(name, trigger).await;
    }
}

async fn check_loop(compactor: Compactor, thresholds: Thresholds, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate: give a starting cluster one interval
    loop {
        ticks.tick().await;
        let names = match commit::list_datasets(compactor.store().as_ref()).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "threshold check cannot list datasets");
                continue;
            }
        };
        for name in names {
            let manifest = match Table::new(compactor.store().clone(), name.clone())
                .load_latest()
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(dataset = %name, error = %e, "threshold check skipped");
                    continue;
                }
            };
            if let Some(reason) = thresholds.crossed(&manifest, Utc::now()) {
                tracing::debug!(dataset = %name, reason, "compaction threshold crossed");
                compactor.run_if_idle(&name, Trigger::Threshold).await;
            }
            // A Delta log that missed a compaction (crash, failed write) is caught up here.
            compactor.catch_up_delta_log(&manifest).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_shared::manifest::{DataFile, DeltaFile};

    use super::*;

    /// A manifest with only the figures the thresholds read.
    fn manifest(base_bytes: u64, deltas: &[(u64, i64)]) -> Manifest {
        let json = serde_json::json!({
            "format_version": 1, "dataset": "t", "version": 1,
            "created_at": "2026-01-01T00:00:00Z", "operation": "ingest",
            "schema": {"fields": [], "metadata": {}}, "primary_key": ["id"],
            "base_files": [], "deltas": [], "base_watermark_seq": 0,
            "compactor_epoch": 0, "recent_txns": []
        });
        let mut m: Manifest = serde_json::from_value(json).unwrap();
        m.base_files.push(DataFile {
            path: "b".into(),
            rows: 1,
            bytes: base_bytes,
            key_min: None,
            key_max: None,
        });
        let now = Utc::now();
        for (i, (bytes, age_secs)) in deltas.iter().enumerate() {
            m.deltas.push(DeltaFile {
                path: format!("d{i}"),
                seq: i as u64 + 1,
                rows: 1,
                bytes: *bytes,
                upserts: 1,
                deletes: 0,
                created_at: now - chrono::Duration::seconds(*age_secs),
            });
        }
        m
    }

    #[test]
    fn thresholds() {
        let t = Thresholds {
            max_deltas: 3,
            max_delta_ratio: 0.1,
            max_delta_age: Duration::from_secs(600),
        };
        let now = Utc::now();
        assert_eq!(t.crossed(&manifest(1000, &[]), now), None);
        assert_eq!(t.crossed(&manifest(1000, &[(10, 0), (10, 0)]), now), None);
        assert_eq!(
            t.crossed(&manifest(1000, &[(10, 0), (10, 0), (10, 0)]), now),
            Some("delta count")
        );
        assert_eq!(
            t.crossed(&manifest(1000, &[(101, 0)]), now),
            Some("delta bytes against base bytes")
        );
        assert_eq!(
            t.crossed(&manifest(1000, &[(1, 601)]), now),
            Some("oldest delta age")
        );
        assert!(t.crossed(&manifest(0, &[(1, 0)]), now).is_some());
    }
}
