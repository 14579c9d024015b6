//! `scripts/bench uploads`: uploads under stress, every answer checked.
//!
//! A real `luna-lambda serve` on the embedded default with tokens on (`[auth] mode = "token"`),
//! `[limits] max_archive_bytes` = 8 MiB and `max_concurrent_uploads` = 2, and `hello` running.
//! Over keep-alive connections (1, then 4 at once) each client sends, in an order drawn from a
//! seeded generator: creates (`POST /1/lambdas`) and updates (`PUT /1/lambdas/{id}` of `hello`,
//! and of an id that does not exist) whose archive fails validation (a few bytes to 6 MiB, so
//! each answer is known: 400/42005, or 404/42001), interleaved with refused requests (no token:
//! 401; a body declared over the limit: 413; more uploads than the limit at once: 429) and calls
//! of `hello` through the proxy. Each upload's body goes in one write with its head, in a write
//! of its own after the head, in many small writes, or after `Expect: 100-continue` and the
//! server's `100 Continue`.
//!
//! Printed per server and number of connections: uploads, uploads per second, and the failures:
//! `cut` (a complete body answered 400/12005 "incomplete multipart stream"), `unexpected` (any
//! other answer than the request's known one) and `dropped` (a connection closed without the
//! last answer saying `Connection: close`); then per size class and way of writing. Exits 1 when
//! anything failed, so that it also serves as a stress test.
//!
//! Settings: `BENCH_UPLOADS` (per server, half on one connection and half on four; default
//! 20000), `BENCH_SEED` (default 1), `BENCH_SERVERS` (`label=path,...`: the builds of
//! `luna-lambda` to run, one after the other; default this release build; scripts/bench-uploads
//! passes the release and the debug build).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod common;
use common::{ACCOUNT, Server, wait_for};

/// The bootstrap admin token of the server under test.
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef0123456789";
/// `[limits] max_archive_bytes` of the server under test (uploads may be 1 MiB larger).
const MAX_ARCHIVE: usize = 8 << 20;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: the bench's draws, the same for the same seed.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn within(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// What a request is, and so which answers it may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `POST /1/lambdas` of an archive that fails validation: 400/42005 (or 429).
    Create,
    /// `PUT /1/lambdas/{hello}` of such an archive: 400/42005 (or 429).
    Update,
    /// `PUT /1/lambdas/{an id that does not exist}`: 404 (or 429).
    UpdateMissing,
    /// A create without a token: 401.
    NoToken,
    /// A create whose declared length is over the limit: 413 before its body is read.
    TooLarge,
    /// `POST /1/lambdas/{hello}/proxy/main`: 200.
    Proxy,
}

/// How an upload's body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writing {
    /// In the same write as its head.
    Whole,
    /// In one write of its own after the head.
    Split,
    /// In writes of 1 to 4,096 bytes.
    Small,
    /// After `Expect: 100-continue` and the server's `100 Continue`.
    Expect,
}

/// The size class of an upload's body, for the report.
fn size_class(n: usize) -> &'static str {
    match n {
        0..=1536 => "<= 1.5 KiB",
        1537..=65536 => "<= 64 KiB",
        65537..=1048576 => "<= 1 MiB",
        _ => "> 1 MiB",
    }
}

/// One answer as it came.
struct Answer {
    status: u16,
    close: bool,
    body: Vec<u8>,
}

impl Answer {
    fn code(&self) -> Option<u64> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .get("error_code")?
            .as_u64()
    }

    fn text(&self) -> String {
        format!(
            "{} {}",
            self.status,
            String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
        )
    }
}

/// Reads one answer (its head, then a body of `Content-Length` or chunked).
fn read_answer(r: &mut BufReader<TcpStream>) -> std::io::Result<Answer> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not a status line: {line:?}")))?;
    let (mut length, mut chunked, mut close) = (0usize, false, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim().to_ascii_lowercase();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.contains("close"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(r)?
    } else {
        let mut body = vec![0; length];
        r.read_exact(&mut body)?;
        body
    };
    Ok(Answer {
        status,
        close,
        body,
    })
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            line.clear();
            r.read_line(&mut line)?; // the last CRLF (no trailers are sent)
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        r.read_exact(&mut body[start..])?;
        body.truncate(start + size);
    }
}

/// One keep-alive connection to the server.
struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(addr: &str) -> Connection {
        let writer = TcpStream::connect(addr).expect("the server accepts connections");
        writer.set_nodelay(true).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let reader = BufReader::with_capacity(64 * 1024, writer.try_clone().unwrap());
        Connection { writer, reader }
    }
}

/// A request ready to send: its head (without the final blank line) and body.
struct Request {
    kind: Kind,
    head: String,
    body: Vec<u8>,
}

/// The multipart body of an upload (`credentials` for creates only) and its boundary.
fn multipart(archive: &[u8], with_credentials: bool, draw: &mut Draw) -> (String, Vec<u8>) {
    let boundary = format!("----luna-bench-{:016x}", draw.next());
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"lambda.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(archive);
    if with_credentials {
        body.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"credentials\"\r\n\r\n{{\"lambda_name\":\"bench\",\"lambda_type\":\"standalone\"}}").as_bytes(),
        );
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

/// The lambda everything runs against, and the archives uploads carry.
struct Fixture {
    hello: String,
    /// Archives that fail validation (no `lambda_main.py`; some not zips at all), a few bytes to
    /// 6 MiB.
    archives: Vec<Vec<u8>>,
}

impl Fixture {
    fn archives(draw: &mut Draw) -> Vec<Vec<u8>> {
        let mut sizes = vec![1, 5, 40, 200, 500, 900, 1200, 1400];
        sizes.extend([3_000, 9_000, 30_000, 60_000, 200_000, 700_000]);
        sizes.extend([1_500_000, 3_000_000, 6_000_000]);
        sizes
            .into_iter()
            .map(|n| {
                if n < 100 {
                    draw.bytes(n) // not a zip
                } else {
                    // Random bytes do not compress: the zip is about as large as its file.
                    lambda_core::pack::pack_files(vec![("notes.bin".into(), draw.bytes(n))])
                }
            })
            .collect()
    }

    /// An archive: small ones most often, as users send them.
    fn archive(&self, draw: &mut Draw) -> &[u8] {
        let last = self.archives.len() - 1;
        let i = match draw.next() % 100 {
            0..=59 => draw.within(0, 7),
            60..=89 => draw.within(8, 13),
            _ => draw.within(14, last),
        };
        &self.archives[i]
    }

    /// The next request of a client.
    fn request(&self, draw: &mut Draw) -> Request {
        let kind = match draw.next() % 100 {
            0..=49 => Kind::Create,
            50..=69 => Kind::Update,
            70..=77 => Kind::UpdateMissing,
            78..=82 => Kind::NoToken,
            83..=85 => Kind::TooLarge,
            _ => Kind::Proxy,
        };
        let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
        let (line, auth) = match kind {
            Kind::Create | Kind::TooLarge => ("POST /1/lambdas".to_owned(), auth),
            Kind::NoToken => ("POST /1/lambdas".to_owned(), String::new()),
            Kind::Update => (format!("PUT /1/lambdas/{}", self.hello), auth),
            Kind::UpdateMissing => (format!("PUT /1/lambdas/{}", uuid::Uuid::new_v4()), auth),
            Kind::Proxy => {
                let body = br#"{"name": "bench"}"#.to_vec();
                let head = format!(
                    "POST /1/lambdas/{}/proxy/main HTTP/1.1\r\nHost: bench\r\n{auth}Luna-Account-Id: {ACCOUNT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    self.hello,
                    body.len()
                );
                return Request { kind, head, body };
            }
        };
        let (boundary, body) = multipart(self.archive(draw), kind != Kind::Update, draw);
        let declared = if kind == Kind::TooLarge {
            MAX_ARCHIVE + (2 << 20)
        } else {
            body.len()
        };
        let head = format!(
            "{line} HTTP/1.1\r\nHost: bench\r\n{auth}Luna-Account-Id: {ACCOUNT}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n"
        );
        Request { kind, head, body }
    }
}

/// Whether `a` is an answer `kind` may get.
fn expected(kind: Kind, a: &Answer) -> bool {
    let busy = a.status == 429;
    match kind {
        Kind::Create | Kind::Update => busy || (a.status == 400 && a.code() == Some(42005)),
        Kind::UpdateMissing => busy || (a.status == 404 && a.code() == Some(42001)),
        Kind::NoToken => a.status == 401,
        Kind::TooLarge => a.status == 413,
        Kind::Proxy => a.status == 200,
    }
}

/// What happened to the requests of one size class and way of writing.
#[derive(Default)]
struct Tally {
    uploads: u64,
    cut: u64,
    unexpected: u64,
    dropped: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.uploads += o.uploads;
        self.cut += o.cut;
        self.unexpected += o.unexpected;
        self.dropped += o.dropped;
    }

    fn failures(&self) -> u64 {
        self.cut + self.unexpected + self.dropped
    }
}

/// One client's results: per (kind or size class, way of writing), and the first failures seen.
#[derive(Default)]
struct Results {
    by: BTreeMap<(String, String), Tally>,
    examples: Vec<String>,
}

impl Results {
    fn merge(&mut self, o: Results) {
        for (k, t) in o.by {
            self.by.entry(k).or_default().add(&t);
        }
        for e in o.examples {
            if self.examples.len() < 8 {
                self.examples.push(e);
            }
        }
    }

    fn total(&self) -> Tally {
        let mut t = Tally::default();
        for v in self.by.values() {
            t.add(v);
        }
        t
    }
}

/// Sends `req` written as `writing`; its answer, or the error of a connection that was gone. A
/// server may answer a refused upload before its body has come, and close the connection: when
/// writing the body fails, the answer is read all the same.
fn exchange(conn: &mut Connection, req: &Request, writing: Writing) -> std::io::Result<Answer> {
    match send(conn, req, writing) {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => read_answer(&mut conn.reader),
        Err(write) => read_answer(&mut conn.reader).map_err(|read| {
            std::io::Error::other(format!("writing: {write}; then reading: {read}"))
        }),
    }
}

/// Writes `req` as `writing`; the answer when one came before the body was sent (`Expect`).
fn send(conn: &mut Connection, req: &Request, writing: Writing) -> std::io::Result<Option<Answer>> {
    let mut head = req.head.clone().into_bytes();
    if req.kind == Kind::TooLarge {
        // Only the head and a start of the body: the server answers before reading it.
        head.extend_from_slice(b"\r\n");
        conn.writer.write_all(&head)?;
        let _ = conn
            .writer
            .write_all(&req.body[..req.body.len().min(16 * 1024)]);
        return Ok(None);
    }
    match writing {
        Writing::Whole => {
            head.extend_from_slice(b"\r\n");
            head.extend_from_slice(&req.body);
            conn.writer.write_all(&head)?;
        }
        Writing::Split => {
            head.extend_from_slice(b"\r\n");
            conn.writer.write_all(&head)?;
            conn.writer.write_all(&req.body)?;
        }
        Writing::Small => {
            head.extend_from_slice(b"\r\n");
            conn.writer.write_all(&head)?;
            let mut rest = &req.body[..];
            let mut draw = Draw(req.body.len() as u64);
            while !rest.is_empty() {
                let n = draw.within(1, 4096).min(rest.len());
                conn.writer.write_all(&rest[..n])?;
                rest = &rest[n..];
            }
        }
        Writing::Expect => {
            head.extend_from_slice(b"Expect: 100-continue\r\n\r\n");
            conn.writer.write_all(&head)?;
            let first = read_answer(&mut conn.reader)?;
            if first.status != 100 {
                return Ok(Some(first)); // answered without the body (a refusal)
            }
            conn.writer.write_all(&req.body)?;
        }
    }
    Ok(None)
}

/// One client: `n` requests over a keep-alive connection (a new one after the server closed it).
fn client(addr: &str, fixture: &Fixture, n: u64, seed: u64) -> Results {
    let mut draw = Draw(seed);
    let mut results = Results::default();
    let mut conn = Connection::open(addr);
    let ways = [
        Writing::Whole,
        Writing::Split,
        Writing::Small,
        Writing::Expect,
    ];
    for _ in 0..n {
        let req = fixture.request(&mut draw);
        let writing = ways[(draw.next() % 4) as usize];
        let answer = exchange(&mut conn, &req, writing);
        let class = match req.kind {
            Kind::Create | Kind::Update | Kind::UpdateMissing => {
                size_class(req.body.len()).to_owned()
            }
            other => format!("{other:?}"),
        };
        let tally = results
            .by
            .entry((class, format!("{writing:?}")))
            .or_default();
        tally.uploads += 1;
        let reopen = match answer {
            Ok(a) if expected(req.kind, &a) => a.close || req.kind == Kind::TooLarge,
            Ok(a) => {
                if a.status == 400 && a.code() == Some(12005) {
                    tally.cut += 1;
                } else {
                    tally.unexpected += 1;
                }
                let seen = format!(
                    "{:?} {writing:?} ({} bytes): {}",
                    req.kind,
                    req.body.len(),
                    a.text()
                );
                if results.examples.len() < 8 {
                    results.examples.push(seen);
                }
                a.close
            }
            Err(e) => {
                tally.dropped += 1;
                if results.examples.len() < 8 {
                    results.examples.push(format!(
                        "{:?} {writing:?} ({} bytes): connection lost: {e}",
                        req.kind,
                        req.body.len()
                    ));
                }
                true
            }
        };
        if reopen {
            conn = Connection::open(addr);
        }
    }
    results
}

/// `n` requests over `conns` connections at once; the results and the seconds they took.
fn run(addr: &str, fixture: &Fixture, n: u64, conns: u64, seed: u64) -> (Results, f64) {
    let started = Instant::now();
    let mut all = Results::default();
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..conns)
            .map(|c| s.spawn(move || client(addr, fixture, n / conns, seed * 1000 + c)))
            .collect();
        for c in clients {
            all.merge(c.join().expect("a client thread panicked"));
        }
    });
    (all, started.elapsed().as_secs_f64())
}

/// Creates `examples/hello` (admin token) and waits until it answers through the proxy.
fn start_hello(url: &str, rt: &tokio::runtime::Runtime) -> String {
    rt.block_on(async {
        let zip = lambda_core::pack::pack_dir(&common::workspace().join("examples/hello")).unwrap();
        let id = common::post_create_as(url, "hello", zip, None, Some(ADMIN_TOKEN)).await;
        let client = reqwest::Client::new();
        let end = Instant::now() + Duration::from_secs(300);
        loop {
            let ok = client
                .post(format!("{url}/1/lambdas/{id}/proxy/main"))
                .bearer_auth(ADMIN_TOKEN)
                .header("Luna-Account-Id", ACCOUNT)
                .body("{}")
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return id;
            }
            assert!(Instant::now() < end, "hello never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// The server under test: `binary` on a new data folder with the bench's settings.
fn start_server(binary: &Path, data: &Path) -> Server {
    let port = common::free_port();
    let child = Server::command_of(binary, data, port)
        .envs([
            ("LUNA_LAMBDA_AUTH_MODE", "token"),
            ("LUNA_LAMBDA_ADMIN_TOKEN", ADMIN_TOKEN),
            (
                "LUNA_LAMBDA_LIMITS_MAX_ARCHIVE_BYTES",
                &MAX_ARCHIVE.to_string(),
            ),
            ("LUNA_LAMBDA_LIMITS_MAX_CONCURRENT_UPLOADS", "2"),
            ("LUNA_LAMBDA_AUTH_RATE_PER_SECOND", "0"), // no limit: every request is an upload's
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{url}/version"), 60, "the server");
    Server { child, url }
}

fn print_results(label: &str, conns: u64, r: &Results, secs: f64) {
    let t = r.total();
    let uploads: u64 =
        r.by.iter()
            .filter(|((class, _), _)| class.contains("iB"))
            .map(|(_, t)| t.uploads)
            .sum();
    println!(
        "{label:<8} {conns:>2} conn  {:>6} requests ({uploads} uploads) in {secs:>6.1} s: {:>7.1} uploads/s   cut {}  unexpected {}  dropped {}",
        t.uploads,
        uploads as f64 / secs,
        t.cut,
        t.unexpected,
        t.dropped
    );
    for e in &r.examples {
        println!("    {e}");
    }
}

fn print_breakdown(all: &Results) {
    println!(
        "\n  {:<14} {:<8} {:>8} {:>6} {:>11} {:>8}",
        "class", "writing", "requests", "cut", "unexpected", "dropped"
    );
    for ((class, writing), t) in &all.by {
        println!(
            "  {class:<14} {writing:<8} {:>8} {:>6} {:>11} {:>8}",
            t.uploads, t.cut, t.unexpected, t.dropped
        );
    }
}

/// The builds of `luna-lambda` to stress: `BENCH_SERVERS` (`label=path,...`), else this release.
fn servers() -> Vec<(String, PathBuf)> {
    match std::env::var("BENCH_SERVERS") {
        Ok(list) => list
            .split(',')
            .map(|s| match s.split_once('=') {
                Some((label, path)) => (label.to_owned(), PathBuf::from(path)),
                None => panic!("BENCH_SERVERS takes label=path,...; got {s:?}"),
            })
            .collect(),
        Err(_) => vec![(
            "release".to_owned(),
            PathBuf::from(env!("CARGO_BIN_EXE_luna-lambda")),
        )],
    }
}

fn main() -> ExitCode {
    let n = setting("BENCH_UPLOADS", 20_000);
    let seed = setting("BENCH_SEED", 1);
    let servers = servers();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut draw = Draw(seed);
    let archives = Fixture::archives(&mut draw);
    println!(
        "== uploads: {n} requests per server (half on 1 connection, half on 4), seed {seed}; archives of {} to {} bytes",
        archives.iter().map(Vec::len).min().unwrap_or(0),
        archives.iter().map(Vec::len).max().unwrap_or(0)
    );
    let mut all = Results::default();
    for (label, binary) in &servers {
        let data = tempfile::tempdir().unwrap();
        let server = start_server(binary, data.path());
        let hello = start_hello(&server.url, &rt);
        let fixture = Fixture {
            hello: hello.clone(),
            archives: archives.clone(),
        };
        let addr = server.url.trim_start_matches("http://").to_owned();
        for conns in [1, 4] {
            let (r, secs) = run(&addr, &fixture, n / 2, conns, seed + conns);
            print_results(label, conns, &r, secs);
            all.merge(r);
        }
        let deleted = rt.block_on(common::delete_lambda_as(
            &server.url,
            &hello,
            Some(ADMIN_TOKEN),
        ));
        assert!(deleted, "deleting {hello} failed");
        server.stop();
    }
    print_breakdown(&all);
    let failures = all.total().failures();
    println!("failures: {failures} in {} requests", all.total().uploads);
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
