//! The server's metrics, on the Prometheus project's `prometheus-client` (OpenMetrics text):
//! requests by route, method and status, build and deploy durations, lambdas by status, failed
//! clean-ups. Counting a request takes a read lock and an atomic add once its labels exist.

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
const STATUSES: [&str; 4] = ["waiting", "running", "terminated", "not_found"];

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

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    build: Histogram,
    deploy: Histogram,
    lambdas: Family<StatusLabel, Gauge>,
    cleanup_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let build = Histogram::new(BUCKETS);
        let deploy = Histogram::new(BUCKETS);
        let lambdas = Family::<StatusLabel, Gauge>::default();
        let cleanup_failures = Counter::default();
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
        Self {
            registry,
            requests,
            build,
            deploy,
            lambdas,
            cleanup_failures,
        }
    }
}

impl Metrics {
    /// Counts one answered request (route and method are interned: no allocation per request).
    pub fn request(&self, route: &'static str, method: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
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
