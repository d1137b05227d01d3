//! The catalog API on storaged (admin token, `X-Admin-Token`):
//!
//! | method | route | answer |
//! |---|---|---|
//! | GET | `/api/v1/datasets` | [`DatasetList`]: datasets, and imports running ([`ImportInfo`]) |
//! | POST | `/api/v1/datasets` | [`CreateDatasetRequest`] → 201 [`DatasetInfo`] (409 if it exists) |
//! | POST | `/api/v1/datasets/{name}/upload?primary_key=a,b[&delta_mirror=true]` | a Parquet file, an Arrow IPC stream, CSV (`text/csv`) or NDJSON as the body, of any size up to `storaged.max_upload_bytes` (spooled to disk, not memory) → 201 [`DatasetInfo`] (409 if it exists, 413 if too large) |
//! | GET | `/api/v1/datasets/{name}` | [`DatasetInfo`] of the latest version |
//! | DELETE | `/api/v1/datasets/{name}` | drops it → 200 [`DroppedDataset`] (404 if absent) |
//! | GET | `/api/v1/datasets/{name}/manifests` | [`ManifestVersions`] |
//! | GET | `/api/v1/datasets/{name}/manifests/{version\|latest}` | the manifest JSON |

use serde::{Deserialize, Serialize};
use strata_daemon::auth::ADMIN_TOKEN_HEADER;
use strata_daemon::config::SourceFormat;
use strata_shared::manifest::{IndexHint, IndexPolicy, Manifest};

use crate::{ClientError, send_json};

pub const DATASETS_ROUTE: &str = "/api/v1/datasets";
pub const UPLOAD_ROUTE: &str = "/api/v1/datasets/{name}/upload";

/// The query of an upload: the primary key as comma-separated column names (none: a table
/// without a key, which takes no deltas), and whether to keep a Delta Lake log beside it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    #[serde(default)]
    pub primary_key: Option<String>,
    /// `delta_mirror=true`: see [`CreateDatasetRequest::delta_mirror`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_mirror: Option<bool>,
    /// `index=auto|none|list`: see [`CreateDatasetRequest::index`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexPolicy>,
    /// `index_columns=a,b`: the columns of `index=list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_columns: Option<String>,
}

impl UploadQuery {
    pub fn new(primary_key: &[String]) -> Self {
        Self {
            primary_key: (!primary_key.is_empty()).then(|| primary_key.join(",")),
            delta_mirror: None,
            index: None,
            index_columns: None,
        }
    }

    /// The same query, asking for a Delta Lake log when `on`.
    pub fn with_delta_mirror(mut self, on: bool) -> Self {
        self.delta_mirror = on.then_some(true);
        self
    }

    /// The index policy asked for, if any.
    pub fn index_hint(&self) -> Option<IndexHint> {
        index_hint(self.index, split_columns(self.index_columns.as_deref()))
    }

    pub fn delta_mirror(&self) -> bool {
        self.delta_mirror.unwrap_or(false)
    }

    /// The key columns, in order.
    pub fn primary_key(&self) -> Vec<String> {
        split_columns(self.primary_key.as_deref())
    }
}

/// Comma-separated column names, trimmed, empty ones dropped.
fn split_columns(text: Option<&str>) -> Vec<String> {
    text.iter()
        .flat_map(|k| k.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "events", "source": "events/*.parquet", "primary_key": ["id"]}))]
pub struct CreateDatasetRequest {
    pub name: String,
    /// A file, directory or glob: a path on storaged's machine or an `s3://` URL. Parquet,
    /// CSV with a header line, NDJSON, Arrow IPC streams, or a Delta Lake table's directory;
    /// `k=v` directories below it (Hive partitions) become columns (README, "Creating a
    /// dataset").
    pub source: String,
    /// `auto` (the default) tells the format by the source: `_delta_log/` makes a Delta
    /// table, otherwise the files' extensions.
    #[serde(default)]
    pub format: SourceFormat,
    /// The columns of a CSV or NDJSON source, in order, instead of inferring them from its
    /// first 10 000 rows. Refused for the other formats (their files carry a schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<SourceColumn>>,
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Keep a Delta Lake transaction log beside the table (`datasets/{name}/_delta_log/`),
    /// describing the table as of each compaction (README, "Delta Lake view"). A table with a
    /// column Delta Lake cannot hold is refused (400 naming the column).
    #[serde(default)]
    pub delta_mirror: bool,
    /// Which columns queryd indexes: `auto` (low-cardinality columns, the default), `none`,
    /// or `list` (exactly `index_columns`); as `[[datasets]]` in the config says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "list")]
    pub index: Option<IndexPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index_columns: Vec<String>,
}

impl CreateDatasetRequest {
    /// The index policy asked for, if any (`index_columns` alone means `list`).
    pub fn index_hint(&self) -> Option<IndexHint> {
        index_hint(self.index, self.index_columns.clone())
    }
}

fn index_hint(policy: Option<IndexPolicy>, columns: Vec<String>) -> Option<IndexHint> {
    match (policy, columns.is_empty()) {
        (None, true) => None,
        (policy, _) => Some(IndexHint {
            policy: policy.unwrap_or(IndexPolicy::List),
            columns,
        }),
    }
}

/// A column of a CSV or NDJSON source given explicitly. `type` is one of `boolean`, `int32`,
/// `int64`, `float32`, `float64`, `string`, `date` (days, `YYYY-MM-DD`), `timestamp`
/// (microseconds, UTC; RFC 3339 text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default = "nullable_default")]
    pub nullable: bool,
}

fn nullable_default() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
// queryd-api has a `ColumnInfo` of its own (the schema route's).
#[schema(as = StoredColumn)]
pub struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// A summary of one dataset's latest version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetInfo {
    pub name: String,
    pub version: u64,
    pub base_rows: u64,
    /// Rows held in delta files (upserts and deletes), not yet compacted.
    pub delta_rows: u64,
    pub base_files: usize,
    pub deltas: usize,
    pub bytes: u64,
    pub primary_key: Vec<String>,
    pub columns: Vec<ColumnInfo>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The dataset keeps a Delta Lake log beside its files (absent when not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta_mirror: bool,
}

impl From<&Manifest> for DatasetInfo {
    fn from(m: &Manifest) -> Self {
        Self {
            name: m.dataset.to_string(),
            version: m.version,
            base_rows: m.base_rows(),
            delta_rows: m.delta_rows(),
            base_files: m.base_files.len(),
            deltas: m.deltas.len(),
            bytes: m.total_bytes(),
            primary_key: m.primary_key.clone(),
            columns: m
                .schema
                .fields()
                .iter()
                .map(|f| ColumnInfo {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
            updated_at: m.created_at,
            delta_mirror: m.delta_mirror,
        }
    }
}

/// The answer to a drop: the dataset is gone from this version on (the version is its
/// tombstone's). Its files stay until garbage collection's grace period has passed, so reads
/// already running finish; a new dataset may take the name at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DroppedDataset {
    pub name: String,
    pub version: u64,
    pub dropped_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DatasetList {
    pub datasets: Vec<DatasetInfo>,
    /// Datasets being created: not datasets yet (no version is committed), listed so a long
    /// import can be followed. Absent when none is running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub importing: Vec<ImportInfo>,
}

/// A dataset creation in progress (`GET /api/v1/datasets`, `importing`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportInfo {
    pub name: String,
    /// Always `importing`: the entry is not a dataset yet.
    pub state: ImportState,
    pub phase: ImportPhase,
    /// Rows read from the source (or the upload) and checked so far.
    pub rows_read: u64,
    /// Rows written to base files so far.
    pub rows_written: u64,
    /// Sorted runs spilled to local disk so far (0 while the source fits the import memory).
    pub runs_spilled: u64,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    Importing,
}

/// Where an import is: `queued` (another import runs; one runs at a time), `reading` (the
/// source, sorting and spilling a run each time the import memory fills), `sorting` (the last
/// run; merging runs in groups first when there are too many to merge at once), `writing`
/// (merging the sorted runs into base files; version 0 is committed right after).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportPhase {
    Queued,
    Reading,
    Sorting,
    Writing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestVersions {
    pub dataset: String,
    /// Retained versions, ascending.
    pub versions: Vec<u64>,
    pub latest: u64,
}

/// Typed client of storaged's catalog API.
#[derive(Clone, Debug)]
pub struct StoragedClient {
    base_url: String,
    admin_token: Option<String>,
    http: reqwest::Client,
}

impl StoragedClient {
    pub fn new(base_url: &str, admin_token: Option<&str>) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            admin_token: admin_token.map(str::to_owned),
            http: reqwest::Client::new(),
        }
    }

    fn request(&self, method: reqwest::Method, route: &str) -> reqwest::RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{route}", self.base_url));
        match &self.admin_token {
            Some(token) => builder.header(ADMIN_TOKEN_HEADER, token),
            None => builder,
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        send_json(builder, &self.base_url).await
    }

    pub async fn create_dataset(
        &self,
        request: &CreateDatasetRequest,
    ) -> Result<DatasetInfo, ClientError> {
        self.call(
            self.request(reqwest::Method::POST, DATASETS_ROUTE)
                .json(request),
        )
        .await
    }

    /// Creates `name` from `body`, a Parquet file or an Arrow IPC stream (`content_type`
    /// says which), streamed to storaged.
    pub async fn upload_dataset(
        &self,
        name: &str,
        primary_key: &[String],
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<DatasetInfo, ClientError> {
        let query = UploadQuery::new(primary_key);
        self.upload_dataset_with(name, &query, content_type, body)
            .await
    }

    /// As [`Self::upload_dataset`], with every setting of the upload's query.
    pub async fn upload_dataset_with(
        &self,
        name: &str,
        query: &UploadQuery,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<DatasetInfo, ClientError> {
        let route = UPLOAD_ROUTE.replace("{name}", name);
        self.call(
            self.request(reqwest::Method::POST, &route)
                .query(query)
                .header(http::header::CONTENT_TYPE, content_type)
                .body(body),
        )
        .await
    }

    /// `GET /api/v1/runs`: imports, uploads and delta commits, newest first.
    pub async fn runs(
        &self,
        query: &crate::runs::RunsQuery,
    ) -> Result<crate::runs::RunsResponse, ClientError> {
        self.call(
            self.request(reqwest::Method::GET, crate::runs::RUNS_ROUTE)
                .query(query),
        )
        .await
    }

    pub async fn list_datasets(&self) -> Result<DatasetList, ClientError> {
        self.call(self.request(reqwest::Method::GET, DATASETS_ROUTE))
            .await
    }

    /// `DELETE /api/v1/datasets/{name}`: drops the dataset.
    pub async fn drop_dataset(&self, name: &str) -> Result<DroppedDataset, ClientError> {
        self.call(self.request(reqwest::Method::DELETE, &format!("{DATASETS_ROUTE}/{name}")))
            .await
    }

    pub async fn dataset(&self, name: &str) -> Result<DatasetInfo, ClientError> {
        self.call(self.request(reqwest::Method::GET, &format!("{DATASETS_ROUTE}/{name}")))
            .await
    }

    pub async fn manifest_versions(&self, name: &str) -> Result<ManifestVersions, ClientError> {
        let route = format!("{DATASETS_ROUTE}/{name}/manifests");
        self.call(self.request(reqwest::Method::GET, &route)).await
    }

    /// A manifest by version, or the latest with `None`.
    pub async fn manifest(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<Manifest, ClientError> {
        let which = version.map_or_else(|| "latest".to_owned(), |v| v.to_string());
        let route = format!("{DATASETS_ROUTE}/{name}/manifests/{which}");
        self.call(self.request(reqwest::Method::GET, &route)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list stays what it was without imports (old clients and servers agree), and an
    /// import shows as `{"name", "state": "importing", "phase", "rows_read", …}`.
    #[test]
    fn the_list_names_imports_only_when_some_run() {
        let idle = serde_json::to_value(DatasetList::default()).unwrap();
        assert_eq!(idle, serde_json::json!({"datasets": []}));
        let old: DatasetList = serde_json::from_str(r#"{"datasets": []}"#).unwrap();
        assert!(old.importing.is_empty());

        let started_at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let busy = DatasetList {
            datasets: Vec::new(),
            importing: vec![ImportInfo {
                name: "events".into(),
                state: ImportState::Importing,
                phase: ImportPhase::Reading,
                rows_read: 1_000,
                rows_written: 0,
                runs_spilled: 2,
                started_at,
            }],
        };
        let json = serde_json::to_value(&busy).unwrap();
        assert_eq!(
            json["importing"][0],
            serde_json::json!({"name": "events", "state": "importing", "phase": "reading",
                "rows_read": 1000, "rows_written": 0, "runs_spilled": 2,
                "started_at": "2023-11-14T22:13:20Z"})
        );
        let back: DatasetList = serde_json::from_value(json).unwrap();
        assert_eq!(back.importing, busy.importing);
    }
}
