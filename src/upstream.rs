//! Connections to app servers: HTTP/1.1 over plain TCP, kept alive and
//! reused.
//!
//! Each server has its own [`ConnPool`], a small stack of idle connections
//! behind a std mutex (held only to push or pop, never across an await). A
//! connection goes back to the pool only once its response body has been
//! read to the end, which is when hyper can send the next request on it.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proxy::body::RequestBody;

/// Idle connections older than this are closed rather than reused: app
/// servers commonly close keep-alive connections after 60 s or less.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// At most this many idle connections are kept per server.
const MAX_IDLE_CONNS: usize = 256;

pub type Sender = SendRequest<RequestBody>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} timed out")]
    Timeout { addr: String },
    #[error("connect to {addr} failed: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/1.1 handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: hyper::Error,
    },
}

impl ConnectError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnectError::Timeout { .. })
    }
}

/// A connection ready to carry a request.
pub struct Conn {
    pub sender: Sender,
    /// Whether it came from the pool (and so may have been closed by the
    /// server while idle).
    pub reused: bool,
}

#[derive(Default)]
pub struct ConnPool {
    idle: Mutex<Vec<(Sender, Instant)>>,
}

impl ConnPool {
    /// An idle connection that is still open, if any.
    pub fn checkout(&self) -> Option<Conn> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < MAX_IDLE {
                return Some(Conn {
                    sender,
                    reused: true,
                });
            }
        }
        None
    }

    /// Returns a connection whose last response was read to the end.
    pub fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_CONNS {
            idle.push((sender, Instant::now()));
        }
    }

    /// Drops every idle connection (the server was removed or changed).
    pub fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

/// The most an upstream connection buffers as it reads: about the largest
/// response head accepted (hyper refuses a head still incomplete past it),
/// and the largest body chunk handed to the client side. hyper's default
/// (~400 KiB) let every slow-reading client hold
/// close to 1 MiB of berth's memory (this chunk queued for the client, the
/// next one read); HAProxy and nginx use 16 KiB and less.
const READ_BUFFER_MAX: usize = 64 * 1024;

/// Opens a new connection to the first of `addrs` that answers, all within
/// `timeout`, and performs the HTTP/1.1 handshake. `name` is the address as
/// configured, for errors.
pub async fn connect(
    addrs: &[SocketAddr],
    name: &str,
    timeout: Duration,
) -> Result<Conn, ConnectError> {
    let name = name.to_owned();
    let stream = tokio::time::timeout(timeout, async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name resolved to no address",
            )
        }))
    })
    .await
    .map_err(|_| ConnectError::Timeout { addr: name.clone() })?
    .map_err(|source| ConnectError::Io {
        addr: name.clone(),
        source,
    })?;
    // Small requests and responses: don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::Builder::new()
        .max_buf_size(READ_BUFFER_MAX)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr: name, source })?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(error = %err, "upstream connection ended");
        }
    });
    Ok(Conn {
        sender,
        reused: false,
    })
}
