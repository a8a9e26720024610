//! Reading the header off a connection, before anything else reads it.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::{Header, ParseError, Reason, parse, starts_header, trusted, v1};
use crate::config::ProxyProtocol;

/// Why a connection was closed before any HTTP. [`Rejection::reason`] is
/// the `reason` label of `berth_proxy_header_rejected_total`; `Display` is
/// the detail for the log.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("peer {0} is not in proxy_from")]
    UntrustedPeer(IpAddr),
    #[error("no complete PROXY header within {timeout:?} ({received} bytes received)")]
    Timeout { timeout: Duration, received: usize },
    /// A complete header came, then nothing else before the deadline: TLS
    /// and HTTP clients speak first, so the connection is of no use.
    #[error("nothing followed the PROXY header within {0:?}")]
    Silent(Duration),
    #[error("malformed PROXY header: {0}")]
    Malformed(ParseError),
    /// The peer closed (or broke) the connection inside the header.
    #[error("connection ended inside the PROXY header ({received} bytes received)")]
    Truncated {
        received: usize,
        #[source]
        source: Option<io::Error>,
    },
    #[error("a second PROXY header follows the first")]
    Stacked,
    #[error("{0}")]
    Crc(ParseError),
}

impl Rejection {
    /// The SPEC §8 label: `untrusted_peer`, `timeout`, `malformed`,
    /// `stacked` or `crc`.
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn kind(&self) -> Reason {
        match self {
            Rejection::UntrustedPeer(_) => Reason::UntrustedPeer,
            Rejection::Timeout { .. } | Rejection::Silent(_) => Reason::Timeout,
            Rejection::Malformed(_) | Rejection::Truncated { .. } => Reason::Malformed,
            Rejection::Stacked => Reason::Stacked,
            Rejection::Crc(_) => Reason::Crc,
        }
    }
}

impl From<ParseError> for Rejection {
    fn from(err: ParseError) -> Rejection {
        match err {
            ParseError::Crc { .. } => Rejection::Crc(err),
            ParseError::Incomplete { .. }
            | ParseError::Malformed(_)
            | ParseError::NotAllowed(_) => Rejection::Malformed(err),
        }
    }
}

/// SPEC §4a: "a complete valid header within 5 seconds".
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole check for one accepted connection: refuses a `peer` outside
/// `proxy_from` without reading a byte, else [`read_header`].
pub async fn receive<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: IpAddr,
    mode: ProxyProtocol,
    proxy_from: &[ipnet::IpNet],
    timeout: Duration,
) -> Result<(Header, Bytes), Rejection> {
    if !trusted(peer, proxy_from) {
        return Err(Rejection::UntrustedPeer(peer));
    }
    read_header(stream, mode, timeout).await
}

/// Reads the PROXY header that must open `stream`, then makes sure a second
/// one does not follow it, all within `timeout` (SPEC: 5 s).
///
/// Returns the header and the bytes read past it, which belong to TLS or
/// HTTP: wrap the stream in [`Prefixed`] so they are read again. A v2 header
/// is read exactly (16 bytes, then `len`); a v1 line is read in pieces of
/// at most 107 bytes in all, so a few bytes after its CRLF may come along.
///
/// To see whether a second header is stacked behind the first, the first
/// bytes after it are awaited under the same deadline: TLS and HTTP clients
/// always speak first, so a client that stays silent until then is refused
/// (`timeout`), and one that closes the connection instead is let through
/// with nothing left over.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyProtocol,
    timeout: Duration,
) -> Result<(Header, Bytes), Rejection> {
    let mut buf = BytesMut::new();
    let mut header_len = None;
    let read = read_and_peek(stream, mode, &mut buf, &mut header_len);
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) if header_len.is_some() => Err(Rejection::Silent(timeout)),
        Err(_) => Err(Rejection::Timeout {
            timeout,
            received: buf.len(),
        }),
    }
}

async fn read_and_peek<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyProtocol,
    buf: &mut BytesMut,
    header_len: &mut Option<usize>,
) -> Result<(Header, Bytes), Rejection> {
    let parsed = loop {
        match parse(buf, mode) {
            Ok(parsed) => break parsed,
            Err(ParseError::Incomplete { needed }) => {
                // v1 has no length field: read up to its longest line.
                let limit = if buf.first() == v1::SIGNATURE.first() {
                    needed.max(v1::MAX_LEN)
                } else {
                    needed
                };
                fill(stream, buf, limit).await?;
            }
            Err(err) => return Err(err.into()),
        }
    };
    *header_len = Some(parsed.len);
    loop {
        match starts_header(buf.get(parsed.len..).unwrap_or_default()) {
            Some(true) => return Err(Rejection::Stacked),
            Some(false) => break,
            None => {
                let want = buf.len() + STACKED_PEEK;
                if read_some(stream, buf, want).await.unwrap_or(0) == 0 {
                    // Closed (or broken) right after the header: not a second
                    // header; whatever serves the connection next sees the end.
                    break;
                }
            }
        }
    }
    buf.advance(parsed.len);
    Ok((parsed.header, std::mem::take(buf).freeze()))
}

/// How much is asked for at a time behind the header: enough for either
/// signature (12 bytes at most).
const STACKED_PEEK: usize = 16;

/// Reads at least one byte, never taking `buf` past `limit` bytes; the end
/// of the stream or an error inside the header is a truncated header.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<(), Rejection> {
    match read_some(stream, buf, limit).await {
        Ok(0) => Err(Rejection::Truncated {
            received: buf.len(),
            source: None,
        }),
        Ok(_) => Ok(()),
        Err(source) => Err(Rejection::Truncated {
            received: buf.len(),
            source: Some(source),
        }),
    }
}

/// One read into `buf` of at most `limit - buf.len()` bytes.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> io::Result<usize> {
    let room = limit.saturating_sub(buf.len());
    if room == 0 {
        return Ok(0);
    }
    buf.reserve(room);
    let mut limited = (&mut *stream).take(room as u64);
    limited.read_buf(buf).await
}

/// A stream whose first reads return `prefix`: the bytes [`read_header`]
/// read past the header. Writes go straight to the stream.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The stream, and what of the prefix has not been read yet.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = buf.remaining().min(this.prefix.len());
        buf.put_slice(&this.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
