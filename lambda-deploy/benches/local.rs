//! Embedded-default benchmark: create -> healthy for `hello` with a cold environment, a second
//! lambda with the same requirements (cached environment), and a code-only update, through the
//! LocalBuilder and LocalOrchestrator; next to a plain `python3 -m venv` + pip install of the
//! same requirements. Targets: cached <= 1.5 s, code-only update <= 1.5 s.
//!
//! Run: `cargo bench -p lambda-deploy --bench local` (uses uv from .venv when present, and also
//! measures the cold path without it).

mod common;

use lambda_build::{LocalBuilder, LocalBuilderConfig};
use lambda_core::LambdaId;
use lambda_deploy::{LocalOrchestrator, LocalOrchestratorConfig, Orchestrator};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lambda_testkit::workspace;

async fn scenario(label: &str, uv: Option<PathBuf>) -> (Duration, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let b = LocalBuilder::new(LocalBuilderConfig {
        data_dir: dir.path().to_path_buf(),
        python: "python3".into(),
        uv,
        pip_args: Vec::new(),
        provision_uv: false,
    });
    let mut cfg = LocalOrchestratorConfig::new(dir.path());
    cfg.base_env = ["PATH", "HOME", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let o = LocalOrchestrator::open(cfg).await.unwrap();
    let main = "async def main(request):\n    return {'v': 1}\n";
    let (a, c) = (LambdaId::new(), LambdaId::new());
    let cold = common::ship(&b, &o, a, 1, &[("lambda_main.py", main)]).await;
    let cached = common::ship(&b, &o, c, 1, &[("lambda_main.py", main)]).await;
    let main_v2 = "async def main(request):\n    return {'v': 2}\n";
    let update = common::ship(&b, &o, a, 2, &[("lambda_main.py", main_v2)]).await;
    for id in [a, c] {
        o.undeploy(&id).await.unwrap();
    }
    println!(
        "{label:<22} cold {:>7.2} s | second lambda, cached env {:>6.2} s | code-only update {:>6.2} s",
        cold.as_secs_f64(),
        cached.as_secs_f64(),
        update.as_secs_f64()
    );
    (cold, cached, update)
}

fn plain_venv_pip() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let reqs = workspace().join("lambda-build/runtime/requirements.txt");
    let t = Instant::now();
    let venv = dir.path().join("v");
    assert!(
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        std::process::Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r"
            ])
            .arg(&reqs)
            .status()
            .unwrap()
            .success()
    );
    t.elapsed()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let uv = workspace().join(".venv/bin/uv");
    let mut results = Vec::new();
    if uv.exists() {
        results.push(rt.block_on(scenario("local builder (uv)", Some(uv))));
    }
    results.push(rt.block_on(scenario("local builder (pip)", None)));
    let plain = plain_venv_pip();
    println!(
        "{:<22} {:>7.2} s (python3 -m venv + pip install of the runtime's requirements)",
        "plain venv + pip",
        plain.as_secs_f64()
    );
    let (_, cached, update) = results[0];
    let ok = |d: Duration| {
        if d.as_secs_f64() <= 1.5 {
            "met"
        } else {
            "NOT met"
        }
    };
    println!(
        "targets: cached <= 1.5 s: {} ({:.2} s); code-only update <= 1.5 s: {} ({:.2} s)",
        ok(cached),
        cached.as_secs_f64(),
        ok(update),
        update.as_secs_f64()
    );
}
