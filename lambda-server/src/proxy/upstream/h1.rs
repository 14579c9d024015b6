//! HTTP/1.1 towards a replica, without I/O: the request head written from a request the front
//! has already parsed and checked, the response head parsed with httparse, and the framing of
//! the response body (RFC 9112 §6). The client-facing side stays on hyper; this side only ever
//! talks to the platform's own replicas, one request at a time per connection.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use bytes::{Bytes, BytesMut};

/// A response head larger than this is refused: hyper's own limit (its largest read buffer), as
/// its client allowed before.
pub(super) const MAX_HEAD: usize = 8192 + 4096 * 100;
/// Header fields of a response head, at most (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// A chunk-size line (with its extensions), or a trailer line, longer than this is refused.
const MAX_LINE: usize = 4 * 1024;

/// Why a replica's answer cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The response head is not HTTP/1.x, as httparse found.
    Syntax(httparse::Error),
    /// The response head is HTTP/1.x, but says something impossible.
    Head(&'static str),
    /// The response head is larger than `MAX_HEAD`.
    HeadTooLarge,
    /// `Content-Length` is not one decimal number.
    ContentLength,
    /// `101 Switching Protocols`, to a request that asked for no upgrade.
    Upgrade,
    /// The chunked body breaks its framing.
    Chunk(&'static str),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Syntax(e) => write!(f, "its response head is malformed ({e})"),
            Self::Head(why) => write!(f, "its response head is malformed ({why})"),
            Self::HeadTooLarge => write!(f, "its response head is over {MAX_HEAD} bytes"),
            Self::ContentLength => f.write_str("its Content-Length is not one number"),
            Self::Upgrade => f.write_str("it switched protocols, which nobody asked for"),
            Self::Chunk(why) => write!(f, "its chunked body is malformed ({why})"),
        }
    }
}

/// How the request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sending {
    /// No body, and no length said (a `GET`).
    Nothing,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (a body of unknown length).
    Chunked,
}

impl Sending {
    /// The framing of a body that has ended already (`empty`), or has exactly `exact` bytes, or
    /// neither, for `method`. A `POST`, `PUT` or `PATCH` with no body says so with a zero length.
    pub(super) fn of(method: &Method, empty: bool, exact: Option<u64>) -> Self {
        match exact {
            _ if empty && !matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
                Self::Nothing
            }
            _ if empty => Self::Length(0),
            Some(n) => Self::Length(n),
            None => Self::Chunked,
        }
    }
}

/// Appends the request head to `out`. The target is in origin form, and `host` (visible ASCII)
/// is written as the `Host` when the map has none; the header names and values are `http`'s
/// (tokens and field values without CR, LF or NUL, so nothing in them can end a line).
/// `Content-Length` and `Transfer-Encoding` are the request's own framing, written from
/// `sending` and never copied from the map.
pub(super) fn write_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    host: &str,
    headers: &HeaderMap,
    sending: Sending,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        has_host |= name == header::HOST;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match sending {
        Sending::Nothing => {}
        Sending::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Sending::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the line that starts a chunk of `len` bytes.
pub(super) fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    use std::io::Write as _;
    let _ = write!(out, "{len:x}\r\n");
}

/// How the response's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (`HEAD`, `204`, `304`).
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the replica closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(super) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection can carry another request once the body has ended.
    pub reusable: bool,
}

/// Parses the response head at the start of `buf` and removes it from there; `None` while it is
/// not complete. An interim (`1xx`) response comes out as a head too; the caller skips it.
pub(super) fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, Malformed> {
    // Uninitialised: zeroing room for every possible field would cost more than the parse.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Malformed::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed::HeadTooLarge),
        Err(e) => return Err(Malformed::Syntax(e)),
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Malformed::Head("invalid status"))?;
    let http10 = response.version == Some(0);
    // Each field's name, and where its value sits in the head (the values become slices of
    // one `Bytes` once the head is split off the buffer).
    let start = buf.as_ptr() as usize;
    let mut named = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let value = field.value.as_ptr() as usize - start;
        named.push((
            header_name(field.name.as_bytes())?,
            value,
            value + field.value.len(),
        ));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(named.len());
    let mut fields = Fields::default();
    for (name, value_start, value_end) in named {
        let value = HeaderValue::from_maybe_shared(head.slice(value_start..value_end))
            .map_err(|_| Malformed::Head("invalid header value"))?;
        fields.note(&name, &value)?;
        headers.append(name, value);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Malformed::Upgrade);
    }
    let (framing, framed_once) = fields.framing(method, status);
    let reusable = framed_once
        && !fields.close
        && (!http10 || fields.keep_alive)
        && framing != Framing::UntilClose;
    Ok(Some(Head {
        status,
        headers,
        framing,
        reusable,
    }))
}

/// A header name; the platform's own ones (which every runtime sends) without an allocation.
fn header_name(raw: &[u8]) -> Result<HeaderName, Malformed> {
    use crate::http::api::names;
    for known in [&names::REQUEST_ID, &names::LAMBDA_VERSION] {
        if raw.eq_ignore_ascii_case(known.as_str().as_bytes()) {
            return Ok(known.clone());
        }
    }
    HeaderName::from_bytes(raw).map_err(|_| Malformed::Head("invalid header name"))
}

/// What the response's framing fields say.
#[derive(Debug, Default)]
struct Fields {
    length: Option<u64>,
    /// `Transfer-Encoding` present, and whether its last coding is `chunked`.
    encoding: Option<bool>,
    close: bool,
    keep_alive: bool,
}

impl Fields {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), Malformed> {
        if name == header::CONTENT_LENGTH {
            // Repeated (in one field or several) it must say the same number each time.
            for part in value.as_bytes().split(|b| *b == b',') {
                let n = decimal(part.trim_ascii()).ok_or(Malformed::ContentLength)?;
                if self.length.is_some_and(|m| m != n) {
                    return Err(Malformed::ContentLength);
                }
                self.length = Some(n);
            }
        } else if name == header::TRANSFER_ENCODING {
            let last = value
                .as_bytes()
                .rsplit(|b| *b == b',')
                .next()
                .unwrap_or(b"");
            self.encoding = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION {
            for token in value.as_bytes().split(|b| *b == b',') {
                let token = token.trim_ascii();
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }

    /// The body's framing, and whether it is framed by one field only (a message with both a
    /// `Transfer-Encoding` and a `Content-Length` may have been meant to smuggle a second
    /// message: its connection is not used again).
    fn framing(&self, method: &Method, status: StatusCode) -> (Framing, bool) {
        let bodiless = *method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let framing = match (self.encoding, self.length) {
            _ if bodiless => Framing::Empty,
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        };
        (framing, !(self.encoding.is_some() && self.length.is_some()))
    }
}

/// A decimal number of at most 19 digits (no sign, no spaces).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// What [`Chunked::decode`] got from the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The buffer ends inside the framing: read more.
    More,
    /// The last chunk and the trailer section are in: the body has ended.
    End,
}

/// The decoder of a chunked body (RFC 9112 §7.1). Trailer fields are read and dropped (the
/// client-facing side does not forward them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes left.
    Data(u64),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// In the trailer section: this many bytes of it so far.
    Trailers(usize),
    /// Over.
    Done,
}

impl Chunked {
    /// Takes what it can from the start of `buf`.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        loop {
            match *self {
                Self::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::More);
                    };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 {
                        Self::Trailers(0)
                    } else {
                        Self::Data(size)
                    };
                }
                Self::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    *self = if left == 0 {
                        Self::DataEnd
                    } else {
                        Self::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Self::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Malformed::Chunk("no CRLF after a chunk's data"));
                    }
                    let _ = buf.split_to(2);
                    *self = Self::Size;
                }
                Self::Trailers(seen) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::More);
                    };
                    let seen = seen + line.len() + 2;
                    if seen > MAX_HEAD {
                        return Err(Malformed::Chunk("trailer section too large"));
                    }
                    *self = if line.is_empty() {
                        Self::Done
                    } else {
                        Self::Trailers(seen)
                    };
                }
                Self::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The line at the start of `buf` without its CRLF, taken out of `buf`; `None` while it is not
/// complete. A bare CR or LF is an error: a parser that read it as a line end where the replica
/// did not would read the rest of the stream differently.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Malformed> {
    let Some(lf) = buf.iter().take(MAX_LINE + 2).position(|b| *b == b'\n') else {
        return if buf.len() > MAX_LINE + 1 {
            Err(Malformed::Chunk("line too long"))
        } else {
            Ok(None)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' || buf[..lf - 1].contains(&b'\r') {
        return Err(Malformed::Chunk("bare CR or LF"));
    }
    let mut line = buf.split_to(lf + 1);
    line.truncate(lf - 1);
    Ok(Some(line))
}

/// The size of a chunk-size line: hex digits, then optional extensions (skipped).
fn chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Malformed::Chunk("no chunk size"));
    }
    if digits > 15 {
        return Err(Malformed::Chunk("chunk size too large"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(Malformed::Chunk("invalid chunk size"));
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| Malformed::Chunk("size"))?;
    u64::from_str_radix(text, 16).map_err(|_| Malformed::Chunk("invalid chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, method: Method) -> Result<Option<Head>, Malformed> {
        parse_head(&mut BytesMut::from(raw), &method)
    }

    fn framing(raw: &str) -> (Framing, bool) {
        let h = head(raw, Method::POST).unwrap().unwrap();
        (h.framing, h.reusable)
    }

    #[test]
    fn a_request_head_is_written_with_its_own_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9"));
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        // The client's framing is never copied: the body's own is written.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("x"));
        let mut out = Vec::new();
        write_head(
            &mut out,
            &Method::POST,
            "/a?b=c",
            "10.0.0.1:80",
            &headers,
            Sending::Length(5),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=c HTTP/1.1\r\nhost: 127.0.0.1:9\r\nx-a: 1\r\nx-a: 2\r\n\
             content-length: 5\r\n\r\n"
        );
        let mut out = Vec::new();
        write_head(
            &mut out,
            &Method::GET,
            "/",
            "127.0.0.1:9",
            &HeaderMap::new(),
            Sending::Nothing,
        );
        // The request has no `Host`: the replica's is written.
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\r\n");
        let mut out = Vec::new();
        write_head(
            &mut out,
            &Method::PUT,
            "/",
            "h:1",
            &HeaderMap::new(),
            Sending::Chunked,
        );
        assert_eq!(
            out,
            b"PUT / HTTP/1.1\r\nhost: h:1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut out = Vec::new();
        write_chunk_size(&mut out, 255);
        assert_eq!(out, b"ff\r\n");
    }

    #[test]
    fn a_request_body_is_framed_by_what_is_known_of_it() {
        assert_eq!(Sending::of(&Method::GET, true, Some(0)), Sending::Nothing);
        assert_eq!(
            Sending::of(&Method::POST, true, Some(0)),
            Sending::Length(0)
        );
        assert_eq!(Sending::of(&Method::PATCH, true, None), Sending::Length(0));
        assert_eq!(
            Sending::of(&Method::POST, false, Some(7)),
            Sending::Length(7)
        );
        assert_eq!(
            Sending::of(&Method::GET, false, Some(7)),
            Sending::Length(7)
        );
        assert_eq!(Sending::of(&Method::POST, false, None), Sending::Chunked);
    }

    #[test]
    fn a_head_comes_out_whole_or_not_at_all() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
        assert!(parse_head(&mut buf, &Method::GET).unwrap().is_none());
        buf.extend_from_slice(b"Luna-Request-Id: 1,x\r\nX-Other: y\r\n\r\nhi");
        let h = parse_head(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.framing, Framing::Length(2));
        assert!(h.reusable);
        assert_eq!(h.headers["luna-request-id"], "1,x");
        assert_eq!(h.headers["x-other"], "y");
        assert_eq!(h.headers.len(), 3);
        assert_eq!(&buf[..], b"hi", "the body stays in the buffer");
    }

    #[test]
    fn the_body_is_framed_as_rfc_9112_says() {
        let ok = "HTTP/1.1 200 OK\r\n";
        assert_eq!(
            framing(&format!("{ok}transfer-encoding: chunked\r\n\r\n")),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing(&format!("{ok}transfer-encoding: gzip, chunked\r\n\r\n")),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing(&format!("{ok}transfer-encoding: chunked, gzip\r\n\r\n")),
            (Framing::UntilClose, false)
        );
        // Both: the encoding wins, and the connection is not used again.
        assert_eq!(
            framing(&format!(
                "{ok}content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
            )),
            (Framing::Chunked, false)
        );
        assert_eq!(framing(&format!("{ok}\r\n")), (Framing::UntilClose, false));
        assert_eq!(
            framing(&format!(
                "{ok}content-length: 3, 3\r\ncontent-length: 3\r\n\r\n"
            )),
            (Framing::Length(3), true)
        );
        assert_eq!(
            framing(&format!(
                "{ok}content-length: 3\r\nconnection: Close\r\n\r\n"
            )),
            (Framing::Length(3), false)
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n"),
            (Framing::Length(3), false)
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 3\r\nconnection: keep-alive\r\n\r\n"),
            (Framing::Length(3), true)
        );
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            assert_eq!(
                framing(&format!("HTTP/1.1 {status}\r\ncontent-length: 3\r\n\r\n")),
                (Framing::Empty, true)
            );
        }
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", Method::HEAD);
        assert_eq!(h.unwrap().unwrap().framing, Framing::Empty);
    }

    #[test]
    fn bad_heads_are_refused_with_their_reason() {
        let bad = |raw: &str| head(raw, Method::GET).unwrap_err();
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        ] {
            assert_eq!(bad(raw), Malformed::ContentLength, "{raw:?}");
        }
        assert!(matches!(
            bad("HTTP/1.1 2x0 OK\r\n\r\n"),
            Malformed::Syntax(_)
        ));
        assert!(matches!(bad("SMTP ready\r\n\r\n"), Malformed::Syntax(_)));
        assert!(matches!(
            bad("HTTP/1.1 200 OK\r\nbad name: 1\r\n\r\n"),
            Malformed::Syntax(_)
        ));
        assert_eq!(bad("HTTP/1.1 101 Switching\r\n\r\n"), Malformed::Upgrade);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(
            bad(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            Malformed::HeadTooLarge
        );
        let long = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(bad(&long), Malformed::HeadTooLarge);
        assert!(!Malformed::HeadTooLarge.to_string().is_empty());
    }

    /// Decodes `wire` fed in pieces of `step` bytes: the body, and whether it ended.
    fn dechunk(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), Malformed> {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match state.decode(&mut buf)? {
                    Decoded::Data(b) => body.extend_from_slice(&b),
                    Decoded::More => break,
                    Decoded::End => return Ok((body, true)),
                }
            }
        }
        Ok((body, false))
    }

    #[test]
    fn chunked_bodies_decode_however_they_are_split() {
        let wire = b"5\r\nhello\r\n1;ext=\"a b\"\r\n \r\nA \r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            assert_eq!(
                dechunk(wire, step).unwrap(),
                (b"hello 0123456789".to_vec(), true),
                "step {step}"
            );
        }
        assert_eq!(dechunk(b"5\r\nhel", 100).unwrap(), (b"hel".to_vec(), false));
        assert_eq!(dechunk(b"0\r\n\r\n", 1).unwrap(), (Vec::new(), true));
    }

    #[test]
    fn broken_chunk_framing_is_refused() {
        for wire in [
            &b"5\r\nhelloXX0\r\n\r\n"[..],
            b"\r\n",
            b"g\r\n",
            b"5 x\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\r\nhello\r\n",
            b"1234567890abcdef0\r\n",
            b"-1\r\n",
        ] {
            assert!(
                dechunk(wire, 100).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let long = format!("1;{}\r\n", "e".repeat(MAX_LINE));
        assert!(dechunk(long.as_bytes(), 100).is_err());
    }
}
