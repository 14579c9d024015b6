//! Configuration (DESIGN.md §7): one TOML file plus environment overrides, read once by the
//! binary, with unknown keys rejected and a redacted summary for the start-up log.
//!
//! Environment overrides: `LUNA_LAMBDA_<KEY>` for top-level keys and
//! `LUNA_LAMBDA_<SECTION>_<KEY>` for section keys (e.g. `LUNA_LAMBDA_S3_ENDPOINT`,
//! `LUNA_LAMBDA_LIMITS_MAX_ARCHIVE_BYTES`); values are read as TOML (numbers, booleans, arrays)
//! or else as strings. The original service's `LAMBDA_REGISTRY` and `LAMBDA_INSECURE_REGISTRIES`
//! (comma-separated) are honoured too. `LUNA_LAMBDA_CONFIG` (the file), `LUNA_LAMBDA_LOG` (the log
//! filter) and `LUNA_LAMBDA_URL` (the CLI's server) are not settings. The library never reads the process environment: the
//! binary passes it in.

use crate::service::platform::{Platform, PlatformConfig};
use lambda_build::{LocalBuilder, LocalBuilderConfig};
use lambda_core::Limits;
use lambda_deploy::{LocalOrchestrator, LocalOrchestratorConfig};
use lambda_storage::{S3Options, StorageConfig};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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

/// Configuration errors (reported by the binary, which exits 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys / wrong types.
    #[error("invalid configuration{origin}: {message}")]
    Invalid {
        /// ` in FILE` or ` from the environment`.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A setting that cannot work (e.g. an orchestrator that is not available).
    #[error("{0}")]
    Unsupported(String),
    /// An adapter failed to start.
    #[error("{0}")]
    Startup(String),
}

const SECTIONS: [&str; 13] = [
    "local",
    "storage",
    "s3",
    "builder",
    "orchestrator",
    "limits",
    "tasks",
    "retention",
    "gc",
    "idle",
    "scale",
    "auth",
    "tls",
];
const ENV_PREFIX: &str = "LUNA_LAMBDA_";
/// Variables with the prefix that are not settings: the config file's path, the log filter,
/// the bootstrap admin token, and the CLI's server URL, token and CA.
const NOT_SETTINGS: [&str; 6] = [
    "LUNA_LAMBDA_CONFIG",
    "LUNA_LAMBDA_LOG",
    "LUNA_LAMBDA_URL",
    "LUNA_LAMBDA_ADMIN_TOKEN",
    "LUNA_LAMBDA_TOKEN",
    "LUNA_LAMBDA_CA",
];
/// The bootstrap admin token's variable.
pub const ADMIN_TOKEN_ENV: &str = "LUNA_LAMBDA_ADMIN_TOKEN";

fn env_value(raw: &str) -> toml::Value {
    // Numbers, booleans and arrays as TOML; anything else is a string.
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

impl Config {
    /// Reads `file` (when given), applies the environment overrides in `env`, and checks it.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let (mut table, origin) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let t = text
                    .parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid {
                        origin: format!(" in {}", path.display()),
                        message: e.to_string(),
                    })?;
                (t, format!(" in {} or the environment", path.display()))
            }
            None => (toml::Table::new(), " from the environment".to_owned()),
        };
        let mut keys: Vec<(&String, &String)> = env.iter().collect();
        keys.sort();
        for (k, v) in keys {
            if k == "LAMBDA_REGISTRY" {
                table.insert("lambda_registry".into(), toml::Value::String(v.clone()));
            } else if k == "LAMBDA_INSECURE_REGISTRIES" {
                let list = v.split(',').map(str::trim).filter(|s| !s.is_empty());
                table.insert(
                    "lambda_insecure_registries".into(),
                    toml::Value::Array(list.map(|s| toml::Value::String(s.to_owned())).collect()),
                );
            } else if NOT_SETTINGS.contains(&k.as_str()) {
                continue;
            } else if let Some(rest) = k.strip_prefix(ENV_PREFIX) {
                let rest = rest.to_ascii_lowercase();
                let section = SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_")));
                match section {
                    Some(s) => {
                        let key = rest[s.len() + 1..].to_owned();
                        let entry = table
                            .entry((*s).to_owned())
                            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                        if let toml::Value::Table(t) = entry {
                            t.insert(key, env_value(v));
                        }
                    }
                    None => {
                        table.insert(rest, env_value(v));
                    }
                }
            }
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                origin: origin.clone(),
                message: e.message().to_owned(),
            })?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                origin: String::new(),
                message: format!(
                    "listen = {:?} is not an address like 127.0.0.1:5210",
                    self.listen
                ),
            });
        }
        if let Some(mode) = &self.auth.mode
            && !matches!(mode.as_str(), "none" | "token")
        {
            return Err(ConfigError::Invalid {
                origin: String::new(),
                message: format!("[auth] mode = {mode:?} is not \"none\" or \"token\""),
            });
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid {
                origin: String::new(),
                message: "[tls] needs both cert and key (PEM files), or neither".into(),
            });
        }
        let builder = self.builder.kind.as_str();
        if !matches!(builder, "local" | "docker" | "kubernetes") {
            return Err(ConfigError::Unsupported(format!(
                "[builder] kind = {builder:?} is not available; use \"local\", \"docker\" or \"kubernetes\""
            )));
        }
        let kind = self.orchestrator.kind.as_str();
        if !matches!(kind, "local" | "docker" | "kubernetes") {
            return Err(ConfigError::Unsupported(format!(
                "[orchestrator] kind = {kind:?} is not available; use \"local\", \"docker\" or \"kubernetes\""
            )));
        }
        if kind != "local" && builder == "local" {
            return Err(ConfigError::Unsupported(format!(
                "[orchestrator] kind = {kind:?} runs images: set [builder] kind = \"docker\" or \"kubernetes\""
            )));
        }
        if builder == "kubernetes"
            && self.builder.registry_user.is_some()
            && self.builder.registry_secret.is_none()
        {
            return Err(ConfigError::Unsupported(
                "[builder] kind = \"kubernetes\" with registry credentials: the build pods push too; set [builder] registry_secret to a Secret of type kubernetes.io/dockerconfigjson with them".into(),
            ));
        }
        if builder == "kubernetes" && kind != "kubernetes" {
            return Err(ConfigError::Unsupported(
                "[builder] kind = \"kubernetes\" runs its builds in the cluster of the orchestrator: set [orchestrator] kind = \"kubernetes\" too".into(),
            ));
        }
        if kind == "kubernetes" && self.lambda_registry.is_none() {
            return Err(ConfigError::Unsupported(
                "[orchestrator] kind = \"kubernetes\" pulls images from a registry: set lambda_registry"
                    .into(),
            ));
        }
        if let Err(why) = lambda_core::params::check_namespace(&self.orchestrator.namespace) {
            return Err(ConfigError::Invalid {
                origin: String::new(),
                message: format!(
                    "[orchestrator] namespace = {:?} {why}",
                    self.orchestrator.namespace
                ),
            });
        }
        Ok(())
    }

    /// The lock file of the Docker orchestrator's instance on its engine, when it runs Docker:
    /// under `$XDG_RUNTIME_DIR` (else `$TMPDIR`, else `/tmp`), named by the engine
    /// (`[builder] docker_host`, else `DOCKER_HOST`, else the default socket) and the instance.
    pub fn instance_lock_path(&self, env: &HashMap<String, String>) -> Option<PathBuf> {
        if self.orchestrator.kind != "docker" {
            return None;
        }
        let engine = self.docker_host(env);
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let dir = env
            .get("XDG_RUNTIME_DIR")
            .or_else(|| env.get("TMPDIR"))
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        Some(dir.join("luna-lambda").join(format!(
            "docker-{}-{}.lock",
            safe(&engine),
            safe(&self.orchestrator.instance)
        )))
    }

    /// Takes what a server on `data_dir` holds for its whole life: the folder's lock, and the
    /// Docker instance's ([`Self::instance_lock_path`]) when it runs Docker.
    pub fn lock(
        &self,
        data_dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<crate::server::lock::ServerLock, crate::server::lock::LockError> {
        let instance = self.instance_lock_path(env);
        crate::server::lock::lock_server(
            data_dir,
            instance
                .as_deref()
                .map(|p| (p, self.orchestrator.instance.as_str())),
        )
    }

    /// The server's TLS, its files read, when `[tls]` is set.
    pub fn tls(&self) -> Result<Option<std::sync::Arc<crate::server::tls::Tls>>, ConfigError> {
        let files = self
            .tls
            .cert
            .clone()
            .zip(self.tls.key.clone())
            .map(|(cert, key)| crate::server::tls::TlsFiles { cert, key });
        files.map(crate::server::tls::Tls::load).transpose()
    }

    /// The data folder: `[local] data_dir`, else `default`.
    pub fn data_dir(&self, default: &Path) -> PathBuf {
        self.local
            .data_dir
            .clone()
            .unwrap_or_else(|| default.to_path_buf())
    }

    /// The storage URL in force.
    pub fn storage_url(&self, data_dir: &Path) -> String {
        if let Some(u) = &self.storage.url {
            return u.clone();
        }
        if let Some(b) = &self.s3.bucket {
            return format!("s3://{b}");
        }
        format!("file://{}", data_dir.join("store").display())
    }

    /// The configuration as it may be logged: secrets replaced by `***`.
    pub fn summary(&self, data_dir: &Path) -> String {
        let secret = |s: &Option<String>| if s.is_some() { "***" } else { "(none)" };
        format!(
            "listen={} data_dir={} storage={} s3.endpoint={} s3.access_key_id={} s3.secret_access_key={} builder={} (python={}, uv={}, concurrency={}, timeout={}s) orchestrator={} limits: archive<={}B uncompressed<={}B entries<={} ratio<={} proxy_timeout={}s registry={}",
            self.listen,
            data_dir.display(),
            self.storage_url(data_dir),
            self.s3.endpoint.as_deref().unwrap_or("(aws)"),
            self.s3.access_key_id.as_deref().unwrap_or("(none)"),
            secret(&self.s3.secret_access_key),
            self.builder.kind,
            self.builder.python,
            self.builder.uv,
            self.builder.concurrency,
            self.builder.timeout_secs,
            match self.orchestrator.kind.as_str() {
                "kubernetes" => format!(
                    "kubernetes (namespace={}, kubeconfig={}, context={}, in_cluster={}, instance={}, endpoint={})",
                    self.orchestrator.namespace,
                    self.orchestrator
                        .kubeconfig
                        .as_deref()
                        .map_or("(default)".into(), |p| p.display().to_string()),
                    self.orchestrator.context.as_deref().unwrap_or("(current)"),
                    self.orchestrator.in_cluster,
                    self.orchestrator.instance,
                    self.orchestrator.endpoint,
                ),
                "docker" => format!("docker (instance={})", self.orchestrator.instance),
                other => other.to_owned(),
            },
            self.limits.max_archive_bytes,
            self.limits.max_uncompressed_bytes,
            self.limits.max_entries,
            self.limits.max_ratio,
            self.limits.proxy_timeout_secs,
            self.lambda_registry.as_deref().unwrap_or("(none)"),
        )
    }

    /// Whether the server listens on loopback only.
    pub fn on_loopback(&self) -> bool {
        self.listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }

    /// The `[auth]` the server runs with: tokens on or off (off only on loopback, unless set
    /// explicitly), and the bootstrap admin token from `env` or its file.
    pub fn auth_settings(
        &self,
        env: &HashMap<String, String>,
    ) -> Result<crate::http::auth::AuthSettings, ConfigError> {
        let loopback = self.on_loopback();
        let enabled = match self.auth.mode.as_deref() {
            Some("token") => true,
            Some(_) => false,
            None if loopback => false,
            None => {
                return Err(ConfigError::Unsupported(format!(
                    "the server would listen on {} (not loopback) with no authentication: anyone who reaches it could deploy and run code. Set [auth] mode = \"token\" (LUNA_LAMBDA_AUTH_MODE=token) with a bootstrap admin token in {ADMIN_TOKEN_ENV}, or [auth] mode = \"none\" to run it open on purpose",
                    self.listen
                )));
            }
        };
        let admin_token = match (env.get(ADMIN_TOKEN_ENV), &self.auth.admin_token_file) {
            (Some(t), _) => Some(t.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        ConfigError::Startup(format!(
                            "[auth] admin_token_file {}: {e}",
                            path.display()
                        ))
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if let Some(t) = &admin_token
            && t.len() < crate::http::auth::MIN_ADMIN_TOKEN_LEN
        {
            return Err(ConfigError::Invalid {
                origin: String::new(),
                message: format!(
                    "the bootstrap admin token must be at least {} characters (it has {})",
                    crate::http::auth::MIN_ADMIN_TOKEN_LEN,
                    t.len()
                ),
            });
        }
        let open_warning = (!enabled && !loopback).then(|| {
            format!(
                "authentication is off ([auth] mode = \"none\") and the server listens on {}: anyone who reaches it can deploy and run code",
                self.listen
            )
        });
        Ok(crate::http::auth::AuthSettings {
            enabled,
            admin_token,
            rate_per_second: self.auth.rate_per_second,
            open_warning,
        })
    }

    /// The settings of the HTTP edge: `[auth]` (see [`Self::auth_settings`]), the upload limits
    /// and the proxy's connection pool.
    pub fn edge_settings(
        &self,
        env: &HashMap<String, String>,
    ) -> Result<crate::http::api::EdgeSettings, ConfigError> {
        Ok(crate::http::api::EdgeSettings {
            auth: self.auth_settings(env)?,
            max_concurrent_uploads: self.limits.max_concurrent_uploads.max(1),
            upload_timeout: Duration::from_secs(self.limits.upload_timeout_secs.max(1)),
            proxy_pool: crate::proxy::upstream::PoolConfig {
                max_idle_per_replica: self.limits.proxy_max_idle_per_replica,
                idle_timeout: Duration::from_secs(self.limits.proxy_idle_timeout_secs),
                connect_timeout: Duration::from_secs(self.limits.proxy_connect_timeout_secs),
            },
        })
    }

    /// Builds the platform with its adapters. `env` is the binary's environment: it locates
    /// `uv` on `PATH` (`[builder] uv = "auto"`) and gives replicas their base environment.
    pub async fn platform(
        &self,
        data_dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Platform, ConfigError> {
        let storage = self.storage(data_dir).await?;
        let builder = self.image_builder(data_dir, env).await?;
        let orchestrator = self.orchestrator(data_dir, env).await?;
        Ok(Platform::new(
            self.platform_config(),
            storage,
            builder,
            orchestrator,
        ))
    }

    /// The engine the Docker builder and orchestrator use: `[builder] docker_host`, else
    /// `DOCKER_HOST`, else the default socket.
    fn docker_host(&self, env: &HashMap<String, String>) -> String {
        self.builder
            .docker_host
            .clone()
            .or_else(|| env.get("DOCKER_HOST").cloned())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
    }

    /// The store, opened and answering.
    async fn storage(&self, data_dir: &Path) -> Result<lambda_storage::Storage, ConfigError> {
        let mut storage_cfg = StorageConfig::new(self.storage_url(data_dir));
        storage_cfg.prefix = self.s3.prefix.clone();
        storage_cfg.s3 = S3Options {
            endpoint: self.s3.endpoint.clone(),
            region: self.s3.region.clone(),
            access_key_id: self.s3.access_key_id.clone(),
            secret_access_key: self.s3.secret_access_key.clone(),
            allow_http: self.s3.allow_http,
            conditional_put: self.s3.conditional_put,
            ..S3Options::default()
        };
        let storage =
            lambda_storage::open(&storage_cfg).map_err(|e| ConfigError::Startup(e.to_string()))?;
        if storage.cas_mode() == lambda_storage::CasMode::Serialized {
            tracing::info!(
                storage = storage.backend(),
                "this store serialises writes in this process: run one server process on it"
            );
        }
        storage
            .healthcheck()
            .await
            .map_err(|e| ConfigError::Startup(e.to_string()))?;
        Ok(storage)
    }

    /// The image builder of `[builder] kind`.
    async fn image_builder(
        &self,
        data_dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Arc<dyn lambda_build::ImageBuilder>, ConfigError> {
        let docker_host = self.docker_host(env);
        Ok(match self.builder.kind.as_str() {
            "docker" => Arc::new(
                lambda_build::DockerBuilder::connect(lambda_build::DockerBuilderConfig {
                    docker_host: docker_host.clone(),
                    registry: self.lambda_registry.clone(),
                    base_tag: self.builder.base_tag.clone(),
                    network_mode: self.builder.network_mode.clone(),
                    pip_ca_bundle: self.builder.pip_ca_bundle.clone(),
                    pip_index_url: self.builder.pip_index_url.clone(),
                    registry_auth: self
                        .builder
                        .registry_user
                        .clone()
                        .zip(self.builder.registry_password.clone()),
                    insecure_registries: self.lambda_insecure_registries.clone(),
                })
                .map_err(|e| ConfigError::Startup(e.to_string()))?,
            ),
            "kubernetes" => Arc::new(self.kube_builder().await?),
            _ => {
                let uv = match self.builder.uv.as_str() {
                    "off" => None,
                    "auto" => find_on_path("uv", env),
                    path => Some(PathBuf::from(path)),
                };
                // `auto` without uv on PATH: the builder installs uv once for the data folder.
                let provision_uv = self.builder.uv == "auto" && uv.is_none();
                Arc::new(LocalBuilder::new(LocalBuilderConfig {
                    data_dir: data_dir.join("builds"),
                    python: PathBuf::from(&self.builder.python),
                    uv,
                    pip_args: self.builder.pip_args.clone(),
                    provision_uv,
                }))
            }
        })
    }

    /// The API server of `[orchestrator]`: in cluster, a kubeconfig, or kube-rs's inference.
    fn kube_credentials(&self) -> lambda_deploy::KubeCredentials {
        let o = &self.orchestrator;
        if o.in_cluster {
            lambda_deploy::KubeCredentials::InCluster
        } else if o.kubeconfig.is_some() || o.context.is_some() {
            lambda_deploy::KubeCredentials::Kubeconfig {
                path: o.kubeconfig.clone(),
                context: o.context.clone(),
            }
        } else {
            lambda_deploy::KubeCredentials::Infer
        }
    }

    /// The Kubernetes builder: build Jobs in `[orchestrator] namespace`, images assembled in
    /// `lambda_registry`.
    async fn kube_builder(&self) -> Result<lambda_build::KubeBuilder, ConfigError> {
        let client = lambda_deploy::kube::client(&self.kube_credentials())
            .await
            .map_err(|e| ConfigError::Startup(e.to_string()))?;
        let job_resources = match &self.builder.job_resources {
            Some(r) => Some(serde_json::to_value(r).map_err(|e| ConfigError::Invalid {
                origin: String::new(),
                message: format!("[builder] job_resources: {e}"),
            })?),
            None => None,
        };
        Ok(lambda_build::KubeBuilder::new(
            client,
            lambda_build::KubeBuilderConfig {
                registry: self.lambda_registry.clone().unwrap_or_default(),
                base_tag: self.builder.base_tag.clone(),
                namespace: self.orchestrator.namespace.clone(),
                instance: self.orchestrator.instance.clone(),
                insecure_registries: self.lambda_insecure_registries.clone(),
                registry_auth: self
                    .builder
                    .registry_user
                    .clone()
                    .zip(self.builder.registry_password.clone()),
                pip_ca_bundle: self.builder.pip_ca_bundle.clone(),
                pip_index_url: self.builder.pip_index_url.clone(),
                job_resources,
                registry_secret: self.builder.registry_secret.clone(),
                node_selector: Default::default(),
            },
        ))
    }

    /// The orchestrator of `[orchestrator] kind`, opened.
    async fn orchestrator(
        &self,
        data_dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Arc<dyn lambda_deploy::Orchestrator>, ConfigError> {
        let docker_host = self.docker_host(env);
        Ok(match self.orchestrator.kind.as_str() {
            "docker" => {
                let mut dcfg = lambda_deploy::DockerOrchestratorConfig::new(docker_host);
                dcfg.start_timeout = Duration::from_secs(self.orchestrator.start_timeout_secs);
                dcfg.stop_grace = Duration::from_secs(self.orchestrator.stop_grace_secs);
                dcfg.instance = self.orchestrator.instance.clone();
                Arc::new(
                    lambda_deploy::DockerOrchestrator::open(dcfg)
                        .await
                        .map_err(|e| ConfigError::Startup(e.to_string()))?,
                )
            }
            "kubernetes" => {
                let o = &self.orchestrator;
                let kcfg = lambda_deploy::KubeOrchestratorConfig {
                    credentials: self.kube_credentials(),
                    namespaces: vec![o.namespace.clone()],
                    instance: o.instance.clone(),
                    endpoint: o.endpoint.clone(),
                    image_pull_secrets: o.image_pull_secrets.clone(),
                    start_timeout: Duration::from_secs(o.start_timeout_secs),
                    stop_timeout: Duration::from_secs(o.stop_grace_secs + 30),
                };
                lambda_deploy::KubeOrchestrator::open(kcfg)
                    .await
                    .map_err(|e| ConfigError::Startup(e.to_string()))?
            }
            _ => {
                let mut ocfg = LocalOrchestratorConfig::new(data_dir.to_path_buf());
                ocfg.start_timeout = Duration::from_secs(self.orchestrator.start_timeout_secs);
                ocfg.stop_grace = Duration::from_secs(self.orchestrator.stop_grace_secs);
                ocfg.zygote = self.orchestrator.zygote;
                ocfg.base_env = [
                    "PATH",
                    "HOME",
                    "LANG",
                    "LC_ALL",
                    "TZ",
                    "SSL_CERT_FILE",
                    "SSL_CERT_DIR",
                    "TMPDIR",
                ]
                .iter()
                .filter_map(|k| env.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect();
                Arc::new(
                    LocalOrchestrator::open(ocfg)
                        .await
                        .map_err(|e| ConfigError::Startup(e.to_string()))?,
                )
            }
        })
    }

    /// The platform's settings.
    fn platform_config(&self) -> PlatformConfig {
        PlatformConfig {
            limits: Limits {
                max_archive_bytes: self.limits.max_archive_bytes,
                max_uncompressed_bytes: self.limits.max_uncompressed_bytes,
                max_entries: self.limits.max_entries,
                max_ratio: self.limits.max_ratio,
                ratio_min_bytes: self.limits.ratio_min_bytes,
                max_source_bytes: self.limits.max_source_bytes,
            },
            build_concurrency: self.builder.concurrency.max(1),
            build_timeout: Duration::from_secs(self.builder.timeout_secs),
            proxy_timeout: Duration::from_secs(self.limits.proxy_timeout_secs),
            keep_versions: self.retention.keep_versions.max(1),
            audit_retention: (self.retention.audit_days > 0)
                .then(|| Duration::from_secs(self.retention.audit_days * 86_400)),
            gc_interval: (self.gc.interval_secs > 0)
                .then(|| Duration::from_secs(self.gc.interval_secs)),
            env_cache_max_bytes: self.builder.env_cache_max_bytes,
            reconcile_interval: Duration::from_secs(self.reconcile_interval_secs.max(1)),
            orphan_grace: Duration::from_secs(self.orphan_grace_secs),
            base_os: self.builder.base_os,
            tasks: crate::service::tasks::TaskSettings {
                concurrency_per_replica: self.tasks.concurrency_per_replica,
                subtask_timeout: Duration::from_secs(self.tasks.subtask_timeout_secs.max(1)),
                max_attempts: self.tasks.max_attempts.max(1),
            },
            max_lambdas_per_account: self.limits.max_lambdas_per_account,
            idle: crate::service::platform::IdleSettings {
                switch_off_after: (self.idle.switch_off_after_secs > 0)
                    .then(|| Duration::from_secs(self.idle.switch_off_after_secs)),
                check_interval: Duration::from_secs(self.idle.check_interval_secs.max(1)),
                last_usage_flush: Duration::from_secs(self.idle.last_usage_flush_secs.max(1)),
            },
            scale: crate::service::platform::ScaleSettings {
                max_waiting: self.scale.max_waiting.max(1),
                check_interval: Duration::from_millis(self.scale.check_interval_ms.max(10)),
                scale_down_after: Duration::from_secs(self.scale.scale_down_after_secs),
            },
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

fn find_on_path(name: &str, env: &HashMap<String, String>) -> Option<PathBuf> {
    env.get("PATH")?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_file_and_environment_layer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:6000\"\n[limits]\nmax_entries = 50\n[s3]\nendpoint = \"http://x\"\n").unwrap();
        let c = Config::load(
            Some(&f),
            &env(&[
                ("LUNA_LAMBDA_LIMITS_MAX_ENTRIES", "70"),
                ("LUNA_LAMBDA_S3_ALLOW_HTTP", "true"),
                ("LAMBDA_INSECURE_REGISTRIES", "a:5000, b:5000"),
                ("UNRELATED", "x"),
                ("LUNA_LAMBDA_LOG", "debug"),
                ("LUNA_LAMBDA_URL", "http://elsewhere"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:6000");
        assert_eq!(
            c.limits.max_entries, 70,
            "the environment wins over the file"
        );
        assert!(c.s3.allow_http);
        assert_eq!(c.lambda_insecure_registries, vec!["a:5000", "b:5000"]);
        assert_eq!(c.limits.max_ratio, 200, "defaults fill the rest");
    }

    #[test]
    fn every_section_takes_environment_overrides() {
        let c = Config::load(
            None,
            &env(&[
                ("LUNA_LAMBDA_RETENTION_KEEP_VERSIONS", "2"),
                ("LUNA_LAMBDA_GC_INTERVAL_SECS", "0"),
                ("LUNA_LAMBDA_BUILDER_ENV_CACHE_MAX_BYTES", "1000"),
                ("LUNA_LAMBDA_ORPHAN_GRACE_SECS", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(c.retention.keep_versions, 2);
        assert_eq!(c.gc.interval_secs, 0);
        assert_eq!(c.builder.env_cache_max_bytes, 1000);
        assert_eq!(c.orphan_grace_secs, 60);
        assert_eq!(Config::default().gc.interval_secs, 3600);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[limits]\nmax_entreis = 5\n").unwrap();
        let e = Config::load(Some(&f), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_entreis"), "{e}");
        let e = Config::load(None, &env(&[("LUNA_LAMBDA_NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = Config::load(None, &env(&[("LUNA_LAMBDA_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere"), "{e}");
        let e = Config::load(
            None,
            &env(&[("LUNA_LAMBDA_ORCHESTRATOR_KIND", "kubernetes")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[builder] kind = \"docker\""), "{e}");
        let e = Config::load(
            None,
            &env(&[
                ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "kubernetes"),
                ("LUNA_LAMBDA_BUILDER_KIND", "docker"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("set lambda_registry"), "{e}");
        let e = Config::load(
            None,
            &env(&[
                ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "kubernetes"),
                ("LUNA_LAMBDA_BUILDER_KIND", "docker"),
                ("LAMBDA_REGISTRY", "reg.example:5000"),
                ("LUNA_LAMBDA_ORCHESTRATOR_NAMESPACE", "kube-system"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kube-system"), "{e}");
        let c = Config::load(
            None,
            &env(&[
                ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "kubernetes"),
                ("LUNA_LAMBDA_BUILDER_KIND", "docker"),
                ("LAMBDA_REGISTRY", "reg.example:5000"),
                ("LUNA_LAMBDA_ORCHESTRATOR_NAMESPACE", "lambdas"),
            ]),
        )
        .unwrap();
        assert_eq!(c.orchestrator.namespace, "lambdas");
        // The Kubernetes builder runs in the orchestrator's cluster; its Job's resources.
        let e = Config::load(
            None,
            &env(&[
                ("LUNA_LAMBDA_BUILDER_KIND", "kubernetes"),
                ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "docker"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("set [orchestrator] kind = \"kubernetes\" too"),
            "{e}"
        );
        let e = Config::load(None, &env(&[("LUNA_LAMBDA_BUILDER_KIND", "kaniko")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"local\", \"docker\" or \"kubernetes\""), "{e}");
        std::fs::write(
            &f,
            "lambda_registry = \"reg.example:5000\"\n[builder]\nkind = \"kubernetes\"\n\
             job_resources = { limits = { memory = \"2Gi\" } }\n[orchestrator]\nkind = \"kubernetes\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), &HashMap::new()).unwrap();
        assert_eq!(c.builder.job_resources.unwrap()["limits"]["memory"], "2Gi");
        // Build pods push too: their credentials come from a Secret, never from the server.
        let e = Config::load(
            Some(&f),
            &env(&[
                ("LUNA_LAMBDA_BUILDER_REGISTRY_USER", "u"),
                ("LUNA_LAMBDA_BUILDER_REGISTRY_PASSWORD", "p"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("registry_secret"), "{e}");
    }

    #[test]
    fn the_summary_hides_secrets() {
        let c = Config::load(
            None,
            &env(&[
                ("LUNA_LAMBDA_S3_SECRET_ACCESS_KEY", "topsecret"),
                ("LUNA_LAMBDA_S3_BUCKET", "b"),
            ]),
        )
        .unwrap();
        let s = c.summary(Path::new("/data"));
        assert!(
            !s.contains("topsecret") && s.contains("***") && s.contains("s3://b"),
            "{s}"
        );
    }
}
