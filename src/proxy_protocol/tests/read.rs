//! `read_header` over an in-memory duplex stream, as the accept path uses it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::v2::{IPV4, tlv, v2};
use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// For the tests that wait for the deadline: `read_header` takes it as a
/// parameter (tokio's paused clock needs its `test-util` feature, which
/// berth does not enable).
const SHORT: Duration = Duration::from_millis(100);

const V1_LINE: &[u8] = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";

/// The start of a TLS 1.2/1.3 ClientHello and then some: what follows the
/// header on a TLS listener.
fn client_hello() -> Vec<u8> {
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x01, 0x2C, 0x01, 0x00, 0x01, 0x28, 0x03, 0x03,
    ];
    hello.extend((0..289u16).map(|i| (i % 251) as u8));
    hello
}

fn v2_header() -> Vec<u8> {
    let mut body = IPV4.to_vec();
    body.extend(tlv(0xEA, b"\x01vpce-0123456789abcdef0"));
    v2(0x21, 0x11, &body)
}

/// Reads the header, then everything else through `Prefixed`: the bytes the
/// next layer sees.
async fn header_and_rest(
    mut server: DuplexStream,
    mode: ProxyProtocol,
) -> Result<(Header, Vec<u8>), Rejection> {
    let (header, leftover) = read_header(&mut server, mode, TIMEOUT).await?;
    let mut stream = Prefixed::new(leftover, server);
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    Ok((header, rest))
}

async fn send(sent: Vec<u8>, one_byte_at_a_time: bool) -> DuplexStream {
    let (mut client, server) = duplex(64 * 1024);
    tokio::spawn(async move {
        if one_byte_at_a_time {
            for byte in sent {
                client.write_all(&[byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
        } else {
            client.write_all(&sent).await.unwrap();
        }
        // Dropping `client` ends the stream.
    });
    server
}

#[tokio::test]
async fn bytes_after_the_header_come_through_intact() {
    for (header, mode) in [
        (V1_LINE.to_vec(), ProxyProtocol::V1),
        (V1_LINE.to_vec(), ProxyProtocol::Any),
        (v2_header(), ProxyProtocol::V2),
        (v2_header(), ProxyProtocol::Any),
    ] {
        for one_byte_at_a_time in [false, true] {
            let mut sent = header.clone();
            sent.extend(client_hello());
            let server = send(sent, one_byte_at_a_time).await;
            let (parsed, rest) = header_and_rest(server, mode).await.unwrap();
            assert_eq!(rest, client_hello(), "{mode:?} split: {one_byte_at_a_time}");
            assert!(parsed.source.is_some());
        }
    }
    // The v1 line's source, the v2 header's VPC endpoint.
    let (header, _) = header_and_rest(send(V1_LINE.to_vec(), false).await, ProxyProtocol::V1)
        .await
        .unwrap();
    assert_eq!(header.source, Some(addr("192.168.0.1:56324")));
    let (header, _) = header_and_rest(send(v2_header(), true).await, ProxyProtocol::V2)
        .await
        .unwrap();
    assert_eq!(header.vpce_id.as_deref(), Some("vpce-0123456789abcdef0"));
}

#[tokio::test]
async fn reads_stop_short_of_what_follows() {
    // v2: 16 bytes, then exactly len, then one peek of at most 16 bytes.
    let header = v2_header();
    let mut sent = header.clone();
    sent.extend(client_hello());
    let mut unread = &sent[..];
    let (parsed, leftover) = read_header(&mut unread, ProxyProtocol::V2, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(parsed.source, Some(addr("203.0.113.7:51234")));
    assert_eq!(leftover.len(), 16);
    assert_eq!(header.len() + leftover.len() + unread.len(), sent.len());

    // v1: never more than the longest line (107 bytes) in all.
    let mut sent = V1_LINE.to_vec();
    sent.extend(client_hello());
    let mut unread = &sent[..];
    let (_, leftover) = read_header(&mut unread, ProxyProtocol::V1, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(V1_LINE.len() + leftover.len(), 107);
    assert_eq!(&leftover[..], &client_hello()[..leftover.len()]);
    assert_eq!(unread.len(), sent.len() - 107);
}

#[tokio::test]
async fn nlb_health_check_local_len_84_is_served() {
    let mut sent = V2_SIGNATURE.to_vec();
    sent.extend_from_slice(&[0x20, 0x11, 0x00, 0x54]);
    sent.extend_from_slice(&[10, 0, 0, 5, 10, 0, 0, 9, 0x9C, 0x40, 0x00, 0x50]);
    sent.extend_from_slice(&[0; 72]);
    sent.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (header, rest) = header_and_rest(send(sent, false).await, ProxyProtocol::Any)
        .await
        .unwrap();
    assert_eq!(header.command, Command::Local);
    assert_eq!(header.source, None);
    assert_eq!(rest, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
}

#[tokio::test]
async fn stacked_headers_are_refused() {
    let v1_line = V1_LINE.to_vec();
    let cases = [
        (v2_header(), v2_header()),
        (v1_line.clone(), v2_header()),
        (v2_header(), v1_line.clone()),
        (v1_line.clone(), v1_line.clone()),
        (v2(0x20, 0x00, &[]), v2_header()),
    ];
    for (first, second) in cases {
        for one_byte_at_a_time in [false, true] {
            let mut sent = first.clone();
            sent.extend(&second);
            sent.extend(client_hello());
            let server = send(sent, one_byte_at_a_time).await;
            let rejection = header_and_rest(server, ProxyProtocol::Any)
                .await
                .unwrap_err();
            assert!(matches!(rejection, Rejection::Stacked), "{rejection}");
            assert_eq!(rejection.reason(), "stacked");
        }
    }
    // Only its signature is needed, not a whole valid second header.
    let mut sent = v2_header();
    sent.extend_from_slice(b"PROXY garbage");
    let rejection = header_and_rest(send(sent, false).await, ProxyProtocol::V2)
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), "stacked");
}

#[tokio::test]
async fn requests_that_start_like_proxy_are_not_stacked() {
    for request in [
        &b"POST / HTTP/1.1\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"PUT",
        b"P",
        b"\r\n",
    ] {
        for one_byte_at_a_time in [false, true] {
            let mut sent = V1_LINE.to_vec();
            sent.extend_from_slice(request);
            let server = send(sent, one_byte_at_a_time).await;
            let (_, rest) = header_and_rest(server, ProxyProtocol::V1).await.unwrap();
            assert_eq!(rest, request);
        }
    }
}

#[tokio::test]
async fn the_end_of_the_stream_right_after_the_header_is_not_a_rejection() {
    // A TCP health check: header, then close.
    let (header, leftover) =
        read_header(&mut &v2(0x20, 0x11, &IPV4)[..], ProxyProtocol::V2, TIMEOUT)
            .await
            .unwrap();
    assert_eq!(header.command, Command::Local);
    assert!(leftover.is_empty());
}

#[tokio::test]
async fn no_complete_header_within_the_timeout() {
    let partials: [&[u8]; 4] = [
        b"",
        b"PROXY TCP4 1.2.3.4",
        &V2_SIGNATURE[..7],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
    ];
    for partial in partials {
        let (mut client, mut server) = duplex(1024);
        client.write_all(partial).await.unwrap();
        let started = Instant::now();
        let rejection = read_header(&mut server, ProxyProtocol::Any, SHORT)
            .await
            .unwrap_err();
        assert!(started.elapsed() >= SHORT);
        assert!(
            matches!(rejection, Rejection::Timeout { received, .. } if received == partial.len()),
            "{rejection}"
        );
        assert_eq!(rejection.reason(), "timeout");
        drop(client);
    }
}

#[tokio::test]
async fn an_oversized_len_waits_until_the_timeout() {
    let mut sent = V2_SIGNATURE.to_vec();
    sent.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    sent.extend_from_slice(&IPV4);
    sent.extend_from_slice(&[0; 1000]);
    let (mut client, mut server) = duplex(64 * 1024);
    client.write_all(&sent).await.unwrap();
    let rejection = read_header(&mut server, ProxyProtocol::V2, SHORT)
        .await
        .unwrap_err();
    assert!(
        matches!(rejection, Rejection::Timeout { received: 1028, .. }),
        "{rejection}"
    );
    drop(client);
}

#[tokio::test]
async fn silence_after_a_complete_header_is_a_timeout() {
    let (mut client, mut server) = duplex(1024);
    client.write_all(V1_LINE).await.unwrap();
    let started = Instant::now();
    let rejection = read_header(&mut server, ProxyProtocol::V1, SHORT)
        .await
        .unwrap_err();
    assert!(matches!(rejection, Rejection::Silent(_)), "{rejection}");
    assert_eq!(rejection.reason(), "timeout");
    let elapsed = started.elapsed();
    assert!(elapsed >= SHORT && elapsed < TIMEOUT, "{elapsed:?}");
    drop(client);
}

#[tokio::test]
async fn malformed_truncated_and_crc_rejections() {
    let reason = |sent: Vec<u8>, mode| async move {
        let rejection = header_and_rest(send(sent, false).await, mode)
            .await
            .unwrap_err();
        rejection.reason()
    };
    assert_eq!(
        reason(b"\x16\x03\x01\x00".to_vec(), ProxyProtocol::Any).await,
        "malformed"
    );
    assert_eq!(
        reason(b"GET / HTTP/1.1\r\n\r\n".to_vec(), ProxyProtocol::V1).await,
        "malformed"
    );
    assert_eq!(
        reason(V1_LINE.to_vec(), ProxyProtocol::V2).await,
        "malformed"
    );
    assert_eq!(reason(v2_header(), ProxyProtocol::V1).await, "malformed");
    // Closed inside the header.
    let truncated = v2_header()[..30].to_vec();
    let rejection = header_and_rest(send(truncated, false).await, ProxyProtocol::V2)
        .await
        .unwrap_err();
    assert!(
        matches!(rejection, Rejection::Truncated { received: 30, .. }),
        "{rejection}"
    );
    assert_eq!(rejection.reason(), "malformed");
    assert_eq!(reason(Vec::new(), ProxyProtocol::Any).await, "malformed");
    // A CRC32c that does not match.
    let mut body = IPV4.to_vec();
    body.extend(tlv(0x03, &[0xDE, 0xAD, 0xBE, 0xEF]));
    assert_eq!(
        reason(v2(0x21, 0x11, &body), ProxyProtocol::V2).await,
        "crc"
    );
}

#[tokio::test]
async fn prefixed_replays_then_reads_and_writes_through() {
    let (mut client, server) = duplex(1024);
    let mut stream = Prefixed::new(Bytes::from_static(b"abcdef"), server);
    let mut small = [0u8; 4];
    assert_eq!(stream.read(&mut small).await.unwrap(), 4);
    assert_eq!(&small, b"abcd");
    stream.write_all(b"reply").await.unwrap();
    stream.flush().await.unwrap();
    let mut reply = [0u8; 5];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"reply");
    client.write_all(b"gh").await.unwrap();
    drop(client);
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"efgh");
    let (unread, _) = stream.into_parts();
    assert!(unread.is_empty());
}

#[tokio::test]
async fn receive_refuses_untrusted_peers_without_reading() {
    let proxy_from: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let sent = V1_LINE.to_vec();
    let mut unread = &sent[..];
    let peer = "192.0.2.1".parse().unwrap();
    let rejection = receive(&mut unread, peer, ProxyProtocol::V1, &proxy_from, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), "untrusted_peer");
    assert_eq!(unread.len(), sent.len());

    let peer = "::ffff:10.1.1.1".parse().unwrap();
    let (header, _) = receive(&mut unread, peer, ProxyProtocol::V1, &proxy_from, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(header.source, Some(addr("192.168.0.1:56324")));
}
