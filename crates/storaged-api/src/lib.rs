//! storaged's wire contract: request and response types, and typed clients.
//!
//! - [`objects`]: the internal object API (GET with ranges, HEAD, PUT create/overwrite/update,
//!   DELETE, LIST, COPY), and [`RemoteStore`], an `object_store::ObjectStore` over it, so
//!   queryd and compactord run unchanged on a remote or a direct store.
//! - [`catalog`]: dataset creation and listing, and [`StoragedClient`].
//! - [`deltas`]: the delta ingest route queryd forwards writes to, and [`DeltaClient`].

pub mod catalog;
pub mod deltas;
pub mod objects;
mod remote_store;

pub use catalog::StoragedClient;
pub use deltas::{
    ARROW_STREAM_CONTENT_TYPE, DELTAS_ROUTE, DeltaClient, DeltaCommitted, IDEMPOTENCY_KEY_HEADER,
    PARQUET_CONTENT_TYPE,
};
pub use remote_store::{NoInternalToken, RemoteStore};

/// The error of a typed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{status} from {url}: {message}")]
    Status {
        url: String,
        status: u16,
        kind: Option<String>,
        message: String,
    },
    #[error("invalid response from {url}: {message}")]
    InvalidResponse { url: String, message: String },
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Turns a non-success response into [`ClientError::Status`], reading the JSON envelope.
pub(crate) async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = response.url().to_string();
    let text = response.text().await.unwrap_or_default();
    let body: Option<strata_daemon::error::ErrorBody> = serde_json::from_str(&text).ok();
    Err(ClientError::Status {
        url,
        status: status.as_u16(),
        kind: body.as_ref().and_then(|b| b.kind.clone()),
        message: body.map(|b| b.error).unwrap_or(text),
    })
}
