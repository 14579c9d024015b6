//! `last_usage` and the inactivity sweep over real HTTP on the embedded default: a called lambda
//! gets its `last_usage` within the flush interval; with `[idle] switch_off_after_secs`, an unused
//! lambda is switched off (its replicas gone, requests refused with 42014 rather than woken), an
//! `eternal` one stays, and switching on clears the reason.

mod common;

use common::scale::record_until;
use common::*;
use lambda_server::service::platform::{IdleSettings, PlatformConfig};
use std::time::Duration;

fn idle_config(switch_off_after: Option<Duration>) -> PlatformConfig {
    PlatformConfig {
        idle: IdleSettings {
            switch_off_after,
            check_interval: Duration::from_millis(200),
            last_usage_flush: Duration::from_millis(200),
        },
        ..test_config()
    }
}

async fn create(s: &Server, name: &str, params: Option<&str>) -> String {
    let resp = s.create(name, &example_zip("hello"), params).await;
    assert_eq!(resp.status(), 201);
    resp.json::<serde_json::Value>().await.unwrap()["lambda_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_called_lambda_gets_its_last_usage_without_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, idle_config(None)).await).await;
    let id = create(&s, "used", None).await;
    s.wait_for(&id, "running", "completed").await;
    assert!(
        s.record(&id).await["last_usage"].is_null(),
        "never called yet"
    );
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let (status, _) = s.invoke(&id, serde_json::json!({})).await;
    assert_eq!(status, 200);
    let r = record_until(&s, &id, "last_usage written", |r| {
        r["last_usage"].is_string()
    })
    .await;
    let at = time::OffsetDateTime::parse(
        r["last_usage"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(
        at >= before - 1,
        "last_usage {at} is the call's time ({before})"
    );
    // Writing last_usage is not a change of the lambda: its version and update time stay.
    assert_eq!(r["lambda_version"], 1);
    assert!(r["alive"].as_bool().unwrap());
    s.delete(&id).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_lambdas_are_switched_off_unless_eternal() {
    let dir = tempfile::tempdir().unwrap();
    let after = Duration::from_secs(4);
    let s = Server::start(platform(dir.path(), true, idle_config(Some(after))).await).await;
    let plain = create(&s, "plain", None).await;
    let eternal = create(&s, "eternal", Some(r#"{"eternal": true}"#)).await;
    for id in [&plain, &eternal] {
        s.wait_for(id, "running", "completed").await;
    }
    assert_eq!(s.record(&eternal).await["parameters"]["eternal"], true);
    // Both are called, at the same moment; only the plain one is switched off afterwards.
    for id in [&plain, &eternal] {
        assert_eq!(s.invoke(id, serde_json::json!({})).await.0, 200);
    }
    let off = record_until(&s, &plain, "the sweep", |r| r["alive"] == false).await;
    assert!(
        off["reason"]
            .as_str()
            .unwrap()
            .contains("switch_off_after_secs"),
        "{off}"
    );
    // Not before its time: its last use (written by the flush) is at least `after` ago.
    let last = time::OffsetDateTime::parse(
        off["last_usage"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(time::OffsetDateTime::now_utc() - last >= after);
    let kept = s.record(&eternal).await;
    assert_eq!(kept["alive"], true, "{kept}");
    assert_eq!(kept["status"], "running", "{kept}");
    // A request does not wake a switched-off lambda: that stays the explicit switch on.
    let (status, body) = s.invoke(&plain, serde_json::json!({})).await;
    assert_eq!((status, body["error_code"].as_u64()), (409, Some(42014)));
    let r = s
        .http
        .patch(format!("{}/1/lambdas/{plain}", s.url))
        .json(&serde_json::json!({"alive": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let on = s.wait_for(&plain, "running", "completed").await;
    assert!(on["reason"].is_null(), "{on}");
    // Switching on is a change, which counts as a use: a sweep now leaves both on.
    assert_eq!(s.platform.switch_off_unused(after).await.unwrap(), vec![]);
    assert_eq!(s.record(&plain).await["alive"], true);
    for id in [&plain, &eternal] {
        s.delete(id).await;
    }
    s.stop().await;
}
