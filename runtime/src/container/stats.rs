//! `stats`: what a running container uses, as `docker stats` reads it: CPU
//! time, memory and its limit, processes. A Linux container's figures are
//! its cgroup's (v1 controllers or v2); a wasm guest runs inside its
//! monitor, whose process figures stand for it.

use std::path::{Path, PathBuf};

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
}

/// The host's side of a reading: time, CPU time of all CPUs, CPUs,
/// memory.
fn host(sample: &mut Sample) {
    sample.read_ns = super::now_ns();
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) {
        let total: u64 = cpu
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        sample.system_cpu_ns = total.saturating_mul(1_000_000_000 / ticks);
    }
    sample.online_cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    sample.memory_limit = meminfo_total().unwrap_or(0);
}

fn meminfo_total() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
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
    let mut s = Sample::default();
    host(&mut s);
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
    let mut s = Sample::default();
    host(&mut s);
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime: fields 14 and 15 of proc(5), from field 3 on.
        let field = |n: usize| {
            f.get(n - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        s.cpu_ns = (field(14) + field(15)).saturating_mul(1_000_000_000 / ticks);
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let value = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        // Anonymous memory: the guest's linear memory and the runtime's
        // heap, not the executable's pages that every monitor shares.
        s.memory = value("RssAnon:").unwrap_or(0) * 1024;
        s.pids = value("Threads:").unwrap_or(0);
    }
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
