//! The task calls of the client (`/1/tasks...`).

use super::{Client, ClientError, Result};
use lambda_core::LambdaId;
use lambda_core::api::{
    CreateTask, TaskCreated, TaskError, TaskList, TaskRecord, TaskResults, TaskStatus,
};
use std::time::{Duration, Instant};

impl Client {
    /// `POST /1/tasks`: `content` must name the tasks lambda in `lambda_id`.
    pub async fn create_task(
        &self,
        description: &str,
        content: serde_json::Map<String, serde_json::Value>,
    ) -> Result<uuid::Uuid> {
        let body = CreateTask {
            description: description.to_owned(),
            content,
        };
        let created: TaskCreated = self
            .json(self.req(reqwest::Method::POST, "/1/tasks").json(&body))
            .await?;
        Ok(created.task_id)
    }

    /// `GET /1/tasks/{id}`
    pub async fn get_task(&self, id: &uuid::Uuid) -> Result<TaskRecord> {
        self.json(self.req(reqwest::Method::GET, &format!("/1/tasks/{id}")))
            .await
    }

    /// `GET /1/tasks`
    pub async fn list_tasks(
        &self,
        lambda_id: Option<&LambdaId>,
        status: Option<TaskStatus>,
        page: u64,
        page_size: u64,
    ) -> Result<TaskList> {
        let mut q = vec![
            ("page", page.to_string()),
            ("page_size", page_size.to_string()),
        ];
        if let Some(l) = lambda_id {
            q.push(("lambda_id", l.to_string()));
        }
        if let Some(s) = status {
            q.push(("status", s.as_str().to_owned()));
        }
        self.json(self.req(reqwest::Method::GET, "/1/tasks").query(&q))
            .await
    }

    /// `GET /1/tasks/{id}/result`
    pub async fn task_result(&self, id: &uuid::Uuid) -> Result<TaskResults> {
        self.json(self.req(reqwest::Method::GET, &format!("/1/tasks/{id}/result")))
            .await
    }

    /// `GET /1/tasks/{id}/errors`
    pub async fn task_errors(&self, id: &uuid::Uuid) -> Result<Vec<TaskError>> {
        self.json(self.req(reqwest::Method::GET, &format!("/1/tasks/{id}/errors")))
            .await
    }

    /// `PATCH /1/tasks/{id}` `{"status": "cancelled"}`
    pub async fn cancel_task(&self, id: &uuid::Uuid) -> Result<TaskRecord> {
        self.json(
            self.req(reqwest::Method::PATCH, &format!("/1/tasks/{id}"))
                .json(&serde_json::json!({"status": "cancelled"})),
        )
        .await
    }

    /// `DELETE /1/tasks/{id}`
    pub async fn delete_task(&self, id: &uuid::Uuid) -> Result<()> {
        self.send(self.req(reqwest::Method::DELETE, &format!("/1/tasks/{id}")))
            .await?;
        Ok(())
    }

    /// Polls a task until it is over (done, failed or cancelled); `on_change` sees every new
    /// state of it. Returns the final record (a failed task is not an error here).
    pub async fn wait_task(
        &self,
        id: &uuid::Uuid,
        timeout: Duration,
        mut on_change: impl FnMut(&TaskRecord),
    ) -> Result<TaskRecord> {
        let end = Instant::now() + timeout;
        let mut last = None;
        loop {
            let task = self.get_task(id).await?;
            let key = (task.status, task.subtasks);
            if last != Some(key) {
                on_change(&task);
                last = Some(key);
            }
            if task.status.is_finished() {
                return Ok(task);
            }
            if Instant::now() >= end {
                return Err(ClientError::NotReady(format!(
                    "task {id} is not over after {timeout:?} ({}, {}/{} subtasks done)",
                    task.status.as_str(),
                    task.subtasks.done,
                    task.subtasks.total
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
