//! The guest host: one long-lived process that a host starting many
//! containers (the daemon) runs beside it, and that runs plain wasm
//! containers each on a thread of its own instead of in a monitor
//! process each (decision 0013). It is their monitor: it holds each
//! one's monitor and run locks, writes its log, records its exit
//! and removes it with `--rm`, exactly as a monitor process does; only
//! the process is shared. Guests share its engines and compiled code
//! ([`exec::wasm::Engines`]), so a start costs an instantiation.
//!
//! Requests to start arrive as a monitor server's do (a datagram on the
//! socket pair that is its stdin: [`super::server`]). Signals and pauses
//! cannot go to a shared process: they come as one-line requests on its
//! control socket, `ROOT/wharf/hosts/PID.sock` (`kill ID SIG`, `pause
//! ID`, `unpause ID`; answered `ok` or `error MESSAGE`), which every wharf
//! process of the store can reach, as it can signal a monitor. When the
//! daemon's end closes, the host takes no more containers and ends once
//! the last of its guests has; the guests outlive the daemon.
//!
//! Which containers: wasm, without a terminal, input, published ports or
//! a restart policy ([`hostable`]); every other container gets a monitor
//! process of its own.

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use super::logs::{LogWriter, MAX_ENTRY};
use super::monitor::{self, FORCED_EXIT_AFTER};
use super::{now_ns, Container, ContainerConfig, ContainerError, Containers, RestartPolicy};
use super::{Hold, Result, Status};
use crate::exec::{self, Interrupt};
use crate::store::{ByteLock, Store};

/// Whether a container can run in a guest host rather than in a monitor
/// process of its own: a wasm guest with nothing a monitor process does
/// for it alone (a terminal, input, a restart loop, listeners that must
/// close when it is killed).
pub(crate) fn hostable(config: &ContainerConfig) -> bool {
    config.wasm
        && !config.tty
        && !config.open_stdin
        && config.restart == RestartPolicy::No
        && config.publish.is_empty()
}

/// The control socket of the guest host with process id `pid`.
pub(crate) fn control_socket(store: &Store, pid: u32) -> PathBuf {
    store.root().join(format!("wharf/hosts/{pid}.sock"))
}

/// How the host's answer begins when the container is not (or no
/// longer) running there.
const GONE: &str = "gone:";

/// Sends `request` to the guest host `pid` and returns once it has acted.
pub(crate) fn request(store: &Store, pid: u32, request: &str) -> Result<()> {
    let path = control_socket(store, pid);
    let gone = |e: std::io::Error| {
        ContainerError::Io(std::io::Error::new(
            e.kind(),
            format!("guest host {pid} ({}): {e}", path.display()),
        ))
    };
    let mut s = UnixStream::connect(&path).map_err(gone)?;
    writeln!(s, "{request}").map_err(gone)?;
    let mut answer = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut answer)
        .map_err(gone)?;
    let answer = answer.trim_end();
    match answer.strip_prefix("error ") {
        None if answer == "ok" => Ok(()),
        // The container is no longer running there.
        Some(m) if m.starts_with(GONE) => Err(ContainerError::NotRunning(
            request.split(' ').nth(1).unwrap_or_default().to_owned(),
        )),
        Some(m) => Err(ContainerError::Invalid(format!("guest host {pid}: {m}"))),
        None => Err(ContainerError::Invalid(format!(
            "guest host {pid}: unexpected answer {answer:?}"
        ))),
    }
}

/// The body of `guest-host`: its standard input is the host's socket.
/// Runs a container on a new thread for each request and returns when
/// the host has gone away and the last guest has ended.
pub fn run_guest_host(store: &Store) -> Result<()> {
    let socket = super::server::take_stdin()?;
    let host = Arc::new(Host {
        cs: Containers::open(store)?,
        executor: exec::WasmExecutor::sharing(store.clone(), Arc::default()),
        guests: Mutex::default(),
        idle: Condvar::new(),
    });
    let control = control_socket(store, std::process::id());
    let listener = host.listen(&control)?;
    {
        let host = host.clone();
        std::thread::Builder::new()
            .name("host-control".into())
            .stack_size(256 << 10)
            .spawn(move || host.serve(listener))?;
    }
    loop {
        let request = match super::server::receive(&socket) {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "the daemon's socket failed: taking no more guests");
                break;
            }
        };
        // (Its errors go to the handshake: no early-error file needed.)
        let Some(super::server::Request { id, handshake, .. }) = request else {
            continue;
        };
        let host = host.clone();
        let spawned = std::thread::Builder::new()
            .name("guest".into())
            .spawn(move || host.run(&id, handshake));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a guest thread");
        }
    }
    // The daemon is gone: the guests run on to their end.
    let mut guests = host.guests();
    while !guests.is_empty() {
        guests = host.idle.wait(guests).unwrap_or_else(|e| e.into_inner());
    }
    let _ = std::fs::remove_file(&control);
    Ok(())
}

struct Host {
    cs: Containers,
    /// Runs every guest, on shared engines and compiled code.
    executor: exec::WasmExecutor,
    /// The running guests, by container id.
    guests: Mutex<HashMap<String, Arc<Guest>>>,
    /// Notified when a guest leaves `guests`.
    idle: Condvar,
}

/// One running container.
struct Guest {
    interrupt: Interrupt,
    /// What recording its end needs; taken by whoever records it (the
    /// guest's thread, or a forced exit after a stop).
    end: Mutex<Option<End>>,
}

/// A run's locks and log, held until its end is recorded.
struct End {
    c: Container,
    log: LogWriter,
    lines: [Arc<Lines>; 2],
    run_lock: ByteLock,
    alive: ByteLock,
}

impl Host {
    fn guests(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Guest>>> {
        self.guests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds the control socket (in a directory only the store's owner
    /// can enter; one left by a host that died with our pid is replaced).
    fn listen(&self, path: &std::path::Path) -> Result<UnixListener> {
        let dir = path.parent().expect("a socket in a directory");
        fs_err::create_dir_all(dir)?;
        fs_err::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let _ = std::fs::remove_file(path);
        Ok(UnixListener::bind(path)?)
    }

    /// Answers control requests, one connection after another.
    fn serve(self: &Arc<Host>, listener: UnixListener) {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            // A client that sends nothing does not hold up the others.
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let answer = match self.control(line.trim_end()) {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("error {e}"),
            };
            let _ = writeln!(&stream, "{answer}");
        }
    }

    fn control(self: &Arc<Host>, line: &str) -> std::result::Result<(), String> {
        let words: Vec<&str> = line.split(' ').collect();
        let guest = |id: &str| {
            self.guests()
                .get(id)
                .cloned()
                .ok_or_else(|| format!("{GONE} container {id} is not running here"))
        };
        match words[..] {
            ["kill", id, signal] => {
                let signal: i32 = signal.parse().map_err(|_| format!("bad signal {signal}"))?;
                let g = guest(id)?;
                // What a monitor process ends its guest on; others (as
                // SIGWINCH) a guest could not act on.
                if signal != libc::SIGKILL && !monitor::HANDLED.contains(&signal) {
                    return Ok(());
                }
                g.interrupt.signal(signal);
                // A guest blocked in a host call sees the interruption
                // only when the call returns: its exit is recorded
                // without it, and the thread is left to end on its own,
                // no longer one of the guests (a host whose daemon is gone
                // ends without waiting for it, as a monitor would).
                let host = self.clone();
                let stuck = g.clone();
                let id = id.to_owned();
                let _ = std::thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(move || {
                        std::thread::sleep(FORCED_EXIT_AFTER);
                        stuck.record_end(&host.cs, &id, Ok(exec::Exit::Signal(signal)), true);
                        host.forget(&id, &stuck);
                    });
                Ok(())
            }
            ["pause", id] => {
                guest(id)?.interrupt.set_paused(true);
                Ok(())
            }
            ["unpause", id] => {
                guest(id)?.interrupt.set_paused(false);
                Ok(())
            }
            _ => Err(format!("unknown request {line:?}")),
        }
    }

    /// Runs container `id` to its end, telling `handshake` whether it
    /// started, as a monitor process does ([`super::run_monitor`]).
    fn run(self: &Arc<Host>, id: &str, handshake: OwnedFd) {
        // One line, then end-of-file (the starter reads to the end).
        let answer = |line: &str| {
            let _ = writeln!(std::fs::File::from(handshake), "{line}");
        };
        let Begun {
            guest,
            prepared,
            options,
        } = match self.begin(id) {
            Ok(b) => b,
            Err((code, e)) => return answer(&format!("error {code} {e}")),
        };
        answer("running");
        // A panic in this thread must not leave the container running
        // with its locks held for the host's life.
        let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.executor.run(
                &prepared.module,
                &prepared.argv,
                &prepared.env,
                &prepared.sandbox,
                &options,
            )
        }))
        .unwrap_or_else(|_| Err(exec::RunError::Engine("the guest's thread panicked".into())))
        .map(|o| o.exit)
        .map_err(ContainerError::from);
        guest.record_end(&self.cs, id, exit, false);
        self.forget(id, &guest);
    }

    /// Takes `guest` out of the running ones, unless a later run of the
    /// same container took its place.
    fn forget(&self, id: &str, guest: &Arc<Guest>) {
        let mut guests = self.guests();
        if guests.get(id).is_some_and(|g| Arc::ptr_eq(g, guest)) {
            guests.remove(id);
        }
        self.idle.notify_all();
    }

    /// Takes the container's locks, prepares its run (its output going to
    /// its log, its interrupt the guest's) and records it running; on
    /// failure, Docker's exit code and why.
    fn begin(&self, id: &str) -> std::result::Result<Begun, (i32, ContainerError)> {
        let cs = &self.cs;
        let wharf = |e: ContainerError| (exec::EXIT_WHARF_ERROR, e);
        let id = cs.resolve(id).map_err(wharf)?;
        let alive = cs
            .try_hold(&id, Hold::Monitor)
            .map_err(wharf)?
            .ok_or_else(|| wharf(ContainerError::AlreadyRunning(id.clone())))?;
        let c = cs.load(&id).map_err(wharf)?;
        let log = LogWriter::open(&cs.log_path(&id), c.config.log_rotation().map_err(wharf)?);
        let run_lock = cs.hold(&id, Hold::Run).map_err(wharf)?;
        let (prepared, mut options) = match monitor::prepare(cs, &c) {
            Ok(monitor::Prepared::Wasm(p, options)) => (*p, options),
            Ok(monitor::Prepared::Linux(..)) => {
                let e = ContainerError::Invalid(format!("{id} is not a wasm container"));
                return Err(wharf(e));
            }
            Err(e) => {
                let code = monitor::error_code(&e);
                let _ = cs.update(&id, |s| {
                    s.status = Status::Exited;
                    s.pid = 0;
                    s.exit_code = code;
                    s.error = e.to_string();
                    s.finished_at = now_ns();
                    s.stop_requested = false;
                    s.restart_count = 0;
                });
                let _ = log.write("stderr", format!("wharf: {e}\n").as_bytes());
                return Err((code, e));
            }
        };
        let lines = [Lines::new(&log, "stdout"), Lines::new(&log, "stderr")];
        let guest = Arc::new(Guest {
            interrupt: Interrupt::new(),
            end: Mutex::new(Some(End {
                c,
                log,
                lines: lines.clone(),
                run_lock,
                alive,
            })),
        });
        options.interrupt = Some(guest.interrupt.clone());
        options.output = Some(exec::Output {
            stdout: sink(&lines[0]),
            stderr: sink(&lines[1]),
        });
        self.guests().insert(id.clone(), guest.clone());
        let marked = cs.update(&id, |s| {
            s.status = Status::Running;
            s.pid = std::process::id();
            s.hosted = true;
            s.paused = false;
            s.started_at = now_ns();
            s.restart_count = 0;
            s.stop_requested = false;
            s.error.clear();
        });
        if let Err(e) = marked {
            let failed = ContainerError::Invalid(e.to_string());
            guest.record_end(cs, &id, Err(failed), false);
            self.forget(&id, &guest);
            return Err(wharf(e));
        }
        Ok(Begun {
            guest,
            prepared,
            options,
        })
    }
}

/// A container about to run.
struct Begun {
    guest: Arc<Guest>,
    prepared: exec::Prepared,
    options: exec::RunOptions,
}

impl Guest {
    /// Records how the run ended (once: whoever comes first), writes what
    /// is left of its output, releases its locks and, with `--rm`,
    /// removes the container. `forced`: a stop whose guest did not return
    /// in time.
    fn record_end(
        &self,
        cs: &Containers,
        id: &str,
        exit: std::result::Result<exec::Exit, ContainerError>,
        forced: bool,
    ) {
        let Some(end) = self.end.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        for l in &end.lines {
            l.finish();
        }
        if let Err(e) = &exit {
            let _ = end.log.write("stderr", format!("wharf: {e}\n").as_bytes());
        }
        let (code, error) = monitor::outcome(&exit, &end.log);
        let _ = cs.update(id, |s| {
            monitor::exited(s, code, error);
            s.stop_requested |= forced;
        });
        drop(end.run_lock);
        if end.c.config.auto_remove {
            cs.leave_tombstone(id, code);
            // As it is now (renamed since, perhaps).
            let c = cs.load(id).unwrap_or(end.c);
            drop(end.alive);
            let _ = cs.delete(&c);
        }
    }
}

/// One output stream of a guest cut into log entries: complete lines (or
/// [`MAX_ENTRY`] pieces of longer ones) as they are written, the rest at
/// the end, as a monitor's pumps cut a pipe's.
struct Lines {
    log: LogWriter,
    stream: &'static str,
    /// A line not yet complete; None once the run's end is recorded
    /// (a guest thread left running after a forced exit writes nothing
    /// more).
    partial: Mutex<Option<Vec<u8>>>,
}

impl Lines {
    fn new(log: &LogWriter, stream: &'static str) -> Arc<Lines> {
        Arc::new(Lines {
            log: log.clone(),
            stream,
            partial: Mutex::new(Some(Vec::new())),
        })
    }

    fn write(&self, mut bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        let Some(partial) = partial.as_mut() else {
            return;
        };
        while !bytes.is_empty() {
            let room = MAX_ENTRY - partial.len();
            let take = match bytes[..bytes.len().min(room)]
                .iter()
                .position(|&b| b == b'\n')
            {
                Some(at) => at + 1,
                None => bytes.len().min(room),
            };
            partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if partial.ends_with(b"\n") || partial.len() == MAX_ENTRY {
                self.emit(partial);
            }
        }
    }

    /// Writes what is left of a line without its newline; later writes
    /// are dropped.
    fn finish(&self) {
        let partial = self
            .partial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut partial) = partial.filter(|p| !p.is_empty()) {
            self.emit(&mut partial);
        }
    }

    fn emit(&self, partial: &mut Vec<u8>) {
        if let Err(e) = self.log.write(self.stream, partial) {
            tracing::warn!(error = %e, "cannot write the container log");
        }
        partial.clear();
    }
}

fn sink(lines: &Arc<Lines>) -> exec::Sink {
    let lines = lines.clone();
    Arc::new(move |bytes: &[u8]| lines.write(bytes))
}
