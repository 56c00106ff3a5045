//! The cgroup of a Linux container: `wharf/<id>` under every cgroup v1
//! controller hierarchy (the v1 and hybrid layouts), or under the v2 tree
//! when it is the only one (spec/linux-backend.md, "Cgroups").
//!
//! wharf's executor ([`super::oci`]) creates the cgroup and writes the
//! limits from the parent; the container's first process then moves
//! itself in (see [`Cgroup::join_files`]) before anything of the image
//! runs.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::RunError;

const ROOT: &str = "/sys/fs/cgroup";

/// cgroup v1 controllers wharf puts a container under.
const CONTROLLERS: [&str; 14] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Devices a container may use (Docker's default rules): creating any
/// node, and reading and writing the null, zero, full, random, urandom,
/// tty, console, pty and tun devices. Everything else (the host's disks)
/// is denied even with `CAP_MKNOD`.
pub(crate) const ALLOWED_DEVICES: [&str; 12] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// One mounted cgroup v1 hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct Hierarchy {
    /// Where the host mounts it (`/sys/fs/cgroup/memory`).
    pub mount: PathBuf,
    /// Its controllers, comma-separated as mount options (`cpu,cpuacct`).
    pub controllers: String,
}

/// The host's cgroup layout.
#[derive(Debug, Clone)]
pub(crate) enum Layout {
    /// cgroup v1 (alone, or hybrid beside an empty v2 mount).
    V1(Vec<Hierarchy>),
    /// The unified v2 tree only.
    V2,
}

impl Layout {
    /// The host's layout, read from this process's mount table once.
    pub(crate) fn host() -> &'static Layout {
        static LAYOUT: std::sync::OnceLock<Layout> = std::sync::OnceLock::new();
        LAYOUT.get_or_init(Layout::detect)
    }

    /// Reads the layout from this process's mount table.
    fn detect() -> Layout {
        if Path::new(ROOT).join("cgroup.controllers").exists() {
            return Layout::V2;
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 4 || fields[2] != "cgroup" {
                continue;
            }
            let controllers: Vec<&str> = fields[3]
                .split(',')
                .filter(|o| CONTROLLERS.contains(o))
                .collect();
            let mount = PathBuf::from(fields[1]);
            if controllers.is_empty() || hierarchies.iter().any(|h| h.mount == mount) {
                continue;
            }
            hierarchies.push(Hierarchy {
                mount,
                controllers: controllers.join(","),
            });
        }
        Layout::V1(hierarchies)
    }
}

/// The cgroup of container `id` in every hierarchy of the layout.
#[derive(Debug)]
pub(crate) struct Cgroup {
    layout: &'static Layout,
    dirs: Vec<PathBuf>,
}

fn cgroup_error(what: &Path, e: std::io::Error) -> RunError {
    RunError::Unsupported(format!("cgroup {}: {e}", what.display()))
}

fn write(path: &Path, value: &str) -> Result<(), RunError> {
    std::fs::write(path, value).map_err(|e| cgroup_error(path, e))
}

fn mkdir(path: &Path) -> Result<(), RunError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(cgroup_error(path, e)),
    }
}

/// A v1 cpuset cgroup starts with no CPUs and no memory nodes, and no
/// process may join it so: `dir` gets its parent's.
fn inherit_cpuset(dir: &Path) -> Result<(), RunError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if own.trim().is_empty() {
            let theirs = std::fs::read_to_string(parent.join(file))
                .map_err(|e| cgroup_error(&parent.join(file), e))?;
            write(&dir.join(file), theirs.trim())?;
        }
    }
    Ok(())
}

impl Cgroup {
    /// The cgroup of container `id` (12 hex digits), which may not exist.
    pub(crate) fn of(id: &str) -> Cgroup {
        let layout = Layout::host();
        let dirs = match &layout {
            Layout::V2 => vec![Path::new(ROOT).join("wharf").join(id)],
            Layout::V1(hs) => hs.iter().map(|h| h.mount.join("wharf").join(id)).collect(),
        };
        Cgroup { layout, dirs }
    }

    /// Creates the cgroup of container `id` with `resources` (memory and
    /// swap, CPU quota, pids) and, on v1, Docker's device rules.
    pub(crate) fn create(id: &str, resources: Option<&LinuxResources>) -> Result<Cgroup, RunError> {
        let cg = Cgroup::of(id);
        // A limit asked for must hold: refused when its controller is
        // missing, before anything is made.
        if let Some(r) = resources {
            for (asked, controller, flag) in [
                (
                    r.memory().as_ref().and_then(|m| m.limit()).is_some(),
                    "memory",
                    "--memory",
                ),
                (
                    r.cpu().as_ref().and_then(|c| c.quota()).is_some(),
                    "cpu",
                    "--cpus",
                ),
                (
                    r.pids().as_ref().is_some_and(|p| p.limit() > 0),
                    "pids",
                    "--pids-limit",
                ),
            ] {
                if asked && !cg.has(controller) {
                    return Err(RunError::Unsupported(format!(
                        "{flag} needs the {controller} cgroup controller, which this host does not have"
                    )));
                }
            }
        }
        let made = (|| {
            match &cg.layout {
                Layout::V2 => cg.create_v2(resources)?,
                Layout::V1(hs) => {
                    for (h, dir) in hs.iter().zip(&cg.dirs) {
                        let parent = dir.parent().unwrap_or(dir);
                        mkdir(parent)?;
                        let cpuset = h.controllers.split(',').any(|c| c == "cpuset");
                        if cpuset {
                            inherit_cpuset(parent)?;
                        }
                        mkdir(dir)?;
                        if cpuset {
                            inherit_cpuset(dir)?;
                        }
                        cg.limit_v1(&h.controllers, dir, resources)?;
                    }
                }
            }
            Ok(())
        })();
        match made {
            Ok(()) => Ok(cg),
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }

    fn limit_v1(
        &self,
        controllers: &str,
        dir: &Path,
        resources: Option<&LinuxResources>,
    ) -> Result<(), RunError> {
        for controller in controllers.split(',') {
            match controller {
                "devices" => {
                    write(&dir.join("devices.deny"), "a")?;
                    // One rule per write, through one open file.
                    let allow = dir.join("devices.allow");
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&allow)
                        .map_err(|e| cgroup_error(&allow, e))?;
                    for rule in ALLOWED_DEVICES {
                        std::io::Write::write_all(&mut f, rule.as_bytes())
                            .map_err(|e| cgroup_error(&allow, e))?;
                    }
                }
                "memory" => {
                    if let Some(m) = resources.and_then(|r| r.memory().as_ref()) {
                        if let Some(limit) = m.limit() {
                            write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                        }
                        // Memory plus swap; absent when the kernel does
                        // not account swap.
                        let memsw = dir.join("memory.memsw.limit_in_bytes");
                        if let (Some(swap), true) = (m.swap(), memsw.exists()) {
                            write(&memsw, &swap.to_string())?;
                        }
                    }
                }
                "cpu" => {
                    if let Some(c) = resources.and_then(|r| r.cpu().as_ref()) {
                        if let Some(period) = c.period() {
                            write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                        }
                        if let Some(quota) = c.quota() {
                            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                        }
                    }
                }
                "pids" => {
                    if let Some(p) = resources.and_then(|r| r.pids().as_ref()) {
                        let max = match p.limit() {
                            n if n > 0 => n.to_string(),
                            _ => "max".to_owned(),
                        };
                        write(&dir.join("pids.max"), &max)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn create_v2(&self, resources: Option<&LinuxResources>) -> Result<(), RunError> {
        let dir = &self.dirs[0];
        let parent = dir.parent().unwrap_or(dir);
        // Controllers are handed down from the root to wharf/ and from
        // there to the container's group.
        let wanted = ["cpu", "memory", "pids"];
        for d in [Path::new(ROOT), parent] {
            if d != Path::new(ROOT) {
                mkdir(d)?;
            }
            let available =
                std::fs::read_to_string(d.join("cgroup.controllers")).unwrap_or_default();
            let enable: Vec<String> = wanted
                .iter()
                .filter(|c| available.split_whitespace().any(|a| a == **c))
                .map(|c| format!("+{c}"))
                .collect();
            if !enable.is_empty() {
                write(&d.join("cgroup.subtree_control"), &enable.join(" "))?;
            }
        }
        mkdir(dir)?;
        if let Some(m) = resources.and_then(|r| r.memory().as_ref()) {
            if let Some(limit) = m.limit() {
                write(&dir.join("memory.max"), &limit.to_string())?;
                // v2 counts swap apart: memory plus swap at `swap` means
                // this much swap.
                let swap = m.swap().map(|s| (s - limit).max(0)).unwrap_or(0);
                let swap_max = dir.join("memory.swap.max");
                if swap_max.exists() {
                    write(&swap_max, &swap.to_string())?;
                }
            }
        }
        if let Some(c) = resources.and_then(|r| r.cpu().as_ref()) {
            if let (Some(quota), Some(period)) = (c.quota(), c.period()) {
                write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            }
        }
        if let Some(p) = resources.and_then(|r| r.pids().as_ref()) {
            if p.limit() > 0 {
                write(&dir.join("pids.max"), &p.limit().to_string())?;
            }
        }
        Ok(())
    }

    /// The files through which a process moves itself into this cgroup by
    /// writing `0`, opened for writing (close-on-exec): `tasks` on v1,
    /// which for the calling thread of a single-threaded process moves
    /// the process without taking the kernel's global threadgroup lock
    /// (writing a pid to `cgroup.procs` waits for an RCU grace period,
    /// some 10 ms); `cgroup.procs` on v2.
    pub(crate) fn join_files(&self) -> Result<Vec<OwnedFd>, RunError> {
        let file = match self.layout {
            Layout::V1(_) => "tasks",
            Layout::V2 => "cgroup.procs",
        };
        self.dirs
            .iter()
            .map(|d| {
                let path = d.join(file);
                rustix::fs::open(
                    &path,
                    rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| cgroup_error(&path, e.into()))
            })
            .collect()
    }

    /// The v1 hierarchies (their host mount points and controllers), for
    /// the container's read-only `/sys/fs/cgroup`; none on v2.
    pub(crate) fn hierarchies(&self) -> &[Hierarchy] {
        match &self.layout {
            Layout::V1(hs) => hs,
            Layout::V2 => &[],
        }
    }

    /// Whether the host has the v2 layout.
    pub(crate) fn is_v2(&self) -> bool {
        matches!(self.layout, Layout::V2)
    }

    /// Whether `controller` can confine the container (a v1 hierarchy
    /// has it, or the v2 tree offers it).
    fn has(&self, controller: &str) -> bool {
        match &self.layout {
            Layout::V1(hs) => hs
                .iter()
                .any(|h| h.controllers.split(',').any(|c| c == controller)),
            Layout::V2 => std::fs::read_to_string(Path::new(ROOT).join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == controller)),
        }
    }

    /// Whether the v1 devices controller keeps the container from the
    /// host's devices (v2 would need a BPF program, which wharf does not
    /// load): without it the container loses `CAP_MKNOD`.
    pub(crate) fn confines_devices(&self) -> bool {
        matches!(&self.layout, Layout::V1(_)) && self.has("devices")
    }

    /// The host pids of the processes in this cgroup.
    pub(crate) fn pids(&self) -> BTreeSet<u32> {
        let mut pids = BTreeSet::new();
        for dir in &self.dirs {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids
    }

    /// Freezes (or thaws) every process of the cgroup and waits until the
    /// kernel says it is done, as `runc pause` and `runc resume` do.
    pub(crate) fn freeze(&self, frozen: bool) -> Result<(), RunError> {
        let (file, value, done) = match self.layout {
            Layout::V2 => ("cgroup.freeze", if frozen { "1" } else { "0" }, None),
            Layout::V1(_) => (
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
                Some(if frozen { "FROZEN" } else { "THAWED" }),
            ),
        };
        let dir = match self.layout {
            Layout::V2 => self.dirs[0].clone(),
            Layout::V1(ref hs) => {
                let i = hs
                    .iter()
                    .position(|h| h.controllers.split(',').any(|c| c == "freezer"))
                    .ok_or_else(|| {
                        RunError::Unsupported("no freezer cgroup on this host".into())
                    })?;
                self.dirs[i].clone()
            }
        };
        write(&dir.join(file), value)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let state = match done {
                Some(_) => std::fs::read_to_string(dir.join(file)).unwrap_or_default(),
                None => std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default(),
            };
            let reached = match done {
                Some(want) => state.trim() == want,
                None => state.lines().any(|l| l == format!("frozen {value}")),
            };
            if reached {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(RunError::Unsupported(format!(
                    "cgroup {}: still not {value} after 10 s",
                    dir.display()
                )));
            }
            if done.is_some() {
                // v1 moves on from FREEZING when written again.
                let _ = std::fs::write(dir.join(file), value);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Whether the cgroup's processes are frozen (`pause`).
    pub(crate) fn is_frozen(&self) -> bool {
        match &self.layout {
            Layout::V2 => std::fs::read_to_string(self.dirs[0].join("cgroup.events"))
                .is_ok_and(|e| e.lines().any(|l| l == "frozen 1")),
            Layout::V1(hs) => hs
                .iter()
                .zip(&self.dirs)
                .find(|(h, _)| h.controllers.split(',').any(|c| c == "freezer"))
                .and_then(|(_, d)| std::fs::read_to_string(d.join("freezer.state")).ok())
                .is_some_and(|s| s.trim() != "THAWED"),
        }
    }

    /// Removes the cgroup's directories (in every hierarchy). A group
    /// whose last processes are still being reaped is retried; after
    /// half a second whatever is left in it is killed, and after two
    /// seconds it is left (and logged).
    pub(crate) fn remove(&self) {
        for dir in &self.dirs {
            let start = std::time::Instant::now();
            let mut killed = false;
            loop {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        let waited = start.elapsed();
                        if waited > std::time::Duration::from_secs(2) {
                            tracing::warn!(cgroup = %dir.display(), "cgroup still busy; left in place");
                            break;
                        }
                        if !killed && waited > std::time::Duration::from_millis(500) {
                            killed = true;
                            let pids = self.pids().into_iter();
                            for pid in pids.filter_map(|p| rustix::process::Pid::from_raw(p as i32))
                            {
                                let _ = rustix::process::kill_process(
                                    pid,
                                    rustix::process::Signal::KILL,
                                );
                            }
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_layout_is_read_from_its_mounts() {
        match Layout::detect() {
            Layout::V2 => assert!(Path::new(ROOT).join("cgroup.controllers").exists()),
            Layout::V1(hs) => {
                for h in hs {
                    assert!(h.mount.starts_with(ROOT), "{h:?}");
                    assert!(
                        h.controllers.split(',').all(|c| CONTROLLERS.contains(&c)),
                        "{h:?}"
                    );
                }
            }
        }
    }
}
