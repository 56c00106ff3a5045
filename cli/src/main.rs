//! The `wharf` command-line interface: a thin layer over the `wharf` library.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build, share and run WebAssembly containers.
#[derive(Parser)]
#[command(name = "wharf", version, about, long_about = None)]
struct Cli {
    /// Store root (default: $WHARF_ROOT, else /var/lib/wharf as root, else
    /// $XDG_DATA_HOME/wharf or ~/.local/share/wharf).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A plain level filter: EnvFilter compiles regexes on every start,
    // which costs a noticeable share of a cached `wharf run`.
    let level = cli
        .log_level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let root = cli.root.clone().unwrap_or_else(wharf::store::default_root);
    let result = wharf::store::Store::open(&root)
        .map_err(wharf::Error::from)
        .map_err(anyhow::Error::from)
        .and_then(|store| match cli.command {
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
