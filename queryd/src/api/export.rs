//! `GET /api/v1/datasets/{name}/export` (the whole table at a version) and `POST …/export`
//! (the rows of a query body), as Parquet (the default), Arrow IPC, CSV or NDJSON.
//!
//! A Parquet export is spooled to local disk once ([`crate::spool`]) and answered from the
//! file: with `Content-Length`, an ETag, `Accept-Ranges: bytes`, and single byte ranges
//! (`Range: bytes=a-b`, `a-`, `-n`; 206 with `Content-Range`; 416 past the end; `If-Range`
//! with another ETag gets the whole file). Several ranges in one request get the whole file
//! (RFC 9110 lets a server ignore `Range`). The other formats stream as they are made, without
//! a length. With `[queryd] export_spool_bytes = 0`, Parquet streams too.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use strata_daemon::ErrorCode;
use strata_daemon::error::{ApiError, ApiJson};
use strata_queryd_api::QueryRequest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::query::{format_param, streamed_response};
use super::{format_of, version_header};
use crate::AppState;
use crate::encode::{Encoding, Format};
use crate::error::QueryError;
use crate::spool::{ExportSpool, SpoolKey, Spooled};

/// What an export is answered in: Parquet by default.
const EXPORT_FORMATS: [Format; 4] = [
    Format::Rows(Encoding::Parquet),
    Format::Rows(Encoding::Arrow),
    Format::Rows(Encoding::Csv),
    Format::Rows(Encoding::Ndjson),
];

/// The query of `GET …/export`: the format and the version to export (the latest if none).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportQuery {
    format: Option<String>,
    version: Option<u64>,
    as_of: Option<String>,
}

/// `GET …/export`: the whole table at a version.
pub async fn export(
    State(app): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let request = QueryRequest {
        version: query.version,
        as_of: query.as_of,
        ..Default::default()
    };
    export_rows(&app, &name, &request, query.format.as_deref(), &headers).await
}

/// `POST …/export`: the rows of a query body (columns, predicates, order, limit, version;
/// paging ignored), with `?format=`.
pub async fn export_query(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(params): RawQuery,
    headers: HeaderMap,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<Response, ApiError> {
    let format = format_param(params.as_deref());
    export_rows(&app, &name, &request, format.as_deref(), &headers).await
}

async fn export_rows(
    app: &AppState,
    name: &str,
    request: &QueryRequest,
    format: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Format::Rows(encoding) = format_of(format, headers, &EXPORT_FORMATS)? else {
        return Err(ApiError::bad_request("an export is never a JSON page"));
    };
    // Without a version, an export is of the newest committed version, whichever replica
    // answers: a file taken out holds every write acknowledged before it was asked for.
    let mut request = request.clone();
    if request.version.is_none() && request.as_of.is_none() && request.min_version.is_none() {
        request.min_version = Some(app.service.latest_committed(name).await?);
    }
    let request = &request;
    let mut response = match (&app.spool, encoding) {
        (Some(spool), Encoding::Parquet) => {
            let spooled = spool_export(app, spool, name, request).await?;
            ranged(&spooled, headers).await?
        }
        _ => streamed_response(encoding, app.service.stream(name, request, encoding).await?),
    };
    // The dataset name is a plain identifier (`DatasetName`), safe inside the quotes.
    let disposition = format!("attachment; filename=\"{name}.{}\"", encoding.extension());
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The spooled Parquet export of `request`: found, or written now. A request without
/// `version` is looked up at the version served now (what it reads, if it is at least its
/// `min_version`); one with `as_of` is not looked up. Each is written under the version it
/// read.
async fn spool_export(
    app: &AppState,
    spool: &ExportSpool,
    name: &str,
    request: &QueryRequest,
) -> Result<Arc<Spooled>, QueryError> {
    // The key holds what selects the rows; `min_version` does not (the version does).
    let selecting = QueryRequest {
        min_version: None,
        ..request.clone()
    };
    let text = serde_json::to_string(&selecting)
        .map_err(|e| QueryError::Internal(format!("the request does not serialize: {e}")))?;
    let key = |version| SpoolKey {
        dataset: name.to_owned(),
        version,
        request: text.clone(),
    };
    let known = match (request.version, &request.as_of) {
        (Some(v), _) => Some(v),
        (None, None) => app
            .service
            .cache
            .served_version(name)
            .filter(|v| request.min_version.is_none_or(|min| *v >= min)),
        (None, Some(_)) => None,
    };
    if let Some(found) = known.and_then(|v| spool.get(&key(v))) {
        return Ok(found);
    }
    let streamed = app.service.stream(name, request, Encoding::Parquet).await?;
    spool.write(key(streamed.version), streamed.chunks).await
}

/// `spooled` whole (200) or the byte range `headers` ask for (206), or 416.
async fn ranged(spooled: &Spooled, headers: &HeaderMap) -> Result<Response, QueryError> {
    let len = spooled.len;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        // `If-Range` naming another entity: the whole file (the client's parts are stale).
        Some(_) if if_range_differs(headers, &spooled.etag) => None,
        Some(text) => parse_range(text, len),
        None => None,
    };
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len),
        Some(Range::Satisfiable { start, end }) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(Range::Unsatisfiable) => {
            let message = format!("the range starts past the end of the {len}-byte export");
            let mut response = ApiError::new(ErrorCode::InvalidRange, message).into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let mut file = tokio::fs::File::open(&spooled.path)
        .await
        .map_err(|e| QueryError::Internal(format!("opening the spooled export: {e}")))?;
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(|e| QueryError::Internal(format!("reading the spooled export: {e}")))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(end - start),
        256 * 1024,
    ));
    let mut response = (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(Encoding::Parquet.content_type()),
            ),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
            (header::CONTENT_LENGTH, HeaderValue::from(end - start)),
        ],
        [version_header(spooled.version)],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&spooled.etag) {
        h.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// `If-Range` is present and is not this entity's ETag (a date never matches: the ETag is
/// the validator this server gives).
fn if_range_differs(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_RANGE)
        .is_some_and(|v| v.as_bytes() != etag.as_bytes())
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Bytes `start..end` (end exclusive).
    Satisfiable {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// One byte range of a `len`-byte entity from a `Range` header; `None` where the header is
/// to be ignored (another unit, several ranges, malformed).
fn parse_range(text: &str, len: u64) -> Option<Range> {
    let spec = text.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last `n` bytes.
        let n: u64 = last.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Range::Unsatisfiable);
        }
        Range::Satisfiable {
            start: len.saturating_sub(n),
            end: len,
        }
    } else {
        let start: u64 = first.parse().ok()?;
        let end = match last {
            "" => len,
            last => last.parse::<u64>().ok()?.saturating_add(1).min(len),
        };
        if end <= start && !last.is_empty() && start < len {
            return None; // `a-b` with b < a: malformed, ignored
        }
        if start >= len {
            return Some(Range::Unsatisfiable);
        }
        Range::Satisfiable { start, end }
    };
    Some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        let ok = |start, end| Some(Range::Satisfiable { start, end });
        assert_eq!(parse_range("bytes=0-99", 1000), ok(0, 100));
        assert_eq!(parse_range("bytes=900-", 1000), ok(900, 1000));
        assert_eq!(parse_range("bytes=900-5000", 1000), ok(900, 1000));
        assert_eq!(parse_range("bytes=-8", 1000), ok(992, 1000));
        assert_eq!(parse_range("bytes=-5000", 1000), ok(0, 1000));
        assert_eq!(parse_range("bytes=999-999", 1000), ok(999, 1000));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Range::Unsatisfiable));
        assert_eq!(parse_range("bytes=-0", 1000), Some(Range::Unsatisfiable));
        // Ignored: the whole entity is the answer.
        assert_eq!(parse_range("bytes=5-2", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=x-1", 1000), None);
        assert_eq!(
            parse_range("bytes=18446744073709551615-", 1000),
            Some(Range::Unsatisfiable)
        );
        assert_eq!(
            parse_range("bytes=0-18446744073709551615", 1000),
            ok(0, 1000)
        );
    }
}
