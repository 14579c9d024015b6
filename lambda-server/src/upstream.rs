//! Keep-alive HTTP/1 connections to lambda replicas, driven by the task that uses them.
//!
//! A general HTTP client spawns a task per connection and hands every request, response head and
//! body chunk across channels between that task and the caller's. Here the proxy's own request
//! task polls the connection itself while it waits for the answer, and the response body polls
//! it while the body streams out, so a proxied request is one task, as in nginx's event loop. An
//! idle connection sits in a per-replica LIFO stack (the hottest one is reused first, so the
//! pool's size follows the load) and goes back there when its response body has ended.

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, header};
use bytes::Bytes;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::{Future, poll_fn};
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

/// Why a request did not get a response head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The endpoint is not an `http://host:port` address.
    #[error("bad replica address {0:?}")]
    BadEndpoint(String),
    /// No connection could be opened.
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    /// The exchange failed on a connection.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// A failed send, with the request when none of it reached the replica (so that it can be sent
/// again, elsewhere).
pub type Failed = (SendError, Option<Request<Body>>);

type Conn = http1::Connection<TokioIo<TcpStream>, Body>;

/// One HTTP/1 connection: the request side and the connection's I/O, polled by whoever holds it.
/// Boxed wherever it is kept: it is large (the connection's buffers and state), and moves from
/// the pool to the request, to its response body and back with every request.
struct Link {
    send: http1::SendRequest<Body>,
    conn: Conn,
}

impl Link {
    /// Drives the connection once with a no-op waker: `false` when it has ended.
    fn poll_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(&mut self.conn).poll(&mut cx).is_pending()
    }

    /// Waits until the connection takes a request.
    async fn ready(&mut self) -> hyper::Result<()> {
        poll_fn(|cx| {
            if let Poll::Ready(r) = self.send.poll_ready(cx) {
                return Poll::Ready(r);
            }
            if let Poll::Ready(r) = Pin::new(&mut self.conn).poll(cx) {
                // The connection ended before it took a request; `poll_ready` says why.
                r?;
            }
            self.send.poll_ready(cx)
        })
        .await
    }

    /// Sends `req` and drives the connection until the response head is in.
    async fn round_trip(&mut self, req: Request<Body>) -> Result<Response<Incoming>, Failed> {
        if let Err(e) = self.ready().await {
            return Err((e.into(), Some(req)));
        }
        let mut answer = std::pin::pin!(self.send.try_send_request(req));
        let mut ended = false;
        poll_fn(|cx| {
            if !ended && Pin::new(&mut self.conn).poll(cx).is_ready() {
                // Over (closed, or failed): the answer's future says how.
                ended = true;
            }
            answer.as_mut().poll(cx)
        })
        .await
        .map_err(|mut e| {
            let req = e.take_message();
            (e.into_error().into(), req)
        })
    }
}

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

    /// Sends `req` (its URI in origin form, `/path?query`) to `endpoint` (`http://host:port`)
    /// and answers the response, whose body streams from the replica and returns the
    /// connection to the pool when it ends. `Host` is set to the replica's when absent.
    pub async fn send(
        self: &Arc<Self>,
        endpoint: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, Failed> {
        let Some(authority) = authority(endpoint) else {
            return Err((SendError::BadEndpoint(endpoint.to_owned()), Some(req)));
        };
        if !req.headers().contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(authority)
        {
            req.headers_mut().insert(header::HOST, v);
        }
        let mut link = match self.checkout(authority) {
            Some(link) => link,
            // Boxed: opening a connection is the cold path, and its future would otherwise
            // size (and be moved with) every request's.
            None => match Box::pin(self.connect(authority)).await {
                Ok(link) => link,
                Err(e) => return Err((e, Some(req))),
            },
        };
        let head = link.round_trip(req).await?;
        let home = (Arc::clone(self), Box::<str>::from(authority));
        Ok(head.map(|body| {
            Body::new(Streaming {
                body,
                link: Some(link),
                home: Some(home),
            })
        }))
    }

    /// The most recently used idle connection to `authority` that is still open.
    fn checkout(&self, authority: &str) -> Option<Box<Link>> {
        loop {
            let mut link = {
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
            if link.poll_idle() && link.send.is_ready() {
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
        let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(Link { send, conn }))
    }

    /// Puts a connection whose exchange is over back on its replica's stack.
    fn check_in(&self, authority: Box<str>, mut link: Box<Link>) {
        // Most often the poll that read the body's end left the connection wanting its next
        // request; only when it did not is it driven once more to get there.
        let ready = link.send.is_ready() || (link.poll_idle() && link.send.is_ready());
        if !ready {
            return; // closed, or still busy (e.g. a request body the replica did not read)
        }
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
                stack.retain_mut(|(since, link)| since.elapsed() <= timeout && link.poll_idle());
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

/// `host:port` of an `http://host:port` endpoint.
fn authority(endpoint: &str) -> Option<&str> {
    endpoint
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
}

/// A response body from a replica: drives its connection while it streams and gives the
/// connection back to the pool when it has ended.
struct Streaming {
    body: Incoming,
    link: Option<Box<Link>>,
    home: Option<(Arc<Upstreams>, Box<str>)>,
}

impl Streaming {
    fn release(&mut self) {
        if let (Some(link), Some((pool, authority))) = (self.link.take(), self.home.take()) {
            pool.check_in(authority, link);
        }
    }
}

impl hyper::body::Body for Streaming {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(link) = &mut this.link
            && Pin::new(&mut link.conn).poll(cx).is_ready()
        {
            // The connection is over; what it read is in the body's channel.
            this.link = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.body.is_end_stream() {
            this.release();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        // A body nobody read to the end (an empty one, or a client that went away) is only
        // reusable when it had ended anyway.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> String {
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
            let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
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
                axum::body::to_bytes(resp.into_body(), 1024).await.unwrap()
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
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
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
            let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
            assert_eq!(&body[..], b"once");
        }
        assert_eq!(pool.opened(), 5);
    }

    #[tokio::test]
    async fn a_sweep_closes_connections_whose_replica_went_away() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let live = echo_server().await;
        // A replica that keeps its connection open after an answer, until told to go.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = format!("http://{}", l.local_addr().unwrap());
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut tcp, _) = l.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbye")
                .await
                .unwrap();
            let _ = go_rx.await;
        });
        let pool = Upstreams::new(PoolConfig::default());
        for url in [&live, &gone] {
            let resp = pool.send(url, post("x")).await.unwrap();
            axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
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
