//! Linux images: image config + run options -> OCI runtime spec -> bundle.
//!
//! This is the first half of the native Linux backend: the OCI runtime spec
//! wharf would run a classic `linux/*` image with, written as an OCI bundle
//! (`config.json` and `rootfs/`) that any OCI runtime (runc, crun, youki)
//! can run. The defaults are Docker's: the pid, network, ipc, uts, mount
//! and cgroup namespaces, Docker's default capability set,
//! `no_new_privileges`, Docker's masked and read-only paths, a fresh
//! `/proc`, a tmpfs `/dev` and a read-only `/sys`. The process follows
//! Docker's entrypoint/cmd rules.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxNamespaceBuilder, LinuxNamespaceType, Mount as OciMount,
    MountBuilder, Spec, UserBuilder,
};

use super::cgroups::Cgroup;
use super::{RunError, RunOptions, RunOutcome};
use crate::digest::Digest;
use crate::image::Image;
use crate::store::Store;

/// `PATH` when the image sets none (Docker's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities.
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths Docker hides from containers.
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only in containers.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What a Linux container gets beyond [`RunOptions`].
#[derive(Debug, Clone, Default)]
pub struct LinuxOptions {
    /// The container's host name (default: derived from the image id).
    pub hostname: Option<String>,
    /// `-u USER[:GROUP]` (names or numbers), replacing the image's USER.
    pub user: Option<String>,
    /// `--network host`: share the host's network namespace.
    pub host_network: bool,
    /// `--cpus`: CPU time, in CPUs (e.g. 0.5).
    pub cpus: Option<f64>,
    /// `--pids-limit`: most processes at once.
    pub pids_limit: Option<i64>,
    /// `--init`: run an init as PID 1 that reaps zombies and forwards
    /// signals to the process (Docker's `docker-init`, tini).
    pub init: bool,
    /// The container id (12 hex digits) naming its cgroup, state and
    /// default host name; a fresh one when not given.
    pub id: Option<String>,
    /// Called once the container's init runs and signals sent to this
    /// process reach it (what a monitor waits for before saying
    /// "started").
    pub on_start: Option<OnStart>,
    /// A directory that keeps the container's writable layer (`upper/`
    /// and `work/`) from one run to the next, as a Docker container's
    /// files survive `stop` and `start`; its owner removes it. Without it
    /// each run writes to a fresh layer removed when the run ends.
    pub rw: Option<PathBuf>,
    /// `-t`: the process gets a terminal (a pty made in the container,
    /// `TERM=xterm` unless set) and this is given the master side once
    /// the container is created, before its process starts.
    pub terminal: Option<OnTerminal>,
}

/// A callback given the master side of a container's terminal.
#[derive(Clone)]
pub struct OnTerminal(pub std::sync::Arc<dyn Fn(std::os::fd::OwnedFd) + Send + Sync>);

impl std::fmt::Debug for OnTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnTerminal")
    }
}

/// A callback given the host pid of a container's init once it runs.
#[derive(Clone)]
pub struct OnStart(pub std::sync::Arc<dyn Fn(i32) + Send + Sync>);

impl std::fmt::Debug for OnStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnStart")
    }
}

/// The OCI runtime spec for running `image` with `options`. `rootfs` is
/// the unpacked image filesystem (users and groups named in USER are
/// looked up in its `/etc/passwd` and `/etc/group`); the spec refers to it
/// as `rootfs`, relative to the bundle.
pub fn runtime_spec(
    image: &Image,
    rootfs: &Path,
    options: &RunOptions,
    linux: &LinuxOptions,
) -> Result<Spec, RunError> {
    let mut linux = linux.clone();
    if linux.hostname.is_none() {
        linux.hostname = Some(image.config_digest.hex()[..12].to_owned());
    }
    let what = format!("image {}", image.config_digest);
    spec_for(&what, &image.process(), rootfs, options, &linux)
}

/// [`runtime_spec`] from an image's process config.
fn spec_for(
    what: &str,
    config: &oci_spec::image::Config,
    rootfs: &Path,
    options: &RunOptions,
    linux: &LinuxOptions,
) -> Result<Spec, RunError> {
    let args = process_args(
        config.entrypoint().as_deref().unwrap_or(&[]),
        config.cmd().as_deref().unwrap_or(&[]),
        options,
    )
    .ok_or_else(|| {
        RunError::Unsupported(format!(
            "{what} has no ENTRYPOINT or CMD and no command was given"
        ))
    })?;
    let hostname = linux.hostname.clone().unwrap_or_else(|| "wharf".into());
    let init = if linux.init {
        Some(init_program()?)
    } else {
        None
    };
    let args = match &init {
        Some(_) => [INIT_PATH.to_owned(), "--".to_owned()]
            .into_iter()
            .chain(args)
            .collect(),
        None => args,
    };

    let mut env: Vec<String> = config.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env.push(format!("HOSTNAME={hostname}"));
    if linux.terminal.is_some() && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_owned());
    }
    for (k, v) in &options.env {
        env.retain(|e| e.split('=').next() != Some(k.as_str()));
        env.push(format!("{k}={v}"));
    }

    let user_spec = linux
        .user
        .clone()
        .or_else(|| config.user().clone())
        .unwrap_or_default();
    let user = spec_user(rootfs, &user_spec)?;

    let cwd = options
        .workdir
        .clone()
        .or_else(|| config.working_dir().clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(RunError::Unsupported(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }

    let mut spec = Spec::default();
    spec.set_hostname(Some(hostname));
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_user(user);
    process.set_no_new_privileges(Some(true));
    process.set_terminal(Some(linux.terminal.is_some()));
    // Inherit the runtime's limits, as Docker does, instead of 1024 files.
    process.set_rlimits(None);
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPS.into_iter().collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(caps.clone()));
    capabilities.set_effective(Some(caps.clone()));
    capabilities.set_permitted(Some(caps));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    process.set_capabilities(Some(capabilities));
    spec.set_process(Some(process));

    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(false));
    spec.set_root(Some(root));

    let mut mounts: Vec<OciMount> = spec.mounts().clone().unwrap_or_default();
    for m in &options.mounts {
        let mut opts = vec!["rbind".to_owned(), "rprivate".to_owned()];
        if m.read_only {
            opts.push("ro".to_owned());
        }
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from(&m.guest))
                .typ("bind")
                .source(m.host.clone())
                .options(opts)
                .build()
                .map_err(spec_error)?,
        );
    }
    if let Some(program) = init {
        // Read-only: the container cannot change the host's program.
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from(INIT_PATH))
                .typ("bind")
                .source(program)
                .options(
                    ["bind", "ro", "nosuid", "nodev"]
                        .map(str::to_owned)
                        .to_vec(),
                )
                .build()
                .map_err(spec_error)?,
        );
    }
    spec.set_mounts(Some(mounts));

    let mut l = spec.linux().clone().unwrap_or_default();
    let mut namespaces = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ] {
        if typ == LinuxNamespaceType::Network && linux.host_network {
            continue;
        }
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .map_err(spec_error)?,
        );
    }
    l.set_namespaces(Some(namespaces));
    l.set_resources(Some(resources(options, linux)?));
    l.set_masked_paths(Some(MASKED_PATHS.iter().map(|p| p.to_string()).collect()));
    l.set_readonly_paths(Some(READONLY_PATHS.iter().map(|p| p.to_string()).collect()));
    spec.set_linux(Some(l));
    Ok(spec)
}

/// The cgroup limits of `--memory` (with no swap beyond it), `--cpus`
/// and `--pids-limit`.
fn resources(
    options: &RunOptions,
    linux: &LinuxOptions,
) -> Result<oci_spec::runtime::LinuxResources, RunError> {
    let mut resources = oci_spec::runtime::LinuxResources::default();
    if let Some(bytes) = options.memory {
        let mut memory = oci_spec::runtime::LinuxMemory::default();
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        memory.set_limit(Some(bytes));
        // No extra swap beyond the limit, as `docker run -m` without
        // --memory-swap allows twice the limit; wharf allows none.
        memory.set_swap(Some(bytes));
        resources.set_memory(Some(memory));
    }
    if let Some(cpus) = linux.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            return Err(RunError::Unsupported(format!(
                "--cpus {cpus}: use a positive number"
            )));
        }
        let period: u64 = 100_000;
        let mut cpu = oci_spec::runtime::LinuxCpu::default();
        cpu.set_period(Some(period));
        cpu.set_quota(Some((cpus * period as f64).round().max(1000.0) as i64));
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = linux.pids_limit {
        let mut pids = oci_spec::runtime::LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    Ok(resources)
}

/// Where `--init` puts the init program in the container (as Docker does).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Static init programs `--init` may use, first found wins: Debian's tini
/// (what Docker ships as `docker-init`), then Docker's own. Static, since
/// the container has its own libraries, or none.
const INIT_PROGRAMS: [&str; 2] = ["/usr/bin/tini-static", "/usr/libexec/docker/docker-init"];

/// The host program `--init` mounts at [`INIT_PATH`].
fn init_program() -> Result<PathBuf, RunError> {
    INIT_PROGRAMS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            RunError::Unsupported(format!(
                "--init needs a static init program ({}): install Debian's tini",
                INIT_PROGRAMS.join(" or ")
            ))
        })
}

/// Docker's rule: ENTRYPOINT followed by the given arguments, or by CMD
/// when none are given; `--entrypoint` replaces ENTRYPOINT and drops CMD.
fn process_args(
    entrypoint: &[String],
    cmd: &[String],
    options: &RunOptions,
) -> Option<Vec<String>> {
    let entrypoint: Vec<String> = match &options.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => entrypoint.to_vec(),
    };
    let rest: Vec<String> = match (&options.args, &options.entrypoint) {
        (Some(a), _) => a.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => cmd.to_vec(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(rest).collect();
    (!args.is_empty()).then_some(args)
}

/// [`resolve_user`] as the runtime spec's user.
fn spec_user(rootfs: &Path, spec: &str) -> Result<oci_spec::runtime::User, RunError> {
    let (uid, gid, groups) = resolve_user(rootfs, spec)?;
    UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(groups)
        .build()
        .map_err(spec_error)
}

/// Resolves `USER[:GROUP]` (names or numbers, empty for root) against the
/// image's `/etc/passwd` and `/etc/group`, read without following any
/// symlink out of `rootfs`. Returns uid, gid and supplementary groups.
fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>), RunError> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let root = Dir::open_ambient_dir(rootfs, cap_std::ambient_authority())?;
    let read = |name: &str| -> String {
        use cap_std::fs::OpenOptionsExt as _;
        let mut text = String::new();
        // Non-blocking, so a fifo planted there cannot hang the open.
        let opened = root.open_with(
            name,
            cap_std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY),
        );
        if let Ok(f) = opened {
            // Regular files only, and bounded: the files are untrusted.
            if f.metadata().is_ok_and(|m| m.is_file()) {
                let _ = f.take(1 << 20).read_to_string(&mut text);
            }
        }
        text
    };
    let passwd = read("etc/passwd");
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(':').map(str::to_owned).collect())
            .collect()
    };
    let users = entries(&passwd);
    let not_found = |what: &str, name: &str| {
        RunError::Unsupported(format!(
            "unable to find {what} {name}: no matching entries in the image's /etc/{}",
            if what == "user" { "passwd" } else { "group" }
        ))
    };
    let (uid, mut gid, name) = match user.parse::<u32>() {
        Ok(uid) => {
            let entry = users
                .iter()
                .find(|e| e.get(2).map(String::as_str) == Some(user));
            let gid = entry.and_then(|e| e.get(3)?.parse().ok()).unwrap_or(0);
            (uid, gid, entry.map(|e| e[0].clone()))
        }
        Err(_) => {
            let e = users
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(user))
                .ok_or_else(|| not_found("user", user))?;
            let uid = e.get(2).and_then(|v| v.parse().ok());
            let gid = e.get(3).and_then(|v| v.parse().ok());
            match (uid, gid) {
                (Some(u), Some(g)) => (u, g, Some(user.to_owned())),
                _ => return Err(not_found("user", user)),
            }
        }
    };
    let groups_text = read("etc/group");
    let groups = entries(&groups_text);
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(g))
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| not_found("group", g))?,
        };
    }
    // Supplementary groups: the groups that list the user by name.
    let mut extra = BTreeSet::new();
    if let Some(name) = name {
        for e in &groups {
            let members = e.get(3).map(String::as_str).unwrap_or("");
            if members.split(',').any(|m| m == name) {
                if let Some(n) = e.get(2).and_then(|v| v.parse::<u32>().ok()) {
                    if n != gid {
                        extra.insert(n);
                    }
                }
            }
        }
    }
    Ok((uid, gid, extra.into_iter().collect()))
}

/// Writes an OCI bundle for `image` into `dir` (which must not exist or
/// be empty): `rootfs/` with the image's layers unpacked (whiteouts
/// applied, every entry confined to it) and `config.json` from
/// [`runtime_spec`]. On error nothing is left behind in `dir`.
pub fn write_bundle(
    store: &Store,
    image: &Image,
    options: &RunOptions,
    linux: &LinuxOptions,
    dir: &Path,
) -> Result<(), RunError> {
    if image.is_wasm() {
        return Err(RunError::Unsupported(format!(
            "image {} is a wasm image: bundles are for Linux images",
            image.config_digest
        )));
    }
    let existed = dir.exists();
    if existed && std::fs::read_dir(dir)?.next().is_some() {
        return Err(RunError::Unsupported(format!(
            "bundle directory {} is not empty",
            dir.display()
        )));
    }
    let result = fill_bundle(store, image, options, linux, dir);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dir.join("rootfs"));
        let _ = std::fs::remove_file(dir.join("config.json"));
        if !existed {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

fn fill_bundle(
    store: &Store,
    image: &Image,
    options: &RunOptions,
    linux: &LinuxOptions,
    dir: &Path,
) -> Result<(), RunError> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    crate::layer::unpack_layers(
        store,
        &image.fs_layers,
        image.config.rootfs().diff_ids(),
        &rootfs,
    )?;
    let spec = runtime_spec(image, &rootfs, options, linux)?;
    let json = serde_json::to_vec_pretty(&spec)
        .map_err(|e| RunError::Unsupported(format!("runtime spec: {e}")))?;
    std::fs::write(dir.join("config.json"), json)?;
    Ok(())
}

/// Runs `image` as a Linux container and waits for it: an overlay rootfs
/// over the image's snapshot (the container's writes go to its own upper
/// layer, removed afterwards), the spec from [`runtime_spec`], and wharf's
/// executor (`exec::oci`) to create the cgroup, namespaces and mounts and
/// start the process. wharf stays the parent: it forwards SIGINT, SIGTERM, SIGHUP,
/// SIGQUIT, SIGUSR1 and SIGUSR2 to the container's init, and returns its
/// exit code (128 + the signal number when a signal ended it).
pub fn run(
    store: &Store,
    image: &Image,
    options: &RunOptions,
    linux: &LinuxOptions,
) -> Result<RunOutcome, RunError> {
    if image.is_wasm() {
        return Err(RunError::Unsupported(format!(
            "image {} is a wasm image",
            image.config_digest
        )));
    }
    if !options.network.publish.is_empty() && !linux.host_network {
        return Err(RunError::Unsupported(
            "-p needs a bridged network, which Linux containers do not have yet: use --network host".into(),
        ));
    }
    require_root()?;
    let layers = {
        let _lock = store.lock_shared()?;
        ensure_layers(store, image)?
    };
    sweep_orphans(store);
    let id = match &linux.id {
        Some(id) if id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) => id.clone(),
        Some(id) => {
            return Err(RunError::Unsupported(format!(
                "container id {id:?} is not 12 hex digits"
            )))
        }
        None => container_id(),
    };
    let dir = overlays_dir(store).join(&id);
    let lowers: Vec<PathBuf> = layers.iter().map(LayerSnapshot::fs).collect();
    // The cgroup is made while the overlay is mounted and the spec
    // written: each costs about a millisecond of system calls.
    let limits = resources(options, linux)?;
    let cgroup_id = id.clone();
    let cgroup = std::thread::spawn(move || Cgroup::create(&cgroup_id, Some(&limits)));
    let prepared = (|| {
        let container = ContainerDir::create(&dir, &lowers, linux.rw.as_deref())?;
        // Users resolve against the merged image, before anything runs
        // in it.
        let spec = runtime_spec(image, &container.rootfs, options, &named(linux, &id))?;
        let spec = point_at(spec, &container.rootfs, &id);
        // Only a container a monitor runs (it has an id) can be joined
        // by `exec`, which reads its process from here.
        if linux.id.is_some() {
            write_config(&spec, &dir)?;
        }
        Ok((container, spec))
    })();
    let cgroup = cgroup
        .join()
        .unwrap_or_else(|_| Err(RunError::Unsupported("cgroup set-up panicked".into())));
    let (container, spec) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            if let Ok(cgroup) = cgroup {
                cgroup.remove();
            }
            return Err(e);
        }
    };
    let cgroup = cgroup?;
    let outcome = start_and_wait(
        store,
        &id,
        &dir,
        &spec,
        &container.rootfs,
        &cgroup,
        options,
        linux,
    );
    // The cgroup and the overlay go in parallel.
    std::thread::scope(|s| {
        s.spawn(|| cgroup.remove());
        drop(container);
    });
    drop(layers);
    outcome
}

/// Runs a process described by `config` (an image's process config) with
/// `options` directly in `rootfs`, which it may change: a build's RUN
/// step. Same isolation as [`run`], without the overlay.
pub fn run_in(
    store: &Store,
    rootfs: &Path,
    config: &oci_spec::image::Config,
    options: &RunOptions,
    linux: &LinuxOptions,
) -> Result<RunOutcome, RunError> {
    require_root()?;
    let id = container_id();
    let bundle = store.temp_dir("container-")?;
    let spec = spec_for("the process", config, rootfs, options, &named(linux, &id))?;
    let spec = point_at(spec, rootfs, &id);
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let cgroup = Cgroup::create(&id, resources)?;
    let outcome = start_and_wait(
        store,
        &id,
        bundle.path(),
        &spec,
        rootfs,
        &cgroup,
        options,
        linux,
    );
    cgroup.remove();
    outcome
}

fn require_root() -> Result<(), RunError> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(RunError::Unsupported(
            "running Linux images needs root (rootless containers are not supported yet)".into(),
        ))
    }
}

/// `linux` with the container id as the default host name.
fn named(linux: &LinuxOptions, id: &str) -> LinuxOptions {
    let mut linux = linux.clone();
    linux.hostname.get_or_insert_with(|| id.to_owned());
    linux
}

/// Points `spec` at `rootfs` and the container's cgroup.
fn point_at(mut spec: Spec, rootfs: &Path, id: &str) -> Spec {
    if let Some(root) = spec.root_mut() {
        root.set_path(rootfs.to_path_buf());
    }
    if let Some(l) = spec.linux_mut() {
        l.set_cgroups_path(Some(PathBuf::from(format!("/wharf/{id}"))));
    }
    spec
}

/// Writes `spec` as `bundle/config.json`, where `exec` finds the
/// container's process.
fn write_config(spec: &Spec, bundle: &Path) -> Result<(), RunError> {
    let json = serde_json::to_vec(spec)
        .map_err(|e| RunError::Unsupported(format!("runtime spec: {e}")))?;
    std::fs::write(bundle.join("config.json"), json)?;
    Ok(())
}

/// Signals wharf passes on to the container.
pub const FORWARDED: [i32; 6] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
];

/// Largest output kept with [`super::Stdio::Capture`].
const CAPTURE_LIMIT: u64 = 64 << 20;

/// Starts the container and waits for it (see [`start_and_wait_in`]),
/// with its output captured when `options` ask.
#[allow(clippy::too_many_arguments)]
fn start_and_wait(
    store: &Store,
    id: &str,
    bundle: &Path,
    spec: &Spec,
    rootfs: &Path,
    cgroup: &Cgroup,
    options: &RunOptions,
    linux: &LinuxOptions,
) -> Result<RunOutcome, RunError> {
    // Captured output goes to unlinked files in the store's temp area
    // (made only when something is captured).
    let capturing = [&options.stdout, &options.stderr]
        .iter()
        .any(|s| matches!(s, super::Stdio::Capture));
    let tmp = if capturing {
        Some(store.temp_dir("out-")?)
    } else {
        None
    };
    let capture = |s: &super::Stdio| -> Result<Option<std::fs::File>, RunError> {
        Ok(match (s, &tmp) {
            (super::Stdio::Capture, Some(dir)) => Some(tempfile::tempfile_in(dir.path())?),
            _ => None,
        })
    };
    let out = capture(&options.stdout)?;
    let err = capture(&options.stderr)?;
    use std::os::fd::OwnedFd;
    let stream =
        |s: &super::Stdio, f: &Option<std::fs::File>| -> Result<Option<OwnedFd>, RunError> {
            Ok(match (s, f) {
                (super::Stdio::Null, _) => Some(null(true)?),
                (_, Some(f)) => Some(f.try_clone()?.into()),
                _ => None,
            })
        };
    let stdio = super::oci::Stdio {
        stdin: if options.stdin {
            None
        } else {
            Some(null(false)?)
        },
        stdout: stream(&options.stdout, &out)?,
        stderr: stream(&options.stderr, &err)?,
    };
    let code = start_and_wait_in(id, bundle, spec, rootfs, cgroup, stdio, linux)?;
    let read = |f: Option<std::fs::File>| -> Result<Vec<u8>, RunError> {
        let mut bytes = Vec::new();
        if let Some(mut f) = f {
            use std::io::Seek as _;
            f.seek(std::io::SeekFrom::Start(0))?;
            f.take(CAPTURE_LIMIT).read_to_end(&mut bytes)?;
        }
        Ok(bytes)
    };
    Ok(RunOutcome {
        exit: super::Exit::Code(code),
        stdout: read(out)?,
        stderr: read(err)?,
    })
}

/// Starts the container of `spec` (its rootfs `rootfs`, its files in
/// `bundle`) in `cgroup` and waits for it.
fn start_and_wait_in(
    id: &str,
    bundle: &Path,
    spec: &Spec,
    rootfs: &Path,
    cgroup: &Cgroup,
    stdio: super::oci::Stdio,
    linux: &LinuxOptions,
) -> Result<i32, RunError> {
    let forwarder = Forwarder::start()?;
    let result = (|| {
        let place = super::oci::Place::New {
            rootfs,
            // A build step's rootfs is a plain directory.
            bind_rootfs: !rootfs.starts_with(bundle),
        };
        let mut started =
            super::oci::start(spec, place, cgroup, stdio).map_err(|e| in_container(id, e))?;
        let pid = started.child.id() as i32;
        // Who the init of a container a monitor runs is, for `exec`,
        // `pause` and cleaning up after a crash (which finds a foreground
        // run's processes through its cgroup).
        let recorded = match linux.id {
            Some(_) => super::oci::start_time(pid)
                .ok_or_else(|| std::io::Error::other("its start time is unreadable"))
                .and_then(|t| std::fs::write(bundle.join("init"), format!("{pid} {t}"))),
            None => Ok(()),
        };
        if let Err(e) = recorded {
            let _ = started.child.kill();
            let _ = started.child.wait();
            return Err(RunError::Unsupported(format!(
                "container {id}: recording its init: {e}"
            )));
        }
        forwarder.target(pid);
        if let (Some(master), Some(on_terminal)) = (started.terminal.take(), &linux.terminal) {
            (on_terminal.0)(master);
        }
        if let Some(f) = &linux.on_start {
            (f.0)(pid);
        }
        wait_for(&mut started.child)
    })();
    forwarder.stop();
    if linux.id.is_some() {
        let _ = std::fs::remove_file(bundle.join("init"));
    }
    result
}

/// Names the container in a setup error.
fn in_container(id: &str, e: RunError) -> RunError {
    match e {
        RunError::Unsupported(m) => RunError::Unsupported(format!("container {id}: {m}")),
        other => other,
    }
}

/// Passes the [`FORWARDED`] signals this process gets on to a container
/// process once its pid is known; those that come earlier wait for it.
struct Forwarder {
    target: std::sync::Arc<std::sync::Mutex<(i32, Vec<i32>)>>,
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
}

impl Forwarder {
    fn start() -> Result<Forwarder, RunError> {
        let mut signals = signal_hook::iterator::Signals::new(FORWARDED)?;
        let handle = signals.handle();
        let target: std::sync::Arc<std::sync::Mutex<(i32, Vec<i32>)>> = Default::default();
        let forward_to = target.clone();
        let thread = std::thread::spawn(move || {
            for sig in signals.forever() {
                let mut t = forward_to.lock().unwrap_or_else(|e| e.into_inner());
                if t.0 == 0 {
                    t.1.push(sig);
                } else {
                    send_signal(t.0, sig);
                }
            }
        });
        Ok(Forwarder {
            target,
            handle,
            thread,
        })
    }

    /// Signals go to `pid` from now on, starting with those held.
    fn target(&self, pid: i32) {
        let mut t = self.target.lock().unwrap_or_else(|e| e.into_inner());
        t.0 = pid;
        for sig in std::mem::take(&mut t.1) {
            send_signal(pid, sig);
        }
    }

    fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

/// A process to start in a running Linux container (`wharf exec`).
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// The program and its arguments (the program is looked up in the
    /// container's `PATH`).
    pub argv: Vec<String>,
    /// `KEY=VALUE` pairs over the container's environment.
    pub env: Vec<String>,
    /// Working directory (absolute; default: the container's).
    pub workdir: Option<String>,
    /// `USER[:GROUP]` (names resolve against the image's `/etc/passwd`);
    /// default: the container's user.
    pub user: Option<String>,
    /// Pass this process's standard input (else /dev/null).
    pub stdin: bool,
    /// Where standard output goes (default: inherited).
    pub stdout: Option<std::fs::File>,
    /// Where standard error goes (default: inherited).
    pub stderr: Option<std::fs::File>,
    /// `-t`: the process gets a terminal of its own (`TERM=xterm` unless
    /// set), whose master side this is given once the process starts.
    pub terminal: Option<OnTerminal>,
    /// `-d`: return once the process has started, leaving it to run on
    /// its own (its output, unless given, goes to /dev/null; its exit code
    /// is nobody's). Not with `stdin` or `terminal`.
    pub detach: bool,
}

/// Starts a process in the running Linux container `id` (12 hex digits),
/// in all its namespaces and its cgroup, with its
/// capabilities, `no_new_privs` and seccomp profile, and waits for it.
/// Returns its exit code (128 + the signal number when a signal ended
/// it). Signals this process gets are passed on to it, as for [`run`].
/// With `detach`, returns 0 once it has started.
pub fn exec(store: &Store, id: &str, mut options: ExecOptions) -> Result<i32, RunError> {
    require_root()?;
    if options.detach {
        if options.stdin || options.terminal.is_some() {
            return Err(RunError::Unsupported(
                "a detached exec takes no input and no terminal".into(),
            ));
        }
        if options.stdout.is_none() {
            options.stdout = Some(null(true)?.into());
        }
        if options.stderr.is_none() {
            options.stderr = Some(null(true)?.into());
        }
    }
    let program = options
        .argv
        .first()
        .cloned()
        .ok_or_else(|| RunError::Unsupported("exec needs a command".into()))?;
    if let Some(w) = options.workdir.as_deref().filter(|w| !w.starts_with('/')) {
        return Err(RunError::Unsupported(format!(
            "the working directory {w:?} is not an absolute path"
        )));
    }
    let dir = overlays_dir(store).join(id);
    let init = running_init(&dir)
        .ok_or_else(|| RunError::Unsupported(format!("container {id} is not running")))?;
    // The container's own process settings (user, capabilities,
    // no_new_privs, ...) with this command, environment and directory,
    // as runc exec derives its process.json.
    let mut spec = Spec::load(dir.join("config.json")).map_err(spec_error)?;
    let rootfs = dir.join("rootfs");
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| RunError::Unsupported(format!("container {id} has no process")))?;
    let workdir = options
        .workdir
        .clone()
        .unwrap_or_else(|| process.cwd().to_string_lossy().into_owned());
    // Checked in the container's own filesystem, without following
    // anything out of it.
    let is_dir = Dir::open_ambient_dir(&rootfs, cap_std::ambient_authority())
        .and_then(|root| match workdir.trim_start_matches('/') {
            "" => root.dir_metadata(),
            rel => root.metadata(rel),
        })
        .is_ok_and(|m| m.is_dir());
    if !is_dir {
        return Err(RunError::CannotExecute {
            program,
            reason: format!("the working directory {workdir} is not a directory in the container"),
        });
    }
    if let Some(u) = options.user.as_deref() {
        // In the container's files as they are now, as runc does: users
        // added since start resolve too. Its processes control them, so
        // they are read as for an untrusted image (regular files only,
        // bounded, nothing followed out of the rootfs).
        process.set_user(spec_user(&rootfs, u)?);
    }
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for kv in &options.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    if options.terminal.is_some() && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_owned());
    }
    process.set_env(Some(env));
    process.set_args(Some(options.argv));
    process.set_cwd(PathBuf::from(&workdir));
    process.set_terminal(Some(options.terminal.is_some()));
    spec.set_process(Some(process));

    let stdio = super::oci::Stdio {
        stdin: if options.stdin {
            None
        } else {
            Some(null(false)?)
        },
        stdout: options.stdout.map(Into::into),
        stderr: options.stderr.map(Into::into),
    };
    let cgroup = Cgroup::of(id);
    if cgroup.is_frozen() {
        // A process joining a frozen cgroup freezes before its exec, and
        // the start would wait for ever: refused, as Docker does.
        return Err(RunError::Unsupported(format!(
            "container {id} is paused: unpause it first"
        )));
    }
    let forwarder = Forwarder::start()?;
    let result = (|| {
        let place = super::oci::Place::Enter {
            init: std::os::fd::AsFd::as_fd(&init),
        };
        let mut started = super::oci::start(&spec, place, &cgroup, stdio).map_err(|e| match e {
            RunError::Unsupported(m) => {
                RunError::Unsupported(format!("exec in container {id}: {m}"))
            }
            other => other,
        })?;
        if options.detach {
            // Started: it runs on without us, in the container's pid
            // namespace and cgroup (so it ends with the container); once
            // this process is gone, the host's reaper collects it.
            return Ok(0);
        }
        forwarder.target(started.child.id() as i32);
        if let (Some(master), Some(on_terminal)) = (started.terminal.take(), &options.terminal) {
            (on_terminal.0)(master);
        }
        wait_for(&mut started.child)
    })();
    forwarder.stop();
    result
}

/// A pidfd of the init of the container whose directory is `dir`, when
/// it runs (the `init` file names it by pid and start time).
fn running_init(dir: &Path) -> Option<std::os::fd::OwnedFd> {
    let text = std::fs::read_to_string(dir.join("init")).ok()?;
    let mut words = text.split_whitespace();
    let pid: i32 = words.next()?.parse().ok()?;
    let started: u64 = words.next()?.parse().ok()?;
    super::oci::pidfd(pid, started)
}

fn send_signal(pid: i32, sig: i32) {
    if let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pid),
        rustix::process::Signal::from_named_raw(sig),
    ) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// `/dev/null`, for writing or for reading.
pub(crate) fn null(write: bool) -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")?
        .into())
}

/// Waits for `child`; its exit code, or 128 + the signal that ended it.
fn wait_for(child: &mut super::oci::Child) -> Result<i32, RunError> {
    use std::os::unix::process::ExitStatusExt as _;
    let status = child.wait()?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128))
}

/// Cleans up after `wharf run`s that died without cleaning up (killed
/// with SIGKILL, or the machine lost power): for each container
/// directory whose owner process is gone, the container (if still
/// running) is killed and deleted with its cgroup and state, its rootfs
/// unmounted and the directory removed. A directory without an owner
/// file is left alone for a minute, in case its run is just starting.
fn sweep_orphans(store: &Store) {
    let Ok(entries) = std::fs::read_dir(overlays_dir(store)) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = std::fs::read_to_string(dir.join("owner"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let orphan = match owner {
            Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(60)),
        };
        if !orphan {
            continue;
        }
        tracing::info!(container = %entry.file_name().to_string_lossy(), "cleaning up after a run that died");
        let id = entry.file_name().to_string_lossy().into_owned();
        // The init (its pid namespace goes with it) and every process
        // left in the container's cgroup.
        if let Some(init) = running_init(&dir) {
            let _ = rustix::process::pidfd_send_signal(&init, rustix::process::Signal::KILL);
        }
        signal_cgroup(&id, signal_hook::consts::SIGKILL);
        // Waits (and kills again) until the killed processes are gone.
        Cgroup::of(&id).remove();
        let _ = rustix::mount::unmount(dir.join("rootfs"), rustix::mount::UnmountFlags::DETACH);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// One layer of an image unpacked on its own (overlayfs whiteouts), shared
/// by every image that has the layer. While it lives, its directory is
/// locked shared, so garbage collection leaves it.
struct LayerSnapshot {
    dir: PathBuf,
    _in_use: crate::store::StoreLock,
}

impl LayerSnapshot {
    fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

/// The image's layers, bottom first, each unpacked once into
/// `wharf/layers/<blob hex>/fs` (checked against the config's diff_ids).
/// Call it with the store's shared lock held.
fn ensure_layers(store: &Store, image: &Image) -> Result<Vec<LayerSnapshot>, RunError> {
    let diff_ids = image.config.rootfs().diff_ids();
    let checked = diff_ids.len() == image.fs_layers.len();
    let mut out = Vec::new();
    for (i, layer) in image.fs_layers.iter().enumerate() {
        let digest = crate::image::descriptor_digest(layer)?;
        let dir = store.layer_dir(&digest);
        if !dir.join("complete").exists() {
            let tmp = store.temp_dir("layer-")?;
            let fs = tmp.path().join("fs");
            fs_err::create_dir(&fs)?;
            let diff_id = diff_ids
                .get(i)
                .filter(|_| checked)
                .and_then(|d| d.parse::<Digest>().ok());
            crate::layer::unpack_layer_as(
                store,
                layer,
                diff_id.as_ref(),
                &fs,
                crate::layer::Whiteouts::Overlay,
            )?;
            super::publish_complete(tmp, &dir)?;
        }
        out.push(LayerSnapshot {
            _in_use: crate::store::StoreLock::shared_dir(&dir)?,
            dir,
        });
    }
    Ok(out)
}

/// Where containers' overlay roots live: `wharf/overlays/<id>/`.
fn overlays_dir(store: &Store) -> PathBuf {
    store.root().join("wharf/overlays")
}

/// Freezes (or thaws) every process of the running container `id` (12
/// hex digits) through its cgroup's freezer, as `runc pause` and `runc
/// resume` do.
pub fn freeze(store: &Store, id: &str, frozen: bool) -> Result<(), RunError> {
    if running_init(&overlays_dir(store).join(id)).is_none() {
        return Err(RunError::Unsupported(format!(
            "container {id} is not running"
        )));
    }
    Cgroup::of(id).freeze(frozen).map_err(|e| {
        RunError::Unsupported(format!(
            "container {id}: cannot {}: {e}",
            if frozen { "pause" } else { "unpause" }
        ))
    })
}

/// Sends `signal` to every process in the cgroup of container `id` (its
/// v1 controllers and v2), as `kill` does to a Linux container. Returns
/// how many processes were signalled.
pub fn signal_cgroup(id: &str, signal: i32) -> usize {
    let pids = cgroup_pids(id);
    for pid in &pids {
        send_signal(*pid as i32, signal);
    }
    pids.len()
}

/// The processes in the cgroup of container `id` (12 hex digits): those
/// of its v1 controllers and of v2, host pids.
pub fn cgroup_pids(id: &str) -> BTreeSet<u32> {
    Cgroup::of(id).pids()
}

/// A fresh container id: 12 hex digits.
fn container_id() -> String {
    let seed = format!(
        "{}-{:?}-{:?}",
        std::process::id(),
        std::time::SystemTime::now(),
        std::thread::current().id()
    );
    Digest::of(seed.as_bytes()).hex()[..12].to_owned()
}

/// A container's directory: `upper/` and `work/` for overlayfs (unless a
/// kept writable layer elsewhere has them), and `rootfs/`, the overlay of
/// its upper layer over the image's layers. Dropping it unmounts the
/// rootfs and removes the directory (never the kept layer).
struct ContainerDir {
    dir: PathBuf,
    rootfs: PathBuf,
}

impl ContainerDir {
    /// `lowers` bottom first (an image's layer order); the writable layer
    /// in `rw` when given, else in `dir`.
    fn create(dir: &Path, lowers: &[PathBuf], rw: Option<&Path>) -> Result<ContainerDir, RunError> {
        let rw = rw.unwrap_or(dir);
        for path in [dir, rw] {
            let s = path.to_string_lossy();
            if s.contains([',', ':']) {
                return Err(RunError::Unsupported(format!(
                    "path {s} contains ',' or ':', which overlayfs options cannot carry"
                )));
            }
        }
        std::fs::create_dir_all(dir)?;
        // Who runs it: a directory whose owner is gone is an orphan
        // (`sweep_orphans`).
        std::fs::write(dir.join("owner"), std::process::id().to_string())?;
        std::fs::create_dir_all(rw.join("upper"))?;
        std::fs::create_dir_all(rw.join("work"))?;
        std::fs::create_dir_all(dir.join("rootfs"))?;
        let c = ContainerDir {
            dir: dir.to_owned(),
            rootfs: dir.join("rootfs"),
        };
        // Each lower directory by a descriptor of this process, so that
        // the options stay short (they must fit in a page) however many
        // layers and however long the store's path; top layer first.
        let mut lowers: Vec<PathBuf> = lowers.to_vec();
        if lowers.is_empty() {
            std::fs::create_dir_all(dir.join("empty"))?;
            lowers.push(dir.join("empty"));
        }
        let fds = lowers
            .iter()
            .rev()
            .map(|p| {
                rustix::fs::open(
                    p,
                    rustix::fs::OFlags::PATH
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(std::io::Error::from)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lowerdir = fds
            .iter()
            .map(|fd| format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))
            .collect::<Vec<_>>()
            .join(":");
        let data = std::ffi::CString::new(format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            rw.join("upper").display(),
            rw.join("work").display()
        ))
        .map_err(|_| RunError::Unsupported("overlay options contain a NUL byte".into()))?;
        rustix::mount::mount(
            "overlay",
            &c.rootfs,
            "overlay",
            rustix::mount::MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(|e| {
            RunError::Unsupported(format!(
                "overlay mount for {}: {e} (wharf needs overlayfs for Linux containers)",
                c.rootfs.display()
            ))
        })?;
        Ok(c)
    }
}

impl Drop for ContainerDir {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.rootfs, rustix::mount::UnmountFlags::DETACH);
        // remove_dir_all does not follow symlinks the container left.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spec_error(e: oci_spec::OciSpecError) -> RunError {
    RunError::Unsupported(format!("runtime spec: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: Option<&[&str]>, entrypoint: Option<&str>) -> RunOptions {
        RunOptions {
            args: args.map(|a| a.iter().map(|s| s.to_string()).collect()),
            entrypoint: entrypoint.map(str::to_owned),
            ..RunOptions::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let ep = vec!["/bin/app".to_owned()];
        let cmd = vec!["--serve".to_owned()];
        let run = |o: RunOptions, ep: &[String], cmd: &[String]| process_args(ep, cmd, &o);
        assert_eq!(
            run(opts(None, None), &ep, &cmd).unwrap(),
            ["/bin/app", "--serve"]
        );
        assert_eq!(
            run(opts(Some(&["x"]), None), &ep, &cmd).unwrap(),
            ["/bin/app", "x"]
        );
        assert_eq!(
            run(opts(None, Some("/bin/sh")), &ep, &cmd).unwrap(),
            ["/bin/sh"]
        );
        assert_eq!(run(opts(None, None), &[], &cmd).unwrap(), ["--serve"]);
        assert_eq!(run(opts(None, Some("")), &ep, &cmd), None);
        assert_eq!(run(opts(None, None), &[], &[]), None);
    }

    #[test]
    fn users_resolve_from_the_image_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:app,root\n",
        )
        .unwrap();
        assert_eq!(resolve_user(root.path(), "").unwrap(), (0, 0, vec![]));
        assert_eq!(
            resolve_user(root.path(), "app").unwrap(),
            (1000, 1001, vec![10])
        );
        assert_eq!(
            resolve_user(root.path(), "1000:0").unwrap(),
            (1000, 0, vec![10])
        );
        assert_eq!(
            resolve_user(root.path(), "4242").unwrap(),
            (4242, 0, vec![])
        );
        assert_eq!(resolve_user(root.path(), "app:wheel").unwrap().1, 10);
        assert!(resolve_user(root.path(), "nobody").is_err());
        assert!(resolve_user(root.path(), "app:nogroup").is_err());

        // /etc/passwd planted as a symlink to a host file is not followed.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:7:7::/:/bin/sh\n").unwrap();
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        assert!(resolve_user(root.path(), "evil").is_err());
    }
}
