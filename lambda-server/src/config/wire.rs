//! Building what the configuration names: the storage, builder and orchestrator adapters, the
//! service, the edge's settings, TLS and the locks.

use super::{ADMIN_TOKEN_ENV, Config, ConfigError};
use crate::service::platform::{Platform, PlatformConfig};
use lambda_build::{LocalBuilder, LocalBuilderConfig};
use lambda_core::Limits;
use lambda_deploy::{LocalOrchestrator, LocalOrchestratorConfig};
use lambda_storage::{S3Options, StorageConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

impl Config {
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
        files
            .map(|f| crate::server::tls::Tls::load(f).map_err(ConfigError::Startup))
            .transpose()
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

    /// Everything a server on `data_dir` runs with ([`crate::server::start`]): the folder's lock
    /// (taken first, so that a second server on the folder changes nothing), TLS, the edge's
    /// settings and the platform.
    pub async fn setup(
        &self,
        data_dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<crate::server::Setup, ConfigError> {
        let lock = self
            .lock(data_dir, env)
            .map_err(|e| ConfigError::Startup(e.to_string()))?;
        let tls = self.tls()?;
        let edge = self.edge_settings(env)?;
        let platform = self.platform(data_dir, env).await?;
        Ok(crate::server::Setup {
            platform,
            edge,
            tls,
            lock,
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
            crate::proxy::ReplicaClient::new(),
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

fn find_on_path(name: &str, env: &HashMap<String, String>) -> Option<PathBuf> {
    env.get("PATH")?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
