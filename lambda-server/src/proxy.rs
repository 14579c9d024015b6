//! The proxy: `/1/lambdas/{lambda_id}/proxy[/...]` forwarded to one of the lambda's replicas.
//!
//! Every invocation crosses this code, so it is routed before the API's router and middleware
//! ([`Front`]): the path is split by hand, the request keeps its own header map (hop-by-hop
//! headers removed in place), the path and query go to the replica as they came (not decoded
//! and encoded again), the request id comes from a per-thread generator, and the exchange runs
//! on the proxy's own connection pool ([`crate::upstream`]) in the request's task. Bodies stream
//! both ways, never held: a request that did not reach a replica at all (it went away, or
//! closed the connection first) comes back whole from the pool and is sent once more to the
//! lambda's current endpoint.

use crate::api::{Account, AppState, RequestId};
use crate::error::{Error, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lambda_core::LambdaId;
use lambda_core::api::{ErrorCode, LAMBDA_VERSION_HEADER, REQUEST_ID_HEADER};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), and `Host`
/// (the replica's is set).
const HOP_BY_HOP: [header::HeaderName; 9] = [
    header::CONNECTION,
    header::HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// The metric labels of the two proxy routes.
pub(crate) const ROUTES: [&str; 2] = [
    "/1/lambdas/{lambda_id}/proxy",
    "/1/lambdas/{lambda_id}/proxy/{*path}",
];

/// The lambda id (raw) and the path after `/proxy` (empty or starting with `/`) of a proxy path.
pub(crate) fn target(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/1/lambdas/")?;
    let (id, rest) = rest.split_once('/')?;
    let suffix = rest.strip_prefix("proxy")?;
    (suffix.is_empty() || suffix.starts_with('/')).then_some((id, suffix))
}

/// A new request id, `<unix seconds>,<uuid v4>`, from a per-thread generator (no system call
/// per request; ids need to be unique, not secret).
pub(crate) fn new_request_id() -> String {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0 | 1);
    }
    let next = || {
        STATE.with(|s| {
            // splitmix64
            let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(x);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&next().to_le_bytes());
    bytes[8..].copy_from_slice(&next().to_le_bytes());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Written without `format!`: its machinery costs more than the rest of the id.
    let mut out = String::with_capacity(20 + 1 + uuid::fmt::Hyphenated::LENGTH);
    out.push_str(itoa::Buffer::new().format(secs));
    out.push(',');
    out.push_str(
        id.hyphenated()
            .encode_lower(&mut [0u8; uuid::fmt::Hyphenated::LENGTH]),
    );
    out
}

/// The server's service: proxy paths go straight to [`proxied`] on the connection's own thread,
/// everything else to the API's router on the platform's runtime.
#[derive(Debug, Clone)]
pub struct Front {
    router: axum::Router,
    state: AppState,
    platform_runtime: tokio::runtime::Handle,
}

impl Front {
    /// The API of `state` with the proxy in front; API requests run on `platform_runtime`.
    pub fn new(state: AppState, platform_runtime: tokio::runtime::Handle) -> Self {
        Self {
            router: crate::api::router(state.clone()),
            state,
            platform_runtime,
        }
    }
}

impl tower_service::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if target(req.uri().path()).is_some() {
            let state = self.state.clone();
            Box::pin(async move { Ok(proxied(state, req).await) })
        } else {
            let api = self
                .platform_runtime
                .spawn(tower_service::Service::call(&mut self.router.clone(), req));
            Box::pin(async move {
                Ok(match api.await {
                    Ok(Ok(resp)) => resp,
                    Err(e) => Error::Internal(format!("the request's handler failed: {e}"))
                        .into_response(),
                })
            })
        }
    }
}

/// A proxy request from the front: request id, forwarding, metrics and the log of a failure (what
/// the API's middleware does for its routes).
async fn proxied(state: AppState, mut req: Request) -> Response {
    let started = Instant::now();
    let rid = crate::api::request_id(req.headers());
    let route = match target(req.uri().path()) {
        Some((_, "")) => ROUTES[0],
        _ => ROUTES[1],
    };
    let method = crate::api::method_name(req.method());
    req.extensions_mut().insert(RequestId(rid.clone()));
    let resp = async {
        crate::api::authorize(&state, &mut req, crate::auth::Access::Proxy).await?;
        forward(&state, req).await
    }
    .await
    .unwrap_or_else(|e| e.into_response());
    crate::api::finish(&state, rid, route, method, started, resp)
}

/// The router's proxy routes (the same forwarding, for a router used without [`Front`]).
pub(crate) async fn route(State(state): State<AppState>, req: Request) -> Result<Response> {
    forward(&state, req).await
}

/// Forwards a proxy request to a replica of its lambda and answers the replica's response; the
/// requests of a lambda the caller may reach are counted in its traffic.
async fn forward(s: &AppState, req: Request) -> Result<Response> {
    let started = Instant::now();
    let (raw, suffix) = target(req.uri().path()).ok_or_else(|| {
        Error::BadRequest(ErrorCode::RouteNotFound, "not a proxy path".to_owned())
    })?;
    let id = crate::api::lambda_id(raw)?;
    let account = Account::resolve(req.headers(), req.extensions().get())?.0;
    let (route, endpoint, counted) = s.platform.admit(&id, account).await?;
    if route.lambda_type == lambda_core::LambdaType::Tasks && suffix.starts_with("/tasks/") {
        // The platform's own calls into a tasks lambda; tasks start with POST /1/tasks.
        return Err(Error::BadRequest(
            ErrorCode::RouteNotFound,
            format!("{suffix} of a tasks lambda is not proxied; start a task with POST /1/tasks"),
        ));
    }
    let path_and_query = match req.uri().query() {
        Some(q) if suffix.is_empty() => format!("/?{q}"),
        Some(q) => format!("{suffix}?{q}"),
        None if suffix.is_empty() => "/".to_owned(),
        None => suffix.to_owned(),
    };
    let answer = send(s, req, path_and_query, &id, account, &route, endpoint).await;
    let status = match &answer {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.code().http_status(),
    };
    s.platform.traffic().record(&id, started.elapsed(), status);
    match counted {
        // A scaling lambda's request counts in its load until its answer has been sent.
        Some(counted) => answer.map(|r| {
            r.map(|body| {
                Body::new(Counted {
                    body,
                    _counted: counted,
                })
            })
        }),
        None => answer,
    }
}

/// A response body that keeps its request counted in the lambda's load while it streams.
struct Counted {
    body: Body,
    _counted: crate::platform::InFlight,
}

impl hyper::body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Sends a proxy request on to `endpoint` (once more to the current one when nothing reached
/// the replica) and answers its response within the proxy timeout.
async fn send(
    s: &AppState,
    req: Request,
    path_and_query: String,
    id: &LambdaId,
    account: Option<uuid::Uuid>,
    route: &crate::platform::Route,
    endpoint: String,
) -> Result<Response> {
    let rid = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let (mut parts, body) = req.into_parts();
    parts.uri = path_and_query.parse().map_err(|e| {
        Error::BadRequest(
            ErrorCode::BadRequest,
            format!("cannot forward this path: {e}"),
        )
    })?;
    strip_hop_by_hop(&mut parts.headers);
    if s.auth.enabled() {
        // The platform's token is the platform's: the lambda never sees it.
        parts.headers.remove(header::AUTHORIZATION);
    }
    if let Some(v) = rid {
        parts.headers.insert(REQUEST_ID_HEADER, v);
    }
    let timeout = s.platform.config().proxy_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let request = Request::from_parts(parts, body);
    let answer = tokio::time::timeout_at(deadline, async {
        match s.upstreams.send(&endpoint, request).await {
            Err((_, Some(request))) => {
                // Nothing reached the replica: it went away (e.g. an update just switched
                // replicas) or closed the connection first. Once more, to the current endpoint.
                s.upstreams.forget(&endpoint);
                let (_, endpoint) = s.platform.route(id, account).await?;
                Ok(s.upstreams.send(&endpoint, request).await)
            }
            other => Ok(other),
        }
    })
    .await;
    let mut resp = match answer {
        Err(_) => return Err(Error::LambdaTimeout(*id, timeout)),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err((_, Some(_))))) => return Err(Error::NotRunning(*id)),
        Ok(Ok(Err((e, None)))) => {
            return Err(Error::Internal(format!("proxying to lambda {id}: {e}")));
        }
        Ok(Ok(Ok(r))) => r,
    };
    let h = resp.headers_mut();
    strip_hop_by_hop(h);
    // The runtime says which version answered (during an update, possibly the previous one);
    // only when it did not is the record's version reported.
    if !h.contains_key(LAMBDA_VERSION_HEADER) {
        h.insert(LAMBDA_VERSION_HEADER, HeaderValue::from(route.version));
    }
    whole_if_small(resp, deadline).await.map_err(|e| match e {
        Some(e) => Error::Internal(format!("the answer of lambda {id} broke off: {e}")),
        None => Error::LambdaTimeout(*id, timeout),
    })
}

/// Answers whose declared length is at most this are read whole before they are sent on, so
/// that the client gets head and body in one write (as nginx's buffering does); larger or
/// unsized ones stream.
const WHOLE_BODY_MAX: u64 = 16 * 1024;

/// A small answer, read whole (its head and body then leave in one write), or the answer as it
/// is; `Err(None)` when the deadline passes first.
async fn whole_if_small(
    resp: Response,
    deadline: tokio::time::Instant,
) -> std::result::Result<Response, Option<axum::Error>> {
    let small = crate::api::content_length(resp.headers()).is_some_and(|n| n <= WHOLE_BODY_MAX);
    if !small {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let read = axum::body::to_bytes(body, WHOLE_BODY_MAX as usize);
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(bytes)) => Ok(Response::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// Removes hop-by-hop headers, and those the `Connection` header names, and `Content-Length`
/// when the message is chunked.
fn strip_hop_by_hop(h: &mut axum::http::HeaderMap) {
    let named: Vec<header::HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| header::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_are_split_by_hand() {
        assert_eq!(target("/1/lambdas/abc/proxy"), Some(("abc", "")));
        assert_eq!(target("/1/lambdas/abc/proxy/"), Some(("abc", "/")));
        assert_eq!(
            target("/1/lambdas/abc/proxy/a/%20b"),
            Some(("abc", "/a/%20b"))
        );
        assert_eq!(target("/1/lambdas/abc/proxyx"), None);
        assert_eq!(target("/1/lambdas/abc/status"), None);
        assert_eq!(target("/1/lambdas/abc"), None);
        assert_eq!(target("/1/tasks/abc/proxy"), None);
    }

    #[test]
    fn request_ids_are_unique_v4_uuids_after_the_time() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            let (secs, uuid) = id.split_once(',').unwrap();
            assert!(secs.parse::<u64>().unwrap() > 1_700_000_000);
            assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::HOST, HeaderValue::from_static("server"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::CONTENT_TYPE));
    }
}
