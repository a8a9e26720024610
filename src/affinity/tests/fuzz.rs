//! Thousands of pseudo-random byte strings, rich in the bytes the parsers
//! care about, thrown at every extraction function and at a whole
//! claim → decide → record → learn round: nothing may panic, and a few
//! properties must hold whatever the input.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::affinity::extract;
use crate::affinity::{Affinity, Candidate, ServerId};
use crate::config::{self, AffinityMode};

const ROUNDS: usize = 4000;

/// xorshift64: enough randomness, no dependency, the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Up to 48 bytes, mostly from the parsers' interesting set.
    fn bytes(&mut self) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b";",
            b"=",
            b"\"",
            b".",
            b" ",
            b"\t",
            b"/",
            b"?",
            b"&",
            b"#",
            b",",
            b"\\",
            b"BERTH",
            b"XBERTH",
            b"JSESSIONID",
            b"jsessionid",
            b"app01",
            b"app02",
            b".app03",
            b"Max-Age=0",
            b"Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            b"\xff",
            b"\xc3\xa9",
            b"\0",
            b"\r\n",
            b"\x7f",
        ];
        let mut out = Vec::new();
        for _ in 0..self.below(12) {
            if self.below(3) == 0 {
                out.push(self.next() as u8);
            } else {
                out.extend_from_slice(PIECES[self.below(PIECES.len())]);
            }
        }
        out
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Some header values of `name` (those `http` accepts).
    fn headers(&mut self, name: http::HeaderName) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for _ in 0..self.below(4) {
            if let Ok(value) = HeaderValue::from_bytes(&self.bytes()) {
                headers.append(name.clone(), value);
            }
        }
        headers
    }
}

/// Every (name, value) pair of the Cookie headers but those named `name`.
fn others<'h>(headers: &'h HeaderMap, name: &str) -> Vec<(&'h [u8], &'h [u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (n, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            (n != name.as_bytes()).then_some((n, v))
        })
        .collect()
}

#[test]
fn extraction_never_panics_and_keeps_its_promises() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let now = SystemTime::now();
    for _ in 0..ROUNDS {
        let mut cookies = rng.headers(COOKIE);
        let name = ["BERTH", "JSESSIONID", "a"][rng.below(3)];
        let target = rng.text();

        let first = extract::cookie(&cookies, name).map(<[u8]>::to_vec);
        assert_eq!(first.as_deref(), extract::cookies(&cookies, name).next());
        let ids = extract::session_ids(&cookies, &target, "jsessionid", "JSESSIONID");
        assert!(ids.len() <= extract::MAX_SESSION_IDS);
        for id in &ids {
            assert!(!id.route.is_empty() && id.id.ends_with(id.route));
        }
        if let Some(value) = extract::path_param(&target, "jsessionid") {
            assert!(!value.is_empty());
            assert!(!value.iter().any(|b| b";?/&#".contains(b)));
        }
        extract::route(&rng.bytes());
        extract::header(&cookies, &rng.text());

        let before: Vec<(Vec<u8>, Vec<u8>)> = others(&cookies, name)
            .into_iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        extract::strip_cookie(&mut cookies, name);
        assert_eq!(extract::cookie(&cookies, name), None);
        let after: Vec<(Vec<u8>, Vec<u8>)> = others(&cookies, name)
            .into_iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(before, after, "other cookies kept");

        let set = rng.headers(SET_COOKIE);
        extract::learned(&set, name, now);
        extract::learned(&set, "JSESSIONID", SystemTime::UNIX_EPOCH);

        let route = rng.text();
        if let Some(value) = extract::set_cookie(name, &route, rng.below(2) == 0) {
            let parsed = cookie::Cookie::parse(value.to_str().unwrap()).unwrap();
            assert_eq!((parsed.name(), parsed.value()), (name, route.as_str()));
        }
    }
}

#[test]
fn a_whole_round_never_panics_on_any_request() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t0 = Instant::now();
    let modes = [
        AffinityMode::Cookie {
            cookie: "BERTH".into(),
        },
        AffinityMode::SessionSuffix {
            cookie: "JSESSIONID".into(),
            path_param: "jsessionid".into(),
        },
        AffinityMode::Learn {
            cookie: "JSESSIONID".into(),
        },
        AffinityMode::ClientIp,
        AffinityMode::Header {
            header: "x-tie".into(),
        },
    ];
    let routes = ["app01", "app02", "app03"];
    for mode in modes {
        for failback in [false, true] {
            let config = config::Affinity {
                mode: mode.clone(),
                ttl: Duration::from_secs(10),
                max_entries: 50,
                failback,
                drain_quiet: Duration::ZERO,
            };
            let aff = Affinity::new(&config, t0);
            for round in 0..ROUNDS / 5 {
                let now = t0 + Duration::from_millis(round as u64 * 37);
                let mut headers = rng.headers(COOKIE);
                if let Ok(value) = HeaderValue::from_bytes(&rng.bytes()) {
                    headers.insert("x-tie", value);
                }
                let target = rng.text();
                let client = IpAddr::from((rng.next() as u128 % 8).to_be_bytes());
                let fleet: Vec<Candidate<'_>> = (0..3)
                    .map(|i| Candidate {
                        id: ServerId(i),
                        route: routes[usize::from(i)],
                        takes_ties: rng.below(4) != 0,
                    })
                    .collect();
                let claim = aff.claim(&headers, &target, client);
                let mut decision = aff.decide(&claim, fleet.as_slice(), now);
                if let Some(tied) = decision.tied() {
                    assert!(fleet[usize::from(tied.0)].takes_ties);
                }
                // Now and then elsewhere than the tie says (a failed connect).
                let balanced = ServerId(rng.below(3) as u16);
                let server = match decision.tied() {
                    Some(tied) if rng.below(5) != 0 => tied,
                    _ => balanced,
                };
                aff.record(
                    &mut decision,
                    server,
                    routes[usize::from(server.0)],
                    true,
                    now,
                );
                aff.learn(
                    &decision,
                    &rng.headers(SET_COOKIE),
                    server,
                    now,
                    SystemTime::now(),
                );
                aff.strip_request(&mut headers);
                if rng.below(50) == 0 {
                    aff.purge(ServerId(rng.below(3) as u16));
                }
                if rng.below(100) == 0 {
                    aff.sweep(now);
                }
            }
            let live: u64 = (0..3).map(|i| aff.server(ServerId(i)).ties).sum();
            assert!(live as usize <= aff.stats().entries);
            assert!(aff.stats().entries <= 50);
        }
    }
}
