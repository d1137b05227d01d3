//! Handler of the delta ingest route (protocol in `strata_storaged_api::deltas`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use strata_daemon::ApiError;
use strata_storaged_api::deltas::{
    ARROW_STREAM_CONTENT_TYPE, DeltaCommitted, JSON_CONTENT_TYPE, PARQUET_ALT_CONTENT_TYPE,
    PARQUET_CONTENT_TYPE, idempotency_key,
};

use crate::AppState;
use crate::delta_input::DeltaFormat;
use crate::ingest::{DeltaRequest, GroupError, IngestError};

pub async fn post_deltas(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DeltaCommitted>, ApiError> {
    let Path(dataset) = name.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let body = body.map_err(|e| ApiError::body_rejected(e.status(), e.body_text()))?;
    let request = DeltaRequest {
        dataset,
        format: format_of(&headers)?,
        body,
        idempotency_key: idempotency_key(&headers)?.map(str::to_owned),
    };
    Ok(Json(state.ingest.submit(request).await?))
}

/// The body format from `Content-Type` (parameters such as `charset` ignored).
pub(crate) fn format_of(headers: &HeaderMap) -> Result<DeltaFormat, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        JSON_CONTENT_TYPE => Ok(DeltaFormat::Json),
        ARROW_STREAM_CONTENT_TYPE => Ok(DeltaFormat::ArrowStream),
        PARQUET_CONTENT_TYPE | PARQUET_ALT_CONTENT_TYPE => Ok(DeltaFormat::Parquet),
        _ => Err(ApiError::unsupported_media_type(format!(
            "content type {raw:?} is not a delta format: send {JSON_CONTENT_TYPE}, \
             {ARROW_STREAM_CONTENT_TYPE} or {PARQUET_CONTENT_TYPE}"
        ))),
    }
}

/// Ingest failures as responses; the kinds of table-format errors map in `strata_daemon`.
impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Table(e) => ApiError::from(e),
            IngestError::Group(e) => match e.as_ref() {
                GroupError::Table(e) => ApiError::from(e),
                e @ GroupError::TaskFailed(_) => ApiError::internal(e.to_string()),
            },
            e @ IngestError::InvalidKey(_) => ApiError::bad_request(e.to_string()),
            e @ (IngestError::CommitterStopped(_) | IngestError::TaskFailed(_)) => {
                ApiError::internal(e.to_string())
            }
            IngestError::Busy(e) => ApiError::from(e),
        }
    }
}
