//! `wharf serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use wharf::exec::{self, RunOptions};
use wharf::serve::{self, ServeOptions};
use wharf::store::Store;

/// Arguments of `wharf serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Requests handled at once; more wait.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_concurrency: usize,
    /// Per-request time limit (e.g. 10s, 500ms); past it the answer is 504.
    #[arg(long)]
    timeout: Option<String>,
    /// Per-request linear memory limit (e.g. 64m).
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Map a host directory (HOST:GUEST[:ro]).
    #[arg(short = 'v', long = "volume", value_name = "HOST:GUEST[:ro]")]
    volumes: Vec<String>,
    /// Network mode: none (the default) or host.
    #[arg(long)]
    network: Option<String>,
    /// Allow outgoing wasi:http requests and connections to HOST[:PORT]
    /// (an address, a CIDR block, a name or *.domain); repeatable.
    #[arg(long = "allow-net", value_name = "HOST[:PORT]")]
    allow_net: Vec<String>,
    /// Platform to select from a multi-platform image.
    #[arg(long)]
    platform: Option<String>,
    /// Image holding a wasi:http/proxy component.
    image: String,
}

/// Runs the command until SIGINT or SIGTERM, then finishes the requests
/// in flight.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let run_options = RunOptions {
        env: super::run::guest_env(&a.env_file, &a.env)?,
        mounts: super::run::guest_mounts(&a.volumes)?,
        ..RunOptions::default()
    };
    let options = ServeOptions {
        listen: a.listen,
        max_concurrency: a.max_concurrency.max(1),
        timeout: super::parse_opt(a.timeout.as_deref(), exec::parse_duration)?,
        memory: super::parse_opt(a.memory.as_deref(), exec::parse_bytes)?,
        network: super::lib(
            exec::NetworkPolicy::new(a.network.as_deref(), &[], &a.allow_net)
                .map_err(exec::RunError::from),
        )?,
    };
    let tagged = super::lib(store.lookup(&a.image))?;
    let image = super::lib(store.load_image(&tagged.descriptor, a.platform.as_deref()))?;
    let prepared = super::lib(exec::prepare_image(store, &a.image, &image, &run_options))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("wharf serve: shutting down after the requests in flight");
        };
        super::lib(
            serve::serve(
                store,
                prepared,
                options,
                |addr| eprintln!("wharf serve: listening on http://{addr}"),
                |entry| eprintln!("{entry}"),
                shutdown,
            )
            .await,
        )
    })?;
    Ok(0)
}
