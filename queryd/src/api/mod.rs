//! HTTP handlers, one file per API area. Each handler extracts, calls the service, and maps
//! the answer to a response; errors become the JSON envelope via `ApiError`.

pub mod cache;
pub mod datasets;
pub mod deltas;
pub mod export;
pub mod openapi;
pub mod query;
pub mod versions;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use strata_daemon::ApiError;
use strata_queryd_api::DATASET_VERSION_HEADER;

use crate::encode::Format;

/// The `X-Dataset-Version` header.
pub fn version_header(version: u64) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(DATASET_VERSION_HEADER),
        HeaderValue::from(version),
    )
}

/// The format of an answer ([`Format::negotiate`]): `format` (the `?format=` parameter) wins
/// over the `Accept` headers; `offered` are the route's formats, its default first.
pub fn format_of(
    format: Option<&str>,
    headers: &HeaderMap,
    offered: &[Format],
) -> Result<Format, ApiError> {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let accept = (!accept.is_empty()).then(|| accept.join(","));
    Ok(Format::negotiate(format, accept.as_deref(), offered)?)
}
