//! One module per subcommand.

pub mod build;
pub mod bundle;
pub mod container;
pub mod daemon;
pub mod events;
pub mod images;
pub mod inspect;
pub mod load;
pub mod rmi;
pub mod run;
pub mod save;
pub mod serve;
pub mod share;
pub mod system;
pub mod tag;

/// Wraps a library error so `main` can map it to an exit code.
pub fn lib<T>(r: Result<T, impl Into<wharf::Error>>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::Error::from(e.into()))
}

/// Writes one line to stdout. A closed pipe (`wharf load ... | head -1`)
/// becomes an error that `main` treats as success, instead of a panic.
pub fn say(line: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// Parses an optional flag value with one of the library's parsers
/// (`exec::parse_bytes`, `exec::parse_duration`).
pub fn parse_opt<T>(
    value: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    value.map(parse).transpose().map_err(anyhow::Error::msg)
}

/// A size as Docker prints it: decimal units, up to three decimals
/// (`1.5MB`, `812B`).
pub fn human_size(size: u64) -> String {
    match scaled(size, 1000.0, &["B", "kB", "MB", "GB", "TB"]) {
        (_, "B") => format!("{size}B"),
        (v, unit) => {
            let text = format!("{v:.3}");
            format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// A size as `docker stats` prints it: binary units, two decimals
/// (`1.50MiB`, `812B`).
pub fn binary_size(size: u64) -> String {
    match scaled(size, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"]) {
        (_, "B") => format!("{size}B"),
        (v, unit) => format!("{v:.2}{unit}"),
    }
}

/// `size` in the largest of `units` (each `step` times the one before)
/// that keeps it at 1 or more.
fn scaled(size: u64, step: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut v = size as f64;
    let mut u = 0;
    while v >= step && u < units.len() - 1 {
        v /= step;
        u += 1;
    }
    (v, units[u])
}

/// An environment from `--env-file` files, then `-e` values (`KEY=VALUE`,
/// or `KEY` to pass the host's value when it has one).
pub fn env_from(
    files: &[std::path::PathBuf],
    args: &[String],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("env file {}: {e}", f.display()))?;
        env.extend(
            wharf::exec::parse_env_file(&text)
                .map_err(|e| anyhow::anyhow!("env file {}: {e}", f.display()))?,
        );
    }
    for kv in args {
        if let Some(p) = wharf::exec::parse_env_arg(kv) {
            env.push(p);
        } else if kv.starts_with('=') || kv.is_empty() {
            anyhow::bail!("invalid -e {kv:?}: expected KEY=VALUE");
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_prints_them() {
        assert_eq!(human_size(812), "812B");
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(2_000), "2kB");
        assert_eq!(binary_size(812), "812B");
        assert_eq!(binary_size(64 << 20), "64.00MiB");
        assert_eq!(binary_size(1536), "1.50KiB");
    }
}
