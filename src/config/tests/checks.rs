//! Checks on `[global]`, listeners and routes, one or more cases each: what
//! is refused, with which key and message, and what is accepted.

use super::*;

#[test]
fn global_values() {
    let global = |keys: &str| with_listener(&format!("[global]\n{keys}"));
    let limits = |keys: &str| with_listener(&format!("[global.limits]\n{keys}"));
    refused(&global("certs = \"\""), "global.certs", "must not be empty");
    refused(
        &global("access_log = \"\""),
        "global.access_log",
        "must not be empty",
    );
    refused(
        &global("admin = \"localhost:9090\""),
        "global.admin",
        "\"ip:port\"",
    );
    refused(&global("admin = \"9090\""), "global.admin", "\"ip:port\"");
    refused(
        &global("admin_token = \"a b\""),
        "global.admin_token",
        "without spaces",
    );
    refused(
        &global("default_cert = \"www example\""),
        "global.default_cert",
        "DNS name",
    );
    refused(&global("workers = -1"), "global.workers", "at least 0");
    refused(
        &global("log_format = \"json\""),
        "global.log_format",
        "`vhost_combined`",
    );
    refused(
        &global("resolve_interval = \"0s\""),
        "global.resolve_interval",
        "more than 0",
    );
    refused(
        &global("drain_delay = \"10\""),
        "global.drain_delay",
        "\"10s\"",
    );
    refused(
        &global("drain_timeout = 30"),
        "global.drain_timeout",
        "\"10s\"",
    );
    refused(
        &limits("max_connections = 0"),
        "global.limits.max_connections",
        "at least 1",
    );
    refused(
        &limits("max_header_bytes = 1023"),
        "global.limits.max_header_bytes",
        "1024",
    );
    refused(
        &limits("max_body_bytes = -1"),
        "global.limits.max_body_bytes",
        "at least 0",
    );
    refused(
        &limits("idle_timeout = \"0s\""),
        "global.limits.idle_timeout",
        "more than 0",
    );
    refused(
        &limits("header_read_timeout = \"0ms\""),
        "global.limits.header_read_timeout",
        "0",
    );

    let config = ok(&global(
        "admin_token = \"\"\ndefault_cert = \"*.Example.com\"\ndrain_delay = \"0s\"\ndrain_timeout = \"0s\"",
    ));
    assert_eq!(config.global.admin_token, None);
    assert_eq!(config.global.default_cert.as_deref(), Some("*.example.com"));
    assert_eq!(config.global.drain_timeout, Duration::ZERO);
    let config = ok(&limits("max_header_bytes = 1024\nmax_body_bytes = 1"));
    assert_eq!(config.global.limits.max_body_bytes, Some(1));
}

#[test]
fn listener_values() {
    refused(&listener("tls = false"), "listener[0].bind", "missing");
    refused(
        &listener("bind = \"0.0.0.0:80\""),
        "listener[0].tls",
        "missing",
    );
    refused(
        &listener("bind = \"0.0.0.0\"\ntls = false"),
        "listener[0].bind",
        "\"ip:port\"",
    );
    refused(
        &listener("bind = \"localhost:80\"\ntls = false"),
        "listener[0].bind",
        "\"0.0.0.0:443\"",
    );
    refused("[global]\n", "listener", "at least one [[listener]]");
    refused("listener = []\n", "listener", "at least one [[listener]]");
    let plain = |keys: &str| listener(&format!("bind = \"0.0.0.0:80\"\ntls = false\n{keys}"));
    let tls = |keys: &str| listener(&format!("bind = \"0.0.0.0:443\"\ntls = true\n{keys}"));
    let proxy_v2 = "proxy_protocol = \"v2\"";
    refused(
        &plain(proxy_v2),
        "listener[0].proxy_from",
        "required with proxy_protocol",
    );
    refused(
        &plain(&format!("{proxy_v2}\nproxy_from = []")),
        "listener[0].proxy_from",
        "required",
    );
    refused(
        &plain(&format!(
            "{proxy_v2}\nproxy_from = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"
        )),
        "listener[0].proxy_from[1]",
        "CIDR",
    );
    refused(
        &plain("proxy_protocol = \"v3\""),
        "listener[0].proxy_protocol",
        "`any`",
    );
    refused(
        &tls("client_auth = \"required\""),
        "listener[0].client_auth",
        "client_ca",
    );
    refused(
        &tls("client_ca = \"ca.pem\"\nclient_auth = \"sometimes\""),
        "listener[0].client_auth",
        "`optional`",
    );
    refused(
        &tls("redirect_https = true"),
        "listener[0].redirect_https",
        "tls = false",
    );
    refused(
        &plain("hsts = \"max-age=1\""),
        "listener[0].hsts",
        "tls = true",
    );
    refused(
        &plain("client_ca = \"ca.pem\""),
        "listener[0].client_ca",
        "tls = true",
    );
    refused(&tls("hsts = \"\""), "listener[0].hsts", "header value");
    refused(
        &plain("health_path = \"berth-health\""),
        "listener[0].health_path",
        "start with \"/\"",
    );
    refused(
        &plain("health_path = \"/a b\""),
        "listener[0].health_path",
        "URL path",
    );
    refused(
        &plain("health_path = \"/a?b\""),
        "listener[0].health_path",
        "no \"?\"",
    );

    let config = ok(&plain(
        "proxy_protocol = \"any\"\nproxy_from = [\"10.0.0.1\"]\nhealth_path = \"/hc\"",
    ));
    assert_eq!(
        config.listeners[0].proxy_from,
        vec!["10.0.0.1/32".parse().unwrap()]
    );
    let config = ok(&tls("client_ca = \"ca.pem\"\nhsts = \"max-age=1\""));
    assert_eq!(config.listeners[0].client_auth, ClientAuth::Optional);
}

#[test]
fn binds_must_not_clash() {
    let two = |a: &str, b: &str| {
        format!(
            "{}{}",
            listener(&format!("bind = \"{a}\"\ntls = false")),
            listener(&format!("bind = \"{b}\"\ntls = true"))
        )
    };
    refused(
        &two("0.0.0.0:80", "0.0.0.0:80"),
        "listener[1].bind",
        "listener[0].bind",
    );
    refused(
        &two("127.0.0.1:80", "0.0.0.0:80"),
        "listener[1].bind",
        "clashes",
    );
    refused(&two("[::]:80", "[::1]:80"), "listener[1].bind", "clashes");
    ok(&two("0.0.0.0:80", "0.0.0.0:443"));
    ok(&two("127.0.0.1:80", "127.0.0.2:80"));
    ok(&two("127.0.0.1:0", "127.0.0.1:0"));
    let admin = format!(
        "[global]\nadmin = \"127.0.0.1:9090\"\n{}",
        listener("bind = \"0.0.0.0:9090\"\ntls = false")
    );
    refused(&admin, "listener[0].bind", "global.admin");
}

#[test]
fn route_values() {
    let route = |keys: &str| with_pool("", &format!("[[route]]\npool = \"web\"\n{keys}"));
    refused(
        &route("host = \"a.*.example.com\""),
        "route[0].host",
        "whole first label",
    );
    refused(
        &route("host = \"*example.com\""),
        "route[0].host",
        "first label",
    );
    refused(
        &route("host = \"exa mple.com\""),
        "route[0].host",
        "host name",
    );
    refused(
        &route("path_prefix = \"api/\""),
        "route[0].path_prefix",
        "start with \"/\"",
    );
    refused(
        &route("strip_prefix = true"),
        "route[0].strip_prefix",
        "path_prefix",
    );
    refused(
        &with_pool("", "[[route]]\nhost = \"a.com\""),
        "route[0].pool",
        "missing",
    );
    refused(
        &with_pool("", "[[route]]\npool = \"webb\""),
        "route[0].pool",
        "no pool named \"webb\" (pools: web)",
    );

    let config = ok(&route(
        "host = \"API.example.com:443\"\npath_prefix = \"/v1/\"\nstrip_prefix = true",
    ));
    assert_eq!(
        config.routes[0].host,
        Some(HostMatch::Exact("api.example.com".into()))
    );
    assert_eq!(config.routes[0].path_prefix.as_deref(), Some("/v1/"));
}

#[test]
fn unreachable_routes() {
    let routes = |list: &[&str]| {
        let body: String = list
            .iter()
            .map(|keys| format!("[[route]]\npool = \"web\"\n{keys}\n"))
            .collect();
        with_pool("", &body)
    };
    refused(&routes(&["", ""]), "route[1]", "unreachable: route[0]");
    refused(
        &routes(&["", "host = \"a.com\""]),
        "route[1]",
        "unreachable: route[0]",
    );
    refused(
        &routes(&["host = \"a.com\"", "host = \"A.com:80\""]),
        "route[1]",
        "unreachable",
    );
    refused(
        &routes(&["host = \"*.a.com\"", "host = \"x.a.com\""]),
        "route[1]",
        "unreachable",
    );
    refused(
        &routes(&[
            "path_prefix = \"/x\"",
            "path_prefix = \"/x\"\nhost = \"a.com\"",
        ]),
        "route[1]",
        "unreachable",
    );
    refused(
        &routes(&["host = \"a.com\"", "", "path_prefix = \"/x\""]),
        "route[2]",
        "unreachable: route[1]",
    );
    ok(&routes(&[
        "host = \"a.com\"",
        "path_prefix = \"/x\"",
        "path_prefix = \"/y\"",
        "",
    ]));
    ok(&routes(&[
        "host = \"*.a.com\"",
        "host = \"x.y.a.com\"",
        "host = \"a.com\"",
    ]));
    ok(&routes(&[
        "host = \"a.com\"\npath_prefix = \"/x\"",
        "host = \"a.com\"",
    ]));
}
