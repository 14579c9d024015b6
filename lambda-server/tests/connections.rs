//! The proxy and its clients' keep-alive connections: a request the proxy refuses before it
//! reaches a replica (no such lambda, not a lambda id) does not cost its client the connection,
//! even when the request's body arrives after the answer.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer read from `conn` (its head, then a body of its Content-Length), with `buf` holding
/// what came after it: its status, or `None` when the connection ended first.
async fn answer_on(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    let deadline = Duration::from_secs(10);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(at) = head.parse(buf).unwrap() {
            let len: usize = head
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= at + len {
                let status = head.code.unwrap();
                buf.drain(..at + len);
                return Some(status);
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(deadline, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no answer within {deadline:?}; read so far: {buf:?}"),
        }
    }
}

/// Sends `path` its head alone, so that the proxy answers before the body is there; checks the
/// answer is `refused`, then sends the body and a next request on the same connection.
async fn refused_then_next(addr: &str, path: &str, refused: u16) {
    let body = r#"{"text": "sent after the answer"}"#;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(
        answer_on(&mut conn, &mut buf).await,
        Some(refused),
        "{path}"
    );
    let next = format!("{body}GET /healthcheck HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    conn.write_all(next.as_bytes()).await.unwrap();
    assert_eq!(
        answer_on(&mut conn, &mut buf).await,
        Some(200),
        "{path}: the connection should have served the next request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proxy_request_keeps_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, test_config()).await).await;
    let addr = s.url.trim_start_matches("http://");
    // No such lambda; not a lambda id.
    let unknown = format!("/1/lambdas/{}/proxy/main", uuid::Uuid::new_v4());
    refused_then_next(addr, &unknown, 404).await;
    refused_then_next(addr, "/1/lambdas/not-an-id/proxy/main", 404).await;
    s.stop().await;

    // With tokens on, a request without one.
    let dir = tempfile::tempdir().unwrap();
    let cfg = lambda_server::PlatformConfig {
        auth: lambda_server::auth::AuthSettings {
            enabled: true,
            admin_token: Some("proxy-connections-admin-token-0123456789".into()),
            ..Default::default()
        },
        ..test_config()
    };
    let s = Server::start(platform(dir.path(), true, cfg).await).await;
    let addr = s.url.trim_start_matches("http://");
    refused_then_next(addr, &unknown, 401).await;
    s.stop().await;
}
