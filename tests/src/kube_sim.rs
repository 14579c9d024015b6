//! A node simulator for tests against a real Kubernetes control plane (kwok-style, but the pods
//! really run): it registers a Node, and for every pod the scheduler binds to it, it does what a
//! kubelet would, with the Docker engine as its container runtime: mounts the ConfigMap volumes,
//! starts the container on its own loopback address (the pod IP, `127.b.x.y`, port 8000, host
//! network), probes `/healthcheck` for readiness, restarts an exited container with a back-off
//! (`CrashLoopBackOff`, the last output as the termination message, like
//! `FallbackToLogsOnError`), reports a missing image as `ErrImagePull`/`ImagePullBackOff`, stops
//! the container of a pod being deleted and then removes the pod, and serves the kubelet's
//! `containerLogs` endpoint so that `pods/log` works through the API server. What Jobs need too:
//! the container's `command` and `args`, `runAsUser`, emptyDir volumes, and `restartPolicy:
//! Never`, where the container runs once and its exit code ends the pod as `Succeeded` or
//! `Failed` (the last output as the termination message when it failed); a container without a
//! readiness probe is Ready once it runs.
//!
//! Shortened for tests (documented differences from a kubelet): probes every 100 ms, crash
//! back-off 0.5 s doubling to 4 s, a pod being deleted keeps serving for 0.5 s (what a preStop
//! delay does for endpoint propagation) before its container gets SIGTERM.
//!
//! One simulator per test process, on its own thread and runtime (tests have a runtime each);
//! nodes left by earlier processes are deleted at start.

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptions,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The label simulated nodes carry.
pub const SIMULATED: &str = "luna-lambda.io/simulated";
/// A label only the simulated node has (for nodeSelector tests).
pub const NODE_LABEL: (&str, &str) = ("luna-lambda.io/disk", "ssd");

/// A container the simulator runs for a pod.
#[derive(Debug, Clone)]
pub struct Running {
    pub pod: String,
    pub namespace: String,
    pub lambda_id: String,
    pub container: String,
    pub pid: i64,
}

#[derive(Debug, Default)]
struct Shared {
    /// Status only (kwok-style): pods are marked Ready at once, nothing runs.
    status_only: bool,
    /// Lambda id → when its newest pod was reported Ready (status-only mode).
    ready_at: HashMap<String, std::time::Instant>,
    /// Pod uid → its current container.
    running: HashMap<String, Running>,
    /// `namespace/pod` → current container id (for logs).
    by_name: HashMap<String, String>,
    /// Pod uid → the worker's stop token.
    workers: HashMap<String, CancellationToken>,
}

/// The process-wide simulator.
#[derive(Debug)]
pub struct NodeSim {
    pub node: String,
    shared: Arc<Mutex<Shared>>,
}

static SIM: OnceLock<NodeSim> = OnceLock::new();

pub async fn kubeconfig_client_config() -> kube::Config {
    let path = std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!("KUBECONFIG is not set: LAMBDA_IT lists kubernetes, so start the control plane with scripts/infra/kube-start")
    });
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap()
}

fn docker(status_only: bool) -> Docker {
    if status_only {
        // Never called in this mode: a client that connects nowhere until asked.
        return Docker::connect_with_http("http://127.0.0.1:9", 1, bollard::API_DEFAULT_VERSION)
            .unwrap();
    }
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| {
        panic!("DOCKER_HOST is not set: the node simulator runs pods on the Docker engine")
    });
    Docker::connect_with_unix(
        host.trim_start_matches("unix://"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap()
}

/// Starts the simulator once per process and returns it once its node is Ready.
pub fn sim() -> &'static NodeSim {
    start(false)
}

/// The simulator in status-only mode (kwok-style, for benchmarks of the control plane):
/// scheduled pods are marked Running and Ready at once with a pod IP; no container runs.
pub fn status_only_sim() -> &'static NodeSim {
    start(true)
}

fn start(status_only: bool) -> &'static NodeSim {
    SIM.get_or_init(|| {
        let node = format!("sim-{}", std::process::id());
        let shared = Arc::new(Mutex::new(Shared {
            status_only,
            ..Shared::default()
        }));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (n, s) = (node.clone(), shared.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(n, s, ready_tx));
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the node simulator did not start");
        NodeSim { node, shared }
    })
}

impl NodeSim {
    /// The containers running for a lambda's pods, by pod name.
    pub fn running(&self, lambda_id: &str) -> Vec<Running> {
        let mut v: Vec<Running> = self
            .shared
            .lock()
            .unwrap()
            .running
            .values()
            .filter(|r| r.lambda_id == lambda_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.pod.cmp(&b.pod));
        v
    }

    /// When the newest pod of a lambda was reported Ready (status-only mode).
    pub fn ready_at(&self, lambda_id: &str) -> Option<std::time::Instant> {
        self.shared.lock().unwrap().ready_at.get(lambda_id).copied()
    }

    /// Whether this container still runs.
    pub fn alive(&self, container: &str) -> bool {
        self.shared
            .lock()
            .unwrap()
            .running
            .values()
            .any(|r| r.container == container)
    }
}

async fn run(node: String, shared: Arc<Mutex<Shared>>, ready: std::sync::mpsc::Sender<()>) {
    let client = kube::Client::try_from(kubeconfig_client_config().await).unwrap();
    let status_only = shared.lock().unwrap().status_only;
    let docker = docker(status_only);
    let log_port = serve_logs(docker.clone(), shared.clone()).await;
    // Containers of earlier test processes (their pods' nodes are deleted below).
    let filters: HashMap<&str, Vec<String>> =
        [("label", vec!["luna-lambda.io/simulated-pod".to_owned()])]
            .into_iter()
            .collect();
    let leftovers = if status_only {
        Vec::new()
    } else {
        docker
            .list_containers(Some(
                bollard::query_parameters::ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
    };
    for c in leftovers {
        let _ = docker
            .remove_container(
                c.id.as_deref().unwrap_or_default(),
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    // Nodes of earlier test processes are gone with them: pods must not be bound there.
    for old in nodes
        .list(&ListParams::default().labels(&format!("{SIMULATED}=true")))
        .await
        .unwrap()
        .items
    {
        let name = old.metadata.name.clone().unwrap_or_default();
        let _ = nodes.delete(&name, &DeleteParams::default()).await;
        // Their pods would stay Terminating forever: no kubelet is left to confirm.
        let pods: Api<Pod> = Api::all(client.clone());
        for p in pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await
            .unwrap()
            .items
        {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
            let _ = api
                .delete(
                    p.metadata.name.as_deref().unwrap(),
                    &DeleteParams::default().grace_period(0),
                )
                .await;
        }
    }
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": node, "labels": {
            "kubernetes.io/hostname": node, SIMULATED: "true", NODE_LABEL.0: NODE_LABEL.1,
        }},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let capacity = json!({"cpu": "16", "memory": "64Gi", "pods": "1000", "nvidia.com/gpu": "2"});
    nodes
        .patch_status(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "capacity": capacity, "allocatable": capacity,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "simulated", "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": node}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": log_port}},
            }})),
        )
        .await
        .unwrap();
    // The API server taints a new node not-ready; the node lifecycle controller (off here, as
    // there are no heartbeats) would lift it once the node reports Ready.
    nodes
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": null}})),
        )
        .await
        .unwrap();
    ready.send(()).unwrap();
    let pods: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher(pods, cfg)
        .default_backoff()
        .touched_objects()
        .boxed();
    let next_ip = Arc::new(AtomicU32::new(0));
    // Pod IPs are 127.<b>.x.y, <b> chosen per process.
    let ip_base = std::process::id() % 200 + 20;
    while let Some(ev) = events.next().await {
        let Ok(pod) = ev else { continue };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut s = shared.lock().unwrap();
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(t) = s.workers.get(&uid) {
                t.cancel();
            }
            continue;
        }
        if s.workers.contains_key(&uid) {
            continue;
        }
        let stop = CancellationToken::new();
        s.workers.insert(uid.clone(), stop.clone());
        let n = next_ip.fetch_add(1, Ordering::Relaxed);
        let ip = format!("127.{}.{}.{}", ip_base, n / 250 % 250, n % 250 + 1);
        let w = Worker {
            client: client.clone(),
            docker: docker.clone(),
            shared: shared.clone(),
            pod,
            ip,
            stop,
        };
        tokio::spawn(w.run());
    }
}

fn now() -> String {
    rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

/// RFC 3339 in UTC, whole seconds (`2026-01-02T03:04:05Z`).
fn rfc3339(t: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(t as i64)
        .unwrap()
        .to_string()
}

struct Worker {
    client: kube::Client,
    docker: Docker,
    shared: Arc<Mutex<Shared>>,
    pod: Pod,
    ip: String,
    stop: CancellationToken,
}

impl Worker {
    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }
    fn ns(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }
    fn image(&self) -> String {
        self.spec().image.clone().unwrap_or_default()
    }
    fn spec(&self) -> &k8s_openapi::api::core::v1::Container {
        &self.pod.spec.as_ref().unwrap().containers[0]
    }

    async fn status(&self, status: serde_json::Value) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns());
        let _ = api
            .patch_status(
                &self.name(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await;
    }

    fn conditions(&self, ready: bool) -> serde_json::Value {
        let r = if ready { "True" } else { "False" };
        json!([
            {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
            {"type": "Ready", "status": r, "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": r, "lastTransitionTime": now()},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
        ])
    }

    fn container_status(
        &self,
        state: serde_json::Value,
        last: serde_json::Value,
        restarts: u32,
        ready: bool,
    ) -> serde_json::Value {
        json!([{
            "name": self.spec().name, "image": self.image(), "imageID": "",
            "ready": ready, "restartCount": restarts, "started": ready,
            "state": state, "lastState": last,
        }])
    }

    /// `envFrom`: every key of the Secrets and ConfigMaps named.
    async fn env_from(&self) -> Vec<String> {
        use k8s_openapi::api::core::v1::Secret;
        let mut out = Vec::new();
        for source in self.spec().env_from.clone().unwrap_or_default() {
            if let Some(r) = &source.secret_ref {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns());
                if let Ok(secret) = api.get(&r.name).await {
                    for (k, v) in secret.data.unwrap_or_default() {
                        out.push(format!("{k}={}", String::from_utf8_lossy(&v.0)));
                    }
                }
            }
            if let Some(r) = &source.config_map_ref {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns());
                if let Ok(cm) = api.get(&r.name).await {
                    for (k, v) in cm.data.unwrap_or_default() {
                        out.push(format!("{k}={v}"));
                    }
                }
            }
        }
        out
    }

    /// What a kubelet gives a pod whose service account token is mounted: the API server's
    /// address in `KUBERNETES_SERVICE_HOST`/`_PORT` (here the control plane's own, on
    /// loopback).
    async fn service_env(&self) -> Vec<String> {
        if self.service_account().is_none() {
            return Vec::new();
        }
        let url = kubeconfig_client_config().await.cluster_url;
        let host = url.host().unwrap_or("127.0.0.1").to_owned();
        let port = url.port_u16().unwrap_or(443);
        vec![
            format!("KUBERNETES_SERVICE_HOST={host}"),
            format!("KUBERNETES_SERVICE_PORT={port}"),
        ]
    }

    /// The pod's service account, when its token is mounted (a `serviceAccountName` other than
    /// `default`, and no `automountServiceAccountToken: false`).
    fn service_account(&self) -> Option<String> {
        let spec = self.pod.spec.as_ref()?;
        let account = spec.service_account_name.clone()?;
        let mounted = spec.automount_service_account_token != Some(false) && account != "default";
        mounted.then_some(account)
    }

    /// The service account's token, CA and namespace, from the token Secret the controller
    /// made, as the bind a kubelet would mount.
    async fn service_account_mount(&self, dir: &std::path::Path) -> Option<String> {
        use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
        let account = self.service_account()?;
        let host = dir.join("serviceaccount");
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.ns());
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns());
        let mut data = None;
        for _ in 0..100 {
            let name = accounts
                .get(&account)
                .await
                .ok()
                .and_then(|a| a.secrets)
                .and_then(|s| s.into_iter().next())
                .and_then(|r| r.name);
            if let Some(name) = name
                && let Ok(secret) = secrets.get(&name).await
            {
                data = secret.data;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let data = data?;
        std::fs::create_dir_all(&host).unwrap();
        for key in ["token", "ca.crt", "namespace"] {
            if let Some(v) = data.get(key) {
                std::fs::write(host.join(key), &v.0).unwrap();
            }
        }
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(&host).unwrap().flatten() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644));
        }
        Some(format!(
            "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            host.display()
        ))
    }

    /// `restartPolicy: Never` (a Job's pod): the container runs once.
    fn restart_never(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("Never")
    }

    /// Makes the image present: a pull from its registry when the engine does not have it.
    async fn pull(&self) -> Result<(), String> {
        let image = self.image();
        if self.docker.inspect_image(&image).await.is_ok() {
            return Ok(());
        }
        let mut s = self.docker.create_image(
            Some(
                CreateImageOptionsBuilder::default()
                    .from_image(&image)
                    .build(),
            ),
            None,
            None,
        );
        while let Some(r) = s.next().await {
            if let Err(e) = r {
                return Err(e.to_string());
            }
        }
        Ok(())
    }

    /// The ConfigMap and emptyDir volumes as host folders to bind-mount.
    async fn mounts(&self, dir: &std::path::Path) -> Vec<String> {
        let mut binds = Vec::new();
        let spec = self.pod.spec.as_ref().unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns());
        for m in self.spec().volume_mounts.clone().unwrap_or_default() {
            let Some(v) = spec
                .volumes
                .as_ref()
                .and_then(|v| v.iter().find(|v| v.name == m.name))
            else {
                continue;
            };
            let host = dir.join(&v.name);
            if v.empty_dir.is_some() {
                // A folder of the pod's own, writable by whichever user the container runs as.
                std::fs::create_dir_all(&host).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777)).unwrap();
                binds.push(format!("{}:{}", host.display(), m.mount_path));
                continue;
            }
            let Some(cm) = &v.config_map else { continue };
            std::fs::create_dir_all(&host).unwrap();
            if let Ok(cm) = cms.get(&cm.name).await {
                for (k, val) in cm.data.unwrap_or_default() {
                    std::fs::write(host.join(k), val).unwrap();
                }
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
            binds.push(format!("{}:{}:ro", host.display(), m.mount_path));
        }
        binds
    }

    async fn start_container(&self, binds: Vec<String>) -> Result<(String, i64), String> {
        let ip = self.ip.clone();
        let mut env: Vec<String> = self
            .spec()
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                // `valueFrom: {fieldRef: {fieldPath: status.podIP}}`, as a kubelet fills it in.
                let pod_ip = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .is_some_and(|f| f.field_path == "status.podIP");
                let value = if pod_ip {
                    ip.clone()
                } else {
                    e.value.unwrap_or_default()
                };
                format!("{}={value}", e.name)
            })
            .collect();
        // `$(NAME)` refers to a variable defined before it, as a kubelet expands it.
        for i in 0..env.len() {
            let (before, rest) = env.split_at_mut(i);
            let item = &mut rest[0];
            for earlier in before.iter() {
                if let Some((k, v)) = earlier.split_once('=') {
                    *item = item.replace(&format!("$({k})"), v);
                }
            }
        }
        env.extend(self.env_from().await);
        env.push(format!("LAMBDA_HOST={}", self.ip));
        env.extend(self.service_env().await);
        let labels: HashMap<String, String> = [
            ("luna-lambda.io/simulated-pod".to_owned(), self.name()),
            (
                "luna-lambda.io/id".to_owned(),
                self.pod
                    .metadata
                    .labels
                    .clone()
                    .unwrap_or_default()
                    .get("luna-lambda.io/id")
                    .cloned()
                    .unwrap_or_default(),
            ),
        ]
        .into_iter()
        .collect();
        let spec = self.pod.spec.as_ref().unwrap();
        let run_as = self
            .spec()
            .security_context
            .as_ref()
            .and_then(|c| c.run_as_user)
            .or_else(|| spec.security_context.as_ref().and_then(|c| c.run_as_user));
        let body = ContainerCreateBody {
            image: Some(self.image()),
            entrypoint: self.spec().command.clone(),
            cmd: self.spec().args.clone(),
            user: run_as.map(|u| u.to_string()),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                binds: Some(binds),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.docker
            .start_container(&c.id, None)
            .await
            .map_err(|e| e.to_string())?;
        let pid = self
            .docker
            .inspect_container(&c.id, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.pid)
            .unwrap_or(0);
        Ok((c.id, pid))
    }

    async fn healthy(&self) -> bool {
        // The readiness probe's path and port (a lambda's: /healthcheck on 8000).
        let get = self
            .spec()
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.clone());
        let port = match get.as_ref().map(|g| &g.port) {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => *p,
            _ => 8000,
        };
        let path = get
            .and_then(|g| g.path)
            .unwrap_or_else(|| "/healthcheck".into());
        let url = format!("http://{}:{port}{path}", self.ip);
        matches!(
            reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(1))
                .send()
                .await,
            Ok(r) if r.status().is_success()
        )
    }

    async fn tail(&self, container: &str) -> String {
        let mut s = self.docker.logs(
            container,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .tail("20")
                    .build(),
            ),
        );
        let mut out = String::new();
        while let Some(Ok(l)) = s.next().await {
            out.push_str(&l.to_string());
        }
        out
    }

    async fn remove(&self, container: &str) {
        let _ = self
            .docker
            .stop_container(
                container,
                Some(StopContainerOptionsBuilder::default().t(5).build()),
            )
            .await;
        let _ = self
            .docker
            .remove_container(
                container,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
    }

    async fn run(self) {
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let key = format!("{}/{}", self.ns(), self.name());
        let lambda_id = self
            .pod
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .get("luna-lambda.io/id")
            .cloned()
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("luna-lambda-sim/{uid}"));
        let started = now();
        let waiting = |reason: &str, message: Option<&str>| json!({"waiting": {"reason": reason, "message": message}});
        if self.shared.lock().unwrap().status_only {
            let running = json!({"running": {"startedAt": now()}});
            // Taken before the status is written: the latency measured from it is an upper bound.
            self.shared
                .lock()
                .unwrap()
                .ready_at
                .insert(lambda_id.clone(), std::time::Instant::now());
            self.status(json!({
                "phase": "Running", "hostIP": "127.0.0.1", "podIP": self.ip,
                "podIPs": [{"ip": self.ip}], "startTime": started,
                "conditions": self.conditions(true),
                "containerStatuses": self.container_status(running, json!({}), 0, true),
            }))
            .await;
            self.stop.cancelled().await;
            return self.finish(&uid, &key, None).await;
        }
        self.status(json!({
            "phase": "Pending", "hostIP": "127.0.0.1", "podIP": self.ip,
            "podIPs": [{"ip": self.ip}], "startTime": started,
            "conditions": self.conditions(false),
            "containerStatuses": self.container_status(waiting("ContainerCreating", None), json!({}), 0, false),
        }))
        .await;
        // Image.
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.pull().await {
                Ok(()) => break,
                Err(e) => {
                    self.status(json!({"containerStatuses": self.container_status(
                        waiting("ErrImagePull", Some(&e)), json!({}), 0, false)}))
                        .await;
                    tokio::select! {
                        _ = self.stop.cancelled() => return self.finish(&uid, &key, None).await,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    let msg = format!("Back-off pulling image \"{}\"", self.image());
                    self.status(json!({"containerStatuses": self.container_status(
                        waiting("ImagePullBackOff", Some(&msg)), json!({}), 0, false)}))
                        .await;
                    tokio::select! {
                        _ = self.stop.cancelled() => return self.finish(&uid, &key, None).await,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(4));
                }
            }
        }
        let mut binds = self.mounts(&dir).await;
        binds.extend(self.service_account_mount(&dir).await);
        let mut restarts = 0u32;
        let mut last = json!({});
        let mut backoff = Duration::from_millis(500);
        loop {
            let (container, pid) = match self.start_container(binds.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    self.status(json!({"containerStatuses": self.container_status(
                        waiting("CreateContainerError", Some(&e)), last.clone(), restarts, false)}))
                        .await;
                    return self.finish(&uid, &key, None).await;
                }
            };
            {
                let mut s = self.shared.lock().unwrap();
                s.running.insert(
                    uid.clone(),
                    Running {
                        pod: self.name(),
                        namespace: self.ns(),
                        lambda_id: lambda_id.clone(),
                        container: container.clone(),
                        pid,
                    },
                );
                s.by_name.insert(key.clone(), container.clone());
            }
            let running = json!({"running": {"startedAt": now()}});
            self.status(json!({"phase": "Running", "conditions": self.conditions(false),
                "containerStatuses": self.container_status(running.clone(), last.clone(), restarts, false)}))
                .await;
            let mut wait = self
                .docker
                .wait_container(&container, None::<WaitContainerOptions>)
                .boxed();
            let mut ready = false;
            let exit = loop {
                tokio::select! {
                    _ = self.stop.cancelled() => {
                        // Endpoint propagation (what a preStop delay gives), then SIGTERM.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        self.remove(&container).await;
                        return self.finish(&uid, &key, Some(&container)).await;
                    }
                    r = wait.next() => {
                        break match r {
                            Some(Ok(w)) => w.status_code,
                            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                            _ => -1,
                        };
                    }
                    _ = tokio::time::sleep(Duration::from_millis(100)), if !ready => {
                        if self.spec().readiness_probe.is_none() || self.healthy().await {
                            ready = true;
                            self.status(json!({"conditions": self.conditions(true),
                                "containerStatuses": self.container_status(running.clone(), last.clone(), restarts, true)}))
                                .await;
                        }
                    }
                }
            };
            let message = self.tail(&container).await;
            self.shared.lock().unwrap().running.remove(&uid);
            if self.restart_never() {
                // A Job's pod: it ends with its container, which stays for its logs until the
                // pod is deleted.
                let terminated = json!({"terminated": {
                    "exitCode": exit, "reason": if exit == 0 { "Completed" } else { "Error" },
                    "message": if exit == 0 { String::new() } else { message },
                    "finishedAt": now(),
                }});
                self.status(json!({
                    "phase": if exit == 0 { "Succeeded" } else { "Failed" },
                    "conditions": self.conditions(false),
                    "containerStatuses": self.container_status(terminated, json!({}), 0, false),
                }))
                .await;
                self.stop.cancelled().await;
                self.remove(&container).await;
                return self.finish(&uid, &key, Some(&container)).await;
            }
            self.remove(&container).await;
            restarts += 1;
            last = json!({"terminated": {
                "exitCode": exit, "reason": if exit == 0 { "Completed" } else { "Error" },
                "message": if exit == 0 { String::new() } else { message },
                "finishedAt": now(),
            }});
            let msg = format!(
                "back-off {}ms restarting failed container={} pod={}",
                backoff.as_millis(),
                self.spec().name,
                self.name()
            );
            self.status(json!({"conditions": self.conditions(false),
                "containerStatuses": self.container_status(waiting("CrashLoopBackOff", Some(&msg)), last.clone(), restarts, false)}))
                .await;
            tokio::select! {
                _ = self.stop.cancelled() => return self.finish(&uid, &key, None).await,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(4));
        }
    }

    /// The pod is being deleted and its container is gone: remove the pod object.
    async fn finish(&self, uid: &str, key: &str, _container: Option<&str>) {
        {
            let mut s = self.shared.lock().unwrap();
            s.running.remove(uid);
            s.by_name.remove(key);
        }
        let _ =
            std::fs::remove_dir_all(std::env::temp_dir().join(format!("luna-lambda-sim/{uid}")));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns());
        let mut dp = DeleteParams::default().grace_period(0);
        dp.preconditions = Some(kube::api::Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        });
        let _ = api.delete(&self.name(), &dp).await;
        self.shared.lock().unwrap().workers.remove(uid);
    }
}

/// The kubelet's `GET /containerLogs/{namespace}/{pod}/{container}` (tailLines, follow), over
/// plain HTTP on loopback; returns its port.
async fn serve_logs(docker: Docker, shared: Arc<Mutex<Shared>>) -> u16 {
    use axum::extract::{Path, Query, State};
    use axum::response::IntoResponse;
    #[derive(serde::Deserialize)]
    struct Q {
        #[serde(rename = "tailLines")]
        tail_lines: Option<i64>,
        follow: Option<bool>,
    }
    async fn logs(
        State((docker, shared)): State<(Docker, Arc<Mutex<Shared>>)>,
        Path((ns, pod, _container)): Path<(String, String, String)>,
        Query(q): Query<Q>,
    ) -> axum::response::Response {
        let Some(c) = shared
            .lock()
            .unwrap()
            .by_name
            .get(&format!("{ns}/{pod}"))
            .cloned()
        else {
            return (axum::http::StatusCode::NOT_FOUND, "no container").into_response();
        };
        let follow = q.follow.unwrap_or(false);
        if follow && q.tail_lines == Some(0) {
            // "From now on", as a kubelet does: the engine's `since` has whole seconds, so lines
            // of the current second written before this request are dropped by timestamp.
            let t0 = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let second = rfc3339(t0.as_secs());
            let second = second.trim_end_matches('Z').to_owned();
            let nanos = t0.subsec_nanos();
            let s = docker
                .logs(
                    &c,
                    Some(
                        LogsOptionsBuilder::default()
                            .stdout(true)
                            .stderr(true)
                            .follow(true)
                            .timestamps(true)
                            .since(t0.as_secs() as i32)
                            .build(),
                    ),
                )
                .filter_map(move |r| {
                    let keep = match r {
                        Ok(l) => {
                            let text = l.to_string();
                            let (ts, line) = text.split_once(' ').unwrap_or(("", &text));
                            let earlier = ts.starts_with(&second) && {
                                let frac = ts[second.len()..]
                                    .trim_start_matches('.')
                                    .trim_end_matches('Z');
                                format!("{frac:0<9}").parse::<u32>().unwrap_or(0) < nanos
                            };
                            (!earlier).then(|| Ok(bytes::Bytes::from(line.to_owned())))
                        }
                        Err(e) => Some(Err(e)),
                    };
                    std::future::ready(keep)
                });
            return axum::body::Body::from_stream(s).into_response();
        }
        let tail = q.tail_lines.map_or("all".to_owned(), |t| t.to_string());
        let s = docker
            .logs(
                &c,
                Some(
                    LogsOptionsBuilder::default()
                        .stdout(true)
                        .stderr(true)
                        .follow(follow)
                        .tail(&tail)
                        .build(),
                ),
            )
            .map(|r| r.map(|l| l.into_bytes()));
        axum::body::Body::from_stream(s).into_response()
    }
    let app = axum::Router::new()
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            axum::routing::get(logs),
        )
        .with_state((docker, shared));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let acceptor = tls_acceptor();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| {
                    use tower::ServiceExt;
                    app.clone().oneshot(req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

/// A self-signed certificate (the API server does not verify kubelets unless told to).
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=luna-lambda-node-sim")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// Runs a kubectl command against the test cluster and returns its stdout (panics on failure).
/// `kubectl apply -f -` of a manifest (YAML or JSON), asserted to succeed.
pub fn kubectl_apply(manifest: &str) {
    let mut apply = std::process::Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("kubectl");
    std::io::Write::write_all(&mut apply.stdin.take().unwrap(), manifest.as_bytes()).unwrap();
    assert!(apply.wait().unwrap().success(), "kubectl apply failed");
}

pub fn kubectl(args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
