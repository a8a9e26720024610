//! The decision, mode by mode, driven the way the request path drives it:
//! claim → decide → (balance) → record, with servers going down, into
//! drain and maintenance, and back.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::accesslog::Outcome::{self, Hit, Moved, New};
use crate::affinity::{Affinity, Candidate, ServerId, Stats};
use crate::config::{self, AffinityMode};

const A: ServerId = ServerId(0);
const B: ServerId = ServerId(1);
const C: ServerId = ServerId(2);
const ROUTES: [&str; 3] = ["app01", "app02", "app03"];

fn affinity(mode: AffinityMode, failback: bool) -> (Affinity, Instant) {
    let now = Instant::now();
    let config = config::Affinity {
        mode,
        ttl: Duration::from_secs(1800),
        max_entries: 1000,
        failback,
        drain_quiet: Duration::from_secs(60),
    };
    (Affinity::new(&config, now), now)
}

/// Three servers; `ties[i]`: whether server i takes ties (up, not maint).
struct Fleet {
    ties: [bool; 3],
}

impl Fleet {
    fn up() -> Fleet {
        Fleet { ties: [true; 3] }
    }

    fn view(&self) -> Vec<Candidate<'static>> {
        (0..3)
            .map(|i| Candidate {
                id: ServerId(i as u16),
                route: ROUTES[i],
                takes_ties: self.ties[i],
            })
            .collect()
    }
}

struct Request {
    headers: HeaderMap,
    target: &'static str,
    client: IpAddr,
}

fn request(cookie: Option<&str>) -> Request {
    let mut headers = HeaderMap::new();
    if let Some(cookie) = cookie {
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
    }
    Request {
        headers,
        target: "/",
        client: "192.0.2.7".parse().unwrap(),
    }
}

/// What the request path would do: the tied server, or `balanced` when
/// the tie does not hold; returns where it went, its outcome, and the
/// `Set-Cookie` berth adds.
fn serve(
    affinity: &Affinity,
    req: &Request,
    fleet: &Fleet,
    now: Instant,
    balanced: ServerId,
) -> (ServerId, Option<Outcome>, Option<HeaderValue>) {
    let claim = affinity.claim(&req.headers, req.target, req.client);
    let mut decision = affinity.decide(&claim, fleet.view().as_slice(), now);
    let server = decision.tied().unwrap_or(balanced);
    let route = ROUTES[usize::from(server.0)];
    let set_cookie = affinity.record(&mut decision, server, route, true, now);
    (server, decision.outcome(), set_cookie)
}

fn cookie_mode() -> AffinityMode {
    AffinityMode::Cookie {
        cookie: "BERTH".into(),
    }
}

#[test]
fn cookie_mode_sets_a_cookie_only_when_the_tie_is_missing_or_not_honoured() {
    let (aff, t) = affinity(cookie_mode(), false);
    let mut fleet = Fleet::up();
    let (server, outcome, set) = serve(&aff, &request(None), &fleet, t, B);
    assert_eq!((server, outcome), (B, Some(New)));
    assert_eq!(
        set.unwrap(),
        "BERTH=app02; Path=/; HttpOnly; SameSite=Lax; Secure"
    );
    // Honoured: no Set-Cookie.
    let tied = request(Some("x=1; BERTH=app02"));
    assert_eq!(serve(&aff, &tied, &fleet, t, C), (B, Some(Hit), None));
    // Its server down: balanced, a new cookie.
    fleet.ties[1] = false;
    let (server, outcome, set) = serve(&aff, &tied, &fleet, t, C);
    assert_eq!((server, outcome), (C, Some(Moved)));
    assert_eq!(
        set.unwrap(),
        "BERTH=app03; Path=/; HttpOnly; SameSite=Lax; Secure"
    );
    // A route no server has, or an empty one.
    let unknown = request(Some("BERTH=app99"));
    assert_eq!(serve(&aff, &unknown, &fleet, t, A).1, Some(Moved));
    assert_eq!(
        serve(&aff, &request(Some("BERTH=")), &fleet, t, A).1,
        Some(New)
    );
    assert_eq!(
        serve(&aff, &request(Some("XBERTH=app02")), &fleet, t, A).1,
        Some(New)
    );
    let stats = aff.stats();
    assert_eq!(
        (stats.hit, stats.new, stats.moved, stats.entries),
        (1, 3, 2, 0)
    );
    assert_eq!(aff.server(B).ties, 0, "cookie ties are not table ties");
}

#[test]
fn cookie_mode_strips_its_cookie_and_only_its_cookie() {
    let (aff, _) = affinity(cookie_mode(), false);
    let mut headers = request(Some("a=1; BERTH=app01; XBERTH=2")).headers;
    aff.strip_request(&mut headers);
    assert_eq!(headers.get(COOKIE).unwrap(), "a=1; XBERTH=2");
    let (learn, _) = affinity(
        AffinityMode::Learn {
            cookie: "BERTH".into(),
        },
        false,
    );
    let mut headers = request(Some("BERTH=1")).headers;
    learn.strip_request(&mut headers);
    assert_eq!(headers.get(COOKIE).unwrap(), "BERTH=1");
}

#[test]
fn a_failed_connection_moves_the_tie() {
    let (aff, t) = affinity(cookie_mode(), false);
    let fleet = Fleet::up();
    let req = request(Some("BERTH=app01"));
    let claim = aff.claim(&req.headers, req.target, req.client);
    let mut decision = aff.decide(&claim, fleet.view().as_slice(), t);
    assert_eq!((decision.tied(), decision.outcome()), (Some(A), Some(Hit)));
    aff.fail_over(&mut decision);
    assert_eq!((decision.tied(), decision.outcome()), (None, Some(Moved)));
    let set = aff.record(&mut decision, C, "app03", false, t).unwrap();
    assert_eq!(set, "BERTH=app03; Path=/; HttpOnly; SameSite=Lax");
    assert_eq!((aff.stats().hit, aff.stats().moved), (0, 1));
    assert_eq!(aff.server(A).last_tied, None, "it never reached A");
}

#[test]
fn a_request_sent_elsewhere_than_its_tie_is_moved() {
    let (aff, t) = affinity(AffinityMode::ClientIp, false);
    let fleet = Fleet::up();
    let req = request(None);
    serve(&aff, &req, &fleet, t, A);
    let claim = aff.claim(&req.headers, req.target, req.client);
    let mut decision = aff.decide(&claim, fleet.view().as_slice(), t);
    assert_eq!(decision.tied(), Some(A));
    assert_eq!(aff.record(&mut decision, B, "app02", false, t), None);
    assert_eq!((decision.tied(), decision.outcome()), (None, Some(Moved)));
    assert_eq!(serve(&aff, &req, &fleet, t, C), (B, Some(Hit), None));
    assert_eq!(
        (aff.stats().new, aff.stats().moved, aff.stats().hit),
        (1, 1, 1)
    );
    assert_eq!(
        aff.server(ServerId(999)),
        Default::default(),
        "unknown: zeros"
    );
}

#[test]
fn drain_keeps_every_kind_of_tie() {
    // A draining server takes ties (the balancer gives it no new ones).
    let fleet = Fleet::up();
    let (cookie, t) = affinity(cookie_mode(), false);
    assert_eq!(
        serve(&cookie, &request(Some("BERTH=app01")), &fleet, t, B).1,
        Some(Hit)
    );
    let (suffix, t) = affinity(suffix_mode(), false);
    let req = request(Some("JSESSIONID=F00.app01"));
    assert_eq!(serve(&suffix, &req, &fleet, t, B), (A, Some(Hit), None));
    let (ip, t) = affinity(AffinityMode::ClientIp, false);
    serve(&ip, &request(None), &fleet, t, A);
    assert_eq!(serve(&ip, &request(None), &fleet, t, B).0, A);
}

#[test]
fn table_modes_move_once_after_a_purge_then_hit() {
    let (aff, t) = affinity(AffinityMode::ClientIp, false);
    let fleet = Fleet::up();
    let req = request(None);
    assert_eq!(serve(&aff, &req, &fleet, t, A), (A, Some(New), None));
    assert_eq!(serve(&aff, &req, &fleet, t, B), (A, Some(Hit), None));
    assert_eq!(aff.server(A).ties, 1);
    assert_eq!(aff.purge(A), 1);
    // A is back up already, but the purged tie is not honoured: moved once.
    assert_eq!(serve(&aff, &req, &fleet, t, B), (B, Some(Moved), None));
    assert_eq!(serve(&aff, &req, &fleet, t, C), (B, Some(Hit), None));
    assert_eq!((aff.server(A).ties, aff.server(B).ties), (0, 1));
    let mapped = Request {
        client: "::ffff:192.0.2.7".parse().unwrap(),
        ..request(None)
    };
    assert_eq!(serve(&aff, &mapped, &fleet, t, C).0, B, "one client");
    let stats = aff.stats();
    assert_eq!(
        stats,
        Stats {
            hit: 3,
            new: 1,
            moved: 1,
            purged: 1,
            entries: 1
        }
    );
}

#[test]
fn table_tie_to_a_server_that_cannot_take_it_moves() {
    let (aff, t) = affinity(
        AffinityMode::Header {
            header: "x-tenant".into(),
        },
        false,
    );
    let mut fleet = Fleet::up();
    let mut req = request(None);
    assert_eq!(serve(&aff, &req, &fleet, t, A), (A, Some(New), None));
    assert_eq!(aff.stats().entries, 0, "no key, nothing recorded");
    req.headers
        .insert("x-tenant", HeaderValue::from_static("acme"));
    assert_eq!(serve(&aff, &req, &fleet, t, A).1, Some(New));
    assert_eq!(serve(&aff, &req, &fleet, t, B).0, A);
    // Down (or in maintenance) before any purge: not honoured all the same.
    fleet.ties[0] = false;
    assert_eq!(serve(&aff, &req, &fleet, t, C), (C, Some(Moved), None));
    fleet.ties[0] = true;
    assert_eq!(serve(&aff, &req, &fleet, t, A), (C, Some(Hit), None));
    // Idle for ttl: forgotten, so new.
    let later = t + Duration::from_secs(3600);
    assert_eq!(serve(&aff, &req, &fleet, later, B), (B, Some(New), None));
}

#[test]
fn last_tied_request_is_the_last_one_sent_by_its_tie() {
    let (aff, t) = affinity(AffinityMode::ClientIp, false);
    let fleet = Fleet::up();
    let req = request(None);
    serve(&aff, &req, &fleet, t, A);
    assert_eq!(
        aff.server(A).last_tied,
        None,
        "a new tie is no tied request"
    );
    let t1 = t + Duration::from_secs(5);
    serve(&aff, &req, &fleet, t1, B);
    assert_eq!(aff.server(A).last_tied, Some(t1));
    serve(&aff, &req, &fleet, t, B);
    assert_eq!(aff.server(A).last_tied, Some(t1), "never goes back");
    assert_eq!(aff.retire("nobody"), 0);
}

#[test]
fn learn_mode_follows_the_app_servers_set_cookie() {
    let (aff, t) = affinity(
        AffinityMode::Learn {
            cookie: "JSESSIONID".into(),
        },
        false,
    );
    let fleet = Fleet::up();
    let wall = SystemTime::now();
    // No cookie yet: balanced to B, whose response sets one.
    let first = request(None);
    let claim = aff.claim(&first.headers, first.target, first.client);
    let mut decision = aff.decide(&claim, fleet.view().as_slice(), t);
    assert_eq!(decision.outcome(), Some(New));
    assert_eq!(aff.record(&mut decision, B, "app02", true, t), None);
    let mut response = HeaderMap::new();
    response.insert(
        SET_COOKIE,
        HeaderValue::from_static("JSESSIONID=s1; Path=/"),
    );
    aff.learn(&decision, &response, B, t, wall);
    assert_eq!(aff.server(B).ties, 1);
    // The client sends it back: tied to B.
    let back = request(Some("JSESSIONID=s1"));
    assert_eq!(serve(&aff, &back, &fleet, t, C), (B, Some(Hit), None));
    // The app deletes it: forgotten.
    let claim = aff.claim(&back.headers, back.target, back.client);
    let decision = aff.decide(&claim, fleet.view().as_slice(), t);
    response.insert(
        SET_COOKIE,
        HeaderValue::from_static("JSESSIONID=; Max-Age=0; Path=/"),
    );
    aff.learn(&decision, &response, B, t, wall);
    assert_eq!((aff.server(B).ties, aff.stats().entries), (0, 0));
    // An unknown value is new, and tied where it went.
    assert_eq!(serve(&aff, &back, &fleet, t, C), (C, Some(New), None));
    assert_eq!(serve(&aff, &back, &fleet, t, A), (C, Some(Hit), None));
}

fn suffix_mode() -> AffinityMode {
    AffinityMode::SessionSuffix {
        cookie: "JSESSIONID".into(),
        path_param: "jsessionid".into(),
    }
}

#[test]
fn session_suffix_follows_the_route_in_the_id() {
    let (aff, t) = affinity(suffix_mode(), false);
    let fleet = Fleet::up();
    let req = request(Some("JSESSIONID=0F3C7A9E.app02"));
    assert_eq!(serve(&aff, &req, &fleet, t, A), (B, Some(Hit), None));
    // The path parameter comes first.
    let url = Request {
        target: "/shop/cart;jsessionid=99AA.app03?x=1",
        ..request(Some("JSESSIONID=0F3C7A9E.app02"))
    };
    assert_eq!(serve(&aff, &url, &fleet, t, A).0, C);
    // Several cookies: the first that gives a server.
    let several = request(Some("JSESSIONID=X.app99; JSESSIONID=Y; JSESSIONID=Z.app03"));
    assert_eq!(serve(&aff, &several, &fleet, t, A), (C, Some(Hit), None));
    // No route: no tie; nothing recorded.
    for cookie in ["JSESSIONID=nodot", "JSESSIONID=empty.", "OTHER=a.app01"] {
        assert_eq!(
            serve(&aff, &request(Some(cookie)), &fleet, t, A).1,
            Some(New)
        );
    }
    // Routes are exact: a dotted route is one route, case counts.
    assert_eq!(
        serve(&aff, &request(Some("JSESSIONID=a.APP01")), &fleet, t, B).1,
        Some(Moved)
    );
    assert_eq!(aff.stats().entries, 1, "the moved id got an override tie");
}

#[test]
fn session_suffix_without_failback_stays_on_its_new_server() {
    let (aff, t) = affinity(suffix_mode(), false);
    let mut fleet = Fleet::up();
    let req = request(Some("JSESSIONID=0F3C.app01"));
    assert_eq!(serve(&aff, &req, &fleet, t, B).0, A);
    fleet.ties[0] = false;
    assert_eq!(serve(&aff, &req, &fleet, t, B), (B, Some(Moved), None));
    assert_eq!(aff.server(B).ties, 1, "an override tie → app02");
    assert_eq!(serve(&aff, &req, &fleet, t, C), (B, Some(Hit), None));
    // app01 is back: the session stays where its state now is.
    fleet.ties[0] = true;
    assert_eq!(serve(&aff, &req, &fleet, t, C), (B, Some(Hit), None));
    // Its new server fails in turn: back to the server its id names.
    fleet.ties[1] = false;
    assert_eq!(aff.purge(B), 1);
    assert_eq!(serve(&aff, &req, &fleet, t, C), (A, Some(Moved), None));
    assert_eq!(aff.stats().entries, 0, "the dead override is dropped");
    assert_eq!(serve(&aff, &req, &fleet, t, C), (A, Some(Hit), None));
}

#[test]
fn session_suffix_with_failback_returns_to_its_route() {
    let (aff, t) = affinity(suffix_mode(), true);
    let mut fleet = Fleet::up();
    let req = request(Some("JSESSIONID=0F3C.app01"));
    fleet.ties[0] = false;
    assert_eq!(serve(&aff, &req, &fleet, t, B), (B, Some(Moved), None));
    assert_eq!(serve(&aff, &req, &fleet, t, C), (B, Some(Hit), None));
    fleet.ties[0] = true;
    assert_eq!(serve(&aff, &req, &fleet, t, C), (A, Some(Hit), None));
    assert_eq!((aff.stats().entries, aff.server(B).ties), (0, 0));
    // Both the route and the override gone: moved again, a new override.
    fleet.ties[0] = false;
    assert_eq!(serve(&aff, &req, &fleet, t, C), (C, Some(Moved), None));
    fleet.ties[2] = false;
    aff.purge(C);
    assert_eq!(serve(&aff, &req, &fleet, t, B), (B, Some(Moved), None));
    assert_eq!(aff.server(B).ties, 1);
}

#[test]
fn reload_keeps_ties_unless_the_mode_changes() {
    let (aff, t) = affinity(AffinityMode::ClientIp, false);
    let fleet = Fleet::up();
    serve(&aff, &request(None), &fleet, t, C);
    let mut config = config::Affinity {
        mode: AffinityMode::ClientIp,
        ttl: Duration::from_secs(60),
        max_entries: 2000,
        failback: true,
        drain_quiet: Duration::from_secs(1),
    };
    assert!(aff.reconfigure(&config));
    assert_eq!(serve(&aff, &request(None), &fleet, t, A).0, C);
    config.mode = cookie_mode();
    assert!(!aff.reconfigure(&config));
}

#[test]
fn affinity_off_has_no_outcome() {
    let (aff, t) = affinity(AffinityMode::None, false);
    let fleet = Fleet::up();
    assert_eq!(
        serve(&aff, &request(Some("BERTH=app01")), &fleet, t, B),
        (B, None, None)
    );
    assert_eq!(aff.stats(), Stats::default());
}

#[test]
fn registry_ids_survive_and_retire_purges() {
    let (aff, t) = affinity(AffinityMode::ClientIp, false);
    let a = aff.server_id("app01").unwrap();
    let b = aff.server_id("app02").unwrap();
    assert_eq!(aff.server_id("app01"), Some(a));
    let key = aff.table().key(b"k");
    aff.table().insert(key, a, t);
    assert_eq!(aff.retire("app01"), 1);
    let c = aff.server_id("app03").unwrap();
    assert_eq!(c, a, "the id is reused…");
    assert_eq!(aff.server(c).ties, 0, "…without the old server's ties");
    assert_ne!(b, c);
}
