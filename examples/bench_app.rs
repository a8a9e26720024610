//! The app server `integration/bench` puts behind the proxies: plain
//! HTTP/1.1 with keep-alive, one thread, canned answers, so it is never what
//! limits a benchmark (the script loads it directly to show that).
//!
//! ```text
//! bench_app PORT        serve on 127.0.0.1:PORT
//! ```
//!
//! `GET /1m` answers 1 MiB; anything else a 13-byte body. Request bodies are
//! not read: the benchmark sends none.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SMALL: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, bench\n";
const MIB: usize = 1024 * 1024;

fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: bench_app PORT");
            std::process::exit(2);
        }
    };
    let big = {
        let mut head =
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {MIB}\r\n\r\n")
                .into_bytes();
        head.extend((0..MIB).map(|i| b'a' + (i % 26) as u8));
        &*Box::leak(head.into_boxed_slice())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = serve(stream, big).await;
            });
        }
    })
}

/// Answers every complete head in the buffer, keeps what follows.
async fn serve(mut stream: TcpStream, big: &'static [u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(4 * 1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let mut close = false;
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end];
            close |= contains_close(head);
            if head.starts_with(b"GET /1m ") {
                stream.write_all(&out).await?;
                out.clear();
                stream.write_all(big).await?;
            } else {
                out.extend_from_slice(SMALL);
            }
            buf.drain(..end + 4);
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close || buf.len() > 64 * 1024 {
            return Ok(());
        }
    }
}

/// Whether a head asks to close (`Connection: close`, or HTTP/1.0 without
/// keep-alive).
fn contains_close(head: &[u8]) -> bool {
    let lower = head.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    has(b"\r\nconnection: close") || (has(b" http/1.0\r\n") && !has(b"keep-alive"))
}
