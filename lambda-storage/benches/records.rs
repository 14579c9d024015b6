//! Record benchmark: create 1,000 records, then list a page of 100 and get one by id, on the
//! local folder and (when LAMBDA_IT_S3_* are set, see scripts/infra/s3-start) on S3.
//! Target: a page of 100 from 1,000 records in <= 20 ms on the local folder.
//!
//! Run: `cargo bench -p lambda-storage --bench records`.

use lambda_core::api::{ArchiveInfo, LambdaRecord};
use lambda_core::{ImageStatus, LambdaId, LambdaName, LambdaStatus, LambdaType, Parameters};
use lambda_storage::{ListQuery, Storage, StorageConfig};
use std::time::Instant;

const RECORDS: usize = 1_000;

fn record(account: uuid::Uuid, i: usize) -> LambdaRecord {
    let now = time::OffsetDateTime::now_utc();
    LambdaRecord {
        lambda_id: LambdaId::new(),
        lambda_name: LambdaName::parse(&format!("lambda-{i}")).unwrap(),
        lambda_type: LambdaType::Standalone,
        account_id: account,
        description: "a lambda of the benchmark".into(),
        create_time: now,
        last_update_time: now,
        lambda_version: 1,
        image_status: ImageStatus::Completed,
        status: LambdaStatus::Running,
        reason: None,
        alive: true,
        running_version: None,
        parameters: Parameters::default(),
        archive: ArchiveInfo {
            size: 1234,
            sha256: "0".repeat(64),
        },
        has_docs: false,
        import_image: None,
        last_usage: None,
        replicas: 0,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(name: &str, s: Storage) {
    let repo = s.records();
    let acc = uuid::Uuid::new_v4();
    let t = Instant::now();
    let mut ids = Vec::new();
    let n = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RECORDS);
    for i in 0..n {
        ids.push(repo.create(record(acc, i)).await.unwrap().value.lambda_id);
        if i % 100 == 99 {
            eprintln!(
                "{name}: {} records after {:.1} s",
                i + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    let create_ms = t.elapsed().as_secs_f64() * 1000.0;
    let q = ListQuery {
        account_id: Some(acc),
        page: 3,
        page_size: 100,
        ..ListQuery::default()
    };
    let mut list = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let (page, count) = repo.list(&q).await.unwrap();
        list.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(count, ids.len() as u64);
        assert!(!page.is_empty());
    }
    let mut get = Vec::new();
    for id in ids.iter().step_by(97) {
        let t = Instant::now();
        repo.get(id).await.unwrap();
        get.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let list_ms = median(list);
    println!(
        "{name:<14} create x{}: {create_ms:>8.0} ms ({:>6.2} ms each) | list page of 100: {list_ms:>6.2} ms | get by id: {:>6.3} ms",
        ids.len(),
        create_ms / ids.len() as f64,
        median(get)
    );
    if name == "local folder" {
        println!(
            "target: page of 100 from 1,000 records <= 20 ms on the local folder; result: {}",
            if list_ms <= 20.0 { "met" } else { "NOT met" }
        );
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        run(
            "local folder",
            lambda_storage::open(&StorageConfig::new(url)).unwrap(),
        )
        .await;
        run(
            "memory",
            lambda_storage::open(&StorageConfig::new("memory://")).unwrap(),
        )
        .await;
        if let (Ok(ep), Ok(bucket), Ok(key), Ok(secret)) = (
            std::env::var("LAMBDA_IT_S3_ENDPOINT"),
            std::env::var("LAMBDA_IT_S3_BUCKET"),
            std::env::var("LAMBDA_IT_S3_ACCESS_KEY"),
            std::env::var("LAMBDA_IT_S3_SECRET_KEY"),
        ) {
            let mut cfg = StorageConfig::new(format!("s3://{bucket}"));
            cfg.prefix = format!("bench-{}", uuid::Uuid::new_v4());
            cfg.s3.endpoint = Some(ep);
            cfg.s3.access_key_id = Some(key);
            cfg.s3.secret_access_key = Some(secret);
            cfg.s3.allow_http = true;
            cfg.s3.conditional_put = false;
            run("s3 (s3s-fs)", lambda_storage::open(&cfg).unwrap()).await;
        } else {
            println!("s3: not measured (start scripts/infra/s3-start and export what it prints)");
        }
    });
}
