//! `wharf build`.

use std::path::PathBuf;

use wharf::build::{BuildOptions, OutputFormat};
use wharf::store::Store;

/// Arguments of `wharf build`.
#[derive(clap::Args)]
pub struct Args {
    /// Name and optionally a tag (NAME[:TAG]); repeatable.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Build-time variables (KEY=VALUE).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Target platform (e.g. wasip1/wasm, wasip2/wasm).
    #[arg(long)]
    platform: Option<String>,
    /// Build the stage of this name (`FROM ... AS NAME`) instead of the
    /// last one; later stages do not run.
    #[arg(long)]
    target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    no_cache: bool,
    /// Output: a Docker-style image, or the CNCF wasm artifact.
    #[arg(long, value_enum, default_value = "image")]
    format: Format,
    /// Print only the image id.
    #[arg(short, long)]
    quiet: bool,
    /// The build context directory.
    context: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum Format {
    Image,
    Artifact,
}

/// Runs the command.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let mut tags = Vec::new();
    for t in &a.tags {
        tags.push(super::lib(t.parse::<wharf::reference::Reference>())?);
    }
    let mut build_args = Vec::new();
    for kv in &a.build_args {
        match wharf::exec::parse_env_arg(kv) {
            Some(p) => build_args.push(p),
            // As Docker: a bare KEY takes the host's value, and is left
            // out when the host has none.
            None if !kv.is_empty() && !kv.contains('=') => {}
            None => anyhow::bail!("invalid --build-arg {kv:?}: expected KEY=VALUE"),
        }
    }
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse()
                .map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH={v} is not a number of seconds"))?,
        ),
        _ => None,
    };
    let options = BuildOptions {
        context: a.context,
        dockerfile: a.file,
        tags,
        build_args,
        platform: a.platform,
        no_cache: a.no_cache,
        format: match a.format {
            Format::Image => OutputFormat::Image,
            Format::Artifact => OutputFormat::Artifact,
        },
        source_date_epoch,
        target: a.target,
    };
    let quiet = a.quiet;
    let out = super::lib(wharf::build::build(store, &options, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    }))?;
    if !quiet {
        for t in &options.tags {
            eprintln!("naming to {}", t.familiar());
        }
        eprintln!("manifest {}", out.manifest_digest);
    }
    super::say(&out.image_id)?;
    Ok(0)
}
