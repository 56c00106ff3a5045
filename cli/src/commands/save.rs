//! `wharf save`.

use std::path::PathBuf;

use wharf::store::Store;

/// Arguments of `wharf save`.
#[derive(clap::Args)]
pub struct Args {
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Images to save.
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    super::lib(wharf::archive::save(store, &a.images, &a.output))?;
    Ok(0)
}
