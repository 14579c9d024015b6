//! The version calls of the client: the list of versions, rollback, export and import, and the
//! garbage collector.

use super::{Client, ClientError, Result};
use bytes::Bytes;
use lambda_core::LambdaId;
use lambda_core::api::{CreateResponse, GcReport, RollbackRequest, RollbackResponse, VersionList};

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

    /// `GET /1/lambdas/{id}/export`: the zip of the archive and its manifest.
    pub async fn export(&self, id: &LambdaId) -> Result<Bytes> {
        let r = self
            .send(self.req(reqwest::Method::GET, &format!("/1/lambdas/{id}/export")))
            .await?;
        let url = r.url().to_string();
        r.bytes().await.map_err(|e| ClientError::Protocol {
            url,
            detail: e.to_string(),
        })
    }

    /// `POST /1/lambdas/import`: a lambda made again from an export, for this client's account
    /// (or its token's, or [`super::DEFAULT_ACCOUNT`]).
    pub async fn import(&self, export: Vec<u8>) -> Result<CreateResponse> {
        let part = reqwest::multipart::Part::bytes(export).file_name("export.zip");
        let rb = self
            .req(reqwest::Method::POST, "/1/lambdas/import")
            .multipart(reqwest::multipart::Form::new().part("archive", part));
        self.json(self.for_creating(rb)).await
    }

    /// `POST /1/gc[?dry_run=1]`
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport> {
        let path = if dry_run { "/1/gc?dry_run=1" } else { "/1/gc" };
        self.json(self.req(reqwest::Method::POST, path)).await
    }
}
