//! Rollback next to an update of the same change: the time from the request until the proxy
//! answers with the other version, on the embedded default and (when the Docker engine, registry
//! and base images are up: `scripts/bench-versions`) with the Docker builder and orchestrator.
//! An update uploads the archive and is built (environment or requirements layer cached: a
//! code-only change); a rollback to a kept version deploys its artifact with no build.

mod common;

use common::*;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

fn code(marker: &str) -> Vec<u8> {
    lambda_core::pack::pack_files(vec![(
        "lambda_main.py".to_owned(),
        format!("async def main(request):\n    return {{'marker': '{marker}'}}\n").into_bytes(),
    )])
}

/// Waits until the lambda answers with `marker`; the time since `t`.
async fn until_answers(server: &str, id: &str, marker: &str, t: Instant) -> Duration {
    let client = reqwest::Client::new();
    loop {
        let r = client
            .post(format!("{server}/1/lambdas/{id}/proxy/main"))
            .body("{}")
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
            && r.json::<serde_json::Value>()
                .await
                .is_ok_and(|b| b["marker"] == marker)
        {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "{marker} never answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn create(server: &str) -> String {
    let id = post_create(server, "bench-rollback", code("a")).await;
    until_answers(server, &id, "a", Instant::now()).await;
    id
}

async fn update(server: &str, id: &str, marker: &str) -> Duration {
    let form = reqwest::multipart::Form::new().part(
        "archive",
        reqwest::multipart::Part::bytes(code(marker)).file_name("u.zip"),
    );
    let t = Instant::now();
    let r = reqwest::Client::new()
        .put(format!("{server}/1/lambdas/{id}"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    until_answers(server, id, marker, t).await
}

async fn rollback(server: &str, id: &str, marker: &str) -> Duration {
    let t = Instant::now();
    let r = common::json_answer(
        reqwest::Client::new().post(format!("{server}/1/lambdas/{id}/rollback")),
    )
    .await;
    assert_eq!(r["rebuild"], false, "{r}");
    until_answers(server, id, marker, t).await
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

/// Rounds of: update a → b<k> by upload (measured), then rollback to the previous version,
/// which runs a again (measured): the same change, one way built, the other from the kept
/// artifact.
fn measure(rt: &tokio::runtime::Runtime, label: &str, env: &[(String, String)]) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), env);
    let url = server.url.clone();
    let (u, r) = rt.block_on(async {
        let id = create(&url).await;
        let (mut updates, mut rollbacks) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let new = format!("b{round}");
            updates.push(update(&url, &id, &new).await);
            rollbacks.push(rollback(&url, &id, "a").await);
        }
        delete_lambda(&url, &id).await;
        (median(updates), median(rollbacks))
    });
    println!(
        "{label:<28} update (code-only) {u:>7.3} s   rollback (artifact kept) {r:>7.3} s   rollback/update {:.2}",
        r / u
    );
    server.stop();
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("request -> the proxy answers with the other version, median of {ROUNDS} rounds");
    measure(&rt, "embedded default (local)", &[]);
    match (
        std::env::var("DOCKER_HOST"),
        std::env::var("LAMBDA_IT_REGISTRY"),
        std::env::var("LAMBDA_IT_BASE_TAG"),
    ) {
        (Ok(host), Ok(registry), Ok(tag)) => {
            let env: Vec<(String, String)> = [
                ("DOCKER_HOST", host),
                ("LAMBDA_REGISTRY", registry),
                ("LUNA_LAMBDA_BUILDER_KIND", "docker".into()),
                ("LUNA_LAMBDA_BUILDER_BASE_TAG", tag),
                ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "docker".into()),
                (
                    "LUNA_LAMBDA_ORCHESTRATOR_INSTANCE",
                    format!("bench-{}", uuid::Uuid::new_v4()),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            measure(&rt, "Docker builder + containers", &env);
        }
        _ => println!("Docker: not measured (run scripts/bench-versions)"),
    }
}
