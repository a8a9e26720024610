//! The writer thread's output buffer: whole lines in, one `write` per flush,
//! and an exact count of the lines a failed write loses.
//!
//! `BufWriter` would hide which lines an error cost, so the buffer is ours.
//! When a write fails part way through a line, the next flush starts with a
//! `'\n'`, so the torn fragment does not swallow the next good line.

use std::io::{self, ErrorKind, Write};

/// Flush when the buffer reaches this size (and at least once a second).
pub const BUFFER_SIZE: usize = 64 * 1024;

pub struct Sink {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    /// Complete lines in `buf`.
    lines: u64,
    /// `buf` starts with a `'\n'` that ends a line torn by a failed write.
    repair: bool,
}

/// A flush that failed: how many lines were lost, and why.
#[derive(Debug)]
pub struct WriteFailure {
    pub lines: u64,
    pub error: io::Error,
}

impl Sink {
    pub fn new(out: Box<dyn Write + Send>) -> Sink {
        Sink {
            out,
            buf: Vec::with_capacity(BUFFER_SIZE + 1024),
            lines: 0,
            repair: false,
        }
    }

    /// Appends one line, written by `write_line` (which must end it with `'\n'`).
    pub fn push_line(&mut self, write_line: impl FnOnce(&mut Vec<u8>)) {
        write_line(&mut self.buf);
        self.lines += 1;
    }

    pub fn is_full(&self) -> bool {
        self.buf.len() >= BUFFER_SIZE
    }

    /// Writes out everything buffered. On failure the buffer is dropped and
    /// the lines that did not reach the output whole are counted.
    pub fn flush(&mut self) -> Result<(), WriteFailure> {
        let mut written = 0;
        let mut result = Ok(());
        while let Some(rest) = self.buf.get(written..).filter(|rest| !rest.is_empty()) {
            match self.out.write(rest) {
                Ok(0) => {
                    result = Err(io::Error::from(ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Only stdout buffers below us (a `LineWriter`); a chunk of whole lines
        // passes it straight through, so this flush has nothing left to write.
        let _ = self.out.flush();

        let reached = self.buf.get(..written).unwrap_or_default();
        let torn = match reached.last() {
            Some(&last) => last != b'\n',
            None => self.repair,
        };
        let failure = result.err().map(|error| {
            let ended = reached.iter().filter(|&&b| b == b'\n').count() as u64;
            let ended = ended.saturating_sub(u64::from(self.repair && written > 0));
            WriteFailure {
                lines: self.lines.saturating_sub(ended),
                error,
            }
        });
        self.buf.clear();
        if self.buf.capacity() > 4 * BUFFER_SIZE {
            // One huge line must not pin its memory for good.
            self.buf.shrink_to(BUFFER_SIZE + 1024);
        }
        self.lines = 0;
        self.repair = failure.is_some() && torn;
        if self.repair {
            self.buf.push(b'\n');
        }
        failure.map_or(Ok(()), Err)
    }

    /// Writes to `out` from now on. Call after [`Sink::flush`]: a pending
    /// repair belongs to the old output and is forgotten.
    pub fn replace_output(&mut self, out: Box<dyn Write + Send>) {
        self.out = out;
        if self.lines == 0 {
            self.buf.clear();
            self.repair = false;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    use super::Sink;

    /// Accepts `budget` bytes (in pieces of at most `chunk`), then fails with
    /// "no space" until the budget is raised.
    #[derive(Clone, Default)]
    pub struct Disk {
        pub state: Arc<Mutex<DiskState>>,
    }

    #[derive(Default)]
    pub struct DiskState {
        pub data: Vec<u8>,
        pub budget: usize,
        pub chunk: usize,
    }

    impl Disk {
        pub fn new(budget: usize, chunk: usize) -> Disk {
            let disk = Disk::default();
            *disk.state.lock().unwrap() = DiskState {
                data: Vec::new(),
                budget,
                chunk,
            };
            disk
        }

        pub fn contents(&self) -> String {
            String::from_utf8(self.state.lock().unwrap().data.clone()).unwrap()
        }
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.state.lock().unwrap();
            let n = buf.len().min(s.budget).min(s.chunk.max(1));
            if n == 0 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            s.budget -= n;
            s.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn push(sink: &mut Sink, text: &str) {
        sink.push_line(|out| {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        });
    }

    #[test]
    fn writes_whole_lines_in_pieces() {
        let disk = Disk::new(usize::MAX, 3);
        let mut sink = Sink::new(Box::new(disk.clone()));
        push(&mut sink, "one");
        push(&mut sink, "two");
        assert_eq!(sink.lines, 2);
        sink.flush().unwrap();
        assert_eq!(sink.lines, 0);
        assert_eq!(disk.contents(), "one\ntwo\n");
    }

    #[test]
    fn counts_lost_lines_and_repairs_a_torn_line() {
        // "aaaa\n" fits, "bbbb\n" is torn after "bb", "cccc\n" never starts.
        let disk = Disk::new(7, 1024);
        let mut sink = Sink::new(Box::new(disk.clone()));
        for text in ["aaaa", "bbbb", "cccc"] {
            push(&mut sink, text);
        }
        let failure = sink.flush().unwrap_err();
        assert_eq!(failure.lines, 2);
        assert_eq!(failure.error.raw_os_error(), Some(28));

        // Still full: the next line is lost too, the repair is kept.
        push(&mut sink, "dddd");
        assert_eq!(sink.flush().unwrap_err().lines, 1);

        // Space again: the torn line is ended before the next one.
        disk.state.lock().unwrap().budget = usize::MAX;
        push(&mut sink, "eeee");
        sink.flush().unwrap();
        assert_eq!(disk.contents(), "aaaa\nbb\neeee\n");
    }

    #[test]
    fn a_written_repair_is_not_counted_as_a_line() {
        let disk = Disk::new(2, 1024);
        let mut sink = Sink::new(Box::new(disk.clone()));
        push(&mut sink, "aaaa");
        assert_eq!(sink.flush().unwrap_err().lines, 1);
        // Room for the repair newline and two bytes of the next line.
        disk.state.lock().unwrap().budget = 3;
        push(&mut sink, "bbbb");
        assert_eq!(sink.flush().unwrap_err().lines, 1);
        disk.state.lock().unwrap().budget = usize::MAX;
        sink.flush().unwrap();
        push(&mut sink, "cccc");
        sink.flush().unwrap();
        assert_eq!(disk.contents(), "aa\nbb\ncccc\n");
    }

    #[test]
    fn a_new_output_forgets_the_repair() {
        let full = Disk::new(2, 1024);
        let mut sink = Sink::new(Box::new(full));
        push(&mut sink, "aaaa");
        assert!(sink.flush().is_err());
        let fresh = Disk::new(usize::MAX, 1024);
        sink.replace_output(Box::new(fresh.clone()));
        push(&mut sink, "bbbb");
        sink.flush().unwrap();
        assert_eq!(fresh.contents(), "bbbb\n");
    }
}
