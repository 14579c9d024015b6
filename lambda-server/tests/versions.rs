//! Versions, rollback and the retention of artifacts on the embedded default (a real server).

mod common;

use common::*;
use lambda_server::PlatformConfig;
use std::time::{Duration, Instant};

async fn versions(s: &Server, id: &str) -> Vec<serde_json::Value> {
    let (status, body) = get_json(&format!("{}/1/lambdas/{id}/versions", s.url)).await;
    assert_eq!(status, 200, "{body}");
    body["versions"].as_array().unwrap().clone()
}

/// The versions of `id` once those whose artifact still exists are `kept`: old artifacts are
/// removed just after a new version runs, so a moment after its record says so (deadline 30 s).
async fn versions_keeping(s: &Server, id: &str, kept: &[u64]) -> Vec<serde_json::Value> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let list = versions(s, id).await;
        let now: Vec<u64> = list
            .iter()
            .filter(|v| v["artifact_exists"] == true)
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        if now == kept {
            return list;
        }
        assert!(Instant::now() < end, "kept {now:?}, not {kept:?}: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_listed_rolled_back_to_and_their_artifacts_retained() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PlatformConfig {
        keep_versions: 2,
        ..test_config()
    };
    let s = Server::start(platform(dir.path(), true, cfg).await).await;
    let id = created_id(s.create("versions", &returning(1), None).await).await;
    s.serving(&id, 1).await;
    let (status, body) = s.rollback(&id, None).await;
    assert_eq!(status, 400, "nothing to roll back to yet: {body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no earlier version"),
        "{body}"
    );

    updated(s.update(&id, &returning(2)).await).await;
    s.serving(&id, 2).await;
    let list = versions(&s, &id).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[0]["image_status"], "completed");
    assert_eq!(list[0]["artifact_exists"], true);
    assert_eq!(list[0]["current"], false);
    assert_eq!(list[1]["current"], true);
    assert_eq!(list[1]["running"], true);
    assert_eq!(list[1]["archive"]["sha256"].as_str().unwrap().len(), 64);
    let v1_app = list[0]["artifact"]["app_dir"].as_str().unwrap().to_owned();
    let v2_app = list[1]["artifact"]["app_dir"].as_str().unwrap().to_owned();

    // Bad targets.
    for (body, code) in [
        (serde_json::json!({"version": 2}), 400),
        (serde_json::json!({"version": 9}), 400),
        (serde_json::json!({"version": "one"}), 400),
    ] {
        let (status, answer) = s.rollback(&id, Some(body.clone())).await;
        assert_eq!(status, code, "{body}: {answer}");
    }

    // Back to v1, whose artifact is kept: a new v3, no build.
    let (status, r) = s.rollback(&id, None).await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["lambda_version"], 3);
    assert_eq!(r["rolled_back_from"], 1);
    assert_eq!(r["rebuild"], false);
    s.serving(&id, 3).await;
    assert_eq!(s.invoke(&id, serde_json::json!({})).await.1["v"], 1);
    let log = s.build_log(&id).await;
    assert!(log.contains("no build"), "{log}");
    assert!(!log.contains("pip") && !log.contains("uv "), "{log}");

    // keep_versions = 2: v1 is past retention; its artifact is shared with v3 so it stays on
    // disk, but v1 no longer counts as kept.
    let list = versions_keeping(&s, &id, &[2, 3]).await;
    assert_eq!(list.len(), 3);
    assert_eq!(list[2]["rolled_back_from"], 1);
    assert_eq!(list[2]["artifact"]["app_dir"], v1_app.as_str());
    assert!(
        std::path::Path::new(&v1_app).exists(),
        "v3 runs from {v1_app}"
    );

    // Back to v1 again: its artifact record is gone, so v4 is built from v1's archive.
    let (status, r) = s
        .rollback(&id, Some(serde_json::json!({"version": 1})))
        .await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["lambda_version"], 4);
    assert_eq!(r["rebuild"], true);
    s.serving(&id, 4).await;
    assert_eq!(s.invoke(&id, serde_json::json!({})).await.1["v"], 1);
    // Now v3 and v4 are kept; v2's environment is gone from disk.
    versions_keeping(&s, &id, &[3, 4]).await;
    assert!(
        !std::path::Path::new(&v2_app).exists(),
        "{v2_app} is still there"
    );
    assert_eq!(s.delete(&id).await.status(), 204);
    s.stop().await;
}

async fn import(s: &Server, export: Vec<u8>) -> (u16, serde_json::Value) {
    let form = reqwest::multipart::Form::new().part(
        "archive",
        reqwest::multipart::Part::bytes(export).file_name("export.zip"),
    );
    let r = reqwest::Client::new()
        .post(format!("{}/1/lambdas/import", s.url))
        .header("Luna-Account-Id", ACCOUNT)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The files of a zip.
fn files_of(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().unwrap().into_owned(), data)
        })
        .collect()
}

/// An export with its files replaced by `edit`.
fn edited(export: &[u8], edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let files = files_of(export)
        .into_iter()
        .map(|(name, data)| {
            let data = edit(&name, data);
            (name, data)
        })
        .collect();
    lambda_core::pack::pack_files(files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_imported_on_another_server_and_a_tampered_one_refused() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(platform(dir_a.path(), true, test_config()).await).await;
    let b = Server::start(platform(dir_b.path(), true, test_config()).await).await;
    let id = created_id(
        a.create(
            "exported",
            &returning(7),
            Some(r#"{"user_config":{"k":2}}"#),
        )
        .await,
    )
    .await;
    a.serving(&id, 1).await;
    let r = reqwest::get(format!("{}/1/lambdas/{id}/export", a.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let export = r.bytes().await.unwrap().to_vec();

    let (status, body) = import(&b, export.clone()).await;
    assert_eq!(status, 201, "{body}");
    let copy = body["lambda_id"].as_str().unwrap().to_owned();
    let rec = b.serving(&copy, 1).await;
    assert_eq!(rec["lambda_name"], "exported");
    assert_eq!(
        rec["parameters"]["user_config"],
        serde_json::json!({"k": 2})
    );
    assert_eq!(
        b.invoke(&copy, serde_json::json!({})).await.1,
        a.invoke(&id, serde_json::json!({})).await.1
    );
    // The same name again on the same server: the usual conflict.
    let (status, body) = import(&b, export.clone()).await;
    assert_eq!(
        (status, body["error_code"].as_u64()),
        (409, Some(42002)),
        "{body}"
    );

    // Tampered: another archive, a manifest naming another digest, a stray file, not a zip.
    let other_archive = edited(&export, |name, data| {
        if name == "archive.zip" {
            returning(8)
        } else {
            data
        }
    });
    let other_digest = edited(&export, |name, data| {
        if name == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(&data).unwrap();
            m["archive"]["sha256"] = "0".repeat(64).into();
            serde_json::to_vec(&m).unwrap()
        } else {
            data
        }
    });
    let mut files = files_of(&export);
    files.push(("extra.txt".to_owned(), b"x".to_vec()));
    let stray = lambda_core::pack::pack_files(files);
    for (what, bytes, needle) in [
        (
            "another archive",
            other_archive,
            "is not the archive the manifest names",
        ),
        (
            "another digest",
            other_digest,
            "is not the archive the manifest names",
        ),
        (
            "a stray file",
            stray,
            "exactly manifest.json and archive.zip",
        ),
        ("not a zip", b"hello".to_vec(), "not a zip"),
    ] {
        let (status, body) = import(&a, bytes).await;
        assert_eq!(
            (status, body["error_code"].as_u64()),
            (400, Some(42005)),
            "{what}: {body}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{what}: {body}"
        );
    }

    // The embedded default runs no image: nothing to give as an image (42016), and neither
    // does a switched-off lambda.
    for (alive, needle) in [(true, "/export"), (false, "isn't running")] {
        if !alive {
            assert_eq!(b.set_alive(&copy, false).await.status(), 200);
        }
        let (status, body) = get_json(&format!("{}/1/lambdas/{copy}/image", b.url)).await;
        assert_eq!(
            (status, body["error_code"].as_u64()),
            (409, Some(42016)),
            "{body}"
        );
        assert!(body["detail"].as_str().unwrap().contains(needle), "{body}");
    }

    // An export whose archive is gone: 410 / 42012.
    let archive = dir_a
        .path()
        .join("store/lambdas")
        .join(&id)
        .join("v1/archive.zip");
    std::fs::remove_file(&archive).unwrap();
    let (status, body) = get_json(&format!("{}/1/lambdas/{id}/export", a.url)).await;
    assert_eq!(
        (status, body["error_code"].as_u64()),
        (410, Some(42012)),
        "{body}"
    );

    assert_eq!(a.delete(&id).await.status(), 204);
    assert_eq!(b.delete(&copy).await.status(), 204);
    a.stop().await;
    b.stop().await;
}

/// `import_image` needs an orchestrator that runs images; bad bodies and references are refused
/// with what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_image_is_refused_clearly_where_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, test_config()).await).await;
    let post = |body: String| {
        let url = format!("{}/1/lambdas", s.url);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("Luna-Account-Id", ACCOUNT)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let creds = r#"{"lambda_name": "img", "lambda_type": "standalone"}"#;
    for (body, status, code, needle) in [
        (
            format!(r#"{{"credentials": {creds}, "import_image": "registry.example/team/app:1"}}"#),
            400,
            42005,
            "local processes",
        ),
        (
            format!(r#"{{"credentials": {creds}, "import_image": "no spaces please"}}"#),
            400,
            42005,
            "character ' '",
        ),
        (
            format!(r#"{{"credentials": {creds}, "import_image": ""}}"#),
            400,
            42005,
            "empty",
        ),
        (
            format!(r#"{{"credentials": {creds}}}"#),
            415,
            12002,
            "import_image",
        ),
        (
            r#"{"import_image": "a:1"}"#.to_owned(),
            400,
            12001,
            "credentials",
        ),
        (
            format!(r#"{{"credentials": {creds}, "import_image": "a:1", "archive": 1}}"#),
            400,
            12001,
            "unknown field",
        ),
        (
            r#"{"credentials": {"lambda_name": "Bad Name"}, "import_image": "a:1"}"#.to_owned(),
            400,
            42005,
            "lambda_name",
        ),
    ] {
        let (got, answer) = post(body.clone()).await;
        assert_eq!(
            (got, answer["error_code"].as_u64()),
            (status, Some(code)),
            "{body}: {answer}"
        );
        assert!(answer.to_string().contains(needle), "{body}: {answer}");
    }
    let (_, list) = get_json(&format!("{}/1/lambdas", s.url)).await;
    assert_eq!(list["count"], 0, "nothing was created: {list}");
    s.stop().await;
}

/// Requests keep flowing through a rollback: none fails, and the answers move from the new
/// version to the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, test_config()).await).await;
    let id = created_id(s.create("rollback-load", &returning(1), None).await).await;
    s.serving(&id, 1).await;
    updated(s.update(&id, &returning(2)).await).await;
    s.serving(&id, 2).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (format!("{}/1/lambdas/{id}/proxy/main", s.url), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut answers, mut failures) = (Vec::new(), Vec::new());
                while !stop.is_cancelled() {
                    match http.post(&url).json(&serde_json::json!({})).send().await {
                        Ok(r) if r.status() == 200 => {
                            let body: serde_json::Value = r.json().await.unwrap();
                            answers.push(body["v"].as_u64().unwrap());
                        }
                        Ok(r) => {
                            failures.push(format!("{}: {}", r.status(), r.text().await.unwrap()))
                        }
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (answers, failures)
            })
        })
        .collect();
    assert_eq!(s.rollback(&id, None).await.0, 202);
    s.serving(&id, 3).await;
    s.answers(&id, "v1 after the rollback", |b| b["v"] == 1)
        .await;
    stop.cancel();
    let (mut answers, mut failures) = (Vec::new(), Vec::new());
    for task in load {
        let (a, f) = task.await.unwrap();
        answers.extend(a);
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        answers.contains(&2) && answers.contains(&1),
        "{} answers",
        answers.len()
    );
    println!(
        "{} requests during the rollback, none failed",
        answers.len()
    );
    assert_eq!(s.delete(&id).await.status(), 204);
    s.stop().await;
}
