//! The Kubernetes orchestrator against a real control plane (scripts/bench-kube starts it):
//! deploys N lambdas one after another and deletes them, with the node simulator in status-only
//! mode (pods are marked Ready at once; nothing runs), so what is timed is the orchestrator and
//! the control plane. Prints the time per lambda, the API writes per deploy and delete, and the
//! watch latency from a pod reported Ready to the orchestrator seeing the lambda running; then
//! the same objects through `kubectl apply` + `kubectl rollout status`, alternating with the
//! orchestrator on the then idle control plane, side by side. With 200 lambdas in a row the
//! deploy time is set by the controller-manager's API rate limit (`--kube-api-qps`, default 20,
//! as on a default cluster): about 290 ms per lambda here, 55 ms with the limit at 500.
//!
//! `cargo bench -p lambda-deploy --features needs-kubernetes --bench kube [-- N]` (default 200).

use lambda_testkit::kube_sim;

use lambda_core::{Artifact, LambdaId, LambdaName, LambdaType, Parameters};
use lambda_deploy::Orchestrator;
use lambda_deploy::{DeploySpec, KubeCredentials, KubeOrchestrator, KubeOrchestratorConfig};
use std::time::{Duration, Instant};

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn spec(id: LambdaId, n: usize) -> DeploySpec {
    DeploySpec {
        lambda_id: id,
        lambda_name: LambdaName::parse(&format!("bench-{n}")).unwrap(),
        lambda_type: LambdaType::Standalone,
        version: 1,
        // Never pulled: the simulated node runs nothing in this mode.
        artifact: Artifact::Image {
            reference: format!("registry.invalid/luna-lambda/{id}:v1"),
            digest: None,
        },
        parameters: Parameters::default(),
        replicas: 1,
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let kubeconfig = std::env::var("KUBECONFIG")
        .expect("KUBECONFIG is not set: run scripts/bench-kube (it starts the control plane)");
    let sim = kube_sim::status_only_sim();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let orch = KubeOrchestrator::open(KubeOrchestratorConfig {
            credentials: KubeCredentials::Kubeconfig {
                path: Some(kubeconfig.into()),
                context: None,
            },
            instance: format!("bench-{}", LambdaId::new()),
            endpoint: "http://{pod_ip}:8000".into(),
            ..KubeOrchestratorConfig::default()
        })
        .await
        .unwrap();
        let ids: Vec<LambdaId> = (0..n).map(|_| LambdaId::new()).collect();
        let (mut deploys, mut latencies) = (Vec::new(), Vec::new());
        let (w0, r0) = (orch.api_writes(), orch.api_reads());
        let t0 = Instant::now();
        for (i, id) in ids.iter().enumerate() {
            let t = Instant::now();
            orch.deploy(spec(*id, i)).await.unwrap();
            let done = Instant::now();
            deploys.push(done - t);
            let ready = sim.ready_at(&id.to_string()).expect("the pod was made Ready");
            latencies.push(done.saturating_duration_since(ready));
        }
        let deploy_total = t0.elapsed();
        let deploy_writes = orch.api_writes() - w0;
        let deploy_reads = orch.api_reads() - r0;
        assert_eq!(orch.list().await.unwrap().len(), n);
        let (w1, r1) = (orch.api_writes(), orch.api_reads());
        let t1 = Instant::now();
        let mut deletes = Vec::new();
        for id in &ids {
            let t = Instant::now();
            orch.undeploy(id).await.unwrap();
            deletes.push(t.elapsed());
        }
        let delete_total = t1.elapsed();
        let delete_writes = orch.api_writes() - w1;
        let delete_reads = orch.api_reads() - r1;
        assert!(orch.list().await.unwrap().is_empty());

        // The same objects by hand (kubectl apply, then kubectl rollout status), alternating with
        // the orchestrator so both meet the same control-plane load, one lambda at a time.
        let m = n.min(20);
        let (mut by_hand, mut by_orch) = (Vec::new(), Vec::new());
        for i in 0..m {
            let id = LambdaId::new();
            let t = Instant::now();
            orch.deploy(spec(id, n + i)).await.unwrap();
            by_orch.push(t.elapsed());
            orch.undeploy(&id).await.unwrap();

            let id = LambdaId::new();
            let name = LambdaName::parse(&format!("kubectl-{i}")).unwrap();
            let params = Parameters::default();
            let image = format!("registry.invalid/luna-lambda/{id}:v1");
            let r = lambda_core::render::DeploySpec {
                id,
                name: &name,
                lambda_type: LambdaType::Standalone,
                version: 1,
                image: &image,
                parameters: &params,
                config_hash: "0",
                instance: "bench-kubectl",
                image_pull_secrets: &[],
                replicas: 1,
            };
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
                lambda_core::render::render_config_map(&r),
                lambda_core::render::render_deployment(&r),
                lambda_core::render::render_service(&r),
            ]});
            let t = Instant::now();
            kube_sim::kubectl_apply(&list.to_string());
            let rollout = std::process::Command::new("kubectl")
                .args(["rollout", "status", "--timeout=60s"])
                .arg(format!("deployment/{}", id.object_name()))
                .output()
                .unwrap();
            assert!(rollout.status.success());
            by_hand.push(t.elapsed());
            let del = std::process::Command::new("kubectl")
                .args(["delete", "deployment,service,configmap", &id.object_name()])
                .output()
                .unwrap();
            assert!(del.status.success());
        }

        let per = |d: Duration| d / n as u32;
        println!("kubernetes orchestrator, {n} lambdas, one after another (status-only node):");
        println!(
            "  deploy: {} per lambda (p50 {}, p99 {}), {:.2} API writes (target <= 4) + {:.2} reads per deploy",
            ms(per(deploy_total)),
            ms(percentile(&mut deploys, 0.5)),
            ms(percentile(&mut deploys, 0.99)),
            deploy_writes as f64 / n as f64,
            deploy_reads as f64 / n as f64
        );
        println!(
            "  delete: {} per lambda (p50 {}, p99 {}), {:.2} API writes + {:.2} reads per delete",
            ms(per(delete_total)),
            ms(percentile(&mut deletes, 0.5)),
            ms(percentile(&mut deletes, 0.99)),
            delete_writes as f64 / n as f64,
            delete_reads as f64 / n as f64
        );
        let p50 = percentile(&mut latencies, 0.5);
        let p99 = percentile(&mut latencies, 0.99);
        println!(
            "  pod Ready -> running seen: p50 {}, p99 {}, max {} (target <= 1 s)",
            ms(p50),
            ms(p99),
            ms(*latencies.iter().max().unwrap())
        );
        let hand = percentile(&mut by_hand, 0.5);
        let ours = percentile(&mut by_orch, 0.5);
        println!(
            "  alternating, {m} each on an idle control plane: orchestrator deploy p50 {}, kubectl apply + rollout status p50 {} -> {:.1}x",
            ms(ours),
            ms(hand),
            hand.as_secs_f64() / ours.as_secs_f64()
        );
    });
}
