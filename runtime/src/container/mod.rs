//! Containers that outlive the command that started them: `create`,
//! `start`, `stop`, `kill`, `rm`, `wait`, `logs`, and the per-container
//! monitor process that owns a running container (spec/lifecycle.md).
//!
//! Everything about a container lives in `ROOT/wharf/containers/<id>/`:
//! its configuration (`config.json`, written once), its state
//! (`state.json`, rewritten in place under a lock) and its log
//! (`log.json`, JSON lines as Docker's json-file driver writes them, made
//! at the first line). A container runs inside a monitor process
//! ([`run_monitor`]) started by [`Containers::start`] from whichever
//! program the host names ([`MonitorCommand`]); the monitor holds a lock
//! for its whole life and another while the container's process runs,
//! both bytes of `state.json`, so any process can tell, without
//! trusting a pid, whether a container still runs.

pub mod docker;
mod host;
pub mod logs;
mod monitor;
pub(crate) mod procfs;
mod server;
pub mod stats;
pub mod top;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::{ByteLock, Store, StoreLock};

pub use host::run_guest_host;
pub use monitor::run_monitor;
pub use server::run_monitor_server;

/// Errors of container management.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has this id, id prefix or name.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An id prefix matches several containers.
    #[error("container id prefix {0} is ambiguous: give more digits")]
    Ambiguous(String),
    /// The name is taken.
    #[error("the container name {name:?} is already in use by container {id}: remove or rename that container")]
    NameInUse {
        /// The name asked for.
        name: String,
        /// The container that has it.
        id: String,
    },
    /// A name Docker would not accept.
    #[error("invalid container name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    InvalidName(String),
    /// The container must be running for this.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The container must be stopped for this.
    #[error("container {0} is running: stop it first, or remove it with force")]
    Running(String),
    /// The container is already running.
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    /// The container is paused (for `pause` again).
    #[error("container {0} is already paused")]
    AlreadyPaused(String),
    /// The container is not paused (for `unpause`).
    #[error("container {0} is not paused")]
    NotPaused(String),
    /// A bad option value in the container's configuration.
    #[error("{0}")]
    Invalid(String),
    /// The monitor process could not be started or failed.
    #[error("container {id}: {message}")]
    Start {
        /// The container.
        id: String,
        /// What went wrong.
        message: String,
        /// The exit code recorded for the failed start (Docker's 125,
        /// 126, 127).
        code: i32,
    },
    /// No program to start monitors with was given.
    #[error("this host cannot start containers: it named no monitor program")]
    NoMonitor,
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A run option was invalid.
    #[error(transparent)]
    Run(#[from] crate::exec::RunError),
    /// A container file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Result<T, E = ContainerError> = std::result::Result<T, E>;

/// A restart policy (`--restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        /// Most restarts (0: unlimited).
        max: u32,
    },
    /// Restart after every exit, unless stopped by hand.
    Always,
    /// As `Always`; differs only in what a daemon start does.
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = ContainerError;
    fn from_str(s: &str) -> Result<RestartPolicy> {
        let bad = || {
            ContainerError::Invalid(format!(
                "invalid restart policy {s:?}: use no, on-failure[:N], always or unless-stopped"
            ))
        };
        Ok(match s.split_once(':') {
            None | Some((_, "")) => match s.trim_end_matches(':') {
                "" | "no" => RestartPolicy::No,
                "on-failure" => RestartPolicy::OnFailure { max: 0 },
                "always" => RestartPolicy::Always,
                "unless-stopped" => RestartPolicy::UnlessStopped,
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => RestartPolicy::OnFailure {
                max: n.parse().map_err(|_| bad())?,
            },
            Some(_) => return Err(bad()),
        })
    }
}

impl RestartPolicy {
    /// Docker's name for the policy.
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// Whether a container that exited with `code` after `restarts`
    /// restarts is started again.
    pub fn restarts(&self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => code != 0 && (*max == 0 || restarts < *max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// What a container runs and with what: fixed at creation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// The image as the user named it.
    pub image: String,
    /// The image's config digest (its id).
    pub image_id: String,
    /// The manifest digest the container was created from.
    pub manifest: String,
    /// `os/architecture` of the image.
    pub platform: String,
    /// A wasm image (else Linux).
    pub wasm: bool,
    /// Arguments replacing the image's CMD.
    pub cmd: Option<Vec<String>>,
    /// A program replacing the image's ENTRYPOINT.
    pub entrypoint: Option<String>,
    /// `KEY=VALUE` pairs applied over the image's environment.
    pub env: Vec<String>,
    /// `HOST:GUEST[:ro]` mappings.
    pub mounts: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Wall-clock limit of each run, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Instruction budget of each run (wasm).
    pub fuel: Option<u64>,
    /// `-p` values.
    pub publish: Vec<String>,
    /// `--network` value.
    pub network: Option<String>,
    /// `--allow-net` values.
    pub allow_net: Vec<String>,
    /// Host name (Linux; default: the short id).
    pub hostname: Option<String>,
    /// `-u` value (Linux).
    pub user: Option<String>,
    /// `--cpus` (Linux).
    pub cpus: Option<f64>,
    /// `--pids-limit` (Linux).
    pub pids_limit: Option<i64>,
    /// `--init`: an init as PID 1 (Linux; a wasm guest has no processes
    /// to reap).
    pub init: bool,
    /// What happens when the container exits.
    pub restart: RestartPolicy,
    /// Remove the container when it exits (`--rm`).
    pub auto_remove: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `-t` (`Tty`): the process runs on a pseudo-terminal, whose output
    /// is logged as one raw stream (`stdout`); clients resize it.
    pub tty: bool,
    /// The terminal's size (rows, columns) when the process starts
    /// (`HostConfig.ConsoleSize`: the client's own), before any resize.
    pub console_size: Option<(u16, u16)>,
    /// `-i` (`OpenStdin`): the process reads what clients attached with
    /// stdin write into the container's `stdin` fifo.
    pub open_stdin: bool,
    /// `StdinOnce`: the process's input ends when the first attached
    /// client closes its input (what `docker run -i` asks for).
    pub stdin_once: bool,
    /// Signal `stop` sends first (default SIGTERM).
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u64>,
    /// The command line the container runs, as resolved at creation from
    /// the image and the overrides (what `inspect` shows as Path/Args).
    pub argv: Vec<String>,
    /// The json-file log driver's options as given (`max-size`,
    /// `max-file`): see [`logs::Rotation`].
    pub log_options: BTreeMap<String, String>,
}

impl ContainerConfig {
    /// How this container's log is rotated.
    pub fn log_rotation(&self) -> Result<logs::Rotation> {
        logs::Rotation::from_options(&self.log_options).map_err(ContainerError::Invalid)
    }

    /// The run options of one run of this container.
    pub fn run_options(&self) -> Result<crate::exec::RunOptions> {
        use crate::exec;
        let mounts = self
            .mounts
            .iter()
            .map(|m| m.parse::<exec::Mount>())
            .collect::<Result<Vec<_>, _>>()?;
        let env = self
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        Ok(exec::RunOptions {
            args: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env,
            mounts,
            workdir: self.workdir.clone(),
            memory: self.memory,
            timeout: self.timeout_ms.map(Duration::from_millis),
            fuel: self.fuel,
            stdin: self.open_stdin,
            network: exec::NetworkPolicy::new(
                self.network.as_deref(),
                &self.publish,
                &self.allow_net,
            )
            .map_err(exec::RunError::from)?,
            ..exec::RunOptions::default()
        })
    }

    /// The Linux options of a run of container `id`.
    pub fn linux_options(&self, id: &str) -> crate::exec::linux::LinuxOptions {
        crate::exec::linux::LinuxOptions {
            hostname: Some(self.hostname.clone().unwrap_or_else(|| short_id(id))),
            user: self.user.clone(),
            host_network: self.network.as_deref() == Some("host"),
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            init: self.init,
            id: Some(short_id(id)),
            on_start: None,
            rw: None,
            terminal: None,
        }
    }

    /// The signal `stop` sends first.
    pub fn stop_signal(&self) -> Result<i32> {
        match &self.stop_signal {
            None => Ok(libc::SIGTERM),
            Some(s) => parse_signal(s),
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started.
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Exited; its restart policy will start it again.
    Restarting,
    /// Exited (or stopped, or killed).
    Exited,
    /// Its monitor died and its state could not be recorded normally.
    Dead,
}

impl Status {
    /// Docker's name for the status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// A container's state, as recorded in `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Where it is in its life.
    pub status: Status,
    /// The monitor's pid while it runs (0 otherwise).
    pub pid: u32,
    /// The last exit code.
    pub exit_code: i32,
    /// Why the last start or run failed, if it did.
    pub error: String,
    /// When it last started (ns since the epoch; 0: never).
    pub started_at: u64,
    /// When it last exited (ns since the epoch; 0: never).
    pub finished_at: u64,
    /// Restarts by its policy since the last start by hand.
    pub restart_count: u32,
    /// Stopped or killed by hand: the restart policy does not apply.
    pub stop_requested: bool,
    /// Suspended by `pause`: it holds for the run that was paused, and
    /// is cleared when the next run starts (see [`State::is_paused`]).
    pub paused: bool,
    /// Run by a guest host (`pid` is the host's, shared with other
    /// containers): signals and pauses go through its control socket.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hosted: bool,
}

/// The locks of a container: each is one byte of its `state.json`
/// ([`ByteLock`]), so a container needs no lock files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Held by its monitor (or guest host) for as long as it owns the
    /// container: free means nobody will record its exit.
    Monitor = 0,
    /// Held by its monitor while the container's process runs; waiters
    /// take it shared.
    Run = 1,
    /// Held while `state.json` is rewritten (shared while it is read), so
    /// a reader never sees half a record.
    State = 2,
}

/// The lock files of containers whose monitor an older wharf started
/// (before [`Hold`]): still honoured, so an upgrade does not see them as
/// dead while they run.
const LEGACY_MONITOR_LOCK: &str = "monitor.lock";
const LEGACY_RUN_LOCK: &str = "run.lock";

/// Longest `error` a state record keeps, so that a record stays far
/// inside one page and its rewrite is a single write a crash of the
/// writing process cannot tear.
const MAX_STATE_ERROR: usize = 1024;

impl State {
    /// Paused now: the run that was paused still runs.
    pub fn is_paused(&self) -> bool {
        self.paused && self.status == Status::Running
    }

    /// Running or about to run again.
    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Restarting)
    }
}

/// A container: identity, configuration and current state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Creation time (ns since the epoch).
    pub created: u64,
    /// What it runs.
    pub config: ContainerConfig,
    /// Its state (not stored in `config.json`).
    #[serde(skip)]
    pub state: State,
}

/// The first 12 digits of an id, as Docker shows ids.
pub fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// How [`Containers::wait`] decides that the wait is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// The container is not running (at once if it is not).
    NotRunning,
    /// The container's next exit after this call.
    NextExit,
    /// The container has been removed (after its exit, with `--rm`).
    Removed,
}

impl std::str::FromStr for WaitCondition {
    type Err = ContainerError;
    fn from_str(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            _ => Err(ContainerError::Invalid(format!(
                "invalid wait condition {s:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

/// The program (and leading arguments) that hosts container processes.
/// It must understand four subcommands after `args`: `container-monitor
/// ID` (runs [`run_monitor`]), `monitor-server` (runs
/// [`run_monitor_server`]), `exec [-i] [-e K=V]... [-w DIR] [-u USER]
/// -- ID CMD...` (runs [`Containers::exec`]) and `build` with the options
/// [`Containers::build_command`] gives (runs [`crate::build::build`]). The
/// CLI names itself: `wharf-full --root ROOT`.
#[derive(Debug, Clone)]
pub struct MonitorCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the subcommand.
    pub args: Vec<OsString>,
}

impl MonitorCommand {
    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args);
        c
    }
}

/// The containers of one store.
#[derive(Debug, Clone)]
pub struct Containers {
    store: Store,
    dir: PathBuf,
    monitor: Option<MonitorCommand>,
    /// Forks monitors, when the host started one.
    server: Option<std::sync::Arc<server::MonitorServer>>,
    /// Runs plain wasm containers, when the host started one.
    host: Option<std::sync::Arc<server::MonitorServer>>,
}

/// Opens the fifo at `path` for writing without waiting for a reader:
/// None while nobody reads it. The file blocks on writes, as a pipe does.
fn open_fifo_writer(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use rustix::fs::OFlags;
    match rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => {
            rustix::fs::fcntl_setfl(&fd, OFlags::WRONLY)?;
            Ok(Some(std::fs::File::from(fd)))
        }
        Err(rustix::io::Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The store lease that keeps container `id`'s image: `container-<id>`.
fn lease_holder(id: &str) -> String {
    format!("container-{id}")
}

/// The container a lease holder names, if it is a container's.
fn lease_holder_id(holder: &str) -> Option<&str> {
    holder.strip_prefix("container-")
}

/// A lease holder as people read it: "container <short id>" for a
/// container's.
pub(crate) fn lease_holder_label(holder: &str) -> String {
    match lease_holder_id(holder) {
        Some(id) => format!("container {}", short_id(id)),
        None => holder.to_owned(),
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Containers {
    /// The containers of `store` (creating their directory if needed).
    pub fn open(store: &Store) -> Result<Containers> {
        let dir = store.root().join("wharf/containers");
        fs_err::create_dir_all(dir.join(".names"))?;
        Ok(Containers {
            store: store.clone(),
            dir,
            monitor: None,
            server: None,
            host: None,
        })
    }

    /// Names the program [`start`](Self::start) runs monitors with.
    pub fn with_monitor(mut self, monitor: MonitorCommand) -> Containers {
        self.monitor = Some(monitor);
        self
    }

    /// Starts a monitor server ([`run_monitor_server`]) of the monitor
    /// program, from which [`start`](Self::start) then forks monitors
    /// instead of executing the program for each (for hosts that start
    /// many containers: the daemon). It ends with the last clone of these
    /// `Containers`. Should the server fail or go away, starts execute the
    /// program as before.
    pub fn with_monitor_server(mut self) -> Result<Containers> {
        self.server = Some(self.start_helper("monitor-server")?);
        Ok(self)
    }

    /// Starts a guest host ([`run_guest_host`]) of the monitor program,
    /// which then runs the plain wasm containers [`start`](Self::start)
    /// starts, each on a thread rather than in a monitor process of its
    /// own (decision 0013). It ends once the last clone of these
    /// `Containers` is gone and its guests have ended. Should it fail or
    /// go away, those containers get monitors as the others do.
    pub fn with_guest_host(mut self) -> Result<Containers> {
        self.host = Some(self.start_helper("guest-host")?);
        Ok(self)
    }

    /// Starts `subcommand` of the monitor program as a helper that takes
    /// start requests ([`server::MonitorServer`]).
    fn start_helper(&self, subcommand: &str) -> Result<std::sync::Arc<server::MonitorServer>> {
        let monitor = self.monitor.as_ref().ok_or(ContainerError::NoMonitor)?;
        Ok(std::sync::Arc::new(server::MonitorServer::start(
            monitor, subcommand,
        )?))
    }

    /// The store the containers' images come from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Bytes container `id`'s files take: its log, its state and a Linux
    /// container's writable layer.
    pub fn size(&self, id: &str) -> u64 {
        crate::store::dir_size(&self.dir(id))
    }

    /// Opens container `id`'s input for writing (what `attach` with stdin
    /// does): waits until its process is there to read it, as a client
    /// attaches before it starts. Fails if the container was made without
    /// `-i`, or stops (or never starts) meanwhile.
    pub fn attach_stdin(&self, id: &str) -> Result<std::fs::File> {
        let path = self.dir(id).join("stdin");
        if !path.exists() {
            return Err(ContainerError::Invalid(format!(
                "container {} was not created with -i (OpenStdin): it takes no input",
                short_id(id)
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(f) = open_fifo_writer(&path)? {
                return Ok(f);
            }
            let state = self.refresh(id)?;
            let started = state.started_at > 0 || state.is_running();
            if (started && !state.is_running() && !self.monitor_alive(id))
                || Instant::now() >= deadline
            {
                return Err(ContainerError::NotRunning(id.to_owned()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sets the window size of container `id`'s terminal, as a client
    /// does when its own window changes (`POST /containers/{id}/resize`).
    /// A running container without a terminal has nothing to resize.
    pub fn resize(&self, what: &str, rows: u16, cols: u16) -> Result<()> {
        let id = self.resolve(what)?;
        let path = self.dir(&id).join("resize");
        if !path.exists() {
            return match self.refresh(&id)?.is_running() {
                true => Ok(()),
                false => Err(ContainerError::NotRunning(id)),
            };
        }
        // The monitor holds the fifo open while the container runs.
        match open_fifo_writer(&path)? {
            Some(mut f) => {
                use std::io::Write as _;
                f.write_all(format!("{rows} {cols}\n").as_bytes())?;
                Ok(())
            }
            None => Err(ContainerError::NotRunning(id)),
        }
    }

    /// The json-file log of container `id`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("log.json")
    }

    /// A reader of container `id`'s log, from its start or (`from_end`)
    /// from now on. A log is made at its first line; a reader that comes
    /// before it (an attached client) makes it, so that the file it holds
    /// is the one written and survives an `--rm` removal.
    pub fn log_reader(&self, id: &str, from_end: bool) -> Result<logs::LogReader> {
        let path = self.log_path(id);
        match logs::append_to(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(id.to_owned()))
            }
            made => drop(made?),
        }
        Ok(logs::LogReader::open(&path, from_end)?)
    }

    /// Creates a container named `name` (or a generated name) running
    /// `config`. The image must be in the store; `config.image_id`,
    /// `manifest`, `platform` and `wasm` are filled in from it.
    pub fn create(
        &self,
        name: Option<&str>,
        platform: Option<&str>,
        mut config: ContainerConfig,
    ) -> Result<Container> {
        // The shared store lock keeps a collection from running between
        // the lookup and the lease.
        let store_lock = self.store.lock_shared()?;
        let tagged = self.store.lookup(&config.image)?;
        let image = self.store.load_image(&tagged.descriptor, platform)?;
        config.image_id = image.config_digest.to_string();
        // The root the name points at (an index for multi-platform images;
        // `platform` selects from it again at each start).
        let manifest = crate::image::descriptor_digest(&tagged.descriptor)?;
        config.manifest = manifest.to_string();
        config.platform = image.platform();
        config.wasm = image.is_wasm();
        let process = image.process();
        config.argv = match &config.entrypoint {
            Some(e) => vec![e.clone()],
            None => process.entrypoint().clone().unwrap_or_default(),
        };
        config.argv.extend(
            config
                .cmd
                .clone()
                .or_else(|| {
                    // --entrypoint drops the image's CMD, as in Docker.
                    config
                        .entrypoint
                        .is_none()
                        .then(|| process.cmd().clone())
                        .flatten()
                })
                .unwrap_or_default(),
        );
        // Options are checked now, not at the first start.
        config.run_options()?;
        config.stop_signal()?;
        config.log_rotation()?;
        let id = random_id()?;
        // The record is the container's lease on its image (it names the
        // manifest: `Store::leases`). The store lock is held until the
        // container's directory is in place, so no collection runs between
        // the lookup and then.
        let named = match name {
            Some(n) => {
                let n = n.trim_start_matches('/');
                if valid_name(n) {
                    self.claim_name(n, &id).map(|()| n.to_owned())
                } else {
                    Err(ContainerError::InvalidName(n.to_owned()))
                }
            }
            None => self.generated_name(&id),
        };
        let name = named?;
        let container = Container {
            id: id.clone(),
            name: name.clone(),
            created: now_ns(),
            config,
            state: State::default(),
        };
        let made = (|| -> Result<()> {
            // Nobody sees the staging directory before its rename: its
            // files are written in place, each made durable before the
            // rename is.
            let staging = self.dir.join(format!(".new-{id}"));
            fs_err::create_dir(&staging)?;
            write_durable(
                &staging.join("config.json"),
                &serde_json::to_vec_pretty(&container).expect("serialisable"),
            )?;
            // Where attached clients' input and a terminal's new sizes
            // reach the monitor.
            for (fifo, wanted) in [
                ("stdin", container.config.open_stdin),
                ("resize", container.config.tty),
            ] {
                if wanted {
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        staging.join(fifo),
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(0o600),
                        0,
                    )
                    .map_err(std::io::Error::from)?;
                }
            }
            fs_err::rename(&staging, self.dir(&id))?;
            crate::store::sync_dir(&self.dir)?;
            Ok(())
        })();
        if let Err(e) = made {
            let _ = fs_err::remove_dir_all(self.dir.join(format!(".new-{id}")));
            let _ = fs_err::remove_file(self.dir.join(".names").join(&name));
            return Err(e);
        }
        drop(store_lock);
        self.record(&container, "create", &[]);
        Ok(container)
    }

    /// Records an event about `c` in the store's journal, with its name,
    /// image and labels as attributes (as Docker's).
    fn record(&self, c: &Container, action: &str, extra: &[(&str, String)]) {
        let mut e = crate::events::Event::new("container", action, &c.id);
        e.attributes = c.config.labels.clone();
        e.attributes.insert("name".into(), c.name.clone());
        e.attributes.insert("image".into(), c.config.image.clone());
        for (k, v) in extra {
            e.attributes.insert((*k).to_owned(), v.clone());
        }
        crate::events::Journal::of(&self.store).record(&e);
    }

    /// Records the events a state change makes: `start`, `die`, `pause`,
    /// `unpause`.
    fn record_change(&self, id: &str, before: &State, after: &State) {
        let mut actions: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
        if before.status == Status::Running && after.status != Status::Running {
            actions.push(("die", vec![("exitCode", after.exit_code.to_string())]));
        }
        if after.status == Status::Running
            && (before.status != Status::Running || before.started_at != after.started_at)
        {
            actions.push(("start", vec![]));
        }
        if !before.is_paused() && after.is_paused() {
            actions.push(("pause", vec![]));
        } else if before.is_paused() && !after.is_paused() && after.status == Status::Running {
            actions.push(("unpause", vec![]));
        }
        if actions.is_empty() {
            return;
        }
        if let Ok(c) = self.load_config(id) {
            for (action, extra) in actions {
                self.record(&c, action, &extra);
            }
        }
    }

    fn claim_name(&self, name: &str, id: &str) -> Result<()> {
        let path = self.dir.join(".names").join(name);
        match fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(id.as_bytes())?;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                // A name left behind by a creation that died half-way, or
                // the old name of a rename that did.
                let stale = !holder.is_empty()
                    && match self.load_config(&holder) {
                        Ok(c) => c.name != name,
                        Err(ContainerError::NotFound(_)) => true,
                        Err(_) => false,
                    };
                if stale {
                    // (Its remover may let it go first.)
                    match fs_err::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                        _ => return self.claim_name(name, id),
                    }
                }
                Err(ContainerError::NameInUse {
                    name: name.to_owned(),
                    id: holder,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn generated_name(&self, id: &str) -> Result<String> {
        const ADJECTIVES: [&str; 16] = [
            "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
            "nimble", "proud", "quiet", "swift", "tidy", "witty",
        ];
        const NOUNS: [&str; 16] = [
            "anchor", "barge", "buoy", "cargo", "dock", "ferry", "galley", "harbor", "keel",
            "mast", "pier", "quay", "rudder", "sail", "skiff", "tug",
        ];
        let b = hex::decode(&id[..8]).unwrap_or_default();
        for attempt in 0..4 {
            let name = format!(
                "{}_{}",
                ADJECTIVES[usize::from(b[0] ^ attempt) % 16],
                NOUNS[usize::from(b[1]) % 16]
            );
            let name = if attempt < 2 {
                name
            } else {
                format!("{name}_{}", &id[..6])
            };
            match self.claim_name(&name, id) {
                Ok(()) => return Ok(name),
                Err(ContainerError::NameInUse { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let name = format!("wharf_{}", short_id(id));
        self.claim_name(&name, id)?;
        Ok(name)
    }

    /// Every container, newest first, with its current state.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Containers are directories named by their ids; anything
            // else here is not one.
            if name.starts_with('.') || !entry.file_type()?.is_dir() {
                continue;
            }
            match self.load(&name) {
                Ok(c) => out.push(c),
                // Removed meanwhile.
                Err(ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.created));
        Ok(out)
    }

    /// The id of the container named by a full id, a unique id prefix or
    /// a name (with or without Docker's leading `/`).
    pub fn resolve(&self, what: &str) -> Result<String> {
        let what = what.trim_start_matches('/');
        if what.is_empty() {
            return Err(ContainerError::NotFound(what.to_owned()));
        }
        if what.len() == 64 && self.dir(what).join("config.json").exists() {
            return Ok(what.to_owned());
        }
        if let Ok(id) = std::fs::read_to_string(self.dir.join(".names").join(what)) {
            if self.dir(&id).join("config.json").exists() {
                return Ok(id);
            }
        }
        if what.bytes().all(|b| b.is_ascii_hexdigit()) && !what.contains('/') {
            let mut found = Vec::new();
            for entry in fs_err::read_dir(&self.dir)? {
                let n = entry?.file_name().to_string_lossy().into_owned();
                if n.starts_with(what) && !n.starts_with('.') {
                    found.push(n);
                }
            }
            match found.len() {
                1 => return Ok(found.remove(0)),
                0 => {}
                _ => return Err(ContainerError::Ambiguous(what.to_owned())),
            }
        }
        Err(ContainerError::NotFound(what.to_owned()))
    }

    /// The container named by `what` (see [`resolve`](Self::resolve)).
    pub fn get(&self, what: &str) -> Result<Container> {
        let id = self.resolve(what)?;
        self.load(&id)
    }

    /// Container `id` with its state brought up to date: a container
    /// recorded as running whose monitor is gone is recorded as dead.
    fn load(&self, id: &str) -> Result<Container> {
        let mut c = self.load_config(id)?;
        c.state = self.refresh(id)?;
        Ok(c)
    }

    /// Container `id` as `config.json` records it (its state not read).
    fn load_config(&self, id: &str) -> Result<Container> {
        let bytes = match std::fs::read(self.dir(id).join("config.json")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(id.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            ContainerError::Invalid(format!("container {id}: corrupt config.json: {e}"))
        })
    }

    /// Renames a container (running or not), as `docker rename`: the new
    /// name is claimed first, then recorded, then the old one let go, so a
    /// crash at any point leaves the container with one of the two (and
    /// a leftover name is taken back by whoever claims it next).
    pub fn rename(&self, what: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.trim_start_matches('/');
        if !valid_name(new_name) {
            return Err(ContainerError::InvalidName(new_name.to_owned()));
        }
        let id = self.resolve(what)?;
        // One rename of a container at a time.
        let _lock = StoreLock::exclusive_dir(&self.dir(&id))?;
        let mut c = self.load_config(&id)?;
        if c.name == new_name {
            return Err(ContainerError::Invalid(format!(
                "container {} is already named {new_name}",
                short_id(&id)
            )));
        }
        self.claim_name(new_name, &id)?;
        let old = std::mem::replace(&mut c.name, new_name.to_owned());
        let recorded = write_atomic(
            &self.dir(&id).join("config.json"),
            &serde_json::to_vec_pretty(&c).expect("serialisable"),
        );
        let release = if recorded.is_ok() { &old } else { new_name };
        let path = self.dir.join(".names").join(release);
        if std::fs::read_to_string(&path).is_ok_and(|holder| holder == id) {
            let _ = fs_err::remove_file(&path);
        }
        if recorded.is_ok() {
            self.record(&c, "rename", &[("oldName", old.clone())]);
        }
        recorded
    }

    /// The recorded state: none yet (no `state.json`, or an empty one)
    /// is a container never started; one that cannot be read (a host that
    /// went down while it was rewritten: state records are not synced) is
    /// a dead container that says so.
    fn read_state(&self, id: &str) -> Result<State> {
        let dir = self.dir(id);
        let file = match std::fs::File::open(dir.join("state.json")) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match dir.join("config.json").exists() {
                    true => Ok(State::default()),
                    false => Err(ContainerError::NotFound(id.to_owned())),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let lock = ByteLock::shared(file, Hold::State as u64)?;
        Ok(parse_state(&read_record(lock.file())?))
    }

    /// Reads the state; a "running" state whose monitor no longer holds its
    /// monitor lock is corrected (the monitor was killed, or the host
    /// went down).
    fn refresh(&self, id: &str) -> Result<State> {
        let state = self.read_state(id)?;
        if !state.is_running() || self.monitor_alive(id) {
            return Ok(state);
        }
        self.update(id, |s| {
            if s.is_running() {
                s.status = Status::Exited;
                if s.stop_requested {
                    s.exit_code = 128 + libc::SIGKILL;
                } else {
                    s.status = Status::Dead;
                    s.exit_code = 255;
                    s.error = "the container's monitor process ended unexpectedly".into();
                }
                s.pid = 0;
                s.hosted = false;
                s.finished_at = now_ns();
            }
        })
    }

    /// True while a monitor process owns container `id`.
    fn monitor_alive(&self, id: &str) -> bool {
        std::fs::File::open(self.dir(id).join("state.json"))
            .and_then(|f| ByteLock::is_held(&f, Hold::Monitor as u64))
            .unwrap_or(false)
            // A monitor of an older wharf, whose locks were files.
            || StoreLock::in_use(&self.dir(id).join(LEGACY_MONITOR_LOCK))
    }

    /// Waits for and takes lock `hold` of container `id`.
    pub(crate) fn hold(&self, id: &str, hold: Hold) -> Result<ByteLock> {
        Ok(ByteLock::exclusive(self.open_state(id)?, hold as u64)?)
    }

    /// Takes lock `hold` of container `id` unless someone holds it
    /// (`None`). Does not wait.
    pub(crate) fn try_hold(&self, id: &str, hold: Hold) -> Result<Option<ByteLock>> {
        Ok(ByteLock::try_exclusive(self.open_state(id)?, hold as u64)?)
    }

    /// Opens container `id`'s `state.json` to read and rewrite, making it
    /// (empty) if it is not there yet.
    fn open_state(&self, id: &str) -> Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt as _;
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir(id).join("state.json"))
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ContainerError::NotFound(id.to_owned()))
            }
            file => Ok(file?),
        }
    }

    /// Changes the state of `id` under a lock of its directory; returns the new
    /// state. A change that changes nothing writes nothing.
    pub(crate) fn update(&self, id: &str, change: impl FnOnce(&mut State)) -> Result<State> {
        let lock = self.hold(id, Hold::State)?;
        let record = read_record(lock.file())?;
        let mut state = parse_state(&record);
        let before = state.clone();
        change(&mut state);
        if state == before {
            return Ok(state);
        }
        if state.error.len() > MAX_STATE_ERROR {
            let mut end = MAX_STATE_ERROR;
            while !state.error.is_char_boundary(end) {
                end -= 1;
            }
            state.error.truncate(end);
        }
        // One write at the start of the file, padded to the old record's
        // length (JSON allows trailing spaces): the file never shrinks, so
        // no reader or crash sees a truncated one.
        let mut bytes = serde_json::to_vec(&state).expect("serialisable");
        if bytes.len() < record.len() {
            bytes.resize(record.len(), b' ');
        }
        std::os::unix::fs::FileExt::write_all_at(lock.file(), &bytes, 0)?;
        drop(lock);
        self.record_change(id, &before, &state);
        Ok(state)
    }

    /// Starts container `id` in a new monitor process and returns once it
    /// runs (or failed to start).
    pub fn start(&self, what: &str) -> Result<()> {
        let c = self.get(what)?;
        if c.state.is_running() {
            return Err(ContainerError::AlreadyRunning(c.id));
        }
        let monitor = self.monitor.as_ref().ok_or(ContainerError::NoMonitor)?;
        let dir = self.dir(&c.id);
        // The monitor writes one line once the container runs (or why it
        // could not start), then closes its end. A guest host says all in
        // that line; a monitor process writes what else goes wrong early
        // to `monitor.log`.
        let hosted = match self.host.as_ref().filter(|_| host::hostable(&c.config)) {
            Some(h) => Self::spawn_on(h, &c.id, &crate::exec::linux::null(true)?.into()),
            None => None,
        };
        let mut handshake = match hosted {
            Some(read) => read,
            None => {
                let stderr = fs_err::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("monitor.log"))?
                    .into_parts()
                    .0;
                match self.fork_monitor(&c.id, &stderr) {
                    Some(read) => read,
                    None => self.exec_monitor(monitor, &c.id, stderr)?,
                }
            }
        };
        let mut line = String::new();
        handshake.read_to_string(&mut line)?;
        match line.trim_end().split_once(' ') {
            _ if line.trim_end() == "running" => Ok(()),
            Some(("error", rest)) => {
                let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
                Err(ContainerError::Start {
                    id: c.id,
                    message: message.to_owned(),
                    code: code.parse().unwrap_or(crate::exec::EXIT_WHARF_ERROR),
                })
            }
            _ => {
                let log = std::fs::read_to_string(dir.join("monitor.log")).unwrap_or_default();
                Err(ContainerError::Start {
                    id: c.id,
                    message: format!(
                        "the monitor ended before the container started{}",
                        log.lines()
                            .last()
                            .map(|l| format!(": {l}"))
                            .unwrap_or_default()
                    ),
                    code: crate::exec::EXIT_WHARF_ERROR,
                })
            }
        }
    }

    /// A monitor for `id` forked by the monitor server, if there is one
    /// that answers: the read end of its handshake pipe.
    fn fork_monitor(&self, id: &str, stderr: &std::fs::File) -> Option<std::fs::File> {
        Self::spawn_on(self.server.as_ref()?, id, stderr)
    }

    /// Asks `server` (a monitor server or a guest host) to run container
    /// `id`: the read end of the handshake pipe, None if it is gone.
    fn spawn_on(
        server: &server::MonitorServer,
        id: &str,
        stderr: &std::fs::File,
    ) -> Option<std::fs::File> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
        let stderr = stderr.try_clone().ok()?.into();
        match server.spawn(id, write, stderr) {
            Ok(()) => Some(read.into()),
            Err(e) => {
                tracing::warn!(error = %e, "a monitor server is gone: executing monitors");
                None
            }
        }
    }

    /// A monitor for `id` executed anew: its standard output, the
    /// handshake pipe.
    fn exec_monitor(
        &self,
        monitor: &MonitorCommand,
        id: &str,
        stderr: std::fs::File,
    ) -> Result<std::fs::File> {
        use std::os::unix::process::CommandExt as _;
        let mut child = monitor
            .command()
            .arg("container-monitor")
            .arg(id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            // Its own process group: a Ctrl-C meant for the CLI or the
            // daemon does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|e| ContainerError::Start {
                id: id.to_owned(),
                message: format!("cannot run monitor {}: {e}", monitor.program.display()),
                code: crate::exec::EXIT_WHARF_ERROR,
            })?;
        let stdout = std::os::fd::OwnedFd::from(child.stdout.take().expect("piped"));
        // Reap the monitor when it ends (a thread, so a long-lived host
        // such as the daemon keeps no zombies).
        let _ = std::thread::Builder::new()
            .name("wharf-reaper".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let _ = child.wait();
            });
        Ok(stdout.into())
    }

    /// Sends `signal` to the container. A wasm guest ends on any signal
    /// (it cannot handle signals) with 128 + the signal; a Linux
    /// container's init receives it (SIGKILL goes to every process of the
    /// container).
    pub fn kill(&self, what: &str, signal: i32) -> Result<()> {
        let c = self.get(what)?;
        if !c.state.is_running() || c.state.pid == 0 {
            return Err(ContainerError::NotRunning(c.id));
        }
        self.record(&c, "kill", &[("signal", signal.to_string())]);
        // A frozen process could not act on the signal: it is resumed
        // first (also for stop, restart and rm -f, which kill).
        if c.state.is_paused() {
            self.unpause(&c.id)?;
        }
        if signal == libc::SIGKILL {
            self.update(&c.id, |s| s.stop_requested = true)?;
            if c.config.wasm {
                self.signal_monitor(&c, libc::SIGKILL)?;
                // The monitor cannot record its own SIGKILL: the caller
                // does, once the monitor is gone.
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.monitor_alive(&c.id) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                match self.refresh(&c.id) {
                    // Removed at its end (`--rm`) by its guest host.
                    Ok(_) | Err(ContainerError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            } else {
                // Every process of the cgroup, until the run has ended: a
                // process still joining the cgroup would miss one pass.
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    crate::exec::linux::signal_cgroup(&short_id(&c.id), libc::SIGKILL);
                    let ended = self.read_state(&c.id)?.status != Status::Running
                        || !self.monitor_alive(&c.id);
                    if ended || Instant::now() >= deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            return Ok(());
        }
        if libc::SIGTERM == signal || libc::SIGINT == signal || c.config.wasm {
            self.update(&c.id, |s| s.stop_requested = true)?;
        }
        if c.config.wasm || crate::exec::linux::FORWARDED.contains(&signal) {
            // The monitor ends a wasm guest, or forwards to the init.
            self.signal_monitor(&c, signal)?;
        } else {
            crate::exec::linux::signal_cgroup(&short_id(&c.id), signal);
        }
        Ok(())
    }

    /// Stops the container: its stop signal, then SIGKILL after `timeout`
    /// (default: the container's stop timeout, else 10 s). Returns false
    /// when it was not running.
    pub fn stop(&self, what: &str, timeout: Option<Duration>) -> Result<bool> {
        let c = self.get(what)?;
        if !c.state.is_running() {
            self.update(&c.id, |s| s.stop_requested = true)?;
            return Ok(false);
        }
        let timeout = timeout.unwrap_or(Duration::from_secs(c.config.stop_timeout.unwrap_or(10)));
        let signal = c.config.stop_signal()?;
        self.update(&c.id, |s| s.stop_requested = true)?;
        match self.kill(&c.id, signal) {
            Ok(()) | Err(ContainerError::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        if !self.wait_stopped(&c.id, timeout)? {
            match self.kill(&c.id, libc::SIGKILL) {
                Ok(()) | Err(ContainerError::NotRunning(_)) => {}
                Err(e) => return Err(e),
            }
            self.wait_stopped(&c.id, Duration::from_secs(30))?;
        }
        self.record(&c, "stop", &[]);
        Ok(true)
    }

    /// Waits up to `timeout` for the monitor of `id` to end.
    fn wait_stopped(&self, id: &str, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.refresh(id) {
                Ok(s) if !s.is_running() && !self.monitor_alive(id) => return Ok(true),
                Err(ContainerError::NotFound(_)) => return Ok(true),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// For a container that says it is not running: waits (briefly) for
    /// a monitor that is still finishing (closing the log, deciding on a
    /// restart) to end. False if it runs again, or the monitor stays.
    fn monitor_settled(&self, id: &str) -> Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.monitor_alive(id) {
            match self.refresh(id) {
                Ok(s) if s.is_running() => return Ok(false),
                Err(ContainerError::NotFound(_)) => return Ok(true),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(true)
    }

    /// Suspends every process of a running container (`docker pause`): a
    /// Linux container's cgroup is frozen; a wasm guest runs in its
    /// monitor, which is stopped (SIGSTOP) with its output readers.
    pub fn pause(&self, what: &str) -> Result<()> {
        let c = self.get(what)?;
        if c.state.status != Status::Running || c.state.pid == 0 {
            return Err(ContainerError::NotRunning(c.id));
        }
        if c.state.is_paused() {
            return Err(ContainerError::AlreadyPaused(c.id));
        }
        self.freeze(&c, true)?;
        self.update(&c.id, |s| s.paused = true)?;
        Ok(())
    }

    /// Resumes a paused container (`docker unpause`).
    pub fn unpause(&self, what: &str) -> Result<()> {
        let c = self.get(what)?;
        if !c.state.is_paused() {
            return Err(ContainerError::NotPaused(c.id));
        }
        self.freeze(&c, false)?;
        self.update(&c.id, |s| s.paused = false)?;
        Ok(())
    }

    /// Sends `signal` to the monitor of `c` (to the guest, through its
    /// guest host's control socket, for a hosted one).
    fn signal_monitor(&self, c: &Container, signal: i32) -> Result<()> {
        if c.state.hosted {
            let request = format!("kill {} {signal}", c.id);
            return match host::request(&self.store, c.state.pid, &request) {
                // It ended meanwhile.
                Err(ContainerError::NotRunning(_)) => Ok(()),
                r => r,
            };
        }
        send(c.state.pid, signal);
        Ok(())
    }

    fn freeze(&self, c: &Container, frozen: bool) -> Result<()> {
        if c.state.hosted {
            let verb = if frozen { "pause" } else { "unpause" };
            return host::request(&self.store, c.state.pid, &format!("{verb} {}", c.id));
        }
        if c.config.wasm {
            send(
                c.state.pid,
                if frozen { libc::SIGSTOP } else { libc::SIGCONT },
            );
            // Returns once the monitor is stopped (or running again), as a
            // freezer's pause returns once frozen.
            let deadline = Instant::now() + Duration::from_secs(2);
            let stopped = || procfs::stat(c.state.pid).map(|s| s.state == "T");
            while stopped() != Some(frozen) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        } else {
            Ok(crate::exec::linux::freeze(
                &self.store,
                &short_id(&c.id),
                frozen,
            )?)
        }
    }

    /// Stops (if running) and starts the container again.
    pub fn restart(&self, what: &str, timeout: Option<Duration>) -> Result<()> {
        let id = self.resolve(what)?;
        self.stop(&id, timeout)?;
        self.start(&id)
    }

    /// Removes the container, its log and its name. A running container
    /// is refused unless `force`, which kills it first.
    pub fn remove(&self, what: &str, force: bool) -> Result<()> {
        let c = self.get(what)?;
        if c.state.is_running() || !self.monitor_settled(&c.id)? {
            if !force {
                return Err(ContainerError::Running(c.id));
            }
            match self.kill(&c.id, libc::SIGKILL) {
                Ok(()) | Err(ContainerError::NotRunning(_)) => {}
                Err(e) => return Err(e),
            }
            self.wait_stopped(&c.id, Duration::from_secs(30))?;
        }
        self.delete(&c)
    }

    /// Deletes a stopped container's files: renamed away first, so it
    /// disappears at once and a crash leaves no half container.
    pub(crate) fn delete(&self, c: &Container) -> Result<()> {
        let gone = self.dir.join(format!(".removing-{}", c.id));
        match fs_err::rename(self.dir(&c.id), &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(c.id.clone()))
            }
            Err(e) => return Err(e.into()),
        }
        let name = self.dir.join(".names").join(&c.name);
        if std::fs::read_to_string(&name).is_ok_and(|holder| holder == c.id) {
            let _ = fs_err::remove_file(&name);
        }
        match fs_err::remove_dir_all(&gone) {
            // A prune's sweep got there first.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        self.record(c, "destroy", &[]);
        // The lease file of a container made before its record was its
        // lease.
        self.store.release(&lease_holder(&c.id))?;
        Ok(())
    }

    /// Removes every container that is not running (`docker container
    /// prune`) and returns their ids with the bytes each took. A
    /// container that starts meanwhile is left alone.
    pub fn prune(&self) -> Result<Vec<(String, u64)>> {
        let mut removed = Vec::new();
        for c in self.list()? {
            if c.state.is_running() || self.monitor_alive(&c.id) {
                continue;
            }
            let size = self.size(&c.id);
            match self.delete(&c) {
                Ok(()) => removed.push((c.id, size)),
                Err(ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.sweep()?;
        Ok(removed)
    }

    /// Cleans up after removals that a crash cut short: half-deleted
    /// directories, and leases whose container is gone. Creations hold
    /// the shared store lock until their directory exists, so under the
    /// exclusive lock a lease without a directory is a leftover.
    fn sweep(&self) -> Result<()> {
        let _lock = self.store.lock_exclusive()?;
        for (holder, _) in self.store.leases()? {
            if let Some(id) = lease_holder_id(&holder) {
                if !self.dir(id).exists() {
                    self.store.release(&holder)?;
                }
            }
        }
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            // A removal in progress may be deleting it too.
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".removing-")
            {
                let _ = fs_err::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// The image container `c` runs, by the digest its lease keeps
    /// (named or not).
    pub(crate) fn image_of(&self, c: &Container) -> Result<crate::image::Image> {
        let config = &c.config;
        let descriptor = config
            .manifest
            .parse()
            .ok()
            .and_then(|d| self.store.root_descriptor(&d).ok())
            .ok_or_else(|| {
                ContainerError::Invalid(format!(
                    "the image of this container ({}, {}) is no longer in the store",
                    config.image, config.image_id
                ))
            })?;
        Ok(self.store.load_image(&descriptor, Some(&config.platform))?)
    }

    /// What a container uses now (`docker stats`); all zeros but the
    /// host's figures when it is not running.
    pub fn stats(&self, what: &str) -> Result<stats::Sample> {
        let c = self.get(what)?;
        Ok(self.stats_of(&c))
    }

    /// [`stats`](Self::stats) of a container already looked up.
    pub fn stats_of(&self, c: &Container) -> stats::Sample {
        if c.state.status != Status::Running || c.state.pid == 0 {
            return stats::of_host();
        }
        if c.config.wasm {
            stats::of_process(c.state.pid, c.config.memory)
        } else {
            stats::of_cgroup(&short_id(&c.id))
        }
    }

    /// The processes of a running container (`docker top`). A Linux
    /// container's are those of its cgroup; a wasm guest runs inside its
    /// monitor, which is shown with the guest's command line.
    pub fn top(&self, what: &str) -> Result<top::Top> {
        let c = self.get(what)?;
        if !c.state.is_running() || c.state.pid == 0 {
            return Err(ContainerError::NotRunning(c.id));
        }
        if !c.config.wasm {
            let pids = crate::exec::linux::cgroup_pids(&short_id(&c.id));
            return Ok(top::processes(pids));
        }
        let mut t = top::processes([c.state.pid]);
        for row in &mut t.processes {
            if let Some(cmd) = row.last_mut() {
                *cmd = c.config.argv.join(" ");
            }
        }
        Ok(t)
    }

    /// Runs a further process in a running Linux container (`docker
    /// exec`) and returns its exit code. Wasm containers have no process
    /// to join: a guest is one instance.
    pub fn exec(&self, what: &str, options: crate::exec::linux::ExecOptions) -> Result<i32> {
        let c = self.get(what)?;
        if c.config.wasm {
            return Err(ContainerError::Invalid(format!(
                "container {} runs a wasm guest: exec needs a Linux container (a wasm guest is a single instance, with no processes to join)",
                short_id(&c.id)
            )));
        }
        if !c.state.is_running() {
            return Err(ContainerError::NotRunning(c.id));
        }
        Ok(crate::exec::linux::exec(
            &self.store,
            &short_id(&c.id),
            options,
        )?)
    }

    /// A command that runs `options` (its files aside) in container `id`
    /// through the host's program: `exec` for a process that must not
    /// fork container processes itself (the daemon, with its threads).
    pub fn exec_command(
        &self,
        id: &str,
        options: &crate::exec::linux::ExecOptions,
    ) -> Result<std::process::Command> {
        let monitor = self.monitor.as_ref().ok_or(ContainerError::NoMonitor)?;
        let mut c = monitor.command();
        c.arg("exec");
        if options.stdin {
            c.arg("-i");
        }
        if options.terminal.is_some() {
            c.arg("-t");
        }
        for kv in &options.env {
            c.arg("-e").arg(kv);
        }
        if let Some(w) = &options.workdir {
            c.arg("-w").arg(w);
        }
        if let Some(u) = &options.user {
            c.arg("-u").arg(u);
        }
        c.arg("--").arg(id).args(&options.argv);
        Ok(c)
    }

    /// A command that runs the build `options` describe through the host's
    /// program, for a process that must not run a build's Linux RUN steps
    /// itself (the daemon, with its threads). Its stderr carries the
    /// progress lines, its stdout the image id. `format` and
    /// `source_date_epoch` are the program's defaults.
    pub fn build_command(
        &self,
        options: &crate::build::BuildOptions,
    ) -> Result<std::process::Command> {
        let monitor = self.monitor.as_ref().ok_or(ContainerError::NoMonitor)?;
        let mut c = monitor.command();
        c.arg("build");
        // `--flag=value`: a value starting with `-` stays a value.
        let flag = |name: &str, value: &std::ffi::OsStr| {
            let mut a = std::ffi::OsString::from(format!("--{name}="));
            a.push(value);
            a
        };
        for t in &options.tags {
            c.arg(flag("tag", t.to_string().as_ref()));
        }
        if let Some(f) = &options.dockerfile {
            c.arg(flag("file", f.as_os_str()));
        }
        for (k, v) in &options.build_args {
            c.arg(flag("build-arg", format!("{k}={v}").as_ref()));
        }
        if let Some(p) = &options.platform {
            c.arg(flag("platform", p.as_ref()));
        }
        if let Some(t) = &options.target {
            c.arg(flag("target", t.as_ref()));
        }
        if options.no_cache {
            c.arg("--no-cache");
        }
        c.arg("--").arg(&options.context);
        Ok(c)
    }

    /// Waits for `condition` and returns the exit code. `Removed` also
    /// returns when the container exits without being removed (no `--rm`)
    /// and is then removed by someone else.
    pub fn wait(&self, what: &str, condition: WaitCondition) -> Result<i32> {
        // An auto-removed container may be gone already: by its full id,
        // its tombstone still has the exit code.
        let gone = |id: &str, e: ContainerError| {
            let full_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
            match (&e, full_id.then(|| self.tombstone(id)).flatten()) {
                (ContainerError::NotFound(_), Some(code)) => Ok(code),
                _ => Err(e),
            }
        };
        let id = match self.resolve(what) {
            Ok(id) => id,
            Err(e) => return gone(what, e),
        };
        let dir = self.dir(&id);
        let first = match self.refresh(&id) {
            Ok(s) => s,
            Err(e) => return gone(&id, e),
        };
        let mut last_code = first.exit_code;
        loop {
            let state = match self.refresh(&id) {
                Ok(s) => s,
                Err(ContainerError::NotFound(_)) => {
                    // Removed: its last exit code is in the tombstone.
                    return Ok(self.tombstone(&id).unwrap_or(last_code));
                }
                Err(e) => return Err(e),
            };
            last_code = state.exit_code;
            let exited_since = state.finished_at != first.finished_at
                || (condition == WaitCondition::NotRunning && state.finished_at != 0);
            let done = match condition {
                WaitCondition::NotRunning => !state.is_running(),
                WaitCondition::NextExit => exited_since && state.status != Status::Running,
                WaitCondition::Removed => false,
            };
            if done {
                return Ok(state.exit_code);
            }
            if state.status == Status::Running {
                // Blocks until the run ends.
                if let Ok(file) = std::fs::File::open(dir.join("state.json")) {
                    drop(ByteLock::shared(file, Hold::Run as u64)?);
                }
                // (Or that of an older wharf's monitor, a file.)
                match StoreLock::shared_existing(&dir.join(LEGACY_RUN_LOCK)) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    lock => drop(lock?),
                }
                if self
                    .read_state(&id)
                    .is_ok_and(|s| s.status == Status::Running)
                    && !self.monitor_alive(&id)
                {
                    continue;
                }
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Passes the entries of container `id`'s log that `query` selects to
    /// `emit` (`logs`, for the CLI and the API). An error from `emit`
    /// (the reader went away) ends it.
    pub fn read_log(
        &self,
        id: &str,
        query: &logs::Query,
        emit: &mut dyn FnMut(&logs::Entry) -> std::io::Result<()>,
    ) -> Result<()> {
        let window = query.window;
        let mut reader = self.log_reader(id, false)?;
        let mut first = reader.read_new()?;
        first.retain(|e| window.contains(e));
        if let Some(n) = query.tail {
            first.drain(..first.len().saturating_sub(n));
        }
        for e in &first {
            emit(e)?;
        }
        if !query.follow {
            return Ok(());
        }
        let mut past = false;
        let followed = self.follow(id, &mut reader, false, &mut |e| {
            if window.passed(e) {
                // An entry past `until` ends a followed log.
                past = true;
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            match window.contains(e) {
                true => emit(e),
                false => Ok(()),
            }
        });
        match followed {
            Err(_) if past => Ok(()),
            other => other,
        }
    }

    /// Passes every entry `reader` gets to `emit` until the container is
    /// no longer running (or is removed), then returns. With
    /// `wait_for_start`, a container not yet started is waited for
    /// (attach before start); otherwise it ends the follow. An error from
    /// `emit` (the reader went away) ends it too.
    pub fn follow(
        &self,
        id: &str,
        reader: &mut logs::LogReader,
        wait_for_start: bool,
        emit: &mut dyn FnMut(&logs::Entry) -> std::io::Result<()>,
    ) -> Result<()> {
        let first = self.read_state(id).ok();
        loop {
            // The state is read before the log: once it says "ended",
            // everything the run wrote is already in the log.
            let ended = match self.refresh(id) {
                Ok(s) => {
                    let started_since = first
                        .as_ref()
                        .is_none_or(|f| s.started_at != f.started_at || f.is_running());
                    !s.is_running() && (!wait_for_start || started_since)
                }
                Err(ContainerError::NotFound(_)) => true,
                Err(e) => return Err(e),
            };
            for e in reader.read_new()? {
                emit(&e)?;
            }
            if ended {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit code a container removed by its monitor (`--rm`) left.
    fn tombstone(&self, id: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(".exits").join(id))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Records the exit code of an auto-removed container for its waiters,
    /// and forgets those older than ten minutes.
    pub(crate) fn leave_tombstone(&self, id: &str, code: i32) {
        let dir = self.dir.join(".exits");
        let _ = fs_err::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(id), code.to_string());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(600));
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

fn send(pid: u32, signal: i32) {
    if let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pid as i32),
        rustix::process::Signal::from_named_raw(signal),
    ) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Parses a signal as Docker does: `SIGTERM`, `TERM` or `15`.
pub fn parse_signal(s: &str) -> Result<i32> {
    const NAMES: [(&str, i32); 14] = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ABRT", libc::SIGABRT),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("WINCH", libc::SIGWINCH),
    ];
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = t.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, v)| *v)
        .ok_or_else(|| ContainerError::Invalid(format!("invalid signal {s:?}")))
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && n.len() <= 128
}

/// A fresh 64-hex-digit id (container or exec instance).
pub(crate) fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut b)?;
    // Docker never gives an all-digit short id (it would read as a number).
    let id = hex::encode(b);
    if id[..12].bytes().all(|c| c.is_ascii_digit()) {
        return random_id();
    }
    Ok(id)
}

/// Writes a new file `path` (mode 0600, as the records may hold secrets
/// from `-e`) holding `bytes`, and syncs it.
/// The whole of a (locked) state record.
fn read_record(mut file: &std::fs::File) -> Result<Vec<u8>> {
    let mut record = Vec::with_capacity(512);
    file.read_to_end(&mut record)?;
    Ok(record)
}

/// A state record's state: none (an empty record) is a container never
/// started; one that cannot be read is a dead container that says so.
fn parse_state(record: &[u8]) -> State {
    if record.iter().all(u8::is_ascii_whitespace) {
        return State::default();
    }
    serde_json::from_slice(record).unwrap_or_else(|e| State {
        status: Status::Dead,
        exit_code: 255,
        error: format!(
            "its state.json could not be read ({e}): the host may have gone down while it was written"
        ),
        ..State::default()
    })
}

fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    Ok(())
}

/// Replaces `path` with `bytes`: temp file beside it, synced, rename.
/// Readers, and a crash of any process or of the host, see the old or
/// the new content, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a file in a directory");
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_restart_policies() {
        assert_eq!("no".parse::<RestartPolicy>().unwrap(), RestartPolicy::No);
        assert_eq!(
            "on-failure:3".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure { max: 3 }
        );
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        let p = RestartPolicy::OnFailure { max: 2 };
        assert!(p.restarts(1, 1) && !p.restarts(1, 2) && !p.restarts(0, 0));
        assert!(RestartPolicy::Always.restarts(0, 100));
    }

    #[test]
    fn parses_signals_and_names() {
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(valid_name("web-1.a_b") && !valid_name("-x") && !valid_name("a/b"));
    }

    /// A container record made by hand (creation needs an image).
    fn made_by_hand(cs: &Containers, id: &str, name: &str) {
        let c = Container {
            id: id.to_owned(),
            name: name.into(),
            created: now_ns(),
            config: ContainerConfig::default(),
            state: State::default(),
        };
        cs.claim_name(name, id).unwrap();
        fs_err::create_dir(cs.dir(id)).unwrap();
        write_atomic(
            &cs.dir(id).join("config.json"),
            &serde_json::to_vec(&c).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn a_missing_state_is_created_and_an_unreadable_one_dead() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let cs = Containers::open(&store).unwrap();
        let id = "cd56".repeat(16);
        made_by_hand(&cs, &id, "lost");
        // Never started: no state record yet, or an empty one.
        assert_eq!(cs.get("lost").unwrap().state.status, Status::Created);
        let record = cs.dir(&id).join("state.json");
        fs_err::write(&record, b"").unwrap();
        assert_eq!(cs.get("lost").unwrap().state.status, Status::Created);
        // A shorter record rewrites a longer one in place.
        cs.update(&id, |s| s.error = "x".repeat(4000)).unwrap();
        assert_eq!(cs.get("lost").unwrap().state.error.len(), MAX_STATE_ERROR);
        cs.update(&id, |s| s.error.clear()).unwrap();
        assert_eq!(cs.get("lost").unwrap().state, State::default());
        assert!(fs_err::metadata(&record).unwrap().len() > MAX_STATE_ERROR as u64);
        // What a host crash in the middle of a rewrite can leave.
        fs_err::write(&record, b"{\"status\":\"runn").unwrap();
        let state = cs.get("lost").unwrap().state;
        assert_eq!((state.status, state.exit_code), (Status::Dead, 255));
        assert!(
            state.error.contains("state.json could not be read"),
            "{}",
            state.error
        );
        // Such a container can still be removed.
        cs.remove("lost", false).unwrap();
        assert!(matches!(cs.get("lost"), Err(ContainerError::NotFound(_))));
    }

    #[test]
    fn a_monitor_of_an_older_wharf_still_counts_by_its_lock_file() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let cs = Containers::open(&store).unwrap();
        let id = "ef78".repeat(16);
        made_by_hand(&cs, &id, "old");
        let running = State {
            status: Status::Running,
            pid: 1,
            ..State::default()
        };
        fs_err::write(
            cs.dir(&id).join("state.json"),
            serde_json::to_vec(&running).unwrap(),
        )
        .unwrap();
        let old_monitor = StoreLock::exclusive(&cs.dir(&id).join(LEGACY_MONITOR_LOCK)).unwrap();
        assert_eq!(cs.get("old").unwrap().state.status, Status::Running);
        drop(old_monitor);
        let state = cs.get("old").unwrap().state;
        assert_eq!((state.status, state.exit_code), (Status::Dead, 255));
    }

    #[test]
    fn names_ids_and_prefixes_resolve() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let cs = Containers::open(&store).unwrap();
        for (id, name) in [("ab12".repeat(16), "one"), ("ab34".repeat(16), "two")] {
            made_by_hand(&cs, &id, name);
        }
        assert_eq!(cs.resolve("/one").unwrap(), "ab12".repeat(16));
        assert_eq!(cs.resolve("ab3").unwrap(), "ab34".repeat(16));
        assert!(matches!(
            cs.resolve("ab"),
            Err(ContainerError::Ambiguous(_))
        ));
        assert!(matches!(cs.resolve("zz"), Err(ContainerError::NotFound(_))));
        assert!(matches!(
            cs.claim_name("one", "x"),
            Err(ContainerError::NameInUse { .. })
        ));
        let one = cs.get("one").unwrap();
        cs.delete(&one).unwrap();
        assert!(cs.resolve("one").is_err());
        assert_eq!(cs.list().unwrap().len(), 1);
        // A running state without a monitor is corrected to dead.
        let two = cs.resolve("two").unwrap();
        cs.update(&two, |s| {
            s.status = Status::Running;
            s.pid = 1;
        })
        .unwrap();
        let s = cs.get("two").unwrap().state;
        assert_eq!((s.status, s.exit_code), (Status::Dead, 255));
    }
}
