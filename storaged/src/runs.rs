//! The run history of imports, uploads and delta group commits (`GET /api/v1/runs`): the
//! newest [`CAPACITY`] runs, in memory (a restart starts it empty, as compactord's).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use strata_storaged_api::runs::{Run, RunKind, RunOutcome, RunsQuery};

/// Runs kept.
const CAPACITY: usize = 1_000;

#[derive(Clone, Default)]
pub struct RunLog(Arc<Mutex<VecDeque<Run>>>);

impl RunLog {
    /// Records a run that started at `started_at` and ended now: committed `version` with
    /// `rows` and `bytes`, or failed with `error`.
    pub fn record(&self, dataset: &str, kind: RunKind, started_at: DateTime<Utc>, ended: Ended) {
        let (outcome, rows, bytes, requests, version, error) = match ended {
            Ended::Committed {
                version,
                rows,
                bytes,
                requests,
            } => (
                RunOutcome::Committed,
                rows,
                bytes,
                requests,
                Some(version),
                None,
            ),
            Ended::Failed { requests, error } => {
                (RunOutcome::Failed, 0, 0, requests, None, Some(error))
            }
        };
        let run = Run {
            id: uuid::Uuid::now_v7().to_string(),
            dataset: dataset.to_owned(),
            kind,
            started_at,
            finished_at: Utc::now(),
            rows,
            bytes,
            requests,
            outcome,
            error,
            version,
        };
        let mut runs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if runs.len() == CAPACITY {
            runs.pop_back();
        }
        runs.push_front(run);
    }

    /// The runs `query` selects, newest first.
    pub fn list(&self, query: &RunsQuery) -> Vec<Run> {
        let runs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        runs.iter()
            .filter(|r| query.matches(r))
            .take(query.limit())
            .cloned()
            .collect()
    }
}

/// How a run ended.
pub enum Ended {
    Committed {
        version: u64,
        rows: u64,
        bytes: u64,
        requests: u64,
    },
    Failed {
        requests: u64,
        error: String,
    },
}
