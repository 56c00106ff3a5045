//! The `wharf` command-line interface: a thin layer over the `wharf` library.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

/// Parses the command line (see [`RunCli`]).
fn parse() -> (Globals, Command) {
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
}

fn main() -> ExitCode {
    let (globals, command) = parse();
    // A plain level filter: EnvFilter compiles regexes on every start,
    // which costs a noticeable share of a cached `wharf run`.
    let level = globals
        .log_level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    let root = globals
        .root
        .clone()
        .unwrap_or_else(wharf::store::default_root);
    let result = wharf::store::Store::open(&root)
        .map_err(wharf::Error::from)
        .map_err(anyhow::Error::from)
        .and_then(|store| match command {
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
        });
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
fn one_line(e: &anyhow::Error) -> String {
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
