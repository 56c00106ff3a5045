//! `wharf events`.

use wharf::container::logs::Window;
use wharf::events::{Filter, Journal};
use wharf::store::Store;

/// Arguments of `wharf events`.
#[derive(clap::Args)]
pub struct Args {
    /// Show events from this time on (RFC 3339, Unix timestamp, or a
    /// duration ago such as 10m); without it, only events from now.
    #[arg(long)]
    since: Option<String>,
    /// Stop after this time (as --since); without it, follow until
    /// interrupted.
    #[arg(long)]
    until: Option<String>,
    /// Only events matching KEY=VALUE: type, event, container, image,
    /// label, scope; repeatable.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// `json`: one Engine API event object a line.
    #[arg(long, value_parser = ["json"])]
    format: Option<String>,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let window = Window::parse(
        a.since.as_deref(),
        a.until.as_deref(),
        wharf::container::now_ns(),
    )
    .map_err(|e| anyhow::anyhow!("--{e}"))?;
    let mut filter = Filter::default();
    for f in &a.filter {
        filter.add(f).map_err(anyhow::Error::msg)?;
    }
    let json = a.format.is_some();
    let mut failed = None;
    Journal::of(store).watch(
        &window,
        &filter,
        |e| {
            let text = if json {
                e.docker_json().to_string()
            } else {
                e.text()
            };
            match super::say(text) {
                Ok(()) => true,
                Err(err) => {
                    failed = Some(err);
                    false
                }
            }
        },
        || false,
    )?;
    match failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}
