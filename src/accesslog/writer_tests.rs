//! Tests of the writer: files, reopen, drops, flushing, reporting.

#![allow(clippy::unwrap_used)]

use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;

use super::{AccessLog, Report, Summary};
use crate::accesslog::Entry;
use crate::config::{LogFormat, LogTarget};

fn entry(path: &str) -> Entry {
    Entry {
        client: "192.0.2.10".parse().unwrap(),
        received: UNIX_EPOCH + Duration::from_secs(1_791_640_536),
        request_line: Some(Bytes::from(format!("GET {path} HTTP/1.1"))),
        user: None,
        status: 200,
        body_bytes: 12,
        referer: None,
        user_agent: Some(Bytes::from_static(b"test")),
        vhost: None,
        port: 443,
        pool: None,
        server: None,
        outcome: None,
        duration: Duration::from_micros(5),
    }
}

/// The request paths of the lines in `path`, in order.
fn paths_in(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            assert!(line.starts_with("192.0.2.10 - - ["), "{line}");
            line.split(' ').nth(6).unwrap().to_owned()
        })
        .collect()
}

fn open(path: &Path) -> AccessLog {
    AccessLog::open(&LogTarget::File(path.to_owned()), LogFormat::Combined).unwrap()
}

#[test]
fn lines_appear_in_order_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/nested/access.log");
    let log = open(&path);
    let want: Vec<String> = (0..2000).map(|i| format!("/{i}")).collect();
    for p in &want {
        log.clone().log(entry(p));
    }
    log.shutdown();
    assert_eq!(paths_in(&path), want);
    assert_eq!(log.dropped(), 0);

    // After shutdown: counted, not written; a second shutdown is harmless.
    log.log(entry("/late"));
    log.reopen();
    log.shutdown();
    assert_eq!(log.dropped(), 1);
    assert_eq!(paths_in(&path).len(), 2000);
}

#[test]
fn appends_to_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "earlier line\n").unwrap();
    let log = open(&path);
    log.log(entry("/new"));
    log.shutdown();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("earlier line\n192.0.2.10 "), "{text}");
}

#[test]
fn open_fails_when_the_file_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let target = LogTarget::File(blocker.join("access.log"));
    assert!(AccessLog::open(&target, LogFormat::Combined).is_err());
}

#[test]
fn reopen_after_logrotate_renamed_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let log = open(&path);
    log.log(entry("/before-1"));
    log.log(entry("/before-2"));
    std::fs::rename(&path, &rotated).unwrap();
    log.log(entry("/before-3"));
    log.reopen();
    log.log(entry("/after"));
    log.shutdown();
    assert_eq!(paths_in(&rotated), ["/before-1", "/before-2", "/before-3"]);
    assert_eq!(paths_in(&path), ["/after"]);
    assert_eq!(log.dropped(), 0);
}

#[test]
fn failed_reopen_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let moved = dir.path().join("logs.old");
    let log = open(&logs.join("access.log"));
    log.log(entry("/one"));
    // The directory moves away and a file takes its name: the path cannot be opened.
    std::fs::rename(&logs, &moved).unwrap();
    std::fs::write(&logs, "").unwrap();
    log.reopen();
    log.log(entry("/two"));
    log.shutdown();
    assert_eq!(paths_in(&moved.join("access.log")), ["/one", "/two"]);
    assert_eq!(log.dropped(), 0);
}

#[test]
fn flushes_within_a_second_without_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = open(&path);
    log.log(entry("/soon"));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(5);
    while paths_in(&path).is_empty() {
        assert!(Instant::now() < deadline, "not flushed after 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // One second, plus slack for a busy machine.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(paths_in(&path), ["/soon"]);
    log.shutdown();
}

/// An output whose first write blocks until released, like a stuck disk.
struct StuckDisk {
    entered: Option<mpsc::Sender<()>>,
    release: mpsc::Receiver<()>,
    data: Arc<Mutex<Vec<u8>>>,
}

impl Write for StuckDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(entered) = self.entered.take() {
            entered.send(()).unwrap();
            self.release.recv().unwrap();
        }
        self.data.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_lines_and_never_blocks() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let data = Arc::new(Mutex::new(Vec::new()));
    let disk = StuckDisk {
        entered: Some(entered_tx),
        release: release_rx,
        data: Arc::clone(&data),
    };
    let log = AccessLog::start(Box::new(disk), None, LogFormat::Combined, 4).unwrap();

    // A line bigger than the buffer is written at once, and the write sticks.
    log.log(entry(&"/big".repeat(20_000)));
    entered.recv_timeout(Duration::from_secs(10)).unwrap();

    for i in 0..4 {
        log.log(entry(&format!("/queued-{i}")));
    }
    assert_eq!(log.dropped(), 0);
    let start = Instant::now();
    for i in 0..10 {
        log.log(entry(&format!("/dropped-{i}")));
    }
    log.reopen(); // finds the queue full too; harmless for a pathless output
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(log.dropped(), 10);

    release.send(()).unwrap();
    log.shutdown();
    let text = String::from_utf8(data.lock().unwrap().clone()).unwrap();
    let paths: Vec<&str> = text.lines().map(|l| l.split(' ').nth(6).unwrap()).collect();
    assert_eq!(paths.len(), 5);
    assert_eq!(
        paths[1..],
        ["/queued-0", "/queued-1", "/queued-2", "/queued-3"]
    );
    assert_eq!(log.dropped(), 10);
}

#[cfg(target_os = "linux")]
#[test]
fn write_errors_count_dropped_lines() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let log = open(Path::new("/dev/full"));
    let start = Instant::now();
    for i in 0..100 {
        log.log(entry(&format!("/{i}")));
    }
    assert!(start.elapsed() < Duration::from_secs(1));
    log.shutdown();
    assert_eq!(log.dropped(), 100);
}

#[test]
fn reports_are_rate_limited() {
    let mut report = Report::default();
    let t0 = Instant::now();
    let s = |queue_full, write_failed| {
        Some(Summary {
            queue_full,
            write_failed,
        })
    };

    assert_eq!(report.due(0, 0, t0, false), None);
    // The first drop is reported at once.
    assert_eq!(report.due(3, 0, t0, false), s(3, 0));
    // More within 10 s wait, and are summed up when 10 s have passed.
    assert_eq!(report.due(5, 0, t0 + Duration::from_secs(1), false), None);
    assert_eq!(report.due(5, 7, t0 + Duration::from_secs(9), false), None);
    assert_eq!(
        report.due(6, 7, t0 + Duration::from_secs(10), false),
        s(3, 7)
    );
    // Nothing new: nothing to say, however long it has been.
    assert_eq!(report.due(6, 7, t0 + Duration::from_secs(60), false), None);
    assert_eq!(
        report.due(6, 8, t0 + Duration::from_secs(61), false),
        s(0, 1)
    );
    // At shutdown the rest is reported even within 10 s.
    assert_eq!(report.due(6, 9, t0 + Duration::from_secs(62), false), None);
    assert_eq!(
        report.due(6, 9, t0 + Duration::from_secs(62), true),
        s(0, 1)
    );
}
