//! `GET /api/v1/datasets`, `…/{name}/schema`, `…/{name}/status`.

use arrow::datatypes::DataType;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use strata_daemon::error::ApiError;
use strata_queryd_api::{ColumnInfo, DatasetList, DatasetSummary, SchemaResponse};

use super::version_header;
use crate::AppState;
use crate::cache::Slot;
use crate::plan::logical_value_type;

pub async fn list(State(app): State<AppState>) -> Result<Json<DatasetList>, ApiError> {
    let slots = app.service.cache.refresh().await?;
    Ok(Json(DatasetList {
        datasets: slots.iter().map(|s| summary(s)).collect(),
    }))
}

/// `GET /readyz`: ready once the catalog of datasets is known, with their count (datap-rs's
/// answer); 503 before, or while the store cannot be listed.
pub async fn ready(State(app): State<AppState>) -> axum::response::Response {
    match app.service.cache.ready().await {
        Ok(datasets) => {
            Json(serde_json::json!({"status": "ready", "datasets": datasets})).into_response()
        }
        Err(e) => {
            // The message as an error answer would say it (no endpoints).
            let error = ApiError::from(e);
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "status": "not ready", "error": error.message, "kind": "unavailable"
                })),
            )
                .into_response()
        }
    }
}

pub async fn status(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let slot = app.service.cache.slot(&name).await?;
    let summary = summary(&slot);
    Ok(([version_header(summary.version)], Json(summary)))
}

pub async fn schema(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let slot = app.service.cache.slot(&name).await?;
    let sample = app.service.sample(&name).await?;
    let manifest = slot.manifest();
    let resident = slot.resident();
    // The in-memory type when resident (dictionary-encoded strings show as such), else the
    // stored one.
    let memory_schema = resident.as_ref().map(|s| s.mem_schema.clone());
    let schema = memory_schema.unwrap_or_else(|| manifest.arrow_schema());
    let (version, rows) = slot.version_rows();
    let body = SchemaResponse {
        name: slot.name.to_string(),
        rows,
        version,
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnInfo {
                name: f.name().clone(),
                logical: logical_kind(f.data_type()).into(),
                sql_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect(),
        primary_key: manifest.primary_key.clone(),
        indexed: resident.map(|s| s.indexed_columns()).unwrap_or_default(),
        sample,
    };
    Ok(([version_header(version)], Json(body)))
}

/// datap-rs's coarse type names.
fn logical_kind(data_type: &DataType) -> &'static str {
    let t = logical_value_type(data_type);
    if t.is_integer() {
        "int"
    } else if t.is_floating() {
        "float"
    } else if t == DataType::Boolean {
        "bool"
    } else if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        "utf8"
    } else if t.is_temporal() {
        "temporal"
    } else {
        "other"
    }
}

fn summary(slot: &Slot) -> DatasetSummary {
    let manifest = slot.manifest();
    let (version, rows) = slot.version_rows();
    let last_load = slot.last_load();
    DatasetSummary {
        name: slot.name.to_string(),
        kind: "parquet".into(),
        state: "published".into(),
        residency: slot.residency().as_str().into(),
        rows,
        columns: manifest.schema.fields().len() as u64,
        version,
        pinned: slot.pinned(),
        primary_key: manifest.primary_key.clone(),
        last_refresh_at: last_load
            .map(|(at, _)| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        last_refresh_duration_ms: last_load.map(|(_, ms)| ms),
        refresh_source: "manifest".into(),
        consecutive_failures: slot.consecutive_failures(),
        lazy: false,
        depends_on: Vec::new(),
    }
}
