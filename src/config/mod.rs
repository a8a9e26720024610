//! Configuration: the TOML file of SPEC §2, read and checked in two steps.
//!
//! `file.rs` mirrors the file with serde (`deny_unknown_fields`, so typos are
//! errors); `validate.rs` turns that into the [`Config`] below, collecting
//! every problem instead of stopping at the first. Each problem carries the
//! key path (`pools.web.servers[0].addr`) and, where the file has it, the
//! line and column. Nothing here knows about sockets, TLS or hyper.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod address;
mod document;
mod duration;
mod file;
mod pool;
mod validate;

#[cfg(test)]
mod tests;

pub use pool::runtime_server;
pub use validate::{load, parse};

/// A checked configuration. Every value here has been validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    pub listeners: Vec<Listener>,
    /// First match wins.
    pub routes: Vec<Route>,
    /// In the order of their names.
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub certs: PathBuf,
    pub default_cert: Option<String>,
    pub access_log: LogTarget,
    pub log_format: LogFormat,
    pub admin: Option<SocketAddr>,
    /// `None` when the key is absent or empty.
    pub admin_token: Option<String>,
    pub state_file: PathBuf,
    /// 0 = one per CPU.
    pub workers: usize,
    pub drain_delay: Duration,
    pub drain_timeout: Duration,
    pub resolve_interval: Duration,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Combined,
    VhostCombined,
    CombinedPlus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    /// `None` = unlimited (0 in the file).
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub bind: SocketAddr,
    pub tls: bool,
    pub proxy_protocol: ProxyProtocol,
    pub proxy_from: Vec<ipnet::IpNet>,
    pub hsts: Option<String>,
    pub health_path: Option<String>,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub redirect_https: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    Off,
    V1,
    V2,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Optional,
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: Option<HostMatch>,
    /// Starts with `/`.
    pub path_prefix: Option<String>,
    pub strip_prefix: bool,
    pub pool: String,
}

/// A route's host matcher, lower-cased, without port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com` is stored as `example.com`: it matches exactly one
    /// more label.
    Wildcard(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub affinity: Affinity,
    pub health: Option<Health>,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    Random2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub mode: AffinityMode,
    pub ttl: Duration,
    pub max_entries: usize,
    pub failback: bool,
    pub drain_quiet: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AffinityMode {
    None,
    /// `cookie` defaults to `BERTH`.
    Cookie {
        cookie: String,
    },
    /// `cookie` defaults to `JSESSIONID`, `path_param` to `jsessionid`.
    SessionSuffix {
        cookie: String,
        path_param: String,
    },
    /// `cookie` is required.
    Learn {
        cookie: String,
    },
    ClientIp,
    /// `header` is required.
    Header {
        header: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// `ip:port` or `hostname:port`, checked for shape only.
    pub addr: ServerAddr,
    /// 0..=1000.
    pub weight: u32,
    /// Defaults to `name`.
    pub route: String,
    pub backup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    Ip(SocketAddr),
    Host { host: String, port: u16 },
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Ip(addr) => write!(f, "{addr}"),
            ServerAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column, when the problem can be placed in the file.
    pub position: Option<(usize, usize)>,
    /// Key path with 0-based indexes, e.g. `pools.web.servers[0].addr`;
    /// empty for a syntax error.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}
