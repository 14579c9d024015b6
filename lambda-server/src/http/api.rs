//! The HTTP API of DESIGN.md §4 (axum): routes, request ids, account scoping, errors, the
//! OpenAPI document, and the proxy.

use crate::http::error::{ApiError, InternalDetail};
use crate::http::paths;
use crate::proxy::upstream::Upstreams;
use crate::service::error::{Error, Result};
use crate::service::platform::Platform;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use bytes::Bytes;
use lambda_core::LambdaId;
use lambda_core::api::{
    ACCOUNT_ID_HEADER, CreateResponse, ErrorCode, VersionInfo, VersionResponse,
};
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
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        if let Some(n) = content_length(headers).filter(|n| *n > self.max_upload_bytes) {
            return Err(Error::BadRequest(
                ErrorCode::BodyTooLarge,
                format!(
                    "the request body is {n} bytes; at most {} are taken ([limits] max_archive_bytes plus 1 MiB for the other parts)",
                    self.max_upload_bytes
                ),
            )
            .into());
        }
        self.uploads.clone().try_acquire_owned().map_err(|_| {
            let max = self.max_concurrent_uploads;
            ApiError::TooManyRequests {
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
        .route(paths::VERSION, get(version))
        .route(paths::HEALTHCHECK, get(healthcheck))
        .route(paths::METRICS, get(metrics))
        .route(paths::SPEC, get(spec))
        .merge(crate::http::routes::lambdas::routes(upload_limit))
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
) -> Result<(), ApiError> {
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
