//! The Kubernetes orchestrator against a real control plane (kube-apiserver, controller-manager
//! and scheduler from scripts/infra/kube-start), with the pods run by the node simulator
//! (tests/kube_sim) on the Docker engine, images built by the Docker builder. Built and run when
//! LAMBDA_IT lists kubernetes (feature `needs-kubernetes`); then a missing cluster FAILS these
//! tests.

mod conformance;
use lambda_testkit::{kube_sim, start_gate};

use conformance::*;
use kube_sim::{kubectl, kubectl_apply, sim};
use lambda_core::{Artifact, LambdaId, Parameters};
use lambda_deploy::{
    Error, KubeCredentials, KubeOrchestrator, KubeOrchestratorConfig, Orchestrator, ReplicaPhase,
};
use start_gate::{gate, gated_main};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

struct KubeHarness {
    orch: Arc<KubeOrchestrator>,
    instance: String,
}

fn config(instance: &str) -> KubeOrchestratorConfig {
    KubeOrchestratorConfig {
        credentials: KubeCredentials::Kubeconfig {
            path: Some(env("KUBECONFIG").into()),
            context: None,
        },
        instance: instance.to_owned(),
        // The simulated pods listen on their own loopback address.
        endpoint: "http://{pod_ip}:8000".into(),
        start_timeout: Duration::from_secs(60),
        stop_timeout: Duration::from_secs(30),
        ..KubeOrchestratorConfig::default()
    }
}

async fn kube_harness() -> KubeHarness {
    sim();
    // Each test is a platform of its own in the shared cluster.
    let instance = format!("test-{}", LambdaId::new());
    let orch = KubeOrchestrator::open(config(&instance)).await.unwrap();
    KubeHarness { orch, instance }
}

#[async_trait::async_trait]
impl Harness for KubeHarness {
    fn orchestrator(&self) -> Arc<dyn Orchestrator> {
        self.orch.clone()
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
        let r = sim().running(&id.to_string()).into_iter().next().unwrap();
        kill(r.pid);
    }

    fn replica_ids(&self, id: &LambdaId) -> Vec<String> {
        sim()
            .running(&id.to_string())
            .into_iter()
            .map(|r| r.container)
            .collect()
    }

    fn alive(&self, replica: &str) -> bool {
        sim().alive(replica)
    }
}

orchestrator_conformance!(kube_harness);

fn json_of(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&kubectl(args)).unwrap()
}

fn objects_of(id: &LambdaId) -> String {
    kubectl(&[
        "get",
        "deployments,replicasets,services,configmaps,pods",
        "--all-namespaces",
        "-l",
        &format!("luna-lambda.io/id={id}"),
        "-o",
        "name",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deploy_parameter_reaches_the_objects_and_delete_leaves_nothing() {
    let h = kube_harness().await;
    let mut cfg = config(&h.instance);
    cfg.image_pull_secrets = vec!["regcred".into()];
    let h = KubeHarness {
        orch: KubeOrchestrator::open(cfg).await.unwrap(),
        instance: h.instance,
    };
    let ns = "lambdas-it";
    if !kubectl(&["get", "namespaces", "-o", "name"]).contains(&format!("namespace/{ns}\n")) {
        let _ = std::process::Command::new("kubectl")
            .args(["create", "namespace", ns])
            .output();
    }
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("user-context")).await;
    let params: Parameters = serde_json::from_value(serde_json::json!({
        "workers": 2,
        "env": {"GREETING": "hi"},
        "user_config": {"threshold": 7},
        "deploy_parameters": {
            "pod_count": 2,
            "namespace": ns,
            "selector": {"luna-lambda.io/disk": "ssd"},
            "enable_gpu": true,
            "resources": {"cpu_request": "100m", "cpu_limit": "1", "memory_request": "64Mi", "memory_limit": "256Mi"},
        },
    }))
    .unwrap();
    let writes = h.orch.api_writes();
    h.orch
        .deploy(spec(id, "every-param", 1, art, params))
        .await
        .unwrap();
    assert_eq!(h.orch.api_writes() - writes, 3, "a deploy is three applies");
    let name = format!("lambda-{id}");
    let d = json_of(&["-n", ns, "get", "deployment", &name, "-o", "json"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(
        d["metadata"]["labels"]["luna-lambda.io/instance"],
        h.instance
    );
    assert_eq!(d["metadata"]["labels"]["luna-lambda.io/version"], "1");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["luna-lambda.io/disk"], "ssd");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    let c = &pod["containers"][0];
    assert_eq!(c["resources"]["requests"]["cpu"], "100m");
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthcheck");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthcheck");
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for want in [
        ("GREETING", "hi"),
        ("LAMBDA_WORKERS", "2"),
        ("LAMBDA_VERSION", "1"),
    ] {
        assert!(
            env.contains(&(want.0.into(), want.1.into())),
            "{want:?} in {env:?}"
        );
    }
    let cm = json_of(&["-n", ns, "get", "configmap", &name, "-o", "json"]);
    assert_eq!(cm["data"]["user_config.json"], r#"{"threshold":7}"#);
    let svc = json_of(&["-n", ns, "get", "service", &name, "-o", "json"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 8000);
    assert_eq!(svc["spec"]["selector"]["luna-lambda.io/id"], id.to_string());
    // The pods run with that configuration.
    let pods = json_of(&[
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        &format!("luna-lambda.io/id={id}"),
        "-o",
        "json",
    ]);
    assert_eq!(pods["items"].as_array().unwrap().len(), 2);
    // Every pod, as the API server stored it, is hardened.
    for p in pods["items"].as_array().unwrap() {
        let spec = &p["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false, "{spec}");
        let sc = &spec["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{sc}");
        assert_eq!(sc["runAsUser"], 1000, "{sc}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");
        let csc = &spec["containers"][0]["securityContext"];
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{csc}");
        assert_eq!(
            csc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{csc}"
        );
        assert!(
            p["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["projected"].is_null()),
            "no service account token volume"
        );
    }
    let (status, body) = post(&h.orch.endpoint(&id).unwrap(), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        (status, &body["config"]),
        (200, &serde_json::json!({"threshold": 7}))
    );
    // Logs through the API server (pods/log).
    let logs = h.orch.logs(&id, Some(50)).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert!(
        logs.values()
            .all(|l| l.contains("serving standalone lambda")),
        "{logs:?}"
    );
    let writes = h.orch.api_writes();
    h.orch.undeploy(&id).await.unwrap();
    assert_eq!(h.orch.api_writes() - writes, 3);
    assert_eq!(objects_of(&id), "", "nothing left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_is_reported_with_the_last_output() {
    let h = kube_harness().await;
    let id = LambdaId::new();
    let files = vec![(
        "lambda_main.py".to_owned(),
        b"import os, sys\n\nasync def main(request):\n    if request.json == 'die':\n        print('dying on purpose', file=sys.stderr, flush=True)\n        os._exit(3)\n    return {}\n".to_vec(),
    )];
    let art = h.artifact(id, 1, files).await;
    h.orch
        .deploy(spec(id, "crashloop", 1, art, Parameters::default()))
        .await
        .unwrap();
    let url = h.orch.endpoint(&id).unwrap();
    let _ = post(&url, serde_json::json!("die")).await;
    let mut seen = None;
    eventually(
        "status shows CrashLoopBackOff with the output",
        Duration::from_secs(20),
        async || {
            let st = h.orch.status(&id).await.unwrap();
            let r = &st.replicas[0];
            if r.phase == ReplicaPhase::Restarting {
                seen = r.reason.clone();
            }
            seen.is_some()
        },
    )
    .await;
    let reason = seen.unwrap();
    assert!(
        reason.starts_with("CrashLoopBackOff: exit code 3"),
        "{reason}"
    );
    assert!(reason.contains("dying on purpose"), "{reason}");
    eventually("it runs again", Duration::from_secs(20), async || {
        let st = h.orch.status(&id).await.unwrap();
        st.all_running() && st.replicas[0].restarts == 1
    })
    .await;
    h.orch.undeploy(&id).await.unwrap();
}

/// A scale up (a wake from zero) whose pod crashes as it starts fails with the crash, and leaves
/// no crashed pod in place: one kept would fail the next scale up with its old crash (the
/// ReplicaSet keeps its pod when the count goes back and up again before its controller acts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scale_up_leaves_no_crashed_pod_for_the_next_one() {
    let h = kube_harness().await;
    let (gate_url, crash) = gate().await;
    let id = LambdaId::new();
    let files = vec![("lambda_main.py".to_owned(), gated_main("GATE").into_bytes())];
    let art = h.artifact(id, 1, files).await;
    let mut p = Parameters::default();
    p.env.insert("GATE".into(), gate_url);
    h.orch.deploy(spec(id, "gated", 1, art, p)).await.unwrap();
    h.orch.scale(&id, 0).await.unwrap();
    crash.store(true, Ordering::SeqCst);
    let e = h.orch.scale(&id, 1).await.unwrap_err().to_string();
    assert!(e.contains("the gate says crash"), "{e}");
    let kept = h.orch.status(&id).await.unwrap().replicas;
    assert!(
        kept.is_empty(),
        "crashed pods kept after the failed scale up: {kept:?}"
    );
    crash.store(false, Ordering::SeqCst);
    h.orch.scale(&id, 1).await.unwrap();
    assert!(h.orch.status(&id).await.unwrap().all_running());
    h.orch.undeploy(&id).await.unwrap();
    assert_eq!(objects_of(&id), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_and_image_pull_failures_say_why_and_leave_nothing() {
    let h = kube_harness().await;
    let mut cfg = config(&h.instance);
    cfg.start_timeout = Duration::from_secs(4);
    let orch = KubeOrchestrator::open(cfg).await.unwrap();
    // No node has this label: the scheduler's message comes back.
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("hello")).await;
    let mut p = Parameters::default();
    p.deploy_parameters
        .selector
        .insert("luna-lambda.io/zone".into(), "nowhere".into());
    let deploying = {
        let orch = orch.clone();
        let s = spec(id, "unschedulable", 1, art, p);
        tokio::spawn(async move { orch.deploy(s).await })
    };
    let mut pending = None;
    eventually(
        "status says Unschedulable",
        Duration::from_secs(4),
        async || {
            if let Ok(st) = orch.status(&id).await
                && let Some(r) = st.replicas.first()
            {
                pending = r.reason.clone();
            }
            pending
                .as_deref()
                .is_some_and(|r| r.contains("Unschedulable"))
        },
    )
    .await;
    let e = deploying.await.unwrap().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::StartFailed { .. }), "{msg}");
    assert!(msg.contains("Unschedulable"), "{msg}");
    assert!(
        msg.contains("node selector") || msg.contains("node affinity"),
        "{msg}"
    );
    assert_eq!(objects_of(&id), "");
    // An image the registry does not have.
    let id = LambdaId::new();
    let missing = Artifact::Image {
        reference: format!("{}/luna-lambda/{id}:v1", env("LAMBDA_IT_REGISTRY")),
        digest: None,
    };
    let e = orch
        .deploy(spec(id, "no-image", 1, missing, Parameters::default()))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("ImagePullBackOff"), "{msg}");
    assert_eq!(objects_of(&id), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_rolls_back_and_the_old_version_keeps_serving() {
    let h = kube_harness().await;
    let id = LambdaId::new();
    let v1 = h.artifact(id, 1, example_files("hello")).await;
    h.orch
        .deploy(spec(id, "rollback", 1, v1, Parameters::default()))
        .await
        .unwrap();
    let before = h.replica_ids(&id);
    let v2 = h
        .artifact(
            id,
            2,
            vec![(
                "lambda_main.py".to_owned(),
                b"raise RuntimeError('broken v2')\n\nasync def main(request):\n    return {}\n"
                    .to_vec(),
            )],
        )
        .await;
    let e = h
        .orch
        .deploy(spec(id, "rollback", 2, v2, Parameters::default()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("broken v2"), "{e}");
    eventually("back to v1 only", Duration::from_secs(20), async || {
        let st = h.orch.status(&id).await.unwrap();
        st.version == 1 && st.all_running() && st.replicas.len() == 1
    })
    .await;
    assert_eq!(h.replica_ids(&id), before, "v1 kept running throughout");
    let (status, _) = post(&h.orch.endpoint(&id).unwrap(), serde_json::json!(1))
        .await
        .unwrap();
    assert_eq!(status, 200);
    h.orch.undeploy(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_readopts_its_lambdas() {
    let h = kube_harness().await;
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("hello")).await;
    h.orch
        .deploy(spec(id, "adopted", 1, art.clone(), Parameters::default()))
        .await
        .unwrap();
    let before = h.replica_ids(&id);
    h.orch.shutdown().await;
    let second = KubeOrchestrator::open(config(&h.instance)).await.unwrap();
    let listed = second.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].lambda_id, listed[0].version), (id, 1));
    let st = second.status(&id).await.unwrap();
    assert!(st.all_running(), "{st:?}");
    // Deploying what runs changes nothing.
    second
        .deploy(spec(id, "adopted", 1, art, Parameters::default()))
        .await
        .unwrap();
    assert_eq!(h.replica_ids(&id), before, "re-adopted, not started again");
    let (status, _) = post(&second.endpoint(&id).unwrap(), serde_json::json!(1))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // Another instance sees none of it.
    let other = KubeOrchestrator::open(config("someone-else"))
        .await
        .unwrap();
    assert!(
        other
            .list()
            .await
            .unwrap()
            .iter()
            .all(|d| d.lambda_id != id)
    );
    second.undeploy(&id).await.unwrap();
    assert!(before.iter().all(|c| !h.alive(c)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_role_is_all_the_platform_needs() {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    sim();
    let ns = "rbac-it";
    if !kubectl(&["get", "namespaces", "-o", "name"]).contains(&format!("namespace/{ns}\n")) {
        let _ = std::process::Command::new("kubectl")
            .args(["create", "namespace", ns])
            .output();
    }
    // The Role, and the NetworkPolicy (which must select what the platform labels).
    for file in ["rbac.yaml", "networkpolicy.yaml"] {
        let manifest = std::fs::read_to_string(workspace().join("deploy/kubernetes").join(file))
            .unwrap()
            .replace("namespace: default", &format!("namespace: {ns}"));
        kubectl_apply(&manifest);
    }
    let np = json_of(&[
        "-n",
        ns,
        "get",
        "networkpolicy",
        "luna-lambda-pods",
        "-o",
        "json",
    ]);
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"][lambda_core::render::labels::MANAGED_BY],
        lambda_core::render::MANAGED_BY
    );
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 8000);
    // The account's token, from the Secret the token controller makes for it.
    let admin = kube::Client::try_from(kube_sim::kubeconfig_client_config().await).unwrap();
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(admin.clone(), ns);
    let mut secret = None;
    eventually("the account's token", Duration::from_secs(30), async || {
        secret = accounts
            .get("luna-lambda")
            .await
            .ok()
            .and_then(|a| a.secrets)
            .and_then(|s| s.into_iter().next())
            .and_then(|r| r.name);
        secret.is_some()
    })
    .await;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(admin, ns);
    let token = secrets.get(&secret.unwrap()).await.unwrap().data.unwrap()["token"]
        .0
        .clone();
    let token = String::from_utf8(token).unwrap();
    // The test kubeconfig, with that token instead of the admin's.
    let admin_kc = std::fs::read_to_string(env("KUBECONFIG")).unwrap();
    let start = admin_kc.find("token: \"").unwrap() + "token: \"".len();
    let end = start + admin_kc[start..].find('"').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!("{}{token}{}", &admin_kc[..start], &admin_kc[end..]),
    )
    .unwrap();
    let instance = format!("test-{}", LambdaId::new());
    let mut cfg = config(&instance);
    cfg.credentials = KubeCredentials::Kubeconfig {
        path: Some(kc),
        context: None,
    };
    cfg.namespaces = vec![ns.into()];
    let orch = KubeOrchestrator::open(cfg.clone()).await.unwrap();
    let id = LambdaId::new();
    // Built in the cluster by the same account: a requirement, so a build Job runs.
    let builder = lambda_build::KubeBuilder::new(
        lambda_deploy::kube::client(&cfg.credentials).await.unwrap(),
        lambda_build::KubeBuilderConfig {
            registry: env("LAMBDA_IT_REGISTRY"),
            base_tag: env("LAMBDA_IT_BASE_TAG"),
            namespace: ns.into(),
            instance: instance.clone(),
            pip_ca_bundle: Some(
                std::env::var("SSL_CERT_FILE")
                    .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into())
                    .into(),
            ),
            ..lambda_build::KubeBuilderConfig::default()
        },
    );
    let mut files = example_files("hello");
    files.push((
        "requirements.txt".into(),
        format!("six==1.17.0\n# {id}\n").into_bytes(),
    ));
    let bytes = lambda_core::pack::pack_files(files);
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel();
    let built = lambda_build::ImageBuilder::build(
        &builder,
        lambda_build::BuildRequest {
            lambda_id: id,
            version: 1,
            lambda_type: lambda_core::LambdaType::Standalone,
            archive: lambda_core::archive::validate_bytes(&bytes, &Default::default()).unwrap(),
            archive_bytes: bytes.into(),
            parameters: Parameters::default(),
            timeout: Duration::from_secs(600),
        },
        log_tx,
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let mut log = String::new();
    while let Ok(l) = log_rx.try_recv() {
        log.push_str(&l);
        log.push('\n');
    }
    let art = built.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("==> build job rbac-it/"), "{log}");
    let mut p = Parameters::default();
    p.deploy_parameters.namespace = ns.into();
    orch.deploy(spec(id, "least-privilege", 1, art, p))
        .await
        .unwrap();
    let (status, _) = post(&orch.endpoint(&id).unwrap(), serde_json::json!(1))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(orch.status(&id).await.unwrap().all_running());
    let logs = orch.logs(&id, Some(5)).await.unwrap();
    assert!(logs.values().all(|l| !l.is_empty()), "{logs:?}");
    // The autoscaler's scale subresource: to zero and back.
    orch.scale(&id, 0).await.unwrap();
    orch.scale(&id, 1).await.unwrap();
    assert!(orch.status(&id).await.unwrap().all_running());
    orch.undeploy(&id).await.unwrap();
    assert_eq!(objects_of(&id), "");
    // Nothing beyond its namespace: the error says which Role to grant.
    cfg.namespaces = vec!["default".into()];
    let e = KubeOrchestrator::open(cfg).await.unwrap_err().to_string();
    assert!(e.contains("forbidden") && e.contains("rbac.yaml"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_logs_goes_on_across_a_rolling_update() {
    use futures::StreamExt;
    let h = kube_harness().await;
    let id = LambdaId::new();
    let code = |v: u32| {
        vec![(
            "lambda_main.py".to_owned(),
            format!("from luna_lambda_tools import logger\n\nasync def main(request):\n    logger.info('v{v} got %s', request.json)\n    return {{}}\n").into_bytes(),
        )]
    };
    let v1 = h.artifact(id, 1, code(1)).await;
    let v2 = h.artifact(id, 2, code(2)).await;
    h.orch
        .deploy(spec(id, "follow", 1, v1, Parameters::default()))
        .await
        .unwrap();
    let mut follow = h.orch.follow_logs(&id).await.unwrap();
    post(&h.orch.endpoint(&id).unwrap(), serde_json::json!("one"))
        .await
        .unwrap();
    h.orch
        .deploy(spec(id, "follow", 2, v2, Parameters::default()))
        .await
        .unwrap();
    let v2_pod = h.orch.status(&id).await.unwrap().replicas[0].name.clone();
    post(&h.orch.endpoint(&id).unwrap(), serde_json::json!("two"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.iter().any(|l: &String| l.contains("v2 got two")) {
            seen.push(follow.next().await.expect("the stream goes on"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no v2 line in {seen:?}"));
    assert!(seen.iter().any(|l| l.contains("v1 got one")), "{seen:?}");
    let line = seen.iter().find(|l| l.contains("v2 got two")).unwrap();
    assert!(line.starts_with(&format!("[{v2_pod}] ")), "{line}");
    h.orch.undeploy(&id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while follow.next().await.is_some() {}
    })
    .await
    .expect("the stream ends with the deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_deleted_during_its_rollout_ends_the_wait() {
    let h = kube_harness().await;
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("hello")).await;
    let mut p = Parameters::default();
    // Never schedulable: the rollout would wait for the whole start timeout.
    p.deploy_parameters
        .selector
        .insert("luna-lambda.io/zone".into(), "nowhere".into());
    let deploying = {
        let orch = h.orch.clone();
        let s = spec(id, "deleted", 1, art, p);
        tokio::spawn(async move { orch.deploy(s).await })
    };
    eventually(
        "the Deployment exists",
        Duration::from_secs(10),
        async || h.orch.status(&id).await.is_ok(),
    )
    .await;
    kubectl(&["delete", "deployment", &format!("lambda-{id}")]);
    let e = tokio::time::timeout(Duration::from_secs(10), deploying)
        .await
        .expect("the deploy ends well before its start timeout")
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("deleted during the rollout"), "{e}");
    h.orch.undeploy(&id).await.unwrap();
    assert_eq!(objects_of(&id), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_moved_to_another_namespace_leaves_nothing_in_the_old_one() {
    let h = kube_harness().await;
    let ns = "moved-it";
    if !kubectl(&["get", "namespaces", "-o", "name"]).contains(&format!("namespace/{ns}\n")) {
        let _ = std::process::Command::new("kubectl")
            .args(["create", "namespace", ns])
            .output();
    }
    let id = LambdaId::new();
    let art = h.artifact(id, 1, example_files("hello")).await;
    h.orch
        .deploy(spec(id, "mover", 1, art.clone(), Parameters::default()))
        .await
        .unwrap();
    let mut p = Parameters::default();
    p.deploy_parameters.namespace = ns.into();
    // A move that fails (no such image) leaves the lambda running where it was.
    let missing = Artifact::Image {
        reference: format!("{}/luna-lambda/{id}:v9", env("LAMBDA_IT_REGISTRY")),
        digest: None,
    };
    let e = h
        .orch
        .deploy(spec(id, "mover", 2, missing, p.clone()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ImagePullBackOff"), "{e}");
    let st = h.orch.status(&id).await.unwrap();
    assert!(st.all_running() && st.version == 1, "{st:?}");
    h.orch.deploy(spec(id, "mover", 1, art, p)).await.unwrap();
    let (status, _) = post(&h.orch.endpoint(&id).unwrap(), serde_json::json!(1))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let left = kubectl(&[
        "get",
        "deployments,services,configmaps",
        "--all-namespaces",
        "-l",
        &format!("luna-lambda.io/id={id}"),
        "-o",
        "jsonpath={range .items[*]}{.metadata.namespace}/{.kind}{\"\\n\"}{end}",
    ]);
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    assert_eq!(
        left,
        [
            "moved-it/ConfigMap",
            "moved-it/Deployment",
            "moved-it/Service"
        ]
    );
    h.orch.undeploy(&id).await.unwrap();
    assert_eq!(objects_of(&id), "");
}
