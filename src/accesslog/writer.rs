//! [`AccessLog`]: the handle the request path logs through, the bounded
//! queue behind it, and the one writer thread that formats and writes.
//!
//! File IO must never stall a tokio worker, so the writer is a plain thread.
//! The queue is a `sync_channel`: `try_send` never blocks, and a full queue
//! counts the line as dropped. While lines keep coming, the writer does not
//! park on the queue but drains it every [`POLL_INTERVAL`]: a parked
//! receiver makes every `try_send` wake it (a futex call and a context switch
//! per request, a sixth of berth's CPU under load). After [`IDLE_POLLS`]
//! empty polls it parks again, so an idle berth sleeps. Reopen (SIGUSR1)
//! travels the same queue, so
//! every line logged before `reopen()` goes to the old file and every line
//! after it to the new one. Drops (queue full, write failed) are reported
//! from the writer thread, at most once per [`REPORT_INTERVAL`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Entry;
use super::format::{TimeCache, format_entry};
use super::sink::{Sink, WriteFailure};
use crate::config::{LogFormat, LogTarget};

/// Lines the queue holds before `log()` starts dropping them.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Buffered lines are written at most this long after they were logged.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often a busy writer drains the queue.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Empty polls in a row after which the writer parks on the queue.
const IDLE_POLLS: u32 = 50;
/// Dropped lines are reported at most this often.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The access log: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

struct Shared {
    queue: SyncSender<Msg>,
    /// [`CLOSED`] once `shutdown()` began, plus the number of `log()` calls
    /// between their check of that bit and their send: `shutdown()` waits for
    /// them, so a line is either queued ahead of the shutdown or counted.
    state: AtomicU64,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

const CLOSED: u64 = 1 << 63;

#[derive(Default)]
struct Counters {
    queue_full: AtomicU64,
    write_failed: AtomicU64,
    /// A reopen that found the queue full: the writer picks it up after its next line.
    reopen_pending: AtomicBool,
}

enum Msg {
    /// Boxed: the channel allocates every slot up front.
    Line(Box<Entry>),
    Reopen,
    Shutdown,
}

impl AccessLog {
    /// Opens the log (appending, creating the file and missing parent
    /// directories) and starts the writer thread.
    pub fn open(target: &LogTarget, format: LogFormat) -> io::Result<AccessLog> {
        AccessLog::with_capacity(target, format, QUEUE_CAPACITY)
    }

    /// [`AccessLog::open`] with a queue of `capacity` lines (at least 1).
    pub fn with_capacity(
        target: &LogTarget,
        format: LogFormat,
        capacity: usize,
    ) -> io::Result<AccessLog> {
        let (out, path): (Box<dyn Write + Send>, _) = match target {
            LogTarget::Stdout => (Box::new(io::stdout()), None),
            LogTarget::File(path) => (Box::new(open_file(path)?), Some(path.clone())),
        };
        AccessLog::start(out, path, format, capacity)
    }

    fn start(
        out: Box<dyn Write + Send>,
        path: Option<PathBuf>,
        format: LogFormat,
        capacity: usize,
    ) -> io::Result<AccessLog> {
        let (queue, rx) = mpsc::sync_channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            rx,
            path,
            format,
            times: TimeCache::local(),
            sink: Sink::new(out),
            oldest: None,
            counters: Arc::clone(&counters),
            report: Report::default(),
        };
        let handle = std::thread::Builder::new()
            .name("berth-accesslog".into())
            .spawn(move || writer.run())?;
        Ok(AccessLog {
            shared: Arc::new(Shared {
                queue,
                state: AtomicU64::new(0),
                counters,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Queues one line. Never blocks and never fails: a line that finds the
    /// queue full, or comes after `shutdown()`, is counted as dropped.
    pub fn log(&self, entry: Entry) {
        let msg = Msg::Line(Box::new(entry));
        let shared = &*self.shared;
        if shared.state.fetch_add(1, Ordering::AcqRel) & CLOSED == 0 {
            if shared.queue.try_send(msg).is_err() {
                shared.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            shared.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
        shared.state.fetch_sub(1, Ordering::AcqRel);
    }

    /// Asks the writer to reopen the file (logrotate, SIGUSR1): it flushes,
    /// opens the path again and swaps. If that fails it keeps the old file and
    /// reports the error. A no-op for stdout.
    pub fn reopen(&self) {
        match self.shared.queue.try_send(Msg::Reopen) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.shared
                    .counters
                    .reopen_pending
                    .store(true, Ordering::Release);
            }
        }
    }

    /// Lines lost so far (`berth_log_lines_dropped_total`): queue full,
    /// logged after shutdown, or lost to a failed write.
    pub fn dropped(&self) -> u64 {
        self.shared.counters.dropped()
    }

    /// Writes out everything queued, flushes and stops the writer. Blocks
    /// until done: call it from a blocking context. Later `log()` calls count
    /// as dropped; calling it again does nothing.
    pub fn shutdown(&self) {
        let shared = &*self.shared;
        let mut writer = shared.writer.lock().unwrap_or_else(PoisonError::into_inner);
        shared.state.fetch_or(CLOSED, Ordering::AcqRel);
        // `log()` calls already past their check finish in a few instructions.
        while shared.state.load(Ordering::Acquire) != CLOSED {
            std::thread::yield_now();
        }
        if let Some(handle) = writer.take() {
            // Blocks only while the writer drains a full queue; fails only if it is gone.
            let _ = shared.queue.send(Msg::Shutdown);
            if handle.join().is_err() {
                tracing::error!("access log writer thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Counters {
    fn dropped(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed) + self.write_failed.load(Ordering::Relaxed)
    }
}

/// Opens `path` for appending, creating it and its missing parent directories.
fn open_file(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().append(true).create(true).open(path)
}

/// The writer thread's state.
struct Writer {
    rx: Receiver<Msg>,
    /// `None` for stdout, which is never reopened.
    path: Option<PathBuf>,
    format: LogFormat,
    times: TimeCache,
    sink: Sink,
    /// When the oldest buffered line was logged.
    oldest: Option<Instant>,
    counters: Arc<Counters>,
    report: Report,
}

impl Writer {
    fn run(mut self) {
        let mut idle_polls = IDLE_POLLS;
        loop {
            let wait = self.oldest.map_or(FLUSH_INTERVAL, |t| {
                FLUSH_INTERVAL.saturating_sub(t.elapsed())
            });
            let msg = match self.rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if idle_polls < IDLE_POLLS => {
                    idle_polls += 1;
                    std::thread::sleep(POLL_INTERVAL.min(wait));
                    None
                }
                Err(TryRecvError::Empty) => match self.rx.recv_timeout(wait) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            match msg {
                Some(Msg::Line(entry)) => {
                    idle_polls = 0;
                    self.push(&entry);
                }
                Some(Msg::Reopen) => self.reopen(),
                Some(Msg::Shutdown) => break,
                None => {}
            }
            if self.counters.reopen_pending.swap(false, Ordering::AcqRel) {
                self.reopen();
            }
            let now = Instant::now();
            if self
                .oldest
                .is_some_and(|t| now.duration_since(t) >= FLUSH_INTERVAL)
            {
                self.flush();
            }
            self.report.tick(&self.counters, now, false);
        }
        self.flush();
        self.report.tick(&self.counters, Instant::now(), true);
    }

    fn push(&mut self, entry: &Entry) {
        let (format, times) = (self.format, &mut self.times);
        self.sink
            .push_line(|out| format_entry(out, entry, format, times));
        self.oldest.get_or_insert_with(Instant::now);
        if self.sink.is_full() {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.oldest = None;
        if let Err(WriteFailure { lines, error }) = self.sink.flush() {
            self.counters
                .write_failed
                .fetch_add(lines, Ordering::Relaxed);
            self.report.error = Some(error);
        }
    }

    fn reopen(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        self.flush();
        match open_file(&path) {
            Ok(file) => {
                self.sink.replace_output(Box::new(file));
                tracing::info!(path = %path.display(), "access log reopened");
            }
            Err(error) => tracing::error!(
                path = %path.display(),
                %error,
                "cannot reopen the access log; still writing to the old file"
            ),
        }
    }
}

/// Rate-limited reporting of dropped lines: the first drop after a quiet
/// period at once, then at most one summary per [`REPORT_INTERVAL`].
#[derive(Default)]
struct Report {
    last: Option<Instant>,
    queue_full: u64,
    write_failed: u64,
    /// The latest write error, for the next report.
    error: Option<io::Error>,
}

/// Lines dropped since the previous report.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    queue_full: u64,
    write_failed: u64,
}

impl Report {
    /// Reports new drops if the last report is old enough (or `last_chance`).
    fn tick(&mut self, counters: &Counters, now: Instant, last_chance: bool) {
        let queue_full = counters.queue_full.load(Ordering::Relaxed);
        let write_failed = counters.write_failed.load(Ordering::Relaxed);
        if let Some(summary) = self.due(queue_full, write_failed, now, last_chance) {
            let error = self
                .error
                .take()
                .map_or_else(|| "-".to_owned(), |e| e.to_string());
            tracing::error!(
                dropped = summary.queue_full + summary.write_failed,
                queue_full = summary.queue_full,
                write_failed = summary.write_failed,
                %error,
                "access log lines dropped since the last report",
            );
        }
    }

    fn due(
        &mut self,
        queue_full: u64,
        write_failed: u64,
        now: Instant,
        last_chance: bool,
    ) -> Option<Summary> {
        if (queue_full, write_failed) == (self.queue_full, self.write_failed) {
            return None;
        }
        let recent = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < REPORT_INTERVAL);
        if recent && !last_chance {
            return None;
        }
        let summary = Summary {
            queue_full: queue_full - self.queue_full,
            write_failed: write_failed - self.write_failed,
        };
        (self.last, self.queue_full, self.write_failed) = (Some(now), queue_full, write_failed);
        Some(summary)
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
