//! Containers described as Docker describes them: the JSON of `docker
//! inspect` and of the Engine API's container list, and `docker ps`'s
//! status line. The CLI and the daemon both use these.

use serde_json::{json, Value};

use super::logs::rfc3339_nanos;
use super::{now_ns, short_id, Container, Containers, Status};

/// "Up 5 seconds", "Exited (0) 2 minutes ago", "Created", as `docker ps`.
pub fn status_line(c: &Container) -> String {
    let s = &c.state;
    let ago = |ns: u64| human_duration(now_ns().saturating_sub(ns));
    match s.status {
        Status::Created => "Created".into(),
        Status::Running if s.is_paused() => format!("Up {} (Paused)", ago(s.started_at)),
        Status::Running => format!("Up {}", ago(s.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", s.exit_code, ago(s.finished_at)),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code, ago(s.finished_at)),
        Status::Dead => "Dead".into(),
    }
}

/// Docker's filters of a container list (`ps --filter`). Keys: `id` (a
/// prefix), `name` (a part), `status` (Docker's state name), `label`
/// (`key` or `key=value`), `ancestor` (the image as named, or its id).
pub type Filters = crate::filters::Filters<ContainerKeys>;

/// The keys [`Filters`] knows.
pub const FILTER_KEYS: [&str; 5] = ["id", "name", "status", "label", "ancestor"];

/// The filter keys of a container list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerKeys;

impl crate::filters::Keys for ContainerKeys {
    const KEYS: &'static [&'static str] = &FILTER_KEYS;
}

impl Filters {
    /// A `status` filter lists stopped containers too, as with `-a`.
    pub fn implies_all(&self) -> bool {
        !self.values("status").is_empty()
    }

    /// Whether `c` passes (a key the list does not know, which the API
    /// has always let through, matches everything).
    pub fn matches(&self, c: &Container) -> bool {
        self.all(|key, w| match key {
            "id" => c.id.starts_with(w),
            "name" => c.name.contains(w.trim_start_matches('/')),
            "status" => state_name(&c.state) == w,
            "label" => crate::filters::label_matches(&c.config.labels, w),
            "ancestor" => c.config.image == w || c.config.image_id.contains(w),
            _ => true,
        })
    }
}

/// Docker's name for a state: its status, or `paused`.
pub fn state_name(s: &super::State) -> &'static str {
    if s.is_paused() {
        "paused"
    } else {
        s.status.as_str()
    }
}

/// A duration as Docker's `units.HumanDuration` words it.
pub fn human_duration(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        0 => "Less than a second".into(),
        1..=59 => plural(secs, "second"),
        60..=119 => "About a minute".into(),
        120..=3599 => plural(secs / 60, "minute"),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => plural(secs / 3600, "hour"),
        172_800..=1_209_599 => plural(secs / 86400, "day"),
        1_209_600..=5_183_999 => plural(secs / 604_800, "week"),
        5_184_000..=63_071_999 => plural(secs / 2_592_000, "month"),
        _ => plural(secs / 31_536_000, "year"),
    }
}

fn time_or_zero(ns: u64) -> String {
    if ns == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        rfc3339_nanos(ns)
    }
}

/// The process a container runs as Docker shows it: `Path` and `Args`.
fn command(c: &Container) -> (String, Vec<String>) {
    let mut it = c.config.argv.clone().into_iter();
    (it.next().unwrap_or_default(), it.collect())
}

fn mounts(c: &Container) -> Vec<Value> {
    c.config
        .mounts
        .iter()
        .filter_map(|m| m.parse::<crate::exec::Mount>().ok())
        .map(|m| {
            json!({
                "Type": "bind",
                "Source": m.host.display().to_string(),
                "Destination": m.guest,
                "Mode": if m.read_only { "ro" } else { "" },
                "RW": !m.read_only,
                "Propagation": "rprivate",
            })
        })
        .collect()
}

fn restart_json(c: &Container) -> Value {
    let max = match c.config.restart {
        super::RestartPolicy::OnFailure { max } => max,
        _ => 0,
    };
    json!({ "Name": c.config.restart.name(), "MaximumRetryCount": max })
}

fn network_mode(c: &Container) -> String {
    c.config.network.clone().unwrap_or_else(|| "none".into())
}

/// `docker inspect CONTAINER` (and `GET /containers/{id}/json`).
pub fn inspect(cs: &Containers, c: &Container) -> Value {
    let s = &c.state;
    let (path, args) = command(c);
    let env: Vec<&String> = c.config.env.iter().collect();
    json!({
        "Id": c.id,
        "Created": rfc3339_nanos(c.created),
        "Path": path,
        "Args": args,
        "State": {
            "Status": state_name(s),
            "Running": s.status == Status::Running,
            "Paused": s.is_paused(),
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": false,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": time_or_zero(s.started_at),
            "FinishedAt": time_or_zero(s.finished_at),
        },
        "Image": c.config.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": cs.log_path(&c.id).display().to_string(),
        "Name": format!("/{}", c.name),
        "RestartCount": s.restart_count,
        "Driver": "overlay",
        "Platform": c.config.platform.split('/').next().unwrap_or_default(),
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": {
            "Binds": c.config.mounts,
            "LogConfig": { "Type": "json-file", "Config": c.config.log_options },
            "NetworkMode": network_mode(c),
            "PortBindings": {},
            "RestartPolicy": restart_json(c),
            "AutoRemove": c.config.auto_remove,
            "Memory": c.config.memory.unwrap_or(0),
            "NanoCpus": c.config.cpus.map_or(0, |x| (x * 1e9) as i64),
            "PidsLimit": c.config.pids_limit,
            "Init": c.config.init,
        },
        "GraphDriver": { "Name": "overlay", "Data": null },
        "Mounts": mounts(c),
        "Config": {
            "Hostname": c.config.hostname.clone().unwrap_or_else(|| short_id(&c.id)),
            "Domainname": "",
            "User": c.config.user.clone().unwrap_or_default(),
            "AttachStdin": c.config.open_stdin,
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": c.config.tty,
            "OpenStdin": c.config.open_stdin,
            "StdinOnce": c.config.stdin_once,
            "Env": env,
            "Cmd": c.config.cmd,
            "Image": c.config.image,
            "Volumes": null,
            "WorkingDir": c.config.workdir.clone().unwrap_or_default(),
            "Entrypoint": c.config.entrypoint.as_ref().map(|e| vec![e.clone()]),
            "OnBuild": null,
            "Labels": c.config.labels,
            "StopSignal": c.config.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "Ports": {},
            "Networks": {},
        },
    })
}

/// One reading of `GET /containers/{id}/stats`, with the one before it
/// (`precpu_stats`, from which clients compute the CPU share).
pub fn stats(c: &Container, now: &super::stats::Sample, before: &super::stats::Sample) -> Value {
    let cpu = |s: &super::stats::Sample| {
        json!({
            "cpu_usage": { "total_usage": s.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "system_cpu_usage": s.system_cpu_ns,
            "online_cpus": s.online_cpus,
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        })
    };
    json!({
        "read": rfc3339_nanos(now.read_ns),
        "preread": rfc3339_nanos(before.read_ns),
        "pids_stats": { "current": now.pids },
        "cpu_stats": cpu(now),
        "precpu_stats": cpu(before),
        "memory_stats": { "usage": now.memory, "limit": now.memory_limit, "stats": {} },
        "blkio_stats": {},
        "networks": {},
        "name": format!("/{}", c.name),
        "id": c.id,
    })
}

/// One entry of `GET /containers/json` (and `docker ps --format json`).
pub fn summary(c: &Container) -> Value {
    let (path, args) = command(c);
    let command = std::iter::once(path)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ");
    json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.config.image,
        "ImageID": c.config.image_id,
        "Command": command,
        "Created": c.created / 1_000_000_000,
        "Ports": [],
        "Labels": c.config.labels,
        "State": state_name(&c.state),
        "Status": status_line(c),
        "HostConfig": { "NetworkMode": network_mode(c) },
        "NetworkSettings": { "Networks": {} },
        "Mounts": mounts(c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_docker_words_them() {
        let s = 1_000_000_000;
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(s), "1 second");
        assert_eq!(human_duration(5 * s), "5 seconds");
        assert_eq!(human_duration(90 * s), "About a minute");
        assert_eq!(human_duration(300 * s), "5 minutes");
        assert_eq!(human_duration(3 * 86400 * s), "3 days");
    }
}
