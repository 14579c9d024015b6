//! The HTTP API of DESIGN.md §4 (axum): routes, request ids, account scoping, errors, the
//! OpenAPI document, and the proxy.

use crate::http::error::InternalDetail;
use crate::proxy::upstream::Upstreams;
use crate::service::error::{Error, Result};
use crate::service::platform::Platform;
use axum::body::Body;
use axum::extract::{
    DefaultBodyLimit, FromRequestParts, MatchedPath, Multipart, Path, Query, Request, State,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use lambda_core::api::{
    ACCOUNT_ID_HEADER, CreateResponse, Credentials, ErrorCode, LambdaList, LogsResponse,
    SwitchRequest, UpdateResponse, VersionInfo, VersionResponse,
};
use lambda_core::{LambdaId, Problem, ValidationReport};
use lambda_storage::{DocKind, ListQuery};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The platform's own headers (DESIGN.md §4), as parsed names: a `&str` name is parsed, checked
/// and hashed again at every lookup, and the proxy looks these up on every request.
pub(crate) mod names {
    use axum::http::HeaderName;

    /// `Luna-Request-Id`.
    pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("luna-request-id");
    /// `Luna-Account-Id`.
    pub(crate) static ACCOUNT_ID: HeaderName = HeaderName::from_static("luna-account-id");
    /// `Lambda-Version`.
    pub(crate) static LAMBDA_VERSION: HeaderName = HeaderName::from_static("lambda-version");

    #[cfg(test)]
    #[test]
    fn the_names_are_the_contracts() {
        use lambda_core::api::{ACCOUNT_ID_HEADER, LAMBDA_VERSION_HEADER, REQUEST_ID_HEADER};
        for (parsed, contract) in [
            (&REQUEST_ID, REQUEST_ID_HEADER),
            (&ACCOUNT_ID, ACCOUNT_ID_HEADER),
            (&LAMBDA_VERSION, LAMBDA_VERSION_HEADER),
        ] {
            assert_eq!(
                *parsed,
                HeaderName::from_bytes(contract.as_bytes()).unwrap()
            );
        }
    }
}

/// The settings of the HTTP edge (the API and the proxy), which the domain service does not
/// read: who may call, the uploads the API receives at once and how long one may take, the
/// proxy's connection pool to replicas.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Who may call the API (`[auth]`).
    pub auth: crate::http::auth::AuthSettings,
    /// Uploads received at once (`[limits] max_concurrent_uploads`, default 8).
    pub max_concurrent_uploads: usize,
    /// An upload's body must arrive within this (`[limits] upload_timeout_secs`, default 5 min).
    pub upload_timeout: Duration,
    /// The proxy's keep-alive connections to replicas (`[limits] proxy_*`).
    pub proxy_pool: crate::proxy::upstream::PoolConfig,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            auth: crate::http::auth::AuthSettings::default(),
            max_concurrent_uploads: 8,
            upload_timeout: Duration::from_secs(300),
            proxy_pool: crate::proxy::upstream::PoolConfig::default(),
        }
    }
}

/// Shared state of the router.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The platform.
    pub platform: Platform,
    /// The proxy's keep-alive connections to replicas.
    pub upstreams: Arc<Upstreams>,
    /// Largest create/update request body (the archive limit plus room for the JSON parts).
    pub max_upload_bytes: u64,
    /// Who may call (`[auth]`).
    pub auth: Arc<crate::http::auth::Auth>,
    /// Uploads being received (`[limits] max_concurrent_uploads`).
    uploads: Arc<tokio::sync::Semaphore>,
    /// How many may be (`[limits] max_concurrent_uploads`).
    max_concurrent_uploads: usize,
    /// How long one may take (`[limits] upload_timeout_secs`).
    upload_timeout: Duration,
    /// The audit log of writes.
    pub audit: Arc<crate::http::audit::Audit>,
}

impl AppState {
    /// State over a platform, with the edge's settings and the proxy's connection pool.
    pub fn new(platform: Platform, edge: EdgeSettings) -> Self {
        let max_upload_bytes = platform.config().limits.max_archive_bytes + 1024 * 1024;
        let upstreams = Upstreams::new(edge.proxy_pool);
        if tokio::runtime::Handle::try_current().is_ok() {
            upstreams.sweep_every(crate::proxy::upstream::SWEEP_INTERVAL);
        }
        let auth = crate::http::auth::Auth::new(edge.auth, platform.tokens());
        let max_concurrent_uploads = edge.max_concurrent_uploads.max(1);
        let uploads = Arc::new(tokio::sync::Semaphore::new(max_concurrent_uploads));
        let audit = crate::http::audit::Audit::new(platform.audit_store());
        Self {
            platform,
            upstreams,
            max_upload_bytes,
            auth,
            uploads,
            max_concurrent_uploads,
            upload_timeout: edge.upload_timeout,
            audit,
        }
    }

    /// Starts receiving an upload: 413 when its declared length is beyond the limit (before a
    /// byte of it is read), 429 when `max_concurrent_uploads` are being received. The permit is
    /// held while the handler runs.
    pub(crate) fn begin_upload(
        &self,
        headers: &HeaderMap,
    ) -> Result<tokio::sync::OwnedSemaphorePermit> {
        if let Some(n) = content_length(headers).filter(|n| *n > self.max_upload_bytes) {
            return Err(Error::BadRequest(
                ErrorCode::BodyTooLarge,
                format!(
                    "the request body is {n} bytes; at most {} are taken ([limits] max_archive_bytes plus 1 MiB for the other parts)",
                    self.max_upload_bytes
                ),
            ));
        }
        self.uploads.clone().try_acquire_owned().map_err(|_| {
            let max = self.max_concurrent_uploads;
            Error::TooManyRequests {
                detail: format!(
                    "the server is receiving {max} uploads already ([limits] max_concurrent_uploads); retry shortly"
                ),
                retry_after_secs: 1,
            }
        })
    }

    /// Reads an upload's body within `[limits] upload_timeout_secs` (408/12013 after it).
    pub(crate) async fn within_upload_time<T>(
        &self,
        read: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let limit = self.upload_timeout;
        tokio::time::timeout(limit, read).await.map_err(|_| {
            Error::BadRequest(
                ErrorCode::RequestTimeout,
                format!(
                    "the upload did not arrive within {} s ([limits] upload_timeout_secs)",
                    limit.as_secs()
                ),
            )
        })?
    }
}

/// A message's declared `Content-Length`.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The request id of a request (the client's, or `<unix seconds>,<uuid>`), set on the way in
/// (by the middleware, or the proxy's front) and sent back and on to the lambda as it is.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

pub use crate::http::openapi::{ROUTES, RouteDoc, openapi};

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    let upload_limit =
        DefaultBodyLimit::max(usize::try_from(state.max_upload_bytes).unwrap_or(usize::MAX));
    Router::new()
        .route("/version", get(version))
        .route("/healthcheck", get(healthcheck))
        .route("/metrics", get(metrics))
        .route("/docs/spec", get(spec))
        .route("/1/lambdas", get(list).post(create).layer(upload_limit))
        .route(
            "/1/lambdas/{lambda_id}",
            get(get_lambda)
                .put(update)
                .patch(switch)
                .delete(delete)
                .layer(upload_limit),
        )
        .route("/1/lambdas/{lambda_id}/status", get(status))
        .route("/1/lambdas/{lambda_id}/image/status", get(image_status))
        .route("/1/lambdas/{lambda_id}/image/logs", get(image_logs))
        .route("/1/lambdas/{lambda_id}/logs", get(logs))
        .route("/1/lambdas/{lambda_id}/docs", get(docs))
        .route("/1/lambdas/{lambda_id}/config", axum::routing::put(config))
        .route("/1/lambdas/{lambda_id}/metrics", get(lambda_metrics))
        .route("/1/lambdas/{lambda_id}/traffic", get(traffic))
        .merge(crate::http::console::routes())
        .merge(crate::http::routes::tasks::routes())
        .merge(crate::http::routes::tokens::routes())
        .merge(crate::http::audit::routes())
        .merge(crate::http::routes::versions::routes(
            state.max_upload_bytes,
        ))
        .route(crate::proxy::ROUTES[0], any(crate::proxy::route))
        .route(crate::proxy::ROUTES[1], any(crate::proxy::route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

async fn not_found(req: Request) -> Error {
    Error::BadRequest(
        ErrorCode::RouteNotFound,
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> Error {
    Error::BadRequest(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Request id in and out, the caller's token, metrics, and one log line per 5xx.
async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let rid = request_id(req.headers());
    req.extensions_mut().insert(RequestId(rid.clone()));
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let access = crate::http::auth::Access::of(matched);
    let route = route_name(matched);
    let method = method_name(req.method());
    let audited = crate::http::audit::audited(req.method(), matched);
    let authorized = authorize(&state, &mut req, access).await;
    let pending = audited.then(|| crate::http::audit::Pending::of(&req, route, method, &rid));
    let resp = match authorized {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    if let Some(p) = pending {
        state.audit.record(p.finish(&resp));
    }
    finish(&state, rid, route, method, started, resp)
}

/// Checks the request's token for `access` and keeps who it is for the handlers.
pub(crate) async fn authorize(
    state: &AppState,
    req: &mut Request,
    access: crate::http::auth::Access,
) -> Result<()> {
    if let Some(who) = state
        .auth
        .check(req.headers(), req.method(), access)
        .await?
    {
        req.extensions_mut().insert(who);
    }
    Ok(())
}

/// The client's request id when it sent a usable one (visible ASCII, 1 to 256 bytes), else a
/// new one.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&names::REQUEST_ID)
        .filter(|v| v.to_str().is_ok_and(|s| !s.is_empty() && s.len() <= 256))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::try_from(crate::proxy::new_request_id())
                .expect("a new request id is digits, a comma, hex digits and hyphens")
        })
}

/// What every answer gets on its way out: the request id header, the request metric, and one
/// log line (an error line for a 5xx, with its detail).
pub(crate) fn finish(
    state: &AppState,
    rid: HeaderValue,
    route: &'static str,
    method: &'static str,
    started: Instant,
    mut resp: Response,
) -> Response {
    let status = resp.status().as_u16();
    state.platform.metrics().request(route, method, status);
    let rid_text = rid.to_str().unwrap_or("");
    if let Some(InternalDetail(detail)) = resp.extensions().get::<InternalDetail>() {
        tracing::error!(request_id = %rid_text, %method, %route, status, error = %detail, "request failed");
    } else {
        tracing::debug!(request_id = %rid_text, %method, %route, status, ms = started.elapsed().as_millis() as u64, "request");
    }
    resp.headers_mut().insert(names::REQUEST_ID.clone(), rid);
    resp
}

/// The route template as a static string (the axum paths of [`ROUTES`]), for metrics.
fn route_name(matched: Option<&str>) -> &'static str {
    let Some(m) = matched else { return "unmatched" };
    ROUTES
        .iter()
        .map(|r| r.path)
        .chain(crate::proxy::ROUTES)
        .find(|p| *p == m)
        .unwrap_or("other")
}

pub(crate) fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The account a request acts for: its token's (a non-admin token), else `Luna-Account-Id`
/// when sent (none: every account).
pub(crate) struct Account(pub(crate) Option<uuid::Uuid>);

impl Account {
    /// The account, or a 400 saying the header is needed to `what` (e.g. "create a lambda").
    pub(crate) fn required(self, what: &str) -> Result<uuid::Uuid> {
        self.0.ok_or_else(|| {
            Error::BadRequest(
                ErrorCode::BadRequest,
                format!("header {ACCOUNT_ID_HEADER} (a UUID) is required to {what}"),
            )
        })
    }

    /// The account a request names, or a 400 when the header is not a UUID.
    pub(crate) fn of(headers: &HeaderMap) -> Result<Self> {
        match headers.get(&names::ACCOUNT_ID) {
            None => Ok(Account(None)),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
                .map(|u| Account(Some(u)))
                .ok_or_else(|| {
                    Error::BadRequest(
                        ErrorCode::BadRequest,
                        format!("header {ACCOUNT_ID_HEADER} must be a UUID"),
                    )
                }),
        }
    }

    /// The account of a request whose token (if any) was checked: a non-admin token's own
    /// (the check refused a header naming another), else the header's.
    pub(crate) fn resolve(
        headers: &HeaderMap,
        who: Option<&Arc<crate::http::auth::Principal>>,
    ) -> Result<Self> {
        let named = Self::of(headers)?;
        Ok(match who {
            Some(p) if !p.admin => Account(p.account),
            _ => named,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Account {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self> {
        Self::resolve(&parts.headers, parts.extensions.get())
    }
}

pub(crate) fn lambda_id(raw: &str) -> Result<LambdaId> {
    raw.parse().map_err(|_| {
        Error::BadRequest(
            ErrorCode::LambdaNotFound,
            format!("lambda {raw:?} not found: lambda ids are UUIDs"),
        )
    })
}

async fn version() -> Json<VersionResponse> {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap_or(0));
    Json(VersionResponse {
        version: VersionInfo {
            api: 1,
            major: parts.next().unwrap_or(0),
            minor: parts.next().unwrap_or(0),
            patch: parts.next().unwrap_or(0),
        },
    })
}

async fn healthcheck(State(s): State<AppState>) -> Response {
    let mut h = s.platform.health().await;
    h.detail = s.auth.open_warning().map(str::to_owned);
    let status = if h.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(h)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let text = s.platform.metrics().render(&s.platform.status_counts());
    (
        [(header::CONTENT_TYPE, crate::service::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// The OpenAPI document, made (schemas generated, then encoded) once per process.
async fn spec() -> Response {
    static SPEC: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let body = SPEC.get_or_init(|| Bytes::from(openapi().to_string()));
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

/// 201 `{"lambda_id"}`, with the lambda made for the audit log.
pub(crate) fn created_lambda(id: LambdaId) -> Response {
    (
        StatusCode::CREATED,
        axum::Extension(crate::http::audit::Made::Lambda(id)),
        Json(CreateResponse { lambda_id: id }),
    )
        .into_response()
}

/// The parts of a create/update request.
#[derive(Debug, Default)]
struct UploadParts {
    archive: Option<Bytes>,
    credentials: Option<Bytes>,
    parameters: Option<Bytes>,
}

/// A multipart body that could not be read: too large (413), or malformed (400).
pub(crate) fn multipart_error(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::BadRequest(
            ErrorCode::BodyTooLarge,
            format!("the request body is too large: {e}"),
        )
    } else {
        Error::BadRequest(
            ErrorCode::BadRequest,
            format!("the multipart body is malformed: {}", e.body_text()),
        )
    }
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
) -> Result<Response> {
    let account = Account(account).required("create a lambda")?;
    let _upload = s.begin_upload(req.headers())?;
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return create_from_image(s, account, req).await;
    }
    let mp = crate::http::request_body::multipart(req, &s).await;
    create_from_archive(s, account, mp).await
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
) -> Result<Response> {
    let id = lambda_id(&raw)?;
    let _upload = s.begin_upload(req.headers())?;
    let max = s.platform.config().limits.max_archive_bytes;
    let mp = crate::http::request_body::multipart(req, &s).await;
    let parts = s.within_upload_time(read_parts(mp, max)).await?;
    let mut report = ValidationReport::default();
    let creds = match &parts.credentials {
        Some(raw) => match parse_credentials(raw, &mut report)? {
            Some(c) => Some(c),
            None => return Err(Error::Invalid(report)),
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

pub(crate) fn query_u64(
    q: &HashMap<String, String>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                Error::BadRequest(
                    ErrorCode::BadQuery,
                    format!("query {key}={v:?} must be a number from {min} to {max}"),
                )
            }),
    }
}

/// A query string as the handlers take it (a rejection is reported by [`query`]).
pub(crate) type QueryResult =
    std::result::Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

pub(crate) fn query(q: QueryResult) -> Result<HashMap<String, String>> {
    let q = q
        .map(|Query(q)| q)
        .map_err(|e| Error::BadRequest(ErrorCode::BadQuery, format!("bad query string: {e}")))?;
    // The decoder replaces bytes that are not UTF-8 with U+FFFD: such a query is refused, not
    // read as something else.
    if let Some(key) = q
        .iter()
        .find(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
        .map(|(k, _)| k)
    {
        return Err(Error::BadRequest(
            ErrorCode::BadQuery,
            format!("query parameter {key:?} is not valid UTF-8 once percent-decoded"),
        ));
    }
    Ok(q)
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

pub(crate) fn json_error(e: axum::extract::rejection::JsonRejection) -> Error {
    use axum::extract::rejection::JsonRejection::*;
    match e {
        MissingJsonContentType(_) => Error::BadRequest(
            ErrorCode::BadContentType,
            format!("{e}; send Content-Type: application/json"),
        ),
        e => Error::BadRequest(ErrorCode::BadJson, e.body_text()),
    }
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
