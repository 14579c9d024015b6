//! The token calls of the client (admin): make, list and revoke API tokens.

use super::{Client, Result};
use lambda_core::auth::{CreateTokenRequest, CreatedToken, TokenList, TokenRecord};

impl Client {
    /// `POST /1/tokens`: the new token (its secret is in the answer only).
    pub async fn create_token(&self, req: &CreateTokenRequest) -> Result<CreatedToken> {
        self.json(self.req(reqwest::Method::POST, "/1/tokens").json(req))
            .await
    }

    /// `GET /1/tokens`
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let list: TokenList = self
            .json(self.req(reqwest::Method::GET, "/1/tokens"))
            .await?;
        Ok(list.tokens)
    }

    /// `DELETE /1/tokens/{id}`
    pub async fn revoke_token(&self, id: &uuid::Uuid) -> Result<()> {
        self.send(self.req(reqwest::Method::DELETE, &format!("/1/tokens/{id}")))
            .await?;
        Ok(())
    }
}
