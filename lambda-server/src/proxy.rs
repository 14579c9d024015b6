//! The proxy: `/1/lambdas/{lambda_id}/proxy[/...]` forwarded to one of the lambda's replicas.
//!
//! Every invocation crosses this code, so it is routed before the API's router and middleware
//! ([`Front`]): the path is split by hand, the request keeps its own header map (hop-by-hop
//! headers removed in place), the path and query go to the replica as they came (not decoded
//! and encoded again), the request id comes from a per-thread generator, and the exchange runs
//! on the proxy's own connection pool ([`crate::proxy::upstream`]) in the request's task. Bodies stream
//! both ways, never held: a request that did not reach a replica at all (it went away, or
//! closed the connection first) comes back whole from the pool and is sent once more to the
//! lambda's current endpoint.

pub mod replica_client;
pub mod replica_metrics;
pub mod upstream;

pub use replica_client::ReplicaClient;

use crate::http::api::{Account, AppState, RequestId, names};
use crate::service::error::{Error, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lambda_core::LambdaId;
use lambda_core::api::ErrorCode;
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), and `Host`
/// (the replica's is set).
static HOP_BY_HOP: [header::HeaderName; 9] = [
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

/// The place of a (lowercase) header name in [`HOP_BY_HOP`]: one match on the name, where
/// comparing it with each of them costs a comparison per pair.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-authenticate" => 2,
        "proxy-authorization" => 3,
        "te" => 4,
        "trailer" => 5,
        "transfer-encoding" => 6,
        "upgrade" => 7,
        "host" => 8,
        _ => return None,
    })
}

/// The metric labels of the two proxy routes.
pub(crate) const ROUTES: [&str; 2] = [crate::http::paths::PROXY, crate::http::paths::PROXY_PATH];

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

/// The server's service: proxy paths go straight to `proxied` on the connection's own thread,
/// everything else to the API's router on the platform's runtime.
#[derive(Debug, Clone)]
pub struct Front {
    router: axum::Router,
    /// Shared by every proxied request (one reference count, where the state has several).
    state: std::sync::Arc<AppState>,
    platform_runtime: tokio::runtime::Handle,
}

impl Front {
    /// The API of `state` with the proxy in front; API requests run on `platform_runtime`.
    pub fn new(state: AppState, platform_runtime: tokio::runtime::Handle) -> Self {
        Self {
            router: crate::http::api::router(state.clone()),
            state: std::sync::Arc::new(state),
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
        self.handle(req)
    }
}

impl Front {
    /// [`tower_service::Service::call`] on a shared front (a connection's service needs no copy
    /// of it per request).
    pub(crate) fn handle(&self, req: Request) -> <Self as tower_service::Service<Request>>::Future {
        if let Some((_, suffix)) = target(req.uri().path()) {
            let route = if suffix.is_empty() {
                ROUTES[0]
            } else {
                ROUTES[1]
            };
            Box::pin(proxied(self.state.clone(), route, req))
        } else {
            let req = crate::http::request_body::Drained::wrap(req);
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

/// A proxy request from the front (`route`: its metric label): request id, forwarding, metrics
/// and the log of a failure (what the API's middleware does for its routes). The service's future
/// itself (never an error), so that no wrapper moves it once more.
async fn proxied(
    state: std::sync::Arc<AppState>,
    route: &'static str,
    mut req: Request,
) -> Result<Response, Infallible> {
    let started = Instant::now();
    let rid = crate::http::api::request_id(req.headers());
    let method = crate::http::api::method_name(req.method());
    let resp =
        match crate::http::api::authorize(&state, &mut req, crate::http::auth::Access::Proxy).await
        {
            Ok(()) => std::pin::pin!(forward(&state, req, Some(rid.clone())))
                .await
                .map_err(crate::http::error::ApiError::from),
            Err(e) => Err(refused(req, e)),
        }
        .unwrap_or_else(|e| e.into_response());
    Ok(crate::http::api::finish(
        &state, rid, route, method, started, resp,
    ))
}

/// The router's proxy routes (the same forwarding, for a router used without [`Front`]).
pub(crate) async fn route(State(state): State<AppState>, req: Request) -> Result<Response> {
    let rid = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    forward(&state, req, rid).await
}

/// Forwards a proxy request (its id: `rid`) to a replica of its lambda and answers the replica's
/// response; the requests of a lambda the caller may reach are counted in its traffic.
async fn forward(s: &AppState, req: Request, rid: Option<HeaderValue>) -> Result<Response> {
    let started = Instant::now();
    // What admission reads of the request (the request itself is not `Sync`: the future must not
    // hold a reference to it).
    let (path, headers, extensions) = (req.uri().path(), req.headers(), req.extensions());
    let admitted = async {
        let (raw, suffix) = target(path).ok_or_else(|| {
            Error::BadRequest(ErrorCode::RouteNotFound, "not a proxy path".to_owned())
        })?;
        let id = crate::http::api::lambda_id(raw)?;
        let account = Account::resolve(headers, extensions.get())?.0;
        let (route, endpoint, counted) = s.platform.admit(&id, account).await?;
        if route.lambda_type == lambda_core::LambdaType::Tasks && suffix.starts_with("/tasks/") {
            // The platform's own calls into a tasks lambda; tasks start with POST /1/tasks.
            return Err(Error::BadRequest(
                ErrorCode::RouteNotFound,
                format!(
                    "{suffix} of a tasks lambda is not proxied; start a task with POST /1/tasks"
                ),
            ));
        }
        Ok((suffix, id, account, route, endpoint, counted))
    };
    let (suffix, id, account, route, endpoint, counted) = match admitted.await {
        Ok(admitted) => admitted,
        Err(e) => return Err(refused(req, e)),
    };
    let path_and_query = match req.uri().query() {
        Some(q) if suffix.is_empty() => format!("/?{q}"),
        Some(q) => format!("{suffix}?{q}"),
        None if suffix.is_empty() => "/".to_owned(),
        None => suffix.to_owned(),
    };
    let to = Target {
        id: &id,
        account,
        version: route.version,
        endpoint,
    };
    let answer = std::pin::pin!(send(s, req, rid, path_and_query, to)).await;
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

/// A proxy request refused before it reached a replica (`e`): its answer goes at once, and its
/// body is drained ([`crate::http::request_body::discard`]), so that the client reads the answer and
/// keeps its connection for the next request.
fn refused<E>(req: Request, e: E) -> E {
    crate::http::request_body::discard(req);
    e
}

/// A response body that keeps its request counted in the lambda's load while it streams.
struct Counted {
    body: Body,
    _counted: crate::service::platform::InFlight,
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

/// Where a proxy request goes: the lambda (and the account it is called for, to route it again),
/// the version its record says, and the replica's address.
struct Target<'a> {
    id: &'a LambdaId,
    account: Option<uuid::Uuid>,
    version: u64,
    endpoint: String,
}

/// Sends a proxy request on to its target's endpoint (once more to the current one when nothing
/// reached the replica) and answers its response within the proxy timeout.
async fn send(
    s: &AppState,
    req: Request,
    rid: Option<HeaderValue>,
    path_and_query: String,
    to: Target<'_>,
) -> Result<Response> {
    let Target {
        id,
        account,
        version,
        endpoint,
    } = to;
    // The replica's request target is written as it is: the path after `/proxy` and the query,
    // parts of the URI that hyper has parsed and checked already (not parsed once more).
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if s.auth.enabled() {
        // The platform's token is the platform's: the lambda never sees it.
        parts.headers.remove(header::AUTHORIZATION);
    }
    if let Some(v) = rid {
        parts.headers.insert(names::REQUEST_ID.clone(), v);
    }
    let mut request = Request::from_parts(parts, body);
    let exchange = std::pin::pin!(async {
        let mut endpoint = endpoint;
        let mut again = true;
        // One call site of `send_to`, so that the request's future holds one of its futures.
        let mut resp = loop {
            let sent =
                std::pin::pin!(s.upstreams.send_to(&endpoint, &path_and_query, request)).await;
            match sent {
                Ok(resp) => break resp,
                Err((_, Some(unsent))) if again => {
                    // Nothing reached the replica: it went away (e.g. an update just switched
                    // replicas) or closed the connection first. Once more, to the current one.
                    s.upstreams.forget(&endpoint);
                    endpoint = Box::pin(s.platform.route(id, account)).await?.1;
                    request = unsent;
                    again = false;
                }
                Err((_, Some(_))) => return Err(Error::NotRunning(*id)),
                Err((e, None)) => {
                    return Err(Error::Internal(format!("proxying to lambda {id}: {e}")));
                }
            }
        };
        let h = resp.headers_mut();
        strip_hop_by_hop(h);
        // The runtime says which version answered (during an update, possibly the previous
        // one); only when it did not is the record's version reported.
        if !h.contains_key(&names::LAMBDA_VERSION) {
            h.insert(names::LAMBDA_VERSION.clone(), HeaderValue::from(version));
        }
        std::pin::pin!(whole_if_small(resp))
            .await
            .map_err(|e| Error::Internal(format!("the answer of lambda {id} broke off: {e}")))
    });
    // One deadline for the whole exchange: the response head and a small body.
    let timeout = s.platform.config().proxy_timeout;
    within(timeout, exchange)
        .await
        .unwrap_or(Err(Error::LambdaTimeout(*id, timeout)))
}

/// The output of `work`, or `None` when `limit` (from now) came first. The work is polled where
/// it is: `tokio::time::timeout` takes it by value, and each move of a future copies the whole
/// of it.
async fn within<F: Future>(limit: std::time::Duration, mut work: Pin<&mut F>) -> Option<F::Output> {
    let mut deadline = std::pin::pin!(tokio::time::sleep(limit));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        deadline.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Answers whose declared length is at most this are read whole before they are sent on, so
/// that the client gets head and body in one write (as nginx's buffering does); larger or
/// unsized ones stream.
const WHOLE_BODY_MAX: u64 = 16 * 1024;

/// A small answer, read whole (its head and body then leave in one write), or the answer as it
/// is. Read frame by frame, from the replica's body itself (not through a boxed one): a small
/// body is most often one frame, kept as it came.
async fn whole_if_small(
    resp: axum::http::Response<crate::proxy::upstream::Streaming>,
) -> std::result::Result<Response, axum::Error> {
    use http_body_util::BodyExt as _;
    let Some(len) =
        crate::http::api::content_length(resp.headers()).filter(|n| *n <= WHOLE_BODY_MAX)
    else {
        return Ok(resp.map(Body::new));
    };
    let (parts, mut body) = resp.into_parts();
    let mut first = bytes::Bytes::new();
    let mut more: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(axum::Error::new)?.into_data() else {
            continue; // trailers: not part of the body
        };
        match &mut more {
            _ if first.is_empty() => first = data,
            Some(buf) => buf.extend_from_slice(&data),
            None => {
                let mut buf = bytes::BytesMut::with_capacity(len as usize);
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                more = Some(buf);
            }
        }
    }
    let whole = more.map_or(first, bytes::BytesMut::freeze);
    Ok(Response::from_parts(parts, Body::from(whole)))
}

/// Removes hop-by-hop headers, and those the `Connection` header names. One pass over the names
/// finds which are present (most messages have none but `Host`): a removal per hop-by-hop name
/// would hash each of them.
fn strip_hop_by_hop(h: &mut axum::http::HeaderMap) {
    let mut present = 0u16;
    for name in h.keys() {
        if let Some(i) = hop_by_hop_index(name.as_str()) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // `Connection` (the first) may name more.
        let named: Vec<header::HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| header::HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            h.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(name);
        }
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
    fn each_hop_by_hop_name_is_found_at_its_place() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name.as_str()), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index("content-type"), None);
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

        // Without `Connection`: each one present goes, twice-sent ones too; the rest stay.
        let mut h = axum::http::HeaderMap::new();
        h.append(header::TE, HeaderValue::from_static("trailers"));
        h.append(header::TE, HeaderValue::from_static("gzip"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("x"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"], "{h:?}");

        // None present: nothing changes.
        let mut h = axum::http::HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
    }
}
