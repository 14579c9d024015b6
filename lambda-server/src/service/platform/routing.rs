//! Routing for the proxy: the in-memory route of each lambda and its replicas' endpoints.

use super::*;

impl Platform {
    pub(super) fn cache(&self, rec: &LambdaRecord) {
        self.inner
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.lambda_id, Route::of(rec));
    }

    /// Where the proxy sends a request, or why it cannot.
    pub async fn route(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<(Route, String)> {
        let route = self.route_entry(id, account).await?;
        Ok((route, self.endpoint(id)?))
    }

    /// Where the next request for a lambda goes, or that none of its replicas runs.
    pub(super) fn endpoint(&self, id: &LambdaId) -> Result<String> {
        self.inner
            .orchestrator
            .endpoint(id)
            .ok_or(Error::NotRunning(*id))
    }

    /// What the proxy knows of a lambda the caller may reach and that is switched on.
    pub(super) async fn route_entry(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<Route> {
        let route = match self.cached_route(id) {
            Some(r) => r,
            // Boxed: the storage read of a cache miss would otherwise size every proxied
            // request's future.
            None => Route::of(&Box::pin(self.get(id, None)).await?),
        };
        if account.is_some_and(|a| a != route.account_id) {
            return Err(Error::NotFound(*id));
        }
        if !route.alive {
            return Err(Error::SwitchedOff(*id));
        }
        Ok(route)
    }

    pub(super) fn cached_route(&self, id: &LambdaId) -> Option<Route> {
        self.inner
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Each replica of a running lambda with its own address, for `GET /1/lambdas/{id}/metrics`;
    /// the same checks as the proxy (account, switched off, not running).
    pub async fn replica_endpoints(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<Vec<(String, String)>> {
        self.route(id, account).await?;
        let replicas = self.inner.orchestrator.replica_endpoints(id);
        if replicas.is_empty() {
            return Err(Error::NotRunning(*id));
        }
        Ok(replicas)
    }
}
