//! Reading ties out of requests and responses; berth's cookie.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::affinity::extract::{self, Learned, SessionId};

fn headers(name: http::HeaderName, values: &[&[u8]]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(name.clone(), HeaderValue::from_bytes(value).unwrap());
    }
    headers
}

fn cookies(values: &[&[u8]]) -> HeaderMap {
    headers(COOKIE, values)
}

fn all<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h [u8]> {
    extract::cookies(headers, name).collect()
}

#[test]
fn cookie_is_found_in_any_header_and_the_first_wins() {
    let h = cookies(&[b"a=1; BERTH=app01; c=3"]);
    assert_eq!(extract::cookie(&h, "BERTH"), Some(&b"app01"[..]));
    let h = cookies(&[b"a=1", b"BERTH=app02", b"BERTH=app03; BERTH=app04"]);
    assert_eq!(extract::cookie(&h, "BERTH"), Some(&b"app02"[..]));
    assert_eq!(all(&h, "BERTH"), [&b"app02"[..], b"app03", b"app04"]);
    assert_eq!(extract::cookie(&h, "a"), Some(&b"1"[..]));
    assert_eq!(extract::cookie(&h, "nope"), None);
    assert_eq!(extract::cookie(&HeaderMap::new(), "BERTH"), None);
}

#[test]
fn cookie_names_are_exact() {
    let h = cookies(&[b"XBERTH=x; BERTHX=y; berth=z; BERTH=app01"]);
    assert_eq!(all(&h, "BERTH"), [&b"app01"[..]]);
    assert_eq!(all(&h, "XBERTH"), [&b"x"[..]]);
    let h = cookies(&[b"XBERTH=x"]);
    assert_eq!(extract::cookie(&h, "BERTH"), None);
}

#[test]
fn cookie_whitespace_quotes_and_odd_pairs() {
    let h = cookies(&[b"  BERTH =\t app01 ;x"]);
    assert_eq!(extract::cookie(&h, "BERTH"), Some(&b"app01"[..]));
    let h = cookies(&[b"BERTH=\"app01\""]);
    assert_eq!(extract::cookie(&h, "BERTH"), Some(&b"app01"[..]));
    // Only one pair of quotes goes; a lone quote stays.
    let h = cookies(&[b"BERTH=\"\"a\"\"; B=\""]);
    assert_eq!(extract::cookie(&h, "BERTH"), Some(&b"\"a\""[..]));
    assert_eq!(extract::cookie(&h, "B"), Some(&b"\""[..]));
    // A pair without `=` is no cookie; an empty value is one.
    let h = cookies(&[b"BERTH; BERTH=; BERTH=a=b"]);
    assert_eq!(all(&h, "BERTH"), [&b""[..], b"a=b"]);
    // Bytes that are not UTF-8, here and around.
    let h = cookies(&[b"a=\xff\xfe; BERTH=r\xc3\xa9; \xe2=1"]);
    assert_eq!(extract::cookie(&h, "BERTH"), Some(&b"r\xc3\xa9"[..]));
    assert_eq!(extract::cookie(&h, "a"), Some(&b"\xff\xfe"[..]));
}

fn cookie_values(headers: &HeaderMap) -> Vec<&[u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect()
}

#[test]
fn strip_cookie_keeps_every_other_cookie_byte_for_byte() {
    let mut h = cookies(&[b"a=1; BERTH=app01; c=\"3\"; XBERTH=x"]);
    assert!(extract::strip_cookie(&mut h, "BERTH"));
    assert_eq!(cookie_values(&h), [&b"a=1; c=\"3\"; XBERTH=x"[..]]);

    let mut h = cookies(&[b"BERTH=app01;a=1;  b = 2 ", b"BERTH=x", b"z=\xff"]);
    assert!(extract::strip_cookie(&mut h, "BERTH"));
    assert_eq!(cookie_values(&h), [&b"a=1;  b = 2"[..], b"z=\xff"]);

    let mut h = cookies(&[b" BERTH = a ; BERTH=b"]);
    assert!(extract::strip_cookie(&mut h, "BERTH"));
    assert!(h.get(COOKIE).is_none(), "nothing left: the header goes");

    let mut h = cookies(&[b"a=1;b=2"]);
    h.insert("x-other", HeaderValue::from_static("BERTH=1"));
    assert!(!extract::strip_cookie(&mut h, "BERTH"));
    assert_eq!(cookie_values(&h), [&b"a=1;b=2"[..]]);
    assert_eq!(h.get("x-other").unwrap(), "BERTH=1");
}

#[test]
fn path_param_rules() {
    let p = |target: &'static str| extract::path_param(target, "jsessionid");
    assert_eq!(
        p("/app/page;jsessionid=ABC.node1?x=1"),
        Some(&b"ABC.node1"[..])
    );
    assert_eq!(p("/app/page;jsessionid=ABC.node1"), Some(&b"ABC.node1"[..]));
    assert_eq!(p("/app;jsessionid=A.n1/page"), Some(&b"A.n1"[..]));
    assert_eq!(p("/a;v=1;jsessionid=X.r;other"), Some(&b"X.r"[..]));
    assert_eq!(p("/a;jsessionid=X.r&b=1"), Some(&b"X.r"[..]));
    assert_eq!(p("/a;jsessionid=X.r#frag"), Some(&b"X.r"[..]));
    assert_eq!(p("/a;jsessionid=;jsessionid=Y.r"), Some(&b"Y.r"[..]));
    // Only in the path, exact name, with `=`.
    assert_eq!(p("/a?x=1;jsessionid=X.r"), None);
    assert_eq!(p("/a#;jsessionid=X.r"), None);
    assert_eq!(p("/a;JSESSIONID=X.r"), None);
    assert_eq!(p("/a;jsessionidx=X.r"), None);
    assert_eq!(p("/a;jsessionid"), None);
    assert_eq!(p("/ajsessionid=X.r"), None);
    assert_eq!(p(""), None);
    assert_eq!(p(";"), None);
    assert_eq!(extract::path_param("/a;sid=Z.q", "sid"), Some(&b"Z.q"[..]));
}

#[test]
fn route_is_after_the_first_dot() {
    let r = |id: &'static [u8]| extract::route(id).map(|s| s.route);
    assert_eq!(r(b"abc.node1"), Some(&b"node1"[..]));
    assert_eq!(r(b"abc.node1.dc2"), Some(&b"node1.dc2"[..]));
    assert_eq!(r(b".node1"), Some(&b"node1"[..]));
    assert_eq!(r(b"abc"), None);
    assert_eq!(r(b"abc."), None);
    assert_eq!(r(b""), None);
    assert_eq!(
        extract::route(b"A.b").unwrap(),
        SessionId {
            id: b"A.b",
            route: b"b"
        }
    );
}

#[test]
fn session_ids_path_first_then_every_cookie() {
    let h = cookies(&[
        b"JSESSIONID=nodot; JSESSIONID=B.app02",
        b"JSESSIONID=C.app03",
    ]);
    let ids = extract::session_ids(&h, "/x;jsessionid=A.app01?q", "jsessionid", "JSESSIONID");
    let routes: Vec<&[u8]> = ids.iter().map(|s| s.route).collect();
    assert_eq!(routes, [&b"app01"[..], b"app02", b"app03"]);
    assert_eq!(ids[0].id, b"A.app01");

    let ids = extract::session_ids(&h, "/x", "jsessionid", "JSESSIONID");
    assert_eq!(
        ids[0].id, b"B.app02",
        "the unusable first cookie is skipped"
    );

    let h = cookies(&[b"JSESSIONID=\"Q.app09\"; JSESSIONID=empty.; JSESSIONID=."]);
    let ids = extract::session_ids(&h, "/", "jsessionid", "JSESSIONID");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].route, b"app09");

    let many = "JSESSIONID=a.r; ".repeat(1000);
    let h = cookies(&[many.as_bytes()]);
    let ids = extract::session_ids(&h, "/", "jsessionid", "JSESSIONID");
    assert_eq!(ids.len(), extract::MAX_SESSION_IDS);
}

#[test]
fn header_value_is_the_first_and_not_empty() {
    let mut h = HeaderMap::new();
    h.append("x-tenant", HeaderValue::from_static("t1"));
    h.append("x-tenant", HeaderValue::from_static("t2"));
    h.append("x-empty", HeaderValue::from_static(""));
    assert_eq!(extract::header(&h, "X-Tenant"), Some(&b"t1"[..]));
    assert_eq!(extract::header(&h, "x-empty"), None);
    assert_eq!(extract::header(&h, "x-absent"), None);
    assert_eq!(extract::header(&h, "not a header name"), None);
}

#[test]
fn client_ip_treats_mapped_ipv4_as_ipv4() {
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(extract::client_ip(v4), extract::client_ip(mapped));
    assert_ne!(extract::client_ip(v4), extract::client_ip(v6));
    assert_eq!(extract::client_ip(v6), v6_octets(v6));
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

#[test]
fn set_cookie_is_exactly_the_spec() {
    let plain = extract::set_cookie("BERTH", "app01", false).unwrap();
    assert_eq!(plain, "BERTH=app01; Path=/; HttpOnly; SameSite=Lax");
    let tls = extract::set_cookie("BERTH", "app-02.x_y~z", true).unwrap();
    assert_eq!(
        tls,
        "BERTH=app-02.x_y~z; Path=/; HttpOnly; SameSite=Lax; Secure"
    );
    for (name, route) in [
        ("BERTH", ""),
        ("", "app01"),
        ("BE RTH", "app01"),
        ("BERTH", "a;b"),
        ("BERTH", "a b"),
        ("BERTH", "a\"b"),
        ("BERTH", "é"),
    ] {
        assert_eq!(
            extract::set_cookie(name, route, true),
            None,
            "{name:?}={route:?}"
        );
    }
}

fn learned(values: &[&[u8]], now: SystemTime) -> Option<Learned> {
    extract::learned(&headers(SET_COOKIE, values), "JSESSIONID", now)
}

#[test]
fn set_cookie_of_the_learned_cookie() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027
    let set = |v: &str| Some(Learned::Set(v.as_bytes().to_vec()));
    let deleted = |v: &str| Some(Learned::Deleted(v.as_bytes().to_vec()));
    assert_eq!(
        learned(&[b"JSESSIONID=abc; Path=/; HttpOnly"], now),
        set("abc")
    );
    assert_eq!(learned(&[b"JSESSIONID=\"abc\""], now), set("abc"));
    assert_eq!(learned(&[b"OTHER=1", b"XJSESSIONID=2"], now), None);
    assert_eq!(learned(&[], now), None);
    // The last one naming the cookie wins.
    assert_eq!(
        learned(&[b"JSESSIONID=; Max-Age=0", b"JSESSIONID=new", b"A=b"], now),
        set("new")
    );
    // Deletion: Max-Age ≤ 0, or Expires in the past with no Max-Age.
    assert_eq!(
        learned(&[b"JSESSIONID=abc; Max-Age=0"], now),
        deleted("abc")
    );
    assert_eq!(learned(&[b"JSESSIONID=; Max-Age=-1"], now), deleted(""));
    assert_eq!(
        learned(
            &[b"JSESSIONID=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT"],
            now
        ),
        deleted("x")
    );
    assert_eq!(
        learned(
            &[b"JSESSIONID=x; Expires=Fri, 01 Jan 2100 00:00:00 GMT"],
            now
        ),
        set("x")
    );
    assert_eq!(
        learned(
            &[b"JSESSIONID=x; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT"],
            now
        ),
        set("x"),
        "Max-Age decides over Expires"
    );
    // Unparsable headers are skipped, not fatal.
    assert_eq!(learned(&[b"=nothing", b"\xff\xfe=1"], now), None);
}
