//! Scaling with the load and to zero on the embedded default, over real HTTP (the scenarios of
//! `common/scale.rs`, which the Docker and Kubernetes suites run too), and the limit on requests
//! held for a wake.

mod common;

use common::scale::*;
use common::*;
use lambda_server::service::platform::{PlatformConfig, ScaleSettings};
use std::time::Duration;

fn scale_config(max_waiting: usize) -> PlatformConfig {
    PlatformConfig {
        scale: ScaleSettings {
            max_waiting,
            check_interval: Duration::from_millis(100),
            scale_down_after: Duration::from_secs(2),
        },
        ..test_config()
    }
}

/// The live replica processes of a lambda.
fn processes(dir: &std::path::Path) -> impl Fn(&str) -> usize + Sync + '_ {
    move |id| pids(dir, id).into_iter().filter(|p| alive(*p)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_lambda_wakes_once_for_50_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, scale_config(1000)).await).await;
    idles_and_wakes_for_50_requests(&s, &processes(dir.path())).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_under_load_scales_up_and_back_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, scale_config(1000)).await).await;
    scales_up_and_back_with_no_failed_request(&s, &processes(dir.path())).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_wake_reports_the_crash_to_every_held_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, scale_config(1000)).await).await;
    a_failing_wake_answers_every_held_request_with_the_crash(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_waiting_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, scale_config(3)).await).await;
    // Slow to start, so that every request arrives during the wake.
    let code =
        "import time\n\ntime.sleep(1.5)\n\n\nasync def main(request):\n    return {'ok': True}\n";
    let params = r#"{"deploy_parameters": {"scale": {"min_replicas": 0, "max_replicas": 1, "idle_timeout_secs": 1}}}"#;
    let id = running_lambda(
        &s,
        "slow-start",
        &zip_of(&[("lambda_main.py", code)]),
        params,
    )
    .await;
    record_until(&s, &id, "idling", |r| r["status"] == "idle").await;
    let url = format!("{}/1/lambdas/{id}/proxy/main", s.url);
    let answers = futures::future::join_all((0..8).map(|_| {
        let (http, url) = (s.http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (
                r.status().as_u16(),
                retry,
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    }))
    .await;
    let ok = answers.iter().filter(|(st, ..)| *st == 200).count();
    assert_eq!(
        ok, 3,
        "as many as max_waiting were held and served: {answers:?}"
    );
    for (status, retry, body) in answers.iter().filter(|(st, ..)| *st != 200) {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(body["error_code"], 42013, "{body}");
        assert_eq!(retry.as_deref(), Some("1"), "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("max_waiting"),
            "{body}"
        );
    }
    assert_eq!(s.delete(&id).await.status(), 204);
    s.stop().await;
}
