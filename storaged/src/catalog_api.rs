//! Handlers of the catalog API (routes in `strata_storaged_api::catalog`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use strata_daemon::{ApiError, ApiJson};
use strata_shared::manifest::Manifest;
use strata_storaged_api::catalog::{
    CreateDatasetRequest, DatasetInfo, DatasetList, ManifestVersions,
};

use crate::AppState;

pub async fn list_datasets(State(state): State<AppState>) -> Result<Json<DatasetList>, ApiError> {
    let manifests = state.catalog.list().await?;
    Ok(Json(DatasetList {
        datasets: manifests.iter().map(DatasetInfo::from).collect(),
    }))
}

pub async fn create_dataset(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateDatasetRequest>,
) -> Result<(StatusCode, Json<DatasetInfo>), ApiError> {
    let manifest = state.catalog.create(&request).await?;
    Ok((StatusCode::CREATED, Json(DatasetInfo::from(&manifest))))
}

pub async fn dataset(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DatasetInfo>, ApiError> {
    let manifest = state.catalog.manifest(&name, None).await?;
    Ok(Json(DatasetInfo::from(&manifest)))
}

pub async fn manifest_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ManifestVersions>, ApiError> {
    Ok(Json(state.catalog.versions(&name).await?))
}

/// `{version}` is a number or `latest`.
pub async fn manifest(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Manifest>, ApiError> {
    let version = match version.as_str() {
        "latest" => None,
        v => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("version must be a number or \"latest\", got {v:?}"))
        })?),
    };
    Ok(Json(state.catalog.manifest(&name, version).await?))
}
