//! PROXY v1: one text line, strictly checked (see the module docs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Command, Header, MIN_V1_LEN, ParseError, Parsed, Version};

pub(super) const SIGNATURE: &[u8] = b"PROXY ";

/// The longest v1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6
/// addresses and ports).
pub(super) const MAX_LEN: usize = 107;

/// Parses a buffer that starts with [`SIGNATURE`] (or a beginning of it).
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, ParseError> {
    let window = buf.get(..buf.len().min(MAX_LEN)).unwrap_or(buf);
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= MAX_LEN {
            return Err(ParseError::Malformed(
                "PROXY v1 line without CRLF in 107 bytes",
            ));
        }
        // Not even the CR yet: at least CR and LF are still to come.
        return Err(ParseError::Incomplete {
            needed: (buf.len() + 2).max(MIN_V1_LEN),
        });
    };
    if window.get(end) == Some(&b'\n') {
        return Err(ParseError::Malformed("PROXY v1 line ends with a bare LF"));
    }
    let len = end + 2;
    if len > MAX_LEN {
        return Err(ParseError::Malformed("PROXY v1 line longer than 107 bytes"));
    }
    match buf.get(end + 1) {
        None => return Err(ParseError::Incomplete { needed: len }),
        Some(b'\n') => {}
        Some(_) => {
            return Err(ParseError::Malformed(
                "PROXY v1 line with a CR not followed by LF",
            ));
        }
    }
    let line = buf
        .get(SIGNATURE.len()..end)
        .ok_or(ParseError::Malformed("PROXY v1 line too short"))?;
    let header = parse_line(line)?;
    Ok(Parsed { len, header })
}

/// Parses what follows `PROXY ` up to (not including) the CR.
fn parse_line(line: &[u8]) -> Result<Header, ParseError> {
    let mut fields = line.split(|&b| b == b' ');
    let protocol = fields.next().unwrap_or_default();
    let parse_ip: fn(&[u8]) -> Option<IpAddr> = match protocol {
        // The rest of the line, if any, says nothing berth may use.
        b"UNKNOWN" => return Ok(header(None, None)),
        b"TCP4" => |text| parse_ipv4(text).map(IpAddr::V4),
        b"TCP6" => |text| parse_ipv6(text).map(IpAddr::V6),
        _ => {
            return Err(ParseError::Malformed(
                "PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN (or two spaces)",
            ));
        }
    };
    let mut next = || {
        fields
            .next()
            .ok_or(ParseError::Malformed("PROXY v1 line has too few fields"))
    };
    let src = parse_ip(next()?).ok_or(ParseError::Malformed(
        "PROXY v1 source address invalid (or two spaces)",
    ))?;
    let dst = parse_ip(next()?).ok_or(ParseError::Malformed(
        "PROXY v1 destination address invalid",
    ))?;
    let src_port =
        parse_port(next()?).ok_or(ParseError::Malformed("PROXY v1 source port invalid"))?;
    let dst_port =
        parse_port(next()?).ok_or(ParseError::Malformed("PROXY v1 destination port invalid"))?;
    if fields.next().is_some() {
        return Err(ParseError::Malformed(
            "PROXY v1 line has more than six fields (or a trailing space)",
        ));
    }
    Ok(header(
        Some(SocketAddr::new(src, src_port)),
        Some(SocketAddr::new(dst, dst_port)),
    ))
}

fn header(source: Option<SocketAddr>, destination: Option<SocketAddr>) -> Header {
    Header {
        version: Version::V1,
        command: Command::Proxy,
        source,
        destination,
        vpce_id: None,
        authority: None,
    }
}

/// A decimal number of 1 to `max_digits` digits with no leading zero
/// (except `0` itself): no sign, no spaces.
fn parse_decimal(text: &[u8], max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || (text.len() > 1 && text.first() == Some(&b'0'))
    {
        return None;
    }
    text.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

fn parse_port(text: &[u8]) -> Option<u16> {
    u16::try_from(parse_decimal(text, 5)?).ok()
}

/// Dotted quad, four decimal octets without leading zeros (`01.2.3.4` and
/// `999.1.1.1` are refused).
fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        *octet = u8::try_from(parse_decimal(parts.next()?, 3)?).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// IPv6 text (hex groups, at most one `::`, optionally a trailing dotted
/// quad), as the standard library reads it; no zone, no brackets.
fn parse_ipv6(text: &[u8]) -> Option<Ipv6Addr> {
    if !text
        .iter()
        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}
