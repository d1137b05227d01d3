//! The typed client of queryd's public API, for the tests, the benchmarks' Rust parts and the
//! `strata` command. One method per route; a refused call is a [`ClientError::Status`] with
//! queryd's status, `kind` and message (the shared JSON envelope, read in
//! `strata_daemon::client`), so callers match on kinds instead of parsing bodies.
//!
//! Query bodies are anything that serializes (a [`QueryRequest`] or a `serde_json::Value`):
//! tests send shapes the typed request refuses on purpose. Answers that carry a dataset
//! version in [`DATASET_VERSION_HEADER`] come back as [`Versioned`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use strata_compactord_api::runs::encode;
use strata_compactord_api::{CompactionRun, RunsResponse};
use strata_daemon::auth::ADMIN_TOKEN_HEADER;
use strata_daemon::client::{ClientError, send, send_json};
use strata_storaged_api::catalog::{
    CreateDatasetRequest, DatasetInfo, DroppedDataset, UploadQuery,
};
use strata_storaged_api::{DeltaCommitted, IDEMPOTENCY_KEY_HEADER};

use crate::{
    ARROW_STREAM, CacheEntry, CacheRequest, CacheStats, ChangesQuery, CountResponse,
    DATASET_VERSION_HEADER, DatasetList, DatasetSummary, QueryResponse, ReloadResponse,
    SchemaResponse, VersionsQuery, VersionsResponse,
};

/// An answer and the dataset version it was computed on (absent if queryd sent none).
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub version: Option<u64>,
    pub body: T,
}

/// Calls one queryd. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct QuerydClient {
    base_url: String,
    admin_token: Option<String>,
    http: reqwest::Client,
}

impl QuerydClient {
    /// `url` is `http://host:port`; `admin_token` goes with every call (the admin and write
    /// routes need it, the public ones ignore it).
    pub fn new(url: &str, admin_token: Option<&str>) -> Self {
        Self::with_http(url, admin_token, reqwest::Client::new())
    }

    /// As [`new`](Self::new), over a client the caller built (timeouts, pool settings).
    pub fn with_http(url: &str, admin_token: Option<&str>, http: reqwest::Client) -> Self {
        Self {
            base_url: url.trim_end_matches('/').to_owned(),
            admin_token: admin_token.map(str::to_owned),
            http,
        }
    }

    /// `http://host:port`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// `GET /health`: Ok iff queryd answers 2xx.
    pub async fn health(&self) -> Result<(), ClientError> {
        let url = self.at("/health");
        send(self.authorized(self.http.get(&url)), &url)
            .await
            .map(drop)
    }

    /// `GET /readyz`: `{"status": "ready", "datasets": n}`; a 503 until the catalog is known.
    pub async fn ready(&self) -> Result<Value, ClientError> {
        let url = self.at("/readyz");
        self.json(self.http.get(&url), &url).await
    }

    /// `GET /api/v1/datasets`.
    pub async fn datasets(&self) -> Result<DatasetList, ClientError> {
        let url = self.at("/api/v1/datasets");
        self.json(self.http.get(&url), &url).await
    }

    /// `GET /api/v1/datasets/{name}/schema`.
    pub async fn schema(&self, dataset: &str) -> Result<SchemaResponse, ClientError> {
        let url = self.dataset(dataset, "schema");
        self.json(self.http.get(&url), &url).await
    }

    /// `GET /api/v1/datasets/{name}/status`.
    pub async fn status(&self, dataset: &str) -> Result<DatasetSummary, ClientError> {
        let url = self.dataset(dataset, "status");
        self.json(self.http.get(&url), &url).await
    }

    /// `POST /api/v1/datasets/{name}/query`: one page as JSON rows.
    pub async fn query(
        &self,
        dataset: &str,
        request: &impl Serialize,
    ) -> Result<Versioned<QueryResponse>, ClientError> {
        let url = self.dataset(dataset, "query");
        self.versioned(self.http.post(&url).json(request), &url)
            .await
    }

    /// `POST /api/v1/datasets/{name}/query` answered as an Arrow IPC stream (the bytes).
    pub async fn query_arrow(
        &self,
        dataset: &str,
        request: &impl Serialize,
    ) -> Result<Versioned<Vec<u8>>, ClientError> {
        let url = self.dataset(dataset, "query");
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::ACCEPT, ARROW_STREAM)
            .json(request);
        self.versioned_bytes(request, &url).await
    }

    /// `POST /api/v1/datasets/{name}/query?format=…`: one page in `format` (`json`, `arrow`,
    /// `ndjson`, `csv`, `parquet`), as bytes.
    pub async fn query_as(
        &self,
        dataset: &str,
        request: &impl Serialize,
        format: &str,
    ) -> Result<Versioned<Vec<u8>>, ClientError> {
        let url = self.dataset(dataset, "query");
        let request = self
            .http
            .post(&url)
            .query(&[("format", format)])
            .json(request);
        self.versioned_bytes(request, &url).await
    }

    /// `…/export?format=…[&version=…]`: the whole table (`request` `None`, a GET) or a query's
    /// rows (a POST), as a response whose body the caller streams.
    pub async fn export(
        &self,
        dataset: &str,
        format: &str,
        version: Option<u64>,
        request: Option<&impl Serialize>,
    ) -> Result<Versioned<reqwest::Response>, ClientError> {
        let url = self.dataset(dataset, "export");
        let request = match request {
            None => {
                let mut query = vec![("format", format.to_owned())];
                query.extend(version.map(|v| ("version", v.to_string())));
                self.http.get(&url).query(&query)
            }
            Some(body) => self.http.post(&url).query(&[("format", format)]).json(body),
        };
        let (version, body) = self.send_versioned(request, &url).await?;
        Ok(Versioned { version, body })
    }

    /// `POST /api/v1/datasets/{name}/deltas` with an Arrow IPC stream or a Parquet file with an
    /// `_op` column (`content_type` says which).
    pub async fn post_delta_bytes(
        &self,
        dataset: &str,
        content_type: &str,
        body: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<Versioned<DeltaCommitted>, ClientError> {
        let url = self.dataset(dataset, "deltas");
        let mut request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        self.versioned(request, &url).await
    }

    /// `POST /api/v1/datasets/{name}/count`.
    pub async fn count(
        &self,
        dataset: &str,
        request: &impl Serialize,
    ) -> Result<Versioned<CountResponse>, ClientError> {
        let url = self.dataset(dataset, "count");
        self.versioned(self.http.post(&url).json(request), &url)
            .await
    }

    /// `GET /api/v1/datasets/{name}/versions`: retained versions, newest first.
    pub async fn versions(
        &self,
        dataset: &str,
        query: &VersionsQuery,
    ) -> Result<VersionsResponse, ClientError> {
        let url = self.dataset(dataset, "versions");
        self.json(self.http.get(&url).query(query), &url).await
    }

    /// `GET /api/v1/datasets/{name}/changes`: the change feed's body (NDJSON or Arrow, as
    /// `query.format` says) and the version it reaches (the next call's `since`).
    pub async fn changes(
        &self,
        dataset: &str,
        query: &ChangesQuery,
    ) -> Result<Versioned<Vec<u8>>, ClientError> {
        let url = self.dataset(dataset, "changes");
        self.versioned_bytes(self.http.get(&url).query(query), &url)
            .await
    }

    /// `POST /api/v1/datasets/{name}/deltas` with a JSON body (`{"upserts": [...], "deletes":
    /// [...]}`); answered once this queryd serves the committed version. A retry with the same
    /// `idempotency_key` answers the first commit's version without writing again.
    pub async fn post_deltas(
        &self,
        dataset: &str,
        body: &impl Serialize,
        idempotency_key: Option<&str>,
    ) -> Result<Versioned<DeltaCommitted>, ClientError> {
        let url = self.dataset(dataset, "deltas");
        let mut request = self.http.post(&url).json(body);
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        self.versioned(request, &url).await
    }

    /// `POST /api/v1/datasets` with a JSON body: storaged imports `source`.
    pub async fn create_dataset(
        &self,
        request: &CreateDatasetRequest,
    ) -> Result<DatasetInfo, ClientError> {
        let url = self.at("/api/v1/datasets");
        self.json(self.http.post(&url).json(request), &url).await
    }

    /// `POST /api/v1/datasets?name=…&primary_key=…` with the data itself as the body (a
    /// Parquet file or an Arrow IPC stream, as `content_type` says).
    pub async fn upload_dataset(
        &self,
        name: &str,
        primary_key: &[String],
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<DatasetInfo, ClientError> {
        self.upload_dataset_with(name, &UploadQuery::new(primary_key), content_type, body)
            .await
    }

    /// As [`Self::upload_dataset`], with every option of an upload (`query`).
    pub async fn upload_dataset_with(
        &self,
        name: &str,
        query: &UploadQuery,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<DatasetInfo, ClientError> {
        let url = self.at("/api/v1/datasets");
        let request = self
            .http
            .post(&url)
            .query(&[("name", name)])
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.json(request, &url).await
    }

    /// `DELETE /api/v1/datasets/{name}` (admin): drops the dataset.
    pub async fn drop_dataset(&self, name: &str) -> Result<DroppedDataset, ClientError> {
        let url = self.at(&format!("/api/v1/datasets/{}", encode(name)));
        self.json(self.http.delete(&url), &url).await
    }

    /// `POST /api/v1/datasets/{name}/reload`.
    pub async fn reload(&self, dataset: &str) -> Result<ReloadResponse, ClientError> {
        let url = self.dataset(dataset, "reload");
        self.json(self.http.post(&url).json(&serde_json::json!({})), &url)
            .await
    }

    /// `POST /api/v1/datasets/{name}/compact`: the finished run (forwarded to compactord).
    pub async fn compact(&self, dataset: &str) -> Result<CompactionRun, ClientError> {
        let url = self.dataset(dataset, "compact");
        self.json(self.http.post(&url).json(&serde_json::json!({})), &url)
            .await
    }

    /// `GET /api/v1/datasets/{name}/compactions`: the dataset's runs, newest first.
    pub async fn compactions(&self, dataset: &str) -> Result<RunsResponse, ClientError> {
        let url = self.dataset(dataset, "compactions");
        self.json(self.http.get(&url), &url).await
    }

    /// `GET /api/v1/runs`: imports, uploads, delta commits and compactions, newest first.
    pub async fn runs(
        &self,
        query: &strata_storaged_api::runs::RunsQuery,
    ) -> Result<strata_storaged_api::runs::RunsResponse, ClientError> {
        let url = self.at("/api/v1/runs");
        self.json(self.http.get(&url).query(query), &url).await
    }

    /// `POST /api/v1/cache/pin`.
    pub async fn pin(&self, dataset: &str) -> Result<CacheEntry, ClientError> {
        self.cache("pin", dataset).await
    }

    /// `POST /api/v1/cache/unpin`.
    pub async fn unpin(&self, dataset: &str) -> Result<CacheEntry, ClientError> {
        self.cache("unpin", dataset).await
    }

    /// `POST /api/v1/cache/evict`.
    pub async fn evict(&self, dataset: &str) -> Result<CacheEntry, ClientError> {
        self.cache("evict", dataset).await
    }

    /// `GET /api/v1/cache/stats` of this replica.
    pub async fn cache_stats(&self) -> Result<CacheStats, ClientError> {
        let url = self.at("/api/v1/cache/stats");
        self.json(self.http.get(&url), &url).await
    }

    async fn cache(&self, action: &str, dataset: &str) -> Result<CacheEntry, ClientError> {
        let url = self.at(&format!("/api/v1/cache/{action}"));
        let body = CacheRequest {
            dataset: dataset.to_owned(),
        };
        self.json(self.http.post(&url).json(&body), &url).await
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `/api/v1/datasets/{name}/{tail}`, the name percent-encoded (one path segment whatever
    /// it holds).
    fn dataset(&self, dataset: &str, tail: &str) -> String {
        self.at(&format!("/api/v1/datasets/{}/{tail}", encode(dataset)))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.admin_token {
            Some(token) => request.header(ADMIN_TOKEN_HEADER, token),
            None => request,
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        send_json(self.authorized(request), url).await
    }

    /// Sends; the answer and the dataset version it names.
    async fn send_versioned(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(Option<u64>, reqwest::Response), ClientError> {
        let response = send(self.authorized(request), url).await?;
        Ok((version_of(&response), response))
    }

    /// Sends; the whole body as bytes and the dataset version it names.
    async fn versioned_bytes(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Versioned<Vec<u8>>, ClientError> {
        let (version, response) = self.send_versioned(request, url).await?;
        let body = response.bytes().await.map_err(invalid(url))?;
        Ok(Versioned {
            version,
            body: body.to_vec(),
        })
    }

    async fn versioned<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Versioned<T>, ClientError> {
        let (version, response) = self.send_versioned(request, url).await?;
        let body = response.json().await.map_err(invalid(url))?;
        Ok(Versioned { version, body })
    }
}

/// An answer that does not read as what the route promises.
fn invalid(url: &str) -> impl FnOnce(reqwest::Error) -> ClientError + '_ {
    move |e| ClientError::InvalidResponse {
        url: url.to_owned(),
        message: e.to_string(),
    }
}

fn version_of(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(DATASET_VERSION_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
