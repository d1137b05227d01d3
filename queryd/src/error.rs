//! queryd's errors, and the codes of the daemon's error table ([`ErrorCode`]) they answer as.

use strata_daemon::error::find_cause;
use strata_daemon::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is malformed or names unknown columns, operators or wrongly typed values.
    #[error("{0}")]
    BadRequest(String),
    #[error("dataset {0:?} not found")]
    DatasetNotFound(String),
    /// A version that was never committed (or a time before the dataset existed).
    #[error("{0}")]
    NoSuchVersion(String),
    /// A version garbage collection expired: the message names the oldest retained one.
    #[error("{0}")]
    Gone(String),
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
    /// storaged or compactord refused a forwarded request: its status, kind and message,
    /// passed on.
    #[error("{message}")]
    Upstream {
        status: u16,
        kind: Option<String>,
        message: String,
    },
    #[error(transparent)]
    Shared(#[from] strata_shared::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Internal(String),
}

/// Parquet's errors are the table format's (queryd's own scans read its files).
impl From<parquet::errors::ParquetError> for QueryError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        QueryError::Shared(e.into())
    }
}

impl QueryError {
    /// The dataset is not in the store (never created, or dropped).
    pub fn is_dataset_not_found(&self) -> bool {
        matches!(
            self,
            QueryError::DatasetNotFound(_)
                | QueryError::Shared(strata_shared::Error::DatasetNotFound(_))
        )
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        // The store failed, however deep under DataFusion, Arrow or Parquet: the answer a
        // store error gets anywhere (an unreachable store is a 503 with Retry-After).
        if let Some(store) = find_cause::<object_store::Error>(&e) {
            return ApiError::from(store);
        }
        let message = e.to_string();
        let code = match e {
            QueryError::BadRequest(_) => ErrorCode::BadRequest,
            QueryError::DatasetNotFound(_) | QueryError::NoSuchVersion(_) => ErrorCode::NotFound,
            QueryError::Gone(_) => ErrorCode::Gone,
            QueryError::TooLarge(_) => ErrorCode::TooLarge,
            QueryError::Timeout(_) => ErrorCode::Timeout,
            QueryError::Overflow(_) => ErrorCode::Overflow,
            QueryError::Unavailable(_) => ErrorCode::Unavailable,
            QueryError::Upstream { status, kind, .. } => {
                return ApiError::upstream(status, kind.as_deref(), message);
            }
            QueryError::Shared(e) => return ApiError::from(e),
            QueryError::DataFusion(e) => datafusion_code(&e),
            QueryError::Arrow(_) | QueryError::Internal(_) => ErrorCode::Internal,
        };
        ApiError::new(code, message)
    }
}

/// DataFusion reports plan errors (type mismatches it found while planning) as well as
/// execution failures; only the first kind is the caller's fault. Requests are validated
/// before planning, so a plan error here is unexpected but still the request's doing.
fn datafusion_code(e: &datafusion::error::DataFusionError) -> ErrorCode {
    use datafusion::error::DataFusionError as D;
    match e.find_root() {
        D::Plan(_) | D::SchemaError(..) => ErrorCode::BadRequest,
        D::ResourcesExhausted(_) => ErrorCode::ResourcesExhausted,
        _ => ErrorCode::Internal,
    }
}

impl From<crate::encode::NotOffered> for ApiError {
    fn from(e: crate::encode::NotOffered) -> Self {
        let code = match e {
            crate::encode::NotOffered::Named(_) => ErrorCode::BadRequest,
            crate::encode::NotOffered::Accept(_) => ErrorCode::NotAcceptable,
        };
        ApiError::new(code, e.to_string())
    }
}
