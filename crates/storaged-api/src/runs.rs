//! The run history of data coming in: every dataset creation (an import of a source, an
//! upload) and every group commit of deltas is a run, as storaged records it
//! (`GET /api/v1/runs`, admin). queryd's `GET /api/v1/runs` adds compactord's compaction runs
//! in the same shape.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// storaged's run history, newest first. Admin token.
pub const RUNS_ROUTE: &str = "/api/v1/runs";

/// What a run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A dataset created from a source storaged read (a file, directory, glob or `s3://`).
    Import,
    /// A dataset created from an uploaded body.
    Upload,
    /// One group commit of delta requests: one delta file, one version.
    Ingest,
    /// A compaction (compactord's; listed by queryd).
    Compaction,
    /// A dataset dropped.
    Drop,
}

/// How a run ended: one type with compactord's runs, which queryd lists beside these.
pub use strata_compactord_api::RunOutcome;

/// One run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    /// UUIDv7, so ids sort by start time.
    pub id: String,
    pub dataset: String,
    pub kind: RunKind,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Rows written: the new dataset's, the delta rows committed, a compaction's new base.
    pub rows: u64,
    /// Bytes written: base files, the delta file.
    pub bytes: u64,
    /// Requests a group commit carried (1 for the others).
    pub requests: u64,
    pub outcome: RunOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The version committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// The query of a run listing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub struct RunsQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<RunKind>,
    /// At most this many, newest first (default 100, at most 1 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl RunsQuery {
    /// Most runs one call lists, and the default.
    pub const MAX_LIMIT: usize = 1_000;
    pub const DEFAULT_LIMIT: usize = 100;

    pub fn limit(&self) -> usize {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }

    pub fn matches(&self, run: &Run) -> bool {
        self.dataset.as_ref().is_none_or(|d| *d == run.dataset)
            && self.kind.is_none_or(|k| k == run.kind)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunsResponse {
    pub runs: Vec<Run>,
}
