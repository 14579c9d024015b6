//! One keep-alive HTTP/1.1 connection to a replica, driven by the task of the request that uses
//! it. The request goes out in one write when its body is at hand (head and body together), the
//! response head is parsed where it was read, and the response body is read by whoever reads the
//! response: no task, channel or copy between the connection and the client's side.

use super::SendError;
use super::h1::{self, Chunked, Decoded, Framing, Head, Sending};
use axum::body::Body;
use axum::http::{Method, Request};
use bytes::{Buf as _, Bytes, BytesMut};
use hyper::body::Body as _;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// Room made in the read buffer before reading a response head.
const HEAD_ROOM: usize = 8 * 1024;
/// Room made in the read buffer before reading a response body, at most.
const BODY_ROOM: usize = 64 * 1024;
/// Buffers larger than this are not kept by an idle connection.
const KEEP: usize = 16 * 1024;
/// Request body bytes gathered from frames already at hand before they are written.
const GATHER: usize = 64 * 1024;
/// Request body frames up to this size are copied next to the head (while nothing larger waits
/// before them); larger ones are written from where they are.
const COPY_MAX: usize = 4 * 1024;
/// Pieces of one vectored write, at most (the write buffer and queued frames).
const SLICES: usize = 16;

/// A connection and its buffers (kept from one request to the next).
pub(super) struct Link {
    tcp: TcpStream,
    /// Read and not yet taken: a response head, body bytes.
    read: BytesMut,
    /// The request's head, and body bytes copied after it, waiting to be written.
    write: Vec<u8>,
}

impl Link {
    pub(super) fn new(tcp: TcpStream) -> Box<Self> {
        Box::new(Self {
            tcp,
            read: BytesMut::with_capacity(HEAD_ROOM),
            write: Vec::with_capacity(1024),
        })
    }

    /// Lets go of buffers a large exchange grew (an idle connection keeps small ones).
    pub(super) fn trim(&mut self) {
        if self.write.capacity() > KEEP {
            self.write = Vec::with_capacity(1024);
        }
        if self.read.is_empty() && self.read.capacity() > KEEP {
            self.read = BytesMut::with_capacity(HEAD_ROOM);
        }
    }

    /// Open, with nothing to read: it can take a request. (No system call unless the socket
    /// became readable since it was last read: the replica closed it, or sent what nobody
    /// asked for.)
    pub(super) fn is_idle(&self) -> bool {
        self.read.is_empty()
            && matches!(self.tcp.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends `req` to `target` (origin form; `host` is its `Host` when it has none) and reads
    /// until the response head is in (interim `1xx` heads are skipped). A head that came before
    /// the whole request was sent ends the sending, and the connection is not used again.
    pub(super) async fn round_trip(
        &mut self,
        target: &str,
        host: &str,
        req: Request<Body>,
    ) -> Result<Head, SendError> {
        let (parts, body) = req.into_parts();
        let sending = Sending::of(
            &parts.method,
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        self.write.clear();
        h1::write_head(
            &mut self.write,
            &parts.method,
            target,
            host,
            &parts.headers,
            sending,
        );
        let mut out = Outgoing::new(body, sending);
        std::future::poll_fn(|cx| self.poll_exchange(cx, &mut out, &parts.method)).await
    }

    fn poll_exchange(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Outgoing,
        method: &Method,
    ) -> Poll<Result<Head, SendError>> {
        if out.failed.is_none()
            && !out.sent
            && let Poll::Ready(Err(e)) = out.poll_send(&mut self.tcp, &mut self.write, cx)
        {
            match e {
                // The replica may have answered (and closed) before it read the whole request:
                // its answer is read; the write's error is the one told when there is none.
                SendError::Io(e) => out.failed = Some(e),
                e => return Poll::Ready(Err(e)),
            }
        }
        loop {
            match h1::parse_head(&mut self.read, method) {
                Ok(Some(head)) if head.status.is_informational() => continue,
                Ok(Some(mut head)) => {
                    head.reusable &= out.sent && out.failed.is_none();
                    return Poll::Ready(Ok(head));
                }
                Ok(None) => {}
                Err(m) => return Poll::Ready(Err(SendError::Malformed(m))),
            }
            match ready!(self.poll_fill(cx, HEAD_ROOM)) {
                Ok(n) if n > 0 => {}
                read => {
                    return Poll::Ready(Err(match (out.failed.take(), read) {
                        (Some(e), _) | (None, Err(e)) => SendError::Io(e),
                        (None, Ok(_)) => SendError::Closed,
                    }));
                }
            }
        }
    }

    /// Reads what the socket has into the read buffer, with at least `room` bytes free.
    fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < room / 2 {
            self.read.reserve(room);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.tcp), cx, &mut self.read)
    }

    /// The next piece of the response body.
    pub(super) fn poll_body(
        &mut self,
        state: &mut Reading,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, SendError>>> {
        loop {
            let room = match state {
                Reading::Done => return Poll::Ready(None),
                Reading::Length(left) if !self.read.is_empty() => {
                    let n =
                        usize::try_from(*left).map_or(self.read.len(), |l| l.min(self.read.len()));
                    *left -= n as u64;
                    if *left == 0 {
                        *state = Reading::Done;
                    }
                    return Poll::Ready(Some(Ok(self.read.split_to(n).freeze())));
                }
                Reading::Length(left) => {
                    usize::try_from(*left).map_or(BODY_ROOM, |l| l.min(BODY_ROOM))
                }
                Reading::Chunked(chunked) => match chunked.decode(&mut self.read) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                    Ok(Decoded::End) => {
                        *state = Reading::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::More) => BODY_ROOM,
                    Err(m) => return Poll::Ready(Some(Err(SendError::Malformed(m)))),
                },
                Reading::UntilClose if !self.read.is_empty() => {
                    return Poll::Ready(Some(Ok(self.read.split().freeze())));
                }
                Reading::UntilClose => BODY_ROOM,
            };
            match ready!(self.poll_fill(cx, room)) {
                Ok(0) if matches!(state, Reading::UntilClose) => {
                    *state = Reading::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(SendError::Closed))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(SendError::Io(e)))),
            }
        }
    }
}

/// Where the reading of a response body is.
#[derive(Debug)]
pub(super) enum Reading {
    /// This many bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Until the replica closes the connection.
    UntilClose,
    /// The body has ended.
    Done,
}

impl Reading {
    pub(super) fn of(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked(Chunked::Size),
            Framing::UntilClose => Self::UntilClose,
        }
    }
}

/// The request body on its way out: frames at hand are gathered after the head and written
/// together, small ones copied next to the head, larger ones written from where they are.
struct Outgoing {
    /// `None` once it has ended.
    body: Option<Body>,
    chunked: bool,
    /// What the declared length still allows (`None`: chunked, or no body).
    left: Option<u64>,
    /// Bytes of the link's write buffer already written.
    written: usize,
    /// What waits to be written after the write buffer, in order.
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    queued: usize,
    /// The write failed (the replica's answer may still be there to read).
    failed: Option<io::Error>,
    /// All of the request is written.
    sent: bool,
}

impl Outgoing {
    fn new(body: Body, sending: Sending) -> Self {
        let (body, left) = match sending {
            Sending::Nothing => (None, None),
            Sending::Length(n) => ((n > 0).then_some(body), Some(n)),
            Sending::Chunked => (Some(body), None),
        };
        Self {
            body,
            chunked: sending == Sending::Chunked,
            left,
            written: 0,
            queue: VecDeque::new(),
            queued: 0,
            failed: None,
            sent: false,
        }
    }

    fn poll_send(
        &mut self,
        tcp: &mut TcpStream,
        write: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        loop {
            self.gather(write, cx)?;
            if write.len() == self.written && self.queue.is_empty() {
                write.clear();
                self.written = 0;
                return match self.body {
                    None => {
                        self.sent = true;
                        Poll::Ready(Ok(()))
                    }
                    Some(_) => Poll::Pending, // the body's waker is registered
                };
            }
            ready!(self.poll_write(tcp, write, cx))?;
        }
    }

    /// Takes the body's frames that are at hand, up to [`GATHER`] bytes or [`SLICES`] pieces.
    fn gather(&mut self, write: &mut Vec<u8>, cx: &mut Context<'_>) -> Result<(), SendError> {
        while let Some(body) = &mut self.body {
            if self.queue.len() + 3 > SLICES || write.len() - self.written + self.queued >= GATHER {
                return Ok(());
            }
            let data = match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    _ => continue, // empty, or trailers (not forwarded)
                },
                Poll::Ready(Some(Err(e))) => return Err(SendError::RequestBody(e)),
                Poll::Ready(None) => {
                    self.body = None;
                    if self.left.is_some_and(|n| n > 0) {
                        return Err(SendError::BodyLength);
                    }
                    if self.chunked {
                        self.push(write, Bytes::from_static(b"0\r\n\r\n"));
                    }
                    return Ok(());
                }
            };
            if let Some(left) = &mut self.left {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or(SendError::BodyLength)?;
                if *left == 0 {
                    self.body = None; // all of it: no need to wait for its end
                }
            }
            if self.chunked {
                let mut line = Vec::with_capacity(18);
                h1::write_chunk_size(&mut line, data.len());
                self.push(write, Bytes::from(line));
                self.push(write, data);
                self.push(write, Bytes::from_static(b"\r\n"));
            } else {
                self.push(write, data);
            }
        }
        Ok(())
    }

    /// Appends to what waits to be written: copied next to the head while nothing is queued and
    /// it is small, else queued as it is.
    fn push(&mut self, write: &mut Vec<u8>, data: Bytes) {
        if self.queue.is_empty() && data.len() <= COPY_MAX {
            write.extend_from_slice(&data);
        } else {
            self.queued += data.len();
            self.queue.push_back(data);
        }
    }

    /// Writes what is gathered, until all of it is out or the socket is full.
    fn poll_write(
        &mut self,
        tcp: &mut TcpStream,
        write: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        while write.len() > self.written || !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); SLICES];
            slices[0] = IoSlice::new(&write[self.written..]);
            for (slice, data) in slices[1..].iter_mut().zip(&self.queue) {
                *slice = IoSlice::new(data);
            }
            let n = ready!(Pin::new(&mut *tcp).poll_write_vectored(cx, &slices))
                .map_err(SendError::Io)?;
            if n == 0 {
                return Poll::Ready(Err(SendError::Io(io::ErrorKind::WriteZero.into())));
            }
            self.advance(write, n);
        }
        Poll::Ready(Ok(()))
    }

    /// Drops the first `n` bytes of what waits to be written.
    fn advance(&mut self, write: &mut Vec<u8>, mut n: usize) {
        let buffered = write.len() - self.written;
        if n < buffered {
            self.written += n;
            return;
        }
        n -= buffered;
        write.clear();
        self.written = 0;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            let taken = n.min(front.len());
            front.advance(taken);
            self.queued -= taken;
            n -= taken;
            if front.is_empty() {
                self.queue.pop_front();
            }
        }
    }
}
