//! `wharf daemon`.

use std::path::PathBuf;

use wharf::store::Store;

/// Arguments of `wharf daemon`.
#[derive(clap::Args)]
pub struct Args {
    /// Socket to serve on (unix:///PATH; default /run/wharf.sock as root,
    /// else ROOT/wharf.sock).
    #[arg(short = 'H', long = "host", value_name = "unix:///PATH")]
    host: Option<String>,
}

/// Serves the Docker Engine API until killed.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let socket =
        match &a.host {
            Some(h) => PathBuf::from(h.strip_prefix("unix://").ok_or_else(|| {
                anyhow::anyhow!("--host {h}: only unix:///PATH sockets are served")
            })?),
            None if rustix::process::geteuid().is_root() => PathBuf::from("/run/wharf.sock"),
            None => store.root().join("wharf.sock"),
        };
    let containers = super::container::containers(store)?;
    eprintln!(
        "wharf: serving the Docker Engine API on unix://{}",
        socket.display()
    );
    super::lib(wharf::daemon::serve(containers, &socket))?;
    Ok(0)
}
