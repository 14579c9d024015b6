//! The route table: every route the server serves, with what a caller needs ([`Access`]) and
//! what the OpenAPI document says of it. The router's paths are [`super::super::paths`]; auth
//! (`Access::of`), audit (which routes are writes, their operation ids), the metrics' route
//! labels and the document ([`crate::http::openapi`]) all read this table.

use crate::http::auth::Access;
use crate::http::paths;
use lambda_core::Parameters;
use lambda_core::api::*;
use lambda_core::auth::{CreateTokenRequest, CreatedToken, TokenList};
use schemars::generate::SchemaGenerator;
use serde_json::{Value, json};

const STRING: &str = r#"{"type": "string"}"#;
const FLAG: &str = r#"{"type": "integer", "enum": [0, 1]}"#;
const PAGE: &str = r#"{"type": "integer", "minimum": 1}"#;
const PAGE_SIZE: &str = r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#;

/// A body's `content` map, with its schemas added to the generator's components.
pub type Content = fn(&mut SchemaGenerator) -> Value;

/// One route of the API, for the OpenAPI document and its test.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method (`ANY` for the proxy).
    pub method: &'static str,
    /// Path template (one of [`paths`]).
    pub path: &'static str,
    /// What a caller needs (auth reads it from here).
    pub access: Access,
    /// Operation id.
    pub operation: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Success status.
    pub ok: u16,
    /// Query parameters: name and JSON Schema (as JSON text).
    pub query: &'static [(&'static str, &'static str)],
    /// The request body's `content`, when it takes one.
    pub request: Option<Content>,
    /// The success answer's `content` (`None`: no body).
    pub response: Option<Content>,
}

/// Every route the router serves.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "GET",
        path: paths::VERSION,
        access: Access::Public,
        operation: "getVersion",
        query: &[],
        request: None,
        response: Some(json::<VersionResponse>),
        summary: "API and release version",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::HEALTHCHECK,
        access: Access::Public,
        operation: "healthcheck",
        query: &[],
        request: None,
        response: Some(json::<crate::service::platform::Health>),
        summary: "200 when the store, the builder and the orchestrator answer",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::METRICS,
        access: Access::Admin,
        operation: "getMetrics",
        query: &[],
        request: None,
        response: Some(openmetrics),
        summary: "Prometheus text metrics",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::SPEC,
        access: Access::Api,
        operation: "getSpec",
        query: &[],
        request: None,
        response: Some(json_object),
        summary: "This OpenAPI document",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: paths::LAMBDAS,
        access: Access::Api,
        operation: "createLambda",
        query: &[],
        request: Some(create_body),
        response: Some(json::<CreateResponse>),
        summary: "Create a lambda (multipart: archive, credentials, parameters)",
        ok: 201,
    },
    RouteDoc {
        method: "GET",
        path: paths::LAMBDAS,
        access: Access::Api,
        operation: "listLambdas",
        query: &[
            ("page", PAGE),
            ("page_size", PAGE_SIZE),
            ("lambda_name", STRING),
            ("namespace", STRING),
        ],
        request: None,
        response: Some(json::<LambdaList>),
        summary: "List lambdas (page, page_size, lambda_name, namespace)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::LAMBDA,
        access: Access::Api,
        operation: "getLambda",
        query: &[],
        request: None,
        response: Some(json::<LambdaRecord>),
        summary: "A lambda's record",
        ok: 200,
    },
    RouteDoc {
        method: "PUT",
        path: paths::LAMBDA,
        access: Access::Api,
        operation: "updateLambda",
        query: &[],
        request: Some(update_body),
        response: Some(json::<UpdateResponse>),
        summary: "Update a lambda (multipart; archive optional): a new version",
        ok: 202,
    },
    RouteDoc {
        method: "PATCH",
        path: paths::LAMBDA,
        access: Access::Api,
        operation: "switchLambda",
        query: &[],
        request: Some(json::<SwitchRequest>),
        response: Some(json::<LambdaRecord>),
        summary: "Switch a lambda off or on ({\"alive\": bool})",
        ok: 200,
    },
    RouteDoc {
        method: "DELETE",
        path: paths::LAMBDA,
        access: Access::Api,
        operation: "deleteLambda",
        query: &[],
        request: None,
        response: None,
        summary: "Delete a lambda, its deployment, archives and artifacts",
        ok: 204,
    },
    RouteDoc {
        method: "GET",
        path: paths::STATUS,
        access: Access::Api,
        operation: "getLambdaStatus",
        query: &[],
        request: None,
        response: Some(json::<StatusResponse>),
        summary: "Deploy status with each replica",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::IMAGE_STATUS,
        access: Access::Api,
        operation: "getImageStatus",
        query: &[],
        request: None,
        response: Some(json::<ImageStatusResponse>),
        summary: "Build status",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::IMAGE_LOGS,
        access: Access::Api,
        operation: "getImageLogs",
        query: &[("follow", FLAG)],
        request: None,
        response: Some(text),
        summary: "Build log (text); follow=1 streams until the build ends",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::LOGS,
        access: Access::Api,
        operation: "getLambdaLogs",
        query: &[(
            "tail",
            r#"{"type": "integer", "minimum": 0, "maximum": 1000000}"#,
        )],
        request: None,
        response: Some(json::<LogsResponse>),
        summary: "Runtime logs per replica; tail=N",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::DOCS,
        access: Access::Api,
        operation: "getLambdaDocs",
        query: &[],
        request: None,
        response: Some(docs),
        summary: "The archive's docs by Accept (text/html or application/x-yaml)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::VERSIONS,
        access: Access::Api,
        operation: "listLambdaVersions",
        query: &[],
        request: None,
        response: Some(json::<VersionList>),
        summary: "Every stored version: archive, parameters, build outcome, whether its artifact is kept",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: paths::ROLLBACK,
        access: Access::Api,
        operation: "rollbackLambda",
        query: &[],
        request: Some(json::<RollbackRequest>),
        response: Some(json::<RollbackResponse>),
        summary: "A new version made of an earlier one ({\"version\": N}, default the previous): no build while its artifact is kept",
        ok: 202,
    },
    RouteDoc {
        method: "GET",
        path: paths::EXPORT,
        access: Access::Api,
        operation: "exportLambda",
        query: &[],
        request: None,
        response: Some(zip),
        summary: "The current version as a zip of archive.zip and manifest.json (410/42012 when the archive is gone)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::IMAGE,
        access: Access::Api,
        operation: "getLambdaImage",
        query: &[],
        request: None,
        response: Some(json::<ImageExport>),
        summary: "The image reference and digest of the running version (409/42016 when not running or not an image)",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: paths::IMPORT,
        access: Access::Api,
        operation: "importLambda",
        query: &[],
        request: Some(import_body),
        response: Some(json::<CreateResponse>),
        summary: "Make a lambda again from an export (multipart: export), validated like any upload",
        ok: 201,
    },
    RouteDoc {
        method: "PUT",
        path: paths::CONFIG,
        access: Access::Api,
        operation: "putLambdaConfig",
        query: &[],
        request: Some(json::<Option<Parameters>>),
        response: Some(json::<UpdateResponse>),
        summary: "Replace the user config and restart without a rebuild",
        ok: 202,
    },
    RouteDoc {
        method: "GET",
        path: paths::LAMBDA_METRICS,
        access: Access::Api,
        operation: "getLambdaMetrics",
        query: &[],
        request: None,
        response: Some(text),
        summary: "Every replica's Prometheus metrics merged, with a replica label",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::TRAFFIC,
        access: Access::Api,
        operation: "getLambdaTraffic",
        query: &[],
        request: None,
        response: Some(json::<crate::service::traffic::TrafficResponse>),
        summary: "The lambda's proxied requests, errors and latency p50/p99 per 10 s over the last 15 minutes, as the server measured them",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: paths::TASKS,
        access: Access::Api,
        operation: "createTask",
        query: &[],
        request: Some(json::<CreateTask>),
        response: Some(json::<TaskCreated>),
        summary: "Start a task of a tasks lambda ({\"description\", \"content\": {\"lambda_id\", ...}})",
        ok: 201,
    },
    RouteDoc {
        method: "GET",
        path: paths::TASKS,
        access: Access::Api,
        operation: "listTasks",
        query: &[
            ("lambda_id", r#"{"type": "string", "format": "uuid"}"#),
            (
                "status",
                r#"{"enum": ["pending", "in_progress", "done", "failed", "cancelled"]}"#,
            ),
            ("page", PAGE),
            ("page_size", PAGE_SIZE),
        ],
        request: None,
        response: Some(json::<TaskList>),
        summary: "List tasks (lambda_id, status, page, page_size)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::TASK,
        access: Access::Api,
        operation: "getTask",
        query: &[],
        request: None,
        response: Some(json::<TaskRecord>),
        summary: "A task's record with its subtask counts and times",
        ok: 200,
    },
    RouteDoc {
        method: "PATCH",
        path: paths::TASK,
        access: Access::Api,
        operation: "cancelTask",
        query: &[],
        request: Some(json::<CancelTask>),
        response: Some(json::<TaskRecord>),
        summary: "Cancel a task ({\"status\": \"cancelled\"})",
        ok: 200,
    },
    RouteDoc {
        method: "DELETE",
        path: paths::TASK,
        access: Access::Api,
        operation: "deleteTask",
        query: &[],
        request: None,
        response: None,
        summary: "Delete a task and its results",
        ok: 204,
    },
    RouteDoc {
        method: "GET",
        path: paths::TASK_RESULT,
        access: Access::Api,
        operation: "getTaskResult",
        query: &[],
        request: None,
        response: Some(json::<TaskResults>),
        summary: "Each subtask's result in order (null when it failed)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::TASK_ERRORS,
        access: Access::Api,
        operation: "getTaskErrors",
        query: &[],
        request: None,
        response: Some(json::<Vec<TaskError>>),
        summary: "The failed subtasks ([{\"subtask\", \"error\"}])",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: paths::GC,
        access: Access::Admin,
        operation: "collectGarbage",
        query: &[("dry_run", FLAG)],
        request: None,
        response: Some(json::<GcReport>),
        summary: "Admin: one garbage collection (?dry_run=1: what it would remove), with bytes",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: paths::TOKENS,
        access: Access::Admin,
        operation: "createToken",
        query: &[],
        request: Some(json::<CreateTokenRequest>),
        response: Some(json::<CreatedToken>),
        summary: "Admin: make an API token (its secret is shown this once)",
        ok: 201,
    },
    RouteDoc {
        method: "GET",
        path: paths::TOKENS,
        access: Access::Admin,
        operation: "listTokens",
        query: &[],
        request: None,
        response: Some(json::<TokenList>),
        summary: "Admin: every API token (no secrets)",
        ok: 200,
    },
    RouteDoc {
        method: "DELETE",
        path: paths::TOKEN,
        access: Access::Admin,
        operation: "revokeToken",
        query: &[],
        request: None,
        response: None,
        summary: "Admin: revoke an API token (every server stops taking it within a second)",
        ok: 204,
    },
    RouteDoc {
        method: "GET",
        path: paths::AUDIT,
        access: Access::Admin,
        operation: "getAudit",
        query: &[
            ("since", STRING),
            (
                "limit",
                r#"{"type": "integer", "minimum": 1, "maximum": 10000}"#,
            ),
        ],
        request: None,
        response: Some(json::<AuditLog>),
        summary: "Admin: the audit log of writes (?since=RFC 3339 or unix seconds, default an hour ago; ?limit=, default 1000)",
        ok: 200,
    },
    RouteDoc {
        method: "ANY",
        path: paths::PROXY_DOC,
        access: Access::Proxy,
        operation: "proxyLambda",
        query: &[],
        request: Some(anything),
        response: Some(anything),
        summary: "Forwarded to the lambda, streamed both ways",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::CONSOLE,
        access: Access::Public,
        operation: "getConsole",
        query: &[],
        request: None,
        response: Some(html),
        summary: "The web console (HTML; its pages are also served at /lambdas/{lambda_id}, /lambdas/{lambda_id}/invoke and /create)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::CONSOLE_LAMBDA,
        access: Access::Public,
        operation: "getConsoleLambda",
        query: &[],
        request: None,
        response: Some(html),
        summary: "The web console's page of a lambda (HTML)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::CONSOLE_INVOKE,
        access: Access::Public,
        operation: "getConsoleInvoke",
        query: &[],
        request: None,
        response: Some(html),
        summary: "The web console's invoke page of a lambda (HTML)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::CONSOLE_CREATE,
        access: Access::Public,
        operation: "getConsoleCreate",
        query: &[],
        request: None,
        response: Some(html),
        summary: "The web console's create page (HTML)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::CONSOLE_SCRIPT,
        access: Access::Public,
        operation: "getConsoleScript",
        query: &[],
        request: None,
        response: Some(javascript),
        summary: "The web console's script",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: paths::CONSOLE_STYLE,
        access: Access::Public,
        operation: "getConsoleStyle",
        query: &[],
        request: None,
        response: Some(css),
        summary: "The web console's style sheet",
        ok: 200,
    },
];

/// `PATCH /1/tasks/{id}`: the only change a task takes.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // described, not built: the handler reads its own copy
struct CancelTask {
    /// `cancelled`.
    status: TaskStatus,
}

fn json<T: schemars::JsonSchema>(g: &mut SchemaGenerator) -> Value {
    json!({"application/json": {"schema": g.subschema_for::<T>()}})
}

fn json_object(_: &mut SchemaGenerator) -> Value {
    json!({"application/json": {"schema": {"type": "object"}}})
}

fn text(_: &mut SchemaGenerator) -> Value {
    json!({"text/plain": {"schema": {"type": "string"}}})
}

fn openmetrics(_: &mut SchemaGenerator) -> Value {
    json!({"application/openmetrics-text": {"schema": {"type": "string"}}})
}

fn docs(_: &mut SchemaGenerator) -> Value {
    json!({
        "text/html": {"schema": {"type": "string"}},
        "application/x-yaml": {"schema": {"type": "string"}},
    })
}

fn html(_: &mut SchemaGenerator) -> Value {
    json!({"text/html": {"schema": {"type": "string"}}})
}

fn javascript(_: &mut SchemaGenerator) -> Value {
    json!({"text/javascript": {"schema": {"type": "string"}}})
}

fn css(_: &mut SchemaGenerator) -> Value {
    json!({"text/css": {"schema": {"type": "string"}}})
}

fn zip(_: &mut SchemaGenerator) -> Value {
    json!({"application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}}})
}

fn anything(_: &mut SchemaGenerator) -> Value {
    json!({"*/*": {"schema": {}}})
}

/// The multipart parts of a create or an update: the zip, and the JSON parts.
fn upload(g: &mut SchemaGenerator, required: &[&str]) -> Value {
    json!({"multipart/form-data": {
        "schema": {
            "type": "object",
            "required": required,
            "properties": {
                "archive": {"type": "string", "format": "binary", "description": "The lambda's zip"},
                "credentials": g.subschema_for::<Credentials>(),
                "parameters": g.subschema_for::<Parameters>(),
            },
        },
        "encoding": {
            "credentials": {"contentType": "application/json"},
            "parameters": {"contentType": "application/json"},
        },
    }})
}

fn create_body(g: &mut SchemaGenerator) -> Value {
    let mut content = upload(g, &["archive", "credentials"]);
    content["application/json"] = json!({"schema": g.subschema_for::<ImportImageRequest>()});
    content
}

fn update_body(g: &mut SchemaGenerator) -> Value {
    upload(g, &[])
}

fn import_body(_: &mut SchemaGenerator) -> Value {
    json!({"multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["archive"],
            "properties": {"archive": {"type": "string", "format": "binary", "description": "An export (GET /1/lambdas/{id}/export)"}},
        },
    }})
}
