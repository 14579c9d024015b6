//! The Kubernetes orchestrator across a restart of the API server (scripts/infra/
//! kube-restart-apiserver): its watches resume, and status, crash counting, endpoints and new
//! deploys work as before. A test binary of its own, so no other test sees the API server go
//! away (cargo runs test binaries one after another). Built and run when LAMBDA_IT lists
//! kubernetes (feature `needs-kubernetes`).

mod conformance;
use lambda_testkit::kube_sim;

use conformance::*;
use kube_sim::sim;
use lambda_core::{LambdaId, Parameters};
use lambda_deploy::{KubeCredentials, KubeOrchestrator, KubeOrchestratorConfig, Orchestrator};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_after_the_api_server_restarts() {
    sim();
    let orch = KubeOrchestrator::open(KubeOrchestratorConfig {
        credentials: KubeCredentials::Kubeconfig {
            path: Some(env("KUBECONFIG").into()),
            context: None,
        },
        instance: format!("test-{}", LambdaId::new()),
        endpoint: "http://{pod_ip}:8000".into(),
        start_timeout: Duration::from_secs(60),
        ..KubeOrchestratorConfig::default()
    })
    .await
    .unwrap();
    let id = LambdaId::new();
    let art = docker_image(id, 1, example_files("hello")).await;
    orch.deploy(spec(id, "survivor", 1, art.clone(), Parameters::default()))
        .await
        .unwrap();

    let restart =
        std::process::Command::new(workspace().join("scripts/infra/kube-restart-apiserver"))
            .output()
            .unwrap();
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    assert!(orch.health().await.is_ok());
    // A change made after the restart reaches the orchestrator through its resumed watch.
    let r = sim().running(&id.to_string()).into_iter().next().unwrap();
    kill(r.pid);
    eventually(
        "the restart is seen after the API server came back",
        Duration::from_secs(60),
        async || {
            let st = orch.status(&id).await.unwrap();
            st.replicas.first().is_some_and(|r| r.restarts == 1) && st.all_running()
        },
    )
    .await;
    let (status, _) = post(&orch.endpoint(&id).unwrap(), serde_json::json!(1))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // New work goes on.
    let second = LambdaId::new();
    orch.deploy(spec(second, "after", 1, art, Parameters::default()))
        .await
        .unwrap();
    assert_eq!(orch.list().await.unwrap().len(), 2);
    orch.undeploy(&id).await.unwrap();
    orch.undeploy(&second).await.unwrap();
}
