//! Tasks of `tasks` lambdas end to end on the embedded default: 200 subtasks on two replicas,
//! failures (a UserTaskLambdaException, a timeout, a failing split), cancel, a replica killed
//! mid-task, the control plane restarted mid-task, and a lambda deleted under its task.
//! (The control plane killed with SIGKILL: lambda-cli/tests/remote.rs, which runs the binary.)

mod common;

use common::*;
use std::time::Duration;

const TASKS: &str = r#"
import asyncio, os
from luna_lambda_tools.public.tasks import BaseLambdaTask
from luna_lambda_tools.public.exceptions import UserTaskLambdaException

class Squares(BaseLambdaTask):
    async def splitTasksContent(self, content):
        if content.get("fail_split"):
            raise UserTaskLambdaException("no split for you")
        await asyncio.sleep(content.get("split_sleep", 0))
        return [{"x": x, "sleep": content.get("sleep", 0), "mode": content.get("mode")} for x in range(content["n"])]

    async def executeSubtask(self, c):
        x = c["x"]
        if c["mode"] == "errors" and x == 3:
            raise UserTaskLambdaException("three is unlucky")
        if c["mode"] == "errors" and x == 4:
            await asyncio.sleep(60)
        await asyncio.sleep(c["sleep"])
        return {"x": x, "square": x * x, "pid": os.getpid()}
"#;

fn config() -> lambda_server::PlatformConfig {
    let mut cfg = test_config();
    cfg.tasks.subtask_timeout = Duration::from_secs(2);
    cfg.tasks.max_attempts = 2;
    cfg
}

/// A server on the embedded default in a folder of its own, with the tasks settings above.
async fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, config()).await).await;
    (dir, s)
}

/// `PATCH /1/tasks/{task}` `{"status": "cancelled"}`.
async fn cancel(s: &Server, task: &str) -> reqwest::Response {
    reqwest::Client::new()
        .patch(format!("{}/1/tasks/{task}", s.url))
        .json(&serde_json::json!({"status": "cancelled"}))
        .send()
        .await
        .unwrap()
}

fn squares() -> Vec<u8> {
    zip_of(&[("lambda_main.py", TASKS)])
}

async fn results(s: &Server, task: &str) -> Vec<serde_json::Value> {
    let (status, r) = get_json(&format!("{}/1/tasks/{task}/result", s.url)).await;
    assert_eq!(status, 200, "{r}");
    r["results"].as_array().unwrap().clone()
}

fn assert_squares(results: &[serde_json::Value], skip: &[usize]) {
    for (x, v) in results.iter().enumerate() {
        if skip.contains(&x) {
            assert!(v.is_null(), "subtask {x}: {v}");
        } else {
            assert_eq!(v["square"], x * x, "subtask {x}: {v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_200_subtasks_runs_on_two_replicas() {
    let (_dir, s) = server().await;
    tasks_sum_on_two_replicas(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_a_timeout_a_failing_split_and_bad_requests() {
    let (_dir, s) = server().await;
    let lambda = s.tasks_lambda("squares", &squares(), None).await;

    let task = s
        .start_task(&lambda, serde_json::json!({"n": 6, "mode": "errors"}))
        .await;
    let t = s.finished_task(&task).await;
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(
        t["subtasks"],
        serde_json::json!({"total": 6, "done": 4, "failed": 2, "in_flight": 0})
    );
    assert_squares(&results(&s, &task).await, &[3, 4]);
    let (_, errors) = get_json(&format!("{}/1/tasks/{task}/errors", s.url)).await;
    let errors = errors.as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0],
        serde_json::json!({"subtask": 3, "error": "three is unlucky"})
    );
    assert_eq!(errors[1]["subtask"], 4);
    let timeout = errors[1]["error"].as_str().unwrap();
    assert!(
        timeout.contains("no answer within 2s") && timeout.contains("after 2 attempt(s)"),
        "{timeout}"
    );

    let failed = s
        .start_task(&lambda, serde_json::json!({"n": 1, "fail_split": true}))
        .await;
    let t = s.finished_task(&failed).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["reason"], "the split failed: no split for you");
    let (_, errors) = get_json(&format!("{}/1/tasks/{failed}/errors", s.url)).await;
    assert_eq!(
        errors,
        serde_json::json!([{"error": "the split failed: no split for you"}])
    );
    assert_eq!(results(&s, &failed).await.len(), 0);

    // Bad requests, each with its code.
    let hello = created_id(s.create("hello", &example_zip("hello"), None).await).await;
    s.wait_for(&hello, "running", "completed").await;
    let (status, body) = s.post_task(&hello, serde_json::json!({})).await;
    assert_eq!(
        (status, body["error_code"].as_u64()),
        (400, Some(42022)),
        "{body}"
    );
    let (status, body) = s
        .post_task(
            &lambda_core::LambdaId::new().to_string(),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error_code"].as_u64()),
        (404, Some(42001)),
        "{body}"
    );
    let r = reqwest::Client::new()
        .post(format!("{}/1/tasks", s.url))
        .json(&serde_json::json!({"content": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, body) = get_json(&format!("{}/1/tasks/{}", s.url, uuid::Uuid::new_v4())).await;
    assert_eq!(
        (status, body["error_code"].as_u64()),
        (404, Some(42021)),
        "{body}"
    );
    let other = reqwest::Client::new()
        .get(format!("{}/1/tasks/{task}", s.url))
        .header("Luna-Account-Id", OTHER_ACCOUNT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        404,
        "another account's task does not exist for it"
    );
    // The platform's calls into a tasks lambda are not proxied.
    let r = reqwest::Client::new()
        .post(format!("{}/1/lambdas/{lambda}/proxy/tasks/split", s.url))
        .json(&serde_json::json!({"content": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Listing by lambda and status; deleting removes the results.
    let (_, list) = get_json(&format!(
        "{}/1/tasks?lambda_id={lambda}&status=failed",
        s.url
    ))
    .await;
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["tasks"][0]["task_id"], failed.as_str());
    let r = reqwest::Client::new()
        .delete(format!("{}/1/tasks/{task}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = get_json(&format!("{}/1/tasks/{task}/result", s.url)).await;
    assert_eq!(status, 404);
    for id in [&lambda, &hello] {
        assert_eq!(s.delete(id).await.status(), 204);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_a_replica_killed_mid_task() {
    let (dir, s) = server().await;
    let two = r#"{"deploy_parameters": {"pod_count": 2}}"#;
    let lambda = s.tasks_lambda("slow-squares", &squares(), Some(two)).await;

    // A replica killed while subtasks run on it: its subtask is run again elsewhere.
    let task = s
        .start_task(&lambda, serde_json::json!({"n": 30, "sleep": 0.1}))
        .await;
    s.task_until(&task, "a few results", |t| {
        t["subtasks"]["done"].as_u64() >= Some(4)
    })
    .await;
    let victim = pids(dir.path(), &lambda)[0];
    nix_kill(victim);
    let t = s.finished_task(&task).await;
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(t["subtasks"]["done"], 30, "{t}");
    assert_squares(&results(&s, &task).await, &[]);

    // Cancel: no new subtask starts; those in flight finish.
    let task = s
        .start_task(&lambda, serde_json::json!({"n": 200, "sleep": 0.1}))
        .await;
    s.task_until(&task, "a few results", |t| {
        t["subtasks"]["done"].as_u64() >= Some(2)
    })
    .await;
    let r = cancel(&s, &task).await;
    assert_eq!(r.status(), 200);
    let t = s.finished_task(&task).await;
    assert_eq!(t["status"], "cancelled", "{t}");
    assert_eq!(t["subtasks"]["in_flight"], 0, "{t}");
    let done = t["subtasks"]["done"].as_u64().unwrap();
    assert!(done < 200, "{t}");
    let got = results(&s, &task).await;
    assert_eq!(got.iter().filter(|v| !v.is_null()).count() as u64, done);
    let r = cancel(&s, &task).await;
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], 42023);

    // Cancelled while it splits: it ends at once, with no subtask.
    let task = s
        .start_task(&lambda, serde_json::json!({"n": 5, "split_sleep": 30}))
        .await;
    s.task_until(&task, "splitting", |t| t["status"] == "splitting")
        .await;
    let r = cancel(&s, &task).await;
    assert_eq!(r.status(), 200);
    let t = s.finished_task(&task).await;
    assert_eq!(
        (t["status"].as_str(), t["subtasks"]["total"].as_u64()),
        (Some("cancelled"), Some(0)),
        "{t}"
    );

    // Deleting the lambda cancels its running task.
    let task = s
        .start_task(&lambda, serde_json::json!({"n": 200, "sleep": 0.1}))
        .await;
    s.task_until(&task, "a result", |t| {
        t["subtasks"]["done"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(s.delete(&lambda).await.status(), 204);
    let t = s.finished_task(&task).await;
    assert_eq!(
        (t["status"].as_str(), t["reason"].as_str()),
        (Some("cancelled"), Some("the lambda was deleted")),
        "{t}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_resumes_after_the_control_plane_restarts() {
    let (dir, s) = server().await;
    let lambda = s.tasks_lambda("resumed", &squares(), None).await;
    let task = s
        .start_task(&lambda, serde_json::json!({"n": 40, "sleep": 0.05}))
        .await;
    s.task_until(&task, "a few results", |t| {
        t["subtasks"]["done"].as_u64() >= Some(5)
    })
    .await;
    s.stop().await;
    let s = Server::start(platform(dir.path(), true, config()).await).await;
    let t = s.finished_task(&task).await;
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(
        t["subtasks"],
        serde_json::json!({"total": 40, "done": 40, "failed": 0, "in_flight": 0})
    );
    assert_squares(&results(&s, &task).await, &[]);
    assert_eq!(s.delete(&lambda).await.status(), 204);
    s.stop().await;
}

fn nix_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
