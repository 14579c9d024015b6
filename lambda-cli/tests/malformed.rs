//! Hostile and malformed requests against a real `luna-lambda serve`, over raw TCP: malformed
//! multipart, a huge header, a body declared far beyond the limit, 50,000-deep JSON, invalid
//! UTF-8 in every text field, and a crowd of connections that trickle their requests. Each gets
//! a 4xx with the LUNA error body (the huge header: hyper's bare 431), the server's peak memory
//! stays bounded, and it keeps serving throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request on a new connection (`Connection: close`): status and body.
fn raw(port: u16, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = head.replace('\n', "\r\n").into_bytes();
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    req.extend_from_slice(body);
    // The server may answer (and close) before the whole body is sent: that is fine.
    let _ = s.write_all(&req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {head:?}: {text:?}"));
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| out[i + 4..].to_vec())
        .unwrap_or_default();
    (status, body)
}

/// A 4xx with the LUNA error body, of `code` when given.
fn refused(port: u16, what: &str, head: &str, body: &[u8], code: Option<u64>) {
    let (status, answer) = raw(port, head, body);
    assert!(
        (400..500).contains(&status),
        "{what}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    let err: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_else(|_| {
        panic!(
            "{what}: not a LUNA error body: {}",
            String::from_utf8_lossy(&answer)
        )
    });
    assert!(
        err["error_code"].is_u64() && err["detail"].is_string(),
        "{what}: {err}"
    );
    if let Some(c) = code {
        assert_eq!(err["error_code"], c, "{what}: {err}");
    }
    serving(port, what);
}

fn serving(port: u16, after: &str) {
    let (status, _) = raw(port, "GET /version HTTP/1.1\nHost: x\n", b"");
    assert_eq!(status, 200, "the server stopped serving after {after}");
}

fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(
            format!("--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--b0undary--\r\n");
    ("multipart/form-data; boundary=b0undary".into(), body)
}

fn post(path: &str, ctype: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\nHost: x\nLuna-Account-Id: {}\nContent-Type: {ctype}\nContent-Length: {len}\n",
        common::ACCOUNT
    )
}

/// The peak resident memory of a process (VmHWM), in MiB.
fn peak_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

/// A server for one test: its port, the `hello` zip and credentials to upload.
struct Target {
    server: common::Serve,
    port: u16,
    zip: Vec<u8>,
    _data: tempfile::TempDir,
}

impl Target {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let server = common::serve(data.path());
        let port = server.url.rsplit(':').next().unwrap().parse().unwrap();
        let zip = lambda_core::pack::pack_dir(&common::workspace().join("examples/hello")).unwrap();
        Self {
            server,
            port,
            zip,
            _data: data,
        }
    }

    /// The server's peak memory stays bounded.
    fn assert_bounded_memory(&self) {
        let peak = peak_mib(self.server.child.id());
        println!("server peak RSS: {peak:.0} MiB");
        assert!(
            peak < 512.0,
            "the server's peak memory grew to {peak:.0} MiB"
        );
    }
}

const CREDS: &[u8] = br#"{"lambda_name": "hello", "lambda_type": "standalone"}"#;

#[test]
fn malformed_multipart_and_oversized_bodies() {
    let t = Target::start();
    let (port, zip, creds) = (t.port, &t.zip, CREDS);
    // Malformed multipart: no closing boundary, a part with no headers, a wrong boundary.
    let (ctype, mut body) = multipart(&[("archive", zip), ("credentials", creds)]);
    body.truncate(body.len() - 20);
    refused(
        port,
        "a truncated multipart body",
        &post("/1/lambdas", &ctype, body.len()),
        &body,
        None,
    );
    let junk = b"--b0undary\r\n\r\n\r\nno headers\r\n--b0undary--\r\n";
    refused(
        port,
        "a part with no headers",
        &post("/1/lambdas", &ctype, junk.len()),
        junk,
        None,
    );
    let (_, body) = multipart(&[("archive", zip)]);
    let other = "multipart/form-data; boundary=other";
    refused(
        port,
        "a wrong boundary",
        &post("/1/lambdas", other, body.len()),
        &body,
        None,
    );

    // A body declared at 10 GiB: refused before it is read.
    refused(
        port,
        "a 10 GiB body",
        &post("/1/lambdas", &ctype, 10 << 30),
        b"",
        Some(12003),
    );

    t.assert_bounded_memory();
}

#[test]
fn deep_json_and_invalid_utf8_in_every_text_field() {
    let t = Target::start();
    let (port, zip, creds) = (t.port, &t.zip, CREDS);
    // 50,000-deep JSON, in a JSON body and in a multipart JSON part.
    let deep = format!(
        "{{\"description\": \"x\", \"content\": {}{}}}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    refused(
        port,
        "deep JSON",
        &post("/1/tasks", "application/json", deep.len()),
        deep.as_bytes(),
        Some(12001),
    );
    let deep_params = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let (ctype, body) = multipart(&[
        ("archive", zip),
        ("credentials", creds),
        ("parameters", deep_params.as_bytes()),
    ]);
    refused(
        port,
        "deep JSON parameters",
        &post("/1/lambdas", &ctype, body.len()),
        &body,
        None,
    );

    // Invalid UTF-8 in every text field.
    let bad_name = b"{\"lambda_name\": \"hel\xfflo\", \"lambda_type\": \"standalone\"}";
    let (ctype, body) = multipart(&[("archive", zip), ("credentials", bad_name)]);
    refused(
        port,
        "invalid UTF-8 in credentials",
        &post("/1/lambdas", &ctype, body.len()),
        &body,
        None,
    );
    let bad_params = b"{\"env\": {\"A\": \"\xc3\x28\"}}";
    let (ctype, body) = multipart(&[
        ("archive", zip),
        ("credentials", creds),
        ("parameters", bad_params),
    ]);
    refused(
        port,
        "invalid UTF-8 in parameters",
        &post("/1/lambdas", &ctype, body.len()),
        &body,
        None,
    );
    let bad_task = b"{\"description\": \"\xff\", \"content\": {}}";
    refused(
        port,
        "invalid UTF-8 in a task",
        &post("/1/tasks", "application/json", bad_task.len()),
        bad_task,
        None,
    );
    let bad_token = b"{\"name\": \"\xfe\", \"admin\": true}";
    refused(
        port,
        "invalid UTF-8 in a token name",
        &post("/1/tokens", "application/json", bad_token.len()),
        bad_token,
        None,
    );
    let mut head = b"GET /1/lambdas HTTP/1.1\r\nHost: x\r\nLuna-Account-Id: \xff\xfe\r\nConnection: close\r\n\r\n".to_vec();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&head).unwrap();
    head.clear();
    s.read_to_end(&mut head).unwrap();
    let text = String::from_utf8_lossy(&head);
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains("12005"),
        "{text}"
    );
    refused(
        port,
        "invalid UTF-8 in a query",
        "GET /1/lambdas?lambda_name=%FF%FE HTTP/1.1\nHost: x\n",
        b"",
        Some(12004),
    );
    refused(
        port,
        "a bad page",
        "GET /1/lambdas?page=-1 HTTP/1.1\nHost: x\n",
        b"",
        Some(12004),
    );

    t.assert_bounded_memory();
}

#[test]
fn huge_headers_and_trickling_connections() {
    let t = Target::start();
    let port = t.port;
    let ctype = "multipart/form-data; boundary=b0undary";
    // A huge header: hyper refuses it itself (431, no body of ours).
    let (status, _) = raw(
        port,
        &format!(
            "GET /version HTTP/1.1\nHost: x\nX-Big: {}\n",
            "a".repeat(1 << 20)
        ),
        b"",
    );
    assert_eq!(status, 431);
    serving(port, "a 1 MiB header");

    // A crowd of connections trickling their requests (slowloris): others are still served.
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = if i % 2 == 0 {
            "GET /1/lambdas HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_owned()
        } else {
            format!(
                "{}\r\n",
                post("/1/lambdas", ctype, 50 << 20).replace('\n', "\r\n")
            )
        };
        s.write_all(head.as_bytes()).unwrap();
        slow.push(s);
    }
    for s in &mut slow {
        let _ = s.write_all(b"a");
    }
    serving(port, "200 connections trickling their requests");
    drop(slow);
    serving(port, "the trickling connections closed");

    t.assert_bounded_memory();
}
