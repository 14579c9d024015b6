//! Versions of a lambda: what each is made of (`version.json` beside its archive), the list of
//! them, rollback to one, and the retention of built artifacts (`keep_versions`).

use super::{Platform, now};
use crate::service::error::{Error, Result};
use lambda_core::api::{
    ArchiveInfo, ErrorCode, LambdaRecord, RollbackRequest, RollbackResponse, VersionEntry,
    VersionList, VersionRecord,
};
use lambda_core::{Artifact, ImageStatus, LambdaId, LambdaType, Parameters};

/// What a new version is made of (see [`Platform::start_version`]).
pub(super) struct NextVersion {
    pub(super) parameters: Parameters,
    pub(super) archive: ArchiveInfo,
    pub(super) has_docs: bool,
    /// A new type, when the update changes it.
    pub(super) lambda_type: Option<LambdaType>,
    /// Its artifact exists already (a rollback to a kept one): no build.
    pub(super) built: bool,
    /// The version it is a rollback to.
    pub(super) rolled_back_from: Option<u64>,
}

impl Platform {
    /// Records what a new version is made of beside its archive (`version.json`), best effort:
    /// the versions list falls back on the record when it is missing. `built`: its artifact
    /// exists already (a rollback to a kept one).
    pub(super) async fn note_version(
        &self,
        rec: &LambdaRecord,
        rolled_back_from: Option<u64>,
        built: bool,
    ) {
        let meta = VersionRecord {
            version: rec.lambda_version,
            create_time: now(),
            archive: rec.archive.clone(),
            parameters: rec.parameters.clone(),
            has_docs: rec.has_docs,
            rolled_back_from,
            image_status: built.then_some(ImageStatus::Completed),
        };
        if let Err(e) = self
            .inner
            .artifacts
            .put_version(&rec.lambda_id, &meta)
            .await
        {
            tracing::warn!(lambda = %rec.lambda_id, version = rec.lambda_version, error = %e, "recording the version failed");
        }
    }

    /// Makes `current.lambda_version + 1` the lambda's version (refused when another update
    /// moved the record meanwhile), records what it is made of and starts its build and deploy.
    /// Update and rollback both come here: only what the new version is made of differs.
    pub(super) async fn start_version(
        &self,
        current: &LambdaRecord,
        next: NextVersion,
    ) -> Result<u64> {
        let id = current.lambda_id;
        let version = current.lambda_version + 1;
        let rec = self
            .inner
            .repo
            .update_with::<_, Error>(&id, |rec| {
                if rec.lambda_version != current.lambda_version {
                    return Err(Error::UpdateNotAllowed(format!(
                        "lambda {id} was updated concurrently (now version {}); retry",
                        rec.lambda_version
                    )));
                }
                rec.lambda_version = version;
                // A new version starts its own image lifecycle: queued for a build, or built
                // already when it reuses a kept artifact.
                rec.image_status = if next.built {
                    ImageStatus::Completed
                } else {
                    ImageStatus::Pending
                };
                rec.reason = None;
                rec.description = next.parameters.description.clone();
                rec.parameters = next.parameters.clone();
                rec.archive = next.archive.clone();
                rec.has_docs = next.has_docs;
                rec.last_update_time = now();
                if let Some(t) = next.lambda_type {
                    rec.lambda_type = t;
                }
                Ok(())
            })
            .await?;
        self.cache(&rec.value);
        self.note_version(&rec.value, next.rolled_back_from, next.built)
            .await;
        self.spawn_job(id, version);
        Ok(version)
    }

    /// Notes how a version's build ended in its `version.json` (best effort: the list falls
    /// back on the artifact's presence).
    pub(super) async fn record_build_outcome(&self, id: &LambdaId, version: u64, ok: bool) {
        let Ok(mut meta) = self.inner.artifacts.get_version(id, version).await else {
            return;
        };
        meta.image_status = Some(if ok {
            ImageStatus::Completed
        } else {
            ImageStatus::Error
        });
        if let Err(e) = self.inner.artifacts.put_version(id, &meta).await {
            tracing::warn!(lambda = %id, version, error = %e, "recording the build outcome failed");
        }
    }

    /// Every version whose archive is still stored, oldest first.
    pub async fn versions(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<VersionList> {
        let rec = self.get(id, account).await?;
        let stored = self.inner.artifacts.versions(id).await?;
        let mut versions = Vec::with_capacity(stored.len());
        for (v, files) in stored.into_iter().filter(|(_, f)| f.archive) {
            let mut record = match self.inner.artifacts.get_version(id, v).await {
                Ok(meta) => meta,
                // Made before versions were recorded: what the record still says of it.
                Err(lambda_storage::Error::NotFound { .. }) => VersionRecord {
                    version: v,
                    create_time: rec.last_update_time,
                    archive: if v == rec.lambda_version {
                        rec.archive.clone()
                    } else {
                        ArchiveInfo {
                            size: 0,
                            sha256: String::new(),
                        }
                    },
                    parameters: rec.parameters.clone(),
                    has_docs: rec.has_docs && v == rec.lambda_version,
                    rolled_back_from: None,
                    image_status: None,
                },
                Err(e) => return Err(e.into()),
            };
            let artifact = if files.artifact {
                self.inner.artifacts.get_artifact(id, v).await.ok()
            } else {
                None
            };
            if v == rec.lambda_version {
                record.image_status = Some(rec.image_status);
            }
            versions.push(VersionEntry {
                artifact_exists: artifact.is_some(),
                artifact,
                current: v == rec.lambda_version,
                running: rec.running_version == Some(v),
                record,
            });
        }
        Ok(VersionList {
            lambda_id: *id,
            versions,
        })
    }

    /// Goes back to an earlier version: a new version made of its archive and parameters,
    /// deployed from its artifact with no build when that is still kept, else built again from
    /// its archive. History stays linear: the new version has the next number.
    pub async fn rollback(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        req: RollbackRequest,
    ) -> Result<RollbackResponse> {
        let current = self.get(id, account).await?;
        let stored = self.inner.artifacts.versions(id).await?;
        let with_archive: Vec<u64> = stored
            .iter()
            .filter(|(v, f)| f.archive && **v < current.lambda_version)
            .map(|(v, _)| *v)
            .collect();
        let target = match req.version {
            Some(v) => v,
            None => *with_archive.last().ok_or_else(|| {
                Error::BadRequest(
                    ErrorCode::BadRequest,
                    format!("lambda {id} has no earlier version to roll back to"),
                )
            })?,
        };
        if target >= current.lambda_version {
            return Err(Error::BadRequest(
                ErrorCode::BadRequest,
                format!(
                    "version {target} is not an earlier version of lambda {id} (it is at version {})",
                    current.lambda_version
                ),
            ));
        }
        if !with_archive.contains(&target) {
            return Err(Error::BadRequest(
                ErrorCode::ArchiveGone,
                format!(
                    "lambda {id} has no stored archive of version {target} (earlier versions with an archive: {with_archive:?})"
                ),
            ));
        }
        let meta = match self.inner.artifacts.get_version(id, target).await {
            Ok(m) => m,
            Err(lambda_storage::Error::NotFound { .. }) => {
                return Err(Error::UpdateNotAllowed(format!(
                    "version {target} of lambda {id} was made before versions were recorded; update with its archive instead"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let artifact = match stored.get(&target) {
            Some(f) if f.artifact => self.inner.artifacts.get_artifact(id, target).await.ok(),
            _ => None,
        };
        let version = current.lambda_version + 1;
        self.inner
            .artifacts
            .copy_version(id, target, version)
            .await?;
        if let Some(a) = &artifact {
            self.inner.artifacts.put_artifact(id, version, a).await?;
            let log = format!(
                "==> lambda {id} v{version}: rollback to version {target}; its artifact is kept, so it is deployed again with no build\n"
            );
            self.inner
                .artifacts
                .put_build_log(id, version, log.into())
                .await?;
        }
        let rebuild = artifact.is_none();
        self.start_version(
            &current,
            NextVersion {
                parameters: meta.parameters,
                archive: meta.archive,
                has_docs: meta.has_docs,
                lambda_type: None,
                built: !rebuild,
                rolled_back_from: Some(target),
            },
        )
        .await?;
        Ok(RollbackResponse {
            lambda_id: *id,
            lambda_version: version,
            rolled_back_from: target,
            rebuild,
        })
    }

    /// After a version runs: the artifacts of all but the newest `keep_versions` versions are
    /// removed (never one that a kept version shares, as a rollback does), and their
    /// `artifact.json` forgotten. Archives stay (the garbage collector's business).
    pub(super) async fn retain_artifacts(&self, id: &LambdaId, running: u64) {
        let keep = self.inner.cfg.keep_versions.max(1);
        let Ok(stored) = self.inner.artifacts.versions(id).await else {
            return;
        };
        let built: Vec<u64> = stored
            .iter()
            .filter(|(_, f)| f.artifact)
            .map(|(v, _)| *v)
            .collect();
        if built.len() <= keep {
            return;
        }
        let (old, kept) = built.split_at(built.len() - keep);
        let mut kept_artifacts: Vec<Artifact> = Vec::new();
        for v in kept.iter().chain(std::iter::once(&running)) {
            if let Ok(a) = self.inner.artifacts.get_artifact(id, *v).await {
                kept_artifacts.push(a);
            }
        }
        for v in old.iter().filter(|v| **v != running) {
            let Ok(artifact) = self.inner.artifacts.get_artifact(id, *v).await else {
                continue;
            };
            if !kept_artifacts.contains(&artifact)
                && let Err(e) = self.inner.builder.remove(id, &artifact).await
            {
                self.inner.metrics.cleanup_failed();
                tracing::warn!(lambda = %id, version = v, error = %e, "removing an old version's artifact failed");
                continue;
            }
            if let Err(e) = self.inner.artifacts.delete_artifact(id, *v).await {
                tracing::warn!(lambda = %id, version = v, error = %e, "forgetting an old version's artifact failed");
            }
        }
    }
}
