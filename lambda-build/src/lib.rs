//! # lambda-build
//!
//! Builds runnable artifacts of lambdas behind one small trait, [`ImageBuilder`]:
//! [`LocalBuilder`] makes a folder and a cached virtualenv (the embedded default); the Docker
//! builder (bollard) makes an image; the Kubernetes builder ([`KubeBuilder`]) makes one with a
//! build Job and registry-side assembly. It also owns the Python runtime every lambda runs under
//! ([`runtime`]: `run.py`, `luna_lambda_tools`, their pinned requirements), embedded into the
//! binary so every build is self-contained.

pub mod assemble;
pub mod deps;
pub mod docker;
pub mod gc;
pub mod kube;
pub mod local;
mod registry;
pub mod runtime;

pub use docker::{DockerBuilder, DockerBuilderConfig};
pub use gc::{InUse, KeptVersions};
pub use kube::{KubeBuilder, KubeBuilderConfig};
pub use local::{LocalBuilder, LocalBuilderConfig};

use async_trait::async_trait;
use bytes::Bytes;
use lambda_core::{Artifact, LambdaId, LambdaType, Parameters, ValidatedArchive};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where build log lines go, one line per message, as they are produced.
pub type LogSink = tokio::sync::mpsc::UnboundedSender<String>;

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The lambda.
    pub lambda_id: LambdaId,
    /// The version being built.
    pub version: u64,
    /// Its type.
    pub lambda_type: LambdaType,
    /// The archive (zip bytes) that produced `archive`.
    pub archive_bytes: Bytes,
    /// The validated archive.
    pub archive: ValidatedArchive,
    /// The lambda's parameters.
    pub parameters: Parameters,
    /// The build is stopped with [`Error::Timeout`] after this long.
    pub timeout: Duration,
}

/// Errors of lambda-build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The build ran and failed; `reason` says at which step (the log has the details).
    #[error("build failed: {reason}")]
    Failed {
        /// Short reason, e.g. the failing step and the tool's last words.
        reason: String,
    },
    /// This builder cannot build what was asked (e.g. `user_docker_commands` locally).
    #[error("{0}")]
    Unsupported(String),
    /// The build took longer than its timeout.
    #[error("build timed out after {0:?}")]
    Timeout(Duration),
    /// The build was cancelled (the lambda was deleted or updated).
    #[error("build cancelled")]
    Cancelled,
    /// The builder cannot work at all (missing Python, unwritable folder, ...).
    #[error("builder unavailable: {0}")]
    Unavailable(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds lambda artifacts.
#[async_trait]
pub trait ImageBuilder: Send + Sync + std::fmt::Debug + 'static {
    /// Short name for logs and health (`local`, `docker`).
    fn kind(&self) -> &'static str;

    /// Builds one version. Log lines go to `log` as they are produced. Stops with
    /// [`Error::Cancelled`] when `cancel` fires and [`Error::Timeout`] after `req.timeout`,
    /// leaving nothing half-built behind.
    async fn build(
        &self,
        req: BuildRequest,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<Artifact>;

    /// Removes what a build produced (best effort: missing is fine).
    async fn remove(&self, lambda_id: &LambdaId, artifact: &Artifact) -> Result<()>;

    /// The garbage collector's part in the builder: finds what this builder made that nothing
    /// in `in_use` uses and is older than its grace (app folders, environments beyond the
    /// cache's size, images, registry manifests) and, unless `dry_run`, removes it. Returns what
    /// was (or would be) removed; what failed to go is left out and logged by the caller's next
    /// run.
    async fn collect(
        &self,
        _in_use: &InUse,
        _dry_run: bool,
    ) -> Result<Vec<lambda_core::api::GcItem>> {
        Ok(Vec::new())
    }

    /// Whether the builder can build now (its tools answer).
    async fn health(&self) -> Result<()>;
}

/// Runs a build until it ends, `timeout` passes ([`Error::Timeout`]) or `cancel` fires
/// ([`Error::Cancelled`]), saying which in the build log. Dropping the build future is what
/// stops it.
pub(crate) async fn bounded(
    timeout: Duration,
    cancel: &CancellationToken,
    log: &LogSink,
    build: impl std::future::Future<Output = Result<Artifact>>,
) -> Result<Artifact> {
    tokio::select! {
        r = tokio::time::timeout(timeout, build) => r.unwrap_or_else(|_| {
            let _ = log.send(format!("==> build timed out after {timeout:?}"));
            Err(Error::Timeout(timeout))
        }),
        _ = cancel.cancelled() => {
            let _ = log.send("==> build cancelled".to_owned());
            Err(Error::Cancelled)
        }
    }
}

impl From<std::io::Error> for Error {
    /// I/O errors without a path come from reading the archive.
    fn from(source: std::io::Error) -> Self {
        Error::Io {
            path: "the lambda archive".into(),
            source,
        }
    }
}
