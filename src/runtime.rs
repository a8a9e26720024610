//! The running state built from a [`Config`]: routes, pools and servers with
//! their connection pools and counters.
//!
//! A [`Snapshot`] is immutable once built and is swapped whole (one
//! `ArcSwap` in [`crate::server::Shared`]); a request loads it once and
//! keeps it to the end. What changes while it is in use (server health,
//! counters, idle connections) lives in atomics or small locks inside
//! [`Server`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::balance::Schedule;
use crate::config::{self, Config, ServerAddr};
use crate::upstream::ConnPool;

/// Connect failures in a row after which a server without active health
/// checks is marked down (SPEC §9's default `fall`).
const PASSIVE_FALL: u32 = 3;

pub struct Snapshot {
    pub config: Arc<Config>,
    /// Index into `pools` for each of `config.routes`.
    pub route_pools: Vec<usize>,
    pub pools: Vec<Arc<Pool>>,
}

pub struct Pool {
    pub name: Arc<str>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub servers: Vec<Arc<Server>>,
    primary: Schedule,
    backup: Schedule,
    tick: AtomicUsize,
}

pub struct Server {
    pub name: Arc<str>,
    pub route: Arc<str>,
    pub addr: ServerAddr,
    pub weight: u32,
    pub backup: bool,
    pub conns: ConnPool,
    pub in_flight: AtomicUsize,
    pub requests: AtomicU64,
    up: AtomicBool,
    failures: AtomicU32,
    down_at_ms: AtomicU64,
}

impl Snapshot {
    pub fn build(config: Arc<Config>) -> Snapshot {
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| Arc::new(Pool::build(p)))
            .collect();
        let route_pools = config
            .routes
            .iter()
            .map(|route| {
                pools
                    .iter()
                    .position(|p| *p.name == *route.pool)
                    .unwrap_or(usize::MAX)
            })
            .collect();
        Snapshot {
            config,
            route_pools,
            pools,
        }
    }

    /// The pool serving route number `route`.
    pub fn route_pool(&self, route: usize) -> Option<&Arc<Pool>> {
        self.route_pools.get(route).and_then(|&p| self.pools.get(p))
    }
}

impl Pool {
    fn build(config: &config::Pool) -> Pool {
        let servers: Vec<Arc<Server>> = config
            .servers
            .iter()
            .map(|s| {
                Arc::new(Server {
                    name: s.name.as_str().into(),
                    route: s.route.as_str().into(),
                    addr: s.addr.clone(),
                    weight: s.weight,
                    backup: s.backup,
                    conns: ConnPool::default(),
                    in_flight: AtomicUsize::new(0),
                    requests: AtomicU64::new(0),
                    up: AtomicBool::new(true),
                    failures: AtomicU32::new(0),
                    down_at_ms: AtomicU64::new(0),
                })
            })
            .collect();
        let weights = |backup: bool| -> Vec<u32> {
            servers
                .iter()
                .map(|s| if s.backup == backup { s.weight } else { 0 })
                .collect()
        };
        Pool {
            name: config.name.as_str().into(),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            retries: config.retries,
            primary: Schedule::new(&weights(false)),
            backup: Schedule::new(&weights(true)),
            servers,
            tick: AtomicUsize::new(0),
        }
    }

    /// Balances a request over the servers able to take it, skipping those
    /// in `exclude` (already tried); backups only while no primary is up.
    pub fn pick(&self, exclude: &[usize]) -> Option<usize> {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let eligible =
            |i: usize| !exclude.contains(&i) && self.servers.get(i).is_some_and(|s| s.take_new());
        self.primary.pick(tick, eligible).or_else(|| {
            let any_primary_up = self.servers.iter().any(|s| !s.backup && s.is_up());
            if any_primary_up {
                None
            } else {
                self.backup.pick(tick, eligible)
            }
        })
    }
}

impl Server {
    /// Up, as far as berth knows.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether the balancer may send this server a new request: it is up,
    /// or it has been down for a while and this caller wins the one trial
    /// request let through every [`RETRY_DOWN_AFTER`] (SPEC §9).
    fn take_new(&self) -> bool {
        if self.weight == 0 {
            return false;
        }
        if self.is_up() {
            return true;
        }
        let now = clock_ms();
        let down_at = self.down_at_ms.load(Ordering::Relaxed);
        now.saturating_sub(down_at) >= RETRY_DOWN_AFTER.as_millis() as u64
            && self
                .down_at_ms
                .compare_exchange(down_at, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// A connection attempt failed; after enough in a row the server is
    /// marked down.
    pub fn connect_failed(&self, pool: &str) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= PASSIVE_FALL {
            self.down_at_ms.store(clock_ms(), Ordering::Relaxed);
            if self.up.swap(false, Ordering::Relaxed) {
                tracing::warn!(pool, server = %self.name, reason = "connect failures", failures, "server down");
            }
        }
    }

    pub fn connect_succeeded(&self, pool: &str) {
        if self.failures.swap(0, Ordering::Relaxed) != 0 && !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(pool, server = %self.name, reason = "connect succeeded", "server up");
        }
    }
}

/// A down server gets one trial request this long after it went down.
const RETRY_DOWN_AFTER: Duration = Duration::from_secs(10);

/// Milliseconds on a monotonic clock shared by the process.
fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
