//! The reconciler: what should run runs, what should not does not, interrupted builds resume.

use super::*;

impl Platform {
    /// Every record, read a page at a time.
    pub(super) async fn all_records(&self) -> Result<Vec<LambdaRecord>> {
        let mut records = Vec::new();
        let mut page = 1;
        loop {
            let q = ListQuery {
                page,
                page_size: 1000,
                ..ListQuery::default()
            };
            let (batch, count) = self.inner.repo.list(&q).await?;
            let n = batch.len();
            records.extend(batch);
            if n == 0 || records.len() as u64 >= count {
                return Ok(records);
            }
            page += 1;
        }
    }

    /// Drives every record to its desired state (see the module docs).
    pub async fn reconcile(&self) -> Result<()> {
        match self
            .inner
            .repo
            .recover(&self.inner.artifacts, self.inner.cfg.orphan_grace)
            .await
        {
            Ok(r) if r != lambda_storage::RecoveryReport::default() => {
                tracing::info!(report = ?r, "storage recovered")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "storage recovery failed"),
        }
        let records = self.all_records().await?;
        let deployed: HashMap<LambdaId, u64> = self
            .inner
            .orchestrator
            .list()
            .await?
            .into_iter()
            .map(|d| (d.lambda_id, d.version))
            .collect();
        for listed in &records {
            self.reconcile_record(listed, &deployed).await;
        }
        let known: std::collections::HashSet<LambdaId> =
            records.iter().map(|r| r.lambda_id).collect();
        for id in deployed.keys().filter(|id| !known.contains(id)) {
            tracing::info!(lambda = %id, "removing a deployment whose record is gone");
            if let Err(e) = self.inner.orchestrator.undeploy(id).await {
                tracing::warn!(lambda = %id, error = %e, "removing an orphan deployment failed");
            }
        }
        Ok(())
    }

    /// One record of a reconcile pass, `listed` at its start. A write of this process since then
    /// (a switch, an update, a deploy that finished) makes it stale, and acting on a stale record
    /// undid such a write (a switch on whose replica a pass then undeployed as switched off): a
    /// listed record that differs from the route cache is read again before it is cached, and
    /// every action is decided again on the record as it is just before it is taken.
    pub(super) async fn reconcile_record(
        &self,
        listed: &LambdaRecord,
        deployed: &HashMap<LambdaId, u64>,
    ) {
        let id = listed.lambda_id;
        let current = self
            .cached_route(&id)
            .is_some_and(|r| r == Route::of(listed));
        let mut rec = if current {
            listed.clone()
        } else {
            let Some(stored) = self.stored_record(&id).await else {
                return;
            };
            stored
        };
        self.cache(&rec);
        if self.has_job(&id) || Self::reconcile_action(&rec, deployed).is_none() {
            return;
        }
        if current {
            // As listed, a moment ago: read once more before acting on it.
            let Some(stored) = self.stored_record(&id).await else {
                return;
            };
            if self.has_job(&id) {
                return;
            }
            rec = stored;
        }
        match Self::reconcile_action(&rec, deployed) {
            Some(Reconcile::Build) => {
                if rec.image_status == ImageStatus::InProgress {
                    // Interrupted by a restart: queue it again.
                    let _ = self
                        .update_record(&id, rec.lambda_version, |r| {
                            set_image(r, ImageStatus::Pending)
                        })
                        .await;
                }
                self.spawn_job(id, rec.lambda_version);
            }
            Some(Reconcile::Deploy) => self.spawn_job(id, rec.lambda_version),
            Some(Reconcile::Undeploy) => {
                if let Err(e) = self.inner.orchestrator.undeploy(&id).await {
                    tracing::warn!(lambda = %id, error = %e, "undeploying a switched-off lambda failed");
                }
            }
            None => {}
        }
    }

    /// What a reconcile pass does for `rec`, with `deployed` what the orchestrator runs.
    pub(super) fn reconcile_action(
        rec: &LambdaRecord,
        deployed: &HashMap<LambdaId, u64>,
    ) -> Option<Reconcile> {
        let is_deployed = deployed.contains_key(&rec.lambda_id);
        match (rec.image_status, rec.alive) {
            (ImageStatus::Pending | ImageStatus::InProgress, _) => Some(Reconcile::Build),
            // A lambda that failed to start stays terminated until it is updated or switched off
            // and on: retrying a crash at every pass would only spin.
            (ImageStatus::Completed, true)
                if !is_deployed && rec.status != LambdaStatus::Terminated =>
            {
                Some(Reconcile::Deploy)
            }
            (_, false) if is_deployed => Some(Reconcile::Undeploy),
            _ => None,
        }
    }

    /// The stored record of `id` as it is now (`None`: gone, or unreadable this pass).
    pub(super) async fn stored_record(&self, id: &LambdaId) -> Option<LambdaRecord> {
        match self.inner.repo.get(id).await {
            Ok(v) => Some(v.value),
            Err(e) => {
                if !matches!(e, lambda_storage::Error::NotFound { .. }) {
                    tracing::warn!(lambda = %id, error = %e, "reading a record to reconcile failed");
                }
                None
            }
        }
    }

    /// A build or deploy job of `id` is under way.
    pub(super) fn has_job(&self, id: &LambdaId) -> bool {
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }
}
