//! `scripts/bench-proxy`: our proxy side by side with nginx and with no proxy at all, in one run.
//!
//! The `hello` example runs on the embedded default (the real `luna-lambda serve`, one replica,
//! one worker). wrk POSTs JSON to three addresses in alternating rounds (direct to the replica,
//! through our proxy, through Debian's nginx with a keep-alive upstream pool to the same replica),
//! at 1 and 50 connections, with a small body and a 1 MiB body; the median round of each is
//! printed with its throughput ratio to direct and the latency it adds, and each proxy's CPU time
//! per request over all its rounds (user + system of its processes: the server; nginx's master
//! and workers), the measure least disturbed by the noise of a shared machine. Server, nginx,
//! lambda and wrk share the machine's cores, as they would on a small node.
//!
//! Then the same server is restarted on the same data folder with `[auth] mode = "token"` (the
//! lambda keeps running, so the replica is the same) and the small-body cases run again with an
//! `invoke` token, to show what token checking adds to p50 and p99 end to end; next to it, the
//! token check alone (`Auth::check` on a cached token) timed in process, where its microseconds
//! are not lost in the noise of a loopback round trip.
//!
//! Last, each proxy's instructions per request at 1 connection, counted by callgrind (the server
//! restarted under it on the same data folder; nginx as one process): a measure of a proxy's own
//! work that the machine's noise does not move.
//!
//! Settings: `BENCH_SECONDS` per wrk run (default 5), `BENCH_ROUNDS` (default 3),
//! `BENCH_NGINX_WORKERS` (default `auto`).

use std::path::Path;
use std::process::{Child, Command, Stdio};

mod common;
use common::{BodySize, Server, Wrk, cpu_ticks, free_port, median, wait_for, wrk_as};

/// A path under test, the processes whose CPU time its requests cost (none for direct), and
/// the token its requests carry.
struct Route<'a> {
    name: &'static str,
    url: &'a str,
    pids: Vec<u32>,
    token: Option<&'a str>,
}

impl<'a> Route<'a> {
    /// Straight to the replica: no proxy, no token.
    fn direct(url: &'a str) -> Self {
        Route {
            name: "direct",
            url,
            pids: Vec::new(),
            token: None,
        }
    }
}

/// A median round and, over all rounds, the CPU time per request of the path's processes and of
/// the replica behind it.
struct Measured {
    wrk: Wrk,
    cpu_us: f64,
    replica_us: f64,
}

/// nginx as a reverse proxy to one upstream with a keep-alive pool: the configuration an operator
/// would put in front of a service (no access log, bodies kept in memory, HTTP/1.1 upstream).
fn nginx_conf(prefix: &Path, port: u16, upstream_port: u64, workers: &str) -> String {
    let p = prefix.display();
    format!(
        "worker_processes {workers};\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {p}/body;\n\
           proxy_temp_path {p}/proxy;\n\
           fastcgi_temp_path {p}/fastcgi;\n\
           uwsgi_temp_path {p}/uwsgi;\n\
           scgi_temp_path {p}/scgi;\n\
           client_max_body_size 0;\n\
           client_body_buffer_size 4m;\n\
           proxy_buffer_size 64k;\n\
           proxy_buffers 64 64k;\n\
           keepalive_requests 1000000;\n\
           upstream lambda {{ server 127.0.0.1:{upstream_port}; keepalive 128; keepalive_requests 1000000; }}\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             location / {{\n\
               proxy_pass http://lambda;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
             }}\n\
           }}\n\
         }}\n"
    )
}

struct Nginx {
    child: Child,
    url: String,
}

impl Nginx {
    fn start(prefix: &Path, upstream_port: u64, workers: &str) -> Nginx {
        let port = free_port();
        let child = Self::command(prefix, port, upstream_port, workers, "daemon off;")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx is installed (scripts/bench-proxy installs it)");
        let url = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{url}/healthcheck"), 30, "nginx");
        Nginx { child, url }
    }

    /// nginx on `port` in front of the replica on `upstream_port`, its configuration written
    /// under `prefix`; `global` are the directives given on its command line.
    fn command(
        prefix: &Path,
        port: u16,
        upstream_port: u64,
        workers: &str,
        global: &str,
    ) -> Command {
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(prefix, port, upstream_port, workers)).unwrap();
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .args(["-g", global]);
        command
    }

    /// SIGTERM: the master stops its workers (a SIGKILL would leave them running).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Each path's median round and CPU per request (its own and the replica's `replica` behind it),
/// in the order of `paths`.
fn rounds(
    paths: &[Route],
    replica: u32,
    secs: u32,
    rounds: usize,
    conns: u32,
    body: BodySize,
) -> Vec<Measured> {
    let mut runs: Vec<(Vec<Wrk>, u64, u64, u64)> =
        paths.iter().map(|_| (Vec::new(), 0, 0, 0)).collect();
    for p in paths {
        wrk_as(p.url, 1, conns, body, p.token); // warm connections and pools
    }
    for _ in 0..rounds {
        for (p, (v, ticks, replica_ticks, requests)) in paths.iter().zip(runs.iter_mut()) {
            let (before, replica_before) = (cpu_ticks(&p.pids), cpu_ticks(&[replica]));
            let w = wrk_as(p.url, secs, conns, body, p.token);
            *ticks += cpu_ticks(&p.pids) - before;
            *replica_ticks += cpu_ticks(&[replica]) - replica_before;
            *requests += w.requests;
            v.push(w);
        }
    }
    let per_request = |ticks: u64, requests: u64| ticks as f64 * 10_000.0 / requests.max(1) as f64;
    runs.into_iter()
        .map(|(v, ticks, replica_ticks, requests)| Measured {
            wrk: median(v),
            cpu_us: per_request(ticks, requests),
            replica_us: per_request(replica_ticks, requests),
        })
        .collect()
}

/// One row group: each path's throughput, ratio to direct, p50/p99, the p50 it adds, and the CPU
/// time the proxy's processes and the replica spent per request.
fn print_case(label: &str, paths: &[Route], r: &[Measured]) {
    println!("{label}");
    println!(
        "  {:<12} {:>9} {:>9} {:>9} {:>9} {:>11} {:>14} {:>16}",
        "path",
        "req/s",
        "vs direct",
        "p50 ms",
        "p99 ms",
        "p50 added",
        "proxy CPU/req",
        "replica CPU/req"
    );
    let d = &r[0].wrk;
    for (p, m) in paths.iter().zip(r) {
        let w = &m.wrk;
        let cpu = if p.pids.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.1} us", m.cpu_us)
        };
        println!(
            "  {:<12} {:>9.0} {:>9.2} {:>9.3} {:>9.3} {:>+11.3} {:>14} {:>13.1} us",
            p.name,
            w.rps,
            w.rps / d.rps,
            w.p50,
            w.p99,
            w.p50 - d.p50,
            cpu,
            m.replica_us
        );
    }
}

fn main() {
    let env_num = |k: &str, d: usize| -> usize {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let secs = env_num("BENCH_SECONDS", 5) as u32;
    let n_rounds = env_num("BENCH_ROUNDS", 3);
    let workers = std::env::var("BENCH_NGINX_WORKERS").unwrap_or_else(|_| "auto".into());

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = rt.block_on(common::create_hello(&server.url)).id;
    let port = common::replica_port(data.path(), &id);
    let replica = common::replica_pid(data.path(), &id);
    let nginx_dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(nginx_dir.path(), port, &workers);

    let direct = format!("http://127.0.0.1:{port}/main");
    let ours = format!("{}/1/lambdas/{id}/proxy/main", server.url);
    let theirs = format!("{}/main", nginx.url);
    let nginx_pids: Vec<u32> = std::iter::once(nginx.child.id())
        .chain(common::children(nginx.child.id()))
        .collect();
    let paths = [
        Route::direct(&direct),
        Route {
            name: "luna-lambda",
            url: &ours,
            pids: vec![server.child.id()],
            token: None,
        },
        Route {
            name: "nginx",
            url: &theirs,
            pids: nginx_pids,
            token: None,
        },
    ];

    let mut results = Vec::new();
    for body in [BodySize::Small, BodySize::Bytes(1 << 20)] {
        for conns in [50, 1] {
            results.push((
                body,
                conns,
                rounds(&paths, replica, secs, n_rounds, conns, body),
            ));
        }
    }
    nginx.stop();
    server.stop();
    let instructions = count_instructions(data.path(), port, &id, secs);

    let tokens = TokenStage::run(data.path(), &id, &direct, replica, (secs, n_rounds), &rt);
    let auth_paths = tokens.paths(&direct);

    println!(
        "== proxy benchmark: `hello` (one replica, one worker) on the embedded default; wrk -t1 -d{secs}s POST, median of {n_rounds} alternating rounds; nginx worker_processes {workers}"
    );
    for (body, conns, r) in &results {
        print_case(
            &format!("{}, {conns} connection(s)", body.label()),
            &paths,
            r,
        );
    }
    print_token_cost(&results, &auth_paths, &tokens.results, &tokens.in_process);
    let (ours, theirs) = instructions;
    println!(
        "instructions per request (callgrind, user space), small JSON, 1 connection: ours {ours:.0}, nginx {theirs:.0} (ratio {:.2})",
        ours / theirs
    );
    print_targets(&results);
}

/// Each case's CPU per request side by side, and whether it meets its target.
fn print_targets(results: &[(BodySize, u32, Vec<Measured>)]) {
    for (body, conns, r) in results {
        let (ours, theirs) = (&r[1].wrk, &r[2].wrk);
        println!(
            "proxy CPU per request, {}, {conns} connection(s): ours {:.1} us, nginx {:.1} us (ratio {:.2})",
            body.label(),
            r[1].cpu_us,
            r[2].cpu_us,
            r[1].cpu_us / r[2].cpu_us
        );
        if *conns == 50 {
            let (a, b) = (ours.rps / r[0].wrk.rps, theirs.rps / r[0].wrk.rps);
            println!(
                "target, {}, 50 connections: our req/s ratio >= nginx's ({a:.2} vs {b:.2}: {})",
                body.label(),
                if a >= b { "met" } else { "NOT met" }
            );
        } else {
            let (a, b) = (ours.p50 - r[0].wrk.p50, theirs.p50 - r[0].wrk.p50);
            println!(
                "target, {}, 1 connection: our added p50 <= nginx's ({a:+.3} ms vs {b:+.3} ms: {})",
                body.label(),
                if a <= b { "met" } else { "NOT met" }
            );
        }
    }
}

/// The same replica through the same server restarted with tokens required: the small-body
/// rounds with an `invoke` token, and the token check alone in process.
struct TokenStage {
    url: String,
    token: String,
    pid: u32,
    results: Vec<(u32, Vec<Measured>)>,
    in_process: CheckTimes,
}

impl TokenStage {
    /// Runs it on the server's `data` (`timing`: seconds per run, rounds); deletes the lambda
    /// `id` and stops the server after.
    fn run(
        data: &Path,
        id: &str,
        direct: &str,
        replica: u32,
        timing: (u32, usize),
        rt: &tokio::runtime::Runtime,
    ) -> TokenStage {
        let (secs, n_rounds) = timing;
        let server = Server::start_with(
            data,
            &[
                ("LUNA_LAMBDA_AUTH_MODE".into(), "token".into()),
                ("LUNA_LAMBDA_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ],
        );
        let mut stage = TokenStage {
            token: rt.block_on(invoke_token(&server.url)),
            url: format!("{}/1/lambdas/{id}/proxy/main", server.url),
            pid: server.child.id(),
            results: Vec::new(),
            in_process: rt.block_on(token_check_in_process()),
        };
        for conns in [50, 1] {
            let paths = stage.paths(direct);
            let r = rounds(&paths, replica, secs, n_rounds, conns, BodySize::Small);
            stage.results.push((conns, r));
        }
        rt.block_on(async {
            reqwest::Client::new()
                .delete(format!("{}/1/lambdas/{id}", server.url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
        })
        .unwrap();
        server.stop();
        stage
    }

    /// Direct, and through the server with the token.
    fn paths<'a>(&'a self, direct: &'a str) -> [Route<'a>; 2] {
        [
            Route::direct(direct),
            Route {
                name: "luna+token",
                url: &self.url,
                pids: vec![self.pid],
                token: Some(&self.token),
            },
        ]
    }
}

/// Instructions per request of each proxy (ours, nginx) to the replica on `replica_port`,
/// small body, 1 connection: the server restarted under callgrind on `data` (the lambda runs on,
/// and is adopted), and nginx as one process with the same configuration.
fn count_instructions(data: &Path, replica_port: u64, id: &str, secs: u32) -> (f64, f64) {
    use common::callgrind::{Counted, per_request};
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let ours = per_request(
        Counted {
            command: Server::command(data, port),
            health: &format!("{url}/version"),
            url: &format!("{url}/1/lambdas/{id}/proxy/main"),
        },
        secs,
    );
    let prefix = tempfile::tempdir().unwrap();
    let port = free_port();
    let global = "daemon off; master_process off;";
    let url = format!("http://127.0.0.1:{port}");
    let theirs = per_request(
        Counted {
            command: Nginx::command(prefix.path(), port, replica_port, "1", global),
            health: &format!("{url}/healthcheck"),
            url: &format!("{url}/main"),
        },
        secs,
    );
    (ours, theirs)
}

/// The bootstrap admin token of the auth-on server.
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef0123456789";

/// An `invoke` token of the benchmark's account, made with the admin token.
async fn invoke_token(server: &str) -> String {
    let r = common::json_answer(
        reqwest::Client::new()
            .post(format!("{server}/1/tokens"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"name": "bench", "account_id": common::ACCOUNT, "scope": "invoke"})),
    )
    .await;
    r["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token made: {r}"))
        .to_owned()
}

/// Per-call times (µs) of `Auth::check` for a proxy request: with a cached token, and with
/// auth off (the floor), in process.
struct CheckTimes {
    on: (f64, f64, f64),
    off: (f64, f64, f64),
    calls: usize,
}

async fn token_check_in_process() -> CheckTimes {
    use lambda_server::http::auth::{Access, Auth, AuthSettings};
    const CALLS: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let store = lambda_storage::open(&lambda_storage::StorageConfig::new(format!(
        "file://{}",
        dir.path().display()
    )))
    .unwrap()
    .tokens();
    let on = Auth::new(
        AuthSettings {
            enabled: true,
            ..AuthSettings::default()
        },
        store.clone(),
    );
    let off = Auth::new(AuthSettings::default(), store);
    let made = on
        .create(lambda_core::auth::CreateTokenRequest {
            name: "bench".into(),
            account_id: Some(common::ACCOUNT.parse().unwrap()),
            admin: false,
            scope: lambda_core::auth::TokenScope::Invoke,
            expires_in_secs: None,
        })
        .await
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", made.token).parse().unwrap(),
    );
    headers.insert("Luna-Account-Id", common::ACCOUNT.parse().unwrap());
    let time = |auth: std::sync::Arc<Auth>| {
        let headers = headers.clone();
        async move {
            let mut v = Vec::with_capacity(CALLS);
            for _ in 0..CALLS {
                let t = std::time::Instant::now();
                let who = auth
                    .check(&headers, &reqwest::Method::POST, Access::Proxy)
                    .await
                    .unwrap();
                v.push(t.elapsed().as_secs_f64() * 1e6);
                std::hint::black_box(who);
            }
            v.sort_by(f64::total_cmp);
            (v[CALLS / 2], v[CALLS * 99 / 100], v[CALLS - 1])
        }
    };
    CheckTimes {
        on: time(on).await,
        off: time(off).await,
        calls: CALLS,
    }
}

/// What token checking costs: end to end (the same cases with auth off and on, each against
/// direct in its own rounds) and in process.
fn print_token_cost(
    off: &[(BodySize, u32, Vec<Measured>)],
    paths: &[Route],
    on: &[(u32, Vec<Measured>)],
    in_process: &CheckTimes,
) {
    println!(
        "== token checking: the same replica through the server restarted with [auth] mode = \"token\" (an invoke token)"
    );
    for (conns, r) in on {
        print_case(
            &format!("small JSON, {conns} connection(s), auth on"),
            paths,
            r,
        );
    }
    println!(
        "  {:<24} {:>14} {:>14} {:>14} {:>14} {:>16}",
        "small JSON",
        "p50 added off",
        "p50 added on",
        "p99 added off",
        "p99 added on",
        "CPU/req off/on"
    );
    for (conns, r_on) in on {
        let Some((_, _, r_off)) = off
            .iter()
            .find(|(b, c, _)| *b == BodySize::Small && c == conns)
        else {
            continue;
        };
        let added = |r: &[Measured]| (r[1].wrk.p50 - r[0].wrk.p50, r[1].wrk.p99 - r[0].wrk.p99);
        let (p50_off, p99_off) = added(r_off);
        let (p50_on, p99_on) = added(r_on);
        println!(
            "  {:<24} {:>+11.3} ms {:>+11.3} ms {:>+11.3} ms {:>+11.3} ms {:>7.1}/{:.1} us",
            format!("{conns} connection(s)"),
            p50_off,
            p50_on,
            p99_off,
            p99_on,
            r_off[1].cpu_us,
            r_on[1].cpu_us
        );
    }
    let CheckTimes { on, off, calls } = in_process;
    println!(
        "token check in process ({calls} calls, cached token): p50 {:.2} us, p99 {:.2} us, max {:.1} us; auth off: p50 {:.2} us, p99 {:.2} us",
        on.0, on.1, on.2, off.0, off.1
    );
    println!(
        "target: token check <= 20 us at p50 and p99 ({:.2} / {:.2} us: {})",
        on.0,
        on.1,
        if on.0 <= 20.0 && on.1 <= 20.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
