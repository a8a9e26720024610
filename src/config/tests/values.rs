//! What valid files turn into: every key set, every default, and SPEC §2's
//! example.

use super::*;

/// The body of SPEC §2, as it stands there, plus the pool `foo` its first
/// route names.
const SPEC_EXAMPLE: &str = r##"
[global]
certs = "certs"                  # directory of certificates, see §3
default_cert = "www.example.com" # optional: a DNS name held by the certificate for clients without a matching SNI
access_log = "logs/access.log"   # a path, or "-" for standard output
log_format = "combined"          # "combined" | "vhost_combined" | "combined_plus", see §6
admin = "127.0.0.1:9090"         # admin API, see §7; leave out to disable
admin_token = ""                 # if set, the admin API requires "Authorization: Bearer <token>"
state_file = "state/berth.state" # where run-time server changes persist, see §7
workers = 0                      # runtime worker threads; 0 = one per CPU
drain_delay = "0s"               # on SIGTERM, keep accepting this long after /healthz turns 503 (set it
                                 # to the L4 balancer's health-check interval × unhealthy threshold)
drain_timeout = "30s"            # then wait at most this long for in-flight requests
resolve_interval = "30s"         # hostnames in server addresses are re-resolved this often

[global.limits]
max_connections = 20000          # per listener; beyond it, accepting pauses
header_read_timeout = "10s"      # the whole request head must arrive within this (slowloris)
idle_timeout = "60s"             # an idle keep-alive connection is closed after this
max_header_bytes = 65536         # a larger request head -> 431
max_body_bytes = 0               # 0 = unlimited; a larger declared or streamed body -> 413

[[listener]]
bind = "0.0.0.0:443"
tls = true
proxy_protocol = "off"           # "off" | "v1" | "v2" | "any" (v1 or v2; required on every connection)
proxy_from = ["10.0.0.0/8"]      # required when proxy_protocol is not "off": peers allowed to send it
hsts = "max-age=31536000"        # optional Strict-Transport-Security value on responses
health_path = "/berth-health"    # optional: berth answers this path itself (200 ok / 503 draining), never forwarded
client_ca = "ca.pem"             # optional client certificates, see §3
client_auth = "optional"         # "optional" | "required", with client_ca

[[listener]]
bind = "0.0.0.0:80"
tls = false
redirect_https = false           # true: 308 to https://<host without port><path and query>, except health_path

[[route]]                        # first match wins
host = "api.example.com"         # optional: exact, or "*.example.com" (exactly one more label); port and case ignored
path_prefix = "/services/foo/v1/"# optional
strip_prefix = false             # true: /services/foo/v1/x -> /x upstream ("/" if nothing is left)
pool = "foo"

[[route]]                        # a route with no matcher is the default; with none, unmatched -> 404
pool = "website"

[pools.website]
balance = "round_robin"          # "round_robin" | "least_conn" | "random2" (power of two choices); all honour weight
connect_timeout = "3s"
response_timeout = "60s"         # until the first response byte from the app server
retries = 2                      # connect failures retried on another server
affinity = { mode = "cookie", cookie = "BERTH" }   # see §5 for every key
health = { path = "/health", interval = "2s", timeout = "1s", rise = 2, fall = 3 }  # optional, see §9

[[pools.website.servers]]
name = "app01"                   # unique in its pool
addr = "10.0.1.10:8080"          # ip:port or hostname:port
weight = 100                     # 0..=1000; 0 = take no new sessions
route = "app01"                  # id used in cookies and session suffixes; defaults to name
backup = false                   # backups serve only while no primary server is up

[pools.foo]
"##;

#[test]
fn spec_example_parses() {
    let config = ok(SPEC_EXAMPLE);
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(
        config.listeners[0].proxy_from,
        vec!["10.0.0.0/8".parse().unwrap()]
    );
    assert_eq!(config.listeners[0].client_ca, Some(PathBuf::from("ca.pem")));
    assert_eq!(
        config.routes[0].host,
        Some(HostMatch::Exact("api.example.com".into()))
    );
    assert_eq!(config.pools[1].name, "website");
    assert_eq!(
        config.pools[1].servers[0].addr.to_string(),
        "10.0.1.10:8080"
    );
    // Every value in the example is its key's default.
    let defaults = ok(&format!(
        "{LISTENER}[global]\ndefault_cert = \"www.example.com\"\nadmin = \"127.0.0.1:9090\""
    ));
    assert_eq!(config.global, defaults.global);
}

/// Every key set to something other than its default.
const FULL: &str = r#"
[global]
certs = "/etc/berth/certs"
default_cert = "WWW.Example.com"
access_log = "-"
log_format = "combined_plus"
admin = "[::1]:9999"
admin_token = "s3cret"
state_file = "/var/lib/berth/state"
workers = 4
drain_delay = "20s"
drain_timeout = "2m"
resolve_interval = "500ms"

[global.limits]
max_connections = 100
header_read_timeout = "5s"
idle_timeout = "1h"
max_header_bytes = 1024
max_body_bytes = 1048576

[[listener]]
bind = "10.0.0.5:8443"
tls = true
proxy_protocol = "any"
proxy_from = ["10.1.2.3/16", "192.0.2.7", "2001:db8::/32"]
hsts = "max-age=63072000; includeSubDomains"
health_path = "/hc"
client_ca = "clients.pem"
client_auth = "required"

[[listener]]
bind = "[::]:8080"
tls = false
proxy_protocol = "v1"
proxy_from = ["127.0.0.1"]
redirect_https = true

[[route]]
host = "*.Example.org:8443"
path_prefix = "/x/"
strip_prefix = true
pool = "tomcat"

[[route]]
host = "example.org"
pool = "tomcat"

[pools.tomcat]
balance = "random2"
connect_timeout = "250ms"
response_timeout = "2m"
retries = 0
affinity = { mode = "session_suffix", cookie = "SID", path_param = "sid", ttl = "1h", max_entries = 10, failback = true, drain_quiet = "0s" }
health = { path = "/ping?deep=1", interval = "10s", timeout = "3s", rise = 1, fall = 5 }

[[pools.tomcat.servers]]
name = "t1"
addr = "Tomcat-1.internal:8009"
weight = 0
route = "jvm1"
backup = true

[[pools.tomcat.servers]]
name = "t2"
addr = "[fd00::2]:8009"
weight = 1000
"#;

#[test]
fn full_config_values() {
    let expected = Config {
        global: Global {
            certs: "/etc/berth/certs".into(),
            default_cert: Some("www.example.com".into()),
            access_log: LogTarget::Stdout,
            log_format: LogFormat::CombinedPlus,
            admin: Some("[::1]:9999".parse().unwrap()),
            admin_token: Some("s3cret".into()),
            state_file: "/var/lib/berth/state".into(),
            workers: 4,
            drain_delay: secs(20),
            drain_timeout: secs(120),
            resolve_interval: Duration::from_millis(500),
            limits: Limits {
                max_connections: 100,
                header_read_timeout: secs(5),
                idle_timeout: secs(3600),
                max_header_bytes: 1024,
                max_body_bytes: Some(1_048_576),
            },
        },
        listeners: vec![
            Listener {
                bind: "10.0.0.5:8443".parse().unwrap(),
                tls: true,
                proxy_protocol: ProxyProtocol::Any,
                proxy_from: vec![
                    "10.1.0.0/16".parse().unwrap(),
                    "192.0.2.7/32".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
                hsts: Some("max-age=63072000; includeSubDomains".into()),
                health_path: Some("/hc".into()),
                client_ca: Some("clients.pem".into()),
                client_auth: ClientAuth::Required,
                redirect_https: false,
            },
            Listener {
                bind: "[::]:8080".parse().unwrap(),
                tls: false,
                proxy_protocol: ProxyProtocol::V1,
                proxy_from: vec!["127.0.0.1/32".parse().unwrap()],
                hsts: None,
                health_path: None,
                client_ca: None,
                client_auth: ClientAuth::Optional,
                redirect_https: true,
            },
        ],
        routes: vec![
            Route {
                host: Some(HostMatch::Wildcard("example.org".into())),
                path_prefix: Some("/x/".into()),
                strip_prefix: true,
                pool: "tomcat".into(),
            },
            Route {
                host: Some(HostMatch::Exact("example.org".into())),
                path_prefix: None,
                strip_prefix: false,
                pool: "tomcat".into(),
            },
        ],
        pools: vec![Pool {
            name: "tomcat".into(),
            balance: Balance::Random2,
            connect_timeout: Duration::from_millis(250),
            response_timeout: secs(120),
            retries: 0,
            affinity: Affinity {
                mode: AffinityMode::SessionSuffix {
                    cookie: "SID".into(),
                    path_param: "sid".into(),
                },
                ttl: secs(3600),
                max_entries: 10,
                failback: true,
                drain_quiet: Duration::ZERO,
            },
            health: Some(Health {
                path: "/ping?deep=1".into(),
                interval: secs(10),
                timeout: secs(3),
                rise: 1,
                fall: 5,
            }),
            servers: vec![
                Server {
                    name: "t1".into(),
                    addr: ServerAddr::Host {
                        host: "tomcat-1.internal".into(),
                        port: 8009,
                    },
                    weight: 0,
                    route: "jvm1".into(),
                    backup: true,
                },
                Server {
                    name: "t2".into(),
                    addr: ServerAddr::Ip("[fd00::2]:8009".parse().unwrap()),
                    weight: 1000,
                    route: "t2".into(),
                    backup: false,
                },
            ],
        }],
    };
    assert_eq!(ok(FULL), expected);
}

#[test]
fn defaults() {
    let config = ok(&format!(
        "{LISTENER}[[route]]\npool = \"web\"\n[pools.web]\n[[pools.web.servers]]\nname = \"a\"\naddr = \"10.0.0.1:80\"\n"
    ));
    let global = Global {
        certs: "certs".into(),
        default_cert: None,
        access_log: LogTarget::File("logs/access.log".into()),
        log_format: LogFormat::Combined,
        admin: None,
        admin_token: None,
        state_file: "state/berth.state".into(),
        workers: 0,
        drain_delay: Duration::ZERO,
        drain_timeout: secs(30),
        resolve_interval: secs(30),
        limits: Limits {
            max_connections: 20_000,
            header_read_timeout: secs(10),
            idle_timeout: secs(60),
            max_header_bytes: 65_536,
            max_body_bytes: None,
        },
    };
    assert_eq!(config.global, global);
    let listener = &config.listeners[0];
    assert_eq!(listener.proxy_protocol, ProxyProtocol::Off);
    assert_eq!(listener.client_auth, ClientAuth::Optional);
    assert!(!listener.redirect_https);
    assert_eq!((&listener.hsts, &listener.health_path), (&None, &None));
    let route = &config.routes[0];
    assert_eq!(
        (&route.host, &route.path_prefix, route.strip_prefix),
        (&None, &None, false)
    );
    let pool = &config.pools[0];
    assert_eq!(pool.balance, Balance::RoundRobin);
    assert_eq!(
        (pool.connect_timeout, pool.response_timeout, pool.retries),
        (secs(3), secs(60), 2)
    );
    let affinity = Affinity {
        mode: AffinityMode::None,
        ttl: secs(30 * 60),
        max_entries: 1_000_000,
        failback: false,
        drain_quiet: secs(60),
    };
    assert_eq!(pool.affinity, affinity);
    assert_eq!(pool.health, None);
    let server = Server {
        name: "a".into(),
        addr: ServerAddr::Ip("10.0.0.1:80".parse().unwrap()),
        weight: 100,
        route: "a".into(),
        backup: false,
    };
    assert_eq!(pool.servers, vec![server]);
}

#[test]
fn affinity_and_health_defaults() {
    let mode = |table: &str| {
        let text = format!("{LISTENER}[pools.p]\naffinity = {table}\n");
        ok(&text).pools[0].affinity.mode.clone()
    };
    assert_eq!(
        mode("{ mode = \"cookie\" }"),
        AffinityMode::Cookie {
            cookie: "BERTH".into()
        }
    );
    assert_eq!(
        mode("{ mode = \"session_suffix\" }"),
        AffinityMode::SessionSuffix {
            cookie: "JSESSIONID".into(),
            path_param: "jsessionid".into()
        }
    );
    assert_eq!(
        mode("{ mode = \"learn\", cookie = \"PHPSESSID\" }"),
        AffinityMode::Learn {
            cookie: "PHPSESSID".into()
        }
    );
    assert_eq!(mode("{ mode = \"client_ip\" }"), AffinityMode::ClientIp);
    assert_eq!(
        mode("{ mode = \"header\", header = \"X-User\" }"),
        AffinityMode::Header {
            header: "X-User".into()
        }
    );
    assert_eq!(mode("{}"), AffinityMode::None);
    let config = ok(&format!(
        "{LISTENER}[pools.p]\nhealth = {{ path = \"/h\" }}\n"
    ));
    let health = Health {
        path: "/h".into(),
        interval: secs(2),
        timeout: secs(1),
        rise: 2,
        fall: 3,
    };
    assert_eq!(config.pools[0].health, Some(health));
}
