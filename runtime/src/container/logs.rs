//! Container logs in the format of Docker's json-file driver: one JSON
//! object per line, `{"log":"text\n","stream":"stdout","time":"RFC 3339"}`,
//! appended by the container's monitor as its output arrives, and rotated
//! as the driver's `max-size` and `max-file` options ask ([`Rotation`]):
//! `log.json` is the current file, `log.json.1` the one before it, and so
//! on.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead as _, Read as _, Seek as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
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

/// Seconds since the epoch of an RFC 3339 UTC time (`...Z`; offsets are
/// not read), with its fraction of a second in nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let (clock, fraction) = match time.split('+').next()?.split_once('.') {
        Some((c, f)) => (c, f),
        None => (time.split('+').next()?, ""),
    };
    let mut t = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(9).collect();
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some((days * 86400 + hh * 3600 + mm * 60 + ss, nanos))
}

/// A `--since`/`--until` time as Docker takes it, in ns since the epoch:
/// an RFC 3339 time, a Unix timestamp (seconds, with an optional
/// fraction), or a duration back from `now_ns` (`10m`, `1.5h`, `30s`).
pub fn parse_time(s: &str, now_ns: u64) -> Result<u64, String> {
    let s = s.trim();
    if let Some((secs, nanos)) = parse_rfc3339(s) {
        return u64::try_from(secs)
            .map(|secs| secs * 1_000_000_000 + u64::from(nanos))
            .map_err(|_| format!("time {s:?} is before 1970"));
    }
    // Seconds and up to nine digits of fraction, read exactly (as a float
    // they would lose the nanoseconds the docker CLI sends).
    let (secs, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if !secs.is_empty() && digits(secs) && digits(fraction) && fraction.len() <= 9 {
        let secs: u64 = secs.parse().map_err(|_| format!("invalid time {s:?}"))?;
        let nanos: u64 = format!("{fraction:0<9}").parse().unwrap_or(0);
        return Ok(secs * 1_000_000_000 + nanos);
    }
    crate::exec::parse_duration(s)
        .map(|d| now_ns.saturating_sub(d.as_nanos() as u64))
        .map_err(|_| {
            format!("invalid time {s:?}: an RFC 3339 time, a Unix timestamp or a duration (10m)")
        })
}

/// Which entries of a log [`Containers::read_log`](super::Containers::read_log)
/// gives: the last `tail` (all for None) of those inside `window`, then,
/// with `follow`, those that come until the container stops or one is
/// past the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query {
    /// Only the last N of the entries already there.
    pub tail: Option<usize>,
    /// Only the entries logged between two times.
    pub window: Window,
    /// Go on with new entries while the container runs.
    pub follow: bool,
}

/// The entries between two times (`logs --since/--until`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Entries from this time on (ns since the epoch).
    pub since: Option<u64>,
    /// Entries up to this time.
    pub until: Option<u64>,
}

impl Window {
    /// The window between `--since` and `--until` values, each read by
    /// [`parse_time`]; an error names the bound (`since: ...`).
    pub fn parse(since: Option<&str>, until: Option<&str>, now_ns: u64) -> Result<Window, String> {
        let time = |name: &str, v: Option<&str>| {
            v.map(|v| parse_time(v, now_ns))
                .transpose()
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(Window {
            since: time("since", since)?,
            until: time("until", until)?,
        })
    }

    /// Whether time `t` (ns since the epoch) is inside the window.
    pub fn includes(&self, t: u64) -> bool {
        self.since.is_none_or(|s| t >= s) && !self.is_past(t)
    }

    /// Whether time `t` comes after the window.
    pub fn is_past(&self, t: u64) -> bool {
        self.until.is_some_and(|u| t > u)
    }

    /// Whether `e` was logged inside the window (an entry whose time
    /// cannot be read is).
    pub fn contains(&self, e: &Entry) -> bool {
        e.time_ns().is_none_or(|t| self.includes(t))
    }

    /// Whether `e` comes after the window: following can stop.
    pub fn passed(&self, e: &Entry) -> bool {
        e.time_ns().is_some_and(|t| self.is_past(t))
    }
}

impl Entry {
    /// Its text, after its time and a space with `timestamps` (`logs -t`).
    pub fn text(&self, timestamps: bool) -> String {
        if timestamps {
            format!("{} {}", self.time, self.log)
        } else {
            self.log.clone()
        }
    }

    /// When it was logged, in ns since the epoch (None if unreadable).
    pub fn time_ns(&self) -> Option<u64> {
        let (secs, nanos) = parse_rfc3339(&self.time)?;
        Some(u64::try_from(secs).ok()? * 1_000_000_000 + u64::from(nanos))
    }
}

/// How a container's log is rotated: the json-file driver's `--log-opt`
/// values `max-size` and `max-file`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// `max-size`: the current file is rotated before it would grow past
    /// this many bytes (never, without it).
    pub max_size: Option<u64>,
    /// `max-file`: files kept, the current one included (default 1: a
    /// full file is started afresh).
    pub max_files: u32,
}

impl Rotation {
    /// Reads Docker's json-file options (`max-size=10m`, `max-file=3`); any
    /// other option, or `max-file` without `max-size`, is an error naming
    /// it.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Rotation, String> {
        let mut r = Rotation {
            max_size: None,
            max_files: 1,
        };
        for (k, v) in options {
            match k.as_str() {
                "max-size" => {
                    r.max_size = Some(
                        crate::exec::parse_bytes(v)
                            .map_err(|e| format!("log option max-size: {e}"))?,
                    )
                }
                "max-file" => {
                    r.max_files = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("log option max-file: {v:?} is not a number of at least 1")
                    })?
                }
                other => {
                    return Err(format!(
                        "unknown log option {other:?} for the json-file log driver: \
                         max-size and max-file are supported"
                    ))
                }
            }
        }
        if r.max_files > 1 && r.max_size.is_none() {
            return Err("log option max-file needs max-size".into());
        }
        Ok(r)
    }
}

/// `path` with `.n` appended: the `n`-th newest rotated file.
pub(crate) fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Appends entries to a container's log; shared by its stream readers.
#[derive(Debug, Clone)]
pub struct LogWriter {
    current: Arc<Mutex<Current>>,
}

/// The file being appended to (opened at the first entry, so a container
/// that writes nothing has no log file), and how full it is.
#[derive(Debug)]
struct Current {
    file: Option<File>,
    size: u64,
    path: PathBuf,
    rotation: Rotation,
}

impl Current {
    /// Moves the full file aside (`path.1`, older ones one further, the
    /// oldest beyond `max-file` dropped) and starts a new one. The new
    /// file replaces the full one in one rename, so `path` always exists
    /// for readers that open it.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.max_files.max(1);
        if keep > 1 {
            remove_if_there(&rotated(&self.path, keep - 1))?;
            for n in (1..keep - 1).rev() {
                match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::hard_link(&self.path, rotated(&self.path, 1))?;
        }
        let mut fresh = self.path.as_os_str().to_owned();
        fresh.push(".new");
        let fresh = PathBuf::from(fresh);
        // (One a crash left behind is not ours to append to.)
        remove_if_there(&fresh)?;
        let file = fs_err::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&fresh)?
            .into_parts()
            .0;
        std::fs::rename(&fresh, &self.path)?;
        self.file = Some(file);
        self.size = 0;
        Ok(())
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `path` opened to append, made if it is not there.
pub(crate) fn append_to(path: &Path) -> io::Result<File> {
    Ok(fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .into_parts()
        .0)
}

impl LogWriter {
    /// A writer appending to `path` (made at the first entry, if it is
    /// not there), rotating it as `rotation` says.
    pub fn open(path: &Path, rotation: Rotation) -> LogWriter {
        LogWriter {
            current: Arc::new(Mutex::new(Current {
                file: None,
                size: 0,
                path: path.to_owned(),
                rotation,
            })),
        }
    }

    /// Appends one entry, in a single write (after rotating the file if
    /// the entry would take it past `max-size`).
    pub fn write(&self, stream: &str, text: &[u8]) -> io::Result<()> {
        let entry = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: stream.to_owned(),
            time: rfc3339_nanos(super::now_ns()),
        };
        let mut line = serde_json::to_vec(&entry).expect("serialisable");
        line.push(b'\n');
        let mut guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let current = &mut *guard;
        if current.file.is_none() {
            let file = append_to(&current.path)?;
            current.size = file.metadata()?.len();
            current.file = Some(file);
        }
        if let Some(max) = current.rotation.max_size {
            if current.size > 0 && current.size + line.len() as u64 > max {
                current.rotate()?;
            }
        }
        current.file.as_mut().expect("opened").write_all(&line)?;
        current.size += line.len() as u64;
        Ok(())
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

/// A container's log read entry by entry ([`JsonLines`] of [`Entry`]).
pub type LogReader = JsonLines<Entry>;

/// Reads a file of JSON lines (a log, the event journal) from a position,
/// object by object, as it grows, through its rotations: `PATH.1` is the
/// file before `PATH`, `PATH.2` the one before that. Writers write whole
/// lines and, once a file is renamed away, no longer write to it.
#[derive(Debug)]
pub struct JsonLines<T> {
    /// The log's current file.
    path: PathBuf,
    /// The file being read (none before a log's first entry), and its
    /// inode.
    file: Option<io::BufReader<File>>,
    inode: u64,
    /// Rotated files still to read after this one, oldest first (the
    /// current file last).
    next: VecDeque<(File, u64)>,
    partial: Vec<u8>,
    of: std::marker::PhantomData<fn() -> T>,
}

impl<T: serde::de::DeserializeOwned> JsonLines<T> {
    /// Reads the file at `path` from its start (its oldest rotated file
    /// first), or only what is appended from now on.
    pub fn open(path: &Path, from_end: bool) -> io::Result<JsonLines<T>> {
        let open = |p: &Path| -> io::Result<(File, u64)> {
            let f = fs_err::File::open(p)?.into_parts().0;
            let inode = f.metadata()?.ino();
            Ok((f, inode))
        };
        // The current file first: a rotation meanwhile makes it `.1`,
        // which is then seen as the same inode and not read twice.
        let (mut current, inode) = match open(path) {
            Ok(current) => current,
            // Nothing written yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(JsonLines {
                    path: path.to_owned(),
                    file: None,
                    inode: 0,
                    next: VecDeque::new(),
                    partial: Vec::new(),
                    of: std::marker::PhantomData,
                })
            }
            Err(e) => return Err(e),
        };
        let mut files = VecDeque::new();
        if from_end {
            current.seek(io::SeekFrom::End(0))?;
        } else {
            let mut n = 1;
            loop {
                match open(&rotated(path, n)) {
                    Ok((f, i)) if i != inode => files.push_front((f, i)),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(e),
                }
                n += 1;
            }
        }
        files.push_back((current, inode));
        let (file, inode) = files.pop_front().expect("the current file");
        Ok(JsonLines {
            path: path.to_owned(),
            file: Some(io::BufReader::new(file)),
            inode,
            next: files,
            partial: Vec::new(),
            of: std::marker::PhantomData,
        })
    }

    /// The complete objects appended since the last call. A line still
    /// being written is kept for the next call; a corrupt line is skipped.
    pub fn read_new(&mut self) -> io::Result<Vec<T>> {
        let mut out = Vec::new();
        loop {
            self.read_to_end(&mut out)?;
            if let Some((file, inode)) = self.next.pop_front() {
                self.switch_to(file, inode);
                continue;
            }
            // On the current file: has it been rotated away?
            let now = match std::fs::metadata(&self.path) {
                Ok(m) => m.ino(),
                // Between a rotation's move and its new file.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            if now == self.inode {
                return Ok(out);
            }
            let file = match fs_err::File::open(&self.path) {
                Ok(f) => f.into_parts().0,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            let inode = file.metadata()?.ino();
            // What the writer appended before moving on is in the old
            // file, complete now.
            self.read_to_end(&mut out)?;
            self.switch_to(file, inode);
        }
    }

    fn switch_to(&mut self, file: File, inode: u64) {
        self.file = Some(io::BufReader::new(file));
        self.inode = inode;
        // The writer writes whole lines: a file ends with one.
        self.partial.clear();
    }

    /// The complete objects left in the file being read.
    fn read_to_end(&mut self, out: &mut Vec<T>) -> io::Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        loop {
            let n = file.read_until(b'\n', &mut self.partial)?;
            if n == 0 || self.partial.last() != Some(&b'\n') {
                return Ok(());
            }
            if let Ok(e) = serde_json::from_slice::<T>(&self.partial) {
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
        let w = LogWriter::open(&path, Rotation::default());
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
    fn rotation_keeps_max_file_files_and_readers_follow_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let options = |pairs: &[(&str, &str)]| {
            let m: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Rotation::from_options(&m)
        };
        let rotation = options(&[("max-size", "1k"), ("max-file", "3")]).unwrap();
        assert_eq!(rotation.max_size, Some(1024));
        let w = LogWriter::open(&path, rotation);
        let mut follower = LogReader::open(&path, false).unwrap();
        let mut followed = Vec::new();
        for i in 0..200 {
            w.write("stdout", format!("line {i}\n").as_bytes()).unwrap();
            if i % 7 == 0 {
                followed.extend(follower.read_new().unwrap());
            }
        }
        followed.extend(follower.read_new().unwrap());
        // A reader that kept up saw every entry once, in order.
        let seen: Vec<String> = followed.iter().map(|e| e.log.clone()).collect();
        let all: Vec<String> = (0..200).map(|i| format!("line {i}\n")).collect();
        assert_eq!(seen, all);
        // Three files at most, none past 1 KiB; a reader from the start
        // gets the newest entries, consecutive, up to the last.
        for n in 1..=2 {
            assert!(rotated(&path, n).exists());
        }
        assert!(!rotated(&path, 3).exists());
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 1024);
        }
        let kept: Vec<String> = tail(&path, None)
            .unwrap()
            .into_iter()
            .map(|e| e.log)
            .collect();
        assert!(kept.len() > 20 && kept.len() < 200, "{}", kept.len());
        assert_eq!(kept[..], all[200 - kept.len()..]);
        // One file: a full one starts afresh.
        let one = dir.path().join("one.json");
        let w = LogWriter::open(&one, options(&[("max-size", "100")]).unwrap());
        for i in 0..10 {
            w.write("stdout", format!("{i}\n").as_bytes()).unwrap();
        }
        assert!(!rotated(&one, 1).exists());
        assert_eq!(tail(&one, None).unwrap().last().unwrap().log, "9\n");
        // Bad options name themselves.
        for (pairs, needle) in [
            (&[("max-size", "ten")][..], "max-size"),
            (&[("max-file", "0"), ("max-size", "1m")][..], "max-file"),
            (&[("max-file", "2")][..], "needs max-size"),
            (&[("compress", "true")][..], "\"compress\""),
        ] {
            let e = options(pairs).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn times_parse_as_docker_takes_them_and_windows_select() {
        let now = 1_700_000_600 * 1_000_000_000;
        assert_eq!(
            parse_time("2023-11-14T22:13:20.000000123Z", now),
            Ok(1_700_000_000_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000 * 1_000_000_000)
        );
        assert_eq!(
            parse_time("1700000000.5", now),
            Ok(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_time("1700000000.000000123", now),
            Ok(1_700_000_000_000_000_123)
        );
        assert_eq!(
            parse_time("1700000000", now),
            Ok(1_700_000_000 * 1_000_000_000)
        );
        assert_eq!(parse_time("10m", now), Ok(now - 600 * 1_000_000_000));
        assert!(parse_time("yesterday", now)
            .unwrap_err()
            .contains("invalid time"));
        let at = |ns: u64| Entry {
            log: "x\n".into(),
            stream: "stdout".into(),
            time: rfc3339_nanos(ns),
        };
        let w = Window {
            since: Some(100_000_000_000),
            until: Some(200_000_000_000),
        };
        assert!(!w.contains(&at(99_999_999_999)) && !w.passed(&at(99_999_999_999)));
        assert!(w.contains(&at(100_000_000_000)) && w.contains(&at(200_000_000_000)));
        assert!(!w.contains(&at(200_000_000_001)) && w.passed(&at(200_000_000_001)));
        assert!(Window::default().contains(&at(5)));
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
