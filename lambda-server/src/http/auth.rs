//! Who is calling, and may they: API tokens (`[auth] mode = "token"`), checked once per request
//! at the edge (the API's middleware, the proxy's front), before any handler runs.
//!
//! A token is `llt_<id>_<secret>` ([`lambda_core::auth`]); the store keeps the sha256 of the
//! secret. Tokens are cached in memory for at most [`CACHE_TTL`] after they were read, so a
//! revocation (the token's object deleted, by this or another server on the store) reaches every
//! server within that time; the revoking server forgets its copy at once. Secrets are compared
//! in constant time. The bootstrap admin token (`LUNA_LAMBDA_ADMIN_TOKEN` or
//! `[auth] admin_token_file`) is checked against its hash, held in memory only.

use crate::http::error::ApiError;
use crate::service::error::Error;

type Result<T, E = ApiError> = std::result::Result<T, E>;
use axum::http::{HeaderMap, Method, header};
use lambda_core::api::{ACCOUNT_ID_HEADER, ErrorCode};
use lambda_core::auth::{
    CreateTokenRequest, CreatedToken, SECRET_HEX_LEN, TokenRecord, TokenScope, format_token,
    parse_token, secret_hash,
};
use lambda_storage::{StoredToken, TokenStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long a token read from the store is trusted before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// Tokens cached at most (the cache starts over beyond it: unknown ids are cached too).
const CACHE_MAX: usize = 10_000;
/// Shortest bootstrap admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// The `[auth]` settings the server runs with.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Tokens required (`mode = "token"`).
    pub enabled: bool,
    /// The bootstrap admin token, when given.
    pub admin_token: Option<String>,
    /// Management API requests per second per token (0: no limit).
    pub rate_per_second: u32,
    /// Said at start and in `/healthcheck` when the server is open off loopback.
    pub open_warning: Option<String>,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The token's id (none for the bootstrap admin token).
    pub token_id: Option<uuid::Uuid>,
    /// The token's name (for logs and the audit log).
    pub name: String,
    /// Its account; `None` for an admin token.
    pub account: Option<uuid::Uuid>,
    /// Every account, and the admin routes.
    pub admin: bool,
    /// What it may do.
    pub scope: TokenScope,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (`/healthcheck`, `/version`).
    Public,
    /// An admin token (tokens, gc, the audit log, the server's metrics).
    Admin,
    /// A lambda's proxy (`invoke` or `write`).
    Proxy,
    /// Everything else (`read` for GET/HEAD, else `write`).
    Api,
}

impl Access {
    /// What a route template needs, as the route table says (`None`: no route matched, which
    /// needs a token too; so does a path the table does not have).
    pub fn of(route: Option<&str>) -> Self {
        let Some(route) = route else {
            return Self::Api;
        };
        if crate::proxy::ROUTES.contains(&route) {
            return Self::Proxy;
        }
        crate::http::openapi::ROUTES
            .iter()
            .find(|r| r.path == route)
            .map_or(Self::Api, |r| r.access)
    }
}

#[derive(Debug)]
struct Cached {
    token: Option<Arc<StoredToken>>,
    read: Instant,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The token checker (one per server).
#[derive(Debug)]
pub struct Auth {
    settings: AuthSettings,
    admin_hash: Option<String>,
    store: TokenStore,
    cache: Mutex<HashMap<uuid::Uuid, Cached>>,
    /// Per token id (`None`: the bootstrap admin token).
    buckets: Mutex<HashMap<Option<uuid::Uuid>, Bucket>>,
}

fn unauthorized(detail: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(detail.into())
}

fn forbidden(detail: impl Into<String>) -> ApiError {
    Error::BadRequest(ErrorCode::Forbidden, detail.into()).into()
}

impl Auth {
    /// A checker over the store's tokens.
    pub fn new(settings: AuthSettings, store: TokenStore) -> Arc<Self> {
        let admin_hash = settings.admin_token.as_deref().map(secret_hash);
        Arc::new(Self {
            settings,
            admin_hash,
            store,
            cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The warning of a server open off loopback.
    pub fn open_warning(&self) -> Option<&str> {
        self.settings.open_warning.as_deref()
    }

    /// Checks a request that needs `access`: its principal (`None` when auth is off or the
    /// route is public), or 401/403/429.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        method: &Method,
        access: Access,
    ) -> Result<Option<Arc<Principal>>> {
        if !self.settings.enabled || access == Access::Public {
            return Ok(None);
        }
        // Boxed: a token lookup (storage on a cache miss) would otherwise size every proxied
        // request's future, with authentication on or off.
        let who = Box::pin(self.authenticate(headers)).await?;
        let read_only = matches!(*method, Method::GET | Method::HEAD);
        if access == Access::Admin && !who.admin {
            return Err(forbidden(format!(
                "token {:?} is not an admin token; this route needs one",
                who.name
            )));
        }
        if !who.scope.allows(access == Access::Proxy, read_only) {
            let what = match access {
                Access::Proxy => "invoking a lambda",
                _ if read_only => "reading",
                _ => "changing anything",
            };
            return Err(forbidden(format!(
                "token {:?} has scope {:?}, which does not allow {what}",
                who.name,
                who.scope.as_str()
            )));
        }
        // A malformed header is the account extractor's 400; one naming another account is
        // refused here.
        if let Some(account) = who.account
            && let Some(named) = headers
                .get(&crate::http::api::names::ACCOUNT_ID)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
            && named != account
        {
            return Err(forbidden(format!(
                "token {:?} acts for account {account}; header {ACCOUNT_ID_HEADER} names another",
                who.name
            )));
        }
        if access != Access::Proxy {
            self.take_rate(&who)?;
        }
        Ok(Some(Arc::new(who)))
    }

    /// The token of `Authorization: Bearer`, checked.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal> {
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized("this server needs a token: Authorization: Bearer <token>")
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        if let Some(admin) = &self.admin_hash
            && bool::from(secret_hash(token).as_bytes().ct_eq(admin.as_bytes()))
        {
            return Ok(Principal {
                token_id: None,
                name: "admin (bootstrap)".into(),
                account: None,
                admin: true,
                scope: TokenScope::Write,
            });
        }
        let unknown = || unauthorized("unknown or revoked token");
        let (id, secret) = parse_token(token).ok_or_else(unknown)?;
        let stored = self.lookup(&id).await?.ok_or_else(unknown)?;
        if !bool::from(secret_hash(secret).as_bytes().ct_eq(stored.hash.as_bytes())) {
            return Err(unknown());
        }
        let r = &stored.record;
        if r.expired(time::OffsetDateTime::now_utc()) {
            return Err(unauthorized(format!("token {:?} has expired", r.name)));
        }
        Ok(Principal {
            token_id: Some(r.token_id),
            name: r.name.clone(),
            account: r.account_id,
            admin: r.admin,
            scope: r.scope,
        })
    }

    /// A token by id: from the cache when read less than [`CACHE_TTL`] ago, else the store.
    async fn lookup(&self, id: &uuid::Uuid) -> Result<Option<Arc<StoredToken>>> {
        if let Some(c) = self.cache.lock().expect("token cache").get(id)
            && c.read.elapsed() < CACHE_TTL
        {
            return Ok(c.token.clone());
        }
        let token = self.store.get(id).await?.map(Arc::new);
        let mut cache = self.cache.lock().expect("token cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            *id,
            Cached {
                token: token.clone(),
                read: Instant::now(),
            },
        );
        Ok(token)
    }

    /// One request of the management API from `who`, or 429 with the seconds to wait.
    fn take_rate(&self, who: &Principal) -> Result<()> {
        let rate = f64::from(self.settings.rate_per_second);
        if rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate buckets");
        if buckets.len() >= CACHE_MAX {
            buckets.clear();
        }
        let b = buckets.entry(who.token_id).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
        Err(ApiError::TooManyRequests {
            detail: format!(
                "token {:?} made more than {} requests per second ([auth] rate_per_second)",
                who.name, self.settings.rate_per_second
            ),
            retry_after_secs: wait,
        })
    }

    /// Makes a token: its secret (shown once) and its stored record.
    pub async fn create(&self, req: CreateTokenRequest) -> crate::service::Result<CreatedToken> {
        req.check()
            .map_err(|e| Error::BadRequest(ErrorCode::BadJson, e))?;
        let mut secret = [0u8; SECRET_HEX_LEN / 2];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::Internal(format!("no randomness for a token: {e}")))?;
        let secret = lambda_core::hex(&secret);
        let now = time::OffsetDateTime::now_utc();
        let record = TokenRecord {
            token_id: uuid::Uuid::new_v4(),
            name: req.name,
            account_id: req.account_id,
            admin: req.admin,
            scope: req.scope,
            create_time: now,
            expire_time: req.expires_in_secs.map(|s| now + Duration::from_secs(s)),
        };
        let stored = StoredToken {
            record: record.clone(),
            hash: secret_hash(&secret),
        };
        self.store.create(&stored).await.map_err(|e| match e {
            lambda_storage::Error::Conflict { what } => {
                Error::BadRequest(ErrorCode::TokenNameConflict, what)
            }
            e => e.into(),
        })?;
        Ok(CreatedToken {
            token: format_token(&record.token_id, &secret),
            record,
        })
    }

    /// Every token (no secrets).
    pub async fn list(&self) -> crate::service::Result<Vec<TokenRecord>> {
        Ok(self.store.list().await?)
    }

    /// Revokes a token: gone from the store, and from this server's cache at once.
    pub async fn revoke(&self, id: &uuid::Uuid) -> crate::service::Result<()> {
        let found = self.store.delete(id).await?;
        self.cache.lock().expect("token cache").remove(id);
        if found {
            Ok(())
        } else {
            Err(Error::BadRequest(
                ErrorCode::TokenNotFound,
                format!("token {id} not found"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_core::auth::TokenScope;

    fn settings() -> AuthSettings {
        AuthSettings {
            enabled: true,
            admin_token: Some("a-bootstrap-admin-token-of-32-chars!".into()),
            rate_per_second: 0,
            open_warning: None,
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    fn memory() -> lambda_storage::Storage {
        lambda_storage::open(&lambda_storage::StorageConfig::new("memory://")).unwrap()
    }

    /// A token of a new account, made through `auth`.
    async fn account_token(auth: &Auth, name: &str, scope: TokenScope) -> CreatedToken {
        auth.create(CreateTokenRequest {
            name: name.into(),
            account_id: Some(uuid::Uuid::new_v4()),
            admin: false,
            scope,
            expires_in_secs: None,
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_revocation_on_one_server_reaches_another_within_the_cache_time() {
        let storage = memory();
        let (one, two) = (
            Auth::new(settings(), storage.tokens()),
            Auth::new(settings(), storage.tokens()),
        );
        let made = account_token(&one, "shared", TokenScope::Read).await;
        let h = bearer(&made.token);
        let check = |a: &Arc<Auth>| {
            let (a, h) = (a.clone(), h.clone());
            async move { a.check(&h, &Method::GET, Access::Api).await }
        };
        assert!(
            check(&two).await.unwrap().is_some(),
            "cached by the other server"
        );
        let revoked = Instant::now();
        one.revoke(&made.record.token_id).await.unwrap();
        assert!(matches!(check(&one).await, Err(ApiError::Unauthorized(_))));
        while check(&two).await.is_ok() {
            assert!(
                revoked.elapsed() < CACHE_TTL * 2,
                "still taken after {:?}",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(revoked.elapsed() <= CACHE_TTL + Duration::from_millis(200));
    }

    #[tokio::test]
    async fn the_bootstrap_token_is_admin_and_others_are_compared_whole() {
        let auth = Auth::new(settings(), memory().tokens());
        let admin = auth
            .check(
                &bearer("a-bootstrap-admin-token-of-32-chars!"),
                &Method::POST,
                Access::Admin,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(admin.admin && admin.account.is_none());
        let made = account_token(&auth, "t", TokenScope::Write).await;
        // The same id with another secret of the right form is unknown.
        let mut forged = made.token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        let e = auth
            .check(&bearer(&forged), &Method::GET, Access::Api)
            .await;
        assert!(matches!(e, Err(ApiError::Unauthorized(_))), "{e:?}");
        let scheme = auth
            .check(
                &bearer(&made.token.replace("llt_", "")),
                &Method::GET,
                Access::Api,
            )
            .await;
        assert!(matches!(scheme, Err(ApiError::Unauthorized(_))));
        let ok = auth
            .check(&bearer(&made.token), &Method::PUT, Access::Api)
            .await;
        assert!(ok.unwrap().is_some());
    }
}
