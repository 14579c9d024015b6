//! What the server benchmarks share: wrk runs and their parsing, a real `luna-lambda serve` child,
//! the `hello` lambda created through the API, RSS readings.

#![allow(dead_code)] // each bench target uses its own part of this module

pub(crate) mod callgrind;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const ACCOUNT: &str = "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11";

pub(crate) use lambda_testkit::{free_port, workspace};

/// One wrk run: throughput and latency percentiles (ms).
pub(crate) struct Wrk {
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

fn to_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        _ => n,
    }
}

/// The JSON body wrk POSTs: the small echo document, or one of about `bytes`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodySize {
    Small,
    Bytes(usize),
}

impl BodySize {
    fn lua(self, token: Option<&str>) -> String {
        let body = match self {
            BodySize::Small => {
                "'{\"data\": {\"a\": 1, \"b\": [1, 2, 3], \"c\": \"hello\"}}'".to_owned()
            }
            BodySize::Bytes(n) => format!("'{{\"data\": \"' .. string.rep(\"x\", {n}) .. '\"}}'"),
        };
        let auth = token.map_or(String::new(), |t| {
            format!("wrk.headers[\"Authorization\"] = \"Bearer {t}\"\n")
        });
        format!(
            "wrk.method = \"POST\"\nwrk.body = {body}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n{auth}"
        )
    }

    pub(crate) fn label(self) -> String {
        match self {
            BodySize::Small => "small JSON".to_owned(),
            BodySize::Bytes(n) if n >= 1 << 20 => format!("{} MiB JSON", n >> 20),
            BodySize::Bytes(n) => format!("{} KiB JSON", n >> 10),
        }
    }
}

/// wrk with 50 connections and the small body.
pub(crate) fn wrk(url: &str, secs: u32) -> Wrk {
    wrk_c(url, secs, 50)
}

/// wrk with `conns` connections and the small body.
pub(crate) fn wrk_c(url: &str, secs: u32, conns: u32) -> Wrk {
    wrk_body(url, secs, conns, BodySize::Small)
}

/// One wrk run (one thread) POSTing `body` to `url`; a non-2xx answer fails the benchmark.
pub(crate) fn wrk_body(url: &str, secs: u32, conns: u32, body: BodySize) -> Wrk {
    wrk_as(url, secs, conns, body, None)
}

/// [`wrk_body`] sending `Authorization: Bearer <token>` when one is given.
pub(crate) fn wrk_as(url: &str, secs: u32, conns: u32, body: BodySize, token: Option<&str>) -> Wrk {
    // Removed when dropped, after the run.
    let lua = tempfile::Builder::new()
        .prefix("luna-lambda-bench-post-")
        .suffix(".lua")
        .tempfile()
        .unwrap();
    std::fs::write(lua.path(), body.lua(token)).unwrap();
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--timeout",
            "10s",
            "--latency",
            "-s",
        ])
        .arg(lua.path())
        .arg(url)
        .output()
        .expect("wrk is installed (the bench scripts install it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "errors under load at {url}: {text}"
    );
    let find = |key: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("nan")
            .to_owned()
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Wrk {
        requests,
        rps: find("Requests/sec:").parse().unwrap_or(f64::NAN),
        p50: to_ms(&find("50%")),
        p99: to_ms(&find("99%")),
    }
}

/// The run of median throughput.
pub(crate) fn median(mut v: Vec<Wrk>) -> Wrk {
    v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = v.len() / 2;
    v.swap_remove(mid)
}

pub(crate) fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// CPU time (user + system, in clock ticks of 10 ms) that the processes `pids` used so far.
pub(crate) fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command name (which may hold spaces): state is field 3, utime 14.
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
            let f: Vec<u64> = after
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
        })
        .sum()
}

/// The processes whose parent is `pid` (e.g. nginx's workers).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat[stat.rfind(')')? + 1..].to_owned();
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// A tiny blocking GET over a runtime of its own (the benches' main threads are sync).
pub(crate) fn blocking_get(url: &str) -> reqwest::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await?.error_for_status()?.text().await })
}

/// Polls `url` until it answers, for at most `secs`.
pub(crate) fn wait_for(url: &str, secs: u64, what: &str) {
    let end = Instant::now() + Duration::from_secs(secs);
    while blocking_get(url).is_err() {
        assert!(Instant::now() < end, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The real `luna-lambda serve` on the embedded default, as a child process.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(data: &Path) -> Server {
        Self::start_with(data, &[])
    }

    /// With extra environment settings (e.g. the Docker builder's).
    pub(crate) fn start_with(data: &Path, env: &[(String, String)]) -> Server {
        let port = free_port();
        let child = Self::command(data, port)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{url}/version"), 30, "the server");
        Server { child, url }
    }

    /// `luna-lambda serve` on `data`, listening on `port` (the project's Python first on `PATH`).
    pub(crate) fn command(data: &Path, port: u16) -> Command {
        Self::command_of(Path::new(env!("CARGO_BIN_EXE_luna-lambda")), data, port)
    }

    /// [`Server::command`] of another build of `luna-lambda` (`binary`).
    pub(crate) fn command_of(binary: &Path, data: &Path, port: u16) -> Command {
        let path = format!(
            "{}:{}",
            workspace().join(".venv/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .env("PATH", path)
            .env("LUNA_LAMBDA_LOG", "warn");
        command
    }

    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Times of creating `examples/hello` through the API: to `running`, and to its first answer.
pub(crate) struct Created {
    pub(crate) id: String,
    pub(crate) to_running: Duration,
    pub(crate) to_answer: Duration,
}

/// The JSON answer of a request (any failure fails the benchmark).
pub(crate) async fn json_answer(rb: reqwest::RequestBuilder) -> serde_json::Value {
    rb.send().await.unwrap().json().await.unwrap()
}

/// `POST /1/lambdas` of a zip under `name`; the new lambda's id.
pub(crate) async fn post_create(server: &str, name: &str, zip: Vec<u8>) -> String {
    post_create_with(server, name, zip, None).await
}

/// [`post_create`] with `parameters`.
pub(crate) async fn post_create_with(
    server: &str,
    name: &str,
    zip: Vec<u8>,
    parameters: Option<&str>,
) -> String {
    post_create_as(server, name, zip, parameters, None).await
}

/// [`post_create_with`] sending `Authorization: Bearer <token>` when one is given.
pub(crate) async fn post_create_as(
    server: &str,
    name: &str,
    zip: Vec<u8>,
    parameters: Option<&str>,
    token: Option<&str>,
) -> String {
    let mut form = reqwest::multipart::Form::new()
        .part(
            "archive",
            reqwest::multipart::Part::bytes(zip)
                .file_name("lambda.zip")
                .mime_str("application/zip")
                .unwrap(),
        )
        .text(
            "credentials",
            format!(r#"{{"lambda_name":"{name}","lambda_type":"standalone"}}"#),
        );
    if let Some(p) = parameters {
        form = form.text("parameters", p.to_owned());
    }
    let mut post = reqwest::Client::new()
        .post(format!("{server}/1/lambdas"))
        .header("Luna-Account-Id", ACCOUNT)
        .multipart(form);
    if let Some(token) = token {
        post = post.bearer_auth(token);
    }
    let r = json_answer(post).await;
    match r["lambda_id"].as_str() {
        Some(id) => id.to_owned(),
        None => panic!("creating {name} was refused: {r}"),
    }
}

/// Creates `examples/hello` on `server` and waits until it runs and answers.
pub(crate) async fn create_hello(server: &str) -> Created {
    let client = reqwest::Client::new();
    let zip = lambda_core::pack::pack_dir(&workspace().join("examples/hello")).unwrap();
    let t = Instant::now();
    let id = post_create(server, "hello", zip).await;
    let (mut to_answer, mut to_running) = (None, None);
    while to_answer.is_none() || to_running.is_none() {
        if to_answer.is_none() {
            let ok = client
                .post(format!("{server}/1/lambdas/{id}/proxy/main"))
                .body("{}")
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                to_answer = Some(t.elapsed());
            }
        }
        if to_running.is_none() {
            let rec = json_answer(client.get(format!("{server}/1/lambdas/{id}"))).await;
            if rec["status"] == "running" {
                to_running = Some(t.elapsed());
            }
        }
        assert!(t.elapsed() < Duration::from_secs(120), "hello never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Created {
        id,
        to_running: to_running.unwrap(),
        to_answer: to_answer.unwrap(),
    }
}

/// The local orchestrator's record of the lambda's first replica (`run/<id>/state.json`).
fn first_replica(data: &Path, id: &str) -> serde_json::Value {
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("run").join(id).join("state.json")).unwrap(),
    )
    .unwrap();
    state["replicas"][0].clone()
}

/// The port of the lambda's first replica on the local orchestrator.
pub(crate) fn replica_port(data: &Path, id: &str) -> u64 {
    first_replica(data, id)["port"].as_u64().unwrap()
}

/// The process id of the lambda's first replica on the local orchestrator.
pub(crate) fn replica_pid(data: &Path, id: &str) -> u32 {
    first_replica(data, id)["pid"].as_u64().unwrap() as u32
}

/// Deletes a lambda (a graceful stop of the server leaves lambdas running by design).
pub(crate) async fn delete_lambda(server: &str, id: &str) {
    delete_lambda_as(server, id, None).await;
}

/// [`delete_lambda`] sending `Authorization: Bearer <token>` when one is given; whether the
/// server deleted it.
pub(crate) async fn delete_lambda_as(server: &str, id: &str, token: Option<&str>) -> bool {
    let mut delete = reqwest::Client::new()
        .delete(format!("{server}/1/lambdas/{id}"))
        .header("Luna-Account-Id", ACCOUNT);
    if let Some(token) = token {
        delete = delete.bearer_auth(token);
    }
    delete.send().await.is_ok_and(|r| r.status().is_success())
}
