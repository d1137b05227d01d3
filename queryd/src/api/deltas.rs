//! Writes: `POST /api/v1/datasets/{name}/deltas` (write or admin token), forwarded to
//! storaged, which validates and commits; `POST …/compact` and `GET …/compactions` (admin),
//! forwarded to compactord; and the notification of a new version
//! (`POST /internal/v1/datasets/{name}/notify`, internal token).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use strata_compactord_api::{CompactionRun, RunsResponse};
use strata_daemon::error::{ApiError, ApiJson};
use strata_queryd_api::internal::NotifyVersion;
use strata_storaged_api::idempotency_key;

use super::version_header;
use crate::AppState;

/// Answers once this queryd serves the committed version (read your writes).
pub async fn post(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let committed = app
        .forward
        .post(
            &name,
            content_type.unwrap_or_default(),
            body,
            idempotency_key(&headers)?,
        )
        .await?;
    // The write is durable already; if this queryd cannot serve it in time, say so, with the
    // version (a retry with the same Idempotency-Key answers again without writing).
    if let Err(e) = app.service.await_version(&name, committed.version).await {
        return Err(ApiError::unavailable(
            format!(
                "committed as version {}, but not served yet: {e}",
                committed.version
            ),
            1,
        ));
    }
    Ok(([version_header(committed.version)], Json(committed)))
}

/// Compacts now (admin): the finished run. After a commit compactord notifies queryd, which
/// then reloads; the answer does not wait for that.
pub async fn compact(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CompactionRun>, ApiError> {
    Ok(Json(app.forward.compact(&name).await?))
}

/// The dataset's compaction runs, newest first.
pub async fn compactions(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RunsResponse>, ApiError> {
    // compactord filters its history by any text; a name no dataset can have is refused
    // here, as on every other `{name}` route.
    strata_shared::layout::DatasetName::new(&name)?;
    let runs = app.forward.compactions(&name).await?;
    Ok(Json(RunsResponse { runs }))
}

/// `GET /api/v1/runs?dataset=&kind=&limit=` (admin): imports, uploads, delta commits and
/// compactions, newest first.
pub async fn runs(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    query: Result<
        axum::extract::Query<strata_storaged_api::runs::RunsQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<strata_storaged_api::runs::RunsResponse>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // The admin guard let the request in, so the header is there.
    let token = headers
        .get(strata_daemon::auth::ADMIN_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let runs = app.forward.runs(token, &query).await?;
    Ok(Json(strata_storaged_api::runs::RunsResponse { runs }))
}

/// A new version was committed: catch up in the background (storaged does not wait).
pub async fn notify(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(notice): ApiJson<NotifyVersion>,
) -> StatusCode {
    app.service
        .cache
        .catch_up_in_background(name, notice.version);
    StatusCode::ACCEPTED
}
