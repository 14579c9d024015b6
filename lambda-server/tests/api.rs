//! Router tests with `oneshot`: every route, every documented error code, headers.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use lambda_server::http::api::{AppState, EdgeSettings, ROUTES, router};
use std::time::Duration;
use tower::ServiceExt;

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
    fn code(&self) -> u64 {
        self.json()["error_code"].as_u64().unwrap_or(0)
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> Resp {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// A GET for an account.
fn get_as(uri: &str, account: &str) -> Request<Body> {
    Request::get(uri)
        .header("Luna-Account-Id", account)
        .body(Body::empty())
        .unwrap()
}

fn create_req(parts: &[(&str, &str, &[u8])], account: Option<&str>) -> Request<Body> {
    let (ctype, body) = multipart(parts);
    let mut b = Request::post("/1/lambdas").header("content-type", ctype);
    if let Some(a) = account {
        b = b.header("Luna-Account-Id", a);
    }
    b.body(Body::from(body)).unwrap()
}

async fn app(dir: &std::path::Path) -> (axum::Router, lambda_server::Platform) {
    let mut cfg = test_config();
    cfg.proxy_timeout = Duration::from_secs(2);
    cfg.limits.max_archive_bytes = 200_000;
    let p = platform(dir, true, cfg).await;
    (router(AppState::new(p.clone(), EdgeSettings::default())), p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_routes_and_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path()).await;
    let v = call(&app, get("/version")).await;
    assert_eq!(v.status, 200);
    assert_eq!(v.json()["Version"]["api"], 1);
    let rid = v.headers["luna-request-id"].to_str().unwrap().to_owned();
    let (secs, uuid) = rid.split_once(',').unwrap();
    assert!(
        secs.parse::<u64>().is_ok() && uuid::Uuid::parse_str(uuid).is_ok(),
        "{rid}"
    );
    let echoed = call(
        &app,
        Request::get("/version")
            .header("Luna-Request-Id", "1,abc")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(echoed.headers["luna-request-id"], "1,abc");
    let h = call(&app, get("/healthcheck")).await;
    assert_eq!(h.status, 200, "{:?}", h.body);
    assert_eq!(
        h.json(),
        serde_json::json!({"store": "ok", "builder": "ok", "orchestrator": "ok"})
    );
    let m = call(&app, get("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    assert!(
        text.contains(
            "luna_lambda_http_requests_total{route=\"/version\",method=\"GET\",status=\"200\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("luna_lambda_build_duration_seconds_count")
            && text.contains("luna_lambda_lambdas{status=\"running\"}")
    );
    let nf = call(&app, get("/nope")).await;
    assert_eq!((nf.status.as_u16(), nf.code()), (404, 12006));
    assert!(nf.headers.contains_key("luna-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path()).await;
    let spec = call(&app, get("/docs/spec")).await.json();
    assert_eq!(spec["openapi"], "3.1.0");
    // The wire types' schemas are in the document, with serde's field names.
    let schemas = &spec["components"]["schemas"];
    assert!(
        schemas["LambdaRecord"]["properties"]["lambda_name"].is_object(),
        "{schemas:#}"
    );
    assert!(
        schemas["ErrorBody"]["required"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("error_code"))
    );
    let id = uuid::Uuid::new_v4().to_string();
    for r in ROUTES {
        let path = r.path.replace("{lambda_id}", &id).replace("{path}", "main");
        let methods: Vec<&str> = if r.method == "ANY" {
            vec!["GET", "POST"]
        } else {
            vec![r.method]
        };
        let doc = &spec["paths"][r.path][methods[0].to_ascii_lowercase()];
        assert_eq!(
            doc["operationId"], r.operation,
            "{} {} is in the OpenAPI document",
            r.method, r.path
        );
        // Every answer with a body says what it is; a JSON one refers to a generated schema.
        let ok = &doc["responses"][r.ok.to_string()];
        if r.response.is_some() {
            let content = ok["content"].as_object().unwrap();
            if let Some(json) = content.get("application/json") {
                let schema = &json["schema"];
                assert!(
                    schema.get("$ref").is_some() || schema.get("type").is_some(),
                    "{} {}: {schema}",
                    r.method,
                    r.path
                );
            }
        }
        for m in methods {
            let resp = call(
                &app,
                Request::builder()
                    .method(m)
                    .uri(&path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            let code = if resp.status.is_success() {
                0
            } else {
                resp.code()
            };
            assert!(
                code != 12006 && code != 12007,
                "{m} {path} is not routed ({code})"
            );
        }
    }
    // Methods the document does not list are refused, so the document covers the router.
    for (m, path) in [
        ("DELETE", "/version"),
        ("POST", "/1/lambdas/{id}/status"),
        ("PATCH", "/1/lambdas"),
    ] {
        let uri = path.replace("{id}", &id);
        let resp = call(
            &app,
            Request::builder()
                .method(m)
                .uri(&uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            (resp.status.as_u16(), resp.code()),
            (405, 12007),
            "{m} {uri}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_create_requests_get_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path()).await;
    let zip = example_zip("hello");
    let c = creds("hello");
    // Not multipart.
    let r = call(
        &app,
        Request::post("/1/lambdas")
            .header("Luna-Account-Id", ACCOUNT)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (415, 12002));
    // No account, bad account.
    let r = call(
        &app,
        create_req(
            &[
                ("archive", "application/zip", &zip),
                ("credentials", "application/json", c.as_bytes()),
            ],
            None,
        ),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 12005));
    let r = call(
        &app,
        create_req(&[("archive", "application/zip", &zip)], Some("not-a-uuid")),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 12005));
    // Missing parts.
    let r = call(
        &app,
        create_req(
            &[("credentials", "application/json", c.as_bytes())],
            Some(ACCOUNT),
        ),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 12005));
    assert!(r.json()["detail"].as_str().unwrap().contains("archive"));
    let r = call(
        &app,
        create_req(&[("archive", "application/zip", &zip)], Some(ACCOUNT)),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 12005));
    // Bad JSON part.
    let r = call(
        &app,
        create_req(
            &[
                ("archive", "application/zip", &zip),
                ("credentials", "application/json", b"{oops"),
            ],
            Some(ACCOUNT),
        ),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 12001));
    // Several problems at once: archive, parameters and credentials together.
    let bad_zip = zip_of(&[
        ("lambda_main.py", "def main(r):\n    return {}\n"),
        ("requirements.txt", "-e .\n"),
    ]);
    let r = call(
        &app,
        create_req(
            &[
                ("archive", "application/zip", &bad_zip),
                (
                    "credentials",
                    "application/json",
                    br#"{"lambda_name":"Bad Name","lambda_type":"agent"}"#,
                ),
                (
                    "parameters",
                    "application/json",
                    br#"{"deploy_parameters":{"namespace":"kube-system"},"user_docker_commands":["RUN yum install -y libjpeg-turbo-devel"]}"#,
                ),
            ],
            Some(ACCOUNT),
        ),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 42005));
    let codes: Vec<String> = r.json()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect();
    for want in [
        "credentials.lambda_name",
        "credentials.lambda_type",
        "main.not_async",
        "requirements.forbidden_option",
        "parameters.namespace",
        "parameters.package_manager",
    ] {
        assert!(
            codes.iter().any(|c| c == want),
            "missing {want} in {codes:?}"
        );
    }
    // Too large: refused while streaming.
    let big = vec![0u8; 400_000];
    let r = call(
        &app,
        create_req(
            &[
                ("archive", "application/zip", &big),
                ("credentials", "application/json", c.as_bytes()),
            ],
            Some(ACCOUNT),
        ),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (413, 12003));
    // Nothing was stored by any of these.
    let list = call(&app, get("/1/lambdas")).await.json();
    assert_eq!(list["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_routes_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (app, platform) = app(dir.path()).await;
    let zip = example_zip("with-docs");
    let c = creds("docs");
    let r = call(
        &app,
        create_req(
            &[
                ("archive", "application/zip", &zip),
                ("credentials", "application/json", c.as_bytes()),
            ],
            Some(ACCOUNT),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.json()["lambda_id"].as_str().unwrap().to_owned();
    // Same name again: 42002.
    let r = call(
        &app,
        create_req(
            &[
                ("archive", "application/zip", &zip),
                ("credentials", "application/json", c.as_bytes()),
            ],
            Some(ACCOUNT),
        ),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (409, 42002));
    // Record, list, scoping.
    let rec = call(&app, get(&format!("/1/lambdas/{id}"))).await.json();
    assert_eq!(rec["lambda_name"], "docs");
    assert_eq!(rec["lambda_version"], 1);
    assert_eq!(rec["has_docs"], true);
    assert_eq!(rec["archive"]["size"], zip.len());
    let foreign = call(&app, get_as(&format!("/1/lambdas/{id}"), OTHER_ACCOUNT)).await;
    assert_eq!((foreign.status.as_u16(), foreign.code()), (404, 42001));
    let mine = call(&app, get_as("/1/lambdas", ACCOUNT)).await.json();
    assert_eq!(mine["count"], 1);
    let theirs = call(&app, get_as("/1/lambdas", OTHER_ACCOUNT)).await.json();
    assert_eq!(theirs["count"], 0);
    for bad in [
        "/1/lambdas?page=0",
        "/1/lambdas?page_size=5000",
        "/1/lambdas?colour=red",
    ] {
        let r = call(&app, get(bad)).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 12004), "{bad}");
    }
    let unknown = uuid::Uuid::new_v4();
    for uri in [
        format!("/1/lambdas/{unknown}"),
        "/1/lambdas/not-a-uuid".to_owned(),
        format!("/1/lambdas/{unknown}/proxy/main"),
    ] {
        let r = call(&app, get(&uri)).await;
        assert_eq!((r.status.as_u16(), r.code()), (404, 42001), "{uri}");
    }
    // Status, image status, logs, docs.
    let st = call(&app, get(&format!("/1/lambdas/{id}/status")))
        .await
        .json();
    assert!(st.get("replicas").is_some() && st.get("status").is_some());
    let is = call(&app, get(&format!("/1/lambdas/{id}/image/status")))
        .await
        .json();
    assert!(["pending", "in_progress", "completed"].contains(&is["status"].as_str().unwrap()));
    // Follow the build log until the build ends.
    let log = call(&app, get(&format!("/1/lambdas/{id}/image/logs?follow=1"))).await;
    assert!(
        String::from_utf8_lossy(&log.body).contains("==> lambda"),
        "{:?}",
        log.body
    );
    let html = call(
        &app,
        Request::get(format!("/1/lambdas/{id}/docs"))
            .header("Accept", "text/html")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        html.status.is_success()
            && String::from_utf8_lossy(&html.body).contains("<h1>with-docs</h1>")
    );
    let yml = call(
        &app,
        Request::get(format!("/1/lambdas/{id}/docs"))
            .header("Accept", "application/x-yaml")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(yml.body.starts_with(b"openapi: 3.0.0"));
    // Wait until it runs, then use the proxy.
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while call(&app, get(&format!("/1/lambdas/{id}"))).await.json()["status"] != "running" {
        assert!(std::time::Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = call(
        &app,
        Request::get(format!("/1/lambdas/{id}/proxy/main?name=ann"))
            .header("Luna-Request-Id", "7,rid")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"greeting": "hello, ann"}));
    assert_eq!(r.headers["lambda-version"], "1");
    assert_eq!(r.headers["luna-request-id"], "7,rid");
    let logs = call(&app, get(&format!("/1/lambdas/{id}/logs?tail=5")))
        .await
        .json();
    assert_eq!(logs["logs"].as_object().unwrap().len(), 1);
    let r = call(&app, get(&format!("/1/lambdas/{id}/logs?tail=x"))).await;
    assert_eq!(r.code(), 12004);
    // Bad bodies.
    let r = call(
        &app,
        Request::patch(format!("/1/lambdas/{id}"))
            .header("content-type", "application/json")
            .body(Body::from("{bad"))
            .unwrap(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 12001));
    let r = call(
        &app,
        Request::put(format!("/1/lambdas/{id}/config"))
            .body(Body::from("{bad"))
            .unwrap(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 12001));
    let r = call(
        &app,
        Request::put(format!("/1/lambdas/{id}/config"))
            .body(Body::from("[1,2]"))
            .unwrap(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 42005));
    // Switched off: 42014; no docs: 12006 on a lambda without docs.
    let off = call(
        &app,
        Request::patch(format!("/1/lambdas/{id}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"alive":false}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(off.status, 200);
    assert_eq!(off.json()["alive"], false);
    let r = call(&app, get(&format!("/1/lambdas/{id}/proxy/main"))).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, 42014));
    // Delete: 204, then 404.
    let d = call(
        &app,
        Request::delete(format!("/1/lambdas/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(d.status, 204);
    let r = call(&app, get(&format!("/1/lambdas/{id}"))).await;
    assert_eq!(r.code(), 42001);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_not_running_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (app, platform) = app(dir.path()).await;
    // A lambda whose build fails never runs: 42013.
    let zip = zip_of(&[
        ("lambda_main.py", "async def main(r):\n    return {}\n"),
        ("requirements.txt", "luna-lambda-no-such-package-xyz==1\n"),
    ]);
    let c = creds("broken");
    let r = call(
        &app,
        create_req(
            &[
                ("archive", "application/zip", &zip),
                ("credentials", "application/json", c.as_bytes()),
            ],
            Some(ACCOUNT),
        ),
    )
    .await;
    let broken = r.json()["lambda_id"].as_str().unwrap().to_owned();
    let r = call(&app, get(&format!("/1/lambdas/{broken}/proxy/main"))).await;
    assert_eq!((r.status.as_u16(), r.code()), (503, 42013));
    // The build fails with pip's words in the image status and the log.
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let is = loop {
        let is = call(&app, get(&format!("/1/lambdas/{broken}/image/status")))
            .await
            .json();
        if is["status"] == "error" {
            break is;
        }
        assert!(std::time::Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        is["reason"].as_str().unwrap().contains("pip install"),
        "{is}"
    );
    let rec = call(&app, get(&format!("/1/lambdas/{broken}")))
        .await
        .json();
    assert_eq!(rec["status"], "terminated");
    // A slow lambda: 42015 after the proxy timeout (2 s here).
    let slow = zip_of(&[(
        "lambda_main.py",
        "import asyncio\nasync def main(r):\n    await asyncio.sleep(30)\n    return {}\n",
    )]);
    let c = creds("slow");
    let r = call(
        &app,
        create_req(
            &[
                ("archive", "application/zip", &slow),
                ("credentials", "application/json", c.as_bytes()),
            ],
            Some(ACCOUNT),
        ),
    )
    .await;
    let id = r.json()["lambda_id"].as_str().unwrap().to_owned();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while call(&app, get(&format!("/1/lambdas/{id}"))).await.json()["status"] != "running" {
        assert!(std::time::Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = call(
        &app,
        Request::post(format!("/1/lambdas/{id}/proxy/main"))
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (504, 42015));
    for id in [broken, id] {
        call(
            &app,
            Request::delete(format!("/1/lambdas/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    }
    platform.shutdown().await;
}

/// `[limits] max_lambdas_per_account` (409/42017, nothing left behind, other accounts unaffected,
/// a place freed by a delete) and `max_concurrent_uploads` (429/12010 with `Retry-After` while
/// an upload is being received, then a place again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_and_upload_limits() {
    const OTHER: &str = "0b5a2f4e-3c1d-4e8f-9a7b-6c5d4e3f2a1b";
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config();
    cfg.max_lambdas_per_account = 2;
    let edge = EdgeSettings {
        max_concurrent_uploads: 1,
        ..EdgeSettings::default()
    };
    let p = platform(dir.path(), true, cfg).await;
    let app = router(AppState::new(p.clone(), edge));
    let zip = returning(1);
    let create = |name: &'static str, account: &'static str| {
        let c = creds(name);
        create_req(
            &[
                ("archive", "application/zip", &zip),
                ("credentials", "application/json", c.as_bytes()),
            ],
            Some(account),
        )
    };
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let r = call(&app, create(name, ACCOUNT)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.json()["lambda_id"].as_str().unwrap().to_owned());
    }
    let r = call(&app, create("three", ACCOUNT)).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, 42017), "{:?}", r.body);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("max_lambdas_per_account"),
        "{:?}",
        r.body
    );
    let listed = call(&app, get_as("/1/lambdas", ACCOUNT)).await.json();
    assert_eq!(listed["count"], 2, "{listed}");
    let stored = std::fs::read_dir(dir.path().join("store/lambdas"))
        .unwrap()
        .count();
    assert_eq!(stored, 2, "the refused lambda's objects were left behind");
    // Another account has its own places.
    let r = call(&app, create("three", OTHER)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // A delete frees a place.
    let r = call(
        &app,
        Request::delete(format!("/1/lambdas/{}", ids[0]))
            .header("Luna-Account-Id", ACCOUNT)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let r = call(&app, create("three", ACCOUNT)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // One upload at a time: a body still arriving holds the only place.
    use futures::SinkExt;
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(0);
    let (ctype, body) = multipart(&[("archive", "application/zip", &zip)]);
    let half = body.len() / 2;
    let slow = Request::put(format!("/1/lambdas/{}", ids[1]))
        .header("content-type", &ctype)
        .header("Luna-Account-Id", ACCOUNT)
        .body(Body::from_stream(rx))
        .unwrap();
    let slow = tokio::spawn({
        let app = app.clone();
        async move { call(&app, slow).await }
    });
    // With no buffer, the second send returns once the handler has taken the first chunk: it
    // is reading the body, so it holds its place.
    tx.send(Ok(bytes::Bytes::from(body[..half].to_vec())))
        .await
        .unwrap();
    tx.send(Ok(bytes::Bytes::from(body[half..half + 1].to_vec())))
        .await
        .unwrap();
    let update = || {
        Request::put(format!("/1/lambdas/{}", ids[1]))
            .header("content-type", &ctype)
            .header("Luna-Account-Id", ACCOUNT)
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let busy = call(&app, update()).await;
    assert_eq!(busy.status, 429, "{:?}", busy.body);
    assert_eq!(busy.code(), 12010);
    assert_eq!(busy.headers["retry-after"], "1");
    assert!(
        busy.json()["detail"]
            .as_str()
            .unwrap()
            .contains("max_concurrent_uploads")
    );
    // The slow upload completes; the place is free again.
    tx.send(Ok(bytes::Bytes::from(body[half + 1..].to_vec())))
        .await
        .unwrap();
    drop(tx);
    let r = slow.await.unwrap();
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = call(&app, update()).await;
    assert_ne!(r.status, 429, "{:?}", r.body);
    // A stopped platform leaves its replicas running for its next start to adopt: deleted
    // first, so that none outlives the test.
    for account in [ACCOUNT, OTHER] {
        delete_all(&app, account).await;
    }
    p.shutdown().await;
}

/// Deletes every lambda of `account`.
async fn delete_all(app: &axum::Router, account: &str) {
    let listed = call(app, get_as("/1/lambdas", account)).await.json();
    for l in listed["lambdas"].as_array().unwrap() {
        let id = l["lambda_id"].as_str().unwrap();
        let r = call(
            app,
            Request::delete(format!("/1/lambdas/{id}"))
                .header("Luna-Account-Id", account)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert!(r.status.is_success(), "{:?}", r.body);
    }
}

/// An upload whose body stalls gets 408/12013 after `upload_timeout` and frees its place; one
/// whose declared length is beyond the limit gets 413 before a byte of it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_oversized_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config();
    cfg.limits.max_archive_bytes = 1000;
    let edge = EdgeSettings {
        max_concurrent_uploads: 1,
        upload_timeout: Duration::from_secs(1),
        ..EdgeSettings::default()
    };
    let p = platform(dir.path(), true, cfg).await;
    let app = router(AppState::new(p.clone(), edge));
    let (tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stalled = Request::post("/1/lambdas")
        .header("content-type", "multipart/form-data; boundary=b")
        .header("Luna-Account-Id", ACCOUNT)
        .body(Body::from_stream(rx))
        .unwrap();
    let r = call(&app, stalled).await;
    assert_eq!((r.status.as_u16(), r.code()), (408, 12013), "{:?}", r.body);
    drop(tx);
    // Its place is free again: the next upload is read (and refused for what it is).
    let big = Request::post("/1/lambdas")
        .header("content-type", "multipart/form-data; boundary=b")
        .header("content-length", "10737418240")
        .header("Luna-Account-Id", ACCOUNT)
        .body(Body::empty())
        .unwrap();
    let r = call(&app, big).await;
    assert_eq!((r.status.as_u16(), r.code()), (413, 12003), "{:?}", r.body);
    assert!(r.json()["detail"].as_str().unwrap().contains("10737418240"));
    p.shutdown().await;
}
