//! The token routes of the API (`/1/tokens...`, admin only when tokens are on), over
//! [`crate::http::auth::Auth`].

use crate::http::api::{AppState, json_error};
use crate::http::paths;
use crate::service::error::{Error, Result};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use lambda_core::api::ErrorCode;
use lambda_core::auth::{CreateTokenRequest, TokenList};

/// `/1/tokens`, `/1/tokens/{token_id}`.
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(paths::TOKENS, get(list).post(create))
        .route(paths::TOKEN, delete(revoke))
}

async fn create(
    State(s): State<AppState>,
    body: std::result::Result<Json<CreateTokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let Json(req) = body.map_err(json_error)?;
    let created = s.auth.create(req).await?;
    tracing::info!(token = %created.record.name, id = %created.record.token_id, admin = created.record.admin, scope = created.record.scope.as_str(), "token created");
    let made = axum::Extension(crate::http::audit::Made::Other(
        created.record.token_id.to_string(),
    ));
    Ok((StatusCode::CREATED, made, Json(created)).into_response())
}

async fn list(State(s): State<AppState>) -> Result<Response> {
    Ok(Json(TokenList {
        tokens: s.auth.list().await?,
    })
    .into_response())
}

async fn revoke(State(s): State<AppState>, Path(raw): Path<String>) -> Result<StatusCode> {
    let id = uuid::Uuid::parse_str(&raw).map_err(|_| {
        Error::BadRequest(
            ErrorCode::TokenNotFound,
            format!("token {raw:?} not found: token ids are UUIDs"),
        )
    })?;
    s.auth.revoke(&id).await?;
    tracing::info!(%id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
