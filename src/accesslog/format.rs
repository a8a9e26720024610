//! One access log line: `combined`, `vhost_combined` or `combined_plus`.
//!
//! ```text
//! combined        %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"
//! vhost_combined  %v:%p <combined>
//! combined_plus   <combined> "<pool>" "<server>" <outcome> <µs>
//! ```
//!
//! `%t` is formatted once per second and cached ([`TimeCache`]).

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset, Local, Offset as _, TimeZone as _, Utc};

use super::escape::escape_into;
use super::{Entry, Outcome};
use crate::config::LogFormat;

/// Appends one line for `entry` in `format`, including the final `'\n'`.
pub fn format_entry(out: &mut Vec<u8>, entry: &Entry, format: LogFormat, times: &mut TimeCache) {
    if format == LogFormat::VhostCombined {
        // An empty host is no host: an empty first field would shift every other one.
        match entry.vhost.as_deref() {
            Some(host) if !host.is_empty() => escape_into(out, host),
            _ => out.push(b'-'),
        }
        out.push(b':');
        push_u64(out, u64::from(entry.port));
        out.push(b' ');
    }

    // %h: an IPv4 client reaching an IPv6 socket is logged as IPv4.
    let _ = write!(out, "{}", entry.client.to_canonical());
    // %l
    out.extend_from_slice(b" - ");
    // %u: Apache writes an empty user as two double quotes.
    match entry.user.as_deref() {
        None => out.push(b'-'),
        Some([]) => out.extend_from_slice(b"\"\""),
        Some(user) => escape_into(out, user),
    }
    out.push(b' ');
    out.extend_from_slice(times.stamp(entry.received));
    out.extend_from_slice(b" \"");
    optional(out, entry.request_line.as_deref());
    out.extend_from_slice(b"\" ");
    // %>s: Apache writes `-` for a status it does not have.
    if entry.status == 0 {
        out.push(b'-');
    } else {
        push_u64(out, u64::from(entry.status));
    }
    out.push(b' ');
    if entry.body_bytes == 0 {
        out.push(b'-');
    } else {
        push_u64(out, entry.body_bytes);
    }
    out.extend_from_slice(b" \"");
    optional(out, entry.referer.as_deref());
    out.extend_from_slice(b"\" \"");
    optional(out, entry.user_agent.as_deref());
    out.push(b'"');

    if format == LogFormat::CombinedPlus {
        out.extend_from_slice(b" \"");
        optional(out, entry.pool.as_deref().map(str::as_bytes));
        out.extend_from_slice(b"\" \"");
        optional(out, entry.server.as_deref().map(str::as_bytes));
        out.extend_from_slice(b"\" ");
        out.extend_from_slice(match entry.outcome {
            None => b"-",
            Some(outcome) => outcome.as_str().as_bytes(),
        });
        out.push(b' ');
        push_u64(
            out,
            u64::try_from(entry.duration.as_micros()).unwrap_or(u64::MAX),
        );
    }
    out.push(b'\n');
}

impl Outcome {
    /// The word written in `combined_plus`: `hit`, `new` or `moved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::New => "new",
            Outcome::Moved => "moved",
        }
    }
}

/// `None` → `-`; anything else escaped (so empty stays empty).
fn optional(out: &mut Vec<u8>, item: Option<&[u8]>) {
    match item {
        None => out.push(b'-'),
        Some(item) => escape_into(out, item),
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Formats `%t` (`[10/Oct/2026:13:55:36 +0000]`) and remembers the last few
/// seconds, as Apache does: lines finish out of order, so a few slots, indexed
/// by the second, beat a single one.
#[derive(Debug)]
pub struct TimeCache {
    zone: Zone,
    slots: [Slot; SLOTS],
}

const SLOTS: usize = 4;

/// The latest time `%t` renders (9999-12-31 23:59:59 UTC): later ones are clamped.
const MAX_SECOND: i64 = 253_402_300_799;

#[derive(Debug, Clone, Copy)]
enum Zone {
    /// The process's local time zone, looked up for each new second (DST).
    Local,
    Fixed(FixedOffset),
}

#[derive(Debug, Clone)]
struct Slot {
    /// Seconds since the epoch; -1 for an empty slot (times are clamped to ≥ 0).
    second: i64,
    text: Vec<u8>,
}

impl TimeCache {
    /// `%t` in the process's local time zone (chrono's `Local`: `TZ`, else `/etc/localtime`).
    pub fn local() -> TimeCache {
        TimeCache::new(Zone::Local)
    }

    /// `%t` at a fixed offset from UTC, e.g. for tests or a UTC log.
    pub fn fixed(offset: FixedOffset) -> TimeCache {
        TimeCache::new(Zone::Fixed(offset))
    }

    fn new(zone: Zone) -> TimeCache {
        let empty = Slot {
            second: -1,
            text: Vec::with_capacity(32),
        };
        TimeCache {
            zone,
            slots: std::array::from_fn(|_| empty.clone()),
        }
    }

    /// `[dd/Mon/yyyy:HH:MM:SS ±hhmm]` for `time`, truncated to the second.
    /// Times before 1970 or after 9999 are clamped.
    pub fn stamp(&mut self, time: SystemTime) -> &[u8] {
        let second = match time.duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).map_or(MAX_SECOND, |s| s.min(MAX_SECOND)),
            Err(_) => 0,
        };
        let zone = self.zone;
        // `second` is in 0..=MAX_SECOND, so the index is in range.
        let slot = &mut self.slots[(second as usize) % SLOTS];
        if slot.second != second {
            slot.second = second;
            slot.text.clear();
            render(&mut slot.text, second, zone);
        }
        &slot.text
    }
}

fn render(out: &mut Vec<u8>, second: i64, zone: Zone) {
    let utc = DateTime::<Utc>::from_timestamp(second, 0).unwrap_or_default();
    let offset = match zone {
        Zone::Local => Local.offset_from_utc_datetime(&utc.naive_utc()).fix(),
        Zone::Fixed(offset) => offset,
    };
    let _ = write!(
        out,
        "{}",
        utc.with_timezone(&offset).format("[%d/%b/%Y:%H:%M:%S %z]")
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use bytes::Bytes;
    use chrono::{FixedOffset, Local, NaiveDate, TimeZone as _};

    use super::{TimeCache, format_entry};
    use crate::accesslog::{Entry, Outcome};
    use crate::config::LogFormat;

    /// 10/Oct/2026:13:55:36 UTC.
    const T: u64 = 1_791_640_536;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn utc() -> TimeCache {
        TimeCache::fixed(FixedOffset::east_opt(0).unwrap())
    }

    fn entry() -> Entry {
        Entry {
            client: "203.0.113.7".parse().unwrap(),
            received: at(T) + Duration::from_millis(999),
            request_line: Some(Bytes::from_static(
                b"GET /app/;jsessionid=5F3A.node1 HTTP/1.1",
            )),
            user: None,
            status: 200,
            body_bytes: 5120,
            referer: Some(Bytes::from_static(b"https://example.com/")),
            user_agent: Some(Bytes::from_static(b"Mozilla/5.0 (X11; Linux x86_64)")),
            vhost: Some(Bytes::from_static(b"example.com")),
            port: 443,
            pool: Some(Arc::from("web")),
            server: Some(Arc::from("app01")),
            outcome: Some(Outcome::Hit),
            duration: Duration::from_micros(1234),
        }
    }

    fn line(entry: &Entry, format: LogFormat, times: &mut TimeCache) -> String {
        let mut out = Vec::new();
        format_entry(&mut out, entry, format, times);
        String::from_utf8(out).unwrap()
    }

    const COMBINED: &str = r#"203.0.113.7 - - [10/Oct/2026:13:55:36 +0000] "GET /app/;jsessionid=5F3A.node1 HTTP/1.1" 200 5120 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64)""#;

    #[test]
    fn combined() {
        let got = line(&entry(), LogFormat::Combined, &mut utc());
        assert_eq!(got, format!("{COMBINED}\n"));
    }

    #[test]
    fn vhost_combined() {
        let mut e = entry();
        let got = line(&e, LogFormat::VhostCombined, &mut utc());
        assert_eq!(got, format!("example.com:443 {COMBINED}\n"));
        e.vhost = None;
        e.port = 8443;
        let got = line(&e, LogFormat::VhostCombined, &mut utc());
        assert_eq!(got, format!("-:8443 {COMBINED}\n"));
        e.vhost = Some(Bytes::new());
        let got = line(&e, LogFormat::VhostCombined, &mut utc());
        assert_eq!(got, format!("-:8443 {COMBINED}\n"));
        e.vhost = Some(Bytes::from_static(b"b\"ad\xff"));
        let got = line(&e, LogFormat::VhostCombined, &mut utc());
        assert_eq!(got, format!(r#"b\"ad\xff:8443 {COMBINED}"#) + "\n");
    }

    #[test]
    fn combined_plus() {
        let mut e = entry();
        let got = line(&e, LogFormat::CombinedPlus, &mut utc());
        assert_eq!(got, format!("{COMBINED} \"web\" \"app01\" hit 1234\n"));

        e.outcome = Some(Outcome::New);
        e.duration = Duration::from_nanos(2_500_999);
        let got = line(&e, LogFormat::CombinedPlus, &mut utc());
        assert_eq!(got, format!("{COMBINED} \"web\" \"app01\" new 2500\n"));

        e.outcome = Some(Outcome::Moved);
        e.server = Some(Arc::from("app\"02"));
        let got = line(&e, LogFormat::CombinedPlus, &mut utc());
        assert_eq!(
            got,
            format!("{COMBINED} \"web\" \"app\\\"02\" moved 2500\n")
        );

        e.pool = None;
        e.server = None;
        e.outcome = None;
        e.duration = Duration::ZERO;
        let got = line(&e, LogFormat::CombinedPlus, &mut utc());
        assert_eq!(got, format!("{COMBINED} \"-\" \"-\" - 0\n"));
    }

    #[test]
    fn absent_and_empty_fields() {
        let mut e = entry();
        e.request_line = None;
        e.user = Some(Bytes::new());
        e.body_bytes = 0;
        e.referer = None;
        e.user_agent = Some(Bytes::new());
        let got = line(&e, LogFormat::Combined, &mut utc());
        assert_eq!(
            got,
            "203.0.113.7 - \"\" [10/Oct/2026:13:55:36 +0000] \"-\" 200 - \"-\" \"\"\n"
        );

        e.request_line = Some(Bytes::new());
        e.user = Some(Bytes::from_static(b"j\xc3\xa9r\xc3\xb4me smith"));
        e.status = 0;
        let got = line(&e, LogFormat::Combined, &mut utc());
        assert_eq!(
            got,
            "203.0.113.7 - j\\xc3\\xa9r\\xc3\\xb4me smith [10/Oct/2026:13:55:36 +0000] \"\" - - \"-\" \"\"\n"
        );
    }

    #[test]
    fn http2_request_line_ipv6_client_and_escaping() {
        let mut e = entry();
        e.client = "2001:db8::7".parse().unwrap();
        e.request_line = Some(Bytes::from_static(b"GET /caf\xc3\xa9?q=\"x\" HTTP/2.0"));
        e.user_agent = Some(Bytes::from_static(b"curl/8.5.0\t\x01"));
        e.status = 304;
        e.body_bytes = 0;
        let got = line(&e, LogFormat::Combined, &mut utc());
        assert_eq!(
            got,
            r#"2001:db8::7 - - [10/Oct/2026:13:55:36 +0000] "GET /caf\xc3\xa9?q=\"x\" HTTP/2.0" 304 - "https://example.com/" "curl/8.5.0\t\x01""#
                .to_owned()
                + "\n"
        );
        e.client = IpAddr::V6("::ffff:192.0.2.1".parse().unwrap());
        let got = line(&e, LogFormat::Combined, &mut utc());
        assert!(got.starts_with("192.0.2.1 - - ["), "{got}");
    }

    #[test]
    fn time_zones() {
        let e = entry();
        let cases = [
            (-5 * 3600, "[10/Oct/2026:08:55:36 -0500]"),
            (5 * 3600 + 1800, "[10/Oct/2026:19:25:36 +0530]"),
            (-(3 * 3600 + 1800), "[10/Oct/2026:10:25:36 -0330]"),
            (14 * 3600, "[11/Oct/2026:03:55:36 +1400]"),
        ];
        for (offset, want) in cases {
            let mut times = TimeCache::fixed(FixedOffset::east_opt(offset).unwrap());
            let got = line(&e, LogFormat::Combined, &mut times);
            assert!(got.contains(want), "{offset}: {got}");
        }
    }

    #[test]
    fn english_month_names_and_year_change() {
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut times = utc();
        for (m, name) in (1..=12).zip(months) {
            let t = NaiveDate::from_ymd_opt(2026, m, 1)
                .unwrap()
                .and_hms_opt(9, 5, 7)
                .unwrap()
                .and_utc()
                .timestamp();
            let got = times.stamp(at(u64::try_from(t).unwrap())).to_vec();
            assert_eq!(got, format!("[01/{name}/2026:09:05:07 +0000]").as_bytes());
        }
        let new_year = 1_798_761_600; // 2027-01-01 00:00:00 UTC
        let mut est = TimeCache::fixed(FixedOffset::west_opt(5 * 3600).unwrap());
        assert_eq!(est.stamp(at(new_year)), b"[31/Dec/2026:19:00:00 -0500]");
        assert_eq!(utc().stamp(at(new_year)), b"[01/Jan/2027:00:00:00 +0000]");
    }

    #[test]
    fn cache_keeps_recent_seconds_apart() {
        let mut times = utc();
        // Out-of-order seconds, repeats, and seconds sharing a slot.
        for secs in [T, T + 1, T, T + 4, T, T + 8, T - 1, T + 4] {
            let got = times.stamp(at(secs)).to_vec();
            let mut fresh = utc();
            assert_eq!(got, fresh.stamp(at(secs)), "{secs}");
        }
        assert_eq!(
            times.stamp(at(T) + Duration::from_nanos(999_999_999)),
            b"[10/Oct/2026:13:55:36 +0000]"
        );
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        let mut times = utc();
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(times.stamp(before), b"[01/Jan/1970:00:00:00 +0000]");
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(times.stamp(far), b"[31/Dec/9999:23:59:59 +0000]");
    }

    #[test]
    fn local_zone_matches_chrono() {
        let mut times = TimeCache::local();
        for secs in [T, 1_774_000_000, 1_788_000_000, 0] {
            let want = Local
                .timestamp_opt(i64::try_from(secs).unwrap(), 0)
                .unwrap()
                .format("[%d/%b/%Y:%H:%M:%S %z]")
                .to_string();
            assert_eq!(times.stamp(at(secs)), want.as_bytes());
        }
    }
}
