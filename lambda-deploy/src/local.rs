//! The local orchestrator: each replica is a `run.py` process on a loopback port.
//!
//! - **Ports.** The orchestrator binds a replica's listening socket when it picks the port and
//!   holds it for the replica's life; every process it starts for the replica serves on that
//!   socket (`LAMBDA_LISTEN_FD`: stdin of a new interpreter, sent to a zygote with the fork
//!   request). No other process can take the port between the pick and the replica's start, so
//!   a health check never reaches another server, and requests made while a replica restarts
//!   wait in the backlog for the next process instead of being refused.
//! - **Supervision.** A task per replica restarts it when it exits, with exponential backoff,
//!   counting restarts and keeping the last output lines as the reason; a replica that stops
//!   answering `/healthcheck` (probed every `liveness_interval`) is killed and restarted.
//! - **Logs.** Each replica writes straight to `run/<id>/<replica>.log` (opened for append), so
//!   its output survives a restart of the control plane; files over `log_max_bytes` are rotated
//!   to `.log.1` (copy, then truncate).
//! - **Zero-downtime updates.** New replicas start and must answer `/healthcheck` before the
//!   endpoint table switches to them; only then are the old ones stopped (SIGTERM, which lets
//!   the runtime finish in-flight requests, then SIGKILL after `stop_grace`).
//! - **Restarts of the control plane.** `run/<id>/state.json` records every replica's pid and
//!   port. [`LocalOrchestrator::open`] re-adopts a replica whose process is alive, is ours (its
//!   command line names the app folder, or a zygote's child works in it) and answers; anything
//!   else is stopped and started again. Replicas run in their own process group, so stopping one
//!   stops its workers too.
//! - **Fast starts.** With `zygote` (the default) a replica is forked by a warm Python process of
//!   its environment that has imported the runtime and its server already (`zygote`); the
//!   replica then only imports its `lambda_main` and serves on its socket. When no zygote can be had,
//!   replicas start as new interpreters.

use crate::{
    DeploySpec, Deployed, DeploymentStatus, Error, Orchestrator, ReplicaPhase, ReplicaState, Result,
};
use async_trait::async_trait;
use futures::stream::BoxStream;
use lambda_core::render::{USER_CONFIG_FILE, runtime_env};
use lambda_core::{Artifact, LambdaId};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

mod zygote;

/// Settings of the local orchestrator.
#[derive(Debug, Clone)]
pub struct LocalOrchestratorConfig {
    /// Where state and logs live (`<data_dir>/run/`).
    pub data_dir: PathBuf,
    /// Environment every replica starts with (e.g. `PATH`, `HOME`, `LANG`), before the
    /// platform's `LAMBDA_*` variables and the lambda's own `env`. Nothing else is inherited.
    pub base_env: Vec<(String, String)>,
    /// How long a new replica has to answer `/healthcheck` (default 60 s).
    pub start_timeout: Duration,
    /// How long a stopping replica gets between SIGTERM and SIGKILL (default 10 s).
    pub stop_grace: Duration,
    /// A replica log is rotated past this size (default 10 MiB).
    pub log_max_bytes: u64,
    /// First restart delay; doubles per crash up to `backoff_max` (defaults 0.5 s and 30 s).
    pub backoff_initial: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// How often a running replica's `/healthcheck` is probed (default 10 s)...
    pub liveness_interval: Duration,
    /// ...with this timeout (default 5 s); after `liveness_failures` failures in a row (default
    /// 3) the replica is killed and restarted.
    pub liveness_timeout: Duration,
    /// Failed probes in a row that make a replica restart.
    pub liveness_failures: u32,
    /// Start replicas by forking a zygote: a warm Python process per environment that has
    /// imported the runtime and its server (default `true`); without one, or when it fails, a
    /// replica is a new interpreter.
    pub zygote: bool,
}

impl LocalOrchestratorConfig {
    /// Defaults under `data_dir`, with no inherited environment.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            base_env: Vec::new(),
            start_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            log_max_bytes: 10 * 1024 * 1024,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            liveness_interval: Duration::from_secs(10),
            liveness_timeout: Duration::from_secs(5),
            liveness_failures: 3,
            zygote: true,
        }
    }
}

/// What every replica of one generation runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Generation {
    /// The lambda's name, which replica names start with.
    #[serde(default)]
    lambda_name: String,
    /// The zygote that may fork its replicas (empty: none; they start plainly).
    #[serde(default)]
    zygote: String,
    number: u64,
    version: u64,
    config_hash: String,
    python: PathBuf,
    app_dir: PathBuf,
    env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReplicaRecord {
    name: String,
    port: u16,
    pid: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    lambda_id: LambdaId,
    generation: Generation,
    replicas: Vec<ReplicaRecord>,
}

#[derive(Debug)]
struct ReplicaRuntime {
    pid: Option<u32>,
    phase: ReplicaPhase,
    reason: Option<String>,
    restarts: u32,
}

#[derive(Debug)]
struct Replica {
    name: String,
    port: u16,
    /// The replica's listening socket, bound by the orchestrator when it chose the port and
    /// handed to every process it starts for the replica: no other process can take the port
    /// while the replica lives, and connections made while it restarts wait in the backlog.
    /// `None` for a replica adopted from an earlier control plane until it must be started again.
    listener: Mutex<Option<std::net::TcpListener>>,
    /// `http://127.0.0.1:<port>`, made once: the proxy asks for it on every request.
    endpoint: String,
    log: PathBuf,
    generation: Arc<Generation>,
    state: Mutex<ReplicaRuntime>,
    stop: CancellationToken,
    /// Set when the supervisor has ended (the process is gone).
    ended: CancellationToken,
}

impl Replica {
    fn snapshot(&self) -> ReplicaState {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        ReplicaState {
            name: self.name.clone(),
            phase: s.phase,
            reason: s.reason.clone(),
            restarts: s.restarts,
        }
    }

    fn set(&self, f: impl FnOnce(&mut ReplicaRuntime)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn phase(&self) -> ReplicaPhase {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).phase
    }
}

#[derive(Debug)]
struct Deployment {
    generation: Arc<Generation>,
    replicas: Vec<Arc<Replica>>,
}

#[derive(Debug, Default)]
struct Table {
    /// Looked up by every proxied request: a fast hash (the ids are the platform's own).
    deployments: foldhash::HashMap<LambdaId, Deployment>,
}

/// Runs lambdas as local processes (see the module docs).
#[derive(Debug)]
pub struct LocalOrchestrator {
    cfg: LocalOrchestratorConfig,
    table: RwLock<Table>,
    /// Serialises deploy/undeploy per lambda.
    locks: Mutex<HashMap<LambdaId, Arc<tokio::sync::Mutex<()>>>>,
    rr: AtomicUsize,
    /// Fired by [`LocalOrchestrator::detach`]: supervisors end, processes keep running.
    detached: CancellationToken,
    zygotes: zygote::Zygotes,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LocalOrchestrator {
    /// Opens the orchestrator and re-adopts (or restarts) the replicas recorded under
    /// `data_dir/run/` by an earlier process.
    pub async fn open(cfg: LocalOrchestratorConfig) -> Result<Arc<Self>> {
        let run = cfg.data_dir.join("run");
        tokio::fs::create_dir_all(&run).await.map_err(io(&run))?;
        let zygotes = zygote::Zygotes::new(cfg.data_dir.join("zygotes"), cfg.base_env.clone());
        let this = Arc::new(Self {
            zygotes,
            cfg,
            table: RwLock::default(),
            locks: Mutex::default(),
            rr: AtomicUsize::new(0),
            detached: CancellationToken::new(),
        });
        let mut dir = tokio::fs::read_dir(&run).await.map_err(io(&run))?;
        while let Some(entry) = dir.next_entry().await.map_err(io(&run))? {
            let state_path = entry.path().join("state.json");
            let Ok(text) = tokio::fs::read_to_string(&state_path).await else {
                continue;
            };
            let Ok(state) = serde_json::from_str::<StateFile>(&text) else {
                continue;
            };
            this.readopt(state).await?;
        }
        Ok(this)
    }

    /// Stops supervising without stopping anything: every replica keeps running and its state
    /// stays on disk, for the next [`LocalOrchestrator::open`] to re-adopt (the control plane's
    /// graceful shutdown). The orchestrator is unusable afterwards.
    pub async fn detach(&self) {
        self.detached.cancel();
        self.zygotes.stop().await;
        let replicas: Vec<Arc<Replica>> = {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            table
                .deployments
                .values()
                .flat_map(|d| d.replicas.iter().cloned())
                .collect()
        };
        for r in replicas {
            r.ended.cancelled().await;
        }
    }

    fn run_dir(&self, id: &LambdaId) -> PathBuf {
        self.cfg.data_dir.join("run").join(id.to_string())
    }

    fn lock_for(&self, id: &LambdaId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*id)
            .or_default()
            .clone()
    }

    async fn readopt(self: &Arc<Self>, state: StateFile) -> Result<()> {
        let id = state.lambda_id;
        let generation = Arc::new(state.generation);
        let mut replicas = Vec::new();
        for r in state.replicas {
            let adopt = match r.pid {
                Some(pid) if is_ours(pid, &generation.app_dir) => {
                    if healthy(r.port, Duration::from_secs(3)).await {
                        Some(pid)
                    } else {
                        // Ours but not answering: stop it so that no second copy ever runs.
                        terminate(pid, self.cfg.stop_grace).await;
                        None
                    }
                }
                _ => None,
            };
            let listener = match adopt {
                Some(_) => None,
                None => Some(replica_listener()?),
            };
            let port = listener.as_ref().map_or(Ok(r.port), listener_port)?;
            let replica =
                self.start_replica(&id, r.name, port, listener, generation.clone(), adopt);
            replicas.push(replica);
        }
        let deadline = Instant::now() + self.cfg.start_timeout;
        for r in &replicas {
            let _ = wait_running(r, deadline).await;
        }
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .deployments
            .insert(
                id,
                Deployment {
                    generation,
                    replicas,
                },
            );
        self.persist(&id).await
    }

    fn start_replica(
        self: &Arc<Self>,
        id: &LambdaId,
        name: String,
        port: u16,
        listener: Option<std::net::TcpListener>,
        generation: Arc<Generation>,
        adopted_pid: Option<u32>,
    ) -> Arc<Replica> {
        let replica = Arc::new(Replica {
            log: self.run_dir(id).join(format!("{name}.log")),
            name,
            port,
            listener: Mutex::new(listener),
            endpoint: format!("http://127.0.0.1:{port}"),
            generation,
            state: Mutex::new(ReplicaRuntime {
                pid: adopted_pid,
                phase: if adopted_pid.is_some() {
                    ReplicaPhase::Running
                } else {
                    ReplicaPhase::Starting
                },
                reason: None,
                restarts: 0,
            }),
            stop: CancellationToken::new(),
            ended: CancellationToken::new(),
        });
        let this = self.clone();
        let r = replica.clone();
        let id = *id;
        tokio::spawn(async move {
            this.supervise(id, r.clone(), adopted_pid).await;
            r.ended.cancel();
        });
        replica
    }

    /// Keeps one replica alive until it is told to stop.
    async fn supervise(self: Arc<Self>, id: LambdaId, r: Arc<Replica>, mut adopted: Option<u32>) {
        let mut backoff = self.cfg.backoff_initial;
        loop {
            let started = Instant::now();
            let run = match adopted.take() {
                Some(pid) => self.watch_adopted(pid, &r).await,
                None => self.run_once(&id, &r).await,
            };
            match run {
                Run::Over => return,
                Run::NotStarted(why) => r.set(|s| {
                    s.phase = ReplicaPhase::Restarting;
                    s.reason = Some(why);
                }),
                Run::Ended(exit_desc) => {
                    // It ended on its own: record why, wait, start it again.
                    if r.stop.is_cancelled() {
                        r.set(|s| s.phase = ReplicaPhase::Stopped);
                        return;
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = self.cfg.backoff_initial;
                    }
                    record_exit(&r, &exit_desc).await;
                }
            }
            tokio::select! {
                _ = r.stop.cancelled() => { r.set(|s| s.phase = ReplicaPhase::Stopped); return; }
                _ = self.detached.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    /// Watches a replica this server did not start (adopted after a restart) until it ends.
    async fn watch_adopted(&self, pid: u32, r: &Replica) -> Run {
        let ended = exited(pid);
        tokio::pin!(ended);
        loop {
            tokio::select! {
                _ = r.stop.cancelled() => {
                    terminate(pid, self.cfg.stop_grace).await;
                    r.set(|s| { s.phase = ReplicaPhase::Stopped; s.pid = None; });
                    return Run::Over;
                }
                _ = self.detached.cancelled() => return Run::Over,
                _ = &mut ended => return Run::Ended("exited".to_owned()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            self.rotate_if_needed(r).await;
        }
    }

    /// Starts the replica's process and watches it until it ends: Running once it answers
    /// `/healthcheck`, killed when it stops answering (`liveness_failures` checks in a row), its
    /// log rotated on the way.
    async fn run_once(&self, id: &LambdaId, r: &Arc<Replica>) -> Run {
        let mut child = match self.spawn(id, r).await {
            Ok(c) => c,
            Err(e) => return Run::NotStarted(e.to_string()),
        };
        let pid = child.id();
        r.set(|s| {
            s.pid = pid;
            s.phase = ReplicaPhase::Starting;
        });
        let _ = self.persist(id).await;
        let health = tokio::spawn(running_once_healthy(r.clone()));
        let mut rotate = tokio::time::interval(Duration::from_secs(2));
        let mut liveness = tokio::time::interval(self.cfg.liveness_interval);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failed_checks = 0u32;
        let mut unresponsive = false;
        let status = loop {
            tokio::select! {
                st = child.wait() => break st,
                _ = rotate.tick() => self.rotate_if_needed(r).await,
                _ = liveness.tick(), if r.phase() == ReplicaPhase::Running => {
                    if healthy(r.port, self.cfg.liveness_timeout).await {
                        failed_checks = 0;
                    } else {
                        failed_checks += 1;
                        if failed_checks >= self.cfg.liveness_failures && !unresponsive {
                            // Alive but not answering (a blocked event loop, a deadlock):
                            // kill it, and the restart path starts it again.
                            unresponsive = true;
                            if let Some(pid) = pid {
                                terminate(pid, Duration::ZERO).await;
                            }
                        }
                    }
                }
                _ = self.detached.cancelled() => {
                    health.abort();
                    return Run::Over;
                }
                _ = r.stop.cancelled() => {
                    health.abort();
                    if let Some(pid) = pid {
                        terminate(pid, self.cfg.stop_grace).await;
                    }
                    let _ = child.wait().await;
                    r.set(|s| { s.phase = ReplicaPhase::Stopped; s.pid = None; });
                    return Run::Over;
                }
            }
        };
        health.abort();
        Run::Ended(match status {
            _ if unresponsive => format!(
                "stopped answering /healthcheck ({failed_checks} checks failed) and was restarted"
            ),
            Ok(st) => st.to_string(),
            Err(e) => format!("could not be waited for: {e}"),
        })
    }

    /// Starts a replica's process, serving on the replica's listening socket: forked by its
    /// environment's zygote when there is one, else a new interpreter (the socket as its stdin).
    async fn spawn(&self, id: &LambdaId, r: &Replica) -> Result<Proc> {
        let dir = self.run_dir(id);
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let listener = listening_socket(r)?;
        let g = &r.generation;
        if !g.zygote.is_empty() {
            let env: Vec<(String, String)> = self
                .cfg
                .base_env
                .iter()
                .chain(g.env.iter())
                .cloned()
                .chain([
                    ("LAMBDA_PORT".to_owned(), r.port.to_string()),
                    ("LAMBDA_HOST".to_owned(), "127.0.0.1".to_owned()),
                    ("PYTHONUNBUFFERED".to_owned(), "1".to_owned()),
                ])
                .collect();
            let fork = zygote::Fork {
                app_dir: &g.app_dir,
                env: &env,
                log: &r.log,
                listener: &listener,
            };
            if let Some(pid) = self.zygotes.fork(&g.zygote, &g.python, fork).await {
                return Ok(Proc::Forked(pid));
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&r.log)
            .map_err(io(&r.log))?;
        let log2 = log.try_clone().map_err(io(&r.log))?;
        let mut cmd = tokio::process::Command::new(&g.python);
        cmd.arg(g.app_dir.join("run.py"))
            .current_dir(&g.app_dir)
            .env_clear()
            .envs(self.cfg.base_env.iter().cloned())
            .envs(g.env.iter().cloned())
            .env("LAMBDA_PORT", r.port.to_string())
            .env("LAMBDA_HOST", "127.0.0.1")
            .env("LAMBDA_LISTEN_FD", "0")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                listener,
            )))
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn()
            .map(Proc::Child)
            .map_err(|e| Error::StartFailed {
                reason: format!("cannot start {}: {e}", g.python.display()),
            })
    }

    async fn rotate_if_needed(&self, r: &Replica) {
        let Ok(meta) = tokio::fs::metadata(&r.log).await else {
            return;
        };
        if meta.len() <= self.cfg.log_max_bytes {
            return;
        }
        let rotated = r.log.with_extension("log.1");
        if tokio::fs::copy(&r.log, &rotated).await.is_ok()
            && let Ok(f) = tokio::fs::OpenOptions::new().write(true).open(&r.log).await
        {
            // The replica writes with O_APPEND, so it goes on at the new end.
            let _ = f.set_len(0).await;
        }
    }

    async fn persist(&self, id: &LambdaId) -> Result<()> {
        let state = {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            let Some(d) = table.deployments.get(id) else {
                return Ok(());
            };
            StateFile {
                lambda_id: *id,
                generation: (*d.generation).clone(),
                replicas: d
                    .replicas
                    .iter()
                    .map(|r| ReplicaRecord {
                        name: r.name.clone(),
                        port: r.port,
                        pid: r.state.lock().unwrap_or_else(|p| p.into_inner()).pid,
                    })
                    .collect(),
            }
        };
        let dir = self.run_dir(id);
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let path = dir.join("state.json");
        let tmp = dir.join("state.json.tmp");
        let body = serde_json::to_vec_pretty(&state).unwrap_or_default();
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        f.write_all(&body).await.map_err(io(&tmp))?;
        f.sync_all().await.map_err(io(&tmp))?;
        tokio::fs::rename(&tmp, &path).await.map_err(io(&path))
    }

    fn generation_for(&self, spec: &DeploySpec, number: u64) -> Result<(Generation, String)> {
        let Artifact::Local { app_dir, python } = &spec.artifact else {
            return Err(Error::Unsupported(
                "the local orchestrator runs local builds only; use [builder] kind = \"local\" or another orchestrator".into(),
            ));
        };
        let p = &spec.parameters;
        let user_config =
            serde_json::to_string(&p.user_config.clone().unwrap_or(serde_json::Value::Null))
                .unwrap_or_else(|_| "null".into());
        let mut h = Sha256::new();
        h.update(spec.version.to_le_bytes());
        h.update(app_dir.display().to_string().as_bytes());
        h.update(user_config.as_bytes());
        h.update(p.workers.to_le_bytes());
        h.update(spec.lambda_type.as_str().as_bytes());
        for (k, v) in &p.env {
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
            h.update(b"\0");
        }
        let config_hash = lambda_core::hex(&h.finalize()[..8]);
        let config_file = self
            .run_dir(&spec.lambda_id)
            .join(format!("{config_hash}-{USER_CONFIG_FILE}"));
        let mut env: Vec<(String, String)> = runtime_env(
            &spec.lambda_id,
            spec.lambda_type,
            spec.version,
            p.workers,
            0,
            &config_file.display().to_string(),
        )
        .into_iter()
        .filter(|(k, _)| k != "LAMBDA_PORT")
        .collect();
        env.extend(p.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok((
            Generation {
                lambda_name: spec.lambda_name.to_string(),
                zygote: if self.cfg.zygote {
                    zygote::key(python, app_dir)
                } else {
                    String::new()
                },
                number,
                version: spec.version,
                config_hash,
                python: python.clone(),
                app_dir: app_dir.clone(),
                env,
            },
            user_config,
        ))
    }

    async fn stop_all(replicas: &[Arc<Replica>]) {
        for r in replicas {
            r.stop.cancel();
        }
        for r in replicas {
            r.ended.cancelled().await;
        }
    }
}

/// Waits until a replica answers; an error carries the reason it did not.
async fn wait_running(r: &Replica, deadline: Instant) -> Result<()> {
    loop {
        let (phase, restarts, reason) = {
            let s = r.state.lock().unwrap_or_else(|p| p.into_inner());
            (s.phase, s.restarts, s.reason.clone())
        };
        if phase == ReplicaPhase::Running {
            return Ok(());
        }
        if restarts > 0 || phase == ReplicaPhase::Stopped {
            return Err(Error::StartFailed {
                reason: format!(
                    "replica {} {}",
                    r.name,
                    reason.unwrap_or_else(|| "stopped before it answered".into())
                ),
            });
        }
        if Instant::now() >= deadline {
            let tail = tail_lines(&r.log, 5).await.unwrap_or_default();
            return Err(Error::StartFailed {
                reason: format!(
                    "replica {} did not answer /healthcheck in time; last output: {}",
                    r.name,
                    tail.trim().replace('\n', " | ")
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl LocalOrchestrator {
    /// Runs an undeploy to completion even if the caller stops waiting.
    async fn undeploy_spawned(self: &Arc<Self>, lambda_id: &LambdaId) -> Result<()> {
        let this = self.clone();
        let id = *lambda_id;
        tokio::spawn(async move { this.undeploy_inner(&id).await })
            .await
            .map_err(|e| Error::Unavailable(format!("the undeploy task failed: {e}")))?
    }

    async fn deploy_inner(self: &Arc<Self>, spec: DeploySpec) -> Result<()> {
        let lock = self.lock_for(&spec.lambda_id);
        let _held = lock.lock().await;
        let id = spec.lambda_id;
        let replicas_wanted = spec.replicas.max(1) as usize;
        let (current_gen, current_replicas) = {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            match table.deployments.get(&id) {
                Some(d) => (Some(d.generation.clone()), d.replicas.clone()),
                None => (None, Vec::new()),
            }
        };
        let number = current_gen.as_ref().map_or(1, |g| g.number + 1);
        let (generation, user_config) = self.generation_for(&spec, number)?;
        if let Some(g) = &current_gen
            && g.config_hash == generation.config_hash
            && current_replicas
                .iter()
                .all(|r| r.phase() != ReplicaPhase::Stopped)
        {
            // What runs already: only the count may differ.
            return self.set_replicas(&id, replicas_wanted).await;
        }
        let dir = self.run_dir(&id);
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let cfg_path = PathBuf::from(
            &generation
                .env
                .iter()
                .find(|(k, _)| k == "LAMBDA_USER_CONFIG_FILE")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        );
        tokio::fs::write(&cfg_path, user_config)
            .await
            .map_err(io(&cfg_path))?;
        let generation = Arc::new(generation);
        let mut fresh = Vec::new();
        for i in 0..replicas_wanted {
            let name = replica_name(&generation, i);
            let listener = replica_listener()?;
            let port = listener_port(&listener)?;
            let replica =
                self.start_replica(&id, name, port, Some(listener), generation.clone(), None);
            fresh.push(replica);
        }
        let deadline = Instant::now() + self.cfg.start_timeout;
        for r in &fresh {
            if let Err(e) = wait_running(r, deadline).await {
                LocalOrchestrator::stop_all(&fresh).await;
                return Err(e);
            }
        }
        {
            let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
            table.deployments.insert(
                id,
                Deployment {
                    generation,
                    replicas: fresh,
                },
            );
        }
        self.persist(&id).await?;
        // Traffic now goes to the new replicas; the old ones finish what they have and stop.
        LocalOrchestrator::stop_all(&current_replicas).await;
        if let Some(g) = current_gen {
            let old_cfg = dir.join(format!("{}-{USER_CONFIG_FILE}", g.config_hash));
            let still_used = self
                .table
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .deployments
                .get(&id)
                .is_some_and(|d| d.generation.config_hash == g.config_hash);
            if !still_used {
                let _ = tokio::fs::remove_file(old_cfg).await;
            }
        }
        Ok(())
    }

    /// [`Self::set_replicas`] with the lambda's lock.
    async fn scale_locked(self: Arc<Self>, id: LambdaId, replicas: u32) -> Result<()> {
        let lock = self.lock_for(&id);
        let _held = lock.lock().await;
        self.set_replicas(&id, replicas as usize).await
    }

    /// Starts or stops replicas of the running generation until it has `wanted` (the
    /// lambda's lock held). New replicas serve as soon as they answer; the call returns when
    /// all have, or with the reason one did not (then the new ones are stopped again). The
    /// newest replicas are the ones stopped, after they leave the balancing.
    async fn set_replicas(self: &Arc<Self>, id: &LambdaId, wanted: usize) -> Result<()> {
        let (generation, current) = {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            let d = table.deployments.get(id).ok_or(Error::NotFound(*id))?;
            (d.generation.clone(), d.replicas.clone())
        };
        if wanted == current.len() {
            return Ok(());
        }
        if wanted < current.len() {
            let gone = {
                let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
                let d = table.deployments.get_mut(id).ok_or(Error::NotFound(*id))?;
                d.replicas.split_off(wanted.min(d.replicas.len()))
            };
            self.persist(id).await?;
            LocalOrchestrator::stop_all(&gone).await;
            return Ok(());
        }
        let next = crate::next_replica_index(current.iter().map(|r| r.name.as_str()));
        let mut fresh = Vec::new();
        for index in next..next + (wanted - current.len()) {
            let name = replica_name(&generation, index);
            let listener = replica_listener()?;
            let port = listener_port(&listener)?;
            let replica =
                self.start_replica(id, name, port, Some(listener), generation.clone(), None);
            fresh.push(replica);
        }
        let with_replicas = |f: &dyn Fn(&mut Vec<Arc<Replica>>)| {
            let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
            if let Some(d) = table.deployments.get_mut(id) {
                f(&mut d.replicas);
            }
        };
        with_replicas(&|replicas| replicas.extend(fresh.iter().cloned()));
        let deadline = Instant::now() + self.cfg.start_timeout;
        for r in &fresh {
            if let Err(e) = wait_running(r, deadline).await {
                with_replicas(&|replicas| {
                    replicas.retain(|r| !fresh.iter().any(|f| Arc::ptr_eq(f, r)))
                });
                LocalOrchestrator::stop_all(&fresh).await;
                let _ = self.persist(id).await;
                return Err(e);
            }
        }
        self.persist(id).await
    }

    async fn undeploy_inner(self: &Arc<Self>, lambda_id: &LambdaId) -> Result<()> {
        let lock = self.lock_for(lambda_id);
        let _held = lock.lock().await;
        let removed = self
            .table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .deployments
            .remove(lambda_id);
        if let Some(d) = removed {
            LocalOrchestrator::stop_all(&d.replicas).await;
        }
        let dir = self.run_dir(lambda_id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }
}

#[async_trait]
impl Orchestrator for Arc<LocalOrchestrator> {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn deploy(&self, spec: DeploySpec) -> Result<()> {
        let this = self.clone();
        crate::to_completion("deploy", async move { this.deploy_inner(spec).await }).await
    }

    async fn undeploy(&self, lambda_id: &LambdaId) -> Result<()> {
        self.undeploy_spawned(lambda_id).await
    }

    async fn scale(&self, lambda_id: &LambdaId, replicas: u32) -> Result<()> {
        crate::to_completion("scale", self.clone().scale_locked(*lambda_id, replicas)).await
    }

    async fn status(&self, lambda_id: &LambdaId) -> Result<DeploymentStatus> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let d = table
            .deployments
            .get(lambda_id)
            .ok_or(Error::NotFound(*lambda_id))?;
        Ok(DeploymentStatus {
            version: d.generation.version,
            replicas: d.replicas.iter().map(|r| r.snapshot()).collect(),
        })
    }

    async fn logs(
        &self,
        lambda_id: &LambdaId,
        tail: Option<usize>,
    ) -> Result<BTreeMap<String, String>> {
        let files: Vec<(String, PathBuf)> = {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            let d = table
                .deployments
                .get(lambda_id)
                .ok_or(Error::NotFound(*lambda_id))?;
            d.replicas
                .iter()
                .map(|r| (r.name.clone(), r.log.clone()))
                .collect()
        };
        let mut out = BTreeMap::new();
        for (name, path) in files {
            let text = tail_lines(&path, tail.unwrap_or(usize::MAX))
                .await
                .unwrap_or_default();
            out.insert(name, text);
        }
        Ok(out)
    }

    async fn follow_logs(&self, lambda_id: &LambdaId) -> Result<BoxStream<'static, String>> {
        let this = self.clone();
        let id = *lambda_id;
        // Follow from the current end of each replica's log (new replicas from their start).
        let files: Vec<PathBuf> = {
            let table = this.table.read().unwrap_or_else(|p| p.into_inner());
            let d = table.deployments.get(&id).ok_or(Error::NotFound(id))?;
            d.replicas.iter().map(|r| r.log.clone()).collect()
        };
        let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
        for f in files {
            let len = tokio::fs::metadata(&f).await.map(|m| m.len()).unwrap_or(0);
            offsets.insert(f, len);
        }
        let stream = futures::stream::unfold(
            (this, offsets, std::collections::VecDeque::<String>::new()),
            move |(this, mut offsets, mut pending)| async move {
                loop {
                    if let Some(line) = pending.pop_front() {
                        return Some((line, (this, offsets, pending)));
                    }
                    let files: Vec<(String, PathBuf)> = {
                        let table = this.table.read().unwrap_or_else(|p| p.into_inner());
                        let d = table.deployments.get(&id)?;
                        d.replicas
                            .iter()
                            .map(|r| (r.name.clone(), r.log.clone()))
                            .collect()
                    };
                    for (name, path) in files {
                        let start = offsets.get(&path).copied().unwrap_or(0);
                        let (text, end) = read_from(&path, start).await.unwrap_or_default();
                        offsets.insert(path, end);
                        pending.extend(text.lines().map(|l| format!("[{name}] {l}")));
                    }
                    if pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }

    async fn list(&self) -> Result<Vec<Deployed>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        Ok(table
            .deployments
            .iter()
            .map(|(id, d)| Deployed {
                lambda_id: *id,
                version: d.generation.version,
            })
            .collect())
    }

    fn endpoint(&self, lambda_id: &LambdaId) -> Option<String> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let d = table.deployments.get(lambda_id)?;
        let running = |r: &&Arc<Replica>| r.phase() == ReplicaPhase::Running;
        let n = d.replicas.iter().filter(running).count();
        if n == 0 {
            return None;
        }
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        let r = d.replicas.iter().filter(running).nth(i)?;
        Some(r.endpoint.clone())
    }

    fn replica_endpoints(&self, lambda_id: &LambdaId) -> Vec<(String, String)> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let Some(d) = table.deployments.get(lambda_id) else {
            return Vec::new();
        };
        d.replicas
            .iter()
            .filter(|r| r.phase() == ReplicaPhase::Running)
            .map(|r| (r.name.clone(), r.endpoint.clone()))
            .collect()
    }

    async fn shutdown(&self) {
        self.detach().await;
    }

    async fn health(&self) -> Result<()> {
        let run = self.cfg.data_dir.join("run");
        let probe = run.join(".probe");
        tokio::fs::write(&probe, b"ok").await.map_err(io(&probe))?;
        let _ = tokio::fs::remove_file(&probe).await;
        Ok(())
    }
}

/// A replica's process: our child, or forked by a zygote (watched by its pid).
#[derive(Debug)]
enum Proc {
    Child(tokio::process::Child),
    Forked(u32),
}

impl Proc {
    fn id(&self) -> Option<u32> {
        match self {
            Proc::Child(c) => c.id(),
            Proc::Forked(pid) => Some(*pid),
        }
    }

    /// Waits until the process has ended; how it ended.
    async fn wait(&mut self) -> std::io::Result<String> {
        match self {
            Proc::Child(c) => c.wait().await.map(|st| st.to_string()),
            Proc::Forked(pid) => {
                exited(*pid).await;
                Ok("exited".to_owned())
            }
        }
    }
}

/// `<lambda name>-<generation>-<index>`.
fn replica_name(generation: &Generation, index: usize) -> String {
    format!("{}-{}-{index}", generation.lambda_name, generation.number)
}

/// A listening loopback socket for a new replica, which the orchestrator holds for the
/// replica's life and hands to its processes. Taken below the kernel's ephemeral range when
/// there is room, so that replica ports do not crowd the ports of outgoing connections. Ports
/// are tried in turn from a per-process starting point; one that is taken is skipped.
fn replica_listener() -> Result<std::net::TcpListener> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let low = ephemeral_low().unwrap_or(32768);
    if low > REPLICA_PORTS_FROM + 1000 {
        let span = usize::from(low - REPLICA_PORTS_FROM);
        let offset = std::process::id() as usize * 7919;
        for _ in 0..span.min(2000) {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = REPLICA_PORTS_FROM + ((offset + n) % span) as u16;
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Ok(l);
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").map_err(io(Path::new("127.0.0.1:0")))
}

/// A copy of the replica's listening socket for a process to start. A replica adopted from an
/// earlier control plane has none (its socket went with the process that ended): its port is
/// bound again first.
fn listening_socket(r: &Replica) -> Result<std::net::TcpListener> {
    let mut held = r.listener.lock().unwrap_or_else(|p| p.into_inner());
    let copy = match &*held {
        Some(l) => l.try_clone(),
        None => {
            let l = std::net::TcpListener::bind(("127.0.0.1", r.port)).map_err(|e| {
                Error::StartFailed {
                    reason: format!("its port {} cannot be bound again: {e}", r.port),
                }
            })?;
            let copy = l.try_clone();
            *held = Some(l);
            copy
        }
    };
    copy.map_err(io(Path::new("127.0.0.1")))
}

fn listener_port(l: &std::net::TcpListener) -> Result<u16> {
    l.local_addr()
        .map(|a| a.port())
        .map_err(io(Path::new("127.0.0.1")))
}

/// The lowest port local replicas are given (below the ephemeral range, above most services).
const REPLICA_PORTS_FROM: u16 = 20000;

/// The first port of the kernel's ephemeral range (`ip_local_port_range`).
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `GET /healthcheck` answers 200 within `timeout`.
async fn healthy(port: u16, timeout: Duration) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET /healthcheck HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < 12 {
            let k = s.read(&mut buf[n..]).await.ok()?;
            if k == 0 {
                break;
            }
            n += k;
        }
        Some(buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"))
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}

/// Waits until process `pid` (not necessarily our child) has ended: its pidfd becomes readable
/// then, so an idle replica costs no wakeups. Kernels without pidfds (before 5.3) are polled.
async fn exited(pid: u32) {
    let fd = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        .and_then(|fd| {
            // `register` (unsafe: this crate forbids it) asks that the fd stay open and the
            // same for the AsyncFd's lifetime: an OwnedFd that it owns guarantees both.
            #[allow(deprecated)]
            tokio::io::unix::AsyncFd::new(fd).ok()
        });
    match fd {
        Some(fd) => {
            let _ = fd.readable().await;
        }
        None => {
            while alive(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    // A zombie is not alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// The process is alive and runs the given app: its command line names `app_dir/run.py`, or it
/// was forked by a zygote (whose command line it keeps) and works in `app_dir`.
fn is_ours(pid: u32, app_dir: &Path) -> bool {
    let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmd = String::from_utf8_lossy(&c).replace('\0', " ");
    let forked = || {
        cmd.contains("zygote.py")
            && std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| std::fs::canonicalize(app_dir).is_ok_and(|dir| dir == cwd))
    };
    alive(pid) && (cmd.contains(&app_dir.join("run.py").display().to_string()) || forked())
}

/// SIGTERM to the replica's process group, SIGKILL after `grace`.
async fn terminate(pid: u32, grace: Duration) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let pgid = Pid::from_raw(raw);
    if killpg(pgid, Signal::SIGTERM).is_err() {
        let _ = kill(pgid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = kill(pgid, Signal::SIGKILL);
}

/// The last `n` lines of a file (at most its last 1 MiB).
async fn tail_lines(path: &Path, n: usize) -> std::io::Result<String> {
    let len = tokio::fs::metadata(path).await?.len();
    let start = len.saturating_sub(1024 * 1024);
    let (text, _) = read_from(path, start).await?;
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut out = lines[skip..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// The text of a file from `start` to its end, and the end offset. A file that shrank (was
/// rotated) is read from its start.
async fn read_from(path: &Path, start: u64) -> std::io::Result<(String, u64)> {
    use tokio::io::AsyncSeekExt;
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    let start = if start > len { 0 } else { start };
    f.seek(std::io::SeekFrom::Start(start)).await?;
    let mut buf = Vec::new();
    f.take(len - start).read_to_end(&mut buf).await?;
    Ok((String::from_utf8_lossy(&buf).into_owned(), len))
}

/// How one run of a replica's process ended.
enum Run {
    /// It ended on its own (how).
    Ended(String),
    /// It could not be started (why).
    NotStarted(String),
    /// Stopped or detached: supervision is over.
    Over,
}

/// Marks a starting replica Running as soon as it answers `/healthcheck`.
async fn running_once_healthy(r: Arc<Replica>) {
    while r.phase() == ReplicaPhase::Starting {
        if healthy(r.port, Duration::from_millis(500)).await {
            r.set(|s| {
                if s.phase == ReplicaPhase::Starting {
                    s.phase = ReplicaPhase::Running;
                    s.reason = None;
                }
            });
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Records that a replica's process ended on its own: how, with its last output, and one more
/// restart.
async fn record_exit(r: &Replica, exit_desc: &str) {
    let tail = tail_lines(&r.log, 5).await.unwrap_or_default();
    let reason = if tail.trim().is_empty() {
        format!("the process {exit_desc}")
    } else {
        format!(
            "the process {exit_desc}; last output: {}",
            tail.trim().replace('\n', " | ")
        )
    };
    r.set(|s| {
        s.pid = None;
        s.phase = ReplicaPhase::Restarting;
        s.reason = Some(reason);
        s.restarts += 1;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exited_sees_the_end_of_a_process_and_not_before() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let wait = exited(child.id());
        tokio::pin!(wait);
        assert!(futures::poll!(&mut wait).is_pending());
        assert!(futures::poll!(&mut wait).is_pending());
        child.kill().unwrap();
        // A zombie until it is reaped, but ended all the same.
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("the end of the process was seen");
        child.wait().unwrap();
    }

    #[test]
    fn replica_ports_are_distinct_and_below_the_ephemeral_range() {
        let low = ephemeral_low().expect("Linux says its ephemeral range");
        assert!(
            low > REPLICA_PORTS_FROM + 1000,
            "ephemeral range from {low}"
        );
        // Held while the replicas live: none is handed out twice, nor can another process bind it.
        let held: Vec<_> = (0..200).map(|_| replica_listener().unwrap()).collect();
        let ports: Vec<u16> = held.iter().map(|l| listener_port(l).unwrap()).collect();
        for &port in &ports[..5] {
            assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(
            ports.iter().all(|p| (REPLICA_PORTS_FROM..low).contains(p)),
            "{ports:?}"
        );
    }
}
