//! Tasks through the real binaries: `luna-lambda serve` as a process of its own, killed with
//! SIGKILL in the middle of a task and started again on the same data folder; the task resumes
//! and its results are complete, each subtask once. Driven with `luna-lambda task ...`.

mod common;

use common::{ACCOUNT, json, ok, serve};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SQUARES: &str = r#"
import asyncio
from luna_lambda_tools.public.tasks import BaseLambdaTask

class Squares(BaseLambdaTask):
    async def splitTasksContent(self, content):
        return [{"x": x, "sleep": content["sleep"]} for x in range(content["n"])]

    async def executeSubtask(self, c):
        await asyncio.sleep(c["sleep"])
        self.logger.info("ran subtask %d", c["x"])
        return {"x": c["x"], "square": c["x"] ** 2}
"#;

fn cli(url: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args(args)
        .current_dir(cwd)
        .env("LUNA_LAMBDA_URL", url)
        .env("LUNA_ACCOUNT_ID", ACCOUNT)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn task_until(
    url: &str,
    cwd: &Path,
    task: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let o = cli(url, cwd, &["task", "get", task, "--json"]);
        if o.status.success() {
            let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if done(&t) {
                return t;
            }
        }
        assert!(Instant::now() < end, "task {task} never got {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_task_survives_the_server_killed_with_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir(w.join("squares")).unwrap();
    std::fs::write(w.join("squares/lambda_main.py"), SQUARES).unwrap();
    let first = serve(data.path());
    let url = first.url.clone();
    ok(&cli(&url, w, &["validate", "squares", "--type", "tasks"]));
    let lambda = ok(&cli(
        &url,
        w,
        &[
            "create", "squares", "--name", "squares", "--type", "tasks", "--wait", "--quiet",
        ],
    ))
    .trim()
    .to_owned();
    let task = ok(&cli(
        &url,
        w,
        &[
            "task",
            "create",
            &lambda,
            "--content",
            r#"{"n": 60, "sleep": 0.05}"#,
            "--description",
            "squares",
        ],
    ))
    .trim()
    .to_owned();
    task_until(&url, w, &task, "a few results", |t| {
        t["subtasks"]["done"].as_u64() >= Some(5)
    });
    // SIGKILL: no graceful anything.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let second = serve(data.path());
    let url = second.url.clone();
    let t = task_until(&url, w, &task, "done", |t| t["status"] == "done");
    assert_eq!(
        t["subtasks"],
        serde_json::json!({"total": 60, "done": 60, "failed": 0, "in_flight": 0})
    );
    let results = json(&cli(&url, w, &["task", "result", &task, "--json"]));
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 60);
    for (x, r) in results.iter().enumerate() {
        assert_eq!(
            r,
            &serde_json::json!({"x": x, "square": x * x}),
            "subtask {x}"
        );
    }
    assert_eq!(
        json(&cli(&url, w, &["task", "errors", &task, "--json"])),
        serde_json::json!([])
    );
    let list = json(&cli(
        &url,
        w,
        &["task", "list", "--lambda-id", &lambda, "--json"],
    ));
    assert_eq!(list["count"], 1);
    // A finished task cannot be cancelled: exit 1 with the code.
    let o = cli(&url, w, &["task", "cancel", &task]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("42023"),
        "{o:?}"
    );
    // --wait shows progress and exits 0 once done.
    let o = cli(
        &url,
        w,
        &[
            "task",
            "create",
            &lambda,
            "--content",
            r#"{"n": 3, "sleep": 0}"#,
            "--wait",
        ],
    );
    let out = ok(&o);
    assert!(
        out.contains("done") && out.contains("3 total, 3 done"),
        "{out}"
    );
    ok(&cli(&url, w, &["task", "delete", &task]));
    assert_eq!(cli(&url, w, &["task", "get", &task]).status.code(), Some(1));
    ok(&cli(&url, w, &["delete", &lambda]));
}
