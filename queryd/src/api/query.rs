//! `POST /api/v1/datasets/{name}/query`, `…/query/stream`, `…/count`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use strata_daemon::error::{ApiError, ApiJson, OptionalJson};
use strata_queryd_api::{ARROW_STREAM, CountResponse, QueryRequest};

use super::version_header;
use crate::AppState;
use crate::query::Format;

pub async fn query(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(params): RawQuery,
    headers: HeaderMap,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<Response, ApiError> {
    let format = negotiate(params.as_deref(), &headers)?;
    let page = app.service.query(&name, &request, format).await?;
    let content_type = match format {
        Format::Json => "application/json",
        Format::Arrow => ARROW_STREAM,
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            version_header(page.version),
        ],
        page.body,
    )
        .into_response();
    if format == Format::Arrow {
        let h = response.headers_mut();
        h.insert(
            HeaderName::from_static("x-page"),
            HeaderValue::from(page.page),
        );
        h.insert(
            HeaderName::from_static("x-page-size"),
            HeaderValue::from(page.page_size),
        );
    }
    Ok(response)
}

pub async fn stream(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<Response, ApiError> {
    let streamed = app.service.stream(&name, &request).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ARROW_STREAM)),
            version_header(streamed.version),
            (
                HeaderName::from_static("x-query-mode"),
                HeaderValue::from_static("stream"),
            ),
        ],
        Body::from_stream(streamed.chunks),
    )
        .into_response())
}

/// An absent body counts every row (datap-rs does too); a malformed one is a 400.
pub async fn count(
    State(app): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(request): OptionalJson<QueryRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (count, version) = app.service.count(&name, &request).await?;
    Ok(([version_header(version)], Json(CountResponse { count })))
}

/// `?format=arrow|json` wins over `Accept`; Arrow only when asked for.
fn negotiate(params: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
    let format = params.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "format")
            .map(|(_, v)| v.into_owned())
    });
    match format.as_deref() {
        Some("arrow") => return Ok(Format::Arrow),
        Some("json") => return Ok(Format::Json),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown format {other:?} (expected json or arrow)"
            )));
        }
        None => {}
    }
    Ok(if accepts_arrow(headers) {
        Format::Arrow
    } else {
        Format::Json
    })
}

/// Whether `Accept` names the Arrow IPC stream.
pub(super) fn accepts_arrow(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(ARROW_STREAM))
}
