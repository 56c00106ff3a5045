//! `wharf rmi`.

use wharf::store::Store;

/// Arguments of `wharf rmi`.
#[derive(clap::Args)]
pub struct Args {
    /// Remove an image id with several names, or the last name of an
    /// image a container uses (the container keeps the image itself).
    #[arg(short, long)]
    force: bool,
    /// Image names or ids.
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    for name in &a.images {
        for n in super::lib(wharf::image::remove(store, name, a.force))? {
            super::say(format_args!("Untagged: {n}"))?;
        }
    }
    Ok(0)
}
