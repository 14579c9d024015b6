//! Tokens over HTTP on a real server (`[auth] mode = "token"`): every documented route with no
//! token, a malformed, unknown, expired and revoked one, another account's, one of the wrong
//! scope, and the right one; account isolation of lists and the proxy; the platform's token
//! never reaches a lambda; the request rate per token.

mod common;

use common::*;
use lambda_server::http::EdgeSettings;
use lambda_server::http::auth::AuthSettings;
use std::time::{Duration, Instant};

/// The bootstrap admin token of these servers.
const ADMIN: &str = "test-bootstrap-admin-token-0123456789";
const B_ACCOUNT: &str = "0b7e1c9a-5d3f-4c2b-8e6a-9f1d2c3b4a50";

fn edge(rate_per_second: u32) -> EdgeSettings {
    EdgeSettings {
        auth: AuthSettings {
            enabled: true,
            admin_token: Some(ADMIN.into()),
            rate_per_second,
            open_warning: None,
        },
        ..EdgeSettings::default()
    }
}

struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
    body: serde_json::Value,
}

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    account: Option<&str>,
) -> Answer {
    let mut rb =
        reqwest::Client::new().request(method.parse().unwrap(), format!("{}{path}", s.url));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(a) = account {
        rb = rb.header("Luna-Account-Id", a);
    }
    let r = rb.send().await.unwrap();
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    let (www_authenticate, retry_after) = (header("www-authenticate"), header("retry-after"));
    let status = r.status().as_u16();
    Answer {
        status,
        www_authenticate,
        retry_after,
        body: r.json().await.unwrap_or(serde_json::Value::Null),
    }
}

/// `POST /1/tokens` as the server's (admin) client: status and body.
async fn post_token(s: &Server, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = s
        .http
        .post(format!("{}/1/tokens", s.url))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn token(s: &Server, body: serde_json::Value) -> String {
    let (status, created) = post_token(s, &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], body["name"]);
    created["token"].as_str().unwrap().to_owned()
}

/// Creates a lambda as `token` (no account header: the token's account) and waits until it runs.
async fn lambda_of(s: &Server, token: &str, name: &str) -> String {
    let echo = zip_of(&[(
        "lambda_main.py",
        "async def main(request):\n    return {'authorization': request.headers.get('Authorization')}\n",
    )]);
    let (ctype, body) = multipart(&[
        ("archive", "application/zip", &echo),
        ("credentials", "application/json", creds(name).as_bytes()),
    ]);
    let r = reqwest::Client::new()
        .post(format!("{}/1/lambdas", s.url))
        .bearer_auth(token)
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    let id = created_id(r).await;
    s.serving(&id, 1).await;
    id
}

fn instantiate(path: &str, lambda: &str) -> String {
    path.replace("{lambda_id}", lambda)
        .replace("{task_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{token_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{path}", "main")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_every_kind_of_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_as(
        platform(dir.path(), true, test_config()).await,
        edge(0),
        Some(ADMIN),
    )
    .await;
    let a = |name: &str, scope: &str| serde_json::json!({"name": name, "account_id": ACCOUNT, "scope": scope});
    let a_write = token(&s, a("a-write", "write")).await;
    let a_read = token(&s, a("a-read", "read")).await;
    let a_invoke = token(&s, a("a-invoke", "invoke")).await;
    let b_write = token(
        &s,
        serde_json::json!({"name": "b-write", "account_id": B_ACCOUNT}),
    )
    .await;
    let revoked = token(&s, a("a-revoked", "write")).await;
    let expired = token(
        &s,
        serde_json::json!({"name": "a-expiring", "account_id": ACCOUNT, "expires_in_secs": 1}),
    )
    .await;
    let la = lambda_of(&s, &a_write, "mine").await;
    let lb = lambda_of(&s, &b_write, "theirs").await;
    assert_eq!(s.record(&la).await["account_id"], ACCOUNT);
    assert_eq!(s.record(&lb).await["account_id"], B_ACCOUNT);

    // Revoked: refused at once by the server that revoked it.
    assert_eq!(
        call(&s, "GET", "/1/lambdas", Some(&revoked), None)
            .await
            .status,
        200
    );
    let (list_status, list) = {
        let r = s
            .http
            .get(format!("{}/1/tokens", s.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(list_status, 200);
    assert!(!list.contains("llt_") && !list.contains("hash"), "{list}");
    let listed: serde_json::Value = serde_json::from_str(&list).unwrap();
    let revoked_id = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "a-revoked")
        .unwrap()["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(
        &s,
        "DELETE",
        &format!("/1/tokens/{revoked_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    // Expired: once its second is over.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(&s, "GET", "/1/lambdas", Some(&expired), None).await;
        if r.status == 401 {
            assert!(
                r.body["detail"].as_str().unwrap().contains("expired"),
                "{}",
                r.body
            );
            break;
        }
        assert!(Instant::now() < end, "the 1 s token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for route in lambda_server::http::api::ROUTES {
        let method = if route.method == "ANY" {
            "POST"
        } else {
            route.method
        };
        let path = instantiate(route.path, &la);
        let access = lambda_server::http::auth::Access::of(Some(route.path));
        let what = format!("{method} {}", route.path);
        if access == lambda_server::http::auth::Access::Public {
            assert_eq!(
                call(&s, method, &path, None, None).await.status,
                200,
                "{what}"
            );
            continue;
        }
        for (kind, t) in [
            ("none", None),
            ("malformed", Some("not-a-token")),
            (
                "unknown",
                Some(
                    "llt_0123456789abcdef0123456789abcdef_00000000000000000000000000000000000000000000000000000000deadbeef",
                ),
            ),
            ("expired", Some(expired.as_str())),
            ("revoked", Some(revoked.as_str())),
        ] {
            let r = call(&s, method, &path, t, None).await;
            assert_eq!(r.status, 401, "{what} with {kind} token: {}", r.body);
            assert_eq!(r.body["error_code"], 12008, "{what}");
            assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"), "{what}");
        }
        let read_only = method == "GET";
        let (wrong, right) = match access {
            lambda_server::http::auth::Access::Admin => (&a_write, ADMIN),
            lambda_server::http::auth::Access::Proxy => (&a_read, a_invoke.as_str()),
            _ if read_only => (&a_invoke, a_read.as_str()),
            _ => (&a_read, a_write.as_str()),
        };
        let r = call(&s, method, &path, Some(wrong), None).await;
        assert_eq!(r.status, 403, "{what} with the wrong scope: {}", r.body);
        assert_eq!(r.body["error_code"], 12009, "{what}");
        if route.path.contains("{lambda_id}") && access != lambda_server::http::auth::Access::Admin
        {
            // Another account's lambda does not exist for this token: it gets exactly what a
            // lambda that does not exist gets (mostly 42001; a malformed body may be refused
            // first), never its data.
            let foreign = call(&s, method, &path, Some(&b_write), None).await;
            let missing = instantiate(route.path, &uuid::Uuid::new_v4().to_string());
            let missing = call(&s, method, &missing, Some(&b_write), None).await;
            assert!(
                (400..500).contains(&foreign.status)
                    && foreign.status == missing.status
                    && foreign.body["error_code"] == missing.body["error_code"],
                "{what} with another account's token: {} {} (a missing lambda: {} {})",
                foreign.status,
                foreign.body,
                missing.status,
                missing.body
            );
            if read_only {
                assert_eq!(foreign.body["error_code"], 42001, "{what}");
            }
        }
        if method == "DELETE" && route.path == "/1/lambdas/{lambda_id}" {
            continue; // the right token deletes it: done last
        }
        let r = call(&s, method, &path, Some(right), None).await;
        assert!(
            ![401, 403, 500].contains(&r.status) && r.body["error_code"] != 42001,
            "{what} with the right token: {} {}",
            r.status,
            r.body
        );
    }

    // Token requests are checked; names are unique.
    let (st, b) = post_token(&s, &serde_json::json!({"name": "x y", "admin": true})).await;
    assert_eq!((st, b["error_code"].as_u64()), (400, Some(12001)), "{b}");
    let (st, b) = post_token(
        &s,
        &serde_json::json!({"name": "both", "admin": true, "account_id": ACCOUNT}),
    )
    .await;
    assert_eq!(st, 400, "{b}");
    let (st, b) = post_token(
        &s,
        &serde_json::json!({"name": "scope", "admin": true, "scope": "all"}),
    )
    .await;
    assert_eq!(st, 400, "{b}");
    let (st, b) = post_token(
        &s,
        &serde_json::json!({"name": "a-read", "account_id": ACCOUNT}),
    )
    .await;
    assert_eq!((st, b["error_code"].as_u64()), (409, Some(12012)), "{b}");

    // A header naming another account is refused for an account's token; lists are the
    // token's account's only; an admin sees every account.
    let r = call(&s, "GET", "/1/lambdas", Some(&a_read), Some(B_ACCOUNT)).await;
    assert_eq!(r.status, 403);
    let ids = |r: &Answer| -> Vec<String> {
        r.body["lambdas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["lambda_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mine = call(&s, "GET", "/1/lambdas", Some(&a_read), Some(ACCOUNT)).await;
    assert_eq!(ids(&mine), vec![la.clone()]);
    let theirs = call(&s, "GET", "/1/lambdas", Some(&b_write), None).await;
    assert_eq!(ids(&theirs), vec![lb.clone()]);
    let all = call(&s, "GET", "/1/lambdas", Some(ADMIN), None).await;
    assert_eq!(ids(&all).len(), 2, "{}", all.body);

    // The proxy: the lambda answers, and never sees the platform's token.
    let r = reqwest::Client::new()
        .post(format!("{}/1/lambdas/{la}/proxy/main", s.url))
        .bearer_auth(&a_invoke)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["authorization"], serde_json::Value::Null, "{body}");

    // Tokens are checked before anything else: no token, no 404 for unknown routes either.
    assert_eq!(
        call(&s, "GET", "/1/nothing-here", None, None).await.status,
        401
    );
    assert_eq!(
        call(&s, "GET", "/1/nothing-here", Some(&a_read), None)
            .await
            .status,
        404
    );

    assert_eq!(
        call(
            &s,
            "DELETE",
            &format!("/1/lambdas/{la}"),
            Some(&a_write),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        call(&s, "DELETE", &format!("/1/lambdas/{lb}"), Some(ADMIN), None)
            .await
            .status,
        204
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_rate_per_token_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_as(
        platform(dir.path(), true, test_config()).await,
        edge(3),
        Some(ADMIN),
    )
    .await;
    let t = token(
        &s,
        serde_json::json!({"name": "limited", "account_id": ACCOUNT, "scope": "read"}),
    )
    .await;

    // A burst of `rate_per_second`, then 429 with Retry-After. Sent at once: one by one, on a
    // loaded machine, they could take longer than the second that refills the burst.
    let answers =
        futures::future::join_all((0..6).map(|_| call(&s, "GET", "/1/lambdas", Some(&t), None)))
            .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    let mut retry_after = None;
    for r in answers.iter().filter(|r| r.status == 429) {
        assert_eq!(r.body["error_code"], 12010);
        retry_after = r.retry_after.clone();
    }
    let ok = statuses.iter().filter(|&&st| st == 200).count();
    assert!(ok >= 3, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    s.stop().await;
}

/// Every write is in the audit log with who, what, on what and how it ended (refused ones too),
/// stored: a restarted server reads it back; only an admin token reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_audited_and_only_admins_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let s = Server::start_as(
        platform(dir.path(), true, test_config()).await,
        edge(0),
        Some(ADMIN),
    )
    .await;
    let a_write = token(
        &s,
        serde_json::json!({"name": "a-write", "account_id": ACCOUNT}),
    )
    .await;
    let b_write = token(
        &s,
        serde_json::json!({"name": "b-write", "account_id": B_ACCOUNT}),
    )
    .await;
    let la = lambda_of(&s, &a_write, "audited").await;
    let r = call(
        &s,
        "DELETE",
        &format!("/1/lambdas/{la}"),
        Some(&b_write),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(
        &s,
        "DELETE",
        &format!("/1/lambdas/{la}"),
        Some("nope"),
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    // Reads are not audited.
    assert_eq!(
        call(&s, "GET", "/1/lambdas", Some(&a_write), None)
            .await
            .status,
        200
    );
    let r = call(&s, "GET", "/1/audit", Some(&a_write), None).await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (403, 12009.into())
    );
    let r = call(&s, "GET", "/1/audit?since=yesterday", Some(ADMIN), None).await;
    assert_eq!(
        (r.status, r.body["error_code"].clone()),
        (400, 12004.into())
    );

    let audit_url = format!(
        "/1/audit?since={}",
        since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let r = call(&s, "GET", &audit_url, Some(ADMIN), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = r.body["entries"].as_array().unwrap().clone();
    let summary: Vec<(String, Option<String>, u64, Option<u64>)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["token"].as_str().map(str::to_owned),
                e["status"].as_u64().unwrap(),
                e["error_code"].as_u64(),
            )
        })
        .collect();
    let admin = Some("admin (bootstrap)".to_owned());
    assert_eq!(
        summary,
        vec![
            ("createToken".into(), admin.clone(), 201, None),
            ("createToken".into(), admin, 201, None),
            ("createLambda".into(), Some("a-write".into()), 201, None),
            (
                "deleteLambda".into(),
                Some("b-write".into()),
                404,
                Some(42001)
            ),
            ("deleteLambda".into(), None, 401, Some(12008)),
        ],
        "{entries:#?}"
    );
    let create = &entries[2];
    assert_eq!(create["lambda_id"], la.as_str());
    assert_eq!(create["account_id"], ACCOUNT);
    assert_eq!(create["path"], "/1/lambdas");
    assert!(!create["request_id"].as_str().unwrap().is_empty());
    assert_eq!(entries[3]["lambda_id"], la.as_str());
    assert_eq!(entries[3]["account_id"], B_ACCOUNT);
    assert!(
        entries[0]["target_id"]
            .as_str()
            .is_some_and(|t| t.len() == 36)
    );
    // A time after them all gives none.
    let later = call(&s, "GET", "/1/audit?since=4102444800", Some(ADMIN), None).await;
    assert_eq!(later.body["entries"], serde_json::json!([]));

    // Stored: the next server on the folder reads the same log.
    s.stop().await;
    let s = Server::start_as(
        platform(dir.path(), true, test_config()).await,
        edge(0),
        Some(ADMIN),
    )
    .await;
    let again = call(&s, "GET", &audit_url, Some(ADMIN), None).await;
    assert_eq!(again.body["entries"], serde_json::Value::Array(entries));
    let _ = call(&s, "DELETE", &format!("/1/lambdas/{la}"), Some(ADMIN), None).await;
    s.stop().await;
}
