//! The Platform: the lifecycle of DESIGN.md §3 over the storage, builder and orchestrator ports.
//!
//! Requests validate synchronously and store; builds and deploys run as background jobs (one
//! per lambda; a newer one cancels the older), at most `build_concurrency` builds at a time
//! (queued builds stay `pending`). Every status change is written to the record before it is
//! acted on, and a reconciler, at start and every `reconcile_interval`, drives every record to
//! its desired state: interrupted builds are resumed, lambdas that should run but do not are
//! deployed again, deployments without a record are removed.
//!
//! Its parts, one `impl Platform` each: `lifecycle` (create, read, update, configure, switch,
//! delete, status), `jobs` (build and deploy), `reconcile`, `routing` (routes for the proxy),
//! `logs` (build and runtime logs, docs), `scale` (admission, wakes, the autoscaler), `idle`,
//! `versions` (rollback, retention), `gc`, `export` (export and import). This file holds the
//! state they share, start and shutdown, and health.

use crate::service::error::{Error, Result};
use crate::service::metrics::Metrics;
use bytes::Bytes;
use futures::stream::BoxStream;
use lambda_build::{BuildRequest, ImageBuilder};
use lambda_core::api::{
    ArchiveInfo, Credentials, ImageStatusResponse, LambdaRecord, ReplicaStatus, StatusResponse,
};
use lambda_core::archive::{DOCS_HTML, DOCS_YAML, Limits, for_each_user_file, validate_bytes_for};
use lambda_core::{
    ImageStatus, LambdaId, LambdaStatus, LambdaType, Parameters, ValidatedArchive, ValidationReport,
};
use lambda_deploy::{DeploySpec, Orchestrator};
use lambda_storage::{ArtifactStore, DocKind, LambdaRepository, ListQuery, Storage};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings of the platform (the `[limits]`, `[builder]` and `[server]` parts of the config).
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Archive limits.
    pub limits: Limits,
    /// Builds running at once (default 2).
    pub build_concurrency: usize,
    /// A build is stopped after this long (default 10 min).
    pub build_timeout: Duration,
    /// The proxy gives a lambda this long to answer, and a request held for an idle lambda's
    /// wake waits at most this long (default 60 s).
    pub proxy_timeout: Duration,
    /// Versions whose built artifacts are kept for an instant rollback (default 5).
    pub keep_versions: usize,
    /// How long the audit log is kept (`None`: for ever; default 90 days).
    pub audit_retention: Option<Duration>,
    /// How often the server collects garbage (`None`: only on demand).
    pub gc_interval: Option<Duration>,
    /// Bytes of local environments kept as a cache when no kept version uses them.
    pub env_cache_max_bytes: u64,
    /// How often the reconciler runs (default 30 s).
    pub reconcile_interval: Duration,
    /// Orphaned objects younger than this are left alone by recovery (default 10 min).
    pub orphan_grace: Duration,
    /// OS family of the base images: `user_docker_commands` must use its package manager.
    pub base_os: lambda_core::docker_commands::BaseOs,
    /// How tasks of `tasks` lambdas run (`[tasks]`).
    pub tasks: crate::service::tasks::TaskSettings,
    /// Most lambdas one account may have (0: no limit; default 1000).
    pub max_lambdas_per_account: usize,
    /// `last_usage` and the inactivity sweep (`[idle]`).
    pub idle: IdleSettings,
    /// The autoscaler and wakes (`[scale]`).
    pub scale: ScaleSettings,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            build_concurrency: 2,
            build_timeout: Duration::from_secs(600),
            proxy_timeout: Duration::from_secs(60),
            keep_versions: 5,
            audit_retention: Some(Duration::from_secs(90 * 86_400)),
            gc_interval: None,
            env_cache_max_bytes: 1 << 30,
            reconcile_interval: Duration::from_secs(30),
            orphan_grace: Duration::from_secs(600),
            base_os: lambda_core::docker_commands::BaseOs::Debian,
            tasks: crate::service::tasks::TaskSettings::default(),
            max_lambdas_per_account: 1000,
            idle: IdleSettings::default(),
            scale: ScaleSettings::default(),
        }
    }
}

/// Parameters checked for what this server's builder can honour: the Kubernetes builder runs
/// only some instructions of `user_docker_commands` (`lambda_core::build_steps`).
fn parse_params(
    json: &[u8],
    os: lambda_core::docker_commands::BaseOs,
    snapshot_builder: bool,
) -> std::result::Result<Parameters, ValidationReport> {
    let p = Parameters::parse_for(json, Some(os))?;
    let problems = if snapshot_builder {
        lambda_core::build_steps::check(&p.user_docker_commands)
    } else {
        Vec::new()
    };
    if problems.is_empty() {
        return Ok(p);
    }
    let mut report = ValidationReport::default();
    for problem in problems {
        report.push(problem);
    }
    Err(report)
}

/// What a reconcile pass does for one lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reconcile {
    /// Its image is not built (or its build was interrupted): build and deploy it.
    Build,
    /// Built, switched on and not running (and not terminated): deploy it.
    Deploy,
    /// Switched off and still deployed: undeploy it.
    Undeploy,
}

/// What the proxy needs to know about a lambda, kept in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Owner.
    pub account_id: uuid::Uuid,
    /// Switched on.
    pub alive: bool,
    /// Current version.
    pub version: u64,
    /// Deploy status.
    pub status: LambdaStatus,
    /// Build status.
    pub image_status: ImageStatus,
    /// Type (a `tasks` lambda's task routes are not proxied).
    pub lambda_type: LambdaType,
    /// How its replica count may follow the load (`None`: a fixed count).
    pub scale: Option<scale::Scaling>,
    /// Replicas it runs now.
    pub replicas: u32,
}

impl Route {
    fn of(r: &LambdaRecord) -> Self {
        Self {
            lambda_type: r.lambda_type,
            account_id: r.account_id,
            alive: r.alive,
            version: r.lambda_version,
            status: r.status,
            image_status: r.image_status,
            scale: scale::Scaling::of(r),
            replicas: r.replicas,
        }
    }
}

/// Build log of a running build, shared with followers.
#[derive(Debug, Default)]
struct LiveLog {
    lines: Mutex<Vec<String>>,
    changed: tokio::sync::Notify,
    done: AtomicBool,
}

impl LiveLog {
    fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        self.changed.notify_waiters();
    }
    fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
    fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = lines.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }
}

#[derive(Debug)]
struct Job {
    id: u64,
    cancel: CancellationToken,
}

/// Health of each port.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Health {
    /// `ok` or the error.
    pub store: String,
    /// `ok` or the error.
    pub builder: String,
    /// `ok` or the error.
    pub orchestrator: String,
    /// A warning about how the server runs (e.g. open to the network without tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Health {
    /// Every port answers.
    pub fn ok(&self) -> bool {
        self.store == "ok" && self.builder == "ok" && self.orchestrator == "ok"
    }
}

/// The platform service (see the module docs). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: PlatformConfig,
    storage: Storage,
    repo: LambdaRepository,
    artifacts: ArtifactStore,
    builder: Arc<dyn ImageBuilder>,
    orchestrator: Arc<dyn Orchestrator>,
    slots: Arc<tokio::sync::Semaphore>,
    jobs: Mutex<HashMap<LambdaId, Job>>,
    job_ids: AtomicU64,
    live_logs: Mutex<HashMap<(LambdaId, u64), Arc<LiveLog>>>,
    /// What the proxy reads on every request (a fast hash: lambda ids are the server's).
    routes: RwLock<foldhash::HashMap<LambdaId, Route>>,
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    task_runner: crate::service::tasks::TaskRunner,
    /// One garbage collection at a time.
    gc: tokio::sync::Mutex<()>,
    /// New lambdas are counted and written one at a time (the per-account limit).
    create_gate: tokio::sync::Mutex<()>,
    /// Each lambda's proxied traffic (counted by the proxy; read for `last_usage`).
    traffic: Arc<crate::service::traffic::Traffic>,
    /// Requests in flight per scaling lambda, and wakes in progress.
    scaler: scale::Scaler,
}

mod export;
mod gc;
mod idle;
mod jobs;
mod lifecycle;
mod logs;
mod reconcile;
mod routing;
mod scale;
mod versions;

pub use idle::IdleSettings;
pub(crate) use scale::InFlight;
pub use scale::{ScaleSettings, Scaling};

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Moves a status along the state machine (same status: no change).
fn set_status(rec: &mut LambdaRecord, to: LambdaStatus) {
    if rec.status != to && rec.status.can_become(to) {
        rec.status = to;
    } else if rec.status != to {
        tracing::warn!(lambda = %rec.lambda_id, from = %rec.status, %to, "status change refused by the state machine");
    }
}

/// The record of a new lambda at version 1: waiting for its build, or (made from an imported
/// image) built already.
fn first_record(
    id: LambdaId,
    account_id: uuid::Uuid,
    credentials: Credentials,
    parameters: Parameters,
    archive: ArchiveInfo,
    has_docs: bool,
    import_image: Option<String>,
) -> LambdaRecord {
    let t = now();
    LambdaRecord {
        lambda_id: id,
        lambda_name: credentials.lambda_name,
        lambda_type: credentials.lambda_type,
        account_id,
        description: parameters.description.clone(),
        create_time: t,
        last_update_time: t,
        lambda_version: 1,
        image_status: if import_image.is_some() {
            ImageStatus::Completed
        } else {
            ImageStatus::Pending
        },
        status: LambdaStatus::Waiting,
        reason: None,
        alive: true,
        running_version: None,
        parameters,
        archive,
        has_docs,
        import_image,
        last_usage: None,
        replicas: 0,
    }
}

fn set_image(rec: &mut LambdaRecord, to: ImageStatus) {
    if rec.image_status != to && rec.image_status.can_become(to) {
        rec.image_status = to;
    } else if rec.image_status != to {
        tracing::warn!(lambda = %rec.lambda_id, from = %rec.image_status, %to, "image status change refused by the state machine");
    }
}

impl Platform {
    /// A platform over the given ports (`replicas`: how tasks call a lambda's replicas, e.g.
    /// `proxy::ReplicaClient`). Call [`Platform::start`] to run the reconciler.
    pub fn new(
        cfg: PlatformConfig,
        storage: Storage,
        builder: Arc<dyn ImageBuilder>,
        orchestrator: Arc<dyn Orchestrator>,
        replicas: Arc<dyn crate::service::tasks::ReplicaCalls>,
    ) -> Self {
        let task_runner =
            crate::service::tasks::TaskRunner::new(storage.tasks(), cfg.tasks.clone(), replicas);
        Self {
            inner: Arc::new(Inner {
                traffic: Arc::default(),
                task_runner,
                slots: Arc::new(tokio::sync::Semaphore::new(cfg.build_concurrency.max(1))),
                cfg,
                repo: storage.records(),
                artifacts: storage.artifacts(),
                storage,
                builder,
                orchestrator,
                jobs: Mutex::default(),
                job_ids: AtomicU64::new(1),
                live_logs: Mutex::default(),
                routes: RwLock::default(),
                metrics: Metrics::default(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                gc: tokio::sync::Mutex::new(()),
                create_gate: tokio::sync::Mutex::new(()),
                scaler: scale::Scaler::default(),
            }),
        }
    }

    pub(crate) fn task_runner(&self) -> &crate::service::tasks::TaskRunner {
        &self.inner.task_runner
    }

    /// Cancelled when the platform stops.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Where background jobs run (waited for at shutdown).
    pub(crate) fn background(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// The settings.
    pub fn config(&self) -> &PlatformConfig {
        &self.inner.cfg
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Each lambda's proxied traffic: the proxy counts, the console's chart and `last_usage`
    /// read.
    pub fn traffic(&self) -> &Arc<crate::service::traffic::Traffic> {
        &self.inner.traffic
    }

    /// The orchestrator (the proxy resolves endpoints with it).
    pub fn orchestrator(&self) -> &Arc<dyn Orchestrator> {
        &self.inner.orchestrator
    }

    /// Repairs the store, reconciles once, then keeps reconciling every `reconcile_interval`.
    pub async fn start(&self) -> Result<()> {
        self.reconcile().await?;
        self.resume_tasks().await?;
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = this.inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(this.inner.cfg.reconcile_interval) => {}
                }
                if let Err(e) = this.reconcile().await {
                    tracing::warn!(error = %e, "reconcile failed");
                }
                // A task whose job stopped on an error (e.g. the store was unreachable) starts again.
                if let Err(e) = this.resume_failed_tasks().await {
                    tracing::warn!(error = %e, "resuming tasks failed");
                }
            }
        });
        if let Some(every) = self.inner.cfg.gc_interval {
            self.spawn_gc(every);
        }
        self.spawn_idle();
        self.spawn_autoscaler();
        Ok(())
    }

    /// Stops background work (running builds are cancelled and resumed at the next start) and
    /// leaves every lambda running for the next start to re-adopt.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        for job in self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            job.cancel.cancel();
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.orchestrator.shutdown().await;
    }

    /// The API tokens in the store.
    pub fn tokens(&self) -> lambda_storage::TokenStore {
        self.inner.storage.tokens()
    }

    /// The store's audit log.
    pub fn audit_store(&self) -> lambda_storage::AuditStore {
        self.inner.storage.audit()
    }

    /// Health of the store, the builder and the orchestrator.
    pub async fn health(&self) -> Health {
        let show = |r: std::result::Result<(), String>| r.err().unwrap_or_else(|| "ok".into());
        let (store, builder, orch) = tokio::join!(
            self.inner.storage.healthcheck(),
            self.inner.builder.health(),
            self.inner.orchestrator.health()
        );
        Health {
            store: show(store.map_err(|e| e.to_string())),
            builder: show(builder.map_err(|e| e.to_string())),
            orchestrator: show(orch.map_err(|e| e.to_string())),
            detail: None,
        }
    }

    /// Counts of lambdas by status (for `/metrics`).
    pub fn status_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for r in self
            .inner
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            *m.entry(r.status.as_str()).or_default() += 1;
        }
        m
    }
}
