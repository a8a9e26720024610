//! Operating berth without restarts (SPEC §7, §8, §9): the admin API, the
//! state file across a restart, reloads, the certificate watch, the
//! graceful drain and the metrics.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::client::read;
use crate::support::{AppServer, Berth, Client, Proto, TLS_LISTENER, TestPki, logged, pool};

const TOKEN: &str = "s3cret-token";

/// One admin API call: (status, `WWW-Authenticate`, body).
async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let body = Full::new(Bytes::from(body.unwrap_or("").to_owned()));
    let response = sender.send_request(req.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        String::from_utf8_lossy(&text).into_owned(),
    )
}

/// An authorized call with a body.
async fn call(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, String) {
    admin(api, method, path, Some(TOKEN), Some(body)).await
}

async fn status(berth: &Berth) -> Value {
    let (code, _, text) = admin(berth.admin(), "GET", "/status", Some(TOKEN), None).await;
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// `(name, state, admin_state, weight)` of every server of `pool`.
fn servers(status: &Value, pool: &str) -> Vec<(String, String, String, u64)> {
    let mut servers: Vec<_> = status["pools"][pool]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
                s["admin_state"].as_str().unwrap().to_owned(),
                s["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    servers.sort();
    servers
}

async fn start_with_admin(pki: &TestPki, apps: &[&AppServer], extra: &str) -> Berth {
    Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .global(&format!(
            "admin = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n{extra}"
        ))
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&pool("web", apps))
        .start()
        .await
}

/// Which app served each of `n` requests on new connections.
async fn served_by(client: &Client, n: usize) -> Vec<String> {
    let mut by = Vec::new();
    for _ in 0..n {
        let answer = client.get("/").await;
        assert_eq!(answer.status, 200);
        by.push(answer.header("x-served-by").to_owned());
    }
    by
}

#[tokio::test]
async fn the_admin_api_registers_changes_and_deregisters_servers() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = start_with_admin(&pki, &[&a], "").await;
    let api = berth.admin();
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);

    // The token: everything but /healthz wants it.
    let (code, challenge, _) = admin(api, "GET", "/status", None, None).await;
    assert_eq!((code, challenge.as_str()), (401, "Bearer"));
    let (code, _, _) = admin(api, "GET", "/status", Some("wrong"), None).await;
    assert_eq!(code, 401);
    let (code, _, text) = admin(api, "GET", "/healthz", None, None).await;
    assert_eq!((code, text.as_str()), (200, "ok\n"));

    // Register b: it takes traffic at once.
    let register = format!(r#"{{"name": "b", "addr": "{}", "weight": 100}}"#, b.addr);
    let (code, _, text) = call(api, "POST", "/pools/web/servers", &register).await;
    assert_eq!(code, 201, "{text}");
    let by = served_by(&client, 10).await;
    assert!(
        by.iter().any(|s| s == "a") && by.iter().any(|s| s == "b"),
        "{by:?}"
    );

    // Refusals name what is wrong.
    let (code, _, _) = call(api, "POST", "/pools/web/servers", &register).await;
    assert_eq!(code, 409, "the name exists");
    let (code, _, _) = call(api, "POST", "/pools/nope/servers", &register).await;
    assert_eq!(code, 404);
    for (body, field) in [
        (
            r#"{"name": "c", "addr": "127.0.0.1:1", "weight": "x"}"#,
            "weight",
        ),
        (r#"{"name": "c", "addr": "nowhere"}"#, "addr"),
        (r#"{"name": "c d", "addr": "127.0.0.1:1"}"#, "name"),
        (r#"{"addr": "127.0.0.1:1"}"#, "name"),
        (
            r#"{"name": "c", "addr": "127.0.0.1:1", "colour": 1}"#,
            "colour",
        ),
    ] {
        let (code, _, text) = call(api, "POST", "/pools/web/servers", body).await;
        assert_eq!(code, 400, "{body}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["field"], field, "{body}: {text}");
    }
    let (code, _, _) = call(api, "POST", "/pools/web/servers", "{not json").await;
    assert_eq!(code, 400);
    let (code, _, _) = call(api, "PUT", "/pools/web/servers/b", r#"{"state": "sleepy"}"#).await;
    assert_eq!(code, 400);

    // Drain a: new requests go to b only; the effective state shows it.
    let (code, _, text) = call(api, "PUT", "/pools/web/servers/a", r#"{"state": "drain"}"#).await;
    assert_eq!(code, 200, "{text}");
    assert!(served_by(&client, 6).await.iter().all(|s| s == "b"));
    let now = status(&berth).await;
    assert_eq!(
        servers(&now, "web"),
        vec![
            ("a".into(), "drain".into(), "drain".into(), 100),
            ("b".into(), "up".into(), "ready".into(), 100),
        ]
    );

    // Deregister b, and a (back to ready) has it all again.
    let (code, _, _) = admin(api, "DELETE", "/pools/web/servers/b", Some(TOKEN), None).await;
    assert_eq!(code, 200);
    let (code, _, _) = admin(api, "DELETE", "/pools/web/servers/b", Some(TOKEN), None).await;
    assert_eq!(code, 404, "gone already");
    let (code, _, _) = call(
        api,
        "PUT",
        "/pools/web/servers/a",
        r#"{"state": "ready", "weight": 7}"#,
    )
    .await;
    assert_eq!(code, 200);
    let b_hits = b.hits();
    assert!(served_by(&client, 6).await.iter().all(|s| s == "a"));
    assert_eq!(b.hits(), b_hits);
    berth.stop().await;
}

#[tokio::test]
async fn run_time_changes_survive_a_restart_and_a_reload() {
    let pki = TestPki::new();
    let apps = [
        AppServer::start("a").await,
        AppServer::start("b").await,
        AppServer::start("c").await,
    ];
    let berth = start_with_admin(&pki, &[&apps[0], &apps[1]], "").await;
    let api = berth.admin();
    // By host name: resolved when registered, and every resolve_interval.
    let register = format!(
        r#"{{"name": "c", "addr": "localhost:{}", "weight": 30}}"#,
        apps[2].addr.port()
    );
    for (method, path, body) in [
        ("POST", "/pools/web/servers", register.as_str()),
        (
            "PUT",
            "/pools/web/servers/a",
            r#"{"state": "maint", "weight": 5}"#,
        ),
        ("DELETE", "/pools/web/servers/b", ""),
    ] {
        let (code, _, text) = admin(api, method, path, Some(TOKEN), Some(body)).await;
        assert!(code == 200 || code == 201, "{method} {path}: {code} {text}");
    }
    let now = status(&berth).await;
    let c = now["pools"]["web"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "c")
        .unwrap();
    assert_eq!(c["addr"], format!("localhost:{}", apps[2].addr.port()));
    assert!(
        c["resolved"]
            .as_array()
            .unwrap()
            .contains(&Value::from(apps[2].addr.to_string())),
        "{c}"
    );
    let before = servers(&now, "web");
    assert_eq!(
        before,
        vec![
            ("a".into(), "maint".into(), "maint".into(), 5),
            ("c".into(), "up".into(), "ready".into(), 30),
        ]
    );

    // A reload of the unchanged file keeps every run-time change.
    let (code, _, text) = admin(api, "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(servers(&status(&berth).await, "web"), before);

    // So does a restart.
    let (_, dir) = berth.stop_keeping_dir().await;
    let state = std::fs::read_to_string(dir.path().join("state/berth.state")).unwrap();
    assert!(state.contains("\"c\""), "{state}");
    let berth = Berth::builder()
        .in_dir(dir)
        .global(&format!(
            "admin = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\""
        ))
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&pool("web", &[&apps[0], &apps[1]]))
        .start()
        .await;
    assert_eq!(servers(&status(&berth).await, "web"), before);
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    assert!(served_by(&client, 4).await.iter().all(|s| s == "c"));
    berth.stop().await;
}

#[tokio::test]
async fn a_corrupt_state_file_is_reported_and_berth_starts_with_its_config() {
    let pki = TestPki::new();
    let a = AppServer::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/berth.state"),
        "{\"version\": 1, \"pools\": 7}",
    )
    .unwrap();
    let berth = Berth::builder()
        .in_dir(dir)
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .global(&format!(
            "admin = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\""
        ))
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&pool("web", &[&a]))
        .start()
        .await;
    assert!(berth.dir.path().join("state/berth.state.bad").exists());
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    assert_eq!(client.get("/").await.status, 200);
    berth.stop().await;
}

#[tokio::test]
async fn reload_applies_a_new_config_and_refuses_a_broken_one_whole() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = start_with_admin(&pki, &[&a], "").await;
    let api = berth.admin();
    let old_text = std::fs::read_to_string(berth.config_path()).unwrap();

    // A connection opened before the reload is not disturbed by it.
    let h2 = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H2);
    let keep = h2.tls().await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(keep),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("https://www.a.test{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(sender.send_request(get("/")).await.unwrap().status(), 200);

    // A new route to a new pool, and a second listener.
    let new_text = format!(
        "{}\n[[route]]\npath_prefix = \"/api/\"\npool = \"api\"\n{}\n[[listener]]\nbind = \"127.0.0.1:0\"\ntls = false\n",
        old_text.replace("[[route]]\npool = \"web\"\n", ""),
        pool("api", &[&b])
    ) + "[[route]]\npool = \"web\"\n";
    std::fs::write(berth.config_path(), &new_text).unwrap();
    let (code, _, text) = admin(api, "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("1 added"), "{text}");
    let now = status(&berth).await;
    let listeners = now["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2);
    assert_eq!(
        listeners[0]["bind"],
        berth.addr().to_string(),
        "not re-bound"
    );
    let plain: SocketAddr = listeners[1]["bind"].as_str().unwrap().parse().unwrap();

    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    assert_eq!(client.get("/api/x").await.header("x-served-by"), "b");
    assert_eq!(client.get("/x").await.header("x-served-by"), "a");
    let answer = read(sender.send_request(get("/api/y")).await.unwrap()).await;
    assert_eq!(
        answer.header("x-served-by"),
        "b",
        "old connection, new config"
    );
    let mut raw = tokio::net::TcpStream::connect(plain).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(b"GET /api/z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    raw.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("x-served-by: b"), "{response}");

    // A broken file: every error reported, nothing changes.
    std::fs::write(
        berth.config_path(),
        new_text.replace("pool = \"api\"", "pool = \"nope\"") + "\n[global.limits]\nbogus = 1\n",
    )
    .unwrap();
    let (code, _, text) = admin(api, "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(code, 400, "{text}");
    let errors: Value = serde_json::from_str(&text).unwrap();
    assert!(errors["errors"].as_array().unwrap().len() >= 2, "{text}");
    assert_eq!(client.get("/api/x").await.header("x-served-by"), "b");

    // Back to the first file: the listener goes, the route too.
    std::fs::write(berth.config_path(), &old_text).unwrap();
    berth.control().reload().await.unwrap();
    assert_eq!(client.get("/api/x").await.header("x-served-by"), "a");
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(plain).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the removed listener stopped");
    berth.stop().await;
}

#[tokio::test]
async fn ties_survive_a_reload_to_servers_that_remain() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = start_with_admin(&pki, &[&a, &b], "").await;
    let text = std::fs::read_to_string(berth.config_path()).unwrap();
    let cookie_text = text.replace(
        "[pools.web]\n",
        "[pools.web]\naffinity = { mode = \"cookie\" }\n",
    );
    std::fs::write(berth.config_path(), &cookie_text).unwrap();
    berth.control().reload().await.unwrap();
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let first = client.get("/").await;
    let server = first.header("x-served-by").to_owned();
    let cookie = first
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("BERTH="), "{cookie}");
    // Reload with another weight: the tie holds.
    std::fs::write(
        berth.config_path(),
        cookie_text.replace("retries = 2", "retries = 1"),
    )
    .unwrap();
    berth.control().reload().await.unwrap();
    for _ in 0..10 {
        let req = http::Request::get("/")
            .header("cookie", &cookie)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let answer = read(client.send(req).await).await;
        assert_eq!(answer.header("x-served-by"), server);
    }
    berth.stop().await;
}

/// The serial number of the certificate served for `www.a.test`, on a
/// full handshake (a new client: no session to resume).
async fn served_serial(pki: &TestPki, addr: SocketAddr) -> Vec<u8> {
    let client = Client::new(&pki.ca_pem, addr, "www.a.test", Proto::H1);
    let tls = client.tls().await;
    let chain = tls.get_ref().1.peer_certificates().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(chain[0].as_ref()).unwrap();
    cert.raw_serial().to_vec()
}

#[tokio::test]
async fn a_certificate_replaced_in_certs_is_served_within_five_seconds() {
    let pki = TestPki::new();
    let a = AppServer::start("a").await;
    let berth = start_with_admin(&pki, &[&a], "").await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let first = served_serial(&pki, berth.addr()).await;
    let file = berth.dir.path().join("certs/a.pem");

    // Replaced (written beside, renamed over, as tools do).
    let tmp = berth.dir.path().join("certs/.a.pem.new");
    std::fs::write(&tmp, pki.leaf_pem(&["www.a.test"])).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let started = std::time::Instant::now();
    let mut second = first.clone();
    while second == first && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        second = served_serial(&pki, berth.addr()).await;
    }
    assert_ne!(second, first, "not served within 5 s");

    // A broken replacement keeps the last good certificate.
    std::fs::write(&file, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(served_serial(&pki, berth.addr()).await, second);
    assert_eq!(client.get("/").await.status, 200);

    // Expiry is in /status.
    let now = status(&berth).await;
    let certs = now["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["file"], "a.pem");
    assert!(certs[0]["not_after"].as_str().unwrap().ends_with('Z'));
    berth.stop().await;
}

#[tokio::test]
async fn drain_lets_a_slow_request_finish_and_turns_health_checks_503() {
    let pki = TestPki::new();
    let a = AppServer::start("a").await;
    let mut berth = start_with_admin(&pki, &[&a], "drain_delay = \"300ms\"\n").await;
    let api = berth.admin();
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.get("/slow?ms=1500").await })
    };
    // The slow request is with the app server before the drain starts.
    while a.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A connection open but idle before the drain, that sends during it.
    let idle = client.tls().await;
    let stopping = berth.begin_stop();
    let (code, _, text) = admin(api, "GET", "/healthz", None, None).await;
    assert_eq!((code, text.as_str()), (503, "draining\n"));
    // During drain_delay, the listener still accepts; health_path says 503.
    let health = client.get("/berth-health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.header("connection"), "close");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(idle))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "www.a.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        read(sender.send_request(req).await.unwrap()).await.status,
        200
    );

    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "a");
    assert_eq!(stopping.await.unwrap(), 0, "nothing was cut");
    let log = std::fs::read_to_string(berth.log_path()).unwrap();
    let lines: Vec<String> = log.lines().map(str::to_owned).collect();
    assert!(logged(&lines, "GET /slow?ms=1500 HTTP/1.1\" 200"), "{log}");
}

#[tokio::test]
async fn metrics_have_every_family_of_the_spec_and_move() {
    let pki = TestPki::new();
    let a = AppServer::start("a").await;
    let berth = start_with_admin(&pki, &[&a], "").await;
    let api = berth.admin();
    let scrape = || async {
        let (code, _, text) = admin(api, "GET", "/metrics", Some(TOKEN), None).await;
        assert_eq!(code, 200);
        text
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    let before = scrape().await;
    for family in [
        "berth_requests",
        "berth_request_duration_seconds",
        "berth_connections_active",
        "berth_tls_handshakes",
        "berth_server_up",
        "berth_affinity_entries",
        "berth_affinity_decisions",
        "berth_affinity_purged",
        "berth_proxy_header_rejected",
        "berth_cert_expiry_timestamp_seconds",
        "berth_log_lines_dropped",
    ] {
        // (Counters are named with their _total in the classic format.)
        assert!(
            before.contains(&format!("# TYPE {family}")),
            "{family}:\n{before}"
        );
    }
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    for _ in 0..3 {
        assert_eq!(client.get("/").await.status, 200);
    }
    // A client that gives up in the middle of the handshake.
    let mut raw = tokio::net::TcpStream::connect(berth.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(b"\x16\x03\x01\x00\x05hello").await.unwrap();
    let _ = raw.read(&mut [0u8; 64]).await;
    drop(raw);
    let ok = "berth_tls_handshakes_total{result=\"ok\"}";
    let failed = "berth_tls_handshakes_total{result=\"failed\"}";
    let mut after = scrape().await;
    for _ in 0..50 {
        if value(&after, failed) > value(&before, failed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape().await;
    }
    let requests = "berth_requests_total{pool=\"web\",server=\"a\",code=\"200\"}";
    assert_eq!(
        value(&after, requests) - value(&before, requests),
        3.0,
        "{after}"
    );
    assert!(value(&after, ok) >= value(&before, ok) + 3.0, "{after}");
    assert_eq!(
        value(&after, failed),
        value(&before, failed) + 1.0,
        "{after}"
    );
    assert!(value(&after, "berth_request_duration_seconds_count") >= 3.0);
    assert_eq!(
        value(&after, "berth_server_up{pool=\"web\",server=\"a\"}"),
        1.0
    );
    assert!(
        after.contains("# TYPE berth_requests_total counter"),
        "{after}"
    );
    assert!(
        !after.contains("# EOF"),
        "the classic text format, unless asked"
    );
    berth.stop().await;
}

#[tokio::test]
async fn drain_timeout_cuts_what_is_left_and_logs_it() {
    let pki = TestPki::new();
    let a = AppServer::start("a").await;
    let mut berth = start_with_admin(&pki, &[&a], "drain_timeout = \"300ms\"\n").await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let tls = client.tls().await;
    let slow = tokio::spawn(async move {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/slow?ms=5000")
            .header("host", "www.a.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(req).await
    });
    while a.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    assert_eq!(berth.begin_stop().await.unwrap(), 1, "one connection cut");
    assert!(started.elapsed() < Duration::from_secs(3));
    let outcome = slow.await.unwrap();
    assert!(
        outcome.is_err(),
        "the client sees its connection cut: {outcome:?}"
    );
    let log = std::fs::read_to_string(berth.log_path()).unwrap();
    assert!(log.contains("\"GET /slow?ms=5000 HTTP/1.1\" 503 "), "{log}");
}
