//! PROXY header parser: never panics, and agrees with itself however the
//! bytes arrive.

#![no_main]

use berth::config::ProxyProtocol;
use berth::proxy_protocol::{ParseError, Parsed, crc32c, parse, starts_header};
use libfuzzer_sys::fuzz_target;

const MODES: [ProxyProtocol; 4] = [
    ProxyProtocol::Off,
    ProxyProtocol::V1,
    ProxyProtocol::V2,
    ProxyProtocol::Any,
];

fuzz_target!(|data: &[u8]| {
    for mode in MODES {
        let full = parse(data, mode);
        match &full {
            Ok(Parsed { len, header }) => {
                assert!(*len <= data.len());
                // Nothing after the header was looked at.
                assert_eq!(parse(&data[..*len], mode), full);
                assert_eq!(header.source.is_some(), header.destination.is_some());
            }
            Err(ParseError::Incomplete { needed }) => assert!(*needed > data.len()),
            Err(_) => {}
        }
        replay(data, mode, &full);
    }
    let _ = starts_header(data);
    assert_eq!(crc32c(data), crc32c::crc32c(data));
});

/// Feeds `data` as a reader that reads exactly what `Incomplete` asks for
/// would: it must end as parsing everything at once does, so `needed` is
/// never more than the header's length and early refusals are final.
fn replay(data: &[u8], mode: ProxyProtocol, full: &Result<Parsed, ParseError>) {
    let mut seen = 0;
    loop {
        match parse(&data[..seen], mode) {
            Err(ParseError::Incomplete { needed }) if seen < data.len() => {
                assert!(needed > seen, "needed {needed} with {seen} bytes in");
                seen = needed.min(data.len());
            }
            partial => {
                assert_eq!(&partial, full, "after {seen} of {} bytes", data.len());
                return;
            }
        }
    }
}
