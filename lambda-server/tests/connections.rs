//! The server and its clients' keep-alive connections: a request refused before its body is read
//! (by the proxy: no such lambda, not a lambda id, no token; by the API: no token) does not cost
//! its client the answer or the connection, even when the body arrives after the answer; and an
//! upload whose body comes after its head (after `100 Continue`, or in a write of its own) is
//! read whole, never refused as an "incomplete multipart stream".

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer read from `conn` (its head, then a body of its Content-Length), with `buf` holding
/// what came after it: its status, or `None` when the connection ended first.
async fn answer_on<R: AsyncRead + Unpin>(conn: &mut R, buf: &mut Vec<u8>) -> Option<u16> {
    answer_with_body(conn, buf).await.map(|(status, _)| status)
}

/// [`answer_on`], with the answer's body.
async fn answer_with_body<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut Vec<u8>,
) -> Option<(u16, Vec<u8>)> {
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
                let body = buf[at..at + len].to_vec();
                buf.drain(..at + len);
                return Some((status, body));
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
    let s = with_tokens(dir.path()).await;
    let addr = s.url.trim_start_matches("http://");
    refused_then_next(addr, &unknown, 401).await;
    s.stop().await;
}

const ADMIN: &str = "connections-test-admin-token-0123456789";

/// A platform with tokens on (the bootstrap admin token [`ADMIN`]).
async fn with_tokens(dir: &std::path::Path) -> Server {
    let edge = lambda_server::http::EdgeSettings {
        auth: lambda_server::http::auth::AuthSettings {
            enabled: true,
            admin_token: Some(ADMIN.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Server::start_as(platform(dir, true, test_config()).await, edge, None).await
}

/// An upload of 2 MiB without a token is refused (401) before its body is read, while its client
/// is still sending it: the client reads the answer, finishes sending, and its next request on
/// the same connection is served (hyper alone would close the connection under the client's
/// writes, and the kernel's reset could lose the answer too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_gives_its_answer_and_keeps_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tokens(dir.path()).await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    let archive = vec![7u8; 2 << 20];
    let (ctype, body) = multipart(&[
        ("archive", "application/zip", &archive),
        (
            "credentials",
            "application/json",
            creds("refused").as_bytes(),
        ),
    ]);
    let conn = TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    let head = format!(
        "POST /1/lambdas HTTP/1.1\r\nhost: {addr}\r\nluna-account-id: {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
        uuid::Uuid::new_v4(),
        body.len()
    );
    let sender = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await.unwrap();
        for piece in body.chunks(16 * 1024) {
            write.write_all(piece).await?;
        }
        Ok::<_, std::io::Error>(write)
    });
    let mut buf = Vec::new();
    assert_eq!(answer_on(&mut read, &mut buf).await, Some(401));
    let mut write = sender
        .await
        .unwrap()
        .expect("the whole body could be sent after the refusal");
    write
        .write_all(format!("GET /healthcheck HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        answer_on(&mut read, &mut buf).await,
        Some(200),
        "the connection should have served the next request"
    );
    s.stop().await;
}

/// Creates whose multipart body comes after the head, each of an archive that fails validation
/// (so each answer is known: 400/42005): after `Expect: 100-continue` and the server's
/// `100 Continue`, and in a write of its own. Before the body was read one chunk per poll, about
/// 1 in 14 of those after `100 Continue` was refused 400/12005 "incomplete multipart stream" (and
/// 1 in 1,250 of the others): 600 of them, half after `100 Continue`, all answered 42005 would
/// then have had a chance of about 1 in 4 billion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_sent_after_their_head_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(platform(dir.path(), true, test_config()).await).await;
    let addr = s.url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    for i in 0..600 {
        let archive = format!("not a zip, upload {i}").repeat(1 + i % 40);
        let (ctype, body) = multipart(&[
            ("archive", "application/zip", archive.as_bytes()),
            ("credentials", "application/json", creds("late").as_bytes()),
        ]);
        let expect = i % 2 == 0;
        let head = format!(
            "POST /1/lambdas HTTP/1.1\r\nhost: {addr}\r\nluna-account-id: {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n{}\r\n",
            uuid::Uuid::new_v4(),
            body.len(),
            if expect {
                "expect: 100-continue\r\n"
            } else {
                ""
            }
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        if expect {
            assert_eq!(
                answer_on(&mut conn, &mut buf).await,
                Some(100),
                "upload {i}"
            );
        }
        conn.write_all(&body).await.unwrap();
        let (status, answer) = answer_with_body(&mut conn, &mut buf)
            .await
            .unwrap_or_else(|| panic!("upload {i}: the connection ended"));
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            (status, &answer["error_code"]),
            (400, &serde_json::json!(42005)),
            "upload {i} ({} bytes, expect {expect}): {answer}",
            body.len()
        );
    }
    s.stop().await;
}
