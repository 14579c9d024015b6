//! Tasks of `tasks` lambdas: the record, the split and each subtask's outcome.
//!
//! | key | holds |
//! |---|---|
//! | `P/tasks/<task>/task.json` | `{"revision": n, "record": {...}}`, updated by compare-and-swap |
//! | `P/tasks/<task>/subtasks.json` | the split: every subtask's content, written once before any runs |
//! | `P/tasks/<task>/results/<n / 1000>/<n>.json` | subtask `n`'s outcome, `{"result": ...}` or `{"error": "..."}`, written when it ends |
//!
//! An outcome is one object per subtask index, so a subtask that runs twice (after a crash) is
//! still in the results once; what has an outcome is not run again when the task resumes.

use crate::backend::{CasMode, Inner};
use crate::error::{Error, Result};
use crate::records::{CAS_ATTEMPTS, Revision, Versioned};
use futures::stream::{StreamExt, TryStreamExt};
use lambda_core::api::TaskRecord;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Outcomes read at once.
const READ_CONCURRENCY: usize = 32;
/// Outcomes per folder of `results/`.
const OUTCOMES_PER_FOLDER: u64 = 1000;

/// How one subtask ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskOutcome {
    /// What `executeSubtask` returned.
    Result(serde_json::Value),
    /// Why it failed (after every attempt, or a `UserTaskLambdaException`).
    Error(String),
}

#[derive(Serialize, Deserialize)]
struct TaskDoc {
    revision: u64,
    record: TaskRecord,
}

/// The tasks (see the module docs for keys).
#[derive(Debug, Clone)]
pub struct TaskStore {
    pub(crate) inner: Arc<Inner>,
}

impl TaskStore {
    fn key(&self, id: &uuid::Uuid, rest: &[&str]) -> Path {
        let id = id.to_string();
        let mut parts = vec!["tasks", id.as_str()];
        parts.extend_from_slice(rest);
        self.inner.key(&parts)
    }

    fn not_found(id: &uuid::Uuid) -> Error {
        Error::NotFound {
            what: format!("task {id}"),
        }
    }

    /// Stores a new task with revision 1.
    pub async fn create(&self, record: TaskRecord) -> Result<Versioned<TaskRecord>> {
        let _guard = self.inner.serial_guard().await;
        let key = self.key(&record.task_id, &["task.json"]);
        let doc = TaskDoc {
            revision: 1,
            record,
        };
        let exists = self.inner.cas == CasMode::Serialized && self.inner.exists(&key).await?;
        if exists || !self.inner.write(&key, &doc, PutMode::Create).await? {
            return Err(Error::Conflict {
                what: format!("task {} exists", doc.record.task_id),
            });
        }
        Ok(Versioned {
            value: doc.record,
            revision: Revision(1),
        })
    }

    /// A task.
    pub async fn get(&self, id: &uuid::Uuid) -> Result<Versioned<TaskRecord>> {
        match self
            .inner
            .read::<TaskDoc>(&self.key(id, &["task.json"]))
            .await?
        {
            Some((doc, _)) => Ok(Versioned {
                value: doc.record,
                revision: Revision(doc.revision),
            }),
            None => Err(Self::not_found(id)),
        }
    }

    /// Read-modify-write with retries (compare-and-swap): `f` changes a fresh copy until the
    /// write wins, so concurrent updates are never lost. An error from `f` stops the update.
    pub async fn update_with<F, E>(&self, id: &uuid::Uuid, mut f: F) -> Result<TaskRecord, E>
    where
        F: FnMut(&mut TaskRecord) -> Result<(), E>,
        E: From<Error>,
    {
        let key = self.key(id, &["task.json"]);
        for _ in 0..CAS_ATTEMPTS {
            let _guard = self.inner.serial_guard().await;
            let Some((doc, version)) = self.inner.read::<TaskDoc>(&key).await? else {
                return Err(Self::not_found(id).into());
            };
            let mut next = doc.record.clone();
            f(&mut next)?;
            let doc = TaskDoc {
                revision: doc.revision + 1,
                record: next,
            };
            if self
                .inner
                .write(&key, &doc, PutMode::Update(version))
                .await?
            {
                return Ok(doc.record);
            }
        }
        Err(Error::Conflict {
            what: format!("task {id} kept changing; gave up after {CAS_ATTEMPTS} attempts"),
        }
        .into())
    }

    /// Every task, oldest first.
    pub async fn list(&self) -> Result<Vec<TaskRecord>> {
        let prefix = self.inner.key(&["tasks"]);
        let keys: Vec<Path> = self
            .inner
            .list_all(&prefix)
            .await?
            .into_iter()
            .map(|m| m.location)
            .filter(|k| k.filename() == Some("task.json"))
            .collect();
        let mut tasks: Vec<TaskRecord> = futures::stream::iter(keys)
            .map(|k| async move { self.inner.read::<TaskDoc>(&k).await })
            .buffer_unordered(READ_CONCURRENCY)
            .try_filter_map(|doc| async move { Ok(doc.map(|(d, _)| d.record)) })
            .try_collect()
            .await?;
        tasks.sort_by_key(|t| (t.create_time, t.task_id));
        Ok(tasks)
    }

    /// Stores the split (once, before any subtask runs).
    pub async fn put_subtasks(
        &self,
        id: &uuid::Uuid,
        subtasks: &[serde_json::Map<String, serde_json::Value>],
    ) -> Result<()> {
        self.put_json(&self.key(id, &["subtasks.json"]), &subtasks)
            .await
    }

    /// The split, when it was stored.
    pub async fn subtasks(
        &self,
        id: &uuid::Uuid,
    ) -> Result<Option<Vec<serde_json::Map<String, serde_json::Value>>>> {
        Ok(self
            .inner
            .read(&self.key(id, &["subtasks.json"]))
            .await?
            .map(|(v, _)| v))
    }

    /// Stores how subtask `n` ended (overwrites: the same subtask has one outcome).
    pub async fn put_outcome(
        &self,
        id: &uuid::Uuid,
        n: u64,
        outcome: &SubtaskOutcome,
    ) -> Result<()> {
        self.put_json(&self.outcome_key(id, n), outcome).await
    }

    /// Outcomes go 1,000 to a folder: one folder of 10,000s of files makes every write into it
    /// slow on a local file system (measured: throughput halved between 10,000 and 20,000).
    fn outcome_key(&self, id: &uuid::Uuid, n: u64) -> Path {
        self.key(
            id,
            &[
                "results",
                &format!("{:05}", n / OUTCOMES_PER_FOLDER),
                &format!("{n:08}.json"),
            ],
        )
    }

    /// The indexes of the subtasks that have an outcome (a listing, no reads).
    pub async fn ended(&self, id: &uuid::Uuid) -> Result<Vec<u64>> {
        let prefix = self.key(id, &["results"]);
        let mut ended: Vec<u64> = self
            .inner
            .list_all(&prefix)
            .await?
            .into_iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        ended.sort_unstable();
        Ok(ended)
    }

    /// Every outcome so far, by subtask index.
    pub async fn outcomes(&self, id: &uuid::Uuid) -> Result<BTreeMap<u64, SubtaskOutcome>> {
        let ended = self.ended(id).await?;
        futures::stream::iter(ended)
            .map(|n| async move {
                let got = self.inner.read(&self.outcome_key(id, n)).await?;
                Ok::<_, Error>(got.map(|(o, _)| (n, o)))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_filter_map(|o| async move { Ok(o) })
            .try_collect()
            .await
    }

    /// Removes a task and everything stored with it. Returns how many objects went.
    pub async fn delete(&self, id: &uuid::Uuid) -> Result<usize> {
        let n = self.inner.delete_prefix(self.key(id, &[])).await?;
        if n == 0 {
            return Err(Self::not_found(id));
        }
        Ok(n)
    }

    async fn put_json<T: Serialize>(&self, key: &Path, value: &T) -> Result<()> {
        let body = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
            path: key.to_string(),
            detail: format!("cannot encode: {e}"),
        })?;
        self.inner
            .store
            .put(key, PutPayload::from(body))
            .await
            .map(drop)
            .map_err(|e| Error::backend(key, e))
    }
}
