//! `wharf load`.

use std::path::PathBuf;

use wharf::store::Store;

/// Arguments of `wharf load`.
#[derive(clap::Args)]
pub struct Args {
    /// Archive to read.
    #[arg(short, long)]
    input: PathBuf,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    for n in super::lib(wharf::archive::load(store, &a.input))? {
        super::say(format_args!("Loaded image: {n}"))?;
    }
    Ok(0)
}
