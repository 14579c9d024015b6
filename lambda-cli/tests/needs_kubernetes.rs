//! The platform itself in the cluster: the server's image (scripts/server-image/build, with this
//! build's `luna-lambda`) run as a pod of `deploy/kubernetes/server.yaml` under the node
//! simulator, with `in_cluster = true` (the simulator mounts the service account's token and
//! sets `KUBERNETES_SERVICE_*`, as a kubelet does), the Role of `rbac.yaml`, and the Kubernetes
//! builder: it creates, builds (a Job), runs and proxies a lambda. Built and run when LAMBDA_IT
//! lists kubernetes (feature `needs-kubernetes`).

use lambda_testkit::kube_sim;

use kube_sim::{kubectl, kubectl_apply, sim};
use std::time::{Duration, Instant};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: LAMBDA_IT lists kubernetes, so start the services with scripts/infra/ and the base images with scripts/base-images/")
    })
}

use lambda_testkit::workspace;

async fn until<T>(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `deploy/kubernetes/server.yaml` for namespace `ns`, image `image`, with the test's config and
/// admin token, listening on the pod's own address (the simulator runs pods on the host's
/// network).
fn server_manifest(ns: &str, image: &str, config: &str, token: &str) -> String {
    let m = std::fs::read_to_string(workspace().join("deploy/kubernetes/server.yaml")).unwrap();
    let start = m.find("  config.toml: |\n").unwrap();
    let end = m[start..].find("---").unwrap() + start;
    let indented: String = config.lines().map(|l| format!("    {l}\n")).collect();
    let ca = std::fs::read_to_string(
        std::env::var("SSL_CERT_FILE")
            .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into()),
    )
    .unwrap();
    let ca: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    let m = format!(
        "{}  config.toml: |\n{indented}  pip-ca.pem: |\n{ca}{}",
        &m[..start],
        &m[end..]
    );
    m.replace("namespace: default", &format!("namespace: {ns}"))
        .replace("CHANGE.registry.example:5000/luna-lambda-server:latest", image)
        .replace("CHANGE-to-a-random-string-of-32-or-more", token)
        .replace(
            "          envFrom:\n",
            "          env:\n            - name: POD_IP\n              valueFrom: {fieldRef: {fieldPath: status.podIP}}\n            - {name: LUNA_LAMBDA_LISTEN, value: \"$(POD_IP):5210\"}\n          envFrom:\n",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_build_the_server_runs_as_a_pod_and_builds_runs_and_proxies_a_lambda() {
    sim();
    let ns = "platform-it";
    if !kubectl(&["get", "namespaces", "-o", "name"]).contains(&format!("namespace/{ns}\n")) {
        let _ = std::process::Command::new("kubectl")
            .args(["create", "namespace", ns])
            .output();
    }
    let rbac = std::fs::read_to_string(workspace().join("deploy/kubernetes/rbac.yaml"))
        .unwrap()
        .replace("namespace: default", &format!("namespace: {ns}"));
    kubectl_apply(&rbac);
    // The server's image, with the binary under test.
    let registry = env("LAMBDA_IT_REGISTRY");
    let tag = format!("it-{}", uuid::Uuid::new_v4().simple());
    let out = std::process::Command::new(workspace().join("scripts/server-image/build"))
        .args([registry.as_str(), tag.as_str()])
        .env("LUNA_LAMBDA_BIN", env!("CARGO_BIN_EXE_luna-lambda"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/server-image/build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = format!("{registry}/luna-lambda-server:{tag}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&image));
    let instance = format!("in-cluster-{}", uuid::Uuid::new_v4().simple());
    let token = format!("it-admin-{}", uuid::Uuid::new_v4().simple());
    let config = format!(
        "lambda_registry = \"{registry}\"\n[builder]\nkind = \"kubernetes\"\nbase_tag = \"{}\"\n\
         pip_ca_bundle = \"/etc/luna-lambda/pip-ca.pem\"\n[orchestrator]\nkind = \"kubernetes\"\n\
         in_cluster = true\nnamespace = \"{ns}\"\ninstance = \"{instance}\"\n\
         endpoint = \"http://{{pod_ip}}:8000\"\n[auth]\nmode = \"token\"\n",
        env("LAMBDA_IT_BASE_TAG")
    );
    let manifest = server_manifest(ns, &image, &config, &token);
    kubectl_apply(&manifest);

    // The server's pod, Ready at its own address.
    let http = reqwest::Client::new();
    let url = until(
        "the server's pod to be Ready",
        Duration::from_secs(120),
        async || {
            let ip = kubectl(&[
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/name=luna-lambda-server",
                "-o",
                "jsonpath={.items[0].status.podIP}",
            ]);
            let url = format!("http://{}:5210", ip.trim());
            let ok = !ip.trim().is_empty()
                && http
                    .get(format!("{url}/healthcheck"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            ok.then_some(url)
        },
    )
    .await;

    // A lambda with a requirement: built by a Job the server starts with its own account.
    let zip = lambda_core::pack::pack_files(vec![
        (
            "lambda_main.py".into(),
            b"import six\n\nasync def main(request):\n    return {'six': six.__version__}\n"
                .to_vec(),
        ),
        (
            "requirements.txt".into(),
            format!("six==1.17.0\n# {instance}\n").into_bytes(),
        ),
    ]);
    let form = reqwest::multipart::Form::new()
        .part(
            "archive",
            reqwest::multipart::Part::bytes(zip)
                .file_name("lambda.zip")
                .mime_str("application/zip")
                .unwrap(),
        )
        .text(
            "credentials",
            r#"{"lambda_name":"in-cluster","lambda_type":"standalone"}"#,
        )
        .text(
            "parameters",
            format!(r#"{{"deploy_parameters": {{"namespace": "{ns}"}}}}"#),
        );
    let created: serde_json::Value = http
        .post(format!("{url}/1/lambdas"))
        .bearer_auth(&token)
        .header("Luna-Account-Id", "00000000-0000-4000-8000-000000000000")
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["lambda_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let record = until("the lambda to run", Duration::from_secs(300), async || {
        let r: serde_json::Value = http
            .get(format!("{url}/1/lambdas/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        assert_ne!(r["image_status"], "error", "{r}");
        assert_ne!(r["status"], "terminated", "{r}");
        (r["status"] == "running").then_some(r)
    })
    .await;
    let log = http
        .get(format!("{url}/1/lambdas/{id}/image/logs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        log.contains(&format!("==> build job {ns}/")),
        "{record}\n{log}"
    );
    let answer: serde_json::Value = http
        .post(format!("{url}/1/lambdas/{id}/proxy/main"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"k": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["six"], "1.17.0", "{answer}");
    let deleted = http
        .delete(format!("{url}/1/lambdas/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    until(
        "the lambda's objects to go",
        Duration::from_secs(60),
        async || {
            kubectl(&[
                "-n",
                ns,
                "get",
                "deployments,pods",
                "-l",
                &format!("luna-lambda.io/id={id}"),
                "-o",
                "name",
            ])
            .trim()
            .is_empty()
            .then_some(())
        },
    )
    .await;
    let _ = std::process::Command::new("kubectl")
        .args([
            "-n",
            ns,
            "delete",
            "deployment,service,configmap,secret",
            "-l",
            "app.kubernetes.io/name=luna-lambda-server",
        ])
        .output();
    let _ = std::process::Command::new("kubectl")
        .args([
            "-n",
            ns,
            "delete",
            "deployment/luna-lambda",
            "service/luna-lambda",
            "configmap/luna-lambda-config",
            "secret/luna-lambda-secrets",
        ])
        .output();
}
