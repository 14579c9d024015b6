//! `scripts/bench-scale`: waking idle lambdas, side by side in one run.
//!
//! (a) Wake latency on the embedded default: `hello` with `min_replicas = 0` and
//!     `idle_timeout_secs = 1` is left to idle, then one request is timed from the moment it is
//!     sent until its answer (the proxy holds it while one replica starts), `BENCH_WAKES` times
//!     (default 50): p50 and p99, with replicas started as new interpreters
//!     (`[orchestrator] zygote = false`) and forked by the zygote (the default). Next to them, the
//!     reference: a plain start of the same replica process (the command and environment the
//!     orchestrator ran, on another port), timed until `/healthcheck` answers, as many times.
//! (b) The same wake on Docker when `DOCKER_HOST`, `LAMBDA_REGISTRY` and `LUNA_LAMBDA_BUILDER_BASE_TAG`
//!     are set (the Docker builder and orchestrator; scripts/infra starts them); otherwise the line
//!     says what is missing.
//! (c) `BENCH_LAMBDAS` lambdas (default 1000) created with `min_replicas = 0`, each invoked once
//!     in random order: the memory of the machine's lambda processes (the server's children) and
//!     the server's RSS after they idle again.
//!
//! Targets (issue: scale to zero): local wake p50 <= 150 ms, Docker <= 1 s, server RSS <= 60 MB.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Server, children, free_port, json_answer, post_create_with, rss_mib, workspace};

const IDLE: &str = r#"{"deploy_parameters": {"scale": {"min_replicas": 0, "max_replicas": 1, "idle_timeout_secs": 1}}}"#;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds at the `q` quantile (0..=1) of `v`.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn hello_zip() -> Vec<u8> {
    lambda_core::pack::pack_dir(&workspace().join("examples/hello")).unwrap()
}

async fn record(server: &str, id: &str) -> serde_json::Value {
    json_answer(reqwest::Client::new().get(format!("{server}/1/lambdas/{id}"))).await
}

/// Polls the record until its status is `status` (deadline 5 min).
async fn until_status(server: &str, id: &str, status: &str) {
    let end = Instant::now() + Duration::from_secs(300);
    loop {
        let r = record(server, id).await;
        if r["status"] == status {
            return;
        }
        assert!(Instant::now() < end, "{id} never became {status}: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` wakes of an idle lambda: the milliseconds from each request to its answer. Each starts
/// from zero: once the lambda is idle and `gone` says its replicas have ended.
async fn wakes(server: &str, id: &str, n: usize, gone: &dyn Fn() -> bool) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..n {
        until_status(server, id, "idle").await;
        let end = Instant::now() + Duration::from_secs(60);
        while !gone() {
            assert!(
                Instant::now() < end,
                "the idle lambda's replicas never ended"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        let r = client
            .post(format!("{server}/1/lambdas/{id}/proxy/main"))
            .body("{}")
            .send()
            .await
            .unwrap();
        let ok = r.status().is_success();
        let _ = r.bytes().await;
        assert!(ok, "a wake failed");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times
}

fn line(what: &str, v: &mut [f64], reference: Option<f64>) -> f64 {
    let p50 = quantile(v, 0.5);
    let p99 = quantile(v, 0.99);
    let ratio = reference.map_or(String::new(), |r| format!("{:>9.2}", p50 / r));
    println!("  {what:<34} {p50:>9.1} {p99:>9.1} {ratio}");
    p50
}

/// The command line and environment of a running process.
fn command_of(pid: u32) -> (Vec<String>, Vec<(String, String)>) {
    let split = |file: &str| -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/{file}"))
            .unwrap()
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let env = split("environ")
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    (split("cmdline"), env)
}

/// Plain starts of the replica process `pid` runs (same command and environment, another
/// port): the milliseconds until each answers `/healthcheck`.
fn plain_starts(pid: u32, n: usize) -> Vec<f64> {
    let (cmd, env) = command_of(pid);
    let mut times = Vec::new();
    for _ in 0..n {
        let port = free_port();
        let t = Instant::now();
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .env_clear()
            .envs(env.iter().filter(|(k, _)| k != "LAMBDA_PORT").cloned())
            .env("LAMBDA_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/healthcheck");
        while common::blocking_get(&url).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the plain start never answered"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();
    }
    times
}

/// Whether process `pid` is a live replica of lambda `id` (it works in the lambda's app folder).
fn replica_of(pid: u32, id: &str) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    });
    !zombie
        && std::fs::read_link(format!("/proc/{pid}/cwd"))
            .is_ok_and(|cwd| cwd.to_string_lossy().contains(id))
}

/// Running containers of a lambda on the benchmark's engine.
fn running_containers(id: &str) -> usize {
    let out = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=luna-lambda.io/id={id}"),
        ])
        .output()
        .expect("the docker client runs");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The Docker settings from the environment, or what is missing.
fn docker_env() -> Result<Vec<(String, String)>, String> {
    let get = |k: &str| std::env::var(k).map_err(|_| k.to_owned());
    let missing: Vec<String> = [
        "DOCKER_HOST",
        "LAMBDA_REGISTRY",
        "LUNA_LAMBDA_BUILDER_BASE_TAG",
    ]
    .iter()
    .filter_map(|k| get(k).err())
    .collect();
    if !missing.is_empty() {
        return Err(missing.join(", "));
    }
    let mut env: Vec<(String, String)> = [
        "DOCKER_HOST",
        "LAMBDA_REGISTRY",
        "LUNA_LAMBDA_BUILDER_BASE_TAG",
    ]
    .iter()
    .map(|k| (k.to_string(), get(k).unwrap()))
    .collect();
    env.extend(
        [
            ("LUNA_LAMBDA_BUILDER_KIND", "docker"),
            ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "docker"),
            ("LUNA_LAMBDA_ORCHESTRATOR_INSTANCE", "bench-scale"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    for k in [
        "LUNA_LAMBDA_BUILDER_PIP_CA_BUNDLE",
        "LAMBDA_INSECURE_REGISTRIES",
    ] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_owned(), v));
        }
    }
    Ok(env)
}

/// Sockets the process `pid` holds open.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The total RSS (MiB) of the server's child processes (the lambdas' replicas).
fn lambdas_rss(server_pid: u32) -> (usize, f64) {
    let kids = children(server_pid);
    let total = kids
        .iter()
        .map(|p| rss_mib(*p))
        .filter(|m| !m.is_nan())
        .sum();
    (kids.len(), total)
}

fn scale_env() -> Vec<(String, String)> {
    vec![("LUNA_LAMBDA_SCALE_CHECK_INTERVAL_MS".into(), "50".into())]
}

/// Wakes on the embedded default, with replicas forked by a zygote or started as new
/// interpreters; without the zygote, also the plain starts of the replica's own command.
fn local_wakes(n: usize, zygote: bool) -> (Vec<f64>, Vec<f64>) {
    let data = tempfile::tempdir().unwrap();
    let mut env = scale_env();
    env.push(("LUNA_LAMBDA_ORCHESTRATOR_ZYGOTE".into(), zygote.to_string()));
    let server = Server::start_with(data.path(), &env);
    let id = block(running_sleepy(&server.url));
    let plain = if zygote {
        Vec::new()
    } else {
        plain_starts(common::replica_pid(data.path(), &id), n)
    };
    // The replica processes are the server's children (a zygote's forks are the zygote's).
    let server_pid = server.child.id();
    let gone = || {
        children(server_pid)
            .into_iter()
            .flat_map(|p| std::iter::once(p).chain(children(p)))
            .all(|p| !replica_of(p, &id))
    };
    let woken = block(async {
        let woken = wakes(&server.url, &id, n, &gone).await;
        common::delete_lambda(&server.url, &id).await;
        woken
    });
    server.stop();
    (woken, plain)
}

/// Runs a future to its end on a runtime of its own (the bench's main thread is sync, as the
/// shared helpers that block are).
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `hello` with `min_replicas = 0`, running.
async fn running_sleepy(server: &str) -> String {
    let id = post_create_with(server, "sleepy", hello_zip(), Some(IDLE)).await;
    until_status(server, &id, "running").await;
    id
}

fn docker_wakes(n: usize) -> Result<Vec<f64>, String> {
    let env = docker_env()?;
    let data = tempfile::tempdir().unwrap();
    let mut all = scale_env();
    all.extend(env);
    let server = Server::start_with(data.path(), &all);
    let woken = block(async {
        let id = running_sleepy(&server.url).await;
        let gone = || running_containers(&id) == 0;
        let woken = wakes(&server.url, &id, n, &gone).await;
        common::delete_lambda(&server.url, &id).await;
        woken
    });
    server.stop();
    Ok(woken)
}

/// `n` idling lambdas, each invoked once in random order: (lambda processes, their MiB, the
/// server's MiB) after they all idled again, and the time it took.
fn many(n: usize) -> (usize, f64, f64, Duration) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &scale_env());
    let pid = server.child.id();
    let (measured, ids) = block(invoke_many(&server.url, pid, n));
    block(async {
        for id in &ids {
            common::delete_lambda(&server.url, id).await;
        }
    });
    server.stop();
    measured
}

/// Creates `n` idling lambdas, invokes each once in random order and waits until all idle
/// again: what [`many`] reports, and the lambdas.
async fn invoke_many(
    server: &str,
    pid: u32,
    n: usize,
) -> ((usize, f64, f64, Duration), Vec<String>) {
    let t = Instant::now();
    let zip = hello_zip();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(post_create_with(server, &format!("many-{i}"), zip.clone(), Some(IDLE)).await);
        if (i + 1) % 100 == 0 {
            eprintln!("  created {} of {n}", i + 1);
        }
    }
    // Random order (a fixed seed: the same order every run).
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..ids.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ids.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let client = reqwest::Client::new();
    for (i, id) in ids.iter().enumerate() {
        let end = Instant::now() + Duration::from_secs(300);
        loop {
            let r = client
                .post(format!("{server}/1/lambdas/{id}/proxy/main"))
                .body("{}")
                .send()
                .await
                .unwrap();
            if r.status().is_success() {
                break;
            }
            // Still building: created lambdas are not all running yet.
            assert!(Instant::now() < end, "{id} never answered: {}", r.status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if (i + 1) % 100 == 0 {
            eprintln!("  invoked {} of {n}", i + 1);
        }
    }
    for id in &ids {
        until_status(server, id, "idle").await;
    }
    // The server lets go of its connections to the stopped replicas within a sweep of its pool.
    let end = Instant::now() + Duration::from_secs(10);
    while sockets(pid) > 16 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("  server sockets open: {}", sockets(pid));
    let elapsed = t.elapsed();
    let (procs, mib) = lambdas_rss(pid);
    ((procs, mib, rss_mib(pid), elapsed), ids)
}

fn main() {
    let n = setting("BENCH_WAKES", 50);
    let lambdas = setting("BENCH_LAMBDAS", 1000);
    println!("== wake from zero to the first answer, `hello`, {n} times (ms)");
    println!(
        "  {:<34} {:>9} {:>9} {:>9}",
        "path", "p50", "p99", "vs plain"
    );
    let (mut cold, mut plain) = local_wakes(n, false);
    let (mut forked, _) = local_wakes(n, true);
    let reference = line("plain process start (reference)", &mut plain, None);
    line("local wake, new interpreter", &mut cold, Some(reference));
    let local_p50 = line(
        "local wake, forked by the zygote",
        &mut forked,
        Some(reference),
    );
    let docker_p50 = match docker_wakes(n) {
        Ok(mut v) => Some(line(
            "docker wake (container start)",
            &mut v,
            Some(reference),
        )),
        Err(missing) => {
            println!("  docker wake: not measured ({missing} not set; see scripts/bench-scale)");
            None
        }
    };
    println!("== {lambdas} lambdas with min_replicas = 0, each invoked once in random order");
    let (procs, mib, server_mib, took) = many(lambdas);
    println!(
        "  after they idled again: {procs} lambda processes using {mib:.1} MiB; server RSS {server_mib:.1} MiB ({:.0} s in all)",
        took.as_secs_f64()
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "target: local wake p50 <= 150 ms ({local_p50:.1} ms: {})",
        verdict(local_p50 <= 150.0)
    );
    if let Some(d) = docker_p50 {
        println!(
            "target: Docker wake p50 <= 1000 ms ({d:.1} ms: {})",
            verdict(d <= 1000.0)
        );
    }
    println!(
        "target: server RSS <= 60 MB with {lambdas} idle lambdas ({server_mib:.1} MiB: {})",
        verdict(server_mib * 1.048_576 <= 60.0)
    );
}
