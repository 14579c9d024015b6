//! Docker benchmark (scripts/bench-docker starts the engine, the registry and the base images):
//! build + deploy of a lambda whose requirements (six, requests, pydantic: heavier than the
//! `with-requirements` example) are not in the cache (cold), a code-only
//! change (rebuild + redeploy), and a second lambda with the same requirements; next to a plain
//! `docker build` of the same files without our layer ordering (code copied before pip install).
//! Target: code-only rebuild + redeploy <= 5 s.

mod common;
#[path = "../tests/conformance/mod.rs"]
mod conformance;

use conformance::{docker_builder as builder, env};
use futures::StreamExt;
use lambda_core::LambdaId;
use lambda_deploy::{DockerOrchestrator, DockerOrchestratorConfig, Orchestrator};
use std::time::{Duration, Instant};

/// A plain Dockerfile: everything copied, then pip (any code change reinstalls).
async fn plain_build(docker: &bollard::Docker, main: &str, reqs: &str, tag: &str) -> Duration {
    let base = format!(
        "{}/lpa-lambda-base:{}",
        env("LAMBDA_IT_REGISTRY"),
        env("LAMBDA_IT_BASE_TAG")
    );
    let dockerfile = format!(
        "FROM {base}\nCOPY --chown=luna:luna pip-ca.pem /tmp/pip-ca.pem\nCOPY --chown=luna:luna . /srv/lambda/\nRUN PIP_CERT=/tmp/pip-ca.pem python3 -m pip install --no-cache-dir -r /srv/lambda/requirements.txt\nCMD [\"python3\", \"/srv/lambda/run.py\"]\n"
    );
    let ca = std::fs::read(
        std::env::var("SSL_CERT_FILE")
            .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into()),
    )
    .unwrap();
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("Dockerfile".into(), dockerfile.into_bytes()),
        ("pip-ca.pem".into(), ca),
        ("lambda_main.py".into(), main.as_bytes().to_vec()),
        ("requirements.txt".into(), reqs.as_bytes().to_vec()),
    ];
    files.extend(
        lambda_build::runtime::files()
            .iter()
            .map(|f| (f.path.to_owned(), f.contents.to_vec())),
    );
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, path, &data[..]).unwrap();
    }
    let body = tar.into_inner().unwrap();
    let t = Instant::now();
    let opts = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .networkmode("host")
        .build();
    let mut s = docker.build_image(opts, None, Some(bollard::body_full(body.into())));
    while let Some(item) = s.next().await {
        let info = item.unwrap();
        assert!(info.error_detail.is_none(), "{:?}", info.error_detail);
    }
    t.elapsed()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = builder();
        let mut cfg = DockerOrchestratorConfig::new(env("DOCKER_HOST"));
        cfg.instance = format!("bench-{}", LambdaId::new());
        let o = DockerOrchestrator::open(cfg).await.unwrap();
        let run = LambdaId::new();
        // Requirements of this run only, so the first build really installs them.
        let reqs = format!("six==1.17.0\nrequests==2.32.3\npydantic==2.14.4\n# bench {run}\n");
        let main_v1 = "import six\n\nasync def main(request):\n    return {'v': 1}\n";
        let main_v2 = "import six\n\nasync def main(request):\n    return {'v': 2}\n";
        let (a, c) = (LambdaId::new(), LambdaId::new());
        let cold = common::ship(&b, &o, a, 1, &[("lambda_main.py", main_v1), ("requirements.txt", &reqs)]).await;
        let code_only = common::ship(&b, &o, a, 2, &[("lambda_main.py", main_v2), ("requirements.txt", &reqs)]).await;
        let second = common::ship(&b, &o, c, 1, &[("lambda_main.py", main_v1), ("requirements.txt", &reqs)]).await;
        for id in [a, c] {
            o.undeploy(&id).await.unwrap();
        }
        let docker = bollard::Docker::connect_with_unix(env("DOCKER_HOST").trim_start_matches("unix://"), 600, bollard::API_DEFAULT_VERSION).unwrap();
        let plain_reqs = format!("six==1.17.0\nrequests==2.32.3\npydantic==2.14.4\n# plain {run}\n");
        let plain_cold = plain_build(&docker, main_v1, &plain_reqs, "luna-lambda-bench/plain:v1").await;
        let plain_code = plain_build(&docker, main_v2, &plain_reqs, "luna-lambda-bench/plain:v2").await;
        println!("== Docker builder + orchestrator (build, push, deploy until /healthcheck answers)");
        println!("{:<46} {:>8.2} s", "requirements (six, requests, pydantic) not cached", cold.as_secs_f64());
        println!("{:<46} {:>8.2} s", "code-only change: rebuild + redeploy", code_only.as_secs_f64());
        println!("{:<46} {:>8.2} s", "second lambda, same requirements", second.as_secs_f64());
        println!("== plain docker build of the same files (code copied before pip install; build only)");
        println!("{:<46} {:>8.2} s", "cold", plain_cold.as_secs_f64());
        println!("{:<46} {:>8.2} s", "code-only change", plain_code.as_secs_f64());
        println!(
            "target: code-only rebuild + redeploy <= 5 s: {} ({:.2} s; plain ordering rebuilds in {:.2} s)",
            if code_only.as_secs_f64() <= 5.0 { "met" } else { "NOT met" },
            code_only.as_secs_f64(),
            plain_code.as_secs_f64()
        );
    });
}
