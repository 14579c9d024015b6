//! End to end over real HTTP: the server on a free port with the embedded default. Every
//! example, an update under load, a config change, switch off/on, delete, and restarts of the
//! control plane in the middle of a build and while lambdas run.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_runs_behind_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, test_config()).await).await;
    let cases = [
        ("hello", None, serde_json::json!({"a": 1}), 200, "echo"),
        (
            "handlers",
            Some(r#"{"lambda_name":"handlers","lambda_type":"handlers"}"#),
            serde_json::json!({"sources": [{"filename": "a.jpg"}, {"filename": "b.jpg"}]}),
            200,
            "sources",
        ),
        (
            "with-requirements",
            None,
            serde_json::json!({}),
            200,
            "six_version",
        ),
        ("with-docs", None, serde_json::json!({}), 200, "greeting"),
        ("user-context", None, serde_json::json!({}), 200, "count"),
        (
            "user-exception",
            None,
            serde_json::json!({"age": "x"}),
            422,
            "detail",
        ),
    ];
    let mut ids = Vec::new();
    for (name, creds_override, _, _, _) in &cases {
        let zip = example_zip(name);
        let resp = match creds_override {
            None => s.create(name, &zip, None).await,
            Some(c) => s.create_with(c, &zip, None).await,
        };
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!(status, 201, "{name}: {v}");
        ids.push(v["lambda_id"].as_str().unwrap().to_owned());
    }
    for ((name, _, body, want, key), id) in cases.iter().zip(&ids) {
        s.wait_for(id, "running", "completed").await;
        let (status, got) = s.invoke(id, body.clone()).await;
        assert_eq!(status, *want, "{name}: {got}");
        assert!(got.get(*key).is_some(), "{name}: {got}");
    }
    // The server counted each lambda's one request (the console's chart): a 4xx of the lambda
    // is not an error, and a request of another lambda is not counted here.
    for ((name, ..), id) in cases.iter().zip(&ids) {
        let t: serde_json::Value = reqwest::get(format!("{}/1/lambdas/{id}/traffic", s.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let points = t["points"].as_array().unwrap();
        assert_eq!(points.len(), 90, "{name}: 15 minutes of 10 s");
        let sum = |k: &str| points.iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!((sum("requests"), sum("errors")), (1, 0), "{name}: {t}");
        assert!(
            points
                .iter()
                .any(|p| p["p50_ms"].as_f64().is_some_and(|v| v > 0.0)),
            "{name}: {t}"
        );
    }
    handlers_log_their_sources(&s, &ids[1]).await;
    let list: serde_json::Value = reqwest::get(format!("{}/1/lambdas", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], cases.len());
    for id in &ids {
        let r = s.delete(id).await;
        assert_eq!(r.status(), 204);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_parity_examples_run_behind_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, test_config()).await).await;
    runtime_parity_examples(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_config_switch_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, test_config()).await).await;
    let v1 = zip_of(&[(
        "lambda_main.py",
        "async def main(request):\n    return {'v': 1, 'cfg': request.config.userConfig}\n",
    )]);
    let created: serde_json::Value = s
        .create("life", &v1, Some(r#"{"user_config":{"k":1}}"#))
        .await
        .json()
        .await
        .unwrap();
    let id = created["lambda_id"].as_str().unwrap().to_owned();
    s.wait_for(&id, "running", "completed").await;
    assert_eq!(
        s.invoke(&id, serde_json::json!({})).await.1,
        serde_json::json!({"v": 1, "cfg": {"k": 1}})
    );

    // Update under a request loop: no request fails, and v2 answers at the end.
    let ok = Arc::new(AtomicU32::new(0));
    let v2_seen = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looper = {
        let (url, id, ok, v2_seen, stop) = (
            s.url.clone(),
            id.clone(),
            ok.clone(),
            v2_seen.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut failed = Vec::new();
            while !stop.load(Relaxed) {
                match client
                    .post(format!("{url}/1/lambdas/{id}/proxy/main"))
                    .body("{}")
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let v: serde_json::Value = r.json().await.unwrap();
                        if v["v"] == 2 {
                            v2_seen.fetch_add(1, Relaxed);
                        }
                        ok.fetch_add(1, Relaxed);
                    }
                    Ok(r) => failed.push(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            failed
        })
    };
    let end = Instant::now() + Duration::from_secs(20);
    while ok.load(Relaxed) < 20 {
        assert!(Instant::now() < end, "the loop never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v2 = zip_of(&[(
        "lambda_main.py",
        "from luna_lambda_tools import lambdaConfig\n\n\nasync def main(request):\n    name = lambdaConfig['name'] if 'name' in lambdaConfig else None\n    first = lambdaConfig['users'][0]['name'] if 'users' in lambdaConfig else None\n    return {'v': 2, 'cfg': request.config.userConfig, 'name': name, 'first': first}\n",
    )]);
    let r = s.update(&id, &v2).await;
    assert_eq!(r.status(), 202);
    let upd: serde_json::Value = r.json().await.unwrap();
    assert_eq!(upd["lambda_version"], 2);
    let end = Instant::now() + Duration::from_secs(60);
    while v2_seen.load(Relaxed) < 20 {
        assert!(Instant::now() < end, "v2 never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Relaxed);
    let failed = looper.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed requests during the update: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let rec = s.wait_for(&id, "running", "completed").await;
    assert_eq!(rec["lambda_version"], 2);
    assert_eq!(
        rec["parameters"]["user_config"],
        serde_json::json!({"k": 1}),
        "parameters kept when not sent"
    );

    // Config changes: restart without a rebuild; the lambda reads the new config with the
    // original's item access (lambdaConfig["name"], lambdaConfig["users"][0]["name"]).
    for (cfg, name, first) in [
        (
            r#"{"k": 2, "name": "gate", "users": [{"name": "ann"}]}"#,
            "gate",
            "ann",
        ),
        (
            r#"{"k": 3, "name": "door", "users": [{"name": "bob"}]}"#,
            "door",
            "bob",
        ),
    ] {
        let r = reqwest::Client::new()
            .put(format!("{}/1/lambdas/{id}/config", s.url))
            .body(cfg)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let (st, body) = s.invoke(&id, serde_json::json!({})).await;
            if st == 200 && body["name"] == name && body["first"] == first {
                let want: serde_json::Value = serde_json::from_str(cfg).unwrap();
                assert_eq!(body["cfg"], want);
                break;
            }
            assert!(Instant::now() < end, "the new config never arrived: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        s.record(&id).await["lambda_version"],
        2,
        "no new version for a config change"
    );

    // Switch off and on.
    let pids_before = pids(dir.path(), &id);
    let off = s.set_alive(&id, false).await;
    assert_eq!(off.status(), 200);
    assert!(
        pids_before.iter().all(|p| !alive(*p)),
        "switched off: processes stop"
    );
    assert_eq!(s.invoke(&id, serde_json::json!({})).await.0, 409);
    let on = s.set_alive(&id, true).await;
    assert_eq!(on.status(), 200);
    s.wait_for(&id, "running", "completed").await;
    let (status, body) = s.invoke(&id, serde_json::json!({})).await;
    if status != 200 {
        let logs = get_json(&format!("{}/1/lambdas/{id}/logs", s.url)).await.1;
        let state = std::fs::read_to_string(dir.path().join("run").join(&id).join("state.json"));
        panic!(
            "switched on and running, answered {status} {body}; record {}; logs {logs}; state {state:?}",
            s.record(&id).await
        );
    }

    // Delete: record, archive and processes gone.
    let running = pids(dir.path(), &id);
    let r = s.delete(&id).await;
    assert_eq!(r.status(), 204);
    assert!(
        running.iter().all(|p| !alive(*p)),
        "processes survived the delete"
    );
    assert!(
        !dir.path().join("store/lambdas").join(&id).exists(),
        "archives survived the delete"
    );
    assert_eq!(
        reqwest::get(format!("{}/1/lambdas/{id}", s.url))
            .await
            .unwrap()
            .status(),
        404
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_converge_with_nothing_lost_and_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    // Own env cache: the first build has to make an environment, so it can be interrupted.
    let s = Server::start(platform(dir.path(), false, test_config()).await).await;
    let running_zip = example_zip("hello");
    let a: serde_json::Value = s
        .create("steady", &running_zip, None)
        .await
        .json()
        .await
        .unwrap();
    let a = a["lambda_id"].as_str().unwrap().to_owned();
    s.wait_for(&a, "running", "completed").await;
    let steady_pids = pids(dir.path(), &a);
    // A second lambda with new requirements: stop the server while it builds.
    let reqs_zip = zip_of(&[
        (
            "lambda_main.py",
            "import six\nasync def main(r):\n    return {'six': six.__version__}\n",
        ),
        ("requirements.txt", "six==1.16.0\n"),
    ]);
    let b: serde_json::Value = s
        .create("interrupted", &reqs_zip, None)
        .await
        .json()
        .await
        .unwrap();
    let b = b["lambda_id"].as_str().unwrap().to_owned();
    let end = Instant::now() + Duration::from_secs(30);
    while s.record(&b).await["image_status"] != "in_progress" {
        assert!(Instant::now() < end, "the build never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.stop().await;
    // The running lambda keeps running while no control plane runs.
    assert!(
        steady_pids.iter().all(|p| alive(*p)),
        "a graceful stop must leave lambdas running"
    );

    let s2 = Server::start(platform(dir.path(), false, test_config()).await).await;
    let rb = s2.wait_for(&b, "running", "completed").await;
    assert_eq!(rb["lambda_version"], 1);
    assert_eq!(
        s2.invoke(&b, serde_json::json!({})).await.1,
        serde_json::json!({"six": "1.16.0"})
    );
    s2.wait_for(&a, "running", "completed").await;
    assert_eq!(
        pids(dir.path(), &a),
        steady_pids,
        "re-adopted, not started twice"
    );
    assert_eq!(
        s2.invoke(&a, serde_json::json!(1)).await,
        (200, serde_json::json!({"echo": 1}))
    );
    let list: serde_json::Value = reqwest::get(format!("{}/1/lambdas", s2.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 2, "nothing lost");

    // A deployment whose record is gone (deleted while no control plane ran) is removed.
    let b_pids = pids(dir.path(), &b);
    s2.stop().await;
    let store = lambda_storage::open(&lambda_storage::StorageConfig::new(format!(
        "file://{}",
        dir.path().join("store").display()
    )))
    .unwrap();
    store.records().delete(&b.parse().unwrap()).await.unwrap();
    let s3 = Server::start(platform(dir.path(), false, test_config()).await).await;
    let end = Instant::now() + Duration::from_secs(30);
    while b_pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < end,
            "the orphan deployment was not removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s3.invoke(&a, serde_json::json!(2)).await.0, 200);
    reqwest::Client::new()
        .delete(format!("{}/1/lambdas/{a}", s3.url))
        .send()
        .await
        .unwrap();
    assert!(steady_pids.iter().all(|p| !alive(*p)));
    s3.stop().await;
}

/// The handlers example read `request.data.sources` (the body parsed into `EventSourceSchema`):
/// its answer counts and names the two sources, and its log says so, through the platform.
async fn handlers_log_their_sources(s: &Server, id: &str) {
    let body = serde_json::json!({"sources": [{"filename": "a.jpg"}, {"filename": "b.jpg"}]});
    let (status, got) = s.invoke(id, body).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["sources"], 2, "{got}");
    assert_eq!(
        got["filenames"],
        serde_json::json!(["a.jpg", "b.jpg"]),
        "{got}"
    );
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let logs: serde_json::Value = reqwest::get(format!("{}/1/lambdas/{id}/logs", s.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = logs["logs"].to_string();
        if text.contains("2 source(s): ['a.jpg', 'b.jpg']") {
            return;
        }
        assert!(
            Instant::now() < end,
            "the handlers log never named its sources: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
