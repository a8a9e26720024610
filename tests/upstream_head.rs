//! How much of an app server's response head berth reads: the upstream
//! read buffer's 64 KiB, which also bounds what a slow-reading client makes
//! berth hold. hyper gives up on a head still incomplete once 64 KiB are
//! in (a read can take it past that, so the exact cut is fuzzy); a head
//! far larger is the app server's failure, 502. hyper's default, ~400 KiB,
//! let one through.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{Berth, Client, Proto, TLS_LISTENER, TestPki};

/// An app server whose every response carries an `X-Big` header of `size`
/// bytes, on a connection it then closes.
async fn big_head_app(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    "v".repeat(size)
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

async fn status_for_head_of(size: usize) -> u16 {
    let pki = TestPki::new();
    let app = big_head_app(size).await;
    let berth = Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&format!(
            "[pools.web]\nretries = 0\n[[pools.web.servers]]\nname = \"big\"\naddr = \"{app}\"\n"
        ))
        .start()
        .await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let answer = client.get("/").await;
    if answer.status == 200 {
        assert_eq!(answer.header("x-big").len(), size);
    }
    answer.status
}

#[tokio::test]
async fn response_heads_up_to_the_read_buffer_pass() {
    assert_eq!(status_for_head_of(48 * 1024).await, 200);
}

#[tokio::test]
async fn a_response_head_far_over_64_kib_is_a_bad_gateway() {
    assert_eq!(status_for_head_of(200 * 1024).await, 502);
}
