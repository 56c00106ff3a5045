//! Container lifecycle commands: `create`, `start`, `stop`, `kill`,
//! `restart`, `rename`, `rm`, `wait`, `ps`, `logs`, `exec`, and the hidden
//! `container-monitor` that owns a running container.

use std::io::Write as _;
use std::time::Duration;

use wharf::container::{self, docker, logs, ContainerConfig, Containers, MonitorCommand};
use wharf::store::Store;

use super::{lib, say};

/// The containers of `store`, started with this executable's monitor.
pub fn containers(store: &Store) -> anyhow::Result<Containers> {
    let exe = std::env::current_exe()?;
    let monitor = MonitorCommand {
        program: exe.with_file_name("wharf-full"),
        args: vec!["--root".into(), store.root().as_os_str().to_owned()],
    };
    Ok(lib(Containers::open(store))?.with_monitor(monitor))
}

/// Options of a container beyond those of a plain run (`create` and
/// `run`).
#[derive(clap::Args, Default)]
pub struct ManagedArgs {
    /// Name of the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Restart policy: no, on-failure (on-failure:N for at most N restarts),
    /// always or unless-stopped.
    #[arg(long)]
    pub restart: Option<String>,
    /// Set a label (KEY=VALUE).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Signal that `stop` sends first (default SIGTERM).
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u64>,
    /// Log driver: json-file (the only one).
    #[arg(long = "log-driver", value_parser = ["json-file"])]
    pub log_driver: Option<String>,
    /// Log driver option: max-size=SIZE (rotate the log before it passes
    /// SIZE) and max-file=N (keep N files).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
}

impl ManagedArgs {
    /// Asks for a container that outlives the command.
    pub fn wanted(&self) -> bool {
        self.name.is_some() || self.restart.is_some() || !self.labels.is_empty()
    }

    /// Fills the container-only parts of `config`.
    pub fn apply(&self, config: &mut ContainerConfig) -> anyhow::Result<()> {
        if let Some(r) = &self.restart {
            config.restart = lib(r.parse())?;
        }
        for l in &self.labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            config.labels.insert(k.to_owned(), v.to_owned());
        }
        config.stop_signal = self.stop_signal.clone();
        config.stop_timeout = self.stop_timeout;
        for o in &self.log_opts {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--log-opt {o:?}: expected KEY=VALUE"))?;
            config.log_options.insert(k.to_owned(), v.to_owned());
        }
        Ok(())
    }
}

/// Arguments of `wharf create`: those of `wharf run` but `-d`.
pub type CreateArgs = super::run::Args;

/// `wharf create`: prints the new container's id.
pub fn create(store: &Store, a: CreateArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let c = super::run::create(store, &cs, a)?;
    say(&c.id)?;
    Ok(0)
}

/// Containers named on the command line.
#[derive(clap::Args)]
pub struct Many {
    /// Container names or ids.
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// Runs `each` on every named container, printing the name as Docker does;
/// the first failure is reported after trying them all.
fn for_each(
    names: &[String],
    mut each: impl FnMut(&str) -> Result<(), wharf::container::ContainerError>,
) -> anyhow::Result<i32> {
    let mut failed = false;
    for n in names {
        match each(n) {
            Ok(()) => say(n)?,
            Err(e) => {
                eprintln!("wharf: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Arguments of `wharf start`.
#[derive(clap::Args)]
pub struct StartArgs {
    /// Follow the container's output until it exits, and exit with its code.
    #[arg(short = 'a', long)]
    attach: bool,
    #[command(flatten)]
    names: Many,
}

/// `wharf start`.
pub fn start(store: &Store, a: StartArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    if a.attach {
        let [one] = a.names.containers.as_slice() else {
            anyhow::bail!("start -a takes one container");
        };
        let id = lib(cs.resolve(one))?;
        let mut reader = cs.log_reader(&id, true)?;
        lib(cs.start(&id))?;
        return attached(&cs, &id, &mut reader);
    }
    for_each(&a.names.containers, |n| cs.start(n))
}

/// This command joined to a running container until it exits (its exit
/// code): its output to ours, with `input` our input to it, and with a
/// terminal, ours in raw mode (with input) and our window size. At a
/// terminal, the detach keys (Ctrl-P Ctrl-Q unless `--detach-keys` says
/// otherwise) detach and leave the container running, as with Docker.
pub fn session(
    cs: &Containers,
    c: &container::Container,
    reader: &mut logs::LogReader,
    input: bool,
    mut keys: wharf::exec::tty::DetachKeys,
) -> anyhow::Result<i32> {
    let size = if c.config.tty {
        let (cs, id) = (cs.clone(), c.id.clone());
        wharf::exec::tty::follow_size(move |rows, cols| {
            let _ = cs.resize(&id, rows, cols);
        })?
    } else {
        None
    };
    let raw = std::sync::Arc::new(std::sync::Mutex::new(
        (c.config.tty && input)
            .then(wharf::exec::tty::RawMode::stdin)
            .flatten(),
    ));
    if input {
        // This command's input, until it ends (then end-of-file for a
        // container made with `StdinOnce`) or the detach keys.
        let (cs, id, raw, tty) = (cs.clone(), c.id.clone(), raw.clone(), c.config.tty);
        let detachable = raw.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        std::thread::spawn(move || {
            let Ok(mut to) = cs.attach_stdin(&id) else {
                return;
            };
            if !detachable {
                let _ = match tty {
                    true => wharf::exec::tty::type_input(&mut to),
                    false => std::io::copy(&mut std::io::stdin().lock(), &mut to).map(drop),
                };
                return;
            }
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n @ 1..) = std::io::Read::read(&mut stdin, &mut buf) {
                let (pass, detach) = keys.scan(&buf[..n]);
                if to.write_all(&pass).is_err() {
                    return;
                }
                if detach {
                    // The terminal as it was, then leave the container be.
                    drop(raw.lock().unwrap_or_else(|e| e.into_inner()).take());
                    eprintln!();
                    std::process::exit(0);
                }
            }
        });
    }
    let code = attached(cs, &c.id, reader);
    drop(raw.lock().unwrap_or_else(|e| e.into_inner()).take());
    if let Some(h) = size {
        h.close();
    }
    code
}

/// Arguments of `wharf attach`.
#[derive(clap::Args)]
pub struct AttachArgs {
    /// Do not pass our input to the container.
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Keys that detach from the container's terminal, as Docker writes
    /// them: `ctrl-<x>` or a character, separated by commas (default
    /// ctrl-p,ctrl-q).
    #[arg(long = "detach-keys", value_name = "KEYS", value_parser = wharf::exec::tty::DetachKeys::parse)]
    detach_keys: Option<wharf::exec::tty::DetachKeys>,
    /// The container.
    container: String,
}

/// `wharf attach`: joins a running container's output (from now) and,
/// if it was made with `-i`, its input.
pub fn attach(store: &Store, a: AttachArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let c = lib(cs.get(&a.container))?;
    if !c.state.is_running() {
        anyhow::bail!(
            "container {} is not running: start it first (or start -a)",
            container::short_id(&c.id)
        );
    }
    // Its output from now on, as docker attach.
    let mut reader = cs.log_reader(&c.id, true)?;
    let input = c.config.open_stdin && !a.no_stdin;
    session(
        &cs,
        &c,
        &mut reader,
        input,
        a.detach_keys.unwrap_or_default(),
    )
}

/// Copies the container's output to ours until it exits; its exit code.
pub fn attached(cs: &Containers, id: &str, reader: &mut logs::LogReader) -> anyhow::Result<i32> {
    lib(cs.follow(id, reader, true, &mut |e| {
        if e.stream == "stderr" {
            std::io::stderr().write_all(e.log.as_bytes())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(e.log.as_bytes())?;
            out.flush()
        }
    }))?;
    // As docker run --rm: return once the container is gone, not before.
    let condition = match cs.get(id) {
        Ok(c) if !c.config.auto_remove => container::WaitCondition::NotRunning,
        _ => container::WaitCondition::Removed,
    };
    lib(cs.wait(id, condition))
}

/// Arguments of `wharf stop` and `wharf restart`.
#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait for the stop signal to work before SIGKILL.
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[command(flatten)]
    names: Many,
}

/// `wharf stop`.
pub fn stop(store: &Store, a: StopArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let t = a.time.map(Duration::from_secs);
    for_each(&a.names.containers, |n| cs.stop(n, t).map(drop))
}

/// `wharf restart`.
pub fn restart(store: &Store, a: StopArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let t = a.time.map(Duration::from_secs);
    for_each(&a.names.containers, |n| cs.restart(n, t))
}

/// Arguments of `wharf kill`.
#[derive(clap::Args)]
pub struct KillArgs {
    /// Signal to send (name or number).
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,
    #[command(flatten)]
    names: Many,
}

/// `wharf kill`.
pub fn kill(store: &Store, a: KillArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let sig = lib(container::parse_signal(&a.signal))?;
    for_each(&a.names.containers, |n| cs.kill(n, sig))
}

/// Arguments of `wharf stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// Print one reading and exit.
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Containers (default: all running ones).
    containers: Vec<String>,
}

/// `wharf stats`: CPU, memory and processes of containers, a reading a
/// second (or one with `--no-stream`), as `docker stats` shows them.
pub fn stats(store: &Store, a: StatsArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let list: Vec<container::Container> = if a.containers.is_empty() {
        lib(cs.list())?
            .into_iter()
            .filter(|c| c.state.is_running())
            .collect()
    } else {
        a.containers
            .iter()
            .map(|n| lib(cs.get(n)))
            .collect::<anyhow::Result<_>>()?
    };
    let mut before: Vec<_> = list.iter().map(|c| cs.stats_of(c)).collect();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        std::thread::sleep(Duration::from_millis(if a.no_stream { 500 } else { 1000 }));
        let now: Vec<_> = list.iter().map(|c| cs.stats_of(c)).collect();
        let mut rows = vec![[
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "PIDS",
        ]
        .map(str::to_owned)];
        for ((c, n), b) in list.iter().zip(&now).zip(&before) {
            rows.push([
                container::short_id(&c.id),
                c.name.clone(),
                format!("{:.2}%", n.cpu_percent_since(b)),
                format!(
                    "{} / {}",
                    super::binary_size(n.memory),
                    super::binary_size(n.memory_limit)
                ),
                format!("{:.2}%", n.memory_percent()),
                n.pids.to_string(),
            ]);
        }
        if terminal && !a.no_stream {
            // A fresh screen for each reading, as docker stats.
            print!("\x1b[2J\x1b[H");
        }
        table(&rows)?;
        if a.no_stream {
            return Ok(0);
        }
        before = now;
    }
}

/// `wharf pause`.
pub fn pause(store: &Store, a: Many) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    for_each(&a.containers, |n| cs.pause(n))
}

/// `wharf unpause`.
pub fn unpause(store: &Store, a: Many) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    for_each(&a.containers, |n| cs.unpause(n))
}

/// Arguments of `wharf rename`.
#[derive(clap::Args)]
pub struct RenameArgs {
    /// The container.
    container: String,
    /// Its new name.
    new_name: String,
}

/// `wharf rename`.
pub fn rename(store: &Store, a: RenameArgs) -> anyhow::Result<i32> {
    lib(containers(store)?.rename(&a.container, &a.new_name))?;
    Ok(0)
}

/// Arguments of `wharf rm`.
#[derive(clap::Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short = 'f', long)]
    force: bool,
    #[command(flatten)]
    names: Many,
}

/// `wharf rm`.
pub fn rm(store: &Store, a: RmArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    for_each(&a.names.containers, |n| cs.remove(n, a.force))
}

/// `wharf wait`: prints each container's exit code.
pub fn wait(store: &Store, a: Many) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let mut code = 0;
    for n in &a.containers {
        match cs.wait(n, container::WaitCondition::NotRunning) {
            Ok(c) => say(c)?,
            Err(e) => {
                eprintln!("wharf: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// Arguments of `wharf ps`.
#[derive(clap::Args)]
pub struct PsArgs {
    /// Show every container (default: running ones).
    #[arg(short = 'a', long)]
    all: bool,
    /// Only ids.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// `json`: one JSON object per container.
    #[arg(long)]
    format: Option<String>,
    /// Only containers that match KEY=VALUE (id, name, status, label,
    /// ancestor); a status filter lists stopped ones too.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
}

/// `wharf ps`.
pub fn ps(store: &Store, a: PsArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let mut filters = docker::Filters::default();
    for f in &a.filters {
        filters.add(f).map_err(anyhow::Error::msg)?;
    }
    let all = a.all || filters.implies_all();
    let list: Vec<_> = lib(cs.list())?
        .into_iter()
        .filter(|c| (all || c.state.is_running()) && filters.matches(c))
        .collect();
    if a.quiet {
        for c in &list {
            say(container::short_id(&c.id))?;
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        Some("json") => {
            for c in &list {
                say(docker::summary(c))?;
            }
            return Ok(0);
        }
        Some(other) => anyhow::bail!("unknown --format {other:?}: use json"),
        None => {}
    }
    let mut rows = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ]
    .map(str::to_owned)];
    for c in &list {
        let s = docker::summary(c);
        let mut cmd = format!("\"{}\"", s["Command"].as_str().unwrap_or(""));
        if cmd.chars().count() > 20 {
            cmd = cmd.chars().take(18).collect::<String>() + "…\"";
        }
        let created = format!(
            "{} ago",
            docker::human_duration(container::now_ns().saturating_sub(c.created))
        );
        rows.push([
            container::short_id(&c.id),
            c.config.image.clone(),
            cmd,
            created,
            docker::status_line(c),
            c.name.clone(),
        ]);
    }
    table(&rows)?;
    Ok(0)
}

/// Prints `rows` in columns as wide as their widest cell, three spaces
/// apart (Docker's tabwriter).
fn table<R: AsRef<[String]>>(rows: &[R]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.as_ref().iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    for row in rows {
        let row = row.as_ref();
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] + 3 - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        say(line)?;
    }
    Ok(())
}

/// `wharf top`: the processes of a running container, as `ps -ef`
/// shows them.
pub fn top(store: &Store, a: One) -> anyhow::Result<i32> {
    let t = lib(containers(store)?.top(&a.container))?;
    let mut rows = vec![t.titles];
    rows.extend(t.processes);
    table(&rows)?;
    Ok(0)
}

/// One container named on the command line.
#[derive(clap::Args)]
pub struct One {
    /// The container.
    container: String,
}

/// Arguments of `wharf logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// Keep following the output while the container runs.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Prefix each line with its time.
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Only lines from this time on: an RFC 3339 time, a Unix timestamp,
    /// or a duration back from now (10m).
    #[arg(long)]
    since: Option<String>,
    /// Only lines up to this time (as --since).
    #[arg(long)]
    until: Option<String>,
    /// Container name or id.
    container: String,
}

/// `wharf logs`.
pub fn logs(store: &Store, a: LogsArgs) -> anyhow::Result<i32> {
    let cs = containers(store)?;
    let id = lib(cs.resolve(&a.container))?;
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}: a number or all"))?,
        ),
    };
    let window = logs::Window::parse(a.since.as_deref(), a.until.as_deref(), container::now_ns())
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    let query = logs::Query {
        tail,
        window,
        follow: a.follow,
    };
    lib(cs.read_log(&id, &query, &mut |e| {
        let line = e.text(a.timestamps);
        if e.stream == "stderr" {
            std::io::stderr().write_all(line.as_bytes())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes())?;
            out.flush()
        }
    }))?;
    Ok(0)
}

/// `wharf container-monitor ID` (hidden): the process that owns a
/// running container; started by `start`.
pub fn monitor(store: &Store, id: &str) -> anyhow::Result<i32> {
    lib(container::run_monitor(store, id))
}

/// `wharf-full monitor-server`: forks monitors for the daemon.
pub fn monitor_server(store: &Store) -> anyhow::Result<i32> {
    lib(container::run_monitor_server(store))?;
    Ok(0)
}

/// `wharf-full guest-host`: runs plain wasm containers for the daemon.
pub fn guest_host(store: &Store) -> anyhow::Result<i32> {
    lib(container::run_guest_host(store))?;
    Ok(0)
}

/// `wharf inspect` of a container, if `what` names one.
pub fn inspect(store: &Store, what: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let cs = containers(store)?;
    match cs.get(what) {
        Ok(c) => Ok(Some(docker::inspect(&cs, &c))),
        Err(container::ContainerError::NotFound(_)) => Ok(None),
        Err(e) => lib(Err(e)),
    }
}

/// Arguments of `wharf exec`.
#[derive(clap::Args)]
pub struct ExecArgs {
    /// Return once the process has started and leave it running (its
    /// output is discarded).
    #[arg(short, long, conflicts_with_all = ["interactive", "tty"])]
    detach: bool,
    /// Pass standard input to the process.
    #[arg(short, long)]
    interactive: bool,
    /// Give the process a terminal (pseudo-TTY).
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container (absolute).
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// User (USER[:GROUP], names or numbers).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// The container.
    container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `wharf exec`: runs a command in a running Linux container; its exit
/// code is wharf's.
pub fn exec(store: &Store, a: ExecArgs) -> anyhow::Result<i32> {
    let env = super::env_from(&a.env_file, &a.env)?;
    let relay = wharf::exec::tty::RelaySlot::default();
    let options = wharf::exec::linux::ExecOptions {
        argv: a.command,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        workdir: a.workdir,
        user: a.user,
        stdin: a.interactive,
        stdout: None,
        stderr: None,
        terminal: a.tty.then(|| relay.on_terminal(a.interactive)),
        detach: a.detach,
    };
    let code = containers(store)?.exec(&a.container, options);
    relay.finish();
    lib(code)
}
