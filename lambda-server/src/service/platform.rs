//! The Platform: the lifecycle of DESIGN.md §3 over the storage, builder and orchestrator ports.
//!
//! Requests validate synchronously and store; builds and deploys run as background jobs (one
//! per lambda; a newer one cancels the older), at most `build_concurrency` builds at a time
//! (queued builds stay `pending`). Every status change is written to the record before it is
//! acted on, and a reconciler, at start and every `reconcile_interval`, drives every record to
//! its desired state: interrupted builds are resumed, lambdas that should run but do not are
//! deployed again, deployments without a record are removed.

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
    /// A platform over the given ports. Call [`Platform::start`] to run the reconciler.
    pub fn new(
        cfg: PlatformConfig,
        storage: Storage,
        builder: Arc<dyn ImageBuilder>,
        orchestrator: Arc<dyn Orchestrator>,
    ) -> Self {
        let task_runner =
            crate::service::tasks::TaskRunner::new(storage.tasks(), cfg.tasks.clone());
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

    fn cache(&self, rec: &LambdaRecord) {
        self.inner
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.lambda_id, Route::of(rec));
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

    /// Validates an archive and parameters together (off the async threads).
    async fn validate(
        &self,
        archive: Bytes,
        params: Option<Bytes>,
        lambda_type: LambdaType,
    ) -> Result<(ValidatedArchive, Parameters)> {
        let limits = self.inner.cfg.limits.clone();
        let os = self.inner.cfg.base_os;
        let snapshot_builder = self.inner.builder.kind() == "kubernetes";
        let (archive_result, params_result) = tokio::task::spawn_blocking(move || {
            let a = validate_bytes_for(&archive, &limits, lambda_type);
            let p = match &params {
                Some(p) => parse_params(p, os, snapshot_builder),
                None => Ok(Parameters::default()),
            };
            (a, p)
        })
        .await
        .map_err(|e| Error::Internal(format!("validation task failed: {e}")))?;
        let mut report = ValidationReport::default();
        let archive = archive_result.map_err(|r| report.extend(r)).ok();
        let params = params_result.map_err(|r| report.extend(r)).ok();
        match (archive, params) {
            (Some(a), Some(p)) => Ok((a, p)),
            _ => Err(Error::Invalid(report)),
        }
    }

    /// Checks an archive and parameters without storing anything.
    pub async fn check(
        &self,
        archive: Bytes,
        parameters: Option<Bytes>,
        lambda_type: LambdaType,
    ) -> Result<()> {
        self.validate(archive, parameters, lambda_type)
            .await
            .map(|_| ())
    }

    async fn store_docs(
        &self,
        id: &LambdaId,
        version: u64,
        bytes: &Bytes,
        archive: &ValidatedArchive,
    ) -> Result<()> {
        if !archive.has_docs {
            return Ok(());
        }
        let (bytes, archive) = (bytes.clone(), archive.clone());
        let docs = tokio::task::spawn_blocking(move || {
            let mut docs: HashMap<String, Vec<u8>> = HashMap::new();
            for_each_user_file::<_, std::io::Error>(
                std::io::Cursor::new(&bytes[..]),
                &archive,
                |name, data| {
                    if name == DOCS_HTML || name == DOCS_YAML {
                        docs.insert(name.to_owned(), data.to_vec());
                    }
                    Ok(())
                },
            )
            .map(|_| docs)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(format!("reading the docs: {e}")))?;
        let html = Bytes::from(docs.get(DOCS_HTML).cloned().unwrap_or_default());
        let yaml = Bytes::from(docs.get(DOCS_YAML).cloned().unwrap_or_default());
        self.inner
            .artifacts
            .put_docs(id, version, html, yaml)
            .await?;
        Ok(())
    }

    /// Creates a lambda: validates (every problem at once), stores the archive and the record,
    /// and starts its build and deploy in the background.
    pub async fn create(
        &self,
        account_id: uuid::Uuid,
        credentials: Credentials,
        parameters: Option<Bytes>,
        archive: Bytes,
    ) -> Result<LambdaId> {
        let (validated, params) = self
            .validate(archive.clone(), parameters, credentials.lambda_type)
            .await?;
        let id = LambdaId::new();
        let info = self
            .inner
            .artifacts
            .put_archive_bytes(&id, 1, archive.clone())
            .await?;
        if let Err(e) = self.store_docs(&id, 1, &archive, &validated).await {
            let _ = self.inner.artifacts.delete_lambda(&id).await;
            return Err(e);
        }
        let rec = first_record(
            id,
            account_id,
            credentials,
            params,
            info,
            validated.has_docs,
            None,
        );
        self.insert_record(rec).await?;
        self.spawn_job(id, 1);
        Ok(id)
    }

    /// Writes a new lambda's record (its objects are stored already: they are removed when
    /// the record cannot be written) and notes its first version.
    async fn insert_record(&self, rec: LambdaRecord) -> Result<()> {
        let id = rec.lambda_id;
        let built = rec.image_status == ImageStatus::Completed;
        // Counting and writing under one lock: creates racing on this server cannot both take
        // the account's last place.
        let _gate = self.inner.create_gate.lock().await;
        if let Err(e) = self.check_lambda_limit(rec.account_id).await {
            let _ = self.inner.artifacts.delete_lambda(&id).await;
            return Err(e);
        }
        match self.inner.repo.create(rec).await {
            Ok(v) => {
                self.cache(&v.value);
                self.note_version(&v.value, None, built).await;
                Ok(())
            }
            Err(lambda_storage::Error::Conflict { what }) => {
                let _ = self.inner.artifacts.delete_lambda(&id).await;
                Err(Error::NameConflict(what))
            }
            Err(e) => {
                let _ = self.inner.artifacts.delete_lambda(&id).await;
                Err(e.into())
            }
        }
    }

    /// 409/42017 when the account has `max_lambdas_per_account` lambdas already.
    async fn check_lambda_limit(&self, account: uuid::Uuid) -> Result<()> {
        let max = self.inner.cfg.max_lambdas_per_account;
        if max == 0 {
            return Ok(());
        }
        let query = ListQuery {
            account_id: Some(account),
            page_size: 1,
            ..ListQuery::default()
        };
        let (_, total) = self.inner.repo.list(&query).await?;
        if total >= max as u64 {
            return Err(Error::LambdaLimit(max));
        }
        Ok(())
    }

    /// A record, checked against the caller's account when one is given.
    pub async fn get(&self, id: &LambdaId, account: Option<uuid::Uuid>) -> Result<LambdaRecord> {
        let rec = match self.inner.repo.get(id).await {
            Ok(v) => v.value,
            Err(lambda_storage::Error::NotFound { .. }) => {
                self.inner
                    .routes
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
                return Err(Error::NotFound(*id));
            }
            Err(e) => return Err(e.into()),
        };
        if account.is_some_and(|a| a != rec.account_id) {
            return Err(Error::NotFound(*id));
        }
        self.cache(&rec);
        Ok(rec)
    }

    /// A page of records and the total count.
    pub async fn list(&self, query: &ListQuery) -> Result<(Vec<LambdaRecord>, u64)> {
        Ok(self.inner.repo.list(query).await?)
    }

    /// Updates a lambda: a new version from a new archive (or the stored one) and/or new
    /// parameters. The running version keeps serving until the new one is ready.
    pub async fn update(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        credentials: Option<Credentials>,
        parameters: Option<Bytes>,
        archive: Option<Bytes>,
    ) -> Result<u64> {
        let current = self.get(id, account).await?;
        if let Some(image) = &current.import_image {
            return Err(Error::BadRequest(
                lambda_core::api::ErrorCode::ImportedImage,
                format!(
                    "Lambda update conflict. Lambda '{id}' cannot be updated, since it uses imported image {image}; create a new lambda instead"
                ),
            ));
        }
        if let Some(c) = &credentials
            && c.lambda_name != current.lambda_name
        {
            return Err(Error::UpdateNotAllowed(format!(
                "a lambda cannot be renamed (it is {:?}); create a new one instead",
                current.lambda_name.as_str()
            )));
        }
        let bytes = match archive {
            Some(b) => b,
            None => self.current_archive(&current).await?,
        };
        let params_json = match parameters {
            Some(p) => Some(p),
            None => Some(Bytes::from(
                serde_json::to_vec(&current.parameters).unwrap_or_default(),
            )),
        };
        let (validated, params) = self
            .validate(bytes.clone(), params_json, current.lambda_type)
            .await?;
        let version = current.lambda_version + 1;
        let info: ArchiveInfo = self
            .inner
            .artifacts
            .put_archive_bytes(id, version, bytes.clone())
            .await?;
        self.store_docs(id, version, &bytes, &validated).await?;
        self.start_version(
            &current,
            versions::NextVersion {
                parameters: params,
                archive: info,
                has_docs: validated.has_docs,
                lambda_type: credentials.map(|c| c.lambda_type),
                built: false,
                rolled_back_from: None,
            },
        )
        .await
    }

    /// The stored archive of a lambda's current version (410/42012 when it is gone).
    async fn current_archive(&self, rec: &LambdaRecord) -> Result<Bytes> {
        let id = &rec.lambda_id;
        match self
            .inner
            .artifacts
            .read_archive(id, rec.lambda_version, &rec.archive)
            .await
        {
            Ok(b) => Ok(b),
            Err(lambda_storage::Error::NotFound { .. }) => Err(Error::ArchiveGone(*id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the user config and restarts the lambda with it, without a rebuild.
    pub async fn set_config(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        user_config: Option<serde_json::Value>,
    ) -> Result<u64> {
        self.get(id, account).await?;
        let check = Parameters {
            user_config: user_config.clone(),
            ..Parameters::default()
        };
        let report = check.check();
        if !report.is_ok() {
            return Err(Error::Invalid(report));
        }
        let rec = self
            .inner
            .repo
            .update_with::<_, Error>(id, |rec| {
                rec.parameters.user_config = user_config.clone();
                rec.last_update_time = now();
                Ok(())
            })
            .await?;
        self.cache(&rec.value);
        if rec.value.image_status == ImageStatus::Completed && rec.value.alive {
            self.spawn_job(*id, rec.value.lambda_version);
        }
        Ok(rec.value.lambda_version)
    }

    /// Switches a lambda off (undeployed, record and archive kept) or on (deployed again).
    pub async fn switch(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        alive: bool,
    ) -> Result<LambdaRecord> {
        self.switch_with_reason(id, account, alive, "switched off".into())
            .await
    }

    /// [`Self::switch`], with the reason a switched-off record carries (a switch on clears any
    /// "switched off" reason).
    async fn switch_with_reason(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        alive: bool,
        off_reason: String,
    ) -> Result<LambdaRecord> {
        self.get(id, account).await?;
        let rec = self
            .inner
            .repo
            .update_with::<_, Error>(id, |rec| {
                rec.alive = alive;
                rec.last_update_time = now();
                if !alive {
                    set_status(rec, LambdaStatus::Waiting);
                    rec.running_version = None;
                    rec.replicas = 0;
                    rec.reason = Some(off_reason.clone());
                } else if rec
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("switched off"))
                {
                    rec.reason = None;
                }
                Ok(())
            })
            .await?
            .value;
        self.cache(&rec);
        if alive {
            self.spawn_job(*id, rec.lambda_version);
        } else {
            self.cancel_job(id);
            self.inner.orchestrator.undeploy(id).await?;
        }
        Ok(rec)
    }

    /// Deletes a lambda: its record first (so it is gone for the API at once), then its
    /// deployment, archives, logs, docs and built artifacts. A crash in between is finished by
    /// the reconciler and the storage recovery.
    pub async fn delete(&self, id: &LambdaId, account: Option<uuid::Uuid>) -> Result<()> {
        let rec = self.get(id, account).await?;
        self.cancel_job(id);
        if let Err(e) = self.cancel_tasks_of(id).await {
            tracing::warn!(lambda = %id, error = %e, "cancelling the lambda's tasks failed");
        }
        match self.inner.repo.delete(id).await {
            Ok(()) | Err(lambda_storage::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.inner.traffic.forget(id);
        self.inner.scaler.forget(id);
        self.inner.metrics.set_replicas(id, None);
        if let Err(e) = self.inner.orchestrator.undeploy(id).await {
            tracing::warn!(lambda = %id, error = %e, "undeploy after delete failed; the reconciler retries");
        }
        for v in 1..=rec.lambda_version {
            if let Ok(artifact) = self.inner.artifacts.get_artifact(id, v).await
                && let Err(e) = self.inner.builder.remove(id, &artifact).await
            {
                self.inner.metrics.cleanup_failed();
                tracing::warn!(lambda = %id, version = v, error = %e, "removing a built artifact failed");
            }
        }
        if let Err(e) = self.inner.artifacts.delete_lambda(id).await {
            tracing::warn!(lambda = %id, error = %e, "deleting stored objects failed; storage recovery retries");
        }
        Ok(())
    }

    /// Deploy status with each replica.
    pub async fn status(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<StatusResponse> {
        let rec = self.get(id, account).await?;
        let replicas = match self.inner.orchestrator.status(id).await {
            Ok(st) => st
                .replicas
                .into_iter()
                .map(|r| ReplicaStatus {
                    name: r.name,
                    status: r.phase.as_str().to_owned(),
                    reason: r.reason,
                    restarts: r.restarts,
                })
                .collect(),
            Err(lambda_deploy::Error::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(StatusResponse {
            status: rec.status,
            reason: rec.reason,
            replicas,
        })
    }

    /// Build status.
    pub async fn image_status(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<ImageStatusResponse> {
        let rec = self.get(id, account).await?;
        let reason = if rec.image_status == ImageStatus::Error {
            rec.reason
        } else {
            None
        };
        Ok(ImageStatusResponse {
            status: rec.image_status,
            reason,
        })
    }

    fn live_log(&self, id: &LambdaId, version: u64) -> Option<Arc<LiveLog>> {
        self.inner
            .live_logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(*id, version))
            .cloned()
    }

    /// The build log of the current version (so far, when building).
    pub async fn build_log(&self, id: &LambdaId, account: Option<uuid::Uuid>) -> Result<String> {
        let rec = self.get(id, account).await?;
        if let Some(live) = self.live_log(id, rec.lambda_version) {
            return Ok(live.text());
        }
        match self
            .inner
            .artifacts
            .get_build_log(id, rec.lambda_version)
            .await
        {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(lambda_storage::Error::NotFound { .. }) => Ok(String::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The build log, then its new lines as they are produced, until the build ends.
    pub async fn follow_build_log(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<BoxStream<'static, String>> {
        let rec = self.get(id, account).await?;
        let Some(live) = self.live_log(id, rec.lambda_version) else {
            let text = self.build_log(id, account).await?;
            return Ok(Box::pin(futures::stream::iter(
                text.lines().map(|l| format!("{l}\n")).collect::<Vec<_>>(),
            )));
        };
        let stream = futures::stream::unfold((live, 0usize), |(live, idx)| async move {
            let line = loop {
                let notified = live.changed.notified();
                tokio::pin!(notified);
                // Register before looking, so a line pushed in between is not missed.
                notified.as_mut().enable();
                let next = live
                    .lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(idx)
                    .cloned();
                match next {
                    Some(line) => break line,
                    None if live.done.load(Ordering::SeqCst) => return None,
                    None => notified.await,
                }
            };
            Some((format!("{line}\n"), (live, idx + 1)))
        });
        Ok(Box::pin(stream))
    }

    /// Runtime logs per replica.
    pub async fn runtime_logs(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        tail: Option<usize>,
    ) -> Result<BTreeMap<String, String>> {
        self.get(id, account).await?;
        match self.inner.orchestrator.logs(id, tail).await {
            Ok(l) => Ok(l),
            Err(lambda_deploy::Error::NotFound(_)) => Ok(BTreeMap::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The archive's docs; `None` when it has none.
    pub async fn docs(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        kind: DocKind,
    ) -> Result<Option<Bytes>> {
        let rec = self.get(id, account).await?;
        if !rec.has_docs {
            return Ok(None);
        }
        Ok(Some(
            self.inner
                .artifacts
                .get_doc(id, rec.lambda_version, kind)
                .await?,
        ))
    }

    /// Where the proxy sends a request, or why it cannot.
    pub async fn route(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<(Route, String)> {
        let route = self.route_entry(id, account).await?;
        Ok((route, self.endpoint(id)?))
    }

    /// Where the next request for a lambda goes, or that none of its replicas runs.
    fn endpoint(&self, id: &LambdaId) -> Result<String> {
        self.inner
            .orchestrator
            .endpoint(id)
            .ok_or(Error::NotRunning(*id))
    }

    /// What the proxy knows of a lambda the caller may reach and that is switched on.
    async fn route_entry(&self, id: &LambdaId, account: Option<uuid::Uuid>) -> Result<Route> {
        let route = match self.cached_route(id) {
            Some(r) => r,
            // Boxed: the storage read of a cache miss would otherwise size every proxied
            // request's future.
            None => Route::of(&Box::pin(self.get(id, None)).await?),
        };
        if account.is_some_and(|a| a != route.account_id) {
            return Err(Error::NotFound(*id));
        }
        if !route.alive {
            return Err(Error::SwitchedOff(*id));
        }
        Ok(route)
    }

    fn cached_route(&self, id: &LambdaId) -> Option<Route> {
        self.inner
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Each replica of a running lambda with its own address, for `GET /1/lambdas/{id}/metrics`;
    /// the same checks as the proxy (account, switched off, not running).
    pub async fn replica_endpoints(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<Vec<(String, String)>> {
        self.route(id, account).await?;
        let replicas = self.inner.orchestrator.replica_endpoints(id);
        if replicas.is_empty() {
            return Err(Error::NotRunning(*id));
        }
        Ok(replicas)
    }

    fn cancel_job(&self, id: &LambdaId) {
        if let Some(job) = self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            job.cancel.cancel();
        }
    }

    /// Starts the background job that builds (if needed) and deploys `version`.
    fn spawn_job(&self, id: LambdaId, version: u64) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let cancel = self.inner.shutdown.child_token();
        let job_id = self.inner.job_ids.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Job {
                    id: job_id,
                    cancel: cancel.clone(),
                },
            )
        {
            old.cancel.cancel();
        }
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.run_job(id, version, cancel).await {
                match e {
                    Error::Superseded(_) | Error::NotFound(_) => {}
                    e => tracing::warn!(lambda = %id, version, error = %e, "background job failed"),
                }
            }
            let mut jobs = this.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            if jobs.get(&id).is_some_and(|j| j.id == job_id) {
                jobs.remove(&id);
            }
        });
    }

    /// Applies `f` to the record if it is still at `version`.
    async fn update_record(
        &self,
        id: &LambdaId,
        version: u64,
        mut f: impl FnMut(&mut LambdaRecord),
    ) -> Result<LambdaRecord> {
        self.update_cached(id, |rec| {
            if rec.lambda_version != version {
                return Err(Error::Superseded(*id));
            }
            f(rec);
            Ok(())
        })
        .await
    }

    /// Applies `f` to the stored record (compare-and-swap, retried on a race), keeps the result
    /// in the route cache; a record that is gone is [`Error::NotFound`].
    async fn update_cached(
        &self,
        id: &LambdaId,
        f: impl FnMut(&mut LambdaRecord) -> Result<()>,
    ) -> Result<LambdaRecord> {
        let rec = self
            .inner
            .repo
            .update_with::<_, Error>(id, f)
            .await
            .map_err(|e| match e {
                Error::Storage(lambda_storage::Error::NotFound { .. }) => Error::NotFound(*id),
                e => e,
            })?
            .value;
        self.cache(&rec);
        Ok(rec)
    }

    async fn run_job(&self, id: LambdaId, version: u64, cancel: CancellationToken) -> Result<()> {
        let rec = self.get(&id, None).await?;
        if rec.lambda_version != version {
            return Err(Error::Superseded(id));
        }
        if rec.image_status != ImageStatus::Completed {
            self.build(&id, version, rec, &cancel).await?;
        }
        let rec = self.get(&id, None).await?;
        if rec.lambda_version != version || rec.image_status != ImageStatus::Completed || !rec.alive
        {
            return Ok(());
        }
        if cancel.is_cancelled() {
            return Ok(());
        }
        let artifact = match self.inner.artifacts.get_artifact(&id, version).await {
            Ok(a) => a,
            Err(lambda_storage::Error::NotFound { .. }) => {
                // Built by an older process whose artifact record is gone: build again.
                self.update_record(&id, version, |r| set_image(r, ImageStatus::Pending))
                    .await?;
                let rec = self.get(&id, None).await?;
                self.build(&id, version, rec, &cancel).await?;
                self.inner.artifacts.get_artifact(&id, version).await?
            }
            Err(e) => return Err(e.into()),
        };
        let started = Instant::now();
        let replicas = rec
            .parameters
            .deploy_parameters
            .replica_bounds(rec.parameters.eternal)
            .start_with((rec.replicas > 0).then_some(rec.replicas));
        let spec = DeploySpec {
            lambda_id: id,
            lambda_name: rec.lambda_name.clone(),
            lambda_type: rec.lambda_type,
            version,
            artifact,
            parameters: rec.parameters.clone(),
            replicas,
        };
        // Not raced against `cancel`: a deploy is bounded by the start timeout, and a newer job
        // waits for it (deploys of one lambda are serialised) and then replaces it.
        let result = self.inner.orchestrator.deploy(spec).await;
        if cancel.is_cancelled() {
            // Switched off, deleted or superseded meanwhile: whoever cancelled owns the state.
            return Ok(());
        }
        self.inner.metrics.observe_deploy(started.elapsed());
        match result {
            Ok(()) => {
                self.update_record(&id, version, |r| {
                    set_status(r, LambdaStatus::Running);
                    r.running_version = Some(version);
                    r.reason = None;
                    r.replicas = replicas;
                })
                .await?;
                self.inner.metrics.set_replicas(&id, Some(replicas));
                if Scaling::of(&rec).is_some() {
                    // Its idle time starts when it runs, not when it was uploaded.
                    self.inner.scaler.touch(&id);
                }
                self.retain_artifacts(&id, version).await;
            }
            Err(e) => {
                let still_serving = self.inner.orchestrator.status(&id).await.is_ok_and(|s| {
                    s.replicas
                        .iter()
                        .any(|r| r.phase == lambda_deploy::ReplicaPhase::Running)
                });
                let reason = e.to_string();
                self.update_record(&id, version, |r| {
                    if still_serving {
                        r.reason = Some(format!("version {version} did not start; the previous version keeps serving: {reason}"));
                    } else {
                        set_status(r, LambdaStatus::Terminated);
                        r.running_version = None;
                        r.reason = Some(reason.clone());
                        r.replicas = 0;
                    }
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn build(
        &self,
        id: &LambdaId,
        version: u64,
        rec: LambdaRecord,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let live = Arc::new(LiveLog::default());
        self.inner
            .live_logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((*id, version), live.clone());
        let result = self.build_with_log(id, version, rec, cancel, &live).await;
        live.finish();
        let _ = self
            .inner
            .artifacts
            .put_build_log(id, version, Bytes::from(live.text()))
            .await;
        self.inner
            .live_logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(*id, version));
        result
    }

    async fn build_with_log(
        &self,
        id: &LambdaId,
        version: u64,
        rec: LambdaRecord,
        cancel: &CancellationToken,
        live: &Arc<LiveLog>,
    ) -> Result<()> {
        live.push(format!(
            "==> lambda {id} v{version}: waiting for a build slot"
        ));
        let _permit = tokio::select! {
            p = self.inner.slots.clone().acquire_owned() => p.map_err(|e| Error::Internal(e.to_string()))?,
            _ = cancel.cancelled() => return Ok(()),
        };
        self.update_record(id, version, |r| set_image(r, ImageStatus::InProgress))
            .await?;
        let started = Instant::now();
        let bytes = match self
            .inner
            .artifacts
            .read_archive(id, version, &rec.archive)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                let reason = match e {
                    lambda_storage::Error::NotFound { .. } => {
                        "the stored archive is gone".to_owned()
                    }
                    e => format!("the stored archive cannot be read: {e}"),
                };
                live.push(format!("==> {reason}"));
                self.fail_build(id, version, reason).await?;
                return Ok(());
            }
        };
        let (validated, _) = match self.validate(bytes.clone(), None, rec.lambda_type).await {
            Ok(v) => v,
            Err(e) => {
                self.fail_build(id, version, format!("the stored archive is invalid: {e}"))
                    .await?;
                return Ok(());
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let pump = {
            let live = live.clone();
            tokio::spawn(async move {
                while let Some(line) = rx.recv().await {
                    live.push(line);
                }
            })
        };
        let req = BuildRequest {
            lambda_id: *id,
            version,
            lambda_type: rec.lambda_type,
            archive_bytes: bytes,
            archive: validated,
            parameters: rec.parameters.clone(),
            timeout: self.inner.cfg.build_timeout,
        };
        let result = self.inner.builder.build(req, tx, cancel.clone()).await;
        let _ = pump.await;
        self.inner.metrics.observe_build(started.elapsed());
        match result {
            Ok(artifact) => {
                self.inner
                    .artifacts
                    .put_artifact(id, version, &artifact)
                    .await?;
                self.update_record(id, version, |r| {
                    set_image(r, ImageStatus::Completed);
                    r.reason = None;
                })
                .await?;
                self.record_build_outcome(id, version, true).await;
            }
            Err(lambda_build::Error::Cancelled) => {}
            Err(e) => self.fail_build(id, version, e.to_string()).await?,
        }
        Ok(())
    }

    async fn fail_build(&self, id: &LambdaId, version: u64, reason: String) -> Result<()> {
        let serving = self.inner.orchestrator.endpoint(id).is_some();
        self.update_record(id, version, |r| {
            set_image(r, ImageStatus::Error);
            if !serving {
                set_status(r, LambdaStatus::Terminated);
            }
            r.reason = Some(reason.clone());
        })
        .await?;
        self.record_build_outcome(id, version, false).await;
        Ok(())
    }

    /// Every record, read a page at a time.
    async fn all_records(&self) -> Result<Vec<LambdaRecord>> {
        let mut records = Vec::new();
        let mut page = 1;
        loop {
            let q = ListQuery {
                page,
                page_size: 1000,
                ..ListQuery::default()
            };
            let (batch, count) = self.inner.repo.list(&q).await?;
            let n = batch.len();
            records.extend(batch);
            if n == 0 || records.len() as u64 >= count {
                return Ok(records);
            }
            page += 1;
        }
    }

    /// Drives every record to its desired state (see the module docs).
    pub async fn reconcile(&self) -> Result<()> {
        match self
            .inner
            .repo
            .recover(&self.inner.artifacts, self.inner.cfg.orphan_grace)
            .await
        {
            Ok(r) if r != lambda_storage::RecoveryReport::default() => {
                tracing::info!(report = ?r, "storage recovered")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "storage recovery failed"),
        }
        let records = self.all_records().await?;
        let deployed: HashMap<LambdaId, u64> = self
            .inner
            .orchestrator
            .list()
            .await?
            .into_iter()
            .map(|d| (d.lambda_id, d.version))
            .collect();
        for listed in &records {
            self.reconcile_record(listed, &deployed).await;
        }
        let known: std::collections::HashSet<LambdaId> =
            records.iter().map(|r| r.lambda_id).collect();
        for id in deployed.keys().filter(|id| !known.contains(id)) {
            tracing::info!(lambda = %id, "removing a deployment whose record is gone");
            if let Err(e) = self.inner.orchestrator.undeploy(id).await {
                tracing::warn!(lambda = %id, error = %e, "removing an orphan deployment failed");
            }
        }
        Ok(())
    }

    /// One record of a reconcile pass, `listed` at its start. A write of this process since then
    /// (a switch, an update, a deploy that finished) makes it stale, and acting on a stale record
    /// undid such a write (a switch on whose replica a pass then undeployed as switched off): a
    /// listed record that differs from the route cache is read again before it is cached, and
    /// every action is decided again on the record as it is just before it is taken.
    async fn reconcile_record(&self, listed: &LambdaRecord, deployed: &HashMap<LambdaId, u64>) {
        let id = listed.lambda_id;
        let current = self
            .cached_route(&id)
            .is_some_and(|r| r == Route::of(listed));
        let mut rec = if current {
            listed.clone()
        } else {
            let Some(stored) = self.stored_record(&id).await else {
                return;
            };
            stored
        };
        self.cache(&rec);
        if self.has_job(&id) || Self::reconcile_action(&rec, deployed).is_none() {
            return;
        }
        if current {
            // As listed, a moment ago: read once more before acting on it.
            let Some(stored) = self.stored_record(&id).await else {
                return;
            };
            if self.has_job(&id) {
                return;
            }
            rec = stored;
        }
        match Self::reconcile_action(&rec, deployed) {
            Some(Reconcile::Build) => {
                if rec.image_status == ImageStatus::InProgress {
                    // Interrupted by a restart: queue it again.
                    let _ = self
                        .update_record(&id, rec.lambda_version, |r| {
                            set_image(r, ImageStatus::Pending)
                        })
                        .await;
                }
                self.spawn_job(id, rec.lambda_version);
            }
            Some(Reconcile::Deploy) => self.spawn_job(id, rec.lambda_version),
            Some(Reconcile::Undeploy) => {
                if let Err(e) = self.inner.orchestrator.undeploy(&id).await {
                    tracing::warn!(lambda = %id, error = %e, "undeploying a switched-off lambda failed");
                }
            }
            None => {}
        }
    }

    /// What a reconcile pass does for `rec`, with `deployed` what the orchestrator runs.
    fn reconcile_action(
        rec: &LambdaRecord,
        deployed: &HashMap<LambdaId, u64>,
    ) -> Option<Reconcile> {
        let is_deployed = deployed.contains_key(&rec.lambda_id);
        match (rec.image_status, rec.alive) {
            (ImageStatus::Pending | ImageStatus::InProgress, _) => Some(Reconcile::Build),
            // A lambda that failed to start stays terminated until it is updated or switched off
            // and on: retrying a crash at every pass would only spin.
            (ImageStatus::Completed, true)
                if !is_deployed && rec.status != LambdaStatus::Terminated =>
            {
                Some(Reconcile::Deploy)
            }
            (_, false) if is_deployed => Some(Reconcile::Undeploy),
            _ => None,
        }
    }

    /// The stored record of `id` as it is now (`None`: gone, or unreadable this pass).
    async fn stored_record(&self, id: &LambdaId) -> Option<LambdaRecord> {
        match self.inner.repo.get(id).await {
            Ok(v) => Some(v.value),
            Err(e) => {
                if !matches!(e, lambda_storage::Error::NotFound { .. }) {
                    tracing::warn!(lambda = %id, error = %e, "reading a record to reconcile failed");
                }
                None
            }
        }
    }

    /// A build or deploy job of `id` is under way.
    fn has_job(&self, id: &LambdaId) -> bool {
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }
}
