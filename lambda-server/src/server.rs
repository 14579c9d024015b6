//! The process around the platform: [`start`] (what `luna-lambda serve`, the Python embedded
//! platform and a Rust program embedding the crate all call), [`serve`] (plain and TLS, with a
//! graceful shutdown that leaves lambdas running), the TLS settings ([`tls`]) and the data
//! folder's lock ([`lock`]).

pub mod lock;
mod serve;
pub mod tls;

pub use serve::{serve, serve_tls};

use crate::http::EdgeSettings;
use crate::service::Platform;
use std::sync::Arc;

/// What a server runs with: its platform, the edge's settings, TLS and the data folder's lock.
/// `Config::setup` (in the `config` room, which builds on this one) makes one from a
/// configuration.
#[derive(Debug)]
pub struct Setup {
    /// The platform, not started yet.
    pub platform: Platform,
    /// Auth, upload limits, the proxy's pool.
    pub edge: EdgeSettings,
    /// TLS, when `[tls]` is set.
    pub tls: Option<Arc<tls::Tls>>,
    /// The data folder's lock, held while the server runs.
    pub lock: lock::ServerLock,
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The platform did not start (its storage or orchestrator failed).
    #[error("the platform did not start: {0}")]
    Platform(#[from] crate::service::Error),
}

/// A server that [`start`] started. It serves until [`Running::stop`] (or until it is dropped,
/// which stops it without waiting).
#[derive(Debug)]
pub struct Running {
    url: String,
    platform: Platform,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _lock: lock::ServerLock,
}

/// Listens on `listen`, starts the platform (recovery, the reconciler, the background loops) and
/// serves the API and the proxy on it in a task of the current runtime.
pub async fn start(setup: Setup, listen: &str) -> Result<Running, StartError> {
    let listen_error = |source| StartError::Listen {
        addr: listen.to_owned(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    setup.platform.start().await?;
    let scheme = if setup.tls.is_some() { "https" } else { "http" };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve_tls(
        listener,
        setup.platform.clone(),
        setup.edge,
        shutdown,
        setup.tls,
    ));
    Ok(Running {
        url: format!("{scheme}://{addr}"),
        platform: setup.platform,
        stop,
        task,
        _lock: setup.lock,
    })
}

impl Running {
    /// Its URL (`http://` or `https://`, with the port it got).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The platform it serves.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// Stops the server: no new connections, the requests in flight finish, background work
    /// stops, lambdas keep running (for the next start to re-adopt); then the lock is released.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }

    /// Serves until `shutdown` resolves (or the server fails), then [`Running::stop`]s.
    pub async fn serve_until(mut self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        tokio::select! {
            () = shutdown => self.stop().await,
            ended = &mut self.task => ended.map_err(std::io::Error::other)?,
        }
    }
}
