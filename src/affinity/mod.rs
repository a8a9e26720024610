//! Session affinity (SPEC §5): which server a request is tied to.
//!
//! Pure: no IO, no hyper types, the clock passed in. One [`Affinity`] per
//! pool, kept across reloads ([`Affinity::reconfigure`]) so ties survive
//! them; the request path calls it in two steps around the balancer:
//!
//! ```text
//!  request ──claim()──▶ Claim ──decide(pool view, now)──▶ Decision
//!   headers, target,     the mode's        │
//!   client address       key(s)            ├─ tied(): Some(server) → send it there
//!                                          │     └─ connect failed: balance instead ──┐
//!                                          └─ tied(): None → balance ─────────────────┤
//!                                                                                     ▼
//!  response ◀── Set-Cookie (cookie mode) ◀── record(&mut decision, server it went to, now)
//!           ◀── learn(decision, response headers)          counts hit / new / moved, notes
//!               (learn mode: the app's Set-Cookie)         the tied request, writes new ties
//!
//!  server down / maint / removed ──purge(server) / retire(name)──▶ its table ties stale at once
//!  sweeper task ──sweep(now)──▶ idle entries freed, off the request path
//! ```
//!
//! Where each mode's tie lives:
//!
//! | mode | claim | honoured when | recorded after balancing |
//! |---|---|---|---|
//! | `cookie` | berth's cookie: a route | that route's server takes ties | a `Set-Cookie` |
//! | `session_suffix` | each session id's route | an override tie, else the route (`failback` decides which first) | override ties id → server |
//! | `learn`, `client_ip`, `header` | a table key | the table's live entry's server takes ties | the table entry |
//!
//! Modules: [`extract`] reads ties out of requests and responses and
//! writes berth's cookie; [`table`] is the bounded, sharded, swept table
//! with purge by generation (its docs draw it), `shard` one shard's index
//! and LRU list; `servers` keeps each server's generation, live tie count
//! and last tied request; `decide` holds the decision itself.
//!
//! A server is known here only by its [`ServerId`] and what a [`PoolView`]
//! says of it: whether it still takes ties (up and not in maintenance; a
//! draining or weight-0 server does) and which route id it answers to.
//! The balancer alone chooses servers for new ties.

pub mod extract;
pub mod table;

mod decide;
mod servers;
mod shard;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use http::HeaderMap;

use crate::accesslog::Outcome;
use crate::config::{self, AffinityMode};
pub use extract::SessionId;
pub use servers::{Registry, ServerId};
pub use table::{Key, Lookup, Sweep, Table};

/// What affinity needs to know of a server, from the runtime.
pub trait PoolView {
    /// The server whose route id is exactly `route`, if the pool has one.
    fn server_by_route(&self, route: &[u8]) -> Option<ServerId>;
    /// Whether `server` is in the pool and honours the ties it has: up and
    /// not in maintenance. Draining and weight-0 servers do.
    fn takes_ties(&self, server: ServerId) -> bool;
}

/// A plain [`PoolView`] entry, for callers that build a list per request.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub id: ServerId,
    pub route: &'a str,
    pub takes_ties: bool,
}

impl PoolView for [Candidate<'_>] {
    fn server_by_route(&self, route: &[u8]) -> Option<ServerId> {
        self.iter()
            .find(|c| c.route.as_bytes() == route)
            .map(|c| c.id)
    }

    fn takes_ties(&self, server: ServerId) -> bool {
        self.iter().any(|c| c.id == server && c.takes_ties)
    }
}

/// The mode's key(s) found in one request (see [`Affinity::claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<'r> {
    /// Affinity is off for this pool.
    Off,
    /// `cookie`: the route in berth's cookie, if sent.
    Route(Option<&'r [u8]>),
    /// `session_suffix`: the session ids naming a route, in order.
    Sessions(Vec<SessionId<'r>>),
    /// `learn`, `client_ip`, `header`: the table key, if the request has one.
    Key(Option<Key>),
}

/// The decision for one request: where it goes (if its tie holds), its
/// outcome, and what [`Affinity::record`] will write once a server is
/// chosen. Owns its data, so it outlives the request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    tied: Option<ServerId>,
    outcome: Option<Outcome>,
    record: Record,
}

/// What a decision records after balancing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Nothing,
    /// Set berth's cookie to the chosen server's route.
    Cookie,
    /// Tie this key to the chosen server (and, in `learn` mode, the
    /// request's cookie, forgotten if the app deletes it).
    Entry(Key),
    /// Override ties: these session ids → the chosen server.
    Overrides(Vec<Key>),
}

impl Decision {
    /// The server the request's tie sends it to; `None`: balance.
    pub fn tied(&self) -> Option<ServerId> {
        self.tied
    }

    /// `hit`, `new` or `moved`; `None` when affinity is off.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }
}

/// A pool's affinity counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub hit: u64,
    pub new: u64,
    pub moved: u64,
    /// Ties invalidated by purges (`berth_affinity_purged_total`).
    pub purged: u64,
    /// Table entries, live or awaiting the sweeper (`berth_affinity_entries`).
    pub entries: usize,
}

/// One server's affinity figures, for `/status` and the drain log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Live table ties (`ties`; 0 in `cookie` mode, whose ties live in cookies).
    pub ties: u64,
    /// When the last request sent by its tie arrived (`last_tied_request_at`).
    pub last_tied: Option<Instant>,
}

/// The affinity of one pool: its mode, its table and its counters.
pub struct Affinity {
    mode: AffinityMode,
    failback: AtomicBool,
    table: Table,
    registry: Registry,
    hit: AtomicU64,
    new: AtomicU64,
    moved: AtomicU64,
}

impl Affinity {
    /// Empty affinity state for a pool configured with `config`; `now` is
    /// the epoch of its clock.
    pub fn new(config: &config::Affinity, now: Instant) -> Affinity {
        Affinity {
            mode: config.mode.clone(),
            failback: AtomicBool::new(config.failback),
            table: Table::new(config.max_entries, config.ttl, now),
            registry: Registry::default(),
            hit: AtomicU64::new(0),
            new: AtomicU64::new(0),
            moved: AtomicU64::new(0),
        }
    }

    /// Applies a reloaded pool's settings, keeping every tie. Returns
    /// `false`, changing nothing, when that cannot be done (another mode,
    /// or a `max_entries` too far from the old one for the table's shards,
    /// see [`Table::set_limits`]): build a new [`Affinity`] then.
    pub fn reconfigure(&self, config: &config::Affinity) -> bool {
        if self.mode != config.mode || !self.table.set_limits(config.max_entries, config.ttl) {
            return false;
        }
        self.failback.store(config.failback, Ordering::Relaxed);
        true
    }

    /// The mode's key(s) in a request: its headers, its target as the
    /// client sent it (path and query) and the real client address.
    pub fn claim<'r>(&self, headers: &'r HeaderMap, target: &'r str, client: IpAddr) -> Claim<'r> {
        match &self.mode {
            AffinityMode::None => Claim::Off,
            AffinityMode::Cookie { cookie } => {
                Claim::Route(extract::cookie(headers, cookie).filter(|route| !route.is_empty()))
            }
            AffinityMode::SessionSuffix { cookie, path_param } => {
                Claim::Sessions(extract::session_ids(headers, target, path_param, cookie))
            }
            AffinityMode::Learn { cookie } => Claim::Key(
                extract::cookie(headers, cookie)
                    .filter(|value| !value.is_empty())
                    .map(|value| self.table.key(value)),
            ),
            AffinityMode::ClientIp => Claim::Key(Some(self.table.key(&extract::client_ip(client)))),
            AffinityMode::Header { header } => {
                Claim::Key(extract::header(headers, header).map(|value| self.table.key(value)))
            }
        }
    }

    /// In `cookie` mode, removes berth's cookie from the request before it
    /// is forwarded; other modes leave the app's cookies alone.
    pub fn strip_request(&self, headers: &mut HeaderMap) {
        if let AffinityMode::Cookie { cookie } = &self.mode {
            extract::strip_cookie(headers, cookie);
        }
    }

    /// The server's id in this pool, given one if it is new (see [`Registry`]).
    pub fn server_id(&self, name: &str) -> Option<ServerId> {
        self.registry.id(name)
    }

    /// Invalidates every table tie to `server` at once; returns how many.
    /// Call when it goes down or enters maintenance.
    pub fn purge(&self, server: ServerId) -> u64 {
        self.table.purge(server)
    }

    /// A server removed from the pool: its ties purged, its id free for
    /// reuse. Returns how many ties were purged.
    pub fn retire(&self, name: &str) -> u64 {
        let Some(id) = self.registry.release(name) else {
            return 0;
        };
        let purged = self.table.purge(id);
        self.table.servers.get(id).forget_last_tied();
        purged
    }

    /// Frees entries idle for `ttl`; see [`Table::sweep`].
    pub fn sweep(&self, now: Instant) -> Sweep {
        self.table.sweep(now)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            hit: self.hit.load(Ordering::Relaxed),
            new: self.new.load(Ordering::Relaxed),
            moved: self.moved.load(Ordering::Relaxed),
            purged: self.table.purged(),
            entries: self.table.len(),
        }
    }

    pub fn server(&self, server: ServerId) -> ServerStats {
        let Some(slot) = self.table.servers.peek(server) else {
            return ServerStats::default();
        };
        ServerStats {
            ties: slot.ties(),
            last_tied: slot.last_tied_ms().map(|ms| self.table.instant(ms)),
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn mode(&self) -> &AffinityMode {
        &self.mode
    }

    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Hit => &self.hit,
            Outcome::New => &self.new,
            Outcome::Moved => &self.moved,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
