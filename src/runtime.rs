//! The running state built from a [`Config`]: routes, pools and servers with
//! their connection pools, health and counters.
//!
//! A [`Snapshot`] is immutable once built and is swapped whole (one
//! `ArcSwap` in [`crate::proxy::Shared`]); a request loads it once and
//! keeps it to the end. What changes while it is in use (health, operator
//! state, counters, idle connections) lives in atomics or small locks inside
//! [`Server`].
//!
//! Each pool owns its [`Affinity`] (mode, table, counters); each server
//! its [`ServerId`] there. Whenever every tie to a server must stop routing
//! at once (it went down, entered maintenance, or was removed), the server
//! purges them through the table, which costs one atomic step, not a scan.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::affinity::{Affinity, PoolView, ServerId};
use crate::balance::{self, Load, Schedule};
use crate::config::{self, Balance, Config, ServerAddr};
use crate::upstream::{self, Conn, ConnPool, ConnectError};

/// Connect failures in a row after which a server without active health
/// checks is marked down (SPEC §9's default `fall`).
const PASSIVE_FALL: u32 = 3;
/// A passively marked-down server gets one trial request this long after
/// it went down (SPEC §9).
const RETRY_DOWN_AFTER: Duration = Duration::from_secs(10);

pub struct Snapshot {
    pub config: Arc<Config>,
    /// Index into `pools` for each of `config.routes`.
    pub route_pools: Vec<usize>,
    pub pools: Vec<Arc<Pool>>,
}

impl Snapshot {
    /// The snapshot of `config`, for a first start.
    pub fn build(config: Arc<Config>) -> Snapshot {
        Snapshot::rebuild(config, None)
    }

    /// The snapshot of `config`, carrying over from `previous` whatever
    /// still applies (SPEC §9): a pool keeps its affinity table and ties
    /// when its affinity mode is unchanged; a server of the same name keeps
    /// its ties, and when its address, route, backup flag and kind of health
    /// checking are unchanged too, it is the same [`Server`] (counters,
    /// health, idle connections, operator state). Servers that are gone
    /// are retired: their ties dropped, requests in flight finish. Health
    /// checks, name resolution and housekeeping are started for what is
    /// new.
    ///
    /// Tasks are spawned, so this runs within the tokio runtime.
    pub fn rebuild(config: Arc<Config>, previous: Option<&Snapshot>) -> Snapshot {
        let resolve_interval = config.global.resolve_interval;
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| {
                let before = previous.and_then(|prev| prev.pool(&p.name));
                Arc::new(Pool::build(p, before.map(|b| &**b), resolve_interval))
            })
            .collect();
        if let Some(previous) = previous {
            for old in &previous.pools {
                let new = pools.iter().find(|p| p.name == old.name);
                for server in &old.servers {
                    let kept = new.and_then(|p| p.servers.iter().find(|s| s.name == server.name));
                    match kept {
                        Some(kept) if Arc::ptr_eq(kept, server) => {}
                        // Same name, new address: its ties live on in the
                        // new server when the table was kept.
                        Some(_) if new.is_some_and(|p| Arc::ptr_eq(&p.affinity, &old.affinity)) => {
                            server.replace()
                        }
                        _ => server.remove(),
                    }
                }
            }
        }
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
        let snapshot = Snapshot {
            config,
            route_pools,
            pools,
        };
        snapshot.spawn_sweepers();
        snapshot
    }

    /// The pool serving route number `route`.
    pub fn route_pool(&self, route: usize) -> Option<&Arc<Pool>> {
        self.route_pools.get(route).and_then(|&p| self.pools.get(p))
    }

    /// Starts one housekeeping task per pool: idle ties are freed off the
    /// request path, and quiet draining servers reported. Each holds only a
    /// `Weak`, so it ends with its pool (a rebuilt pool gets its own; the
    /// old one's ends once the last request holding it is done). It wakes
    /// at least once a second.
    fn spawn_sweepers(&self) {
        for pool in &self.pools {
            let pool = Arc::downgrade(pool);
            tokio::spawn(async move {
                loop {
                    let now = tokio::time::Instant::now();
                    let Some(pool) = pool.upgrade() else {
                        return;
                    };
                    let next = pool.affinity.sweep(now.into_std()).next;
                    pool.log_drained(pool.drain_quiet);
                    drop(pool);
                    // The sooner of the next idle tie and a second from now
                    // (a drain is checked every second whatever the table
                    // holds), but not sooner than 10 ms: a table with much
                    // to sweep is swept in steps, never in a busy loop.
                    let next = tokio::time::Instant::from_std(next).clamp(
                        now + Duration::from_millis(10),
                        now + Duration::from_secs(1),
                    );
                    tokio::time::sleep_until(next).await;
                }
            });
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| *p.name == *name)
    }
}

pub struct Pool {
    pub name: Arc<str>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub affinity: Arc<Affinity>,
    pub drain_quiet: Duration,
    pub health: Option<config::Health>,
    pub servers: Vec<Arc<Server>>,
    primary: Schedule,
    backup: Schedule,
    tick: AtomicUsize,
}

impl Pool {
    fn build(config: &config::Pool, before: Option<&Pool>, resolve_interval: Duration) -> Pool {
        let passive = config.health.is_none();
        let now = std::time::Instant::now();
        let affinity = match before {
            Some(before) if before.affinity.reconfigure(&config.affinity) => {
                before.affinity.clone()
            }
            Some(_) => {
                tracing::info!(pool = %config.name, "affinity settings changed: a new table, ties start afresh");
                Arc::new(Affinity::new(&config.affinity, now))
            }
            None => Arc::new(Affinity::new(&config.affinity, now)),
        };
        let same_table = before.is_some_and(|b| Arc::ptr_eq(&b.affinity, &affinity));
        let health_changed = before.is_none_or(|b| b.health != config.health);
        let name: Arc<str> = config.name.as_str().into();
        let servers: Vec<Arc<Server>> = config
            .servers
            .iter()
            .map(|s| {
                let old = before
                    .filter(|_| same_table)
                    .and_then(|b| b.servers.iter().find(|old| *old.name == *s.name))
                    .filter(|old| old.is_same(s, passive));
                let (server, fresh) = match old {
                    Some(old) => {
                        old.set_weight(s.weight);
                        (old.clone(), false)
                    }
                    None => {
                        let server = Arc::new(Server::new(s, passive, &affinity, &config.name));
                        (server, true)
                    }
                };
                server
                    .resolve_every_ms
                    .store(duration_ms(resolve_interval), Ordering::Relaxed);
                if fresh {
                    crate::resolve::spawn(&server);
                }
                if let Some(health) = config.health.as_ref().filter(|_| fresh || health_changed) {
                    crate::health::spawn(&server, &name, health);
                }
                server
            })
            .collect();
        let weights = |backup: bool| -> Vec<u32> {
            servers
                .iter()
                .map(|s| if s.backup == backup { s.weight() } else { 0 })
                .collect()
        };
        Pool {
            name,
            balance: config.balance,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            retries: config.retries,
            drain_quiet: config.affinity.drain_quiet,
            affinity,
            health: config.health.clone(),
            primary: Schedule::new(&weights(false)),
            backup: Schedule::new(&weights(true)),
            servers,
            tick: AtomicUsize::new(0),
        }
    }

    /// Balances a request over the servers able to take new ties, skipping
    /// those in `exclude` (already tried); backups only while no primary is
    /// up.
    pub fn pick(&self, exclude: &[usize]) -> Option<usize> {
        self.pick_among(false, exclude).or_else(|| {
            let any_primary_up = self.servers.iter().any(|s| !s.backup && s.is_up());
            if any_primary_up {
                None
            } else {
                self.pick_among(true, exclude)
            }
        })
    }

    fn pick_among(&self, backup: bool, exclude: &[usize]) -> Option<usize> {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let servers = &self.servers;
        let fits =
            |i: usize| !exclude.contains(&i) && servers.get(i).is_some_and(|s| s.backup == backup);
        let load = |i: usize| {
            let server = servers
                .get(i)
                .filter(|_| fits(i))
                .filter(|s| s.is_up() && s.takes_new())?;
            Some(Load {
                in_flight: server.in_flight.load(Ordering::Relaxed) as u64,
                weight: server.weight(),
            })
        };
        let schedule = if backup { &self.backup } else { &self.primary };
        let chosen = match self.balance {
            Balance::RoundRobin => schedule.pick(tick, |i| {
                fits(i) && servers[i].is_up() && servers[i].takes_new()
            }),
            Balance::LeastConn => balance::least_conn(servers.len(), tick, load),
            Balance::Random2 => {
                balance::random2(schedule, servers.len(), |n| fastrand::usize(..n), load)
            }
        };
        // A server down by passive marking gets a trial request now and then.
        chosen.or_else(|| schedule.pick(tick, |i| fits(i) && servers[i].takes_trial()))
    }
}

impl PoolView for Pool {
    fn server_by_route(&self, route: &[u8]) -> Option<ServerId> {
        self.servers
            .iter()
            .find(|s| s.route.as_bytes() == route)
            .map(|s| s.affinity_id)
    }

    fn takes_ties(&self, server: ServerId) -> bool {
        self.servers
            .iter()
            .any(|s| s.affinity_id == server && s.takes_ties())
    }
}

impl Pool {
    /// The index of the server with this affinity id.
    pub fn server_index(&self, id: ServerId) -> Option<usize> {
        self.servers.iter().position(|s| s.affinity_id == id)
    }
}

/// What an operator set (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminState {
    Ready = 0,
    Drain = 1,
    Maint = 2,
}

/// The effective state shown in `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
    Drain,
    Maint,
}

pub struct Server {
    /// The server's id in its pool's affinity table (stable per name).
    pub affinity_id: ServerId,
    pub name: Arc<str>,
    pub route: Arc<str>,
    /// As configured; see [`Server::addresses`] for what it resolves to.
    pub addr: ServerAddr,
    weight: AtomicU32,
    pub backup: bool,
    /// The socket addresses `addr` resolved to last (one for an IP address).
    resolved: ArcSwap<Vec<SocketAddr>>,
    /// `resolve_interval`, in milliseconds.
    pub(crate) resolve_every_ms: AtomicU64,
    /// Bumped whenever a new health-check task takes over; older ones end.
    pub(crate) health_epoch: AtomicU64,
    pub conns: ConnPool,
    pub in_flight: AtomicUsize,
    pub requests: AtomicU64,
    /// Responses by status code (`berth_requests_total`).
    pub codes: crate::metrics::StatusCounts,
    /// Whether failures are counted from live traffic (no `health` table).
    passive: bool,
    up: AtomicBool,
    admin: AtomicU8,
    /// The pool's affinity, to purge this server's ties.
    ties: Arc<Affinity>,
    pool: Arc<str>,
    removed: AtomicBool,
    /// Replaced by a new [`Server`] of the same name (another address):
    /// its tasks end, its ties live on in the new one.
    replaced: AtomicBool,
    /// Passive: connect failures in a row. Active: failed checks in a row.
    failures: AtomicU32,
    /// Active: passed checks in a row.
    passes: AtomicU32,
    down_at_ms: AtomicU64,
    /// When the operator last put it in drain (clock ms), and whether the
    /// `drained` line has been logged since.
    drain_since_ms: AtomicU64,
    drained_logged: AtomicBool,
}

impl Server {
    fn new(config: &config::Server, passive: bool, ties: &Arc<Affinity>, pool: &str) -> Server {
        Server {
            // A registry of u16 ids: only a pool of 65 536 servers runs out.
            affinity_id: ties.server_id(&config.name).unwrap_or(ServerId(u16::MAX)),
            name: config.name.as_str().into(),
            route: config.route.as_str().into(),
            addr: config.addr.clone(),
            weight: AtomicU32::new(config.weight),
            backup: config.backup,
            resolved: ArcSwap::from_pointee(match &config.addr {
                ServerAddr::Ip(addr) => vec![*addr],
                ServerAddr::Host { .. } => Vec::new(),
            }),
            resolve_every_ms: AtomicU64::new(0),
            health_epoch: AtomicU64::new(0),
            conns: ConnPool::default(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            codes: Default::default(),
            passive,
            up: AtomicBool::new(true),
            admin: AtomicU8::new(AdminState::Ready as u8),
            ties: ties.clone(),
            pool: pool.into(),
            removed: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            passes: AtomicU32::new(0),
            down_at_ms: AtomicU64::new(0),
            drain_since_ms: AtomicU64::new(0),
            drained_logged: AtomicBool::new(false),
        }
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// Whether this server can stand for `config` in a rebuilt pool:
    /// everything but the weight is the same.
    fn is_same(&self, config: &config::Server, passive: bool) -> bool {
        self.addr == config.addr
            && *self.route == *config.route
            && self.backup == config.backup
            && self.passive == passive
    }

    /// Whether it is still part of the running configuration: its tasks
    /// (health checks, name resolution) end when it is not.
    pub fn is_current(&self) -> bool {
        !self.removed.load(Ordering::Relaxed) && !self.replaced.load(Ordering::Relaxed)
    }

    /// Where to connect: the addresses `addr` resolved to last.
    pub fn addresses(&self) -> Arc<Vec<SocketAddr>> {
        self.resolved.load_full()
    }

    /// A new connection to the server within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<Conn, ConnectError> {
        let mut addrs = self.addresses();
        let name = self.addr.to_string();
        if addrs.is_empty() {
            // Not resolved yet (just created) or never resolved so far.
            if let Ok(Ok(found)) =
                tokio::time::timeout(timeout, crate::resolve::lookup(&name)).await
            {
                self.set_addresses(found);
                addrs = self.addresses();
            }
        }
        upstream::connect(&addrs, &name, timeout).await
    }

    /// Takes a new resolution of `addr`; returns whether it changed.
    /// Idle connections to the old addresses are closed.
    pub fn set_addresses(&self, addresses: Vec<SocketAddr>) -> bool {
        if **self.resolved.load() == addresses {
            return false;
        }
        self.resolved.store(Arc::new(addresses));
        self.conns.clear();
        true
    }

    /// Up, as far as health knows.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn admin_state(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }

    /// `maint` if an operator set it, else `down` if health failed, else
    /// `drain` if an operator set it, else `up` (SPEC §7).
    pub fn state(&self) -> State {
        match (self.admin_state(), self.is_up()) {
            (AdminState::Maint, _) => State::Maint,
            (_, false) => State::Down,
            (AdminState::Drain, true) => State::Drain,
            (AdminState::Ready, true) => State::Up,
        }
    }

    /// Whether existing ties to this server are honoured: up, not in
    /// maintenance, not removed (drain and weight 0 keep their ties).
    pub fn takes_ties(&self) -> bool {
        self.is_up() && self.admin_state() != AdminState::Maint && self.is_current()
    }

    /// Whether the balancer may give this server new ties.
    pub fn takes_new(&self) -> bool {
        self.takes_ties() && self.admin_state() == AdminState::Ready && self.weight() > 0
    }

    /// A passively marked-down server that has been down long enough lets
    /// one live request through; this caller wins it.
    fn takes_trial(&self) -> bool {
        if !self.passive
            || self.is_up()
            || self.admin_state() != AdminState::Ready
            || self.weight() == 0
        {
            return false;
        }
        let now = clock_ms();
        let down_at = self.down_at_ms.load(Ordering::Relaxed);
        now.saturating_sub(down_at) >= RETRY_DOWN_AFTER.as_millis() as u64
            && self
                .down_at_ms
                .compare_exchange(down_at, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn set_admin_state(&self, state: AdminState, pool: &str) {
        let before = self.admin.swap(state as u8, Ordering::Relaxed);
        if before != state as u8 {
            if state == AdminState::Drain {
                self.drain_since_ms.store(clock_ms(), Ordering::Relaxed);
                self.drained_logged.store(false, Ordering::Relaxed);
            }
            if state == AdminState::Maint {
                self.invalidate_ties();
            }
            tracing::info!(pool, server = %self.name, state = ?state, "operator state changed");
        }
    }

    /// The server left the configuration or was deregistered: its ties
    /// stop at once; requests in flight finish.
    pub fn remove(&self) {
        if !self.removed.swap(true, Ordering::Relaxed) {
            let purged = self.ties.retire(&self.name);
            tracing::info!(pool = %self.pool, server = %self.name, purged, "server removed; its ties dropped");
            self.conns.clear();
        }
    }

    /// A server of the same name but another address took its place: it
    /// takes no new requests, its ties carry over, requests in flight
    /// finish.
    fn replace(&self) {
        if !self.replaced.swap(true, Ordering::Relaxed) {
            self.conns.clear();
        }
    }

    /// Every table tie to this server stops routing now.
    fn invalidate_ties(&self) {
        let purged = self.ties.purge(self.affinity_id);
        if purged > 0 {
            tracing::info!(pool = %self.pool, server = %self.name, purged, "ties purged");
        }
    }

    fn mark_down(&self, pool: &str, reason: &str) {
        self.down_at_ms.store(clock_ms(), Ordering::Relaxed);
        if self.up.swap(false, Ordering::Relaxed) {
            self.invalidate_ties();
            self.conns.clear();
            tracing::warn!(pool, server = %self.name, reason, "server down");
        }
    }

    fn mark_up(&self, pool: &str, reason: &str) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(pool, server = %self.name, reason, "server up");
        }
    }

    /// A connection attempt failed. Without active checks, `fall` failures
    /// in a row mark the server down.
    pub fn connect_failed(&self, pool: &str) {
        if !self.passive {
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= PASSIVE_FALL {
            self.mark_down(pool, &format!("{failures} connect failures in a row"));
        }
    }

    pub fn connect_succeeded(&self, pool: &str) {
        if self.passive && self.failures.swap(0, Ordering::Relaxed) != 0 {
            self.mark_up(pool, "a request got through");
        }
    }

    /// The outcome of one active health check (SPEC §9): `fall` failures in
    /// a row mark the server down, `rise` passes mark it up.
    pub fn checked(&self, pool: &str, health: &config::Health, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.failures.store(0, Ordering::Relaxed);
                let passes = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
                if passes >= health.rise && !self.is_up() {
                    self.mark_up(pool, &format!("{passes} health checks passed"));
                }
            }
            Err(why) => {
                self.passes.store(0, Ordering::Relaxed);
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= health.fall && self.is_up() {
                    self.mark_down(
                        pool,
                        &format!("{failures} health checks failed, last: {why}"),
                    );
                }
            }
        }
    }
}

impl Server {
    /// Whether a server in drain has had no request in flight and no tied
    /// request for `quiet`, counted from the drain or the last tied request
    /// after it (SPEC §5). `last_tied_ms` and `now_ms` are on [`clock_ms`].
    fn is_drained(&self, last_tied_ms: Option<u64>, now_ms: u64, quiet: Duration) -> bool {
        if self.admin_state() != AdminState::Drain || self.in_flight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let since = self
            .drain_since_ms
            .load(Ordering::Relaxed)
            .max(last_tied_ms.unwrap_or(0));
        now_ms.saturating_sub(since) >= u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Pool {
    /// Logs, once per drain, each draining server that has gone quiet, so
    /// an operator knows it can be stopped.
    pub fn log_drained(&self, quiet: Duration) {
        let now = clock_ms();
        for server in &self.servers {
            let last_tied = self
                .affinity
                .server(server.affinity_id)
                .last_tied
                .map(clock_ms_at);
            if server.is_drained(last_tied, now, quiet)
                && !server.drained_logged.swap(true, Ordering::Relaxed)
            {
                tracing::info!(
                    pool = %self.name,
                    server = %server.name,
                    quiet = ?quiet,
                    "server drained: no request in flight and none tied to it; it can be stopped"
                );
            }
        }
    }
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Milliseconds on a monotonic clock shared by the process.
fn clock_ms() -> u64 {
    clock_ms_at(std::time::Instant::now())
}

fn clock_ms_at(instant: std::time::Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(instant.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn snapshot(pool_keys: &str, servers: &[(&str, &str)]) -> Snapshot {
        let mut text = String::from(
            "[[listener]]\nbind = \"127.0.0.1:0\"\ntls = false\n[[route]]\npool = \"p\"\n[pools.p]\n",
        );
        text.push_str(pool_keys);
        for (name, extra) in servers {
            text.push_str(&format!(
                "\n[[pools.p.servers]]\nname = \"{name}\"\naddr = \"127.0.0.1:1\"\n{extra}\n"
            ));
        }
        let config = crate::config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        // Building spawns the pools' tasks; they need not run here.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        Snapshot::build(Arc::new(config))
    }

    fn health() -> config::Health {
        config::Health {
            path: "/h".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }

    #[test]
    fn effective_state_follows_the_spec_order() {
        let snap = snapshot("", &[("a", "")]);
        let server = &snap.pools[0].servers[0];
        assert_eq!(server.state(), State::Up);
        server.set_admin_state(AdminState::Drain, "p");
        assert_eq!(server.state(), State::Drain);
        assert!(
            server.takes_ties() && !server.takes_new(),
            "drain keeps ties, takes no new"
        );
        server.mark_down("p", "test");
        assert_eq!(server.state(), State::Down);
        server.set_admin_state(AdminState::Maint, "p");
        assert_eq!(server.state(), State::Maint, "maint beats down");
    }

    #[test]
    fn ties_are_purged_by_down_maint_and_removal_only() {
        let snap = snapshot("affinity = { mode = \"client_ip\" }", &[("a", "")]);
        let pool = &snap.pools[0];
        let server = &pool.servers[0];
        let table = pool.affinity.table();
        let now = std::time::Instant::now();
        let tie = |n: u8| table.insert(table.key(&[n]), server.affinity_id, now);
        tie(1);
        server.set_admin_state(AdminState::Drain, "p");
        assert_eq!(table.ties(server.affinity_id), 1, "drain keeps ties");
        server.set_admin_state(AdminState::Maint, "p");
        assert_eq!(table.ties(server.affinity_id), 0);
        server.set_admin_state(AdminState::Ready, "p");
        tie(2);
        server.mark_down("p", "test");
        assert_eq!(table.ties(server.affinity_id), 0);
        server.mark_up("p", "test");
        tie(3);
        server.remove();
        assert!(!server.takes_ties());
        assert_eq!(pool.affinity.stats().purged, 3);
    }

    #[test]
    fn drained_after_drain_quiet_without_in_flight_or_tied_requests() {
        let snap = snapshot("", &[("a", "")]);
        let server = &snap.pools[0].servers[0];
        let quiet = Duration::from_secs(60);
        assert!(!server.is_drained(None, u64::MAX, quiet), "not in drain");
        server.set_admin_state(AdminState::Drain, "p");
        let since = server.drain_since_ms.load(Ordering::Relaxed);
        assert!(!server.is_drained(None, since + 59_999, quiet));
        assert!(server.is_drained(None, since + 60_000, quiet));
        // A tied request after the drain starts the count again.
        assert!(!server.is_drained(Some(since + 30_000), since + 60_000, quiet));
        assert!(server.is_drained(Some(since + 30_000), since + 90_000, quiet));
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        assert!(
            !server.is_drained(None, since + 90_000, quiet),
            "a request in flight"
        );
    }

    #[test]
    fn active_checks_need_fall_failures_and_rise_passes() {
        let snap = snapshot("health = { path = \"/h\" }", &[("a", "")]);
        let server = &snap.pools[0].servers[0];
        let health = health();
        server.checked("p", &health, Err("x".into()));
        server.checked("p", &health, Err("x".into()));
        assert!(server.is_up(), "two failures of fall = 3");
        server.checked("p", &health, Ok(()));
        server.checked("p", &health, Err("x".into()));
        server.checked("p", &health, Err("x".into()));
        assert!(server.is_up(), "a pass resets the count");
        server.checked("p", &health, Err("x".into()));
        assert!(!server.is_up());
        server.checked("p", &health, Ok(()));
        assert!(!server.is_up(), "one pass of rise = 2");
        server.checked("p", &health, Ok(()));
        assert!(server.is_up());
        // With active checks, live connect failures do not mark it down.
        for _ in 0..5 {
            server.connect_failed("p");
        }
        assert!(server.is_up());
    }

    #[test]
    fn passive_marking_after_three_connect_failures() {
        let snap = snapshot("", &[("a", ""), ("b", "")]);
        let pool = &snap.pools[0];
        let a = &pool.servers[0];
        a.connect_failed("p");
        a.connect_failed("p");
        assert!(a.is_up());
        a.connect_failed("p");
        assert!(!a.is_up());
        for _ in 0..10 {
            assert_eq!(
                pool.pick(&[]),
                Some(1),
                "a down server gets no new requests"
            );
        }
        a.connect_succeeded("p");
        assert!(a.is_up());
    }

    #[test]
    fn backups_serve_only_while_no_primary_is_up() {
        let snap = snapshot("", &[("a", ""), ("spare", "backup = true")]);
        let pool = &snap.pools[0];
        for _ in 0..4 {
            assert_eq!(pool.pick(&[]), Some(0));
        }
        pool.servers[0].mark_down("p", "test");
        assert_eq!(pool.pick(&[]), Some(1));
        // Drained primaries are still up: backups stay idle.
        pool.servers[0].mark_up("p", "test");
        pool.servers[0].set_admin_state(AdminState::Drain, "p");
        assert_eq!(pool.pick(&[]), None);
    }

    #[test]
    fn every_policy_skips_servers_that_take_no_new_ties() {
        for balance in ["round_robin", "least_conn", "random2"] {
            let snap = snapshot(
                &format!("balance = \"{balance}\""),
                &[("a", ""), ("b", "weight = 0"), ("c", "")],
            );
            let pool = &snap.pools[0];
            pool.servers[2].set_admin_state(AdminState::Drain, "p");
            for _ in 0..20 {
                assert_eq!(pool.pick(&[]), Some(0), "{balance}");
            }
            assert_eq!(
                pool.pick(&[0]),
                None,
                "{balance}: tried servers are excluded"
            );
        }
    }
}
