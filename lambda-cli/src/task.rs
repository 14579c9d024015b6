//! `luna-lambda task ...`: tasks of tasks lambdas.

use crate::output::{self, Progress, outln};
use crate::remote::Ctx;
use anyhow::Context;
use clap::Subcommand;
use lambda_core::LambdaId;
use lambda_core::api::{TaskRecord, TaskStatus};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(crate) enum TaskAction {
    /// Start a task of a tasks lambda; prints its id (with --wait, once it is over).
    Create {
        /// The tasks lambda.
        lambda_id: LambdaId,
        /// The task's content (a JSON object, or @FILE); its lambda_id is set to LAMBDA_ID.
        #[arg(long)]
        content: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Wait until the task is over, showing its progress; exit 1 unless it is done.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Show a task: status, subtask counts, times.
    Get {
        /// Task id.
        id: uuid::Uuid,
    },
    /// List tasks, newest first.
    List {
        /// Only this lambda's.
        #[arg(long)]
        lambda_id: Option<LambdaId>,
        /// Only tasks in this status (pending, splitting, in_progress, done, failed, cancelled).
        #[arg(long)]
        status: Option<TaskStatus>,
        /// Page (from 1).
        #[arg(long, default_value_t = 1)]
        page: u64,
        /// Tasks per page (1..=1000).
        #[arg(long, default_value_t = 100)]
        page_size: u64,
    },
    /// Print each subtask's result, in order (null for a failed one).
    Result {
        /// Task id.
        id: uuid::Uuid,
    },
    /// Print why subtasks (or the split) failed.
    Errors {
        /// Task id.
        id: uuid::Uuid,
    },
    /// Cancel a task: no new subtask starts.
    Cancel {
        /// Task id.
        id: uuid::Uuid,
    },
    /// Delete a task and its results.
    Delete {
        /// Task id.
        id: uuid::Uuid,
    },
}

/// Runs one `task` command.
pub(crate) async fn task(ctx: &Ctx, action: TaskAction) -> anyhow::Result<ExitCode> {
    match action {
        TaskAction::Create {
            lambda_id,
            content,
            description,
            wait,
            timeout,
        } => create(ctx, lambda_id, &content, &description, wait, timeout).await,
        TaskAction::Get { id } => {
            let t = ctx.client.get_task(&id).await?;
            show(ctx, &t);
            Ok(ExitCode::SUCCESS)
        }
        TaskAction::List {
            lambda_id,
            status,
            page,
            page_size,
        } => list(ctx, lambda_id, status, page, page_size).await,
        TaskAction::Result { id } => {
            let r = ctx.client.task_result(&id).await?;
            if ctx.json {
                output::json(&r);
            } else {
                for (n, v) in r.results.iter().enumerate() {
                    let v = v.as_ref().map_or("null".to_owned(), |v| v.to_string());
                    outln!("{n}\t{v}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskAction::Errors { id } => {
            let errors = ctx.client.task_errors(&id).await?;
            if ctx.json {
                output::json(&errors);
            } else {
                for e in &errors {
                    let at = e.subtask.map_or("split".to_owned(), |n| n.to_string());
                    outln!("{at}\t{}", e.error);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskAction::Cancel { id } => {
            let t = ctx.client.cancel_task(&id).await?;
            if ctx.json {
                output::json(&t);
            } else if !ctx.quiet {
                outln!("{id} cancelled; subtasks in flight finish");
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskAction::Delete { id } => {
            ctx.client.delete_task(&id).await?;
            if ctx.json {
                output::json(&serde_json::json!({"deleted": id}));
            } else if !ctx.quiet {
                outln!("deleted {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(
    ctx: &Ctx,
    lambda_id: LambdaId,
    content: &str,
    description: &str,
    wait: bool,
    timeout: u64,
) -> anyhow::Result<ExitCode> {
    let text = match content.strip_prefix('@') {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("cannot read {f}"))?,
        None => content.to_owned(),
    };
    let mut content: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .context("--content must be a JSON object (or @FILE holding one)")?;
    content.insert("lambda_id".into(), lambda_id.to_string().into());
    let id = ctx.client.create_task(description, content).await?;
    if !wait {
        if ctx.json {
            output::json(&serde_json::json!({"task_id": id}));
        } else {
            outln!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut progress = Progress::new(ctx.quiet || ctx.json);
    let task = ctx
        .client
        .wait_task(&id, Duration::from_secs(timeout), |t| {
            let c = t.subtasks;
            progress.stage(&format!(
                "{} ({}/{} done, {} failed, {} running)",
                t.status.as_str(),
                c.done,
                c.total,
                c.failed,
                c.in_flight
            ));
        })
        .await;
    progress.finish();
    let task = task?;
    show(ctx, &task);
    Ok(if task.status == TaskStatus::Done {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn list(
    ctx: &Ctx,
    lambda_id: Option<LambdaId>,
    status: Option<TaskStatus>,
    page: u64,
    page_size: u64,
) -> anyhow::Result<ExitCode> {
    let list = ctx
        .client
        .list_tasks(lambda_id.as_ref(), status, page, page_size)
        .await?;
    if ctx.json {
        output::json(&list);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.task_id.to_string(),
                t.lambda_id.to_string(),
                t.status.as_str().to_owned(),
                format!("{}/{}", t.subtasks.done, t.subtasks.total),
                t.subtasks.failed.to_string(),
                t.description.clone(),
            ]
        })
        .collect();
    output::table(
        &["ID", "LAMBDA", "STATUS", "DONE", "FAILED", "DESCRIPTION"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, t: &TaskRecord) {
    if ctx.json {
        output::json(t);
        return;
    }
    let c = t.subtasks;
    outln!(
        "{} {}{}",
        t.task_id,
        t.status.as_str(),
        t.reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    outln!(
        "subtasks: {} total, {} done, {} failed, {} running",
        c.total,
        c.done,
        c.failed,
        c.in_flight
    );
    if let (Some(a), Some(b)) = (t.start_time, t.end_time) {
        outln!("took {:.1} s", (b - a).as_seconds_f64());
    }
}
