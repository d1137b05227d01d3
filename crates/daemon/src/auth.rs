//! Token guards. Admin and write calls carry `X-Admin-Token`; daemon-to-daemon calls carry
//! `X-Internal-Token`. With no token configured a guarded route refuses every call (secure
//! default): 403 when nothing is configured or the token is wrong, 401 when none was sent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, ErrorCode};

pub const ADMIN_TOKEN_HEADER: &str = "x-admin-token";
pub const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";

#[derive(Clone, Debug)]
pub struct TokenGuard {
    header: &'static str,
    /// Tokens that pass; empty: none is configured and every call is refused.
    expected: Vec<Arc<str>>,
}

impl TokenGuard {
    pub fn admin(token: Option<&str>) -> Self {
        Self::new(ADMIN_TOKEN_HEADER, token)
    }

    /// Write calls: the admin token or the write token, in `X-Admin-Token`.
    pub fn write(admin: Option<&str>, write: Option<&str>) -> Self {
        let mut guard = Self::new(ADMIN_TOKEN_HEADER, admin);
        guard
            .expected
            .extend(Self::new(ADMIN_TOKEN_HEADER, write).expected);
        guard
    }

    pub fn internal(token: Option<&str>) -> Self {
        Self::new(INTERNAL_TOKEN_HEADER, token)
    }

    fn new(header: &'static str, token: Option<&str>) -> Self {
        Self {
            header,
            expected: token
                .filter(|t| !t.is_empty())
                .map(Arc::from)
                .into_iter()
                .collect(),
        }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.expected.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this call needs {} but no token is configured on the server",
                    self.header
                ),
            ));
        }
        let Some(sent) = headers.get(self.header) else {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!("missing {} header", self.header),
            ));
        };
        // Every token is compared, so the time taken does not tell which one matched.
        let matched = self.expected.iter().fold(false, |m, t| {
            m | constant_time_eq(sent.as_bytes(), t.as_bytes())
        });
        if matched {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("wrong {}", self.header),
            ))
        }
    }
}

/// Middleware: `axum::middleware::from_fn_with_state(guard, require_token)`.
pub async fn require_token(
    State(guard): State<TokenGuard>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn statuses() {
        let mut headers = HeaderMap::new();
        let status = |g: &TokenGuard, h: &HeaderMap| g.check(h).err().map(|e| e.status().as_u16());
        assert_eq!(status(&TokenGuard::admin(None), &headers), Some(403));
        assert_eq!(status(&TokenGuard::admin(Some("")), &headers), Some(403));
        let guard = TokenGuard::admin(Some("s3cret"));
        assert_eq!(status(&guard, &headers), Some(401));
        headers.insert(ADMIN_TOKEN_HEADER, HeaderValue::from_static("nope"));
        assert_eq!(status(&guard, &headers), Some(403));
        headers.insert(ADMIN_TOKEN_HEADER, HeaderValue::from_static("s3cret"));
        assert_eq!(status(&guard, &headers), None);
        let writer = TokenGuard::write(Some("s3cret"), Some("w"));
        assert_eq!(status(&writer, &headers), None);
        headers.insert(ADMIN_TOKEN_HEADER, HeaderValue::from_static("w"));
        assert_eq!(status(&writer, &headers), None);
        assert_eq!(
            status(&guard, &headers),
            Some(403),
            "a write token is no admin token"
        );
    }
}
