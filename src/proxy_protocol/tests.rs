//! Tests of the PROXY header, by theme:
//!
//! - `v1.rs`, `v2.rs`: what `parse` accepts, what it refuses, and that every
//!   beginning of a valid header is `Incomplete`, never an error;
//! - `read.rs`: `read_header` over a `tokio::io::duplex`: bytes after the
//!   header intact, 1-byte writes, the deadline, stacked headers;
//! - `misc.rs`: `trusted`, the rejection counters and the log's rate limit.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use super::*;
use crate::config::ProxyProtocol;

mod misc;
mod read;
mod v1;
mod v2;

const MODES: [ProxyProtocol; 4] = [
    ProxyProtocol::Off,
    ProxyProtocol::V1,
    ProxyProtocol::V2,
    ProxyProtocol::Any,
];

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn malformed(buf: &[u8], mode: ProxyProtocol) -> &'static str {
    match parse(buf, mode) {
        Err(ParseError::Malformed(detail)) => detail,
        other => panic!(
            "{:?}: expected Malformed, got {other:?}",
            buf.escape_ascii().to_string()
        ),
    }
}

/// Every proper beginning of `header` is `Incomplete` with a `needed` that
/// is more than what is there and no more than the whole header, so a
/// reader that reads exactly `needed` never reads past it.
fn assert_prefixes_incomplete(header: &[u8], mode: ProxyProtocol) {
    for cut in 0..header.len() {
        match parse(&header[..cut], mode) {
            Err(ParseError::Incomplete { needed }) => {
                assert!(
                    needed > cut && needed <= header.len(),
                    "cut {cut}: needed {needed}"
                );
            }
            other => panic!("cut {cut} of {}: {other:?}", header.len()),
        }
    }
}
