//! `wharf inspect`.

use wharf::store::Store;

/// Arguments of `wharf inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// Container or image names or ids.
    #[arg(required = true)]
    names: Vec<String>,
}

/// Runs the command: one JSON array of every object found, as `docker
/// inspect`. Each name not found is reported on stderr, and then the
/// command fails (125) after printing the others.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in &a.names {
        // A container by that name first, then an image.
        let v = match super::container::inspect(store, name) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => super::lib(wharf::image::inspect(store, name)),
            Err(e) => Err(e),
        };
        match v {
            Ok(serde_json::Value::Array(items)) => found.extend(items),
            Ok(other) => found.push(other),
            Err(e) => {
                eprintln!("wharf: {}", crate::app::one_line(&e));
                failed = true;
            }
        }
    }
    super::say(serde_json::to_string_pretty(&serde_json::Value::Array(
        found,
    ))?)?;
    Ok(if failed {
        wharf::exec::EXIT_WHARF_ERROR
    } else {
        0
    })
}
