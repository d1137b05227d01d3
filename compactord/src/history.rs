//! The run history: the newest [`MAX_RUNS`] runs in memory (lost on restart; the manifests
//! are the durable record of what was committed).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use strata_compactord_api::CompactionRun;

/// Runs kept; older ones fall out.
pub const MAX_RUNS: usize = 1000;

/// Cheap to clone: every clone shares one history.
#[derive(Clone, Debug, Default)]
pub struct History {
    runs: Arc<Mutex<VecDeque<CompactionRun>>>,
}

impl History {
    pub fn record(&self, run: CompactionRun) {
        // A panic elsewhere while holding the lock leaves a usable deque: take it anyway.
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.push_front(run);
        runs.truncate(MAX_RUNS);
    }

    /// Newest first; only `dataset`'s runs if given.
    pub fn list(&self, dataset: Option<&str>) -> Vec<CompactionRun> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.iter()
            .filter(|r| dataset.is_none_or(|d| r.dataset == d))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use strata_compactord_api::{RunOutcome, Trigger};

    use super::*;

    fn run(id: usize, dataset: &str) -> CompactionRun {
        CompactionRun {
            id: id.to_string(),
            dataset: dataset.into(),
            trigger: Trigger::Manual,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            deltas_merged: 0,
            rows_in: 0,
            rows_out: 0,
            bytes_written: 0,
            outcome: RunOutcome::Noop,
            error: None,
            version: None,
            delta_log_error: None,
        }
    }

    #[test]
    fn newest_first_filtered_and_bounded() {
        let history = History::default();
        for i in 0..MAX_RUNS + 5 {
            history.record(run(i, if i % 2 == 0 { "a" } else { "b" }));
        }
        let all = history.list(None);
        assert_eq!(all.len(), MAX_RUNS);
        assert_eq!(all[0].id, (MAX_RUNS + 4).to_string());
        assert_eq!(all[MAX_RUNS - 1].id, "5", "the oldest fell out");
        let a = history.list(Some("a"));
        assert!(a.iter().all(|r| r.dataset == "a"));
        assert_eq!(a[0].id, (MAX_RUNS + 4).to_string());
        assert!(history.list(Some("c")).is_empty());
    }
}
