//! Routing, header rules and error statuses, through TLS, in HTTP/1.1 and
//! HTTP/2.

use bytes::Bytes;
use http_body_util::Empty;

use crate::support::{
    AppServer, Berth, Client, Proto, TLS_LISTENER, TestPki, logged, one_app, pool,
};

#[tokio::test]
async fn routes_by_host_and_prefix_with_two_certificates() {
    let pki = TestPki::new();
    let (web1, web2, foo, api) = (
        AppServer::start("web1").await,
        AppServer::start("web2").await,
        AppServer::start("foo1").await,
        AppServer::start("api1").await,
    );
    let berth = Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test", "a.test"]))
        .cert("b.pem", pki.leaf_pem(&["api.b.test"]))
        .config(TLS_LISTENER)
        .config("[[route]]\nhost = \"api.b.test\"\npool = \"api\"\n")
        .config(
            "[[route]]\npath_prefix = \"/services/foo/v1/\"\nstrip_prefix = true\npool = \"foo\"\n",
        )
        .config("[[route]]\npool = \"website\"\n")
        .config(&pool("website", &[&web1, &web2]))
        .config(&pool("foo", &[&foo]))
        .config(&pool("api", &[&api]))
        .start()
        .await;
    for proto in [Proto::H1, Proto::H2] {
        let www = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", proto);
        let answer = www.get("/services/foo/v1/x?y=1").await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, "foo1"),
            "{proto:?}"
        );
        assert_eq!(answer.header("x-seen-path"), "/x?y=1");
        let answer = www.get("/services/foo/v1/").await;
        assert_eq!(answer.header("x-seen-path"), "/");
        let answer = www.get("/services/foo/v2/x").await;
        assert!(
            answer.text().starts_with("web"),
            "{proto:?}: {}",
            answer.text()
        );
        assert_eq!(answer.header("x-seen-path"), "/services/foo/v2/x");

        let api_client = Client::new(&pki.ca_pem, berth.addr(), "api.b.test", proto);
        let answer = api_client.get("/services/foo/v1/x").await;
        assert_eq!(
            answer.text(),
            "api1",
            "{proto:?}: the host route comes first"
        );
    }
    assert_eq!(web1.hits() + web2.hits(), 2);
    berth.stop().await;
}

#[tokio::test]
async fn upstream_headers_follow_the_spec() {
    let pki = TestPki::new();
    let app = AppServer::start("app01").await;
    let berth = one_app(&pki, &app, "").await;
    let port = berth.addr().port();
    for proto in [Proto::H1, Proto::H2] {
        let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", proto);
        let mut req = http::Request::get("/h").header("x-forwarded-for", "6.6.6.6");
        req = req
            .header("x-forwarded-proto", "gopher")
            .header("x-private", "secret");
        if proto == Proto::H1 {
            req = req.header("connection", "x-private");
        }
        let answer = crate::support::client::read(
            client.send(req.body(Empty::<Bytes>::new()).unwrap()).await,
        )
        .await;
        assert_eq!(answer.status, 200, "{proto:?}");
        assert_eq!(
            answer.header("x-seen-x-forwarded-for"),
            "127.0.0.1",
            "{proto:?}"
        );
        assert_eq!(answer.header("x-seen-x-forwarded-proto"), "https");
        assert_eq!(answer.header("x-seen-x-forwarded-port"), port.to_string());
        assert_eq!(
            answer.header("x-seen-host"),
            format!("www.a.test:{port}"),
            "{proto:?}"
        );
        if proto == Proto::H1 {
            assert_eq!(
                answer.header("x-seen-x-private"),
                "",
                "named in Connection: hop-by-hop"
            );
        }
        assert_eq!(
            answer.header("strict-transport-security"),
            "max-age=31536000"
        );
    }
    berth.stop().await;
}

#[tokio::test]
async fn round_robin_spreads_by_weight() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&format!(
            "[pools.web]\n[[pools.web.servers]]\nname = \"a\"\naddr = \"{}\"\nweight = 300\n\
             [[pools.web.servers]]\nname = \"b\"\naddr = \"{}\"\nweight = 100\n",
            a.addr, b.addr
        ))
        .start()
        .await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    for _ in 0..40 {
        assert_eq!(client.get("/").await.status, 200);
    }
    assert_eq!((a.hits(), b.hits()), (30, 10));
    berth.stop().await;
}

/// An address nothing listens on.
pub async fn dead_addr() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn errors_have_their_statuses() {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let dead = dead_addr().await;
    let berth = Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .config(TLS_LISTENER)
        .config("[[route]]\npath_prefix = \"/mixed/\"\npool = \"mixed\"\n")
        .config("[[route]]\npath_prefix = \"/dead/\"\npool = \"dead\"\n")
        .config("[[route]]\npath_prefix = \"/slow\"\npool = \"slow\"\n")
        .config(&format!(
            "[pools.mixed]\nretries = 1\n[[pools.mixed.servers]]\nname = \"gone\"\naddr = \"{dead}\"\n\
             [[pools.mixed.servers]]\nname = \"app\"\naddr = \"{}\"\n\
             [pools.dead]\n[[pools.dead.servers]]\nname = \"gone\"\naddr = \"{dead}\"\n\
             [pools.slow]\nresponse_timeout = \"300ms\"\n[[pools.slow.servers]]\nname = \"app\"\naddr = \"{}\"\n",
            app.addr, app.addr
        ))
        .start()
        .await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    for _ in 0..6 {
        let answer = client.get("/mixed/x").await;
        assert_eq!(
            answer.status, 200,
            "a connect failure is retried on the other server"
        );
    }
    let answer = client.get("/dead/x").await;
    assert_eq!(answer.status, 502);
    assert!(
        answer.text().starts_with("502"),
        "a short text body: {}",
        answer.text()
    );
    assert_eq!(
        client.get("/elsewhere").await.status,
        404,
        "no default route"
    );
    let answer = client.get("/slow?ms=3000").await;
    assert_eq!(answer.status, 504);
    assert_eq!(client.get("/berth-health").await.text(), "ok\n");
    let lines = berth.stop().await;
    assert!(
        logged(&lines, "\"GET /dead/x HTTP/1.1\" 502 "),
        "{lines:#?}"
    );
    assert!(
        logged(&lines, "\"GET /elsewhere HTTP/1.1\" 404 "),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn plain_listener_redirects_to_https() {
    let app = AppServer::start("app").await;
    let berth = Berth::builder()
        .config("[[listener]]\nbind = \"127.0.0.1:0\"\ntls = false\nredirect_https = true\nhealth_path = \"/hc\"\n")
        .config("[[route]]\npool = \"web\"\n")
        .config(&pool("web", &[&app]))
        .start()
        .await;
    let response = crate::limits::raw_plain(
        berth.addr(),
        b"GET /a/b?c=d HTTP/1.1\r\nHost: www.a.test:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 308"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("location: https://www.a.test/a/b?c=d\r\n"),
        "{response}"
    );
    let response = crate::limits::raw_plain(
        berth.addr(),
        b"GET /hc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "health_path is not redirected: {response}"
    );
    assert_eq!(app.hits(), 0);
    berth.stop().await;
}

#[tokio::test]
async fn the_log_shows_the_request_line_as_received_and_escaped() {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let berth = one_app(&pki, &app, "").await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let requests: [&[u8]; 3] = [
        b"GET /q?a=1&b=%22 HTTP/1.1\r\nHost: a\r\nUser-Agent: say \"hi\" \\o/\r\nReferer:\r\nConnection: close\r\n\r\n",
        b"GET /q?a=\"x\" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ];
    for request in requests {
        let response = crate::limits::exchange(&mut client.tls().await, request).await;
        assert!(response.starts_with("HTTP/1.1 "), "{response}");
    }
    let lines = berth.stop().await;
    assert!(
        logged(
            &lines,
            r#""GET /q?a=1&b=%22 HTTP/1.1" 200 3 "" "say \"hi\" \\o/""#
        ),
        "raw line, empty Referer as \"\": {lines:#?}"
    );
    assert!(
        logged(&lines, r#""GET /q?a=\"x\" HTTP/1.1" 400 "#),
        "refused by the parser, still logged: {lines:#?}"
    );
    assert!(
        logged(&lines, r#""GET /caf\xc3\xa9 HTTP/1.1""#),
        "{lines:#?}"
    );
}
