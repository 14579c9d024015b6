//! The Kubernetes builder: images made with nothing but the Kubernetes API and the registry.
//!
//! A lambda's dependencies (its `requirements.txt` and `user_docker_commands`) are built by a
//! Job whose container image is the lambda's base image itself, running the build agent
//! ([`crate::deps::AGENT`], handed over in a ConfigMap): no Docker engine, no nested containers,
//! default capabilities, `RuntimeDefault` seccomp, root only when a step says `USER root`. The
//! result is a dependencies image named by its content ([`crate::deps::key`]): when the registry
//! has it, no Job runs. The final image is then assembled in the registry by the server
//! ([`crate::assemble`]): the code and runtime layer on top of the dependencies' layers.

use crate::assemble::Assembler;
use crate::gc::InUse;
use crate::registry::Registry;
use crate::{BuildRequest, Error, ImageBuilder, LogSink, Result, deps};
use async_trait::async_trait;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, PropagationPolicy,
};
use lambda_core::build_steps::{self, Pip};
use lambda_core::render::{self, base_image_ref, labels};
use lambda_core::{Artifact, LambdaId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings of the Kubernetes builder.
#[derive(Debug, Clone, Default)]
pub struct KubeBuilderConfig {
    /// `lambda_registry` (`host[:port]`): base images come from it, images go to it.
    pub registry: String,
    /// Tag of the base images.
    pub base_tag: String,
    /// Namespace of the build Jobs.
    pub namespace: String,
    /// `[orchestrator] instance`: the Jobs' label, so platforms sharing a cluster keep apart.
    pub instance: String,
    /// Registries spoken to over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
    /// Registry credentials (user, password) of the server's own pushes.
    pub registry_auth: Option<(String, String)>,
    /// A Secret (type `kubernetes.io/dockerconfigjson`) in the build namespace with the
    /// registry's credentials for the build pods: mounted by the kubelet, never read by the
    /// server.
    pub registry_secret: Option<String>,
    /// CA bundle handed to pip in the build pod.
    pub pip_ca_bundle: Option<PathBuf>,
    /// Package index for pip in the build pod.
    pub pip_index_url: Option<String>,
    /// `resources` of the build container (`{"requests": {...}, "limits": {...}}`).
    pub job_resources: Option<Value>,
    /// Node selector of build pods.
    pub node_selector: BTreeMap<String, String>,
}

/// Builds images with Kubernetes Jobs and registry-side assembly.
pub struct KubeBuilder {
    client: kube::Client,
    cfg: KubeBuilderConfig,
    assembler: Assembler,
    registry: Registry,
}

impl std::fmt::Debug for KubeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBuilder")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn failed(reason: impl Into<String>) -> Error {
    Error::Failed {
        reason: reason.into(),
    }
}

fn api_error(what: &str, e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 403 => Error::Unavailable(format!(
            "{what}: the Kubernetes API refused: {} (the platform's account needs the Role in deploy/kubernetes/rbac.yaml)",
            s.message
        )),
        _ => Error::Unavailable(format!("{what}: Kubernetes API: {e}")),
    }
}

/// The names of one build's objects: `lambda-build-<id>-v<version>-<suffix>`.
fn job_name(id: &LambdaId, version: u64) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("lambda-build-{id}-v{version}-{}", &suffix[..5])
}

impl KubeBuilder {
    /// A builder on `client` (the server makes it from the orchestrator's credentials).
    pub fn new(client: kube::Client, cfg: KubeBuilderConfig) -> Self {
        let assembler = Assembler::new(
            &cfg.registry,
            &cfg.insecure_registries,
            cfg.registry_auth.clone(),
        );
        let registry = Registry::new(
            &cfg.registry,
            &cfg.insecure_registries,
            cfg.registry_auth.clone(),
        );
        Self {
            client,
            cfg,
            assembler,
            registry,
        }
    }

    async fn build_inner(&self, req: &BuildRequest, log: &LogSink) -> Result<Artifact> {
        let registry = Some(self.cfg.registry.as_str());
        let base = base_image_ref(registry, req.parameters.base_image, &self.cfg.base_tag);
        let base_digest = self.assembler.base_digest(&base).await?;
        let pip = Pip {
            index_url: self.cfg.pip_index_url.as_deref(),
            ca_bundle: self.cfg.pip_ca_bundle.is_some(),
        };
        let deps = match deps::needed(req, &self.cfg.registry, &base_digest, &pip)? {
            None => {
                let _ = log.send(format!(
                    "==> no requirements or instructions: the code goes on {base}"
                ));
                base.clone()
            }
            Some(needed) if self.assembler.has(&needed.reference).await? => {
                let _ = log.send(format!(
                    "==> dependencies image {} is in the registry: no build job",
                    needed.reference
                ));
                needed.reference
            }
            Some(needed) => {
                let _ = log.send(format!(
                    "==> dependencies image {} is not in the registry: building it",
                    needed.reference
                ));
                let base_repo = req.parameters.base_image.image_name();
                let spec = deps::agent_spec(
                    &self.registry.base_url(),
                    (base_repo, &base_digest),
                    &needed.key,
                    &needed.plan,
                );
                self.run_job(req, &base, spec, needed.requirements, log)
                    .await?;
                needed.reference
            }
        };
        let (target, digest) = self
            .assembler
            .lambda_image(&self.cfg.registry, &deps, req, log)
            .await?;
        let _ = log.send(format!("==> pushed {target}@{digest}"));
        Ok(Artifact::Image {
            reference: target,
            digest: Some(digest),
        })
    }

    /// The ConfigMap the agent reads: its program, spec, the requirements and pip's CA.
    fn config_map(
        &self,
        objects: &render::BuildJobSpec<'_>,
        spec: &Value,
        requirements: Option<Vec<u8>>,
    ) -> Result<ConfigMap> {
        let mut data = BTreeMap::from([
            ("agent.py".to_owned(), deps::AGENT.to_owned()),
            ("spec.json".to_owned(), spec.to_string()),
        ]);
        if let Some(r) = requirements {
            data.insert(
                "requirements.txt".into(),
                String::from_utf8_lossy(&r).into_owned(),
            );
        }
        if let Some(ca) = &self.cfg.pip_ca_bundle {
            let pem = std::fs::read_to_string(ca).map_err(|source| Error::Io {
                path: ca.display().to_string(),
                source,
            })?;
            data.insert("pip-ca.pem".into(), pem);
        }
        serde_json::from_value(render::render_build_config_map(objects, &data))
            .map_err(|e| failed(format!("the build ConfigMap: {e}")))
    }

    /// What the build's Job and ConfigMap depend on.
    fn job_spec<'a>(
        &'a self,
        name: &'a str,
        req: &BuildRequest,
        image: &'a str,
        root: bool,
    ) -> render::BuildJobSpec<'a> {
        render::BuildJobSpec {
            name,
            id: req.lambda_id,
            version: req.version,
            instance: &self.cfg.instance,
            image,
            root,
            deadline_secs: req.timeout.as_secs(),
            resources: self.cfg.job_resources.as_ref(),
            node_selector: &self.cfg.node_selector,
            registry_secret: self.cfg.registry_secret.as_deref(),
        }
    }

    /// This platform's build Jobs that ended at least `grace` ago, removed (with their pods and
    /// ConfigMaps) unless `dry_run`. A living build removes its own when it ends; these are
    /// what a server killed mid-build leaves, on clusters whose TTL controller is off (before
    /// Kubernetes 1.23 it is off by default). A Job still running is never touched.
    async fn finished_jobs(
        &self,
        grace: Duration,
        dry_run: bool,
    ) -> Result<Vec<lambda_core::api::GcItem>> {
        let ns = &self.cfg.namespace;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let selector = format!(
            "{}={},{}={},{}={}",
            labels::MANAGED_BY,
            render::MANAGED_BY,
            labels::INSTANCE,
            self.cfg.instance,
            labels::ROLE,
            render::ROLE_BUILD,
        );
        let listed = jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| api_error("listing build Jobs", e))?;
        let mut out = Vec::new();
        for job in listed {
            let Some(name) = job.metadata.name.clone() else {
                continue;
            };
            if job.metadata.deletion_timestamp.is_some() || !ended_before(&job, grace) {
                continue;
            }
            if !dry_run {
                if let Err(e) = jobs.delete(&name, &background()).await
                    && !matches!(&e, kube::Error::Api(s) if s.code == 404)
                {
                    tracing::warn!(job = %name, error = %e, "removing a finished build Job failed");
                    continue;
                }
                // Owned by its Job, but a Job from before ownership (or a cluster without the
                // garbage collector) would leave it.
                let _ = cms.delete(&name, &DeleteParams::default()).await;
            }
            out.push(lambda_core::api::GcItem::new(
                "build-job",
                format!("{ns}/{name}"),
                0,
            ));
        }
        Ok(out)
    }

    async fn run_job(
        &self,
        req: &BuildRequest,
        base: &str,
        mut spec: Value,
        requirements: Option<Vec<u8>>,
        log: &LogSink,
    ) -> Result<()> {
        spec["scratch"] = json!(render::BUILD_SCRATCH_DIR);
        if let Some(ca) = self
            .cfg
            .pip_ca_bundle
            .as_ref()
            .map(|_| build_steps::PIP_CA_PATH)
        {
            spec["ca"] = json!(ca);
        }
        if self.cfg.registry_secret.is_some() {
            spec["auth_file"] = json!(format!("{}/config.json", render::BUILD_AUTH_DIR));
        }
        let steps = spec["steps"].as_array().cloned().unwrap_or_default();
        let root = steps.iter().any(|s| s["user"] == "root");
        let name = job_name(&req.lambda_id, req.version);
        let objects = self.job_spec(&name, req, base, root);
        let ns = &self.cfg.namespace;
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let _cleanup = Cleanup {
            client: self.client.clone(),
            namespace: ns.clone(),
            name: name.clone(),
        };
        cms.create(
            &PostParams::default(),
            &self.config_map(&objects, &spec, requirements)?,
        )
        .await
        .map_err(|e| api_error("creating the build ConfigMap", e))?;
        let job: Job = serde_json::from_value(render::render_build_job(&objects))
            .map_err(|e| failed(format!("the build Job: {e}")))?;
        let job = jobs
            .create(&PostParams::default(), &job)
            .await
            .map_err(|e| api_error("creating the build Job", e))?;
        if let Some(uid) = job.metadata.uid.as_deref() {
            // Created before the Job (its pod mounts it), owned by it from now on.
            let owner = render::build_config_map_owner(&name, uid);
            if let Err(e) = cms
                .patch(&name, &PatchParams::default(), &Patch::Merge(&owner))
                .await
            {
                tracing::warn!(job = %name, error = %e, "making the build Job own its ConfigMap failed");
            }
        }
        let _ = log.send(format!(
            "==> build job {ns}/{name}: {} step(s) in {base}{}",
            steps.len(),
            if root {
                " (as root: a step is USER root)"
            } else {
                ""
            }
        ));
        let pod = self.follow_logs(&name, log).await?;
        self.outcome(&name, &pod).await
    }

    /// Waits for the Job's pod and streams its log into `log` until the container ends;
    /// answers the pod's name.
    async fn follow_logs(&self, job: &str, log: &LogSink) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let lp = ListParams::default().labels(&format!("job-name={job}"));
        // Polled at a steady 50 ms: the pod usually starts within a second, and every
        // millisecond of waiting here is build time.
        let pod = loop {
            let list = pods
                .list(&lp)
                .await
                .map_err(|e| api_error("listing the build pod", e))?;
            let started = list.items.into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_some_and(|ph| ph != "Pending")
                    || waiting_reason(p).is_some_and(|r| r.contains("Err") || r.contains("BackOff"))
            });
            if let Some(p) = started {
                if let Some(r) =
                    waiting_reason(&p).filter(|r| r.contains("Err") || r.contains("BackOff"))
                {
                    return Err(failed(format!("the build pod cannot start: {r}")));
                }
                break p.metadata.name.unwrap_or_default();
            }
            if self.job_failed(job).await? {
                return Err(failed("the build job failed before its pod started"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let lp = LogParams {
            follow: true,
            ..LogParams::default()
        };
        let stream = pods
            .log_stream(&pod, &lp)
            .await
            .map_err(|e| api_error("reading the build log", e))?;
        let mut lines = stream.lines();
        while let Some(line) = lines.try_next().await.map_err(|e| Error::Io {
            path: format!("the log of pod {pod}"),
            source: e,
        })? {
            let _ = log.send(line);
        }
        Ok(pod)
    }

    async fn job_failed(&self, job: &str) -> Result<bool> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let j = jobs
            .get(job)
            .await
            .map_err(|e| api_error("reading the build job", e))?;
        Ok(j.status.and_then(|s| s.failed).unwrap_or(0) > 0)
    }

    /// Success, or the failure with the agent's last words (the failing step and its code).
    async fn outcome(&self, job: &str, pod: &str) -> Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let p = pods
                .get(pod)
                .await
                .map_err(|e| api_error("reading the build pod", e))?;
            let terminated = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.terminated.clone());
            if let Some(t) = terminated {
                if t.exit_code == 0 {
                    return Ok(());
                }
                let words = t
                    .message
                    .as_deref()
                    .and_then(|m| m.lines().rev().find(|l| !l.trim().is_empty()))
                    .unwrap_or("")
                    .to_owned();
                return Err(failed(format!(
                    "build job {job} failed (exit code {}): {words}",
                    t.exit_code
                )));
            }
            if self.job_failed(job).await? {
                return Err(failed(format!(
                    "build job {job} failed (deadline exceeded or pod lost)"
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(failed(format!(
                    "build job {job}: its pod {pod} did not report an end"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn waiting_reason(p: &Pod) -> Option<String> {
    let w = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?;
    Some(format!(
        "{}: {}",
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default()
    ))
}

/// The Job has ended (complete or failed) at least `grace` ago.
fn ended_before(job: &Job, grace: Duration) -> bool {
    let now = k8s_openapi::jiff::Timestamp::now();
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .any(|c| {
            c.last_transition_time.as_ref().is_none_or(|t| {
                now.duration_since(t.0)
                    .try_into()
                    .is_ok_and(|age: Duration| age >= grace)
            })
        })
}

fn background() -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    }
}

/// Deletes a build's Job (with its pod) and ConfigMap when the build ends, however it ends
/// (cancelled and timed-out builds drop their future).
struct Cleanup {
    client: kube::Client,
    namespace: String,
    name: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (client, ns, name) = (
            self.client.clone(),
            self.namespace.clone(),
            self.name.clone(),
        );
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
            if let Err(e) = jobs.delete(&name, &background()).await {
                tracing::warn!(job = %name, error = %e, "removing a build job failed");
            }
            let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
            let _ = cms.delete(&name, &DeleteParams::default()).await;
        });
    }
}

#[async_trait]
impl ImageBuilder for KubeBuilder {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    async fn build(
        &self,
        req: BuildRequest,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<Artifact> {
        crate::bounded(req.timeout, &cancel, &log, self.build_inner(&req, &log)).await
    }

    async fn remove(&self, lambda_id: &LambdaId, artifact: &Artifact) -> Result<()> {
        self.registry
            .remove_own(Some(&self.cfg.registry), lambda_id, artifact)
            .await
            .map_err(failed)
    }

    async fn collect(
        &self,
        in_use: &InUse,
        dry_run: bool,
    ) -> Result<Vec<lambda_core::api::GcItem>> {
        let mut out = self
            .registry
            .collect(Some(&self.cfg.registry), in_use, dry_run)
            .await?;
        out.extend(self.finished_jobs(in_use.grace, dry_run).await?);
        Ok(out)
    }

    async fn health(&self) -> Result<()> {
        self.client
            .apiserver_version()
            .await
            .map(|_| ())
            .map_err(|e| api_error("health", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_a_label_value_and_differ() {
        let id = LambdaId::new();
        let a = job_name(&id, 12345);
        assert!(a.len() <= 63, "{a}");
        assert_ne!(a, job_name(&id, 12345));
    }

    fn job_with(conditions: Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn condition(kind: &str, status: &str, ago: Duration) -> Value {
        let at = k8s_openapi::jiff::Timestamp::now() - ago;
        json!({"type": kind, "status": status, "lastTransitionTime": at.to_string()})
    }

    #[test]
    fn only_jobs_that_ended_before_the_grace_are_collected() {
        let grace = Duration::from_secs(600);
        let hour = Duration::from_secs(3600);
        let now = Duration::ZERO;
        assert!(ended_before(
            &job_with(json!([condition("Complete", "True", hour)])),
            grace
        ));
        assert!(ended_before(
            &job_with(json!([condition("Failed", "True", hour)])),
            grace
        ));
        assert!(!ended_before(
            &job_with(json!([condition("Complete", "True", now)])),
            grace
        ));
        assert!(ended_before(
            &job_with(json!([condition("Complete", "True", now)])),
            Duration::ZERO
        ));
        assert!(!ended_before(
            &job_with(json!([condition("Complete", "False", hour)])),
            grace
        ));
        assert!(!ended_before(
            &job_with(json!([condition("Suspended", "True", hour)])),
            grace
        ));
        assert!(
            !ended_before(&job_with(json!([])), Duration::ZERO),
            "a running Job"
        );
        let running: Job = serde_json::from_value(json!({"metadata": {"name": "j"}})).unwrap();
        assert!(!ended_before(&running, Duration::ZERO));
    }
}
