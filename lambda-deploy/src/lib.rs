//! # lambda-deploy
//!
//! Runs built lambdas behind one small trait, [`Orchestrator`]: [`LocalOrchestrator`] runs each
//! replica as a local process (the embedded default); [`DockerOrchestrator`] runs containers on
//! one Docker engine; [`KubeOrchestrator`] runs Deployments on Kubernetes. An orchestrator also resolves where to send a lambda's requests
//! ([`Orchestrator::endpoint`]), which the server's proxy uses.

pub mod docker;
pub mod kube;
pub mod local;

pub use docker::{DockerOrchestrator, DockerOrchestratorConfig};
pub use kube::{KubeCredentials, KubeOrchestrator, KubeOrchestratorConfig};
pub use local::{LocalOrchestrator, LocalOrchestratorConfig};

use async_trait::async_trait;
use futures::stream::BoxStream;
use lambda_core::{Artifact, LambdaId, LambdaName, LambdaType, Parameters};
use std::collections::BTreeMap;
use std::fmt;

/// One lambda version to run.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    /// The lambda.
    pub lambda_id: LambdaId,
    /// Its name (replica names start with it).
    pub lambda_name: LambdaName,
    /// Its type (`LAMBDA_TYPE`).
    pub lambda_type: LambdaType,
    /// The version to run.
    pub version: u64,
    /// What to run.
    pub artifact: Artifact,
    /// Workers, env, user_config, deploy_parameters (pod_count, ...).
    pub parameters: Parameters,
    /// Replicas to run (at least one is started; the platform picks the count within the
    /// lambda's `deploy_parameters.scale` bounds).
    pub replicas: u32,
}

/// Phase of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaPhase {
    /// Started, not yet answering `/healthcheck`.
    Starting,
    /// Answering.
    Running,
    /// Exited unexpectedly; waiting to be started again (with backoff).
    Restarting,
    /// Stopped for good.
    Stopped,
}

impl ReplicaPhase {
    /// The wire name (`status` of a replica in the API).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ReplicaPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One replica's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// Replica name.
    pub name: String,
    /// Phase.
    pub phase: ReplicaPhase,
    /// Why it is not running (e.g. its last output lines after a crash).
    pub reason: Option<String>,
    /// How often it was restarted.
    pub restarts: u32,
}

/// A deployment's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentStatus {
    /// The version running (or starting).
    pub version: u64,
    /// Its replicas.
    pub replicas: Vec<ReplicaState>,
}

impl DeploymentStatus {
    /// Every replica answers.
    pub fn all_running(&self) -> bool {
        !self.replicas.is_empty()
            && self
                .replicas
                .iter()
                .all(|r| r.phase == ReplicaPhase::Running)
    }
}

/// A lambda an orchestrator runs (for reconciling after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// The lambda.
    pub lambda_id: LambdaId,
    /// The version it runs.
    pub version: u64,
}

/// Errors of lambda-deploy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing is deployed for this lambda.
    #[error("lambda {0} is not deployed")]
    NotFound(LambdaId),
    /// The new version did not become healthy; the previous one (if any) keeps running.
    #[error("lambda did not start: {reason}")]
    StartFailed {
        /// Why, with the replica's last output lines.
        reason: String,
    },
    /// This orchestrator cannot run this artifact.
    #[error("{0}")]
    Unsupported(String),
    /// The orchestrator cannot work at all.
    #[error("orchestrator unavailable: {0}")]
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

/// Runs a deploy or scale change to its end in a task of its own, even if the caller stops
/// waiting: one dropped halfway would leave started replicas that no table knows about. A task
/// that panicked is a [`Error::StartFailed`] naming `what`.
pub(crate) async fn to_completion(
    what: &str,
    work: impl std::future::Future<Output = Result<()>> + Send + 'static,
) -> Result<()> {
    tokio::spawn(work).await.map_err(|e| Error::StartFailed {
        reason: format!("the {what} task failed: {e}"),
    })?
}

/// The index for the next new replica, after those of `names` (`<prefix>-<index>`).
pub(crate) fn next_replica_index<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names
        .filter_map(|n| n.rsplit('-').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |i| i + 1)
}

/// Runs lambdas.
#[async_trait]
pub trait Orchestrator: Send + Sync + fmt::Debug + 'static {
    /// Short name (`local`, `docker`, `kubernetes`).
    fn kind(&self) -> &'static str;

    /// Runs `spec`: creates the deployment, or moves a running one to a new version or
    /// configuration without dropping requests (the new replicas must answer before the old
    /// ones stop). Returns once every replica answers; on failure the previous version keeps
    /// running and the error says why. Deploying what already runs is a no-op.
    async fn deploy(&self, spec: DeploySpec) -> Result<()>;

    /// Sets the replica count of what is deployed, without a rollout (same version and
    /// configuration): new replicas serve once they answer, and the call returns when all do
    /// (or with the reason one did not, the new ones stopped again); fewer stops the newest,
    /// after they leave the balancing. `0` stops every replica but keeps the deployment, for a
    /// later `scale` to start again.
    async fn scale(&self, lambda_id: &LambdaId, replicas: u32) -> Result<()>;

    /// Stops and removes a deployment (idempotent: nothing deployed is fine).
    async fn undeploy(&self, lambda_id: &LambdaId) -> Result<()>;

    /// The state of a deployment, per replica.
    async fn status(&self, lambda_id: &LambdaId) -> Result<DeploymentStatus>;

    /// The last `tail` lines (all, when `None`) of each replica's output.
    async fn logs(
        &self,
        lambda_id: &LambdaId,
        tail: Option<usize>,
    ) -> Result<BTreeMap<String, String>>;

    /// New output lines as they are written, prefixed with the replica name, until the
    /// deployment goes away.
    async fn follow_logs(&self, lambda_id: &LambdaId) -> Result<BoxStream<'static, String>>;

    /// Every lambda this orchestrator runs.
    async fn list(&self) -> Result<Vec<Deployed>>;

    /// Where to send the next request for a lambda (`http://host:port`), balancing across the
    /// replicas that answer; `None` when none does.
    fn endpoint(&self, lambda_id: &LambdaId) -> Option<String>;

    /// Every replica that answers, by name, with its own address (`http://host:port`), for what
    /// must reach each replica rather than any one of them (e.g. the merged `/metrics`).
    fn replica_endpoints(&self, lambda_id: &LambdaId) -> Vec<(String, String)>;

    /// Whether the orchestrator can work now.
    async fn health(&self) -> Result<()>;

    /// The control plane is stopping: stop watching, but leave every lambda running for the
    /// next start to re-adopt.
    async fn shutdown(&self);
}
