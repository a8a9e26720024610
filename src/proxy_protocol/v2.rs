//! PROXY v2: the 16-byte fixed part, `len` more bytes, TLVs, CRC32c (see
//! the module docs for the layout).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Command, Header, ParseError, Parsed, Version};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Signature, version/command, family/transport, len.
pub(super) const FIXED_LEN: usize = 16;

const TLV_AUTHORITY: u8 = 0x02;
const TLV_CRC32C: u8 = 0x03;
const TLV_AWS: u8 = 0xEA;
const AWS_VPCE_ID: u8 = 0x01;

/// Parses a buffer that starts with [`SIGNATURE`] (or a beginning of it).
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, ParseError> {
    // Refuse a bad version, command or family as soon as its byte is in.
    let command = match buf.get(12) {
        Some(&ver_cmd) => Some(command(ver_cmd)?),
        None => None,
    };
    if let Some(&fam) = buf.get(13) {
        address_len(fam)?;
    }
    let (Some(command), Some(&[fam, len_hi, len_lo])) = (command, buf.get(13..FIXED_LEN)) else {
        return Err(ParseError::Incomplete { needed: FIXED_LEN });
    };
    let total = FIXED_LEN + usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let Some(header) = buf.get(..total) else {
        return Err(ParseError::Incomplete { needed: total });
    };
    let mut parsed = Header {
        version: Version::V2,
        command,
        source: None,
        destination: None,
        vpce_id: None,
        authority: None,
    };
    // LOCAL: the real endpoints are used and the whole block is skipped, dummy
    // addresses, padding and all. PROXY with UNSPEC says nothing usable either.
    if command == Command::Local || fam >> 4 == 0 {
        return Ok(Parsed {
            len: total,
            header: parsed,
        });
    }
    let address_len = address_len(fam)?;
    let block = header
        .get(FIXED_LEN..FIXED_LEN + address_len)
        .ok_or(ParseError::Malformed(
            "PROXY v2 len shorter than its address block",
        ))?;
    match (fam, block) {
        // TCP over IPv4 and IPv6: the only families with a client to take.
        // UDP and UNIX fall back to the connection's own addresses.
        (0x11, &[s0, s1, s2, s3, d0, d1, d2, d3, sp0, sp1, dp0, dp1]) => {
            let source = Ipv4Addr::new(s0, s1, s2, s3);
            let destination = Ipv4Addr::new(d0, d1, d2, d3);
            parsed.source = Some(SocketAddr::new(source.into(), be16(sp0, sp1)));
            parsed.destination = Some(SocketAddr::new(destination.into(), be16(dp0, dp1)));
        }
        (0x21, block) => {
            if let (Ok(source), Ok(destination), Some(&[sp0, sp1, dp0, dp1])) = (
                <[u8; 16]>::try_from(block.get(..16).unwrap_or_default()),
                <[u8; 16]>::try_from(block.get(16..32).unwrap_or_default()),
                block.get(32..36),
            ) {
                parsed.source = Some(SocketAddr::new(
                    Ipv6Addr::from(source).into(),
                    be16(sp0, sp1),
                ));
                parsed.destination = Some(SocketAddr::new(
                    Ipv6Addr::from(destination).into(),
                    be16(dp0, dp1),
                ));
            }
        }
        _ => {}
    }
    tlvs(header, FIXED_LEN + address_len, &mut parsed)?;
    Ok(Parsed {
        len: total,
        header: parsed,
    })
}

fn command(ver_cmd: u8) -> Result<Command, ParseError> {
    if ver_cmd >> 4 != 2 {
        return Err(ParseError::Malformed("PROXY v2 version is not 2"));
    }
    match ver_cmd & 0x0F {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        _ => Err(ParseError::Malformed(
            "PROXY v2 command is neither LOCAL nor PROXY",
        )),
    }
}

/// The address block's size for a family/transport byte; other values
/// "must be rejected as invalid by receivers".
fn address_len(fam: u8) -> Result<usize, ParseError> {
    if fam & 0x0F > 2 {
        return Err(ParseError::Malformed("PROXY v2 transport is unknown"));
    }
    match fam >> 4 {
        0 => Ok(0),
        1 => Ok(12),
        2 => Ok(36),
        3 => Ok(216),
        _ => Err(ParseError::Malformed("PROXY v2 address family is unknown")),
    }
}

fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

/// Walks the TLVs from `at` to the end of `header`, keeping what berth uses
/// and verifying the CRC32c if there is one.
fn tlvs(header: &[u8], mut at: usize, parsed: &mut Header) -> Result<(), ParseError> {
    let mut crc = None;
    while at < header.len() {
        let Some(&[kind, len_hi, len_lo]) = header.get(at..at + 3) else {
            return Err(ParseError::Malformed("PROXY v2 TLV cut short"));
        };
        let start = at + 3;
        let end = start + usize::from(be16(len_hi, len_lo));
        let value = header
            .get(start..end)
            .ok_or(ParseError::Malformed("PROXY v2 TLV runs past the header"))?;
        match kind {
            TLV_CRC32C => {
                let Ok(&expected) = <&[u8; 4]>::try_from(value) else {
                    return Err(ParseError::Malformed("PROXY v2 CRC32c TLV is not 4 bytes"));
                };
                if crc.replace((start, u32::from_be_bytes(expected))).is_some() {
                    return Err(ParseError::Malformed(
                        "PROXY v2 header with two CRC32c TLVs",
                    ));
                }
            }
            TLV_AUTHORITY if parsed.authority.is_none() => {
                parsed.authority = std::str::from_utf8(value).ok().map(str::to_owned);
            }
            TLV_AWS if parsed.vpce_id.is_none() => {
                if let Some((&AWS_VPCE_ID, id)) = value.split_first() {
                    let printable = !id.is_empty() && id.iter().all(u8::is_ascii_graphic);
                    parsed.vpce_id = printable.then(|| String::from_utf8_lossy(id).into_owned());
                }
            }
            // NOOP, ALPN, SSL, unique id, other custom types: skipped.
            _ => {}
        }
        at = end;
    }
    if let Some((start, expected)) = crc {
        let actual = header_crc(header, start);
        if actual != expected {
            return Err(ParseError::Crc { expected, actual });
        }
    }
    Ok(())
}

/// CRC32c of the whole header with the 4 bytes at `value` taken as zero.
fn header_crc(header: &[u8], value: usize) -> u32 {
    let before = header.get(..value).unwrap_or_default();
    let after = header.get(value + 4..).unwrap_or_default();
    !update(update(update(!0, before), &[0; 4]), after)
}

/// CRC32c (Castagnoli, as in iSCSI and SCTP: reflected polynomial
/// 0x82F63B78), the checksum of the PP2_TYPE_CRC32C TLV.
pub fn crc32c(bytes: &[u8]) -> u32 {
    !update(!0, bytes)
}

fn update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &byte in bytes {
        let index = (crc ^ u32::from(byte)) & 0xFF;
        crc = CRC_TABLE[index as usize] ^ (crc >> 8);
    }
    crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};
