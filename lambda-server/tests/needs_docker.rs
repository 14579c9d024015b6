//! The server end to end with `[builder] kind = "docker"` and `[orchestrator] kind = "docker"`:
//! images built, pushed and run as containers. Built and run when LAMBDA_IT lists docker
//! (feature `needs-docker`); then a missing engine FAILS these tests.

mod common;

use common::*;
use std::collections::HashMap;

/// A server with the Docker builder and orchestrator (an instance of its own), and `extra`
/// settings.
async fn docker_server(dir: &std::path::Path, extra: &[(&str, &str)]) -> Server {
    let mut vars: HashMap<String, String> = docker_builder_vars().into_iter().collect();
    vars.extend(
        [
            ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "docker".to_owned()),
            (
                "LUNA_LAMBDA_ORCHESTRATOR_INSTANCE",
                format!("e2e-{}", uuid::Uuid::new_v4()),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let cfg = lambda_server::Config::load(None, &vars).unwrap();
    Server::start(cfg.platform(dir, &vars).await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambdas_run_as_containers_behind_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let s = docker_server(dir.path(), &[]).await;

    let created: serde_json::Value = s
        .create("with-reqs", &example_zip("with-requirements"), None)
        .await
        .json()
        .await
        .unwrap();
    let id = created["lambda_id"].as_str().unwrap().to_owned();
    let rec = s.wait_for(&id, "running", "completed").await;
    assert_eq!(rec["running_version"], 1);
    let (status, body) = s.invoke(&id, serde_json::json!({})).await;
    assert_eq!(
        (status, body["six_version"].as_str()),
        (200, Some("1.17.0"))
    );
    let log = s.build_log(&id).await;
    assert!(
        log.contains("docker build") && log.contains("sha256:"),
        "{log}"
    );

    // A code-only update: the dependencies image is reused (the engine builds nothing; the
    // code is assembled in the registry) and v2 answers.
    let v2 = zip_of(&[
        (
            "lambda_main.py",
            "import six\n\nasync def main(request):\n    return {'v': 2, 'six': six.__version__}\n",
        ),
        ("requirements.txt", "six==1.17.0\n"),
    ]);
    let r = s.update(&id, &v2).await;
    assert_eq!(r.status(), 202);
    s.answers(&id, "v2", |b| b["v"] == 2).await;
    let log = s.build_log(&id).await;
    assert!(log.contains("is in the registry: no docker build"), "{log}");

    // Back to v1: its image is kept, so no build, and v1 answers again.
    let (status, r) = s.rollback(&id, None).await;
    assert_eq!(status, 202);
    assert_eq!(
        (r["lambda_version"].as_u64(), r["rebuild"].as_bool()),
        (Some(3), Some(false)),
        "{r}"
    );
    s.answers(&id, "v1 again", |b| {
        b["six_version"] == "1.17.0" && b.get("v").is_none()
    })
    .await;
    let log = s.build_log(&id).await;
    assert!(
        log.contains("no build") && !log.contains("docker build"),
        "{log}"
    );
    // The image it runs, for use elsewhere: v1's, by digest (once the record says v3 serves:
    // the proxy reaches a new replica a moment before its deploy is recorded).
    s.serving(&id, 3).await;
    let (status, image) = get_json(&format!("{}/1/lambdas/{id}/image", s.url)).await;
    assert_eq!(status, 200, "{image}");
    assert_eq!(image["lambda_version"], 3);
    assert!(
        image["reference"].as_str().unwrap().ends_with(":v1"),
        "{image}"
    );
    assert!(
        image["digest"].as_str().unwrap().starts_with("sha256:"),
        "{image}"
    );

    let st: serde_json::Value = reqwest::get(format!("{}/1/lambdas/{id}/status", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["replicas"][0]["status"], "running", "{st}");
    let r = s.delete(&id).await;
    assert_eq!(r.status(), 204);

    // The runtime-parity examples, built as images and run as containers.
    runtime_parity_examples(&s).await;
    // A task of 200 subtasks on two containers.
    tasks_sum_on_two_replicas(&s).await;
    s.stop().await;
}

/// The tags of a lambda's repository in the test registry.
async fn registry_tags(id: &str) -> Vec<String> {
    let registry = it_env("LAMBDA_IT_REGISTRY");
    let r = reqwest::get(format!("http://{registry}/v2/luna-lambda/{id}/tags/list"))
        .await
        .unwrap();
    if r.status() == 404 {
        return Vec::new();
    }
    let body: serde_json::Value = r.json().await.unwrap();
    let mut tags: Vec<String> = body["tags"]
        .as_array()
        .map(|t| t.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

/// Lowering `keep_versions` and collecting: the dry run names the old version's stored objects,
/// engine image and registry manifest; the real run removes exactly those, and the registry
/// shrinks, while the kept version keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_images_and_manifests_of_versions_beyond_retention() {
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("gc-{}", uuid::Uuid::new_v4());
    let vars = |keep: &str| -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = docker_builder_vars().into_iter().collect();
        vars.extend(
            [
                ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "docker"),
                ("LUNA_LAMBDA_ORCHESTRATOR_INSTANCE", instance.as_str()),
                ("LUNA_LAMBDA_RETENTION_KEEP_VERSIONS", keep),
                ("LUNA_LAMBDA_GC_INTERVAL_SECS", "0"),
                // Other suites' images on the shared engine and registry are young: left alone.
                ("LUNA_LAMBDA_ORPHAN_GRACE_SECS", "3600"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        vars
    };
    let start = |keep: &'static str| {
        let vars = vars(keep);
        let dir = dir.path().to_path_buf();
        async move {
            let cfg = lambda_server::Config::load(None, &vars).unwrap();
            Server::start(cfg.platform(&dir, &vars).await.unwrap()).await
        }
    };
    let s = start("5").await;
    let id = created_id(s.create("gc-docker", &returning(1), None).await).await;
    s.serving(&id, 1).await;
    updated(s.update(&id, &returning(2)).await).await;
    s.serving(&id, 2).await;
    assert_eq!(registry_tags(&id).await, vec!["v1", "v2"]);
    s.stop().await;

    // The platform team lowers retention to one version.
    let s = start("1").await;
    s.answers(&id, "v2 after the restart", |b| b["v"] == 2)
        .await;
    let registry = it_env("LAMBDA_IT_REGISTRY");
    let dry = s.gc(true).await;
    let ours = |report: &serde_json::Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = report["removed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["what"].as_str().unwrap().contains(&id))
            .map(|i| {
                let what = i["what"].as_str().unwrap();
                // A manifest is named with its digest; the tag is what the test knows.
                let what = what.split('@').next().unwrap().to_owned();
                (i["kind"].as_str().unwrap().to_owned(), what)
            })
            .collect();
        v.sort();
        v
    };
    let image = format!("{registry}/luna-lambda/{id}:v1");
    assert_eq!(
        ours(&dry),
        vec![
            ("image".to_owned(), image.clone()),
            ("manifest".to_owned(), image.clone()),
            ("version".to_owned(), format!("lambdas/{id}/v1")),
        ],
        "{dry:#}"
    );
    assert_eq!(
        registry_tags(&id).await,
        vec!["v1", "v2"],
        "a dry run removes nothing"
    );
    let real = s.gc(false).await;
    assert_eq!(ours(&real), ours(&dry), "{real:#}");
    assert_eq!(registry_tags(&id).await, vec!["v2"], "the registry shrank");
    s.answers(&id, "v2 after the collection", |b| b["v"] == 2)
        .await;
    assert!(ours(&s.gc(true).await).is_empty());
    assert_eq!(s.delete(&id).await.status(), 204);
    assert!(registry_tags(&id).await.is_empty());
    s.stop().await;
}

async fn create_json(s: &Server, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/1/lambdas", s.url))
        .header("Luna-Account-Id", ACCOUNT)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// `import_image`: a lambda from an image built elsewhere (here: another lambda's, by the
/// reference `GET /1/lambdas/{id}/image` gives) runs with no build and answers the same; an
/// archive update of it is 409/42011; its deletion leaves the image to its owner; an image that
/// does not serve the runtime contract ends terminated with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_image_runs_without_a_build_and_cannot_be_updated() {
    let dir = tempfile::tempdir().unwrap();
    let s = docker_server(dir.path(), &[]).await;
    let code = "async def main(request):\n    return {'imported': True}\n";
    let source = created_id(
        s.create("image-source", &zip_of(&[("lambda_main.py", code)]), None)
            .await,
    )
    .await;
    s.serving(&source, 1).await;
    let (_, image) = get_json(&format!("{}/1/lambdas/{source}/image", s.url)).await;
    let reference = image["reference"].as_str().unwrap().to_owned();

    let (status, created) = create_json(
        &s,
        serde_json::json!({
            "credentials": {"lambda_name": "imported", "lambda_type": "standalone"},
            "parameters": {"deploy_parameters": {"pod_count": 1}},
            "import_image": reference,
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["lambda_id"].as_str().unwrap().to_owned();
    let rec = s.serving(&id, 1).await;
    assert_eq!(rec["import_image"], reference.as_str());
    assert_eq!(
        s.invoke(&id, serde_json::json!({})).await.1["imported"],
        true
    );
    let log = s.build_log(&id).await;
    assert!(
        log.contains("imported image") && !log.contains("docker build"),
        "{log}"
    );

    let r = s.update(&id, &zip_of(&[("lambda_main.py", code)])).await;
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], 42011, "{body}");

    // Deleting the imported lambda leaves the image to the lambda that made it.
    assert_eq!(s.delete(&id).await.status(), 204);
    assert!(registry_tags(&source).await.contains(&"v1".to_owned()));
    assert_eq!(
        s.invoke(&source, serde_json::json!({})).await.1["imported"],
        true
    );

    // The base image does not serve the runtime contract: the deploy's probe says so.
    let base = format!(
        "{}/lpa-lambda-base:{}",
        it_env("LAMBDA_IT_REGISTRY"),
        it_env("LAMBDA_IT_BASE_TAG")
    );
    let (status, created) = create_json(
        &s,
        serde_json::json!({
            "credentials": {"lambda_name": "not-a-lambda"},
            "import_image": base,
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let bad = created["lambda_id"].as_str().unwrap().to_owned();
    let rec = s.wait_for(&bad, "terminated", "completed").await;
    assert!(
        rec["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{rec}"
    );
    assert_eq!(s.delete(&bad).await.status(), 204);
    assert_eq!(s.delete(&source).await.status(), 204);
    s.stop().await;
}

/// Running containers of a lambda.
fn running_containers(id: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=luna-lambda.io/id={id}"),
        ])
        .env("DOCKER_HOST", it_env("DOCKER_HOST"))
        .output()
        .expect("the docker client runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_scale_with_the_load_and_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let s = docker_server(
        dir.path(),
        &[
            ("LUNA_LAMBDA_SCALE_CHECK_INTERVAL_MS", "100"),
            ("LUNA_LAMBDA_SCALE_SCALE_DOWN_AFTER_SECS", "2"),
        ],
    )
    .await;
    common::scale::idles_and_wakes_for_50_requests(&s, &running_containers).await;
    common::scale::scales_up_and_back_with_no_failed_request(&s, &running_containers).await;
    common::scale::a_failing_wake_answers_every_held_request_with_the_crash(&s).await;
    s.stop().await;
}
