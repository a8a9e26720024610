//! Checks on pools, their affinity and health tables and their servers:
//! what is refused, with which key and message, and what is accepted.

use super::*;

#[test]
fn pool_values() {
    refused(
        &format!("{LISTENER}[pools.\"my pool\"]\n"),
        "pools.\"my pool\"",
        "bad pool name",
    );
    refused(
        &with_pool("retries = -1", ""),
        "pools.web.retries",
        "at least 0",
    );
    refused(
        &with_pool("connect_timeout = \"0s\"", ""),
        "pools.web.connect_timeout",
        "more than 0",
    );
    refused(
        &with_pool("response_timeout = \"1 m\"", ""),
        "pools.web.response_timeout",
        "\"30m\"",
    );
    refused(
        &with_pool("balance = \"random\"", ""),
        "pools.web.balance",
        "`random2`",
    );
    // A pool may start empty: servers can be registered at run time.
    assert!(ok(&with_pool("", "")).pools[0].servers.is_empty());
}

#[test]
fn affinity_values() {
    let affinity = |table: &str| with_pool(&format!("affinity = {{ {table} }}"), "");
    let key = |k: &str| format!("pools.web.affinity.{k}");
    refused(
        &affinity("mode = \"sticky\""),
        &key("mode"),
        "`session_suffix`",
    );
    refused(
        &affinity("mode = \"learn\""),
        &key("cookie"),
        "required with mode = \"learn\"",
    );
    refused(
        &affinity("mode = \"header\""),
        &key("header"),
        "required with mode = \"header\"",
    );
    refused(
        &affinity("mode = \"cookie\", header = \"X\""),
        &key("header"),
        "not used with mode = \"cookie\"",
    );
    refused(
        &affinity("mode = \"cookie\", path_param = \"x\""),
        &key("path_param"),
        "not used",
    );
    refused(
        &affinity("cookie = \"B\""),
        &key("cookie"),
        "not used with mode = \"none\"",
    );
    refused(
        &affinity("mode = \"client_ip\", cookie = \"B\""),
        &key("cookie"),
        "not used",
    );
    refused(
        &affinity("mode = \"cookie\", cookie = \"BER TH\""),
        &key("cookie"),
        "letters, digits",
    );
    refused(
        &affinity("mode = \"cookie\", cookie = \"\""),
        &key("cookie"),
        "letters, digits",
    );
    refused(
        &affinity("mode = \"header\", header = \"X:Y\""),
        &key("header"),
        "letters, digits",
    );
    refused(
        &affinity("mode = \"session_suffix\", path_param = \"a;b\""),
        &key("path_param"),
        "letters",
    );
    refused(
        &affinity("mode = \"client_ip\", ttl = \"0s\""),
        &key("ttl"),
        "more than 0",
    );
    refused(
        &affinity("mode = \"client_ip\", max_entries = 0"),
        &key("max_entries"),
        "at least 1",
    );
    refused(
        &affinity("mode = \"cookie\", failback = \"yes\""),
        &key("failback"),
        "boolean",
    );
    let config = ok(&affinity(
        "mode = \"client_ip\", drain_quiet = \"0s\", max_entries = 1",
    ));
    assert_eq!(config.pools[0].affinity.drain_quiet, Duration::ZERO);
}

#[test]
fn health_values() {
    let health = |table: &str| with_pool(&format!("health = {{ {table} }}"), "");
    let key = |k: &str| format!("pools.web.health.{k}");
    refused(&health("interval = \"1s\""), &key("path"), "missing");
    refused(
        &health("path = \"health\""),
        &key("path"),
        "start with \"/\"",
    );
    refused(
        &health("path = \"/h\", interval = \"0s\""),
        &key("interval"),
        "more than 0",
    );
    refused(
        &health("path = \"/h\", timeout = \"0s\""),
        &key("timeout"),
        "more than 0",
    );
    refused(
        &health("path = \"/h\", rise = 0"),
        &key("rise"),
        "at least 1",
    );
    refused(
        &health("path = \"/h\", fall = 0"),
        &key("fall"),
        "at least 1",
    );
    refused(
        &health("path = \"/h\", fall = 5000000000"),
        &key("fall"),
        "too large",
    );
    refused(
        &health("path = \"/h\", method = \"HEAD\""),
        &key("method"),
        "unknown key",
    );
}

#[test]
fn server_values() {
    let one = |keys: &str| with_pool("", &server(keys));
    let key = |k: &str| format!("pools.web.servers[0].{k}");
    refused(&one("addr = \"10.0.0.1:80\""), &key("name"), "missing");
    refused(&one("name = \"a\""), &key("addr"), "missing");
    refused(
        &one("name = \"a/b\"\naddr = \"10.0.0.1:80\""),
        &key("name"),
        "letters, digits",
    );
    refused(
        &one("name = \"a\"\naddr = \"10.0.0.1\""),
        &key("addr"),
        "expected \"host:port\" or \"ip:port\", got \"10.0.0.1\"",
    );
    refused(
        &one("name = \"a\"\naddr = \"app_01.local:0\""),
        &key("addr"),
        "1..=65535",
    );
    refused(
        &one("name = \"a\"\naddr = \"bad host:80\""),
        &key("addr"),
        "valid host name",
    );
    refused(
        &one("name = \"a\"\naddr = \"h:1\"\nweight = 1001"),
        &key("weight"),
        "0..=1000, got 1001",
    );
    refused(
        &one("name = \"a\"\naddr = \"h:1\"\nweight = -1"),
        &key("weight"),
        "0..=1000",
    );
    refused(
        &one("name = \"a\"\naddr = \"h:1\"\nroute = \"\""),
        &key("route"),
        "letters",
    );
    refused(
        &one("name = \"a\"\naddr = \"h:1\"\nbackup = 1"),
        &key("backup"),
        "boolean",
    );

    let two =
        |first: &str, second: &str| with_pool("", &format!("{}{}", server(first), server(second)));
    let second = |k: &str| format!("pools.web.servers[1].{k}");
    refused(
        &two(
            "name = \"a\"\naddr = \"h:1\"",
            "name = \"a\"\naddr = \"h:2\"\nroute = \"b\"",
        ),
        &second("name"),
        "servers[0]",
    );
    refused(
        &two(
            "name = \"a\"\naddr = \"h:1\"",
            "name = \"b\"\naddr = \"h:2\"\nroute = \"a\"",
        ),
        &second("route"),
        "route id \"a\"",
    );
    refused(
        &two(
            "name = \"a\"\naddr = \"h:1\"\nroute = \"b\"",
            "name = \"b\"\naddr = \"h:2\"",
        ),
        &second("route"),
        "servers[0]",
    );
    // Server names are per pool.
    let other = format!(
        "{}[pools.api]\n[[pools.api.servers]]\nname = \"a\"\naddr = \"h:1\"\n",
        one("name = \"a\"\naddr = \"h:1\"")
    );
    assert_eq!(ok(&other).pools.len(), 2);
}

#[test]
fn numbers_are_whole() {
    let one = |keys: &str| {
        with_pool(
            "",
            &server(&format!("name = \"a\"\naddr = \"h:1\"\n{keys}")),
        )
    };
    let key = "pools.web.servers[0].weight";
    refused(
        &one("weight = 1.5"),
        key,
        "floating point `1.5`, expected a whole number",
    );
    refused(&one("weight = \"100\""), key, "expected a whole number");
}

#[test]
fn tables_say_what_they_look_like() {
    refused(
        &with_pool("affinity = \"cookie\"", ""),
        "pools.web.affinity",
        "expected an inline table such as { mode = \"cookie\" }",
    );
    refused(
        &with_pool("servers = 1", ""),
        "pools.web.servers",
        "expected a sequence",
    );
    refused(
        &with_pool("servers = [1]", ""),
        "pools.web.servers[0]",
        "expected a [[pools.NAME.servers]] table",
    );
}
