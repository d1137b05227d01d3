//! queryd's error kinds and their one mapping onto HTTP statuses.

use axum::http::StatusCode;
use strata_daemon::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is malformed or names unknown columns, operators or wrongly typed values.
    #[error("{0}")]
    BadRequest(String),
    #[error("dataset {0:?} not found")]
    DatasetNotFound(String),
    /// The result or the dataset exceeds a limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("request timed out after {0} ms")]
    Timeout(u64),
    /// An exact answer does not fit its type (an integer sum beyond `int64`): never a
    /// wrapped number.
    #[error("{0}")]
    Overflow(String),
    #[error("{0}")]
    Unavailable(String),
    /// storaged refused a forwarded request: its status and message, passed on.
    #[error("{message}")]
    Upstream { status: u16, message: String },
    #[error(transparent)]
    Shared(#[from] strata_shared::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Internal(String),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        // The store failed, however deep under DataFusion, Arrow or Parquet: the answer a
        // store error gets anywhere (an unreachable store is a 503 with Retry-After).
        if let Some(store) = store_cause(&e) {
            return ApiError::from(store);
        }
        let message = e.to_string();
        match e {
            QueryError::BadRequest(_) => ApiError::bad_request(message),
            QueryError::DatasetNotFound(_) => ApiError::not_found(message),
            QueryError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            QueryError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
            }
            QueryError::Overflow(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "overflow", message)
            }
            QueryError::Unavailable(_) => ApiError::unavailable(message, 1),
            QueryError::Upstream { status, .. } => upstream(status, message),
            QueryError::Shared(e) => ApiError::from(e),
            QueryError::DataFusion(e) => datafusion_error(e),
            QueryError::Arrow(_) | QueryError::Internal(_) => ApiError::internal(message),
        }
    }
}

/// A status storaged answered, with the kind the same status has here.
fn upstream(status: u16, message: String) -> ApiError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let kind = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => return ApiError::unavailable(message, 1),
        _ => "upstream",
    };
    ApiError::new(status, kind, message)
}

/// DataFusion reports plan errors (type mismatches it found while planning) as well as
/// execution failures; only the first kind is the caller's fault. Requests are validated
/// before planning, so a plan error here is unexpected but still the request's doing.
/// The first `object_store::Error` in `e`'s chain of causes.
fn store_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a object_store::Error> {
    let mut cause = Some(e);
    while let Some(error) = cause {
        if let Some(store) = error.downcast_ref::<object_store::Error>() {
            return Some(store);
        }
        cause = error.source();
    }
    None
}

fn datafusion_error(e: datafusion::error::DataFusionError) -> ApiError {
    use datafusion::error::DataFusionError as D;
    match e.find_root() {
        D::Plan(_) | D::SchemaError(..) => ApiError::bad_request(e.to_string()),
        D::ResourcesExhausted(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "resources_exhausted",
            e.to_string(),
        ),
        _ => ApiError::internal(e.to_string()),
    }
}
