//! `wharf bundle`: an OCI runtime bundle for a Linux image.

use std::path::PathBuf;

use wharf::exec::linux::{self, LinuxOptions};
use wharf::exec::{self, Mount, RunOptions};
use wharf::store::Store;

/// Arguments of `wharf bundle`.
#[derive(clap::Args)]
pub struct Args {
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Bind-mount a host directory (HOST:CONTAINER[:ro]).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volumes: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Program to run instead of the image's ENTRYPOINT.
    #[arg(long)]
    entrypoint: Option<String>,
    /// User (name or uid, with an optional :group), instead of the image's.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Container host name (default: the first 12 digits of the image id).
    #[arg(long)]
    hostname: Option<String>,
    /// Network: none (a namespace of its own, the default) or host.
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    network: String,
    /// Platform to select from a multi-platform image.
    #[arg(long)]
    platform: Option<String>,
    /// Run the host's tini as PID 1 (bind-mounted read-only).
    #[arg(long)]
    init: bool,
    /// The image.
    image: String,
    /// The bundle directory to create (it must not exist or be empty).
    dir: PathBuf,
    /// Arguments replacing the image's CMD.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Writes the bundle and prints its directory.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let mut env = Vec::new();
    for kv in &a.env {
        match exec::parse_env_arg(kv) {
            Some(p) => env.push(p),
            None if kv.is_empty() || kv.starts_with('=') => {
                anyhow::bail!("invalid -e {kv:?}: expected KEY=VALUE")
            }
            None => {}
        }
    }
    let mounts = a
        .volumes
        .iter()
        .map(|v| super::lib(v.parse::<Mount>()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = RunOptions {
        args: (!a.args.is_empty()).then(|| a.args.clone()),
        entrypoint: a.entrypoint.clone(),
        env,
        mounts,
        workdir: a.workdir.clone(),
        ..RunOptions::default()
    };
    let linux_options = LinuxOptions {
        hostname: a.hostname.clone(),
        user: a.user.clone(),
        init: a.init,
        host_network: a.network == "host",
        ..LinuxOptions::default()
    };
    let tagged = super::lib(store.lookup(&a.image))?;
    let image = super::lib(store.load_image(&tagged.descriptor, a.platform.as_deref()))?;
    super::lib(linux::write_bundle(
        store,
        &image,
        &options,
        &linux_options,
        &a.dir,
    ))?;
    super::say(a.dir.display())?;
    Ok(0)
}
