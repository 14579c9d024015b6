//! The server's connections, one thread per core.
//!
//! Connections are accepted on the caller's runtime and each is served, for its whole life, on one
//! of a few single-thread runtimes (one per core, round robin), as nginx's workers do: a proxied
//! request, its connection to the replica and both bodies stay on one thread, with no work
//! stealing and no wake-ups of other threads on the way. Requests that are not proxy requests
//! (the API) run on the caller's runtime, where the platform's background work lives.

use crate::http::api::{AppState, EdgeSettings};
use crate::proxy::Front;
use crate::server::tls::Tls;
use crate::service::platform::Platform;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// An accepted connection and the token that counts it as open.
type Handoff = (std::net::TcpStream, mpsc::Sender<()>);

/// One single-thread runtime serving the connections handed to it.
struct Worker {
    connections: mpsc::UnboundedSender<Handoff>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn start(
        index: usize,
        front: Front,
        tls: Option<Arc<Tls>>,
        stop: Arc<Stop>,
    ) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (connections, mut handed) = mpsc::unbounded_channel::<Handoff>();
        let thread = std::thread::Builder::new()
            .name(format!("luna-lambda-io-{index}"))
            .spawn(move || {
                rt.block_on(async move {
                    tokio::spawn(keep_the_timer_armed());
                    while let Some((tcp, open)) = handed.recv().await {
                        tokio::spawn(connection(
                            tcp,
                            front.clone(),
                            tls.clone(),
                            stop.clone(),
                            open,
                        ));
                    }
                });
            })?;
        Ok(Self {
            connections,
            thread,
        })
    }
}

/// Keeps a timer of the thread's runtime always due within a second. Each request arms timers
/// (hyper's header read timeout, the proxy's deadline), and tokio wakes its own driver through
/// an eventfd (a write, and one more pass of epoll) whenever a new timer is due sooner than
/// anything armed; with this one always sooner, requests arm theirs without that syscall.
async fn keep_the_timer_armed() {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// A TLS handshake that takes longer than this is dropped (a client that opens connections and
/// sends nothing holds no more than this).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted connection: its TLS handshake when the server speaks TLS, then its requests.
async fn connection(
    tcp: std::net::TcpStream,
    front: Front,
    tls: Option<Arc<Tls>>,
    stop: Arc<Stop>,
    open: mpsc::Sender<()>,
) {
    let Ok(tcp) = TcpStream::from_std(tcp) else {
        return;
    };
    match tls {
        None => serve_connection(tcp, front, stop, open).await,
        Some(tls) => {
            let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp));
            if let Ok(Ok(stream)) = accepted.await {
                serve_connection(stream, front, stop, open).await;
            }
        }
    }
}

/// Serves one connection until it ends, or until `stop` (then it finishes the request in flight
/// and closes).
async fn serve_connection<I>(io: I, front: Front, stop: Arc<Stop>, _open: mpsc::Sender<()>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        front.handle(req.map(Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop.stopped() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The server's stop, as its connections wait for it. A connection's task is polled a few times
/// per request, and each poll polls its wait for the stop too: here that is an atomic load and a
/// waker comparison (a `watch` or `Notify` locks its list of waiters at every poll).
#[derive(Debug, Default)]
struct Stop {
    stopping: AtomicBool,
    /// The last key given out, and the waker of each connection that waits.
    waiting: Mutex<(u64, HashMap<u64, Waker>)>,
}

impl Stop {
    /// Stops: every wait ends.
    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut self.lock().1);
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// Resolves when the server stops.
    fn stopped(self: &Arc<Self>) -> Stopped {
        Stopped {
            stop: Arc::clone(self),
            registered: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Waker>)> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection's wait for the stop.
struct Stopped {
    stop: Arc<Stop>,
    /// Its key and the waker it left.
    registered: Option<(u64, Waker)>,
}

impl Future for Stopped {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.stop.stopping.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &this.registered
            && waker.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        let key = {
            let mut waiting = this.stop.lock();
            let key = match &this.registered {
                Some((key, _)) => *key,
                None => {
                    waiting.0 += 1;
                    waiting.0
                }
            };
            waiting.1.insert(key, cx.waker().clone());
            key
        };
        this.registered = Some((key, cx.waker().clone()));
        // A stop between the first look and the waker's registration is seen here.
        if this.stop.stopping.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            self.stop.lock().1.remove(&key);
        }
    }
}

/// Serves the API and the proxy on `listener` until `shutdown` resolves; then stops accepting,
/// finishes the requests in flight, stops background work and leaves lambdas running.
pub async fn serve(
    listener: TcpListener,
    platform: Platform,
    edge: EdgeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, platform, edge, shutdown, None).await
}

/// [`serve`], over TLS when `tls` is given (`[tls] cert`, `key`).
pub async fn serve_tls(
    listener: TcpListener,
    platform: Platform,
    edge: EdgeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: Option<Arc<Tls>>,
) -> std::io::Result<()> {
    let state = AppState::new(platform.clone(), edge);
    let audit = state.audit.clone();
    let front = Front::new(state, tokio::runtime::Handle::current());
    let stop = Arc::new(Stop::default());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (0..threads)
        .map(|i| Worker::start(i, front.clone(), tls.clone(), stop.clone()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted.and_then(|(tcp, _)| {
            // No Nagle delay: a proxied response's head and body are written separately when
            // the body comes from the lambda a moment later, and the client delays its ACK.
            let _ = tcp.set_nodelay(true);
            tcp.into_std()
        }) {
            Ok(tcp) => {
                let _ = workers[next % threads]
                    .connections
                    .send((tcp, open.clone()));
                next = next.wrapping_add(1);
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors or memory: give the process a moment to recover.
                tracing::error!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    stop.stop();
    drop(open);
    let _ = all_closed.recv().await; // every connection has ended
    let threads: Vec<_> = workers
        .into_iter()
        .map(|w| {
            drop(w.connections);
            w.thread
        })
        .collect();
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    audit.flushed().await;
    platform.shutdown().await;
    Ok(())
}

/// An error of one connection (the peer), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_ends_every_wait_and_a_wait_after_it_at_once() {
        let stop = Arc::new(Stop::default());
        let waits: Vec<_> = (0..3)
            .map(|_| tokio::spawn(stop.stopped()))
            .collect::<Vec<_>>();
        // Every wait has registered its waker before the stop.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stop.lock().1.len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the waits never registered"
            );
            tokio::task::yield_now().await;
        }
        assert!(waits.iter().all(|w| !w.is_finished()));
        stop.stop();
        for w in waits {
            tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .expect("a wait outlived the stop")
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), stop.stopped())
            .await
            .expect("a wait that began after the stop did not end");
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_no_waker_behind() {
        let stop = Arc::new(Stop::default());
        let mut wait = Box::pin(stop.stopped());
        assert!(futures::poll!(wait.as_mut()).is_pending());
        assert!(futures::poll!(wait.as_mut()).is_pending());
        assert_eq!(
            stop.lock().1.len(),
            1,
            "one waker per wait, however often polled"
        );
        drop(wait);
        assert!(stop.lock().1.is_empty());
    }
}
