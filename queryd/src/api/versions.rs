//! `GET /api/v1/datasets/{name}/versions` and `…/changes`: a dataset's history (time travel
//! itself is the `version` / `as_of` of a query body).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use strata_daemon::error::ApiError;
use strata_queryd_api::{ChangesQuery, VersionsQuery, VersionsResponse};

use super::{format_of, version_header};
use crate::AppState;
use crate::encode::{Encoding, Format};

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
    let Format::Rows(encoding) = format_of(query.format.as_deref(), &headers, &FEED_FORMATS)?
    else {
        return Err(ApiError::bad_request(
            "the change feed is never a JSON page",
        ));
    };
    let streamed = app.service.changes(&name, &query, encoding).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            ),
            version_header(streamed.version),
        ],
        Body::from_stream(streamed.chunks),
    )
        .into_response())
}

/// What the change feed is answered in: NDJSON by default.
const FEED_FORMATS: [Format; 4] = [
    Format::Rows(Encoding::Ndjson),
    Format::Rows(Encoding::Arrow),
    Format::Rows(Encoding::Csv),
    Format::Rows(Encoding::Parquet),
];
