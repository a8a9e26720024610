//! Bodies on the request path.
//!
//! [`RequestBody`] carries the client's body upstream, enforcing
//! `max_body_bytes` as it streams. [`ResponseBody`] carries the app
//! server's (or berth's own) body to the client; it counts the bytes sent,
//! returns the upstream connection to its pool once the body has been read
//! to the end, and writes the access log line when hyper drops it, which is
//! when the response is finished or abandoned.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::accesslog::{AccessLog, Entry};
use crate::runtime::Server;
use crate::upstream::Sender;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than max_body_bytes")]
    TooLarge,
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// What went wrong with a request body on the client's side, so the
/// caller answers for it (413, 400) rather than blame the app server.
#[derive(Debug, Default)]
pub struct BodyFaults {
    /// The body passed `max_body_bytes`.
    pub too_large: AtomicBool,
    /// The client's body broke off or was malformed (a bad chunk size, a
    /// DATA frame past `content-length`).
    pub broken: AtomicBool,
}

/// The client's request body on its way upstream.
pub struct RequestBody {
    inner: Option<Incoming>,
    limit: Option<u64>,
    seen: u64,
    faults: Arc<BodyFaults>,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: Option<u64>, faults: Arc<BodyFaults>) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            limit,
            seen: 0,
            faults,
        }
    }

    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            limit: None,
            seen: 0,
            faults: Arc::default(),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            this.seen += data.map_or(0, |d| d.len() as u64);
            if this.limit.is_some_and(|limit| this.seen > limit) {
                this.faults.too_large.store(true, Ordering::Relaxed);
                this.inner = None;
                return Poll::Ready(Some(Err(BodyError::TooLarge)));
            }
        }
        if let Some(Err(_)) = &frame {
            this.faults.broken.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame.map(|f| f.map_err(BodyError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// How much of a request body berth still reads, and for how long, after
/// the app server answered without it: enough for a form or a small upload
/// to finish, so the client sees the answer (an HTTP/2 stream reset while
/// the client is still sending makes some clients drop the response).
const DRAIN_MAX_BYTES: u64 = 256 * 1024;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take().filter(|b| !b.is_end_stream()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut body = std::pin::pin!(inner);
                let mut read = 0u64;
                while read <= DRAIN_MAX_BYTES {
                    match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                        Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                        Some(Err(_)) | None => return,
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
        });
    }
}

/// What the request path knows for the access log line before the
/// response body has been sent.
pub struct PendingLog {
    pub log: AccessLog,
    pub counters: Arc<crate::metrics::Counters>,
    pub entry: Entry,
    pub started: Instant,
}

/// Keeps a server's in-flight count raised while its response is sent.
pub struct InFlight(Arc<Server>);

impl InFlight {
    pub fn new(server: Arc<Server>) -> InFlight {
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(server)
    }

    pub fn server(&self) -> &Arc<Server> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Source {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

/// A response body on its way to the client.
pub struct ResponseBody {
    source: Source,
    sent: u64,
    /// The upstream connection, returned to its server's pool at the end.
    upstream: Option<(Sender, InFlight)>,
    log: Option<PendingLog>,
    /// Dropped with the body: per-connection in-flight accounting.
    _guard: Option<Box<dyn Send + Sync>>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::new(Source::Full(Some(bytes).filter(|b| !b.is_empty())))
    }

    pub fn upstream(body: Incoming, sender: Option<Sender>, in_flight: InFlight) -> ResponseBody {
        let mut this = ResponseBody::new(Source::Upstream(body));
        this.upstream = sender.map(|s| (s, in_flight));
        this
    }

    fn new(source: Source) -> ResponseBody {
        ResponseBody {
            source,
            sent: 0,
            upstream: None,
            log: None,
            _guard: None,
        }
    }

    pub fn set_log(&mut self, log: PendingLog) {
        self.log = Some(log);
    }

    pub fn set_guard(&mut self, guard: Box<dyn Send + Sync>) {
        self._guard = Some(guard);
    }

    fn finished(&mut self) {
        if let Some((sender, in_flight)) = self.upstream.take() {
            in_flight.server().conns.checkin(sender);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = match &mut this.source {
            Source::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Source::Upstream(body) => ready!(Pin::new(body).poll_frame(cx)),
        };
        match &frame {
            Some(Ok(frame)) => this.sent += frame.data_ref().map_or(0, |d| d.len() as u64),
            Some(Err(_)) => this.upstream = None,
            None => this.finished(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Full(bytes) => bytes.is_none(),
            Source::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Source::Upstream(body) => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // An upstream body that is already at its end (an empty body hyper
        // never polled) leaves its connection reusable.
        if matches!(&self.source, Source::Upstream(body) if body.is_end_stream()) {
            self.finished();
        }
        if let Some(PendingLog {
            log,
            counters,
            mut entry,
            started,
        }) = self.log.take()
        {
            entry.body_bytes = self.sent;
            entry.duration = started.elapsed();
            counters.durations.observe(entry.duration);
            log.log(entry);
        }
    }
}
