//! The metrics of SPEC §8, in the Prometheus text format.
//!
//! Counting happens on the request path in plain atomics, with no lock and
//! no label lookup: per server a counter per status code ([`StatusCounts`]),
//! the request durations in fixed histogram buckets, TLS handshakes. Most
//! figures are already kept elsewhere for `/status` (connections, server
//! state, affinity tables, PROXY rejections, certificate expiry, dropped
//! log lines). A scrape reads them all and writes them out through the
//! `prometheus-client` crate's encoder, which takes care of the format
//! (escaping, `_total` suffixes, histogram buckets, `# EOF`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// The content type of [`render`]'s OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format (0.0.4).
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Status codes 100..=599, one counter each.
pub struct StatusCounts {
    counts: Box<[AtomicU64; 500]>,
}

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts {
            counts: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl StatusCounts {
    pub fn count(&self, status: u16) {
        if let Some(counter) = status
            .checked_sub(100)
            .and_then(|i| self.counts.get(usize::from(i)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every code counted at least once, with its count.
    pub fn counted(&self) -> Vec<(u16, u64)> {
        (100u16..)
            .zip(self.counts.iter())
            .map(|(code, count)| (code, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

/// Upper bounds of the request duration buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Request durations, lock-free.
pub struct Durations {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Durations {
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Sum in seconds, count, and the count of each bucket (not
    /// cumulative: the encoder adds them up), the last being `+Inf`
    /// (`f64::MAX` to the encoder).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| (*bound, n.load(Ordering::Relaxed)))
            .collect();
        let bounded: u64 = buckets.iter().map(|(_, n)| n).sum();
        let count = self.count.load(Ordering::Relaxed).max(bounded);
        buckets.push((f64::MAX, count - bounded));
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, buckets)
    }
}

/// Counters that belong to the process rather than to a server.
#[derive(Default)]
pub struct Counters {
    tls_ok: AtomicU64,
    tls_failed: AtomicU64,
    pub durations: Durations,
    /// Requests answered without an app server, by pool ("" when no route
    /// matched or the request was refused before routing).
    unserved: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
}

impl Counters {
    pub fn handshake(&self, ok: bool) {
        let counter = if ok { &self.tls_ok } else { &self.tls_failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn unserved(&self, pool: Option<&str>, status: u16) {
        let mut unserved = self
            .unserved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let codes = unserved.entry(pool.unwrap_or("").to_owned()).or_default();
        *codes.entry(status).or_default() += 1;
    }
}

/// Everything a scrape reports, read at the time of the scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    /// (pool, server, code, count)
    pub requests: Vec<(String, String, u16, u64)>,
    /// (sum, count, buckets)
    pub durations: (f64, u64, Vec<(f64, u64)>),
    /// (listener, open connections)
    pub connections: Vec<(String, u64)>,
    pub tls_ok: u64,
    pub tls_failed: u64,
    /// (pool, server, up)
    pub server_up: Vec<(String, String, bool)>,
    /// (pool, entries, hit, new, moved, purged)
    pub affinity: Vec<(String, u64, u64, u64, u64, u64)>,
    /// (listener, reason, count)
    pub proxy_rejected: Vec<(String, &'static str, u64)>,
    /// (file, not_after as Unix seconds)
    pub cert_expiry: Vec<(String, i64)>,
    pub log_dropped: u64,
}

impl Scrape {
    /// Adds what `counters` holds.
    pub fn counters(&mut self, counters: &Counters) {
        self.tls_ok = counters.tls_ok.load(Ordering::Relaxed);
        self.tls_failed = counters.tls_failed.load(Ordering::Relaxed);
        self.durations = counters.durations.snapshot();
        let unserved = counters
            .unserved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (pool, codes) in unserved.iter() {
            for (code, count) in codes {
                self.requests
                    .push((pool.clone(), String::new(), *code, *count));
            }
        }
    }
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "berth_requests",
            "Requests answered, by pool, app server and status code.",
            None,
            MetricType::Counter,
        )?;
        for (pool, server, code, count) in &self.requests {
            let code = code.to_string();
            let labels = [("pool", pool.as_str()), ("server", server), ("code", &code)];
            counter(&mut family.encode_family(&labels)?, *count)?;
        }

        let (sum, count, buckets) = &self.durations;
        let mut family = encoder.encode_descriptor(
            "berth_request_duration_seconds",
            "Time from a request's head to the end of its response.",
            None,
            MetricType::Histogram,
        )?;
        family.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?;

        let mut family = encoder.encode_descriptor(
            "berth_connections_active",
            "Open client connections, by listener (its bind address).",
            None,
            MetricType::Gauge,
        )?;
        for (listener, open) in &self.connections {
            let labels = [("listener", listener.as_str())];
            family.encode_family(&labels)?.encode_gauge(open)?;
        }

        let mut family = encoder.encode_descriptor(
            "berth_tls_handshakes",
            "TLS handshakes, by result.",
            None,
            MetricType::Counter,
        )?;
        for (result, count) in [("ok", self.tls_ok), ("failed", self.tls_failed)] {
            counter(&mut family.encode_family(&[("result", result)])?, count)?;
        }

        let mut family = encoder.encode_descriptor(
            "berth_server_up",
            "1 while an app server is up as far as health checks know, else 0.",
            None,
            MetricType::Gauge,
        )?;
        for (pool, server, up) in &self.server_up {
            let labels = [("pool", pool.as_str()), ("server", server)];
            family
                .encode_family(&labels)?
                .encode_gauge(&u32::from(*up))?;
        }

        let mut family = encoder.encode_descriptor(
            "berth_affinity_entries",
            "Entries in a pool's affinity table.",
            None,
            MetricType::Gauge,
        )?;
        for (pool, entries, ..) in &self.affinity {
            family
                .encode_family(&[("pool", pool.as_str())])?
                .encode_gauge(entries)?;
        }
        let mut family = encoder.encode_descriptor(
            "berth_affinity_decisions",
            "Affinity decisions, by pool and result: hit (the tie held), new, moved (its server failed).",
            None,
            MetricType::Counter,
        )?;
        for (pool, _, hit, new, moved, _) in &self.affinity {
            for (result, count) in [("hit", hit), ("new", new), ("moved", moved)] {
                let labels = [("pool", pool.as_str()), ("result", result)];
                counter(&mut family.encode_family(&labels)?, *count)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_affinity_purged",
            "Ties dropped because their server went down, into maintenance or away.",
            None,
            MetricType::Counter,
        )?;
        for (pool, .., purged) in &self.affinity {
            counter(
                &mut family.encode_family(&[("pool", pool.as_str())])?,
                *purged,
            )?;
        }

        let mut family = encoder.encode_descriptor(
            "berth_proxy_header_rejected",
            "Connections closed for their PROXY header, by listener and reason.",
            None,
            MetricType::Counter,
        )?;
        for (listener, reason, count) in &self.proxy_rejected {
            let labels = [("listener", listener.as_str()), ("reason", reason)];
            counter(&mut family.encode_family(&labels)?, *count)?;
        }

        let mut family = encoder.encode_descriptor(
            "berth_cert_expiry_timestamp_seconds",
            "When each certificate expires (notAfter), by file relative to certs/.",
            None,
            MetricType::Gauge,
        )?;
        for (cert, not_after) in &self.cert_expiry {
            let cert = escape_label(cert);
            family
                .encode_family(&[("cert", cert.as_str())])?
                .encode_gauge(not_after)?;
        }

        let mut family = encoder.encode_descriptor(
            "berth_log_lines_dropped",
            "Access log lines that could not be written (disk full, queue full).",
            None,
            MetricType::Counter,
        )?;
        counter(&mut family, self.log_dropped)?;
        Ok(())
    }
}

/// A label value as the text format wants it: the encoder writes values as
/// given, so backslash, double quote and line feed are escaped here (file
/// names can hold them; pool and server names cannot).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn counter(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    encoder.encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

/// The text of a scrape: OpenMetrics, which Prometheus asks for, or else
/// the classic text format (0.0.4) that other tools and parsers read.
pub fn render(scrape: Scrape, openmetrics: bool) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    if openmetrics { text } else { classic(&text) }
}

/// OpenMetrics text as the classic format: a counter family is named with
/// its `_total` (as its samples are), and `# UNIT` and `# EOF` go.
fn classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(renamed) => out.push_str(&renamed),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_keep_codes_apart_and_ignore_nonsense() {
        let counts = StatusCounts::default();
        counts.count(200);
        counts.count(200);
        counts.count(502);
        counts.count(99);
        counts.count(600);
        assert_eq!(counts.counted(), vec![(200, 2), (502, 1)]);
    }

    #[test]
    fn durations_fall_in_their_buckets() {
        let durations = Durations::default();
        durations.observe(Duration::from_micros(500));
        durations.observe(Duration::from_millis(20));
        durations.observe(Duration::from_secs(100));
        let (sum, count, buckets) = durations.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 100.0205).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (0.001, 1));
        assert_eq!(buckets[4], (0.025, 1));
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
    }

    #[test]
    fn renders_every_family_of_the_spec() {
        let mut scrape = Scrape {
            requests: vec![("web".into(), "app01".into(), 200, 7)],
            connections: vec![("127.0.0.1:443".into(), 3)],
            server_up: vec![("web".into(), "app01".into(), true)],
            affinity: vec![("web".into(), 5, 1, 2, 3, 4)],
            proxy_rejected: vec![("0.0.0.0:443".into(), "crc", 2)],
            cert_expiry: vec![("a \"b\".pem".into(), 1_900_000_000)],
            log_dropped: 1,
            ..Scrape::default()
        };
        scrape.counters(&Counters::default());
        let text = render(scrape, true);
        for line in [
            "berth_requests_total{pool=\"web\",server=\"app01\",code=\"200\"} 7",
            "berth_request_duration_seconds_count 0",
            "berth_request_duration_seconds_bucket{le=\"+Inf\"} 0",
            "berth_connections_active{listener=\"127.0.0.1:443\"} 3",
            "berth_tls_handshakes_total{result=\"failed\"} 0",
            "berth_server_up{pool=\"web\",server=\"app01\"} 1",
            "berth_affinity_entries{pool=\"web\"} 5",
            "berth_affinity_decisions_total{pool=\"web\",result=\"moved\"} 3",
            "berth_affinity_purged_total{pool=\"web\"} 4",
            "berth_proxy_header_rejected_total{listener=\"0.0.0.0:443\",reason=\"crc\"} 2",
            "berth_cert_expiry_timestamp_seconds{cert=\"a \\\"b\\\".pem\"} 1900000000",
            "berth_log_lines_dropped_total 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
    }
}
