//! Lambda records: create/get/list/update/delete with compare-and-swap, unique names per
//! account, a list index, and recovery after a crash.

use crate::ArtifactStore;
use crate::backend::{CasMode, Inner};
use crate::error::{Error, Result};
use futures::stream::{StreamExt, TryStreamExt};
use lambda_core::LambdaId;
use lambda_core::api::LambdaRecord;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A record's revision: starts at 1, +1 on every update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Revision(pub u64);

/// A value with the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its revision.
    pub revision: Revision,
}

/// Filters and paging of [`LambdaRepository::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this account's lambdas.
    pub account_id: Option<uuid::Uuid>,
    /// Only lambdas with exactly this name.
    pub lambda_name: Option<String>,
    /// Only lambdas in this namespace.
    pub namespace: Option<String>,
    /// 1-based page.
    pub page: u64,
    /// Records per page (1..=1000).
    pub page_size: u64,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            account_id: None,
            lambda_name: None,
            namespace: None,
            page: 1,
            page_size: 100,
        }
    }
}

/// What [`LambdaRepository::recover`] repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Lambdas whose artifacts had no record (a create that crashed before its record was written).
    pub orphan_artifacts_removed: Vec<LambdaId>,
    /// Name claims whose record did not exist.
    pub stale_names_removed: usize,
    /// Records missing from the index, added back.
    pub index_entries_added: usize,
    /// Index entries whose record did not exist, removed.
    pub index_entries_removed: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordDoc {
    revision: u64,
    record: LambdaRecord,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IndexEntry {
    lambda_id: LambdaId,
    account_id: uuid::Uuid,
    lambda_name: String,
    namespace: String,
    #[serde(with = "time::serde::rfc3339")]
    create_time: time::OffsetDateTime,
}

impl IndexEntry {
    fn of(r: &LambdaRecord) -> Self {
        Self {
            lambda_id: r.lambda_id,
            account_id: r.account_id,
            lambda_name: r.lambda_name.to_string(),
            namespace: r.parameters.deploy_parameters.namespace.clone(),
            create_time: r.create_time,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexDoc {
    entries: Vec<IndexEntry>,
}

/// How many times a compare-and-swap is retried before giving up with a conflict.
pub(crate) const CAS_ATTEMPTS: usize = 100;

/// The lambda records (see the crate docs for keys and concurrency).
#[derive(Debug, Clone)]
pub struct LambdaRepository {
    pub(crate) inner: Arc<Inner>,
}

impl LambdaRepository {
    fn record_key(&self, id: &LambdaId) -> Path {
        self.inner.key(&["records", &format!("{id}.json")])
    }

    fn name_key(&self, account: &uuid::Uuid, name: &str) -> Path {
        self.inner.key(&["names", &account.to_string(), name])
    }

    fn index_key(&self) -> Path {
        self.inner.key(&["index", "lambdas.json"])
    }

    /// Creates a record with revision 1. Fails with [`Error::Conflict`] when the account already
    /// has a lambda of that name (also when two creates race: exactly one wins) or the id exists.
    pub async fn create(&self, record: LambdaRecord) -> Result<Versioned<LambdaRecord>> {
        let _guard = self.inner.serial_guard().await;
        let name_key = self.name_key(&record.account_id, record.lambda_name.as_str());
        let id = record.lambda_id;
        if self.inner.cas == CasMode::Serialized && self.inner.exists(&name_key).await? {
            return Err(name_taken(&record));
        }
        if !self.inner.write(&name_key, &id, PutMode::Create).await? {
            return Err(name_taken(&record));
        }
        let key = self.record_key(&id);
        let doc = RecordDoc {
            revision: 1,
            record,
        };
        let created = if self.inner.cas == CasMode::Serialized && self.inner.exists(&key).await? {
            false
        } else {
            self.inner.write(&key, &doc, PutMode::Create).await?
        };
        if !created {
            let _ = self.inner.store.delete(&name_key).await;
            return Err(Error::Conflict {
                what: format!("a lambda with id {id} already exists"),
            });
        }
        let entry = IndexEntry::of(&doc.record);
        self.update_index(|idx| {
            idx.entries.retain(|e| e.lambda_id != entry.lambda_id);
            idx.entries.push(entry.clone());
        })
        .await?;
        Ok(Versioned {
            value: doc.record,
            revision: Revision(1),
        })
    }

    /// A record by id.
    pub async fn get(&self, id: &LambdaId) -> Result<Versioned<LambdaRecord>> {
        match self.inner.read::<RecordDoc>(&self.record_key(id)).await? {
            Some((doc, _)) => Ok(Versioned {
                value: doc.record,
                revision: Revision(doc.revision),
            }),
            None => Err(not_found(id)),
        }
    }

    /// Replaces a record if it is still at `expected` (compare-and-swap); otherwise
    /// [`Error::Conflict`]. The id, account and name cannot change.
    pub async fn update(
        &self,
        id: &LambdaId,
        expected: Revision,
        record: LambdaRecord,
    ) -> Result<Versioned<LambdaRecord>> {
        let _guard = self.inner.serial_guard().await;
        self.update_locked(id, expected, record).await
    }

    async fn update_locked(
        &self,
        id: &LambdaId,
        expected: Revision,
        record: LambdaRecord,
    ) -> Result<Versioned<LambdaRecord>> {
        let key = self.record_key(id);
        let Some((current, version)) = self.inner.read::<RecordDoc>(&key).await? else {
            return Err(not_found(id));
        };
        if current.record.lambda_id != record.lambda_id
            || current.record.account_id != record.account_id
            || current.record.lambda_name != record.lambda_name
        {
            return Err(Error::Conflict {
                what: format!("lambda {id}: the id, account and name of a record cannot change"),
            });
        }
        if current.revision != expected.0 {
            return Err(stale(id, expected, current.revision));
        }
        let namespace_changed = current.record.parameters.deploy_parameters.namespace
            != record.parameters.deploy_parameters.namespace;
        let doc = RecordDoc {
            revision: expected.0 + 1,
            record,
        };
        if !self
            .inner
            .write(&key, &doc, PutMode::Update(version))
            .await?
        {
            return Err(stale(id, expected, expected.0 + 1));
        }
        if namespace_changed {
            let entry = IndexEntry::of(&doc.record);
            self.update_index(|idx| {
                for e in idx
                    .entries
                    .iter_mut()
                    .filter(|e| e.lambda_id == entry.lambda_id)
                {
                    *e = entry.clone();
                }
            })
            .await?;
        }
        Ok(Versioned {
            value: doc.record,
            revision: Revision(doc.revision),
        })
    }

    /// Read-modify-write with retries: `f` changes a fresh copy of the record until the
    /// compare-and-swap succeeds, so concurrent updates are never lost. `f` may run several
    /// times; an error from it stops the update.
    pub async fn update_with<F, E>(
        &self,
        id: &LambdaId,
        mut f: F,
    ) -> Result<Versioned<LambdaRecord>, E>
    where
        F: FnMut(&mut LambdaRecord) -> Result<(), E>,
        E: From<Error>,
    {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.get(id).await?;
            let mut next = current.value.clone();
            f(&mut next)?;
            match self.update(id, current.revision, next).await {
                Err(Error::Conflict { .. }) => continue,
                other => return Ok(other?),
            }
        }
        Err(Error::Conflict {
            what: format!("lambda {id} kept changing; gave up after {CAS_ATTEMPTS} attempts"),
        }
        .into())
    }

    /// Deletes a record, its index entry and its name claim. Artifacts are the caller's
    /// ([`ArtifactStore::delete_lambda`]).
    pub async fn delete(&self, id: &LambdaId) -> Result<()> {
        let _guard = self.inner.serial_guard().await;
        let key = self.record_key(id);
        let Some((doc, _)) = self.inner.read::<RecordDoc>(&key).await? else {
            return Err(not_found(id));
        };
        match self.inner.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::backend(&key, e)),
        }
        let id = *id;
        self.update_index(|idx| idx.entries.retain(|e| e.lambda_id != id))
            .await?;
        let name_key = self.name_key(&doc.record.account_id, doc.record.lambda_name.as_str());
        if let Some((owner, _)) = self.inner.read::<LambdaId>(&name_key).await?
            && owner == id
        {
            let _ = self.inner.store.delete(&name_key).await;
        }
        Ok(())
    }

    /// A page of records matching `query` (newest first) and the total number of matches.
    /// Reads the index once and then only the page's records.
    pub async fn list(&self, query: &ListQuery) -> Result<(Vec<LambdaRecord>, u64)> {
        let index: IndexDoc = self
            .inner
            .read(&self.index_key())
            .await?
            .map(|(d, _)| d)
            .unwrap_or_default();
        let mut matches: Vec<&IndexEntry> = index
            .entries
            .iter()
            .filter(|e| query.account_id.is_none_or(|a| a == e.account_id))
            .filter(|e| {
                query
                    .lambda_name
                    .as_deref()
                    .is_none_or(|n| n == e.lambda_name)
            })
            .filter(|e| query.namespace.as_deref().is_none_or(|n| n == e.namespace))
            .collect();
        matches.sort_by(|a, b| {
            b.create_time
                .cmp(&a.create_time)
                .then(a.lambda_id.cmp(&b.lambda_id))
        });
        let count = matches.len() as u64;
        let size = query.page_size.clamp(1, 1000);
        let skip = query.page.max(1).saturating_sub(1).saturating_mul(size);
        let ids: Vec<LambdaId> = matches
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(size as usize)
            .map(|e| e.lambda_id)
            .collect();
        let mut records: Vec<(usize, LambdaRecord)> =
            futures::stream::iter(ids.into_iter().enumerate())
                .map(|(i, id)| async move {
                    match self.get(&id).await {
                        Ok(v) => Ok(Some((i, v.value))),
                        // Deleted between the index read and now.
                        Err(Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(16)
                .try_filter_map(|x| async move { Ok(x) })
                .try_collect()
                .await?;
        records.sort_by_key(|(i, _)| *i);
        Ok((records.into_iter().map(|(_, r)| r).collect(), count))
    }

    async fn update_index(&self, mut f: impl FnMut(&mut IndexDoc)) -> Result<()> {
        let key = self.index_key();
        for _ in 0..CAS_ATTEMPTS {
            let (mut idx, mode) = match self.inner.read::<IndexDoc>(&key).await? {
                Some((idx, v)) => (idx, PutMode::Update(v)),
                None => (IndexDoc::default(), PutMode::Create),
            };
            f(&mut idx);
            if self.inner.write(&key, &idx, mode).await? {
                return Ok(());
            }
        }
        Err(Error::Conflict {
            what: format!("the index kept changing; gave up after {CAS_ATTEMPTS} attempts"),
        })
    }

    /// Repairs what a crash can leave behind, so that a later start finds a consistent store:
    /// artifacts of lambdas that have no record (a create interrupted between storing the archive
    /// and writing the record: the user never got an id, so the archive is removed), name claims
    /// without a record, and index entries out of step with the records. Only objects older than
    /// `grace` are removed, so creates in flight in another process are left alone.
    pub async fn recover(
        &self,
        artifacts: &ArtifactStore,
        grace: Duration,
    ) -> Result<RecoveryReport> {
        let _guard = self.inner.serial_guard().await;
        let mut report = RecoveryReport::default();
        let now = SystemTime::now();
        let old_enough = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age >= grace);

        // The records are the truth.
        let records_prefix = self.inner.key(&["records"]);
        let metas = self.inner.list_all(&records_prefix).await?;
        let mut ids = HashSet::new();
        for m in &metas {
            if let Some(id) = m
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|s| s.parse::<LambdaId>().ok())
            {
                ids.insert(id);
            }
        }

        // Index: add missing records, drop entries without a record.
        let index: IndexDoc = self
            .inner
            .read(&self.index_key())
            .await?
            .map(|(d, _)| d)
            .unwrap_or_default();
        let indexed: HashSet<LambdaId> = index.entries.iter().map(|e| e.lambda_id).collect();
        let mut missing = Vec::new();
        for id in ids.difference(&indexed) {
            if let Some((doc, _)) = self.inner.read::<RecordDoc>(&self.record_key(id)).await? {
                missing.push(IndexEntry::of(&doc.record));
            }
        }
        let stale: HashSet<LambdaId> = indexed.difference(&ids).copied().collect();
        report.index_entries_added = missing.len();
        report.index_entries_removed = stale.len();
        if !missing.is_empty() || !stale.is_empty() {
            self.update_index(|idx| {
                idx.entries.retain(|e| !stale.contains(&e.lambda_id));
                let have: HashSet<LambdaId> = idx.entries.iter().map(|e| e.lambda_id).collect();
                idx.entries.extend(
                    missing
                        .iter()
                        .filter(|e| !have.contains(&e.lambda_id))
                        .cloned(),
                );
            })
            .await?;
        }

        // Name claims whose record is gone.
        let names_prefix = self.inner.key(&["names"]);
        let claims = self.inner.list_all(&names_prefix).await?;
        for m in claims {
            let owner = self
                .inner
                .read::<LambdaId>(&m.location)
                .await
                .ok()
                .flatten()
                .map(|(id, _)| id);
            let orphan = owner.is_none_or(|id| !ids.contains(&id));
            if orphan && old_enough(m.last_modified.into()) {
                let _ = self.inner.store.delete(&m.location).await;
                report.stale_names_removed += 1;
            }
        }

        // Artifacts of lambdas without a record.
        let mut newest: BTreeMap<LambdaId, SystemTime> = BTreeMap::new();
        for (id, t) in artifacts.lambda_ids().await? {
            newest.insert(id, t);
        }
        for (id, t) in newest {
            if !ids.contains(&id) && old_enough(t) {
                artifacts.delete_lambda(&id).await?;
                report.orphan_artifacts_removed.push(id);
            }
        }
        Ok(report)
    }
}

fn not_found(id: &LambdaId) -> Error {
    Error::NotFound {
        what: format!("lambda {id}"),
    }
}

fn name_taken(r: &LambdaRecord) -> Error {
    Error::Conflict {
        what: format!(
            "account {} already has a lambda named {:?}",
            r.account_id,
            r.lambda_name.as_str()
        ),
    }
}

fn stale(id: &LambdaId, expected: Revision, found: u64) -> Error {
    Error::Conflict {
        what: format!(
            "lambda {id} changed since it was read (expected revision {}, found {found})",
            expected.0
        ),
    }
}
