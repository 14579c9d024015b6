//! The single-host Docker orchestrator (like faasd): one container per replica from the pushed
//! image, host networking (each replica on its own port, `LAMBDA_PORT`), the engine's
//! `unless-stopped` restart policy for crashes, our `/healthcheck` probe for readiness, the same
//! zero-downtime switch as the local orchestrator, and re-adoption of its containers (found by
//! labels) when the control plane starts again.

use crate::{
    DeploySpec, Deployed, DeploymentStatus, Error, Orchestrator, ReplicaPhase, ReplicaState, Result,
};
use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use lambda_core::render::{labels, runtime_env};
use lambda_core::{Artifact, LambdaId};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const LABEL_GENERATION: &str = "luna-lambda.io/generation";
const LABEL_REPLICA: &str = "luna-lambda.io/replica";
const LABEL_CONFIG: &str = "luna-lambda.io/config-hash";
const LABEL_PORT: &str = "luna-lambda.io/port";
const LABEL_INSTANCE: &str = labels::INSTANCE;

/// Settings of the Docker orchestrator.
#[derive(Debug, Clone)]
pub struct DockerOrchestratorConfig {
    /// Engine address (`DOCKER_HOST`).
    pub docker_host: String,
    /// How long a new replica has to answer `/healthcheck` (default 60 s).
    pub start_timeout: Duration,
    /// Seconds between SIGTERM and SIGKILL when stopping (default 10 s).
    pub stop_grace: Duration,
    /// Name of this platform on the engine (default `default`): containers are labelled with it,
    /// and only its own containers are adopted, listed or removed, so several platforms can share
    /// one engine.
    pub instance: String,
}

impl DockerOrchestratorConfig {
    /// Defaults for an engine.
    pub fn new(docker_host: impl Into<String>) -> Self {
        Self {
            docker_host: docker_host.into(),
            start_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            instance: "default".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Replica {
    container: String,
    name: String,
    port: u16,
}

#[derive(Debug, Clone)]
struct Deployment {
    version: u64,
    generation: u64,
    config_hash: String,
    /// The replicas that serve.
    replicas: Vec<Replica>,
    /// Containers stopped by a scale to zero, kept to be started again on a wake (faster than
    /// creating them).
    stopped: Vec<Replica>,
}

/// Runs lambdas as containers on one Docker engine (see the module docs).
#[derive(Debug)]
pub struct DockerOrchestrator {
    docker: Docker,
    cfg: DockerOrchestratorConfig,
    table: RwLock<HashMap<LambdaId, Deployment>>,
    locks: Mutex<HashMap<LambdaId, Arc<tokio::sync::Mutex<()>>>>,
    rr: AtomicUsize,
}

fn engine(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("Docker engine: {e}"))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(engine)?;
    l.local_addr().map(|a| a.port()).map_err(engine)
}

async fn healthy(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET /healthcheck HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), probe).await,
        Ok(Some(true))
    )
}

impl DockerOrchestrator {
    /// Connects and re-adopts the containers of an earlier control plane (the newest generation
    /// of each lambda; older or stopped ones are removed).
    pub async fn open(cfg: DockerOrchestratorConfig) -> Result<Arc<Self>> {
        let host = cfg.docker_host.trim().to_owned();
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(
                &host.replacen("tcp://", "http://", 1),
                120,
                bollard::API_DEFAULT_VERSION,
            )
        }
        .map_err(engine)?;
        let this = Arc::new(Self {
            docker,
            cfg,
            table: RwLock::default(),
            locks: Mutex::default(),
            rr: AtomicUsize::new(0),
        });
        this.readopt().await?;
        Ok(this)
    }

    async fn containers(
        &self,
        lambda: Option<&LambdaId>,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        let mut label = vec![
            format!("{}={}", labels::MANAGED_BY, lambda_core::render::MANAGED_BY),
            format!("{LABEL_INSTANCE}={}", self.cfg.instance),
        ];
        if let Some(id) = lambda {
            label.push(format!("{}={id}", labels::ID));
        }
        filters.insert("label", label);
        self.docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(engine)
    }

    async fn readopt(&self) -> Result<()> {
        let mut newest: HashMap<LambdaId, Deployment> = HashMap::new();
        let all = self.containers(None).await?;
        for c in &all {
            let l = c.labels.clone().unwrap_or_default();
            let (Some(id), Some(generation), Some(port)) = (
                l.get(labels::ID).and_then(|s| s.parse::<LambdaId>().ok()),
                l.get(LABEL_GENERATION).and_then(|s| s.parse::<u64>().ok()),
                l.get(LABEL_PORT).and_then(|s| s.parse::<u16>().ok()),
            ) else {
                continue;
            };
            let d = newest.entry(id).or_insert_with(|| Deployment {
                version: 0,
                generation: 0,
                config_hash: String::new(),
                replicas: Vec::new(),
                stopped: Vec::new(),
            });
            if generation > d.generation {
                d.generation = generation;
                d.replicas.clear();
            }
            if generation == d.generation {
                d.version = l
                    .get(labels::VERSION)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                d.config_hash = l.get(LABEL_CONFIG).cloned().unwrap_or_default();
                let r = Replica {
                    container: c.id.clone().unwrap_or_default(),
                    name: l.get(LABEL_REPLICA).cloned().unwrap_or_default(),
                    port,
                };
                if c.state == Some(ContainerSummaryStateEnum::RUNNING) {
                    d.replicas.push(r);
                } else {
                    d.stopped.push(r);
                }
            }
        }
        // Remove what is not the newest generation.
        for c in &all {
            let l = c.labels.clone().unwrap_or_default();
            let keep = l
                .get(labels::ID)
                .and_then(|s| s.parse::<LambdaId>().ok())
                .and_then(|id| newest.get(&id))
                .is_some_and(|d| {
                    d.replicas
                        .iter()
                        .chain(&d.stopped)
                        .any(|r| Some(&r.container) == c.id.as_ref())
                });
            if !keep && let Some(cid) = &c.id {
                self.remove(cid).await;
            }
        }
        for d in newest.values_mut() {
            if !d.replicas.is_empty() {
                // A stopped replica beside running ones is started again; when all are
                // stopped, the lambda was scaled to zero and stays so until a wake.
                for r in d.stopped.drain(..) {
                    let _ = self.docker.start_container(&r.container, None).await;
                    d.replicas.push(r);
                }
            }
            d.replicas.sort_by(|a, b| a.name.cmp(&b.name));
        }
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = newest;
        Ok(())
    }

    async fn remove(&self, container: &str) {
        self.stop(container).await;
        let _ = self
            .docker
            .remove_container(
                container,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
    }

    /// This platform's deployment of a lambda, as last recorded.
    fn deployment(&self, id: &LambdaId) -> Result<Deployment> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or(Error::NotFound(*id))
    }

    fn lock_for(&self, id: &LambdaId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*id)
            .or_default()
            .clone()
    }

    async fn ensure_image(&self, reference: &str) -> Result<()> {
        if self.docker.inspect_image(reference).await.is_ok() {
            return Ok(());
        }
        let mut pull = self.docker.create_image(
            Some(
                CreateImageOptionsBuilder::default()
                    .from_image(reference)
                    .build(),
            ),
            None,
            None,
        );
        while let Some(item) = pull.next().await {
            item.map_err(|e| Error::StartFailed {
                reason: format!("cannot pull {reference}: {e}"),
            })?;
        }
        Ok(())
    }

    async fn last_logs(&self, container: &str, n: usize) -> String {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        let mut s = self.docker.logs(container, Some(opts));
        let mut out = String::new();
        while let Some(Ok(chunk)) = s.next().await {
            out.push_str(&chunk.to_string());
        }
        out.trim().replace('\n', " | ")
    }

    async fn wait_ready(&self, r: &Replica, deadline: Instant) -> Result<()> {
        loop {
            if healthy(r.port).await {
                return Ok(());
            }
            let state = self
                .docker
                .inspect_container(&r.container, None::<InspectContainerOptions>)
                .await
                .ok();
            let restarts = state.as_ref().and_then(|s| s.restart_count).unwrap_or(0);
            let running = state
                .as_ref()
                .and_then(|s| s.state.as_ref())
                .and_then(|s| s.running)
                .unwrap_or(false);
            // Exited (and maybe restarted by the engine) before it ever answered.
            let started_for = self
                .cfg
                .start_timeout
                .saturating_sub(deadline.saturating_duration_since(Instant::now()));
            if restarts > 0 || (!running && started_for > Duration::from_secs(2)) {
                return Err(Error::StartFailed {
                    reason: format!(
                        "replica {} exited; last output: {}",
                        r.name,
                        self.last_logs(&r.container, 5).await
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::StartFailed {
                    reason: format!(
                        "replica {} did not answer /healthcheck in time; last output: {}",
                        r.name,
                        self.last_logs(&r.container, 5).await
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn deploy_inner(self: Arc<Self>, spec: DeploySpec) -> Result<()> {
        let lock = self.lock_for(&spec.lambda_id);
        let _held = lock.lock().await;
        let Artifact::Image { reference, .. } = &spec.artifact else {
            return Err(Error::Unsupported(
                "the Docker orchestrator runs images; use [builder] kind = \"docker\"".into(),
            ));
        };
        let id = spec.lambda_id;
        let mut plan = ContainerPlan::new(&spec, reference, &self.cfg.instance);
        let wanted = spec.replicas.max(1) as usize;
        let current = self.deployment(&id).ok();
        if let Some(d) = &current
            && d.config_hash == plan.config_hash
        {
            // What runs already: only the count may differ.
            return self.set_replicas(&id, wanted).await;
        }
        self.ensure_image(reference).await?;
        plan.generation = current.as_ref().map_or(1, |d| d.generation + 1);
        let generation = plan.generation;
        let mut fresh = Vec::new();
        for i in 0..wanted {
            let port = free_port()?;
            let name = format!("{}-{generation}-{i}", spec.lambda_name);
            let container = self
                .create_started(
                    &format!("luna-lambda-{id}-{generation}-{i}"),
                    plan.body(&name, port),
                )
                .await?;
            fresh.push(Replica {
                container,
                name,
                port,
            });
        }
        let deadline = Instant::now() + self.cfg.start_timeout;
        for r in &fresh {
            if let Err(e) = self.wait_ready(r, deadline).await {
                for r in &fresh {
                    self.remove(&r.container).await;
                }
                return Err(e);
            }
        }
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Deployment {
                    version: spec.version,
                    generation,
                    config_hash: plan.config_hash,
                    replicas: fresh,
                    stopped: Vec::new(),
                },
            );
        if let Some(old) = current {
            for r in old.replicas.iter().chain(&old.stopped) {
                self.remove(&r.container).await;
            }
        }
        Ok(())
    }
}

/// What the containers of one deployment of a lambda share: their image, runtime settings,
/// limits and labels.
struct ContainerPlan<'a> {
    spec: &'a DeploySpec,
    reference: &'a str,
    instance: &'a str,
    /// `userConfig` as JSON.
    user_config: String,
    /// What a running deployment is compared with: the same hash, nothing to replace.
    config_hash: String,
    generation: u64,
    memory: Option<f64>,
    cpus: Option<f64>,
}

impl<'a> ContainerPlan<'a> {
    fn new(spec: &'a DeploySpec, reference: &'a str, instance: &'a str) -> Self {
        let p = &spec.parameters;
        let user_config =
            serde_json::to_string(&p.user_config.clone().unwrap_or(serde_json::Value::Null))
                .unwrap_or_default();
        let config_hash = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(reference.as_bytes());
            h.update(user_config.as_bytes());
            h.update(p.workers.to_le_bytes());
            h.update(serde_json::to_vec(&p.env).unwrap_or_default());
            h.update(serde_json::to_vec(&p.deploy_parameters.resources).unwrap_or_default());
            lambda_core::hex(&h.finalize()[..8])
        };
        let quantity = |q: &Option<String>| {
            q.as_deref()
                .and_then(|q| lambda_core::params::parse_quantity(q).ok())
        };
        let resources = &p.deploy_parameters.resources;
        Self {
            spec,
            reference,
            instance,
            user_config,
            config_hash,
            generation: 1,
            memory: quantity(&resources.memory_limit),
            cpus: quantity(&resources.cpu_limit),
        }
    }

    /// The container of replica `name`, listening on `port` of the host's network.
    fn body(&self, name: &str, port: u16) -> ContainerCreateBody {
        let (spec, p) = (self.spec, &self.spec.parameters);
        let id = spec.lambda_id;
        let mut env: Vec<String> =
            runtime_env(&id, spec.lambda_type, spec.version, p.workers, port, "")
                .into_iter()
                .filter(|(k, _)| k != "LAMBDA_USER_CONFIG_FILE")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
        env.push("LAMBDA_HOST=127.0.0.1".into());
        env.push(format!("LAMBDA_USER_CONFIG={}", self.user_config));
        env.extend(p.env.iter().map(|(k, v)| format!("{k}={v}")));
        let lbls = HashMap::from([
            (
                labels::MANAGED_BY.to_owned(),
                lambda_core::render::MANAGED_BY.to_owned(),
            ),
            (labels::ID.to_owned(), id.to_string()),
            (labels::NAME.to_owned(), spec.lambda_name.to_string()),
            (labels::VERSION.to_owned(), spec.version.to_string()),
            (LABEL_GENERATION.to_owned(), self.generation.to_string()),
            (LABEL_REPLICA.to_owned(), name.to_owned()),
            (LABEL_CONFIG.to_owned(), self.config_hash.clone()),
            (LABEL_PORT.to_owned(), port.to_string()),
            (LABEL_INSTANCE.to_owned(), self.instance.to_owned()),
        ]);
        ContainerCreateBody {
            image: Some(self.reference.to_owned()),
            env: Some(env),
            labels: Some(lbls),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                memory: self.memory.map(|m| m as i64),
                nano_cpus: self.cpus.map(|c| (c * 1e9) as i64),
                // Hardened like the Kubernetes pods: no capabilities, no privilege gain.
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl DockerOrchestrator {
    /// [`Self::set_replicas`] with the lambda's lock.
    async fn scale_locked(self: Arc<Self>, id: LambdaId, replicas: u32) -> Result<()> {
        let lock = self.lock_for(&id);
        let _held = lock.lock().await;
        self.set_replicas(&id, replicas as usize).await
    }

    /// Sets the number of serving replicas (the lambda's lock held): fewer removes the newest
    /// (to zero: stops them all and keeps them for a wake); more starts the kept ones first,
    /// then creates copies of an existing container (same image, environment and limits, its
    /// own port), and waits until they answer.
    async fn set_replicas(&self, id: &LambdaId, wanted: usize) -> Result<()> {
        let d = self.deployment(id)?;
        if wanted == d.replicas.len() {
            return Ok(());
        }
        if wanted < d.replicas.len() {
            let gone = {
                let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
                let d = table.get_mut(id).ok_or(Error::NotFound(*id))?;
                let gone = d.replicas.split_off(wanted);
                if wanted == 0 {
                    d.stopped.extend(gone.iter().cloned());
                }
                gone
            };
            for r in &gone {
                if wanted == 0 {
                    self.stop(&r.container).await;
                } else {
                    self.remove(&r.container).await;
                }
            }
            return Ok(());
        }
        let mut fresh = Vec::new();
        let mut kept = d.stopped.clone();
        let result = self
            .start_more(id, &d, wanted - d.replicas.len(), &mut kept, &mut fresh)
            .await;
        if let Err(e) = result {
            // Kept containers are stopped again (still kept for the next try), copies removed.
            for r in &fresh {
                if d.stopped.iter().any(|k| k.container == r.container) {
                    self.stop(&r.container).await;
                } else {
                    self.remove(&r.container).await;
                }
            }
            return Err(e);
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let d = table.get_mut(id).ok_or(Error::NotFound(*id))?;
        d.stopped = kept;
        d.replicas.extend(fresh);
        Ok(())
    }

    /// Starts `n` more replicas of `d` (kept stopped ones first, then copies) into `fresh`, and
    /// waits until each answers.
    async fn start_more(
        &self,
        id: &LambdaId,
        d: &Deployment,
        n: usize,
        kept: &mut Vec<Replica>,
        fresh: &mut Vec<Replica>,
    ) -> Result<()> {
        let template = d
            .replicas
            .first()
            .or(kept.first())
            .map(|r| r.container.clone())
            .ok_or_else(|| Error::StartFailed {
                reason: format!("lambda {id} has no container to copy; deploy it again"),
            })?;
        let mut next = crate::next_replica_index(
            d.replicas
                .iter()
                .chain(kept.iter())
                .map(|r| r.name.as_str()),
        );
        for _ in 0..n {
            let r = match kept.pop() {
                Some(r) => {
                    self.docker
                        .start_container(&r.container, None)
                        .await
                        .map_err(|e| Error::StartFailed {
                            reason: format!("cannot start container of {}: {e}", r.name),
                        })?;
                    r
                }
                None => {
                    let index = next;
                    next += 1;
                    self.copy_replica(id, d.generation, &template, index)
                        .await?
                }
            };
            fresh.push(r);
        }
        let deadline = Instant::now() + self.cfg.start_timeout;
        for r in fresh.iter() {
            self.wait_ready(r, deadline).await?;
        }
        Ok(())
    }

    /// A new container like `template` (a replica of the same generation), on its own port.
    async fn copy_replica(
        &self,
        id: &LambdaId,
        generation: u64,
        template: &str,
        index: usize,
    ) -> Result<Replica> {
        let t = self
            .docker
            .inspect_container(template, None::<InspectContainerOptions>)
            .await
            .map_err(engine)?;
        let config = t.config.unwrap_or_default();
        let port = free_port()?;
        let mut labels = config.labels.unwrap_or_default();
        let base = labels
            .get(LABEL_REPLICA)
            .and_then(|n| n.rsplit_once('-').map(|(b, _)| b.to_owned()))
            .unwrap_or_default();
        let name = format!("{base}-{index}");
        labels.insert(LABEL_REPLICA.to_owned(), name.clone());
        labels.insert(LABEL_PORT.to_owned(), port.to_string());
        let env = config
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                if e.starts_with("LAMBDA_PORT=") {
                    format!("LAMBDA_PORT={port}")
                } else {
                    e
                }
            })
            .collect();
        let body = ContainerCreateBody {
            image: config.image,
            env: Some(env),
            labels: Some(labels),
            host_config: t.host_config,
            ..Default::default()
        };
        let container = self
            .create_started(&format!("luna-lambda-{id}-{generation}-{index}"), body)
            .await?;
        Ok(Replica {
            container,
            name,
            port,
        })
    }

    /// Creates and starts a container (removed again when it does not start); its id.
    async fn create_started(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .map_err(|e| Error::StartFailed {
                reason: format!("cannot create container {name}: {e}"),
            })?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            self.remove(&created.id).await;
            return Err(Error::StartFailed {
                reason: format!("cannot start container {name}: {e}"),
            });
        }
        Ok(created.id)
    }

    /// Stops a container and keeps it.
    async fn stop(&self, container: &str) {
        let grace = self.cfg.stop_grace.as_secs() as i32;
        let _ = self
            .docker
            .stop_container(
                container,
                Some(StopContainerOptionsBuilder::default().t(grace).build()),
            )
            .await;
    }
}

#[async_trait]
impl Orchestrator for Arc<DockerOrchestrator> {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn deploy(&self, spec: DeploySpec) -> Result<()> {
        crate::to_completion("deploy", self.clone().deploy_inner(spec)).await
    }

    async fn scale(&self, lambda_id: &LambdaId, replicas: u32) -> Result<()> {
        crate::to_completion("scale", self.clone().scale_locked(*lambda_id, replicas)).await
    }

    async fn undeploy(&self, lambda_id: &LambdaId) -> Result<()> {
        let lock = self.lock_for(lambda_id);
        let _held = lock.lock().await;
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(lambda_id);
        for c in self.containers(Some(lambda_id)).await? {
            if let Some(cid) = c.id {
                self.remove(&cid).await;
            }
        }
        Ok(())
    }

    async fn status(&self, lambda_id: &LambdaId) -> Result<DeploymentStatus> {
        let d = self.deployment(lambda_id)?;
        let mut replicas = Vec::new();
        for r in &d.replicas {
            let inspect = self
                .docker
                .inspect_container(&r.container, None::<InspectContainerOptions>)
                .await
                .ok();
            let restarts = inspect.as_ref().and_then(|i| i.restart_count).unwrap_or(0) as u32;
            let state = inspect.as_ref().and_then(|i| i.state.clone());
            let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
            let (phase, reason) = if inspect.is_none() {
                (
                    ReplicaPhase::Stopped,
                    Some("the container is gone".to_owned()),
                )
            } else if running && healthy(r.port).await {
                (ReplicaPhase::Running, None)
            } else if running {
                (ReplicaPhase::Starting, None)
            } else {
                let code = state.as_ref().and_then(|s| s.exit_code).unwrap_or(0);
                (
                    ReplicaPhase::Restarting,
                    Some(format!(
                        "exited with code {code}; last output: {}",
                        self.last_logs(&r.container, 5).await
                    )),
                )
            };
            replicas.push(ReplicaState {
                name: r.name.clone(),
                phase,
                reason,
                restarts,
            });
        }
        Ok(DeploymentStatus {
            version: d.version,
            replicas,
        })
    }

    async fn logs(
        &self,
        lambda_id: &LambdaId,
        tail: Option<usize>,
    ) -> Result<BTreeMap<String, String>> {
        let d = self.deployment(lambda_id)?;
        let mut out = BTreeMap::new();
        for r in &d.replicas {
            let tail = tail.map_or("all".to_owned(), |t| t.to_string());
            let opts = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .tail(&tail)
                .build();
            let mut s = self.docker.logs(&r.container, Some(opts));
            let mut text = String::new();
            while let Some(Ok(chunk)) = s.next().await {
                text.push_str(&chunk.to_string());
            }
            out.insert(r.name.clone(), text);
        }
        Ok(out)
    }

    async fn follow_logs(&self, lambda_id: &LambdaId) -> Result<BoxStream<'static, String>> {
        let d = self.deployment(lambda_id)?;
        // The request is made when the stream is first polled: ask for everything from now on.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i32);
        let streams = d.replicas.iter().map(|r| {
            let name = r.name.clone();
            let opts = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .follow(true)
                .since(since)
                .build();
            self.docker
                .logs(&r.container, Some(opts))
                .filter_map(move |c| {
                    let name = name.clone();
                    async move { c.ok().map(|c| c.to_string()).map(|t| (name, t)) }
                })
                .flat_map(|(name, text)| {
                    futures::stream::iter(
                        text.lines()
                            .map(|l| format!("[{name}] {l}"))
                            .collect::<Vec<_>>(),
                    )
                })
                .boxed()
        });
        Ok(futures::stream::select_all(streams).boxed())
    }

    async fn list(&self) -> Result<Vec<Deployed>> {
        Ok(self
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, d)| Deployed {
                lambda_id: *id,
                version: d.version,
            })
            .collect())
    }

    fn endpoint(&self, lambda_id: &LambdaId) -> Option<String> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let d = table.get(lambda_id)?;
        if d.replicas.is_empty() {
            return None;
        }
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % d.replicas.len();
        Some(format!("http://127.0.0.1:{}", d.replicas[i].port))
    }

    fn replica_endpoints(&self, lambda_id: &LambdaId) -> Vec<(String, String)> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table.get(lambda_id).map_or_else(Vec::new, |d| {
            d.replicas
                .iter()
                .map(|r| (r.name.clone(), format!("http://127.0.0.1:{}", r.port)))
                .collect()
        })
    }

    async fn health(&self) -> Result<()> {
        self.docker.ping().await.map(|_| ()).map_err(engine)
    }

    async fn shutdown(&self) {}
}
