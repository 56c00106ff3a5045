//! The few `/proc` readings the container commands use (`top`, `stats`,
//! `pause`, the monitor server), in one place: a process's `stat` and
//! `status` fields, and the host's CPU and memory figures.

/// Fields of `/proc/PID/stat` (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The command name (`comm`), without its parentheses.
    pub comm: String,
    /// The state letter (`R`, `S`, `T`, `Z`...).
    pub state: String,
    pub ppid: u64,
    pub tty_nr: u64,
    /// CPU time in user and kernel mode, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Start time, in clock ticks after boot.
    pub starttime: u64,
}

/// `/proc/{pid}/stat` (`pid` may be `self`); None if the process is gone.
pub(crate) fn stat(pid: impl std::fmt::Display) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: the name may hold spaces and parens.
    let (head, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc(5), counted from `state` (field 3) on.
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm: head.split_once('(')?.1.to_owned(),
        state: f.first()?.to_string(),
        ppid: field(4)?,
        tty_nr: field(7)?,
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// The first word of field `key` of `/proc/{pid}/status` (`Uid`,
/// `Threads`, `RssAnon`...).
pub(crate) fn status(pid: impl std::fmt::Display, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
}

/// Clock ticks per second (`CLK_TCK`), the unit of [`Stat`]'s times.
pub(crate) fn ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// The host's figures of `/proc/stat` and `/proc/meminfo`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Host {
    /// Boot time, seconds since the epoch (`btime`).
    pub boot: u64,
    /// CPU time of all CPUs, in clock ticks (the `cpu` line).
    pub cpu_ticks: u64,
    /// CPUs online (`cpuN` lines).
    pub cpus: u32,
    /// Memory, bytes (`MemTotal`).
    pub memory: u64,
}

/// Reads [`Host`].
pub(crate) fn host() -> Host {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut h = Host::default();
    for line in stat.lines() {
        if let Some(cpu) = line.strip_prefix("cpu ") {
            h.cpu_ticks = cpu
                .split_whitespace()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum();
        } else if line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
        {
            h.cpus += 1;
        } else if let Some(b) = line.strip_prefix("btime ") {
            h.boot = b.trim().parse().unwrap_or(0);
        }
    }
    h.memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024);
    h
}
