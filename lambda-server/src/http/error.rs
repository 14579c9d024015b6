//! [`Error`] as an HTTP answer: its status, its JSON body and headers, mapped once, here.

use crate::service::error::Error;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code().http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        // For the audit log.
        resp.extensions_mut().insert(self.code());
        if let Self::Unauthorized(_) = &self {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        if status.is_server_error() {
            // Logged once, by the access-log middleware, which reads this.
            resp.extensions_mut()
                .insert(InternalDetail(self.to_string()));
        }
        resp
    }
}

/// The full text of a 5xx error, for the log (never sent to the client).
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);
