//! `wharf images`.

use std::io::Write;

use wharf::store::Store;

/// Arguments of `wharf images`.
#[derive(clap::Args)]
pub struct Args {
    /// Output format: table, or json (one object per line).
    #[arg(long, default_value = "table")]
    format: String,
    /// Only image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Only images matching KEY=VALUE: dangling, reference, label, before,
    /// since; repeatable.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let mut filter = wharf::image::ImageFilter::default();
    for f in &a.filter {
        filter.add(f).map_err(anyhow::Error::msg)?;
    }
    let rows = super::lib(wharf::image::summaries(store))?;
    let rows = super::lib(filter.apply(store, rows))?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(
                out,
                "{}",
                r.id.trim_start_matches("sha256:")
                    .get(..12)
                    .unwrap_or(&r.id)
            )?;
        }
    } else if a.format == "json" {
        for r in &rows {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
    } else if a.format == "table" {
        writeln!(
            out,
            "{:<40} {:<12} {:<14} {:<22} {:<10} PLATFORM",
            "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
        )?;
        for r in &rows {
            let id =
                r.id.trim_start_matches("sha256:")
                    .get(..12)
                    .unwrap_or(&r.id)
                    .to_owned();
            writeln!(
                out,
                "{:<40} {:<12} {:<14} {:<22} {:<10} {}",
                r.repository,
                r.tag,
                id,
                r.created_at,
                super::human_size(r.size),
                r.platform
            )?;
        }
    } else {
        anyhow::bail!("unknown --format {:?}: use table or json", a.format);
    }
    Ok(0)
}
