//! The server end to end with `[builder] kind = "docker"` and `[orchestrator] kind =
//! "kubernetes"`: images built and pushed, run as Deployments on a real control plane whose pods
//! the node simulator of lambda-deploy's tests runs; the proxy is pointed at the pod IPs. Built
//! and run when LAMBDA_IT lists kubernetes (feature `needs-kubernetes`); then a missing cluster
//! FAILS these tests.

mod common;
use lambda_testkit::kube_sim;

use common::*;
use kube_sim::{kubectl, sim};
use lambda_deploy::Orchestrator;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn objects_of(id: &str) -> String {
    kubectl(&[
        "get",
        "deployments,services,configmaps,pods",
        "--all-namespaces",
        "-l",
        &format!("luna-lambda.io/id={id}"),
        "-o",
        "name",
    ])
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambdas_run_as_deployments_behind_the_proxy() {
    sim();
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("e2e-{}", uuid::Uuid::new_v4());
    let mut vars: HashMap<String, String> = docker_builder_vars().into_iter().collect();
    vars.extend(
        [
            ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "kubernetes".into()),
            ("LUNA_LAMBDA_ORCHESTRATOR_KUBECONFIG", it_env("KUBECONFIG")),
            ("LUNA_LAMBDA_ORCHESTRATOR_INSTANCE", instance.clone()),
            // The simulated pods listen on their own loopback addresses.
            (
                "LUNA_LAMBDA_ORCHESTRATOR_ENDPOINT",
                "http://{pod_ip}:8000".into(),
            ),
            ("LUNA_LAMBDA_RECONCILE_INTERVAL_SECS", "1".into()),
        ]
        .map(|(k, v): (&str, String)| (k.to_owned(), v)),
    );
    let cfg = lambda_server::Config::load(None, &vars).unwrap();
    let platform = cfg.platform(dir.path(), &vars).await.unwrap();
    let s = Server::start(platform).await;

    let created: serde_json::Value = s
        .create("kube-hello", &example_zip("hello"), None)
        .await
        .json()
        .await
        .unwrap();
    let id = created["lambda_id"].as_str().unwrap().to_owned();
    s.wait_for(&id, "running", "completed").await;
    let (status, body) = s.invoke(&id, serde_json::json!({"k": 8})).await;
    assert_eq!((status, body), (200, serde_json::json!({"echo": {"k": 8}})));
    let st: serde_json::Value = reqwest::get(format!("{}/1/lambdas/{id}/status", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["replicas"][0]["status"], "running", "{st}");
    let logs = reqwest::get(format!("{}/1/lambdas/{id}/logs", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(logs.contains("serving standalone lambda"), "{logs}");
    // The replica's metrics, reached at its pod's own address, under its pod's name.
    let metrics = reqwest::get(format!("{}/1/lambdas/{id}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pod = st["replicas"][0]["name"].as_str().unwrap();
    assert!(
        metrics.contains(&format!(
            "lambda_requests_total{{replica=\"{pod}\",route=\"/main\",method=\"POST\",status=\"200\"}} 1"
        )),
        "{metrics}"
    );
    let d: serde_json::Value = serde_json::from_str(&kubectl(&[
        "get",
        "deployment",
        &format!("lambda-{id}"),
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(d["metadata"]["labels"]["luna-lambda.io/instance"], instance);

    // A Deployment of this platform whose lambda does not exist is garbage-collected.
    let orphan = lambda_core::LambdaId::new();
    let other = lambda_deploy::KubeOrchestrator::open(lambda_deploy::KubeOrchestratorConfig {
        credentials: lambda_deploy::KubeCredentials::Kubeconfig {
            path: Some(it_env("KUBECONFIG").into()),
            context: None,
        },
        instance: instance.clone(),
        endpoint: "http://{pod_ip}:8000".into(),
        ..lambda_deploy::KubeOrchestratorConfig::default()
    })
    .await
    .unwrap();
    // The reconciler (every second) may remove it before its rollout is done: either way is fine.
    let _ = other
        .deploy(lambda_deploy::DeploySpec {
            lambda_id: orphan,
            lambda_name: lambda_core::LambdaName::parse("orphan").unwrap(),
            lambda_type: lambda_core::LambdaType::Standalone,
            version: 1,
            artifact: lambda_core::Artifact::Image {
                reference: format!("{}/luna-lambda/{id}:v1", it_env("LAMBDA_IT_REGISTRY")),
                digest: None,
            },
            parameters: lambda_core::Parameters::default(),
            replicas: 1,
        })
        .await;
    let orphan = orphan.to_string();
    until("the orphan is removed", || objects_of(&orphan).is_empty()).await;

    let r = s.delete(&id).await;
    assert_eq!(r.status(), 204);
    until("delete leaves nothing behind", || {
        objects_of(&id).is_empty()
    })
    .await;
    s.stop().await;
}

/// Pods of a lambda that are not being deleted.
fn live_pods(id: &str) -> usize {
    let pods: serde_json::Value = serde_json::from_str(&kubectl(&[
        "get",
        "pods",
        "--all-namespaces",
        "-l",
        &format!("luna-lambda.io/id={id}"),
        "-o",
        "json",
    ]))
    .unwrap();
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_scale_with_the_load_and_to_zero() {
    sim();
    let dir = tempfile::tempdir().unwrap();
    let mut vars: HashMap<String, String> = docker_builder_vars().into_iter().collect();
    vars.extend(
        [
            ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "kubernetes".into()),
            ("LUNA_LAMBDA_ORCHESTRATOR_KUBECONFIG", it_env("KUBECONFIG")),
            (
                "LUNA_LAMBDA_ORCHESTRATOR_INSTANCE",
                format!("e2e-{}", uuid::Uuid::new_v4()),
            ),
            (
                "LUNA_LAMBDA_ORCHESTRATOR_ENDPOINT",
                "http://{pod_ip}:8000".into(),
            ),
            ("LUNA_LAMBDA_SCALE_CHECK_INTERVAL_MS", "100".into()),
            ("LUNA_LAMBDA_SCALE_SCALE_DOWN_AFTER_SECS", "2".into()),
        ]
        .map(|(k, v): (&str, String)| (k.to_owned(), v)),
    );
    let cfg = lambda_server::Config::load(None, &vars).unwrap();
    let s = Server::start(cfg.platform(dir.path(), &vars).await.unwrap()).await;
    common::scale::idles_and_wakes_for_50_requests(&s, &live_pods).await;
    common::scale::scales_up_and_back_with_no_failed_request(&s, &live_pods).await;
    common::scale::a_failing_wake_answers_every_held_request_with_the_crash(&s).await;
    s.stop().await;
}

/// `[builder] kind = "kubernetes"` with `[orchestrator] kind = "kubernetes"`, and no Docker
/// engine in the server's environment: a lambda with requirements is built by a Job, a code-only
/// update by assembly alone, both run and answer; instructions the build agent cannot honour are
/// refused at upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_build_server_end_to_end_without_a_docker_engine() {
    sim();
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("e2e-build-{}", uuid::Uuid::new_v4());
    let vars: HashMap<String, String> = [
        ("LAMBDA_REGISTRY", it_env("LAMBDA_IT_REGISTRY")),
        ("LUNA_LAMBDA_BUILDER_KIND", "kubernetes".into()),
        ("LUNA_LAMBDA_BUILDER_BASE_TAG", it_env("LAMBDA_IT_BASE_TAG")),
        (
            "LUNA_LAMBDA_BUILDER_PIP_CA_BUNDLE",
            std::env::var("SSL_CERT_FILE")
                .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into()),
        ),
        ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "kubernetes".into()),
        ("LUNA_LAMBDA_ORCHESTRATOR_KUBECONFIG", it_env("KUBECONFIG")),
        ("LUNA_LAMBDA_ORCHESTRATOR_INSTANCE", instance.clone()),
        (
            "LUNA_LAMBDA_ORCHESTRATOR_ENDPOINT",
            "http://{pod_ip}:8000".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert!(!vars.contains_key("DOCKER_HOST"));
    let cfg = lambda_server::Config::load(None, &vars).unwrap();
    let platform = cfg.platform(dir.path(), &vars).await.unwrap();
    let s = Server::start(platform).await;

    let reqs = format!("six==1.17.0\n# {instance}\n");
    let code = |v: u32| {
        zip_of(&[
            (
                "lambda_main.py",
                &format!(
                    "import six\n\nasync def main(request):\n    return {{'v': {v}, 'six': six.__version__}}\n"
                ),
            ),
            ("requirements.txt", &reqs),
        ])
    };
    let id = created_id(s.create("kube-built", &code(1), None).await).await;
    s.wait_for(&id, "running", "completed").await;
    let (status, body) = s.invoke(&id, serde_json::json!({})).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"v": 1, "six": "1.17.0"}))
    );
    let log = s.build_log(&id).await;
    assert!(log.contains("==> build job"), "{log}");

    assert!(s.update(&id, &code(2)).await.status().is_success());
    s.serving(&id, 2).await;
    s.answers(&id, "version 2", |b| b["v"] == 2).await;
    let log = s.build_log(&id).await;
    assert!(log.contains("is in the registry: no build job"), "{log}");

    let refused = s
        .create(
            "kube-copy",
            &returning(1),
            Some(r#"{"user_docker_commands": ["COPY extra.txt /opt/"]}"#),
        )
        .await;
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("COPY is not supported by the Kubernetes builder")
            && body.contains("user_docker_commands[0]"),
        "{body}"
    );
    // A failing step: image status `error`, the step and its output in the build log.
    let failing = created_id(
        s.create(
            "kube-failing",
            &returning(1),
            Some(r#"{"user_docker_commands": ["RUN echo cannot build this && exit 3"]}"#),
        )
        .await,
    )
    .await;
    s.wait_for(&failing, "terminated", "error").await;
    let log = s.build_log(&failing).await;
    assert!(
        log.contains("cannot build this")
            && log.contains("step 1/1 failed (exit code 3): RUN echo cannot build this && exit 3"),
        "{log}"
    );
    assert!(s.delete(&failing).await.status().is_success());
    assert!(s.delete(&id).await.status().is_success());
    s.stop().await;
}
