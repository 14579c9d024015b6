//! The OpenAPI 3.1 document of the API (`GET /docs/spec`): every route of [`ROUTES`] with its
//! parameters, request body and answer, the schemas generated from the wire types themselves
//! (`schemars`, with serde's names, defaults and optional fields), and the error body.

use lambda_core::Parameters;
use lambda_core::api::*;
use lambda_core::auth::{CreateTokenRequest, CreatedToken, TokenList};
use schemars::generate::{SchemaGenerator, SchemaSettings};
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
    /// Path template.
    pub path: &'static str,
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
        path: "/version",
        operation: "getVersion",
        query: &[],
        request: None,
        response: Some(json::<VersionResponse>),
        summary: "API and release version",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/healthcheck",
        operation: "healthcheck",
        query: &[],
        request: None,
        response: Some(json::<crate::service::platform::Health>),
        summary: "200 when the store, the builder and the orchestrator answer",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/metrics",
        operation: "getMetrics",
        query: &[],
        request: None,
        response: Some(openmetrics),
        summary: "Prometheus text metrics",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/docs/spec",
        operation: "getSpec",
        query: &[],
        request: None,
        response: Some(json_object),
        summary: "This OpenAPI document",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: "/1/lambdas",
        operation: "createLambda",
        query: &[],
        request: Some(create_body),
        response: Some(json::<CreateResponse>),
        summary: "Create a lambda (multipart: archive, credentials, parameters)",
        ok: 201,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas",
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
        path: "/1/lambdas/{lambda_id}",
        operation: "getLambda",
        query: &[],
        request: None,
        response: Some(json::<LambdaRecord>),
        summary: "A lambda's record",
        ok: 200,
    },
    RouteDoc {
        method: "PUT",
        path: "/1/lambdas/{lambda_id}",
        operation: "updateLambda",
        query: &[],
        request: Some(update_body),
        response: Some(json::<UpdateResponse>),
        summary: "Update a lambda (multipart; archive optional): a new version",
        ok: 202,
    },
    RouteDoc {
        method: "PATCH",
        path: "/1/lambdas/{lambda_id}",
        operation: "switchLambda",
        query: &[],
        request: Some(json::<SwitchRequest>),
        response: Some(json::<LambdaRecord>),
        summary: "Switch a lambda off or on ({\"alive\": bool})",
        ok: 200,
    },
    RouteDoc {
        method: "DELETE",
        path: "/1/lambdas/{lambda_id}",
        operation: "deleteLambda",
        query: &[],
        request: None,
        response: None,
        summary: "Delete a lambda, its deployment, archives and artifacts",
        ok: 204,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/status",
        operation: "getLambdaStatus",
        query: &[],
        request: None,
        response: Some(json::<StatusResponse>),
        summary: "Deploy status with each replica",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/image/status",
        operation: "getImageStatus",
        query: &[],
        request: None,
        response: Some(json::<ImageStatusResponse>),
        summary: "Build status",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/image/logs",
        operation: "getImageLogs",
        query: &[("follow", FLAG)],
        request: None,
        response: Some(text),
        summary: "Build log (text); follow=1 streams until the build ends",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/logs",
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
        path: "/1/lambdas/{lambda_id}/docs",
        operation: "getLambdaDocs",
        query: &[],
        request: None,
        response: Some(docs),
        summary: "The archive's docs by Accept (text/html or application/x-yaml)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/versions",
        operation: "listLambdaVersions",
        query: &[],
        request: None,
        response: Some(json::<VersionList>),
        summary: "Every stored version: archive, parameters, build outcome, whether its artifact is kept",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: "/1/lambdas/{lambda_id}/rollback",
        operation: "rollbackLambda",
        query: &[],
        request: Some(json::<RollbackRequest>),
        response: Some(json::<RollbackResponse>),
        summary: "A new version made of an earlier one ({\"version\": N}, default the previous): no build while its artifact is kept",
        ok: 202,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/export",
        operation: "exportLambda",
        query: &[],
        request: None,
        response: Some(zip),
        summary: "The current version as a zip of archive.zip and manifest.json (410/42012 when the archive is gone)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/image",
        operation: "getLambdaImage",
        query: &[],
        request: None,
        response: Some(json::<ImageExport>),
        summary: "The image reference and digest of the running version (409/42016 when not running or not an image)",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: "/1/lambdas/import",
        operation: "importLambda",
        query: &[],
        request: Some(import_body),
        response: Some(json::<CreateResponse>),
        summary: "Make a lambda again from an export (multipart: export), validated like any upload",
        ok: 201,
    },
    RouteDoc {
        method: "PUT",
        path: "/1/lambdas/{lambda_id}/config",
        operation: "putLambdaConfig",
        query: &[],
        request: Some(json::<Option<Parameters>>),
        response: Some(json::<UpdateResponse>),
        summary: "Replace the user config and restart without a rebuild",
        ok: 202,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/metrics",
        operation: "getLambdaMetrics",
        query: &[],
        request: None,
        response: Some(text),
        summary: "Every replica's Prometheus metrics merged, with a replica label",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/1/lambdas/{lambda_id}/traffic",
        operation: "getLambdaTraffic",
        query: &[],
        request: None,
        response: Some(json::<crate::service::traffic::TrafficResponse>),
        summary: "The lambda's proxied requests, errors and latency p50/p99 per 10 s over the last 15 minutes, as the server measured them",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: "/1/tasks",
        operation: "createTask",
        query: &[],
        request: Some(json::<CreateTask>),
        response: Some(json::<TaskCreated>),
        summary: "Start a task of a tasks lambda ({\"description\", \"content\": {\"lambda_id\", ...}})",
        ok: 201,
    },
    RouteDoc {
        method: "GET",
        path: "/1/tasks",
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
        path: "/1/tasks/{task_id}",
        operation: "getTask",
        query: &[],
        request: None,
        response: Some(json::<TaskRecord>),
        summary: "A task's record with its subtask counts and times",
        ok: 200,
    },
    RouteDoc {
        method: "PATCH",
        path: "/1/tasks/{task_id}",
        operation: "cancelTask",
        query: &[],
        request: Some(json::<CancelTask>),
        response: Some(json::<TaskRecord>),
        summary: "Cancel a task ({\"status\": \"cancelled\"})",
        ok: 200,
    },
    RouteDoc {
        method: "DELETE",
        path: "/1/tasks/{task_id}",
        operation: "deleteTask",
        query: &[],
        request: None,
        response: None,
        summary: "Delete a task and its results",
        ok: 204,
    },
    RouteDoc {
        method: "GET",
        path: "/1/tasks/{task_id}/result",
        operation: "getTaskResult",
        query: &[],
        request: None,
        response: Some(json::<TaskResults>),
        summary: "Each subtask's result in order (null when it failed)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/1/tasks/{task_id}/errors",
        operation: "getTaskErrors",
        query: &[],
        request: None,
        response: Some(json::<Vec<TaskError>>),
        summary: "The failed subtasks ([{\"subtask\", \"error\"}])",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: "/1/gc",
        operation: "collectGarbage",
        query: &[("dry_run", FLAG)],
        request: None,
        response: Some(json::<GcReport>),
        summary: "Admin: one garbage collection (?dry_run=1: what it would remove), with bytes",
        ok: 200,
    },
    RouteDoc {
        method: "POST",
        path: "/1/tokens",
        operation: "createToken",
        query: &[],
        request: Some(json::<CreateTokenRequest>),
        response: Some(json::<CreatedToken>),
        summary: "Admin: make an API token (its secret is shown this once)",
        ok: 201,
    },
    RouteDoc {
        method: "GET",
        path: "/1/tokens",
        operation: "listTokens",
        query: &[],
        request: None,
        response: Some(json::<TokenList>),
        summary: "Admin: every API token (no secrets)",
        ok: 200,
    },
    RouteDoc {
        method: "DELETE",
        path: "/1/tokens/{token_id}",
        operation: "revokeToken",
        query: &[],
        request: None,
        response: None,
        summary: "Admin: revoke an API token (every server stops taking it within a second)",
        ok: 204,
    },
    RouteDoc {
        method: "GET",
        path: "/1/audit",
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
        path: "/1/lambdas/{lambda_id}/proxy/{path}",
        operation: "proxyLambda",
        query: &[],
        request: Some(anything),
        response: Some(anything),
        summary: "Forwarded to the lambda, streamed both ways",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/",
        operation: "getConsole",
        query: &[],
        request: None,
        response: Some(html),
        summary: "The web console (HTML; its pages are also served at /lambdas/{lambda_id}, /lambdas/{lambda_id}/invoke and /create)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/lambdas/{lambda_id}",
        operation: "getConsoleLambda",
        query: &[],
        request: None,
        response: Some(html),
        summary: "The web console's page of a lambda (HTML)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/lambdas/{lambda_id}/invoke",
        operation: "getConsoleInvoke",
        query: &[],
        request: None,
        response: Some(html),
        summary: "The web console's invoke page of a lambda (HTML)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/create",
        operation: "getConsoleCreate",
        query: &[],
        request: None,
        response: Some(html),
        summary: "The web console's create page (HTML)",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/console/app.js",
        operation: "getConsoleScript",
        query: &[],
        request: None,
        response: Some(javascript),
        summary: "The web console's script",
        ok: 200,
    },
    RouteDoc {
        method: "GET",
        path: "/console/app.css",
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

/// The parameters of a route: its path's, the account and request id headers, its query's.
fn parameters(r: &RouteDoc) -> Vec<Value> {
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = if name == "path" {
                json!({"type": "string"})
            } else {
                json!({"type": "string", "format": "uuid"})
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    params.push(json!({"name": ACCOUNT_ID_HEADER, "in": "header", "required": false, "schema": {"type": "string", "format": "uuid"}}));
    params.push(json!({"name": REQUEST_ID_HEADER, "in": "header", "required": false, "schema": {"type": "string"}}));
    params.extend(r.query.iter().map(|(name, schema)| {
        let schema: Value = serde_json::from_str(schema).expect("a query schema is JSON");
        json!({"name": name, "in": "query", "required": false, "schema": schema})
    }));
    params
}

/// One operation of a route.
fn operation(r: &RouteDoc, g: &mut SchemaGenerator) -> Value {
    let public = crate::http::auth::Access::of(Some(r.path)) == crate::http::auth::Access::Public;
    let security = if public {
        json!([{}])
    } else {
        json!([{"bearer": []}, {}])
    };
    let mut ok = json!({"description": r.summary});
    if let Some(content) = r.response {
        ok["content"] = content(g);
    }
    let mut op = json!({
        "operationId": r.operation,
        "summary": r.summary,
        "parameters": parameters(r),
        "security": security,
        "responses": {
            r.ok.to_string(): ok,
            "default": {"description": "An error (see x-error-codes)", "content": {"application/json": {"schema": g.subschema_for::<ErrorBody>()}}},
        },
    });
    if let Some(content) = r.request {
        op["requestBody"] =
            json!({"required": r.method != "PUT" && r.method != "ANY", "content": content(g)});
    }
    op
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut settings = SchemaSettings::draft2020_12().for_serialize();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        let op = operation(r, &mut g);
        let methods: &[&str] = match r.method {
            "ANY" => &["get", "post", "put", "patch", "delete"],
            "GET" => &["get"],
            "POST" => &["post"],
            "PUT" => &["put"],
            "PATCH" => &["patch"],
            _ => &["delete"],
        };
        for m in methods {
            let mut op = op.clone();
            if *m == "get" || *m == "delete" {
                op.as_object_mut().map(|o| o.remove("requestBody"));
            }
            if methods.len() > 1 && *m != "get" {
                // Operation ids are unique: the GET keeps the route's, the others are suffixed.
                let suffix = format!("{}{}", m[..1].to_ascii_uppercase(), &m[1..]);
                op["operationId"] = json!(format!("{}{suffix}", r.operation));
            }
            entry[*m] = op;
        }
    }
    let codes: Vec<Value> = ErrorCode::ALL
        .iter()
        .map(|c| json!({"error_code": c.code(), "http": c.http_status(), "desc": c.desc()}))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "luna-lambda-rs", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API token (llt_...), when the server runs with [auth] mode = \"token\""}},
            "schemas": g.take_definitions(true),
        },
        "x-error-codes": codes,
    })
}
