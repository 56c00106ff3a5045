//! Container logs in the format of Docker's json-file driver: one JSON
//! object per line, `{"log":"text\n","stream":"stdout","time":"RFC 3339"}`,
//! appended by the container's monitor as its output arrives.

use std::fs::File;
use std::io::{self, BufRead as _, Read as _, Seek as _, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One log line (or a piece of one longer than [`MAX_ENTRY`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The text, with its newline when it had one.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When wharf read it (RFC 3339, nanoseconds, UTC).
    pub time: String,
}

/// Longest text of one entry (Docker's json-file limit): longer lines are
/// split.
pub const MAX_ENTRY: usize = 16 << 10;

/// `ns` nanoseconds since the epoch as RFC 3339 with nanoseconds, UTC.
pub fn rfc3339_nanos(ns: u64) -> String {
    let secs = crate::build::rfc3339(ns / 1_000_000_000);
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), ns % 1_000_000_000)
}

/// Appends entries to a container's log; shared by its stream readers.
#[derive(Debug, Clone)]
pub struct LogWriter {
    file: Arc<Mutex<File>>,
}

impl LogWriter {
    /// Opens `path` for appending.
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .into_parts()
            .0;
        Ok(LogWriter {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Appends one entry, in a single write.
    pub fn write(&self, stream: &str, text: &[u8]) -> io::Result<()> {
        let entry = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: stream.to_owned(),
            time: rfc3339_nanos(super::now_ns()),
        };
        let mut line = serde_json::to_vec(&entry).expect("serialisable");
        line.push(b'\n');
        self.file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&line)
    }

    /// Reads `from` until it ends on a new thread, writing an entry of
    /// `stream` for each piece `framing` cuts.
    pub fn pump(
        &self,
        stream: &'static str,
        from: impl io::Read + Send + 'static,
        framing: Framing,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        let writer = self.clone();
        std::thread::Builder::new()
            .name(format!("log-{stream}"))
            .stack_size(128 << 10)
            .spawn(move || {
                let mut from = io::BufReader::with_capacity(MAX_ENTRY, from);
                let mut entry = Vec::new();
                loop {
                    entry.clear();
                    let read = match framing {
                        Framing::Lines => (&mut from)
                            .take(MAX_ENTRY as u64)
                            .read_until(b'\n', &mut entry),
                        Framing::AsRead => from.fill_buf().map(|b| {
                            entry.extend_from_slice(b);
                            b.len()
                        }),
                    };
                    match read {
                        Ok(0) => break,
                        Ok(n) => {
                            if framing == Framing::AsRead {
                                from.consume(n);
                            }
                            if let Err(e) = writer.write(stream, &entry) {
                                tracing::warn!(error = %e, "cannot write the container log");
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // Also EIO from a terminal whose last slave
                        // descriptor closed.
                        Err(_) => break,
                    }
                }
            })
    }
}

/// How [`LogWriter::pump`] cuts output into entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One entry per line, written once the line is complete (a pipe).
    Lines,
    /// One entry per read, at once (a terminal: a prompt without a
    /// newline reaches attached clients while the process waits).
    AsRead,
}

/// Reads a log from a position, entry by entry, as it grows.
#[derive(Debug)]
pub struct LogReader {
    file: io::BufReader<File>,
    partial: Vec<u8>,
}

impl LogReader {
    /// Reads `path` from its start, or only what is appended from now on.
    pub fn open(path: &Path, from_end: bool) -> io::Result<LogReader> {
        let mut file = fs_err::File::open(path)?.into_parts().0;
        if from_end {
            file.seek(io::SeekFrom::End(0))?;
        }
        Ok(LogReader {
            file: io::BufReader::new(file),
            partial: Vec::new(),
        })
    }

    /// The complete entries appended since the last call. A line still
    /// being written is kept for the next call; a corrupt line is skipped.
    pub fn read_new(&mut self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        loop {
            let n = self.file.read_until(b'\n', &mut self.partial)?;
            if n == 0 || self.partial.last() != Some(&b'\n') {
                return Ok(out);
            }
            if let Ok(e) = serde_json::from_slice::<Entry>(&self.partial) {
                out.push(e);
            }
            self.partial.clear();
        }
    }
}

/// The last `n` entries of the log at `path` (all of them for `None`).
pub fn tail(path: &Path, n: Option<usize>) -> io::Result<Vec<Entry>> {
    let mut all = LogReader::open(path, false)?.read_new()?;
    if let Some(n) = n {
        let skip = all.len().saturating_sub(n);
        all.drain(..skip);
    }
    Ok(all)
}

/// Frames `payload` as Docker's multiplexed attach/logs stream does: an
/// 8-byte header (stream 1 = stdout, 2 = stderr, then the big-endian
/// length) before the bytes.
pub fn frame(stream: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(if stream == "stderr" { 2 } else { 1 });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_entries_and_read_back_as_they_grow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let w = LogWriter::open(&path).unwrap();
        let mut r = LogReader::open(&path, false).unwrap();
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let pump = w.pump("stderr", rx, Framing::Lines).unwrap();
        tx.write_all(b"one\ntw").unwrap();
        tx.write_all(b"o\nno newline").unwrap();
        drop(tx);
        pump.join().unwrap();
        let got = r.read_new().unwrap();
        let logs: Vec<&str> = got.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(logs, ["one\n", "two\n", "no newline"]);
        assert!(got
            .iter()
            .all(|e| e.stream == "stderr" && e.time.ends_with('Z')));
        assert!(r.read_new().unwrap().is_empty());
        w.write("stdout", b"later\n").unwrap();
        assert_eq!(r.read_new().unwrap()[0].log, "later\n");
        assert_eq!(tail(&path, Some(1)).unwrap()[0].log, "later\n");
        assert_eq!(tail(&path, None).unwrap().len(), 4);
    }

    #[test]
    fn formats_times_and_frames() {
        assert_eq!(
            rfc3339_nanos(1_700_000_000_000_000_123),
            "2023-11-14T22:13:20.000000123Z"
        );
        assert_eq!(frame("stderr", b"hi"), [2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
