//! The garbage collector: removes what no lambda needs any more.
//!
//! One pass reads every record, then lists the store once. A version stays when it is one of the
//! lambda's newest `keep_versions` (up to its current version), its current or its running one,
//! or newer than its current one (an update in flight stores its archive before it moves the
//! record). Everything else of a lambda with a record goes: archive, build log, docs, records.
//! Lambdas without a record (deleted) lose all their objects, and objects under `lambdas/` that
//! belong to no version are orphans; both only when older than the grace (`orphan_grace_secs`),
//! since a create in flight stores its archive before its record exists. Then the builder
//! removes what it made that no kept version uses ([`ImageBuilder::collect`]): app folders,
//! environments beyond the cache's size, engine images, registry manifests.
//!
//! The records are read before the store is listed: whatever the listing shows that the records
//! do not explain was either deleted or made after the records were read, and the grace tells
//! the two apart. A dry run makes the same plan and removes nothing.

use super::Platform;
use crate::service::error::Result;
use futures::{StreamExt, TryStreamExt};
use lambda_build::{InUse, KeptVersions};
use lambda_core::api::{GcItem, GcReport, LambdaRecord};
use lambda_core::{Artifact, LambdaId};
use lambda_storage::{Inventory, VersionFiles};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// Reads of `artifact.json` in flight at once.
const ARTIFACT_READS: usize = 16;

/// What the store part of a collection removes: the keys of one report item.
type Step = Vec<String>;

/// Versions of one lambda that stay (see the module docs).
fn kept_versions(
    rec: &LambdaRecord,
    stored: &BTreeMap<u64, VersionFiles>,
    keep: usize,
) -> BTreeSet<u64> {
    let mut kept: BTreeSet<u64> = stored
        .keys()
        .rev()
        .filter(|v| **v <= rec.lambda_version)
        .take(keep)
        .copied()
        .collect();
    kept.insert(rec.lambda_version);
    kept.extend(rec.running_version);
    kept
}

impl Platform {
    /// Runs one collection (one at a time), or in a dry run says what it would remove.
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport> {
        let _one = self.inner.gc.lock().await;
        let started = std::time::Instant::now();
        let records = self.all_records().await?;
        let inventory = self.inner.artifacts.inventory().await?;
        let grace = self.inner.cfg.orphan_grace;
        let (in_use, mut plan) = self.plan(&records, &inventory, grace).await?;
        plan.extend(self.expired_audit().await?);
        let mut removed = if dry_run {
            plan.into_iter().map(|(_, item)| item).collect()
        } else {
            self.remove(plan).await
        };
        match self.inner.builder.collect(&in_use, dry_run).await {
            Ok(items) => removed.extend(items),
            Err(e) => {
                self.inner.metrics.cleanup_failed();
                tracing::warn!(error = %e, "collecting the builder's garbage failed");
            }
        }
        removed.sort();
        let bytes = removed.iter().map(|i| i.bytes).sum();
        tracing::info!(
            dry_run,
            removed = removed.len(),
            bytes,
            listed = inventory.listed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "garbage collection"
        );
        Ok(GcReport {
            dry_run,
            removed,
            bytes,
        })
    }

    /// The audit log's hours older than `audit_retention`.
    async fn expired_audit(&self) -> Result<Vec<(Step, GcItem)>> {
        let Some(keep) = self.inner.cfg.audit_retention else {
            return Ok(Vec::new());
        };
        let before = time::OffsetDateTime::now_utc() - keep;
        Ok(self
            .inner
            .storage
            .audit()
            .expired(before)
            .await?
            .into_iter()
            .map(|(key, bytes)| (vec![key.clone()], GcItem::new("audit", key, bytes)))
            .collect())
    }

    /// What stays (for the builder) and what of the store goes.
    async fn plan(
        &self,
        records: &[LambdaRecord],
        inventory: &Inventory,
        grace: Duration,
    ) -> Result<(InUse, Vec<(Step, GcItem)>)> {
        let keep = self.inner.cfg.keep_versions.max(1);
        let old = |t: SystemTime| {
            SystemTime::now()
                .duration_since(t)
                .is_ok_and(|age| age >= grace)
        };
        let mut in_use = InUse {
            grace,
            env_cache_max_bytes: self.inner.cfg.env_cache_max_bytes,
            ..InUse::default()
        };
        let mut plan = Vec::new();
        let mut built = Vec::new();
        let empty = BTreeMap::new();
        let listed: BTreeSet<LambdaId> = records.iter().map(|r| r.lambda_id).collect();
        let unlisted = self.unlisted_records(inventory, &listed).await?;
        for rec in records.iter().chain(&unlisted) {
            let id = rec.lambda_id;
            let stored = inventory.lambdas.get(&id).map_or(&empty, |l| &l.versions);
            let kept = kept_versions(rec, stored, keep);
            for (v, files) in stored {
                if kept.contains(v) || *v > rec.lambda_version {
                    if files.artifact {
                        built.push((id, *v));
                    }
                    continue;
                }
                let what = self.inner.artifacts.version_prefix(&id, *v);
                let keys = inventory.lambdas[&id].keys[v].clone();
                plan.push((keys, GcItem::new("version", what, files.bytes)));
            }
            in_use.lambdas.insert(
                id,
                KeptVersions {
                    versions: kept,
                    current: rec.lambda_version,
                },
            );
        }
        for (id, stored) in &inventory.lambdas {
            if !in_use.lambdas.contains_key(id) && old(stored.newest) {
                plan.push((
                    stored.keys.values().flatten().cloned().collect(),
                    GcItem::new(
                        "lambda",
                        self.inner.artifacts.lambda_prefix(id),
                        stored.bytes,
                    ),
                ));
            }
        }
        for object in inventory.strays.iter().filter(|o| old(o.modified)) {
            plan.push((
                vec![object.key.clone()],
                GcItem::new("orphan", object.key.clone(), object.bytes),
            ));
        }
        in_use.artifacts = self.kept_artifacts(built).await?;
        Ok((in_use, plan))
    }

    /// Records of stored lambdas the list did not show: it is read from the index, which a
    /// crash can leave behind the records until the reconciler repairs it.
    async fn unlisted_records(
        &self,
        inventory: &Inventory,
        listed: &BTreeSet<LambdaId>,
    ) -> Result<Vec<LambdaRecord>> {
        let mut out = Vec::new();
        for id in inventory.lambdas.keys().filter(|id| !listed.contains(id)) {
            match self.inner.repo.get(id).await {
                Ok(rec) => out.push(rec.value),
                Err(lambda_storage::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// The artifacts kept versions run from.
    async fn kept_artifacts(&self, built: Vec<(LambdaId, u64)>) -> Result<Vec<Artifact>> {
        let artifacts = &self.inner.artifacts;
        let found: Vec<Option<Artifact>> = futures::stream::iter(built)
            .map(|(id, v)| async move {
                match artifacts.get_artifact(&id, v).await {
                    Ok(a) => Ok(Some(a)),
                    Err(lambda_storage::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(ARTIFACT_READS)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Deletes the planned objects in bulk; the items all of whose objects went.
    async fn remove(&self, plan: Vec<(Step, GcItem)>) -> Vec<GcItem> {
        let keys: Vec<String> = plan.iter().flat_map(|(k, _)| k.iter().cloned()).collect();
        let (gone, failed) = self.inner.artifacts.delete_keys(&keys).await;
        for e in &failed {
            self.inner.metrics.cleanup_failed();
            tracing::warn!(error = %e, "garbage collection: removing failed");
        }
        plan.into_iter()
            .filter(|(keys, _)| keys.iter().all(|k| gone.contains(k)))
            .map(|(_, item)| item)
            .collect()
    }

    /// Collects every `every`, until shutdown.
    pub(super) fn spawn_gc(&self, every: Duration) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = this.inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = this.gc(false).await {
                    tracing::warn!(error = %e, "garbage collection failed");
                }
            }
        });
    }
}
