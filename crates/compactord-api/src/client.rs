//! Typed client of compactord's internal routes (for queryd and the tests).

use strata_daemon::auth::INTERNAL_TOKEN_HEADER;
use strata_daemon::client::send_json;

use crate::ClientError;
use crate::runs::{
    CompactionRun, GcResponse, INTERNAL_COMPACT_ROUTE, INTERNAL_GC_ROUTE, INTERNAL_RUNS_ROUTE,
    RunsResponse, compact_path, encode,
};

/// Calls compactord with the internal token. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct CompactordClient {
    base_url: String,
    token: String,
    http: reqwest::Client,
}

impl CompactordClient {
    /// `url` is `http://host:port`; `internal_token` the cluster's internal token.
    pub fn new(url: &str, internal_token: &str) -> Self {
        Self {
            base_url: url.trim_end_matches('/').to_owned(),
            token: internal_token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Compacts `dataset` now and answers the finished run (no request timeout: a run takes
    /// as long as the merge does). A run that failed is `Ok` with outcome `failed`;
    /// [`ClientError::Status`] means no run started (unknown dataset, token, …).
    pub async fn compact(&self, dataset: &str) -> Result<CompactionRun, ClientError> {
        let url = format!(
            "{}{}",
            self.base_url,
            compact_path(INTERNAL_COMPACT_ROUTE, dataset)
        );
        let request = self
            .http
            .post(&url)
            .header(INTERNAL_TOKEN_HEADER, &self.token);
        send_json(request, &url).await
    }

    /// The run history, newest first, of one dataset or of all.
    pub async fn runs(&self, dataset: Option<&str>) -> Result<Vec<CompactionRun>, ClientError> {
        let mut url = format!("{}{}", self.base_url, INTERNAL_RUNS_ROUTE);
        if let Some(dataset) = dataset {
            url.push_str("?dataset=");
            url.push_str(&encode(dataset));
        }
        let request = self
            .http
            .get(&url)
            .header(INTERNAL_TOKEN_HEADER, &self.token);
        let answer: RunsResponse = send_json(request, &url).await?;
        Ok(answer.runs)
    }

    /// Garbage collection over every dataset, now.
    pub async fn gc(&self) -> Result<GcResponse, ClientError> {
        let url = format!("{}{}", self.base_url, INTERNAL_GC_ROUTE);
        let request = self
            .http
            .post(&url)
            .header(INTERNAL_TOKEN_HEADER, &self.token);
        send_json(request, &url).await
    }
}
