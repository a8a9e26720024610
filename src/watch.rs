//! Watching a client connection's bytes: idle keep-alive connections, heads
//! that arrive too slowly (slowloris), the raw head of each request, and the
//! first line of a head that never became a request, for the access log.
//!
//! [`Watched`] wraps the (decrypted) client stream that hyper reads and
//! writes. It notes the time of the last byte either way and, between
//! requests, keeps the raw bytes of the next head as they arrive. hyper
//! folds framing headers before the request path sees them (it drops
//! `Content-Length` next to `Transfer-Encoding`, and merges equal
//! duplicates); [`Activity::head_complete`] counts them in the raw head so
//! such requests can be refused as SPEC §4 asks. The
//! connection task's watchdog ([`Activity::expired`]) sleeps until the
//! next deadline: `header_read_timeout` after the first byte of a head,
//! else `idle_timeout` after the last byte while no request is in flight.
//! On a head timeout it asks the stream to answer 408 itself, since hyper
//! is only waiting to read. When hyper itself refuses a head it cannot
//! parse (400, 431), its response has an empty body; [`Watched`] writes
//! it with berth's short text body instead, as SPEC §4 asks of every
//! error berth generates.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Headers counted in a raw head at most (hyper refuses more than 100).
const MAX_HEADERS: usize = 128;

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 61\r\nconnection: close\r\n\r\n408 Request Timeout: the request head did not arrive in time\n";

/// The body bytes of the 408 response, for `%b`.
pub const TIMEOUT_BODY_LEN: u64 = 61;

/// What the watchdog decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No byte for `idle_timeout` and no request in flight.
    Idle,
    /// A head started and did not complete within `header_read_timeout`.
    HeadTimeout,
}

/// Shared between the stream wrapper, the request path and the watchdog.
pub struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written.
    last_ms: AtomicU64,
    /// Milliseconds since `start` (+1) when the current head began; 0 = none.
    head_ms: AtomicU64,
    /// Requests of the connection not yet finished.
    pub in_flight: std::sync::Arc<AtomicUsize>,
    /// Whether heads are watched (HTTP/1.x; HTTP/2 has its own framing).
    watch_heads: bool,
    /// The raw bytes of the current head, up to its blank line.
    head: Mutex<Vec<u8>>,
    head_max: usize,
    head_begun: Notify,
    timed_out: AtomicBool,
    reader: Mutex<Option<Waker>>,
    /// Requests whose head arrived.
    requests: AtomicU64,
    /// Body bytes of a hyper refusal rewritten with a text body, for `%b`.
    refusal_body: AtomicU64,
}

impl Activity {
    /// `head_max`: how much of a head to keep (`max_header_bytes`).
    pub fn new(
        in_flight: std::sync::Arc<AtomicUsize>,
        watch_heads: bool,
        head_max: usize,
    ) -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(0),
            in_flight,
            watch_heads,
            head: Mutex::new(Vec::new()),
            head_max,
            head_begun: Notify::new(),
            timed_out: AtomicBool::new(false),
            reader: Mutex::new(None),
            requests: AtomicU64::new(0),
            refusal_body: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// The request path got a complete head: stop timing it, and return
    /// what its raw bytes showed (nothing when they were not seen whole, as
    /// for a pipelined request or HTTP/2).
    pub fn head_complete(&self) -> RawHead {
        self.head_ms.store(0, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !self.watch_heads {
            return RawHead::default();
        }
        let mut head = lock(&self.head);
        let raw = match head_end(&head) {
            Some(end) => RawHead {
                framing: Framing::count(&head[..end]),
                request_line: first_line(&head).map(bytes::Bytes::copy_from_slice),
            },
            None => RawHead::default(),
        };
        head.clear();
        raw
    }

    /// Whether this is an HTTP/1.x connection (whose heads are watched).
    pub fn watches_heads(&self) -> bool {
        self.watch_heads
    }

    /// Whether closing the connection now would lose nothing: no request
    /// in flight and no part of a head received. A connection that has
    /// not had its first request yet is not idle until `grace` after it
    /// opened: its client has just connected and is about to send.
    pub fn is_idle(&self, grace: Duration) -> bool {
        let quiet = self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_ms.load(Ordering::Relaxed) == 0;
        quiet && (self.requests.load(Ordering::Relaxed) > 0 || self.start.elapsed() >= grace)
    }

    /// What arrived of the current head's first line (for a request that
    /// never parsed), or `None` if nothing did.
    pub fn first_line(&self) -> Option<Vec<u8>> {
        first_line(&lock(&self.head)).map(<[u8]>::to_vec)
    }

    /// The body bytes sent with hyper's refusal of an unparsable head
    /// (0 if there was none).
    pub fn refusal_body_len(&self) -> u64 {
        self.refusal_body.load(Ordering::Relaxed)
    }

    /// Resolves when the connection has been idle too long or its head is
    /// overdue.
    pub async fn expired(&self, header_read_timeout: Duration, idle_timeout: Duration) -> Expiry {
        loop {
            let head = self.head_ms.load(Ordering::Relaxed);
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            let deadline = if head != 0 && !busy {
                self.at(head - 1) + header_read_timeout
            } else {
                self.at(self.last_ms.load(Ordering::Relaxed)) + idle_timeout
            };
            if Instant::now() >= deadline {
                if head != 0 && !busy {
                    return Expiry::HeadTimeout;
                }
                if !busy {
                    return Expiry::Idle;
                }
            }
            let deadline = deadline.max(Instant::now() + Duration::from_millis(10));
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = self.head_begun.notified() => {}
            }
        }
    }

    /// Makes the stream answer 408 and end; hyper is woken to read it.
    pub fn time_out_head(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
        if let Some(waker) = lock(&self.reader).take() {
            waker.wake();
        }
    }

    pub(crate) fn saw_read(&self, bytes: &[u8]) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if !self.watch_heads || bytes.is_empty() || self.in_flight.load(Ordering::Relaxed) > 0 {
            return;
        }
        if self.head_ms.load(Ordering::Relaxed) == 0 {
            self.head_ms.store(now + 1, Ordering::Relaxed);
            self.head_begun.notify_one();
        }
        let mut head = lock(&self.head);
        if head.len() < self.head_max && head_end(&head).is_none() {
            // Blank lines before a request line are allowed (RFC 9112 §2.2).
            let bytes = if head.is_empty() {
                trim_leading_newlines(bytes)
            } else {
                bytes
            };
            let room = self.head_max - head.len();
            head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
}

/// Where a head ends: just past its blank line.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A head's first line without its line ending; `None` if empty.
fn first_line(head: &[u8]) -> Option<&[u8]> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!line.is_empty()).then_some(line)
}

/// What a request's raw head showed.
#[derive(Debug, Clone, Default)]
pub struct RawHead {
    pub framing: Option<Framing>,
    /// The request line exactly as received, for `%r`.
    pub request_line: Option<bytes::Bytes>,
}

/// How many framing headers a raw head carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Framing {
    pub content_lengths: usize,
    pub transfer_encodings: usize,
}

impl Framing {
    pub(crate) fn count(head: &[u8]) -> Option<Framing> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        request.parse(head).ok()?;
        let mut framing = Framing::default();
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                framing.content_lengths += 1;
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                framing.transfer_encodings += 1;
            }
        }
        Some(framing)
    }
}

fn trim_leading_newlines(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// hyper's response to a head it could not parse, rewritten with berth's
/// text body for its status; `None` for any other write. hyper's refusals
/// are 4xx or 505 with exactly `connection: close`, `content-length: 0`
/// and `date`, where berth's own responses have a `content-type` and an
/// app server's pass through with its headers.
fn refusal(data: &[u8]) -> Option<Vec<u8>> {
    let head = data.strip_suffix(b"\r\n\r\n")?;
    if !(head.starts_with(b"HTTP/1.1 4") || head.starts_with(b"HTTP/1.1 505 ")) {
        return None;
    }
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next()?;
    let fields: Vec<&[u8]> = lines.collect();
    let named = |line: &[u8], name: &[u8]| {
        line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name)
    };
    let only_hypers = fields.iter().all(|l| {
        l.eq_ignore_ascii_case(b"connection: close")
            || l.eq_ignore_ascii_case(b"content-length: 0")
            || named(l, b"date: ")
    });
    if !only_hypers || !fields.iter().any(|l| named(l, b"content-length: ")) {
        return None;
    }
    let status = std::str::from_utf8(data.get(9..12)?).ok()?.parse().ok()?;
    let body = crate::proxy::error_body(http::StatusCode::from_u16(status).ok()?);
    let mut out = Vec::with_capacity(data.len() + body.len() + 64);
    out.extend_from_slice(status_line);
    out.extend_from_slice(b"\r\n");
    for line in fields.iter().filter(|l| !named(l, b"content-length: ")) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    Some(out)
}

/// A client stream whose activity is watched.
pub struct Watched<IO> {
    inner: IO,
    activity: std::sync::Arc<Activity>,
    /// How much of the 408 response has been written.
    timeout_written: usize,
    /// A refusal of hyper's being written in its place, and how much of it.
    refusal: Option<(Vec<u8>, usize)>,
}

impl<IO> Watched<IO> {
    pub fn new(inner: IO, activity: std::sync::Arc<Activity>) -> Watched<IO> {
        Watched {
            inner,
            activity,
            timeout_written: 0,
            refusal: None,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Watched<IO> {
    /// Writes the 408 response; `Ready(Ok(()))` once it is out (or the
    /// client is gone).
    fn poll_write_timeout(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.timeout_written < TIMEOUT_RESPONSE.len() {
            let rest = &TIMEOUT_RESPONSE[self.timeout_written..];
            match Pin::new(&mut self.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => self.timeout_written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        let _ = std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx));
        Poll::Ready(Ok(()))
    }

    /// Writes `data`, or berth's version of it if it is hyper's refusal of
    /// an unparsable head; reports `data` written once all of it is out.
    fn poll_write_watched(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        // Between requests, with the bytes of a head that never became one.
        if self.refusal.is_none()
            && self.activity.watch_heads
            && self.activity.in_flight.load(Ordering::Relaxed) == 0
            && !lock(&self.activity.head).is_empty()
        {
            self.refusal = refusal(data).map(|text| (text, 0));
        }
        let result = match &mut self.refusal {
            None => Pin::new(&mut self.inner).poll_write(cx, data),
            Some((text, written)) => {
                while *written < text.len() {
                    match std::task::ready!(
                        Pin::new(&mut self.inner).poll_write(cx, &text[*written..])
                    ) {
                        Ok(0) => return Poll::Ready(Ok(0)),
                        Ok(n) => *written += n,
                        Err(err) => return Poll::Ready(Err(err)),
                    }
                }
                let body = text.len() - head_end(text).unwrap_or(text.len());
                self.activity
                    .refusal_body
                    .store(body as u64, Ordering::Relaxed);
                self.refusal = None;
                Poll::Ready(Ok(data.len()))
            }
        };
        if let Poll::Ready(Ok(_)) = result {
            let now = self.activity.now_ms();
            self.activity.last_ms.store(now, Ordering::Relaxed);
        }
        result
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.activity.timed_out.load(Ordering::Relaxed) {
            std::task::ready!(this.poll_write_timeout(cx))?;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head timed out",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.activity.saw_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.activity.watch_heads {
                    let mut reader = lock(&this.activity.reader);
                    if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *reader = Some(cx.waker().clone());
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_watched(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A refusal comes as one buffer; let it be recognised.
        if let [only] = bufs {
            return self.poll_write_watched(cx, only);
        }
        if self.refusal.is_some() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return self.poll_write_watched(cx, first);
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(_)) = result {
            let now = self.activity.now_ms();
            self.activity.last_ms.store(now, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_408_response_declares_its_body_length() {
        let text = std::str::from_utf8(TIMEOUT_RESPONSE).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len() as u64, TIMEOUT_BODY_LEN);
        assert!(text.contains(&format!("content-length: {TIMEOUT_BODY_LEN}\r\n")));
    }

    #[test]
    fn hypers_refusals_get_a_text_body() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 22 Nov 2026 07:48:10 GMT\r\n\r\n";
        let text = String::from_utf8(refusal(hyper).unwrap()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ndate: Sun, 22 Nov 2026 07:48:10 GMT\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 43\r\n\r\n400 Bad Request: the request was malformed\n"
        );
        let large = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(
            refusal(large)
                .unwrap()
                .ends_with(b"\r\n\r\n431 Request Header Fields Too Large\n")
        );
        // Anything else passes as it is: berth's own, an app server's, a body.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\nx-app: 1\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nbody\r\n\r\n",
            b"HTTP/1.1 400",
        ] {
            assert_eq!(refusal(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn head_end_finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    #[test]
    fn framing_headers_are_counted_as_sent() {
        let count = |head: &[u8]| Framing::count(head);
        let both =
            count(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(
            both,
            Some(Framing {
                content_lengths: 1,
                transfer_encodings: 1
            })
        );
        let twice = count(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(twice.map(|f| f.content_lengths), Some(2));
        assert_eq!(
            count(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Framing::default())
        );
        assert_eq!(count(b"not http\r\n\r\n"), None);
    }

    #[test]
    fn the_head_is_kept_between_requests_only() {
        let in_flight = std::sync::Arc::new(AtomicUsize::new(0));
        let activity = Activity::new(in_flight.clone(), true, 8192);
        activity.saw_read(b"\r\nPOST /a HTTP/1.1\r\nContent-Length: 1\r\n");
        assert_eq!(
            activity.first_line().as_deref(),
            Some(&b"POST /a HTTP/1.1"[..])
        );
        activity.saw_read(b"Content-Length: 1\r\n\r\nxGET /next HTTP/1.1\r\n");
        in_flight.fetch_add(1, Ordering::Relaxed);
        let raw = activity.head_complete();
        assert_eq!(raw.framing.map(|f| f.content_lengths), Some(2));
        assert_eq!(raw.request_line.as_deref(), Some(&b"POST /a HTTP/1.1"[..]));
        // Bytes read while a request is in flight are its body, not a head.
        activity.saw_read(b"more body");
        assert_eq!(activity.first_line(), None);
        assert!(activity.head_complete().framing.is_none());
    }
}
