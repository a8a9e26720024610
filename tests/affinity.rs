//! Session affinity through berth (SPEC §5): every mode with real app
//! servers, server failure, failback, drain, weights, and two instances
//! agreeing on cookie ties.

use bytes::Bytes;
use http_body_util::Empty;

use crate::support::client::{Answer, read};
use crate::support::{AppServer, Berth, Client, Proto, TLS_LISTENER, TestPki};

/// A pool `web` of `apps` (route id = name) with this affinity table.
fn affinity_pool(affinity: &str, apps: &[(&AppServer, u32)]) -> String {
    let mut toml = format!("[pools.web]\nretries = 2\naffinity = {affinity}\n");
    for (app, weight) in apps {
        toml.push_str(&format!(
            "[[pools.web.servers]]\nname = \"{}\"\naddr = \"{}\"\nweight = {weight}\n",
            app.name, app.addr
        ));
    }
    toml
}

async fn start(pki: &TestPki, affinity: &str, apps: &[(&AppServer, u32)]) -> Berth {
    Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .global("log_format = \"combined_plus\"")
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&affinity_pool(affinity, apps))
        .start()
        .await
}

async fn get(client: &Client, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = http::Request::get(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    read(client.send(req.body(Empty::<Bytes>::new()).unwrap()).await).await
}

/// The affinity outcome of each access log line (`combined_plus`).
fn outcomes(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.rsplit(' ').nth(1).unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test]
async fn cookie_ties_hold_and_move_once_when_their_server_dies() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = start(
        &pki,
        "{ mode = \"cookie\", cookie = \"BERTH\" }",
        &[(&a, 100), (&b, 100)],
    )
    .await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);

    let first = get(&client, "/", &[]).await;
    let home = first.text();
    assert_eq!(
        first.header("set-cookie"),
        format!("BERTH={home}; Path=/; HttpOnly; SameSite=Lax; Secure"),
        "a new tie is set with the spec's attributes"
    );
    let cookie = format!("other=1; BERTH={home}; more=2");
    for proto in [Proto::H1, Proto::H2] {
        let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", proto);
        for _ in 0..25 {
            let answer = get(&client, "/", &[("cookie", &cookie)]).await;
            assert_eq!(answer.text(), home, "{proto:?}: the tie holds");
            assert_eq!(
                answer.header("set-cookie"),
                "",
                "an honoured tie is not set again"
            );
            assert_eq!(
                answer.header("x-seen-cookie"),
                "other=1; more=2",
                "berth's cookie is not forwarded"
            );
        }
    }

    // The tied server dies: the next request moves, once, without an error.
    let (dead, alive) = if home == "a" { (a, b) } else { (b, a) };
    drop(dead);
    let moved = get(&client, "/", &[("cookie", &cookie)]).await;
    assert_eq!((moved.status, moved.text()), (200, alive.name.to_owned()));
    let new_cookie = format!(
        "BERTH={}; Path=/; HttpOnly; SameSite=Lax; Secure",
        alive.name
    );
    assert_eq!(moved.header("set-cookie"), new_cookie);
    for _ in 0..10 {
        let answer = get(
            &client,
            "/",
            &[("cookie", &format!("BERTH={}", alive.name))],
        )
        .await;
        assert_eq!(
            (answer.text(), answer.header("set-cookie")),
            (alive.name.to_owned(), "")
        );
    }

    let lines = berth.stop().await;
    let outcomes = outcomes(&lines);
    assert_eq!(outcomes[0], "new", "{lines:#?}");
    assert!(outcomes[1..51].iter().all(|o| o == "hit"), "{lines:#?}");
    assert_eq!(outcomes[51], "moved", "{lines:#?}");
    assert!(outcomes[52..].iter().all(|o| o == "hit"), "{lines:#?}");
}

#[tokio::test]
async fn every_instance_routes_a_cookie_the_same_way() {
    let pki = TestPki::new();
    let apps = [
        AppServer::start("a").await,
        AppServer::start("b").await,
        AppServer::start("c").await,
    ];
    let pool = [(&apps[0], 100), (&apps[1], 100), (&apps[2], 100)];
    let affinity = "{ mode = \"cookie\" }";
    let one = start(&pki, affinity, &pool).await;
    let two = start(&pki, affinity, &pool).await;
    let client_one = Client::new(&pki.ca_pem, one.addr(), "www.a.test", Proto::H1);
    let client_two = Client::new(&pki.ca_pem, two.addr(), "www.a.test", Proto::H2);
    for _ in 0..6 {
        let first = get(&client_one, "/", &[]).await;
        let cookie = first
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        for _ in 0..5 {
            let answer = get(&client_two, "/", &[("cookie", &cookie)]).await;
            assert_eq!(
                answer.text(),
                first.text(),
                "instance two honours instance one's tie"
            );
            assert_eq!(answer.header("set-cookie"), "");
        }
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn session_suffix_follows_the_route_and_failback_decides_the_return() {
    for failback in [false, true] {
        let pki = TestPki::new();
        let (one, two) = (
            AppServer::start("app01").await,
            AppServer::start("app02").await,
        );
        let two_addr = two.addr;
        let affinity = format!("{{ mode = \"session_suffix\", failback = {failback} }}");
        let berth = start(&pki, &affinity, &[(&one, 100), (&two, 100)]).await;
        let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
        let session = [(
            "cookie",
            "JSESSIONID=0F3C7A9E1B2D4C6E8F0A1B2C3D4E5F60.app02",
        )];

        for _ in 0..50 {
            assert_eq!(get(&client, "/shop", &session).await.text(), "app02");
        }
        let url = get(&client, "/shop;jsessionid=AAAA.app01?x=1", &session).await;
        assert_eq!(url.text(), "app01", "the URL's session id is checked first");
        let several = [("cookie", "JSESSIONID=X.nowhere; JSESSIONID=Y.app01")];
        assert_eq!(
            get(&client, "/", &several).await.text(),
            "app01",
            "each JSESSIONID is tried in turn"
        );

        drop(two);
        let moved = get(&client, "/shop", &session).await;
        assert_eq!(
            (moved.status, moved.text()),
            (200, "app01".to_owned()),
            "failback={failback}"
        );
        assert_eq!(
            get(&client, "/shop", &session).await.text(),
            "app01",
            "stays moved while app02 is gone"
        );

        let _two = AppServer::start_on("app02", two_addr).await;
        let back = get(&client, "/shop", &session).await.text();
        let expected = if failback { "app02" } else { "app01" };
        assert_eq!(back, expected, "failback={failback} once app02 is back");
        let lines = berth.stop().await;
        assert!(outcomes(&lines).contains(&"moved".to_owned()), "{lines:#?}");
    }
}

#[tokio::test]
async fn learn_ties_a_session_to_the_server_that_set_its_cookie() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = start(
        &pki,
        "{ mode = \"learn\", cookie = \"SID\" }",
        &[(&a, 100), (&b, 100)],
    )
    .await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    for _ in 0..4 {
        let login = get(&client, "/login", &[]).await;
        let sid = login
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert!(sid.starts_with(&format!("SID={}-", login.text())), "{sid}");
        for _ in 0..15 {
            assert_eq!(
                get(&client, "/cart", &[("cookie", &sid)]).await.text(),
                login.text()
            );
        }
    }
    berth.stop().await;
}

#[tokio::test]
async fn client_ip_and_header_ties_hold() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = start(&pki, "{ mode = \"client_ip\" }", &[(&a, 100), (&b, 100)]).await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H2);
    let first = get(&client, "/", &[]).await.text();
    for _ in 0..50 {
        assert_eq!(get(&client, "/", &[]).await.text(), first);
    }
    berth.stop().await;

    let berth = start(
        &pki,
        "{ mode = \"header\", header = \"X-User\" }",
        &[(&a, 100), (&b, 100)],
    )
    .await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let mut homes = std::collections::HashSet::new();
    for user in ["alice", "bob", "carol", "dave"] {
        let home = get(&client, "/", &[("x-user", user)]).await.text();
        for _ in 0..50 {
            assert_eq!(
                get(&client, "/", &[("x-user", user)]).await.text(),
                home,
                "{user}"
            );
        }
        homes.insert(home);
    }
    assert_eq!(homes.len(), 2, "new ties are balanced over both servers");
    berth.stop().await;
}

#[tokio::test]
async fn new_ties_spread_by_weight_and_drain_takes_none() {
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let berth = start(&pki, "{ mode = \"cookie\" }", &[(&a, 300), (&b, 100)]).await;
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    for _ in 0..40 {
        get(&client, "/", &[]).await;
    }
    assert_eq!((a.hits(), b.hits()), (30, 10), "40 new users spread 3:1");

    let snapshot = berth.shared().snapshot.load_full();
    snapshot.pools[0].servers[0].set_admin_state(berth::runtime::AdminState::Drain, "web");
    for _ in 0..10 {
        let answer = get(&client, "/", &[("cookie", "BERTH=a")]).await;
        assert_eq!(answer.text(), "a", "a draining server keeps its ties");
        let fresh = get(&client, "/", &[]).await;
        assert_eq!(fresh.text(), "b", "and takes no new ones");
    }
    berth.stop().await;
}

/// Polls `done` every 20 ms until it holds or `secs` pass.
async fn eventually(secs: u64, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test]
async fn active_health_checks_take_a_dead_server_out_and_back() {
    use berth::runtime::State;
    let pki = TestPki::new();
    let (a, b) = (AppServer::start("a").await, AppServer::start("b").await);
    let a_addr = a.addr;
    let berth = Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&format!(
            "[pools.web]\naffinity = {{ mode = \"cookie\" }}\n\
             health = {{ path = \"/health\", interval = \"100ms\", timeout = \"200ms\", rise = 2, fall = 2 }}\n\
             [[pools.web.servers]]\nname = \"a\"\naddr = \"{}\"\n[[pools.web.servers]]\nname = \"b\"\naddr = \"{}\"\n",
            a.addr, b.addr
        ))
        .start()
        .await;
    let snapshot = berth.shared().snapshot.load_full();
    let server_a = snapshot.pools[0].servers[0].clone();
    assert!(
        eventually(5, || a.hits() >= 2).await,
        "a is checked every interval"
    );
    assert_eq!(server_a.state(), State::Up);

    drop(a);
    assert!(
        eventually(5, || server_a.state() == State::Down).await,
        "two failed checks: down"
    );
    let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    for _ in 0..10 {
        let answer = get(&client, "/", &[("cookie", "BERTH=a")]).await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, "b"),
            "a's ties moved, no error"
        );
    }

    let a = AppServer::start_on("a", a_addr).await;
    assert!(
        eventually(5, || server_a.state() == State::Up).await,
        "two passed checks: up"
    );
    assert_eq!(
        get(&client, "/", &[("cookie", "BERTH=a")]).await.text(),
        "a",
        "a cookie tie to it holds again"
    );
    drop(a);
    berth.stop().await;
}
