//! From the file's shape to a checked [`Config`], every problem at once.
//!
//! Each section is checked on its own and a bad value is reported and
//! replaced by its default, so checking goes on; the checks across sections
//! (duplicate binds, routes to unknown pools, unreachable routes) only look
//! at values that passed. A [`Config`] comes out only when nothing was found.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::document::{Document, KeyPath, Problems};
use super::{
    ClientAuth, Config, Global, HostMatch, Limits, Listener, LogFormat, LogTarget, Problem,
    ProxyProtocol, Route, address, file, pool,
};

/// Reads and checks the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(error) => Err(vec![Problem {
            file: path.to_owned(),
            position: None,
            key: String::new(),
            message: format!("cannot read the configuration file: {error}"),
        }]),
    }
}

/// Checks configuration text; `file` only names it in problems.
pub fn parse(text: &str, file: &Path) -> Result<Config, Vec<Problem>> {
    let doc = Document::parse(text, file)?;
    let mut problems = Problems::new(&doc);
    let config = doc
        .deserialize::<file::File>(&mut problems)
        .map(|raw| build(raw, &mut problems));
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        // Every way to `None` reports a problem; this is only a safety net.
        None if problems.is_empty() => Err(vec![Problem {
            file: file.to_owned(),
            position: None,
            key: String::new(),
            message: "could not be read as a berth configuration".to_owned(),
        }]),
        _ => Err(problems.into_sorted()),
    }
}

/// Sections that have a problem are left out of the result, which is then
/// incomplete; `parse` only returns it when `p` is empty.
fn build(raw: file::File, p: &mut Problems<'_>) -> Config {
    let global = global(
        raw.global.unwrap_or_default(),
        &KeyPath::root().key("global"),
        p,
    );
    Config {
        listeners: listeners(raw.listener, global.admin, p),
        routes: routes(raw.route, &raw.pools, p),
        pools: pool::pools(raw.pools, p),
        global,
    }
}

fn global(raw: file::Global, path: &KeyPath, p: &mut Problems<'_>) -> Global {
    let key = |k: &str| path.key(k);
    let access_log = p.check(&key("access_log"), raw.access_log, |log| {
        match log.as_str() {
            "-" => Ok(LogTarget::Stdout),
            _ => non_empty(log).map(|log| LogTarget::File(PathBuf::from(log))),
        }
    });
    let default_cert = p.check(&key("default_cert"), raw.default_cert, |name| {
        let lower = name.to_ascii_lowercase();
        let bare = lower.strip_prefix("*.").unwrap_or(&lower);
        if address::is_dns_name(bare) {
            Ok(lower)
        } else {
            Err(format!(
                "expected a DNS name such as \"www.example.com\", got {name:?}"
            ))
        }
    });
    let admin_token = p.check(&key("admin_token"), raw.admin_token, |token| {
        if token.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(token)
        } else {
            Err("expected printable ASCII without spaces".to_owned())
        }
    });
    Global {
        certs: p
            .check(&key("certs"), raw.certs, non_empty)
            .map_or_else(|| "certs".into(), PathBuf::from),
        default_cert,
        access_log: access_log.unwrap_or_else(|| LogTarget::File("logs/access.log".into())),
        log_format: raw
            .log_format
            .map_or(LogFormat::Combined, |format| match format {
                file::LogFormat::Combined => LogFormat::Combined,
                file::LogFormat::VhostCombined => LogFormat::VhostCombined,
                file::LogFormat::CombinedPlus => LogFormat::CombinedPlus,
            }),
        admin: p.check(&key("admin"), raw.admin, |addr| address::bind(&addr)),
        admin_token: admin_token.filter(|token| !token.is_empty()),
        state_file: p
            .check(&key("state_file"), raw.state_file, non_empty)
            .map_or_else(|| "state/berth.state".into(), PathBuf::from),
        workers: p
            .check(&key("workers"), raw.workers, at_least(0))
            .unwrap_or(0),
        drain_delay: p.duration(&key("drain_delay"), raw.drain_delay, Zero::Allowed, secs(0)),
        drain_timeout: p.duration(
            &key("drain_timeout"),
            raw.drain_timeout,
            Zero::Allowed,
            secs(30),
        ),
        resolve_interval: p.duration(
            &key("resolve_interval"),
            raw.resolve_interval,
            Zero::Refused,
            secs(30),
        ),
        limits: limits(raw.limits.unwrap_or_default(), &key("limits"), p),
    }
}

fn limits(raw: file::Limits, path: &KeyPath, p: &mut Problems<'_>) -> Limits {
    let key = |k: &str| path.key(k);
    Limits {
        max_connections: p
            .check(&key("max_connections"), raw.max_connections, at_least(1))
            .unwrap_or(20_000),
        header_read_timeout: p.duration(
            &key("header_read_timeout"),
            raw.header_read_timeout,
            Zero::Refused,
            secs(10),
        ),
        idle_timeout: p.duration(
            &key("idle_timeout"),
            raw.idle_timeout,
            Zero::Refused,
            secs(60),
        ),
        max_header_bytes: p
            .check(
                &key("max_header_bytes"),
                raw.max_header_bytes,
                at_least(1024),
            )
            .unwrap_or(65_536),
        max_body_bytes: p
            .check(
                &key("max_body_bytes"),
                raw.max_body_bytes,
                at_least::<u64>(0),
            )
            .filter(|&bytes| bytes > 0),
    }
}

fn listeners(
    raw: Vec<file::Listener>,
    admin: Option<SocketAddr>,
    p: &mut Problems<'_>,
) -> Vec<Listener> {
    // With a listener[0] in the file, its problems were reported already.
    if raw.is_empty() && !p.doc().contains(&KeyPath::root().key("listener").index(0)) {
        let message = "missing: at least one [[listener]] is needed";
        p.value(&KeyPath::root().key("listener"), message);
    }
    let mut listeners = Vec::new();
    // Each good bind so far, with the key that set it.
    let mut binds: Vec<(SocketAddr, String)> = Vec::new();
    if let Some(admin) = admin {
        binds.push((admin, "global.admin".to_owned()));
    }
    for (i, raw) in raw.into_iter().enumerate() {
        let path = KeyPath::root().key("listener").index(i);
        // Checked here too, so a listener with another problem still clashes.
        if let Some(bind) = raw.bind.as_deref().and_then(|b| address::bind(b).ok()) {
            let clash = binds.iter().find(|(other, _)| binds_clash(bind, *other));
            if let Some((other, key)) = clash {
                let message = format!("{bind} clashes with {key} = \"{other}\"");
                p.value(&path.key("bind"), message);
            }
            binds.push((bind, format!("{path}.bind")));
        }
        listeners.extend(listener(raw, &path, p));
    }
    listeners
}

/// Two addresses that cannot both be bound: the same, or the same port where
/// one is the unspecified address of the same family.
fn binds_clash(a: SocketAddr, b: SocketAddr) -> bool {
    let same_family = a.is_ipv4() == b.is_ipv4();
    a.port() == b.port()
        && a.port() != 0
        && same_family
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn listener(raw: file::Listener, path: &KeyPath, p: &mut Problems<'_>) -> Option<Listener> {
    let key = |k: &str| path.key(k);
    let bind = p.required(&key("bind"), raw.bind);
    let bind = p.check(&key("bind"), bind, |bind| address::bind(&bind));
    let tls = p.required(&key("tls"), raw.tls);
    let proxy_protocol = match raw.proxy_protocol {
        None | Some(file::ProxyProtocol::Off) => ProxyProtocol::Off,
        Some(file::ProxyProtocol::V1) => ProxyProtocol::V1,
        Some(file::ProxyProtocol::V2) => ProxyProtocol::V2,
        Some(file::ProxyProtocol::Any) => ProxyProtocol::Any,
    };
    let mut proxy_from = Vec::new();
    for (i, net) in raw.proxy_from.iter().flatten().enumerate() {
        proxy_from.extend(p.check(&key("proxy_from").index(i), Some(net), |n| address::net(n)));
    }
    // SPEC §2 shows proxy_from with "off": a list kept for later is fine.
    let listed = raw.proxy_from.as_ref().is_some_and(|nets| !nets.is_empty());
    if proxy_protocol != ProxyProtocol::Off && !listed {
        let message = "required with proxy_protocol: the balancers allowed to send PROXY headers, \
                       e.g. [\"10.0.0.0/8\"]";
        p.value(&key("proxy_from"), message);
    }
    let tls_only = |p: &mut Problems<'_>, k: &str, set: bool| {
        if set && tls == Some(false) {
            p.value(&key(k), "only used on a listener with tls = true");
        }
    };
    tls_only(p, "hsts", raw.hsts.is_some());
    tls_only(p, "client_ca", raw.client_ca.is_some());
    let hsts = p.check(&key("hsts"), raw.hsts, header_value);
    let health_path = p.check(&key("health_path"), raw.health_path, |path| {
        url_path(path, false)
    });
    if raw.client_auth.is_some() && raw.client_ca.is_none() {
        p.value(
            &key("client_auth"),
            "only used with client_ca (the CA that signs client certificates)",
        );
    }
    let client_ca = p
        .check(&key("client_ca"), raw.client_ca, non_empty)
        .map(PathBuf::from);
    let redirect_https = raw.redirect_https.unwrap_or(false);
    if redirect_https && tls == Some(true) {
        p.value(
            &key("redirect_https"),
            "only for plain listeners (tls = false): this one already is HTTPS",
        );
    }
    Some(Listener {
        bind: bind?,
        tls: tls?,
        proxy_protocol,
        proxy_from,
        hsts,
        health_path,
        client_ca,
        client_auth: match raw.client_auth {
            None | Some(file::ClientAuth::Optional) => ClientAuth::Optional,
            Some(file::ClientAuth::Required) => ClientAuth::Required,
        },
        redirect_https,
    })
}

fn routes(
    raw: Vec<file::Route>,
    pools: &BTreeMap<String, file::Pool>,
    p: &mut Problems<'_>,
) -> Vec<Route> {
    let mut routes = Vec::new();
    // The matchers of each route so far; `None` where one was invalid.
    let mut earlier: Vec<Option<Matchers>> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let path = KeyPath::root().key("route").index(i);
        let key = |k: &str| path.key(k);
        let host = p.check(&key("host"), raw.host.clone(), |h| address::host_match(&h));
        let path_prefix = p.check(&key("path_prefix"), raw.path_prefix.clone(), |prefix| {
            url_path(prefix, false)
        });
        let strip_prefix = raw.strip_prefix.unwrap_or(false);
        if strip_prefix && raw.path_prefix.is_none() {
            p.value(&key("strip_prefix"), "only used with path_prefix");
        }
        let pool = p.required(&key("pool"), raw.pool);
        if let Some(name) = pool
            .as_ref()
            .filter(|name| !pools.contains_key(name.as_str()))
        {
            let known: Vec<&str> = pools.keys().map(String::as_str).collect();
            let message = if known.is_empty() {
                format!("no pool named {name:?} (the file defines no [pools.NAME])")
            } else {
                format!("no pool named {name:?} (pools: {})", known.join(", "))
            };
            p.value(&key("pool"), message);
        }
        let valid = host.is_some() == raw.host.is_some()
            && path_prefix.is_some() == raw.path_prefix.is_some();
        let matchers = valid.then(|| (host.clone(), path_prefix.clone()));
        if let Some(later) = &matchers {
            let first = earlier
                .iter()
                .position(|e| e.as_ref().is_some_and(|e| covers(e, later)));
            if let Some(j) = first {
                let message = format!(
                    "unreachable: route[{j}] comes first and takes every request it would match"
                );
                p.value(&path, message);
            }
        }
        earlier.push(matchers);
        if let Some(pool) = pool {
            routes.push(Route {
                host,
                path_prefix,
                strip_prefix,
                pool,
            });
        }
    }
    routes
}

/// A route's host and path prefix.
type Matchers = (Option<HostMatch>, Option<String>);

/// Whether an earlier route's matchers take every request a later one's
/// would (first match wins).
fn covers(earlier: &Matchers, later: &Matchers) -> bool {
    let host = match (&earlier.0, &later.0) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostMatch::Wildcard(parent)), Some(HostMatch::Exact(name))) => {
            name.split_once('.').is_some_and(|(_, rest)| rest == parent)
        }
        (Some(a), Some(b)) => a == b,
    };
    let path = earlier.1.is_none() || earlier.1.as_ref() == later.1.as_ref();
    host && path
}

impl Problems<'_> {
    /// Converts an optional value, reporting it at `path` if it is invalid.
    pub(super) fn check<T, U>(
        &mut self,
        path: &KeyPath,
        value: Option<T>,
        convert: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<U> {
        match convert(value?) {
            Ok(value) => Some(value),
            Err(message) => {
                self.value(path, message);
                None
            }
        }
    }

    /// A duration (more than zero unless `zero` is allowed), else `default`.
    pub(super) fn duration(
        &mut self,
        path: &KeyPath,
        value: Option<file::Dur>,
        zero: Zero,
        default: Duration,
    ) -> Duration {
        let checked = self.check(path, value, |file::Dur(duration)| {
            if duration.is_zero() && zero == Zero::Refused {
                Err("must be more than 0".to_owned())
            } else {
                Ok(duration)
            }
        });
        checked.unwrap_or(default)
    }
}

pub(super) const fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// Whether a duration may be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Zero {
    Allowed,
    Refused,
}

/// A check for an integer of at least `min` that fits `T`.
pub(super) fn at_least<T: TryFrom<i64>>(min: i64) -> impl Fn(i64) -> Result<T, String> {
    move |n| {
        if n < min {
            return Err(format!("must be at least {min}, got {n}"));
        }
        T::try_from(n).map_err(|_| format!("{n} is too large"))
    }
}

/// A check for an integer in `min..=max`.
pub(super) fn within(min: i64, max: i64) -> impl Fn(i64) -> Result<u32, String> {
    move |n| match u32::try_from(n) {
        Ok(value) if (min..=max).contains(&n) => Ok(value),
        _ => Err(format!("must be {min}..={max}, got {n}")),
    }
}

pub(super) fn non_empty(text: String) -> Result<String, String> {
    if text.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text)
    }
}

/// A URL path as sent on the wire: starts with `/`, visible ASCII only
/// (non-ASCII must be percent-encoded), with a query only if `query`.
pub(super) fn url_path(text: String, query: bool) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("must start with \"/\", got {text:?}"));
    }
    let bad = |b: u8| !b.is_ascii_graphic() || b == b'#' || (!query && b == b'?');
    if text.bytes().any(bad) {
        let query = if query { "" } else { ", no \"?\"" };
        Err(format!(
            "expected a URL path (visible ASCII, percent-encoded, no spaces{query}), got {text:?}"
        ))
    } else {
        Ok(text)
    }
}

/// An HTTP header value: visible ASCII and spaces.
fn header_value(text: String) -> Result<String, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        Ok(text)
    } else {
        Err(format!(
            "expected a header value such as \"max-age=31536000\", got {text:?}"
        ))
    }
}
