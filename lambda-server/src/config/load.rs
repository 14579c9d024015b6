//! Reading the configuration: the file, the environment layered over it, and the checks.

use super::{Config, ConfigError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
