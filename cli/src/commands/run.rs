//! `wharf run`.

use std::path::{Path, PathBuf};

use wharf::container::{Container, ContainerConfig, Containers};
use wharf::exec::linux::LinuxOptions;
use wharf::exec::{self, Mount, RunOptions};
use wharf::image::Image;
use wharf::reference::Reference;
use wharf::registry::PullOptions;
use wharf::store::{Store, StoreError};

use super::share;

/// A reference worth asking a registry for (not an image id or prefix).
fn is_pullable(image: &str) -> bool {
    let looks_like_id = image.starts_with("sha256:")
        || (image.len() >= 4 && image.chars().all(|c| c.is_ascii_hexdigit()));
    !looks_like_id && image.parse::<Reference>().is_ok()
}

/// What a guest is given, shared by `wharf run` and `wharf serve`.
#[derive(clap::Args)]
pub struct GuestArgs {
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Map a host directory (HOST:GUEST[:ro]).
    #[arg(short = 'v', long = "volume", value_name = "HOST:GUEST[:ro]")]
    volumes: Vec<String>,
    /// Network mode: none (the default: only what -p and --allow-net open)
    /// or host (everything).
    #[arg(long)]
    network: Option<String>,
    /// Allow outgoing connections and wasi:http requests to HOST[:PORT] (an
    /// address, a CIDR block, a name or *.domain); repeatable.
    #[arg(long = "allow-net", value_name = "HOST[:PORT]")]
    allow_net: Vec<String>,
}

impl GuestArgs {
    /// The guest environment from `--env-file` files, then `-e` values.
    pub fn env(&self) -> anyhow::Result<Vec<(String, String)>> {
        super::env_from(&self.env_file, &self.env)
    }

    /// The `-v HOST:GUEST[:ro]` mappings.
    pub fn mounts(&self) -> anyhow::Result<Vec<Mount>> {
        self.volumes
            .iter()
            .map(|v| super::lib(v.parse::<Mount>()))
            .collect()
    }

    /// The network policy, with the `-p` values (`run` only).
    pub fn network(&self, publish: &[String]) -> anyhow::Result<exec::NetworkPolicy> {
        super::lib(
            exec::NetworkPolicy::new(self.network.as_deref(), publish, &self.allow_net)
                .map_err(exec::RunError::from),
        )
    }
}

/// Arguments of `wharf run` (and of `wharf create`).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    guest: GuestArgs,
    #[command(flatten)]
    managed: super::container::ManagedArgs,
    /// Run the container in the background and print its id.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Remove the container when it exits (a run without -d, --name or
    /// --restart leaves no container behind anyway).
    #[arg(long)]
    rm: bool,
    /// Working directory inside the guest.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Module to run instead of the image's ENTRYPOINT.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Memory limit (e.g. 64m): linear memory for wasm, the cgroup limit
    /// for Linux containers.
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Wall-clock limit (e.g. 10s, 500ms).
    #[arg(long)]
    timeout: Option<String>,
    /// Instruction budget (wasmtime fuel units).
    #[arg(long)]
    fuel: Option<u64>,
    /// Keep stdin open for the guest.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the container a terminal (pseudo-TTY); with -i, keys go to
    /// it as typed. A foreground wasm guest uses wharf's own terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Keys that detach from the container's terminal and leave it
    /// running (`ctrl-<x>` or a character, separated by commas; default
    /// ctrl-p,ctrl-q). Makes a container that outlives the command, as
    /// --name does.
    #[arg(long = "detach-keys", value_name = "KEYS", value_parser = wharf::exec::tty::DetachKeys::parse)]
    detach_keys: Option<wharf::exec::tty::DetachKeys>,
    /// Platform to select from a multi-platform image.
    #[arg(long)]
    platform: Option<String>,
    /// Publish a guest port ([IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]); wasip2
    /// guests may listen on exactly these.
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:GUEST")]
    publish: Vec<String>,
    /// Host name of a Linux container (default: its id).
    #[arg(long)]
    hostname: Option<String>,
    /// User of a Linux container (name or uid, with an optional :group).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// CPU time of a Linux container, in CPUs (e.g. 0.5).
    #[arg(long)]
    cpus: Option<f64>,
    /// Most processes a Linux container may have at once.
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Run an init (tini) as PID 1 of a Linux container: it reaps zombies
    /// and passes signals on.
    #[arg(long)]
    init: bool,
    /// Pull the image when it is not in the store: missing or never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "never"])]
    pull: String,
    /// Image name or id, or a path to a .wasm file, then the arguments
    /// replacing the image's CMD. As with `docker run`, everything after
    /// IMAGE goes to the guest, flags included.
    #[arg(
        value_name = "IMAGE [ARGS]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

/// Gets a missing image into the store: (store, reference, --platform).
pub type Pull<'a> = &'a dyn Fn(&Store, &str, Option<String>) -> anyhow::Result<()>;

/// Runs a Linux image and returns its exit code.
pub type Linux<'a> = &'a dyn Fn(&Store, &Image, &RunOptions, &LinuxOptions) -> anyhow::Result<i32>;

/// Runs a Linux image in the foreground in the native backend.
pub const LINUX: Linux<'static> = &|store, image, options, linux| {
    let outcome = super::lib(exec::linux::run(store, image, options, linux))?;
    Ok(outcome.exit.code())
};

/// `wharf run`, pulling a missing image first as `docker run` does, and
/// running Linux images in the native backend.
pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    if a.wants_container() {
        return run_container(store, a);
    }
    run_with(store, a, LINUX, &|store, image, platform| {
        eprintln!("Unable to find image '{image}' locally");
        let options = PullOptions {
            platform,
            ..PullOptions::default()
        };
        share::pull_with(
            store,
            image,
            &options,
            &share::Display::new(false, "pulled"),
        )
        .map(drop)
    })
}

impl Args {
    /// The run makes a container that outlives it (`-d`, `--name`,
    /// `--restart`, `--label`, `--detach-keys`): one a monitor process
    /// owns.
    pub fn wants_container(&self) -> bool {
        self.detach || self.managed.wanted() || self.detach_keys.is_some()
    }

    /// The configuration of a container made from these arguments.
    fn container_config(&self) -> anyhow::Result<ContainerConfig> {
        let (image, args) = self
            .command
            .split_first()
            .expect("clap requires at least IMAGE");
        self.guest.mounts()?;
        let mut config = ContainerConfig {
            image: image.clone(),
            cmd: (!args.is_empty()).then(|| args.to_vec()),
            entrypoint: self.entrypoint.clone(),
            env: self
                .guest
                .env()?
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            mounts: self.guest.volumes.clone(),
            workdir: self.workdir.clone(),
            memory: super::parse_opt(self.memory.as_deref(), exec::parse_bytes)?,
            timeout_ms: super::parse_opt(self.timeout.as_deref(), exec::parse_duration)?
                .map(|d| d.as_millis() as u64),
            fuel: self.fuel,
            publish: self.publish.clone(),
            network: self.guest.network.clone(),
            allow_net: self.guest.allow_net.clone(),
            hostname: self.hostname.clone(),
            user: self.user.clone(),
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            init: self.init,
            auto_remove: self.rm,
            // As docker run -i: input ends with the command's own, unless
            // the container is detached (later attaches feed it).
            open_stdin: self.interactive,
            stdin_once: self.interactive && !self.detach,
            tty: self.tty,
            console_size: self
                .tty
                .then(|| exec::tty::size(rustix::stdio::stdout()))
                .flatten(),
            ..ContainerConfig::default()
        };
        self.managed.apply(&mut config)?;
        Ok(config)
    }
}

/// Makes the container `a` describes, pulling its image first if needed.
pub fn create(store: &Store, cs: &Containers, a: Args) -> anyhow::Result<Container> {
    let config = a.container_config()?;
    if store.lookup(&config.image).is_err() && a.pull != "never" && is_pullable(&config.image) {
        share::pull_with(
            store,
            &config.image,
            &PullOptions {
                platform: a.platform.clone(),
                ..PullOptions::default()
            },
            &share::Display::new(false, "pulled"),
        )
        .map_err(|e| anyhow::anyhow!("no such image: {} ({e})", config.image))?;
    }
    super::lib(cs.create(a.managed.name.as_deref(), a.platform.as_deref(), config))
}

/// `wharf run` of a container that outlives the command: created and
/// started in a monitor process; with `-d` its id is printed, otherwise
/// its output is followed until it exits.
fn run_container(store: &Store, a: Args) -> anyhow::Result<i32> {
    let cs = super::container::containers(store)?;
    let (detach, keys) = (a.detach, a.detach_keys.clone().unwrap_or_default());
    let c = create(store, &cs, a)?;
    if detach {
        super::lib(cs.start(&c.id))?;
        super::say(&c.id)?;
        return Ok(0);
    }
    // Opened before the start, so no line is missed.
    let mut reader = cs.log_reader(&c.id, false)?;
    super::lib(cs.start(&c.id))?;
    super::container::session(&cs, &c, &mut reader, c.config.open_stdin, keys)
}

/// `wharf run` of a guest that lives as long as the command (not
/// [`Args::wants_container`]), getting a missing image with `pull` and
/// running a Linux image with `linux`.
///
/// Containers are left to [`run`]: the run-only `wharf` executable calls
/// this function alone, so the container, log and registry code it would
/// otherwise reach is not linked into it (decision 0008).
pub fn run_with(store: &Store, a: Args, linux: Linux<'_>, pull: Pull<'_>) -> anyhow::Result<i32> {
    debug_assert!(!a.wants_container(), "containers are run by `run`");
    let (image, args) = a
        .command
        .split_first()
        .expect("clap requires at least IMAGE");
    let env = a.guest.env()?;
    let mounts = a.guest.mounts()?;
    let options = RunOptions {
        args: if args.is_empty() {
            None
        } else {
            Some(args.to_vec())
        },
        entrypoint: a.entrypoint,
        env,
        mounts,
        workdir: a.workdir,
        memory: super::parse_opt(a.memory.as_deref(), exec::parse_bytes)?,
        timeout: super::parse_opt(a.timeout.as_deref(), exec::parse_duration)?,
        fuel: a.fuel,
        stdin: a.interactive,
        network: a.guest.network(&a.publish)?,
        ..RunOptions::default()
    };
    // `x.wasm` is a file when it exists, or when no image has that name
    // (so a missing file is reported as such, with exit code 127).
    let looks_like_file = image.ends_with(".wasm") || image.ends_with(".wat");
    let tagged = if looks_like_file && Path::new(image).exists() {
        None
    } else {
        match store.lookup(image) {
            Ok(t) => Some(t),
            Err(_) if looks_like_file => None,
            // As `docker run`: a missing image is pulled first.
            Err(StoreError::UnknownImage(_)) if a.pull != "never" && is_pullable(image) => {
                pull(store, image, a.platform.clone())
                    .map_err(|e| anyhow::anyhow!("no such image: {image} ({e})"))?;
                Some(super::lib(store.lookup(image))?)
            }
            Err(e) => return super::lib(Err(e)),
        }
    };
    let outcome = match tagged {
        None => super::lib(exec::run_file(store, Path::new(image), args, &options))?,
        Some(tagged) => {
            let loaded = super::lib(store.load_image(&tagged.descriptor, a.platform.as_deref()))?;
            if !loaded.is_wasm() {
                let relay = exec::tty::RelaySlot::default();
                let linux_options = LinuxOptions {
                    hostname: a.hostname.clone(),
                    user: a.user.clone(),
                    host_network: a.guest.network.as_deref() == Some("host"),
                    cpus: a.cpus,
                    pids_limit: a.pids_limit,
                    init: a.init,
                    terminal: a.tty.then(|| relay.on_terminal(a.interactive)),
                    ..LinuxOptions::default()
                };
                let code = linux(store, &loaded, &options, &linux_options);
                relay.finish();
                return code;
            }
            super::lib(exec::run_image(store, image, &loaded, &options))?
        }
    };
    if let Some(m) = outcome.exit.message() {
        eprintln!("wharf: {m}");
    }
    Ok(outcome.exit.code())
}
