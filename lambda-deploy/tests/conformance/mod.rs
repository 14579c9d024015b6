//! The orchestrator conformance suite: every case talks to the orchestrator through the
//! `Orchestrator` trait only; a `Harness` gives what a case cannot do through the trait (build an
//! artifact the orchestrator runs, crash a replica, see whether a replica still exists).
//! Each implementation instantiates it with `orchestrator_conformance!`.
#![allow(dead_code, unreachable_pub)]

use lambda_core::{Artifact, LambdaId, LambdaName, LambdaType, Parameters};
use lambda_deploy::{DeploySpec, Orchestrator, ReplicaPhase};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the suite needs besides the trait.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// The orchestrator under test.
    fn orchestrator(&self) -> Arc<dyn Orchestrator>;
    /// An artifact of these files that this orchestrator can run.
    async fn artifact(&self, id: LambdaId, version: u64, files: Vec<(String, Vec<u8>)>)
    -> Artifact;
    /// Kills the first replica of a lambda abruptly, as a crash would.
    fn crash(&self, id: &LambdaId);
    /// An identity per running replica (pid, container id, pod uid, ...).
    fn replica_ids(&self, id: &LambdaId) -> Vec<String>;
    /// Whether the replica with this identity still exists.
    fn alive(&self, replica: &str) -> bool;
}

/// A setting of the real-infrastructure suites (panics with what to start when missing).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the services LAMBDA_IT lists with scripts/infra/ and the base images with scripts/base-images/")
    })
}

/// The Docker builder on the test engine, registry and base images.
pub fn docker_builder() -> lambda_build::DockerBuilder {
    lambda_build::DockerBuilder::connect(lambda_build::DockerBuilderConfig {
        docker_host: env("DOCKER_HOST"),
        registry: Some(env("LAMBDA_IT_REGISTRY")),
        base_tag: env("LAMBDA_IT_BASE_TAG"),
        network_mode: Some("host".into()),
        pip_ca_bundle: Some(
            std::env::var("SSL_CERT_FILE")
                .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into())
                .into(),
        ),
        pip_index_url: None,
        registry_auth: None,
        insecure_registries: Vec::new(),
    })
    .unwrap()
}

/// An image of these files, built by the Docker builder and pushed to the test registry.
pub async fn docker_image(id: LambdaId, version: u64, files: Vec<(String, Vec<u8>)>) -> Artifact {
    use lambda_build::{BuildRequest, ImageBuilder};
    let bytes = lambda_core::pack::pack_files(files);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let req = BuildRequest {
        lambda_id: id,
        version,
        lambda_type: LambdaType::Standalone,
        archive: lambda_core::archive::validate_bytes(
            &bytes,
            &lambda_core::archive::Limits::default(),
        )
        .unwrap(),
        archive_bytes: bytes::Bytes::from(bytes),
        parameters: Parameters::default(),
        timeout: Duration::from_secs(600),
    };
    docker_builder()
        .build(req, tx, CancellationToken::new())
        .await
        .unwrap()
}

/// Kills a process abruptly, as a crash would.
pub fn kill(pid: i64) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

pub use lambda_testkit::workspace;

pub fn example_files(name: &str) -> Vec<(String, Vec<u8>)> {
    example_files_of(name, LambdaType::Standalone)
}

/// The files of `examples/<name>`, a lambda of type `kind`.
pub fn example_files_of(name: &str, kind: LambdaType) -> Vec<(String, Vec<u8>)> {
    let bytes = lambda_core::pack::pack_dir(&workspace().join("examples").join(name)).unwrap();
    let archive = lambda_core::archive::validate_bytes_for(
        &bytes,
        &lambda_core::archive::Limits::default(),
        kind,
    )
    .unwrap_or_else(|r| panic!("examples/{name}: {r:?}"));
    let mut out = Vec::new();
    lambda_core::archive::for_each_user_file::<_, std::io::Error>(
        std::io::Cursor::new(&bytes[..]),
        &archive,
        |n, d| {
            out.push((n.to_owned(), d.to_vec()));
            Ok(())
        },
    )
    .unwrap();
    out.sort();
    out
}

pub fn spec(
    id: LambdaId,
    name: &str,
    version: u64,
    artifact: Artifact,
    params: Parameters,
) -> DeploySpec {
    DeploySpec {
        lambda_id: id,
        lambda_name: LambdaName::parse(name).unwrap(),
        lambda_type: LambdaType::Standalone,
        version,
        artifact,
        replicas: params.deploy_parameters.pod_count,
        parameters: params,
    }
}

pub async fn post(url: &str, body: serde_json::Value) -> reqwest::Result<(u16, serde_json::Value)> {
    let r = reqwest::Client::new()
        .post(format!("{url}/main"))
        .json(&body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

pub async fn eventually(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f().await {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn two_replicas_answer_round_robin_and_undeploy_leaves_nothing(h: &dyn Harness) {
    let orch = h.orchestrator();
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("hello")).await;
    let mut params = Parameters::default();
    params.deploy_parameters.pod_count = 2;
    orch.deploy(spec(id, "hello", 1, art, params))
        .await
        .unwrap();
    let st = orch.status(&id).await.unwrap();
    assert!(st.all_running(), "{st:?}");
    assert_eq!(st.replicas.len(), 2);
    let a = orch.endpoint(&id).unwrap();
    let b = orch.endpoint(&id).unwrap();
    assert_ne!(a, b, "round robin over two replicas");
    let (status, body) = post(&a, serde_json::json!({"x": 1})).await.unwrap();
    assert_eq!((status, body), (200, serde_json::json!({"echo": {"x": 1}})));
    assert_eq!(orch.list().await.unwrap().len(), 1);
    let logs = orch.logs(&id, Some(10)).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert!(
        logs.values()
            .all(|l| l.contains("serving standalone lambda")),
        "{logs:?}"
    );
    let pids = h.replica_ids(&id);
    orch.undeploy(&id).await.unwrap();
    assert!(
        pids.iter().all(|p| !h.alive(p)),
        "processes survived undeploy"
    );
    assert!(orch.endpoint(&id).is_none());
    assert!(matches!(
        orch.status(&id).await,
        Err(lambda_deploy::Error::NotFound(_))
    ));
    orch.undeploy(&id).await.unwrap(); // idempotent
}

pub async fn scale_changes_the_count_without_a_rollout(h: &dyn Harness) {
    let orch = h.orchestrator();
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("hello")).await;
    orch.deploy(spec(id, "scaled", 1, art, Parameters::default()))
        .await
        .unwrap();
    let first = h.replica_ids(&id);
    assert_eq!(first.len(), 1);
    // Up: the replica that ran keeps running (no rollout), two more join it.
    orch.scale(&id, 3).await.unwrap();
    let st = orch.status(&id).await.unwrap();
    assert!(st.all_running(), "{st:?}");
    assert_eq!((st.replicas.len(), st.version), (3, 1), "{st:?}");
    let three = h.replica_ids(&id);
    assert_eq!(three.len(), 3);
    assert!(
        three.contains(&first[0]),
        "{first:?} was replaced: {three:?}"
    );
    let urls: std::collections::HashSet<String> =
        (0..6).filter_map(|_| orch.endpoint(&id)).collect();
    assert_eq!(urls.len(), 3, "requests balance over the three: {urls:?}");
    // Down to zero: nothing runs, nothing is routed, the deployment stays.
    orch.scale(&id, 0).await.unwrap();
    assert!(orch.endpoint(&id).is_none());
    eventually(
        "the replicas to stop",
        Duration::from_secs(60),
        async || three.iter().all(|r| !h.alive(r)),
    )
    .await;
    assert!(orch.status(&id).await.unwrap().replicas.is_empty());
    assert_eq!(orch.list().await.unwrap().len(), 1, "still deployed");
    // And back: a replica of the same version answers.
    orch.scale(&id, 1).await.unwrap();
    let url = orch
        .endpoint(&id)
        .expect("a replica after scaling up from zero");
    let (status, body) = post(&url, serde_json::json!({"x": 2})).await.unwrap();
    assert_eq!((status, body), (200, serde_json::json!({"echo": {"x": 2}})));
    assert_eq!(orch.status(&id).await.unwrap().version, 1);
    orch.undeploy(&id).await.unwrap();
    assert!(matches!(
        orch.scale(&id, 1).await,
        Err(lambda_deploy::Error::NotFound(_))
    ));
}

pub async fn every_example_builds_and_runs(h: &dyn Harness) {
    let orch = h.orchestrator();
    let cases: Vec<(&str, LambdaType, serde_json::Value, u16, &str)> = vec![
        (
            "hello",
            LambdaType::Standalone,
            serde_json::json!({"a": 1}),
            200,
            "echo",
        ),
        (
            "handlers",
            LambdaType::Handlers,
            serde_json::json!({"sources": [{"filename": "a.jpg"}]}),
            200,
            "sources",
        ),
        (
            "with-requirements",
            LambdaType::Standalone,
            serde_json::json!({}),
            200,
            "six_version",
        ),
        (
            "with-docs",
            LambdaType::Standalone,
            serde_json::json!({}),
            200,
            "greeting",
        ),
        (
            "user-context",
            LambdaType::Standalone,
            serde_json::json!({}),
            200,
            "count",
        ),
        (
            "user-exception",
            LambdaType::Standalone,
            serde_json::json!({"age": "x"}),
            422,
            "detail",
        ),
    ];
    for (name, ty, body, want_status, want_key) in cases {
        let id = LambdaId::new();
        let art = h.artifact(id, 1, example_files(name)).await;
        let mut s = spec(id, name, 1, art, Parameters::default());
        s.lambda_type = ty;
        orch.deploy(s)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let url = orch.endpoint(&id).unwrap();
        let (status, got) = post(&url, body).await.unwrap();
        assert_eq!(status, want_status, "{name}: {got}");
        assert!(got.get(want_key).is_some(), "{name}: {got}");
        orch.undeploy(&id).await.unwrap();
    }
}

pub async fn a_crashed_replica_comes_back_with_its_restart_counted(h: &dyn Harness) {
    let orch = h.orchestrator();
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("hello")).await;
    orch.deploy(spec(id, "crashy", 1, art, Parameters::default()))
        .await
        .unwrap();
    let pid = h.replica_ids(&id)[0].clone();
    h.crash(&id);
    eventually(
        "the replica is counted as restarted and runs again",
        Duration::from_secs(30),
        async || {
            let st = orch.status(&id).await.unwrap();
            st.replicas[0].restarts == 1 && st.replicas[0].phase == ReplicaPhase::Running
        },
    )
    .await;
    let st = orch.status(&id).await.unwrap();
    assert!(
        st.replicas[0].reason.is_none(),
        "a running replica carries no reason"
    );
    let new_pid = h.replica_ids(&id)[0].clone();
    assert_ne!(new_pid, pid);
    let (status, _) = post(&orch.endpoint(&id).unwrap(), serde_json::json!(1))
        .await
        .unwrap();
    assert_eq!(status, 200);
    orch.undeploy(&id).await.unwrap();
}

pub async fn a_lambda_that_fails_at_import_does_not_start_and_says_why(h: &dyn Harness) {
    let orch = h.orchestrator();
    let id = LambdaId::new();
    let files = vec![(
        "lambda_main.py".to_owned(),
        b"import definitely_missing_module_xyz\n\nasync def main(request):\n    return {}\n"
            .to_vec(),
    )];
    let art = h.artifact(id, 1, files).await;
    let e = orch
        .deploy(spec(id, "broken", 1, art, Parameters::default()))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, lambda_deploy::Error::StartFailed { .. }),
        "{msg}"
    );
    assert!(msg.contains("definitely_missing_module_xyz"), "{msg}");
    assert!(
        orch.list().await.unwrap().is_empty(),
        "a failed first deploy leaves nothing running"
    );
}

pub async fn an_update_drops_no_request(h: &dyn Harness) {
    let orch = h.orchestrator();
    let id = LambdaId::new();
    let v1 = vec![(
        "lambda_main.py".to_owned(),
        b"async def main(request):\n    return {'v': 1}\n".to_vec(),
    )];
    let v2 = vec![(
        "lambda_main.py".to_owned(),
        b"async def main(request):\n    return {'v': 2}\n".to_vec(),
    )];
    let a1 = h.artifact(id, 1, v1).await;
    let a2 = h.artifact(id, 2, v2).await;
    orch.deploy(spec(id, "rolling", 1, a1, Parameters::default()))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let ok = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let v2 = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let looper = {
        let (orch, stop, ok, v2) = (orch.clone(), stop.clone(), ok.clone(), v2.clone());
        tokio::spawn(async move {
            use std::sync::atomic::Ordering::Relaxed;
            let client = reqwest::Client::new();
            let mut failed = Vec::new();
            while !stop.is_cancelled() {
                // As the proxy does: resolve per request, retry once if the connection is refused
                // (the request never reached a lambda).
                let mut attempt = 0;
                loop {
                    let Some(url) = orch.endpoint(&id) else {
                        failed.push("no endpoint".to_owned());
                        break;
                    };
                    match client.post(format!("{url}/main")).body("{}").send().await {
                        Ok(r) if r.status().is_success() => {
                            let v: serde_json::Value = r.json().await.unwrap();
                            if v["v"] == 2 {
                                v2.fetch_add(1, Relaxed);
                            }
                            ok.fetch_add(1, Relaxed);
                            break;
                        }
                        Ok(r) => {
                            failed.push(format!("status {}", r.status()));
                            break;
                        }
                        Err(e) if e.is_connect() && attempt == 0 => attempt += 1,
                        Err(e) => {
                            failed.push(e.to_string());
                            break;
                        }
                    }
                }
            }
            failed
        })
    };
    use std::sync::atomic::Ordering::Relaxed;
    eventually(
        "the loop runs against v1",
        Duration::from_secs(10),
        async || ok.load(Relaxed) >= 20,
    )
    .await;
    orch.deploy(spec(id, "rolling", 2, a2, Parameters::default()))
        .await
        .unwrap();
    eventually(
        "the loop runs against v2",
        Duration::from_secs(10),
        async || v2.load(Relaxed) >= 20,
    )
    .await;
    stop.cancel();
    let failed = looper.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok.load(Relaxed) > 40);
    assert_eq!(orch.status(&id).await.unwrap().version, 2);
    orch.undeploy(&id).await.unwrap();
}

pub async fn a_config_change_restarts_with_the_new_user_config(h: &dyn Harness) {
    let orch = h.orchestrator();
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("user-context")).await;
    let mut p = Parameters {
        user_config: Some(serde_json::json!({"threshold": 1})),
        ..Parameters::default()
    };
    orch.deploy(spec(id, "cfg", 1, art.clone(), p.clone()))
        .await
        .unwrap();
    let (_, body) = post(&orch.endpoint(&id).unwrap(), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(body["config"], serde_json::json!({"threshold": 1}));
    // Same spec again: nothing restarts.
    let before = h.replica_ids(&id);
    orch.deploy(spec(id, "cfg", 1, art.clone(), p.clone()))
        .await
        .unwrap();
    assert_eq!(h.replica_ids(&id), before);
    p.user_config = Some(serde_json::json!({"threshold": 2}));
    orch.deploy(spec(id, "cfg", 1, art, p)).await.unwrap();
    let (_, body) = post(&orch.endpoint(&id).unwrap(), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(body["config"], serde_json::json!({"threshold": 2}));
    assert_eq!(body["count"], 1, "a fresh process after the config change");
    assert!(before.iter().all(|p| !h.alive(p)), "old replicas stopped");
    orch.undeploy(&id).await.unwrap();
}

pub async fn logs_follow_new_lines(h: &dyn Harness) {
    use futures::StreamExt;
    let orch = h.orchestrator();
    let id = LambdaId::new();
    let files = vec![(
        "lambda_main.py".to_owned(),
        b"from luna_lambda_tools import logger\n\nasync def main(request):\n    logger.info('handled %s', request.json)\n    return {}\n".to_vec(),
    )];
    let art = h.artifact(id, 1, files).await;
    orch.deploy(spec(id, "chatty", 1, art, Parameters::default()))
        .await
        .unwrap();
    let mut follow = orch.follow_logs(&id).await.unwrap();
    post(
        &orch.endpoint(&id).unwrap(),
        serde_json::json!("marker-123"),
    )
    .await
    .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let l = follow.next().await.unwrap();
            if l.contains("marker-123") {
                return l;
            }
        }
    })
    .await
    .unwrap();
    let replica = orch.status(&id).await.unwrap().replicas[0].name.clone();
    assert!(line.starts_with(&format!("[{replica}] ")), "{line}");
    let tail = orch.logs(&id, Some(1)).await.unwrap();
    assert_eq!(tail.values().next().unwrap().lines().count(), 1);
    orch.undeploy(&id).await.unwrap();
}

/// One `#[tokio::test]` per case, for a harness constructor `async fn() -> impl Harness`.
#[macro_export]
macro_rules! orchestrator_conformance {
    ($harness:path) => {
        $crate::orchestrator_conformance!(@cases $harness;
            two_replicas_answer_round_robin_and_undeploy_leaves_nothing,
            scale_changes_the_count_without_a_rollout,
            every_example_builds_and_runs,
            a_crashed_replica_comes_back_with_its_restart_counted,
            a_lambda_that_fails_at_import_does_not_start_and_says_why,
            an_update_drops_no_request,
            a_config_change_restarts_with_the_new_user_config,
            logs_follow_new_lines
        );
    };
    (@cases $harness:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let h = $harness().await;
                $crate::conformance::$case(&h).await;
            }
        )*
    };
}
