//! PROXY v2: the binary header, TLVs and CRC32c.

use super::*;

/// A v2 header: signature, version/command, family/transport, len, body.
pub(super) fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[ver_cmd, fam]);
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(body);
    header
}

pub(super) fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut tlv = vec![kind];
    tlv.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    tlv.extend_from_slice(value);
    tlv
}

/// A v2 header whose last TLV is a CRC32c over the whole header, computed
/// with its own value zeroed, as the sender does it.
fn with_crc(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.extend_from_slice(&tlv(0x03, &[0; 4]));
    let mut header = v2(ver_cmd, fam, &body);
    let crc = crc32c(&header);
    let at = header.len() - 4;
    header[at..].copy_from_slice(&crc.to_be_bytes());
    header
}

/// 203.0.113.7:51234 → 10.0.1.20:443.
pub(super) const IPV4: [u8; 12] = [203, 0, 113, 7, 10, 0, 1, 20, 0xC8, 0x22, 0x01, 0xBB];

fn ipv6() -> Vec<u8> {
    let mut block = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    block.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    block.extend_from_slice(&[0xC8, 0x22, 0x01, 0xBB]);
    block
}

fn v2_ok(buf: &[u8]) -> Parsed {
    let parsed = parse(buf, ProxyProtocol::V2).unwrap();
    assert_eq!(parse(buf, ProxyProtocol::Any).unwrap(), parsed);
    parsed
}

#[test]
fn proxy_ipv4_and_ipv6_without_tlvs() {
    let header = v2(0x21, 0x11, &IPV4);
    let mut buf = header.clone();
    buf.extend_from_slice(b"\x16\x03\x01");
    let parsed = v2_ok(&buf);
    assert_eq!(parsed.len, 28);
    assert_eq!(parsed.header.version, Version::V2);
    assert_eq!(parsed.header.command, Command::Proxy);
    assert_eq!(parsed.header.source, Some(addr("203.0.113.7:51234")));
    assert_eq!(parsed.header.destination, Some(addr("10.0.1.20:443")));
    assert_eq!(parsed.header.port(8443), 443);
    assert_prefixes_incomplete(&header, ProxyProtocol::V2);

    let header = v2(0x21, 0x21, &ipv6());
    let parsed = v2_ok(&header);
    assert_eq!(parsed.len, 52);
    assert_eq!(parsed.header.source, Some(addr("[2001:db8::1]:51234")));
    assert_eq!(parsed.header.destination, Some(addr("[2001:db8::2]:443")));
    assert_prefixes_incomplete(&header, ProxyProtocol::Any);
}

#[test]
fn tlvs_are_read_and_unknown_ones_skipped() {
    let mut body = ipv6();
    body.extend(tlv(0x01, b"h2"));
    body.extend(tlv(0x02, b"www.example.com"));
    body.extend(tlv(0x04, &[0; 5]));
    body.extend(tlv(0x05, b"opaque-id"));
    body.extend(tlv(
        0x20,
        &[
            0x01, 0, 0, 0, 0, 0x21, 0, 7, b'T', b'L', b'S', b'v', b'1', b'.', b'3',
        ],
    ));
    body.extend(tlv(0xE0, &[1, 2, 3]));
    body.extend(tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9"));
    body.extend(tlv(0xF0, b""));
    body.extend(tlv(0xFF, &[0xFF; 40]));
    let header = v2(0x21, 0x21, &body);
    let parsed = v2_ok(&header);
    assert_eq!(parsed.len, header.len());
    assert_eq!(parsed.header.source, Some(addr("[2001:db8::1]:51234")));
    assert_eq!(parsed.header.authority.as_deref(), Some("www.example.com"));
    assert_eq!(
        parsed.header.vpce_id.as_deref(),
        Some("vpce-08d2bf15fac5001c9")
    );
    assert_prefixes_incomplete(&header, ProxyProtocol::V2);
}

#[test]
fn aws_vpce_id() {
    let vpce = |value: &[u8]| {
        let mut body = IPV4.to_vec();
        body.extend(tlv(0xEA, value));
        v2_ok(&v2(0x21, 0x11, &body)).header.vpce_id
    };
    assert_eq!(vpce(b"\x01vpce-abc").as_deref(), Some("vpce-abc"));
    // Other AWS subtypes, an empty id, or one that could not be a header value.
    assert_eq!(vpce(b"\x02vpce-abc"), None);
    assert_eq!(vpce(b"\x01"), None);
    assert_eq!(vpce(b""), None);
    assert_eq!(vpce(b"\x01vpce abc"), None);
    assert_eq!(vpce(b"\x01vpce-\r\nX-Evil: 1"), None);
    assert_eq!(vpce(b"\x01vpce-\xff"), None);
}

#[test]
fn local_len_0_and_the_nlb_health_check() {
    let parsed = v2_ok(&v2(0x20, 0x00, &[]));
    assert_eq!(parsed.len, 16);
    assert_eq!(parsed.header.command, Command::Local);
    assert_eq!(parsed.header.source, None);

    // The NLB capture (REFERENCE §3): LOCAL, AF_INET/STREAM, len 84: 12
    // bytes of dummy addresses and 72 zero bytes, then the HTTP check.
    let mut nlb = hex("0d0a0d0a000d0a515549540a20110054");
    nlb.extend_from_slice(&[10, 0, 0, 5, 10, 0, 0, 9, 0x9C, 0x40, 0x00, 0x50]);
    nlb.extend_from_slice(&[0; 72]);
    let header_len = nlb.len();
    assert_eq!(header_len, 100);
    nlb.extend_from_slice(b"GET /healthz HTTP/1.1\r\n\r\n");
    let parsed = v2_ok(&nlb);
    assert_eq!(parsed.len, 100);
    assert_eq!(&nlb[parsed.len..parsed.len + 4], b"GET ");
    assert_eq!(parsed.header.command, Command::Local);
    assert_eq!(parsed.header.source, None);
    assert_eq!(parsed.header.destination, None);
    let peer = addr("10.0.0.5:40000");
    assert_eq!(parsed.header.client(peer), peer);
    assert_eq!(parsed.header.port(443), 443);
    assert_prefixes_incomplete(&nlb[..header_len], ProxyProtocol::V2);

    // Whatever fills a LOCAL block is skipped unread, even what would be
    // broken TLVs or a wrong CRC under PROXY.
    let mut junk = IPV4.to_vec();
    junk.extend_from_slice(&[0x03, 0x00, 0x04, 1, 2, 3, 4, 0xEA, 0xFF]);
    let parsed = v2_ok(&v2(0x20, 0x11, &junk));
    assert_eq!(parsed.len, 16 + junk.len());
    assert_eq!(parsed.header.vpce_id, None);
    assert_eq!(v2_ok(&v2(0x20, 0x21, &[1, 2, 3])).len, 19);
}

#[test]
fn proxy_unspec_unix_and_datagram_use_the_connection_addresses() {
    for body in [&[][..], &IPV4[..], &[0xFF; 7][..]] {
        let parsed = v2_ok(&v2(0x21, 0x00, body));
        assert_eq!(parsed.len, 16 + body.len());
        assert_eq!(parsed.header.command, Command::Proxy);
        assert_eq!(parsed.header.source, None);
    }
    let mut unix = vec![0; 216];
    unix[..6].copy_from_slice(b"/lb.so");
    unix.extend(tlv(0xEA, b"\x01vpce-unix"));
    for fam in [0x31, 0x32, 0x30] {
        let parsed = v2_ok(&v2(0x21, fam, &unix));
        assert_eq!(parsed.header.source, None);
        assert_eq!(parsed.header.vpce_id.as_deref(), Some("vpce-unix"));
    }
    for fam in [0x12, 0x10] {
        let parsed = v2_ok(&v2(0x21, fam, &IPV4));
        assert_eq!(parsed.header.source, None);
    }
    assert_eq!(v2_ok(&v2(0x21, 0x22, &ipv6())).header.source, None);
}

#[test]
fn crc32c_is_verified() {
    // RFC 3720 B.4 and the usual check value.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(&[0; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xFF; 32]), 0x62A8_AB43);
    assert_eq!(crc32c(&(0..32).collect::<Vec<u8>>()), 0x46DD_794E);

    let mut body = IPV4.to_vec();
    body.extend(tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9"));
    let good = with_crc(0x21, 0x11, &body);
    let parsed = v2_ok(&good);
    assert_eq!(
        parsed.header.vpce_id.as_deref(),
        Some("vpce-08d2bf15fac5001c9")
    );
    assert_prefixes_incomplete(&good, ProxyProtocol::V2);

    // The CRC TLV first, before others, works the same.
    let mut first = tlv(0x03, &[0; 4]);
    first.extend(tlv(0x02, b"example.com"));
    let mut with_ipv6 = ipv6();
    with_ipv6.extend(&first);
    let mut header = v2(0x21, 0x21, &with_ipv6);
    let crc = crc32c(&header);
    header[16 + 36 + 3..16 + 36 + 7].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        v2_ok(&header).header.authority.as_deref(),
        Some("example.com")
    );

    // One bit changed anywhere (a client port here, the CRC itself there).
    for at in [25, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert!(matches!(
            parse(&bad, ProxyProtocol::V2),
            Err(ParseError::Crc { .. })
        ));
    }
}

#[test]
fn broken_crc_tlvs_are_malformed() {
    let mut short = IPV4.to_vec();
    short.extend(tlv(0x03, &[0; 3]));
    assert_eq!(
        malformed(&v2(0x21, 0x11, &short), ProxyProtocol::V2),
        "PROXY v2 CRC32c TLV is not 4 bytes"
    );
    let mut two = IPV4.to_vec();
    two.extend(tlv(0x03, &[0; 4]));
    two.extend(tlv(0x03, &[0; 4]));
    assert_eq!(
        malformed(&v2(0x21, 0x11, &two), ProxyProtocol::V2),
        "PROXY v2 header with two CRC32c TLVs"
    );
}

#[test]
fn truncated_tlvs_are_malformed() {
    for tail in [
        &[0x04][..],
        &[0x04, 0x00],
        &[0x02, 0x00, 0x05, b'a', b'b'],
        &[0xEA, 0xFF, 0xFF],
    ] {
        let mut body = IPV4.to_vec();
        body.extend(tlv(0x04, &[0; 3]));
        body.extend_from_slice(tail);
        malformed(&v2(0x21, 0x11, &body), ProxyProtocol::Any);
    }
}

#[test]
fn len_shorter_than_the_address_block_is_malformed() {
    for (fam, len) in [
        (0x11, 0),
        (0x11, 8),
        (0x11, 11),
        (0x21, 12),
        (0x21, 35),
        (0x31, 108),
    ] {
        assert_eq!(
            malformed(&v2(0x21, fam, &vec![0; len]), ProxyProtocol::V2),
            "PROXY v2 len shorter than its address block"
        );
    }
}

#[test]
fn bad_fixed_fields_are_refused_as_soon_as_they_arrive() {
    let good = v2(0x21, 0x11, &IPV4);
    let cases: [(usize, u8, &str); 7] = [
        (12, 0x11, "PROXY v2 version is not 2"),
        (12, 0x31, "PROXY v2 version is not 2"),
        (12, 0x01, "PROXY v2 version is not 2"),
        (12, 0x22, "PROXY v2 command is neither LOCAL nor PROXY"),
        (12, 0x2F, "PROXY v2 command is neither LOCAL nor PROXY"),
        (13, 0x41, "PROXY v2 address family is unknown"),
        (13, 0x13, "PROXY v2 transport is unknown"),
    ];
    for (at, value, detail) in cases {
        let mut bad = good.clone();
        bad[at] = value;
        assert_eq!(malformed(&bad[..=at], ProxyProtocol::V2), detail);
        assert_eq!(malformed(&bad, ProxyProtocol::Any), detail);
    }
    // Even on LOCAL, whose block is skipped.
    malformed(&v2(0x20, 0xF1, &[]), ProxyProtocol::V2);
}

#[test]
fn wrong_signature() {
    let good = v2(0x21, 0x11, &IPV4);
    for at in 1..12 {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        assert_eq!(
            malformed(&bad[..=at], ProxyProtocol::V2),
            "not a PROXY header"
        );
    }
    malformed(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ProxyProtocol::V2,
    );
    malformed(b"GET / HTTP/1.1\r\n\r\n", ProxyProtocol::V2);
}

#[test]
fn oversized_len_waits_for_all_of_it() {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    header.extend_from_slice(&IPV4);
    assert_eq!(
        parse(&header, ProxyProtocol::V2),
        Err(ParseError::Incomplete { needed: 65551 })
    );
    header.resize(65551, 0);
    let parsed = v2_ok(&header);
    assert_eq!(parsed.len, 65551);
    // The zero padding reads as 0-length TLVs of type 0: skipped.
    assert_eq!(parsed.header.source, Some(addr("203.0.113.7:51234")));
}

#[test]
fn the_mode_decides_which_version_is_accepted() {
    let header = v2(0x21, 0x11, &IPV4);
    assert_eq!(
        parse(&header[..11], ProxyProtocol::V1),
        Err(ParseError::Incomplete { needed: 12 })
    );
    assert_eq!(
        parse(&header, ProxyProtocol::V1),
        Err(ParseError::NotAllowed(Version::V2))
    );
    malformed(&header, ProxyProtocol::Off);
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
