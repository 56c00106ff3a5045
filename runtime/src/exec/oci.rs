//! wharf's OCI runtime: starts the process of a runtime spec in a new
//! container (its namespaces, its cgroup, its root filesystem, Docker's
//! masked paths, capabilities, `no_new_privs` and seccomp profile), or in
//! the namespaces of a running one (`exec`). Decision 0011 says why wharf
//! does this itself instead of through libcontainer, runc or crun, and
//! spec/linux-backend.md ("The executor") lists every step and the
//! attack each guards against.
//!
//! The container's first process is a `fork` of the caller that prepares
//! itself and then execs the image's program: no intermediate process and
//! no second wharf executable. Everything it needs is worked out before
//! the fork ([`Plan`]), so the forked child only makes system calls: it
//! allocates nothing, as a child of a multi-threaded process must not.
//! In the child, in order:
//!
//! 1. stdio in place, signal dispositions back to the defaults, then
//!    signals unblocked; non-dumpable (no container process may open its
//!    `/proc/PID/exe`, the host's wharf binary); every descriptor but
//!    stdio and a few non-directories closed, so no path the image
//!    controls can reach the host through `/proc/self/fd` (CVE-2024-21626);
//! 2. into the container's cgroup (`0` into `tasks`, which skips the
//!    kernel's global lock that a parent writing the child's pid waits
//!    on for about 10 ms; see [`super::cgroups`]);
//! 3. new container: the mount, UTS, IPC, network and cgroup namespaces
//!    unshared (the pid namespace comes from the forking thread), every
//!    mount private, the bind mounts' sources cloned, a pivot into the
//!    rootfs and the old root detached; only then `/proc`, `/dev`, `/sys`
//!    and the rest, each at a path with no link in it; device nodes,
//!    masked and read-only paths, the host name and the loopback
//!    interface. `exec`: the init's namespaces entered through a pidfd;
//! 4. a new session; a terminal made in the container's own devpts;
//! 5. the bounding set, user and groups, working directory (resolved in
//!    the root, no magic links), `no_new_privs`, capabilities, seccomp;
//! 6. the program looked up in the container's `PATH`, and exec'd
//!    through the trampoline (`trampoline.S`) from a sealed memfd, so that
//!    `/proc/self/exe` never names wharf's executable (CVE-2019-5736).
//!
//! A failure stops the child before it runs anything of the image: it
//! writes the step it was at and the errno to the error pipe, and the
//! parent names the step in its error.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::cgroups::Cgroup;
use super::RunError;

/// Where a process starts.
pub(crate) enum Place<'a> {
    /// A new container whose root filesystem is `rootfs` (a mount point
    /// unless `bind_rootfs`, which bind-mounts the directory first).
    New {
        /// The container's root filesystem.
        rootfs: &'a Path,
        /// `rootfs` is a plain directory, not a mount.
        bind_rootfs: bool,
    },
    /// The namespaces of a running container, through its init's pidfd.
    Enter {
        /// A pidfd of the container's init.
        init: BorrowedFd<'a>,
    },
}

/// A started process.
pub(crate) struct Started {
    /// The process (a child of the caller).
    pub child: Child,
    /// The master side of its terminal, when the spec asks for one.
    pub terminal: Option<OwnedFd>,
}

/// A container process this process forked.
pub(crate) struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Its host pid.
    pub(crate) fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for it to end.
    pub(crate) fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt as _;
        loop {
            let mut status = 0;
            // SAFETY: waits for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                self.reaped = true;
                return Ok(std::process::ExitStatus::from_raw(status));
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }

    /// Sends it SIGKILL (unless it has been reaped).
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        // SAFETY: a signal to our own unreaped child.
        check(unsafe { libc::kill(self.pid, libc::SIGKILL) }).map(drop)
    }
}

/// The standard streams of the process: each the given descriptor, or
/// this process's own when `None`.
#[derive(Default)]
pub(crate) struct Stdio {
    /// Standard input.
    pub stdin: Option<OwnedFd>,
    /// Standard output.
    pub stdout: Option<OwnedFd>,
    /// Standard error.
    pub stderr: Option<OwnedFd>,
}

/// The exec trampoline (src/exec/trampoline.S, built by build.rs); empty
/// where there is none, and the program is exec'd directly.
const TRAMPOLINE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/trampoline"));

/// The trampoline's `argv[0]`: run with anything else, it exits.
const TRAMPOLINE_MARK: &std::ffi::CStr = c"WHARF-T";

/// Starts `spec`'s process at `place`, in `cgroup`. Returns once it has
/// exec'd the program.
pub(crate) fn start(
    spec: &Spec,
    place: Place<'_>,
    cgroup: &Cgroup,
    stdio: Stdio,
) -> Result<Started, RunError> {
    let (plan, parent_end, errors) = Plan::new(spec, &place, cgroup, stdio)?;
    let program = plan.program.to_string_lossy().into_owned();
    let names = plan.names.clone();
    let pid_ns = match place {
        Place::New { .. } => None,
        Place::Enter { init } => Some(init.as_raw_fd()),
    };
    // The plan (and with it this process's copy of the pipe's write end)
    // is gone once the fork returns.
    let pid = fork_in_pid_ns(plan, pid_ns)?;
    let mut child = Child { pid, reaped: false };
    // The child writes (step, errno) when it fails; end of file means
    // its program runs.
    let mut record = [0u8; 8];
    let mut got = 0;
    while got < record.len() {
        match rustix::io::read(&errors, &mut record[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::from(e).into());
            }
        }
    }
    if got > 0 {
        let _ = child.wait();
        let step = u32::from_ne_bytes([record[0], record[1], record[2], record[3]]) as usize;
        let errno = i32::from_ne_bytes([record[4], record[5], record[6], record[7]]);
        let what = names.get(step).map(String::as_str).unwrap_or("start");
        return Err(start_error(
            &program,
            what,
            step == EXEC_STEP,
            io::Error::from_raw_os_error(errno),
        ));
    }
    let terminal = match parent_end {
        Some(socket) => match super::tty::receive_fd(&socket) {
            Ok(master) => Some(master),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Unsupported(format!("terminal: {e}")));
            }
        },
        None => None,
    };
    Ok(Started { child, terminal })
}

/// The error for a failed start: Docker's 127 when the program is not
/// found, 126 when it cannot be run, else the failing step.
fn start_error(program: &str, step: &str, exec: bool, e: io::Error) -> RunError {
    match (exec, e.raw_os_error()) {
        (true, Some(libc::ENOENT | libc::ENOTDIR)) => RunError::CommandNotFound(program.to_owned()),
        (true, Some(libc::EACCES | libc::EPERM)) => RunError::CannotExecute {
            program: program.to_owned(),
            reason: "permission denied".into(),
        },
        (true, _) => RunError::CannotExecute {
            program: program.to_owned(),
            reason: e.to_string(),
        },
        (false, _) => RunError::Unsupported(format!("container setup: {step}: {e}")),
    }
}

/// Forks the child that carries out `plan`, from a thread of its own
/// that first makes (or, with `enter`, joins through that pidfd) the pid
/// namespace its children go to, so that the child is the namespace's
/// init (or a member) without an intermediate process. The calling
/// thread's namespaces stay as they were. Returns the child's pid.
fn fork_in_pid_ns(mut plan: Plan, enter: Option<RawFd>) -> Result<libc::pid_t, RunError> {
    let forked = std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: system calls on this thread's own state; the child
            // of the fork only runs `Plan::child`, which allocates
            // nothing and ends in exec or _exit.
            unsafe {
                let r = match enter {
                    None => libc::unshare(libc::CLONE_NEWPID),
                    Some(fd) => libc::setns(fd, libc::CLONE_NEWPID),
                };
                if r != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The child starts with every signal blocked, until it
                // has put the dispositions back to the defaults.
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                match libc::fork() {
                    -1 => Err(io::Error::last_os_error()),
                    0 => plan.child(),
                    pid => Ok(pid),
                }
            }
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the starting thread panicked")))
    });
    forked.map_err(|e| RunError::Unsupported(format!("container setup: fork: {e}")))
}

/// Pointers to NUL-terminated strings, ending with a null pointer (argv,
/// envp), into `CString`s the plan owns.
struct Pointers(Vec<*const libc::c_char>);

// SAFETY: the pointers are into CStrings owned by the same Plan.
unsafe impl Send for Pointers {}
// SAFETY: as above.
unsafe impl Sync for Pointers {}

fn pointers(strings: &[CString]) -> Pointers {
    let mut v: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    v.push(std::ptr::null());
    Pointers(v)
}

fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, RunError> {
    CString::new(s.as_ref().to_vec())
        .map_err(|_| RunError::Unsupported(format!("{what} contains a NUL byte")))
}

// The new mount API's constants (linux/mount.h).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// At most this many bind mounts per container.
const MAX_BINDS: usize = 64;

/// One thing the child does to its mounts, after the pivot.
enum Op {
    /// Fails (`ELOOP`) when the path has a symbolic link in it; a missing
    /// part is fine (what `Mkdir` then makes cannot be a link).
    NoLinks(CString),
    /// `mkdir`, an existing entry being fine.
    Mkdir(CString),
    /// `mkdir -p`: the directories above and the path itself (the last),
    /// outermost first; tried with the path alone first.
    MkdirAll(Vec<CString>),
    /// An empty file, unless something is there.
    Touch(CString),
    /// `mount(2)`.
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Attaches the cloned tree of bind source number `tree` at `target`
    /// with these attributes (recursively).
    Attach {
        tree: usize,
        target: CString,
        attr: u64,
    },
    /// Makes the mount at `target` read-only (not the mounts under it).
    RemountReadOnly(CString),
    /// A character device node, mode 0666.
    Mknod { path: CString, dev: libc::dev_t },
    /// A symlink at `link` to `to`.
    Symlink { to: CString, link: CString },
    /// `/dev/null` over a file, an empty read-only tmpfs over a
    /// directory; nothing when the path is missing.
    Mask(CString),
    /// The path bind-mounted onto itself read-only; nothing when missing.
    ReadOnly(CString),
}

/// What the child does, worked out before the fork.
struct Plan {
    names: Vec<String>,
    /// The step the child is at (its own copy).
    at: std::cell::Cell<usize>,
    /// Standard input, output and error (`None`: this process's).
    stdio: [Option<OwnedFd>; 3],
    /// The write end of the error pipe.
    errors: OwnedFd,
    /// The sealed memfd holding [`TRAMPOLINE`], if there is one.
    trampoline: Option<OwnedFd>,
    /// The descriptors the child keeps open past step 1, ascending.
    keep: Vec<RawFd>,
    join: Vec<OwnedFd>,
    /// Namespaces to unshare (new container) or enter (through `init`).
    ns_flags: libc::c_int,
    init: Option<RawFd>,
    rootfs: Option<CString>,
    bind_rootfs: bool,
    /// Bind sources and whether recursive, cloned before the pivot.
    trees: Vec<(usize, CString, bool)>,
    ops: Vec<(usize, Op)>,
    hostname: Option<(usize, CString)>,
    loopback: Option<usize>,
    terminal: Option<OwnedFd>,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    drop_bounding: Vec<libc::c_ulong>,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: Vec<libc::c_ulong>,
    no_new_privs: bool,
    cwd: CString,
    seccomp: Vec<seccompiler::BpfProgram>,
    program: CString,
    path: CString,
    _argv: Vec<CString>,
    argv: Pointers,
    /// `[WHARF-T, PATH, argv...]` for the trampoline; PATH is filled in
    /// by the child.
    trampoline_argv: Pointers,
    _envp: Vec<CString>,
    envp: Pointers,
}

const FIXED_STEPS: [&str; 15] = [
    "close inherited descriptors",
    "join the cgroup",
    "make namespaces",
    "make mounts private",
    "bind the rootfs",
    "pivot into the rootfs",
    "enter the container's namespaces",
    "new session",
    "terminal",
    "bounding capabilities",
    "user and groups",
    "working directory",
    "no_new_privs",
    "capabilities",
    "seccomp",
];
const CLOSE_STEP: usize = 0;
const JOIN_STEP: usize = 1;
const UNSHARE_STEP: usize = 2;
const PRIVATE_STEP: usize = 3;
const BIND_ROOT_STEP: usize = 4;
const PIVOT_STEP: usize = 5;
const SETNS_STEP: usize = 6;
const SESSION_STEP: usize = 7;
const TERMINAL_STEP: usize = 8;
const BOUNDING_STEP: usize = 9;
const USER_STEP: usize = 10;
const CWD_STEP: usize = 11;
const NNP_STEP: usize = 12;
const CAPS_STEP: usize = 13;
const SECCOMP_STEP: usize = 14;
/// The last step: exec'ing the program.
const EXEC_STEP: usize = 15;
/// Exec'ing the trampoline (which then execs the program).
const TRAMPOLINE_STEP: usize = 16;

/// Linux capability numbers by name.
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability set as a bit mask.
fn cap_mask(caps: &Option<oci_spec::runtime::Capabilities>, last: usize) -> Result<u64, RunError> {
    let mut mask = 0u64;
    for cap in caps.iter().flatten() {
        let name = serde_json::to_value(cap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let n = CAPABILITIES
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| RunError::Unsupported(format!("unknown capability {name}")))?;
        if n <= last {
            mask |= 1 << n;
        }
    }
    Ok(mask)
}

/// The highest capability number this kernel knows.
fn last_cap() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Mount flags and data from OCI mount options.
struct MountOptions {
    flags: libc::c_ulong,
    data: Vec<String>,
    bind: bool,
    recursive: bool,
}

fn mount_options(options: &[String]) -> MountOptions {
    let mut m = MountOptions {
        flags: 0,
        data: Vec::new(),
        bind: false,
        recursive: false,
    };
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => {
                m.bind = true;
                (0, 0)
            }
            "rbind" => {
                m.bind = true;
                m.recursive = true;
                (0, 0)
            }
            // Bind mounts are cloned trees, private to the container.
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => (0, 0),
            other => {
                m.data.push(other.to_owned());
                (0, 0)
            }
        };
        m.flags = (m.flags | set) & !clear;
    }
    m
}

/// The directories above `path` (absolute), outermost first, and `path`.
fn prefixes(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        out.push(at.clone());
    }
    out
}

/// Whether `path` is `dir` or below it (both absolute, normalised).
fn is_under(path: &str, dir: &str) -> bool {
    path.starts_with(dir)
        && (dir == "/" || path.len() == dir.len() || path[dir.len()..].starts_with('/'))
}

/// Refuses a bind mount (asked for at `target`) at `at`: over the root,
/// `/dev` or what wharf makes in it, or at or below `/proc` or `/sys`,
/// where it would replace what the container's isolation rests on.
fn forbidden_destination(target: &str, at: &str) -> Result<(), RunError> {
    let ours = [
        "/",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/fd",
        "/dev/stdin",
        "/dev/stdout",
        "/dev/stderr",
        "/dev/ptmx",
        "/dev/core",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
    ];
    let normal = crate::build::resolve_path("/", at);
    if ours.contains(&normal.as_str())
        || ["/proc", "/sys", "/dev/pts"]
            .iter()
            .any(|d| is_under(&normal, d))
    {
        let via = if normal == target {
            String::new()
        } else {
            format!(" (through the image's links, {normal})")
        };
        return Err(RunError::Unsupported(format!(
            "mount destination {target}{via}: a volume cannot replace {normal}"
        )));
    }
    Ok(())
}

/// Resolves the absolute container path `path` in the image's files at
/// `root` as the container will see them (symlinks followed, absolute
/// ones from `root`, `..` stopping at `root`), making what is missing:
/// directories, and the last component as a directory or (`dir`
/// false) an empty file. Returns the resolved path, free of links, as
/// the container sees it. Nothing of the image runs yet, so nothing
/// changes the files between this and the mount.
fn resolve_in_root(root: &Path, path: &str, dir: bool) -> io::Result<String> {
    let mut todo: std::collections::VecDeque<String> = path.split('/').map(str::to_owned).collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let at = done
            .iter()
            .fold(root.to_path_buf(), |p, d| p.join(d))
            .join(&part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let to = std::fs::read_link(&at)?;
                let to = to.to_string_lossy();
                if to.starts_with('/') {
                    done.clear();
                }
                for (i, p) in to.split('/').enumerate() {
                    todo.insert(i, p.to_owned());
                }
            }
            Ok(m) if m.is_dir() || todo.iter().all(|p| p.is_empty() || p == ".") => done.push(part),
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let last = todo.iter().all(|p| p.is_empty() || p == ".");
                if last && !dir {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&at)?;
                } else {
                    std::fs::create_dir(&at)?;
                }
                done.push(part);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(format!("/{}", done.join("/")))
}

impl Plan {
    fn new(
        spec: &Spec,
        place: &Place<'_>,
        cgroup: &Cgroup,
        stdio: Stdio,
    ) -> Result<(Plan, Option<OwnedFd>, OwnedFd), RunError> {
        let process: &Process = spec
            .process()
            .as_ref()
            .ok_or_else(|| RunError::Unsupported("the runtime spec has no process".into()))?;
        let linux = spec.linux().clone().unwrap_or_default();
        if process.rlimits().as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(RunError::Unsupported(
                "process rlimits are not supported by wharf's executor".into(),
            ));
        }
        if linux.sysctl().as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(RunError::Unsupported(
                "sysctls are not supported by wharf's executor".into(),
            ));
        }
        let mut names: Vec<String> = FIXED_STEPS.iter().map(|s| s.to_string()).collect();
        names.push("exec".into());
        names.push("start the exec trampoline".into());
        let mut name = |s: String| {
            names.push(s);
            names.len() - 1
        };

        // Namespaces: the pid namespace comes from the forking thread.
        let mut ns_flags = 0;
        let mut new_net = false;
        for ns in linux.namespaces().iter().flatten() {
            if ns.path().is_some() {
                return Err(RunError::Unsupported(
                    "joining a namespace by path is not supported by wharf's executor".into(),
                ));
            }
            ns_flags |= match ns.typ() {
                LinuxNamespaceType::Pid => 0,
                LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Network => {
                    new_net = true;
                    libc::CLONE_NEWNET
                }
                LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
                other => {
                    return Err(RunError::Unsupported(format!(
                        "{other:?} namespaces are not supported by wharf's executor"
                    )))
                }
            };
        }
        if ns_flags & libc::CLONE_NEWNS == 0 {
            return Err(RunError::Unsupported(
                "a container needs its own mount namespace".into(),
            ));
        }

        let mut trees = Vec::new();
        let mut ops = Vec::new();
        let mut hostname = None;
        let mut loopback = None;
        let (rootfs, bind_rootfs, init) = match place {
            Place::New {
                rootfs,
                bind_rootfs,
            } => (
                Some(cstring(rootfs.as_os_str().as_bytes(), "the rootfs path")?),
                *bind_rootfs,
                None,
            ),
            Place::Enter { init } => (None, false, Some(init.as_raw_fd())),
        };
        if rootfs.is_some() {
            let root_path = match place {
                Place::New { rootfs, .. } => Some(*rootfs),
                Place::Enter { .. } => None,
            };
            let mut mounted: Vec<String> = Vec::new();
            let mut has_dev = false;
            for m in spec.mounts().iter().flatten() {
                let target = m.destination().to_string_lossy().into_owned();
                if !target.starts_with('/') || target.split('/').any(|p| p == ".." || p == ".") {
                    return Err(RunError::Unsupported(format!(
                        "mount destination {target:?} is not an absolute path inside the container"
                    )));
                }
                let options = mount_options(m.options().as_deref().unwrap_or(&[]));
                let typ = m.typ().clone().unwrap_or_default();
                let ctarget = cstring(&target, "a mount destination")?;
                let step = name(format!("mount {target}"));
                let linkless = name(format!("mount {target}: the path must have no link in it"));
                if options.bind || typ == "bind" {
                    let source = m.source().clone().ok_or_else(|| {
                        RunError::Unsupported(format!("bind mount at {target} has no source"))
                    })?;
                    let is_dir = std::fs::metadata(&source)
                        .map_err(|e| {
                            RunError::Unsupported(format!(
                                "bind mount source {}: {e}",
                                source.display()
                            ))
                        })?
                        .is_dir();
                    if trees.len() == MAX_BINDS {
                        return Err(RunError::Unsupported(format!(
                            "more than {MAX_BINDS} bind mounts"
                        )));
                    }
                    forbidden_destination(&target, &target)?;
                    let under_mount = mounted.iter().any(|m| is_under(&target, m));
                    let ctarget = match (under_mount, root_path) {
                        // Resolved now, in the image's files: links are
                        // followed as the container would see them, and
                        // what is missing is made inside the rootfs.
                        (false, Some(root)) => {
                            let at = resolve_in_root(root, &target, is_dir).map_err(|e| {
                                RunError::Unsupported(format!("mount destination {target}: {e}"))
                            })?;
                            // Where the image's links lead counts: not
                            // over /dev, /proc or /sys, nor into a mount
                            // made before (its files are not the image's).
                            forbidden_destination(&target, &at)?;
                            if let Some(m) = mounted.iter().find(|m| is_under(&at, m)) {
                                return Err(RunError::Unsupported(format!(
                                    "mount destination {target} leads to {at}, inside the mount at {m}"
                                )));
                            }
                            mounted.push(at.clone());
                            cstring(at.as_bytes(), "a mount destination")?
                        }
                        // Under a mount made before (a tmpfs, a volume),
                        // made there by the child, through no link.
                        _ => {
                            mounted.push(target.clone());
                            ops.push((linkless, Op::NoLinks(ctarget.clone())));
                            if is_dir {
                                ops.push((step, mkdir_all(&target)?));
                            } else {
                                let parent = target.rsplit_once('/').map_or("/", |(p, _)| p);
                                ops.push((step, mkdir_all(parent)?));
                                ops.push((step, Op::Touch(ctarget.clone())));
                            }
                            ctarget
                        }
                    };
                    ops.push((linkless, Op::NoLinks(ctarget.clone())));
                    let mut attr = 0;
                    for (flag, a) in [
                        (libc::MS_RDONLY, MOUNT_ATTR_RDONLY),
                        (libc::MS_NOSUID, MOUNT_ATTR_NOSUID),
                        (libc::MS_NODEV, MOUNT_ATTR_NODEV),
                        (libc::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
                    ] {
                        if options.flags & flag != 0 {
                            attr |= a;
                        }
                    }
                    let tree = trees.len();
                    trees.push((
                        name(format!("bind mount source {}", source.display())),
                        cstring(source.as_os_str().as_bytes(), "a bind mount source")?,
                        options.recursive,
                    ));
                    ops.push((
                        step,
                        Op::Attach {
                            tree,
                            target: ctarget,
                            attr,
                        },
                    ));
                    continue;
                }
                // The image's links do not decide where /proc, /dev or
                // /sys go: a destination with a link in it is refused.
                mounted.push(target.clone());
                ops.push((linkless, Op::NoLinks(ctarget.clone())));
                ops.push((step, mkdir_all(&target)?));
                if typ == "cgroup" && !cgroup.is_v2() {
                    // cgroup v1: a tmpfs with each hierarchy mounted under
                    // it (the container's own group, through the cgroup
                    // namespace), then the tmpfs made read-only.
                    ops.push((
                        step,
                        Op::Mount {
                            source: cstring("tmpfs", "")?,
                            target: ctarget.clone(),
                            fstype: cstring("tmpfs", "")?,
                            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            data: Some(cstring("mode=755", "")?),
                        },
                    ));
                    for h in cgroup.hierarchies() {
                        let Some(base) = h.mount.file_name() else {
                            continue;
                        };
                        let sub = format!("{target}/{}", base.to_string_lossy());
                        let csub = cstring(&sub, "a cgroup mount")?;
                        ops.push((step, Op::Mkdir(csub.clone())));
                        ops.push((
                            step,
                            Op::Mount {
                                source: cstring("cgroup", "")?,
                                target: csub,
                                fstype: cstring("cgroup", "")?,
                                flags: options.flags
                                    | libc::MS_NOSUID
                                    | libc::MS_NODEV
                                    | libc::MS_NOEXEC,
                                data: Some(cstring(&h.controllers, "cgroup controllers")?),
                            },
                        ));
                    }
                    if options.flags & libc::MS_RDONLY != 0 {
                        ops.push((step, Op::RemountReadOnly(ctarget)));
                    }
                    continue;
                }
                let fstype = if typ == "cgroup" {
                    "cgroup2".to_owned()
                } else {
                    typ.clone()
                };
                let source = m
                    .source()
                    .as_ref()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| fstype.clone());
                let data = if options.data.is_empty() {
                    None
                } else {
                    Some(cstring(options.data.join(","), "mount options")?)
                };
                ops.push((
                    step,
                    Op::Mount {
                        source: cstring(&source, "a mount source")?,
                        target: ctarget,
                        fstype: cstring(&fstype, "a mount type")?,
                        flags: options.flags,
                        data,
                    },
                ));
                if target == "/dev" && fstype == "tmpfs" {
                    has_dev = true;
                }
            }
            if has_dev {
                let step = name("device nodes in /dev".into());
                // (major, minor) of null, zero, full, random, urandom, tty.
                for (node, major, minor) in [
                    ("null", 1, 3),
                    ("zero", 1, 5),
                    ("full", 1, 7),
                    ("random", 1, 8),
                    ("urandom", 1, 9),
                    ("tty", 5, 0),
                ] {
                    ops.push((
                        step,
                        Op::Mknod {
                            path: cstring(format!("/dev/{node}"), "")?,
                            dev: libc::makedev(major, minor),
                        },
                    ));
                }
                for (link, to) in [
                    ("/dev/fd", "/proc/self/fd"),
                    ("/dev/stdin", "/proc/self/fd/0"),
                    ("/dev/stdout", "/proc/self/fd/1"),
                    ("/dev/stderr", "/proc/self/fd/2"),
                    ("/dev/ptmx", "pts/ptmx"),
                    ("/dev/core", "/proc/kcore"),
                ] {
                    ops.push((
                        step,
                        Op::Symlink {
                            to: cstring(to, "")?,
                            link: cstring(link, "")?,
                        },
                    ));
                }
            }
            for p in linux.masked_paths().iter().flatten() {
                let step = name(format!("mask {p}"));
                ops.push((step, Op::Mask(cstring(p, "a masked path")?)));
            }
            for p in linux.readonly_paths().iter().flatten() {
                let step = name(format!("make {p} read-only"));
                ops.push((step, Op::ReadOnly(cstring(p, "a read-only path")?)));
            }
            if spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false)
            {
                let step = name("make the rootfs read-only".into());
                ops.push((step, Op::RemountReadOnly(cstring("/", "")?)));
            }
            let cwd = process.cwd().to_string_lossy().into_owned();
            let step = name(format!("working directory {cwd}"));
            ops.push((step, mkdir_all(&cwd)?));
            if ns_flags & libc::CLONE_NEWUTS != 0 {
                if let Some(h) = spec.hostname() {
                    hostname = Some((name(format!("host name {h}")), cstring(h, "the host name")?));
                }
            }
            if new_net {
                loopback = Some(name("bring up the loopback interface".into()));
            }
        }

        let user = process.user();
        let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
        let last = last_cap();
        let caps = process.capabilities().clone().unwrap_or_default();
        // Without v1's devices controller nothing would keep a node made
        // with CAP_MKNOD from reaching the host's disks: on v2 the
        // capability goes (device rules there need a BPF program).
        let keep = if cgroup.confines_devices() {
            !0
        } else {
            !(1u64 << 27)
        };
        let bounding = cap_mask(caps.bounding(), last)? & keep;
        let drop_bounding = (0..=last)
            .filter(|n| bounding & (1 << n) == 0)
            .map(|n| n as libc::c_ulong)
            .collect();
        let ambient_mask = cap_mask(caps.ambient(), last)? & keep;
        let ambient = (0..=last)
            .filter(|n| ambient_mask & (1 << n) != 0)
            .map(|n| n as libc::c_ulong)
            .collect();

        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err(RunError::Unsupported("the process has no arguments".into()));
        }
        let env = process.env().clone().unwrap_or_default();
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(super::linux::DEFAULT_PATH)
            .to_owned();
        let argv: Vec<CString> = args
            .iter()
            .map(|a| cstring(a, "an argument"))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|e| cstring(e, "an environment variable"))
            .collect::<Result<_, _>>()?;

        let (terminal, parent_end) = if process.terminal().unwrap_or(false) {
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            (Some(OwnedFd::from(a)), Some(OwnedFd::from(b)))
        } else {
            (None, None)
        };
        let seccomp = if linux.seccomp().is_some() {
            return Err(RunError::Unsupported(
                "custom seccomp profiles are not supported yet".into(),
            ));
        } else {
            super::seccomp::default_profile().map_err(RunError::Unsupported)?
        };

        let (errors_read, errors) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)?;
        let trampoline = if TRAMPOLINE.is_empty() {
            None
        } else {
            Some(sealed_trampoline()?)
        };
        let join = cgroup.join_files()?;
        let mut keep_fds: Vec<RawFd> = [Some(&errors), trampoline.as_ref(), terminal.as_ref()]
            .into_iter()
            .flatten()
            .chain(&join)
            .map(AsRawFd::as_raw_fd)
            .chain(init)
            .collect();
        keep_fds.sort_unstable();
        keep_fds.dedup();
        // WHARF-T, then PATH (filled in by the child), then argv.
        let mut trampoline_argv = pointers(&argv);
        trampoline_argv
            .0
            .splice(0..0, [TRAMPOLINE_MARK.as_ptr(), std::ptr::null()]);
        let plan = Plan {
            names,
            at: std::cell::Cell::new(0),
            stdio: [stdio.stdin, stdio.stdout, stdio.stderr],
            errors,
            trampoline,
            keep: keep_fds,
            join,
            ns_flags,
            init,
            rootfs,
            bind_rootfs,
            trees,
            ops,
            hostname,
            loopback,
            terminal,
            uid: user.uid(),
            gid: user.gid(),
            groups,
            drop_bounding,
            effective: cap_mask(caps.effective(), last)? & keep,
            permitted: cap_mask(caps.permitted(), last)? & keep,
            inheritable: cap_mask(caps.inheritable(), last)? & keep,
            ambient,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            cwd: cstring(
                process.cwd().as_os_str().as_bytes(),
                "the working directory",
            )?,
            seccomp,
            program: argv[0].clone(),
            path: cstring(path, "PATH")?,
            argv: pointers(&argv),
            trampoline_argv,
            _argv: argv,
            envp: pointers(&envp),
            _envp: envp,
        };
        Ok((plan, parent_end, errors_read))
    }

    /// The forked child: prepares the process and execs its program. On
    /// failure it writes the step and the errno to the error pipe and
    /// exits.
    ///
    /// # Safety
    /// Only in the child of the fork, once.
    unsafe fn child(&mut self) -> ! {
        let e = match self.prepare() {
            Ok(()) => self.exec(),
            Err(e) => e,
        };
        let mut record = [0u8; 8];
        record[..4].copy_from_slice(&(self.at.get() as u32).to_ne_bytes());
        record[4..].copy_from_slice(&e.raw_os_error().unwrap_or(libc::EIO).to_ne_bytes());
        libc::write(self.errors.as_raw_fd(), record.as_ptr().cast(), 8);
        libc::_exit(127)
    }

    fn step(&self, n: usize) {
        self.at.set(n);
    }

    fn prepare(&mut self) -> io::Result<()> {
        // SAFETY (whole function): system calls on data the plan owns;
        // nothing is allocated.
        unsafe {
            self.step(CLOSE_STEP);
            for (n, fd) in self.stdio.iter().enumerate() {
                let Some(fd) = fd else { continue };
                let (fd, n) = (fd.as_raw_fd(), n as RawFd);
                if fd == n {
                    check(libc::fcntl(fd, libc::F_SETFD, 0))?;
                } else {
                    check(libc::dup2(fd, n))?;
                }
            }
            // Signals arrive blocked (the forking thread blocked them):
            // wharf's handlers and Rust's ignored SIGPIPE go back to the
            // defaults before any is let through.
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            check(libc::pthread_sigmask(
                libc::SIG_SETMASK,
                &none,
                std::ptr::null_mut(),
            ))?;
            check(libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0))?;
            // Every descriptor but stdio and the few above is closed (not
            // only marked close-on-exec): no path the image controls
            // (WORKDIR, PATH, mount points) may reach a host directory
            // through /proc/self/fd before the exec.
            let mut low: libc::c_uint = 3;
            for &fd in &self.keep {
                let fd = fd as libc::c_uint;
                if fd > low {
                    close_range(low, fd - 1)?;
                }
                low = low.max(fd + 1);
            }
            close_range(low, libc::c_uint::MAX)?;
            self.step(JOIN_STEP);
            for fd in &self.join {
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(fd.as_raw_fd());
            }
            let old_umask = libc::umask(0);
            match self.init {
                None => self.make_container()?,
                Some(init) => {
                    self.step(SETNS_STEP);
                    check(libc::setns(init, self.ns_flags))?;
                }
            }
            libc::umask(old_umask);
            self.step(SESSION_STEP);
            check(libc::setsid())?;
            if let Some(sock) = &self.terminal {
                self.step(TERMINAL_STEP);
                make_terminal(sock.as_raw_fd())?;
            }
            self.step(BOUNDING_STEP);
            for cap in &self.drop_bounding {
                if libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            self.step(USER_STEP);
            check(libc::setgroups(self.groups.len(), self.groups.as_ptr()))?;
            check(libc::setresgid(self.gid, self.gid, self.gid))?;
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
            check(libc::setresuid(self.uid, self.uid, self.uid))?;
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))?;
            self.step(CWD_STEP);
            let dir = open_in_root(&self.cwd, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            let changed = libc::fchdir(dir);
            libc::close(dir);
            check(changed)?;
            if self.no_new_privs {
                self.step(NNP_STEP);
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            self.step(CAPS_STEP);
            let header = CapHeader {
                version: 0x2008_0522,
                pid: 0,
            };
            let lo = |m: u64| m as u32;
            let hi = |m: u64| (m >> 32) as u32;
            let data = [
                CapData {
                    effective: lo(self.effective),
                    permitted: lo(self.permitted),
                    inheritable: lo(self.inheritable),
                },
                CapData {
                    effective: hi(self.effective),
                    permitted: hi(self.permitted),
                    inheritable: hi(self.inheritable),
                },
            ];
            check(
                libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr())
                    as libc::c_int,
            )?;
            check(libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            ))?;
            for cap in &self.ambient {
                check(libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    *cap,
                    0,
                    0,
                ))?;
            }
            self.step(SECCOMP_STEP);
            for program in &self.seccomp {
                seccompiler::apply_filter(program).map_err(|_| io::Error::last_os_error())?;
            }
        }
        Ok(())
    }

    /// New namespaces, mounts, pivot, the mounts inside, host name.
    ///
    /// # Safety
    /// Only in the forked child.
    unsafe fn make_container(&self) -> io::Result<()> {
        let Some(rootfs) = &self.rootfs else {
            return Ok(());
        };
        self.step(UNSHARE_STEP);
        check(libc::unshare(self.ns_flags))?;
        self.step(PRIVATE_STEP);
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        if self.bind_rootfs {
            self.step(BIND_ROOT_STEP);
            check(libc::mount(
                rootfs.as_ptr(),
                rootfs.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
        }
        let mut trees = [-1 as RawFd; MAX_BINDS];
        for (i, (step, source, recursive)) in self.trees.iter().enumerate() {
            self.step(*step);
            let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
            if *recursive {
                flags |= libc::AT_RECURSIVE as libc::c_uint;
            }
            let fd = libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, source.as_ptr(), flags)
                as libc::c_int;
            trees[i] = check(fd)?;
        }
        self.step(PIVOT_STEP);
        check(libc::chdir(rootfs.as_ptr()))?;
        check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(c"/".as_ptr()))?;
        for (step, op) in &self.ops {
            self.step(*step);
            run_op(op, &trees)?;
        }
        if let Some((step, name)) = &self.hostname {
            self.step(*step);
            check(libc::sethostname(name.as_ptr(), name.as_bytes().len()))?;
        }
        if let Some(step) = self.loopback {
            self.step(step);
            loopback_up()?;
        }
        Ok(())
    }

    /// Execs the program (through the trampoline when there is one),
    /// looking it up in `PATH` when its name has no `/`: the first
    /// regular file there that this process may execute, as `execvp`
    /// finds it (but a file without `#!` is not run through `/bin/sh`).
    fn exec(&mut self) -> io::Error {
        self.step(EXEC_STEP);
        let program = self.program.as_bytes();
        let mut buf = [0u8; 4096];
        // SAFETY: NUL-terminated strings and null-terminated arrays the
        // plan owns; `buf` outlives the exec.
        unsafe {
            let path: *const libc::c_char = if program.contains(&b'/') {
                self.program.as_ptr()
            } else {
                let mut denied = false;
                let mut found = false;
                for dir in self.path.as_bytes().split(|b| *b == b':') {
                    let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
                    let len = dir.len() + 1 + program.len();
                    if len + 1 > buf.len() {
                        continue;
                    }
                    buf[..dir.len()].copy_from_slice(dir);
                    buf[dir.len()] = b'/';
                    buf[dir.len() + 1..len].copy_from_slice(program);
                    buf[len] = 0;
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::stat(buf.as_ptr().cast(), &mut st) != 0 {
                        denied |= io::Error::last_os_error().raw_os_error() == Some(libc::EACCES);
                        continue;
                    }
                    if st.st_mode & libc::S_IFMT != libc::S_IFREG
                        || libc::access(buf.as_ptr().cast(), libc::X_OK) != 0
                    {
                        denied = true;
                        continue;
                    }
                    found = true;
                    break;
                }
                if !found {
                    return io::Error::from_raw_os_error(if denied {
                        libc::EACCES
                    } else {
                        libc::ENOENT
                    });
                }
                buf.as_ptr().cast()
            };
            let Some(trampoline) = &self.trampoline else {
                libc::execve(path, self.argv.0.as_ptr(), self.envp.0.as_ptr());
                return io::Error::last_os_error();
            };
            // The trampoline reports a failed exec on descriptor 3.
            let mut image = trampoline.as_raw_fd();
            if image == 3 {
                image = libc::fcntl(3, libc::F_DUPFD_CLOEXEC, 4);
                if image < 0 {
                    return io::Error::last_os_error();
                }
            }
            let errors = self.errors.as_raw_fd();
            let moved = if errors == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(errors, 3)
            };
            if moved < 0 {
                return io::Error::last_os_error();
            }
            self.trampoline_argv.0[1] = path;
            self.step(TRAMPOLINE_STEP);
            libc::syscall(
                libc::SYS_execveat,
                image,
                c"".as_ptr(),
                self.trampoline_argv.0.as_ptr(),
                self.envp.0.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
            io::Error::last_os_error()
        }
    }
}

/// `struct open_how` (linux/openat2.h).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Closes descriptors `low..=high`.
///
/// # Safety
/// Closes descriptors others may own: only in the forked child.
unsafe fn close_range(low: libc::c_uint, high: libc::c_uint) -> io::Result<()> {
    check(libc::syscall(libc::SYS_close_range, low, high, 0) as libc::c_int).map(drop)
}

/// A memfd holding [`TRAMPOLINE`], sealed against every change, so that
/// nothing (a container process that opens it through /proc/PID/exe
/// included) can alter it.
fn sealed_trampoline() -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    // Executable on hosts whose memfds are not by default
    // (vm.memfd_noexec=1); kernels before 6.3 do not know the flag.
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = match rustix::fs::memfd_create("wharf-exec", flags | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("wharf-exec", flags)?,
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "an executable memfd for the exec trampoline: {e} \
                     (is vm.memfd_noexec 2 on this host?)"
                ),
            ))
        }
        Ok(fd) => fd,
    };
    let mut written = 0;
    while written < TRAMPOLINE.len() {
        written += rustix::io::write(&fd, &TRAMPOLINE[written..])?;
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(fd)
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// [`Op::MkdirAll`] of `path`.
fn mkdir_all(path: &str) -> Result<Op, RunError> {
    Ok(Op::MkdirAll(
        prefixes(path)
            .iter()
            .map(|d| cstring(d, "a directory"))
            .collect::<Result<_, _>>()?,
    ))
}

/// `mkdir`, an existing entry being fine.
///
/// # Safety
/// A plain system call.
unsafe fn mkdir(path: &std::ffi::CStr) -> io::Result<()> {
    if libc::mkdir(path.as_ptr(), 0o755) != 0
        && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One mount operation after the pivot.
///
/// # Safety
/// Only in the forked child.
unsafe fn run_op(op: &Op, trees: &[RawFd]) -> io::Result<()> {
    match op {
        Op::NoLinks(path) => match open_linkless(path) {
            Ok(fd) => {
                libc::close(fd);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        },
        Op::Mkdir(path) => mkdir(path)?,
        Op::MkdirAll(paths) => {
            let Some(last) = paths.last() else {
                return Ok(());
            };
            match mkdir(last) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    for p in paths {
                        mkdir(p)?;
                    }
                }
                other => other?,
            }
        }
        Op::Touch(path) => {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            );
            // Whatever is there already (a directory, a link), the
            // attach that follows says what is wrong with it.
            if fd >= 0 {
                libc::close(fd);
            }
        }
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            check(libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                *flags,
                data.as_ref()
                    .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            ))?;
        }
        Op::Attach { tree, target, attr } => {
            let fd = trees[*tree];
            if *attr != 0 {
                set_attr(fd, c"", libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, *attr)?;
            }
            // Onto the very entry found without a link: no second lookup
            // that a process sharing a volume above it could redirect.
            let at = open_linkless(target)?;
            let moved = libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                at,
                c"".as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            ) as libc::c_int;
            libc::close(at);
            check(moved)?;
            libc::close(fd);
        }
        Op::RemountReadOnly(target) => set_attr(libc::AT_FDCWD, target, 0, MOUNT_ATTR_RDONLY)?,
        // In the fresh /dev tmpfs: anything already there is an error.
        Op::Mknod { path, dev } => {
            check(libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, *dev))?;
        }
        Op::Symlink { to, link } => {
            check(libc::symlink(to.as_ptr(), link.as_ptr()))?;
        }
        Op::Mask(path) => {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::stat(path.as_ptr(), &mut st) != 0 {
                return match io::Error::last_os_error().raw_os_error() {
                    Some(libc::ENOENT) => Ok(()),
                    _ => Err(io::Error::last_os_error()),
                };
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                // The node bound over it must be the real null device,
                // not whatever the path /dev/null leads to.
                let null = check(libc::open(
                    c"/dev/null".as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                ))?;
                let mut ns: libc::stat = std::mem::zeroed();
                let ok = libc::fstat(null, &mut ns) == 0
                    && ns.st_mode & libc::S_IFMT == libc::S_IFCHR
                    && ns.st_rdev == libc::makedev(1, 3);
                if !ok {
                    libc::close(null);
                    return Err(io::Error::from_raw_os_error(libc::EPERM));
                }
                let tree = libc::syscall(
                    libc::SYS_open_tree,
                    null,
                    c"".as_ptr(),
                    OPEN_TREE_CLONE
                        | (libc::O_CLOEXEC as libc::c_uint)
                        | (libc::AT_EMPTY_PATH as libc::c_uint),
                ) as libc::c_int;
                libc::close(null);
                let tree = check(tree)?;
                let moved = libc::syscall(
                    libc::SYS_move_mount,
                    tree,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                ) as libc::c_int;
                libc::close(tree);
                check(moved)?;
            } else {
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    path.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY,
                    std::ptr::null(),
                ))?;
            }
        }
        Op::ReadOnly(path) => {
            if libc::mount(
                path.as_ptr(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return match io::Error::last_os_error().raw_os_error() {
                    Some(libc::ENOENT) => Ok(()),
                    _ => Err(io::Error::last_os_error()),
                };
            }
            set_attr(libc::AT_FDCWD, path, libc::AT_RECURSIVE, MOUNT_ATTR_RDONLY)?;
        }
    }
    Ok(())
}

/// `openat2(2)` of `path` from the root: `flags` to open with, `resolve`
/// on top of `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`.
///
/// # Safety
/// A plain system call; the caller closes the descriptor.
unsafe fn open_in_root(
    path: &std::ffi::CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<RawFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | resolve,
    };
    check(libc::syscall(
        libc::SYS_openat2,
        libc::AT_FDCWD,
        path.as_ptr(),
        &how as *const OpenHow,
        std::mem::size_of::<OpenHow>(),
    ) as libc::c_int)
}

/// An `O_PATH` descriptor of `path`, reached without following any link
/// (`ELOOP` when there is one in it).
///
/// # Safety
/// A plain system call; the caller closes the descriptor.
unsafe fn open_linkless(path: &std::ffi::CStr) -> io::Result<RawFd> {
    open_in_root(path, libc::O_PATH, libc::RESOLVE_NO_SYMLINKS)
}

/// `mount_setattr(2)`: sets `attr` on the mount at `dirfd`/`path`.
///
/// # Safety
/// A plain system call.
unsafe fn set_attr(
    dirfd: RawFd,
    path: &std::ffi::CStr,
    flags: libc::c_int,
    attr: u64,
) -> io::Result<()> {
    let a = MountAttr {
        attr_set: attr,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    check(libc::syscall(
        libc::SYS_mount_setattr,
        dirfd,
        path.as_ptr(),
        flags as libc::c_uint,
        &a as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    ) as libc::c_int)?;
    Ok(())
}

/// Makes a terminal in the container's devpts: the master from
/// `/dev/ptmx`, the slave through `TIOCGPTPEER` (which only a real pty
/// master answers), the slave as controlling terminal and stdio, the
/// master sent over `sock` (SCM_RIGHTS).
///
/// # Safety
/// Only in the forked child.
unsafe fn make_terminal(sock: RawFd) -> io::Result<()> {
    // The devpts instance's own ptmx, reached without following any link
    // (for `exec`, the container's processes control its /dev), on a
    // devpts file system.
    let master = open_in_root(
        c"/dev/pts/ptmx",
        libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
        libc::RESOLVE_NO_SYMLINKS,
    )?;
    let mut fs: libc::statfs = std::mem::zeroed();
    if libc::fstatfs(master, &mut fs) != 0 || fs.f_type != DEVPTS_SUPER_MAGIC {
        libc::close(master);
        return Err(io::Error::from_raw_os_error(libc::ENOTTY));
    }
    // Blocking again for the process that gets it.
    let flags = libc::fcntl(master, libc::F_GETFL);
    libc::fcntl(master, libc::F_SETFL, flags & !libc::O_NONBLOCK);
    let unlock: libc::c_int = 0;
    check(libc::ioctl(master, libc::TIOCSPTLCK, &unlock))?;
    let slave = check(libc::ioctl(
        master,
        libc::TIOCGPTPEER,
        libc::O_RDWR | libc::O_NOCTTY,
    ))?;
    check(libc::ioctl(slave, libc::TIOCSCTTY, 0))?;
    for fd in 0..3 {
        check(libc::dup2(slave, fd))?;
    }
    if slave > 2 {
        libc::close(slave);
    }
    // One byte of data carrying the descriptor.
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
    let cmsg = libc::CMSG_FIRSTHDR(&msg);
    (*cmsg).cmsg_level = libc::SOL_SOCKET;
    (*cmsg).cmsg_type = libc::SCM_RIGHTS;
    (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), master);
    if libc::sendmsg(sock, &msg, 0) < 0 {
        return Err(io::Error::last_os_error());
    }
    libc::close(master);
    Ok(())
}

/// `f_type` of a devpts file system (linux/magic.h).
const DEVPTS_SUPER_MAGIC: libc::c_long = 0x1cd1;

/// `struct ifreq` with the flags member (linux/if.h), 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Brings up `lo` in the new network namespace, as Docker does for
/// `--network none`.
///
/// # Safety
/// Only in the forked child.
unsafe fn loopback_up() -> io::Result<()> {
    let sock = check(libc::socket(
        libc::AF_INET,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        0,
    ))?;
    let mut req = IfReqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    let r = (|| {
        check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req))?;
        req.flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &req))
    })();
    libc::close(sock);
    r.map(|_| ())
}

/// The start time of process `pid` (clock ticks since boot): with the
/// pid, it names one process for good.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    crate::container::procfs::stat(pid).map(|s| s.starttime)
}

/// A pidfd of process `pid` if it is still the one that started at
/// `started` (see [`start_time`]).
pub(crate) fn pidfd(pid: i32, started: u64) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor just returned to us.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // Checked after opening: the pidfd cannot come to name another
    // process, so a match now is a match for good.
    (start_time(pid) == Some(started)).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let o = mount_options(
            &[
                "nosuid",
                "strictatime",
                "mode=755",
                "size=65536k",
                "ro",
                "rw",
            ]
            .map(String::from),
        );
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, ["mode=755", "size=65536k"]);
        assert!(!o.bind);
        let o = mount_options(&["rbind", "rprivate", "ro"].map(String::from));
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, libc::MS_RDONLY);
    }

    #[test]
    fn mount_destinations_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::os::unix::fs::symlink("/../../../outside", r.join("data")).unwrap();
        std::os::unix::fs::symlink("../etc", r.join("rel")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(resolve_in_root(r, "/data/x", true).unwrap(), "/outside/x");
        assert!(r.join("outside/x").is_dir());
        assert_eq!(resolve_in_root(r, "/rel/f", false).unwrap(), "/etc/f");
        assert!(r.join("etc/f").is_file());
        assert_eq!(resolve_in_root(r, "/../../etc", true).unwrap(), "/etc");
        assert!(resolve_in_root(r, "/loop/x", true).is_err());
        assert!(resolve_in_root(r, "/etc/f/x", true).is_err());
    }

    #[test]
    fn prefixes_walk_down_from_the_root() {
        assert_eq!(prefixes("/a/b//c"), ["/a", "/a/b", "/a/b/c"]);
        assert!(prefixes("/").is_empty());
    }

    #[test]
    fn this_process_has_a_start_time_and_a_pidfd() {
        let me = std::process::id() as i32;
        let started = start_time(me).unwrap();
        assert!(pidfd(me, started).is_some());
        assert!(pidfd(me, started + 1).is_none());
    }

    #[test]
    fn capability_names_map_to_their_numbers() {
        use oci_spec::runtime::Capability;
        let caps: oci_spec::runtime::Capabilities =
            [Capability::Chown, Capability::Kill, Capability::AuditWrite]
                .into_iter()
                .collect();
        assert_eq!(cap_mask(&Some(caps), 40).unwrap(), 1 | 1 << 5 | 1 << 29);
    }
}
