//! Limits and refusals on raw connections: smuggling shapes, oversize heads
//! and bodies, slow heads, idle connections, max_connections.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{AppServer, Berth, Client, Proto, TestPki, logged, one_app};

/// Writes `request` and reads until the server closes (or 5 s pass).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    read_to_close(stream).await
}

async fn read_to_close<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn raw_plain(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    exchange(&mut stream, request).await
}

async fn setup(limits: &str) -> (TestPki, AppServer, Berth) {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let berth = one_app(&pki, &app, &format!("[global.limits]\n{limits}")).await;
    (pki, app, berth)
}

#[tokio::test]
async fn smuggling_shapes_are_refused_and_never_forwarded() {
    let (pki, app, berth) = setup("").await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let vectors: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Cr: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ];
    for vector in vectors {
        let mut tls = client.tls().await;
        let response = exchange(&mut tls, vector).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{:?} got {response:?}",
            String::from_utf8_lossy(vector)
        );
    }
    assert_eq!(
        app.hits(),
        0,
        "nothing of a refused request reaches the app server"
    );
    let lines = berth.stop().await;
    assert_eq!(
        lines.iter().filter(|l| l.contains("\" 400 ")).count(),
        vectors.len(),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn oversize_heads_and_bodies_are_refused() {
    let (pki, app, berth) = setup("max_header_bytes = 16384\nmax_body_bytes = 1000\n").await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);

    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "x".repeat(20_000)
    );
    let response = exchange(&mut client.tls().await, big.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X-A: 1\r\n".repeat(300)
    );
    let response = exchange(&mut client.tls().await, many.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "too many headers: {response}"
    );

    let declared = format!(
        "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n{}",
        "b".repeat(5000)
    );
    let response = exchange(&mut client.tls().await, declared.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert_eq!(app.hits(), 0);

    let chunk = "b".repeat(4000);
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let response = exchange(&mut client.tls().await, chunked.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 413"),
        "a streamed body over the limit: {response}"
    );
    berth.stop().await;
}

#[tokio::test]
async fn slow_heads_get_408_and_idle_connections_close() {
    let (pki, app, berth) =
        setup("header_read_timeout = \"400ms\"\nidle_timeout = \"600ms\"\n").await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);

    let mut tls = client.tls().await;
    let response = exchange(&mut tls, b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Partial: ").await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");

    // A keep-alive connection that finished its request and then went quiet.
    let mut tls = client.tls().await;
    let started = std::time::Instant::now();
    let response = exchange(&mut tls, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}, before idle_timeout"
    );
    assert!(
        waited < Duration::from_secs(4),
        "idle connection kept {waited:?}"
    );
    assert_eq!(app.hits(), 1);

    let lines = berth.stop().await;
    assert!(logged(&lines, "\"GET /slow HTTP/1.1\" 408 "), "{lines:#?}");
}

#[tokio::test]
async fn max_connections_pauses_accepting() {
    let (pki, _app, berth) = setup("max_connections = 2\n").await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let first = client.tls().await;
    let _second = client.tls().await;
    let third = tokio::spawn({
        let client = client.clone();
        async move { client.get("/").await.status }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served while two are open"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "served once a slot is free");
    berth.stop().await;
}
