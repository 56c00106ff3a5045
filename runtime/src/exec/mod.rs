//! Running images: resolving an image to a module and a sandbox, and the
//! executors that run it. Only the wasm executor exists so far; the Linux
//! backend will be a second executor behind the same [`RunOptions`].

mod cgroups;
pub mod linux;
pub mod network;
mod oci;
mod p1_sockets;
mod seccomp;
pub mod tty;
pub mod wasm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::digest::Digest;
use crate::image::{Image, ModuleSource};
use crate::layer::unpack_layers;
use crate::store::Store;

pub use network::{NetRule, NetworkError, NetworkPolicy, PortMap};
pub use wasm::{ModuleInput, WasmExecutor};

/// Exit code for wharf's own failures before the guest starts (bad input,
/// unknown image), as Docker's 125.
pub const EXIT_WHARF_ERROR: i32 = 125;
/// Exit code when the module cannot be started: invalid wasm, an import
/// wharf does not provide (Docker's 126, "cannot invoke").
pub const EXIT_CANNOT_INVOKE: i32 = 126;
/// Exit code when the entrypoint module is not found (Docker's 127).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code for a guest trap (128 + SIGABRT).
pub const EXIT_TRAP: i32 = 134;
/// Exit code when the guest hits its memory limit (Docker's OOM-kill 137).
pub const EXIT_MEMORY_LIMIT: i32 = 137;
/// Exit code when the guest runs past `--timeout` (as GNU `timeout`).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code when the guest consumes all its fuel (128 + SIGXCPU).
pub const EXIT_OUT_OF_FUEL: i32 = 152;

/// Errors that stop a run before or outside the guest.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Reading the image failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Unpacking a layer failed.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// The image is not a wasm image.
    #[error("image {image} has platform {platform}: this is the wasm executor; Linux images run with exec::linux::run")]
    NotWasm {
        /// The image.
        image: String,
        /// Its platform.
        platform: String,
    },
    /// Neither ENTRYPOINT nor CMD names a module, and none was given.
    #[error("image {0} has no ENTRYPOINT or CMD: give the module path as an argument or with --entrypoint")]
    NoEntrypoint(String),
    /// The module path does not exist in the image.
    #[error("module {0} not found in the image filesystem")]
    ModuleNotFound(String),
    /// The bytes are not a valid module or component.
    #[error("{what} is not a valid WebAssembly module or component: {reason}")]
    InvalidModule {
        /// The module path or digest.
        what: String,
        /// The validation error.
        reason: String,
    },
    /// The module needs imports wharf does not provide.
    #[error("{what} imports {imports}, which wharf does not provide (wharf provides WASI preview 1 and preview 2)")]
    MissingImport {
        /// The module.
        what: String,
        /// The unsatisfied imports.
        imports: String,
    },
    /// A `-v` mapping is unusable.
    #[error("mount {mount}: {reason}")]
    Mount {
        /// The mapping as given.
        mount: String,
        /// What is wrong.
        reason: String,
    },
    /// Setting up the engine or the sandbox failed.
    #[error("wasm runtime: {0}")]
    Engine(String),
    /// A bad network option.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Something wharf cannot do for this guest.
    #[error("{0}")]
    Unsupported(String),
    /// An I/O failure outside the store.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// `exec`: the program is not in the container.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    CommandNotFound(String),
    /// `exec`: the program is there but cannot be run.
    #[error("exec: {program:?}: {reason}")]
    CannotExecute {
        /// The program.
        program: String,
        /// Why not.
        reason: String,
    },
}

impl RunError {
    /// The exit code the CLI reports for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::ModuleNotFound(_)
            | RunError::NoEntrypoint(_)
            | RunError::CommandNotFound(_) => EXIT_NOT_FOUND,
            RunError::InvalidModule { .. }
            | RunError::MissingImport { .. }
            | RunError::CannotExecute { .. } => EXIT_CANNOT_INVOKE,
            _ => EXIT_WHARF_ERROR,
        }
    }
}

/// A host directory mapped into the guest (`-v HOST:GUEST[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host directory.
    pub host: PathBuf,
    /// Absolute guest path.
    pub guest: String,
    /// Writes through this mapping fail.
    pub read_only: bool,
}

impl FromStr for Mount {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Mount, RunError> {
        let bad = |reason: &str| RunError::Mount {
            mount: s.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (host, guest, mode) = match parts.as_slice() {
            [h, g] => (*h, *g, "rw"),
            [h, g, m] => (*h, *g, *m),
            _ => return Err(bad("expected HOST:GUEST[:ro|rw]")),
        };
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            _ => return Err(bad("the mode must be ro or rw")),
        };
        if host.is_empty() || !guest.starts_with('/') {
            return Err(bad(
                "the host path must be given and the guest path must be absolute",
            ));
        }
        if guest.split('/').any(|c| c == "..") {
            return Err(bad("the guest path must not contain '..'"));
        }
        Ok(Mount {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
            read_only,
        })
    }
}

/// Where a guest's standard output or error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stdio {
    /// The host process's own stream.
    #[default]
    Inherit,
    /// Discarded.
    Null,
    /// Collected into [`RunOutcome`] (at most 64 MiB).
    Capture,
}

/// How to run a guest. Every field defaults to "deny" or "as the image says".
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Arguments replacing the image's CMD.
    pub args: Option<Vec<String>>,
    /// A module path replacing the image's ENTRYPOINT (and resetting CMD).
    pub entrypoint: Option<String>,
    /// Environment, applied over the image's ENV in order.
    pub env: Vec<(String, String)>,
    /// Host directories mapped in.
    pub mounts: Vec<Mount>,
    /// Working directory replacing the image's WORKDIR.
    pub workdir: Option<String>,
    /// Cap on linear memory (bytes, per memory) and on table elements
    /// (`memory / 16`). By default unlimited beyond wasm's own limits.
    pub memory: Option<u64>,
    /// Wall-clock limit; the guest is interrupted when it passes.
    pub timeout: Option<Duration>,
    /// Instruction budget (wasmtime fuel).
    pub fuel: Option<u64>,
    /// Give the guest the host's stdin (else it reads end-of-file).
    pub stdin: bool,
    /// Guest stdout.
    pub stdout: Stdio,
    /// Guest stderr.
    pub stderr: Stdio,
    /// Network access (none by default).
    pub network: NetworkPolicy,
    /// Lets another thread stop a wasm guest (a container's monitor on
    /// `stop` or `kill`).
    pub interrupt: Option<Interrupt>,
    /// For a wasm guest: its stdout and stderr go to these instead of
    /// `stdout` and `stderr` (a guest host writing a container's log).
    pub output: Option<Output>,
}

/// What receives a wasm guest's output, write by write, in the guest's
/// thread: its stdout and its stderr.
#[derive(Clone)]
pub struct Output {
    /// Receives each write to stdout.
    pub stdout: Sink,
    /// Receives each write to stderr.
    pub stderr: Sink,
}

/// A receiver of a guest stream's bytes.
pub type Sink = std::sync::Arc<dyn Fn(&[u8]) + Send + Sync>;

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Output")
    }
}

/// A handle that stops a running wasm guest from another thread: the guest
/// traps at its next epoch check and the run ends with [`Exit::Signal`].
/// Signalling before the run starts stops it as soon as it starts. A guest
/// run on a shared engine ([`wasm::Engines`]) can also be paused: it waits
/// at its next epoch check until resumed (or signalled).
#[derive(Clone, Default)]
pub struct Interrupt(std::sync::Arc<(std::sync::Mutex<InterruptState>, std::sync::Condvar)>);

#[derive(Default)]
struct InterruptState {
    signal: Option<i32>,
    paused: bool,
    engine: Option<wasmtime::Engine>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Interrupt").field(&self.requested()).finish()
    }
}

impl Interrupt {
    /// A handle not yet signalled.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, InterruptState> {
        self.0 .0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the guest on behalf of signal `signal` (the first one wins).
    /// A paused guest is stopped too.
    pub fn signal(&self, signal: i32) {
        let mut s = self.state();
        s.signal.get_or_insert(signal);
        if let Some(e) = &s.engine {
            e.increment_epoch();
        }
        self.0 .1.notify_all();
    }

    /// The signal that stopped (or is stopping) the guest, if any.
    pub fn requested(&self) -> Option<i32> {
        self.state().signal
    }

    /// Pauses (or resumes) a guest run on a shared engine: it waits at its
    /// next epoch check (a guest blocked in a host call, once the call
    /// returns).
    pub fn set_paused(&self, paused: bool) {
        let mut s = self.state();
        s.paused = paused;
        if let (true, Some(e)) = (paused, &s.engine) {
            e.increment_epoch();
        }
        self.0 .1.notify_all();
    }

    /// In the guest's thread: waits while paused and not signalled; the
    /// signal, if any.
    pub(crate) fn checkpoint(&self) -> Option<i32> {
        let mut s = self.state();
        while s.paused && s.signal.is_none() {
            s = self.0 .1.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.signal
    }

    /// Connects the handle to the engine running the guest.
    pub(crate) fn attach(&self, engine: &wasmtime::Engine) {
        let mut s = self.state();
        if s.signal.is_some() || s.paused {
            engine.increment_epoch();
        }
        s.engine = Some(engine.clone());
    }
}

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It returned or called exit with this code.
    Code(i32),
    /// It trapped.
    Trap(String),
    /// It ran past the timeout.
    Timeout(Duration),
    /// It used all its fuel.
    OutOfFuel(u64),
    /// It tried to grow memory or a table past the limit.
    MemoryLimit(u64),
    /// It was stopped through an [`Interrupt`] on behalf of this signal.
    Signal(i32),
}

impl Exit {
    /// The process exit code wharf reports (see the `EXIT_*` constants).
    pub fn code(&self) -> i32 {
        match self {
            Exit::Code(c) => *c,
            Exit::Trap(_) => EXIT_TRAP,
            Exit::Timeout(_) => EXIT_TIMEOUT,
            Exit::OutOfFuel(_) => EXIT_OUT_OF_FUEL,
            Exit::MemoryLimit(_) => EXIT_MEMORY_LIMIT,
            Exit::Signal(s) => 128 + s,
        }
    }

    /// A one-line description for anything but a normal exit.
    pub fn message(&self) -> Option<String> {
        match self {
            Exit::Code(_) => None,
            Exit::Trap(t) => Some(format!("guest trapped: {t}")),
            Exit::Timeout(d) => Some(format!(
                "guest stopped: timeout of {} exceeded",
                humantime(*d)
            )),
            Exit::OutOfFuel(f) => Some(format!("guest stopped: fuel limit of {f} exhausted")),
            Exit::MemoryLimit(m) => {
                Some(format!("guest stopped: memory limit of {m} bytes exceeded"))
            }
            Exit::Signal(s) => Some(format!("guest stopped by signal {s}")),
        }
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How the guest ended.
    pub exit: Exit,
    /// Captured stdout (empty unless [`Stdio::Capture`]).
    pub stdout: Vec<u8>,
    /// Captured stderr (empty unless [`Stdio::Capture`]).
    pub stderr: Vec<u8>,
}

/// The on-disk snapshot of an image prepared for running. While this value
/// lives, garbage collection leaves the snapshot in place (it holds a shared
/// lock on the snapshot directory), even if its image is removed.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    entry_path: Option<String>,
    module_digest: Option<Digest>,
    _in_use: crate::store::StoreLock,
}

impl Snapshot {
    /// The image filesystem, mapped read-only at `/` in the guest.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// Prepares (once) and returns the snapshot of `image`: its layers unpacked,
/// and the entrypoint module moved out of the guest-visible tree. Call it
/// with the store's shared lock held ([`Store::lock_shared`]); the returned
/// value keeps the snapshot alive after that lock is released.
pub fn ensure_snapshot(store: &Store, image: &Image) -> Result<Snapshot, RunError> {
    let dir = store.snapshot_dir(&image.manifest_digest);
    if !dir.join("complete").exists() {
        let tmp = store.temp_dir("snapshot-")?;
        let rootfs = tmp.path().join("rootfs");
        fs_err::create_dir(&rootfs)?;
        unpack_layers(
            store,
            &image.fs_layers,
            image.config.rootfs().diff_ids(),
            &rootfs,
        )?;
        if let ModuleSource::Layer(l) = &image.module {
            fs_err::write(tmp.path().join("module-digest"), l.digest().to_string())?;
        } else if let Some(entry) = default_argv(image).first().filter(|_| image.is_wasm()) {
            // Keep the entrypoint module outside the guest's view.
            let rel = entry.trim_start_matches('/');
            let src = rootfs.join(rel);
            if entry.starts_with('/') && confined_is_file(&rootfs, rel) {
                let bytes = fs_err::read(&src)?;
                fs_err::write(tmp.path().join("entry.wasm"), &bytes)?;
                fs_err::remove_file(&src)?;
                fs_err::write(tmp.path().join("entry-path"), entry)?;
                fs_err::write(
                    tmp.path().join("module-digest"),
                    Digest::of(&bytes).to_string(),
                )?;
            }
        }
        publish_complete(tmp, &dir)?;
    }
    let in_use = crate::store::StoreLock::shared_dir(&dir)?;
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    Ok(Snapshot {
        entry_path: read("entry-path"),
        module_digest: read("module-digest").and_then(|d| d.trim().parse().ok()),
        dir,
        _in_use: in_use,
    })
}

/// Moves a tree unpacked in the store's temp area to `dir`, marked
/// `complete`. Everything unpacked reaches the disk before the marker: a
/// crash leaves either no `complete` (the staging directory is discarded)
/// or a whole tree. When another process published the same tree first,
/// this copy is dropped.
pub(crate) fn publish_complete(tmp: tempfile::TempDir, dir: &Path) -> Result<(), RunError> {
    rustix::fs::syncfs(fs_err::File::open(tmp.path())?.file()).map_err(std::io::Error::from)?;
    fs_err::File::create(tmp.path().join("complete"))?.sync_all()?;
    let staged = tmp.keep();
    match std::fs::rename(&staged, dir) {
        Ok(()) => crate::store::sync_dir(dir.parent().expect("a store dir has a parent"))?,
        Err(_) if dir.join("complete").exists() => {
            let _ = fs_err::remove_dir_all(&staged);
        }
        Err(e) => {
            let _ = fs_err::remove_dir_all(&staged);
            return Err(e.into());
        }
    }
    Ok(())
}

/// True when `rel` names a regular file inside `root` without leaving it.
fn confined_is_file(root: &Path, rel: &str) -> bool {
    cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())
        .and_then(|d| d.metadata(rel))
        .is_ok_and(|m| m.is_file())
}

/// ENTRYPOINT followed by CMD, as Docker combines them.
pub fn default_argv(image: &Image) -> Vec<String> {
    let p = image.process();
    let mut argv = p.entrypoint().clone().unwrap_or_default();
    argv.extend(p.cmd().clone().unwrap_or_default());
    argv
}

/// An image resolved for running: its module, command line, environment
/// and filesystem view. While it lives, its snapshot stays on disk.
#[derive(Debug)]
pub struct Prepared {
    /// The module or component to run.
    pub module: ModuleInput,
    /// The guest's argv.
    pub argv: Vec<String>,
    /// The guest's environment, in order.
    pub env: Vec<(String, String)>,
    /// The guest's filesystem view.
    pub sandbox: wasm::Sandbox,
    _snapshot: Snapshot,
}

/// Runs the image `image` (named `name` in messages) with `options`.
pub fn run_image(
    store: &Store,
    name: &str,
    image: &Image,
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    let p = prepare_image(store, name, image, options)?;
    WasmExecutor::new(store.clone()).run(&p.module, &p.argv, &p.env, &p.sandbox, options)
}

/// Resolves `image` for running with `options` (args, entrypoint, env,
/// mounts, workdir), as `run_image` does, without starting it.
pub fn prepare_image(
    store: &Store,
    name: &str,
    image: &Image,
    options: &RunOptions,
) -> Result<Prepared, RunError> {
    if !image.is_wasm() {
        return Err(RunError::NotWasm {
            image: name.to_owned(),
            platform: image.platform(),
        });
    }
    let process = image.process();
    let snapshot = {
        let _lock = store.lock_shared()?;
        ensure_snapshot(store, image)?
    };
    let image_workdir = process.working_dir().clone().filter(|w| !w.is_empty());
    let workdir = options
        .workdir
        .clone()
        .or(image_workdir)
        .unwrap_or_else(|| "/".into());
    // Docker: --entrypoint replaces ENTRYPOINT and drops the image CMD.
    let argv: Vec<String> = match &options.entrypoint {
        Some(ep) => std::iter::once(ep.clone())
            .chain(options.args.clone().unwrap_or_default())
            .collect(),
        None => {
            let mut a = process.entrypoint().clone().unwrap_or_default();
            a.extend(
                options
                    .args
                    .clone()
                    .or_else(|| process.cmd().clone())
                    .unwrap_or_default(),
            );
            a
        }
    };
    let module = match &image.module {
        ModuleSource::Layer(l) => {
            let d = crate::image::descriptor_digest(l)?;
            ModuleInput::Blob {
                path: store.blob_path(&d),
                digest: d,
            }
        }
        ModuleSource::Filesystem => {
            let Some(first) = argv.first() else {
                return Err(RunError::NoEntrypoint(name.to_owned()));
            };
            let abs = if first.starts_with('/') {
                first.clone()
            } else {
                format!("{}/{}", workdir.trim_end_matches('/'), first)
            };
            if snapshot.entry_path.as_deref() == Some(abs.as_str()) {
                ModuleInput::Blob {
                    path: snapshot.dir.join("entry.wasm"),
                    digest: snapshot
                        .module_digest
                        .clone()
                        .expect("recorded with the entry"),
                }
            } else {
                let root = cap_std::fs::Dir::open_ambient_dir(
                    snapshot.rootfs(),
                    cap_std::ambient_authority(),
                )?;
                let bytes = root
                    .read(abs.trim_start_matches('/'))
                    .map_err(|_| RunError::ModuleNotFound(abs.clone()))?;
                ModuleInput::Bytes {
                    digest: Digest::of(&bytes),
                    bytes,
                }
            }
        }
    };
    // A module carried in its own layer has no path: argv[0] is a name for
    // it and every given argument reaches the guest.
    let named = options.entrypoint.is_some()
        || process.entrypoint().as_ref().is_some_and(|e| !e.is_empty());
    let argv = match &image.module {
        ModuleSource::Layer(_) if !named => std::iter::once("module.wasm".to_owned())
            .chain(argv)
            .collect(),
        _ if argv.is_empty() => vec!["module.wasm".to_owned()],
        _ => argv,
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let image_env = process.env().clone().unwrap_or_default();
    let pairs = image_env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .unwrap_or((kv.clone(), String::new()))
        })
        .chain(options.env.iter().cloned());
    for (k, v) in pairs {
        if env.insert(k.clone(), v).is_none() {
            order.push(k);
        }
    }
    let env: Vec<(String, String)> = order
        .into_iter()
        .map(|k| {
            let v = env[&k].clone();
            (k, v)
        })
        .collect();
    let sandbox = wasm::Sandbox {
        root: Some((snapshot.rootfs(), true)),
        mounts: options.mounts.clone(),
        workdir,
    };
    Ok(Prepared {
        module,
        argv,
        env,
        sandbox,
        _snapshot: snapshot,
    })
}

/// Runs a plain `.wasm` (or `.wat`) file: no image filesystem, only the
/// mapped directories. `argv[0]` is the file name as given.
pub fn run_file(
    store: &Store,
    path: &Path,
    args: &[String],
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    let bytes =
        fs_err::read(path).map_err(|_| RunError::ModuleNotFound(path.display().to_string()))?;
    let module = ModuleInput::Bytes {
        digest: Digest::of(&bytes),
        bytes,
    };
    let argv: Vec<String> = std::iter::once(path.display().to_string())
        .chain(args.iter().cloned())
        .collect();
    let sandbox = wasm::Sandbox {
        root: None,
        mounts: options.mounts.clone(),
        workdir: options.workdir.clone().unwrap_or_else(|| "/".into()),
    };
    WasmExecutor::new(store.clone()).run(&module, &argv, &options.env, &sandbox, options)
}

/// Parses an env file as Docker does: `KEY=VALUE` lines, `#` comments and
/// blank lines skipped, a bare `KEY` taking the host's value (or skipped
/// when the host has none).
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, _)) if k.is_empty() || k.contains(char::is_whitespace) => {
                return Err(format!("line {}: invalid variable name {k:?}", i + 1));
            }
            Some((k, v)) => out.push((k.to_owned(), v.to_owned())),
            None => {
                if let Ok(v) = std::env::var(line.trim_end()) {
                    out.push((line.trim_end().to_owned(), v));
                }
            }
        }
    }
    Ok(out)
}

/// Parses `-e` values: `K=V`, or a bare `K` taking the host's value.
pub fn parse_env_arg(arg: &str) -> Option<(String, String)> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Some((k.to_owned(), v.to_owned())),
        Some(_) => None,
        None => std::env::var(arg).ok().map(|v| (arg.to_owned(), v)),
    }
}

/// Parses a duration: `1.5s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration {s:?}: use ms, s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("invalid duration {s:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size as Docker does: `512`, `64k`, `64m`, `1g` (binary units,
/// optional `b`/`B` suffix).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: use a number with an optional k, m or g"))?;
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mounts() {
        let m: Mount = "/tmp:/data:ro".parse().unwrap();
        assert!(m.read_only);
        assert_eq!(m.guest, "/data");
        assert!("/tmp:data".parse::<Mount>().is_err());
        assert!("/tmp:/a/../b".parse::<Mount>().is_err());
        assert!("/tmp:/a:rx".parse::<Mount>().is_err());
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn parses_env_files() {
        let e = parse_env_file("# c\nA=1\n\nB=x=y\n").unwrap();
        assert_eq!(
            e,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert!(parse_env_file("=x").is_err());
    }
}
