//! Header rules (SPEC §4): what a request must not carry, and how headers
//! change on their way upstream and back.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use super::ProxyError;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// Set by berth from what it verified itself; a client's copy is dropped.
static X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
static X_AMZN_VPCE_ID: HeaderName = HeaderName::from_static("x-amzn-vpce-id");

/// Refuses what SPEC §4 calls request smuggling, and heads over
/// `max_header_bytes`. hyper has already refused what its parser cannot
/// frame (bare CR, NUL, obs-fold, bad or conflicting Content-Length).
pub fn check_request(
    version: Version,
    headers: &HeaderMap,
    max_header_bytes: usize,
) -> Result<(), ProxyError> {
    let head_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if head_bytes > max_header_bytes {
        return Err(ProxyError::HeadTooLarge);
    }
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        if te.next().is_some() || !first.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(ProxyError::BadRequest(
                "Transfer-Encoding other than a single chunked",
            ));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(ProxyError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
    }
    if headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err(ProxyError::BadRequest("more than one Content-Length"));
    }
    if headers
        .get_all(header::UPGRADE)
        .iter()
        .any(|v| has_token(v, "h2c"))
    {
        return Err(ProxyError::BadRequest("Upgrade: h2c"));
    }
    if version == Version::HTTP_11 && headers.get_all(header::HOST).iter().count() != 1 {
        return Err(ProxyError::BadRequest(
            "HTTP/1.1 request without exactly one Host",
        ));
    }
    Ok(())
}

/// Refuses heads whose raw bytes carried `Content-Length` twice, or next to
/// `Transfer-Encoding`: hyper resolves both before the header map shows
/// them, but SPEC §4 wants them refused.
pub fn check_framing(framing: Option<crate::watch::Framing>) -> Result<(), ProxyError> {
    let Some(framing) = framing else {
        return Ok(());
    };
    if framing.content_lengths > 1 {
        return Err(ProxyError::BadRequest("more than one Content-Length"));
    }
    if framing.content_lengths > 0 && framing.transfer_encodings > 0 {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(())
}

/// Whether `value`, a comma-separated list, holds `token` (any case).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether this HTTP/1.1 request asks for a protocol switch berth tunnels
/// (WebSocket and the like; h2c was refused already).
pub fn wants_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

/// Removes hop-by-hop headers: `Connection` and the headers it names, and
/// the fixed list of SPEC §4. `Upgrade` and `Connection: upgrade` survive
/// when `upgrading`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .filter(|name| !(upgrading && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [&KEEP_ALIVE, &PROXY_CONNECTION, &HTTP2_SETTINGS] {
        headers.remove(name);
    }
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// What the app server is told about the client.
pub struct Forwarded<'a> {
    pub client_ip: std::net::IpAddr,
    pub tls: bool,
    pub port: u16,
    /// The request's authority when it did not come as a `Host` header
    /// (HTTP/2 `:authority`, HTTP/1.1 absolute-form).
    pub authority: Option<&'a str>,
    /// The AWS VPC endpoint id from the PROXY header.
    pub vpce_id: Option<&'a HeaderValue>,
    /// The verified client certificate's subject, if any.
    pub client_cert_subject: Option<&'a HeaderValue>,
}

/// Turns the client's headers into the app server's: hop-by-hop removed,
/// `Host` set, `X-Forwarded-*` replaced, headers only berth may set removed,
/// HTTP/2's split `cookie` fields joined.
pub fn upstream_request(headers: &mut HeaderMap, upgrading: bool, fwd: &Forwarded<'_>) {
    remove_hop_by_hop(headers, upgrading);
    headers.remove(header::EXPECT);
    headers.remove(&X_CLIENT_CERT_SUBJECT);
    if let Some(subject) = fwd.client_cert_subject {
        headers.insert(&X_CLIENT_CERT_SUBJECT, subject.clone());
    }
    headers.remove(&X_AMZN_VPCE_ID);
    if let Some(vpce_id) = fwd.vpce_id {
        headers.insert(&X_AMZN_VPCE_ID, vpce_id.clone());
    }
    if let Some(authority) = fwd.authority {
        if let Ok(value) = HeaderValue::from_str(authority) {
            headers.insert(header::HOST, value);
        }
    }
    if headers.get_all(header::COOKIE).iter().nth(1).is_some() {
        let joined: Vec<u8> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            headers.insert(header::COOKIE, value);
        }
    }
    let mut ip = [0u8; 39];
    let ip = format_ip(&mut ip, fwd.client_ip);
    if let Ok(value) = HeaderValue::from_str(ip) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
    let proto = if fwd.tls { "https" } else { "http" };
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    headers.insert(&X_FORWARDED_PORT, HeaderValue::from(fwd.port));
}

fn format_ip(buf: &mut [u8; 39], ip: std::net::IpAddr) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{}", ip.to_canonical());
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

/// Cleans the app server's response headers for the client.
pub fn downstream_response(headers: &mut HeaderMap, upgrading: bool, hsts: Option<&HeaderValue>) {
    remove_hop_by_hop(headers, upgrading);
    if let Some(hsts) = hsts {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| hsts.clone());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn refused(pairs: &[(&str, &str)]) -> bool {
        matches!(
            check_request(Version::HTTP_11, &headers(pairs), 65536),
            Err(ProxyError::BadRequest(_))
        )
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        assert!(refused(&[
            ("host", "a"),
            ("transfer-encoding", "chunked"),
            ("content-length", "3")
        ]));
        assert!(refused(&[
            ("host", "a"),
            ("transfer-encoding", "gzip, chunked")
        ]));
        assert!(refused(&[
            ("host", "a"),
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ]));
        assert!(refused(&[
            ("host", "a"),
            ("content-length", "3"),
            ("content-length", "3")
        ]));
        assert!(refused(&[
            ("host", "a"),
            ("upgrade", "h2c"),
            ("connection", "upgrade")
        ]));
        assert!(refused(&[("host", "a"), ("upgrade", "websocket, H2C")]));
        assert!(refused(&[]));
        assert!(refused(&[("host", "a"), ("host", "b")]));
    }

    #[test]
    fn ordinary_requests_pass() {
        assert!(!refused(&[("host", "a"), ("transfer-encoding", "Chunked")]));
        assert!(!refused(&[("host", "a"), ("content-length", "3")]));
        assert!(!refused(&[
            ("host", "a"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade")
        ]));
        assert!(check_request(Version::HTTP_2, &headers(&[]), 65536).is_ok());
    }

    #[test]
    fn oversize_heads_are_431() {
        let big = "x".repeat(2000);
        let map = headers(&[("host", "a"), ("x-big", &big)]);
        assert!(matches!(
            check_request(Version::HTTP_11, &map, 1024),
            Err(ProxyError::HeadTooLarge)
        ));
    }

    #[test]
    fn upstream_headers_follow_spec() {
        let mut map = headers(&[
            ("host", "www.example.com"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "websocket"),
            ("http2-settings", "AAA"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "gopher"),
            ("x-client-cert-subject", "CN=forged"),
            ("x-amzn-vpce-id", "vpce-forged"),
            ("expect", "100-continue"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("accept", "*/*"),
        ]);
        let fwd = Forwarded {
            client_ip: "::ffff:203.0.113.7".parse().unwrap(),
            tls: true,
            port: 443,
            authority: None,
            vpce_id: None,
            client_cert_subject: None,
        };
        upstream_request(&mut map, false, &fwd);
        for gone in [
            "connection",
            "x-private",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
            "http2-settings",
            "x-client-cert-subject",
            "x-amzn-vpce-id",
            "expect",
        ] {
            assert!(!map.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(map["host"], "www.example.com");
        assert_eq!(map["x-forwarded-for"], "203.0.113.7");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-port"], "443");
        assert_eq!(map["cookie"], "a=1; b=2");
        assert_eq!(map["accept"], "*/*");
    }

    #[test]
    fn upgrade_survives_when_upgrading_and_authority_sets_host() {
        let mut map = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let fwd = Forwarded {
            client_ip: "192.0.2.1".parse().unwrap(),
            tls: false,
            port: 80,
            authority: Some("h2.example.com"),
            vpce_id: Some(&HeaderValue::from_static("vpce-1")),
            client_cert_subject: Some(&HeaderValue::from_static("CN=alice")),
        };
        upstream_request(&mut map, true, &fwd);
        assert_eq!(map["upgrade"], "websocket");
        assert_eq!(map["connection"], "upgrade");
        assert_eq!(map["host"], "h2.example.com");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-amzn-vpce-id"], "vpce-1");
        assert_eq!(map["x-client-cert-subject"], "CN=alice");
    }

    #[test]
    fn response_gets_hsts_unless_the_app_set_one() {
        let hsts = HeaderValue::from_static("max-age=31536000");
        let mut map = headers(&[("transfer-encoding", "chunked"), ("keep-alive", "x")]);
        downstream_response(&mut map, false, Some(&hsts));
        assert_eq!(map["strict-transport-security"], "max-age=31536000");
        assert!(!map.contains_key("transfer-encoding"));
        let mut map = headers(&[("strict-transport-security", "max-age=1")]);
        downstream_response(&mut map, false, Some(&hsts));
        assert_eq!(map["strict-transport-security"], "max-age=1");
    }
}
