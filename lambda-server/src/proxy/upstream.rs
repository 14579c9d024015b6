//! Keep-alive HTTP/1.1 connections to lambda replicas, driven by the task that uses them.
//!
//! A general HTTP client spawns a task per connection and hands every request, response head and
//! body chunk across channels between that task and the caller's. Here the proxy's own request
//! task writes the request and reads the response head itself, and the response body reads the
//! connection while it streams out, so a proxied request is one task, as in nginx's event loop.
//! The wire format towards replicas is the proxy's own small HTTP/1.1 client (`h1` without
//! I/O, `link` with it): the replicas are the platform's, and the request it sends was parsed
//! and checked by hyper on the client-facing side. An idle connection sits in a per-replica
//! LIFO stack (the hottest one is reused first, so the pool's size follows the load) and goes
//! back there when its response body has ended.

mod h1;
mod link;
#[cfg(test)]
mod wire_tests;

pub use h1::Malformed;

use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use link::{Link, Reading};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How often the server closes pooled connections whose replica went away.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Limits of the connection pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Idle connections kept per replica.
    pub max_idle_per_replica: usize,
    /// An idle connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
    /// Time to open a connection.
    pub connect_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_idle_per_replica: 256,
            idle_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why an exchange with a replica failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The endpoint is not an `http://host:port` address.
    #[error("bad replica address {0:?}")]
    BadEndpoint(String),
    /// No connection could be opened.
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    /// Reading from or writing to the connection failed.
    #[error("the connection to the replica failed: {0}")]
    Io(std::io::Error),
    /// The replica closed the connection before its answer was complete.
    #[error("the replica closed the connection before its answer was complete")]
    Closed,
    /// The replica's answer is not HTTP/1.1 as RFC 9112 frames it.
    #[error("the replica's answer cannot be read: {0}")]
    Malformed(Malformed),
    /// The client's request body failed (most often: the client went away).
    #[error("the request's body failed: {0}")]
    RequestBody(axum::Error),
    /// The request body was not as long as its declared length.
    #[error("the request's body is not as long as its Content-Length")]
    BodyLength,
}

/// A failed send, with the request when none of it reached the replica (so that it can be sent
/// again, elsewhere).
pub type Failed = (SendError, Option<Request<Body>>);

/// An idle connection and the time it went idle.
type IdleSince = (Instant, Box<Link>);

/// One thread's idle connections, per replica authority (addresses the server chose, so a fast
/// hash).
type ThreadPool = foldhash::HashMap<Box<str>, Vec<IdleSince>>;

/// The connection pool of the proxy (one per server).
pub struct Upstreams {
    /// Idle connections per thread and replica authority; newest last. Per thread, because a
    /// connection belongs to the I/O driver of the runtime that opened it: used from another
    /// thread, each of its events would cross threads.
    idle: Mutex<foldhash::HashMap<std::thread::ThreadId, ThreadPool>>,
    config: PoolConfig,
    opened: AtomicU64,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("config", &self.config)
            .field("opened", &self.opened())
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::default(),
            config,
            opened: AtomicU64::new(0),
        })
    }

    /// Connections opened so far (each request that found no idle one opens one).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Sends `req` (its URI in origin form, `/path?query`) to `endpoint` (`http://host:port`);
    /// as [`Upstreams::send_to`].
    pub async fn send(
        self: &Arc<Self>,
        endpoint: &str,
        req: Request<Body>,
    ) -> Result<Response<Streaming>, Failed> {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        self.send_to(endpoint, &target, req).await
    }

    /// Sends `req` to `endpoint` (`http://host:port`) with the request target `target` (origin
    /// form, `/path?query`, from a URI already parsed: it is written as it is), and answers the
    /// response, whose body streams from the replica and returns the connection to the pool when
    /// it ends. `Host` is set to the replica's when absent.
    pub async fn send_to(
        self: &Arc<Self>,
        endpoint: &str,
        target: &str,
        req: Request<Body>,
    ) -> Result<Response<Streaming>, Failed> {
        let Some(authority) = authority(endpoint) else {
            return Err((SendError::BadEndpoint(endpoint.to_owned()), Some(req)));
        };
        let mut link = match self.checkout(authority) {
            Some(link) => link,
            // Boxed: opening a connection is the cold path, and its future would otherwise
            // size (and be moved with) every request's.
            None => match Box::pin(self.connect(authority)).await {
                Ok(link) => link,
                Err(e) => return Err((e, Some(req))),
            },
        };
        let head = link
            .round_trip(target, authority, req)
            .await
            .map_err(|e| (e, None))?;
        let mut resp = Response::new(Streaming {
            reading: Reading::of(head.framing),
            reusable: head.reusable,
            link: Some(link),
            home: Some((Arc::clone(self), Box::<str>::from(authority))),
        });
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }

    /// The most recently used idle connection to `authority` that is still open.
    fn checkout(&self, authority: &str) -> Option<Box<Link>> {
        loop {
            let link = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let stack = idle
                    .get_mut(&std::thread::current().id())?
                    .get_mut(authority)?;
                let (since, link) = stack.pop()?;
                if since.elapsed() > self.config.idle_timeout {
                    // The newest is too old, so are all below it.
                    stack.clear();
                    return None;
                }
                link
            };
            if link.is_idle() {
                return Some(link);
            }
        }
    }

    async fn connect(&self, authority: &str) -> Result<Box<Link>, SendError> {
        let failed = |e| SendError::Connect(authority.to_owned(), e);
        let tcp = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(authority))
            .await
            .map_err(|_| failed(std::io::ErrorKind::TimedOut.into()))?
            .map_err(failed)?;
        let _ = tcp.set_nodelay(true);
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Link::new(tcp))
    }

    /// Puts a connection whose exchange is over back on its replica's stack.
    fn check_in(&self, authority: Box<str>, mut link: Box<Link>) {
        if !link.is_idle() {
            return; // closed, or the replica sent more than its answer
        }
        link.trim();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let stack = idle
            .entry(std::thread::current().id())
            .or_default()
            .entry(authority)
            .or_default();
        if stack.len() < self.config.max_idle_per_replica {
            stack.push((Instant::now(), link));
        }
    }

    /// Closes the idle connections that have ended (their replica closed them: it stopped, or
    /// went idle) or are past the idle timeout, and forgets replicas with none left; answers how
    /// many are still kept. Without it a pool keeps the buffers of every connection to a replica
    /// that is gone until a request for the same address comes.
    pub fn sweep(&self) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let timeout = self.config.idle_timeout;
        let mut kept = 0;
        idle.retain(|_, per_thread| {
            per_thread.retain(|_, stack| {
                stack.retain(|(since, link)| since.elapsed() <= timeout && link.is_idle());
                kept += stack.len();
                !stack.is_empty()
            });
            per_thread.shrink_to_fit();
            !per_thread.is_empty()
        });
        kept
    }

    /// Sweeps the pool every `every` while it exists (from the current runtime).
    pub fn sweep_every(self: &Arc<Self>, every: Duration) {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => return,
                };
            }
        });
    }

    /// Closes every idle connection to `endpoint` (its replica is gone).
    pub fn forget(&self, endpoint: &str) {
        if let Some(authority) = authority(endpoint) {
            for per_thread in self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values_mut()
            {
                per_thread.remove(authority);
            }
        }
    }
}

/// `host:port` of an `http://host:port` endpoint (visible ASCII: it is written as the `Host`
/// of requests that have none).
fn authority(endpoint: &str) -> Option<&str> {
    endpoint
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
}

/// A response body from a replica: reads its connection while it streams and gives the
/// connection back to the pool when it has ended.
pub struct Streaming {
    reading: Reading,
    /// The connection may carry another request once this body has ended.
    reusable: bool,
    link: Option<Box<Link>>,
    home: Option<(Arc<Upstreams>, Box<str>)>,
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("reading", &self.reading)
            .field("reusable", &self.reusable)
            .finish_non_exhaustive()
    }
}

impl Streaming {
    fn release(&mut self) {
        if let (true, Some(link), Some((pool, authority))) =
            (self.reusable, self.link.take(), self.home.take())
        {
            pool.check_in(authority, link);
        }
    }
}

impl hyper::body::Body for Streaming {
    type Data = Bytes;
    type Error = SendError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SendError>>> {
        let this = self.get_mut();
        let Some(link) = &mut this.link else {
            return Poll::Ready(None);
        };
        let piece = std::task::ready!(link.poll_body(&mut this.reading, cx));
        match piece {
            Some(Err(_)) => this.link = None, // the connection is in an unknown state
            _ if matches!(this.reading, Reading::Done) => this.release(),
            _ => {}
        }
        Poll::Ready(piece.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Done => SizeHint::with_exact(0),
            Reading::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        // A body nobody read to the end (an empty one, or a client that went away) is only
        // reusable when it had ended anyway.
        if matches!(self.reading, Reading::Done) {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// Reads from `tcp` until a whole request head has come.
    pub(super) async fn read_head(tcp: &mut TcpStream) {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
    }

    pub(super) async fn echo_server() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/echo",
            axum::routing::post(|body: Bytes| async move { body }),
        );
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        url
    }

    fn post(body: &'static str) -> Request<Body> {
        Request::post("/echo").body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn one_connection_serves_sequential_requests() {
        let url = echo_server().await;
        let pool = Upstreams::new(PoolConfig::default());
        for _ in 0..50 {
            let resp = pool.send(&url, post("hello")).await.unwrap();
            let body = axum::body::to_bytes(Body::new(resp.into_body()), 1024)
                .await
                .unwrap();
            assert_eq!(&body[..], b"hello");
        }
        assert_eq!(pool.opened(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_a_connection_each_and_keep_them() {
        let url = echo_server().await;
        let pool = Upstreams::new(PoolConfig::default());
        for _ in 0..3 {
            let answers = futures::future::join_all((0..8).map(|_| async {
                let resp = pool.send(&url, post("x")).await.unwrap();
                axum::body::to_bytes(Body::new(resp.into_body()), 1024)
                    .await
                    .unwrap()
            }))
            .await;
            assert!(answers.iter().all(|b| &b[..] == b"x"));
        }
        assert!(pool.opened() <= 8, "{} connections opened", pool.opened());
    }

    #[tokio::test]
    async fn an_unread_body_does_not_return_its_connection() {
        let url = echo_server().await;
        let pool = Upstreams::new(PoolConfig::default());
        let resp = pool.send(&url, post("not read")).await.unwrap();
        drop(resp);
        let resp = pool.send(&url, post("read")).await.unwrap();
        let body = axum::body::to_bytes(Body::new(resp.into_body()), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"read");
        assert_eq!(pool.opened(), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_gives_the_request_back() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let pool = Upstreams::new(PoolConfig::default());
        let (e, req) = pool.send(&url, post("again")).await.unwrap_err();
        assert!(matches!(e, SendError::Connect(..)), "{e}");
        let body = axum::body::to_bytes(req.unwrap().into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"again");
        let (e, _) = pool.send("https://x:1", post("")).await.unwrap_err();
        assert!(matches!(e, SendError::BadEndpoint(_)), "{e}");
    }

    #[tokio::test]
    async fn a_connection_the_replica_closed_while_idle_is_not_reused() {
        // A replica that answers one request per connection and then closes it.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Body::from("once")))
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        let pool = Upstreams::new(PoolConfig::default());
        for _ in 0..5 {
            let resp = pool.send(&url, post("")).await.unwrap();
            let body = axum::body::to_bytes(Body::new(resp.into_body()), 1024)
                .await
                .unwrap();
            assert_eq!(&body[..], b"once");
        }
        assert_eq!(pool.opened(), 5);
    }

    #[tokio::test]
    async fn a_sweep_closes_connections_whose_replica_went_away() {
        use tokio::io::AsyncWriteExt;
        let live = echo_server().await;
        // A replica that keeps its connection open after an answer, until told to go.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = format!("http://{}", l.local_addr().unwrap());
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut tcp, _) = l.accept().await.unwrap();
            read_head(&mut tcp).await;
            tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbye")
                .await
                .unwrap();
            let _ = go_rx.await;
        });
        let pool = Upstreams::new(PoolConfig::default());
        for url in [&live, &gone] {
            let resp = pool.send(url, post("x")).await.unwrap();
            axum::body::to_bytes(Body::new(resp.into_body()), 1024)
                .await
                .unwrap();
        }
        assert_eq!(pool.sweep(), 2, "both connections are open and idle");
        go_tx.send(()).unwrap();
        // The closed one goes once its end has reached this side.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.sweep() != 1 {
            assert!(Instant::now() < deadline, "the closed connection was kept");
            tokio::task::yield_now().await;
        }
        let idle = pool.idle.lock().unwrap();
        let authorities: Vec<_> = idle.values().flat_map(|t| t.keys()).collect();
        assert_eq!(authorities, [&Box::<str>::from(authority(&live).unwrap())]);
    }
}
