//! `wharf system prune` and `wharf system df`.

use std::io::{BufRead as _, Write as _};

use wharf::store::{Store, Usage};

use super::{human_size, lib, say};

/// `wharf system` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Remove stopped containers, unnamed images, and what nothing uses.
    Prune(PruneArgs),
    /// Show what takes space in the store.
    Df(DfArgs),
}

/// Arguments of `wharf system prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    /// Also remove every image no container uses, and the build cache.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// Arguments of `wharf system df`.
#[derive(clap::Args)]
pub struct DfArgs {
    /// Output format: table, or json (one object per line).
    #[arg(long, default_value = "table")]
    format: String,
}

/// Runs a `wharf system` subcommand.
pub fn run(store: &Store, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Prune(a) => prune(store, a),
        Command::Df(a) => df(store, a),
    }
}

fn prune(store: &Store, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force {
        let what = if a.all {
            "all stopped containers, all images without at least one container using them, \
             and the build cache"
        } else {
            "all stopped containers and all unnamed (dangling) images"
        };
        // On stdout, as Docker asks.
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] "
        )?;
        out.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("wharf: nothing removed");
            return Ok(1);
        }
    }
    let cs = super::container::containers(store)?;
    let removed = lib(cs.prune())?;
    let mut reclaimed: u64 = removed.iter().map(|(_, size)| size).sum();
    if !removed.is_empty() {
        say("Deleted Containers:")?;
        for (id, _) in &removed {
            say(id)?;
        }
        say("")?;
    }
    let images = lib(store.prune_images(a.all))?;
    reclaimed += images.reclaimed;
    if !images.images.is_empty() {
        say("Deleted Images:")?;
        for name in &images.images {
            match name.starts_with("sha256:") {
                true => say(format_args!("deleted: {name}"))?,
                false => say(format_args!("untagged: {name}"))?,
            }
        }
        say("")?;
    }
    if a.all {
        let cache = lib(store.prune_build_cache())?;
        reclaimed += cache.reclaimed;
        if !cache.build_cache.is_empty() {
            say(format_args!(
                "Deleted build cache entries: {}\n",
                cache.build_cache.len()
            ))?;
        }
    }
    say(format_args!(
        "Total reclaimed space: {}",
        human_size(reclaimed)
    ))?;
    Ok(0)
}

fn df(store: &Store, a: DfArgs) -> anyhow::Result<i32> {
    let usage = lib(store.disk_usage())?;
    let cs = super::container::containers(store)?;
    let list = lib(cs.list())?;
    let mut containers = Usage::default();
    for c in &list {
        containers.add(cs.size(&c.id), c.state.is_running());
    }
    let rows = [
        ("Images", &usage.images),
        ("Containers", &containers),
        ("Snapshots", &usage.snapshots),
        ("Compiled code", &usage.modules),
        ("Build Cache", &usage.build_cache),
    ];
    let mut out = std::io::stdout().lock();
    match a.format.as_str() {
        "json" => {
            for (kind, u) in rows {
                let mut v = serde_json::to_value(u)?;
                v["type"] = kind.into();
                writeln!(out, "{v}")?;
            }
        }
        "table" => {
            writeln!(
                out,
                "{:<15} {:<9} {:<9} {:<10} RECLAIMABLE",
                "TYPE", "TOTAL", "ACTIVE", "SIZE"
            )?;
            for (kind, u) in rows {
                let percent = (u.reclaimable * 100).checked_div(u.size).unwrap_or(0);
                writeln!(
                    out,
                    "{:<15} {:<9} {:<9} {:<10} {} ({percent}%)",
                    kind,
                    u.total,
                    u.active,
                    human_size(u.size),
                    human_size(u.reclaimable)
                )?;
            }
        }
        f => anyhow::bail!("unknown --format {f:?}: use table or json"),
    }
    Ok(0)
}
