//! Test helpers: a platform on the embedded default in a temp folder, multipart bodies, and a
//! real server on a free port.
#![allow(dead_code, unreachable_pub)]

use lambda_build::{LocalBuilder, LocalBuilderConfig};
use lambda_deploy::{LocalOrchestrator, LocalOrchestratorConfig};
use lambda_server::{Platform, PlatformConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11";
pub const OTHER_ACCOUNT: &str = "00000000-0000-4000-8000-000000000001";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A setting of the real-infrastructure suites (panics with what to start when missing).
pub fn it_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the services LAMBDA_IT lists with scripts/infra/ and the base images with scripts/base-images/")
    })
}

/// Server settings for the Docker builder on the test engine, registry and base images.
pub fn docker_builder_vars() -> Vec<(String, String)> {
    [
        ("DOCKER_HOST", it_env("DOCKER_HOST")),
        ("LAMBDA_REGISTRY", it_env("LAMBDA_IT_REGISTRY")),
        ("LUNA_LAMBDA_BUILDER_KIND", "docker".into()),
        ("LUNA_LAMBDA_BUILDER_BASE_TAG", it_env("LAMBDA_IT_BASE_TAG")),
        (
            "LUNA_LAMBDA_BUILDER_PIP_CA_BUNDLE",
            std::env::var("SSL_CERT_FILE")
                .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn example_zip(name: &str) -> Vec<u8> {
    lambda_core::pack::pack_dir(&workspace().join("examples").join(name)).unwrap()
}

pub fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    lambda_core::pack::pack_files(
        files
            .iter()
            .map(|(n, d)| (n.to_string(), d.as_bytes().to_vec()))
            .collect(),
    )
}

/// A platform on the embedded default under `dir` (file store, local builds, local processes).
/// `shared_envs` reuses the test suite's env cache (fast); otherwise envs are made afresh.
pub async fn platform(dir: &Path, shared_envs: bool, cfg: PlatformConfig) -> Platform {
    let storage = lambda_storage::open(&lambda_storage::StorageConfig::new(format!(
        "file://{}",
        dir.join("store").display()
    )))
    .unwrap();
    let uv = workspace().join(".venv/bin/uv");
    let builds = if shared_envs {
        workspace().join("target/test-data/local-builds")
    } else {
        dir.join("builds")
    };
    let builder = LocalBuilder::new(LocalBuilderConfig {
        data_dir: builds,
        python: "python3".into(),
        uv: uv.exists().then_some(uv),
        pip_args: Vec::new(),
    });
    let mut ocfg = LocalOrchestratorConfig::new(dir);
    ocfg.base_env = ["PATH", "HOME", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    ocfg.start_timeout = Duration::from_secs(30);
    ocfg.stop_grace = Duration::from_secs(5);
    let orch = LocalOrchestrator::open(ocfg).await.unwrap();
    Platform::new(cfg, storage, Arc::new(builder), Arc::new(orch))
}

pub fn test_config() -> PlatformConfig {
    PlatformConfig {
        reconcile_interval: Duration::from_secs(2),
        orphan_grace: Duration::from_secs(3600),
        ..PlatformConfig::default()
    }
}

/// A multipart/form-data body: (content type, bytes).
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----luna-lambda-test-boundary";
    let mut body = Vec::new();
    for (name, ctype, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let filename = if *name == "archive" {
            "; filename=\"lambda.zip\""
        } else {
            ""
        };
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n").as_bytes(),
        );
        body.extend_from_slice(format!("Content-Type: {ctype}\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn creds(name: &str) -> String {
    format!(r#"{{"lambda_name":"{name}","lambda_type":"standalone"}}"#)
}

/// A real server on a free port.
pub struct Server {
    pub url: String,
    pub platform: Platform,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(platform: Platform) -> Server {
        platform.start().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let p = platform.clone();
        let task = tokio::spawn(async move {
            lambda_server::serve(listener, p, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            url,
            platform,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop: lambdas keep running.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    pub async fn create(&self, name: &str, zip: &[u8], params: Option<&str>) -> reqwest::Response {
        self.create_with(&creds(name), zip, params).await
    }

    /// Create with explicit `credentials` JSON.
    pub async fn create_with(
        &self,
        creds: &str,
        zip: &[u8],
        params: Option<&str>,
    ) -> reqwest::Response {
        let mut parts: Vec<(&str, &str, &[u8])> = vec![
            ("archive", "application/zip", zip),
            ("credentials", "application/json", creds.as_bytes()),
        ];
        if let Some(p) = params {
            parts.push(("parameters", "application/json", p.as_bytes()));
        }
        let (ctype, body) = multipart(&parts);
        reqwest::Client::new()
            .post(format!("{}/1/lambdas", self.url))
            .header("Luna-Account-Id", ACCOUNT)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn record(&self, id: &str) -> serde_json::Value {
        reqwest::get(format!("{}/1/lambdas/{id}", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls until the record's status and image status are as given, with a deadline.
    /// `PUT /1/lambdas/{id}` with a new archive.
    pub async fn update(&self, id: &str, zip: &[u8]) -> reqwest::Response {
        let (ctype, body) = multipart(&[("archive", "application/zip", zip)]);
        reqwest::Client::new()
            .put(format!("{}/1/lambdas/{id}", self.url))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// `PATCH /1/lambdas/{id}` switching the lambda on or off.
    pub async fn set_alive(&self, id: &str, alive: bool) -> reqwest::Response {
        reqwest::Client::new()
            .patch(format!("{}/1/lambdas/{id}", self.url))
            .json(&serde_json::json!({ "alive": alive }))
            .send()
            .await
            .unwrap()
    }

    pub async fn wait_for(&self, id: &str, status: &str, image: &str) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.record(id).await;
            if r["status"] == status && r["image_status"] == image {
                return r;
            }
            assert!(
                Instant::now() < end,
                "lambda {id} never reached {status}/{image}: {r}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn invoke(&self, id: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/1/lambdas/{id}/proxy/main", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Pids recorded by the local orchestrator for a lambda.
pub fn pids(dir: &Path, id: &str) -> Vec<u32> {
    let Ok(bytes) = std::fs::read(dir.join("run").join(id).join("state.json")) else {
        return Vec::new();
    };
    let state: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    state["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pid"].as_u64().map(|p| p as u32))
        .collect()
}
