//! The proxy's HTTP/1.1 client against replicas that answer byte for byte what each test says:
//! every framing of an answer, interim answers, an answer before the whole request, broken
//! answers, and request bodies of every shape.

use super::tests::{echo_server, read_head};
use super::*;
use futures::StreamExt as _;
use std::sync::Mutex as StdMutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One answer of a scripted replica: its bytes, and whether the replica closes the connection
/// after them.
type Answer = (&'static str, bool);

/// A replica that reads requests (head and body) and answers each with the next of `script`,
/// across connections; one byte per write when `trickle`. Answers what it read, per request.
async fn scripted(script: Vec<Answer>, trickle: bool) -> (String, Arc<StdMutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(StdMutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut script = script.into_iter();
        'connections: loop {
            let (mut tcp, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            loop {
                let Some(request) = read_request(&mut tcp, &mut buf).await else {
                    continue 'connections;
                };
                log.lock().unwrap().push(request);
                let Some((answer, close)) = script.next() else {
                    return;
                };
                if trickle {
                    for b in answer.as_bytes() {
                        tcp.write_all(&[*b]).await.unwrap();
                        tcp.flush().await.unwrap();
                    }
                } else {
                    tcp.write_all(answer.as_bytes()).await.unwrap();
                }
                if close {
                    continue 'connections;
                }
            }
        }
    });
    (url, seen)
}

/// One request (head and body, by its length or chunked) from `tcp`, as text; `None` at the
/// connection's end.
async fn read_request(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let complete = |b: &[u8]| -> Option<usize> {
        let head_end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&b[..head_end]).to_lowercase();
        if head.contains("transfer-encoding: chunked") {
            let end = b[head_end..].windows(5).position(|w| w == b"0\r\n\r\n")?;
            return Some(head_end + end + 5);
        }
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
        (b.len() >= head_end + len).then_some(head_end + len)
    };
    loop {
        if let Some(n) = complete(buf) {
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            buf.drain(..n);
            return Some(request);
        }
        let mut chunk = [0u8; 65536];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn body_of(resp: Response<Streaming>) -> Result<Bytes, axum::Error> {
    axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX).await
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn answers_in_every_framing_come_through_and_keep_the_connection() {
    for trickle in [false, true] {
        let (url, seen) = scripted(
            vec![
                // Interim answers first, then the answer.
                (
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
                     HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst",
                    false,
                ),
                (
                    "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Mixed-Case: Yes\r\n\r\n\
                     3;ext=1\r\nsec\r\n4\r\nond!\r\n0\r\nx-trailer: dropped\r\n\r\n",
                    false,
                ),
                ("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n", false),
                ("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", false),
                ("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close", true),
                ("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlast", false),
            ],
            trickle,
        )
        .await;
        let pool = Upstreams::new(PoolConfig::default());
        let send = |req| pool.send(&url, req);

        let resp = send(get("/1")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(body_of(resp).await.unwrap(), "first");

        let resp = send(get("/2")).await.unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-mixed-case"], "Yes");
        assert_eq!(body_of(resp).await.unwrap(), "second!");

        let resp = send(get("/3")).await.unwrap();
        assert_eq!(resp.status(), 204);
        assert_eq!(body_of(resp).await.unwrap(), "");

        let head = Request::head("/4").body(Body::empty()).unwrap();
        let resp = send(head).await.unwrap();
        assert_eq!(resp.headers()["content-length"], "9");
        assert_eq!(
            body_of(resp).await.unwrap(),
            "",
            "a HEAD answer has no body"
        );
        assert_eq!(
            pool.opened(),
            1,
            "one connection so far (trickle: {trickle})"
        );

        let resp = send(get("/5")).await.unwrap();
        assert_eq!(body_of(resp).await.unwrap(), "until close");
        let resp = send(get("/6")).await.unwrap();
        assert_eq!(body_of(resp).await.unwrap(), "last");
        assert_eq!(
            pool.opened(),
            2,
            "a body read until the close ends its connection"
        );

        let seen = seen.lock().unwrap();
        assert!(seen[0].starts_with("GET /1 HTTP/1.1\r\n"), "{seen:?}");
        assert!(seen[0].contains(&format!("host: {}\r\n", authority(&url).unwrap())));
        assert!(seen[3].starts_with("HEAD /4 HTTP/1.1\r\n"), "{seen:?}");
    }
}

#[tokio::test]
async fn request_bodies_are_framed_by_what_is_known_of_them() {
    let (url, seen) = scripted(
        vec![("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false); 4],
        false,
    )
    .await;
    let pool = Upstreams::new(PoolConfig::default());
    // Of unknown length: chunked, a large frame written from its own buffer.
    let big = "b".repeat(40_000);
    let frames: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"small,")),
        Ok(Bytes::new()),
        Ok(Bytes::from(big.clone())),
    ];
    let streamed = Request::put("/s")
        .body(Body::from_stream(futures::stream::iter(frames)))
        .unwrap();
    let resp = pool.send(&url, streamed).await.unwrap();
    body_of(resp).await.unwrap();
    // Of known length, large.
    let resp = pool
        .send(
            &url,
            Request::post("/l").body(Body::from(big.clone())).unwrap(),
        )
        .await
        .unwrap();
    body_of(resp).await.unwrap();
    // Empty: a POST says so, a GET says nothing.
    for req in [Request::post("/e").body(Body::empty()).unwrap(), get("/g")] {
        body_of(pool.send(&url, req).await.unwrap()).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    let chunked =
        format!("transfer-encoding: chunked\r\n\r\n6\r\nsmall,\r\n9c40\r\n{big}\r\n0\r\n\r\n");
    assert!(seen[0].ends_with(&chunked), "{:?}", &seen[0][..200]);
    assert!(seen[1].ends_with(&format!("content-length: 40000\r\n\r\n{big}")));
    assert!(
        seen[2].ends_with("content-length: 0\r\n\r\n"),
        "{:?}",
        seen[2]
    );
    assert!(!seen[3].contains("content-length"), "{:?}", seen[3]);
    assert_eq!(pool.opened(), 1);
}

#[tokio::test]
async fn an_answer_before_the_whole_request_is_passed_on_and_its_connection_closed() {
    // The replica answers as soon as it has the head (say, to refuse a body too large).
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        read_head(&mut tcp).await;
        tcp.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig")
            .await
            .unwrap();
        let _ = tcp.read(&mut [0; 64]).await; // keeps it open until the proxy's side goes
    });
    // A body whose rest never comes.
    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"part"))]);
    let body = Body::from_stream(first.chain(futures::stream::pending()));
    let pool = Upstreams::new(PoolConfig::default());
    let req = Request::post("/").body(body).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), pool.send(&url, req))
        .await
        .expect("the answer came before the request's end")
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(body_of(resp).await.unwrap(), "big");
    assert_eq!(pool.sweep(), 0, "its connection is not kept");
}

#[tokio::test]
async fn broken_answers_are_errors_that_say_what_broke() {
    let (url, _) = scripted(
        vec![
            ("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false),
            ("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", true),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nz\r\n",
                false,
            ),
            ("not http at all\r\n\r\n", false),
        ],
        false,
    )
    .await;
    let pool = Upstreams::new(PoolConfig::default());
    let (e, _) = pool.send(&url, get("/")).await.unwrap_err();
    assert!(e.to_string().contains("Content-Length"), "{e}");
    let resp = pool.send(&url, get("/")).await.unwrap();
    let e = body_of(resp).await.unwrap_err();
    assert!(e.to_string().contains("closed the connection"), "{e}");
    let resp = pool.send(&url, get("/")).await.unwrap();
    let e = body_of(resp).await.unwrap_err();
    assert!(e.to_string().contains("chunked body is malformed"), "{e}");
    let (e, _) = pool.send(&url, get("/")).await.unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
    assert_eq!(pool.sweep(), 0, "no broken connection is kept");
}

/// A body of `frames` that says it has `declared` bytes.
struct Framed {
    frames: std::collections::VecDeque<Bytes>,
    declared: u64,
}

impl Framed {
    fn body(frames: impl IntoIterator<Item = Bytes>, declared: u64) -> Body {
        let frames = frames.into_iter().collect();
        Body::new(Self { frames, declared })
    }
}

impl hyper::body::Body for Framed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.frames.pop_front().map(|d| Ok(Frame::data(d))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}

#[tokio::test]
async fn a_request_body_longer_or_shorter_than_its_length_is_refused() {
    let (url, _) = scripted(vec![], false).await;
    let pool = Upstreams::new(PoolConfig::default());
    for declared in [3, 5] {
        let body = Framed::body([Bytes::from_static(b"four")], declared);
        let req = Request::post("/").body(body).unwrap();
        let (e, _) = pool.send(&url, req).await.unwrap_err();
        assert!(matches!(e, SendError::BodyLength), "{declared}: {e}");
    }
}

#[tokio::test]
async fn many_frames_of_every_size_arrive_whole_and_in_order() {
    let url = echo_server().await;
    let pool = Upstreams::new(PoolConfig::default());
    // Small (copied), mid and large (written from where they are), more than one write takes.
    let frames: Vec<Bytes> = (0..60u8)
        .map(|i| {
            Bytes::from(vec![
                b'a' + i % 26;
                [10, 3000, 5000, 70_000][usize::from(i % 4)]
            ])
        })
        .collect();
    let whole: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    let declared = whole.len() as u64;
    let stream = futures::stream::iter(frames.clone().into_iter().map(Ok::<_, std::io::Error>));
    for body in [Framed::body(frames, declared), Body::from_stream(stream)] {
        let req = Request::post("/echo").body(body).unwrap();
        let resp = pool.send(&url, req).await.unwrap();
        assert!(body_of(resp).await.unwrap() == whole, "the echo differs");
    }
    assert_eq!(pool.opened(), 1);
}
