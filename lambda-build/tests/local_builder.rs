//! The local builder through the `ImageBuilder` trait: layout, env cache, log lines, refusals,
//! a failing requirement, cancel and timeout, and nothing half-built left behind.

use bytes::Bytes;
use lambda_build::{BuildRequest, Error, ImageBuilder, LocalBuilder, LocalBuilderConfig};
use lambda_core::archive::{Limits, validate_bytes};
use lambda_core::{Artifact, LambdaId, LambdaType, Parameters};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use lambda_testkit::workspace;

fn builder(data: &Path) -> LocalBuilder {
    let uv = workspace().join(".venv/bin/uv");
    LocalBuilder::new(LocalBuilderConfig {
        data_dir: data.to_path_buf(),
        python: "python3".into(),
        uv: uv.exists().then_some(uv),
        pip_args: Vec::new(),
        provision_uv: false,
    })
}

/// Shared env cache of the test suite (envs are keyed by content, so sharing is safe).
fn shared() -> PathBuf {
    workspace().join("target/test-data/local-builds")
}

fn request(files: &[(&str, &str)], params: Parameters, timeout: Duration) -> BuildRequest {
    let bytes = lambda_core::pack::pack_files(
        files
            .iter()
            .map(|(n, d)| (n.to_string(), d.as_bytes().to_vec()))
            .collect(),
    );
    BuildRequest {
        lambda_id: LambdaId::new(),
        version: 1,
        lambda_type: LambdaType::Standalone,
        archive: validate_bytes(&bytes, &Limits::default()).unwrap(),
        archive_bytes: Bytes::from(bytes),
        parameters: params,
        timeout,
    }
}

const MAIN: &str = "async def main(request):\n    return {}\n";

async fn build(
    b: &dyn ImageBuilder,
    req: BuildRequest,
    cancel: CancellationToken,
) -> (lambda_build::Result<Artifact>, Vec<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = b.build(req, tx, cancel).await;
    let mut lines = Vec::new();
    while let Ok(l) = rx.try_recv() {
        lines.push(l);
    }
    (r, lines)
}

#[tokio::test]
async fn builds_a_folder_with_the_runtime_and_reuses_the_env() {
    let b = builder(&shared());
    let files = [
        ("lambda_main.py", MAIN),
        ("pkg/util.py", "X = 1\n"),
        ("run.py", "print('replaced')\n"),
    ];
    let req = request(&files, Parameters::default(), Duration::from_secs(300));
    let (r, log) = build(&b, req, CancellationToken::new()).await;
    let Artifact::Local { app_dir, python } =
        r.unwrap_or_else(|e| panic!("{e}\n{}", log.join("\n")))
    else {
        panic!("not a local artifact")
    };
    assert!(python.exists(), "{}", python.display());
    assert!(app_dir.join("lambda_main.py").is_file() && app_dir.join("pkg/util.py").is_file());
    assert!(app_dir.join("luna_lambda_tools/server.py").is_file());
    let run_py = std::fs::read_to_string(app_dir.join("run.py")).unwrap();
    assert!(
        run_py.contains("luna_lambda_tools.server"),
        "the archive's run.py is replaced"
    );
    assert!(
        log.iter().any(|l| l.starts_with("==> environment")),
        "{log:?}"
    );
    // The interpreter has the runtime's dependencies.
    let ok = std::process::Command::new(&python)
        .args(["-c", "import uvicorn, orjson"])
        .status()
        .unwrap();
    assert!(ok.success());
    // A second lambda with the same (no) requirements reuses the environment.
    let req2 = request(
        &[("lambda_main.py", MAIN)],
        Parameters::default(),
        Duration::from_secs(300),
    );
    let (r2, log2) = build(&b, req2, CancellationToken::new()).await;
    let Artifact::Local {
        python: python2, ..
    } = r2.unwrap()
    else {
        panic!()
    };
    assert_eq!(python, python2);
    assert!(
        log2.iter()
            .any(|l| l.contains("cached, nothing to install")),
        "{log2:?}"
    );
}

#[tokio::test]
async fn user_docker_commands_name_the_docker_builder() {
    let dir = tempfile::tempdir().unwrap();
    let p = Parameters {
        user_docker_commands: vec!["RUN echo hi".into()],
        ..Parameters::default()
    };
    let req = request(&[("lambda_main.py", MAIN)], p, Duration::from_secs(60));
    let (r, _) = build(&builder(dir.path()), req, CancellationToken::new()).await;
    let e = r.unwrap_err();
    assert!(
        matches!(e, Error::Unsupported(_)) && e.to_string().contains("Docker builder"),
        "{e}"
    );
}

#[tokio::test]
async fn an_uninstallable_requirement_fails_with_pips_words_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder(dir.path());
    let files = [
        ("lambda_main.py", MAIN),
        ("requirements.txt", "luna-lambda-no-such-package-xyz==1.0\n"),
    ];
    let req = request(&files, Parameters::default(), Duration::from_secs(300));
    let id = req.lambda_id;
    let (r, log) = build(&b, req, CancellationToken::new()).await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Failed { .. }), "{e}");
    assert!(e.to_string().contains("pip install"), "{e}");
    let all = log.join("\n");
    assert!(
        all.contains("luna-lambda-no-such-package-xyz"),
        "pip's message is in the log: {all}"
    );
    assert!(
        !dir.path()
            .join("apps")
            .join(id.to_string())
            .join("v1")
            .exists(),
        "no app folder left"
    );
    let envs: Vec<_> = std::fs::read_dir(dir.path().join("envs"))
        .unwrap()
        .collect();
    assert!(envs.is_empty(), "no half-made env left: {envs:?}");
}

#[tokio::test]
async fn cancel_and_timeout_stop_the_build_and_leave_nothing() {
    for mode in ["cancel", "timeout"] {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path());
        // A fresh data dir always has to make an environment, which takes long enough to be
        // interrupted: a cancel that has fired, or a 1 ms timeout.
        let files = [
            ("lambda_main.py", MAIN),
            ("requirements.txt", "six==1.17.0\n"),
        ];
        let cancel = CancellationToken::new();
        let timeout = if mode == "timeout" {
            Duration::from_millis(1)
        } else {
            Duration::from_secs(300)
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        // Cancel in the middle of making the environment.
        let watcher = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let mut saw = false;
                while let Some(line) = rx.recv().await {
                    if line.contains("creating with") {
                        saw = true;
                        cancel.cancel();
                    }
                }
                saw
            })
        };
        let c = if mode == "cancel" {
            cancel
        } else {
            CancellationToken::new()
        };
        let r = b
            .build(request(&files, Parameters::default(), timeout), tx, c)
            .await;
        let saw = watcher.await.unwrap();
        assert!(
            mode != "cancel" || saw,
            "the cancel came while the environment was being made"
        );
        match (mode, r) {
            ("cancel", Err(Error::Cancelled)) | ("timeout", Err(Error::Timeout(_))) => {}
            (m, other) => panic!("{m}: {other:?}"),
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("envs"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{mode}: {leftovers:?}");
    }
}

#[tokio::test]
async fn health_checks_the_python() {
    assert!(builder(&shared()).health().await.is_ok());
    let bad = LocalBuilder::new(LocalBuilderConfig {
        data_dir: shared(),
        python: "/nonexistent/python3".into(),
        uv: None,
        pip_args: Vec::new(),
        provision_uv: false,
    });
    let e = bad.health().await.unwrap_err();
    assert!(e.to_string().contains("/nonexistent/python3"), "{e}");
}

/// Without uv, the builder installs uv once for its data folder (from the package index, with
/// pip, into a private virtualenv) and makes environments with it; a second builder over the same
/// folder finds it and installs nothing.
#[tokio::test]
async fn provisions_uv_once_when_none_is_given() {
    let data = tempfile::tempdir().unwrap();
    let config = || LocalBuilderConfig {
        data_dir: data.path().to_path_buf(),
        python: "python3".into(),
        uv: None,
        pip_args: Vec::new(),
        provision_uv: true,
    };
    let first = LocalBuilder::new(config());
    let req = request(
        &[("lambda_main.py", MAIN)],
        Parameters::default(),
        Duration::from_secs(600),
    );
    let (r, log) = build(&first, req, CancellationToken::new()).await;
    r.unwrap_or_else(|e| panic!("{e}\n{}", log.join("\n")));
    let text = log.join("\n");
    assert!(
        text.contains("==> uv: not on PATH; installing it once"),
        "{text}"
    );
    assert!(text.contains("==> uv: ready in"), "{text}");
    assert!(text.contains("creating with uv"), "{text}");
    let uv = data.path().join("tools/uv/bin/uv");
    assert!(uv.exists());
    assert!(
        std::fs::read_dir(data.path().join("tools"))
            .unwrap()
            .count()
            == 1,
        "no partial folder is left behind"
    );

    let second = LocalBuilder::new(config());
    let reqs = [
        ("lambda_main.py", MAIN),
        ("requirements.txt", "six==1.17.0\n"),
    ];
    let req = request(&reqs, Parameters::default(), Duration::from_secs(600));
    let (r, log) = build(&second, req, CancellationToken::new()).await;
    r.unwrap_or_else(|e| panic!("{e}\n{}", log.join("\n")));
    let text = log.join("\n");
    assert!(!text.contains("installing it once"), "{text}");
    assert!(text.contains("creating with uv"), "{text}");
}
