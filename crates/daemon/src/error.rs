//! The one table of error kinds ([`ErrorCode`]: HTTP status and `kind` string), and the
//! JSON error envelope `{"error": "…", "kind": "…"}` every daemon answers with — including
//! for body-parsing failures, unknown routes and wrong methods. Every daemon's error types
//! map onto [`ErrorCode`]s (`From<…> for ApiError`, beside each type); nothing else chooses
//! a status.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The JSON error body.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// A stable machine-readable kind (`not_found`, `already_exists`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Declares [`ErrorCode`]: the one table of error kinds, each with its HTTP status and its
/// stable `kind` string.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $code:ident => ($status:ident, $kind:literal),)*) => {
        /// Every kind of error a daemon answers with. Each error type of the daemons maps onto
        /// one of these (`From<…> for ApiError`), and a kind read from another daemon's
        /// answer maps back ([`ErrorCode::from_kind`]), so kinds pass through unchanged.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$code,)*];

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$code => StatusCode::$status,)*
                }
            }

            /// The stable machine-readable kind of the JSON envelope.
            pub fn kind(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => $kind,)*
                }
            }

            /// The code of a `kind` another daemon answered with.
            pub fn from_kind(kind: &str) -> Option<Self> {
                match kind {
                    $($kind => Some(ErrorCode::$code),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// The request is malformed, names unknown things or holds wrongly typed values.
    BadRequest => (BAD_REQUEST, "bad_request"),
    /// An object key that is not a valid path.
    InvalidPath => (BAD_REQUEST, "invalid_path"),
    /// No token where one is needed.
    Unauthorized => (UNAUTHORIZED, "unauthorized"),
    /// A wrong token, or none configured on the server.
    Forbidden => (FORBIDDEN, "forbidden"),
    NotFound => (NOT_FOUND, "not_found"),
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed"),
    /// No format the client accepts (`Accept`) is one the route answers in.
    NotAcceptable => (NOT_ACCEPTABLE, "not_acceptable"),
    /// A dataset version garbage collection already expired.
    Gone => (GONE, "gone"),
    /// The request was not read in time (the server's timeout layer).
    RequestTimeout => (REQUEST_TIMEOUT, "request_timeout"),
    /// The commit lost to another one, or the state it relied on changed.
    Conflict => (CONFLICT, "conflict"),
    /// A dataset or an object that is already there.
    AlreadyExists => (CONFLICT, "already_exists"),
    /// A compactor whose epoch a newer one bumped.
    Fenced => (CONFLICT, "fenced"),
    /// A conditional object operation whose precondition failed.
    Precondition => (PRECONDITION_FAILED, "precondition"),
    TooLarge => (PAYLOAD_TOO_LARGE, "too_large"),
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    InvalidRange => (RANGE_NOT_SATISFIABLE, "invalid_range"),
    /// An exact answer that does not fit its type (an integer sum beyond `int64`).
    Overflow => (UNPROCESSABLE_ENTITY, "overflow"),
    NotModified => (NOT_MODIFIED, "not_modified"),
    /// A bug or an unexpected failure here.
    Internal => (INTERNAL_SERVER_ERROR, "internal"),
    /// The store does not support the operation.
    NotImplemented => (NOT_IMPLEMENTED, "not_implemented"),
    /// Another daemon answered with a status that has no code of its own here.
    Upstream => (BAD_GATEWAY, "upstream"),
    /// The store refused access (its answer is in the log).
    StoreDenied => (BAD_GATEWAY, "store_denied"),
    /// The store failed (its answer is in the log).
    Store => (BAD_GATEWAY, "store"),
    /// A passing condition (a store or daemon out of reach, a budget full): retry.
    Unavailable => (SERVICE_UNAVAILABLE, "unavailable"),
    /// Too many commits raced for the same version: retry.
    Contention => (SERVICE_UNAVAILABLE, "contention"),
    /// The store does not enforce put-if-absent: writes are refused.
    StoreUnsafe => (SERVICE_UNAVAILABLE, "store_unsafe"),
    /// The query engine ran out of a resource (memory).
    ResourcesExhausted => (SERVICE_UNAVAILABLE, "resources_exhausted"),
    /// The answer took longer than the request timeout.
    Timeout => (GATEWAY_TIMEOUT, "timeout"),
}

impl ErrorCode {
    /// The code for a bare status (an answer without a known kind): the first code of the
    /// table with that status (the table lists each status's general code first), else [`ErrorCode::Upstream`] (or [`ErrorCode::Internal`] for
    /// a 500).
    pub fn for_status(status: u16) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.status().as_u16() == status)
            .unwrap_or(if status == 500 {
                ErrorCode::Internal
            } else {
                ErrorCode::Upstream
            })
    }
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// `Retry-After`, in seconds: set for every 503 (the condition passes).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let unavailable = code.status() == StatusCode::SERVICE_UNAVAILABLE;
        Self {
            code,
            message: message.into(),
            retry_after_secs: unavailable.then_some(1),
        }
    }

    /// What another daemon answered, passed on: its kind when this table knows it, else
    /// the code of its status.
    pub fn upstream(status: u16, kind: Option<&str>, message: impl Into<String>) -> Self {
        let code = kind
            .and_then(ErrorCode::from_kind)
            .unwrap_or_else(|| ErrorCode::for_status(status));
        Self::new(code, message)
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedMediaType, message)
    }

    /// A body axum's extractors refused (too large, unreadable, wrong type), keeping its status.
    /// 422 (valid JSON, wrong shape) is a bad request like any other here.
    pub fn body_rejected(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            _ => ErrorCode::BadRequest,
        };
        Self::new(code, message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = (self.code.status(), self.code.kind());
        // 304 carries no body by definition.
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        if status.is_server_error() {
            tracing::error!(%status, kind, error = %self.message, "request failed");
        } else {
            tracing::debug!(%status, kind, error = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: self.message,
            kind: Some(kind.to_owned()),
        };
        let mut response = (status, Json(body)).into_response();
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
        let code = match e {
            E::InvalidName { .. }
            | E::InvalidInput(_)
            | E::UnknownKeyColumn { .. }
            | E::NullKey { .. }
            | E::DuplicateKey { .. } => ErrorCode::BadRequest,
            E::DatasetNotFound(_) | E::ManifestNotFound { .. } => ErrorCode::NotFound,
            E::DatasetExists(_) => ErrorCode::AlreadyExists,
            E::Conflict(_) | E::TxnsPartlyCommitted { .. } => ErrorCode::Conflict,
            E::CommitContention { .. } => ErrorCode::Contention,
            E::PutIfAbsentUnsupported(_) => ErrorCode::StoreUnsafe,
            E::ObjectStore(os) => return object_store_error(os, None),
            E::InvalidManifest { .. }
            | E::DeltaLog { .. }
            | E::Path(_)
            | E::Arrow(_)
            | E::Parquet(_)
            | E::Json(_) => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<object_store::Error> for ApiError {
    fn from(e: object_store::Error) -> Self {
        ApiError::from(&e)
    }
}

/// The first error of type `T` in `e`'s chain of causes (`e` included).
pub fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cause = Some(e);
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        cause = error.source();
    }
    None
}

/// A store error that reached us inside another error (DataFusion's, say).
impl From<&object_store::Error> for ApiError {
    fn from(e: &object_store::Error) -> Self {
        object_store_error(e, None)
    }
}

/// A store error met while serving a request for `object`: the answer names the object key
/// the caller asked for (a local store's errors name the file, an absolute server path).
pub fn object_error(e: &object_store::Error, object: &str) -> ApiError {
    object_store_error(e, Some(object))
}

/// Object-store error kinds keep their meaning across the wire, so the typed client on the
/// other side can rebuild the same `object_store::Error` variant. The message names the
/// object, not the store: an S3 error's text carries the endpoint, the bucket and the
/// store's own answer, which stay in the log; a local store's paths are absolute server paths,
/// so an error's own path is shown only when it is an object key (never starts with `/`).
fn object_store_error(e: &object_store::Error, object: Option<&str>) -> ApiError {
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
    let named = |path: &str| match object {
        Some(object) => format!("object {object}"),
        None if path.starts_with('/') => "the object".to_owned(),
        None => format!("object {path}"),
    };
    let (code, message) = match e {
        O::NotFound { path, .. } => (ErrorCode::NotFound, format!("{} not found", named(path))),
        O::AlreadyExists { path, .. } => (
            ErrorCode::AlreadyExists,
            format!("{} already exists", named(path)),
        ),
        O::Precondition { path, .. } => (
            ErrorCode::Precondition,
            format!("{} changed: the precondition failed", named(path)),
        ),
        O::NotModified { path, .. } => (
            ErrorCode::NotModified,
            format!("{} not modified", named(path)),
        ),
        O::NotImplemented { .. } | O::NotSupported { .. } => (
            ErrorCode::NotImplemented,
            "the store does not support this operation".to_owned(),
        ),
        O::InvalidPath { .. } => (
            ErrorCode::InvalidPath,
            match object {
                Some(object) => format!("invalid object path {object:?}"),
                None => "invalid object path (storaged's log has the store's answer)".to_owned(),
            },
        ),
        O::PermissionDenied { path, .. } | O::Unauthenticated { path, .. } => (
            ErrorCode::StoreDenied,
            format!(
                "the store refused access to {} (storaged's log has its answer)",
                named(path)
            ),
        ),
        _ => (
            ErrorCode::Store,
            "the store failed (storaged's log has its answer)".to_owned(),
        ),
    };
    ApiError::new(code, message)
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
    let (code, fallback) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route",
        ),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "not found"),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::TooLarge, "the body is too large"),
        StatusCode::REQUEST_TIMEOUT => (ErrorCode::RequestTimeout, "the request timed out"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (ErrorCode::UnsupportedMediaType, "unsupported content type")
        }
        s if s.is_server_error() => (ErrorCode::Internal, "internal error"),
        _ => (ErrorCode::BadRequest, "bad request"),
    };
    let message = if text.is_empty() {
        fallback.to_owned()
    } else {
        text
    };
    ApiError::new(code, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_names_one_code() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_kind(code.kind()), Some(code), "{code:?}");
        }
    }

    #[test]
    fn upstream_answers_keep_their_kind_or_get_their_status_code() {
        let passed = ApiError::upstream(409, Some("fenced"), "x");
        assert_eq!(passed.code, ErrorCode::Fenced);
        assert_eq!(ApiError::upstream(503, None, "x").retry_after_secs, Some(1));
        assert_eq!(
            ApiError::upstream(404, Some("new_kind"), "x").code,
            ErrorCode::NotFound
        );
        assert_eq!(ApiError::upstream(418, None, "x").code, ErrorCode::Upstream);
        // A bare status gets the general code of its status, as before the table.
        for (status, code) in [
            (400, ErrorCode::BadRequest),
            (409, ErrorCode::Conflict),
            (502, ErrorCode::Upstream),
            (503, ErrorCode::Unavailable),
        ] {
            assert_eq!(ErrorCode::for_status(status), code, "{status}");
        }
    }

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
            assert_eq!(ApiError::from(e).status().as_u16(), status);
        }
    }
}
