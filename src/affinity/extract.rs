//! Reading ties out of requests and responses, and writing berth's cookie.
//!
//! Pure functions over plain inputs (`&HeaderMap`, the request target as
//! `&str`, an `IpAddr`), total over every byte string: they return `None`
//! or nothing rather than panic, and never allocate on the common path.
//!
//! - Cookies (`Cookie` request headers, RFC 6265 §4.2): every header is
//!   read (HTTP/2 clients send one per cookie), each split on `;` into
//!   `name=value` pairs, names compared exactly (so `XBERTH` is not
//!   `BERTH`), spaces and tabs around names and values ignored, and one pair
//!   of double quotes around a value removed (`"abc"` → `abc`).
//! - Tomcat session ids: the `;jsessionid=` path parameter first, then
//!   every `JSESSIONID` cookie in order (mod_jk, httpd); the route is what
//!   follows the **first** `.` (`A1.node1.dc2` → `node1.dc2`), and an id
//!   without one, or with nothing after it, carries no tie.
//! - `Set-Cookie` response headers are parsed with the `cookie` crate.

use std::net::IpAddr;
use std::time::SystemTime;

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// At most this many session ids naming a route are taken from one
/// request: a client sending a thousand `JSESSIONID` cookies costs no more
/// than eight table lookups.
pub const MAX_SESSION_IDS: usize = 8;

/// A Tomcat session id that names a route: `id` is the whole value (the
/// key of an override tie), `route` the part after the first `.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId<'r> {
    pub id: &'r [u8],
    pub route: &'r [u8],
}

/// What an app server's `Set-Cookie` says about the learned cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// The cookie was set to this value: tie it to the server.
    Set(Vec<u8>),
    /// The cookie was deleted (`Max-Age` ≤ 0, or `Expires` in the past);
    /// the value it carried, often empty.
    Deleted(Vec<u8>),
}

/// The values of cookie `name` in the request's `Cookie` headers, in order.
pub fn cookies<'h>(headers: &'h HeaderMap, name: &str) -> impl Iterator<Item = &'h [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .filter_map(move |pair| {
            let (n, v) = split_pair(pair)?;
            (n == name.as_bytes()).then(|| unquote(v))
        })
}

/// The first value of cookie `name` (the one `cookie` and `learn` use).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    cookies(headers, name).next()
}

/// Removes cookie `name` (every pair of that name) from the request's
/// `Cookie` headers; a header left with no cookie is dropped. Other
/// cookies are kept byte for byte, joined by `;` as they were. Returns
/// whether anything was removed.
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) -> bool {
    let named = |value: &HeaderValue| {
        value
            .as_bytes()
            .split(|b| *b == b';')
            .any(|pair| is_named(pair, name))
    };
    if !headers.get_all(COOKIE).iter().any(named) {
        return false;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| without(value, name))
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        headers.append(COOKIE, value);
    }
    true
}

/// `value` without the pairs named `name`; `None` if no cookie is left.
fn without(value: &HeaderValue, name: &str) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for pair in bytes.split(|b| *b == b';') {
        if is_named(pair, name) || pair.trim_ascii().is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(b';');
        }
        out.extend_from_slice(pair);
    }
    let out = out.trim_ascii();
    if out.is_empty() {
        return None;
    }
    let mut kept = HeaderValue::from_bytes(out).ok()?;
    kept.set_sensitive(value.is_sensitive());
    Some(kept)
}

fn is_named(pair: &[u8], name: &str) -> bool {
    split_pair(pair).is_some_and(|(n, _)| n == name.as_bytes())
}

/// `name=value` → (name, value), both trimmed; `None` without a `=`.
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|b| *b == b'=')?;
    let (name, value) = pair.split_at(eq);
    Some((trim(name), trim(value.get(1..)?)))
}

/// Spaces and tabs off both ends (the only whitespace a header value holds).
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(start), Some(end)) => bytes.get(start..=end).unwrap_or_default(),
        _ => &[],
    }
}

/// One pair of surrounding double quotes removed, as RFC 6265 allows.
fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

/// The value of path parameter `;name=` in the request target's path
/// (before `?` and `#`), ending at `;`, `?`, `/`, `&` or `#` as mod_jk and
/// httpd end it. The first one with a value wins.
pub fn path_param<'t>(target: &'t str, name: &str) -> Option<&'t [u8]> {
    let path = target.as_bytes();
    let path = path
        .iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .and_then(|end| path.get(..end))
        .unwrap_or(path);
    let name = name.as_bytes();
    let mut rest = path;
    while let Some(semi) = rest.iter().position(|b| *b == b';') {
        rest = rest.get(semi + 1..).unwrap_or_default();
        let Some(after) = rest.strip_prefix(name).and_then(|r| r.strip_prefix(b"=")) else {
            continue;
        };
        let end = after
            .iter()
            .position(|b| matches!(b, b';' | b'?' | b'/' | b'&' | b'#'))
            .unwrap_or(after.len());
        let value = after.get(..end).unwrap_or_default();
        if !value.is_empty() {
            return Some(value);
        }
    }
    None
}

/// A session id's route: after the first `.`, if not empty.
pub fn route(id: &[u8]) -> Option<SessionId<'_>> {
    let dot = id.iter().position(|b| *b == b'.')?;
    let route = id.get(dot + 1..)?;
    (!route.is_empty()).then_some(SessionId { id, route })
}

/// The session ids of a request that name a route, in the order they are
/// tried: the path parameter, then each cookie; at most
/// [`MAX_SESSION_IDS`].
pub fn session_ids<'r>(
    headers: &'r HeaderMap,
    target: &'r str,
    path_param: &str,
    cookie: &str,
) -> Vec<SessionId<'r>> {
    self::path_param(target, path_param)
        .into_iter()
        .chain(cookies(headers, cookie))
        .filter_map(route)
        .take(MAX_SESSION_IDS)
        .collect()
}

/// The value of request header `name` (the first if repeated), if not empty.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    let value = headers.get(name)?.as_bytes();
    (!value.is_empty()).then_some(value)
}

/// A client address as the table keys it: 16 bytes, IPv4 as IPv4-mapped
/// IPv6, so `::ffff:192.0.2.1` and `192.0.2.1` are one client.
pub fn client_ip(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// berth's cookie for `cookie` mode (SPEC §5):
/// `<name>=<route>; Path=/; HttpOnly; SameSite=Lax`, plus `; Secure` on TLS
/// listeners. `None` if the name is not a token or the route holds a byte
/// a cookie value may not (configuration checks make both impossible).
pub fn set_cookie(name: &str, route: &str, secure: bool) -> Option<HeaderValue> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    // RFC 6265 cookie-octet: visible ASCII but for `"`, `,`, `;` and `\`.
    let octet = |b: u8| matches!(b, 0x21..=0x7e) && !matches!(b, b'"' | b',' | b';' | b'\\');
    if name.is_empty() || !name.bytes().all(tchar) || route.is_empty() || !route.bytes().all(octet)
    {
        return None;
    }
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{name}={route}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

/// What the response's `Set-Cookie` headers say about cookie `name`: the
/// last one naming it wins, as in a browser. `now` decides whether an
/// `Expires` date is past; `Max-Age`, when present, decides instead.
pub fn learned(headers: &HeaderMap, name: &str, now: SystemTime) -> Option<Learned> {
    let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    headers.get_all(SET_COOKIE).iter().rev().find_map(|value| {
        let text = std::str::from_utf8(value.as_bytes()).ok()?;
        let parsed = cookie::Cookie::parse(text).ok()?;
        if parsed.name() != name {
            return None;
        }
        let value = unquote(parsed.value().as_bytes()).to_vec();
        let deleted = match parsed.max_age() {
            Some(max_age) => max_age.whole_seconds() <= 0,
            None => parsed
                .expires_datetime()
                .is_some_and(|expires| expires.unix_timestamp() <= now),
        };
        Some(if deleted {
            Learned::Deleted(value)
        } else {
            Learned::Set(value)
        })
    })
}
