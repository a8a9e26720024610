//! Counting and logging refused connections, per listener.
//!
//! A balancer that misbehaves, or a scanner that found the port, can cause a
//! rejection per connection: the log gets at most one line per listener per
//! [`LOG_INTERVAL`], which says how many were left out since the last one.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Rejection;

/// The `reason` label of `berth_proxy_header_rejected_total` (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    UntrustedPeer,
    Timeout,
    Malformed,
    Stacked,
    Crc,
}

impl Reason {
    /// Every reason, in the order [`Rejections::counts`] gives them.
    pub const ALL: [Reason; 5] = [
        Reason::UntrustedPeer,
        Reason::Timeout,
        Reason::Malformed,
        Reason::Stacked,
        Reason::Crc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UntrustedPeer => "untrusted_peer",
            Reason::Timeout => "timeout",
            Reason::Malformed => "malformed",
            Reason::Stacked => "stacked",
            Reason::Crc => "crc",
        }
    }

    fn index(self) -> usize {
        match self {
            Reason::UntrustedPeer => 0,
            Reason::Timeout => 1,
            Reason::Malformed => 2,
            Reason::Stacked => 3,
            Reason::Crc => 4,
        }
    }
}

/// At most one log line per listener per this long.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One listener's rejections: counters by reason and the log's rate limit.
#[derive(Debug)]
pub struct Rejections {
    /// The listener's bind address: the `listener` label and log field.
    listener: SocketAddr,
    counts: [AtomicU64; 5],
    /// When the last line was logged, and how many were left out since.
    /// Held only to read and update these two, never across `.await`.
    log: Mutex<LogWindow>,
}

#[derive(Debug, Default)]
struct LogWindow {
    last: Option<Instant>,
    suppressed: u64,
}

impl Rejections {
    pub fn new(listener: SocketAddr) -> Rejections {
        Rejections {
            listener,
            counts: Default::default(),
            log: Mutex::default(),
        }
    }

    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// Counts `rejection` and logs it (rate-limited) at `warn`, with the
    /// listener's bind address and the peer.
    ///
    /// A connection closed before its first byte is no rejection: that is a
    /// TCP health check (an NLB's in TCP mode) or a port probe. It is only
    /// logged at `debug`.
    pub fn record(&self, peer: SocketAddr, rejection: &Rejection) {
        if let Rejection::Truncated { received: 0, .. } = rejection {
            tracing::debug!(listener = %self.listener, client.addr = %peer, "connection closed before any byte");
            return;
        }
        let reason = rejection.kind();
        self.count(reason);
        if let Some(suppressed) = self.may_log(Instant::now()) {
            tracing::warn!(
                listener = %self.listener,
                client.addr = %peer,
                reason = reason.as_str(),
                suppressed,
                "PROXY header refused, connection closed: {rejection}"
            );
        }
    }

    /// Counts one rejection without logging it.
    pub fn count(&self, reason: Reason) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: Reason) -> u64 {
        self.counts[reason.index()].load(Ordering::Relaxed)
    }

    /// Every reason with its count, for the metrics endpoint.
    pub fn counts(&self) -> [(Reason, u64); 5] {
        Reason::ALL.map(|reason| (reason, self.get(reason)))
    }

    /// Whether a rejection at `now` may be logged: `Some(n)` with the number
    /// left out since the last line, or `None` (and it is counted as left
    /// out) when the last line is less than [`LOG_INTERVAL`] old.
    pub fn may_log(&self, now: Instant) -> Option<u64> {
        let mut window = self
            .log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match window.last {
            Some(last) if now.saturating_duration_since(last) < LOG_INTERVAL => {
                window.suppressed += 1;
                None
            }
            _ => {
                window.last = Some(now);
                Some(std::mem::take(&mut window.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::Rejection;

    #[test]
    fn a_connection_closed_before_any_byte_is_not_counted() {
        let rejections = Rejections::new(SocketAddr::from(([127, 0, 0, 1], 443)));
        let peer = SocketAddr::from(([10, 0, 0, 1], 40000));
        let probe = Rejection::Truncated {
            received: 0,
            source: None,
        };
        rejections.record(peer, &probe);
        assert_eq!(rejections.get(Reason::Malformed), 0);
        let cut = Rejection::Truncated {
            received: 3,
            source: None,
        };
        rejections.record(peer, &cut);
        assert_eq!(rejections.get(Reason::Malformed), 1);
    }
}
