//! The client commands of the real `luna-lambda` binary against a real server started here
//! (embedded default in a temp folder): every command, `--json` output, exit codes 0/1/2, and
//! progress as plain lines when not on a terminal.

mod common;

use common::{ACCOUNT, json, ok, workspace};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Starts a server on a free port in a thread of its own; returns its URL.
fn server(dir: &Path) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let storage = lambda_storage::open(&lambda_storage::StorageConfig::new(format!(
                "file://{}",
                dir.join("store").display()
            )))
            .unwrap();
            let uv = workspace().join(".venv/bin/uv");
            let builder = lambda_build::LocalBuilder::new(lambda_build::LocalBuilderConfig {
                data_dir: workspace().join("target/test-data/local-builds"),
                python: "python3".into(),
                uv: uv.exists().then_some(uv),
                pip_args: Vec::new(),
                provision_uv: false,
            });
            let mut ocfg = lambda_deploy::LocalOrchestratorConfig::new(&dir);
            ocfg.base_env = ["PATH", "HOME", "LANG"]
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                .collect();
            let orch = lambda_deploy::LocalOrchestrator::open(ocfg).await.unwrap();
            let platform = lambda_server::Platform::new(
                lambda_server::PlatformConfig::default(),
                storage,
                Arc::new(builder),
                Arc::new(orch),
                lambda_server::proxy::ReplicaClient::new(),
            );
            platform.start().await.unwrap();
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", l.local_addr().unwrap()))
                .unwrap();
            lambda_server::serve(l, platform, Default::default(), std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn cli(url: &str, cwd: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_luna-lambda"));
    c.args(args)
        .current_dir(cwd)
        .env("LUNA_LAMBDA_URL", url)
        .env("LUNA_ACCOUNT_ID", ACCOUNT)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn from_init_to_delete_through_every_command() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let url = server(data.path());
    let w = work.path();

    ok(&cli(&url, w, &["init", "greeter"], None));
    ok(&cli(&url, w, &["validate", "greeter"], None));
    let created = cli(
        &url,
        w,
        &["create", "greeter", "--name", "greeter", "--wait"],
        None,
    );
    let id = ok(&created).trim().to_owned();
    let progress = String::from_utf8_lossy(&created.stderr).into_owned();
    assert!(
        progress.contains("stage: building") || progress.contains("stage: pending"),
        "{progress}"
    );
    assert!(progress.contains("stage: running"), "{progress}");
    assert!(
        progress.contains("==> lambda"),
        "build log lines are streamed: {progress}"
    );
    assert!(
        !progress.contains('\u{1b}'),
        "no escape codes when not on a terminal"
    );

    let list = json(&cli(&url, w, &["list", "--json"], None));
    assert_eq!(list["count"], 1);
    assert!(ok(&cli(&url, w, &["list"], None)).starts_with("NAME"));
    assert_eq!(
        json(&cli(&url, w, &["get", &id, "--json"], None))["lambda_name"],
        "greeter"
    );
    let st = json(&cli(&url, w, &["status", &id, "--json"], None));
    assert_eq!(st["status"], "running");
    assert_eq!(st["replicas"][0]["restarts"], 0);

    let out = ok(&cli(
        &url,
        w,
        &["invoke", &id, "--data", r#"{"name": "ann"}"#],
        None,
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({"greeting": "hello, ann"})
    );
    std::fs::write(w.join("body.json"), r#"{"name": "bob"}"#).unwrap();
    let v = cli(
        &url,
        w,
        &["invoke", &id, "--data", "@body.json", "-v"],
        None,
    );
    assert!(ok(&v).contains("hello, bob"));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("HTTP 200"),
        "-v shows the status"
    );
    let bad = cli(&url, w, &["invoke", &id, "--data", "[1]"], None);
    assert_eq!(bad.status.code(), Some(1), "a non-2xx answer exits 1");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("send a JSON object"));

    assert!(ok(&cli(&url, w, &["docs", &id], None)).contains("<h1>greeter</h1>"));
    ok(&cli(
        &url,
        w,
        &["docs", &id, "--yaml", "-o", "api.yml"],
        None,
    ));
    assert!(
        std::fs::read_to_string(w.join("api.yml"))
            .unwrap()
            .starts_with("openapi")
    );
    assert!(ok(&cli(&url, w, &["image-logs", &id], None)).contains("==> built"));
    // Following a finished build prints its log and ends.
    assert!(ok(&cli(&url, w, &["image-logs", &id, "-f"], None)).contains("==> built"));
    // Following runtime logs prints new lines as they come (it runs until stopped).
    let mut follow = Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args(["logs", &id, "-f", "--tail", "0"])
        .env("LUNA_LAMBDA_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reader = {
        let stdout = follow.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains("greeting follow-me"))
        })
    };
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() {
        ok(&cli(
            &url,
            w,
            &["invoke", &id, "--data", r#"{"name": "follow-me"}"#],
            None,
        ));
        assert!(
            std::time::Instant::now() < end,
            "logs -f never showed the new line"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let line = reader.join().unwrap().expect("a followed line");
    assert!(line.starts_with('['), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();
    let logs = json(&cli(&url, w, &["logs", &id, "--tail", "5", "--json"], None));
    assert_eq!(logs["logs"].as_object().unwrap().len(), 1);

    ok(&cli(
        &url,
        w,
        &["config", "set", &id, "-"],
        Some(r#"{"threshold": 0.5}"#),
    ));
    let rec = json(&cli(&url, w, &["get", &id, "--json"], None));
    assert_eq!(
        rec["parameters"]["user_config"],
        serde_json::json!({"threshold": 0.5})
    );
    assert_eq!(
        json(&cli(&url, w, &["switch", &id, "off", "--json"], None))["alive"],
        false
    );
    assert_eq!(
        json(&cli(&url, w, &["switch", &id, "on", "--json"], None))["alive"],
        true
    );

    std::fs::write(
        w.join("greeter/lambda_main.py"),
        "async def main(request):\n    return {'version': 2}\n",
    )
    .unwrap();
    let upd = json(&cli(
        &url,
        w,
        &["update", &id, "greeter", "--wait", "--json"],
        None,
    ));
    assert_eq!(upd["lambda_version"], 2);
    let out = ok(&cli(&url, w, &["invoke", &id], None));
    assert!(out.contains(r#""version":2"#), "{out}");

    // Versions and a rollback to v1, whose environment is kept: no build.
    let versions = json(&cli(&url, w, &["versions", &id, "--json"], None));
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    assert!(ok(&cli(&url, w, &["versions", &id], None)).starts_with("VERSION"));
    let back = json(&cli(&url, w, &["rollback", &id, "--wait", "--json"], None));
    assert_eq!(back["lambda_version"], 3, "{back}");
    assert_eq!(back["rolled_back_from"], 1);
    assert_eq!(back["rebuild"], false);
    let out = ok(&cli(
        &url,
        w,
        &["invoke", &id, "--data", r#"{"name": "ann"}"#],
        None,
    ));
    assert!(out.contains("hello, ann"), "v1 answers again: {out}");
    let none = cli(&url, w, &["rollback", &id, "--to", "7"], None);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("not an earlier version"),
        "{none:?}"
    );

    // Export, and import as a second lambda of the same account that answers the same.
    let file = w.join("saved.zip");
    let saved = json(&cli(
        &url,
        w,
        &["export", &id, "-o", file.to_str().unwrap(), "--json"],
        None,
    ));
    assert_eq!(
        saved["bytes"],
        std::fs::metadata(&file).unwrap().len(),
        "{saved}"
    );
    let dup = cli(&url, w, &["import", file.to_str().unwrap()], None);
    assert_eq!(dup.status.code(), Some(1), "the name is taken: {dup:?}");
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("already has a lambda named"),
        "{dup:?}"
    );
    ok(&cli(&url, w, &["delete", &id], None));
    let again = ok(&cli(
        &url,
        w,
        &["import", file.to_str().unwrap(), "-q"],
        None,
    ));
    let id = again.trim().to_owned();
    let end = std::time::Instant::now() + Duration::from_secs(120);
    while json(&cli(&url, w, &["get", &id, "--json"], None))["status"] != "running" {
        assert!(
            std::time::Instant::now() < end,
            "the imported lambda never ran"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ok(&cli(
        &url,
        w,
        &["invoke", &id, "--data", r#"{"name": "ann"}"#],
        None,
    ));
    assert!(
        out.contains("hello, ann"),
        "the import answers as v1 did: {out}"
    );

    // The collector's dry run: a report, nothing removed (a real run here would also judge
    // the build folder other suites share).
    let report = json(&cli(&url, w, &["gc", "--dry-run", "--json"], None));
    assert_eq!(report["dry_run"], true, "{report}");
    assert!(report["removed"].is_array(), "{report}");
    assert!(ok(&cli(&url, w, &["gc", "--dry-run"], None)).contains("would remove"));

    ok(&cli(&url, w, &["delete", &id], None));
    let gone = cli(&url, w, &["get", &id], None);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stderr).starts_with("error 42001"),
        "{:?}",
        gone
    );
}

#[test]
fn handlers_lambdas_and_validation_failures() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let url = server(data.path());
    let w = work.path();
    ok(&cli(&url, w, &["init", "h", "--type", "handlers"], None));
    let id = ok(&cli(
        &url,
        w,
        &[
            "create", "h", "--name", "h", "--type", "handlers", "--wait", "--quiet",
        ],
        None,
    ))
    .trim()
    .to_owned();
    let out = ok(&cli(
        &url,
        w,
        &[
            "invoke",
            &id,
            "--data",
            r#"{"sources": [{"filename": "a.jpg"}, {"filename": "b.jpg"}]}"#,
            "-H",
            "Luna-Handler-Id: h-9",
        ],
        None,
    ));
    assert!(
        out.contains(r#""handler_id":"h-9""#) && out.contains(r#""sources":2"#),
        "{out}"
    );

    // Without an account id, a lambda is created for the default account and reads see it.
    let out = Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args([
            "create",
            "h",
            "--name",
            "no-account",
            "--type",
            "handlers",
            "--server",
            &url,
        ])
        .current_dir(w)
        .env_remove("LUNA_ACCOUNT_ID")
        .output()
        .unwrap();
    let other = ok(&out).trim().to_owned();
    let rec = Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args(["get", &other, "--json", "--server", &url])
        .env_remove("LUNA_ACCOUNT_ID")
        .output()
        .unwrap();
    assert_eq!(
        json(&rec)["account_id"],
        "00000000-0000-4000-8000-000000000000"
    );
    // Another account does not see it.
    assert_eq!(
        cli(&url, w, &["delete", &other], None).status.code(),
        Some(1)
    );
    let del = Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args(["delete", &other, "--server", &url])
        .env_remove("LUNA_ACCOUNT_ID")
        .output()
        .unwrap();
    ok(&del);

    // Every problem, with path and line, and exit 1.
    std::fs::create_dir_all(w.join("bad")).unwrap();
    std::fs::write(
        w.join("bad/lambda_main.py"),
        "def main(r):\n    return {}\n",
    )
    .unwrap();
    std::fs::write(w.join("bad/requirements.txt"), "-e .\n").unwrap();
    let r = cli(
        &url,
        w,
        &[
            "create",
            "bad",
            "--name",
            "bad",
            "--user-docker-command",
            "FROM x",
        ],
        None,
    );
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(err.contains("error 42005"), "{err}");
    assert!(err.contains("lambda_main.py:1"), "{err}");
    assert!(err.contains("requirements.txt:1"), "{err}");
    assert!(err.contains("user_docker_commands[0]"), "{err}");
    let js = cli(&url, w, &["create", "bad", "--name", "bad", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&js.stderr).unwrap();
    assert_eq!(v["error"]["error_code"], 42005);
    ok(&cli(&url, w, &["delete", &id], None));
}

#[test]
fn no_server_usage_errors_completions_and_man() {
    let w = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let r = cli(&url, w.path(), &["list"], None);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(
        err.contains(&url) && err.contains("luna-lambda serve"),
        "{err}"
    );
    assert_eq!(
        cli(&url, w.path(), &["invoke"], None).status.code(),
        Some(2)
    );
    assert_eq!(
        cli(&url, w.path(), &["switch", "x", "on"], None)
            .status
            .code(),
        Some(2),
        "not a lambda id"
    );
    assert_eq!(
        cli(
            &url,
            w.path(),
            &["switch", &uuid::Uuid::new_v4().to_string(), "maybe"],
            None
        )
        .status
        .code(),
        Some(2)
    );
    assert!(ok(&cli(&url, w.path(), &["completions", "bash"], None)).contains("luna-lambda"));
    assert!(ok(&cli(&url, w.path(), &["man"], None)).contains(".TH"));
    let help = ok(&cli(&url, w.path(), &["create", "--help"], None));
    assert!(help.contains("--wait") && help.contains("--param-file"));
}

#[test]
fn run_serves_a_folder_and_reloads_on_change() {
    use std::os::unix::process::CommandExt;
    let w = tempfile::tempdir().unwrap();
    let dir = w.path().join("fn");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("lambda_main.py"),
        "async def main(request):\n    return {'v': 1}\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uv_path = format!(
        "{}:{}",
        workspace().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args(["run", dir.to_str().unwrap(), "--port", &port.to_string()])
        .env("PATH", uv_path)
        .env("XDG_CACHE_HOME", w.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let get = |want: &str| {
        let end = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let body = std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.write_all(b"GET /main HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
                    let mut out = String::new();
                    s.read_to_string(&mut out).ok()?;
                    Some(out)
                });
            if body.as_deref().is_some_and(|b| b.contains(want)) {
                return;
            }
            assert!(std::time::Instant::now() < end, "never answered {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    get(r#"{"v":1}"#);
    std::fs::write(
        dir.join("lambda_main.py"),
        "async def main(request):\n    return {'v': 2}\n",
    )
    .unwrap();
    get(r#"{"v":2}"#);
    // Ctrl-C reaches the whole foreground group: the CLI and its lambda.
    nix_killpg(child.id());
    let _ = child.wait();
}

fn nix_killpg(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", "--", &format!("-{pgid}")])
        .status();
}
