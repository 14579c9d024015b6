//! The lambdas' own routes: `/1/lambdas` and `/1/lambdas/{lambda_id}/...` (create, update,
//! list, read, switch, delete, status, logs, docs, config, metrics, traffic).

use crate::http::api::{
    Account, AppState, created_lambda, json_error, lambda_id, multipart_error, query, query_u64,
};
use crate::http::error::ApiError;
use crate::http::paths;
use crate::proxy::upstream::Upstreams;
use crate::service::error::{Error, Result};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use lambda_core::api::{
    Credentials, ErrorCode, LambdaList, LogsResponse, SwitchRequest, UpdateResponse,
};
use lambda_core::{Problem, ValidationReport};
use lambda_storage::{DocKind, ListQuery};
use std::collections::HashMap;
use std::sync::Arc;

/// The routes, the create and update ones under the upload body limit.
pub(crate) fn routes(upload_limit: DefaultBodyLimit) -> Router<AppState> {
    Router::new()
        .route(paths::LAMBDAS, get(list).post(create).layer(upload_limit))
        .route(
            paths::LAMBDA,
            get(get_lambda)
                .put(update)
                .patch(switch)
                .delete(delete)
                .layer(upload_limit),
        )
        .route(paths::STATUS, get(status))
        .route(paths::IMAGE_STATUS, get(image_status))
        .route(paths::IMAGE_LOGS, get(image_logs))
        .route(paths::LOGS, get(logs))
        .route(paths::DOCS, get(docs))
        .route(paths::CONFIG, axum::routing::put(config))
        .route(paths::LAMBDA_METRICS, get(lambda_metrics))
        .route(paths::TRAFFIC, get(traffic))
}

/// The parts of a create/update request.
#[derive(Debug, Default)]
struct UploadParts {
    archive: Option<Bytes>,
    credentials: Option<Bytes>,
    parameters: Option<Bytes>,
}

async fn read_parts(
    mp: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
    max_archive: u64,
) -> Result<UploadParts> {
    let mut mp = mp.map_err(|e| {
        Error::BadRequest(
            ErrorCode::BadContentType,
            format!("the body must be multipart/form-data with the parts archive, credentials and parameters ({e})"),
        )
    })?;
    let mut parts = UploadParts::default();
    let field_err = multipart_error;
    while let Some(mut field) = mp.next_field().await.map_err(field_err)? {
        let name = field.name().unwrap_or("").to_owned();
        let slot = match name.as_str() {
            "archive" => &mut parts.archive,
            "credentials" => &mut parts.credentials,
            "parameters" => &mut parts.parameters,
            other => {
                return Err(Error::BadRequest(
                    ErrorCode::BadRequest,
                    format!(
                        "unknown multipart part {other:?}; expected archive, credentials, parameters"
                    ),
                ));
            }
        };
        if slot.is_some() {
            return Err(Error::BadRequest(
                ErrorCode::BadRequest,
                format!("part {name:?} is sent twice"),
            ));
        }
        let limit = if name == "archive" {
            max_archive
        } else {
            1024 * 1024
        };
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(field_err)? {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(Error::BadRequest(
                    ErrorCode::BodyTooLarge,
                    format!(
                        "part {name:?} is larger than {limit} bytes (setting limits.max_archive_bytes)"
                    ),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        *slot = Some(buf.freeze());
    }
    Ok(parts)
}

/// Parses `credentials`; semantic problems become validation problems.
fn parse_credentials(raw: &Bytes, report: &mut ValidationReport) -> Result<Option<Credentials>> {
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|e| {
        Error::BadRequest(
            ErrorCode::BadJson,
            format!("part \"credentials\" is not valid JSON: {e}"),
        )
    })?;
    let name = value.get("lambda_name").and_then(|v| v.as_str());
    let ty = value
        .get("lambda_type")
        .and_then(|v| v.as_str())
        .unwrap_or("standalone");
    let mut ok = true;
    match name.map(lambda_core::LambdaName::parse) {
        None => {
            ok = false;
            report.push(Problem::error(
                "credentials.lambda_name",
                "credentials.lambda_name",
                "lambda_name is required",
            ));
        }
        Some(Err(e)) => {
            ok = false;
            report.push(Problem::error(
                "credentials.lambda_name",
                "credentials.lambda_name",
                e.to_string(),
            ));
        }
        Some(Ok(_)) => {}
    }
    if let Err(e) = ty.parse::<lambda_core::LambdaType>() {
        ok = false;
        report.push(Problem::error(
            "credentials.lambda_type",
            "credentials.lambda_type",
            e.to_string(),
        ));
    }
    if let Some(extra) = value.as_object().and_then(|o| {
        o.keys()
            .find(|k| *k != "lambda_name" && *k != "lambda_type")
    }) {
        ok = false;
        report.push(Problem::error(
            "credentials.unknown_field",
            format!("credentials.{extra}"),
            format!("unknown field {extra:?}; credentials hold lambda_name and lambda_type"),
        ));
    }
    if !ok {
        return Ok(None);
    }
    Ok(Some(Credentials {
        lambda_name: lambda_core::LambdaName::parse(name.unwrap_or_default())
            .map_err(|e| Error::Internal(e.to_string()))?,
        lambda_type: ty
            .parse()
            .map_err(|e: lambda_core::Error| Error::Internal(e.to_string()))?,
    }))
}

/// `POST /1/lambdas`: multipart (an archive), or JSON with `import_image` (an image built
/// elsewhere).
async fn create(
    State(s): State<AppState>,
    Account(account): Account,
    req: Request,
) -> Result<Response, ApiError> {
    let account = Account(account).required("create a lambda")?;
    let _upload = s.begin_upload(req.headers())?;
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return Ok(create_from_image(s, account, req).await?);
    }
    let mp = crate::http::request_body::multipart(req, &s).await;
    Ok(create_from_archive(s, account, mp).await?)
}

/// `POST /1/lambdas` with `{"credentials", "parameters", "import_image"}`: no archive, no build.
async fn create_from_image(s: AppState, account: uuid::Uuid, req: Request) -> Result<Response> {
    let body = axum::body::to_bytes(req.into_body(), 1024 * 1024)
        .await
        .map_err(|e| {
            Error::BadRequest(ErrorCode::BodyTooLarge, format!("reading the body: {e}"))
        })?;
    // JSON without `import_image` is not a create this route knows: say what it takes.
    let value = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .filter(|v| v.get("import_image").is_some())
        .ok_or_else(|| {
            Error::BadRequest(
                ErrorCode::BadContentType,
                "the body must be multipart/form-data (parts archive, credentials, parameters), or JSON with import_image to create from an image".into(),
            )
        })?;
    let body: lambda_core::api::ImportImageRequest =
        serde_json::from_value(value).map_err(|e| {
            Error::BadRequest(
                ErrorCode::BadJson,
                format!(
                    "a JSON create is {{\"credentials\": {{\"lambda_name\", \"lambda_type\"}}, \"parameters\": {{...}}, \"import_image\": \"<image reference>\"}}: {e}"
                ),
            )
        })?;
    let raw_creds = Bytes::from(body.credentials.to_string());
    let mut report = ValidationReport::default();
    let Some(creds) = parse_credentials(&raw_creds, &mut report)? else {
        return Err(Error::Invalid(report));
    };
    let params = body.parameters.map(|p| Bytes::from(p.to_string()));
    let id = s
        .platform
        .create_from_image(account, creds, params, body.import_image)
        .await?;
    Ok(created_lambda(id))
}

/// `POST /1/lambdas` with a multipart body: the archive, credentials and parameters.
async fn create_from_archive(
    s: AppState,
    account: uuid::Uuid,
    mp: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response> {
    let max = s.platform.config().limits.max_archive_bytes;
    let parts = s.within_upload_time(read_parts(mp, max)).await?;
    let archive = parts.archive.ok_or_else(|| {
        Error::BadRequest(
            ErrorCode::BadRequest,
            "part \"archive\" (the lambda's zip) is missing".into(),
        )
    })?;
    let raw_creds = parts.credentials.ok_or_else(|| {
        Error::BadRequest(
            ErrorCode::BadRequest,
            "part \"credentials\" ({\"lambda_name\", \"lambda_type\"}) is missing".into(),
        )
    })?;
    let mut report = ValidationReport::default();
    let creds = parse_credentials(&raw_creds, &mut report)?;
    let Some(creds) = creds else {
        // Report the credentials' problems together with the archive's and the parameters'.
        let ty = serde_json::from_slice::<serde_json::Value>(&raw_creds)
            .ok()
            .and_then(|v| v.get("lambda_type")?.as_str()?.parse().ok())
            .unwrap_or(lambda_core::LambdaType::Standalone);
        if let Err(Error::Invalid(r)) = s.platform.check(archive, parts.parameters, ty).await {
            report.extend(r);
        }
        return Err(Error::Invalid(report));
    };
    let id = s
        .platform
        .create(account, creds, parts.parameters, archive)
        .await?;
    Ok(created_lambda(id))
}

async fn update(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
    req: Request,
) -> Result<Response, ApiError> {
    let id = lambda_id(&raw)?;
    let _upload = s.begin_upload(req.headers())?;
    let max = s.platform.config().limits.max_archive_bytes;
    let mp = crate::http::request_body::multipart(req, &s).await;
    let parts = s.within_upload_time(read_parts(mp, max)).await?;
    let mut report = ValidationReport::default();
    let creds = match &parts.credentials {
        Some(raw) => match parse_credentials(raw, &mut report)? {
            Some(c) => Some(c),
            None => return Err(Error::Invalid(report).into()),
        },
        None => None,
    };
    let version = s
        .platform
        .update(&id, account, creds, parts.parameters, parts.archive)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(UpdateResponse {
            lambda_id: id,
            lambda_version: version,
        }),
    )
        .into_response())
}

async fn list(
    State(s): State<AppState>,
    Account(account): Account,
    q: std::result::Result<
        Query<HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<LambdaList>> {
    let q = query(q)?;
    if let Some(k) = q
        .keys()
        .find(|k| !["page", "page_size", "lambda_name", "namespace"].contains(&k.as_str()))
    {
        return Err(Error::BadRequest(
            ErrorCode::BadQuery,
            format!("unknown query parameter {k:?}; use page, page_size, lambda_name, namespace"),
        ));
    }
    let query = ListQuery {
        account_id: account,
        lambda_name: q.get("lambda_name").cloned(),
        namespace: q.get("namespace").cloned(),
        page: query_u64(&q, "page", 1, 1, u64::MAX)?,
        page_size: query_u64(&q, "page_size", 100, 1, 1000)?,
    };
    let (lambdas, count) = s.platform.list(&query).await?;
    Ok(Json(LambdaList { lambdas, count }))
}

async fn get_lambda(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    Ok(Json(s.platform.get(&lambda_id(&raw)?, account).await?).into_response())
}

async fn switch(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
    body: std::result::Result<Json<SwitchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    let Json(req) = body.map_err(json_error)?;
    Ok(Json(s.platform.switch(&id, account, req.alive).await?).into_response())
}

async fn delete(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<StatusCode> {
    s.platform.delete(&lambda_id(&raw)?, account).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn traffic(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Json<crate::service::traffic::TrafficResponse>> {
    let id = lambda_id(&raw)?;
    s.platform.get(&id, account).await?;
    Ok(Json(s.platform.traffic().window(&id)))
}

async fn status(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    Ok(Json(s.platform.status(&lambda_id(&raw)?, account).await?).into_response())
}

async fn image_status(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    Ok(Json(s.platform.image_status(&lambda_id(&raw)?, account).await?).into_response())
}

async fn image_logs(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
    q: std::result::Result<
        Query<HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    let follow = query_u64(&query(q)?, "follow", 0, 0, 1)? == 1;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if follow {
        let stream = s.platform.follow_build_log(&id, account).await?;
        let body = Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>));
        return Ok((text_plain, body).into_response());
    }
    Ok((text_plain, s.platform.build_log(&id, account).await?).into_response())
}

async fn logs(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
    q: std::result::Result<
        Query<HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<LogsResponse>> {
    let id = lambda_id(&raw)?;
    let q = query(q)?;
    let tail = match q.get("tail") {
        Some(_) => Some(query_u64(&q, "tail", 100, 0, 1_000_000)? as usize),
        None => None,
    };
    Ok(Json(LogsResponse {
        logs: s.platform.runtime_logs(&id, account, tail).await?,
    }))
}

async fn docs(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
    headers: HeaderMap,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/html")
        .to_ascii_lowercase();
    let (kind, ctype) = if accept.contains("yaml") || accept.contains("yml") {
        (DocKind::Yaml, "application/x-yaml")
    } else {
        (DocKind::Html, "text/html; charset=utf-8")
    };
    match s.platform.docs(&id, account, kind).await? {
        Some(body) => Ok(([(header::CONTENT_TYPE, ctype)], body).into_response()),
        None => Err(Error::BadRequest(
            ErrorCode::RouteNotFound,
            format!(
                "lambda {id} has no docs (docs/lambda.html and docs/lambda.yml in its archive)"
            ),
        )),
    }
}

async fn config(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
    body: Bytes,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(
            ErrorCode::BadJson,
            format!("the user config is not valid JSON: {e}"),
        )
    })?;
    let value = if value.is_null() { None } else { Some(value) };
    let version = s.platform.set_config(&id, account, value).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(UpdateResponse {
            lambda_id: id,
            lambda_version: version,
        }),
    )
        .into_response())
}

/// Largest `/metrics` text read from one replica.
const REPLICA_METRICS_MAX_BYTES: usize = 16 * 1024 * 1024;

async fn lambda_metrics(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Account(account): Account,
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    let replicas = s.platform.replica_endpoints(&id, account).await?;
    let timeout = s.platform.config().proxy_timeout;
    let fetches = replicas.into_iter().map(|(name, base)| {
        let upstreams = Arc::clone(&s.upstreams);
        async move {
            let text = replica_metrics_text(&upstreams, &base, timeout).await;
            (name, text)
        }
    });
    let texts = futures::future::join_all(fetches).await;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::proxy::replica_metrics::merge(&texts),
    )
        .into_response())
}

/// One replica's `/metrics`, or why it has none.
async fn replica_metrics_text(
    upstreams: &Arc<Upstreams>,
    endpoint: &str,
    timeout: std::time::Duration,
) -> std::result::Result<String, String> {
    let req = Request::get("/metrics")
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let resp = match tokio::time::timeout(timeout, upstreams.send(endpoint, req)).await {
        Err(_) => return Err(format!("no answer within {}s", timeout.as_secs())),
        Ok(Err((e, _))) => return Err(e.to_string()),
        Ok(Ok(r)) => r,
    };
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let body = axum::body::to_bytes(Body::new(resp.into_body()), REPLICA_METRICS_MAX_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
}
