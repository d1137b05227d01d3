//! storaged's Prometheus metrics at `GET /metrics`: requests by route (the daemon-wide
//! [`HttpMetrics`]), the deltas it ingests and commits, and the datasets it imports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_daemon::metrics::{Histogram, HttpMetrics, write_counters};

/// Upper bounds (seconds) of the group-commit histogram buckets.
const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    pub http: Arc<HttpMetrics>,
    deltas_committed: AtomicU64,
    deltas_refused: AtomicU64,
    rows_upserted: AtomicU64,
    rows_deleted: AtomicU64,
    versions_committed: AtomicU64,
    regroups: AtomicU64,
    commits: Mutex<Histogram>,
    imports: AtomicU64,
    import_failures: AtomicU64,
    rows_imported: AtomicU64,
}

impl Metrics {
    /// A delta request answered with its version (also a retry answered from its record).
    pub fn delta_committed(&self, upserts: u64, deletes: u64) {
        self.deltas_committed.fetch_add(1, Ordering::Relaxed);
        self.rows_upserted.fetch_add(upserts, Ordering::Relaxed);
        self.rows_deleted.fetch_add(deletes, Ordering::Relaxed);
    }

    /// A delta request refused or failed.
    pub fn delta_refused(&self) {
        self.deltas_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// One group commit: its duration (writing the delta file and committing the manifest)
    /// and whether it committed a version.
    pub fn group_commit(&self, elapsed: Duration, committed: bool) {
        if committed {
            self.versions_committed.fetch_add(1, Ordering::Relaxed);
        }
        self.commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&COMMIT_BUCKETS, elapsed.as_secs_f64());
    }

    /// A group commit found some of its members committed by another and regrouped (a
    /// conflict resolved by retrying).
    pub fn regroup(&self) {
        self.regroups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn import(&self, rows: Option<u64>) {
        match rows {
            Some(rows) => {
                self.imports.fetch_add(1, Ordering::Relaxed);
                self.rows_imported.fetch_add(rows, Ordering::Relaxed);
            }
            None => {
                self.import_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.http.render(&mut out);
        write_counters(
            &mut out,
            &[
                (
                    "strata_deltas_committed_total",
                    "Delta requests answered with their committed version.",
                    &self.deltas_committed,
                ),
                (
                    "strata_deltas_refused_total",
                    "Delta requests refused or failed.",
                    &self.deltas_refused,
                ),
                (
                    "strata_delta_rows_upserted_total",
                    "Rows upserted by committed delta requests.",
                    &self.rows_upserted,
                ),
                (
                    "strata_delta_rows_deleted_total",
                    "Rows deleted by committed delta requests.",
                    &self.rows_deleted,
                ),
                (
                    "strata_ingest_versions_total",
                    "Versions committed by delta group commits.",
                    &self.versions_committed,
                ),
                (
                    "strata_ingest_regroups_total",
                    "Group commits that lost members to another commit and retried (conflicts).",
                    &self.regroups,
                ),
                (
                    "strata_imports_total",
                    "Datasets created (imports and uploads).",
                    &self.imports,
                ),
                (
                    "strata_import_failures_total",
                    "Dataset creations that failed or were refused.",
                    &self.import_failures,
                ),
                (
                    "strata_rows_imported_total",
                    "Rows of the datasets created.",
                    &self.rows_imported,
                ),
            ],
        );
        out.push_str(
            "# HELP strata_ingest_commit_duration_seconds Group commits: the delta file written and the manifest committed.\n",
        );
        out.push_str("# TYPE strata_ingest_commit_duration_seconds histogram\n");
        self.commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(
                &mut out,
                "strata_ingest_commit_duration_seconds",
                "",
                &COMMIT_BUCKETS,
            );
        out
    }
}
