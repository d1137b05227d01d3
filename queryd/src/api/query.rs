//! `POST /api/v1/datasets/{name}/query`, `…/query/stream` and `…/count`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use strata_daemon::error::{ApiError, ApiJson, OptionalJson};
use strata_queryd_api::{CountResponse, QueryRequest};

use super::{format_of, version_header};
use crate::AppState;
use crate::encode::{Encoding, Format};
use crate::query::Streamed;

/// What a page is answered in: datap-rs's JSON envelope by default.
const PAGE_FORMATS: [Format; 5] = [
    Format::Json,
    Format::Rows(Encoding::Arrow),
    Format::Rows(Encoding::Ndjson),
    Format::Rows(Encoding::Csv),
    Format::Rows(Encoding::Parquet),
];

pub async fn query(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(params): RawQuery,
    headers: HeaderMap,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<Response, ApiError> {
    let format = format_of(
        format_param(params.as_deref()).as_deref(),
        &headers,
        &PAGE_FORMATS,
    )?;
    let page = app.service.query(&name, &request, format).await?;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            version_header(page.version),
        ],
        page.body,
    )
        .into_response();
    if format != Format::Json {
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
    let streamed = app.service.stream(&name, &request, Encoding::Arrow).await?;
    let mut response = streamed_response(Encoding::Arrow, streamed);
    response.headers_mut().insert(
        HeaderName::from_static("x-query-mode"),
        HeaderValue::from_static("stream"),
    );
    Ok(response)
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

pub(super) fn streamed_response(encoding: Encoding, streamed: Streamed) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            ),
            version_header(streamed.version),
        ],
        Body::from_stream(streamed.chunks),
    )
        .into_response()
}

/// `format` in a raw query string.
pub(super) fn format_param(params: Option<&str>) -> Option<String> {
    params.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "format")
            .map(|(_, v)| v.into_owned())
    })
}
