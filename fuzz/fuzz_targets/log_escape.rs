//! Access-log escaping against a plain transcription of Apache's
//! `ap_escape_logitem` (the oracle), and whole log lines: whatever a
//! client sends, a line is one line whose quoted fields cannot be broken.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use berth::accesslog::{Entry, TimeCache, escape_into, format_entry};
use berth::config::LogFormat;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = b"x".to_vec();
    escape_into(&mut out, data);
    assert_eq!(&out[..1], b"x");
    assert_eq!(&out[1..], reference(data).as_slice());

    // Four fields from the input: %r, %u, Referer, User-Agent (and %v).
    let mut parts = data.split(|b| *b == 0xff);
    let mut field = || parts.next().map(Bytes::copy_from_slice);
    let entry = Entry {
        client: IpAddr::V4(Ipv4Addr::LOCALHOST),
        received: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        request_line: field(),
        user: field(),
        status: 200,
        body_bytes: 1,
        referer: field(),
        user_agent: field(),
        vhost: field(),
        port: 443,
        pool: None,
        server: None,
        outcome: None,
        duration: Duration::from_micros(1),
    };
    // Apache writes an empty %u as `""`: one more pair of quotes.
    let empty_user = usize::from(entry.user.as_deref() == Some(&[][..]));
    let mut utc = TimeCache::fixed(chrono::FixedOffset::east_opt(0).expect("UTC"));
    for (format, quoted) in [
        (LogFormat::Combined, 3),
        (LogFormat::VhostCombined, 3),
        (LogFormat::CombinedPlus, 5),
    ] {
        let mut line = Vec::new();
        format_entry(&mut line, &entry, format, &mut utc);
        // One line, printable ASCII only.
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        assert!(
            body.iter().all(|b| (0x20..0x7f).contains(b)),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
        // Quotes not preceded by an escaping backslash delimit exactly the quoted fields.
        let mut bare = 0;
        let mut escaped = false;
        for &b in body {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                bare += 1;
            }
        }
        assert_eq!(
            bare,
            (quoted + empty_user) * 2,
            "{:?}",
            String::from_utf8_lossy(&line)
        );
    }
});

/// httpd `server/util.c` `ap_escape_logitem`, one byte at a time, with NUL
/// (which a C string never holds) escaped as `\x00`.
fn reference(item: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in item {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0b => out.extend_from_slice(b"\\v"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out
}
