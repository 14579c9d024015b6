//! The task routes of the API (`/1/tasks...`), over [`crate::Platform`]'s task methods.

use crate::http::api::{Account, AppState, QueryResult, json_error, query, query_u64};
use crate::http::paths;
use crate::service::error::{Error, Result};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lambda_core::api::{CreateTask, ErrorCode, TaskCreated, TaskStatus};

/// `/1/tasks`, `/1/tasks/{task_id}`, `.../result`, `.../errors`.
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(paths::TASKS, get(list).post(create))
        .route(paths::TASK, get(get_task).patch(cancel).delete(delete))
        .route(paths::TASK_RESULT, get(result))
        .route(paths::TASK_ERRORS, get(errors))
}

fn task_id(raw: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(raw).map_err(|_| {
        Error::BadRequest(
            ErrorCode::TaskNotFound,
            format!("task {raw:?} not found: task ids are UUIDs"),
        )
    })
}

async fn create(
    State(s): State<AppState>,
    Account(account): Account,
    body: std::result::Result<Json<CreateTask>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let Json(req) = body.map_err(json_error)?;
    let task_id = s.platform.create_task(account, req).await?;
    let made = axum::Extension(crate::http::audit::Made::Other(task_id.to_string()));
    Ok((StatusCode::CREATED, made, Json(TaskCreated { task_id })).into_response())
}

async fn list(
    State(s): State<AppState>,
    Account(account): Account,
    q: QueryResult,
) -> Result<Response> {
    let q = query(q)?;
    const KNOWN: [&str; 4] = ["lambda_id", "status", "page", "page_size"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Error::BadRequest(
            ErrorCode::BadQuery,
            format!("unknown query parameter {k:?}; use {}", KNOWN.join(", ")),
        ));
    }
    let lambda_id = match q.get("lambda_id") {
        None => None,
        Some(raw) => Some(raw.parse().map_err(|_| {
            Error::BadRequest(
                ErrorCode::BadQuery,
                format!("query parameter lambda_id={raw:?} is not a lambda id"),
            )
        })?),
    };
    let status = match q.get("status") {
        None => None,
        Some(raw) => Some(raw.parse::<TaskStatus>().map_err(|e| {
            Error::BadRequest(ErrorCode::BadQuery, format!("query parameter status: {e}"))
        })?),
    };
    let page = query_u64(&q, "page", 1, 1, u64::MAX)?;
    let page_size = query_u64(&q, "page_size", 100, 1, 1000)?;
    let list = s
        .platform
        .list_tasks(account, lambda_id, status, page, page_size)
        .await?;
    Ok(Json(list).into_response())
}

async fn get_task(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    Ok(Json(s.platform.get_task(&task_id(&raw)?, account).await?).into_response())
}

/// `PATCH /1/tasks/{id}` `{"status": "cancelled"}`: the only change a task takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    status: TaskStatus,
}

async fn cancel(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
    body: std::result::Result<Json<Patch>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let id = task_id(&raw)?;
    let Json(patch) = body.map_err(json_error)?;
    if patch.status != TaskStatus::Cancelled {
        return Err(Error::BadRequest(
            ErrorCode::BadJson,
            format!(
                "a task can only be cancelled: send {{\"status\": \"cancelled\"}}, not {:?}",
                patch.status.as_str()
            ),
        ));
    }
    let task = s
        .platform
        .cancel_task(&id, account, "cancelled by request")
        .await?;
    Ok(Json(task).into_response())
}

async fn delete(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    s.platform.delete_task(&task_id(&raw)?, account).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn result(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    Ok(Json(s.platform.task_result(&task_id(&raw)?, account).await?).into_response())
}

async fn errors(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    Ok(Json(s.platform.task_errors(&task_id(&raw)?, account).await?).into_response())
}
