//! A small app server that says who it is and what it saw.
//!
//! - any path: body `NAME`, headers `x-served-by: NAME` and `x-seen-*`
//!   echoing the request's path, Host and X-Forwarded-* headers;
//! - `/upload`: reads the body as it streams, answers `LEN SHA256HEX`;
//! - `/download?bytes=N`: streams N bytes of a repeating pattern;
//! - `/slow?ms=N`: answers after N milliseconds;
//! - `/login`: sets the app's own cookie `SID=<name>-<n>` (for `learn`).
//!
//! Stopping one (dropping it) closes its listener and every connection it
//! has open, as a dead app server would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub struct AppServer {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Requests this server has received.
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl AppServer {
    pub async fn start(name: &'static str) -> AppServer {
        AppServer::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on `addr`: a stopped server can come back on its address.
    pub async fn start_on(name: &'static str, addr: SocketAddr) -> AppServer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        answer(name, n, req)
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        AppServer {
            name,
            addr,
            hits,
            task,
            stop,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.stop.send(true);
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(
    name: &'static str,
    n: usize,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut seen = Vec::new();
    seen.push(("x-seen-path", req.uri().to_string()));
    for header in [
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-port",
        "connection",
        "te",
        "x-private",
        "x-amzn-vpce-id",
        "x-client-cert-subject",
        "cookie",
    ] {
        if let Some(value) = req.headers().get(header) {
            seen.push((header, value.to_str().unwrap_or("?").to_owned()));
        }
    }
    let body: Body = match path.as_str() {
        "/upload" => {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    len += data.len() as u64;
                    hasher.update(data);
                }
            }
            full(format!("{len} {:x}", hasher.finalize()))
        }
        "/download" => {
            let total: usize = query
                .strip_prefix("bytes=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            download(total)
        }
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full(name.to_owned())
        }
        _ => full(name.to_owned()),
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("x-served-by", name.parse().unwrap());
    if path == "/login" {
        let cookie = format!("SID={name}-{n}; Path=/; HttpOnly");
        response
            .headers_mut()
            .insert("set-cookie", cookie.parse().unwrap());
    }
    for (header, value) in seen {
        if let Ok(value) = value.parse() {
            let name = format!("x-seen-{}", header.trim_start_matches("x-seen-"));
            response
                .headers_mut()
                .insert(http::HeaderName::try_from(name).unwrap(), value);
        }
    }
    Ok(response)
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text)).boxed()
}

/// The byte at `offset` of every download: a pattern a checksum can check.
pub fn pattern_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

fn download(total: usize) -> Body {
    const CHUNK: usize = 64 * 1024;
    // One chunk plus a period of the pattern: any frame is a slice of it.
    let pattern = Bytes::from((0..CHUNK + 251).map(pattern_byte).collect::<Vec<u8>>());
    let mut sent = 0usize;
    let frames = futures_util::stream::poll_fn(move |_| {
        if sent >= total {
            return std::task::Poll::Ready(None);
        }
        let n = CHUNK.min(total - sent);
        let start = sent % 251;
        sent += n;
        std::task::Poll::Ready(Some(Ok::<_, Infallible>(Frame::data(
            pattern.slice(start..start + n),
        ))))
    });
    StreamBody::new(frames).boxed()
}
