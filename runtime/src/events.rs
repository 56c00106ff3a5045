//! The event journal: what happened to containers and images, as
//! `docker events` reports it, written by whichever wharf process did it
//! (the CLI, a monitor, the daemon) into one file of the store, so the
//! daemon's `GET /events` and `wharf events` see every change, including
//! those made without the daemon.
//!
//! Each event is one JSON line appended to `ROOT/wharf/events.json` with a
//! single `write` (`O_APPEND`), so lines of concurrent writers never
//! interleave. Past [`MAX_JOURNAL`] bytes the file is renamed to
//! `events.json.1` (the one before is dropped) and a new one begun;
//! [`JsonLines`] reads across the change. Recording is best effort: a
//! journal that cannot be written never fails the operation it reports.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::container::logs::{JsonLines, Window};
use crate::store::Store;

/// Size past which the journal starts a new file.
pub const MAX_JOURNAL: u64 = 1 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `container` or `image`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened: `create`, `start`, `die`, `kill`, `stop`, `pause`,
    /// `unpause`, `rename`, `destroy`; `tag`, `untag`, `pull`, `push`.
    pub action: String,
    /// The container id, or the image's manifest digest.
    pub id: String,
    /// Docker's attributes: `name`, `image`, `exitCode`, `signal`,
    /// `oldName`, the container's labels.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// When (ns since the epoch).
    pub time_nano: u64,
}

impl Event {
    /// An event of `kind` happening now.
    pub fn new(kind: &str, action: &str, id: &str) -> Event {
        Event {
            kind: kind.to_owned(),
            action: action.to_owned(),
            id: id.to_owned(),
            attributes: BTreeMap::new(),
            time_nano: crate::container::now_ns(),
        }
    }

    /// Adds an attribute.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Event {
        self.attributes.insert(key.to_owned(), value.into());
        self
    }

    /// The event as the Engine API sends it.
    pub fn docker_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": { "ID": self.id, "Attributes": self.attributes },
            "scope": "local",
            "time": self.time_nano / 1_000_000_000,
            "timeNano": self.time_nano,
        });
        // The fields of API versions before 1.22, which clients still read.
        if self.kind == "container" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            v["from"] = json!(self.attributes.get("image").cloned().unwrap_or_default());
        }
        v
    }

    /// The event as `docker events` prints it:
    /// `TIME container start ID (image=x, name=y)`.
    pub fn text(&self) -> String {
        let attrs: Vec<String> = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} {} {} {} ({})",
            crate::container::logs::rfc3339_nanos(self.time_nano),
            self.kind,
            self.action,
            self.id,
            attrs.join(", ")
        )
    }
}

/// The keys [`Filter`] knows.
pub const FILTER_KEYS: [&str; 6] = ["type", "event", "container", "image", "label", "scope"];

/// Docker's event filters.
pub type Filter = crate::filters::Filters<EventKeys>;

/// The filter keys of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKeys;

impl crate::filters::Keys for EventKeys {
    const KEYS: &'static [&'static str] = &FILTER_KEYS;
}

impl Filter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or("");
        self.all(|key, w| match key {
            "type" => e.kind == w,
            "event" => e.action == w,
            "container" => e.kind == "container" && (e.id.starts_with(w) || attr("name") == w),
            "image" => match e.kind.as_str() {
                "container" => attr("image") == w,
                _ => e.id == w || attr("name") == w,
            },
            "label" => crate::filters::label_matches(&e.attributes, w),
            "scope" => w == "local",
            _ => false,
        })
    }
}

/// The journal of one store.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal of `store`.
    pub fn of(store: &Store) -> Journal {
        Journal {
            path: store.root().join("wharf/events.json"),
        }
    }

    /// Appends `event`; a failure is logged, not returned.
    pub fn record(&self, event: &Event) {
        if let Err(e) = self.append(event) {
            tracing::debug!("event journal {}: {e}", self.path.display());
        }
    }

    fn append(&self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).expect("serialisable");
        line.push(b'\n');
        let size = {
            // Writers share the lock, a rename takes it alone: once the
            // file has been renamed, nobody writes to it any more.
            let _shared = self.lock(false)?;
            let mut f = self.open_file()?;
            f.write_all(&line)?;
            f.metadata()?.len()
        };
        if size > MAX_JOURNAL {
            let _alone = self.lock(true)?;
            // Whoever renames first starts the next file.
            if std::fs::metadata(&self.path)?.len() > MAX_JOURNAL {
                std::fs::rename(&self.path, crate::container::logs::rotated(&self.path, 1))?;
            }
        }
        Ok(())
    }

    /// The current file, opened to append, made when missing: private as
    /// the containers' own records are (names, labels and images are the
    /// daemon socket's to tell).
    fn open_file(&self) -> io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
    }

    fn lock(&self, exclusive: bool) -> io::Result<crate::store::StoreLock> {
        let path = self.path.with_extension("lock");
        if exclusive {
            crate::store::StoreLock::exclusive(&path)
        } else {
            crate::store::StoreLock::shared(&path)
        }
    }

    /// Reads the events recorded inside `window`, oldest first, and
    /// returns them with a reader of those to come.
    pub fn since(&self, window: &Window) -> io::Result<(Vec<Event>, JsonLines<Event>)> {
        let mut reader = self.reader(false)?;
        let mut events: Vec<Event> = reader.read_new()?;
        events.retain(|e| window.includes(e.time_nano));
        Ok((events, reader))
    }

    /// A reader of the journal from its start (`.1` first), or of what is
    /// recorded from now on.
    fn reader(&self, from_end: bool) -> io::Result<JsonLines<Event>> {
        // No rename while the reader opens the current file and `.1`.
        let _shared = self.lock(false)?;
        self.open_file()?;
        JsonLines::open(&self.path, from_end)
    }

    /// Replays the events of `window` and follows new ones until it has
    /// passed, handing each that `filter` matches to `each`. A window
    /// without bounds replays nothing of the past; one with only `until`
    /// replays from the start, as Docker. Returns when `each` returns
    /// false, or `gone()` (checked while nothing happens: a client that
    /// left).
    pub fn watch(
        &self,
        window: &Window,
        filter: &Filter,
        mut each: impl FnMut(&Event) -> bool,
        gone: impl Fn() -> bool,
    ) -> io::Result<()> {
        let (past, mut reader) = match (window.since, window.until) {
            (None, None) => (Vec::new(), self.reader(true)?),
            (since, until) => self.since(&Window {
                since: since.or(Some(0)),
                until,
            })?,
        };
        let mut handle = |events: &[Event]| -> bool {
            events
                .iter()
                .all(|e| !window.is_past(e.time_nano) && (!filter.matches(e) || each(e)))
        };
        if !handle(&past) {
            return Ok(());
        }
        while !window.is_past(crate::container::now_ns()) && !gone() {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if !handle(&reader.read_new()?) {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn recorded_events_are_read_and_followed_across_a_rename() {
        let (_dir, store) = store();
        let journal = Journal::of(&store);
        let (past, mut follower) = journal.since(&Window::default()).unwrap();
        assert!(past.is_empty());
        journal.record(&Event::new("container", "create", "abc").with("name", "x"));
        let new = follower.read_new().unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].attributes["name"], "x");
        // Fill past the limit: the file is renamed, then one more event.
        let big = Event::new("container", "start", "abc").with("pad", "p".repeat(4096));
        let mut written = 0;
        while std::fs::metadata(store.root().join("wharf/events.json")).is_ok() {
            journal.record(&big);
            written += 1;
        }
        journal.record(&Event::new("container", "die", "abc"));
        let followed = follower.read_new().unwrap();
        assert_eq!(
            followed.len(),
            written + 1,
            "nothing lost across the rename"
        );
        assert_eq!(followed.last().unwrap().action, "die");
        let (all, _) = journal.since(&Window::default()).unwrap();
        assert_eq!(all.len(), written + 2, "the rotated file and the new one");
        let later = Window {
            since: Some(crate::container::now_ns() + 1),
            until: None,
        };
        let (none, _) = journal.since(&later).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn filters_match_as_docker_events_filters() {
        let e = Event::new("container", "die", "abcdef")
            .with("name", "web")
            .with("image", "probe")
            .with("tier", "front");
        let mut f = Filter::default();
        f.add("type=container").unwrap();
        f.add("event=start").unwrap();
        f.add("event=die").unwrap();
        f.add("container=web").unwrap();
        f.add("label=tier=front").unwrap();
        assert!(f.matches(&e));
        f.add("image=other").unwrap();
        assert!(!f.matches(&e));
        let mut g = Filter::default();
        g.add("container=abc").unwrap();
        assert!(g.matches(&e), "an id prefix");
        assert!(!g.matches(&Event::new("image", "tag", "abc")));
        assert!(Filter::default().add("network=x").is_err());
    }
}
