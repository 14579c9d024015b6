//! The OpenAPI 3.1 document of the API (`GET /docs/spec`): every route of [`ROUTES`] with its
//! parameters, request body and answer, the schemas generated from the wire types themselves
//! (`schemars`, with serde's names, defaults and optional fields), and the error body.

use crate::http::auth::Access;
use lambda_core::api::{ACCOUNT_ID_HEADER, ErrorBody, ErrorCode, REQUEST_ID_HEADER};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Value, json};

pub use crate::http::routes::table::{Content, ROUTES, RouteDoc};

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
    let public = r.access == Access::Public;
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
