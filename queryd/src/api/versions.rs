//! `GET /api/v1/datasets/{name}/versions` and `…/changes`: a dataset's history (time travel
//! itself is the `version` / `as_of` of a query body).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use strata_daemon::error::ApiError;
use strata_queryd_api::{ARROW_STREAM, ChangesQuery, NDJSON, VersionsQuery, VersionsResponse};

use super::version_header;
use crate::AppState;
use crate::query::Format;

pub async fn versions(
    State(app): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<VersionsQuery>, QueryRejection>,
) -> Result<Json<VersionsResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(app.service.versions(&name, &query).await?))
}

pub async fn changes(
    State(app): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<ChangesQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let format = feed_format(query.format.as_deref(), &headers)?;
    let streamed = app.service.changes(&name, &query, format).await?;
    let content_type = match format {
        Format::Json => NDJSON,
        Format::Arrow => ARROW_STREAM,
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            version_header(streamed.version),
        ],
        Body::from_stream(streamed.chunks),
    )
        .into_response())
}

/// `?format=ndjson|arrow` wins over `Accept`; NDJSON unless Arrow is asked for.
fn feed_format(format: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
    match format {
        Some("arrow") => Ok(Format::Arrow),
        Some("ndjson") => Ok(Format::Json),
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown format {other:?} (expected ndjson or arrow)"
        ))),
        None => Ok(if super::query::accepts_arrow(headers) {
            Format::Arrow
        } else {
            Format::Json
        }),
    }
}
