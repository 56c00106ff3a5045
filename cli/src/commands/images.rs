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
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let rows = super::lib(wharf::image::summaries(store))?;
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
