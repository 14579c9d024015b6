//! The Docker orchestrator against a real engine and registry, through the conformance suite
//! (tests/conformance), with images built by the Docker builder. Built and run when LAMBDA_IT
//! lists docker (feature `needs-docker`); then a missing engine FAILS these tests.

mod conformance;

use conformance::*;
use lambda_core::{Artifact, LambdaId, Parameters};
use lambda_deploy::{DockerOrchestrator, DockerOrchestratorConfig, Orchestrator};
use std::sync::Arc;
use std::time::Duration;

struct DockerHarness {
    orch: Arc<DockerOrchestrator>,
    docker: bollard::Docker,
}

async fn docker_harness() -> DockerHarness {
    let host = env("DOCKER_HOST");
    let mut cfg = DockerOrchestratorConfig::new(&host);
    cfg.start_timeout = Duration::from_secs(60);
    cfg.stop_grace = Duration::from_secs(5);
    // Each test is a platform of its own on the shared engine.
    cfg.instance = format!("test-{}", LambdaId::new());
    let orch = DockerOrchestrator::open(cfg).await.unwrap();
    let docker = bollard::Docker::connect_with_unix(
        host.trim_start_matches("unix://"),
        60,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    DockerHarness { orch, docker }
}

impl DockerHarness {
    fn containers(&self, id: &LambdaId) -> Vec<String> {
        let filters: std::collections::HashMap<&str, Vec<String>> =
            [("label", vec![format!("luna-lambda.io/id={id}")])]
                .into_iter()
                .collect();
        let docker = self.docker.clone();
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(docker.list_containers(Some(opts)))
                .unwrap()
        })
        .join()
        .unwrap();
        let mut names: Vec<(String, String)> = list
            .into_iter()
            .map(|c| {
                (
                    c.labels
                        .unwrap_or_default()
                        .get("luna-lambda.io/replica")
                        .cloned()
                        .unwrap_or_default(),
                    c.id.unwrap_or_default(),
                )
            })
            .collect();
        names.sort();
        names.into_iter().map(|(_, id)| id).collect()
    }

    fn pid(&self, container: &str) -> Option<i64> {
        let docker = self.docker.clone();
        let c = container.to_owned();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(docker.inspect_container(
                    &c,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                ))
                .ok()
                .and_then(|i| i.state)
                .and_then(|s| s.pid)
                .filter(|p| *p > 0)
        })
        .join()
        .unwrap()
    }
}

#[async_trait::async_trait]
impl Harness for DockerHarness {
    fn orchestrator(&self) -> Arc<dyn Orchestrator> {
        Arc::new(self.orch.clone())
    }

    async fn artifact(
        &self,
        id: LambdaId,
        version: u64,
        files: Vec<(String, Vec<u8>)>,
    ) -> Artifact {
        docker_image(id, version, files).await
    }

    fn crash(&self, id: &LambdaId) {
        // Kill the lambda's process inside the first container (the engine restarts it).
        let c = self.containers(id).into_iter().next().expect("a container");
        let pid = self.pid(&c).expect("a running container");
        kill(pid);
    }

    fn replica_ids(&self, id: &LambdaId) -> Vec<String> {
        self.containers(id)
            .iter()
            .filter_map(|c| self.pid(c))
            .map(|p| p.to_string())
            .collect()
    }

    fn alive(&self, replica: &str) -> bool {
        lambda_testkit::pid_alive(replica)
    }
}

orchestrator_conformance!(docker_harness);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_readopts_its_containers() {
    let h = docker_harness().await;
    let instance = {
        // The harness's instance, read back from a deployed container's labels.
        let id = LambdaId::new();
        let art = h.artifact(id, 1, example_files("hello")).await;
        h.orch
            .deploy(spec(id, "adopted", 1, art, Parameters::default()))
            .await
            .unwrap();
        (id, h.replica_ids(&id))
    };
    let (id, before) = instance;
    let labels = {
        let c = h.containers(&id).into_iter().next().unwrap();
        let i = h
            .docker
            .inspect_container(
                &c,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .unwrap();
        // Hardened: no capabilities, no privilege gain, the image's non-root user.
        let host = i.host_config.clone().unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        let user = i
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        assert!(
            !user.is_empty() && user != "root" && user != "0",
            "user {user:?}"
        );
        i.config.and_then(|c| c.labels).unwrap_or_default()
    };
    let mut cfg = DockerOrchestratorConfig::new(env("DOCKER_HOST"));
    cfg.instance = labels.get("luna-lambda.io/instance").cloned().unwrap();
    let second = DockerOrchestrator::open(cfg).await.unwrap();
    let st = Orchestrator::status(&second, &id).await.unwrap();
    assert!(st.all_running(), "{st:?}");
    assert_eq!(h.replica_ids(&id), before, "re-adopted, not started again");
    let (status, _) = post(
        &Orchestrator::endpoint(&second, &id).unwrap(),
        serde_json::json!(1),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    Orchestrator::undeploy(&second, &id).await.unwrap();
    assert!(before.iter().all(|p| !h.alive(p)));
}
