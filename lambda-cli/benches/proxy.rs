//! `scripts/bench-proxy`: our proxy side by side with nginx and with no proxy at all, in one run.
//!
//! The `hello` example runs on the embedded default (the real `luna-lambda serve`, one replica,
//! one worker). wrk POSTs JSON to three addresses in alternating rounds (direct to the replica,
//! through our proxy, through Debian's nginx with a keep-alive upstream pool to the same replica),
//! at 1 and 50 connections, with a small body and a 1 MiB body; the median round of each is
//! printed with its throughput ratio to direct and the latency it adds. Server, nginx, lambda and
//! wrk share the machine's cores, as they would on a small node.
//!
//! Settings: `BENCH_SECONDS` per wrk run (default 5), `BENCH_ROUNDS` (default 3),
//! `BENCH_NGINX_WORKERS` (default `auto`).

use std::path::Path;
use std::process::{Child, Command, Stdio};

mod common;
use common::{BodySize, Server, Wrk, free_port, median, wait_for, wrk_body};

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
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(prefix, port, upstream_port, workers)).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx is installed (scripts/bench-proxy installs it)");
        let url = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{url}/healthcheck"), 30, "nginx");
        Nginx { child, url }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The median round of each path, in the order of `urls`.
fn rounds(urls: &[&str], secs: u32, rounds: usize, conns: u32, body: BodySize) -> Vec<Wrk> {
    let mut runs: Vec<Vec<Wrk>> = urls.iter().map(|_| Vec::new()).collect();
    for url in urls {
        wrk_body(url, 1, conns, body); // warm connections and pools
    }
    for _ in 0..rounds {
        for (url, v) in urls.iter().zip(runs.iter_mut()) {
            v.push(wrk_body(url, secs, conns, body));
        }
    }
    runs.into_iter().map(median).collect()
}

/// One row group: each path's throughput, ratio to direct, p50/p99 and the p50 it adds.
fn print_case(label: &str, names: &[&str], r: &[Wrk]) {
    println!("{label}");
    println!(
        "  {:<12} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "path", "req/s", "vs direct", "p50 ms", "p99 ms", "p50 added"
    );
    for (name, w) in names.iter().zip(r) {
        println!(
            "  {:<12} {:>9.0} {:>9.2} {:>9.3} {:>9.3} {:>+11.3}",
            name,
            w.rps,
            w.rps / r[0].rps,
            w.p50,
            w.p99,
            w.p50 - r[0].p50
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
    let nginx_dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(nginx_dir.path(), port, &workers);

    let direct = format!("http://127.0.0.1:{port}/main");
    let ours = format!("{}/1/lambdas/{id}/proxy/main", server.url);
    let theirs = format!("{}/main", nginx.url);
    let urls = [direct.as_str(), ours.as_str(), theirs.as_str()];
    let names = ["direct", "luna-lambda", "nginx"];

    let mut results = Vec::new();
    for body in [BodySize::Small, BodySize::Bytes(1 << 20)] {
        for conns in [50, 1] {
            results.push((body, conns, rounds(&urls, secs, n_rounds, conns, body)));
        }
    }
    rt.block_on(common::delete_lambda(&server.url, &id));
    server.stop();
    nginx.stop();

    println!(
        "== proxy benchmark: `hello` (one replica, one worker) on the embedded default; wrk -t1 -d{secs}s POST, median of {n_rounds} alternating rounds; nginx worker_processes {workers}"
    );
    for (body, conns, r) in &results {
        print_case(
            &format!("{} , {conns} connection(s)", body.label()),
            &names,
            r,
        );
    }
    for (body, conns, r) in &results {
        let (ours, theirs) = (&r[1], &r[2]);
        if *conns == 50 {
            let (a, b) = (ours.rps / r[0].rps, theirs.rps / r[0].rps);
            println!(
                "target, {}, 50 connections: our req/s ratio >= nginx's ({a:.2} vs {b:.2}: {})",
                body.label(),
                if a >= b { "met" } else { "NOT met" }
            );
        } else {
            let (a, b) = (ours.p50 - r[0].p50, theirs.p50 - r[0].p50);
            println!(
                "target, {}, 1 connection: our added p50 <= nginx's ({a:+.3} ms vs {b:+.3} ms: {})",
                body.label(),
                if a <= b { "met" } else { "NOT met" }
            );
        }
    }
}
