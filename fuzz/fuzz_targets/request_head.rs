//! Request-head checks: the raw-head scan of `watch` (head end, first line,
//! framing headers counted as sent) and `proxy::headers::check_request` /
//! `check_framing` on what a parser makes of the same bytes. Never panics;
//! the scan gives the same answer however the bytes are split into reads;
//! a head with repeated or conflicting framing headers is always refused.

#![no_main]

use berth::fuzzing::{count_framing, scan_head};
use berth::proxy::ProxyError;
use berth::proxy::headers::{check_framing, check_request};
use http::{HeaderMap, HeaderName, HeaderValue, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where reads split the rest: every `step` bytes.
    let Some((&step, head)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 16) + 1;
    let max = head.len() + 1;
    let (whole, whole_line) = scan_head([head], max);
    let (split, split_line) = scan_head(head.chunks(step), max);
    assert_eq!(whole.framing, split.framing);
    assert_eq!(whole.request_line, split.request_line);
    assert_eq!(whole_line, split_line);
    if let Some(line) = &whole_line {
        assert!(!line.is_empty() && !line.contains(&b'\n'));
    }
    // A small head_max only ever keeps less.
    let _ = scan_head(head.chunks(step), usize::from(step) * 3);

    let framing = count_framing(head);
    let refused = check_framing(framing).is_err();
    if let Some(f) = framing {
        assert_eq!(
            refused,
            f.content_lengths > 1 || (f.content_lengths > 0 && f.transfer_encodings > 0)
        );
    } else {
        assert!(!refused);
    }

    // The header map a parser would build from the same head.
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(_) = request.parse(head) else {
        return;
    };
    let mut map = HeaderMap::new();
    for h in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return;
        };
        map.append(name, value);
    }
    let version = if request.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let result = check_request(version, &map, 65536);
    let te: Vec<&[u8]> = map
        .get_all("transfer-encoding")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let single_chunked = te.len() == 1 && te[0].eq_ignore_ascii_case(b"chunked");
    if !te.is_empty() && (!single_chunked || map.contains_key("content-length")) {
        assert!(matches!(result, Err(ProxyError::BadRequest(_))), "{map:?}");
    }
    if map.get_all("content-length").iter().count() > 1 {
        assert!(result.is_err());
    }
    let _ = check_request(Version::HTTP_2, &map, head.len() / 2);
});
