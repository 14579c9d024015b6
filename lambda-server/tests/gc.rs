//! The garbage collector on the embedded default (a real server, its own build folder): a dry run
//! reports exactly what the real run then removes, the data folder shrinks, and collections
//! racing creates, updates and rollbacks lose nothing.

mod common;

use common::*;
use lambda_server::PlatformConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// A collection whose report is consistent: its kind and its bytes add up.
async fn gc(s: &Server, dry_run: bool) -> serde_json::Value {
    let report = s.gc(dry_run).await;
    assert_eq!(report["dry_run"], dry_run, "{report}");
    let sum: u64 = items(&report).iter().map(|(_, _, b)| b).sum();
    assert_eq!(report["bytes"], sum, "{report}");
    report
}

fn items(report: &serde_json::Value) -> BTreeSet<(String, String, u64)> {
    report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["what"].as_str().unwrap().to_owned(),
                i["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// An object being written by the local store: `<key>#<n>` until it is renamed to `<key>`.
fn is_staging(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains('#'))
}

/// Every file under `path` with its size, without what the server and its replicas write while
/// it is walked (neither is the collector's business): bytecode caches, which a replica's Python
/// may write into its environment or app folder whenever it first imports a module, and staging
/// files.
fn files(path: &Path) -> BTreeMap<std::path::PathBuf, u64> {
    let mut out = BTreeMap::new();
    if path.ends_with("__pycache__") || is_staging(path) {
        return out;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return out;
    };
    if !meta.is_dir() {
        out.insert(path.to_owned(), meta.len());
        return out;
    }
    // A folder removed meanwhile (by retention, say) has no files.
    for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
        out.extend(files(&e.path()));
    }
    out
}

fn write(path: &Path, bytes: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_exactly_what_the_real_run_removes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PlatformConfig {
        keep_versions: 2,
        orphan_grace: Duration::ZERO,
        env_cache_max_bytes: 0,
        // The reconciler also removes the objects of lambdas without a record (crash repair):
        // with no grace it would take the planted lambda between the dry and the real run.
        reconcile_interval: Duration::from_secs(3600),
        // Nor may `last_usage` be written while the folder is measured: a record being
        // written has a staging file beside it.
        idle: lambda_server::service::platform::IdleSettings {
            last_usage_flush: Duration::from_secs(3600),
            ..Default::default()
        },
        ..test_config()
    };
    let s = Server::start(platform(dir.path(), false, cfg).await).await;
    let id = created_id(s.create("gc", &returning(1), None).await).await;
    s.serving(&id, 1).await;
    for v in 2..=4 {
        updated(s.update(&id, &returning(v)).await).await;
        s.serving(&id, v.into()).await;
    }
    // What a crash leaves: a deleted lambda's objects and app folder, an object in no version
    // folder, an environment nothing uses, a half-made environment.
    let store = dir.path().join("store");
    let builds = dir.path().join("builds");
    let gone = lambda_core::LambdaId::new();
    write(&store.join(format!("lambdas/{gone}/v1/archive.zip")), 1000);
    write(&store.join(format!("lambdas/{id}/stray.bin")), 10);
    write(&builds.join(format!("apps/{gone}/v1/run.py")), 100);
    write(&builds.join("envs/unused/.luna-lambda-env-ok"), 0);
    // An hour of the audit log far older than `[retention] audit_days`.
    write(&store.join("audit/2020-01-01/00.json"), 20);
    write(&builds.join("envs/unused/lib/big.so"), 5000);
    write(&builds.join("envs/half.partial-1/bin/python"), 7);
    let used_env = std::fs::read_dir(builds.join("envs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join(".luna-lambda-env-ok").exists() && !p.ends_with("unused"))
        .expect("the lambda's environment");
    // The artifacts of v1 and v2 go with retention once v4 runs (not the collector's business):
    // the app folder first, then the stored `artifact.json`, so both are waited for.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let retained = |v: u64| {
        builds.join(format!("apps/{id}/v{v}")).exists()
            || store
                .join(format!("lambdas/{id}/v{v}/artifact.json"))
                .exists()
    };
    while retained(1) || retained(2) {
        assert!(
            std::time::Instant::now() < end,
            "the artifacts of v1 or v2 stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What a collection may touch, in one walk: the store and the build folder, without the
    // audit log (it grows with each request, the gc calls too, and its writer replaces its hour
    // object at any time): not what GC is about. Sizes and file lists come from the same walk,
    // so a failure names the file that differs.
    let audit = store.join("audit");
    let walk = || -> BTreeMap<std::path::PathBuf, u64> {
        files(&store)
            .into_iter()
            .chain(files(&builds))
            .filter(|(p, _)| !p.starts_with(&audit))
            .collect()
    };
    let usage = |walked: &BTreeMap<std::path::PathBuf, u64>| -> u64 { walked.values().sum() };
    let before_files = walk();
    let before = usage(&before_files);
    let dry = gc(&s, true).await;
    let expected: BTreeSet<(String, String)> = [
        ("version", format!("lambdas/{id}/v1")),
        ("version", format!("lambdas/{id}/v2")),
        ("lambda", format!("lambdas/{gone}")),
        ("orphan", format!("lambdas/{id}/stray.bin")),
        ("audit", "audit/2020-01-01/00.json".to_owned()),
        (
            "app",
            builds.join(format!("apps/{gone}/v1")).display().to_string(),
        ),
        ("env", builds.join("envs/unused").display().to_string()),
        (
            "env",
            builds.join("envs/half.partial-1").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, w)| (k.to_owned(), w))
    .collect();
    let got: BTreeSet<(String, String)> = items(&dry).into_iter().map(|(k, w, _)| (k, w)).collect();
    assert_eq!(got, expected, "{dry:#}");
    assert!(items(&dry).contains(&(
        "env".into(),
        builds.join("envs/unused").display().to_string(),
        5000
    )));
    let after_files = walk();
    let vanished: Vec<_> = before_files
        .keys()
        .filter(|p| !after_files.contains_key(*p))
        .collect();
    let changed: Vec<_> = after_files
        .iter()
        .filter(|(p, n)| before_files.get(*p) != Some(n))
        .collect();
    assert_eq!(
        usage(&after_files),
        before,
        "a dry run removes nothing; vanished: {vanished:?}; new or changed: {changed:?}"
    );
    assert_eq!(s.invoke(&id, serde_json::json!({})).await.1["v"], 4);

    let real = gc(&s, false).await;
    assert_eq!(items(&real), items(&dry), "{real:#}");
    assert_eq!(real["bytes"], dry["bytes"]);
    let after_files = walk();
    // The walk leaves the audit log out: so does this, of the report.
    let reported = real["bytes"].as_u64().unwrap() - 20;
    let grown: Vec<_> = after_files
        .iter()
        .filter(|(p, n)| before_files.get(*p).is_none_or(|b| b < *n))
        .collect();
    let shrunk = before as i64 - usage(&after_files) as i64;
    assert!(
        shrunk >= reported as i64,
        "the data folder shrank by {shrunk} bytes; the report says {reported}; grown or new since: {grown:?}",
    );
    assert!(!store.join("audit/2020-01-01/00.json").exists());
    assert!(!builds.join("envs/unused").exists());
    assert!(used_env.exists(), "the running version's environment stays");
    assert!(!store.join(format!("lambdas/{gone}")).exists());

    // The lambda is untouched: it answers, its kept versions are listed, the collected ones
    // are gone for a rollback.
    assert_eq!(s.invoke(&id, serde_json::json!({})).await.1["v"], 4);
    let (_, list) = get_json(&format!("{}/1/lambdas/{id}/versions", s.url)).await;
    let listed: Vec<u64> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![3, 4], "{list}");
    let (status, r) = s
        .rollback(&id, Some(serde_json::json!({"version": 1})))
        .await;
    assert_eq!(status, 410);
    assert_eq!(r["error_code"], 42012);
    // Back to the kept v3 works with no build.
    assert_eq!(s.rollback(&id, None).await.0, 202);
    s.serving(&id, 5).await;
    assert_eq!(s.invoke(&id, serde_json::json!({})).await.1["v"], 3);

    let bad = reqwest::Client::new()
        .post(format!("{}/1/gc?dry_run=maybe", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    assert_eq!(s.delete(&id).await.status(), 204);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_racing_creates_updates_and_rollbacks_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PlatformConfig {
        keep_versions: 2,
        // Creates in flight are protected by the grace alone; everything else by the records.
        orphan_grace: Duration::from_secs(60),
        env_cache_max_bytes: 0,
        ..test_config()
    };
    let s = Server::start(platform(dir.path(), false, cfg).await).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let collector = {
        let (url, stop) = (s.url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0u32;
            let mut removed = 0usize;
            while !stop.is_cancelled() {
                let r = reqwest::Client::new()
                    .post(format!("{url}/1/gc"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let report: serde_json::Value = r.json().await.unwrap();
                removed += report["removed"].as_array().unwrap().len();
                runs += 1;
            }
            (runs, removed)
        })
    };
    let work = (0..3).map(|n| {
        let s = &s;
        async move {
            let id = created_id(
                s.create(&format!("race-{n}"), &returning(100 * n + 1), None)
                    .await,
            )
            .await;
            s.serving(&id, 1).await;
            for v in 2..=4 {
                updated(s.update(&id, &returning(100 * n + v)).await).await;
                s.serving(&id, v.into()).await;
                assert_eq!(
                    s.invoke(&id, serde_json::json!({})).await.1["v"],
                    100 * n + v
                );
            }
            let (status, r) = s.rollback(&id, None).await;
            assert_eq!(status, 202, "{r}");
            s.serving(&id, 5).await;
            assert_eq!(
                s.invoke(&id, serde_json::json!({})).await.1["v"],
                100 * n + 3
            );
            id
        }
    });
    let ids = futures::future::join_all(work).await;
    stop.cancel();
    let (runs, removed) = collector.await.unwrap();
    assert!(runs >= 3, "only {runs} collections ran during the work");
    assert!(removed > 0, "the collections removed nothing");
    // After the race, and after one more collection: every lambda answers, and its kept
    // versions (v4, v5) are whole.
    gc(&s, false).await;
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            s.invoke(id, serde_json::json!({})).await.1["v"],
            100 * n as u32 + 3
        );
        let (_, list) = get_json(&format!("{}/1/lambdas/{id}/versions", s.url)).await;
        let kept: Vec<(u64, bool)> = list["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["version"].as_u64().unwrap(), v["artifact_exists"] == true))
            .collect();
        assert_eq!(kept, vec![(4, true), (5, true)], "{list}");
        let app = list["versions"][1]["artifact"]["app_dir"].as_str().unwrap();
        assert!(Path::new(app).join("run.py").exists(), "{app}");
        // A restart re-adopts the same lambda.
        assert_eq!(s.delete(id).await.status(), 204);
    }
    s.stop().await;
}
