//! `wharf tag`.

use wharf::store::Store;

/// Arguments of `wharf tag`.
#[derive(clap::Args)]
pub struct Args {
    /// Existing image name or id.
    source: String,
    /// New name (NAME[:TAG]).
    target: String,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let tagged = super::lib(store.lookup(&a.source))?;
    let target = super::lib(a.target.parse::<wharf::reference::Reference>())?;
    let mut d = tagged.descriptor.clone();
    d.set_annotations(None);
    super::lib(store.set_name(&target, &d))?;
    Ok(0)
}
