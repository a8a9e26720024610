//! Listeners: bind, accept within `max_connections`, the TLS handshake, and
//! one task per client connection that serves it with hyper until it ends,
//! goes idle, or shutdown closes it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::accesslog::Entry;
use crate::config::{self, Limits, ProxyProtocol};
use crate::proxy::body::ResponseBody;
use crate::proxy::{self, ConnInfo, ListenerInfo, Shared};
use crate::proxy_protocol::{self, Prefixed, Rejections};
use crate::watch::{Activity, Expiry, Watched};

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot bind {addr}: {source}{hint}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
        hint: &'static str,
    },
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| {
        let hint = if addr.port() < 1024 && source.kind() == std::io::ErrorKind::PermissionDenied {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        } else {
            ""
        };
        BindError::Io { addr, source, hint }
    })
}

/// Counts open client connections so shutdown can wait for them.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    closed: Notify,
}

impl Connections {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Resolves once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct ConnectionGuard(Arc<Connections>);

impl ConnectionGuard {
    fn new(connections: Arc<Connections>) -> ConnectionGuard {
        connections.open.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(connections)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// Where a connection really comes from: the PROXY header's client when
/// there is one, else the peer.
struct Origin {
    client: SocketAddr,
    /// The port the client connected to (`X-Forwarded-Port`).
    port: u16,
    vpce_id: Option<http::HeaderValue>,
    client_cert_subject: Option<http::HeaderValue>,
}

impl Origin {
    fn direct(peer: SocketAddr, port: u16) -> Origin {
        Origin {
            client: peer,
            port,
            vpce_id: None,
            client_cert_subject: None,
        }
    }
}

/// What a listener's new connections are served with; swapped whole on
/// reload, while connections keep the one they started with.
pub struct Serving {
    pub info: Arc<ListenerInfo>,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Serving {
    pub fn new(
        config: config::Listener,
        port: u16,
        tls: Option<TlsAcceptor>,
        limits: Limits,
    ) -> Serving {
        let hsts = config
            .hsts
            .as_deref()
            .and_then(|v| http::HeaderValue::from_str(v).ok());
        // hyper's own builder for each protocol: hyper-util's `auto` one
        // ignores `http1_only` when serving with upgrades, and would speak
        // HTTP/2 to an HTTP/1.1 connection that opens with its preface.
        let mut http1 = http1::Builder::new();
        http1
            .max_buf_size(limits.max_header_bytes.max(8192))
            .timer(TokioTimer::new());
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        Serving {
            info: Arc::new(ListenerInfo { config, port, hsts }),
            tls,
            limits,
            http1,
            http2,
        }
    }
}

/// One bound listener: what its connections are served with, and what
/// outlives a reload (the socket's connection count, PROXY rejections, the
/// signals that stop it).
pub struct Listener {
    /// The address it is bound to (port 0 in the config resolved).
    pub local: SocketAddr,
    serving: ArcSwap<Serving>,
    pub connections: Arc<Connections>,
    /// PROXY headers refused, by reason.
    pub rejections: Rejections,
    permits: Arc<Semaphore>,
    max_connections: AtomicUsize,
    stop: watch::Sender<bool>,
    close: watch::Sender<bool>,
    cut: watch::Sender<bool>,
}

impl Listener {
    pub fn new(local: SocketAddr, serving: Serving) -> Listener {
        let max = serving.limits.max_connections;
        Listener {
            local,
            rejections: Rejections::new(serving.info.config.bind),
            serving: ArcSwap::from_pointee(serving),
            connections: Arc::default(),
            permits: Arc::new(Semaphore::new(max)),
            max_connections: AtomicUsize::new(max),
            stop: watch::Sender::new(false),
            close: watch::Sender::new(false),
            cut: watch::Sender::new(false),
        }
    }

    pub fn serving(&self) -> Arc<Serving> {
        self.serving.load_full()
    }

    /// New connections are served with `serving` from now on; a changed
    /// `max_connections` applies to them too.
    pub fn update(&self, serving: Serving) {
        let max = serving.limits.max_connections;
        let before = self.max_connections.swap(max, Ordering::Relaxed);
        if max > before {
            self.permits.add_permits(max - before);
        } else if max < before {
            // Permits held by open connections are forgotten as they close.
            let mut owed = before - max;
            owed -= self.permits.forget_permits(owed);
            if owed > 0 {
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    if let Ok(held) = permits.acquire_many_owned(owed as u32).await {
                        held.forget();
                    }
                });
            }
        }
        self.serving.store(Arc::new(serving));
    }

    /// Stops accepting: what is already waiting in the socket's queue is
    /// still accepted and served.
    pub fn stop_accepting(&self) {
        self.stop.send_replace(true);
    }

    /// Asks every connection to close once its requests are done.
    pub fn close_connections(&self) {
        self.close.send_replace(true);
    }

    /// Closes every connection now, requests in flight or not (the end of
    /// `drain_timeout`).
    pub fn cut_connections(&self) {
        self.cut.send_replace(true);
    }
}

/// Accepts connections until the listener is stopped; then takes in what
/// was already queued, so that no client that got through the handshake
/// of TCP is reset.
pub async fn accept_loop(socket: TcpListener, listener: Arc<Listener>, shared: Arc<Shared>) {
    let mut stop = listener.stop.subscribe();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let permit = tokio::select! {
            permit = listener.permits.clone().acquire_owned() => match permit {
                Ok(permit) => Some(permit),
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: pause, don't spin.
                    tracing::warn!(error = %err, listener = %listener.local, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        spawn_connection(stream, peer, &listener, &shared, permit);
    }
    // The queue: connections the kernel completed before we stopped.
    let mut queued = 0;
    loop {
        let next = std::future::poll_fn(|cx| {
            Poll::Ready(match socket.poll_accept(cx) {
                Poll::Ready(accepted) => accepted.ok(),
                Poll::Pending => None,
            })
        });
        let Some((stream, peer)) = next.await else {
            break;
        };
        queued += 1;
        spawn_connection(stream, peer, &listener, &shared, None);
    }
    tracing::info!(listener = %listener.local, queued, "stopped accepting");
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: &Arc<Listener>,
    shared: &Arc<Shared>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let guard = ConnectionGuard::new(listener.connections.clone());
    let serving = listener.serving();
    let listener = listener.clone();
    let shared = shared.clone();
    let close = listener.close.subscribe();
    let mut cut = listener.cut.subscribe();
    tokio::spawn(async move {
        let rejections = &listener.rejections;
        tokio::select! {
            () = connection(stream, peer, &serving, rejections, shared, close) => {}
            _ = cut.wait_for(|cut| *cut) => {}
        }
        drop((permit, guard));
    });
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    serving: &Serving,
    rejections: &Rejections,
    shared: Arc<Shared>,
    close: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // Behind an L4 balancer: its PROXY header first, before any TLS.
    let config = &serving.info.config;
    let (stream, origin) = if config.proxy_protocol == ProxyProtocol::Off {
        (
            Prefixed::new(Bytes::new(), stream),
            Origin::direct(peer, serving.info.port),
        )
    } else {
        let received = proxy_protocol::receive(
            &mut stream,
            peer.ip(),
            config.proxy_protocol,
            &config.proxy_from,
            proxy_protocol::HEADER_TIMEOUT,
        );
        match received.await {
            Ok((header, leftover)) => {
                let origin = Origin {
                    client: header.client(peer),
                    port: header.port(serving.info.port),
                    client_cert_subject: None,
                    vpce_id: header
                        .vpce_id
                        .as_deref()
                        .and_then(|id| http::HeaderValue::from_str(id).ok()),
                };
                (Prefixed::new(leftover, stream), origin)
            }
            Err(rejection) => {
                rejections.record(peer, &rejection);
                return;
            }
        }
    };
    let Some(acceptor) = &serving.tls else {
        return serve(stream, false, origin, serving, shared, close).await;
    };
    let handshake =
        tokio::time::timeout(serving.limits.header_read_timeout, acceptor.accept(stream));
    match handshake.await {
        Ok(Ok(stream)) => {
            shared.counters.handshake(true);
            let tls = stream.get_ref().1;
            let h2 = tls.alpn_protocol() == Some(b"h2");
            // Only verified certificates get here (client_ca on the listener).
            let subject = tls.peer_certificates().and_then(crate::tls::client_subject);
            let origin = Origin {
                client_cert_subject: subject.and_then(|s| http::HeaderValue::from_str(&s).ok()),
                ..origin
            };
            serve(stream, h2, origin, serving, shared, close).await;
        }
        Ok(Err(err)) => {
            shared.counters.handshake(false);
            tracing::debug!(client.addr = %origin.client, error = %err, "TLS handshake failed")
        }
        Err(_) => {
            shared.counters.handshake(false);
            tracing::debug!(client.addr = %origin.client, "TLS handshake timed out")
        }
    }
}

/// A served connection, HTTP/1.1 or HTTP/2, that can be asked to finish.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self)
    }
}

impl<I, S> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self)
    }
}

/// How long a connection that has not sent its first request yet is given
/// to send it once shutdown began: its client has just connected.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

/// Serves one client connection with hyper, watching it for idleness and
/// slow heads, and closing it gracefully when shutdown asks.
async fn serve<IO>(
    io: IO,
    h2: bool,
    origin: Origin,
    serving: &Serving,
    shared: Arc<Shared>,
    close: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(
        Arc::default(),
        !h2,
        serving.limits.max_header_bytes.max(8192),
    ));
    let peer = origin.client;
    let conn = Arc::new(ConnInfo {
        client: origin.client,
        forwarded_port: origin.port,
        vpce_id: origin.vpce_id,
        client_cert_subject: origin.client_cert_subject,
        listener: serving.info.clone(),
        activity: activity.clone(),
    });
    let log_shared = shared.clone();
    let service = service_fn(move |req| proxy::handle(shared.clone(), conn.clone(), req));
    let io = TokioIo::new(Watched::new(io, activity.clone()));
    let result = if h2 {
        let connection = serving.http2.serve_connection(io, service);
        drive(connection, false, &activity, &serving.limits, close).await
    } else {
        let connection = serving.http1.serve_connection(io, service).with_upgrades();
        drive(connection, true, &activity, &serving.limits, close).await
    };
    let (Err(err), timed_out) = result else {
        return;
    };
    // A head that never became a request still gets its access log line.
    let status = if timed_out {
        408
    } else if err.is_parse_too_large() {
        431
    } else if err.is_parse() {
        400
    } else {
        tracing::debug!(client.addr = %peer, error = %err, "connection ended with an error");
        return;
    };
    tracing::debug!(client.addr = %peer, http.status = status, error = %err, "request head refused");
    log_shared.log.log(Entry {
        client: peer.ip().to_canonical(),
        received: SystemTime::now(),
        request_line: activity.first_line().map(bytes::Bytes::from),
        user: None,
        status,
        body_bytes: if timed_out {
            crate::watch::TIMEOUT_BODY_LEN
        } else {
            activity.refusal_body_len()
        },
        referer: None,
        user_agent: None,
        vhost: None,
        port: serving.info.port,
        pool: None,
        server: None,
        outcome: None,
        duration: std::time::Duration::ZERO,
    });
}

/// Runs a connection to its end. Returns its result, and whether its head
/// timed out (408).
///
/// When shutdown asks it to close: HTTP/2 sends GOAWAY at once (streams in
/// progress finish; the client retries the others elsewhere). HTTP/1.1 is
/// closed only where that loses nothing: with a request in flight, hyper
/// closes after its response; a head being received becomes a request
/// first; a connection with no request yet gets [`FIRST_REQUEST_GRACE`] to
/// send one.
async fn drive<C: Graceful>(
    connection: C,
    http1: bool,
    activity: &Activity,
    limits: &Limits,
    mut close: watch::Receiver<bool>,
) -> (Result<(), hyper::Error>, bool) {
    tokio::pin!(connection);
    let mut closing = false;
    let mut asked_to_close = *close.borrow_and_update();
    let mut timed_out = false;
    loop {
        let waiting_to_close = asked_to_close && !closing;
        tokio::select! {
            result = connection.as_mut() => return (result, timed_out),
            expiry = activity.expired(limits.header_read_timeout, limits.idle_timeout), if !closing => {
                closing = true;
                match expiry {
                    Expiry::Idle => connection.as_mut().graceful_shutdown(),
                    Expiry::HeadTimeout => {
                        timed_out = true;
                        activity.time_out_head();
                    }
                }
            }
            _ = close.changed(), if !asked_to_close => asked_to_close = true,
            () = tokio::time::sleep(Duration::from_millis(50)), if waiting_to_close => {}
        }
        if asked_to_close && !closing {
            let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
            if !http1 || busy || activity.is_idle(FIRST_REQUEST_GRACE) {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
