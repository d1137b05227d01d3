//! Wire types of queryd's public API: the request and response bodies, shaped as datap-rs
//! 0.8 shapes them so its clients work unchanged. queryd deserializes requests into these
//! types; [`QuerydClient`] (the tests, the benchmarks, the `strata` command) sends them.
//!
//! Unlike datap-rs, unknown fields are refused: a misspelt `predicates` must not silently
//! turn a filtered query into "everything".

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

mod client;
pub mod internal;

pub use client::{QuerydClient, Versioned};
pub use strata_daemon::client::ClientError;

/// Paths and media types.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// Header carrying the dataset version a response was computed on.
pub const DATASET_VERSION_HEADER: &str = "x-dataset-version";

/// Body of `POST /api/v1/datasets/{name}/query`, `…/query/stream` and `…/count`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(example = json!({
    "columns": ["id", "amount"],
    "predicates": [{"col": "amount", "op": "gt", "val": 400}],
    "order_by": [{"col": "amount", "dir": "desc"}],
    "page_size": 10
}))]
pub struct QueryRequest {
    /// Columns to return, in this order; all columns when absent. Ignored with `group_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// ANDed filters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub predicates: Vec<Predicate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Requires `group_by`; without aggregations a grouped query returns `count`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aggregations: Vec<Aggregation>,
    /// Filters on group columns and aggregation aliases; requires `group_by`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub having: Vec<Predicate>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub distinct: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<OrderBy>,
    /// Caps the whole result before paging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// 1-based; 0 means 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    /// Default 1000; clamped to 1..=max page size and echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
    /// Read at least this dataset version (read your writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<u64>,
    /// Read exactly this retained version (time travel); not with `as_of` or `min_version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Read the newest version committed at or before this RFC 3339 time (time travel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

/// `{"col": …, "op": …, "val": …}`; `op` is one of `eq neq gt gte lt lte like ilike in
/// is_null is_not_null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    pub col: String,
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<Value>,
}

impl Predicate {
    pub fn new(col: &str, op: &str, val: impl Into<Option<Value>>) -> Self {
        Self {
            col: col.into(),
            op: op.into(),
            val: val.into(),
        }
    }
}

/// `{"op": "count|sum|avg|min|max", "col": …, "alias": …}`. The default alias is `count`
/// for a count without a column and `{op}_{col}` otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub col: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// `{"col": …, "dir": "asc|desc"}` (default asc; nulls last ascending, first descending).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBy {
    pub col: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// `{"data": [...], "page": p, "page_size": n}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    pub data: Vec<serde_json::Map<String, Value>>,
    pub page: u64,
    pub page_size: u64,
}

/// `{"count": n}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CountResponse {
    pub count: u64,
}

/// `{"datasets": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<DatasetSummary>,
}

/// One dataset in the list and in `…/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetSummary {
    pub name: String,
    pub kind: String,
    /// `published` once readable.
    pub state: String,
    /// `memory`, `loading` or `cold`.
    pub residency: String,
    pub rows: u64,
    pub columns: u64,
    pub version: u64,
    pub pinned: bool,
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub last_refresh_at: Option<String>,
    #[serde(default)]
    pub last_refresh_duration_ms: Option<u64>,
    pub refresh_source: String,
    pub consecutive_failures: u64,
    pub lazy: bool,
    pub depends_on: Vec<String>,
}

/// `GET /api/v1/datasets/{name}/schema`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SchemaResponse {
    pub name: String,
    pub rows: u64,
    pub version: u64,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    /// Columns with an equality index.
    pub indexed: Vec<String>,
    /// The first row, or null for an empty dataset.
    pub sample: Option<serde_json::Map<String, Value>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ColumnInfo {
    pub name: String,
    /// `int`, `float`, `bool`, `utf8`, `temporal` or `other`.
    pub logical: String,
    /// The Arrow type as stored.
    pub sql_type: String,
    pub nullable: bool,
}

/// `POST /api/v1/datasets/{name}/reload`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReloadResponse {
    pub dataset: String,
    pub rows: u64,
    pub elapsed_ms: u64,
    pub version: u64,
}

/// Body of `POST /api/v1/cache/{pin,unpin,evict}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"dataset": "demo"}))]
pub struct CacheRequest {
    pub dataset: String,
}

/// One dataset in `GET /api/v1/cache/stats`, and the answer to pin/unpin/evict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CacheEntry {
    pub dataset: String,
    pub version: u64,
    pub rows: u64,
    pub bytes: u64,
    /// `memory`, `loading` or `cold`.
    pub residency: String,
    pub pinned: bool,
    pub hits: u64,
    pub misses: u64,
    pub last_access: Option<String>,
}

/// Names the queryd that answered (each replica has its own cache).
/// One retained version of a dataset (`GET /api/v1/datasets/{name}/versions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    pub version: u64,
    /// When its manifest was committed (RFC 3339, the committing daemon's clock).
    pub committed_at: String,
    /// What made it: `create`, `ingest`, `compaction` or `epoch` (a compactor fencing older ones).
    pub kind: String,
    /// Live rows at this version, counted exactly.
    pub rows: u64,
    pub base_files: usize,
    /// Delta files not yet compacted at this version.
    pub deltas: usize,
}

/// `GET /api/v1/datasets/{name}/versions`: retained versions, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionsResponse {
    pub dataset: String,
    pub latest: u64,
    /// The oldest retained version: every version from it to `latest` can be read.
    pub oldest: u64,
    pub versions: Vec<VersionInfo>,
}

/// Query of `GET /api/v1/datasets/{name}/versions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub struct VersionsQuery {
    /// Only versions below this one (paging back through history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// At most this many (default 10, at most 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Query of `GET /api/v1/datasets/{name}/changes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangesQuery {
    /// Changes committed after this version (required; a retained version).
    pub since: Option<u64>,
    /// Up to this version (default: the latest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// `ndjson` (default) or `arrow`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Seconds to wait for a change when there is none after `since` yet (long poll; at
    /// most 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
}

/// Media type of newline-delimited JSON.
pub const NDJSON: &str = "application/x-ndjson";

pub const INSTANCE_HEADER: &str = "x-strata-instance";

/// `GET /api/v1/cache/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CacheStats {
    /// The queryd these figures are of: each replica has its own cache.
    #[serde(default)]
    pub instance: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub datasets: Vec<CacheEntry>,
}
