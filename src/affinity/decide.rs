//! The decision (SPEC §5): where a request's tie sends it, its outcome,
//! and what is recorded once a server has taken it.
//!
//! Outcomes: `hit` (it went where its tie said), `new` (it carried no
//! tie), `moved` (it carried one that could not be honoured: server down,
//! in maintenance, removed, or a route no server has).
//!
//! Nothing is counted, noted or tied until [`Affinity::record`], called
//! once a server has taken the request, so a tie whose server cannot be
//! reached becomes `moved` and the re-tie is recorded where it went.
//!
//! `session_suffix`, for each session id in turn (mod_jk's order), until
//! one gives a server:
//!
//! ```text
//!                       override tie (table)        the id's own route
//! failback = false      live, server takes ties ──▶ hit there
//!                       none                   ───────────────────────▶ takes ties? hit there
//!                       stale / server can't   ── dropped ────────────▶ takes ties? moved there
//! failback = true       (dropped)              ◀── takes ties? hit there
//!                       live, server takes ties ──▶ hit there (the own route can't)
//! no id gives a server: balance, moved; then every id gets an override tie → the chosen server
//! ```

use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderValue};

use super::extract::{self, Learned};
use super::{
    Affinity, AffinityMode, Claim, Decision, Key, Lookup, Outcome, PoolView, Record, ServerId,
    SessionId,
};

fn tied(server: ServerId, outcome: Outcome, record: Record) -> Decision {
    Decision {
        tied: Some(server),
        outcome: Some(outcome),
        record,
    }
}

fn balance(outcome: Outcome, record: Record) -> Decision {
    Decision {
        tied: None,
        outcome: Some(outcome),
        record,
    }
}

impl Affinity {
    /// Decides where the request with `claim` goes, given what `pool` says
    /// of its servers now. Nothing is counted or recorded until
    /// [`Affinity::record`]; a `session_suffix` override tie that can no
    /// longer apply is dropped here.
    pub fn decide<P: PoolView + ?Sized>(
        &self,
        claim: &Claim<'_>,
        pool: &P,
        now: Instant,
    ) -> Decision {
        match claim {
            Claim::Off => Decision {
                tied: None,
                outcome: None,
                record: Record::Nothing,
            },
            Claim::Route(route) => by_route(*route, pool),
            Claim::Sessions(ids) => self.by_session(ids, pool, now),
            Claim::Key(key) => self.by_key(*key, pool, now),
        }
    }

    /// The tied server could not be reached: the request will be balanced
    /// instead, and its outcome is `moved`.
    pub fn fail_over(&self, decision: &mut Decision) {
        if decision.tied.take().is_some() {
            decision.outcome = Some(Outcome::Moved);
        }
    }

    /// Call once per request, with the server it was sent to (its tied one
    /// or the balancer's choice): counts the outcome, notes a tied request
    /// for the server's `last_tied_request_at`, and records a new tie if
    /// the request did not go where its tie said (sent elsewhere than
    /// [`Decision::tied`], it is [`Affinity::fail_over`]ed here: `moved`).
    /// Returns the `Set-Cookie` value to add to the response (`cookie`
    /// mode, only when the tie was missing or not honoured). `route` is
    /// the server's route id; `tls` whether the request came on a TLS
    /// listener. Read [`Decision::outcome`] for the log afterwards.
    pub fn record(
        &self,
        decision: &mut Decision,
        server: ServerId,
        route: &str,
        tls: bool,
        now: Instant,
    ) -> Option<HeaderValue> {
        if decision.tied.is_some_and(|tied| tied != server) {
            self.fail_over(decision);
        }
        if let Some(outcome) = decision.outcome {
            self.count(outcome);
        }
        if decision.tied == Some(server) {
            self.table.servers.get(server).mark_tied(self.table.ms(now));
            return None;
        }
        match &decision.record {
            Record::Nothing => None,
            Record::Cookie => match &self.mode {
                AffinityMode::Cookie { cookie } => extract::set_cookie(cookie, route, tls),
                _ => None,
            },
            Record::Entry(key) => {
                self.table.insert(*key, server, now);
                None
            }
            Record::Overrides(keys) => {
                for key in keys {
                    self.table.insert(*key, server, now);
                }
                None
            }
        }
    }

    /// `learn` mode, on the response from `server`: a `Set-Cookie` of the
    /// learned cookie ties its value to the server; one deleting it forgets
    /// the tie of the value the request carried (and of the one deleted).
    /// `wall` tells whether an `Expires` date is past.
    pub fn learn(
        &self,
        decision: &Decision,
        response: &HeaderMap,
        server: ServerId,
        now: Instant,
        wall: SystemTime,
    ) {
        let AffinityMode::Learn { cookie } = &self.mode else {
            return;
        };
        let sent = match &decision.record {
            Record::Entry(key) => Some(*key),
            _ => None,
        };
        match extract::learned(response, cookie, wall) {
            Some(Learned::Set(value)) if !value.is_empty() => {
                self.table.insert(self.table.key(&value), server, now);
            }
            Some(Learned::Set(value) | Learned::Deleted(value)) => {
                if !value.is_empty() {
                    self.table.remove(self.table.key(&value));
                }
                if let Some(key) = sent {
                    self.table.remove(key);
                }
            }
            None => {}
        }
    }

    /// `learn`, `client_ip`, `header`: the table's entry for the key.
    fn by_key<P: PoolView + ?Sized>(&self, key: Option<Key>, pool: &P, now: Instant) -> Decision {
        let Some(key) = key else {
            return balance(Outcome::New, Record::Nothing);
        };
        match self.table.lookup(key, now) {
            Lookup::Absent => balance(Outcome::New, Record::Entry(key)),
            Lookup::Live(server) if pool.takes_ties(server) => {
                tied(server, Outcome::Hit, Record::Entry(key))
            }
            Lookup::Live(_) | Lookup::Stale(_) => balance(Outcome::Moved, Record::Entry(key)),
        }
    }

    /// `session_suffix`: each id in turn (see the module docs).
    fn by_session<P: PoolView + ?Sized>(
        &self,
        ids: &[SessionId<'_>],
        pool: &P,
        now: Instant,
    ) -> Decision {
        if ids.is_empty() {
            return balance(Outcome::New, Record::Nothing);
        }
        let keys: Vec<Key> = ids.iter().map(|id| self.table.key(id.id)).collect();
        let failback = self.failback.load(std::sync::atomic::Ordering::Relaxed);
        for (id, key) in ids.iter().zip(&keys) {
            let own = pool
                .server_by_route(id.route)
                .filter(|server| pool.takes_ties(*server));
            if let Some((server, outcome)) = self.resolve(*key, own, failback, pool, now) {
                return tied(server, outcome, Record::Overrides(keys));
            }
        }
        balance(Outcome::Moved, Record::Overrides(keys))
    }

    /// One session id: its override tie `key` and its own route's server
    /// `own` (if that takes ties), weighed as `failback` says.
    fn resolve<P: PoolView + ?Sized>(
        &self,
        key: Key,
        own: Option<ServerId>,
        failback: bool,
        pool: &P,
        now: Instant,
    ) -> Option<(ServerId, Outcome)> {
        if failback {
            if let Some(server) = own {
                // Back on the server its id names: the override is done.
                self.table.remove(key);
                return Some((server, Outcome::Hit));
            }
            return match self.table.lookup(key, now) {
                Lookup::Live(server) if pool.takes_ties(server) => Some((server, Outcome::Hit)),
                _ => None,
            };
        }
        match self.table.lookup(key, now) {
            Lookup::Live(server) if pool.takes_ties(server) => Some((server, Outcome::Hit)),
            Lookup::Absent => own.map(|server| (server, Outcome::Hit)),
            Lookup::Live(_) | Lookup::Stale(_) => own.map(|server| {
                self.table.remove(key);
                (server, Outcome::Moved)
            }),
        }
    }
}

/// `cookie`: the route berth's cookie names.
fn by_route<P: PoolView + ?Sized>(route: Option<&[u8]>, pool: &P) -> Decision {
    let Some(route) = route else {
        return balance(Outcome::New, Record::Cookie);
    };
    match pool
        .server_by_route(route)
        .filter(|server| pool.takes_ties(*server))
    {
        Some(server) => tied(server, Outcome::Hit, Record::Cookie),
        None => balance(Outcome::Moved, Record::Cookie),
    }
}
