//! `wharf inspect`.

use wharf::store::Store;

/// Arguments of `wharf inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// Image name or id.
    image: String,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let v = super::lib(wharf::image::inspect(store, &a.image))?;
    super::say(serde_json::to_string_pretty(&v)?)?;
    Ok(0)
}
