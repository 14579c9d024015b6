//! The version calls of the client: the list of versions and rollback.

use super::{Client, Result};
use lambda_core::LambdaId;
use lambda_core::api::{RollbackRequest, RollbackResponse, VersionList};

impl Client {
    /// `GET /1/lambdas/{id}/versions`
    pub async fn versions(&self, id: &LambdaId) -> Result<VersionList> {
        self.json(self.req(reqwest::Method::GET, &format!("/1/lambdas/{id}/versions")))
            .await
    }

    /// `POST /1/lambdas/{id}/rollback`: to `version`, or (None) to the previous one.
    pub async fn rollback(&self, id: &LambdaId, version: Option<u64>) -> Result<RollbackResponse> {
        self.json(
            self.req(reqwest::Method::POST, &format!("/1/lambdas/{id}/rollback"))
                .json(&RollbackRequest { version }),
        )
        .await
    }
}
