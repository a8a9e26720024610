//! The access log (SPEC §6): Apache `combined`, `vhost_combined` and
//! `combined_plus` lines, written off the request path.
//!
//! ```text
//! request path ── AccessLog::log(Entry) ──try_send──▶ bounded queue ──▶ writer thread
//!   (never blocks; a full queue                        format_entry → 64 KiB buffer
//!    counts a dropped line)                            → file or stdout, flushed ≤ 1 s
//! ```
//!
//! - `escape`: Apache's `ap_escape_logitem`, byte for byte.
//! - `format`: one line in one of the three formats; `%t` cached per second.
//! - `sink`: the writer's buffer, counting the lines a failed write loses.
//! - `writer`: [`AccessLog`], the queue and the writer thread; reopen (SIGUSR1)
//!   and shutdown.

mod escape;
mod format;
mod sink;
mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

pub use escape::escape_into;
pub use format::{TimeCache, format_entry};
pub use writer::{AccessLog, QUEUE_CAPACITY};

/// One request, as the request path hands it over. Formatting happens on the
/// writer thread.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `%h`: the real client address (from the PROXY header when present).
    pub client: IpAddr,
    /// `%t`: when the request arrived.
    pub received: SystemTime,
    /// `%r` as received (`None` → `-`).
    pub request_line: Option<Bytes>,
    /// `%u`: the Basic-auth user name (`None` → `-`, empty → `""`, as Apache).
    pub user: Option<Bytes>,
    /// `%>s`: the status sent to the client (0 → `-`).
    pub status: u16,
    /// `%b`: body bytes sent (0 → `-`).
    pub body_bytes: u64,
    /// `%{Referer}i` (`None` → `-`, empty → empty).
    pub referer: Option<Bytes>,
    /// `%{User-Agent}i` (`None` → `-`, empty → empty).
    pub user_agent: Option<Bytes>,
    /// `%v`: the requested host without port (`None` or empty → `-`).
    pub vhost: Option<Bytes>,
    /// `%p`: the listener's port.
    pub port: u16,
    /// `combined_plus`: the pool chosen (`None` → `-`).
    pub pool: Option<Arc<str>>,
    /// `combined_plus`: the server chosen (`None` → `-`).
    pub server: Option<Arc<str>>,
    /// `combined_plus`: the affinity decision (`None` → `-`).
    pub outcome: Option<Outcome>,
    /// `combined_plus`: total time, written in microseconds.
    pub duration: Duration,
}

impl Entry {
    /// An entry with nothing in it (a placeholder; never logged).
    pub fn blank() -> Entry {
        Entry {
            client: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            received: SystemTime::UNIX_EPOCH,
            request_line: None,
            user: None,
            status: 0,
            body_bytes: 0,
            referer: None,
            user_agent: None,
            vhost: None,
            port: 0,
            pool: None,
            server: None,
            outcome: None,
            duration: Duration::ZERO,
        }
    }
}

/// The affinity decision for a request, written by `combined_plus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request's tie held: it went to its server.
    Hit,
    /// No tie yet: the balancer chose a server.
    New,
    /// The tied server was gone or down: the request moved to another.
    Moved,
}

/// A request header's value for an [`Entry`] field (`None` when absent).
///
/// `http::HeaderValue` does not give up its inner `Bytes`, so this copies the
/// value: one small allocation, done on the request path so the entry owns it.
pub fn header_bytes(value: Option<&http::HeaderValue>) -> Option<Bytes> {
    value.map(|v| Bytes::copy_from_slice(v.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, header};

    use super::{AccessLog, header_bytes};

    #[test]
    fn the_handle_is_shared_across_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<AccessLog>();
    }

    #[test]
    fn header_bytes_keeps_absent_and_empty_apart() {
        let mut headers = HeaderMap::new();
        headers.insert(header::REFERER, HeaderValue::from_static(""));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_bytes(b"caf\xc3\xa9/1").unwrap(),
        );
        assert_eq!(
            header_bytes(headers.get(header::REFERER)),
            Some(Bytes::new())
        );
        assert_eq!(
            header_bytes(headers.get(header::USER_AGENT)).as_deref(),
            Some(&b"caf\xc3\xa9/1"[..])
        );
        assert_eq!(header_bytes(headers.get(header::HOST)), None);
    }
}
