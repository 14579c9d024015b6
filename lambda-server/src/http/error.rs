//! Errors as HTTP answers, mapped once, here: the service's [`Error`], and [`ApiError`], which
//! adds what only the edge refuses (no usable token, a request rate exceeded, too many uploads).

use crate::service::error::Error;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lambda_core::api::{ErrorBody, ErrorCode};

/// An error of the HTTP edge: one of the service, or one only the edge has.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The service's.
    #[error(transparent)]
    Service(#[from] Error),
    /// No usable token (401, with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// A rate or a number of requests at once is exceeded (429, with `Retry-After`).
    #[error("{detail}")]
    TooManyRequests {
        /// What was exceeded.
        detail: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

impl From<lambda_storage::Error> for ApiError {
    fn from(e: lambda_storage::Error) -> Self {
        Self::Service(e.into())
    }
}

impl ApiError {
    /// The API error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Service(e) => e.code(),
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::TooManyRequests { .. } => ErrorCode::TooManyRequests,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Service(e) => e.retry_after_secs(),
            Self::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::Unauthorized(_) => None,
        }
    }

    fn body(&self) -> ErrorBody {
        match self {
            Self::Service(e) => e.body(),
            _ => ErrorBody::new(self.code(), self.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        // For the audit log.
        resp.extensions_mut().insert(code);
        if let Self::Unauthorized(_) = &self {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status.is_server_error() {
            // Logged once, by the access-log middleware, which reads this.
            resp.extensions_mut()
                .insert(InternalDetail(self.to_string()));
        }
        resp
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        ApiError::Service(self).into_response()
    }
}

/// The full text of a 5xx error, for the log (never sent to the client).
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);
