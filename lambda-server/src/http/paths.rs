//! Every path the server routes, written once. The route table ([`super::openapi::ROUTES`]),
//! the router, auth, audit, the console and the proxy's pre-routing all use these names; no
//! other file of the crate spells a route's path (`tests/architecture.rs` checks it).

/// `GET /version`.
pub const VERSION: &str = "/version";
/// `GET /healthcheck`.
pub const HEALTHCHECK: &str = "/healthcheck";
/// `GET /metrics` (the server's own).
pub const METRICS: &str = "/metrics";
/// `GET /docs/spec` (the OpenAPI document).
pub const SPEC: &str = "/docs/spec";

/// `/1/lambdas`: list, create.
pub const LAMBDAS: &str = "/1/lambdas";
/// `/1/lambdas/{lambda_id}`: get, update, switch, delete.
pub const LAMBDA: &str = "/1/lambdas/{lambda_id}";
/// `GET /1/lambdas/{lambda_id}/status`.
pub const STATUS: &str = "/1/lambdas/{lambda_id}/status";
/// `GET /1/lambdas/{lambda_id}/image/status`.
pub const IMAGE_STATUS: &str = "/1/lambdas/{lambda_id}/image/status";
/// `GET /1/lambdas/{lambda_id}/image/logs`.
pub const IMAGE_LOGS: &str = "/1/lambdas/{lambda_id}/image/logs";
/// `GET /1/lambdas/{lambda_id}/logs`.
pub const LOGS: &str = "/1/lambdas/{lambda_id}/logs";
/// `GET /1/lambdas/{lambda_id}/docs`.
pub const DOCS: &str = "/1/lambdas/{lambda_id}/docs";
/// `GET /1/lambdas/{lambda_id}/versions`.
pub const VERSIONS: &str = "/1/lambdas/{lambda_id}/versions";
/// `POST /1/lambdas/{lambda_id}/rollback`.
pub const ROLLBACK: &str = "/1/lambdas/{lambda_id}/rollback";
/// `GET /1/lambdas/{lambda_id}/export`.
pub const EXPORT: &str = "/1/lambdas/{lambda_id}/export";
/// `GET /1/lambdas/{lambda_id}/image`.
pub const IMAGE: &str = "/1/lambdas/{lambda_id}/image";
/// `POST /1/lambdas/import`.
pub const IMPORT: &str = "/1/lambdas/import";
/// `PUT /1/lambdas/{lambda_id}/config`.
pub const CONFIG: &str = "/1/lambdas/{lambda_id}/config";
/// `GET /1/lambdas/{lambda_id}/metrics` (its replicas', merged).
pub const LAMBDA_METRICS: &str = "/1/lambdas/{lambda_id}/metrics";
/// `GET /1/lambdas/{lambda_id}/traffic`.
pub const TRAFFIC: &str = "/1/lambdas/{lambda_id}/traffic";
/// The proxy to a lambda's `/` (the axum template).
pub const PROXY: &str = "/1/lambdas/{lambda_id}/proxy";
/// The proxy to any path of a lambda (the axum template).
pub const PROXY_PATH: &str = "/1/lambdas/{lambda_id}/proxy/{*path}";
/// The proxy in the OpenAPI document (OpenAPI's template for [`PROXY_PATH`]).
pub const PROXY_DOC: &str = "/1/lambdas/{lambda_id}/proxy/{path}";

/// `/1/tasks`: list, create.
pub const TASKS: &str = "/1/tasks";
/// `/1/tasks/{task_id}`: get, cancel, delete.
pub const TASK: &str = "/1/tasks/{task_id}";
/// `GET /1/tasks/{task_id}/result`.
pub const TASK_RESULT: &str = "/1/tasks/{task_id}/result";
/// `GET /1/tasks/{task_id}/errors`.
pub const TASK_ERRORS: &str = "/1/tasks/{task_id}/errors";

/// `POST /1/gc`.
pub const GC: &str = "/1/gc";
/// `/1/tokens`: list, create.
pub const TOKENS: &str = "/1/tokens";
/// `DELETE /1/tokens/{token_id}`.
pub const TOKEN: &str = "/1/tokens/{token_id}";
/// `GET /1/audit`.
pub const AUDIT: &str = "/1/audit";

/// The console's home page.
pub const CONSOLE: &str = "/";
/// The console's page of a lambda.
pub const CONSOLE_LAMBDA: &str = "/lambdas/{lambda_id}";
/// The console's invoke page of a lambda.
pub const CONSOLE_INVOKE: &str = "/lambdas/{lambda_id}/invoke";
/// The console's create page.
pub const CONSOLE_CREATE: &str = "/create";
/// The console's script.
pub const CONSOLE_SCRIPT: &str = "/console/app.js";
/// The console's style sheet.
pub const CONSOLE_STYLE: &str = "/console/app.css";
