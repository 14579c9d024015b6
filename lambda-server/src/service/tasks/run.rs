//! Running a task: its split on a replica, its subtasks across replicas with bounded
//! concurrency, timeouts and attempts, and its counts flushed to the record as they change.

use super::*;

impl Platform {
    pub(super) fn spawn_task(&self, id: uuid::Uuid, lambda_id: LambdaId) {
        let cancel = self.shutdown_token().child_token();
        {
            let mut running = self.task_runner().running();
            if running.contains_key(&id) {
                return;
            }
            running.insert(
                id,
                Running {
                    lambda_id,
                    cancel: cancel.clone(),
                },
            );
        }
        let this = self.clone();
        self.background().spawn(async move {
            if let Err(e) = this.run_task(id, &cancel).await {
                tracing::warn!(task = %id, error = %e, "task job stopped; the reconciler starts it again");
                this.task_runner().job_failed.store(true, Ordering::SeqCst);
            }
            this.task_runner().running().remove(&id);
        });
    }

    /// The job of one task: split (unless stored), run what has no outcome, finish.
    async fn run_task(&self, id: uuid::Uuid, cancel: &CancellationToken) -> Result<()> {
        let store = &self.task_runner().store;
        let task = store.get(&id).await?.value;
        if task.status.is_finished() {
            return Ok(());
        }
        if let Err(Error::NotFound(_)) = self.get(&task.lambda_id, None).await {
            store
                .update_with(&id, |t| {
                    t.status = TaskStatus::Cancelled;
                    t.reason = Some(LAMBDA_DELETED.to_owned());
                    t.end_time = Some(time::OffsetDateTime::now_utc());
                    Ok::<_, Error>(())
                })
                .await?;
            return Ok(());
        }
        let subtasks = match store.subtasks(&id).await? {
            Some(s) => s,
            None => match self.split(&task, cancel).await? {
                Some(s) => s,
                // The split failed (the task ended), or the task was cancelled meanwhile.
                None if self.shutdown_token().is_cancelled() => return Ok(()),
                None => return self.finish_task(id, 0, &Counts::default()).await,
            },
        };
        let ended = store.ended(&id).await?;
        let counts = Arc::new(Counts::default());
        if !ended.is_empty() {
            for outcome in store.outcomes(&id).await?.values() {
                match outcome {
                    SubtaskOutcome::Result(_) => counts.done.fetch_add(1, Ordering::Relaxed),
                    SubtaskOutcome::Error(_) => counts.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
        let total = subtasks.len() as u64;
        let pending: Vec<u64> = (0..total)
            .filter(|n| ended.binary_search(n).is_err())
            .collect();
        let flusher = self.flush_counts(id, total, counts.clone());
        let concurrency = self.task_concurrency(&task.lambda_id).await;
        let subtasks = Arc::new(subtasks);
        let runs = futures::stream::iter(pending)
            .take_while(|_| std::future::ready(!cancel.is_cancelled()))
            .map(|n| {
                let (this, subtasks, counts, task) =
                    (self.clone(), subtasks.clone(), counts.clone(), &task);
                async move {
                    counts.in_flight.fetch_add(1, Ordering::Relaxed);
                    let content = &subtasks[usize::try_from(n).unwrap_or(usize::MAX)];
                    let outcome = this.run_subtask(task, n, content).await;
                    let stored = this.task_runner().store.put_outcome(&id, n, &outcome).await;
                    counts.in_flight.fetch_sub(1, Ordering::Relaxed);
                    match outcome {
                        SubtaskOutcome::Result(_) => counts.done.fetch_add(1, Ordering::Relaxed),
                        SubtaskOutcome::Error(_) => counts.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    stored
                }
            })
            .buffer_unordered(concurrency);
        tokio::pin!(runs);
        let mut result = Ok(());
        while let Some(stored) = runs.next().await {
            if let Err(e) = stored {
                result = Err(Error::from(e));
                break;
            }
        }
        flusher.cancel();
        result?;
        if self.shutdown_token().is_cancelled() {
            // The control plane is stopping: the task resumes at the next start.
            return Ok(());
        }
        self.finish_task(id, total, &counts).await
    }

    /// Splits a task on one replica and stores the split; `None` when the task ended instead.
    async fn split(
        &self,
        task: &TaskRecord,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<serde_json::Map<String, serde_json::Value>>>> {
        let store = &self.task_runner().store;
        store
            .update_with(&task.task_id, |t| {
                t.status = TaskStatus::Splitting;
                t.start_time
                    .get_or_insert_with(time::OffsetDateTime::now_utc);
                Ok::<_, Error>(())
            })
            .await?;
        let body = serde_json::json!({
            "task_id": task.task_id,
            "account_id": task.account_id,
            "content": task.content,
        });
        let answer = tokio::select! {
            a = self.call_with_attempts(&task.lambda_id, "/tasks/split", &body) => a,
            _ = cancel.cancelled() => return Ok(None),
        };
        let subtasks = answer.and_then(|v| {
            serde_json::from_value::<Vec<serde_json::Map<String, serde_json::Value>>>(
                v.get("subtasks").cloned().unwrap_or_default(),
            )
            .map_err(|e| format!("the split is not a list of objects: {e}"))
        });
        match subtasks {
            Ok(subtasks) => {
                store.put_subtasks(&task.task_id, &subtasks).await?;
                let total = subtasks.len() as u64;
                store
                    .update_with(&task.task_id, |t| {
                        if t.status == TaskStatus::Splitting {
                            t.status = TaskStatus::InProgress;
                        }
                        t.subtasks.total = total;
                        Ok::<_, Error>(())
                    })
                    .await?;
                Ok(Some(subtasks))
            }
            Err(reason) => {
                store
                    .update_with(&task.task_id, |t| {
                        if !t.status.is_finished() {
                            t.status = TaskStatus::Failed;
                            t.reason = Some(format!("the split failed: {reason}"));
                        }
                        t.end_time = Some(time::OffsetDateTime::now_utc());
                        Ok::<_, Error>(())
                    })
                    .await?;
                Ok(None)
            }
        }
    }

    /// Runs one subtask (with its attempts) and says how it ended.
    async fn run_subtask(
        &self,
        task: &TaskRecord,
        n: u64,
        content: &serde_json::Map<String, serde_json::Value>,
    ) -> SubtaskOutcome {
        let body = serde_json::json!({
            "task_id": task.task_id,
            "account_id": task.account_id,
            "subtask": n,
            "content": content,
        });
        match self
            .call_with_attempts(&task.lambda_id, "/tasks/subtask", &body)
            .await
        {
            Ok(v) => SubtaskOutcome::Result(v.get("result").cloned().unwrap_or_default()),
            Err(e) => SubtaskOutcome::Error(e),
        }
    }

    /// Calls a replica of the lambda up to `max_attempts` times; the answer's JSON, or why not.
    async fn call_with_attempts(
        &self,
        lambda_id: &LambdaId,
        path: &str,
        body: &serde_json::Value,
    ) -> std::result::Result<serde_json::Value, String> {
        let attempts = self.task_runner().settings.max_attempts.max(1);
        let body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.call_once(lambda_id, path, body.clone()).await {
                Ok(v) => return Ok(v),
                Err(CallError::User(e)) => return Err(e),
                Err(CallError::Replica(e)) => {
                    tracing::debug!(lambda = %lambda_id, path, attempt, error = %e, "task call failed");
                    last = e;
                }
            }
            if attempt < attempts {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
        }
        Err(format!("{last} (after {attempts} attempt(s))"))
    }

    async fn call_once(
        &self,
        lambda_id: &LambdaId,
        path: &str,
        body: Bytes,
    ) -> std::result::Result<serde_json::Value, CallError> {
        let runner = self.task_runner();
        let base = match self.orchestrator().endpoint(lambda_id) {
            Some(b) => b,
            None => {
                tokio::time::sleep(NO_REPLICA_WAIT).await;
                return Err(CallError::Replica(
                    "the lambda has no running replica".into(),
                ));
            }
        };
        let timeout = runner.settings.subtask_timeout;
        let url = format!("{base}{path}");
        let call = runner.calls.post_json(&url, body);
        let resp = match tokio::time::timeout(timeout, call).await {
            Err(_) => {
                return Err(CallError::Replica(format!(
                    "no answer within {}s ([tasks] subtask_timeout_secs)",
                    timeout.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(CallError::Replica(format!("the replica failed: {e}"))),
            Ok(Ok(r)) => r,
        };
        let (status, bytes) = resp;
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let detail = || {
            json.get("detail")
                .and_then(|d| d.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned())
        };
        match status {
            200 => Ok(json),
            422 => Err(CallError::User(detail())),
            s => Err(CallError::Replica(format!("status {s}: {}", detail()))),
        }
    }

    /// Subtasks in flight at once: replicas × `concurrency_per_replica` (default the workers).
    async fn task_concurrency(&self, lambda_id: &LambdaId) -> usize {
        let per_replica = match self.task_runner().settings.concurrency_per_replica {
            Some(n) => n,
            None => self
                .get(lambda_id, None)
                .await
                .map(|l| usize::try_from(l.parameters.workers).unwrap_or(1))
                .unwrap_or(1),
        };
        let replicas = self
            .orchestrator()
            .replica_endpoints(lambda_id)
            .len()
            .max(1);
        (replicas * per_replica.max(1)).max(1)
    }

    /// Writes the counts to the record a few times a second until cancelled.
    fn flush_counts(&self, id: uuid::Uuid, total: u64, counts: Arc<Counts>) -> CancellationToken {
        let stop = CancellationToken::new();
        let (this, stop2) = (self.clone(), stop.clone());
        self.background().spawn(async move {
            let mut last = None;
            loop {
                let now = counts.snapshot(total);
                if last != Some(now) {
                    let wrote = this
                        .task_runner()
                        .store
                        .update_with(&id, |t| {
                            t.subtasks = now;
                            Ok::<_, Error>(())
                        })
                        .await;
                    if wrote.is_ok() {
                        last = Some(now);
                    }
                }
                tokio::select! {
                    _ = stop2.cancelled() => return,
                    _ = tokio::time::sleep(FLUSH_EVERY) => {}
                }
            }
        });
        stop
    }

    /// The last write of a task: its counts, status and end time. A task deleted meanwhile has
    /// whatever its subtasks wrote since removed.
    async fn finish_task(&self, id: uuid::Uuid, total: u64, counts: &Counts) -> Result<()> {
        let now = counts.snapshot(total);
        let done = self
            .task_runner()
            .store
            .update_with(&id, |t| {
                t.subtasks = TaskCounts {
                    in_flight: 0,
                    ..now
                };
                if !t.status.is_finished() {
                    if now.done > 0 || now.total == 0 {
                        t.status = TaskStatus::Done;
                    } else {
                        t.status = TaskStatus::Failed;
                        t.reason =
                            Some("every subtask failed; see GET /1/tasks/{id}/errors".into());
                    }
                }
                t.end_time = Some(time::OffsetDateTime::now_utc());
                Ok::<_, Error>(())
            })
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(Error::Storage(lambda_storage::Error::NotFound { .. })) => {
                let _ = self.task_runner().store.delete(&id).await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
}

impl Counts {
    fn snapshot(&self, total: u64) -> TaskCounts {
        TaskCounts {
            total,
            done: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}
