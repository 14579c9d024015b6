//! The audit log of the API's writes (create, update, switch, config, delete, rollback, import,
//! gc, token create/revoke, task create/cancel/delete; refused ones too): each is logged at
//! once (tracing target `audit`) and stored in the object store, one object per hour, by one
//! writer task that appends whatever has queued up since its last append (a group commit: no
//! timer, one read and one write per batch). `GET /1/audit` waits for what is queued first.

use crate::http::api::ROUTES;
use crate::http::paths;
use crate::service::error::Result;
use lambda_core::LambdaId;
use lambda_core::api::{AuditEntry, ErrorCode};
use lambda_storage::AuditStore;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// What a create made, set on its answer for the log.
#[derive(Debug, Clone)]
pub enum Made {
    /// A lambda.
    Lambda(LambdaId),
    /// A task or a token (its id).
    Other(String),
}

enum Msg {
    Entry(AuditEntry),
    Flush(oneshot::Sender<()>),
}

/// The audit log of one server.
#[derive(Debug)]
pub struct Audit {
    store: AuditStore,
    queue: OnceLock<mpsc::UnboundedSender<Msg>>,
}

impl Audit {
    /// A log over the store's audit objects; its writer runs on the caller's runtime (the
    /// server's main one, which outlives the connections' threads).
    pub fn new(store: AuditStore) -> Arc<Self> {
        let audit = Arc::new(Self {
            store,
            queue: OnceLock::new(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            audit.queue();
        }
        audit
    }

    /// The writer's queue, started on first use (inside the server's runtime).
    fn queue(&self) -> &mpsc::UnboundedSender<Msg> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(self.store.clone(), rx));
            tx
        })
    }

    /// Logs an entry now and queues it for the store.
    pub fn record(&self, e: AuditEntry) {
        tracing::info!(
            target: "audit",
            action = %e.action,
            path = %e.path,
            token = e.token.as_deref().unwrap_or("-"),
            account = %e.account_id.map(|a| a.to_string()).unwrap_or_default(),
            request_id = %e.request_id,
            lambda = %e.lambda_id.map(|l| l.to_string()).unwrap_or_default(),
            status = e.status,
            error_code = e.error_code.unwrap_or(0),
            "audit"
        );
        let _ = self.queue().send(Msg::Entry(e));
    }

    /// Returns once everything recorded so far is stored (or its write has failed and been
    /// logged).
    pub async fn flushed(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue().send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Entries at or after `since`, oldest first, at most `limit`.
    pub async fn since(
        &self,
        since: time::OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        self.flushed().await;
        Ok(self.store.since(since, limit).await?)
    }
}

async fn writer(store: AuditStore, mut rx: mpsc::UnboundedReceiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let (mut batch, mut acks) = (Vec::new(), Vec::new());
        let mut take = |m| match m {
            Msg::Entry(e) => batch.push(e),
            Msg::Flush(ack) => acks.push(ack),
        };
        take(first);
        while let Ok(m) = rx.try_recv() {
            take(m);
        }
        if !batch.is_empty()
            && let Err(e) = store.append(&batch).await
        {
            tracing::error!(error = %e, entries = batch.len(), "storing audit entries failed (they are in this log)");
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Whether a request is one the audit log records: a write to a documented route (the proxy
/// is a lambda's own traffic, not a change to the platform).
pub(crate) fn audited(method: &axum::http::Method, route: Option<&str>) -> bool {
    use axum::http::Method;
    let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    write && route.is_some_and(|r| !crate::proxy::ROUTES.contains(&r))
}

/// What the request was, read before the handler takes it.
pub(crate) struct Pending {
    action: &'static str,
    method: &'static str,
    path: String,
    route: &'static str,
    token: Option<String>,
    account_id: Option<uuid::Uuid>,
    request_id: String,
}

impl Pending {
    /// `route` and `method` as the request context interned them.
    pub(crate) fn of(
        req: &axum::extract::Request,
        route: &'static str,
        method: &'static str,
        request_id: &axum::http::HeaderValue,
    ) -> Self {
        let who = req.extensions().get::<Arc<crate::http::auth::Principal>>();
        // A malformed header is the handler's 400; the entry then names no account.
        let account = crate::http::api::Account::resolve(req.headers(), who).ok();
        Self {
            action: ROUTES
                .iter()
                .find(|r| r.path == route && r.method == method)
                .map_or("unknown", |r| r.operation),
            method,
            path: req.uri().path().to_owned(),
            route,
            token: who.map(|p| p.name.clone()),
            account_id: account.and_then(|a| a.0),
            request_id: request_id.to_str().unwrap_or("").to_owned(),
        }
    }

    /// The entry, with the answer's outcome.
    pub(crate) fn finish(self, resp: &axum::response::Response) -> AuditEntry {
        let param = |name: &str| -> Option<String> {
            self.route
                .split('/')
                .zip(self.path.split('/'))
                .find(|(t, _)| *t == name)
                .map(|(_, v)| v.to_owned())
        };
        let made = resp.extensions().get::<Made>();
        let lambda_id = match made {
            Some(Made::Lambda(id)) => Some(*id),
            _ => param("{lambda_id}").and_then(|v| v.parse().ok()),
        };
        let target_id = match made {
            Some(Made::Other(id)) => Some(id.clone()),
            _ => param("{task_id}").or_else(|| param("{token_id}")),
        };
        AuditEntry {
            time: time::OffsetDateTime::now_utc(),
            action: self.action.to_owned(),
            method: self.method.to_owned(),
            path: self.path,
            token: self.token,
            account_id: self.account_id,
            request_id: self.request_id,
            lambda_id,
            target_id,
            status: resp.status().as_u16(),
            error_code: resp.extensions().get::<ErrorCode>().map(|c| c.code()),
        }
    }
}

/// Entries answered by `GET /1/audit` when no `limit` is given, and at most.
const DEFAULT_LIMIT: u64 = 1000;
const MAX_LIMIT: u64 = 10_000;

/// `GET /1/audit` (admin).
pub(crate) fn routes() -> axum::Router<crate::http::api::AppState> {
    axum::Router::new().route(paths::AUDIT, axum::routing::get(get_audit))
}

/// `GET /1/audit?since=&limit=`: `since` is RFC 3339 or unix seconds (default: an hour ago).
async fn get_audit(
    axum::extract::State(s): axum::extract::State<crate::http::api::AppState>,
    q: crate::http::api::QueryResult,
) -> Result<axum::Json<lambda_core::api::AuditLog>> {
    let q = crate::http::api::query(q)?;
    let since = match q.get("since") {
        None => time::OffsetDateTime::now_utc() - time::Duration::hours(1),
        Some(v) => parse_since(v).ok_or_else(|| {
            crate::service::error::Error::BadRequest(
                ErrorCode::BadQuery,
                format!(
                    "since={v:?} is not an RFC 3339 time (2026-12-01T10:00:00Z) or unix seconds"
                ),
            )
        })?,
    };
    let limit = crate::http::api::query_u64(&q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?;
    let entries = s.audit.since(since, limit as usize).await?;
    Ok(axum::Json(lambda_core::api::AuditLog { entries }))
}

fn parse_since(v: &str) -> Option<time::OffsetDateTime> {
    if let Ok(secs) = v.parse::<i64>() {
        return time::OffsetDateTime::from_unix_timestamp(secs).ok();
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
}
