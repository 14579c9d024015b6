//! Request bodies at the API's edge: an upload's multipart body read one chunk per poll
//! ([`multipart`]), and the body a handler refused unread, drained rather than cut off
//! ([`Drained`]).
//!
//! **One chunk per poll.** multer 3.1 can refuse a complete body as "incomplete multipart
//! stream" (rwf2/multer#70, not released): looking for the first boundary, `poll_next_field`
//! reads the stream, finds no boundary in what it has, and reads once more; when that second read
//! brings the rest of the body *and* its end, it sees the end and refuses without looking at what
//! just came. That needs the body's last chunk and its end to arrive between multer's two reads,
//! which happens here because a request's body is read on the platform's runtime while the
//! connection's own thread receives it (`serve`): a body that comes after its head (sent in a
//! write of its own, or after `100 Continue`) can be received whole, and its end signalled, while
//! the handler is between those two reads. [`ChunkPerPoll`] never answers a poll with a chunk when
//! the poll before it gave one: it asks to be polled again instead, so multer's reads stop at
//! each chunk and it looks at every chunk before it can see the end.
//!
//! **Drained, not cut off.** A request refused before its body is read (401, 413 of a body in
//! transit, 429, a bad path, a proxy request to a lambda that is not running...) would leave hyper
//! to close the connection while its client is still sending; the client's unsent rest then makes
//! the server's kernel reset the connection, and a client that had not read the answer yet loses
//! it (`scripts/bench uploads` saw it), or finds its keep-alive connection gone. Such a body
//! ([`discard`], and any API request's [`Drained`] body left unfinished) is read to its end and
//! dropped by a task of its own, for at most [`DRAIN_TIME`], as nginx discards a body it does not
//! read: the client gets its answer, and keeps its connection when the rest arrives in time. A
//! client that waits for `100 Continue` has sent nothing, and its connection is simply closed.

use crate::http::api::AppState;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// How long the rest of a refused request's body may take to arrive and be dropped, before its
/// connection is closed.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads `body` to its end, for at most [`DRAIN_TIME`], dropping what it reads.
async fn drain(mut body: Body) {
    use http_body_util::BodyExt as _;
    let drained = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(DRAIN_TIME, drained).await;
}

/// Whether a refused `req` leaves a body to drain: it has one, and its client does not wait for
/// `100 Continue` before sending it (such a client has sent none of it yet).
fn has_body_to_drain(req: &Request) -> bool {
    let waits = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    !waits && !hyper::body::Body::is_end_stream(req.body())
}

/// Drops the body of a request refused before it was read: [`drain`]ed by a task of its own.
pub(crate) fn discard(req: Request) {
    if has_body_to_drain(&req) {
        tokio::spawn(drain(req.into_body()));
    }
}

/// An API request's body that, dropped before its end, is [`drain`]ed by a task of its own
/// (unless the client waits for `100 Continue` and so has sent nothing yet).
#[derive(Debug)]
pub(crate) struct Drained {
    body: Option<Body>,
}

impl Drained {
    /// `req` with its body drained if a handler drops it unread.
    pub(crate) fn wrap(req: Request) -> Request {
        if !has_body_to_drain(&req) {
            return req;
        }
        req.map(|body| Body::new(Drained { body: Some(body) }))
    }
}

impl hyper::body::Body for Drained {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.body = None; // ended (or failed): nothing left to drain
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), hyper::body::Body::size_hint)
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        if let Some(body) = self.body.take()
            && !hyper::body::Body::is_end_stream(&body)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(drain(body));
        }
    }
}

/// The multipart body of `req` (within the route's `DefaultBodyLimit`), read one chunk per poll.
pub(crate) async fn multipart(
    req: Request,
    state: &AppState,
) -> Result<Multipart, MultipartRejection> {
    let req = req.map(|body| Body::new(ChunkPerPoll::new(body)));
    Multipart::from_request(req, state).await
}

/// A body whose every frame comes from a poll of its own: the poll after a frame asks to be
/// polled again (and wakes its task) instead of reading further.
#[derive(Debug)]
pub(crate) struct ChunkPerPoll<B> {
    inner: B,
    /// The last poll gave a frame.
    gave: bool,
}

impl<B> ChunkPerPoll<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self { inner, gave: false }
    }
}

impl<B> hyper::body::Body for ChunkPerPoll<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.gave) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        this.gave = frame.is_some();
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        !self.gave && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    /// A body that arrives as the race has it: nothing at its first poll, then its `chunks` one
    /// poll each, and its end at the same poll as the last chunk's next one — what multer's
    /// second read of the stream meets when the rest of a body and its end came meanwhile.
    struct Late {
        polls: usize,
        chunks: Vec<Bytes>,
    }

    impl hyper::body::Body for Late {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.polls += 1;
            if self.polls == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.chunks.is_empty() {
                return Poll::Ready(None);
            }
            let chunk = self.chunks.remove(0);
            Poll::Ready(Some(Ok(Frame::data(chunk))))
        }
    }

    const BOUNDARY: &str = "luna-test-boundary";

    fn upload() -> Vec<u8> {
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"a.zip\"\r\n\r\nPK-not-really\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"credentials\"\r\n\r\n{{\"lambda_name\":\"x\"}}\r\n--{BOUNDARY}--\r\n"
        )
        .into_bytes()
    }

    fn request(body: Body) -> Request {
        Request::builder()
            .method("POST")
            .uri("/1/lambdas")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .unwrap()
    }

    /// The parts' names and contents, or multer's error.
    async fn parts(mut mp: Multipart) -> Result<Vec<(String, Bytes)>, String> {
        let mut out = Vec::new();
        while let Some(field) = mp.next_field().await.map_err(|e| e.body_text())? {
            let name = field.name().unwrap_or("").to_owned();
            out.push((name, field.bytes().await.map_err(|e| e.body_text())?));
        }
        Ok(out)
    }

    fn late(split_at: &[usize]) -> Late {
        let body = Bytes::from(upload());
        let mut chunks = Vec::new();
        let mut from = 0;
        for &at in split_at.iter().chain([&body.len()]) {
            chunks.push(body.slice(from..at));
            from = at;
        }
        Late { polls: 0, chunks }
    }

    /// The premise of the test below: multer, on the body as it is, refuses a complete upload
    /// that arrives this way. (When multer mends it, this fails, and `ChunkPerPoll` can go.)
    #[tokio::test]
    async fn multer_alone_refuses_a_whole_body_that_ends_with_its_last_chunk() {
        let mp = Multipart::from_request(request(Body::new(late(&[]))), &())
            .await
            .unwrap();
        let got = parts(mp).await;
        assert_eq!(got, Err("incomplete multipart stream".to_owned()));
    }

    #[tokio::test]
    async fn one_chunk_per_poll_gives_multer_every_chunk_before_the_end() {
        let mp = Multipart::from_request(
            request(Body::new(ChunkPerPoll::new(Body::new(late(&[]))))),
            &(),
        )
        .await
        .unwrap();
        let got = parts(mp).await.expect("the whole upload is read");
        assert_eq!(
            got,
            vec![
                ("archive".to_owned(), Bytes::from_static(b"PK-not-really")),
                (
                    "credentials".to_owned(),
                    Bytes::from_static(br#"{"lambda_name":"x"}"#)
                ),
            ]
        );
    }

    #[tokio::test]
    async fn every_split_of_a_late_body_is_read_whole() {
        let len = upload().len();
        for a in 1..len {
            for b in [a + 1, len - 1] {
                let splits: Vec<usize> = [a, b].into_iter().filter(|&s| s < len).collect();
                let body = Body::new(ChunkPerPoll::new(Body::new(late(&splits))));
                let mp = Multipart::from_request(request(body), &()).await.unwrap();
                let got = parts(mp).await;
                assert!(
                    got.as_ref().is_ok_and(|p| p.len() == 2),
                    "split at {splits:?}: {got:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn it_ends_only_on_a_poll_that_gave_nothing() {
        let mut body = ChunkPerPoll::new(Body::from("abc"));
        assert!(!hyper::body::Body::is_end_stream(&body));
        let stream = http_body_util::BodyStream::new(&mut body);
        let frames: Vec<_> = stream.collect().await;
        assert_eq!(frames.len(), 1);
        assert!(hyper::body::Body::is_end_stream(&body));
    }
}
