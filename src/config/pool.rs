//! Checks for `[pools.NAME]`: balance and timeouts, the `affinity` and
//! `health` inline tables, and each of `[[pools.NAME.servers]]`.

use std::collections::BTreeMap;

use super::document::{KeyPath, Problems};
use super::validate::{Zero, at_least, secs, url_path, within};
use super::{Affinity, AffinityMode, Balance, Health, Pool, Server, address, file};

pub(super) fn pools(raw: BTreeMap<String, file::Pool>, p: &mut Problems<'_>) -> Vec<Pool> {
    let mut pools = Vec::new();
    for (name, raw) in raw {
        let path = KeyPath::root().key("pools").key(&name);
        if let Err(message) = id(name.clone()) {
            p.key(&path, format!("bad pool name: {message}"));
        }
        pools.push(pool(name, raw, &path, p));
    }
    pools
}

fn pool(name: String, raw: file::Pool, path: &KeyPath, p: &mut Problems<'_>) -> Pool {
    let key = |k: &str| path.key(k);
    let balance = match raw.balance {
        None | Some(file::Balance::RoundRobin) => Balance::RoundRobin,
        Some(file::Balance::LeastConn) => Balance::LeastConn,
        Some(file::Balance::Random2) => Balance::Random2,
    };
    let connect_timeout = raw.connect_timeout;
    let response_timeout = raw.response_timeout;
    Pool {
        name,
        balance,
        connect_timeout: p.duration(
            &key("connect_timeout"),
            connect_timeout,
            Zero::Refused,
            secs(3),
        ),
        response_timeout: p.duration(
            &key("response_timeout"),
            response_timeout,
            Zero::Refused,
            secs(60),
        ),
        retries: p
            .check(&key("retries"), raw.retries, at_least(0))
            .unwrap_or(2),
        affinity: affinity(raw.affinity.unwrap_or_default(), &key("affinity"), p),
        health: raw
            .health
            .map(|health| self::health(health, &key("health"), p)),
        servers: servers(raw.servers, &key("servers"), p),
    }
}

fn affinity(raw: file::Affinity, path: &KeyPath, p: &mut Problems<'_>) -> Affinity {
    use file::AffinityMode as Mode;
    let key = |k: &str| path.key(k);
    let mode = raw.mode.unwrap_or(Mode::None);
    let mode_name = match mode {
        Mode::None => "none",
        Mode::Cookie => "cookie",
        Mode::SessionSuffix => "session_suffix",
        Mode::Learn => "learn",
        Mode::ClientIp => "client_ip",
        Mode::Header => "header",
    };
    // Keys that name what a mode reads; with another mode they would be ignored.
    let uses = [
        (
            "cookie",
            raw.cookie.is_some(),
            matches!(mode, Mode::Cookie | Mode::SessionSuffix | Mode::Learn),
        ),
        (
            "path_param",
            raw.path_param.is_some(),
            mode == Mode::SessionSuffix,
        ),
        ("header", raw.header.is_some(), mode == Mode::Header),
    ];
    for (name, set, used) in uses {
        if set && !used {
            p.value(&key(name), format!("not used with mode = \"{mode_name}\""));
        }
    }
    if mode == Mode::Learn && raw.cookie.is_none() {
        let message = "required with mode = \"learn\": the cookie the app servers set";
        p.value(&key("cookie"), message);
    }
    if mode == Mode::Header && raw.header.is_none() {
        let message = "required with mode = \"header\": the request header to tie on";
        p.value(&key("header"), message);
    }
    let cookie = p.check(&key("cookie"), raw.cookie, token);
    let cookie = |default: &str| cookie.clone().unwrap_or_else(|| default.to_owned());
    let path_param = p.check(&key("path_param"), raw.path_param, id);
    let header = p.check(&key("header"), raw.header, token);
    let mode = match mode {
        Mode::None => AffinityMode::None,
        Mode::Cookie => AffinityMode::Cookie {
            cookie: cookie("BERTH"),
        },
        Mode::SessionSuffix => AffinityMode::SessionSuffix {
            cookie: cookie("JSESSIONID"),
            path_param: path_param.unwrap_or_else(|| "jsessionid".to_owned()),
        },
        Mode::Learn => AffinityMode::Learn { cookie: cookie("") },
        Mode::ClientIp => AffinityMode::ClientIp,
        Mode::Header => AffinityMode::Header {
            header: header.unwrap_or_default(),
        },
    };
    Affinity {
        mode,
        ttl: p.duration(&key("ttl"), raw.ttl, Zero::Refused, secs(30 * 60)),
        max_entries: p
            .check(&key("max_entries"), raw.max_entries, at_least(1))
            .unwrap_or(1_000_000),
        failback: raw.failback.unwrap_or(false),
        drain_quiet: p.duration(
            &key("drain_quiet"),
            raw.drain_quiet,
            Zero::Allowed,
            secs(60),
        ),
    }
}

fn health(raw: file::Health, path: &KeyPath, p: &mut Problems<'_>) -> Health {
    let key = |k: &str| path.key(k);
    let health_path = p.required(&key("path"), raw.path);
    let health_path = p.check(&key("path"), health_path, |path| url_path(path, true));
    Health {
        path: health_path.unwrap_or_default(),
        interval: p.duration(&key("interval"), raw.interval, Zero::Refused, secs(2)),
        timeout: p.duration(&key("timeout"), raw.timeout, Zero::Refused, secs(1)),
        rise: p.check(&key("rise"), raw.rise, at_least(1)).unwrap_or(2),
        fall: p.check(&key("fall"), raw.fall, at_least(1)).unwrap_or(3),
    }
}

fn servers(raw: Vec<file::Server>, path: &KeyPath, p: &mut Problems<'_>) -> Vec<Server> {
    let mut servers: Vec<Server> = Vec::new();
    // Names and route ids so far, with the index of the server that has it.
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut routes: Vec<(String, usize)> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let path = path.index(i);
        let key = |k: &str| path.key(k);
        let name = p.required(&key("name"), raw.name);
        let name = p.check(&key("name"), name, id);
        let addr = p.required(&key("addr"), raw.addr);
        let addr = p.check(&key("addr"), addr, |addr| address::server(&addr));
        let weight = p.check(&key("weight"), raw.weight, within(0, 1000));
        let route = p
            .check(&key("route"), raw.route, id)
            .or_else(|| name.clone());
        if let Some(name) = &name {
            if let Some((_, j)) = names.iter().find(|(other, _)| other == name) {
                p.value(
                    &key("name"),
                    format!("{name:?} is already the name of servers[{j}]"),
                );
            }
            names.push((name.clone(), i));
        }
        if let Some(route) = &route {
            if let Some((_, j)) = routes.iter().find(|(other, _)| other == route) {
                let message = format!("route id {route:?} is already used by servers[{j}]");
                p.value(&key("route"), message);
            }
            routes.push((route.clone(), i));
        }
        if let (Some(name), Some(addr), Some(route)) = (name, addr, route) {
            servers.push(Server {
                name,
                addr,
                weight: weight.unwrap_or(100),
                route,
                backup: raw.backup.unwrap_or(false),
            });
        }
    }
    servers
}

/// A pool or server name, route id or path parameter: it shows in URLs,
/// cookies and metrics labels, so only URL-safe characters.
fn id(text: String) -> Result<String, String> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    if !text.is_empty() && text.chars().all(safe) {
        Ok(text)
    } else {
        Err(format!(
            "expected letters, digits, \"-\", \".\", \"_\" or \"~\", got {text:?}"
        ))
    }
}

/// A cookie or header name (an HTTP token, RFC 9110).
fn token(text: String) -> Result<String, String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !text.is_empty() && text.chars().all(tchar) {
        Ok(text)
    } else {
        Err(format!(
            "expected a name of letters, digits and !#$%&'*+-.^_`|~, got {text:?}"
        ))
    }
}

/// A server given at run time (the admin API, the state file): the same
/// checks as in the file. Errors name the field.
pub fn runtime_server(
    name: &str,
    addr: &str,
    weight: Option<i64>,
    route: Option<&str>,
    backup: Option<bool>,
) -> Result<Server, (&'static str, String)> {
    let name = id(name.to_owned()).map_err(|e| ("name", e))?;
    let addr = address::server(addr).map_err(|e| ("addr", e))?;
    let weight = match weight {
        None => 100,
        Some(weight) => within(0, 1000)(weight).map_err(|e| ("weight", e))?,
    };
    let route = match route {
        None => name.clone(),
        Some(route) => id(route.to_owned()).map_err(|e| ("route", e))?,
    };
    Ok(Server {
        name,
        addr,
        weight,
        route,
        backup: backup.unwrap_or(false),
    })
}
