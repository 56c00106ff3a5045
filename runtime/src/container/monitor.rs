//! The monitor: the process that owns one running container, as conmon
//! or containerd-shim do. It runs the container (a wasm guest in-process,
//! a Linux container through the native backend), turns its output into
//! the json-file log, records each exit, applies the restart policy and,
//! with `--rm`, removes the container at the end. It outlives the command
//! (or daemon) that started it.

use std::io::Write as _;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::logs::{Framing, LogWriter};
use super::{now_ns, Container, ContainerError, Containers, Hold, Result, State, Status};
use crate::exec::{self, Interrupt};
use crate::store::{ByteLock, Store};

/// Signals a monitor handles: they end a wasm guest (which has no signal
/// handlers) with 128 + the signal; a Linux container's init receives
/// them from the backend's forwarding.
pub(super) const HANDLED: [i32; 6] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTERM,
];

/// How long a stopped wasm guest has to return before the monitor records
/// its exit and ends anyway: a guest blocked in a host call (a sleep, a
/// socket) only sees the interruption when it returns.
pub(super) const FORCED_EXIT_AFTER: Duration = Duration::from_millis(250);

/// The body of a monitor process for container `id` (what `wharf
/// container-monitor ID` runs). Its standard output must be the pipe that
/// [`Containers::start`] reads: one line, `running` or `error MESSAGE`.
/// Returns the process exit code.
pub fn run_monitor(store: &Store, id: &str) -> Result<i32> {
    let cs = Containers::open(store)?;
    let handshake = rustix::io::dup(rustix::stdio::stdout()).map_err(std::io::Error::from)?;
    let handshake = Handshake(Arc::new(Mutex::new(Some(std::fs::File::from(handshake)))));
    // From here on our stdout and stderr are the container's.
    redirect_stdio_to_null()?;
    let id = match cs.resolve(id) {
        Ok(id) => id,
        Err(e) => {
            handshake.answer(&format!("error 125 {e}"));
            return Ok(1);
        }
    };
    let dir = cs.dir(&id);
    let Some(_alive) = cs.try_hold(&id, Hold::Monitor)? else {
        handshake.answer("error 125 the container is already running");
        return Ok(1);
    };
    let c = cs.load(&id)?;
    let console = c.config.tty.then(|| Console::sized(c.config.console_size));
    if let Some(console) = &console {
        console.serve_resizes(&dir.join("resize"))?;
    }
    if c.config.open_stdin {
        match &console {
            Some(console) => console.feed_from(&dir.join("stdin")),
            None => connect_stdin(&dir.join("stdin"), c.config.stdin_once)?,
        }
    }
    let log = LogWriter::open(&cs.log_path(&id), c.config.log_rotation()?);
    let signals = Signals::install()?;
    cs.update(&id, |s| {
        s.restart_count = 0;
        s.stop_requested = false;
        s.error.clear();
    })?;

    let mut backoff = Duration::from_millis(100);
    let code = loop {
        let began = Instant::now();
        signals.drain();
        let run = Run {
            cs: &cs,
            c: &c,
            log: &log,
            signals: &signals,
            console: console.as_ref(),
        };
        let started = Started {
            handshake: handshake.clone(),
            ran: Arc::default(),
        };
        let code = run.once(&started);
        let ran = started.ran();
        let state = cs.read_state(&id)?;
        let again =
            ran && !state.stop_requested && c.config.restart.restarts(code, state.restart_count);
        if !again {
            break code;
        }
        // Docker's back-off: doubling from 100 ms, reset after 10 s of run.
        if began.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        cs.update(&id, |s| {
            s.status = Status::Restarting;
            s.restart_count += 1;
        })?;
        if signals.wait(backoff).is_some() {
            cs.update(&id, |s| {
                s.status = Status::Exited;
                s.stop_requested = true;
            })?;
            break code;
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
        if cs.read_state(&id)?.stop_requested {
            cs.update(&id, |s| s.status = Status::Exited)?;
            break code;
        }
    };
    if c.config.auto_remove {
        cs.leave_tombstone(&id, code);
        let c = cs.load(&id)?;
        drop(_alive);
        let _ = cs.delete(&c);
    }
    Ok(0)
}

/// The pipe on which [`Containers::start`] hears, once, whether the
/// container started.
#[derive(Clone)]
struct Handshake(Arc<Mutex<Option<std::fs::File>>>);

impl Handshake {
    /// Writes `line` if nothing was written yet.
    fn answer(&self, line: &str) {
        if let Some(mut f) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Whether one run started: it tells the handshake.
#[derive(Clone)]
struct Started {
    handshake: Handshake,
    ran: Arc<AtomicBool>,
}

impl Started {
    fn ok(&self) {
        self.ran.store(true, Ordering::SeqCst);
        self.handshake.answer("running");
    }

    fn failed(&self, code: i32, message: &str) {
        self.handshake.answer(&format!("error {code} {message}"));
    }

    fn ran(&self) -> bool {
        self.ran.load(Ordering::SeqCst)
    }
}

/// A wasm run that signals stop: its interrupt, whether it still runs,
/// and what to do if it does not return in time.
#[derive(Clone)]
struct Armed {
    interrupt: Interrupt,
    running: Arc<AtomicBool>,
    stuck: Arc<dyn Fn(i32) + Send + Sync>,
}

/// The signals that reach the monitor, delivered to one thread.
struct Signals {
    rx: mpsc::Receiver<i32>,
    /// The wasm run in progress, if any.
    current: Arc<std::sync::Mutex<Option<Armed>>>,
}

impl Signals {
    fn install() -> Result<Signals> {
        let (tx, rx) = mpsc::channel();
        let current: Arc<std::sync::Mutex<Option<Armed>>> = Arc::default();
        let armed = current.clone();
        let mut signals = signal_hook::iterator::Signals::new(HANDLED)?;
        std::thread::Builder::new()
            .name("monitor-signals".into())
            .stack_size(64 << 10)
            .spawn(move || {
                for sig in signals.forever() {
                    let run = armed.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if let Some(run) = run {
                        run.interrupt.signal(sig);
                        // A guest blocked in a host call sees the
                        // interruption only when the call returns.
                        let _ = std::thread::Builder::new()
                            .stack_size(64 << 10)
                            .spawn(move || {
                                std::thread::sleep(FORCED_EXIT_AFTER);
                                if run.running.load(Ordering::SeqCst) {
                                    (run.stuck)(sig);
                                }
                            });
                    }
                    let _ = tx.send(sig);
                }
            })?;
        Ok(Signals { rx, current })
    }

    /// Waits up to `d` for a signal.
    fn wait(&self, d: Duration) -> Option<i32> {
        self.rx.recv_timeout(d).ok()
    }

    /// Forgets signals that arrived before now.
    fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }
}

/// One run of the container.
struct Run<'a> {
    cs: &'a Containers,
    c: &'a Container,
    log: &'a LogWriter,
    signals: &'a Signals,
    /// The container's terminal, with `-t`.
    console: Option<&'a Console>,
}

impl Run<'_> {
    /// Runs the container once; `started` hears whether it started. The
    /// state says `running` (with its run lock held) exactly while it runs,
    /// and records the exit (or the failure to start) before the lock is
    /// released.
    fn once(&self, started: &Started) -> i32 {
        let id = &self.c.id;
        let run_lock = match self.cs.hold(id, Hold::Run) {
            Ok(l) => l,
            Err(e) => {
                started.failed(exec::EXIT_WHARF_ERROR, &e.to_string());
                return exec::EXIT_WHARF_ERROR;
            }
        };
        // Everything that can fail before the guest starts (the image is
        // gone, bad options, a missing module) fails the start.
        let prepared = self.prepare();
        let marked = self.cs.update(id, |s| {
            s.status = Status::Running;
            s.pid = std::process::id();
            s.paused = false;
            s.started_at = now_ns();
        });
        let prepared = match (prepared, marked) {
            (Ok(p), Ok(_)) => p,
            (Err(e), _) => return self.failed(started, e, run_lock),
            (_, Err(e)) => return self.failed(started, e, run_lock),
        };
        let result = self.execute(prepared, started);
        let (code, error) = outcome(&result, self.log);
        let _ = self.cs.update(id, |s| exited(s, code, error));
        drop(run_lock);
        code
    }

    fn failed(&self, started: &Started, e: ContainerError, run_lock: ByteLock) -> i32 {
        let code = error_code(&e);
        let _ = self.cs.update(&self.c.id, |s| {
            s.status = Status::Exited;
            s.pid = 0;
            s.exit_code = code;
            s.error = e.to_string();
            s.finished_at = now_ns();
        });
        let _ = self.log.write("stderr", format!("wharf: {e}\n").as_bytes());
        drop(run_lock);
        started.failed(code, &e.to_string());
        code
    }

    fn prepare(&self) -> Result<Prepared> {
        prepare(self.cs, self.c)
    }

    /// Runs the prepared container with its output going to the log.
    fn execute(
        &self,
        prepared: Prepared,
        started: &Started,
    ) -> std::result::Result<exec::Exit, ContainerError> {
        let pumps: Pumps = Arc::default();
        if self.console.is_none() {
            *pumps.lock().unwrap_or_else(|e| e.into_inner()) = self.connect_output()?;
        }
        let result = match prepared {
            Prepared::Wasm(p, mut options) => {
                if let Some(console) = self.console {
                    // The guest's stdio is the slave side of a fresh pty.
                    let pty = exec::tty::open_pty()?;
                    rustix::stdio::dup2_stdin(&pty.slave).map_err(std::io::Error::from)?;
                    rustix::stdio::dup2_stdout(&pty.slave).map_err(std::io::Error::from)?;
                    rustix::stdio::dup2_stderr(&pty.slave).map_err(std::io::Error::from)?;
                    console.run_on(pty.master, self.log, &pumps)?;
                }
                started.ok();
                let armed = Armed {
                    interrupt: Interrupt::new(),
                    running: Arc::new(AtomicBool::new(true)),
                    stuck: self.on_stuck(),
                };
                options.interrupt = Some(armed.interrupt.clone());
                *self
                    .signals
                    .current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(armed.clone());
                let r = exec::WasmExecutor::new(self.cs.store().clone())
                    .run(&p.module, &p.argv, &p.env, &p.sandbox, &options)
                    .map(|o| o.exit)
                    .map_err(ContainerError::from);
                armed.running.store(false, Ordering::SeqCst);
                *self
                    .signals
                    .current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                r
            }
            Prepared::Linux(image, options) => {
                // Started once the init runs: a stop or kill from then on
                // reaches it.
                let mut linux = self.c.config.linux_options(&self.c.id);
                // Its files survive stop and start, until `rm`.
                linux.rw = Some(self.cs.dir(&self.c.id).join("rw"));
                let hook = started.clone();
                linux.on_start = Some(exec::linux::OnStart(Arc::new(move |_| hook.ok())));
                if let Some(console) = self.console {
                    let (console, log, pumps) = (console.clone(), self.log.clone(), pumps.clone());
                    linux.terminal = Some(exec::linux::OnTerminal(Arc::new(move |master| {
                        if let Err(e) = console.run_on(master, &log, &pumps) {
                            tracing::warn!(error = %e, "cannot use the container's terminal");
                        }
                    })));
                }
                exec::linux::run(self.cs.store(), &image, &options, &linux)
                    .map(|o| o.exit)
                    .map_err(ContainerError::from)
            }
        };
        match &result {
            Err(e) => {
                let _ = self.log.write("stderr", format!("wharf: {e}\n").as_bytes());
                started.failed(error_code(e), &e.to_string());
            }
            Ok(_) => started.ok(),
        }
        // The container's ends of the pipes (or its terminal) close: the
        // pumps read what is left and finish, so the log is complete
        // before the exit is recorded.
        redirect_stdio_to_null()?;
        if let Some(console) = self.console {
            let null = std::fs::File::open("/dev/null")?;
            rustix::stdio::dup2_stdin(&null).map_err(std::io::Error::from)?;
            console.detach();
        }
        let pumps = std::mem::take(&mut *pumps.lock().unwrap_or_else(|e| e.into_inner()));
        for p in pumps {
            let _ = p.join();
        }
        result
    }

    /// Points our stdout and stderr (which the guest inherits) at fresh
    /// pipes whose other ends feed the log.
    fn connect_output(&self) -> Result<Vec<std::thread::JoinHandle<()>>> {
        let mut pumps = Vec::new();
        for (stream, fd) in [("stdout", 1), ("stderr", 2)] {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(std::io::Error::from)?;
            if fd == 1 {
                rustix::stdio::dup2_stdout(&w).map_err(std::io::Error::from)?;
            } else {
                rustix::stdio::dup2_stderr(&w).map_err(std::io::Error::from)?;
            }
            drop(w);
            pumps.push(
                self.log
                    .pump(stream, std::fs::File::from(r), Framing::Lines)?,
            );
        }
        Ok(pumps)
    }

    /// What ends a wasm guest still blocked in a host call
    /// [`FORCED_EXIT_AFTER`] after a stop signal: its exit is recorded as
    /// 128 + the signal and the monitor exits.
    fn on_stuck(&self) -> Arc<dyn Fn(i32) + Send + Sync> {
        let cs = self.cs.clone();
        let c = self.c.clone();
        Arc::new(move |sig| {
            // The pumps see end-of-file and write what they have.
            let _ = redirect_stdio_to_null();
            std::thread::sleep(Duration::from_millis(50));
            let code = 128 + sig;
            let _ = cs.update(&c.id, |s| {
                s.status = Status::Exited;
                s.pid = 0;
                s.exit_code = code;
                s.finished_at = now_ns();
                s.stop_requested = true;
            });
            if c.config.auto_remove {
                cs.leave_tombstone(&c.id, code);
                let _ = cs.delete(&c);
            }
            std::process::exit(0);
        })
    }
}

/// A container's terminal (`-t`): the master side of its current pty,
/// where attached clients' input and new window sizes go. It outlives
/// each run: a restarted container gets a new pty, with the last size.
#[derive(Clone, Default)]
struct Console(Arc<(Mutex<ConsoleState>, std::sync::Condvar)>);

#[derive(Default)]
struct ConsoleState {
    master: Option<Arc<std::fs::File>>,
    size: Option<(u16, u16)>,
}

/// The threads that write a run's output to the log.
type Pumps = Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>;

impl Console {
    /// A console whose terminals start `size` big.
    fn sized(size: Option<(u16, u16)>) -> Console {
        let console = Console::default();
        console.0 .0.lock().unwrap_or_else(|e| e.into_inner()).size = size;
        console
    }

    /// A run's new pty: its size set, input going to its `master`, and
    /// what comes out logged (`stdout`, as read) by a pump in `pumps`.
    fn run_on(&self, master: OwnedFd, log: &LogWriter, pumps: &Pumps) -> Result<()> {
        let master = std::fs::File::from(master);
        let output = master.try_clone()?;
        {
            let mut state = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((rows, cols)) = state.size {
                let _ = exec::tty::set_size(&master, rows, cols);
            }
            state.master = Some(Arc::new(master));
            self.0 .1.notify_all();
        }
        let pump = log.pump("stdout", output, Framing::AsRead)?;
        pumps.lock().unwrap_or_else(|e| e.into_inner()).push(pump);
        Ok(())
    }

    /// The run ended.
    fn detach(&self) {
        self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).master = None;
    }

    /// Applies the sizes clients write to the `resize` fifo ("ROWS
    /// COLS" lines), now and for later runs. The fifo is held open for
    /// reading and writing, so a client's open never waits and the
    /// reader never sees end-of-file.
    fn serve_resizes(&self, fifo: &std::path::Path) -> Result<()> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(fifo)?;
        let console = self.clone();
        std::thread::Builder::new()
            .name("resize".into())
            .stack_size(64 << 10)
            .spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(f).lines() {
                    let Ok(line) = line else { return };
                    let mut words = line.split_whitespace().map(str::parse::<u16>);
                    if let (Some(Ok(rows)), Some(Ok(cols))) = (words.next(), words.next()) {
                        let mut state = console.0 .0.lock().unwrap_or_else(|e| e.into_inner());
                        state.size = Some((rows, cols));
                        if let Some(m) = &state.master {
                            let _ = exec::tty::set_size(m, rows, cols);
                        }
                    }
                }
            })?;
        Ok(())
    }

    /// Passes what clients write to the `stdin` fifo to the terminal
    /// (held until a run has one), one client after another. A terminal
    /// has no end of input, so `StdinOnce` does not apply: a client that
    /// goes away (detaching with its detach keys) leaves the process
    /// running and the next attach can type, as with Docker; a client
    /// that wants end-of-file types Ctrl-D.
    fn feed_from(&self, fifo: &std::path::Path) {
        let (fifo, console) = (fifo.to_owned(), self.clone());
        std::thread::spawn(move || loop {
            // Blocks until a client opens it for writing.
            let Ok(mut input) = std::fs::File::open(&fifo) else {
                return;
            };
            let mut buf = [0u8; 4096];
            loop {
                match std::io::Read::read(&mut input, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => console.write(&buf[..n]),
                }
            }
        });
    }

    /// Writes `bytes` to the terminal, waiting for one if no run has it
    /// yet (input typed before the container started).
    fn write(&self, bytes: &[u8]) {
        let (lock, ready) = &*self.0;
        let master = {
            let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(m) = &state.master {
                    break m.clone();
                }
                state = ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        // Outside the lock: a process that reads nothing fills the
        // terminal's buffer, and the write waits.
        let _ = (&*master).write_all(bytes);
    }
}

pub(super) enum Prepared {
    Wasm(Box<exec::Prepared>, exec::RunOptions),
    Linux(Box<crate::image::Image>, exec::RunOptions),
}

/// Everything that can fail before container `c` runs (the image is
/// gone, bad options, a missing module), done: what a run needs.
pub(super) fn prepare(cs: &Containers, c: &Container) -> Result<Prepared> {
    let config = &c.config;
    let image = cs.image_of(c)?;
    let options = config.run_options()?;
    if image.is_wasm() {
        let p = exec::prepare_image(cs.store(), &config.image, &image, &options)?;
        Ok(Prepared::Wasm(Box::new(p), options))
    } else {
        Ok(Prepared::Linux(Box::new(image), options))
    }
}

/// The exit code and error a run's end records; how a guest was stopped
/// (a trap, a limit; not a signal) is written to the log.
pub(super) fn outcome(
    result: &std::result::Result<exec::Exit, ContainerError>,
    log: &LogWriter,
) -> (i32, String) {
    match result {
        Ok(exit) => {
            if let (Some(m), false) = (exit.message(), matches!(exit, exec::Exit::Signal(_))) {
                let _ = log.write("stderr", format!("wharf: {m}\n").as_bytes());
            }
            (exit.code(), String::new())
        }
        Err(e) => (error_code(e), e.to_string()),
    }
}

/// A run's end in the state: exited with `code`, run by no one, and
/// `error` unless an error is recorded already.
pub(super) fn exited(s: &mut State, code: i32, error: String) {
    s.status = Status::Exited;
    s.pid = 0;
    s.hosted = false;
    s.exit_code = code;
    s.finished_at = now_ns();
    if !error.is_empty() && s.error.is_empty() {
        s.error = error;
    }
}

/// The exit code recorded for a container that failed to start.
pub(super) fn error_code(e: &ContainerError) -> i32 {
    match e {
        ContainerError::Run(r) => r.exit_code(),
        _ => exec::EXIT_WHARF_ERROR,
    }
}

/// Points stdout and stderr at /dev/null (closing the pipes they were).
/// Makes standard input (which the container's process inherits) a pipe
/// fed from the container's `stdin` fifo: each client that attaches with
/// input opens the fifo, and what it writes goes on. With `once`, the
/// process's input ends when the first client closes; otherwise the
/// process keeps waiting for the next one, as Docker's stdin does.
fn connect_stdin(fifo: &std::path::Path, once: bool) -> Result<()> {
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(std::io::Error::from)?;
    rustix::stdio::dup2_stdin(&r).map_err(std::io::Error::from)?;
    drop(r);
    let fifo = fifo.to_owned();
    let mut w = std::fs::File::from(w);
    std::thread::spawn(move || loop {
        // Blocks until a client opens it for writing.
        let Ok(mut input) = std::fs::File::open(&fifo) else {
            return;
        };
        if std::io::copy(&mut input, &mut w).is_err() || once {
            // Dropping the writer: the process reads end-of-file.
            return;
        }
    });
    Ok(())
}

fn redirect_stdio_to_null() -> Result<()> {
    let null: OwnedFd = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")?
        .into();
    rustix::stdio::dup2_stdout(null.as_fd()).map_err(std::io::Error::from)?;
    rustix::stdio::dup2_stderr(null.as_fd()).map_err(std::io::Error::from)?;
    Ok(())
}
