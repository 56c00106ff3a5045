//! One module per subcommand.

pub mod build;
pub mod bundle;
pub mod container;
pub mod daemon;
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
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut s = size as f64;
    let mut u = 0;
    while s >= 1000.0 && u < units.len() - 1 {
        s /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{size}B")
    } else {
        let text = format!("{s:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}{}", units[u])
    }
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
