//! PROXY protocol in front of TLS (SPEC §4a): the header's client address
//! is the client everywhere; LOCAL (the NLB's health checks) is served with
//! the connection's own; anything malformed or untrusted is closed before
//! any HTTP, and never reaches an app server.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client::{Answer, read};
use crate::support::{AppServer, Berth, TestPki, logged, pool};

const V2_SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// A v2 header: `command` 0x20 LOCAL / 0x21 PROXY, `family` 0x11 TCP4 /
/// 0x21 TCP6 / 0x00 UNSPEC, then `block` (addresses and TLVs).
fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut header = V2_SIG.to_vec();
    header.extend_from_slice(&[command, family]);
    header.extend_from_slice(&(block.len() as u16).to_be_bytes());
    header.extend_from_slice(block);
    header
}

fn tcp4_block(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut block = src.to_vec();
    block.extend_from_slice(&dst);
    block.extend_from_slice(&sport.to_be_bytes());
    block.extend_from_slice(&dport.to_be_bytes());
    block
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out
}

async fn start(pki: &TestPki, app: &AppServer, mode: &str, proxy_from: &str) -> Berth {
    Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .config(&format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\ntls = true\nhealth_path = \"/berth-health\"\n\
             proxy_protocol = \"{mode}\"\nproxy_from = [{proxy_from}]\n"
        ))
        .config("[[route]]\npool = \"web\"\n")
        .config(&pool("web", &[app]))
        .start()
        .await
}

/// Sends `header`, then a TLS request for `path` over the same connection.
async fn through(
    berth: &Berth,
    pki: &TestPki,
    header: &[u8],
    path: &str,
) -> Result<Answer, String> {
    let mut tcp = TcpStream::connect(berth.addr()).await.unwrap();
    tcp.write_all(header).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("www.a.test").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "www.a.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(read(response).await)
}

#[tokio::test]
async fn the_header_address_is_the_client_everywhere() {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let berth = start(&pki, &app, "any", "\"127.0.0.0/8\"").await;

    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";
    let answer = through(&berth, &pki, v1, "/v1").await.unwrap();
    assert_eq!(answer.header("x-seen-x-forwarded-for"), "203.0.113.7");
    assert_eq!(
        answer.header("x-seen-x-forwarded-port"),
        "443",
        "the header's destination port"
    );

    let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 8443\r\n";
    let answer = through(&berth, &pki, v1_6, "/v1-6").await.unwrap();
    assert_eq!(answer.header("x-seen-x-forwarded-for"), "2001:db8::7");

    let unknown = b"PROXY UNKNOWN\r\n";
    let answer = through(&berth, &pki, unknown, "/unknown").await.unwrap();
    assert_eq!(
        answer.header("x-seen-x-forwarded-for"),
        "127.0.0.1",
        "UNKNOWN: the connection's own"
    );

    let mut block = tcp4_block([198, 51, 100, 9], [10, 0, 0, 1], 40000, 443);
    block.extend(tlv(0x04, &[0, 0, 0])); // NOOP, skipped
    block.extend(tlv(0xEA, b"\x01vpce-0123456789abcdef0"));
    block.extend(tlv(0xE0, b"unknown custom")); // skipped
    let answer = through(&berth, &pki, &v2(0x21, 0x11, &block), "/v2")
        .await
        .unwrap();
    assert_eq!(answer.header("x-seen-x-forwarded-for"), "198.51.100.9");
    assert_eq!(
        answer.header("x-seen-x-amzn-vpce-id"),
        "vpce-0123456789abcdef0"
    );

    let lines = berth.stop().await;
    assert!(
        logged(&lines, "203.0.113.7 - - ["),
        "%h is the header's source: {lines:#?}"
    );
    assert!(logged(&lines, "2001:db8::7 - - ["), "{lines:#?}");
    assert!(logged(&lines, "198.51.100.9 - - ["), "{lines:#?}");
}

#[tokio::test]
async fn local_headers_like_the_nlb_health_check_are_served() {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let berth = start(&pki, &app, "v2", "\"127.0.0.1\"").await;
    // A real NLB health check: LOCAL, AF_INET, dummy addresses, len 84.
    let mut block = tcp4_block([0; 4], [0; 4], 0, 0);
    block.extend_from_slice(&[0u8; 72]);
    let local = v2(0x20, 0x11, &block);
    assert_eq!(local.len(), 16 + 84);
    let answer = through(&berth, &pki, &local, "/berth-health")
        .await
        .unwrap();
    assert_eq!((answer.status, answer.text().as_str()), (200, "ok\n"));
    let answer = through(&berth, &pki, &v2(0x20, 0x00, &[]), "/")
        .await
        .unwrap();
    assert_eq!(answer.header("x-seen-x-forwarded-for"), "127.0.0.1");
    let answer = through(&berth, &pki, &v2(0x21, 0x00, &[]), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "PROXY with family UNSPEC");
    berth.stop().await;
}

/// Sends `bytes` and reports whether berth closed the connection without
/// sending anything (no TLS, no HTTP).
async fn closed_silently(berth: &Berth, bytes: &[u8]) -> bool {
    let mut tcp = TcpStream::connect(berth.addr()).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    let mut out = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(8), tcp.read_to_end(&mut out)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test]
async fn bad_headers_are_closed_before_any_http() {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let berth = start(&pki, &app, "any", "\"127.0.0.1/32\"").await;
    let good = v2(
        0x21,
        0x11,
        &tcp4_block([192, 0, 2, 1], [10, 0, 0, 1], 1, 443),
    );
    let mut crc_block = tcp4_block([192, 0, 2, 1], [10, 0, 0, 1], 1, 443);
    crc_block.extend(tlv(0x03, &[0xde, 0xad, 0xbe, 0xef]));
    let mut stacked = good.clone();
    stacked.extend_from_slice(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    let vectors: Vec<(&str, Vec<u8>)> = vec![
        (
            "no header: a TLS ClientHello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
        ),
        (
            "no header: HTTP",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "v1 bad address",
            b"PROXY TCP4 999.1.1.1 10.0.0.1 1 443\r\n".to_vec(),
        ),
        (
            "v1 double space",
            b"PROXY TCP4  1.2.3.4 10.0.0.1 1 443\r\n".to_vec(),
        ),
        (
            "v1 bare LF",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1 443\n".to_vec(),
        ),
        (
            "v1 too long",
            [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120], b"\r\n"].concat(),
        ),
        (
            "v2 bad version",
            [&V2_SIG[..], &[0x11, 0x11, 0, 0]].concat(),
        ),
        ("v2 len short of the addresses", v2(0x21, 0x11, &[1, 2, 3])),
        ("v2 bad CRC", v2(0x21, 0x11, &crc_block)),
        ("stacked headers", stacked),
    ];
    for (name, bytes) in &vectors {
        assert!(
            closed_silently(&berth, bytes).await,
            "{name}: closed without a response"
        );
    }
    assert_eq!(app.hits(), 0, "nothing reached the app server");
    berth.stop().await;

    let untrusted = start(&pki, &app, "v1", "\"10.0.0.0/8\"").await;
    assert!(
        closed_silently(&untrusted, b"PROXY TCP4 1.2.3.4 10.0.0.1 1 443\r\n").await,
        "peer not in proxy_from"
    );
    assert_eq!(app.hits(), 0);
    untrusted.stop().await;
}

#[tokio::test]
async fn client_ip_affinity_uses_the_header_address() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .config("[[listener]]\nbind = \"127.0.0.1:0\"\ntls = true\nproxy_protocol = \"v1\"\nproxy_from = [\"127.0.0.1\"]\n")
        .config("[[route]]\npool = \"web\"\n")
        .config(&format!(
            "[pools.web]\naffinity = {{ mode = \"client_ip\" }}\n\
             [[pools.web.servers]]\nname = \"a\"\naddr = \"{}\"\n[[pools.web.servers]]\nname = \"b\"\naddr = \"{}\"\n",
            a.addr, b.addr
        ))
        .start()
        .await;
    let mut homes = std::collections::HashSet::new();
    for client in 1..=4 {
        let header = format!("PROXY TCP4 192.0.2.{client} 10.0.0.1 5000 443\r\n");
        let home = through(&berth, &pki, header.as_bytes(), "/")
            .await
            .unwrap()
            .text();
        for _ in 0..5 {
            assert_eq!(
                through(&berth, &pki, header.as_bytes(), "/")
                    .await
                    .unwrap()
                    .text(),
                home
            );
        }
        homes.insert(home);
    }
    assert_eq!(
        homes.len(),
        2,
        "different clients behind one balancer get different ties"
    );
    berth.stop().await;
}
