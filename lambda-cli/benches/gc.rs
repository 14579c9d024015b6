//! The garbage collector at scale: 1,000 lambdas × 10 versions (archive, build log and
//! `version.json` each) with `keep_versions = 5`, on the local folder and (when LAMBDA_IT_S3_*
//! are set: `scripts/bench-versions`) on S3. Prints, side by side: the objects one listing
//! returns, the dry run's time, the real run's time, what it removed and freed, and a run with
//! nothing left to remove (the cost of the server's periodic collection).

use futures::StreamExt;
use lambda_core::api::{ArchiveInfo, LambdaRecord, VersionRecord};
use lambda_core::{ImageStatus, LambdaId, LambdaName, LambdaStatus, LambdaType, Parameters};
use lambda_server::{Platform, PlatformConfig};
use lambda_storage::{Storage, StorageConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LAMBDAS: usize = 1_000;
const VERSIONS: u64 = 10;
const KEEP: usize = 5;
/// Writes in flight while the store is filled.
const WRITES: usize = 32;

fn record(i: usize) -> LambdaRecord {
    let now = time::OffsetDateTime::now_utc();
    LambdaRecord {
        lambda_id: LambdaId::new(),
        lambda_name: LambdaName::parse(&format!("lambda-{i}")).unwrap(),
        lambda_type: LambdaType::Standalone,
        account_id: uuid::Uuid::nil(),
        description: String::new(),
        create_time: now,
        last_update_time: now,
        lambda_version: VERSIONS,
        image_status: ImageStatus::Completed,
        status: LambdaStatus::Running,
        reason: None,
        alive: true,
        running_version: Some(VERSIONS),
        parameters: Parameters::default(),
        archive: ArchiveInfo {
            size: 0,
            sha256: String::new(),
        },
        has_docs: false,
        import_image: None,
        last_usage: None,
        replicas: 0,
    }
}

/// Stores the lambdas' records and every version's objects.
async fn fill(storage: &Storage) {
    let repo = storage.records();
    let artifacts = storage.artifacts();
    let archive = bytes::Bytes::from(lambda_core::pack::pack_files(vec![(
        "lambda_main.py".to_owned(),
        format!(
            "async def main(request):\n    return {{}}\n# {}\n",
            "x".repeat(2000)
        )
        .into_bytes(),
    )]));
    let mut ids = Vec::with_capacity(LAMBDAS);
    for i in 0..LAMBDAS {
        ids.push(repo.create(record(i)).await.unwrap().value.lambda_id);
    }
    let writes = ids
        .iter()
        .flat_map(|id| (1..=VERSIONS).map(move |v| (*id, v)));
    futures::stream::iter(writes)
        .for_each_concurrent(WRITES, |(id, v)| {
            let (artifacts, archive) = (artifacts.clone(), archive.clone());
            async move {
                let info = artifacts.put_archive_bytes(&id, v, archive).await.unwrap();
                let log = bytes::Bytes::from(format!("==> build of v{v}\n").repeat(20));
                artifacts.put_build_log(&id, v, log).await.unwrap();
                let meta = VersionRecord {
                    version: v,
                    create_time: time::OffsetDateTime::now_utc(),
                    archive: info,
                    parameters: Parameters::default(),
                    has_docs: false,
                    rolled_back_from: None,
                    image_status: Some(ImageStatus::Completed),
                };
                artifacts.put_version(&id, &meta).await.unwrap();
            }
        })
        .await;
}

async fn run(label: &str, storage: Storage) {
    let t = Instant::now();
    fill(&storage).await;
    let filled = t.elapsed();
    let dir = tempfile::tempdir().unwrap();
    let builder = lambda_build::LocalBuilder::new(lambda_build::LocalBuilderConfig {
        data_dir: dir.path().join("builds"),
        python: "python3".into(),
        uv: None,
        pip_args: Vec::new(),
        provision_uv: false,
    });
    let orch = lambda_deploy::LocalOrchestrator::open(lambda_deploy::LocalOrchestratorConfig::new(
        dir.path(),
    ))
    .await
    .unwrap();
    let cfg = PlatformConfig {
        keep_versions: KEEP,
        orphan_grace: Duration::ZERO,
        ..PlatformConfig::default()
    };
    let platform = Platform::new(
        cfg,
        storage.clone(),
        Arc::new(builder),
        Arc::new(orch),
        lambda_server::proxy::ReplicaClient::new(),
    );
    let listed = storage.artifacts().inventory().await.unwrap().listed;
    let t = Instant::now();
    let dry = platform.gc(true).await.unwrap();
    let dry_time = t.elapsed();
    let t = Instant::now();
    let real = platform.gc(false).await.unwrap();
    let real_time = t.elapsed();
    assert_eq!(
        dry.removed, real.removed,
        "the dry run and the real run differ"
    );
    assert_eq!(real.removed.len(), LAMBDAS * (VERSIONS as usize - KEEP));
    let after = storage.artifacts().inventory().await.unwrap().listed;
    let t = Instant::now();
    let idle = platform.gc(false).await.unwrap();
    let idle_time = t.elapsed();
    assert!(idle.removed.is_empty());
    println!(
        "{label:<14} {:>7} {:>8.2} s {:>9} {:>9.2} s {:>9.2} s {:>8} {:>9.1} {:>9} {:>9.2} s",
        format!("{LAMBDAS}x{VERSIONS}"),
        filled.as_secs_f64(),
        listed,
        dry_time.as_secs_f64(),
        real_time.as_secs_f64(),
        real.removed.len(),
        real.bytes as f64 / 1e6,
        after,
        idle_time.as_secs_f64(),
    );
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        println!(
            "{:<14} {:>7} {:>10} {:>9} {:>11} {:>11} {:>8} {:>9} {:>9} {:>11}",
            "backend",
            "lambdas",
            "fill",
            "listed",
            "dry run",
            "real run",
            "removed",
            "MB freed",
            "listed",
            "idle run"
        );
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        run(
            "local folder",
            lambda_storage::open(&StorageConfig::new(url)).unwrap(),
        )
        .await;
        if let (Ok(ep), Ok(bucket), Ok(key), Ok(secret)) = (
            std::env::var("LAMBDA_IT_S3_ENDPOINT"),
            std::env::var("LAMBDA_IT_S3_BUCKET"),
            std::env::var("LAMBDA_IT_S3_ACCESS_KEY"),
            std::env::var("LAMBDA_IT_S3_SECRET_KEY"),
        ) {
            let mut cfg = StorageConfig::new(format!("s3://{bucket}"));
            cfg.prefix = format!("bench-gc-{}", uuid::Uuid::new_v4());
            cfg.s3.endpoint = Some(ep);
            cfg.s3.access_key_id = Some(key);
            cfg.s3.secret_access_key = Some(secret);
            cfg.s3.allow_http = true;
            cfg.s3.conditional_put = false;
            run("s3 (s3s-fs)", lambda_storage::open(&cfg).unwrap()).await;
        } else {
            println!("s3: not measured (run scripts/bench-versions)");
        }
    });
}
