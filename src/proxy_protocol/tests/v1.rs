//! PROXY v1: the text line.

use super::*;

fn v1(line: &str) -> Result<Parsed, ParseError> {
    parse(line.as_bytes(), ProxyProtocol::V1)
}

#[test]
fn tcp4() {
    let line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    let mut buf = line.as_bytes().to_vec();
    buf.extend_from_slice(b"\x16\x03\x01\x00\xc4");
    for mode in [ProxyProtocol::V1, ProxyProtocol::Any] {
        let parsed = parse(&buf, mode).unwrap();
        assert_eq!(parsed.len, line.len());
        let header = parsed.header;
        assert_eq!(header.version, Version::V1);
        assert_eq!(header.command, Command::Proxy);
        assert_eq!(header.source, Some(addr("192.168.0.1:56324")));
        assert_eq!(header.destination, Some(addr("192.168.0.11:443")));
        assert_eq!(header.vpce_id, None);
        assert_eq!(
            header.client(addr("10.0.0.1:1234")),
            addr("192.168.0.1:56324")
        );
        assert_eq!(header.port(8443), 443);
    }
    assert_prefixes_incomplete(line.as_bytes(), ProxyProtocol::V1);
    assert_prefixes_incomplete(line.as_bytes(), ProxyProtocol::Any);
}

#[test]
fn tcp6() {
    let line = "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n";
    let header = v1(line).unwrap().header;
    assert_eq!(header.source, Some(addr("[2001:db8::1]:56324")));
    assert_eq!(header.destination, Some(addr("[2001:db8::2]:443")));
    assert_prefixes_incomplete(line.as_bytes(), ProxyProtocol::Any);

    // An IPv4-mapped client is the IPv4 client everywhere berth uses it.
    let header = v1("PROXY TCP6 ::ffff:192.0.2.7 ::ffff:10.0.0.1 1 2\r\n")
        .unwrap()
        .header;
    assert_eq!(header.client(addr("10.0.0.9:9")), addr("192.0.2.7:1"));
}

#[test]
fn longest_lines_are_accepted() {
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let tcp6 = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
    assert_eq!(tcp6.len(), 104);
    assert_eq!(v1(&tcp6).unwrap().len, 104);
    let unknown = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
    assert_eq!(unknown.len(), 107);
    assert_eq!(v1(&unknown).unwrap().len, 107);
    let edges = "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n";
    let header = v1(edges).unwrap().header;
    assert_eq!(header.source, Some(addr("255.255.255.255:65535")));
    assert_eq!(header.destination, Some(addr("0.0.0.0:0")));
}

#[test]
fn unknown_uses_the_connection_addresses() {
    for line in [
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY UNKNOWN whatever the balancer puts here\r\n",
    ] {
        let parsed = v1(line).unwrap();
        assert_eq!(parsed.len, line.len());
        assert_eq!(parsed.header.source, None);
        assert_eq!(parsed.header.destination, None);
        let peer = addr("10.0.0.1:1234");
        assert_eq!(parsed.header.client(peer), peer);
        assert_eq!(parsed.header.port(443), 443);
        assert_prefixes_incomplete(line.as_bytes(), ProxyProtocol::V1);
    }
    malformed(b"PROXY UNKNOWNx\r\n", ProxyProtocol::V1);
}

#[test]
fn malformed_lines_are_refused() {
    let cases = [
        // Spaces: exactly one between fields.
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8\t1 2\r\n",
        // Line ends.
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        "PROXY\r\n",
        "PROXY \r\n",
        // Protocol.
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        // IPv4.
        "PROXY TCP4 999.1.1.1 5.6.7.8 1 2\r\n",
        "PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n",
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.+3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
        // IPv6.
        "PROXY TCP6 2001::db8::1 ::1 1 2\r\n",
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        "PROXY TCP6 [::1] ::1 1 2\r\n",
        "PROXY TCP6 12345::1 ::1 1 2\r\n",
        "PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n",
        // Ports.
        "PROXY TCP4 1.2.3.4 5.6.7.8 065535 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n",
        // Fields.
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4\r\n",
        // Not PROXY at all.
        "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "POST / HTTP/1.1\r\n",
        "PRI * HTTP/2.0\r\n",
    ];
    for line in cases {
        for mode in [ProxyProtocol::V1, ProxyProtocol::Any] {
            malformed(line.as_bytes(), mode);
        }
    }
    malformed(b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n", ProxyProtocol::V1);
    malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", ProxyProtocol::V1);
}

#[test]
fn a_line_without_crlf_in_107_bytes_is_refused() {
    let long = format!("PROXY UNKNOWN {}\r\n", "a".repeat(92));
    assert_eq!(long.len(), 108);
    assert_eq!(
        malformed(long.as_bytes(), ProxyProtocol::V1),
        "PROXY v1 line longer than 107 bytes"
    );
    let endless = format!("PROXY TCP4 {}", "1".repeat(200));
    assert_eq!(
        malformed(endless.as_bytes(), ProxyProtocol::V1),
        "PROXY v1 line without CRLF in 107 bytes"
    );
    // Under 107 bytes and no CRLF yet: more may come.
    assert_eq!(
        v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2"),
        Err(ParseError::Incomplete { needed: 32 })
    );
    assert_eq!(
        v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
        Err(ParseError::Incomplete { needed: 32 })
    );
}

#[test]
fn refused_as_soon_as_it_cannot_be_a_header() {
    // A TLS ClientHello or an HTTP request on a PROXY listener: no waiting.
    for (buf, mode) in [
        (&b"\x16"[..], ProxyProtocol::V1),
        (b"\x16", ProxyProtocol::Any),
        (b"G", ProxyProtocol::Any),
        (b"PO", ProxyProtocol::Any),
        (b"PRI", ProxyProtocol::V1),
    ] {
        assert_eq!(malformed(buf, mode), "not a PROXY header");
    }
    assert_eq!(
        malformed(b"PROXY TCP4 1.2.3.4\n", ProxyProtocol::V1),
        "PROXY v1 line ends with a bare LF"
    );
}

#[test]
fn the_mode_decides_which_version_is_accepted() {
    let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    assert!(parse(line, ProxyProtocol::V1).is_ok());
    assert!(parse(line, ProxyProtocol::Any).is_ok());
    assert_eq!(
        parse(line, ProxyProtocol::V2),
        Err(ParseError::NotAllowed(Version::V1))
    );
    // Only once the signature is whole: "POST" is not a v1 header.
    assert_eq!(
        parse(b"PROX", ProxyProtocol::V2),
        Err(ParseError::Incomplete { needed: 6 })
    );
    malformed(b"POST", ProxyProtocol::V2);
    for mode in MODES {
        if mode == ProxyProtocol::Off {
            assert_eq!(malformed(line, mode), "PROXY protocol is off");
            assert_eq!(malformed(b"", mode), "PROXY protocol is off");
        } else {
            assert_eq!(parse(b"", mode), Err(ParseError::Incomplete { needed: 15 }));
        }
    }
}
