//! `wharf serve`.

use std::net::SocketAddr;

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
    #[command(flatten)]
    guest: super::run::GuestArgs,
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
        env: a.guest.env()?,
        mounts: a.guest.mounts()?,
        ..RunOptions::default()
    };
    let options = ServeOptions {
        listen: a.listen,
        max_concurrency: a.max_concurrency.max(1),
        timeout: super::parse_opt(a.timeout.as_deref(), exec::parse_duration)?,
        memory: super::parse_opt(a.memory.as_deref(), exec::parse_bytes)?,
        network: a.guest.network(&[])?,
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
