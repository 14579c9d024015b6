//! The proxy streams bodies both ways: 100 MiB up to a lambda and 100 MiB back pass through a real
//! server while the process's peak RSS grows by less than 20 MiB. Its own test binary, so that no
//! other test's memory counts.

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use lambda_core::api::{ArchiveInfo, LambdaRecord};
use lambda_core::{ImageStatus, LambdaId, LambdaName, LambdaStatus, LambdaType, Parameters};
use lambda_deploy::{DeploySpec, Deployed, DeploymentStatus, Orchestrator};
use std::collections::BTreeMap;
use std::sync::Arc;

const MIB: usize = 1024 * 1024;
const TOTAL: usize = 100 * MIB;
const CHUNK: usize = 64 * 1024;

/// Every lambda "runs" at one address: the streaming upstream of this test.
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

fn running_record() -> LambdaRecord {
    let now = time::OffsetDateTime::now_utc();
    LambdaRecord {
        lambda_id: LambdaId::new(),
        lambda_name: LambdaName::parse("stream").unwrap(),
        lambda_type: LambdaType::Standalone,
        account_id: uuid::Uuid::new_v4(),
        description: String::new(),
        create_time: now,
        last_update_time: now,
        lambda_version: 1,
        image_status: ImageStatus::Completed,
        status: LambdaStatus::Running,
        reason: None,
        alive: true,
        running_version: Some(1),
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

/// Peak resident memory of this process (KiB).
/// A `/proc/self/status` field, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The largest resident size seen while it runs: `VmRSS` sampled every few milliseconds (the
/// kernel's `VmHWM` is updated lazily and can read lower later, so it alone is not a peak).
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut max = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    max = max.max(status_kib("VmRSS:"));
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                max.max(status_kib("VmRSS:"))
            }
        });
        Self { stop, thread }
    }

    fn max_kib(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// `n` bytes in chunks, byte `i` being `i % 251` (so a reordered or lost chunk is noticed).
fn pattern(n: usize) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures::stream::iter((0..n).step_by(CHUNK)).map(move |start| {
        let end = (start + CHUNK).min(n);
        Ok(bytes::Bytes::from(
            (start..end).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        ))
    })
}

/// Reads a body stream, checking the pattern; the number of bytes.
async fn check_pattern<E: std::fmt::Debug>(
    mut s: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
) -> usize {
    let mut seen = 0usize;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.expect("the body streams without error");
        for (k, b) in chunk.iter().enumerate() {
            assert_eq!(*b, ((seen + k) % 251) as u8, "byte {} differs", seen + k);
        }
        seen += chunk.len();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_streams_100_mib_both_ways_in_bounded_memory() {
    // The upstream checks the request body as it arrives, then answers 100 MiB of its own.
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}", up.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/stream",
        axum::routing::post(|body: axum::body::Body| async move {
            let got = check_pattern(body.into_data_stream()).await;
            (
                [("x-received", got.to_string())],
                axum::body::Body::from_stream(pattern(TOTAL)),
            )
        }),
    );
    tokio::spawn(async move { axum::serve(up, app).await.unwrap() });

    let storage = lambda_storage::open(&lambda_storage::StorageConfig::new("memory://")).unwrap();
    let rec = running_record();
    let (id, account) = (rec.lambda_id, rec.account_id);
    storage.records().create(rec).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let builder = lambda_build::LocalBuilder::new(lambda_build::LocalBuilderConfig {
        data_dir: dir.path().to_path_buf(),
        python: "python3".into(),
        uv: None,
        pip_args: Vec::new(),
        provision_uv: false,
    });
    let cfg = lambda_server::PlatformConfig {
        proxy_timeout: std::time::Duration::from_secs(120),
        ..Default::default()
    };
    let platform = lambda_server::Platform::new(
        cfg,
        storage,
        Arc::new(builder),
        Arc::new(Fixed(up_url)),
        lambda_server::proxy::ReplicaClient::new(),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/1/lambdas/{id}/proxy/stream",
        l.local_addr().unwrap()
    );
    tokio::spawn(lambda_server::serve(
        l,
        platform,
        Default::default(),
        std::future::pending(),
    ));

    // A warm-up request, so that the baseline holds the pools, buffers and runtime threads.
    let client = reqwest::Client::new();
    let warm = client
        .post(&url)
        .header("Luna-Account-Id", account.to_string())
        .body(reqwest::Body::wrap_stream(pattern(MIB)))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    assert_eq!(check_pattern(warm.bytes_stream()).await, TOTAL);
    let before = status_kib("VmRSS:").max(status_kib("VmHWM:"));
    let sampler = RssSampler::start();

    let resp = client
        .post(&url)
        .header("Luna-Account-Id", account.to_string())
        .body(reqwest::Body::wrap_stream(pattern(TOTAL)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-received"].to_str().unwrap(),
        TOTAL.to_string(),
        "the lambda received the whole request body"
    );
    assert_eq!(check_pattern(resp.bytes_stream()).await, TOTAL);
    let peak = sampler.max_kib().max(status_kib("VmHWM:"));
    let grown_mib = peak.saturating_sub(before) as f64 / 1024.0;
    assert!(
        grown_mib < 20.0,
        "peak RSS grew by {grown_mib:.1} MiB while 200 MiB passed through the proxy"
    );
}
