//! The server's metrics, on the Prometheus project's `prometheus-client` (OpenMetrics text):
//! requests by route, method and status, build and deploy durations, lambdas by status, failed
//! clean-ups. Counting a request takes a read lock, a cheap hash of three words and an atomic add
//! once its labels exist (see `Counters`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::time::Duration;

/// Buckets (seconds) of the build and deploy durations.
const BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The statuses `luna_lambda_lambdas` reports (each, even at 0).
const STATUSES: [&str; 5] = ["waiting", "running", "terminated", "not_found", "idle"];

/// Buckets (seconds) of the wake latency.
const WAKE_BUCKETS: [f64; 10] = [0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LambdaLabel {
    lambda_id: String,
}

/// The request counters by the addresses of their route and method (interned `&'static str`s)
/// and the status. The family's own map hashes the labels' text with SipHash at every request;
/// this hashes three words. (The same text at two addresses gives two keys to one counter.)
type Counters = std::sync::RwLock<foldhash::HashMap<(usize, usize, u16), Counter>>;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// The counters of `requests` by the addresses of their interned labels.
    counters: Counters,
    build: Histogram,
    deploy: Histogram,
    lambdas: Family<StatusLabel, Gauge>,
    cleanup_failures: Counter,
    replicas: Family<LambdaLabel, Gauge>,
    wakes: Counter,
    wake_failures: Counter,
    wake: Histogram,
    held: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let build = Histogram::new(BUCKETS);
        let deploy = Histogram::new(BUCKETS);
        let lambdas = Family::<StatusLabel, Gauge>::default();
        let cleanup_failures = Counter::default();
        let replicas = Family::<LambdaLabel, Gauge>::default();
        let wakes = Counter::default();
        let wake_failures = Counter::default();
        let wake = Histogram::new(WAKE_BUCKETS);
        let held = Gauge::default();
        let mut registry = Registry::default();
        registry.register(
            "luna_lambda_http_requests",
            "API and proxy requests answered",
            requests.clone(),
        );
        registry.register(
            "luna_lambda_build_duration_seconds",
            "Time to build a lambda version",
            build.clone(),
        );
        registry.register(
            "luna_lambda_deploy_duration_seconds",
            "Time to deploy a lambda version",
            deploy.clone(),
        );
        registry.register("luna_lambda_lambdas", "Lambdas by status", lambdas.clone());
        registry.register(
            "luna_lambda_cleanup_failures",
            "Best-effort clean-ups that failed",
            cleanup_failures.clone(),
        );
        registry.register(
            "luna_lambda_replicas",
            "Replicas per lambda, as the autoscaler set them",
            replicas.clone(),
        );
        registry.register("luna_lambda_wakes", "Wakes of idle lambdas", wakes.clone());
        registry.register(
            "luna_lambda_wake_failures",
            "Wakes that failed (every held request got the reason)",
            wake_failures.clone(),
        );
        registry.register(
            "luna_lambda_wake_duration_seconds",
            "Time from a request to an idle lambda until a replica answers",
            wake.clone(),
        );
        registry.register(
            "luna_lambda_requests_held",
            "Requests held by the proxy while their lambda wakes",
            held.clone(),
        );
        Self {
            registry,
            requests,
            counters: Counters::default(),
            build,
            deploy,
            lambdas,
            cleanup_failures,
            replicas,
            wakes,
            wake_failures,
            wake,
            held,
        }
    }
}

impl Metrics {
    /// Counts one answered request (route and method are interned: no allocation per request).
    pub fn request(&self, route: &'static str, method: &'static str, status: u16) {
        let key = (route.as_ptr() as usize, method.as_ptr() as usize, status);
        let found = self
            .counters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .map(Counter::inc);
        if found.is_none() {
            let counter = self
                .requests
                .get_or_create(&RequestLabels {
                    route,
                    method,
                    status,
                })
                .clone();
            counter.inc();
            self.counters
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, counter);
        }
    }

    /// Records a build's duration.
    pub fn observe_build(&self, d: Duration) {
        self.build.observe(d.as_secs_f64());
    }

    /// Records a deploy's duration.
    pub fn observe_deploy(&self, d: Duration) {
        self.deploy.observe(d.as_secs_f64());
    }

    /// Counts a failed best-effort clean-up (image or artifact removal).
    pub fn cleanup_failed(&self) {
        self.cleanup_failures.inc();
    }

    /// Sets a lambda's replica count (`None`: forget the lambda).
    pub fn set_replicas(&self, lambda_id: &lambda_core::LambdaId, n: Option<u32>) {
        let labels = LambdaLabel {
            lambda_id: lambda_id.to_string(),
        };
        match n {
            Some(n) => {
                self.replicas.get_or_create(&labels).set(i64::from(n));
            }
            None => {
                self.replicas.remove(&labels);
            }
        }
    }

    /// Records a wake: its latency, and whether it failed.
    pub fn observe_wake(&self, d: Duration, ok: bool) {
        self.wakes.inc();
        if !ok {
            self.wake_failures.inc();
        }
        self.wake.observe(d.as_secs_f64());
    }

    /// A request is held for a wake.
    pub fn hold(&self) {
        self.held.inc();
    }

    /// A request held for a wake goes on (or gives up).
    pub fn release(&self) {
        self.held.dec();
    }

    /// The OpenMetrics text ([`CONTENT_TYPE`]), with `lambdas` counted by status.
    pub fn render(&self, lambdas: &BTreeMap<&'static str, u64>) -> String {
        for status in STATUSES {
            let n = lambdas.get(status).copied().unwrap_or(0);
            self.lambdas
                .get_or_create(&StatusLabel { status })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_every_metric_with_its_labels() {
        let m = Metrics::default();
        m.request("/version", "GET", 200);
        m.request("/version", "GET", 200);
        m.observe_build(Duration::from_millis(300));
        m.cleanup_failed();
        let text = m.render(&BTreeMap::from([("running", 2)]));
        assert!(
            text.contains(
                "luna_lambda_http_requests_total{route=\"/version\",method=\"GET\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("luna_lambda_build_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("luna_lambda_build_duration_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("luna_lambda_lambdas{status=\"running\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("luna_lambda_lambdas{status=\"waiting\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("luna_lambda_cleanup_failures_total 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
