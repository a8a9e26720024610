//! What `/status` and `/metrics` report, read from the running state.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::Control;
use crate::metrics::Scrape;
use crate::runtime::{AdminState, State};

fn state_name(state: State) -> &'static str {
    match state {
        State::Up => "up",
        State::Down => "down",
        State::Drain => "drain",
        State::Maint => "maint",
    }
}

pub fn admin_state_name(state: AdminState) -> &'static str {
    match state {
        AdminState::Ready => "ready",
        AdminState::Drain => "drain",
        AdminState::Maint => "maint",
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A monotonic instant as wall-clock time.
fn wall_clock(instant: Instant) -> DateTime<Utc> {
    let ago = Instant::now().saturating_duration_since(instant);
    DateTime::<Utc>::from(SystemTime::now() - ago)
}

/// The `/status` document of SPEC §7.
pub fn status(control: &Control) -> Value {
    let uptime = control.started.elapsed().map_or(0, |d| d.as_secs());
    let listeners: Vec<Value> = control
        .listeners()
        .iter()
        .map(|listener| {
            let serving = listener.serving();
            json!({
                "bind": listener.local.to_string(),
                "tls": serving.tls.is_some(),
                "proxy_protocol": format!("{:?}", serving.info.config.proxy_protocol).to_lowercase(),
                "connections": listener.connections.open(),
            })
        })
        .collect();
    let certificates: Vec<Value> = control
        .certs
        .as_ref()
        .map(|certs| certs.resolver.store().summary())
        .unwrap_or_default()
        .into_iter()
        .map(|cert| {
            json!({
                "file": cert.file,
                "names": cert.names,
                "not_after": rfc3339(cert.not_after),
                "expired": cert.expired,
            })
        })
        .collect();
    let snapshot = control.shared.snapshot.load_full();
    let mut pools = serde_json::Map::new();
    for pool in &snapshot.pools {
        let servers: Vec<Value> = pool
            .servers
            .iter()
            .map(|server| {
                let ties = pool.affinity.server(server.affinity_id);
                json!({
                    "name": &*server.name,
                    "addr": server.addr.to_string(),
                    "resolved": server.addresses().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "route": &*server.route,
                    "state": state_name(server.state()),
                    "admin_state": admin_state_name(server.admin_state()),
                    "weight": server.weight(),
                    "backup": server.backup,
                    "in_flight": server.in_flight.load(Ordering::Relaxed),
                    "requests": server.requests.load(Ordering::Relaxed),
                    "ties": ties.ties,
                    "last_tied_request_at": ties.last_tied.map(|at| rfc3339(wall_clock(at))),
                })
            })
            .collect();
        let stats = pool.affinity.stats();
        pools.insert(
            pool.name.to_string(),
            json!({
                "servers": servers,
                "affinity": {
                    "entries": stats.entries,
                    "hit": stats.hit,
                    "new": stats.new,
                    "moved": stats.moved,
                    "purged": stats.purged,
                },
            }),
        );
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": uptime,
        "draining": control.shared.draining.load(Ordering::Relaxed),
        "listeners": listeners,
        "certificates": certificates,
        "pools": pools,
        "log_lines_dropped": control.shared.log.dropped(),
    })
}

/// Everything `/metrics` reports.
pub fn scrape(control: &Control) -> Scrape {
    let mut scrape = Scrape::default();
    let snapshot = control.shared.snapshot.load_full();
    for pool in &snapshot.pools {
        for server in &pool.servers {
            for (code, count) in server.codes.counted() {
                scrape
                    .requests
                    .push((pool.name.to_string(), server.name.to_string(), code, count));
            }
            scrape.server_up.push((
                pool.name.to_string(),
                server.name.to_string(),
                server.is_up(),
            ));
        }
        let stats = pool.affinity.stats();
        scrape.affinity.push((
            pool.name.to_string(),
            stats.entries as u64,
            stats.hit,
            stats.new,
            stats.moved,
            stats.purged,
        ));
    }
    scrape.counters(&control.shared.counters);
    for listener in control.listeners().iter() {
        let bind = listener.local.to_string();
        scrape
            .connections
            .push((bind.clone(), listener.connections.open() as u64));
        if listener.serving().info.config.proxy_protocol != crate::config::ProxyProtocol::Off {
            for (reason, count) in listener.rejections.counts() {
                scrape
                    .proxy_rejected
                    .push((bind.clone(), reason.as_str(), count));
            }
        }
    }
    if let Some(certs) = &control.certs {
        for cert in certs.resolver.store().summary() {
            scrape
                .cert_expiry
                .push((cert.file, cert.not_after.timestamp()));
        }
    }
    scrape.log_dropped = control.shared.log.dropped();
    scrape
}
