//! Test helpers: a platform on the embedded default in a temp folder, multipart bodies, and a
//! real server on a free port.
#![allow(dead_code, unreachable_pub)]

pub mod scale;
pub use lambda_testkit::start_gate;

use lambda_build::{LocalBuilder, LocalBuilderConfig};
use lambda_deploy::{LocalOrchestrator, LocalOrchestratorConfig};
use lambda_server::http::EdgeSettings;
use lambda_server::{Platform, PlatformConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11";
pub const OTHER_ACCOUNT: &str = "00000000-0000-4000-8000-000000000001";

pub use lambda_testkit::workspace;

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

/// A lambda whose `main` answers `{"v": v}`.
pub fn returning(v: u32) -> Vec<u8> {
    zip_of(&[(
        "lambda_main.py",
        &format!("async def main(request):\n    return {{'v': {v}}}\n"),
    )])
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
        provision_uv: false,
    });
    let mut ocfg = LocalOrchestratorConfig::new(dir);
    ocfg.base_env = ["PATH", "HOME", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    ocfg.start_timeout = Duration::from_secs(30);
    ocfg.stop_grace = Duration::from_secs(5);
    let orch = LocalOrchestrator::open(ocfg).await.unwrap();
    Platform::new(
        cfg,
        storage,
        Arc::new(builder),
        Arc::new(orch),
        lambda_server::proxy::ReplicaClient::new(),
    )
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
    /// Its client (with the server's token, when it has one).
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(platform: Platform) -> Server {
        Self::start_as(platform, EdgeSettings::default(), None).await
    }

    /// A server with these edge settings whose helpers send `Authorization: Bearer <token>`.
    pub async fn start_as(platform: Platform, edge: EdgeSettings, token: Option<&str>) -> Server {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        platform.start().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let p = platform.clone();
        let task = tokio::spawn(async move {
            lambda_server::serve(listener, p, edge, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            url,
            platform,
            http,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Deletes every lambda of the platform (their replicas stop).
    async fn delete_all(platform: &Platform) {
        let q = lambda_storage::ListQuery {
            page_size: 1000,
            ..Default::default()
        };
        if let Ok((records, _)) = platform.list(&q).await {
            for r in records {
                let _ = platform.delete(&r.lambda_id, None).await;
            }
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
}

/// A test that fails while its server runs never reaches its own clean-up: the server's lambdas
/// are deleted here, or their replicas (left running by design, for the next server on the same
/// folder) would outlive the test and its temp folder. A server stopped on purpose leaves them.
impl Drop for Server {
    fn drop(&mut self) {
        if self.stop.is_none() || !std::thread::panicking() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return; // block_in_place needs worker threads (every server test has them)
        }
        let platform = self.platform.clone();
        tokio::task::block_in_place(|| runtime.block_on(Self::delete_all(&platform)));
    }
}

impl Server {
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
        self.http
            .post(format!("{}/1/lambdas", self.url))
            .header("Luna-Account-Id", ACCOUNT)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn record(&self, id: &str) -> serde_json::Value {
        self.http
            .get(format!("{}/1/lambdas/{id}", self.url))
            .send()
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
        self.http
            .put(format!("{}/1/lambdas/{id}", self.url))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// `PATCH /1/lambdas/{id}` switching the lambda on or off.
    pub async fn set_alive(&self, id: &str, alive: bool) -> reqwest::Response {
        self.http
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

    /// Waits until `version` is the one serving (fails at once when its build fails).
    pub async fn serving(&self, id: &str, version: u64) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.record(id).await;
            if r["running_version"] == version && r["status"] == "running" {
                return r;
            }
            assert!(
                r["image_status"] != "error",
                "version {version} failed: {r}"
            );
            assert!(Instant::now() < end, "version {version} never ran: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Invokes `main` until a 200 answer satisfies `ok` (deadline 120 s; `what` names it).
    pub async fn answers(&self, id: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.invoke(id, serde_json::json!({})).await;
            if status == 200 && ok(&body) {
                return;
            }
            assert!(Instant::now() < end, "{what} never answered: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The build log of the lambda's current version.
    pub async fn build_log(&self, id: &str) -> String {
        self.http
            .get(format!("{}/1/lambdas/{id}/image/logs", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST /1/lambdas/{id}/rollback` with `body` (none: the previous version).
    pub async fn rollback(
        &self,
        id: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut rb = self
            .http
            .post(format!("{}/1/lambdas/{id}/rollback", self.url));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// `POST /1/gc[?dry_run=1]`: the report (asserted 200).
    pub async fn gc(&self, dry_run: bool) -> serde_json::Value {
        let url = format!(
            "{}/1/gc{}",
            self.url,
            if dry_run { "?dry_run=1" } else { "" }
        );
        let r = self.http.post(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn delete(&self, id: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}/1/lambdas/{id}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub async fn invoke(&self, id: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
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
    lambda_testkit::pid_alive(pid)
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

/// The runtime-parity examples through a running server (embedded default or Docker): user
/// metrics on two replicas merged by `GET /1/lambdas/{id}/metrics`, additional routes with a path
/// parameter and a required query parameter, a handlers lambda fed MessagePack, and an archive
/// whose import the runtime does not provide refused at upload.
pub async fn runtime_parity_examples(s: &Server) {
    let two = r#"{"deploy_parameters": {"pod_count": 2}}"#;
    let metrics_id = created_id(
        s.create("user-metrics", &example_zip("user-metrics"), Some(two))
            .await,
    )
    .await;
    let routes_id = created_id(s.create("routes", &example_zip("routes"), None).await).await;
    let msgpack_id = created_id(
        s.create_with(
            r#"{"lambda_name":"handlers-msgpack","lambda_type":"handlers"}"#,
            &example_zip("handlers-msgpack"),
            None,
        )
        .await,
    )
    .await;
    for id in [&metrics_id, &routes_id, &msgpack_id] {
        s.wait_for(id, "running", "completed").await;
    }
    user_metrics_merged(s, &metrics_id).await;
    additional_routes(s, &routes_id).await;
    msgpack_body(s, &msgpack_id).await;

    let bad = zip_of(&[(
        "lambda_main.py",
        "from luna_lambda_tools.public.metrics.user_metrics import Counter, Meter\n\nasync def main(request):\n    return {}\n",
    )]);
    let r = s.create("bad-import", &bad, None).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], 42005, "{body}");
    assert_eq!(body["problems"][0]["code"], "import.unknown_name", "{body}");
    assert_eq!(body["problems"][0]["line"], 1, "{body}");
    for id in [&metrics_id, &routes_id, &msgpack_id] {
        let r = s.delete(id).await;
        assert_eq!(r.status(), 204);
    }
}

pub async fn created_id(r: reqwest::Response) -> String {
    answer(r, 201).await["lambda_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The JSON of an answer with the `expected` status; any other answer fails with its headers
/// and body as they came (an empty or non-JSON body too: a refusal by the HTTP layer has one).
pub async fn answer(r: reqwest::Response, expected: u16) -> serde_json::Value {
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    assert_eq!(status, expected, "{headers:?} {body:?}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// The version an update started (202); any other answer fails with its body.
pub async fn updated(r: reqwest::Response) -> u64 {
    answer(r, 202).await["lambda_version"].as_u64().unwrap()
}

async fn user_metrics_merged(s: &Server, id: &str) {
    let mut words = 0;
    for text in ["one two three", "four five", "six", "seven eight nine ten"] {
        let (status, body) = s
            .invoke(id, serde_json::json!({"text": text, "language": "en"}))
            .await;
        assert_eq!(status, 200, "{body}");
        words += body["words"].as_u64().unwrap();
    }
    let r = reqwest::get(format!("{}/1/lambdas/{id}/metrics", s.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert_eq!(
        text.matches("# TYPE words_seen_total counter").count(),
        1,
        "{text}"
    );
    let mut replicas = std::collections::BTreeSet::new();
    let mut seen = 0;
    for line in text.lines().filter(|l| l.starts_with("words_seen_total{")) {
        let replica = line
            .split("replica=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        replicas.insert(replica.to_owned());
        assert!(line.contains("language=\"en\""), "{line}");
        seen += line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    }
    assert_eq!(seen, words, "{text}");
    // Both replicas answered requests (round robin) and each reports under its own label.
    assert_eq!(replicas.len(), 2, "{text}");
    let status: serde_json::Value = reqwest::get(format!("{}/1/lambdas/{id}/status", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for r in status["replicas"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        assert!(replicas.contains(name), "{name} not in {replicas:?}");
    }
}

async fn additional_routes(s: &Server, id: &str) {
    let client = reqwest::Client::new();
    let base = format!("{}/1/lambdas/{id}/proxy", s.url);
    let r = client
        .post(format!("{base}/items"))
        .json(&serde_json::json!({"name": "lamp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/items/1");
    let r = client
        .get(format!("{base}/items/1?fields=name,id"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"name": "lamp", "id": 1})
    );
    let r = client.get(format!("{base}/items/1")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], 12004, "{body}");
    assert_eq!(body["detail"], "query parameter 'fields' is required");
    let r = client.put(format!("{base}/items/1")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, DELETE");
    let (status, body) = s.invoke(id, serde_json::json!({})).await;
    assert_eq!((status, body["items"].as_u64()), (200, Some(1)), "{body}");
}

async fn msgpack_body(s: &Server, id: &str) {
    // {"sources": [{"image": <3 bytes>}]} in MessagePack, as luna-handlers sends it.
    let mut body = vec![0x81, 0xa7];
    body.extend_from_slice(b"sources");
    body.extend_from_slice(&[0x91, 0x81, 0xa5]);
    body.extend_from_slice(b"image");
    body.extend_from_slice(&[0xc4, 0x03, 0, 1, 2]);
    let r = reqwest::Client::new()
        .post(format!("{}/1/lambdas/{id}/proxy/main", s.url))
        .header("content-type", "application/msgpack")
        .header("luna-handler-id", "h-7")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"handler_id": "h-7", "content_type": "application/msgpack", "sources": 1, "image_bytes": 3})
    );
}

/// GET a JSON document of the API.
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

impl Server {
    /// Creates a `tasks` lambda from an archive and waits until it runs.
    pub async fn tasks_lambda(&self, name: &str, zip: &[u8], params: Option<&str>) -> String {
        let creds = format!(r#"{{"lambda_name":"{name}","lambda_type":"tasks"}}"#);
        let id = created_id(self.create_with(&creds, zip, params).await).await;
        self.wait_for(&id, "running", "completed").await;
        id
    }

    /// `POST /1/tasks`: the status and the answer.
    pub async fn post_task(
        &self,
        lambda: &str,
        content: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut content = content;
        content["lambda_id"] = lambda.into();
        let r = self
            .http
            .post(format!("{}/1/tasks", self.url))
            .header("Luna-Account-Id", ACCOUNT)
            .json(&serde_json::json!({"description": "test", "content": content}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Starts a task and returns its id.
    pub async fn start_task(&self, lambda: &str, content: serde_json::Value) -> String {
        let (status, body) = self.post_task(lambda, content).await;
        assert_eq!(status, 201, "{body}");
        body["task_id"].as_str().unwrap().to_owned()
    }

    /// Polls a task until `done(record)` holds (deadline 120 s); returns the record.
    pub async fn task_until(
        &self,
        task: &str,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, t) = get_json(&format!("{}/1/tasks/{task}", self.url)).await;
            assert_eq!(status, 200, "{t}");
            if done(&t) {
                return t;
            }
            assert!(Instant::now() < end, "task {task} never got {what}: {t}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a task is over.
    pub async fn finished_task(&self, task: &str) -> serde_json::Value {
        self.task_until(task, "finished", |t| {
            ["done", "failed", "cancelled"].contains(&t["status"].as_str().unwrap_or(""))
                && !t["end_time"].is_null()
        })
        .await
    }
}

/// `examples/tasks-sum` on two replicas: a task of 200 subtasks completes with every sum right,
/// in order, each once, and both replicas did part of it.
pub async fn tasks_sum_on_two_replicas(s: &Server) {
    let two = r#"{"deploy_parameters": {"pod_count": 2}}"#;
    let lambda = s
        .tasks_lambda("tasks-sum", &example_zip("tasks-sum"), Some(two))
        .await;
    let task = s
        .start_task(&lambda, serde_json::json!({"n": 2000, "chunk": 10}))
        .await;
    let t = s.finished_task(&task).await;
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(
        t["subtasks"],
        serde_json::json!({"total": 200, "done": 200, "failed": 0, "in_flight": 0})
    );
    let (_, r) = get_json(&format!("{}/1/tasks/{task}/result", s.url)).await;
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 200);
    for (i, v) in results.iter().enumerate() {
        let (a, b) = (i as u64 * 10, i as u64 * 10 + 10);
        assert_eq!(
            v,
            &serde_json::json!({"from": a, "to": b, "sum": (a..b).sum::<u64>()}),
            "subtask {i}"
        );
    }
    let (_, logs) = get_json(&format!("{}/1/lambdas/{lambda}/logs", s.url)).await;
    let logs = logs["logs"].as_object().unwrap();
    assert_eq!(logs.len(), 2, "{logs:?}");
    for (replica, text) in logs {
        let ran = text.as_str().unwrap().matches("summing").count();
        assert!(ran > 0, "replica {replica} ran no subtask");
    }
    let r = s.delete(&lambda).await;
    assert_eq!(r.status(), 204);
}
