//! API tokens: their records and the hashes of their secrets (never a secret).
//!
//! | key | holds |
//! |---|---|
//! | `P/tokens/<token id>.json` | `{"record": {...}, "hash": "<sha256 of the secret, hex>"}` |
//! | `P/token-names/<name>` | the name claim (holds the token id): names are unique |
//!
//! A revoked token's object is deleted; a server that cached it notices at its next read.

use crate::backend::{CasMode, Inner};
use crate::error::{Error, Result};
use futures::stream::{StreamExt, TryStreamExt};
use lambda_core::auth::TokenRecord;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Tokens read at once by [`TokenStore::list`].
const READ_CONCURRENCY: usize = 16;

/// A stored token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredToken {
    /// What it is.
    pub record: TokenRecord,
    /// The sha256 of its secret, lowercase hex.
    pub hash: String,
}

/// The API tokens (see the module docs for keys).
#[derive(Debug, Clone)]
pub struct TokenStore {
    pub(crate) inner: Arc<Inner>,
}

impl TokenStore {
    fn key(&self, id: &uuid::Uuid) -> Path {
        self.inner.key(&["tokens", &format!("{id}.json")])
    }

    fn name_key(&self, name: &str) -> Path {
        self.inner.key(&["token-names", name])
    }

    /// Stores a new token; a conflict when its name is taken by a token that exists.
    pub async fn create(&self, token: &StoredToken) -> Result<()> {
        let _guard = self.inner.serial_guard().await;
        let name = &token.record.name;
        let claim = self.name_key(name);
        let id = token.record.token_id;
        let taken = || Error::Conflict {
            what: format!("a token named {name:?} exists"),
        };
        let exists = self.inner.cas == CasMode::Serialized && self.inner.exists(&claim).await?;
        if exists || !self.inner.write(&claim, &id, PutMode::Create).await? {
            // A claim left by a revoke that stopped half-way names a token that is gone: take it.
            let Some((owner, version)) = self.inner.read::<uuid::Uuid>(&claim).await? else {
                return Err(taken());
            };
            if self.inner.exists(&self.key(&owner)).await?
                || !self
                    .inner
                    .write(&claim, &id, PutMode::Update(version))
                    .await?
            {
                return Err(taken());
            }
        }
        self.inner
            .write(&self.key(&id), token, PutMode::Create)
            .await?;
        Ok(())
    }

    /// A token by id.
    pub async fn get(&self, id: &uuid::Uuid) -> Result<Option<StoredToken>> {
        Ok(self.inner.read(&self.key(id)).await?.map(|(t, _)| t))
    }

    /// Every token, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenRecord>> {
        let metas = self.inner.list_all(&self.inner.key(&["tokens"])).await?;
        let inner = &self.inner;
        let mut out: Vec<TokenRecord> = futures::stream::iter(metas)
            .map(|m| async move {
                Ok::<_, Error>(
                    inner
                        .read::<StoredToken>(&m.location)
                        .await?
                        .map(|(t, _)| t.record),
                )
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_filter_map(|t| async move { Ok(t) })
            .try_collect()
            .await?;
        out.sort_by_key(|t| (t.create_time, t.token_id));
        Ok(out)
    }

    /// Deletes a token and then its name claim; false when there was none.
    pub async fn delete(&self, id: &uuid::Uuid) -> Result<bool> {
        let _guard = self.inner.serial_guard().await;
        let Some(token) = self.get(id).await? else {
            return Ok(false);
        };
        let key = self.key(id);
        self.inner
            .store
            .delete(&key)
            .await
            .map_err(|e| Error::backend(&key, e))?;
        let claim = self.name_key(&token.record.name);
        if let Some((owner, _)) = self.inner.read::<uuid::Uuid>(&claim).await?
            && owner == *id
        {
            let _ = self.inner.store.delete(&claim).await;
        }
        Ok(true)
    }
}
