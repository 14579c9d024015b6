//! The background job of each lambda: build, then deploy, one at a time (a newer job cancels the older).

use super::*;

impl Platform {
    pub(super) fn cancel_job(&self, id: &LambdaId) {
        if let Some(job) = self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            job.cancel.cancel();
        }
    }

    /// Starts the background job that builds (if needed) and deploys `version`.
    pub(super) fn spawn_job(&self, id: LambdaId, version: u64) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let cancel = self.inner.shutdown.child_token();
        let job_id = self.inner.job_ids.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Job {
                    id: job_id,
                    cancel: cancel.clone(),
                },
            )
        {
            old.cancel.cancel();
        }
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.run_job(id, version, cancel).await {
                match e {
                    Error::Superseded(_) | Error::NotFound(_) => {}
                    e => tracing::warn!(lambda = %id, version, error = %e, "background job failed"),
                }
            }
            let mut jobs = this.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            if jobs.get(&id).is_some_and(|j| j.id == job_id) {
                jobs.remove(&id);
            }
        });
    }

    /// Applies `f` to the record if it is still at `version`.
    pub(super) async fn update_record(
        &self,
        id: &LambdaId,
        version: u64,
        mut f: impl FnMut(&mut LambdaRecord),
    ) -> Result<LambdaRecord> {
        self.update_cached(id, |rec| {
            if rec.lambda_version != version {
                return Err(Error::Superseded(*id));
            }
            f(rec);
            Ok(())
        })
        .await
    }

    /// Applies `f` to the stored record (compare-and-swap, retried on a race), keeps the result
    /// in the route cache; a record that is gone is [`Error::NotFound`].
    pub(super) async fn update_cached(
        &self,
        id: &LambdaId,
        f: impl FnMut(&mut LambdaRecord) -> Result<()>,
    ) -> Result<LambdaRecord> {
        let rec = self
            .inner
            .repo
            .update_with::<_, Error>(id, f)
            .await
            .map_err(|e| match e {
                Error::Storage(lambda_storage::Error::NotFound { .. }) => Error::NotFound(*id),
                e => e,
            })?
            .value;
        self.cache(&rec);
        Ok(rec)
    }

    pub(super) async fn run_job(
        &self,
        id: LambdaId,
        version: u64,
        cancel: CancellationToken,
    ) -> Result<()> {
        let rec = self.get(&id, None).await?;
        if rec.lambda_version != version {
            return Err(Error::Superseded(id));
        }
        if rec.image_status != ImageStatus::Completed {
            self.build(&id, version, rec, &cancel).await?;
        }
        let rec = self.get(&id, None).await?;
        if rec.lambda_version != version || rec.image_status != ImageStatus::Completed || !rec.alive
        {
            return Ok(());
        }
        if cancel.is_cancelled() {
            return Ok(());
        }
        let artifact = match self.inner.artifacts.get_artifact(&id, version).await {
            Ok(a) => a,
            Err(lambda_storage::Error::NotFound { .. }) => {
                // Built by an older process whose artifact record is gone: build again.
                self.update_record(&id, version, |r| set_image(r, ImageStatus::Pending))
                    .await?;
                let rec = self.get(&id, None).await?;
                self.build(&id, version, rec, &cancel).await?;
                self.inner.artifacts.get_artifact(&id, version).await?
            }
            Err(e) => return Err(e.into()),
        };
        let started = Instant::now();
        let replicas = rec
            .parameters
            .deploy_parameters
            .replica_bounds(rec.parameters.eternal)
            .start_with((rec.replicas > 0).then_some(rec.replicas));
        let spec = DeploySpec {
            lambda_id: id,
            lambda_name: rec.lambda_name.clone(),
            lambda_type: rec.lambda_type,
            version,
            artifact,
            parameters: rec.parameters.clone(),
            replicas,
        };
        // Not raced against `cancel`: a deploy is bounded by the start timeout, and a newer job
        // waits for it (deploys of one lambda are serialised) and then replaces it.
        let result = self.inner.orchestrator.deploy(spec).await;
        if cancel.is_cancelled() {
            // Switched off, deleted or superseded meanwhile: whoever cancelled owns the state.
            return Ok(());
        }
        self.inner.metrics.observe_deploy(started.elapsed());
        match result {
            Ok(()) => {
                self.update_record(&id, version, |r| {
                    set_status(r, LambdaStatus::Running);
                    r.running_version = Some(version);
                    r.reason = None;
                    r.replicas = replicas;
                })
                .await?;
                self.inner.metrics.set_replicas(&id, Some(replicas));
                if Scaling::of(&rec).is_some() {
                    // Its idle time starts when it runs, not when it was uploaded.
                    self.inner.scaler.touch(&id);
                }
                self.retain_artifacts(&id, version).await;
            }
            Err(e) => {
                let still_serving = self.inner.orchestrator.status(&id).await.is_ok_and(|s| {
                    s.replicas
                        .iter()
                        .any(|r| r.phase == lambda_deploy::ReplicaPhase::Running)
                });
                let reason = e.to_string();
                self.update_record(&id, version, |r| {
                    if still_serving {
                        r.reason = Some(format!("version {version} did not start; the previous version keeps serving: {reason}"));
                    } else {
                        set_status(r, LambdaStatus::Terminated);
                        r.running_version = None;
                        r.reason = Some(reason.clone());
                        r.replicas = 0;
                    }
                })
                .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn build(
        &self,
        id: &LambdaId,
        version: u64,
        rec: LambdaRecord,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let live = Arc::new(LiveLog::default());
        self.inner
            .live_logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((*id, version), live.clone());
        let result = self.build_with_log(id, version, rec, cancel, &live).await;
        live.finish();
        let _ = self
            .inner
            .artifacts
            .put_build_log(id, version, Bytes::from(live.text()))
            .await;
        self.inner
            .live_logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(*id, version));
        result
    }

    pub(super) async fn build_with_log(
        &self,
        id: &LambdaId,
        version: u64,
        rec: LambdaRecord,
        cancel: &CancellationToken,
        live: &Arc<LiveLog>,
    ) -> Result<()> {
        live.push(format!(
            "==> lambda {id} v{version}: waiting for a build slot"
        ));
        let _permit = tokio::select! {
            p = self.inner.slots.clone().acquire_owned() => p.map_err(|e| Error::Internal(e.to_string()))?,
            _ = cancel.cancelled() => return Ok(()),
        };
        self.update_record(id, version, |r| set_image(r, ImageStatus::InProgress))
            .await?;
        let started = Instant::now();
        let bytes = match self
            .inner
            .artifacts
            .read_archive(id, version, &rec.archive)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                let reason = match e {
                    lambda_storage::Error::NotFound { .. } => {
                        "the stored archive is gone".to_owned()
                    }
                    e => format!("the stored archive cannot be read: {e}"),
                };
                live.push(format!("==> {reason}"));
                self.fail_build(id, version, reason).await?;
                return Ok(());
            }
        };
        let (validated, _) = match self.validate(bytes.clone(), None, rec.lambda_type).await {
            Ok(v) => v,
            Err(e) => {
                self.fail_build(id, version, format!("the stored archive is invalid: {e}"))
                    .await?;
                return Ok(());
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let pump = {
            let live = live.clone();
            tokio::spawn(async move {
                while let Some(line) = rx.recv().await {
                    live.push(line);
                }
            })
        };
        let req = BuildRequest {
            lambda_id: *id,
            version,
            lambda_type: rec.lambda_type,
            archive_bytes: bytes,
            archive: validated,
            parameters: rec.parameters.clone(),
            timeout: self.inner.cfg.build_timeout,
        };
        let result = self.inner.builder.build(req, tx, cancel.clone()).await;
        let _ = pump.await;
        self.inner.metrics.observe_build(started.elapsed());
        match result {
            Ok(artifact) => {
                self.inner
                    .artifacts
                    .put_artifact(id, version, &artifact)
                    .await?;
                self.update_record(id, version, |r| {
                    set_image(r, ImageStatus::Completed);
                    r.reason = None;
                })
                .await?;
                self.record_build_outcome(id, version, true).await;
            }
            Err(lambda_build::Error::Cancelled) => {}
            Err(e) => self.fail_build(id, version, e.to_string()).await?,
        }
        Ok(())
    }

    pub(super) async fn fail_build(
        &self,
        id: &LambdaId,
        version: u64,
        reason: String,
    ) -> Result<()> {
        let serving = self.inner.orchestrator.endpoint(id).is_some();
        self.update_record(id, version, |r| {
            set_image(r, ImageStatus::Error);
            if !serving {
                set_status(r, LambdaStatus::Terminated);
            }
            r.reason = Some(reason.clone());
        })
        .await?;
        self.record_build_outcome(id, version, false).await;
        Ok(())
    }
}
