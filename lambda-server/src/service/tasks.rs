//! Tasks of `tasks` lambdas, driven by the platform itself (the original needs luna-tasks).
//!
//! A task is split on one replica (`POST /tasks/split`), the split is stored, then every
//! subtask runs on the lambda's replicas (`POST /tasks/subtask`, round robin through the
//! orchestrator) with bounded concurrency, a timeout and a number of attempts. Each subtask's
//! outcome is written to the store as it ends (one object per subtask index), and the record's
//! counts are written by compare-and-swap a few times a second. After a restart an unfinished
//! task resumes: the split is not redone, and a subtask with an outcome is not run again.
//! Key layout: `lambda_storage::TaskStore`.

use crate::service::error::{Error, Result};
use crate::service::platform::Platform;
use bytes::Bytes;
use futures::stream::StreamExt;
use lambda_core::api::{
    CreateTask, TaskCounts, TaskError, TaskList, TaskRecord, TaskResults, TaskStatus,
};
use lambda_core::{LambdaId, LambdaStatus, LambdaType};
use lambda_storage::{SubtaskOutcome, TaskStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `[tasks]` settings.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// Subtasks in flight per replica (default: the lambda's `workers`).
    pub concurrency_per_replica: Option<usize>,
    /// A split or subtask call not answered by then is a failed attempt (default 300 s).
    pub subtask_timeout: Duration,
    /// Attempts of a split or subtask whose replica failed or timed out (default 3); a
    /// `UserTaskLambdaException` is not retried.
    pub max_attempts: u32,
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            concurrency_per_replica: None,
            subtask_timeout: Duration::from_secs(300),
            max_attempts: 3,
        }
    }
}

/// How the task runner calls a lambda's replica: a port, which the edge's HTTP client fills
/// (`proxy::ReplicaClient`), so that the service holds no HTTP stack of its own.
#[async_trait::async_trait]
pub trait ReplicaCalls: Send + Sync + std::fmt::Debug {
    /// POSTs the JSON `body` to `url`: the answer's status and body, or why none came.
    async fn post_json(&self, url: &str, body: Bytes) -> std::result::Result<(u16, Bytes), String>;
}

/// Why the tasks of a deleted lambda were cancelled.
const LAMBDA_DELETED: &str = "the lambda was deleted";
/// How often the counts of a running task are written to its record.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How long a task waits for its lambda to have a running replica before an attempt fails.
const NO_REPLICA_WAIT: Duration = Duration::from_millis(200);

/// The running tasks of one platform.
#[derive(Debug)]
pub(crate) struct TaskRunner {
    store: TaskStore,
    settings: TaskSettings,
    calls: Arc<dyn ReplicaCalls>,
    /// The job of each running task.
    running: Mutex<HashMap<uuid::Uuid, Running>>,
    /// A job stopped on an error since the last resume: the reconciler starts it again.
    job_failed: AtomicBool,
}

/// A running task's job.
#[derive(Debug)]
struct Running {
    lambda_id: LambdaId,
    cancel: CancellationToken,
}

impl TaskRunner {
    pub(crate) fn new(
        store: TaskStore,
        settings: TaskSettings,
        calls: Arc<dyn ReplicaCalls>,
    ) -> Self {
        Self {
            store,
            settings,
            calls,
            running: Mutex::default(),
            job_failed: AtomicBool::new(false),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one call to a replica gave.
enum CallError {
    /// The lambda refused it for good (a `UserTaskLambdaException`, a bad return value).
    User(String),
    /// The replica failed, was gone or did not answer: worth another attempt.
    Replica(String),
}

mod run;

impl Platform {
    /// Creates a task for a running `tasks` lambda of the caller's account and starts it.
    pub async fn create_task(
        &self,
        account: Option<uuid::Uuid>,
        req: CreateTask,
    ) -> Result<uuid::Uuid> {
        let lambda_id: LambdaId = req
            .content
            .get("lambda_id")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Error::BadRequest(
                    lambda_core::api::ErrorCode::BadJson,
                    "content.lambda_id (the tasks lambda's id) is missing or not a string".into(),
                )
            })?
            .parse()
            .map_err(|e: lambda_core::Error| {
                Error::BadRequest(
                    lambda_core::api::ErrorCode::BadJson,
                    format!("content.lambda_id: {e}"),
                )
            })?;
        let lambda = self.get(&lambda_id, account).await?;
        if lambda.lambda_type != LambdaType::Tasks {
            return Err(Error::NotATasksLambda(lambda_id, lambda.lambda_type));
        }
        if !lambda.alive {
            return Err(Error::SwitchedOff(lambda_id));
        }
        if lambda.status != LambdaStatus::Running {
            return Err(Error::NotRunning(lambda_id));
        }
        let record = TaskRecord {
            task_id: uuid::Uuid::new_v4(),
            lambda_id,
            account_id: lambda.account_id,
            description: req.description,
            content: req.content,
            status: TaskStatus::Pending,
            reason: None,
            subtasks: TaskCounts::default(),
            create_time: time::OffsetDateTime::now_utc(),
            start_time: None,
            end_time: None,
        };
        let id = record.task_id;
        self.task_runner().store.create(record).await?;
        self.spawn_task(id, lambda_id);
        Ok(id)
    }

    /// A task of the caller's account.
    pub async fn get_task(
        &self,
        id: &uuid::Uuid,
        account: Option<uuid::Uuid>,
    ) -> Result<TaskRecord> {
        let task = match self.task_runner().store.get(id).await {
            Ok(t) => t.value,
            Err(lambda_storage::Error::NotFound { .. }) => return Err(Error::TaskNotFound(*id)),
            Err(e) => return Err(e.into()),
        };
        if account.is_some_and(|a| a != task.account_id) {
            return Err(Error::TaskNotFound(*id));
        }
        Ok(task)
    }

    /// Tasks of the caller's account, newest first, filtered by lambda and status, one page.
    pub async fn list_tasks(
        &self,
        account: Option<uuid::Uuid>,
        lambda_id: Option<LambdaId>,
        status: Option<TaskStatus>,
        page: u64,
        page_size: u64,
    ) -> Result<TaskList> {
        let mut tasks: Vec<TaskRecord> = self
            .task_runner()
            .store
            .list()
            .await?
            .into_iter()
            .filter(|t| account.is_none_or(|a| a == t.account_id))
            .filter(|t| lambda_id.is_none_or(|l| l == t.lambda_id))
            .filter(|t| status.is_none_or(|s| s == t.status))
            .collect();
        tasks.reverse();
        let count = tasks.len() as u64;
        let skip =
            usize::try_from(page.saturating_sub(1).saturating_mul(page_size)).unwrap_or(usize::MAX);
        let tasks = tasks
            .into_iter()
            .skip(skip)
            .take(usize::try_from(page_size).unwrap_or(usize::MAX))
            .collect();
        Ok(TaskList { tasks, count })
    }

    /// Each subtask's result in order (`None` for a failed or unfinished one).
    pub async fn task_result(
        &self,
        id: &uuid::Uuid,
        account: Option<uuid::Uuid>,
    ) -> Result<TaskResults> {
        let task = self.get_task(id, account).await?;
        let mut results = vec![None; usize::try_from(task.subtasks.total).unwrap_or(0)];
        for (n, outcome) in self.task_runner().store.outcomes(id).await? {
            if let (Some(slot), SubtaskOutcome::Result(v)) = (
                results.get_mut(usize::try_from(n).unwrap_or(usize::MAX)),
                outcome,
            ) {
                *slot = Some(v);
            }
        }
        Ok(TaskResults { results })
    }

    /// Why the split or subtasks failed.
    pub async fn task_errors(
        &self,
        id: &uuid::Uuid,
        account: Option<uuid::Uuid>,
    ) -> Result<Vec<TaskError>> {
        let task = self.get_task(id, account).await?;
        let mut errors = Vec::new();
        if task.subtasks.total == 0
            && task.status == TaskStatus::Failed
            && let Some(reason) = &task.reason
        {
            errors.push(TaskError {
                subtask: None,
                error: reason.clone(),
            });
        }
        for (n, outcome) in self.task_runner().store.outcomes(id).await? {
            if let SubtaskOutcome::Error(error) = outcome {
                errors.push(TaskError {
                    subtask: Some(n),
                    error,
                });
            }
        }
        Ok(errors)
    }

    /// Cancels a task: no new subtask starts; those in flight finish or time out.
    pub async fn cancel_task(
        &self,
        id: &uuid::Uuid,
        account: Option<uuid::Uuid>,
        reason: &str,
    ) -> Result<TaskRecord> {
        self.get_task(id, account).await?;
        let running = self
            .task_runner()
            .running()
            .get(id)
            .map(|r| r.cancel.clone());
        let task = self
            .task_runner()
            .store
            .update_with(id, |t| {
                if t.status.is_finished() {
                    return Err(Error::TaskFinished(*id, t.status));
                }
                t.status = TaskStatus::Cancelled;
                t.reason = Some(reason.to_owned());
                if running.is_none() {
                    t.end_time = Some(time::OffsetDateTime::now_utc());
                }
                Ok(())
            })
            .await?;
        if let Some(cancel) = running {
            cancel.cancel();
        }
        Ok(task)
    }

    /// Removes a task and its results (cancelling it first when it runs).
    pub async fn delete_task(&self, id: &uuid::Uuid, account: Option<uuid::Uuid>) -> Result<()> {
        self.get_task(id, account).await?;
        if let Some(r) = self.task_runner().running().get(id) {
            r.cancel.cancel();
        }
        match self.task_runner().store.delete(id).await {
            Ok(_) | Err(lambda_storage::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels the running tasks of a lambda (it is being deleted). A task with no job now
    /// (one that stopped on an error) is cancelled when its job starts again and finds the
    /// lambda gone.
    pub(crate) async fn cancel_tasks_of(&self, lambda_id: &LambdaId) -> Result<()> {
        let tasks: Vec<uuid::Uuid> = self
            .task_runner()
            .running()
            .iter()
            .filter(|(_, r)| r.lambda_id == *lambda_id)
            .map(|(id, _)| *id)
            .collect();
        for id in tasks {
            match self.cancel_task(&id, None, LAMBDA_DELETED).await {
                Ok(_) | Err(Error::TaskFinished(..) | Error::TaskNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Starts the job of every unfinished task that has none (at start: tasks a stopped or
    /// killed control plane left).
    pub(crate) async fn resume_tasks(&self) -> Result<()> {
        for task in self.task_runner().store.list().await? {
            if !task.status.is_finished() {
                self.spawn_task(task.task_id, task.lambda_id);
            }
        }
        Ok(())
    }

    /// [`Platform::resume_tasks`] when a job stopped on an error since the last time (the
    /// reconciler calls it; otherwise it reads nothing).
    pub(crate) async fn resume_failed_tasks(&self) -> Result<()> {
        if self.task_runner().job_failed.swap(false, Ordering::SeqCst) {
            self.resume_tasks().await?;
        }
        Ok(())
    }
}
