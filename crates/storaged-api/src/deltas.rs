//! storaged's delta ingest route (internal token, `X-Internal-Token`): queryd forwards a
//! client's `POST /api/v1/datasets/{name}/deltas` here unchanged.
//!
//! | method | route | body | answer |
//! |---|---|---|---|
//! | POST | `/internal/v1/datasets/{name}/deltas` | JSON `{"upserts":[…],"deletes":[…]}`, an Arrow IPC stream or Parquet with `_op` | [`DeltaCommitted`] |
//!
//! The content type picks the format: `application/json`, [`ARROW_STREAM_CONTENT_TYPE`], or
//! [`PARQUET_CONTENT_TYPE`] (also `application/x-parquet`). An optional
//! [`IDEMPOTENCY_KEY_HEADER`] makes a retry return the original answer without a second write.
//! Errors are the JSON envelope: 400 invalid body (the message names row and column), 401/403
//! token, 404 unknown dataset, 409 dataset without a primary key, 413 body over
//! `storaged.max_delta_bytes`, 415 content type, 503 commit contention (retry with the same key).

use serde::{Deserialize, Serialize};
use strata_daemon::auth::INTERNAL_TOKEN_HEADER;

use crate::{ClientError, send_json};

/// axum 0.8 path syntax; `{name}` is the dataset.
pub const DELTAS_ROUTE: &str = "/internal/v1/datasets/{name}/deltas";
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const JSON_CONTENT_TYPE: &str = "application/json";
pub const ARROW_STREAM_CONTENT_TYPE: &str = "application/vnd.apache.arrow.stream";
pub const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";
/// Also taken for Parquet: the type many tools send.
pub const PARQUET_ALT_CONTENT_TYPE: &str = "application/x-parquet";
/// The longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// A request's idempotency key: absent, or text (visible ASCII). Anything else is a 400 —
/// at queryd as at storaged: a key queryd could not forward must not be dropped, or a retry
/// writes twice.
pub fn idempotency_key(
    headers: &http::HeaderMap,
) -> Result<Option<&str>, strata_daemon::error::ApiError> {
    headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .map(|v| {
            v.to_str().map_err(|_| {
                strata_daemon::error::ApiError::bad_request(format!(
                    "header {IDEMPOTENCY_KEY_HEADER} must be visible ASCII"
                ))
            })
        })
        .transpose()
}

/// The answer to an accepted delta: the version that holds it and what this request wrote.
/// Requests committed together (group commit) share the version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeltaCommitted {
    pub dataset: String,
    pub version: u64,
    pub upserts: u64,
    pub deletes: u64,
}

/// The route of one dataset's deltas. The name is percent-encoded: a client's name must reach
/// storaged whole (and be refused there if invalid), never turn into a query or another path.
pub fn deltas_path(dataset: &str) -> String {
    let mut encoded = String::with_capacity(dataset.len());
    for byte in dataset.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    DELTAS_ROUTE.replace("{name}", &encoded)
}

/// How long a forwarded delta waits to connect to storaged.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a forwarded delta waits for storaged's answer (its commit) to start.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Typed client of storaged's delta route.
#[derive(Clone, Debug)]
pub struct DeltaClient {
    base_url: String,
    token: String,
    http: reqwest::Client,
}

impl DeltaClient {
    /// `storaged_url` is `http://host:port`; `internal_token` storaged's internal token.
    pub fn new(storaged_url: &str, internal_token: &str) -> Self {
        Self {
            base_url: storaged_url.trim_end_matches('/').to_owned(),
            token: internal_token.to_owned(),
            // Without these a partition from storaged holds a write forever: a pooled
            // connection to an address that went away gets no answer and no reset. A timed
            // out write may have been committed; its client retries with the same
            // idempotency key and learns the version.
            http: reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(ANSWER_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// Forwards a client's delta body unchanged. Errors: [`ClientError::Status`] carries
    /// storaged's status, kind and message so queryd can pass them through.
    pub async fn post_deltas(
        &self,
        dataset: &str,
        content_type: &str,
        body: bytes::Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<DeltaCommitted, ClientError> {
        let url = format!("{}{}", self.base_url, deltas_path(dataset));
        let mut request = self
            .http
            .post(&url)
            .header(INTERNAL_TOKEN_HEADER, &self.token)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        send_json(request, &url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names_stay_one_path_segment() {
        assert_eq!(deltas_path("events"), "/internal/v1/datasets/events/deltas");
        assert_eq!(
            deltas_path("a/b?c#d"),
            "/internal/v1/datasets/a%2Fb%3Fc%23d/deltas"
        );
    }
}
