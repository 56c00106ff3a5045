//! `wharf inspect`.

use wharf::store::Store;

/// Arguments of `wharf inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// Container or image name or id.
    image: String,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    // As `docker inspect`: a container by that name first, then an image.
    let v = match super::container::inspect(store, &a.image)? {
        Some(c) => c,
        None => super::lib(wharf::image::inspect(store, &a.image))?,
    };
    super::say(serde_json::to_string_pretty(&v)?)?;
    Ok(0)
}
