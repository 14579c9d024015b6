//! The Kubernetes orchestrator: a Deployment, a Service and a ConfigMap per lambda (rendered by
//! lambda-core), written with server-side apply (beta and on by default since v1.16, GA in
//! v1.22; our tests run against v1.20), so one deploy is three API writes and re-applying what
//! runs changes nothing. Pods and Deployments are watched (one reflector per namespace), so
//! status, endpoints and rollout progress are read from memory, not polled from the API server.
//!
//! A rollout is the Deployment's own rolling update (`maxUnavailable: 0`): the new pods must be
//! Ready before old ones go. When a new pod cannot start (crash loop, image pull failure) or the
//! rollout is not done within the start timeout, the previous Deployment and ConfigMap are
//! applied again (or, on a first deploy, everything is removed) and the error carries the pod's
//! reason: the container's last output (`FallbackToLogsOnError`), the scheduler's message, or the
//! newest warning event.

use crate::{
    DeploySpec, Deployed, DeploymentStatus, Error, Orchestrator, ReplicaPhase, ReplicaState, Result,
};
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use lambda_core::render::{self, MANAGED_BY, labels};
use lambda_core::{Artifact, LambdaId};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where the API server and the credentials come from.
#[derive(Debug, Clone, Default)]
pub enum KubeCredentials {
    /// `KUBECONFIG` / `~/.kube/config`, else the in-cluster service account (kube-rs's `infer`).
    #[default]
    Infer,
    /// A kubeconfig file (`None`: the default file) and context (`None`: its current context).
    Kubeconfig {
        /// The file.
        path: Option<PathBuf>,
        /// The context.
        context: Option<String>,
    },
    /// The pod's service account (token and CA mounted by Kubernetes).
    InCluster,
}

/// Settings of the Kubernetes orchestrator.
#[derive(Debug, Clone)]
pub struct KubeOrchestratorConfig {
    /// Credentials.
    pub credentials: KubeCredentials,
    /// Namespaces watched from the start, so their lambdas are re-adopted and garbage-collected
    /// after a restart (default `["default"]`). A lambda deployed into another namespace is
    /// watched from its deploy on.
    pub namespaces: Vec<String>,
    /// Name of this platform in the cluster (label `luna-lambda.io/instance`, default `default`):
    /// only its own objects are adopted, listed or removed.
    pub instance: String,
    /// Where the proxy sends a lambda's requests. `{id}`, `{name}` (`lambda-<id>`) and
    /// `{namespace}` are filled in; with `{pod_ip}` requests go straight to the Ready pods, round
    /// robin (a control plane inside the pod network, or tests). Default
    /// `http://{name}.{namespace}.svc:8000`, the Service.
    pub endpoint: String,
    /// Secrets in each lambda namespace to pull images with (a private registry).
    pub image_pull_secrets: Vec<String>,
    /// How long a rollout may take before it is rolled back (default 300 s).
    pub start_timeout: Duration,
    /// How long `undeploy` waits for the pods to be gone (default 60 s).
    pub stop_timeout: Duration,
}

impl Default for KubeOrchestratorConfig {
    fn default() -> Self {
        Self {
            credentials: KubeCredentials::Infer,
            namespaces: vec!["default".into()],
            instance: "default".into(),
            endpoint: format!("http://{{name}}.{{namespace}}.svc:{}", render::LAMBDA_PORT),
            image_pull_secrets: Vec::new(),
            start_timeout: Duration::from_secs(300),
            stop_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
struct Watched {
    pods: Store<Pod>,
    deployments: Store<Deployment>,
}

/// Runs lambdas on Kubernetes (see the module docs).
pub struct KubeOrchestrator {
    client: kube::Client,
    cfg: KubeOrchestratorConfig,
    watched: Mutex<HashMap<String, Arc<Watched>>>,
    starting: tokio::sync::Mutex<()>,
    /// Bumped after every watch event (the stores are updated first).
    changed: tokio::sync::watch::Sender<u64>,
    locks: Mutex<HashMap<LambdaId, Arc<tokio::sync::Mutex<()>>>>,
    namespace_of: RwLock<HashMap<LambdaId, String>>,
    rr: AtomicUsize,
    writes: AtomicU64,
    reads: AtomicU64,
    stop: CancellationToken,
}

impl std::fmt::Debug for KubeOrchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeOrchestrator")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn api_error(e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 403 => Error::Unavailable(format!(
            "Kubernetes API refused: {} (the platform's account needs the Role in deploy/kubernetes/rbac.yaml)",
            s.message
        )),
        _ => Error::Unavailable(format!("Kubernetes API: {e}")),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// `repo[:tag]@digest` → `repo@digest` (the digest pins what runs); the tag alone otherwise.
fn image_of(artifact: &Artifact) -> Result<String> {
    match artifact {
        Artifact::Image { reference, digest } => Ok(match digest {
            Some(d) => {
                let slash = reference.rfind('/').map_or(0, |i| i + 1);
                let repo = match reference[slash..].rfind(':') {
                    Some(c) => &reference[..slash + c],
                    None => reference.as_str(),
                };
                format!("{repo}@{d}")
            }
            None => reference.clone(),
        }),
        Artifact::Local { .. } => Err(Error::Unsupported(
            "the Kubernetes orchestrator runs images: set [builder] kind = \"docker\"".into(),
        )),
    }
}

fn config_hash(user_config: Option<&serde_json::Value>) -> String {
    let text = user_config.map(|v| v.to_string()).unwrap_or_default();
    let d = sha2::Sha256::digest(text.as_bytes());
    lambda_core::hex(&d[..8])
}

fn label<'a, K: kube::Resource>(o: &'a K, key: &str) -> Option<&'a str> {
    o.meta().labels.as_ref()?.get(key).map(String::as_str)
}

fn template_hash(p: &Pod) -> Option<&str> {
    p.metadata
        .annotations
        .as_ref()?
        .get(labels::TEMPLATE_HASH)
        .map(String::as_str)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why a pod does not serve, from its status alone, and whether that is final for a rollout.
fn pod_reason(p: &Pod) -> (ReplicaPhase, Option<String>, bool) {
    let Some(st) = p.status.as_ref() else {
        return (ReplicaPhase::Starting, None, false);
    };
    if let Some(c) = st.container_statuses.as_ref().and_then(|c| c.first()) {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            let last = c
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| {
                    let mut s = format!("exit code {}", t.exit_code);
                    if let Some(m) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
                        s.push_str(": ");
                        s.push_str(m.trim_end());
                    }
                    s
                });
            let detail = match (last, w.message.as_deref()) {
                (Some(l), _) if reason == "CrashLoopBackOff" => l,
                (_, Some(m)) => m.to_owned(),
                (Some(l), None) => l,
                (None, None) => String::new(),
            };
            let text = if detail.is_empty() {
                reason.clone()
            } else {
                format!("{reason}: {detail}")
            };
            return match reason.as_str() {
                "CrashLoopBackOff" => (ReplicaPhase::Restarting, Some(text), true),
                "ImagePullBackOff"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError" => (ReplicaPhase::Starting, Some(text), true),
                "" | "ContainerCreating" | "PodInitializing" => {
                    (ReplicaPhase::Starting, None, false)
                }
                _ => (ReplicaPhase::Starting, Some(text), false),
            };
        }
        if c.state.as_ref().and_then(|s| s.running.as_ref()).is_some() && is_ready(p) {
            return (ReplicaPhase::Running, None, false);
        }
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            let mut s = format!("exited with code {}", t.exit_code);
            if let Some(m) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
                s.push_str(": ");
                s.push_str(m.trim_end());
            }
            return (ReplicaPhase::Restarting, Some(s), false);
        }
    }
    if let Some(c) = st.conditions.as_ref().and_then(|c| {
        c.iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    }) {
        let reason = c.reason.clone().unwrap_or_else(|| "Unschedulable".into());
        let text = match c.message.as_deref() {
            Some(m) => format!("{reason}: {m}"),
            None => reason,
        };
        return (ReplicaPhase::Starting, Some(text), false);
    }
    (ReplicaPhase::Starting, None, false)
}

/// Why a Deployment makes no pods (quota, admission, a missing service account...).
fn deployment_problem(d: &Deployment) -> Option<String> {
    let c = d.status.as_ref()?.conditions.as_ref()?.iter().find(|c| {
        (c.type_ == "ReplicaFailure" && c.status == "True")
            || (c.type_ == "Progressing" && c.status == "False")
    })?;
    Some(format!(
        "{}: {}",
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default()
    ))
}

fn restarts(p: &Pod) -> u32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| u32::try_from(c.restart_count).unwrap_or(0))
}

/// The pod's container has started (its log can be read).
fn started(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

fn deleting<K: kube::Resource>(o: &K) -> bool {
    o.meta().deletion_timestamp.is_some()
}

/// The Deployment as it was, in a form that can be applied again (a rollback).
fn reapplicable(d: &Deployment) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": d.metadata.name,
            "namespace": d.metadata.namespace,
            "labels": d.metadata.labels,
        },
        "spec": d.spec,
    })
}

fn reapplicable_config_map(c: &ConfigMap) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": c.metadata.name,
            "namespace": c.metadata.namespace,
            "labels": c.metadata.labels,
        },
        "data": c.data,
    })
}

/// How soon a broken watch is retried: 0.2 s, doubling to 2 s, back to 0.2 s once it works.
/// (kube-rs's default climbs to 30 s, which would leave status stale that long after the API
/// server restarts; two watches per namespace can afford the faster cadence.)
#[derive(Debug, Clone, Copy)]
struct Rewatch(Duration);

impl Default for Rewatch {
    fn default() -> Self {
        Self(Duration::from_millis(200))
    }
}

impl Iterator for Rewatch {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for Rewatch {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

enum Rollout {
    Done,
    Failed(String),
    Pending(Option<String>),
}

/// A client of the API server `credentials` point at, checked to answer (the orchestrator's, and
/// the Kubernetes builder's, which the server hands one).
pub async fn client(credentials: &KubeCredentials) -> Result<kube::Client> {
    let config = match credentials {
        KubeCredentials::Infer => kube::Config::infer()
            .await
            .map_err(|e| Error::Unavailable(format!("Kubernetes credentials: {e}")))?,
        KubeCredentials::InCluster => kube::Config::incluster()
            .map_err(|e| Error::Unavailable(format!("Kubernetes in-cluster credentials: {e}")))?,
        KubeCredentials::Kubeconfig { path, context } => {
            let kc = match path {
                Some(p) => Kubeconfig::read_from(p),
                None => Kubeconfig::read(),
            }
            .map_err(|e| Error::Unavailable(format!("kubeconfig: {e}")))?;
            let opts = KubeConfigOptions {
                context: context.clone(),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| Error::Unavailable(format!("kubeconfig: {e}")))?
        }
    };
    let client = kube::Client::try_from(config).map_err(api_error)?;
    client.apiserver_version().await.map_err(api_error)?;
    Ok(client)
}

impl KubeOrchestrator {
    /// Connects (checking the API server answers) and starts watching the configured
    /// namespaces; lambdas found there are adopted as they are.
    pub async fn open(cfg: KubeOrchestratorConfig) -> Result<Arc<Self>> {
        let client = client(&cfg.credentials).await?;
        let this = Arc::new(Self {
            client,
            cfg,
            watched: Mutex::default(),
            starting: tokio::sync::Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
            locks: Mutex::default(),
            namespace_of: RwLock::default(),
            rr: AtomicUsize::new(0),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        for ns in this.cfg.namespaces.clone() {
            this.watch(&ns).await?;
        }
        Ok(this)
    }

    /// API writes (apply, delete) made so far: what a deploy costs the API server.
    pub fn api_writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// API reads (get, list; watches not counted) made so far.
    pub fn api_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn selector(&self) -> String {
        format!(
            "{}={MANAGED_BY},{}={}",
            labels::MANAGED_BY,
            labels::INSTANCE,
            self.cfg.instance
        )
    }

    /// The watch of one namespace, started (and synced) on first use.
    async fn watch(&self, ns: &str) -> Result<Arc<Watched>> {
        if let Some(w) = self.watched(ns) {
            return Ok(w);
        }
        // One watch per namespace, even when two deploys into a new one race.
        let _starting = self.starting.lock().await;
        if let Some(w) = self.watched(ns) {
            return Ok(w);
        }
        let cfg = watcher::Config::default().labels(&self.selector());
        // Fail early and clearly when the namespace cannot be read (RBAC, typo).
        Api::<Pod>::namespaced(self.client.clone(), ns)
            .list_metadata(&ListParams::default().labels(&self.selector()).limit(1))
            .await
            .map_err(api_error)?;
        let (pods, pw) = reflector::store();
        let (deployments, dw) = reflector::store();
        let pod_events = watcher(Api::<Pod>::namespaced(self.client.clone(), ns), cfg.clone())
            .backoff(Rewatch::default())
            .reflect(pw)
            .map(|_| ())
            .boxed();
        let dep_events = watcher(Api::<Deployment>::namespaced(self.client.clone(), ns), cfg)
            .backoff(Rewatch::default())
            .reflect(dw)
            .map(|_| ())
            .boxed();
        let mut events = futures::stream::select(pod_events, dep_events);
        let (tx, stop) = (self.changed.clone(), self.stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    e = events.next() => match e {
                        Some(()) => { tx.send_modify(|n| *n = n.wrapping_add(1)); }
                        None => break,
                    },
                }
            }
        });
        let ready = async {
            pods.wait_until_ready().await.ok();
            deployments.wait_until_ready().await.ok();
        };
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "Kubernetes API: watching namespace {ns:?} did not start within 30 s"
                ))
            })?;
        let w = Arc::new(Watched { pods, deployments });
        for d in w.deployments.state() {
            if let Some(id) = label(&*d, labels::ID).and_then(|s| s.parse().ok()) {
                self.namespace_of
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, ns.to_owned());
            }
        }
        Ok(self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ns.to_owned())
            .or_insert(w)
            .clone())
    }

    fn namespace(&self, id: &LambdaId) -> Option<String> {
        self.namespace_of
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn watched(&self, ns: &str) -> Option<Arc<Watched>> {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
            .cloned()
    }

    /// The lambda's live (not terminating) pods, oldest first.
    fn pods(&self, id: &LambdaId) -> Vec<Arc<Pod>> {
        let mut pods = self.all_pods(id);
        pods.retain(|p| !deleting(&**p));
        pods
    }

    /// The lambda's pods, terminating ones included.
    fn all_pods(&self, id: &LambdaId) -> Vec<Arc<Pod>> {
        let Some(w) = self.namespace(id).and_then(|ns| self.watched(&ns)) else {
            return Vec::new();
        };
        let ids = id.to_string();
        let mut pods = w
            .pods
            .state_filter(|p| label(p, labels::ID) == Some(ids.as_str()));
        pods.sort_by(|a, b| {
            (&a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
        });
        pods
    }

    fn deployment(&self, id: &LambdaId) -> Option<Arc<Deployment>> {
        let w = self.watched(&self.namespace(id)?)?;
        let name = id.object_name();
        w.deployments
            .state()
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some(name.as_str()) && !deleting(&**d))
    }

    fn lock_for(&self, id: &LambdaId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*id)
            .or_default()
            .clone()
    }

    async fn apply(&self, ns: &str, object: &serde_json::Value) -> Result<()> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let pp = PatchParams::apply(MANAGED_BY).force();
        let patch = Patch::Apply(object);
        self.writes.fetch_add(1, Ordering::Relaxed);
        match object["kind"].as_str() {
            Some("Deployment") => Api::<Deployment>::namespaced(self.client.clone(), ns)
                .patch(name, &pp, &patch)
                .await
                .map(drop),
            Some("Service") => Api::<Service>::namespaced(self.client.clone(), ns)
                .patch(name, &pp, &patch)
                .await
                .map(drop),
            _ => Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .patch(name, &pp, &patch)
                .await
                .map(drop),
        }
        .map_err(api_error)
    }

    /// Deletes the three objects (missing ones are fine).
    async fn delete_objects(&self, ns: &str, name: &str) -> Result<()> {
        let dp = DeleteParams::background();
        let c = &self.client;
        self.writes.fetch_add(3, Ordering::Relaxed);
        let results = [
            Api::<Deployment>::namespaced(c.clone(), ns)
                .delete(name, &dp)
                .await
                .map(drop),
            Api::<Service>::namespaced(c.clone(), ns)
                .delete(name, &dp)
                .await
                .map(drop),
            Api::<ConfigMap>::namespaced(c.clone(), ns)
                .delete(name, &dp)
                .await
                .map(drop),
        ];
        for r in results {
            match r {
                Err(e) if !is_not_found(&e) => return Err(api_error(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Where a rollout to the pod template with hash `hash` stands: done when `want` new pods
    /// are Ready and every old pod is gone (stopped, not only terminating).
    fn rollout(&self, id: &LambdaId, hash: &str, want: usize) -> Rollout {
        let pods = self.all_pods(id);
        let (new, old): (Vec<_>, Vec<_>) = pods
            .iter()
            .filter(|p| !(deleting(&***p) && template_hash(p) == Some(hash)))
            .partition(|p| template_hash(p) == Some(hash));
        let mut pending = None;
        for p in &new {
            let (_, reason, fatal) = pod_reason(p);
            if fatal {
                let name = p.metadata.name.clone().unwrap_or_default();
                return Rollout::Failed(format!("pod {name}: {}", reason.unwrap_or_default()));
            }
            if reason.is_some() {
                pending = reason;
            }
        }
        if new.iter().filter(|p| is_ready(p)).count() >= want && old.is_empty() {
            Rollout::Done
        } else {
            Rollout::Pending(pending)
        }
    }

    /// The newest warning event about a pod (`Reason: message`).
    async fn last_warning(&self, ns: &str, pod: &str) -> Option<String> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let events = Api::<Event>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default().fields(&format!(
                "involvedObject.kind=Pod,involvedObject.name={pod},type=Warning"
            )))
            .await
            .ok()?;
        events
            .items
            .into_iter()
            .max_by(|a, b| {
                let t = |e: &Event| {
                    e.last_timestamp
                        .as_ref()
                        .map(|t| t.0)
                        .or(e.event_time.as_ref().map(|t| t.0))
                };
                t(a).cmp(&t(b))
            })
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default().trim_end()
                )
            })
    }

    async fn deploy_inner(&self, spec: DeploySpec) -> Result<()> {
        let image = image_of(&spec.artifact)?;
        let ns = spec.parameters.deploy_parameters.namespace.clone();
        let id = spec.lambda_id;
        let name = id.object_name();
        self.watch(&ns).await?;
        let hash = config_hash(spec.parameters.user_config.as_ref());
        let rspec = render::DeploySpec {
            id,
            name: &spec.lambda_name,
            lambda_type: spec.lambda_type,
            version: spec.version,
            image: &image,
            parameters: &spec.parameters,
            config_hash: &hash,
            instance: &self.cfg.instance,
            image_pull_secrets: &self.cfg.image_pull_secrets,
            replicas: spec.replicas.max(1),
        };
        let deployment = render::render_deployment(&rspec);
        let template = deployment["spec"]["template"]["metadata"]["annotations"]
            [labels::TEMPLATE_HASH]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let deps = Api::<Deployment>::namespaced(self.client.clone(), &ns);
        self.reads.fetch_add(1, Ordering::Relaxed);
        let previous = deps.get_opt(&name).await.map_err(api_error)?;
        let previous_config = match previous {
            Some(_) => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                Api::<ConfigMap>::namespaced(self.client.clone(), &ns)
                    .get_opt(&name)
                    .await
                    .map_err(api_error)?
            }
            None => None,
        };
        // Moved to another namespace: the old objects go once the new ones run.
        let moved_from = self.namespace(&id).filter(|o| *o != ns);
        self.namespace_of
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ns.clone());
        let mut rx = self.changed.subscribe();
        self.apply(&ns, &render::render_config_map(&rspec)).await?;
        self.apply(&ns, &deployment).await?;
        self.apply(&ns, &render::render_service(&rspec)).await?;
        let want = spec.replicas.max(1) as usize;
        let Some(reason) = self
            .rollout_failure(&id, &ns, &template, want, &mut rx)
            .await?
        else {
            if let Some(old) = moved_from {
                self.delete_objects(&old, &name).await?;
            }
            return Ok(());
        };
        match (previous, previous_config) {
            (Some(d), cm) => {
                if let Some(cm) = cm {
                    self.apply(&ns, &reapplicable_config_map(&cm)).await?;
                }
                self.apply(&ns, &reapplicable(&d)).await?;
            }
            (None, _) => {
                self.delete_objects(&ns, &name).await?;
                self.wait_gone(&id).await;
                // A failed move leaves the lambda where it ran.
                let mut known = self.namespace_of.write().unwrap_or_else(|p| p.into_inner());
                match moved_from {
                    Some(old) => known.insert(id, old),
                    None => known.remove(&id),
                };
            }
        }
        Err(Error::StartFailed { reason })
    }

    /// Waits until the lambda has `want` ready pods of the pod template `template` and no other
    /// (`None`: a deploy's rollout or a scale up is done), or until one fails or the start timeout
    /// passes (why: the caller undoes its change). A Deployment deleted meanwhile (by another
    /// control plane or by hand) is an error: nothing to undo.
    async fn rollout_failure(
        &self,
        id: &LambdaId,
        ns: &str,
        template: &str,
        want: usize,
        rx: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<Option<String>> {
        let deadline = tokio::time::Instant::now() + self.cfg.start_timeout;
        let mut seen = false;
        loop {
            match self.deployment(id) {
                Some(_) => seen = true,
                None if seen => {
                    return Err(Error::StartFailed {
                        reason: format!(
                            "Deployment {} was deleted during the rollout",
                            id.object_name()
                        ),
                    });
                }
                None => {}
            }
            let reason = match self.rollout(id, template, want) {
                // Done once the watch has the Deployment too: status and list agree on return.
                Rollout::Done if seen => return Ok(None),
                Rollout::Done => None,
                Rollout::Failed(reason) => return Ok(Some(reason)),
                Rollout::Pending(reason) => reason,
            };
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let why = match reason {
                        Some(why) => Some(why),
                        None => self.why_not_ready(id, ns, template).await,
                    };
                    return Ok(Some(format!(
                        "not ready after {} s{}",
                        self.cfg.start_timeout.as_secs(),
                        why.map(|w| format!(": {w}")).unwrap_or_default()
                    )));
                }
            }
        }
    }

    /// Why a rollout that has no failing pod is not done: the newest warning about a new pod
    /// that is not ready, or else the Deployment's own condition.
    async fn why_not_ready(&self, id: &LambdaId, ns: &str, template: &str) -> Option<String> {
        let stuck = self
            .pods(id)
            .into_iter()
            .find(|p| template_hash(p) == Some(template) && !is_ready(p));
        if let Some(p) = stuck
            && let Some(why) = self
                .last_warning(ns, p.metadata.name.as_deref().unwrap_or_default())
                .await
        {
            return Some(why);
        }
        self.deployment(id).and_then(|d| deployment_problem(&d))
    }

    /// Waits (up to the stop timeout) until the lambda has no pod and no Deployment left.
    async fn wait_gone(&self, id: &LambdaId) {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + self.cfg.stop_timeout;
        while !self.all_pods(id).is_empty() || self.deployment(id).is_some() {
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(lambda = %id, "pods still terminating after the stop timeout");
                    return;
                }
            }
        }
    }
}

impl KubeOrchestrator {
    /// Sets the Deployment's `replicas` through its scale subresource (the pod template is not
    /// touched: no rollout) and waits until that many pods are ready (growing) or the surplus
    /// ones are being deleted (shrinking). A scale up that fails (a crashing pod, the start
    /// timeout) is undone, its surplus pods out of the balancing, and says why.
    async fn scale_inner(&self, id: &LambdaId, replicas: u32) -> Result<()> {
        let d = self.deployment(id).ok_or(Error::NotFound(*id))?;
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let before = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let template = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(labels::TEMPLATE_HASH))
            .cloned()
            .unwrap_or_default();
        let deps = Api::<Deployment>::namespaced(self.client.clone(), &ns);
        let name = id.object_name();
        let patch = |n: u32| Patch::Merge(serde_json::json!({"spec": {"replicas": n}}));
        let mut rx = self.changed.subscribe();
        deps.patch_scale(&name, &PatchParams::default(), &patch(replicas))
            .await
            .map_err(api_error)?;
        if i64::from(replicas) <= i64::from(before) {
            self.surplus_deleted(id, replicas, &mut rx).await;
            return Ok(());
        }
        let Some(failure) = self
            .rollout_failure(id, &ns, &template, replicas as usize, &mut rx)
            .await?
        else {
            return Ok(());
        };
        // Undone, and waited for: a failed pod left in place (a scale back and up again before
        // the ReplicaSet controller acted keeps it) would fail the next scale up with its old
        // crash instead of a fresh start.
        let before = before.max(0) as u32;
        if deps
            .patch_scale(&name, &PatchParams::default(), &patch(before))
            .await
            .is_ok()
        {
            self.surplus_deleted(id, before, &mut rx).await;
        }
        Err(Error::StartFailed { reason: failure })
    }

    /// Waits until at most `replicas` of the lambda's pods are left that are not being deleted
    /// (the surplus is out of the balancing), or the start timeout.
    async fn surplus_deleted(
        &self,
        id: &LambdaId,
        replicas: u32,
        rx: &mut tokio::sync::watch::Receiver<u64>,
    ) {
        let deadline = tokio::time::Instant::now() + self.cfg.start_timeout;
        while self.pods(id).len() > replicas as usize {
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(lambda = %id, "surplus pods not deleted after the start timeout");
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl Orchestrator for KubeOrchestrator {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    async fn deploy(&self, spec: DeploySpec) -> Result<()> {
        let lock = self.lock_for(&spec.lambda_id);
        let _guard = lock.lock().await;
        self.deploy_inner(spec).await
    }

    async fn scale(&self, lambda_id: &LambdaId, replicas: u32) -> Result<()> {
        let lock = self.lock_for(lambda_id);
        let _guard = lock.lock().await;
        self.scale_inner(lambda_id, replicas).await
    }

    async fn undeploy(&self, lambda_id: &LambdaId) -> Result<()> {
        let lock = self.lock_for(lambda_id);
        let _guard = lock.lock().await;
        let namespaces: Vec<String> = match self.namespace(lambda_id) {
            Some(ns) => vec![ns],
            None => self
                .watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect(),
        };
        for ns in &namespaces {
            self.delete_objects(ns, &lambda_id.object_name()).await?;
        }
        self.wait_gone(lambda_id).await;
        self.namespace_of
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(lambda_id);
        Ok(())
    }

    async fn status(&self, lambda_id: &LambdaId) -> Result<DeploymentStatus> {
        let d = self
            .deployment(lambda_id)
            .ok_or(Error::NotFound(*lambda_id))?;
        let version = label(&*d, labels::VERSION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let mut replicas = Vec::new();
        for p in self.pods(lambda_id) {
            let (phase, mut reason, _) = pod_reason(&p);
            let name = p.metadata.name.clone().unwrap_or_default();
            if phase != ReplicaPhase::Running && reason.is_none() {
                reason = self.last_warning(&ns, &name).await;
            }
            replicas.push(ReplicaState {
                name,
                phase,
                reason,
                restarts: restarts(&p),
            });
        }
        Ok(DeploymentStatus { version, replicas })
    }

    async fn logs(
        &self,
        lambda_id: &LambdaId,
        tail: Option<usize>,
    ) -> Result<BTreeMap<String, String>> {
        let ns = self
            .namespace(lambda_id)
            .ok_or(Error::NotFound(*lambda_id))?;
        let api = Api::<Pod>::namespaced(self.client.clone(), &ns);
        let lp = LogParams {
            container: Some("lambda".into()),
            tail_lines: tail.map(|t| t as i64),
            ..LogParams::default()
        };
        let mut out = BTreeMap::new();
        for p in self.pods(lambda_id) {
            let name = p.metadata.name.clone().unwrap_or_default();
            self.reads.fetch_add(1, Ordering::Relaxed);
            match api.logs(&name, &lp).await {
                Ok(text) => {
                    out.insert(name, text);
                }
                // Not started yet: no logs is the truth.
                Err(kube::Error::Api(s)) if s.code == 400 => {
                    out.insert(name, String::new());
                }
                Err(e) => return Err(api_error(e)),
            }
        }
        Ok(out)
    }

    async fn follow_logs(&self, lambda_id: &LambdaId) -> Result<BoxStream<'static, String>> {
        let ns = self
            .namespace(lambda_id)
            .ok_or(Error::NotFound(*lambda_id))?;
        let w = self.watched(&ns).ok_or(Error::NotFound(*lambda_id))?;
        let api = Api::<Pod>::namespaced(self.client.clone(), &ns);
        let (tx, rx) = tokio::sync::mpsc::channel::<String>(1024);
        let mut changed = self.changed.subscribe();
        let stop = self.stop.clone();
        let (ids, name) = (lambda_id.to_string(), lambda_id.object_name());
        // Every replica, including those a rolling update or a restart brings later: the pods
        // running now from their next line (their streams are open before this returns), later
        // containers from their first.
        let followed: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let pass = {
            let (followed, api, tx) = (followed.clone(), api.clone(), tx.clone());
            move |first: bool, pods: Vec<Arc<Pod>>| {
                let mut opened = Vec::new();
                for p in pods {
                    let pod = p.metadata.name.clone().unwrap_or_default();
                    if !followed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(pod.clone())
                    {
                        continue;
                    }
                    let lp = LogParams {
                        container: Some("lambda".into()),
                        follow: true,
                        tail_lines: first.then_some(0),
                        ..LogParams::default()
                    };
                    let (api, tx, followed) = (api.clone(), tx.clone(), followed.clone());
                    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<()>();
                    tokio::spawn(async move {
                        let reader = api.log_stream(&pod, &lp).await;
                        let _ = open_tx.send(());
                        if let Ok(reader) = reader {
                            let mut lines = reader.lines();
                            while let Some(Ok(l)) = lines.next().await {
                                if tx.send(format!("[{pod}] {l}")).await.is_err() {
                                    break;
                                }
                            }
                        }
                        // The container ended: its successor (a restart) is followed anew.
                        followed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&pod);
                    });
                    opened.push(open_rx);
                }
                opened
            }
        };
        let live = move |w: &Watched| {
            w.pods.state_filter(|p| {
                label(p, labels::ID) == Some(ids.as_str()) && !deleting(p) && started(p)
            })
        };
        for opened in pass(true, live(&w)) {
            let _ = opened.await;
        }
        tokio::spawn(async move {
            loop {
                drop(pass(false, live(&w)));
                let exists =
                    w.deployments.state().iter().any(|d| {
                        d.metadata.name.as_deref() == Some(name.as_str()) && !deleting(&**d)
                    });
                if !exists {
                    break;
                }
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tx.closed() => break,
                    _ = stop.cancelled() => break,
                }
            }
        });
        Ok(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) })
                .boxed(),
        )
    }

    async fn list(&self) -> Result<Vec<Deployed>> {
        let all: Vec<Arc<Watched>> = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for w in all {
            for d in w.deployments.state() {
                if deleting(&*d) {
                    continue;
                }
                let Some(id) = label(&*d, labels::ID).and_then(|s| s.parse::<LambdaId>().ok())
                else {
                    continue;
                };
                let version = label(&*d, labels::VERSION)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if let Some(ns) = &d.metadata.namespace {
                    self.namespace_of
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(id)
                        .or_insert_with(|| ns.clone());
                }
                out.push(Deployed {
                    lambda_id: id,
                    version,
                });
            }
        }
        Ok(out)
    }

    fn endpoint(&self, lambda_id: &LambdaId) -> Option<String> {
        let ns = self.namespace(lambda_id)?;
        let ready: Vec<String> = self
            .pods(lambda_id)
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .collect();
        if ready.is_empty() {
            return None;
        }
        let url = endpoint_url(&self.cfg.endpoint, lambda_id, &ns);
        if url.contains("{pod_ip}") {
            let i = self.rr.fetch_add(1, Ordering::Relaxed) % ready.len();
            Some(url.replace("{pod_ip}", &ready[i]))
        } else {
            Some(url)
        }
    }

    /// Each Ready pod at its own IP: the `endpoint` template when it names `{pod_ip}`, else
    /// port 8000 of the pod (the Service would pick one pod at random).
    fn replica_endpoints(&self, lambda_id: &LambdaId) -> Vec<(String, String)> {
        let template = if self.cfg.endpoint.contains("{pod_ip}") {
            self.cfg.endpoint.as_str()
        } else {
            "http://{pod_ip}:8000"
        };
        self.pods(lambda_id)
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                let name = p.metadata.name.clone()?;
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let url = endpoint_url(template, lambda_id, &ns).replace("{pod_ip}", &ip);
                Some((name, url))
            })
            .collect()
    }

    async fn health(&self) -> Result<()> {
        self.client
            .apiserver_version()
            .await
            .map(drop)
            .map_err(api_error)
    }

    async fn shutdown(&self) {
        self.stop.cancel();
    }
}

/// An `[orchestrator] endpoint` template with `{id}`, `{name}` and `{namespace}` filled in
/// (`{pod_ip}` is left for the caller).
fn endpoint_url(template: &str, lambda_id: &LambdaId, namespace: &str) -> String {
    template
        .replace("{id}", &lambda_id.to_string())
        .replace("{name}", &lambda_id.object_name())
        .replace("{namespace}", namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_pinned_by_digest() {
        let a = |r: &str, d: Option<&str>| Artifact::Image {
            reference: r.into(),
            digest: d.map(Into::into),
        };
        assert_eq!(
            image_of(&a("127.0.0.1:5000/luna-lambda/x:v1", Some("sha256:ab"))).unwrap(),
            "127.0.0.1:5000/luna-lambda/x@sha256:ab"
        );
        assert_eq!(
            image_of(&a("127.0.0.1:5000/luna-lambda/x", Some("sha256:ab"))).unwrap(),
            "127.0.0.1:5000/luna-lambda/x@sha256:ab"
        );
        assert_eq!(
            image_of(&a("reg/luna-lambda/x:v2", None)).unwrap(),
            "reg/luna-lambda/x:v2"
        );
        assert!(matches!(
            image_of(&Artifact::Local {
                app_dir: "a".into(),
                python: "p".into()
            }),
            Err(Error::Unsupported(_))
        ));
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status}))
            .unwrap()
    }

    #[test]
    fn reasons_come_from_the_pod_status() {
        let crash = pod(serde_json::json!({"containerStatuses": [{
            "name": "lambda", "image": "i", "imageID": "", "ready": false, "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
            "lastState": {"terminated": {"exitCode": 1, "message": "ModuleNotFoundError: x\n"}}
        }]}));
        let (phase, reason, fatal) = pod_reason(&crash);
        assert_eq!(phase, ReplicaPhase::Restarting);
        assert_eq!(
            reason.as_deref(),
            Some("CrashLoopBackOff: exit code 1: ModuleNotFoundError: x")
        );
        assert!(fatal);
        assert_eq!(restarts(&crash), 2);
        let pull = pod(serde_json::json!({"containerStatuses": [{
            "name": "lambda", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"i\""}}
        }]}));
        assert_eq!(
            pod_reason(&pull).1.as_deref(),
            Some("ImagePullBackOff: Back-off pulling image \"i\"")
        );
        let unsched = pod(serde_json::json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 node(s) didn't match node selector."
        }]}));
        let (phase, reason, fatal) = pod_reason(&unsched);
        assert_eq!(phase, ReplicaPhase::Starting);
        assert!(!fatal, "the scheduler may still find room");
        assert_eq!(
            reason.as_deref(),
            Some("Unschedulable: 0/1 nodes are available: 1 node(s) didn't match node selector.")
        );
        let running = pod(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "lambda", "image": "i", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {}}}]
        }));
        assert_eq!(pod_reason(&running), (ReplicaPhase::Running, None, false));
    }

    #[test]
    fn the_config_hash_follows_the_user_config() {
        let a = config_hash(Some(&serde_json::json!({"t": 1})));
        assert_eq!(a, config_hash(Some(&serde_json::json!({"t": 1}))));
        assert_ne!(a, config_hash(Some(&serde_json::json!({"t": 2}))));
        assert_ne!(a, config_hash(None));
    }
}
