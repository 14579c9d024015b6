//! The version routes of the API: `GET /1/lambdas/{id}/versions` and
//! `POST /1/lambdas/{id}/rollback`, over [`crate::Platform`]'s version methods.

use crate::api::{Account, AppState, lambda_id};
use crate::error::{Error, Result};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use lambda_core::api::{ErrorCode, RollbackRequest};

/// The version routes.
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/1/lambdas/{lambda_id}/versions", get(versions))
        .route("/1/lambdas/{lambda_id}/rollback", post(rollback))
}

async fn versions(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    Ok(Json(s.platform.versions(&id, account).await?).into_response())
}

/// The body is optional: none (or `{}`) goes back to the previous version.
async fn rollback(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
    body: Bytes,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    let req: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Error::BadRequest(
                ErrorCode::BadRequest,
                format!("the rollback body must be {{\"version\": N}}: {e}"),
            )
        })?
    };
    let done = s.platform.rollback(&id, account, req).await?;
    Ok((StatusCode::ACCEPTED, Json(done)).into_response())
}
