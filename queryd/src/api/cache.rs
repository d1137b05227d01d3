//! Admin calls on the memcache: `POST /api/v1/cache/{pin,unpin,evict}`, `GET
//! /api/v1/cache/stats`, and `POST /api/v1/datasets/{name}/reload`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use strata_daemon::error::{ApiError, ApiJson};
use strata_queryd_api::{CacheEntry, CacheRequest, CacheStats, ReloadResponse};

use super::version_header;
use crate::AppState;

pub async fn pin(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<CacheRequest>,
) -> Result<Json<CacheEntry>, ApiError> {
    Ok(Json(app.service.cache.pin(&request.dataset).await?))
}

pub async fn unpin(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<CacheRequest>,
) -> Result<Json<CacheEntry>, ApiError> {
    Ok(Json(app.service.cache.unpin(&request.dataset).await?))
}

pub async fn evict(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<CacheRequest>,
) -> Result<Json<CacheEntry>, ApiError> {
    Ok(Json(app.service.cache.evict(&request.dataset).await?))
}

pub async fn stats(State(app): State<AppState>) -> Json<CacheStats> {
    let mut stats = app.service.cache.stats();
    stats.instance = app.instance.to_string();
    Json(stats)
}

pub async fn reload(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let reloaded = app.service.cache.reload(&name).await?;
    Ok((
        [version_header(reloaded.version)],
        Json(ReloadResponse {
            dataset: name,
            rows: reloaded.rows,
            elapsed_ms: reloaded.elapsed_ms,
            version: reloaded.version,
        }),
    ))
}
