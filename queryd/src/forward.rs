//! Calls queryd forwards to the daemons that own them: delta bodies to storaged (which
//! validates and commits), compactions to compactord. queryd keeps no write state of its own.

use bytes::Bytes;
use strata_compactord_api::{CompactionRun, CompactordClient};
use strata_daemon::config::Config;
use strata_storaged_api::catalog::{
    CreateDatasetRequest, DatasetInfo, DroppedDataset, UploadQuery,
};
use strata_storaged_api::runs::{Run, RunKind, RunsQuery};
use strata_storaged_api::{ClientError, DeltaClient, DeltaCommitted, StoragedClient};

use crate::error::QueryError;

#[derive(Clone)]
pub struct Forwarder {
    /// `None` without an internal token: this queryd cannot reach the other daemons' internal
    /// routes.
    client: Option<DeltaClient>,
    compactor: Option<CompactordClient>,
    storaged_url: String,
}

const NO_TOKEN: &str =
    "this queryd has no internal token, so it cannot forward to storaged or compactord";

impl Forwarder {
    pub fn new(config: &Config) -> Self {
        let token = config
            .auth
            .internal_token
            .as_deref()
            .filter(|t| !t.is_empty());
        Self {
            client: token.map(|t| DeltaClient::new(&config.storaged.url(), t)),
            compactor: token.map(|t| CompactordClient::new(&config.compactord.url(), t)),
            storaged_url: config.storaged.url(),
        }
    }

    /// Compacts `dataset` now; the finished run (whatever its outcome).
    pub async fn compact(&self, dataset: &str) -> Result<CompactionRun, QueryError> {
        let compactor = self
            .compactor
            .as_ref()
            .ok_or_else(|| QueryError::Unavailable(NO_TOKEN.into()))?;
        compactor.compact(dataset).await.map_err(compactord_error)
    }

    /// `dataset`'s compaction runs, newest first.
    pub async fn compactions(&self, dataset: &str) -> Result<Vec<CompactionRun>, QueryError> {
        let compactor = self
            .compactor
            .as_ref()
            .ok_or_else(|| QueryError::Unavailable(NO_TOKEN.into()))?;
        compactor
            .runs(Some(dataset))
            .await
            .map_err(compactord_error)
    }

    /// Creates a dataset in storaged's catalog, with the admin token the caller presented
    /// here (storaged checks it again: the catalog is storaged's).
    pub async fn create(
        &self,
        admin_token: &str,
        create: Create,
    ) -> Result<DatasetInfo, QueryError> {
        let catalog = StoragedClient::new(&self.storaged_url, Some(admin_token));
        let answer = match create {
            Create::FromSource(request) => catalog.create_dataset(&request).await,
            Create::Upload {
                name,
                query,
                content_type,
                body,
            } => {
                catalog
                    .upload_dataset_with(&name, &query, &content_type, body)
                    .await
            }
        };
        answer.map_err(storaged_error)
    }

    /// Drops a dataset in storaged's catalog, with the caller's admin token (as
    /// [`Self::create`]).
    pub async fn drop_dataset(
        &self,
        admin_token: &str,
        name: &str,
    ) -> Result<DroppedDataset, QueryError> {
        StoragedClient::new(&self.storaged_url, Some(admin_token))
            .drop_dataset(name)
            .await
            .map_err(storaged_error)
    }

    /// The runs `query` selects, newest first: storaged's imports, uploads and delta commits
    /// (with the caller's admin token, as [`Self::create`]) and compactord's compactions, in
    /// one shape.
    pub async fn runs(&self, admin_token: &str, query: &RunsQuery) -> Result<Vec<Run>, QueryError> {
        let mut runs = Vec::new();
        if query.kind != Some(RunKind::Compaction) {
            let catalog = StoragedClient::new(&self.storaged_url, Some(admin_token));
            runs = catalog.runs(query).await.map_err(storaged_error)?.runs;
        }
        if query.kind.is_none_or(|k| k == RunKind::Compaction) {
            let compactor = self
                .compactor
                .as_ref()
                .ok_or_else(|| QueryError::Unavailable(NO_TOKEN.into()))?;
            let compactions = compactor
                .runs(query.dataset.as_deref())
                .await
                .map_err(compactord_error)?;
            runs.extend(compactions.into_iter().map(compaction_run));
        }
        runs.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        runs.truncate(query.limit());
        Ok(runs)
    }

    pub async fn post(
        &self,
        dataset: &str,
        content_type: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<DeltaCommitted, QueryError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| QueryError::Unavailable(NO_TOKEN.into()))?;
        client
            .post_deltas(dataset, content_type, body, idempotency_key)
            .await
            .map_err(storaged_error)
    }
}

/// What a dataset is created from.
pub enum Create {
    /// A file, directory, glob or `s3://` URL that storaged reads.
    FromSource(CreateDatasetRequest),
    /// A Parquet file or an Arrow IPC stream, streamed through to storaged.
    Upload {
        name: String,
        /// The primary key and the other settings of the upload, as storaged takes them.
        query: UploadQuery,
        content_type: String,
        body: reqwest::Body,
    },
}

/// A refusal keeps the other daemon's status and kind; not reaching it is a passing
/// condition.
fn upstream_error(daemon: &str, e: ClientError) -> QueryError {
    match e {
        ClientError::Status {
            status,
            kind,
            message,
            ..
        } => QueryError::Upstream {
            status,
            kind,
            message,
        },
        other => QueryError::Unavailable(format!("{daemon}: {other}")),
    }
}

/// A compaction run in the shape of the run history.
fn compaction_run(run: CompactionRun) -> Run {
    Run {
        id: run.id,
        dataset: run.dataset,
        kind: RunKind::Compaction,
        started_at: run.started_at,
        finished_at: run.finished_at,
        rows: run.rows_out,
        bytes: run.bytes_written,
        requests: 1,
        outcome: run.outcome,
        error: run.error,
        version: run.version,
    }
}

fn storaged_error(e: ClientError) -> QueryError {
    upstream_error("storaged", e)
}

fn compactord_error(e: ClientError) -> QueryError {
    upstream_error("compactord", e)
}
