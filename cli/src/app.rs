//! The command-line models and what both executables share: option
//! parsing, logging set-up, and how an error becomes a line and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;

/// Build, share and run WebAssembly containers.
#[derive(Parser)]
#[command(name = "wharf", version, about = "Build, share and run WebAssembly containers.", long_about = None)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(clap::Args)]
struct Globals {
    /// Store root (default: $WHARF_ROOT, else /var/lib/wharf as root, else
    /// $XDG_DATA_HOME/wharf or ~/.local/share/wharf).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log_level: String,
}

/// The same command line knowing only `run`. Building clap's model of every
/// subcommand is a measurable share of a cached `wharf run` (decision
/// 0008), so `run`, the command whose start-up time matters, is parsed
/// with this smaller model; its syntax and help are the same.
#[derive(Parser)]
#[command(name = "wharf", version, about = "Build, share and run WebAssembly containers.", long_about = None)]
struct RunCli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: RunOnly,
}

/// The one subcommand [`RunCli`] knows.
#[derive(Subcommand)]
enum RunOnly {
    /// Run an image or a .wasm file.
    Run(commands::run::Args),
}

/// The subcommand named on the command line, if it comes after nothing
/// but global options.
fn subcommand_name(args: &[std::ffi::OsString]) -> Option<&str> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        match a {
            "--root" | "--log-level" => {
                it.next();
            }
            _ if a.starts_with("--root=") || a.starts_with("--log-level=") => {}
            _ if a.starts_with('-') => return None,
            _ => return Some(a),
        }
    }
    None
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile.
    Build(commands::build::Args),
    /// Run an image or a .wasm file.
    Run(commands::run::Args),
    /// List images.
    Images(commands::images::Args),
    /// Give an image another name.
    Tag(commands::tag::Args),
    /// Remove images.
    Rmi(commands::rmi::Args),
    /// Show an image's details as JSON.
    Inspect(commands::inspect::Args),
    /// Write images to an OCI archive.
    Save(commands::save::Args),
    /// Load images from an OCI archive or a docker save tar.
    Load(commands::load::Args),
    /// Download an image from a registry.
    Pull(commands::share::PullArgs),
    /// Upload an image to a registry.
    Push(commands::share::PushArgs),
    /// Save credentials for a registry.
    Login(commands::share::LoginArgs),
    /// Forget the credentials for a registry.
    Logout(commands::share::LogoutArgs),
    /// Serve a wasi:http component over HTTP, an instance per request.
    Serve(commands::serve::Args),
    /// Write an OCI runtime bundle (config.json + rootfs) for a Linux image.
    Bundle(commands::bundle::Args),
    /// Create a container without starting it.
    Create(commands::container::CreateArgs),
    /// Start containers.
    Start(commands::container::StartArgs),
    /// Stop containers: the stop signal, then SIGKILL after a timeout.
    Stop(commands::container::StopArgs),
    /// Send a signal to containers.
    Kill(commands::container::KillArgs),
    /// Stop and start containers again.
    Restart(commands::container::StopArgs),
    /// Rename a container.
    Rename(commands::container::RenameArgs),
    /// Suspend every process of containers.
    Pause(commands::container::Many),
    /// Resume paused containers.
    Unpause(commands::container::Many),
    /// Show the processes of a running container.
    Top(commands::container::One),
    /// Show containers' CPU, memory and processes.
    Stats(commands::container::StatsArgs),
    /// Remove containers.
    Rm(commands::container::RmArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(commands::container::Many),
    /// List containers.
    Ps(commands::container::PsArgs),
    /// Show a container's output.
    Logs(commands::container::LogsArgs),
    /// Run a command in a running Linux container.
    Exec(commands::container::ExecArgs),
    /// Show what happens to containers and images, as it happens.
    Events(commands::events::Args),
    /// Join a running container's output and input.
    Attach(commands::container::AttachArgs),
    /// Serve the Docker Engine API on a Unix socket.
    Daemon(commands::daemon::Args),
    /// Prune unused data and show disk usage.
    #[command(subcommand)]
    System(commands::system::Command),
    /// The process that owns a running container (started by wharf).
    #[command(hide = true)]
    ContainerMonitor {
        /// The container id.
        id: String,
    },
    /// Forks container monitors for the daemon (started by wharf; its
    /// standard input is the daemon's socket).
    #[command(hide = true)]
    MonitorServer,
    /// Runs plain wasm containers on threads for the daemon (started by
    /// wharf; its standard input is the daemon's socket).
    #[command(hide = true)]
    GuestHost,
}

/// The command line as the full executable reads it: `run` with the
/// smaller [`RunCli`] model, everything else with [`Cli`].
fn parse_full() -> (Globals, Command) {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if subcommand_name(&args) == Some("run") {
        let cli = RunCli::parse_from(args);
        let RunOnly::Run(a) = cli.command;
        (cli.globals, Command::Run(a))
    } else {
        let cli = Cli::parse_from(args);
        (cli.globals, cli.command)
    }
}

/// `main` of `wharf-full`: every command.
pub fn main_full() -> ExitCode {
    let (globals, command) = parse_full();
    start(&globals);
    finish(open_store(&globals).and_then(|store| match command {
        Command::Build(a) => commands::build::run(&store, a),
        Command::Run(a) => commands::run::run(&store, a),
        Command::Images(a) => commands::images::run(&store, a),
        Command::Tag(a) => commands::tag::run(&store, a),
        Command::Rmi(a) => commands::rmi::run(&store, a),
        Command::Inspect(a) => commands::inspect::run(&store, a),
        Command::Save(a) => commands::save::run(&store, a),
        Command::Load(a) => commands::load::run(&store, a),
        Command::Pull(a) => commands::share::pull(&store, a),
        Command::Push(a) => commands::share::push(&store, a),
        Command::Login(a) => commands::share::login(a),
        Command::Logout(a) => commands::share::logout(a),
        Command::Serve(a) => commands::serve::run(&store, a),
        Command::Bundle(a) => commands::bundle::run(&store, a),
        Command::Create(a) => commands::container::create(&store, a),
        Command::Start(a) => commands::container::start(&store, a),
        Command::Stop(a) => commands::container::stop(&store, a),
        Command::Kill(a) => commands::container::kill(&store, a),
        Command::Restart(a) => commands::container::restart(&store, a),
        Command::Rename(a) => commands::container::rename(&store, a),
        Command::Pause(a) => commands::container::pause(&store, a),
        Command::Unpause(a) => commands::container::unpause(&store, a),
        Command::Top(a) => commands::container::top(&store, a),
        Command::Stats(a) => commands::container::stats(&store, a),
        Command::Rm(a) => commands::container::rm(&store, a),
        Command::Wait(a) => commands::container::wait(&store, a),
        Command::Ps(a) => commands::container::ps(&store, a),
        Command::Logs(a) => commands::container::logs(&store, a),
        Command::Exec(a) => commands::container::exec(&store, a),
        Command::Events(a) => commands::events::run(&store, a),
        Command::Attach(a) => commands::container::attach(&store, a),
        Command::Daemon(a) => commands::daemon::run(&store, a),
        Command::System(c) => commands::system::run(&store, c),
        Command::ContainerMonitor { id } => commands::container::monitor(&store, &id),
        Command::MonitorServer => commands::container::monitor_server(&store),
        Command::GuestHost => commands::container::guest_host(&store),
    }))
}

/// `main` of `wharf`: runs a local wasm image or module, or a local Linux
/// image in the foreground, itself, and hands every other command (and a
/// `run` that must pull first) to `wharf-full` beside it, with the same
/// arguments.
///
/// Every subsystem linked into an executable costs each start of it some
/// time (its relocated data is written at every start), so the command
/// whose start-up matters lives in an executable that links only the run
/// path (spec/decisions/0008-startup-cost.md).
pub fn main_run_first() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if subcommand_name(&args) != Some("run") {
        return finish(hand_over());
    }
    let cli = RunCli::parse_from(args);
    let RunOnly::Run(a) = cli.command;
    if a.wants_container() {
        return finish(hand_over());
    }
    start(&cli.globals);
    finish(open_store(&cli.globals).and_then(|store| {
        commands::run::run_with(&store, a, commands::run::LINUX, &|_, _, _| {
            hand_over().map(drop)
        })
    }))
}

/// Replaces this process with `wharf-full` from the same directory, with
/// the same arguments. Returns only on failure.
fn hand_over() -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe()?;
    let full = exe.with_file_name("wharf-full");
    let err = std::process::Command::new(&full)
        .arg0("wharf")
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::bail!(
        "cannot start {} ({err}): wharf needs wharf-full installed beside it",
        full.display()
    )
}

/// Sets up logging on stderr at the `--log-level`.
fn start(globals: &Globals) {
    // A plain level filter: EnvFilter compiles regexes on every start,
    // which costs a noticeable share of a cached `wharf run`.
    let level = globals
        .log_level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::WARN);
    use tracing_subscriber::prelude::*;
    let targets = tracing_subscriber::filter::LevelFilter::from_level(level);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .without_time()
                .with_target(false),
        )
        .with(targets)
        .init();
}

fn open_store(globals: &Globals) -> anyhow::Result<wharf::store::Store> {
    let root = globals
        .root
        .clone()
        .unwrap_or_else(wharf::store::default_root);
    wharf::store::Store::open(&root)
        .map_err(wharf::Error::from)
        .map_err(anyhow::Error::from)
}

/// The exit code for a command's result, printing its error on one line.
fn finish(result: anyhow::Result<i32>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from((code & 0xff) as u8),
        Err(e) => {
            // A broken pipe (e.g. `wharf images | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("wharf: {}", one_line(&e));
            let code = e
                .downcast_ref::<wharf::Error>()
                .map_or(wharf::exec::EXIT_WHARF_ERROR, |w| w.exit_code());
            ExitCode::from(code as u8)
        }
    }
}

/// The error chain on one line, without repeating messages that already
/// contain their cause.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let s = c.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(|s| s.into()).collect()
    }

    #[test]
    fn finds_the_subcommand_after_global_options() {
        assert_eq!(subcommand_name(&args(&["wharf", "run", "x"])), Some("run"));
        assert_eq!(
            subcommand_name(&args(&["wharf", "--root", "/r", "--log-level=info", "run"])),
            Some("run")
        );
        assert_eq!(
            subcommand_name(&args(&["wharf", "--root=/r", "images"])),
            Some("images")
        );
        assert_eq!(subcommand_name(&args(&["wharf", "--help", "run"])), None);
        assert_eq!(subcommand_name(&args(&["wharf"])), None);
    }

    #[test]
    fn both_command_models_are_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        RunCli::command().debug_assert();
    }
}
