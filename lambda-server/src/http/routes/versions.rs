//! The version routes of the API: `GET /1/lambdas/{id}/versions`,
//! `POST /1/lambdas/{id}/rollback`, `GET /1/lambdas/{id}/export`, `GET /1/lambdas/{id}/image`
//! `POST /1/lambdas/import` and `POST /1/gc`,
//! over [`crate::Platform`]'s version, export and garbage collection methods.

use crate::http::api::{
    Account, AppState, QueryResult, lambda_id, multipart_error, query, query_u64,
};
use crate::http::error::ApiError;
use crate::http::paths;
use crate::service::error::{Error, Result};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use lambda_core::api::{ErrorCode, RollbackRequest};

/// The version routes; `import` takes an export as large as the archive limit allows.
pub(crate) fn routes(max_upload_bytes: u64) -> axum::Router<AppState> {
    let upload_limit =
        DefaultBodyLimit::max(usize::try_from(max_upload_bytes).unwrap_or(usize::MAX));
    axum::Router::new()
        .route(paths::VERSIONS, get(versions))
        .route(paths::ROLLBACK, post(rollback))
        .route(paths::EXPORT, get(export))
        .route(paths::IMAGE, get(image))
        .route(paths::IMPORT, post(import).layer(upload_limit))
        .route(paths::GC, post(gc))
}

/// The image the lambda runs (42016 when there is none to give).
async fn image(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    Ok(Json(s.platform.image(&id, account).await?).into_response())
}

/// The lambda's current version as a zip of its archive and a manifest.
async fn export(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    let (file_name, zip) = s.platform.export(&id, account).await?;
    let file = format!("attachment; filename=\"{file_name}\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, file),
        ],
        zip,
    )
        .into_response())
}

/// What an import takes.
const WANTED: &str = "one part named \"archive\" (the zip of GET /1/lambdas/{id}/export)";

/// Makes a lambda again from an export (multipart, part `archive`; `export` is taken too), for
/// the caller's account.
async fn import(
    State(s): State<AppState>,
    Account(account): Account,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let account = Account(account).required("import a lambda")?;
    let _upload = s.begin_upload(req.headers())?;
    let mp = crate::http::request_body::multipart(req, &s).await;
    let export = s.within_upload_time(read_export_part(mp)).await?;
    let id = s.platform.import(account, export).await?;
    Ok(crate::http::api::created_lambda(id))
}

/// The one part of an import.
async fn read_export_part(
    mp: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<bytes::Bytes> {
    let mut mp = mp.map_err(|e| {
        Error::BadRequest(
            ErrorCode::BadContentType,
            format!("the body must be multipart/form-data with {WANTED} ({e})"),
        )
    })?;
    let mut export = None;
    while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
        if !matches!(field.name(), Some("archive" | "export")) || export.is_some() {
            return Err(Error::BadRequest(
                ErrorCode::BadRequest,
                format!("expected {WANTED}, got {:?}", field.name().unwrap_or("")),
            ));
        }
        export = Some(field.bytes().await.map_err(multipart_error)?);
    }
    export.ok_or_else(|| {
        Error::BadRequest(
            ErrorCode::BadRequest,
            format!("expected {WANTED}; it is missing"),
        )
    })
}

/// `POST /1/gc[?dry_run=1]`: one garbage collection (or what it would remove).
async fn gc(State(s): State<AppState>, q: QueryResult) -> Result<Response> {
    let dry_run = query_u64(&query(q)?, "dry_run", 0, 0, 1)? == 1;
    Ok(Json(s.platform.gc(dry_run).await?).into_response())
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
