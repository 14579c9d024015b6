//! Lambda parameters (the `parameters` part of a create/update request) and their rules.
//!
//! [`Parameters::parse`] turns JSON into parameters and checks every rule at once, so the caller
//! gets one [`ValidationReport`] with every problem, each with its parameter path.

use crate::docker_commands;
use crate::problem::{Problem, ValidationReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest accepted `description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most worker processes inside one replica.
pub const MAX_WORKERS: u32 = 64;

/// The base image a lambda is built from.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum BaseImage {
    /// `lpa-lambda-base`: Python and the runtime.
    #[default]
    #[serde(rename = "lpa-lambda-base")]
    Base,
    /// `lpa-lambda-base-fsdk`: the same plus the face SDK.
    #[serde(rename = "lpa-lambda-base-fsdk")]
    Fsdk,
}

impl BaseImage {
    /// The image repository name.
    pub fn image_name(&self) -> &'static str {
        match self {
            Self::Base => "lpa-lambda-base",
            Self::Fsdk => "lpa-lambda-base-fsdk",
        }
    }
}

/// Everything a user can set about a lambda besides its code.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// Free text, at most [`MAX_DESCRIPTION_CHARS`] characters.
    #[serde(default)]
    pub description: String,
    /// Base image to build from.
    #[serde(default)]
    pub base_image: BaseImage,
    /// Extra Dockerfile instructions, one per entry (see [`crate::docker_commands`]).
    #[serde(default)]
    pub user_docker_commands: Vec<String>,
    /// JSON object handed to the lambda as `request.config.userConfig`.
    #[serde(default)]
    pub user_config: Option<serde_json::Value>,
    /// Worker processes per replica (1..=64).
    #[serde(default = "one")]
    pub workers: u32,
    /// Extra environment variables for the lambda.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Where and how the lambda runs.
    #[serde(default)]
    pub deploy_parameters: DeployParameters,
    /// Never switched off by the inactivity sweep (`[idle] switch_off_after_secs`), as the
    /// original's `eternal` flag.
    #[serde(default)]
    pub eternal: bool,
}

impl Default for Parameters {
    fn default() -> Self {
        Self {
            description: String::new(),
            base_image: BaseImage::default(),
            user_docker_commands: Vec::new(),
            user_config: None,
            workers: 1,
            env: BTreeMap::new(),
            deploy_parameters: DeployParameters::default(),
            eternal: false,
        }
    }
}

fn one() -> u32 {
    1
}

fn default_namespace() -> String {
    "default".to_owned()
}

/// Deployment parameters (`deploy_parameters`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployParameters {
    /// Replicas (≥ 1).
    #[serde(default = "one")]
    pub pod_count: u32,
    /// Kubernetes namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Node labels the replicas must run on (Kubernetes nodeSelector).
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Request one GPU per replica.
    #[serde(default)]
    pub enable_gpu: bool,
    /// CPU and memory requests and limits.
    #[serde(default)]
    pub resources: Resources,
    /// How the replica count follows the load (see [`Scale`]).
    #[serde(default)]
    pub scale: Scale,
}

impl Default for DeployParameters {
    fn default() -> Self {
        Self {
            pod_count: 1,
            namespace: default_namespace(),
            selector: BTreeMap::new(),
            enable_gpu: false,
            resources: Resources::default(),
            scale: Scale::default(),
        }
    }
}

/// Most replicas a lambda may scale to (`max_replicas`).
pub const MAX_REPLICAS: u32 = 256;
/// Longest `idle_timeout_secs` (one week).
pub const MAX_IDLE_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// `deploy_parameters.scale`: the replica count follows the load between `min_replicas` and
/// `max_replicas` (both default to `pod_count`, so a lambda that sets nothing keeps a fixed
/// count); with `min_replicas = 0` the last replica stops after `idle_timeout_secs` without a
/// request, and the next request wakes the lambda.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Fewest replicas (0: scale to zero when idle); default `pod_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// Most replicas; default `pod_count` (or `min_replicas` when that is larger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
    /// Requests in flight per replica above which a replica is added (default 10).
    #[serde(default = "default_target_concurrency")]
    pub target_concurrency: u32,
    /// With `min_replicas = 0`: seconds without a request before the last replica stops
    /// (default 300).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            min_replicas: None,
            max_replicas: None,
            target_concurrency: default_target_concurrency(),
            idle_timeout_secs: default_idle_timeout(),
        }
    }
}

fn default_target_concurrency() -> u32 {
    10
}

fn default_idle_timeout() -> u64 {
    300
}

/// The replica bounds of a lambda, with the defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaBounds {
    /// Fewest replicas (0: may idle).
    pub min: u32,
    /// Most replicas (≥ 1).
    pub max: u32,
}

impl ReplicaBounds {
    /// Whether the count may change with the load at all.
    pub fn scales(self) -> bool {
        self.min != self.max
    }

    /// The count to start a deployment with, given the count running now (`None`: none yet):
    /// at least one, so that a new version is seen to start.
    pub fn start_with(self, current: Option<u32>) -> u32 {
        current
            .unwrap_or(self.min)
            .clamp(self.min.max(1), self.max.max(1))
    }
}

impl DeployParameters {
    /// `min_replicas` and `max_replicas` with their defaults; an `eternal` lambda never
    /// scales to zero.
    pub fn replica_bounds(&self, eternal: bool) -> ReplicaBounds {
        let min = self.scale.min_replicas.unwrap_or(self.pod_count);
        let max = self.scale.max_replicas.unwrap_or(self.pod_count.max(min));
        let min = if eternal { min.max(1) } else { min };
        ReplicaBounds {
            min,
            max: max.max(min).max(1),
        }
    }
}

/// CPU and memory requests and limits, in Kubernetes quantity syntax (`500m`, `2`, `256Mi`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU request, e.g. `250m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    /// CPU limit, e.g. `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    /// Memory request, e.g. `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    /// Memory limit, e.g. `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
}

impl Parameters {
    /// Parses parameters from JSON and checks every rule. An empty body means the defaults.
    pub fn parse(json: &[u8]) -> Result<Parameters, ValidationReport> {
        Self::parse_for(json, None)
    }

    /// [`Parameters::parse`], also checking that `user_docker_commands` use the package manager
    /// of the base images' OS family, when it is given.
    pub fn parse_for(
        json: &[u8],
        os: Option<docker_commands::BaseOs>,
    ) -> Result<Parameters, ValidationReport> {
        let mut report = ValidationReport::default();
        if json.iter().all(u8::is_ascii_whitespace) {
            return Ok(Parameters::default());
        }
        let params: Parameters = match serde_json::from_slice(json) {
            Ok(p) => p,
            Err(e) => {
                report.push(
                    Problem::error(
                        "parameters.invalid",
                        "parameters",
                        format!("parameters are not valid: {e}"),
                    )
                    .at(e.line() as u32, e.column() as u32),
                );
                return Err(report);
            }
        };
        let mut checked = params.check();
        if let Some(os) = os {
            checked
                .problems
                .extend(docker_commands::check_package_managers(
                    &params.user_docker_commands,
                    os,
                ));
        }
        if checked.is_ok() {
            Ok(params)
        } else {
            Err(checked)
        }
    }

    /// Checks every rule; returns all problems (empty when valid).
    pub fn check(&self) -> ValidationReport {
        let mut r = ValidationReport::default();
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            r.push(Problem::error(
                "parameters.description",
                "description",
                format!("description is longer than {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            r.push(Problem::error(
                "parameters.workers",
                "workers",
                format!(
                    "workers must be between 1 and {MAX_WORKERS}, got {}",
                    self.workers
                ),
            ));
        }
        if let Some(cfg) = &self.user_config
            && !(cfg.is_object() || cfg.is_null())
        {
            r.push(Problem::error(
                "parameters.user_config",
                "user_config",
                "user_config must be a JSON object (or null)",
            ));
        }
        for (k, v) in &self.env {
            let path = format!("env.{k}");
            let valid = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                r.push(Problem::error(
                    "parameters.env",
                    path,
                    format!("environment variable name {k:?} must match [A-Za-z_][A-Za-z0-9_]*"),
                ));
            } else if k.starts_with("LAMBDA_") {
                r.push(Problem::error(
                    "parameters.env",
                    path,
                    format!("environment variable {k} uses the reserved prefix LAMBDA_, which the platform sets"),
                ));
            } else if v.contains('\0') {
                r.push(Problem::error(
                    "parameters.env",
                    path,
                    format!("the value of {k} contains a NUL byte"),
                ));
            }
        }
        r.problems
            .extend(docker_commands::check(&self.user_docker_commands));
        r.extend(self.deploy_parameters.check());
        r
    }
}

impl DeployParameters {
    /// Checks every rule of `deploy_parameters`.
    pub fn check(&self) -> ValidationReport {
        let mut r = ValidationReport::default();
        if self.pod_count < 1 {
            r.push(Problem::error(
                "parameters.pod_count",
                "deploy_parameters.pod_count",
                "pod_count must be at least 1",
            ));
        }
        if let Err(why) = check_namespace(&self.namespace) {
            r.push(Problem::error(
                "parameters.namespace",
                "deploy_parameters.namespace",
                format!("namespace {:?} {why}", self.namespace),
            ));
        }
        for (k, v) in &self.selector {
            let path = format!("deploy_parameters.selector.{k}");
            if let Err(why) = check_label_key(k) {
                r.push(Problem::error(
                    "parameters.selector",
                    path.clone(),
                    format!("label key {k:?} {why}"),
                ));
            }
            if let Err(why) = check_label_value(v) {
                r.push(Problem::error(
                    "parameters.selector",
                    path,
                    format!("label value {v:?} {why}"),
                ));
            }
        }
        r.extend(self.check_scale());
        let res = &self.resources;
        let fields = [
            ("cpu_request", &res.cpu_request),
            ("cpu_limit", &res.cpu_limit),
            ("memory_request", &res.memory_request),
            ("memory_limit", &res.memory_limit),
        ];
        let mut parsed = BTreeMap::new();
        for (name, value) in fields {
            if let Some(v) = value {
                match parse_quantity(v) {
                    Ok(q) if q > 0.0 => {
                        parsed.insert(name, q);
                    }
                    Ok(_) => r.push(Problem::error(
                        "parameters.resources",
                        format!("deploy_parameters.resources.{name}"),
                        format!("{name} must be greater than zero, got {v:?}"),
                    )),
                    Err(why) => r.push(Problem::error(
                        "parameters.resources",
                        format!("deploy_parameters.resources.{name}"),
                        format!("{name} {v:?} {why}"),
                    )),
                }
            }
        }
        for (req, lim) in [
            ("cpu_request", "cpu_limit"),
            ("memory_request", "memory_limit"),
        ] {
            if let (Some(a), Some(b)) = (parsed.get(req), parsed.get(lim))
                && a > b
            {
                r.push(Problem::error(
                    "parameters.resources",
                    format!("deploy_parameters.resources.{req}"),
                    format!("{req} is larger than {lim}; a request cannot exceed its limit"),
                ));
            }
        }
        r
    }
}

impl DeployParameters {
    fn check_scale(&self) -> ValidationReport {
        let mut r = ValidationReport::default();
        let s = &self.scale;
        let problem = |field: &str, msg: String| {
            Problem::error(
                "parameters.scale",
                format!("deploy_parameters.scale.{field}"),
                msg,
            )
        };
        let min = s.min_replicas.unwrap_or(self.pod_count);
        let max = s.max_replicas.unwrap_or(self.pod_count.max(min));
        if !(1..=MAX_REPLICAS).contains(&max) {
            r.push(problem(
                "max_replicas",
                format!("max_replicas must be between 1 and {MAX_REPLICAS}, got {max}"),
            ));
        } else if min > max {
            r.push(problem(
                "min_replicas",
                format!("min_replicas ({min}) is larger than max_replicas ({max})"),
            ));
        }
        if s.target_concurrency < 1 {
            r.push(problem(
                "target_concurrency",
                "target_concurrency must be at least 1".to_owned(),
            ));
        }
        if !(1..=MAX_IDLE_TIMEOUT_SECS).contains(&s.idle_timeout_secs) {
            r.push(problem(
                "idle_timeout_secs",
                format!(
                    "idle_timeout_secs must be between 1 and {MAX_IDLE_TIMEOUT_SECS}, got {}",
                    s.idle_timeout_secs
                ),
            ));
        }
        r
    }
}

/// Namespace rule: 2–63 characters, lowercase alphanumerics and `-`, starting and ending with an
/// alphanumeric, and not `kube-*`.
pub fn check_namespace(ns: &str) -> Result<(), &'static str> {
    if !(2..=63).contains(&ns.len()) {
        return Err("must be 2 to 63 characters long");
    }
    if !ns
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may contain only lowercase letters, digits and '-'");
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !ns.starts_with(alnum) || !ns.ends_with(alnum) {
        return Err("must start and end with a letter or digit");
    }
    if ns.starts_with("kube-") {
        return Err("must not start with 'kube-' (reserved for Kubernetes itself)");
    }
    Ok(())
}

fn check_label_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must have a name part of 1 to 63 characters");
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if !name.starts_with(alnum) || !name.ends_with(alnum) {
        return Err("must begin and end with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may contain only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Kubernetes label key: optional DNS-subdomain prefix and `/`, then a name.
pub fn check_label_key(key: &str) -> Result<(), &'static str> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            let ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !p.starts_with('-')
                        && !p.ends_with('-')
                });
            if !ok {
                return Err(
                    "has an invalid prefix (a lowercase DNS subdomain of at most 253 characters)",
                );
            }
            name
        }
        None => key,
    };
    check_label_name(name)
}

/// Kubernetes label value: empty, or a name of at most 63 characters.
pub fn check_label_value(v: &str) -> Result<(), &'static str> {
    if v.is_empty() {
        Ok(())
    } else {
        check_label_name(v)
    }
}

/// Parses a Kubernetes quantity (`100m`, `1.5`, `128Mi`, `1e3`, `2G`) to its value in base units.
pub fn parse_quantity(q: &str) -> Result<f64, &'static str> {
    const WHY: &str = "is not a Kubernetes quantity (examples: 500m, 2, 256Mi, 1Gi)";
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let digits = num.strip_prefix(['+', '-']).unwrap_or(num);
    if digits.is_empty()
        || digits == "."
        || digits.matches('.').count() > 1
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return Err(WHY);
    }
    let base: f64 = num.parse().map_err(|_| WHY)?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| WHY)?;
            10f64.powi(exp)
        }
        _ => return Err(WHY),
    };
    Ok(base * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(json: &str) -> Vec<(String, String)> {
        match Parameters::parse(json.as_bytes()) {
            Ok(_) => vec![],
            Err(r) => r.problems.into_iter().map(|p| (p.code, p.path)).collect(),
        }
    }

    #[test]
    fn defaults_and_empty_body() {
        let p = Parameters::parse(b"").unwrap();
        assert_eq!(p.deploy_parameters.namespace, "default");
        assert_eq!(p.deploy_parameters.pod_count, 1);
        assert_eq!(p.workers, 1);
        let p = Parameters::parse(b"{}").unwrap();
        assert_eq!(p, Parameters::default());
        assert!(!p.eternal);
    }

    #[test]
    fn eternal_is_a_flag() {
        assert!(Parameters::parse(br#"{"eternal": true}"#).unwrap().eternal);
        assert!(!codes(r#"{"eternal": "yes"}"#).is_empty());
    }

    #[test]
    fn scale_bounds_default_to_pod_count() {
        let p = Parameters::parse(br#"{"deploy_parameters": {"pod_count": 3}}"#).unwrap();
        let b = p.deploy_parameters.replica_bounds(false);
        assert_eq!((b.min, b.max, b.scales()), (3, 3, false));
        assert_eq!(b.start_with(None), 3);
        let p = Parameters::parse(
            br#"{"deploy_parameters": {"scale": {"min_replicas": 0, "max_replicas": 4, "idle_timeout_secs": 30}}}"#,
        )
        .unwrap();
        let b = p.deploy_parameters.replica_bounds(false);
        assert_eq!((b.min, b.max, b.scales()), (0, 4, true));
        // A deployment starts with at least one replica, and keeps a count in bounds.
        assert_eq!(b.start_with(None), 1);
        assert_eq!(b.start_with(Some(0)), 1);
        assert_eq!(b.start_with(Some(3)), 3);
        assert_eq!(b.start_with(Some(9)), 4);
        assert_eq!(p.deploy_parameters.scale.target_concurrency, 10);
        // An eternal lambda never idles.
        assert_eq!(p.deploy_parameters.replica_bounds(true).min, 1);
        // min above the pod_count raises the default max with it.
        let p =
            Parameters::parse(br#"{"deploy_parameters": {"scale": {"min_replicas": 2}}}"#).unwrap();
        let b = p.deploy_parameters.replica_bounds(false);
        assert_eq!((b.min, b.max), (2, 2));
    }

    #[test]
    fn bad_scale_parameters_name_their_field() {
        let path = |json: &str| -> Vec<String> {
            codes(json)
                .into_iter()
                .inspect(|(code, _)| assert_eq!(code, "parameters.scale"))
                .map(|(_, path)| path)
                .collect()
        };
        assert_eq!(
            path(r#"{"deploy_parameters": {"scale": {"min_replicas": 3, "max_replicas": 2}}}"#),
            ["deploy_parameters.scale.min_replicas"]
        );
        assert_eq!(
            path(r#"{"deploy_parameters": {"pod_count": 3, "scale": {"max_replicas": 2}}}"#),
            ["deploy_parameters.scale.min_replicas"]
        );
        assert_eq!(
            path(r#"{"deploy_parameters": {"scale": {"min_replicas": 0, "max_replicas": 0}}}"#),
            ["deploy_parameters.scale.max_replicas"]
        );
        assert_eq!(
            path(r#"{"deploy_parameters": {"scale": {"max_replicas": 100000}}}"#),
            ["deploy_parameters.scale.max_replicas"]
        );
        assert_eq!(
            path(
                r#"{"deploy_parameters": {"scale": {"target_concurrency": 0, "idle_timeout_secs": 0}}}"#
            ),
            [
                "deploy_parameters.scale.target_concurrency",
                "deploy_parameters.scale.idle_timeout_secs"
            ]
        );
        assert!(!codes(r#"{"deploy_parameters": {"scale": {"min": 1}}}"#).is_empty());
    }

    #[test]
    fn full_valid_parameters() {
        let p = Parameters::parse(
            br#"{"description":"d","base_image":"lpa-lambda-base-fsdk","user_docker_commands":["USER root","RUN apt-get update","USER luna"],
                "user_config":{"threshold":0.5},"workers":2,"env":{"MODE":"fast"},
                "deploy_parameters":{"pod_count":3,"namespace":"lambdas","selector":{"kubernetes.io/arch":"amd64","gpu":""},
                "enable_gpu":true,"resources":{"cpu_request":"250m","cpu_limit":"1","memory_request":"256Mi","memory_limit":"1Gi"}}}"#,
        )
        .unwrap();
        assert_eq!(p.base_image, BaseImage::Fsdk);
        assert_eq!(p.deploy_parameters.pod_count, 3);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let got = codes(
            r#"{"workers":0,"env":{"LAMBDA_PORT":"1","1x":"y"},"user_config":[1],
                "deploy_parameters":{"pod_count":0,"namespace":"kube-system","selector":{"-bad":"ok","k":"-v"},
                "resources":{"cpu_request":"2","cpu_limit":"1","memory_limit":"lots"}}}"#,
        );
        let paths: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
        for want in [
            "workers",
            "user_config",
            "env.LAMBDA_PORT",
            "env.1x",
            "deploy_parameters.pod_count",
            "deploy_parameters.namespace",
            "deploy_parameters.selector.-bad",
            "deploy_parameters.selector.k",
            "deploy_parameters.resources.memory_limit",
            "deploy_parameters.resources.cpu_request",
        ] {
            assert!(paths.contains(&want), "missing {want} in {got:?}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_json_are_refused() {
        assert_eq!(codes(r#"{"pod_count":2}"#)[0].0, "parameters.invalid");
        assert_eq!(
            codes(r#"{"base_image":"centos"}"#)[0].0,
            "parameters.invalid"
        );
        assert_eq!(codes("{not json")[0].0, "parameters.invalid");
    }

    #[test]
    fn namespace_rules() {
        for ok in ["default", "ab", "team-1", &"a".repeat(63)] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "-ab",
            "ab-",
            "Ab",
            "a_b",
            "kube-system",
            &"a".repeat(64),
        ] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m").unwrap(), 0.5);
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("1Gi").unwrap(), 1024f64.powi(3));
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert_eq!(parse_quantity(".5").unwrap(), 0.5);
        for bad in ["", "m", "1.2.3", "1X", "abc", "1 Gi", "."] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
