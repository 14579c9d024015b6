//! In-cluster builds side by side with the Docker builder, in one run (scripts/bench-build starts
//! the engine, the registry, the base images and the control plane): for the same lambda with a
//! requirement, (1) a cold build (the requirement never built before: a build Job in the cluster
//! vs the engine's build), (2) a code-only update (registry-side assembly, no Job, vs the
//! engine's rebuild from its layer cache), and (3) a code-only update from the start of its
//! build to the new pods Ready with the Kubernetes orchestrator (the node simulator runs the
//! pods). Median of `BENCH_ROUNDS` (default 3) alternating rounds.
//!
//! Targets (issue: in-cluster builds): code-only update to new pods Ready <= 2 s with the
//! simulator; cold Job build within 1.5x of the Docker builder.

use lambda_testkit::kube_sim;

use lambda_build::{
    BuildRequest, DockerBuilder, DockerBuilderConfig, ImageBuilder, KubeBuilder, KubeBuilderConfig,
};
use lambda_core::{Artifact, LambdaId, LambdaName, LambdaType, Parameters};
use lambda_deploy::{
    DeploySpec, KubeCredentials, KubeOrchestrator, KubeOrchestratorConfig, Orchestrator,
};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/bench-build (it starts what the bench needs)")
    })
}

fn ca() -> std::path::PathBuf {
    std::env::var("SSL_CERT_FILE")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into())
        .into()
}

fn request(id: LambdaId, version: u64, run: &str, v: u32) -> BuildRequest {
    let files = vec![
        (
            "lambda_main.py".to_owned(),
            format!("import six\n\nasync def main(request):\n    return {{'v': {v}}}\n")
                .into_bytes(),
        ),
        (
            "requirements.txt".to_owned(),
            format!("six==1.17.0\n# {run}\n").into_bytes(),
        ),
    ];
    let bytes = lambda_core::pack::pack_files(files);
    BuildRequest {
        lambda_id: id,
        version,
        lambda_type: LambdaType::Standalone,
        archive: lambda_core::archive::validate_bytes(&bytes, &Default::default()).unwrap(),
        archive_bytes: bytes.into(),
        parameters: Parameters::default(),
        timeout: Duration::from_secs(900),
    }
}

async fn timed(b: &dyn ImageBuilder, req: BuildRequest) -> (Duration, Artifact) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t = Instant::now();
    let r = b.build(req, tx, CancellationToken::new()).await;
    let d = t.elapsed();
    let mut log = String::new();
    while let Ok(l) = rx.try_recv() {
        log.push_str(&l);
        log.push('\n');
    }
    (
        d,
        r.unwrap_or_else(|e| panic!("{} build failed: {e}\n{log}", b.kind())),
    )
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    kube_sim::sim();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let credentials = KubeCredentials::Kubeconfig {
            path: Some(env("KUBECONFIG").into()),
            context: None,
        };
        let instance = format!("bench-build-{}", LambdaId::new());
        let registry = env("LAMBDA_IT_REGISTRY");
        let kube = KubeBuilder::new(
            lambda_deploy::kube::client(&credentials).await.unwrap(),
            KubeBuilderConfig {
                registry: registry.clone(),
                base_tag: env("LAMBDA_IT_BASE_TAG"),
                namespace: "default".into(),
                instance: instance.clone(),
                pip_ca_bundle: Some(ca()),
                ..KubeBuilderConfig::default()
            },
        );
        let docker = DockerBuilder::connect(DockerBuilderConfig {
            docker_host: env("DOCKER_HOST"),
            registry: Some(registry),
            base_tag: env("LAMBDA_IT_BASE_TAG"),
            network_mode: Some("host".into()),
            pip_ca_bundle: Some(ca()),
            ..DockerBuilderConfig::default()
        })
        .unwrap();
        let orch = KubeOrchestrator::open(KubeOrchestratorConfig {
            credentials,
            instance,
            endpoint: "http://{pod_ip}:8000".into(),
            start_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(30),
            ..KubeOrchestratorConfig::default()
        })
        .await
        .unwrap();
        let (mut cold_k, mut cold_d, mut code_k, mut code_d, mut live) =
            (vec![], vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            let run = uuid::Uuid::new_v4().simple().to_string();
            eprintln!("round {} of {rounds}", round + 1);
            // Alternate which builder goes first.
            let (kid, did) = (LambdaId::new(), LambdaId::new());
            let order: [bool; 2] = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for kube_first in order {
                if kube_first {
                    cold_k.push(timed(&kube, request(kid, 1, &format!("k{run}"), 1)).await.0);
                } else {
                    cold_d.push(
                        timed(&docker, request(did, 1, &format!("d{run}"), 1))
                            .await
                            .0,
                    );
                }
            }
            let mut v2 = None;
            for kube_first in order {
                if kube_first {
                    let (d, a) = timed(&kube, request(kid, 2, &format!("k{run}"), 2)).await;
                    code_k.push(d);
                    v2 = Some(a);
                } else {
                    code_d.push(
                        timed(&docker, request(did, 2, &format!("d{run}"), 2))
                            .await
                            .0,
                    );
                }
            }
            // Version 3 from its build's start to the new pods Ready.
            orch.deploy(spec(kid, 2, v2.unwrap())).await.unwrap();
            let t = Instant::now();
            let (_, v3) = timed(&kube, request(kid, 3, &format!("k{run}"), 3)).await;
            orch.deploy(spec(kid, 3, v3)).await.unwrap();
            live.push(t.elapsed());
            orch.undeploy(&kid).await.unwrap();
        }
        let (ck, cd, uk, ud, l) = (
            median(&mut cold_k),
            median(&mut cold_d),
            median(&mut code_k),
            median(&mut code_d),
            median(&mut live),
        );
        println!("== builds of one lambda with a requirement (six), median of {rounds} rounds");
        println!(
            "  {:<44} {:>10} {:>10} {:>8}",
            "", "kubernetes", "docker", "k / d"
        );
        println!(
            "  {:<44} {:>10} {:>10} {:>8.2}",
            "cold build (requirement never built)",
            s(ck),
            s(cd),
            ck.as_secs_f64() / cd.as_secs_f64()
        );
        println!(
            "  {:<44} {:>10} {:>10} {:>8.2}",
            "code-only update (build + push)",
            s(uk),
            s(ud),
            uk.as_secs_f64() / ud.as_secs_f64()
        );
        println!(
            "  {:<44} {:>10}",
            "code-only update to new pods Ready",
            s(l)
        );
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "target: code-only update to new pods Ready <= 2 s ({}: {})",
            s(l),
            verdict(l <= Duration::from_secs(2))
        );
        println!(
            "target: cold Job build within 1.5x of the Docker builder ({:.2}x: {})",
            ck.as_secs_f64() / cd.as_secs_f64(),
            verdict(ck.as_secs_f64() <= 1.5 * cd.as_secs_f64())
        );
    });
}

fn spec(id: LambdaId, version: u64, artifact: Artifact) -> DeploySpec {
    DeploySpec {
        lambda_id: id,
        lambda_name: LambdaName::parse("bench-build").unwrap(),
        lambda_type: LambdaType::Standalone,
        version,
        artifact,
        parameters: Parameters::default(),
        replicas: 1,
    }
}
