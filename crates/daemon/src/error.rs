//! The one place where error kinds become HTTP statuses, and the JSON error envelope
//! `{"error": "…", "kind": "…"}` every daemon answers with — including for body-parsing
//! failures, unknown routes and wrong methods.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The JSON error body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// A stable machine-readable kind (`not_found`, `already_exists`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// A body axum's extractors refused (too large, unreadable, wrong type), keeping its status.
    /// 422 (valid JSON, wrong shape) is a bad request like any other here.
    pub fn body_rejected(status: StatusCode, message: impl Into<String>) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(status, "too_large", message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::unsupported_media_type(message),
            StatusCode::UNPROCESSABLE_ENTITY => Self::bad_request(message),
            _ => Self::new(status, "bad_request", message),
        }
    }

    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // 304 carries no body by definition.
        if self.status == StatusCode::NOT_MODIFIED {
            return self.status.into_response();
        }
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, kind = self.kind, error = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, kind = self.kind, error = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: self.message,
            kind: Some(self.kind.to_owned()),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<strata_shared::Error> for ApiError {
    fn from(e: strata_shared::Error) -> Self {
        Self::from(&e)
    }
}

/// By reference too: one failure shared by several requests (a group commit) answers each.
impl From<&strata_shared::Error> for ApiError {
    fn from(e: &strata_shared::Error) -> Self {
        use strata_shared::Error as E;
        let (status, kind) = match e {
            E::InvalidName { .. }
            | E::InvalidInput(_)
            | E::UnknownKeyColumn { .. }
            | E::NullKey { .. }
            | E::DuplicateKey { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            E::DatasetNotFound(_) | E::ManifestNotFound { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            E::DatasetExists(_) => (StatusCode::CONFLICT, "already_exists"),
            E::Conflict(_) | E::TxnsPartlyCommitted { .. } => (StatusCode::CONFLICT, "conflict"),
            E::CommitContention { .. } => (StatusCode::SERVICE_UNAVAILABLE, "contention"),
            E::PutIfAbsentUnsupported(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unsafe"),
            E::ObjectStore(os) => return object_store_error(os),
            E::InvalidManifest { .. } | E::Path(_) | E::Arrow(_) | E::Parquet(_) | E::Json(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let mut error = ApiError::new(status, kind, e.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            error.retry_after_secs = Some(1);
        }
        error
    }
}

impl From<object_store::Error> for ApiError {
    fn from(e: object_store::Error) -> Self {
        ApiError::from(&e)
    }
}

/// A store error that reached us inside another error (DataFusion's, say).
impl From<&object_store::Error> for ApiError {
    fn from(e: &object_store::Error) -> Self {
        object_store_error(e)
    }
}

/// Object-store error kinds keep their meaning across the wire, so the typed client on the
/// other side can rebuild the same `object_store::Error` variant. The message names the
/// object, not the store: an S3 error's text carries the endpoint, the bucket and the
/// store's own answer, which stay in the log.
fn object_store_error(e: &object_store::Error) -> ApiError {
    use object_store::Error as O;
    match e {
        // Answers of the commit protocol and of probes (the next manifest version), not faults.
        O::NotFound { .. } | O::AlreadyExists { .. } | O::Precondition { .. } => {
            tracing::debug!(error = %e, "store answer");
        }
        _ => tracing::warn!(error = %e, "store error"),
    }
    // The store (storaged, or S3) did not answer at all: a passing condition, said as such.
    if let O::Generic { source, .. } = e
        && source
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_connect() || r.is_timeout())
    {
        return ApiError::unavailable("the store is unreachable; retry shortly", 1);
    }
    let (status, kind, message) = match e {
        O::NotFound { path, .. } => (
            StatusCode::NOT_FOUND,
            "not_found",
            format!("object {path} not found"),
        ),
        O::AlreadyExists { path, .. } => (
            StatusCode::CONFLICT,
            "already_exists",
            format!("object {path} already exists"),
        ),
        O::Precondition { path, .. } => (
            StatusCode::PRECONDITION_FAILED,
            "precondition",
            format!("object {path} changed: the precondition failed"),
        ),
        O::NotModified { path, .. } => (
            StatusCode::NOT_MODIFIED,
            "not_modified",
            format!("object {path} not modified"),
        ),
        O::NotImplemented { .. } | O::NotSupported { .. } => (
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "the store does not support this operation".to_owned(),
        ),
        O::InvalidPath { source } => (
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("invalid object path: {source}"),
        ),
        O::PermissionDenied { path, .. } | O::Unauthenticated { path, .. } => (
            StatusCode::BAD_GATEWAY,
            "store_denied",
            format!("the store refused access to {path} (storaged's log has its answer)"),
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "store",
            "the store failed (storaged's log has its answer)".to_owned(),
        ),
    };
    ApiError::new(status, kind, message)
}

/// `Json<T>` whose rejections (wrong content type, malformed JSON, wrong types, body too large)
/// answer with the JSON envelope instead of axum's plain-text default.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let rejected = |r: JsonRejection| ApiError::body_rejected(r.status(), r.body_text());
        if !is_json(req.headers()) {
            // axum's extractor rejects it, with its own message.
            return Json::<T>::from_request(req, state)
                .await
                .map(|Json(value)| Self(value))
                .map_err(rejected);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::body_rejected(r.status(), r.body_text()))?;
        parse_json(&bytes).map(Self)
    }
}

/// A JSON body as `T`. A well-formed body parses with serde_json alone. axum's parse tracks
/// the path into the body on every call, for its error message ("at line 1 column 9:
/// predicates[0].val: …"); only a body that fails pays for it.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(number) = crate::json_text::underflowing_number(bytes) {
        return Err(ApiError::bad_request(format!(
            "the number {number} is too small for any column: it would read as 0"
        )));
    }
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => Json::<T>::from_bytes(bytes)
            .map(|Json(value)| value)
            .map_err(|r| ApiError::body_rejected(r.status(), r.body_text())),
    }
}

/// [`ApiJson`] that reads an absent (empty) body as `T::default()`, as datap-rs does for a
/// bare `POST …/count`. A body that is there must be JSON of `T`, as for `ApiJson`.
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::body_rejected(r.status(), r.body_text()))?;
        if bytes.is_empty() {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(ApiError::unsupported_media_type(
                "Expected request with `Content-Type: application/json`",
            ));
        }
        parse_json(&bytes).map(Self)
    }
}

/// `Content-Type: application/json` or `application/…+json`, as axum's `Json` requires.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == "application"
        && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
}

/// Fallback for unknown routes.
pub async fn route_not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Every error answer in the JSON envelope: axum's own refusals — a bare 405, a path segment
/// that is not valid UTF-8 (`%ff`), a body over the limit (413) — come as plain text or
/// empty; they are rewritten here with a kind for their status.
pub async fn json_errors(request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    // Such bodies are a short message at most.
    let text = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let (kind, fallback) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::NOT_FOUND => ("not_found", "not found"),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the body is too large"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request timed out"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported content type")
        }
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("bad_request", "bad request"),
    };
    let message = if text.is_empty() {
        fallback.to_owned()
    } else {
        text
    };
    ApiError::new(status, kind, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_errors_map_to_statuses() {
        let name = strata_shared::layout::DatasetName::new("x").unwrap();
        let cases = [
            (strata_shared::Error::DatasetNotFound(name.clone()), 404),
            (strata_shared::Error::DatasetExists(name), 409),
            (
                strata_shared::Error::DuplicateKey { key: "id=1".into() },
                400,
            ),
            (strata_shared::Error::Conflict("x".into()), 409),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e).status.as_u16(), status);
        }
    }
}
