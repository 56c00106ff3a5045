//! `stats`: what a running container uses, as `docker stats` reads it: CPU
//! time, memory and its limit, processes. A Linux container's figures are
//! its cgroup's (v1 controllers or v2); a wasm guest runs inside its
//! monitor, whose process figures stand for it.

use std::path::{Path, PathBuf};

use super::procfs;

/// One reading of a container's use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// When it was read (ns since the epoch).
    pub read_ns: u64,
    /// CPU time the container has used (ns).
    pub cpu_ns: u64,
    /// CPU time the whole host has used, all CPUs (ns), the base of a
    /// CPU percentage.
    pub system_cpu_ns: u64,
    /// CPUs online.
    pub online_cpus: u32,
    /// Memory in use (bytes).
    pub memory: u64,
    /// Its limit: the container's memory limit, else the host's memory.
    pub memory_limit: u64,
    /// Processes (a wasm guest: its monitor's threads).
    pub pids: u64,
}

impl Sample {
    /// The CPU share between `earlier` and this reading, in percent of
    /// one CPU (so up to 100 x CPUs), as `docker stats` computes it.
    pub fn cpu_percent_since(&self, earlier: &Sample) -> f64 {
        let cpu = self.cpu_ns.saturating_sub(earlier.cpu_ns) as f64;
        let system = self.system_cpu_ns.saturating_sub(earlier.system_cpu_ns) as f64;
        if system <= 0.0 {
            return 0.0;
        }
        cpu / system * f64::from(self.online_cpus.max(1)) * 100.0
    }

    /// Memory in use, in percent of its limit.
    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 {
            return 0.0;
        }
        self.memory as f64 / self.memory_limit as f64 * 100.0
    }
}

/// A reading with only the host's side: the time, the CPU time of all
/// CPUs, the CPUs and the host's memory (the limit of a container that
/// has none); what a container that is not running uses.
pub(crate) fn of_host() -> Sample {
    let host = procfs::host();
    Sample {
        read_ns: super::now_ns(),
        system_cpu_ns: host
            .cpu_ticks
            .saturating_mul(1_000_000_000 / procfs::ticks()),
        online_cpus: host.cpus,
        memory_limit: host.memory,
        ..Sample::default()
    }
}

/// A number in a cgroup file (its first word; `max` is None).
fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The use of the Linux container whose cgroup is `wharf/<id>`.
pub(crate) fn of_cgroup(id: &str) -> Sample {
    let mut s = of_host();
    let root = Path::new("/sys/fs/cgroup");
    let v2 = root.join("wharf").join(id);
    if v2.join("cgroup.procs").exists() && v2.join("cpu.stat").exists() {
        let usage_usec = std::fs::read_to_string(v2.join("cpu.stat"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
        s.cpu_ns = usage_usec.unwrap_or(0) * 1000;
        s.memory = read_number(&v2.join("memory.current")).unwrap_or(0);
        if let Some(max) = read_number(&v2.join("memory.max")) {
            s.memory_limit = s.memory_limit.min(max).max(1);
        }
        s.pids = read_number(&v2.join("pids.current")).unwrap_or(0);
        return s;
    }
    let v1 = |controller: &str| -> PathBuf { root.join(controller).join("wharf").join(id) };
    s.cpu_ns = read_number(&v1("cpuacct").join("cpuacct.usage")).unwrap_or(0);
    s.memory = read_number(&v1("memory").join("memory.usage_in_bytes")).unwrap_or(0);
    if let Some(limit) = read_number(&v1("memory").join("memory.limit_in_bytes")) {
        // Unlimited reads as a huge number: the host's memory is the limit.
        s.memory_limit = s.memory_limit.min(limit);
    }
    s.pids = read_number(&v1("pids").join("pids.current")).unwrap_or(0);
    s
}

/// The use of a wasm guest: that of its monitor process `pid` (CPU time,
/// anonymous memory, threads), with the guest's memory limit (`--memory`)
/// when it has one.
pub(crate) fn of_process(pid: u32, memory_limit: Option<u64>) -> Sample {
    let mut s = of_host();
    if let Some(stat) = procfs::stat(pid) {
        s.cpu_ns = (stat.utime + stat.stime).saturating_mul(1_000_000_000 / procfs::ticks());
    }
    let number = |key: &str| procfs::status(pid, key).and_then(|v| v.parse::<u64>().ok());
    // Anonymous memory: the guest's linear memory and the runtime's heap,
    // not the executable's pages that every monitor shares.
    s.memory = number("RssAnon").unwrap_or(0) * 1024;
    s.pids = number("Threads").unwrap_or(0);
    if let Some(limit) = memory_limit {
        s.memory_limit = limit;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_a_guest_would() {
        let busy = std::time::Instant::now();
        while busy.elapsed() < std::time::Duration::from_millis(30) {}
        let s = of_process(std::process::id(), Some(64 << 20));
        assert!(s.cpu_ns > 0 && s.memory > 0 && s.pids >= 1, "{s:?}");
        assert_eq!(s.memory_limit, 64 << 20);
        assert!(s.online_cpus >= 1 && s.system_cpu_ns > s.cpu_ns, "{s:?}");
        let later = Sample {
            cpu_ns: s.cpu_ns + 500,
            system_cpu_ns: s.system_cpu_ns + 1000,
            online_cpus: 2,
            ..s
        };
        assert_eq!(later.cpu_percent_since(&s), 100.0);
    }
}
