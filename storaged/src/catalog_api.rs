//! Handlers of the catalog API (routes in `strata_storaged_api::catalog`).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use strata_daemon::{ApiError, ApiJson};
use strata_shared::manifest::Manifest;
use strata_storaged_api::catalog::{
    CreateDatasetRequest, DatasetInfo, DatasetList, ManifestVersions, UploadQuery,
};

use strata_storaged_api::runs::{RunKind, RunsQuery, RunsResponse};

use crate::AppState;
use crate::catalog::UploadFormat;
use crate::delta_input::DeltaFormat;
use crate::deltas_api::format_of;
use crate::runs::Ended;

/// The datasets, and the imports running (a dataset whose import just committed is listed
/// once, as a dataset).
pub async fn list_datasets(State(state): State<AppState>) -> Result<Json<DatasetList>, ApiError> {
    let mut importing = state.catalog.importing();
    let manifests = state.catalog.list().await?;
    importing.retain(|i| !manifests.iter().any(|m| m.dataset.as_str() == i.name));
    Ok(Json(DatasetList {
        datasets: manifests.iter().map(DatasetInfo::from).collect(),
        importing,
    }))
}

pub async fn create_dataset(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateDatasetRequest>,
) -> Result<(StatusCode, Json<DatasetInfo>), ApiError> {
    let started_at = chrono::Utc::now();
    let created = state.catalog.create(&request).await;
    record(
        &state,
        &request.name,
        RunKind::Import,
        started_at,
        created.as_ref(),
    );
    let manifest = created?;
    Ok((StatusCode::CREATED, Json(DatasetInfo::from(&manifest))))
}

/// `POST /api/v1/datasets/{name}/upload`: a new dataset from the body (Parquet, Arrow IPC
/// stream, CSV or NDJSON), streamed to a spool file as it arrives, never held in memory
/// (`Catalog::upload`); larger than `storaged.max_upload_bytes` is a 413.
pub async fn upload_dataset(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<DatasetInfo>), ApiError> {
    let Path(name) = name.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let format = upload_format_of(&headers)?;
    let started_at = chrono::Utc::now();
    let created = state
        .catalog
        .upload(&name, &query, format, body.into_data_stream())
        .await;
    record(&state, &name, RunKind::Upload, started_at, created.as_ref());
    let manifest = created?;
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

/// The upload's format from `Content-Type`: a delta format but JSON (a JSON body describes a
/// source instead), CSV or NDJSON.
fn upload_format_of(headers: &HeaderMap) -> Result<UploadFormat, ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" => return Ok(UploadFormat::Csv),
        "application/x-ndjson" | "application/jsonl" => return Ok(UploadFormat::Ndjson),
        _ => {}
    }
    match format_of(headers) {
        Ok(DeltaFormat::Parquet) => Ok(UploadFormat::Parquet),
        Ok(DeltaFormat::ArrowStream) => Ok(UploadFormat::ArrowStream),
        _ => Err(ApiError::unsupported_media_type(format!(
            "upload a Parquet file, an Arrow IPC stream, CSV with a header line (text/csv) or \
             NDJSON (application/x-ndjson), not {essence:?}; to create a dataset from a source \
             URL, POST its JSON description to /api/v1/datasets"
        ))),
    }
}

/// A dataset creation, in the metrics and the run history.
fn record(
    state: &AppState,
    name: &str,
    kind: RunKind,
    started_at: chrono::DateTime<chrono::Utc>,
    created: Result<&Manifest, &impl std::fmt::Display>,
) {
    state
        .metrics
        .import(created.as_ref().ok().map(|m| m.base_rows()));
    let ended = match created {
        Ok(m) => Ended::Committed {
            version: m.version,
            rows: m.base_rows(),
            bytes: m.total_bytes(),
            requests: 1,
        },
        Err(error) => Ended::Failed {
            requests: 1,
            error: error.to_string(),
        },
    };
    state.runs.record(name, kind, started_at, ended);
}

/// `GET /api/v1/runs`: imports, uploads and delta commits, newest first.
pub async fn runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<RunsResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(RunsResponse {
        runs: state.runs.list(&query),
    }))
}
