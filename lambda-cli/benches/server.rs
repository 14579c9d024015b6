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
use std::time::{Duration, Instant};

mod common;
use common::{ACCOUNT, Server, Wrk, median, rss_mib, wrk, wrk_c};

/// Alternates direct and proxied runs three times (drift hits both alike) and keeps the median
/// run of each, by throughput.
fn alternating(direct_url: &str, proxy_url: &str, secs: u32, conns: u32) -> (Wrk, Wrk) {
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        d.push(wrk_c(direct_url, secs, conns));
        p.push(wrk_c(proxy_url, secs, conns));
    }
    (median(d), median(p))
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
    async fn scale(&self, _: &LambdaId, _: u32) -> lambda_deploy::Result<()> {
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
        import_image: None,
        last_usage: None,
        replicas: 0,
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
            lambda_server::proxy::ReplicaClient::new(),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!(
            "http://{}/1/lambdas/{id}/proxy/main",
            l.local_addr().unwrap()
        );
        tokio::spawn(lambda_server::serve(
            l,
            platform,
            Default::default(),
            std::future::pending(),
        ));
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
    let common::Created {
        id,
        to_running,
        to_answer,
    } = rt.block_on(common::create_hello(&server.url));

    // (a) the Python lambda, directly and through the proxy.
    let port = common::replica_port(data.path(), &id);
    let direct_url = format!("http://127.0.0.1:{port}/main");
    let proxy_url = format!("{}/1/lambdas/{id}/proxy/main", server.url);
    wrk(&direct_url, 2);
    wrk(&proxy_url, 2);
    let (direct, proxied) = alternating(&direct_url, &proxy_url, secs, 50);
    let (direct1, proxied1) = alternating(&direct_url, &proxy_url, secs, 1);
    let busy_rss = rss_mib(server.child.id());
    rt.block_on(common::delete_lambda(&server.url, &id));
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
