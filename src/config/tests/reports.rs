//! How problems are reported: the key path, the line and column, every
//! problem at once; and the configuration files shipped in `config/`.

use super::*;

#[test]
fn typo_names_the_key_and_its_line() {
    let text = "[global]\ncerts = \"certs\"\nacess_log = \"x\"\n";
    let found = problems(&format!("{text}{LISTENER}"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].position, Some((3, 1)));
    assert_eq!(found[0].key, "global.acess_log");
    assert_eq!(
        found[0].to_string(),
        "berth.toml:3:1: global.acess_log: unknown key (expected one of: certs, default_cert, \
         access_log, log_format, admin, admin_token, state_file, workers, drain_delay, \
         drain_timeout, resolve_interval, limits)"
    );
    // Deeper down, and in an inline table.
    let text = format!(
        "{LISTENER}[pools.web]\naffinity = {{ mode = \"cookie\", cokie = \"B\" }}\n[[pools.web.servers]]\nname = \"a\"\naddr = \"h:1\"\nwieght = 5\n"
    );
    assert_eq!(
        messages(&text),
        [
            "5:31: pools.web.affinity.cokie: unknown key (expected one of: mode, cookie, \
             path_param, header, ttl, max_entries, failback, drain_quiet)",
            "9:1: pools.web.servers[0].wieght: unknown key (expected one of: name, addr, \
             weight, route, backup)",
        ]
    );
    assert_eq!(
        messages("[[listner]]\nbind = \"0.0.0.0:80\"\n"),
        [
            "listener: missing: at least one [[listener]] is needed",
            "1:3: listner: unknown key (expected one of: global, listener, route, pools)",
        ]
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = r#"
[global]
access_log = ""
drain_timeout = 30

[global.limits]
max_connections = 0

[[listener]]
bind = "0.0.0.0:443"
tls = "yes"
redirect = true

[[listener]]
bind = "0.0.0.0:443"
tls = true

[[route]]
pool = "missing"

[pools.web]
balance = "fastest"
health = { interval = "2s" }

[[pools.web.servers]]
name = "app01"
addr = "10.0.1.10"
"#;
    assert_eq!(
        messages(text),
        [
            "3:14: global.access_log: must not be empty",
            "4:17: global.drain_timeout: invalid type: integer `30`, expected a duration such \
             as \"500ms\", \"10s\", \"30m\" or \"2h\"",
            "7:19: global.limits.max_connections: must be at least 1, got 0",
            "11:7: listener[0].tls: invalid type: string \"yes\", expected a boolean",
            "12:1: listener[0].redirect: unknown key (expected one of: bind, tls, \
             proxy_protocol, proxy_from, hsts, health_path, client_ca, client_auth, \
             redirect_https)",
            "15:8: listener[1].bind: 0.0.0.0:443 clashes with listener[0].bind = \"0.0.0.0:443\"",
            "19:8: route[0].pool: no pool named \"missing\" (pools: web)",
            "22:11: pools.web.balance: unknown variant `fastest`, expected one of \
             `round_robin`, `least_conn`, `random2`",
            "23:10: pools.web.health.path: missing (this key is required)",
            "27:8: pools.web.servers[0].addr: expected \"host:port\" or \"ip:port\", got \
             \"10.0.1.10\"",
        ]
    );
}

#[test]
fn syntax_errors_have_positions() {
    let found = problems("[global]\ncerts = \"certs\n");
    assert_eq!(found.len(), 1);
    // toml notices the missing quote at the end of the line.
    assert_eq!(
        (found[0].position, found[0].key.as_str()),
        (Some((2, 15)), "")
    );
    assert!(found[0].message.contains("string"), "{}", found[0].message);
    // One problem per broken line, each with its own position.
    let lines: Vec<_> = problems("a = \n[b]\nc = 1\nc = 2\n[[listener]]\nbind = 0.0.0.0:80\n")
        .into_iter()
        .map(|p| p.position.map(|(line, _)| line))
        .collect();
    assert_eq!(lines, [Some(1), Some(4), Some(6)]);
    assert_eq!(messages("x = 1\nx = 2\n"), ["2:1: duplicate key `x`"]);
    assert_eq!(messages("[a]\nb = 1\n[a]\n"), ["3:2: duplicate key `a`"]);
}

#[test]
fn columns_count_characters() {
    // "é" is two bytes but one column.
    let text = format!("{LISTENER}[[route]]\npool = \"é\"\n");
    assert_eq!(
        messages(&text)[0],
        "5:8: route[0].pool: no pool named \"é\" (the file defines no [pools.NAME])"
    );
}

#[test]
fn unreadable_file_is_one_problem() {
    let path = Path::new("/nonexistent/berth.toml");
    let found = load(path).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].file, path);
    assert_eq!(found[0].position, None);
    let text = found[0].to_string();
    assert!(
        text.starts_with("/nonexistent/berth.toml: cannot read"),
        "{text}"
    );
    assert!(text.contains("No such file"), "{text}");
}

#[test]
fn shipped_files_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("examples")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    for path in files {
        if let Err(problems) = load(&path) {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            panic!("{}:\n{}", path.display(), list.join("\n"));
        }
    }
}

#[test]
fn shipped_default_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/berth.toml");
    let config = load(&path).unwrap();
    let binds: Vec<String> = config
        .listeners
        .iter()
        .map(|l| l.bind.to_string())
        .collect();
    assert_eq!(binds, ["0.0.0.0:443", "0.0.0.0:80"]);
    assert!(config.listeners[1].redirect_https);
    assert_eq!(config.global.admin, Some("127.0.0.1:9090".parse().unwrap()));
    let servers: Vec<String> = config.pools[0]
        .servers
        .iter()
        .map(|s| s.addr.to_string())
        .collect();
    assert_eq!(servers, ["127.0.0.1:8081", "127.0.0.1:8082"]);
    assert_eq!(
        config.pools[0].affinity.mode,
        AffinityMode::Cookie {
            cookie: "BERTH".into()
        }
    );
}

#[test]
fn deep_nesting_is_a_problem_not_a_crash() {
    let depth = 100_000;
    let text = format!(
        "{LISTENER}[global]\ncerts = {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(!problems(&text).is_empty());
}
