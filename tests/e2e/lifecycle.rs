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

/// `wharf inspect NAME`'s one object (the command prints an array, as
/// `docker inspect`).
fn inspect(env: &Env, name: &str) -> serde_json::Value {
    let out = env.wharf(&["inspect", name]).ok().stdout;
    let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
    v[0].take()
}

/// `wharf run -d ARGS...`, which must succeed: the new container's id.
fn run_detached(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    env.wharf(&all).ok().stdout.trim().to_owned()
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
    let id = run_detached(&env, &["--name", "ticker", "probe", "tick", "0", "50"]);
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
    // --since and --until by the time a line was logged (its own
    // timestamp: both bounds include it), and by a duration.
    let second = stamped.lines().nth(1).unwrap();
    let (at, text) = second.split_once(' ').unwrap();
    let since = env.wharf(&["logs", "--since", at, "ticker"]).ok().stdout;
    assert_eq!(since.lines().next(), Some(text), "{since}");
    let until = env.wharf(&["logs", "--until", at, "ticker"]).ok().stdout;
    assert_eq!(until, "tick 1\ntick 2\n");
    let recent = env.wharf(&["logs", "--since", "1h", "ticker"]).ok().stdout;
    assert!(recent.starts_with("tick 1\n"), "{recent}");
    env.wharf(&["logs", "--since", "yesterday", "ticker"])
        .fails(125, "invalid time \"yesterday\"");

    // The name is taken while the container exists.
    env.wharf(&["run", "-d", "--name", "ticker", "probe", "exit", "0"])
        .fails(125, "already in use");
    // A running container is not removed without -f.
    env.wharf(&["rm", "ticker"]).fails(1, "is running");

    let top = env.wharf(&["top", "ticker"]).ok().stdout;
    assert!(
        top.starts_with("UID") && top.trim_end().ends_with("/probe.wasm tick 0 50"),
        "{top}"
    );
    // stats: the guest's monitor, its memory and threads.
    let stats = env.wharf(&["stats", "--no-stream", "ticker"]).ok().stdout;
    let row: Vec<&str> = stats
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.len(), 8, "{stats}");
    assert_eq!((row[0], row[1]), (&id[..12], "ticker"), "{stats}");
    assert!(row[2].ends_with('%') && row[3].ends_with("MiB"), "{stats}");
    assert!(row[7].parse::<u32>().is_ok_and(|n| n >= 1), "{stats}");
    env.wharf(&["stop", "ticker"]).ok();
    assert_eq!(env.wharf(&["wait", "ticker"]).ok().stdout.trim(), "143");
    env.wharf(&["top", "ticker"]).fails(125, "is not running");
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
fn rename_moves_a_running_containers_name() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let id = run_detached(&env, &["--name", "old", "probe", "tick", "0", "50"]);
    env.wharf(&["run", "-d", "--name", "other", "probe", "exit", "0"])
        .ok();
    env.wharf(&["rename", "old", "new"]).ok();
    // The new name finds the running container, its log and its record.
    eventually("a tick under the new name", || {
        env.wharf(&["logs", "new"]).stdout.contains("tick 1")
    });
    let v = inspect(&env, "new");
    assert_eq!(
        (v["Id"].as_str(), v["Name"].as_str()),
        (Some(&id[..]), Some("/new"))
    );
    let ps = env.wharf(&["ps"]).ok().stdout;
    assert!(ps.contains(" new") && !ps.contains(" old"), "{ps}");
    // The old name is gone and free for another container.
    env.wharf(&["logs", "old"])
        .fails(125, "no such container: old");
    env.wharf(&["run", "-d", "--name", "old", "probe", "exit", "0"])
        .ok();
    // A taken name, an invalid one and the same one are refused; nothing
    // changes.
    env.wharf(&["rename", "new", "other"])
        .fails(125, "already in use");
    env.wharf(&["rename", "new", "bad/name"])
        .fails(125, "invalid container name");
    env.wharf(&["rename", "new", "new"])
        .fails(125, "already named new");
    // ps --filter: a status filter lists stopped containers without -a.
    let exited = env.wharf(&["ps", "-f", "status=exited"]).ok().stdout;
    assert!(
        exited.contains(" other") && !exited.contains(" new"),
        "{exited}"
    );
    let named = env.wharf(&["ps", "-a", "-f", "name=ne"]).ok().stdout;
    assert!(
        named.contains(" new") && !named.contains(" other"),
        "{named}"
    );
    env.wharf(&["ps", "-f", "color=red"])
        .fails(125, "invalid filter \"color\"");
    env.wharf(&["rename", "nobody", "x"])
        .fails(125, "no such container: nobody");
    assert_eq!(inspect(&env, &id[..12])["Name"], "/new");
    // Removal frees the new name, also when the monitor removes a
    // renamed --rm container itself.
    env.wharf(&["rm", "-f", "new"]).ok();
    env.wharf(&[
        "run", "-d", "--rm", "--name", "r1", "probe", "tick", "0", "50",
    ])
    .ok();
    env.wharf(&["rename", "r1", "r2"]).ok();
    env.wharf(&["stop", "r2"]).ok();
    let names = env.root.path().join("wharf/containers/.names");
    eventually("the --rm container to be gone", || {
        env.wharf(&["ps", "-a"]).ok().stdout.lines().count() == 3
    });
    for n in ["new", "r1", "r2"] {
        assert!(!names.join(n).exists(), "{n} left behind");
    }
}

/// The numbers of `tick N` lines, checked to run on one by one.
fn consecutive_ticks(out: &str) -> Vec<u64> {
    let ticks: Vec<u64> = out
        .lines()
        .map(|l| l.strip_prefix("tick ").and_then(|n| n.parse().ok()))
        .collect::<Option<_>>()
        .unwrap_or_else(|| panic!("not all ticks: {out}"));
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "gaps or repeats: {out}"
    );
    ticks
}

#[test]
fn logs_rotate_at_max_size_and_keep_max_file_files() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let id = run_detached(
        &env,
        &[
            "--name",
            "chatty",
            "--log-opt",
            "max-size=8k",
            "--log-opt",
            "max-file=3",
            "probe",
            "tick",
            "0",
            "5",
        ],
    );
    // A follower from the start sees every line once, through the
    // rotations.
    let follow = env
        .cmd(&["logs", "-f", "chatty"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dir = env.root.path().join("wharf/containers").join(&id);
    eventually("several rotations", || {
        env.wharf(&["logs", "--tail", "1", "chatty"])
            .stdout
            .trim()
            .strip_prefix("tick ")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 600)
    });
    env.wharf(&["stop", "chatty"]).ok();
    let followed = follow.wait_with_output().unwrap();
    let followed = consecutive_ticks(&String::from_utf8_lossy(&followed.stdout));
    assert_eq!(followed[0], 1);
    // Three files of at most 8 KiB: the newest lines, up to the last.
    for f in ["log.json", "log.json.1", "log.json.2"] {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(len <= 8192, "{f}: {len} bytes");
    }
    assert!(!dir.join("log.json.3").exists());
    let kept = consecutive_ticks(&env.wharf(&["logs", "chatty"]).ok().stdout);
    assert_eq!(kept.last(), followed.last());
    assert!(kept.len() < followed.len() && kept[0] > 1, "{kept:?}");
    let v = inspect(&env, "chatty");
    assert_eq!(
        v["HostConfig"]["LogConfig"],
        serde_json::json!({"Type": "json-file", "Config": {"max-size": "8k", "max-file": "3"}})
    );
    // Options the driver does not have, or without their partner, are
    // refused at create.
    env.wharf(&["run", "-d", "--log-opt", "max-file=2", "probe", "exit", "0"])
        .fails(125, "max-file needs max-size");
    env.wharf(&[
        "run",
        "-d",
        "--log-opt",
        "compress=true",
        "probe",
        "exit",
        "0",
    ])
    .fails(125, "unknown log option \"compress\"");
    assert_eq!(env.wharf(&["ps", "-aq"]).ok().stdout.lines().count(), 1);
    // A container that writes nothing has no log file, and empty logs.
    let silent = run_detached(&env, &["probe", "exit", "0"]);
    assert_eq!(env.wharf(&["wait", &silent]).ok().stdout.trim(), "0");
    let dir = env.root.path().join("wharf/containers").join(&silent);
    // Nor any lock file or leftover: its locks are bytes of its state.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["config.json", "monitor.log", "state.json"]);
    assert_eq!(env.wharf(&["logs", &silent]).ok().stdout, "");
    assert_eq!(env.wharf(&["logs", "-f", &silent]).ok().stdout, "");
}

#[test]
fn attach_shows_output_from_now_on() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    env.wharf(&["run", "-d", "--name", "t", "probe", "tick", "40", "50"])
        .ok();
    eventually("three ticks", || {
        env.wharf(&["logs", "t"]).stdout.contains("tick 3\n")
    });
    // As docker attach: no replay of what was logged before.
    let r = env.wharf(&["attach", "t"]);
    let ticks = consecutive_ticks(&r.ok().stdout);
    assert!(ticks[0] > 3, "{ticks:?}");
    assert_eq!(ticks.last(), Some(&40));
}

#[test]
fn pause_suspends_a_guest_until_unpause() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    env.wharf(&["run", "-d", "--name", "p", "probe", "tick", "0", "20"])
        .ok();
    let ticks = || env.wharf(&["logs", "p"]).ok().stdout.lines().count();
    eventually("two ticks", || ticks() >= 2);
    env.wharf(&["pause", "p"]).ok();
    let ps = env.wharf(&["ps"]).ok().stdout;
    assert!(ps.contains("(Paused)"), "{ps}");
    let v = inspect(&env, "p");
    assert_eq!(
        (
            &v["State"]["Status"],
            &v["State"]["Paused"],
            &v["State"]["Running"]
        ),
        (
            &serde_json::json!("paused"),
            &serde_json::json!(true),
            &serde_json::json!(true)
        )
    );
    // No tick while paused.
    let before = ticks();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(ticks(), before);
    env.wharf(&["pause", "p"]).fails(1, "is already paused");
    env.wharf(&["unpause", "p"]).ok();
    eventually("ticks again", || ticks() > before + 2);
    env.wharf(&["unpause", "p"]).fails(1, "is not paused");
    // A paused container still stops: it is resumed for the signal.
    env.wharf(&["pause", "p"]).ok();
    env.wharf(&["stop", "p"]).ok();
    assert_eq!(env.wharf(&["wait", "p"]).ok().stdout.trim(), "143");
    assert_eq!(
        inspect(&env, "p")["State"]["Paused"],
        serde_json::json!(false)
    );
    env.wharf(&["pause", "p"]).fails(1, "is not running");
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

    // Named and --rm in the foreground: the code comes back although the
    // container is already gone; -i feeds it this command's input.
    let r = env.wharf(&["run", "--rm", "--name", "gone", "probe", "exit", "4"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let r = env.wharf_stdin(
        &["run", "-i", "--rm", "--name", "fed", "probe", "stdin"],
        "to the guest\n",
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "to the guest\n"),
        "{}",
        r.stderr
    );
    assert!(!env.wharf(&["ps", "-a"]).ok().stdout.contains("fed"));

    // --rm: gone after it exits; wait still gets its code.
    let id = run_detached(&env, &["--rm", "probe", "exit", "5"]);
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

/// `system df --format json`: the row of `kind` (total, active, size,
/// reclaimable).
fn df(env: &Env, kind: &str) -> serde_json::Value {
    let out = env.wharf(&["system", "df", "--format", "json"]).ok().stdout;
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} row in {out}"))
}

fn blob_count(env: &Env) -> usize {
    env.store_state()
        .iter()
        .filter(|(p, _)| p.starts_with("blobs/sha256/"))
        .count()
}

#[test]
fn system_prune_keeps_what_containers_use() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    env.build_example("hello", "hello");

    env.wharf(&["run", "-d", "--name", "busy", "probe", "tick", "0", "100"])
        .ok();
    env.wharf(&["run", "-d", "--name", "done", "hello"]).ok();
    assert_eq!(env.wharf(&["wait", "done"]).ok().stdout.trim(), "0");

    let images = df(&env, "Images");
    assert_eq!(images["total"], 2, "{images}");
    assert_eq!(images["active"], 2, "probe and hello have containers");
    let containers = df(&env, "Containers");
    assert_eq!(
        (containers["total"].as_u64(), containers["active"].as_u64()),
        (Some(2), Some(1))
    );
    let table = env.wharf(&["system", "df"]).ok().stdout;
    assert!(
        table.starts_with("TYPE") && table.contains("Build Cache"),
        "{table}"
    );

    // An image a container uses keeps its last name unless forced; forced,
    // only the name goes and the container still starts.
    env.wharf(&["rmi", "probe"])
        .fails(125, "in use by container");
    assert!(env.wharf(&["images"]).ok().stdout.contains("probe"));
    env.wharf(&["rmi", "-f", "probe"]).ok();
    assert!(!env.wharf(&["images"]).ok().stdout.contains("probe"));
    // (`rmi` collected garbage.) Blobs no name reaches: the first `junk`
    // after its tag moved on.
    let ctx = env.context(
        "junk",
        &[("Dockerfile", b"FROM scratch\nCOPY a /a\n"), ("a", b"1")],
    );
    env.wharf(&["build", "-t", "junk", ctx.to_str().unwrap()])
        .ok();
    std::fs::write(ctx.join("a"), "2").unwrap();
    env.wharf(&["build", "-t", "junk", ctx.to_str().unwrap()])
        .ok();

    // Declined: nothing goes.
    let images_state = || {
        let mut s = env.store_state();
        s.retain(|(p, _)| !p.starts_with("wharf/containers/"));
        s
    };
    let before = images_state();
    env.wharf_stdin(&["system", "prune"], "n\n")
        .fails(1, "nothing removed");
    assert_eq!(images_state(), before);
    assert!(env.wharf(&["ps", "-a"]).ok().stdout.contains("done"));

    let blobs = blob_count(&env);
    let out = env.wharf(&["system", "prune", "-f"]).ok().stdout;
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    let ps = env.wharf(&["ps", "-a"]).ok().stdout;
    assert!(ps.contains("busy") && !ps.contains("done"), "{ps}");
    assert!(blob_count(&env) < blobs, "the unreferenced junk blobs went");
    let names = env.wharf(&["images"]).ok().stdout;
    assert!(
        names.contains("hello") && names.contains("junk"),
        "named images stay: {names}"
    );

    // -a: every image no container uses; the running container's image
    // (unnamed now) stays and it restarts from it.
    env.wharf(&["system", "prune", "-a", "-f"]).ok();
    let names = env.wharf(&["images", "-q"]).ok().stdout;
    assert!(names.trim().is_empty(), "{names}");
    assert_eq!(df(&env, "Images")["total"], 1);
    env.wharf(&["restart", "-t", "1", "busy"]).ok();
    eventually("ticks after the restart", || {
        inspect(&env, "busy")["State"]["Status"] == "running"
            && env.wharf(&["logs", "busy"]).stdout.contains("tick")
    });
    env.wharf(&["rm", "-f", "busy"]).ok();
    env.wharf(&["system", "prune", "-a", "-f"]).ok();
    assert_eq!(blob_count(&env), 0, "{:?}", env.store_state());
    let images = df(&env, "Images");
    assert_eq!(
        (images["total"].as_u64(), images["size"].as_u64()),
        (Some(0), Some(0))
    );
}

/// Now, as a Unix timestamp: `--until` this replays what happened so far.
fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// `wharf events` of the last hour up to now, with `args`.
fn replay(env: &Env, args: &[&str]) -> String {
    let until = now();
    let mut all = vec!["events", "--since", "1h", "--until", &until];
    all.extend_from_slice(args);
    env.wharf(&all).ok().stdout
}

#[test]
fn events_report_what_happened_to_containers_and_images() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let start = replay(&env, &[]);
    assert!(start.contains(" image tag "), "{start}");

    // A follower started before anything happens sees it as it happens
    // (by label: the container is renamed on the way).
    let mut follower = env
        .cmd(&["events", "--filter", "label=tier=a", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut actions = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let action = v["Action"].as_str().unwrap().to_owned();
            actions.push((action.clone(), v["Actor"]["Attributes"].clone()));
            if action == "destroy" {
                break;
            }
        }
        actions
    });
    // Events from before the follower opened the journal are not shown.
    std::thread::sleep(Duration::from_millis(500));
    run_detached(
        &env,
        &[
            "--name", "ev", "--label", "tier=a", "probe", "tick", "0", "100",
        ],
    );
    env.wharf(&["pause", "ev"]).ok();
    env.wharf(&["unpause", "ev"]).ok();
    env.wharf(&["rename", "ev", "ev2"]).ok();
    env.wharf(&["stop", "ev2"]).ok();
    env.wharf(&["rm", "ev2"]).ok();
    eventually("the follower to see destroy", || lines.is_finished());
    let _ = follower.kill();
    let _ = follower.wait();
    let actions = lines.join().unwrap();
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    let all = [
        "create", "start", "pause", "unpause", "rename", "kill", "die", "stop", "destroy",
    ];
    assert_eq!(names, all, "{actions:?}");
    assert_eq!(actions[0].1["name"], "ev");
    assert_eq!(actions[0].1["image"], "probe");
    assert_eq!(actions[4].1["oldName"], "ev");
    assert_eq!(actions[8].1["name"], "ev2");

    // Everything, replayed with a filter by event.
    let out = replay(&env, &["--filter", "type=container"]);
    let seen: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(seen, all, "{out}");
    assert!(out.contains("oldName=ev,"), "{out}");
    assert!(out.contains("exitCode=143"), "{out}");
    let dies = replay(&env, &["-f", "event=die", "-f", "event=destroy"]);
    assert_eq!(dies.lines().count(), 2, "{dies}");
    env.wharf(&["events", "--filter", "network=x"])
        .fails(125, "invalid filter \"network\"");
}
