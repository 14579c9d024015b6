//! Scaling scenarios run on every backend (embedded default, Docker, Kubernetes): each takes a
//! server and `live`, which counts the replicas of a lambda the backend really runs (processes,
//! running containers, pods), so that "gone" is checked where it happens, not only in the API.

use super::*;

/// Live replicas of a lambda, as the backend sees them.
pub type Live<'a> = &'a (dyn Fn(&str) -> usize + Sync);

/// Polls the record until `ok` holds (deadline 90 s).
pub async fn record_until(
    s: &Server,
    id: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let r = s.record(id).await;
        if ok(&r) {
            return r;
        }
        assert!(Instant::now() < end, "{what} never happened: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `live` until it counts `n` (deadline 90 s).
pub async fn live_until(live: Live<'_>, id: &str, n: usize, what: &str) {
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let now = live(id);
        if now == n {
            return;
        }
        assert!(Instant::now() < end, "{what}: {now} live replicas, not {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server's `/metrics` text.
pub async fn metrics_text(s: &Server) -> String {
    s.http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A value of the server's `/metrics` (0 when absent).
pub async fn server_metric(s: &Server, name: &str) -> f64 {
    metrics_text(s)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Creates a lambda and waits until it runs.
pub async fn running_lambda(s: &Server, name: &str, zip: &[u8], params: &str) -> String {
    let id = created_id(s.create(name, zip, Some(params)).await).await;
    s.wait_for(&id, "running", "completed").await;
    id
}

/// `n` concurrent POSTs to the lambda's `main`: each answer's status and body.
pub async fn burst(s: &Server, id: &str, n: usize) -> Vec<(u16, serde_json::Value)> {
    futures::future::join_all((0..n).map(|i| s.invoke(id, serde_json::json!({"i": i})))).await
}

/// A lambda with `min_replicas = 0` idles (status `idle`, 0 replicas, none live), then 50
/// concurrent requests wake it once and all succeed; it idles again.
pub async fn idles_and_wakes_for_50_requests(s: &Server, live: Live<'_>) {
    let params = r#"{"deploy_parameters": {"scale": {"min_replicas": 0, "max_replicas": 2, "idle_timeout_secs": 1}}}"#;
    let id = running_lambda(s, "sleepy", &example_zip("hello"), params).await;
    assert_eq!(s.record(&id).await["replicas"], 1, "it starts with one");
    let idle = record_until(s, &id, "idling", |r| r["status"] == "idle").await;
    assert_eq!(idle["replicas"], 0, "{idle}");
    live_until(live, &id, 0, "an idle lambda's replicas stop").await;
    let (_, st) = get_json(&format!("{}/1/lambdas/{id}/status", s.url)).await;
    assert_eq!(st["status"], "idle", "{st}");

    let wakes = server_metric(s, "luna_lambda_wakes_total").await;
    let answers = burst(s, &id, 50).await;
    let failed: Vec<_> = answers.iter().filter(|(st, _)| *st != 200).collect();
    assert!(failed.is_empty(), "failed while waking: {failed:?}");
    assert_eq!(
        server_metric(s, "luna_lambda_wakes_total").await - wakes,
        1.0,
        "one wake for all the requests"
    );
    let awake = s.record(&id).await;
    assert_eq!(awake["status"], "running", "{awake}");
    assert!(awake["replicas"].as_u64().unwrap() >= 1, "{awake}");
    assert!(live(&id) >= 1, "a replica runs after the wake");
    record_until(s, &id, "idling again", |r| r["status"] == "idle").await;
    assert_eq!(s.delete(&id).await.status(), 204);
}

/// One client's requests until `stop`: how many succeeded, and what the others got.
async fn client_until(
    http: reqwest::Client,
    url: String,
    stop: tokio_util::sync::CancellationToken,
) -> (u32, Vec<String>) {
    let (mut ok, mut failed) = (0u32, Vec::new());
    while !stop.is_cancelled() {
        match http.post(&url).json(&serde_json::json!({})).send().await {
            Ok(r) if r.status() == 200 => ok += 1,
            Ok(r) => failed.push(format!(
                "{}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => failed.push(e.to_string()),
        }
    }
    (ok, failed)
}

/// `clients` clients sending requests until `stop`, as one task.
fn load(
    s: &Server,
    id: &str,
    clients: usize,
    stop: &tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Vec<(u32, Vec<String>)>> {
    let url = format!("{}/1/lambdas/{id}/proxy/main", s.url);
    let tasks: Vec<_> = (0..clients)
        .map(|_| client_until(s.http.clone(), url.clone(), stop.clone()))
        .collect();
    tokio::spawn(futures::future::join_all(tasks))
}

fn none_failed(clients: Vec<(u32, Vec<String>)>, when: &str) -> u32 {
    let ok: u32 = clients.iter().map(|(ok, _)| ok).sum();
    let failed: Vec<&String> = clients.iter().flat_map(|(_, f)| f).collect();
    assert!(
        failed.is_empty(),
        "{when}: {} of {} requests failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    ok
}

/// A lambda under load (8 clients, 2 in flight per replica wanted) scales from 1 to
/// `max_replicas` = 3, holds while the load lasts, and goes back to 1 under a light steady load
/// after it; no request fails on the way up or down.
pub async fn scales_up_and_back_with_no_failed_request(s: &Server, live: Live<'_>) {
    let slow = zip_of(&[(
        "lambda_main.py",
        "import asyncio\n\n\nasync def main(request):\n    await asyncio.sleep(0.05)\n    return {'ok': True}\n",
    )]);
    let params = r#"{"deploy_parameters": {"scale": {"min_replicas": 1, "max_replicas": 3, "target_concurrency": 2}}}"#;
    let id = running_lambda(s, "busy", &slow, params).await;
    assert_eq!(s.record(&id).await["replicas"], 1);

    let stop = tokio_util::sync::CancellationToken::new();
    let heavy = load(s, &id, 8, &stop);
    let up = record_until(s, &id, "scaling up to 3", |r| r["replicas"] == 3).await;
    assert_eq!(up["status"], "running");
    live_until(live, &id, 3, "three replicas under load").await;
    // The count holds while the load lasts.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(s.record(&id).await["replicas"], 3);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    let ok = none_failed(heavy.await.unwrap(), "scaling up");
    assert!(ok > 50, "only {ok} requests were made");

    // A light steady load while it scales back down.
    let stop = tokio_util::sync::CancellationToken::new();
    let light = load(s, &id, 1, &stop);
    let down = record_until(s, &id, "scaling back to 1", |r| r["replicas"] == 1).await;
    assert_eq!(down["status"], "running", "{down}");
    live_until(live, &id, 1, "the stopped replicas are gone").await;
    stop.cancel();
    none_failed(light.await.unwrap(), "scaling down");
    let text = metrics_text(s).await;
    assert!(
        text.contains(&format!("luna_lambda_replicas{{lambda_id=\"{id}\"}} 1")),
        "{text}"
    );
    assert_eq!(s.delete(&id).await.status(), 204);
}

/// An idle lambda that crashes as it starts (it asks a gate the test controls) answers every
/// request held for the wake with 503 (42013) and the crash output; once the gate says `ok`, the
/// next request wakes it.
pub async fn a_failing_wake_answers_every_held_request_with_the_crash(s: &Server) {
    let (gate_url, crash) = start_gate::gate().await;
    let code = start_gate::gated_main("WAKE_GATE");
    let params = serde_json::json!({
        "env": {"WAKE_GATE": gate_url},
        "deploy_parameters": {"scale": {"min_replicas": 0, "max_replicas": 1, "idle_timeout_secs": 1}},
    })
    .to_string();
    let id = running_lambda(s, "fragile", &zip_of(&[("lambda_main.py", &code)]), &params).await;
    record_until(s, &id, "idling", |r| r["status"] == "idle").await;
    crash.store(true, std::sync::atomic::Ordering::SeqCst);
    for (status, body) in burst(s, &id, 10).await {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error_code"], 42013, "{body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("could not be woken") && detail.contains("the gate says crash"),
            "the crash is in the answer: {body}"
        );
    }
    let rec = s.record(&id).await;
    assert_eq!(rec["status"], "idle", "{rec}");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("the gate says crash"),
        "{rec}"
    );
    crash.store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = s.invoke(&id, serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    let rec = s.record(&id).await;
    assert_eq!(rec["status"], "running", "{rec}");
    assert!(
        rec["reason"].is_null(),
        "the wake's failure is cleared: {rec}"
    );
    assert_eq!(s.delete(&id).await.status(), 204);
}
