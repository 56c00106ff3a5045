//! Containers that outlive the command: `run -d`, `ps`, `logs`, `stop`,
//! `kill`, `rm`, `wait`, restart policies, and what `ps` says after a
//! monitor dies.

use std::time::{Duration, Instant};

use crate::harness::Env;

/// Removes every container of the env when dropped, so no monitor
/// outlives its test (and its temporary root).
pub struct Cleanup<'a>(pub &'a Env);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ids = self.0.wharf(&["ps", "-aq"]).stdout;
        for id in ids.split_whitespace() {
            self.0.wharf(&["rm", "-f", id]);
        }
    }
}

fn inspect(env: &Env, name: &str) -> serde_json::Value {
    let out = env.wharf(&["inspect", name]).ok().stdout;
    serde_json::from_str(&out).unwrap()
}

/// Polls `check` for up to 30 s (these machines are slow and shared:
/// nothing here is a timing assertion, only a bound on a hang).
#[track_caller]
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn detached_containers_run_log_stop_and_are_removed() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let id = env
        .wharf(&["run", "-d", "--name", "ticker", "probe", "tick", "0", "50"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64, "docker prints the full id: {id}");
    let ps = env.wharf(&["ps"]).ok().stdout;
    assert!(ps.contains("ticker") && ps.contains("Up"), "{ps}");
    eventually("two log lines", || {
        env.wharf(&["logs", "ticker"]).stdout.contains("tick 2")
    });
    let tail = env.wharf(&["logs", "--tail", "1", &id[..12]]).ok().stdout;
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let stamped = env.wharf(&["logs", "-t", "ticker"]).ok().stdout;
    assert!(
        stamped.starts_with("20") && stamped.contains("Z tick 1"),
        "{stamped}"
    );

    // The name is taken while the container exists.
    env.wharf(&["run", "-d", "--name", "ticker", "probe", "exit", "0"])
        .fails(125, "already in use");
    // A running container is not removed without -f.
    env.wharf(&["rm", "ticker"]).fails(1, "is running");

    env.wharf(&["stop", "ticker"]).ok();
    assert_eq!(env.wharf(&["wait", "ticker"]).ok().stdout.trim(), "143");
    let v = inspect(&env, "ticker");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 143);
    assert_eq!(v["Name"], "/ticker");
    assert_eq!(v["Path"], "/probe.wasm");
    assert!(!env.wharf(&["ps"]).ok().stdout.contains("ticker"));
    let all = env.wharf(&["ps", "-a"]).ok().stdout;
    assert!(all.contains("Exited (143)"), "{all}");
    // The log survives the stop, complete up to the last line.
    let before = env.wharf(&["logs", "ticker"]).ok().stdout;
    assert!(before.lines().all(|l| l.starts_with("tick ")), "{before}");

    env.wharf(&["rm", "ticker"]).ok();
    assert!(!env.root.path().join("wharf/containers").join(&id).exists());
    env.wharf(&["inspect", "ticker"]).fails(125, "ticker");
    // The name is free again.
    env.wharf(&["run", "-d", "--name", "ticker", "probe", "exit", "0"])
        .ok();
    assert_eq!(env.wharf(&["wait", "ticker"]).ok().stdout.trim(), "0");
}

#[test]
fn a_stop_reaches_a_guest_blocked_in_a_host_call() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    // One tick, then a 100 s sleep: the guest is inside poll_oneoff, where
    // epoch interruption cannot reach it.
    env.wharf(&[
        "run", "-d", "--name", "sleeper", "probe", "tick", "2", "100000",
    ])
    .ok();
    eventually("the first tick", || {
        env.wharf(&["logs", "sleeper"]).stdout.contains("tick 1")
    });
    // A 60 s grace period: 143 (not 137) shows the stop signal ended it,
    // without the SIGKILL fallback.
    env.wharf(&["stop", "-t", "60", "sleeper"]).ok();
    let v = inspect(&env, "sleeper");
    assert_eq!(v["State"]["ExitCode"], 143, "{v}");
    assert_eq!(v["State"]["Running"], false);

    // kill: SIGKILL by default, recorded as 137.
    env.wharf(&["run", "-d", "--name", "victim", "probe", "tick", "0", "100"])
        .ok();
    env.wharf(&["kill", "victim"]).ok();
    assert_eq!(env.wharf(&["wait", "victim"]).ok().stdout.trim(), "137");
    env.wharf(&["kill", "victim"]).fails(1, "is not running");
}

#[test]
fn restart_policies_foreground_names_and_auto_remove() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    env.wharf(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "probe",
        "exit",
        "3",
    ])
    .ok();
    eventually("two restarts", || {
        let v = inspect(&env, "flaky");
        v["RestartCount"] == 2 && v["State"]["Status"] == "exited"
    });
    let v = inspect(&env, "flaky");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    env.wharf(&["run", "--restart", "sometimes", "probe", "exit", "0"])
        .fails(125, "invalid restart policy");

    // A named run in the foreground streams its output, returns its exit
    // code and leaves the container behind (as docker run does).
    let fg = env.wharf(&["run", "--name", "fg", "probe", "stderr", "to-stderr"]);
    assert_eq!(fg.code, 0, "{}", fg.stderr);
    assert!(fg.stderr.contains("to-stderr"), "{}", fg.stderr);
    let fg = env.wharf(&["run", "--name", "fg2", "probe", "exit", "7"]);
    assert_eq!(fg.code, 7);
    assert!(env.wharf(&["ps", "-a"]).ok().stdout.contains("fg2"));
    let logs = env.wharf(&["logs", "fg"]).ok();
    assert!(logs.stderr.contains("to-stderr") && logs.stdout.is_empty());

    // --rm: gone after it exits; wait still gets its code.
    let id = env
        .wharf(&["run", "-d", "--rm", "probe", "exit", "5"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    eventually("the auto-removal", || {
        !env.wharf(&["ps", "-aq"]).stdout.contains(&id[..12])
    });
    let json = env.wharf(&["ps", "-a", "--format", "json"]).ok().stdout;
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["Names"][0].as_str().unwrap().starts_with('/'));
    }
}

#[test]
fn a_container_whose_monitor_is_killed_is_reported_dead() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    env.wharf(&["run", "-d", "--name", "orphan", "probe", "tick", "0", "100"])
        .ok();
    let pid = inspect(&env, "orphan")["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    eventually("the monitor's death to show", || {
        inspect(&env, "orphan")["State"]["Status"] == "dead"
    });
    let v = inspect(&env, "orphan");
    assert_eq!(v["State"]["ExitCode"], 255);
    assert!(v["State"]["Error"].as_str().unwrap().contains("monitor"));
    env.wharf(&["rm", "orphan"]).ok();
}

#[test]
fn container_errors_are_one_line() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    env.wharf(&["start", "nope"])
        .fails(1, "no such container: nope");
    env.wharf(&["logs", "nope"]).fails(125, "no such container");
    env.wharf(&["run", "-d", "--name", "bad/name", "probe"])
        .fails(125, "invalid container name");
    env.wharf(&["run", "-d", "--name", "x", "probe", "tick", "0", "100"])
        .ok();
    env.wharf(&["start", "x"]).fails(1, "already running");
    // A module that does not exist fails the start, with Docker's 127.
    let r = env.wharf(&["run", "-d", "--entrypoint", "/nope.wasm", "probe"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(r.stderr.contains("/nope.wasm"), "{}", r.stderr);
}
