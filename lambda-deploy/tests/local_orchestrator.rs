//! The local orchestrator: the conformance suite (tests/conformance) with real builds of the
//! example lambdas, plus what only a local orchestrator does: re-adopting its processes after a
//! control-plane restart.

mod conformance;

use bytes::Bytes;
use conformance::*;
use lambda_build::{BuildRequest, ImageBuilder, LocalBuilder, LocalBuilderConfig};
use lambda_core::archive::{Limits, validate_bytes};
use lambda_core::{Artifact, LambdaId, LambdaType, Parameters};
use lambda_deploy::{LocalOrchestrator, LocalOrchestratorConfig, Orchestrator, ReplicaPhase};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A builder whose env cache is shared by all tests (envs are keyed by content).
fn builder() -> LocalBuilder {
    let uv = workspace().join(".venv/bin/uv");
    LocalBuilder::new(LocalBuilderConfig {
        data_dir: workspace().join("target/test-data/local-builds"),
        python: "python3".into(),
        uv: uv.exists().then_some(uv),
        pip_args: Vec::new(),
        provision_uv: false,
    })
}

async fn build_files(id: LambdaId, version: u64, files: Vec<(String, Vec<u8>)>) -> Artifact {
    let bytes = lambda_core::pack::pack_files(files);
    let archive = validate_bytes(&bytes, &Limits::default()).expect("valid lambda");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let req = BuildRequest {
        lambda_id: id,
        version,
        lambda_type: LambdaType::Standalone,
        archive_bytes: Bytes::from(bytes),
        archive,
        parameters: Parameters::default(),
        timeout: Duration::from_secs(300),
    };
    let result = builder().build(req, tx, CancellationToken::new()).await;
    let mut log = String::new();
    while let Ok(l) = rx.try_recv() {
        log.push_str(&l);
        log.push('\n');
    }
    result.unwrap_or_else(|e| panic!("build failed: {e}\n{log}"))
}

fn base_env() -> Vec<(String, String)> {
    ["PATH", "HOME", "LANG", "SSL_CERT_FILE", "PIP_CERT"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

async fn orchestrator(dir: &Path) -> Arc<LocalOrchestrator> {
    let mut cfg = LocalOrchestratorConfig::new(dir);
    cfg.base_env = base_env();
    cfg.start_timeout = Duration::from_secs(30);
    cfg.backoff_initial = Duration::from_millis(100);
    cfg.stop_grace = Duration::from_secs(5);
    LocalOrchestrator::open(cfg).await.unwrap()
}

fn pids_of(run: &Path, id: &LambdaId) -> Vec<u32> {
    let Ok(bytes) = std::fs::read(run.join("run").join(id.to_string()).join("state.json")) else {
        return Vec::new();
    };
    let state: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    state["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pid"].as_u64().map(|p| p as u32))
        .collect()
}

fn alive(pid: u32) -> bool {
    lambda_testkit::pid_alive(pid)
}

struct Local {
    dir: tempfile::TempDir,
    orch: Arc<LocalOrchestrator>,
}

async fn local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let orch = orchestrator(dir.path()).await;
    Local { dir, orch }
}

#[async_trait::async_trait]
impl Harness for Local {
    fn orchestrator(&self) -> Arc<dyn Orchestrator> {
        Arc::new(self.orch.clone())
    }
    async fn artifact(
        &self,
        id: LambdaId,
        version: u64,
        files: Vec<(String, Vec<u8>)>,
    ) -> Artifact {
        build_files(id, version, files).await
    }
    fn crash(&self, id: &LambdaId) {
        let pid = pids_of(self.dir.path(), id)[0];
        kill(pid as i64);
    }
    fn replica_ids(&self, id: &LambdaId) -> Vec<String> {
        pids_of(self.dir.path(), id)
            .iter()
            .map(u32::to_string)
            .collect()
    }
    fn alive(&self, replica: &str) -> bool {
        replica.parse().is_ok_and(alive)
    }
}

orchestrator_conformance!(local);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_readopts_live_replicas_and_restarts_dead_ones() {
    let dir = tempfile::tempdir().unwrap();
    let id = LambdaId::new();
    let art = build_files(id, 1, example_files("hello")).await;
    let mut p = Parameters::default();
    p.deploy_parameters.pod_count = 2;
    let first = orchestrator(dir.path()).await;
    first.deploy(spec(id, "survivor", 1, art, p)).await.unwrap();
    let pids = pids_of(dir.path(), &id);
    first.detach().await;
    drop(first);
    // While no control plane runs, one replica dies.
    kill(pids[1] as i64);
    eventually(
        "the killed replica is gone",
        Duration::from_secs(10),
        async || !alive(pids[1]),
    )
    .await;
    let second = orchestrator(dir.path()).await;
    let st = second.status(&id).await.unwrap();
    assert!(st.all_running(), "{st:?}");
    let now = pids_of(dir.path(), &id);
    assert_eq!(
        now[0], pids[0],
        "the live replica is re-adopted, not started twice"
    );
    assert_ne!(now[1], pids[1], "the dead replica is started again");
    let (status, _) = post(&second.endpoint(&id).unwrap(), serde_json::json!(1))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // An adopted replica that dies is seen to end (it is not this process's child) and started
    // again.
    kill(now[0] as i64);
    eventually(
        "the adopted replica that died is started again",
        Duration::from_secs(20),
        async || {
            let pids = pids_of(dir.path(), &id);
            pids.len() == 2
                && pids[0] != now[0]
                && second.status(&id).await.is_ok_and(|s| s.all_running())
        },
    )
    .await;
    let st = second.status(&id).await.unwrap();
    assert!(st.replicas.iter().any(|r| r.restarts >= 1), "{st:?}");
    let now = pids_of(dir.path(), &id);
    // Stopping works on adopted processes too.
    second.undeploy(&id).await.unwrap();
    assert!(now.iter().all(|p| !alive(*p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_logs_are_rotated_past_their_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LocalOrchestratorConfig::new(dir.path());
    cfg.base_env = base_env();
    cfg.log_max_bytes = 4096;
    let orch = LocalOrchestrator::open(cfg).await.unwrap();
    let id = LambdaId::new();
    let files = vec![(
        "lambda_main.py".to_owned(),
        b"from luna_lambda_tools import logger\n\nasync def main(request):\n    logger.info('x' * 1000)\n    return {}\n".to_vec(),
    )];
    let art = build_files(id, 1, files).await;
    orch.deploy(spec(id, "rotating", 1, art, Parameters::default()))
        .await
        .unwrap();
    let log = dir
        .path()
        .join("run")
        .join(id.to_string())
        .join("rotating-1-0.log");
    let rotated = log.with_extension("log.1");
    let url = orch.endpoint(&id).unwrap();
    eventually("the log is rotated", Duration::from_secs(30), async || {
        post(&url, serde_json::json!({})).await.unwrap();
        rotated.exists()
    })
    .await;
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(
        size < 4096 + 2048,
        "the live log was truncated after rotation ({size} bytes)"
    );
    // The replica keeps logging into the live file after the rotation.
    post(&url, serde_json::json!({})).await.unwrap();
    eventually(
        "new lines land in the live log",
        Duration::from_secs(10),
        async || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("xxxx")
        },
    )
    .await;
    orch.undeploy(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_answering_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LocalOrchestratorConfig::new(dir.path());
    cfg.base_env = base_env();
    cfg.liveness_interval = Duration::from_millis(200);
    cfg.liveness_timeout = Duration::from_millis(200);
    cfg.liveness_failures = 2;
    cfg.backoff_initial = Duration::from_millis(100);
    let orch = LocalOrchestrator::open(cfg).await.unwrap();
    let id = LambdaId::new();
    // A synchronous sleep blocks the event loop: the process lives but answers nothing.
    let files = vec![(
        "lambda_main.py".to_owned(),
        b"import time\n\nasync def main(request):\n    if request.json == 'hang':\n        time.sleep(3600)\n    return {'ok': True}\n".to_vec(),
    )];
    let art = build_files(id, 1, files).await;
    orch.deploy(spec(id, "hangs", 1, art, Parameters::default()))
        .await
        .unwrap();
    let url = orch.endpoint(&id).unwrap();
    let hang = tokio::spawn({
        let url = url.clone();
        async move { post(&url, serde_json::json!("hang")).await }
    });
    eventually(
        "the hung replica is restarted",
        Duration::from_secs(30),
        async || {
            let st = orch.status(&id).await.unwrap();
            st.replicas[0].restarts >= 1 && st.replicas[0].phase == ReplicaPhase::Running
        },
    )
    .await;
    let _ = hang.await;
    let (status, body) = post(&orch.endpoint(&id).unwrap(), serde_json::json!(1))
        .await
        .unwrap();
    assert_eq!((status, body), (200, serde_json::json!({"ok": true})));
    orch.undeploy(&id).await.unwrap();
}

/// The command line of a process.
fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_forked_by_a_zygote_with_their_own_environment() {
    let dir = tempfile::tempdir().unwrap();
    let orch = orchestrator(dir.path()).await;
    let code = "import os\n\nasync def main(request):\n    return {'who': os.environ['WHO'], 'port': os.environ['LAMBDA_PORT'], 'cwd': os.getcwd()}\n";
    let (a, b) = (LambdaId::new(), LambdaId::new());
    for (id, who) in [(a, "a"), (b, "b")] {
        let art = build_files(id, 1, vec![("lambda_main.py".into(), code.into())]).await;
        let mut p = Parameters::default();
        p.env.insert("WHO".into(), who.into());
        // Several workers (uvicorn's worker processes) work from a forked replica too.
        p.workers = if who == "b" { 2 } else { 1 };
        orch.deploy(spec(id, who, 1, art, p)).await.unwrap();
    }
    for (id, who) in [(a, "a"), (b, "b")] {
        let pid = pids_of(dir.path(), &id)[0];
        assert!(cmdline(pid).contains("zygote.py"), "{}", cmdline(pid));
        let url = orch.endpoint(&id).unwrap();
        let (status, body) = post(&url, serde_json::json!({})).await.unwrap();
        assert_eq!(status, 200, "{body}");
        // Its own environment, port and app folder, not the zygote's or the other lambda's.
        assert_eq!(body["who"], who);
        assert!(
            url.ends_with(body["port"].as_str().unwrap()),
            "{url} {body}"
        );
        assert!(
            body["cwd"].as_str().unwrap().contains(&id.to_string()),
            "{body}"
        );
        // Its output goes to its own log.
        let logs = orch.logs(&id, None).await.unwrap();
        assert!(
            logs.values()
                .any(|l| l.contains("serving standalone lambda")),
            "{logs:?}"
        );
    }
    // One zygote served both (same interpreter and runtime).
    let zygotes: Vec<_> = std::fs::read_dir(dir.path().join("zygotes"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
        .collect();
    assert_eq!(zygotes.len(), 1, "{zygotes:?}");
    // A forked replica is re-adopted by the next control plane, and stopped by undeploy.
    let pid = pids_of(dir.path(), &a)[0];
    orch.detach().await;
    drop(orch);
    let second = orchestrator(dir.path()).await;
    assert_eq!(
        pids_of(dir.path(), &a)[0],
        pid,
        "re-adopted, not started twice"
    );
    for id in [a, b] {
        second.undeploy(&id).await.unwrap();
    }
    assert!(!alive(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_start_plainly_without_a_zygote() {
    for broken in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = LocalOrchestratorConfig::new(dir.path());
        cfg.base_env = base_env();
        if broken {
            // No zygote can be had: its folder cannot be made.
            std::fs::write(dir.path().join("zygotes"), "not a folder").unwrap();
        } else {
            cfg.zygote = false;
        }
        let orch = LocalOrchestrator::open(cfg).await.unwrap();
        let id = LambdaId::new();
        let art = build_files(id, 1, example_files("hello")).await;
        orch.deploy(spec(id, "plain", 1, art, Parameters::default()))
            .await
            .unwrap();
        let pid = pids_of(dir.path(), &id)[0];
        assert!(cmdline(pid).contains("run.py"), "{}", cmdline(pid));
        let (status, _) = post(&orch.endpoint(&id).unwrap(), serde_json::json!(1))
            .await
            .unwrap();
        assert_eq!(status, 200);
        orch.undeploy(&id).await.unwrap();
        assert!(!alive(pid));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zygote_outlives_the_app_folder_it_was_started_from() {
    let dir = tempfile::tempdir().unwrap();
    let orch = orchestrator(dir.path()).await;
    // The first lambda starts the zygote; then it and its app folder go.
    let first = LambdaId::new();
    let art = build_files(first, 1, example_files("hello")).await;
    let Artifact::Local { app_dir, .. } = &art else {
        panic!("a local build")
    };
    let app_dir = app_dir.clone();
    orch.deploy(spec(first, "first", 1, art, Parameters::default()))
        .await
        .unwrap();
    orch.undeploy(&first).await.unwrap();
    std::fs::remove_dir_all(&app_dir).unwrap();
    // A later lambda imports a part of the runtime nothing imported yet.
    let id = LambdaId::new();
    let code = "from luna_lambda_tools.public.exceptions import UserTaskLambdaException\n\nasync def main(request):\n    return {'ok': UserTaskLambdaException.__name__}\n";
    let art = build_files(id, 1, vec![("lambda_main.py".into(), code.into())]).await;
    orch.deploy(spec(id, "later", 1, art, Parameters::default()))
        .await
        .unwrap();
    let pid = pids_of(dir.path(), &id)[0];
    assert!(cmdline(pid).contains("zygote.py"), "{}", cmdline(pid));
    let (status, body) = post(&orch.endpoint(&id).unwrap(), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        (status, body["ok"].as_str()),
        (200, Some("UserTaskLambdaException"))
    );
    orch.undeploy(&id).await.unwrap();
}

/// Kills, when dropped, every replica process that wrote its `port-<pid>` file into the gate
/// folder: a failing assertion must not leave a replica waiting at its gate for ever.
struct ReapGated<'a>(&'a Path);

impl Drop for ReapGated<'_> {
    fn drop(&mut self) {
        for e in std::fs::read_dir(self.0).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix("port-")
                .and_then(|p| p.parse::<u32>().ok())
                && alive(pid)
            {
                kill(i64::from(pid));
            }
        }
    }
}

/// Whether a server other than the replica could bind the port (and answer for it).
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_holds_its_port_from_its_start_and_through_its_restarts() {
    for zygote in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = LocalOrchestratorConfig::new(dir.path());
        cfg.base_env = base_env();
        cfg.zygote = zygote;
        cfg.start_timeout = Duration::from_secs(30);
        cfg.backoff_initial = Duration::from_millis(100);
        let orch = LocalOrchestrator::open(cfg).await.unwrap();
        // The replica says its port, then waits at import until the test opens its gate.
        let gate = dir.path().join("gate");
        std::fs::create_dir(&gate).unwrap();
        let _reap = ReapGated(&gate);
        // A replica left behind by a failing run gives up at its gate after a minute.
        // It also says which sockets what it starts would inherit (stdin included): none.
        let code = "import os, pathlib, stat, time\n\nhere = pathlib.Path(os.environ['GATE'])\nfds = [int(f) for f in os.listdir('/proc/self/fd')]\ndef inherited(fd):\n    try:\n        return stat.S_ISSOCK(os.fstat(fd).st_mode) and (fd == 0 or os.get_inheritable(fd))\n    except OSError:\n        return False\n(here / f'inherited-{os.getpid()}').write_text(repr([fd for fd in fds if inherited(fd)]))\n(here / f'port-{os.getpid()}').write_text(os.environ['LAMBDA_PORT'])\nend = time.monotonic() + 60\nwhile not (here / 'open').exists():\n    if time.monotonic() > end:\n        raise SystemExit('the gate never opened')\n    time.sleep(0.01)\n\n\nasync def main(request):\n    return {'pid': os.getpid()}\n";
        let id = LambdaId::new();
        let art = build_files(id, 1, vec![("lambda_main.py".into(), code.into())]).await;
        let mut p = Parameters::default();
        p.env.insert("GATE".into(), gate.display().to_string());
        let deploy = tokio::spawn({
            let orch = orch.clone();
            async move { orch.deploy(spec(id, "gated", 1, art, p)).await }
        });
        let said_port = || {
            std::fs::read_dir(&gate)
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with("port-"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
        };
        eventually(
            "the replica process has started",
            Duration::from_secs(30),
            async || said_port().is_some(),
        )
        .await;
        let port: u16 = said_port().unwrap().parse().unwrap();
        let inherited: Vec<String> = std::fs::read_dir(&gate)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("inherited-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        assert_eq!(
            inherited,
            ["[]"],
            "zygote {zygote}: sockets a child would inherit"
        );
        // Starting, not serving yet: its port is taken all the same, so no other server can
        // answer its health checks and be taken for it.
        assert!(!port_is_free(port), "zygote {zygote}: port {port} is free");
        assert!(!deploy.is_finished());
        std::fs::write(gate.join("open"), "").unwrap();
        deploy.await.unwrap().unwrap();
        let url = orch.endpoint(&id).unwrap();
        assert!(url.ends_with(&format!(":{port}")), "{url}");
        let (status, body) = post(&url, serde_json::json!({})).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let first = body["pid"].as_u64().unwrap();
        // It dies: while it restarts the port stays taken, and a request made meanwhile waits
        // for the next process instead of being refused.
        kill(first as i64);
        eventually(
            "the replica's process is gone",
            Duration::from_secs(10),
            async || !alive(first as u32),
        )
        .await;
        assert!(!port_is_free(port), "zygote {zygote}: port {port} is free");
        let (status, body) = post(&url, serde_json::json!({})).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_ne!(
            body["pid"].as_u64().unwrap(),
            first,
            "served by the next process"
        );
        orch.undeploy(&id).await.unwrap();
        assert!(port_is_free(port), "the port is let go with its replica");
    }
}
