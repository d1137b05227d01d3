//! compactord's Prometheus metrics at `GET /metrics`: requests by route (the daemon-wide
//! [`HttpMetrics`]), compaction runs, garbage collection, and Delta log writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use strata_compactord_api::{CompactionRun, RunOutcome};
use strata_daemon::metrics::{Histogram, HttpMetrics, write_counters};

use crate::collect::GcReport;

/// Upper bounds (seconds) of the run-duration histogram buckets.
const RUN_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0];
/// Run outcomes, in the order they are rendered.
const OUTCOMES: [RunOutcome; 4] = [
    RunOutcome::Committed,
    RunOutcome::Noop,
    RunOutcome::Fenced,
    RunOutcome::Failed,
];

#[derive(Default)]
pub struct Metrics {
    pub http: Arc<HttpMetrics>,
    /// Runs by outcome, in [`OUTCOMES`] order.
    runs: [AtomicU64; 4],
    run_seconds: Mutex<Histogram>,
    deltas_merged: AtomicU64,
    rows_written: AtomicU64,
    bytes_written: AtomicU64,
    gc_runs: AtomicU64,
    gc_failures: AtomicU64,
    gc_manifests_deleted: AtomicU64,
    gc_files_deleted: AtomicU64,
    gc_bytes_deleted: AtomicU64,
    delta_log_failures: AtomicU64,
}

impl Metrics {
    pub fn run(&self, run: &CompactionRun) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == run.outcome) {
            self.runs[i].fetch_add(1, Ordering::Relaxed);
        }
        let seconds = (run.finished_at - run.started_at)
            .to_std()
            .map_or(0.0, |d| d.as_secs_f64());
        self.run_seconds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&RUN_BUCKETS, seconds);
        if run.outcome == RunOutcome::Committed {
            self.deltas_merged
                .fetch_add(run.deltas_merged, Ordering::Relaxed);
            self.rows_written.fetch_add(run.rows_out, Ordering::Relaxed);
            self.bytes_written
                .fetch_add(run.bytes_written, Ordering::Relaxed);
        }
    }

    /// One dataset's garbage collection: its report, or `None` if it failed.
    pub fn gc(&self, report: Option<&GcReport>) {
        let Some(report) = report else {
            self.gc_failures.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        self.gc_manifests_deleted
            .fetch_add(report.manifests_deleted, Ordering::Relaxed);
        self.gc_files_deleted
            .fetch_add(report.files_deleted, Ordering::Relaxed);
        self.gc_bytes_deleted
            .fetch_add(report.bytes_deleted, Ordering::Relaxed);
    }

    /// A Delta log write failed; returns how many have since the start.
    pub fn delta_log_failure(&self) -> u64 {
        self.delta_log_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn delta_log_failures(&self) -> u64 {
        self.delta_log_failures.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.http.render(&mut out);
        out.push_str("# HELP strata_compaction_runs_total Compaction runs by outcome.\n");
        out.push_str("# TYPE strata_compaction_runs_total counter\n");
        for (outcome, n) in OUTCOMES.iter().zip(&self.runs) {
            let name = serde_json::to_value(outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            out.push_str(&format!(
                "strata_compaction_runs_total{{outcome=\"{name}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP strata_compaction_duration_seconds Compaction run durations.\n");
        out.push_str("# TYPE strata_compaction_duration_seconds histogram\n");
        self.run_seconds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(
                &mut out,
                "strata_compaction_duration_seconds",
                "",
                &RUN_BUCKETS,
            );
        write_counters(
            &mut out,
            &[
                (
                    "strata_compaction_deltas_merged_total",
                    "Delta files merged by committed compactions.",
                    &self.deltas_merged,
                ),
                (
                    "strata_compaction_rows_written_total",
                    "Rows written to new base files by committed compactions.",
                    &self.rows_written,
                ),
                (
                    "strata_compaction_bytes_written_total",
                    "Bytes of new base files written by committed compactions.",
                    &self.bytes_written,
                ),
                (
                    "strata_gc_runs_total",
                    "Garbage collections of one dataset that finished.",
                    &self.gc_runs,
                ),
                (
                    "strata_gc_failures_total",
                    "Garbage collections of one dataset that failed.",
                    &self.gc_failures,
                ),
                (
                    "strata_gc_manifests_deleted_total",
                    "Expired manifests deleted.",
                    &self.gc_manifests_deleted,
                ),
                (
                    "strata_gc_files_deleted_total",
                    "Data files deleted.",
                    &self.gc_files_deleted,
                ),
                (
                    "strata_gc_bytes_deleted_total",
                    "Bytes of data files deleted.",
                    &self.gc_bytes_deleted,
                ),
                (
                    "strata_delta_log_failures_total",
                    "Delta Lake log writes that failed (repaired by the next check).",
                    &self.delta_log_failures,
                ),
            ],
        );
        out
    }
}
