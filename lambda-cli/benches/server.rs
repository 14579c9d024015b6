//! Server benchmarks, side by side in one run (needs `wrk`; scripts/bench-server installs it):
//!
//! (a) proxy overhead: the same keep-alive load (wrk, 50 connections, POST JSON echo) sent
//!     directly to a Python lambda replica and through the proxy; and the same against a trivial
//!     fast upstream (a Rust echo server), to isolate the proxy's own cost;
//! (b) create -> running and create -> first successful response for `hello`;
//! (c) server RSS idle and with 1,000 records, and `GET /1/lambdas` latency at 1,000 records.
//!
//! The server is the real `luna-lambda serve` binary, run as a child process.

use async_trait::async_trait;
use futures::stream::BoxStream;
use lambda_core::api::{ArchiveInfo, LambdaRecord};
use lambda_core::{ImageStatus, LambdaId, LambdaName, LambdaStatus, LambdaType, Parameters};
use lambda_deploy::{DeploySpec, Deployed, DeploymentStatus, Orchestrator};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Wrk {
    rps: f64,
    p50: f64,
    p99: f64,
}

fn to_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        _ => n,
    }
}

fn wrk(url: &str, secs: u32) -> Wrk {
    wrk_c(url, secs, 50)
}

fn wrk_c(url: &str, secs: u32, conns: u32) -> Wrk {
    let lua = std::env::temp_dir().join("luna-lambda-bench-post.lua");
    std::fs::write(
        &lua,
        "wrk.method = \"POST\"\nwrk.body = '{\"data\": {\"a\": 1, \"b\": [1, 2, 3], \"c\": \"hello\"}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .unwrap();
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&lua)
        .arg(url)
        .output()
        .expect("wrk is installed (scripts/bench-server installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("Non-2xx"), "errors under load: {text}");
    let find = |key: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("nan")
            .to_owned()
    };
    Wrk {
        rps: find("Requests/sec:").parse().unwrap_or(f64::NAN),
        p50: to_ms(&find("50%")),
        p99: to_ms(&find("99%")),
    }
}

/// Alternates direct and proxied runs `ROUNDS` times (drift hits both alike) and keeps the
/// median run of each, by throughput.
fn alternating(direct_url: &str, proxy_url: &str, secs: u32, conns: u32) -> (Wrk, Wrk) {
    const ROUNDS: usize = 3;
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        d.push(wrk_c(direct_url, secs, conns));
        p.push(wrk_c(proxy_url, secs, conns));
    }
    let median = |mut v: Vec<Wrk>| {
        v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        v.swap_remove(ROUNDS / 2)
    };
    (median(d), median(p))
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let port = free_port();
        let path = format!(
            "{}:{}",
            workspace().join(".venv/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .env("PATH", path)
            .env("LUNA_LAMBDA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let end = Instant::now() + Duration::from_secs(30);
        while blocking_get(&format!("{url}/version")).is_err() {
            assert!(Instant::now() < end, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, url }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A tiny blocking GET over a runtime of its own (the bench's main thread is sync).
fn blocking_get(url: &str) -> reqwest::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await?.error_for_status()?.text().await })
}

/// An orchestrator that "runs" every lambda at one fixed address (the trivial upstream).
#[derive(Debug)]
struct Fixed(String);

#[async_trait]
impl Orchestrator for Fixed {
    fn kind(&self) -> &'static str {
        "fixed"
    }
    async fn deploy(&self, _: DeploySpec) -> lambda_deploy::Result<()> {
        Ok(())
    }
    async fn undeploy(&self, _: &LambdaId) -> lambda_deploy::Result<()> {
        Ok(())
    }
    async fn status(&self, id: &LambdaId) -> lambda_deploy::Result<DeploymentStatus> {
        Err(lambda_deploy::Error::NotFound(*id))
    }
    async fn logs(
        &self,
        _: &LambdaId,
        _: Option<usize>,
    ) -> lambda_deploy::Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }
    async fn follow_logs(
        &self,
        id: &LambdaId,
    ) -> lambda_deploy::Result<BoxStream<'static, String>> {
        Err(lambda_deploy::Error::NotFound(*id))
    }
    async fn list(&self) -> lambda_deploy::Result<Vec<Deployed>> {
        Ok(Vec::new())
    }
    fn endpoint(&self, _: &LambdaId) -> Option<String> {
        Some(self.0.clone())
    }
    fn replica_endpoints(&self, _: &LambdaId) -> Vec<(String, String)> {
        vec![("fixed".to_owned(), self.0.clone())]
    }
    async fn health(&self) -> lambda_deploy::Result<()> {
        Ok(())
    }
    async fn shutdown(&self) {}
}

fn record(i: usize, alive: bool) -> LambdaRecord {
    let now = time::OffsetDateTime::now_utc();
    LambdaRecord {
        lambda_id: LambdaId::new(),
        lambda_name: LambdaName::parse(&format!("lambda-{i}")).unwrap(),
        lambda_type: LambdaType::Standalone,
        account_id: uuid::Uuid::parse_str(ACCOUNT).unwrap(),
        description: "benchmark record".into(),
        create_time: now,
        last_update_time: now,
        lambda_version: 1,
        image_status: ImageStatus::Completed,
        status: if alive {
            LambdaStatus::Running
        } else {
            LambdaStatus::Waiting
        },
        reason: None,
        alive,
        running_version: None,
        parameters: Parameters::default(),
        archive: ArchiveInfo {
            size: 1,
            sha256: "0".repeat(64),
        },
        has_docs: false,
    }
}

/// The proxy alone, in front of a trivial Rust echo upstream.
fn trivial_upstream_pair(secs: u32) -> (Wrk, Wrk, Wrk, Wrk) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_url = format!("http://{}", up.local_addr().unwrap());
        let echo = axum::Router::new().route(
            "/main",
            axum::routing::post(|body: axum::body::Bytes| async move {
                ([("content-type", "application/json")], body)
            }),
        );
        tokio::spawn(async move { axum::serve(up, echo).await.unwrap() });
        let storage =
            lambda_storage::open(&lambda_storage::StorageConfig::new("memory://")).unwrap();
        let rec = record(0, true);
        let id = rec.lambda_id;
        storage.records().create(rec).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let builder = lambda_build::LocalBuilder::new(lambda_build::LocalBuilderConfig {
            data_dir: dir.path().to_path_buf(),
            python: "python3".into(),
            uv: None,
            pip_args: Vec::new(),
            provision_uv: false,
        });
        let platform = lambda_server::Platform::new(
            lambda_server::PlatformConfig::default(),
            storage,
            std::sync::Arc::new(builder),
            std::sync::Arc::new(Fixed(up_url.clone())),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!(
            "http://{}/1/lambdas/{id}/proxy/main",
            l.local_addr().unwrap()
        );
        tokio::spawn(lambda_server::serve(l, platform, std::future::pending()));
        let u = format!("{up_url}/main");
        tokio::task::spawn_blocking(move || {
            wrk(&u, 2);
            wrk(&proxy_url, 2);
            (
                wrk(&u, secs),
                wrk(&proxy_url, secs),
                wrk_c(&u, secs, 1),
                wrk_c(&proxy_url, secs, 1),
            )
        })
        .await
        .unwrap()
    })
}

fn print_pair(label: &str, direct: &Wrk, proxied: &Wrk) {
    println!("{label}");
    println!(
        "  {:<16} {:>10} {:>9} {:>9}",
        "", "req/s", "p50 ms", "p99 ms"
    );
    println!(
        "  {:<16} {:>10.0} {:>9.3} {:>9.3}",
        "direct", direct.rps, direct.p50, direct.p99
    );
    println!(
        "  {:<16} {:>10.0} {:>9.3} {:>9.3}",
        "through proxy", proxied.rps, proxied.p50, proxied.p99
    );
    println!(
        "  proxy adds {:.3} ms at p50, {:.3} ms at p99; throughput {:.0}% of direct",
        proxied.p50 - direct.p50,
        proxied.p99 - direct.p99,
        100.0 * proxied.rps / direct.rps
    );
}

fn main() {
    let secs: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    std::thread::sleep(Duration::from_secs(1)); // settle before reading the idle RSS
    let idle_rss = rss_mib(server.child.id());

    // (b) create -> running -> first answer.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let zip = lambda_core::pack::pack_dir(&workspace().join("examples/hello")).unwrap();
    let (id, to_running, to_answer) = rt.block_on(async {
        let client = reqwest::Client::new();
        let form = reqwest::multipart::Form::new()
            .part(
                "archive",
                reqwest::multipart::Part::bytes(zip)
                    .file_name("hello.zip")
                    .mime_str("application/zip")
                    .unwrap(),
            )
            .text(
                "credentials",
                r#"{"lambda_name":"hello","lambda_type":"standalone"}"#,
            );
        let t = Instant::now();
        let r: serde_json::Value = client
            .post(format!("{}/1/lambdas", server.url))
            .header("Luna-Account-Id", ACCOUNT)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["lambda_id"].as_str().unwrap().to_owned();
        let mut to_answer = None;
        let mut to_running = None;
        while to_answer.is_none() || to_running.is_none() {
            if to_answer.is_none() {
                let ok = client
                    .post(format!("{}/1/lambdas/{id}/proxy/main", server.url))
                    .body("{}")
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    to_answer = Some(t.elapsed());
                }
            }
            if to_running.is_none() {
                let rec: serde_json::Value = client
                    .get(format!("{}/1/lambdas/{id}", server.url))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if rec["status"] == "running" {
                    to_running = Some(t.elapsed());
                }
            }
            assert!(t.elapsed() < Duration::from_secs(120), "hello never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (id, to_running.unwrap(), to_answer.unwrap())
    });

    // (a) the Python lambda, directly and through the proxy.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.path().join("run").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let port = state["replicas"][0]["port"].as_u64().unwrap();
    let direct_url = format!("http://127.0.0.1:{port}/main");
    let proxy_url = format!("{}/1/lambdas/{id}/proxy/main", server.url);
    wrk(&direct_url, 2);
    wrk(&proxy_url, 2);
    let (direct, proxied) = alternating(&direct_url, &proxy_url, secs, 50);
    let (direct1, proxied1) = alternating(&direct_url, &proxy_url, secs, 1);
    let busy_rss = rss_mib(server.child.id());
    // A graceful stop leaves lambdas running by design: delete this one first.
    rt.block_on(async {
        let _ = reqwest::Client::new()
            .delete(format!("{}/1/lambdas/{id}", server.url))
            .send()
            .await;
    });
    server.stop();

    let (trivial_direct, trivial_proxied, trivial_direct1, trivial_proxied1) =
        trivial_upstream_pair(secs);

    // (c) 1,000 records (switched off, so nothing is built), RSS and list latency.
    let data2 = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let store = lambda_storage::open(&lambda_storage::StorageConfig::new(format!(
            "file://{}",
            data2.path().join("store").display()
        )))
        .unwrap();
        for i in 0..1000 {
            store.records().create(record(i, false)).await.unwrap();
        }
    });
    let server = Server::start(data2.path());
    let (list100, list1000) = rt.block_on(async {
        let client = reqwest::Client::new();
        let lat = |page_size: u32| {
            let client = client.clone();
            let url = format!("{}/1/lambdas?page_size={page_size}", server.url);
            async move {
                let mut v = Vec::new();
                for _ in 0..21 {
                    let t = Instant::now();
                    let body: serde_json::Value =
                        client.get(&url).send().await.unwrap().json().await.unwrap();
                    v.push(t.elapsed().as_secs_f64() * 1000.0);
                    assert_eq!(body["count"], 1000);
                }
                v.sort_by(f64::total_cmp);
                v[10]
            }
        };
        (lat(100).await, lat(1000).await)
    });
    let rss_1000 = rss_mib(server.child.id());
    server.stop();

    println!(
        "== luna-lambda-rs server benchmark (wrk -t1 -c50 -d{secs}s, POST JSON echo; 2 cores shared by wrk, server and lambda)"
    );
    print_pair(
        "(a) Python lambda `hello` (one replica, one worker), 50 connections",
        &direct,
        &proxied,
    );
    print_pair(
        "(a) Python lambda `hello`, 1 connection (latency without queueing)",
        &direct1,
        &proxied1,
    );
    print_pair(
        "(a) trivial Rust echo upstream (the proxy's own cost), 50 connections",
        &trivial_direct,
        &trivial_proxied,
    );
    print_pair(
        "(a) trivial Rust echo upstream, 1 connection",
        &trivial_direct1,
        &trivial_proxied1,
    );
    println!(
        "(b) hello: create -> running {:.2} s; create -> first successful response {:.2} s",
        to_running.as_secs_f64(),
        to_answer.as_secs_f64()
    );
    println!(
        "(c) server RSS: idle {idle_rss:.1} MiB; after the proxy load {busy_rss:.1} MiB; with 1,000 records {rss_1000:.1} MiB"
    );
    println!(
        "(c) GET /1/lambdas at 1,000 records: page of 100 {list100:.2} ms; page of 1000 {list1000:.2} ms (median of 21)"
    );
    let p50_add = trivial_proxied1.p50 - trivial_direct1.p50;
    let p99_add = trivial_proxied1.p99 - trivial_direct1.p99;
    println!(
        "targets (latency added at 1 connection, trivial upstream): proxy adds <= 0.3 ms p50 ({p50_add:.3}: {}), <= 1 ms p99 ({p99_add:.3}: {}); through-proxy throughput >= 90% of direct for the Python lambda ({:.0}%: {}); RSS <= 40 MB with 1,000 records ({rss_1000:.1} MiB: {})",
        if p50_add <= 0.3 { "met" } else { "NOT met" },
        if p99_add <= 1.0 { "met" } else { "NOT met" },
        100.0 * proxied.rps / direct.rps,
        if proxied.rps >= 0.9 * direct.rps {
            "met"
        } else {
            "NOT met"
        },
        if rss_1000 <= 40.0 { "met" } else { "NOT met" },
    );
}
