//! Cookie and session-id extraction (`affinity::extract`): never panics on
//! any header bytes or request target, and keeps its promises.
//!
//! Input: lines separated by `\n`. The first is the request target, the
//! second the names to look for (`cookie name`, `path parameter`), the rest
//! are `Cookie` header values (request) and, after a line `--`, `Set-Cookie`
//! values (response). Lines that are not valid header values are skipped,
//! as hyper would never hand them over.

#![no_main]

use std::time::{Duration, SystemTime};

use berth::affinity::extract::{
    Learned, MAX_SESSION_IDS, cookie, cookies, header, learned, path_param, route, session_ids,
    set_cookie, strip_cookie,
};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let target = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let names = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (name, param) = names.split_once(' ').unwrap_or((&names, "jsessionid"));
    let mut request = HeaderMap::new();
    let mut response = HeaderMap::new();
    let mut in_response = false;
    for line in lines {
        if line == b"--" {
            in_response = true;
            continue;
        }
        let Ok(value) = HeaderValue::from_bytes(line) else {
            continue;
        };
        if in_response {
            response.append(SET_COOKIE, value);
        } else {
            request.append(COOKIE, value);
        }
    }

    // Every value found is a slice of some Cookie header.
    let values: Vec<&[u8]> = request
        .get_all(COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    for found in cookies(&request, name) {
        assert!(values.iter().any(|v| contains(v, found)));
        assert!(!found.contains(&b';'));
    }
    assert_eq!(cookie(&request, name), cookies(&request, name).next());

    // A path parameter's value holds none of its terminators and is in the target.
    if let Some(value) = path_param(&target, param) {
        assert!(!value.is_empty());
        assert!(!value.iter().any(|b| b";?/&#".contains(b)));
        assert!(contains(target.as_bytes(), value));
    }

    // At most MAX_SESSION_IDS, each naming a non-empty route after its first dot.
    let ids = session_ids(&request, &target, param, name);
    assert!(ids.len() <= MAX_SESSION_IDS);
    for id in &ids {
        assert!(!id.route.is_empty());
        let dot = id
            .id
            .iter()
            .position(|b| *b == b'.')
            .expect("a route follows a dot");
        assert_eq!(&id.id[dot + 1..], id.route);
        assert_eq!(route(id.id).as_ref(), Some(id));
    }

    let _ = header(&request, "cookie");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match learned(&response, name, now) {
        Some(Learned::Set(v) | Learned::Deleted(v)) => assert!(v.len() <= data.len()),
        None => {}
    }
    if let Some(value) = set_cookie(name, &target, data.first().is_some_and(|b| b & 1 == 1)) {
        assert!(value.to_str().is_ok());
    }

    // Stripping removes every pair of that name and keeps the others.
    let others = |map: &HeaderMap| -> usize {
        map.get_all(COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
            .filter(|pair| pair.contains(&b'=') && cookies_named(pair) != Some(name.as_bytes()))
            .count()
    };
    let before = others(&request);
    let had = cookie(&request, name).is_some();
    let mut stripped = request.clone();
    assert_eq!(strip_cookie(&mut stripped, name), had);
    assert_eq!(cookie(&stripped, name), None);
    if had {
        assert_eq!(others(&stripped), before);
    }
});

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The trimmed name of a `name=value` pair.
fn cookies_named(pair: &[u8]) -> Option<&[u8]> {
    let eq = pair.iter().position(|b| *b == b'=')?;
    Some(pair[..eq].trim_ascii_start().trim_ascii_end())
}
