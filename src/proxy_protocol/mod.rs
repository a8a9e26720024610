//! The PROXY protocol header an L4 balancer (AWS ELB: v1, NLB: v2) puts in
//! front of every connection it relays (SPEC §4a, HAProxy's
//! `doc/proxy-protocol.txt`).
//!
//! ```text
//! accept ─▶ receive(stream, peer, mode, proxy_from, 5 s)
//!             │ peer not in proxy_from ─────────────────────▶ UntrustedPeer (nothing read)
//!             ▼
//!           read_header: parse() what has arrived
//!             │ Incomplete: read more, until the deadline ──▶ Timeout
//!             │ an error ───────────────────────────────────▶ Malformed / Crc
//!             ▼
//!           peek behind the header: a PROXY signature? ─────▶ Stacked
//!             ▼
//!           (Header, leftover) ─▶ Prefixed::new(leftover, stream) ─▶ TLS / HTTP
//! ```
//!
//! - [`parse`] is pure: bytes in, a [`Parsed`] header (and how many bytes it
//!   took), [`ParseError::Incomplete`] with the least total length worth
//!   retrying at, or an error. It never panics and never reads past the
//!   header it reports.
//! - [`read_header`] (in `read.rs`) drives it over a socket under a deadline;
//!   [`Prefixed`] replays the bytes read behind the header.
//! - [`Rejections`] (in `reject.rs`) counts refused connections per reason
//!   and logs them at most once per 10 s per listener.
//!
//! # In the accept path
//!
//! On a listener whose `proxy_protocol` is not `off`, before the TLS
//! handshake: `receive(&mut tcp, peer.ip(), mode, &proxy_from,
//! HEADER_TIMEOUT)`. On `Err`, [`Rejections::record`] it and drop the
//! connection: no TLS, no HTTP. On `Ok((header, leftover))`, TLS and hyper
//! read `Prefixed::new(leftover, tcp)`; [`Header::client`] is the client
//! address everywhere (access log `%h`, `X-Forwarded-For`, `client_ip`
//! affinity), [`Header::port`] is `X-Forwarded-Port`, and
//! [`Header::vpce_id`] becomes `X-Amzn-Vpce-Id`.
//!
//! # v1, text (`v1.rs`)
//!
//! ```text
//! "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP srcport SP dstport CRLF
//! "PROXY" SP "UNKNOWN" [SP anything] CRLF
//! ```
//!
//! Exactly one space between fields; dotted-quad IPv4 without leading zeros;
//! IPv6 text with at most one `::`; ports 0–65535 without leading zeros; CRLF
//! within the first 107 bytes (a lone CR or LF is refused). `UNKNOWN` means
//! "use the connection's own addresses".
//!
//! # v2, binary (`v2.rs`)
//!
//! ```text
//! offset 0  12 bytes  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A   signature
//!        12  1 byte   version (high nibble, must be 2) | command (0 LOCAL, 1 PROXY)
//!        13  1 byte   family (0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) | transport (0, 1 STREAM, 2 DGRAM)
//!        14  2 bytes  len, big-endian: the header is 16 + len bytes, always consumed whole
//!        16  address block: INET 12 (src4 dst4 srcport dstport), INET6 36, UNIX 216
//!            then TLVs to the end: type (1) | length (2, big-endian) | value
//! ```
//!
//! `LOCAL` (the balancer's own health checks; the NLB sends them with AF_INET,
//! dummy addresses and 72 bytes of padding: len 84) and `PROXY` with family
//! UNSPEC carry no addresses: their whole block is skipped unread. Otherwise
//! the TLVs are walked: CRC32C (0x03) is verified over the whole header with
//! its value zeroed, AUTHORITY (0x02) and the AWS VPC endpoint id (0xEA,
//! subtype 0x01) are kept, every other type is skipped.

mod read;
mod reject;
mod v1;
mod v2;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::config::ProxyProtocol;

pub use read::{HEADER_TIMEOUT, Prefixed, Rejection, read_header, receive};
pub use reject::{LOG_INTERVAL, Reason, Rejections};
pub use v2::{SIGNATURE as V2_SIGNATURE, crc32c};

/// What a PROXY header says about the connection it precedes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub command: Command,
    /// The client as the balancer saw it. `None` for LOCAL, v1 `UNKNOWN`,
    /// and v2 families berth does not take addresses from (UNSPEC, UNIX,
    /// datagram): the connection's own addresses are used then.
    pub source: Option<SocketAddr>,
    /// The address the client connected to (the balancer's listener).
    /// `None` whenever `source` is.
    pub destination: Option<SocketAddr>,
    /// AWS PrivateLink VPC endpoint id (v2 TLV 0xEA, subtype 0x01), passed
    /// upstream as `X-Amzn-Vpce-Id`. Only printable ASCII is kept.
    pub vpce_id: Option<String>,
    /// v2 TLV 0x02 (PP2_TYPE_AUTHORITY, usually the client's TLS SNI).
    pub authority: Option<String>,
}

impl Header {
    /// The client address for the access log, `X-Forwarded-For` and
    /// `client_ip` affinity: the header's source, else the connection's peer;
    /// an IPv4-mapped IPv6 address is turned into plain IPv4.
    pub fn client(&self, peer: SocketAddr) -> SocketAddr {
        let addr = self.source.unwrap_or(peer);
        SocketAddr::new(addr.ip().to_canonical(), addr.port())
    }

    /// The port the client connected to (`X-Forwarded-Port`): the header's
    /// destination port when it carries addresses, else the listener's.
    pub fn port(&self, listener_port: u16) -> u16 {
        self.destination.map_or(listener_port, |d| d.port())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// v2's command; a v1 header is always `Proxy` (`UNKNOWN` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A connection the balancer made itself (health check): no client.
    Local,
    Proxy,
}

/// A complete header at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// How many bytes the header took; what follows belongs to TLS or HTTP.
    pub len: usize,
    pub header: Header,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes so far are a valid beginning; the header is at least
    /// `needed` bytes long in total (exact for v2 once its 16 bytes are in).
    #[error("incomplete PROXY header: at least {needed} bytes needed")]
    Incomplete { needed: usize },
    #[error("{0}")]
    Malformed(&'static str),
    /// A well-formed header of a version the listener does not accept.
    #[error("PROXY {0} header on a listener that does not accept it")]
    NotAllowed(Version),
    #[error("PROXY v2 CRC32c mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    Crc { expected: u32, actual: u32 },
}

/// The shortest header of either version: `PROXY UNKNOWN\r\n` (v2: 16).
const MIN_V1_LEN: usize = 15;

/// Reads the PROXY header at the start of `buf`, if `mode` accepts its
/// version. Bytes after the header are not looked at.
pub fn parse(buf: &[u8], mode: ProxyProtocol) -> Result<Parsed, ParseError> {
    let (v1_ok, v2_ok) = match mode {
        ProxyProtocol::Off => (false, false),
        ProxyProtocol::V1 => (true, false),
        ProxyProtocol::V2 => (false, true),
        ProxyProtocol::Any => (true, true),
    };
    if !(v1_ok || v2_ok) {
        return Err(ParseError::Malformed("PROXY protocol is off"));
    }
    let Some(&first) = buf.first() else {
        // Either version is at least this long, whichever is allowed.
        return Err(ParseError::Incomplete { needed: MIN_V1_LEN });
    };
    let (version, signature, allowed) = if first == v2::SIGNATURE[0] {
        (Version::V2, &v2::SIGNATURE[..], v2_ok)
    } else {
        (Version::V1, v1::SIGNATURE, v1_ok)
    };
    let seen = buf.len().min(signature.len());
    if buf.get(..seen) != signature.get(..seen) {
        return Err(ParseError::Malformed("not a PROXY header"));
    }
    if !allowed {
        // Wait for the whole signature so that `POST` is not called a v1 header.
        return Err(if seen < signature.len() {
            ParseError::Incomplete {
                needed: signature.len(),
            }
        } else {
            ParseError::NotAllowed(version)
        });
    }
    match version {
        Version::V1 => v1::parse(buf),
        Version::V2 => v2::parse(buf),
    }
}

/// Whether `buf` (what follows a first header) begins a second PROXY header:
/// `Some(true)` as soon as a whole v1 or v2 signature is there,
/// `Some(false)` as soon as it cannot be, `None` while it could still be.
pub fn starts_header(buf: &[u8]) -> Option<bool> {
    let mut undecided = false;
    for signature in [&v2::SIGNATURE[..], v1::SIGNATURE] {
        let seen = buf.len().min(signature.len());
        if buf.get(..seen) == signature.get(..seen) {
            if seen == signature.len() {
                return Some(true);
            }
            undecided = true;
        }
    }
    if undecided { None } else { Some(false) }
}

/// Whether a connection from `peer` may send a PROXY header: it must be in
/// one of `proxy_from`'s networks. IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`,
/// as a dual-stack socket reports IPv4 clients) match IPv4 networks.
pub fn trusted(peer: IpAddr, proxy_from: &[ipnet::IpNet]) -> bool {
    let canonical = peer.to_canonical();
    proxy_from
        .iter()
        .any(|net| net.contains(&peer) || net.contains(&canonical))
}

#[cfg(test)]
mod tests;
