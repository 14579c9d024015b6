//! Pure "desired state" renderers: the Dockerfile of a lambda image, the list of files in its
//! build context, and the Kubernetes objects that run it. Adapters only send what these return;
//! golden-file tests (`tests/golden/`) pin their output.

use crate::archive::{REQUIREMENTS_FILE, ValidatedArchive};
use crate::names::{LambdaId, LambdaName, LambdaType};
use crate::params::{BaseImage, DeployParameters, Parameters};
use serde_json::{Value, json};
use sha2::Digest;

/// Port the runtime listens on inside a lambda.
pub const LAMBDA_PORT: u16 = 8000;
/// Where the lambda's files live inside the image.
pub const APP_DIR: &str = "/srv/lambda";
/// Where the user config is mounted inside a Kubernetes pod.
pub const USER_CONFIG_DIR: &str = "/etc/luna-lambda";
/// File name of the user config (in [`USER_CONFIG_DIR`] or a local replica's folder).
pub const USER_CONFIG_FILE: &str = "user_config.json";
/// Label and field-manager name that marks the platform's objects.
pub const MANAGED_BY: &str = "luna-lambda-rs";
/// Label keys.
pub mod labels {
    /// `app.kubernetes.io/managed-by`
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The lambda id.
    pub const ID: &str = "luna-lambda.io/id";
    /// The lambda name.
    pub const NAME: &str = "luna-lambda.io/name";
    /// The lambda version.
    pub const VERSION: &str = "luna-lambda.io/version";
    /// Pod-template annotation carrying a hash of the user config (a change restarts pods).
    pub const CONFIG_HASH: &str = "luna-lambda.io/config-hash";
    /// Which platform owns the object, so several platforms (or test runs) share a cluster or an
    /// engine: each adopts, lists and garbage-collects only its own.
    pub const INSTANCE: &str = "luna-lambda.io/instance";
    /// Pod-template annotation: a hash of the rest of the pod template, so the pods of one
    /// rollout are told apart from the previous ones even when version and config are unchanged.
    pub const TEMPLATE_HASH: &str = "luna-lambda.io/template-hash";
    /// What an object is for besides serving a lambda: [`super::ROLE_BUILD`] on an image
    /// build's Job and ConfigMap.
    pub const ROLE: &str = "luna-lambda.io/role";
}

/// What the Dockerfile of one lambda depends on.
#[derive(Debug, Clone)]
pub struct DockerfileSpec<'a> {
    /// `lambda_registry`; `None` uses local image names.
    pub registry: Option<&'a str>,
    /// Which base image.
    pub base_image: BaseImage,
    /// Tag of the base image.
    pub base_tag: &'a str,
    /// The archive has `requirements.txt`.
    pub has_requirements: bool,
    /// Validated `user_docker_commands`.
    pub user_docker_commands: &'a [String],
    /// Lambda type (sets `LAMBDA_TYPE`).
    pub lambda_type: LambdaType,
    /// Extra pip index for `pip install` during the build.
    pub pip_index_url: Option<&'a str>,
    /// Copy a CA bundle (`pip-ca.pem` in the context) for pip, for mirrors behind a private CA.
    pub pip_ca_bundle: bool,
}

/// The base image reference: `<registry>/<lpa-lambda-base[-fsdk]>:<tag>`.
pub fn base_image_ref(registry: Option<&str>, base: BaseImage, tag: &str) -> String {
    match registry {
        Some(r) if !r.is_empty() => {
            format!("{}/{}:{tag}", r.trim_end_matches('/'), base.image_name())
        }
        _ => format!("{}:{tag}", base.image_name()),
    }
}

/// The image reference of a lambda version: `<registry>/luna-lambda/<id>:v<version>`.
pub fn lambda_image_ref(registry: Option<&str>, id: &LambdaId, version: u64) -> String {
    match registry {
        Some(r) if !r.is_empty() => {
            format!("{}/luna-lambda/{id}:v{version}", r.trim_end_matches('/'))
        }
        _ => format!("luna-lambda/{id}:v{version}"),
    }
}

/// The inverse of [`lambda_image_ref`]: `luna-lambda/<id>:v<N>` (after any registry) split into
/// the lambda and version, or `None` for a name the platform does not give.
pub fn parse_lambda_image_ref(reference: &str) -> Option<(LambdaId, u64)> {
    let (repo, tag) = reference.rsplit_once(':')?;
    let id = repo.rsplit_once("luna-lambda/").map(|(_, id)| id)?;
    if id.contains('/') {
        return None;
    }
    Some((id.parse().ok()?, tag.strip_prefix('v')?.parse().ok()?))
}

/// Renders the Dockerfile. Layer order: user commands (system packages), then requirements, then
/// the runtime, then the code — so a code-only change reuses every layer but the last.
pub fn render_dockerfile(spec: &DockerfileSpec<'_>) -> String {
    let mut d = render_deps_dockerfile(spec);
    d.push_str("\n# the platform's runtime, then the lambda's code\n");
    d.push_str(&format!("COPY --chown=luna:luna runtime/ {APP_DIR}/\n"));
    d.push_str(&format!("COPY --chown=luna:luna lambda/ {APP_DIR}/\n"));
    d.push_str(&format!(
        "ENV LAMBDA_TYPE={} LAMBDA_PORT={LAMBDA_PORT} PYTHONUNBUFFERED=1\n",
        spec.lambda_type
    ));
    d.push_str("USER luna\n");
    d.push_str(&format!("EXPOSE {LAMBDA_PORT}\n"));
    d.push_str(&format!("CMD [\"python3\", \"{APP_DIR}/run.py\"]\n"));
    d
}

/// The first part of [`render_dockerfile`]: the base image, the user's instructions and the
/// requirements, without the code (a dependencies image, which the code is assembled onto in
/// the registry).
pub fn render_deps_dockerfile(spec: &DockerfileSpec<'_>) -> String {
    let mut d = String::new();
    d.push_str(
        "# Generated by luna-lambda-rs from the lambda's archive and parameters. Do not edit.\n",
    );
    d.push_str(&format!(
        "FROM {}\n",
        base_image_ref(spec.registry, spec.base_image, spec.base_tag)
    ));
    d.push_str("USER luna\n");
    d.push_str(&format!("WORKDIR {APP_DIR}\n"));
    if !spec.user_docker_commands.is_empty() {
        d.push_str("\n# user_docker_commands\n");
        for c in spec.user_docker_commands {
            d.push_str(c.trim());
            d.push('\n');
        }
        d.push_str("USER luna\n");
        d.push_str(&format!("WORKDIR {APP_DIR}\n"));
    }
    if spec.has_requirements {
        d.push_str("\n# requirements: a layer of their own, before the code\n");
        let mut env = String::new();
        if spec.pip_ca_bundle {
            d.push_str("COPY --chown=luna:luna pip-ca.pem /tmp/pip-ca.pem\n");
            env.push_str("PIP_CERT=/tmp/pip-ca.pem ");
        }
        if let Some(url) = spec.pip_index_url {
            env.push_str(&format!("PIP_INDEX_URL={url} "));
        }
        d.push_str(&format!(
            "COPY --chown=luna:luna {REQUIREMENTS_FILE} /tmp/requirements.txt\n"
        ));
        d.push_str(&format!(
            "RUN {env}python3 -m pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt\n"
        ));
    }
    d
}

/// Where a file of the build context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// The rendered Dockerfile.
    Dockerfile,
    /// The configured CA bundle for pip.
    PipCaBundle,
    /// An entry of the lambda archive, by name.
    Archive(String),
    /// A file of the platform's runtime, by path relative to the runtime folder.
    Runtime(String),
}

/// One file of a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    /// Path inside the context.
    pub path: String,
    /// Where its bytes come from.
    pub source: ContextSource,
}

/// The build context as a list: `Dockerfile`, `requirements.txt` (when present), `runtime/...`,
/// `lambda/...` (the archive's files, without those the runtime replaces). Sorted by path within
/// each group so the same inputs give the same context.
pub fn build_context(
    archive: &ValidatedArchive,
    runtime_files: &[&str],
    spec: &DockerfileSpec<'_>,
) -> Vec<ContextFile> {
    let mut files = vec![ContextFile {
        path: "Dockerfile".into(),
        source: ContextSource::Dockerfile,
    }];
    if spec.has_requirements && spec.pip_ca_bundle {
        files.push(ContextFile {
            path: "pip-ca.pem".into(),
            source: ContextSource::PipCaBundle,
        });
    }
    if archive.has_requirements {
        files.push(ContextFile {
            path: REQUIREMENTS_FILE.into(),
            source: ContextSource::Archive(REQUIREMENTS_FILE.into()),
        });
    }
    let mut rt: Vec<&str> = runtime_files.to_vec();
    rt.sort_unstable();
    files.extend(rt.into_iter().map(|f| ContextFile {
        path: format!("runtime/{f}"),
        source: ContextSource::Runtime(f.to_owned()),
    }));
    let mut user: Vec<&str> = archive.user_files().map(|e| e.name.as_str()).collect();
    user.sort_unstable();
    files.extend(user.into_iter().map(|f| ContextFile {
        path: format!("lambda/{f}"),
        source: ContextSource::Archive(f.to_owned()),
    }));
    files
}

/// What the Kubernetes objects of one lambda version depend on.
#[derive(Debug, Clone)]
pub struct DeploySpec<'a> {
    /// Lambda id (object names are `lambda-<id>`).
    pub id: LambdaId,
    /// Lambda name (a label).
    pub name: &'a LambdaName,
    /// Lambda type.
    pub lambda_type: LambdaType,
    /// Lambda version.
    pub version: u64,
    /// Image reference to run.
    pub image: &'a str,
    /// The lambda's parameters (workers, env, deploy_parameters).
    pub parameters: &'a Parameters,
    /// Hash of the user config; a change restarts the pods.
    pub config_hash: &'a str,
    /// The owning platform's name ([`labels::INSTANCE`]).
    pub instance: &'a str,
    /// Secrets (in the lambda's namespace) to pull the image with, for a private registry.
    pub image_pull_secrets: &'a [String],
    /// Replicas to run now (the autoscaler's count, within the lambda's scale bounds).
    pub replicas: u32,
}

fn object_labels(spec: &DeploySpec<'_>) -> Value {
    json!({
        labels::MANAGED_BY: MANAGED_BY,
        labels::INSTANCE: spec.instance,
        labels::ID: spec.id.to_string(),
        labels::NAME: spec.name.as_str(),
        labels::VERSION: spec.version.to_string(),
    })
}

/// The environment every lambda process gets from the platform (besides the user's `env`).
pub fn runtime_env(
    id: &LambdaId,
    lambda_type: LambdaType,
    version: u64,
    workers: u32,
    port: u16,
    user_config_file: &str,
) -> Vec<(String, String)> {
    vec![
        ("LAMBDA_ID".into(), id.to_string()),
        ("LAMBDA_TYPE".into(), lambda_type.to_string()),
        ("LAMBDA_VERSION".into(), version.to_string()),
        ("LAMBDA_PORT".into(), port.to_string()),
        ("LAMBDA_WORKERS".into(), workers.to_string()),
        (
            "LAMBDA_USER_CONFIG_FILE".into(),
            user_config_file.to_owned(),
        ),
    ]
}

/// The uid (and gid) lambdas run as: the base images' `luna` user. Pods run as it whatever the
/// image's last `USER` says.
pub const LAMBDA_UID: u32 = 1000;

/// The Deployment: `replicas` replicas, rolling update with no unavailable replica, probes on
/// `/healthcheck`, nodeSelector, resources, GPU, user config mounted from a ConfigMap. A container
/// that fails reports its last output lines in its status (`FallbackToLogsOnError`), so the reason
/// of a crash loop is known without reading logs. Hardened: non-root ([`LAMBDA_UID`]), no
/// privilege escalation, every capability dropped, the runtime's default seccomp profile, no
/// service account token.
pub fn render_deployment(spec: &DeploySpec<'_>) -> Value {
    let dp = &spec.parameters.deploy_parameters;
    let name = spec.id.object_name();
    let mut template = json!({
        "metadata": {
            "labels": object_labels(spec),
            "annotations": {labels::CONFIG_HASH: spec.config_hash},
        },
        "spec": pod_spec(spec, &name),
    });
    let digest = sha2::Sha256::digest(template.to_string().as_bytes());
    let hash = crate::hex(&digest[..8]);
    template["metadata"]["annotations"][labels::TEMPLATE_HASH] = json!(hash);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": dp.namespace, "labels": object_labels(spec)},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {labels::ID: spec.id.to_string()}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": template,
        },
    })
}

/// The pod of a lambda's Deployment (`name`: its objects' name, also its ConfigMap's).
fn pod_spec(spec: &DeploySpec<'_>, name: &str) -> Value {
    let dp = &spec.parameters.deploy_parameters;
    let probe = |initial: u32, period: u32, failures: u32| {
        json!({
            "httpGet": {"path": "/healthcheck", "port": LAMBDA_PORT},
            "initialDelaySeconds": initial,
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        })
    };
    let mut pod_spec = json!({
        "containers": [{
            "name": "lambda",
            "image": spec.image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": LAMBDA_PORT, "protocol": "TCP"}],
            "env": container_env(spec),
            "resources": container_resources(dp),
            "readinessProbe": probe(1, 5, 3),
            "livenessProbe": probe(10, 10, 3),
            "volumeMounts": [{"name": "user-config", "mountPath": USER_CONFIG_DIR, "readOnly": true}],
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            },
        }],
        "terminationGracePeriodSeconds": 30,
        "automountServiceAccountToken": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": LAMBDA_UID,
            "runAsGroup": LAMBDA_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": "user-config", "configMap": {"name": name}}],
    });
    if !spec.image_pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = spec
            .image_pull_secrets
            .iter()
            .map(|s| json!({"name": s}))
            .collect();
    }
    if !dp.selector.is_empty() {
        pod_spec["nodeSelector"] = json!(dp.selector);
    }
    pod_spec
}

/// The container's environment: the runtime's, the lambda's own, and the GPU's when it has one.
fn container_env(spec: &DeploySpec<'_>) -> Vec<Value> {
    let p = spec.parameters;
    let mut env: Vec<Value> = runtime_env(
        &spec.id,
        spec.lambda_type,
        spec.version,
        p.workers,
        LAMBDA_PORT,
        &format!("{USER_CONFIG_DIR}/{USER_CONFIG_FILE}"),
    )
    .into_iter()
    .chain(p.env.iter().map(|(k, v)| (k.clone(), v.clone())))
    .map(|(k, v)| json!({"name": k, "value": v}))
    .collect();
    if p.deploy_parameters.enable_gpu {
        env.push(json!({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "video,compute,utility"}));
    }
    env
}

/// The container's requests and limits (those set), and a GPU when asked for.
fn container_resources(dp: &DeployParameters) -> Value {
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    let r = &dp.resources;
    for (is_limit, key, val) in [
        (false, "cpu", &r.cpu_request),
        (false, "memory", &r.memory_request),
        (true, "cpu", &r.cpu_limit),
        (true, "memory", &r.memory_limit),
    ] {
        if let Some(v) = val {
            let map = if is_limit { &mut limits } else { &mut requests };
            map.insert(key.into(), json!(v));
        }
    }
    if dp.enable_gpu {
        limits.insert("nvidia.com/gpu".into(), json!("1"));
    }
    let mut resources = serde_json::Map::new();
    if !requests.is_empty() {
        resources.insert("requests".into(), Value::Object(requests));
    }
    if !limits.is_empty() {
        resources.insert("limits".into(), Value::Object(limits));
    }
    Value::Object(resources)
}

/// The ClusterIP Service in front of the replicas, on port 8000.
pub fn render_service(spec: &DeploySpec<'_>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": spec.id.object_name(),
            "namespace": spec.parameters.deploy_parameters.namespace,
            "labels": object_labels(spec),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {labels::ID: spec.id.to_string()},
            "ports": [{"name": "http", "port": LAMBDA_PORT, "targetPort": LAMBDA_PORT, "protocol": "TCP"}],
        },
    })
}

/// The ConfigMap holding the user config as `user_config.json`.
pub fn render_config_map(spec: &DeploySpec<'_>) -> Value {
    let cfg = spec.parameters.user_config.clone().unwrap_or(Value::Null);
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec.id.object_name(),
            "namespace": spec.parameters.deploy_parameters.namespace,
            "labels": object_labels(spec),
        },
        "data": {USER_CONFIG_FILE: cfg.to_string()},
    })
}

/// [`labels::ROLE`] of an image build's objects.
pub const ROLE_BUILD: &str = "build";
/// Where a build pod mounts its ConfigMap (the agent, its spec, the requirements).
pub const BUILD_AGENT_DIR: &str = "/lambda-build";
/// A build pod's scratch folder (an emptyDir: layer files go there, out of the snapshot).
pub const BUILD_SCRATCH_DIR: &str = "/lambda-build-scratch";
/// Where a build pod mounts the registry credentials' Secret (as `config.json`).
pub const BUILD_AUTH_DIR: &str = "/lambda-build-auth";

/// What the Kubernetes objects of one image build depend on.
#[derive(Debug, Clone)]
pub struct BuildJobSpec<'a> {
    /// Name of the Job and of its ConfigMap.
    pub name: &'a str,
    /// The lambda built.
    pub id: LambdaId,
    /// The version built.
    pub version: u64,
    /// The owning platform's name ([`labels::INSTANCE`]).
    pub instance: &'a str,
    /// The image the build runs in (the lambda's base image).
    pub image: &'a str,
    /// Run as root (a step says `USER root`); otherwise as [`LAMBDA_UID`].
    pub root: bool,
    /// The build's time limit (the Job's `activeDeadlineSeconds`, at least 1).
    pub deadline_secs: u64,
    /// `resources` of the build container.
    pub resources: Option<&'a Value>,
    /// Node selector of the build pod.
    pub node_selector: &'a std::collections::BTreeMap<String, String>,
    /// A `kubernetes.io/dockerconfigjson` Secret mounted at [`BUILD_AUTH_DIR`].
    pub registry_secret: Option<&'a str>,
}

fn build_labels(spec: &BuildJobSpec<'_>) -> Value {
    json!({
        labels::MANAGED_BY: MANAGED_BY,
        labels::INSTANCE: spec.instance,
        labels::ID: spec.id.to_string(),
        labels::VERSION: spec.version.to_string(),
        labels::ROLE: ROLE_BUILD,
    })
}

/// The build Job: the base image running the agent from [`BUILD_AGENT_DIR`], no retry, bounded
/// by the build timeout, collected by Kubernetes 10 minutes after it ends. Hardened like a
/// lambda's pod (no service account token, `RuntimeDefault` seccomp, no privilege escalation)
/// except that it runs as root when a step says `USER root`.
pub fn render_build_job(spec: &BuildJobSpec<'_>) -> Value {
    let uid = if spec.root { 0 } else { LAMBDA_UID };
    let mut mounts = vec![
        json!({"name": "agent", "mountPath": BUILD_AGENT_DIR, "readOnly": true}),
        json!({"name": "scratch", "mountPath": BUILD_SCRATCH_DIR}),
    ];
    let mut volumes = vec![
        json!({"name": "agent", "configMap": {"name": spec.name}}),
        json!({"name": "scratch", "emptyDir": {}}),
    ];
    if let Some(secret) = spec.registry_secret {
        volumes.push(json!({"name": "registry-auth", "secret": {
            "secretName": secret,
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
        }}));
        mounts
            .push(json!({"name": "registry-auth", "mountPath": BUILD_AUTH_DIR, "readOnly": true}));
    }
    let mut container = json!({
        "name": "build",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "python3", "-B",
            format!("{BUILD_AGENT_DIR}/agent.py"),
            format!("{BUILD_AGENT_DIR}/spec.json"),
        ],
        "securityContext": {
            "runAsUser": uid,
            "runAsGroup": uid,
            "allowPrivilegeEscalation": spec.root,
        },
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if let Some(r) = spec.resources {
        container["resources"] = r.clone();
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": spec.name, "labels": build_labels(spec)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.deadline_secs.max(1),
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": build_labels(spec)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "nodeSelector": spec.node_selector,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    })
}

/// A merge patch that makes the build's Job own its ConfigMap (Job `name`, `uid`): whatever
/// removes the Job (its `ttlSecondsAfterFinished`, an operator) removes the ConfigMap with it,
/// also after a server was killed mid-build.
pub fn build_config_map_owner(name: &str, uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name,
        "uid": uid,
    }]}})
}

/// The build's ConfigMap: `data` (file name → text) mounted at [`BUILD_AGENT_DIR`].
pub fn render_build_config_map(
    spec: &BuildJobSpec<'_>,
    data: &std::collections::BTreeMap<String, String>,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": spec.name, "labels": build_labels(spec)},
        "data": data,
    })
}
