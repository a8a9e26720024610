//! Broken app servers: each fault gives the client the right status or a
//! cleanly cut connection, one correct access log line, and leaves nothing
//! behind: no client connection, no upstream connection, no request in
//! flight.
//!
//! The app servers here are hand-written on a tokio `TcpListener`, so they
//! can misbehave in ways a real HTTP library would not allow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::Berth;

/// How a fake app server answers the request it reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Closes the connection once the head arrived, without a byte.
    CloseBeforeHeaders,
    /// Resets the connection (RST) once the head arrived.
    ResetBeforeHeaders,
    /// Answers a line that is not a status line.
    GarbageStatusLine,
    /// Answers a status line with a status code that is not three digits.
    BadStatusCode,
    /// Sends half a head, then nothing.
    HalfHeadThenStall,
    /// Reads the request and never answers.
    Stall,
    /// Declares 100000 bytes, sends 1000, then resets.
    ResetMidBody,
    /// Declares 100000 bytes, sends 1000, then closes.
    ShorterThanDeclared,
    /// Declares 5 bytes, sends 5 and then more on the same connection.
    LongerThanDeclared,
    /// A chunked body with a chunk size that is not hex.
    BadChunk,
    /// A whole 1000-byte body, written in 10 pieces 50 ms apart.
    SlowBody,
    /// Answers after 200 ms (under response_timeout).
    SlowHead,
}

/// A fake app server; counts connections accepted and still open.
struct FakeApp {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    closed: Arc<tokio::sync::Notify>,
}

impl FakeApp {
    async fn start(fault: Fault) -> FakeApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(tokio::sync::Notify::new());
        let (a, o, c) = (accepted.clone(), open.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, c) = (o.clone(), c.clone());
                tokio::spawn(async move {
                    serve(stream, fault).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                    c.notify_waiters();
                });
            }
        });
        FakeApp {
            addr,
            accepted,
            open,
            closed,
        }
    }

    /// Waits (at most 5 s) until no connection to this app is open.
    async fn all_closed(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let notified = self.closed.notified();
                if self.open.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

/// Reads one request head; `None` if the connection ended first.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

/// Serves one connection with `fault`; returns when the connection is
/// closed (by either side).
async fn serve(mut stream: TcpStream, fault: Fault) {
    while read_head(&mut stream).await.is_some() {
        let keep_going = answer(&mut stream, fault).await;
        if !keep_going {
            return;
        }
    }
}

/// Answers one request; `true` to read another from the connection.
async fn answer(stream: &mut TcpStream, fault: Fault) -> bool {
    let body = vec![b'x'; 1000];
    match fault {
        Fault::CloseBeforeHeaders => false,
        Fault::ResetBeforeHeaders => {
            reset_on_drop(stream);
            false
        }
        Fault::GarbageStatusLine => {
            let _ = stream.write_all(b"HELLO THERE\r\n\r\n").await;
            wait_for_close(stream).await
        }
        Fault::BadStatusCode => {
            let _ = stream
                .write_all(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
            wait_for_close(stream).await
        }
        Fault::HalfHeadThenStall => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Len").await;
            wait_for_close(stream).await
        }
        Fault::Stall => wait_for_close(stream).await,
        Fault::ResetMidBody | Fault::ShorterThanDeclared => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                .await;
            let _ = stream.write_all(&body).await;
            let _ = stream.flush().await;
            if matches!(fault, Fault::ResetMidBody) {
                reset_on_drop(stream);
            }
            false
        }
        Fault::LongerThanDeclared => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
                .await;
            true
        }
        Fault::BadChunk => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n")
                .await;
            wait_for_close(stream).await
        }
        Fault::SlowBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .await;
            for piece in body.chunks(100) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if stream.write_all(piece).await.is_err() {
                    return false;
                }
            }
            true
        }
        Fault::SlowHead => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .await;
            let _ = stream.write_all(&body).await;
            true
        }
    }
}

/// Makes closing the connection send RST instead of FIN. (Linger 0 never
/// blocks the thread, which is what the deprecation warns of.)
#[allow(deprecated)]
fn reset_on_drop(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// Reads until the peer closes; returns `false` (the connection is done).
async fn wait_for_close(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    false
}

/// What the client saw.
#[derive(Debug)]
struct Seen {
    status: Option<u16>,
    /// Body bytes received after the head.
    body: Vec<u8>,
    /// Whether the response was whole (Content-Length bytes arrived).
    whole: bool,
}

/// Sends one GET on a fresh plain connection and reads until the response
/// is whole or berth closes the connection (at most 5 s).
async fn get(addr: SocketAddr, path: &str) -> Seen {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            if let Some(seen) = parse(&raw) {
                if seen.whole {
                    return;
                }
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "neither answered nor closed: {raw:?}");
    parse(&raw).unwrap_or(Seen {
        status: None,
        body: Vec::new(),
        whole: false,
    })
}

fn parse(raw: &[u8]) -> Option<Seen> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok());
    let length: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok());
    let body = raw[end..].to_vec();
    Some(Seen {
        status,
        whole: length.is_some_and(|n| body.len() >= n),
        body,
    })
}

async fn start_berth(app: &FakeApp) -> Berth {
    Berth::builder()
        .config("[[listener]]\nbind = \"127.0.0.1:0\"\ntls = false\n")
        .config("[[route]]\npool = \"web\"\n")
        .config(&format!(
            "[pools.web]\nretries = 0\nresponse_timeout = \"500ms\"\n[[pools.web.servers]]\nname = \"broken\"\naddr = \"{}\"\n",
            app.addr
        ))
        .start()
        .await
}

/// Waits (at most 5 s) until berth has no client connection open.
async fn no_client_connections(berth: &Berth) -> bool {
    tokio::time::timeout(Duration::from_secs(5), async {
        while berth.open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok()
}

fn in_flight(berth: &Berth) -> usize {
    let snapshot = berth.shared().snapshot.load();
    snapshot.pools[0].servers[0]
        .in_flight
        .load(Ordering::Relaxed)
}

/// How a fault must look to the client.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// berth's own error response with this status.
    Status(u16),
    /// A 200 head, then fewer body bytes than declared and a closed connection.
    Cut,
    /// The whole response, as the app server sent it.
    Whole,
}

#[tokio::test]
async fn each_fault_gets_its_outcome_a_log_line_and_leaks_nothing() {
    // (fault, what the client sees, %b logged, whether the app server may
    // keep its connection to berth alive)
    let cases = [
        (Fault::CloseBeforeHeaders, Expect::Status(502), 39, false),
        (Fault::ResetBeforeHeaders, Expect::Status(502), 39, false),
        (Fault::GarbageStatusLine, Expect::Status(502), 39, false),
        (Fault::BadStatusCode, Expect::Status(502), 39, false),
        (Fault::HalfHeadThenStall, Expect::Status(504), 59, false),
        (Fault::Stall, Expect::Status(504), 59, false),
        (Fault::ResetMidBody, Expect::Cut, 1000, false),
        (Fault::ShorterThanDeclared, Expect::Cut, 1000, false),
        (Fault::LongerThanDeclared, Expect::Whole, 5, false),
        (Fault::BadChunk, Expect::Cut, 5, false),
        (Fault::SlowBody, Expect::Whole, 1000, true),
        (Fault::SlowHead, Expect::Whole, 1000, true),
    ];
    for (fault, expect, logged_bytes, keeps_alive) in cases {
        let app = FakeApp::start(fault).await;
        let berth = start_berth(&app).await;
        let seen = get(berth.addr(), "/fault").await;
        match expect {
            Expect::Status(status) => {
                assert_eq!(seen.status, Some(status), "{fault:?}: {seen:?}");
                assert!(
                    seen.body.starts_with(status.to_string().as_bytes()),
                    "{fault:?}: a text body: {seen:?}"
                );
            }
            Expect::Cut => {
                assert_eq!(seen.status, Some(200), "{fault:?}: {seen:?}");
                assert!(!seen.whole, "{fault:?}: cut short: {seen:?}");
            }
            Expect::Whole => {
                assert_eq!(seen.status, Some(200), "{fault:?}: {seen:?}");
                assert!(seen.whole, "{fault:?}: {seen:?}");
            }
        }
        if fault == Fault::LongerThanDeclared {
            assert_eq!(seen.body, b"hello", "nothing past Content-Length");
            // The connection that carried extra bytes is not reused: the
            // next request gets a real answer, not the smuggled one.
            let next = get(berth.addr(), "/next").await;
            assert_eq!(next.body, b"hello", "{next:?}");
            assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
        }
        assert!(
            no_client_connections(&berth).await,
            "{fault:?}: {} client connections left open",
            berth.open_connections()
        );
        assert_eq!(in_flight(&berth), 0, "{fault:?}: a request left in flight");
        if !keeps_alive {
            assert!(
                app.all_closed().await,
                "{fault:?}: {} upstream connections left open",
                app.open.load(Ordering::SeqCst)
            );
        }
        let lines = berth.stop().await;
        let status = match expect {
            Expect::Status(status) => status,
            Expect::Cut | Expect::Whole => 200,
        };
        let want = format!("\"GET /fault HTTP/1.1\" {status} ");
        let line = lines.iter().find(|l| l.contains(&want));
        let line = line.unwrap_or_else(|| panic!("{fault:?}: no line with {want}: {lines:#?}"));
        if matches!(expect, Expect::Cut | Expect::Whole) && fault != Fault::BadChunk {
            assert_eq!(
                seen.body.len(),
                logged_bytes,
                "{fault:?}: the client got what is logged"
            );
        }
        let bytes = line.split(&want).nth(1).and_then(|r| r.split(' ').next());
        assert_eq!(
            bytes,
            Some(logged_bytes.to_string().as_str()),
            "{fault:?}: %b in {line}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains("/fault")).count(),
            1,
            "{fault:?}: one line per request: {lines:#?}"
        );
        if keeps_alive {
            // berth's shutdown closes its pooled upstream connections too.
            assert!(
                app.all_closed().await,
                "{fault:?}: pooled connection kept after stop"
            );
        }
    }
}

#[tokio::test]
async fn a_stalled_app_server_does_not_hold_up_others() {
    let stalled = FakeApp::start(Fault::Stall).await;
    let fine = FakeApp::start(Fault::SlowHead).await;
    let berth = Berth::builder()
        .config("[[listener]]\nbind = \"127.0.0.1:0\"\ntls = false\n")
        .config("[[route]]\npath_prefix = \"/stall\"\npool = \"stalled\"\n")
        .config("[[route]]\npool = \"fine\"\n")
        .config(&format!(
            "[pools.stalled]\nresponse_timeout = \"3s\"\n[[pools.stalled.servers]]\nname = \"s\"\naddr = \"{}\"\n[pools.fine]\n[[pools.fine.servers]]\nname = \"f\"\naddr = \"{}\"\n",
            stalled.addr, fine.addr
        ))
        .start()
        .await;
    let addr = berth.addr();
    let stuck: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { get(addr, "/stall").await.status }))
        .collect();
    // While twenty requests wait on the stalled server (3 s), others are
    // served, each in turn.
    for _ in 0..5 {
        let seen = get(addr, "/ok").await;
        assert_eq!(seen.status, Some(200));
        assert!(seen.whole);
    }
    assert!(
        stuck.iter().all(|task| !task.is_finished()),
        "the stalled requests are still waiting, yet others were served"
    );
    for task in stuck {
        assert_eq!(task.await.unwrap(), Some(504));
    }
    assert!(
        stalled.all_closed().await,
        "stalled upstream connections closed"
    );
    assert!(no_client_connections(&berth).await);
    berth.stop().await;
}
