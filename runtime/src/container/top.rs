//! `top`: the processes of a running container as `docker top` shows
//! them, the columns of `ps -ef` with host pids, read from `/proc`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::procfs;

/// Column titles, as Docker's default `ps -ef`.
pub const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// A container's processes: one row of [`TITLES`] each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    /// The column titles.
    pub titles: Vec<String>,
    /// One row per process, in pid order.
    pub processes: Vec<Vec<String>>,
}

/// The rows of the processes `pids` that still exist, in pid order.
pub(crate) fn processes(pids: impl IntoIterator<Item = u32>) -> Top {
    let clock = Clock::now();
    let mut pids: Vec<u32> = pids.into_iter().collect();
    pids.sort_unstable();
    pids.dedup();
    Top {
        titles: TITLES.iter().map(|t| t.to_string()).collect(),
        processes: pids.into_iter().filter_map(|p| row(p, &clock)).collect(),
    }
}

/// What turns `/proc` times into wall-clock ones.
struct Clock {
    /// Clock ticks per second (`CLK_TCK`).
    ticks: u64,
    /// Boot time, seconds since the epoch.
    boot: u64,
    /// Now, seconds since the epoch.
    now: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            ticks: procfs::ticks(),
            boot: procfs::host().boot,
            now: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }
}

/// One process's row, or None when it is gone (or unreadable).
fn row(pid: u32, clock: &Clock) -> Option<Vec<String>> {
    let stat = procfs::stat(pid)?;
    let started = clock.boot + stat.starttime / clock.ticks;
    let uid = procfs::status(pid, "Uid")?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{}]", stat.comm)
    } else {
        String::from_utf8_lossy(cmdline.strip_suffix(&[0]).unwrap_or(&cmdline)).replace('\0', " ")
    };
    let cpu_secs = (stat.utime + stat.stime) / clock.ticks;
    let alive = clock.now.saturating_sub(started).max(1);
    Some(vec![
        uid,
        pid.to_string(),
        stat.ppid.to_string(),
        (cpu_secs * 100 / alive).min(999).to_string(),
        start_time(started, clock.now),
        tty_name(stat.tty_nr),
        cpu_time(cpu_secs),
        cmd,
    ])
}

/// `HH:MM` (UTC) for a start within the last day, else the date.
fn start_time(started: u64, now: u64) -> String {
    let stamp = crate::build::rfc3339(started);
    if now.saturating_sub(started) < 86_400 {
        stamp[11..16].to_owned()
    } else {
        stamp[..10].to_owned()
    }
}

/// `pts/N` for a pseudo-terminal, `?` for none (or another kind).
fn tty_name(tty_nr: u64) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        // Unix98 ptys: majors 136 to 143.
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        _ => "?".to_owned(),
    }
}

/// Cumulative CPU time as `ps` writes it: `[DD-]HH:MM:SS`.
fn cpu_time(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let hms = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}-{hms}")
    } else {
        hms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_ps_shows_it() {
        let me = std::process::id();
        let top = processes([me, me, u32::MAX]);
        assert_eq!(top.titles, TITLES);
        let [row] = top.processes.as_slice() else {
            panic!("one row for this process, none for a missing one: {top:?}");
        };
        assert_eq!(row[1], me.to_string());
        assert_eq!(row[2], std::os::unix::process::parent_id().to_string());
        let uid = rustix::process::getuid().as_raw().to_string();
        assert_eq!(row[0], uid);
        assert_eq!(row[4].len(), 5, "HH:MM: {}", row[4]);
        assert!(row[7].contains("wharf"), "{}", row[7]);
    }

    #[test]
    fn formats_terminals_and_times() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(tty_name((137 << 8) | 1), "pts/257");
        assert_eq!(cpu_time(3_725), "01:02:05");
        assert_eq!(cpu_time(90_061), "1-01:01:01");
        assert_eq!(start_time(1_700_000_000, 1_700_000_100), "22:13");
        assert_eq!(start_time(1_700_000_000, 1_800_000_000), "2023-11-14");
    }
}
