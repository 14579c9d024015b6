//! Prometheus text metrics of the server: requests by route and status, build and deploy
//! durations, lambdas by status, failed clean-ups.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
        self.count += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, n) in BUCKETS.iter().zip(self.counts.iter()) {
            cum += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(
            out,
            "{name}_sum {:.6}\n{name}_count {}",
            self.sum, self.count
        );
    }
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    build: Mutex<Histogram>,
    deploy: Mutex<Histogram>,
    cleanup_failures: AtomicU64,
}

impl Metrics {
    /// Counts one answered request (route and method are interned: no allocation per request).
    pub fn request(&self, route: &'static str, method: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, method, status))
            .or_default() += 1;
    }

    /// Records a build's duration.
    pub fn observe_build(&self, d: Duration) {
        self.build
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(d);
    }

    /// Records a deploy's duration.
    pub fn observe_deploy(&self, d: Duration) {
        self.deploy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(d);
    }

    /// Counts a failed best-effort clean-up (image or artifact removal).
    pub fn cleanup_failed(&self) {
        self.cleanup_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text, with `lambdas` counted by status.
    pub fn render(&self, lambdas: &BTreeMap<&'static str, u64>) -> String {
        let mut out = String::new();
        out.push_str("# HELP luna_lambda_http_requests_total API and proxy requests answered.\n");
        out.push_str("# TYPE luna_lambda_http_requests_total counter\n");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "luna_lambda_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        self.build.lock().unwrap_or_else(|p| p.into_inner()).render(
            "luna_lambda_build_duration_seconds",
            "Time to build a lambda version.",
            &mut out,
        );
        self.deploy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(
                "luna_lambda_deploy_duration_seconds",
                "Time to deploy a lambda version.",
                &mut out,
            );
        out.push_str(
            "# HELP luna_lambda_lambdas Lambdas by status.\n# TYPE luna_lambda_lambdas gauge\n",
        );
        for status in ["waiting", "running", "terminated", "not_found"] {
            let _ = writeln!(
                out,
                "luna_lambda_lambdas{{status=\"{status}\"}} {}",
                lambdas.get(status).copied().unwrap_or(0)
            );
        }
        out.push_str(
            "# HELP luna_lambda_cleanup_failures_total Best-effort clean-ups that failed.\n",
        );
        out.push_str("# TYPE luna_lambda_cleanup_failures_total counter\n");
        let _ = writeln!(
            out,
            "luna_lambda_cleanup_failures_total {}",
            self.cleanup_failures.load(Ordering::Relaxed)
        );
        out
    }
}
