//! The configuration's schema: `Config` and its sections, with their defaults.

use lambda_core::Limits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address (default `127.0.0.1:5210`).
    pub listen: String,
    /// Registry of images (`LAMBDA_REGISTRY`); used by the Docker builder.
    pub lambda_registry: Option<String>,
    /// Registries reached over plain HTTP (`LAMBDA_INSECURE_REGISTRIES`).
    pub lambda_insecure_registries: Vec<String>,
    /// How often the reconciler runs, in seconds (default 30).
    pub reconcile_interval_secs: u64,
    /// Orphaned stored objects younger than this are left alone, in seconds (default 600).
    pub orphan_grace_secs: u64,
    /// `[local]`
    pub local: LocalSection,
    /// `[storage]`
    pub storage: StorageSection,
    /// `[s3]`
    pub s3: S3Section,
    /// `[builder]`
    pub builder: BuilderSection,
    /// `[orchestrator]`
    pub orchestrator: OrchestratorSection,
    /// `[limits]`
    pub limits: LimitsSection,
    /// `[tasks]`
    pub tasks: TasksSection,
    /// `[retention]`
    pub retention: RetentionSection,
    /// `[gc]`
    pub gc: GcSection,
    /// `[idle]`
    pub idle: IdleSection,
    /// `[scale]`
    pub scale: ScaleSection,
    /// `[auth]`
    pub auth: AuthSection,
    /// `[tls]`
    pub tls: TlsSection,
}

/// `[tls]`: HTTPS for the API and the proxy (both files, or neither for plain HTTP).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// The certificate chain, PEM (the server's certificate first). Reloaded when it changes.
    pub cert: Option<PathBuf>,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1). Reloaded when it changes.
    pub key: Option<PathBuf>,
}

/// `[auth]`: who may call the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// `"token"` (every route but `/healthcheck` and `/version` needs `Authorization: Bearer`)
    /// or `"none"`. Unset: `"none"` when the server listens on loopback, else the server refuses
    /// to start.
    pub mode: Option<String>,
    /// A file holding the bootstrap admin token (`LUNA_LAMBDA_ADMIN_TOKEN` wins), at least 32
    /// characters: it makes the first tokens.
    pub admin_token_file: Option<PathBuf>,
    /// Management API requests per second per token, as a burst and a refill rate (default 100;
    /// 0: no limit). The proxy is not limited.
    pub rate_per_second: u32,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            mode: None,
            admin_token_file: None,
            rate_per_second: 100,
        }
    }
}

/// `[retention]`: what is kept of old versions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Versions whose built artifacts (images, environments) are kept for an instant rollback
    /// (default 5, at least 1); older versions keep their archives but lose their artifacts.
    pub keep_versions: usize,
    /// Days the audit log is kept (default 90; 0: for ever); older hours go with the garbage.
    pub audit_days: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            keep_versions: 5,
            audit_days: 90,
        }
    }
}

/// `[gc]`: the garbage collector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSection {
    /// Seconds between the server's own collections (default 3600; 0: only on demand, with
    /// `luna-lambda gc` or `POST /1/gc`). What is younger than `orphan_grace_secs` is never
    /// collected.
    pub interval_secs: u64,
}

impl Default for GcSection {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
        }
    }
}

/// `[idle]`: `last_usage` and the inactivity sweep (the original's
/// `LUNA_LAMBDA_INACTIVE_LAMBDA_CLEAR_INTERVAL`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdleSection {
    /// A lambda not called for this many seconds (since its last use, or its last change when
    /// never used) is switched off, unless its parameters say `eternal` (default 0: never).
    pub switch_off_after_secs: u64,
    /// Seconds between two looks of the sweep (default 60).
    pub check_interval_secs: u64,
    /// Seconds between two writes of `last_usage` for the lambdas called since (default 5).
    pub last_usage_flush_secs: u64,
}

impl Default for IdleSection {
    fn default() -> Self {
        Self {
            switch_off_after_secs: 0,
            check_interval_secs: 60,
            last_usage_flush_secs: 5,
        }
    }
}

/// `[scale]`: the autoscaler and the wake of idle lambdas (`deploy_parameters.scale`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleSection {
    /// Requests held per idle lambda while it wakes; more get 503 (42013) with `Retry-After`
    /// (default 1000).
    pub max_waiting: usize,
    /// Milliseconds between two looks of the autoscaler at the load (default 500).
    pub check_interval_ms: u64,
    /// Seconds the load must stay below the replica count before a replica stops (default 30).
    pub scale_down_after_secs: u64,
}

impl Default for ScaleSection {
    fn default() -> Self {
        Self {
            max_waiting: 1000,
            check_interval_ms: 500,
            scale_down_after_secs: 30,
        }
    }
}

/// `[tasks]`: how tasks of `tasks` lambdas run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksSection {
    /// Subtasks in flight per replica (default: the lambda's `workers`).
    pub concurrency_per_replica: Option<usize>,
    /// Seconds a split or subtask call may take before the attempt fails (default 300).
    pub subtask_timeout_secs: u64,
    /// Attempts of a call whose replica failed or timed out (default 3).
    pub max_attempts: u32,
}

impl Default for TasksSection {
    fn default() -> Self {
        Self {
            concurrency_per_replica: None,
            subtask_timeout_secs: 300,
            max_attempts: 3,
        }
    }
}

/// `[local]`: the embedded default's folder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSection {
    /// Where everything local lives (store, builds, running lambdas).
    pub data_dir: Option<PathBuf>,
}

/// `[storage]`: where archives and records live.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `memory://`, `file:///path` or `s3://bucket`; default: `[s3] bucket` when set, else
    /// `file://<data_dir>/store`.
    pub url: Option<String>,
}

/// `[s3]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Section {
    /// Endpoint URL (MinIO, s3s, ...); none means AWS.
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: Option<String>,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (redacted in logs).
    pub secret_access_key: Option<String>,
    /// Allow `http://` endpoints.
    pub allow_http: bool,
    /// Key prefix.
    pub prefix: String,
    /// The server's conditional writes are atomic (AWS, MinIO); false serialises writes in-process.
    pub conditional_put: bool,
}

impl Default for S3Section {
    fn default() -> Self {
        Self {
            endpoint: None,
            bucket: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            prefix: String::new(),
            conditional_put: true,
        }
    }
}

/// `[builder]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuilderSection {
    /// `local` (virtualenv), `docker` (a Docker engine) or `kubernetes` (a build Job in the
    /// cluster and registry-side assembly: no engine; needs `[orchestrator] kind = "kubernetes"`,
    /// whose credentials and namespace it uses, and `lambda_registry`).
    pub kind: String,
    /// Python for local builds.
    pub python: String,
    /// `auto` (uv on PATH; without one, uv is installed once into the data folder from the
    /// package index), `off` (venv + pip), or a path to uv.
    pub uv: String,
    /// Builds at once.
    pub concurrency: usize,
    /// Build timeout in seconds.
    pub timeout_secs: u64,
    /// Extra `pip install` arguments (e.g. an index URL).
    pub pip_args: Vec<String>,
    /// OS family of the base images, `debian` (ours) or `centos` (VisionLabs' originals):
    /// `user_docker_commands` must use its package manager.
    pub base_os: lambda_core::docker_commands::BaseOs,
    /// Docker engine (`kind = "docker"`); default: `DOCKER_HOST`, else the local socket.
    pub docker_host: Option<String>,
    /// Tag of the base images `lpa-lambda-base[-fsdk]:<tag>`.
    #[serde(deserialize_with = "string_or_number")]
    pub base_tag: String,
    /// Network mode of Docker builds (`host` lets pip reach the host's network).
    pub network_mode: Option<String>,
    /// CA bundle given to pip during Docker builds (private package mirrors).
    pub pip_ca_bundle: Option<PathBuf>,
    /// Package index for pip during Docker builds.
    pub pip_index_url: Option<String>,
    /// Registry user for pushes.
    pub registry_user: Option<String>,
    /// Registry password for pushes (redacted in logs).
    pub registry_password: Option<String>,
    /// Local environments that no kept version uses stay as a cache for later builds up to
    /// this many bytes of environments in all (default 1 GiB); the garbage collector removes
    /// the least recently used beyond it.
    pub env_cache_max_bytes: u64,
    /// `kind = "kubernetes"`: the build container's `resources`, e.g.
    /// `{ requests = { cpu = "500m", memory = "512Mi" }, limits = { memory = "2Gi" } }`.
    pub job_resources: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// `kind = "kubernetes"` with a registry that needs credentials: a Secret of type
    /// `kubernetes.io/dockerconfigjson` in `[orchestrator] namespace` the build pods push with
    /// (the server itself uses `registry_user`/`registry_password`).
    pub registry_secret: Option<String>,
}

impl Default for BuilderSection {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            python: "python3".into(),
            uv: "auto".into(),
            concurrency: 2,
            timeout_secs: 600,
            pip_args: Vec::new(),
            base_os: lambda_core::docker_commands::BaseOs::Debian,
            docker_host: None,
            base_tag: "1".into(),
            network_mode: Some("host".into()),
            pip_ca_bundle: None,
            pip_index_url: None,
            registry_user: None,
            registry_password: None,
            env_cache_max_bytes: 1 << 30,
            job_resources: None,
            registry_secret: None,
        }
    }
}

/// `[orchestrator]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorSection {
    /// `local`, `docker` or `kubernetes`.
    pub kind: String,
    /// Seconds a new replica has to answer `/healthcheck`.
    pub start_timeout_secs: u64,
    /// Seconds between SIGTERM and SIGKILL when stopping a replica.
    pub stop_grace_secs: u64,
    /// Kubernetes namespace watched from the start (`kind = "kubernetes"`, default `default`):
    /// its lambdas are re-adopted and garbage-collected after a restart. Lambdas are deployed
    /// where their `deploy_parameters.namespace` says.
    pub namespace: String,
    /// Kubeconfig path (`kind = "kubernetes"`; default: `KUBECONFIG`, else `~/.kube/config`,
    /// else the in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: its current context).
    pub context: Option<String>,
    /// Use the in-cluster service account.
    pub in_cluster: bool,
    /// Where the proxy sends a lambda's requests on Kubernetes: `{name}` (`lambda-<id>`),
    /// `{id}`, `{namespace}` and `{pod_ip}` are filled in (with `{pod_ip}`: straight to the
    /// Ready pods, round robin). Default `http://{name}.{namespace}.svc:8000`, the Service,
    /// which needs the control plane inside the cluster.
    pub endpoint: String,
    /// Name of this platform on a shared Docker engine or cluster: only its own containers or
    /// objects are adopted, listed and removed.
    pub instance: String,
    /// Secrets the pods pull their image with (a private `lambda_registry`; each must exist in
    /// every lambda namespace).
    pub image_pull_secrets: Vec<String>,
    /// `kind = "local"`: start replicas by forking a warm Python process per environment that
    /// has imported the runtime already (default `true`; `false`: a new interpreter each).
    pub zygote: bool,
}

impl Default for OrchestratorSection {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            start_timeout_secs: 60,
            stop_grace_secs: 10,
            namespace: "default".into(),
            kubeconfig: None,
            context: None,
            in_cluster: false,
            endpoint: "http://{name}.{namespace}.svc:8000".into(),
            instance: "default".into(),
            image_pull_secrets: Vec::new(),
            zygote: true,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest archive, compressed.
    pub max_archive_bytes: u64,
    /// Largest total uncompressed size.
    pub max_uncompressed_bytes: u64,
    /// Most entries.
    pub max_entries: usize,
    /// Largest per-entry compression ratio.
    pub max_ratio: u64,
    /// Entries above this size are ratio-checked.
    pub ratio_min_bytes: u64,
    /// Largest parsed file.
    pub max_source_bytes: u64,
    /// Seconds the proxy waits for a lambda's answer.
    pub proxy_timeout_secs: u64,
    /// Idle keep-alive connections the proxy keeps per replica.
    pub proxy_max_idle_per_replica: usize,
    /// Seconds an idle proxy connection is kept for reuse.
    pub proxy_idle_timeout_secs: u64,
    /// Seconds the proxy waits to connect to a replica.
    pub proxy_connect_timeout_secs: u64,
    /// Most lambdas one account may have (0: no limit).
    pub max_lambdas_per_account: usize,
    /// Uploads (create, update, import) received at once; more get 429 with `Retry-After`.
    pub max_concurrent_uploads: usize,
    /// Seconds an upload's body may take to arrive (a stalled one gets 408 and frees its place).
    pub upload_timeout_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            max_archive_bytes: l.max_archive_bytes,
            max_uncompressed_bytes: l.max_uncompressed_bytes,
            max_entries: l.max_entries,
            max_ratio: l.max_ratio,
            ratio_min_bytes: l.ratio_min_bytes,
            max_source_bytes: l.max_source_bytes,
            proxy_timeout_secs: 60,
            proxy_max_idle_per_replica: 256,
            proxy_idle_timeout_secs: 90,
            proxy_connect_timeout_secs: 5,
            max_lambdas_per_account: 1000,
            max_concurrent_uploads: 8,
            upload_timeout_secs: 300,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5210".into(),
            lambda_registry: None,
            lambda_insecure_registries: Vec::new(),
            reconcile_interval_secs: 30,
            orphan_grace_secs: 600,
            local: LocalSection::default(),
            storage: StorageSection::default(),
            s3: S3Section::default(),
            builder: BuilderSection::default(),
            orchestrator: OrchestratorSection::default(),
            limits: LimitsSection::default(),
            tasks: TasksSection::default(),
            retention: RetentionSection::default(),
            gc: GcSection::default(),
            idle: IdleSection::default(),
            scale: ScaleSection::default(),
            auth: AuthSection::default(),
            tls: TlsSection::default(),
        }
    }
}

/// A string setting that may be written as a number (`base_tag = 1`, `..._BASE_TAG=1`).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        I(i64),
        F(f64),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::I(i) => i.to_string(),
        Either::F(f) => f.to_string(),
    })
}
