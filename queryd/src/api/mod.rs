//! HTTP handlers, one file per API area. Each handler extracts, calls the service, and maps
//! the answer to a response; errors become the JSON envelope via `ApiError`.

pub mod cache;
pub mod datasets;
pub mod deltas;
pub mod query;
pub mod versions;

use axum::http::{HeaderName, HeaderValue};
use strata_queryd_api::DATASET_VERSION_HEADER;

/// The `X-Dataset-Version` header.
pub fn version_header(version: u64) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(DATASET_VERSION_HEADER),
        HeaderValue::from(version),
    )
}
