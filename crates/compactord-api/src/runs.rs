//! Compaction runs: what one run did, and the routes that start runs and list them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// axum 0.8 path syntax; `{name}` is the dataset. Admin token.
pub const COMPACT_ROUTE: &str = "/api/v1/datasets/{name}/compact";
/// The internal twin of [`COMPACT_ROUTE`] (internal token), which queryd forwards to.
pub const INTERNAL_COMPACT_ROUTE: &str = "/internal/v1/datasets/{name}/compact";
/// Run history, newest first; `?dataset=name` filters. Admin token.
pub const RUNS_ROUTE: &str = "/api/v1/compactions";
/// The internal twin of [`RUNS_ROUTE`] (internal token).
pub const INTERNAL_RUNS_ROUTE: &str = "/internal/v1/compactions";

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `POST …/compact`.
    Manual,
    /// A cron schedule (`compactord.schedule` or a dataset's `compact_schedule`).
    Schedule,
    /// A threshold: delta count, delta bytes against base bytes, or oldest delta age.
    Threshold,
}

/// How a run ended (a compaction's, and in storaged's run history an import's, upload's or
/// delta commit's: those are `committed` or `failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// A version was committed (`version`).
    Committed,
    /// There were no deltas; nothing was written.
    Noop,
    /// A newer compactor bumped the epoch during the run; nothing was committed.
    Fenced,
    /// The run failed (`error` says why); nothing was committed.
    Failed,
}

/// One compaction run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompactionRun {
    /// UUIDv7, so ids sort by start time.
    pub id: String,
    pub dataset: String,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Delta files merged into the new base.
    pub deltas_merged: u64,
    /// Base rows read plus delta rows read.
    pub rows_in: u64,
    /// Rows in the new base files.
    pub rows_out: u64,
    /// Bytes of the new base files.
    pub bytes_written: u64,
    pub outcome: RunOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The version the run committed (`committed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why the dataset's Delta Lake log was not brought up to date after the run (a dataset
    /// with `delta_mirror` only). The run's outcome stands; compactord retries the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_log_error: Option<String>,
}

/// Query of the history routes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// Answer of the history routes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
// storaged-api's `RunsResponse` is the run history's.
#[schema(as = CompactionRuns)]
pub struct RunsResponse {
    pub runs: Vec<CompactionRun>,
}

/// The compact route of one dataset under `route` ([`COMPACT_ROUTE`] or
/// [`INTERNAL_COMPACT_ROUTE`]). The name is percent-encoded so it stays one path segment.
pub fn compact_path(route: &str, dataset: &str) -> String {
    route.replace("{name}", &encode(dataset))
}

/// Percent-encodes everything but unreserved characters (for a path segment or query value).
pub fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_serialize_in_the_documented_shape() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let run = CompactionRun {
            id: "r".into(),
            dataset: "events".into(),
            trigger: Trigger::Threshold,
            started_at: at,
            finished_at: at,
            deltas_merged: 2,
            rows_in: 10,
            rows_out: 9,
            bytes_written: 100,
            outcome: RunOutcome::Noop,
            error: None,
            version: None,
            delta_log_error: None,
        };
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["trigger"], "threshold");
        assert_eq!(json["outcome"], "noop");
        assert!(json.get("error").is_none());
        let back: CompactionRun = serde_json::from_value(json).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn dataset_names_stay_one_path_segment() {
        assert_eq!(
            compact_path(INTERNAL_COMPACT_ROUTE, "a/b?c"),
            "/internal/v1/datasets/a%2Fb%3Fc/compact"
        );
        assert_eq!(
            compact_path(COMPACT_ROUTE, "events"),
            "/api/v1/datasets/events/compact"
        );
    }
}

/// On-demand garbage collection (admin token) and its internal twin.
pub const GC_ROUTE: &str = "/api/v1/gc";
pub const INTERNAL_GC_ROUTE: &str = "/internal/v1/gc";

/// What one garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcResponse {
    pub datasets: Vec<GcDataset>,
    /// Staging files of interrupted puts swept from a local store.
    pub staging_files_deleted: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcDataset {
    pub dataset: String,
    pub manifests_deleted: u64,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
    /// A compaction moved the compactor epoch on meanwhile: nothing was deleted.
    pub fenced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
