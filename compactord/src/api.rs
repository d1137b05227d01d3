//! Handlers of compactord's routes (protocol in `strata_compactord_api`).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use strata_compactord_api::{CompactionRun, GcResponse, RunsQuery, RunsResponse, Trigger};
use strata_daemon::ApiError;

use crate::AppState;
use crate::service::RunError;

/// `POST …/datasets/{name}/compact`: compacts now and answers the finished run.
pub async fn compact(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CompactionRun>, ApiError> {
    let Path(dataset) = name.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(state.compactor.run(&dataset, Trigger::Manual).await?))
}

/// `GET …/compactions[?dataset=name]`: the run history, newest first.
pub async fn runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<RunsResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let runs = state.compactor.history().list(query.dataset.as_deref());
    Ok(Json(RunsResponse { runs }))
}

/// `POST …/gc`: collects garbage now and answers what was deleted.
pub async fn gc(State(state): State<AppState>) -> Json<GcResponse> {
    Json(state.compactor.collect_garbage().await)
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Table(e) => ApiError::from(e),
            e @ RunError::TaskFailed { .. } => ApiError::internal(e.to_string()),
        }
    }
}
