//! `GET /api/v1/datasets`, `…/{name}/schema`, `…/{name}/status`, and `POST /api/v1/datasets`
//! (admin), which creates a dataset in storaged's catalog.

use arrow::datatypes::DataType;
use axum::Json;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use strata_daemon::auth::ADMIN_TOKEN_HEADER;
use strata_daemon::error::{ApiError, ApiJson};
use strata_queryd_api::{ColumnInfo, DatasetList, DatasetSummary, SchemaResponse};
use strata_shared::layout::DatasetName;
use strata_storaged_api::catalog::{CreateDatasetRequest, DatasetInfo, DroppedDataset};
use strata_storaged_api::deltas::JSON_CONTENT_TYPE;

use super::version_header;
use crate::AppState;
use crate::cache::Slot;
use crate::forward::Create;
use crate::plan::logical_value_type;

/// The query of an upload: `POST /api/v1/datasets?name=N&primary_key=k1,k2[&delta_mirror=true]
/// [&index=auto|none|list][&index_columns=a,b]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    name: Option<String>,
    primary_key: Option<String>,
    delta_mirror: Option<bool>,
    index: Option<strata_shared::manifest::IndexPolicy>,
    index_columns: Option<String>,
}

/// `POST /api/v1/datasets` (admin): a JSON body describes a source storaged reads (a file,
/// directory, glob or `s3://` URL: [`CreateDatasetRequest`]); any other body is the data
/// itself — a Parquet file, an Arrow IPC stream, CSV or NDJSON, as its `Content-Type` says — streamed
/// through to storaged, with the name, the key and `delta_mirror` in the query. 201 with the
/// new dataset.
pub async fn create(
    State(app): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<DatasetInfo>), ApiError> {
    let token = admin_token(request.headers()).to_owned();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let create = if essence.eq_ignore_ascii_case(JSON_CONTENT_TYPE) {
        let ApiJson(source) = ApiJson::<CreateDatasetRequest>::from_request(request, &()).await?;
        Create::FromSource(source)
    } else {
        let Query(query) = Query::<UploadQuery>::try_from_uri(request.uri())
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let name = query.name.ok_or_else(|| {
            ApiError::bad_request(
                "an upload names its dataset: POST /api/v1/datasets?name=N&primary_key=k \
                 (or send a JSON body with a source)",
            )
        })?;
        // Checked here: the name becomes part of storaged's route.
        DatasetName::new(&name)?;
        let upload = strata_storaged_api::catalog::UploadQuery {
            primary_key: query.primary_key,
            delta_mirror: query.delta_mirror,
            index: query.index,
            index_columns: query.index_columns,
        };
        Create::Upload {
            name,
            query: upload,
            content_type,
            body: reqwest::Body::wrap_stream(request.into_body().into_data_stream()),
        }
    };
    let created = app.forward.create(&token, create).await?;
    // Listed here at once (other replicas discover it on their next listing), and loaded
    // now rather than by its first request.
    app.service.cache.refresh().await?;
    app.service.cache.load_soon(&created.name).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /api/v1/datasets/{name}` (admin): drops the dataset in storaged's catalog and
/// forgets it here at once (other replicas on storaged's notification, or their next poll).
pub async fn drop(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<DroppedDataset>, ApiError> {
    // Checked here: the name becomes part of storaged's route.
    DatasetName::new(&name)?;
    let dropped = app
        .forward
        .drop_dataset(admin_token(&headers), &name)
        .await?;
    app.service.cache.forget(&name);
    Ok(Json(dropped))
}

/// The admin token the caller presented (the admin route layer checked it), passed on to
/// storaged, which checks it again: the catalog is storaged's.
fn admin_token(headers: &HeaderMap) -> &str {
    headers
        .get(ADMIN_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

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
