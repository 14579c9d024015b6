//! The lifecycle of a lambda: validate, create, read, update, configure, switch, delete, and its status.

use super::*;

impl Platform {
    /// Validates an archive and parameters together (off the async threads).
    pub(super) async fn validate(
        &self,
        archive: Bytes,
        params: Option<Bytes>,
        lambda_type: LambdaType,
    ) -> Result<(ValidatedArchive, Parameters)> {
        let limits = self.inner.cfg.limits.clone();
        let os = self.inner.cfg.base_os;
        let snapshot_builder = self.inner.builder.kind() == "kubernetes";
        let (archive_result, params_result) = tokio::task::spawn_blocking(move || {
            let a = validate_bytes_for(&archive, &limits, lambda_type);
            let p = match &params {
                Some(p) => parse_params(p, os, snapshot_builder),
                None => Ok(Parameters::default()),
            };
            (a, p)
        })
        .await
        .map_err(|e| Error::Internal(format!("validation task failed: {e}")))?;
        let mut report = ValidationReport::default();
        let archive = archive_result.map_err(|r| report.extend(r)).ok();
        let params = params_result.map_err(|r| report.extend(r)).ok();
        match (archive, params) {
            (Some(a), Some(p)) => Ok((a, p)),
            _ => Err(Error::Invalid(report)),
        }
    }

    /// Checks an archive and parameters without storing anything.
    pub async fn check(
        &self,
        archive: Bytes,
        parameters: Option<Bytes>,
        lambda_type: LambdaType,
    ) -> Result<()> {
        self.validate(archive, parameters, lambda_type)
            .await
            .map(|_| ())
    }

    pub(super) async fn store_docs(
        &self,
        id: &LambdaId,
        version: u64,
        bytes: &Bytes,
        archive: &ValidatedArchive,
    ) -> Result<()> {
        if !archive.has_docs {
            return Ok(());
        }
        let (bytes, archive) = (bytes.clone(), archive.clone());
        let docs = tokio::task::spawn_blocking(move || {
            let mut docs: HashMap<String, Vec<u8>> = HashMap::new();
            for_each_user_file::<_, std::io::Error>(
                std::io::Cursor::new(&bytes[..]),
                &archive,
                |name, data| {
                    if name == DOCS_HTML || name == DOCS_YAML {
                        docs.insert(name.to_owned(), data.to_vec());
                    }
                    Ok(())
                },
            )
            .map(|_| docs)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(format!("reading the docs: {e}")))?;
        let html = Bytes::from(docs.get(DOCS_HTML).cloned().unwrap_or_default());
        let yaml = Bytes::from(docs.get(DOCS_YAML).cloned().unwrap_or_default());
        self.inner
            .artifacts
            .put_docs(id, version, html, yaml)
            .await?;
        Ok(())
    }

    /// Creates a lambda: validates (every problem at once), stores the archive and the record,
    /// and starts its build and deploy in the background.
    pub async fn create(
        &self,
        account_id: uuid::Uuid,
        credentials: Credentials,
        parameters: Option<Bytes>,
        archive: Bytes,
    ) -> Result<LambdaId> {
        let (validated, params) = self
            .validate(archive.clone(), parameters, credentials.lambda_type)
            .await?;
        let id = LambdaId::new();
        let info = self
            .inner
            .artifacts
            .put_archive_bytes(&id, 1, archive.clone())
            .await?;
        if let Err(e) = self.store_docs(&id, 1, &archive, &validated).await {
            let _ = self.inner.artifacts.delete_lambda(&id).await;
            return Err(e);
        }
        let rec = first_record(
            id,
            account_id,
            credentials,
            params,
            info,
            validated.has_docs,
            None,
        );
        self.insert_record(rec).await?;
        self.spawn_job(id, 1);
        Ok(id)
    }

    /// Writes a new lambda's record (its objects are stored already: they are removed when
    /// the record cannot be written) and notes its first version.
    pub(super) async fn insert_record(&self, rec: LambdaRecord) -> Result<()> {
        let id = rec.lambda_id;
        let built = rec.image_status == ImageStatus::Completed;
        // Counting and writing under one lock: creates racing on this server cannot both take
        // the account's last place.
        let _gate = self.inner.create_gate.lock().await;
        if let Err(e) = self.check_lambda_limit(rec.account_id).await {
            let _ = self.inner.artifacts.delete_lambda(&id).await;
            return Err(e);
        }
        match self.inner.repo.create(rec).await {
            Ok(v) => {
                self.cache(&v.value);
                self.note_version(&v.value, None, built).await;
                Ok(())
            }
            Err(lambda_storage::Error::Conflict { what }) => {
                let _ = self.inner.artifacts.delete_lambda(&id).await;
                Err(Error::NameConflict(what))
            }
            Err(e) => {
                let _ = self.inner.artifacts.delete_lambda(&id).await;
                Err(e.into())
            }
        }
    }

    /// 409/42017 when the account has `max_lambdas_per_account` lambdas already.
    pub(super) async fn check_lambda_limit(&self, account: uuid::Uuid) -> Result<()> {
        let max = self.inner.cfg.max_lambdas_per_account;
        if max == 0 {
            return Ok(());
        }
        let query = ListQuery {
            account_id: Some(account),
            page_size: 1,
            ..ListQuery::default()
        };
        let (_, total) = self.inner.repo.list(&query).await?;
        if total >= max as u64 {
            return Err(Error::LambdaLimit(max));
        }
        Ok(())
    }

    /// A record, checked against the caller's account when one is given.
    pub async fn get(&self, id: &LambdaId, account: Option<uuid::Uuid>) -> Result<LambdaRecord> {
        let rec = match self.inner.repo.get(id).await {
            Ok(v) => v.value,
            Err(lambda_storage::Error::NotFound { .. }) => {
                self.inner
                    .routes
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
                return Err(Error::NotFound(*id));
            }
            Err(e) => return Err(e.into()),
        };
        if account.is_some_and(|a| a != rec.account_id) {
            return Err(Error::NotFound(*id));
        }
        self.cache(&rec);
        Ok(rec)
    }

    /// A page of records and the total count.
    pub async fn list(&self, query: &ListQuery) -> Result<(Vec<LambdaRecord>, u64)> {
        Ok(self.inner.repo.list(query).await?)
    }

    /// Updates a lambda: a new version from a new archive (or the stored one) and/or new
    /// parameters. The running version keeps serving until the new one is ready.
    pub async fn update(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        credentials: Option<Credentials>,
        parameters: Option<Bytes>,
        archive: Option<Bytes>,
    ) -> Result<u64> {
        let current = self.get(id, account).await?;
        if let Some(image) = &current.import_image {
            return Err(Error::BadRequest(
                lambda_core::api::ErrorCode::ImportedImage,
                format!(
                    "Lambda update conflict. Lambda '{id}' cannot be updated, since it uses imported image {image}; create a new lambda instead"
                ),
            ));
        }
        if let Some(c) = &credentials
            && c.lambda_name != current.lambda_name
        {
            return Err(Error::UpdateNotAllowed(format!(
                "a lambda cannot be renamed (it is {:?}); create a new one instead",
                current.lambda_name.as_str()
            )));
        }
        let bytes = match archive {
            Some(b) => b,
            None => self.current_archive(&current).await?,
        };
        let params_json = match parameters {
            Some(p) => Some(p),
            None => Some(Bytes::from(
                serde_json::to_vec(&current.parameters).unwrap_or_default(),
            )),
        };
        let (validated, params) = self
            .validate(bytes.clone(), params_json, current.lambda_type)
            .await?;
        let version = current.lambda_version + 1;
        let info: ArchiveInfo = self
            .inner
            .artifacts
            .put_archive_bytes(id, version, bytes.clone())
            .await?;
        self.store_docs(id, version, &bytes, &validated).await?;
        self.start_version(
            &current,
            versions::NextVersion {
                parameters: params,
                archive: info,
                has_docs: validated.has_docs,
                lambda_type: credentials.map(|c| c.lambda_type),
                built: false,
                rolled_back_from: None,
            },
        )
        .await
    }

    /// The stored archive of a lambda's current version (410/42012 when it is gone).
    pub(super) async fn current_archive(&self, rec: &LambdaRecord) -> Result<Bytes> {
        let id = &rec.lambda_id;
        match self
            .inner
            .artifacts
            .read_archive(id, rec.lambda_version, &rec.archive)
            .await
        {
            Ok(b) => Ok(b),
            Err(lambda_storage::Error::NotFound { .. }) => Err(Error::ArchiveGone(*id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the user config and restarts the lambda with it, without a rebuild.
    pub async fn set_config(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        user_config: Option<serde_json::Value>,
    ) -> Result<u64> {
        self.get(id, account).await?;
        let check = Parameters {
            user_config: user_config.clone(),
            ..Parameters::default()
        };
        let report = check.check();
        if !report.is_ok() {
            return Err(Error::Invalid(report));
        }
        let rec = self
            .inner
            .repo
            .update_with::<_, Error>(id, |rec| {
                rec.parameters.user_config = user_config.clone();
                rec.last_update_time = now();
                Ok(())
            })
            .await?;
        self.cache(&rec.value);
        if rec.value.image_status == ImageStatus::Completed && rec.value.alive {
            self.spawn_job(*id, rec.value.lambda_version);
        }
        Ok(rec.value.lambda_version)
    }

    /// Switches a lambda off (undeployed, record and archive kept) or on (deployed again).
    pub async fn switch(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        alive: bool,
    ) -> Result<LambdaRecord> {
        self.switch_with_reason(id, account, alive, "switched off".into())
            .await
    }

    /// [`Self::switch`], with the reason a switched-off record carries (a switch on clears any
    /// "switched off" reason).
    pub(super) async fn switch_with_reason(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        alive: bool,
        off_reason: String,
    ) -> Result<LambdaRecord> {
        self.get(id, account).await?;
        let rec = self
            .inner
            .repo
            .update_with::<_, Error>(id, |rec| {
                rec.alive = alive;
                rec.last_update_time = now();
                if !alive {
                    set_status(rec, LambdaStatus::Waiting);
                    rec.running_version = None;
                    rec.replicas = 0;
                    rec.reason = Some(off_reason.clone());
                } else if rec
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("switched off"))
                {
                    rec.reason = None;
                }
                Ok(())
            })
            .await?
            .value;
        self.cache(&rec);
        if alive {
            self.spawn_job(*id, rec.lambda_version);
        } else {
            self.cancel_job(id);
            self.inner.orchestrator.undeploy(id).await?;
        }
        Ok(rec)
    }

    /// Deletes a lambda: its record first (so it is gone for the API at once), then its
    /// deployment, archives, logs, docs and built artifacts. A crash in between is finished by
    /// the reconciler and the storage recovery.
    pub async fn delete(&self, id: &LambdaId, account: Option<uuid::Uuid>) -> Result<()> {
        let rec = self.get(id, account).await?;
        self.cancel_job(id);
        if let Err(e) = self.cancel_tasks_of(id).await {
            tracing::warn!(lambda = %id, error = %e, "cancelling the lambda's tasks failed");
        }
        match self.inner.repo.delete(id).await {
            Ok(()) | Err(lambda_storage::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.inner.traffic.forget(id);
        self.inner.scaler.forget(id);
        self.inner.metrics.set_replicas(id, None);
        if let Err(e) = self.inner.orchestrator.undeploy(id).await {
            tracing::warn!(lambda = %id, error = %e, "undeploy after delete failed; the reconciler retries");
        }
        for v in 1..=rec.lambda_version {
            if let Ok(artifact) = self.inner.artifacts.get_artifact(id, v).await
                && let Err(e) = self.inner.builder.remove(id, &artifact).await
            {
                self.inner.metrics.cleanup_failed();
                tracing::warn!(lambda = %id, version = v, error = %e, "removing a built artifact failed");
            }
        }
        if let Err(e) = self.inner.artifacts.delete_lambda(id).await {
            tracing::warn!(lambda = %id, error = %e, "deleting stored objects failed; storage recovery retries");
        }
        Ok(())
    }

    /// Deploy status with each replica.
    pub async fn status(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<StatusResponse> {
        let rec = self.get(id, account).await?;
        let replicas = match self.inner.orchestrator.status(id).await {
            Ok(st) => st
                .replicas
                .into_iter()
                .map(|r| ReplicaStatus {
                    name: r.name,
                    status: r.phase.as_str().to_owned(),
                    reason: r.reason,
                    restarts: r.restarts,
                })
                .collect(),
            Err(lambda_deploy::Error::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(StatusResponse {
            status: rec.status,
            reason: rec.reason,
            replicas,
        })
    }

    /// Build status.
    pub async fn image_status(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<ImageStatusResponse> {
        let rec = self.get(id, account).await?;
        let reason = if rec.image_status == ImageStatus::Error {
            rec.reason
        } else {
            None
        };
        Ok(ImageStatusResponse {
            status: rec.image_status,
            reason,
        })
    }
}
