//! What a lambda tells: its build log (live while it builds), its runtime logs, its docs.

use super::*;

impl Platform {
    pub(super) fn live_log(&self, id: &LambdaId, version: u64) -> Option<Arc<LiveLog>> {
        self.inner
            .live_logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(*id, version))
            .cloned()
    }

    /// The build log of the current version (so far, when building).
    pub async fn build_log(&self, id: &LambdaId, account: Option<uuid::Uuid>) -> Result<String> {
        let rec = self.get(id, account).await?;
        if let Some(live) = self.live_log(id, rec.lambda_version) {
            return Ok(live.text());
        }
        match self
            .inner
            .artifacts
            .get_build_log(id, rec.lambda_version)
            .await
        {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(lambda_storage::Error::NotFound { .. }) => Ok(String::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The build log, then its new lines as they are produced, until the build ends.
    pub async fn follow_build_log(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<BoxStream<'static, String>> {
        let rec = self.get(id, account).await?;
        let Some(live) = self.live_log(id, rec.lambda_version) else {
            let text = self.build_log(id, account).await?;
            return Ok(Box::pin(futures::stream::iter(
                text.lines().map(|l| format!("{l}\n")).collect::<Vec<_>>(),
            )));
        };
        let stream = futures::stream::unfold((live, 0usize), |(live, idx)| async move {
            let line = loop {
                let notified = live.changed.notified();
                tokio::pin!(notified);
                // Register before looking, so a line pushed in between is not missed.
                notified.as_mut().enable();
                let next = live
                    .lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(idx)
                    .cloned();
                match next {
                    Some(line) => break line,
                    None if live.done.load(Ordering::SeqCst) => return None,
                    None => notified.await,
                }
            };
            Some((format!("{line}\n"), (live, idx + 1)))
        });
        Ok(Box::pin(stream))
    }

    /// Runtime logs per replica.
    pub async fn runtime_logs(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        tail: Option<usize>,
    ) -> Result<BTreeMap<String, String>> {
        self.get(id, account).await?;
        match self.inner.orchestrator.logs(id, tail).await {
            Ok(l) => Ok(l),
            Err(lambda_deploy::Error::NotFound(_)) => Ok(BTreeMap::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The archive's docs; `None` when it has none.
    pub async fn docs(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
        kind: DocKind,
    ) -> Result<Option<Bytes>> {
        let rec = self.get(id, account).await?;
        if !rec.has_docs {
            return Ok(None);
        }
        Ok(Some(
            self.inner
                .artifacts
                .get_doc(id, rec.lambda_version, kind)
                .await?,
        ))
    }
}
