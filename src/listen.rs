//! Listeners: bind, accept within `max_connections`, the TLS handshake, and
//! one task per client connection that serves it with hyper until it ends,
//! goes idle, or shutdown closes it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, Write, bounds::Http2ServerConnExec};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::accesslog::Entry;
use crate::config::{self, Limits, ProxyProtocol};
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

/// Everything one listener's connections share.
pub struct Listener {
    pub info: Arc<ListenerInfo>,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    pub connections: Arc<Connections>,
    /// PROXY headers refused, by reason.
    pub rejections: Rejections,
}

impl Listener {
    pub fn new(
        config: config::Listener,
        port: u16,
        tls: Option<TlsAcceptor>,
        limits: Limits,
    ) -> Listener {
        let rejections = Rejections::new(config.bind);
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
        Listener {
            info: Arc::new(ListenerInfo { config, port, hsts }),
            tls,
            limits,
            http1,
            http2,
            connections: Arc::default(),
            rejections,
        }
    }
}

/// Accepts connections until `stop` says so.
pub async fn accept_loop(
    socket: TcpListener,
    listener: Arc<Listener>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    close: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(listener.limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: pause, don't spin.
                    tracing::warn!(error = %err, listener = %listener.info.config.bind, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let guard = ConnectionGuard::new(listener.connections.clone());
        let listener = listener.clone();
        let shared = shared.clone();
        let close = close.clone();
        tokio::spawn(async move {
            connection(stream, peer, &listener, shared, close).await;
            drop((permit, guard));
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: &Listener,
    shared: Arc<Shared>,
    close: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // Behind an L4 balancer: its PROXY header first, before any TLS.
    let config = &listener.info.config;
    let (stream, origin) = if config.proxy_protocol == ProxyProtocol::Off {
        (
            Prefixed::new(Bytes::new(), stream),
            Origin::direct(peer, listener.info.port),
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
                    port: header.port(listener.info.port),
                    client_cert_subject: None,
                    vpce_id: header
                        .vpce_id
                        .as_deref()
                        .and_then(|id| http::HeaderValue::from_str(id).ok()),
                };
                (Prefixed::new(leftover, stream), origin)
            }
            Err(rejection) => {
                listener.rejections.record(peer, &rejection);
                return;
            }
        }
    };
    let Some(acceptor) = &listener.tls else {
        return serve(stream, false, origin, listener, shared, close).await;
    };
    let handshake =
        tokio::time::timeout(listener.limits.header_read_timeout, acceptor.accept(stream));
    match handshake.await {
        Ok(Ok(stream)) => {
            let tls = stream.get_ref().1;
            let h2 = tls.alpn_protocol() == Some(b"h2");
            // Only verified certificates get here (client_ca on the listener).
            let subject = tls.peer_certificates().and_then(crate::tls::client_subject);
            let origin = Origin {
                client_cert_subject: subject.and_then(|s| http::HeaderValue::from_str(&s).ok()),
                ..origin
            };
            serve(stream, h2, origin, listener, shared, close).await;
        }
        Ok(Err(err)) => {
            tracing::debug!(client.addr = %origin.client, error = %err, "TLS handshake failed")
        }
        Err(_) => tracing::debug!(client.addr = %origin.client, "TLS handshake timed out"),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client connection hyper serves, HTTP/1.1 or HTTP/2.
trait Serving: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Serving for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B> Serving for http2::Connection<I, S, TokioExecutor>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    TokioExecutor: Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Serves one client connection with hyper, watching it for idleness and
/// slow heads, and closing it gracefully when shutdown asks.
async fn serve<IO>(
    io: IO,
    h2: bool,
    origin: Origin,
    listener: &Listener,
    shared: Arc<Shared>,
    mut close: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(
        Arc::default(),
        !h2,
        listener.limits.max_header_bytes.max(8192),
    ));
    let peer = origin.client;
    let conn = Arc::new(ConnInfo {
        client: origin.client,
        forwarded_port: origin.port,
        vpce_id: origin.vpce_id,
        client_cert_subject: origin.client_cert_subject,
        listener: listener.info.clone(),
        activity: activity.clone(),
    });
    let log_shared = shared.clone();
    let service = service_fn(move |req| proxy::handle(shared.clone(), conn.clone(), req));
    let io = TokioIo::new(Watched::new(io, activity.clone()));
    // HTTP/2 only when ALPN chose it (SPEC §4), HTTP/1.1 otherwise.
    let mut connection: Pin<Box<dyn Serving + Send>> = if h2 {
        Box::pin(listener.http2.serve_connection(io, service))
    } else {
        Box::pin(listener.http1.serve_connection(io, service).with_upgrades())
    };
    let limits = &listener.limits;
    let mut closing = *close.borrow();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    let mut timed_out = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
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
            _ = close.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    let Err(err) = result else { return };
    // A head that never became a request still gets its access log line.
    let hyper_err = Some(&err);
    let status = if timed_out {
        408
    } else if hyper_err.is_some_and(hyper::Error::is_parse_too_large) {
        431
    } else if hyper_err.is_some_and(hyper::Error::is_parse) {
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
        port: listener.info.port,
        pool: None,
        server: None,
        outcome: None,
        duration: std::time::Duration::ZERO,
    });
}
