//! Linux images: `wharf bundle` writes the OCI runtime spec wharf runs
//! them with, and a real OCI runtime (runc, Debian's package) runs it.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use crate::harness::Env;

/// Builds `bb`, a linux/amd64 image of Debian's static busybox.
fn busybox_image(env: &Env) {
    build_busybox(
        env,
        "ENV GREETING=ahoy\nWORKDIR /srv\n\
         ENTRYPOINT [\"/bin/busybox\"]\nCMD [\"echo\", \"hello\"]\n",
    )
    .ok();
}

/// `wharf build` of `bb` (linux/amd64): `FROM scratch`, Debian's static
/// busybox at /bin/busybox, then the instructions in `rest`.
pub fn build_busybox(env: &Env, rest: &str) -> crate::harness::Run {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let dockerfile = format!("FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n{rest}");
    let ctx = env.context(
        "bb",
        &[
            ("busybox", &busybox[..]),
            ("Dockerfile", dockerfile.as_bytes()),
        ],
    );
    env.wharf(&[
        "build",
        "--platform",
        "linux/amd64",
        "-t",
        "bb",
        ctx.to_str().unwrap(),
    ])
}

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

/// runc, when this process may use it (root, runc installed).
fn runc() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running bundles needs root");
        return None;
    }
    if Command::new("runc").arg("--version").output().is_err() {
        eprintln!("skipped: runc is not installed (apt-get install runc)");
        return None;
    }
    Some("runc")
}

/// Runs the bundle in `dir` with runc; returns (exit code, stdout, stderr).
fn run_bundle(runc: &str, dir: &Path, id: &str) -> (i32, String, String) {
    let out = Command::new(runc)
        .args(["run", "--bundle"])
        .arg(dir)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new(runc).args(["delete", "-f", id]).output();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bundles_carry_dockers_defaults_and_the_image_config() {
    let env = Env::new();
    busybox_image(&env);
    let dir = env.scratch.path().join("bundle");
    env.wharf(&["bundle", "bb", dir.to_str().unwrap()]).ok();
    assert!(dir.join("rootfs/bin/busybox").is_file());
    let c = config(&dir);
    let p = &c["process"];
    assert_eq!(
        p["args"],
        serde_json::json!(["/bin/busybox", "echo", "hello"])
    );
    assert_eq!(p["cwd"], "/srv");
    let envs: Vec<&str> = p["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        envs.iter().any(|e| e.starts_with("PATH=/usr/local/sbin")),
        "{envs:?}"
    );
    assert!(envs.contains(&"GREETING=ahoy"), "{envs:?}");
    assert_eq!(p["noNewPrivileges"], true);
    let caps = p["capabilities"]["bounding"].as_array().unwrap();
    assert_eq!(caps.len(), 14, "Docker's default set: {caps:?}");
    assert!(caps.contains(&"CAP_CHOWN".into()));
    assert!(!caps.contains(&"CAP_SYS_ADMIN".into()));
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&want), "{ns:?}");
    }
    assert!(c["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .contains(&"/proc/kcore".into()));
    assert!(c["linux"]["readonlyPaths"]
        .as_array()
        .unwrap()
        .contains(&"/proc/sys".into()));

    // Arguments, --entrypoint, -u, -e, --network host.
    let dir2 = env.scratch.path().join("bundle2");
    env.wharf(&[
        "bundle",
        "-u",
        "1000:1000",
        "-e",
        "GREETING=hi",
        "--network",
        "host",
        "--entrypoint",
        "/bin/busybox",
        "bb",
        dir2.to_str().unwrap(),
        "id",
    ])
    .ok();
    let c = config(&dir2);
    assert_eq!(
        c["process"]["args"],
        serde_json::json!(["/bin/busybox", "id"])
    );
    assert_eq!(c["process"]["user"]["uid"], 1000);
    assert_eq!(c["process"]["user"]["gid"], 1000);
    assert!(c["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&"GREETING=hi".into()));
    assert!(!c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "network"));
}

#[test]
fn bad_bundle_requests_fail_and_leave_nothing() {
    let env = Env::new();
    busybox_image(&env);
    env.build_example("hello", "hello");
    let full = env.scratch.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep"), "mine").unwrap();
    env.wharf(&["bundle", "bb", full.to_str().unwrap()])
        .fails(125, "is not empty");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
    let wasm = env.scratch.path().join("wasm");
    env.wharf(&["bundle", "hello", wasm.to_str().unwrap()])
        .fails(125, "is a wasm image");
    assert!(!wasm.exists());
    let user = env.scratch.path().join("user");
    env.wharf(&["bundle", "-u", "nobody", "bb", user.to_str().unwrap()])
        .fails(125, "unable to find user nobody");
    assert!(!user.exists(), "a failed bundle leaves nothing behind");
}

#[test]
fn runc_runs_wharf_bundles_isolated() {
    let env = Env::new();
    busybox_image(&env);
    let Some(runc) = runc() else { return };
    let dir = env.scratch.path().join("b1");
    env.wharf(&["bundle", "bb", dir.to_str().unwrap()]).ok();
    let (code, out, err) = run_bundle(runc, &dir, &format!("wharf-e2e-{}", std::process::id()));
    assert_eq!((code, out.as_str()), (0, "hello\n"), "stderr: {err}");

    // PID 1, own hostname, no host files, read-only /proc/sys, exit code.
    let dir = env.scratch.path().join("b2");
    env.wharf(&[
        "bundle",
        "--hostname",
        "box",
        "bb",
        dir.to_str().unwrap(),
        "sh",
        "-c",
        "echo pid=$$; hostname; ls /; \
         (echo x > /proc/sys/kernel/hostname) 2>/dev/null || echo proc-sys-ro; exit 3",
    ])
    .ok();
    let (code, out, err) = run_bundle(runc, &dir, &format!("wharf-e2e2-{}", std::process::id()));
    assert_eq!(code, 3, "stdout: {out}\nstderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "box");
    assert!(
        !lines.contains(&"home") && !lines.contains(&"root"),
        "host files: {out}"
    );
    assert!(lines.contains(&"proc-sys-ro"), "{out}");
}

/// `wharf run` of the busybox image; None when this process may not run
/// Linux containers (not root).
fn run_linux(env: &Env, args: &[&str]) -> Option<crate::harness::Run> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running Linux containers needs root");
        return None;
    }
    Some(env.wharf(args))
}

#[test]
fn linux_images_run_isolated_in_the_native_backend() {
    let env = Env::new();
    busybox_image(&env);
    let Some(r) = run_linux(&env, &["run", "bb"]) else {
        return;
    };
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello\n"), "{}", r.stderr);

    let r = env.wharf(&[
        "run",
        "--hostname",
        "box",
        "bb",
        "sh",
        "-c",
        "echo pid=$$; hostname; pwd; echo $GREETING; ls /proc/1/fd; ls /; \
         (echo x > /proc/sys/kernel/hostname) 2>/dev/null || echo proc-sys-ro; \
         echo scratch > /new-file; exit 5",
    ]);
    assert_eq!(r.code, 5, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    // PID 1 (the shell, listing its descriptors from a child) holds stdio
    // and no other descriptor of wharf's.
    assert_eq!(&lines[..7], ["pid=1", "box", "/srv", "ahoy", "0", "1", "2"]);
    assert!(
        !lines.contains(&"home") && !lines.contains(&"root"),
        "host files: {}",
        r.stdout
    );
    assert!(lines.contains(&"proc-sys-ro"), "{}", r.stdout);
    // The default seccomp profile is on: no new namespaces, even for a
    // process that could otherwise make a user namespace.
    let r = env.wharf(&[
        "run",
        "bb",
        "sh",
        "-c",
        "grep '^Seccomp:' /proc/self/status; unshare -U true 2>/dev/null || echo unshare-denied",
    ]);
    assert_eq!(r.stdout, "Seccomp:\t2\nunshare-denied\n", "{}", r.stderr);
    // Writes went to that container's own layer, now gone.
    let r = env.wharf(&["run", "bb", "ls", "/new-file"]);
    assert_ne!(r.code, 0, "a container's writes outlived it: {}", r.stdout);
    // No container directory or overlay mount is left behind.
    let containers = env.root.path().join("wharf/overlays");
    let left = std::fs::read_dir(&containers)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
}

#[test]
fn linux_containers_get_read_only_mounts_and_limits() {
    let env = Env::new();
    busybox_image(&env);
    let data = env.scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "host data\n").unwrap();
    let vol = format!("{}:/data:ro", data.display());
    let Some(r) = run_linux(
        &env,
        &[
            "run",
            "-v",
            &vol,
            "bb",
            "sh",
            "-c",
            "cat /data/f; echo x > /data/g || echo denied",
        ],
    ) else {
        return;
    };
    assert_eq!(r.stdout, "host data\ndenied\n", "{}", r.stderr);
    assert!(!data.join("g").exists());

    // A process allocating past --memory is killed (SIGKILL: 137).
    let r = env.wharf(&[
        "run",
        "-m",
        "32m",
        "bb",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(r.code, 137, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("survived"));

    // A fork loop stops at --pids-limit.
    let r = env.wharf(&[
        "run",
        "--pids-limit",
        "8",
        "bb",
        "sh",
        "-c",
        "i=0; while [ $i -lt 20 ]; do sleep 2 & i=$((i+1)); done; wait; echo done",
    ]);
    assert!(
        r.stderr.contains("can't fork"),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn signals_reach_the_container_and_its_exit_code_comes_back() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    busybox_image(&env);
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running Linux containers needs root");
        return;
    }
    let mut child = env
        .cmd(&[
            "run",
            "bb",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-term\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
}

#[test]
fn linux_builds_run_their_steps_in_the_native_backend() {
    let env = Env::new();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: RUN for Linux images needs root");
        return;
    }
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    // The busybox image, plus a file a later layer deletes (a
    // whiteout over a lower layer) and a user from the image's passwd.
    let ctx = env.context(
        "installed",
        &[
            ("busybox", &busybox[..]),
            (
                "Dockerfile",
                b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n\
                  RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                  RUN mkdir -p /etc /srv && echo 'app:x:1000:1000::/srv:/bin/sh' > /etc/passwd \
                      && echo doomed > /srv/gone && echo kept > /srv/kept\n\
                  RUN rm /srv/gone && echo \"built by $0\"\n\
                  USER app\nWORKDIR /srv\n\
                  CMD [\"sh\", \"-c\", \"id -u; ls; readlink /bin/sh\"]\n",
            ),
        ],
    );
    let ctx = ctx.to_str().unwrap();
    let first = env
        .wharf(&["build", "--platform", "linux/amd64", "-t", "installed", ctx])
        .ok();
    assert!(
        first.stderr.contains("| built by /bin/sh"),
        "{}",
        first.stderr
    );
    let r = env.wharf(&["run", "installed"]).ok();
    assert_eq!(r.stdout, "1000\nkept\n/bin/busybox\n", "{}", r.stderr);
    // No mount point or other runtime residue entered a layer, and an
    // unchanged rebuild is cached and identical.
    let again = env
        .wharf(&["build", "--platform", "linux/amd64", "-t", "installed", ctx])
        .ok();
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(
        again.stderr.matches("CACHED").count(),
        7,
        "{}",
        again.stderr
    );
    let bundle = env.scratch.path().join("installed-bundle");
    env.wharf(&["bundle", "installed", bundle.to_str().unwrap()])
        .ok();
    let mut top: Vec<String> = std::fs::read_dir(bundle.join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["bin", "etc", "srv"],
        "the image holds what the steps wrote, no mount points"
    );
    assert!(!bundle.join("rootfs/srv/gone").exists());

    // A failing step fails the build and names no image.
    let before = env.wharf(&["images", "-q"]).ok().stdout;
    build_busybox(
        &env,
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo oops; exit 3\"]\n",
    )
    .fails(125, "exit code 3");
    assert_eq!(env.wharf(&["images", "-q"]).ok().stdout, before);
}

/// Host processes whose command line contains `needle`.
fn processes_running(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn a_killed_run_is_cleaned_up_by_the_next_one() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    busybox_image(&env);
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running Linux containers needs root");
        return;
    }
    let marker = format!("sleep 9{}", std::process::id() % 10);
    let stderr_path = env.scratch.path().join("run.stderr");
    let mut child = env
        .cmd(&["run", "bb", "sh", "-c", &format!("echo ready; {marker}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    // SIGKILL: wharf cannot clean up; its container lives on.
    child.kill().unwrap();
    child.wait().unwrap();
    let containers = env.root.path().join("wharf/overlays");
    assert_eq!(std::fs::read_dir(&containers).unwrap().count(), 1);
    // (Looked for a while: as its shell execs the sleep, the process has
    // no command line to read for a moment.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while processes_running(&marker) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        processes_running(&marker) >= 1,
        "the orphan should still run; wharf's stderr: {:?}; processes: {:?}",
        std::fs::read_to_string(&stderr_path),
        std::process::Command::new("ps")
            .args(["-eo", "pid,ppid,stat,args"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    );
    // The next run finds the orphan and removes it, process and all.
    let r = env.wharf(&["run", "bb"]).ok();
    assert_eq!(r.stdout, "hello\n");
    assert_eq!(std::fs::read_dir(&containers).unwrap().count(), 0);
    // SIGKILL is delivered at once but the process takes a moment to go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while processes_running(&marker) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(processes_running(&marker), 0, "the orphan still runs");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&containers.display().to_string()),
        "a rootfs is still mounted"
    );
}

#[test]
fn exec_joins_a_running_linux_container() {
    let env = Env::new();
    let _cleanup = crate::lifecycle::Cleanup(&env);
    busybox_image(&env);
    let Some(r) = run_linux(&env, &["run", "-d", "--name", "box", "bb", "sleep", "100"]) else {
        return;
    };
    let id = r.ok().stdout.trim().to_owned();
    let bb = "/bin/busybox";

    // The container's environment, working directory, namespaces and
    // host name; the exit code comes back.
    let r = env.wharf(&[
        "exec",
        "-e",
        "X=1",
        "box",
        bb,
        "sh",
        "-c",
        "echo $GREETING $X $(pwd) $$; exit 3",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let words: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(&words[..3], ["ahoy", "1", "/srv"], "{}", r.stdout);
    assert_ne!(words[3], "1", "pid 1 is the container's own process");
    let ps = env.wharf(&["exec", "box", bb, "ps"]).ok().stdout;
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 100")),
        "one pid namespace: {ps}"
    );
    let host = env.wharf(&["exec", "box", bb, "hostname"]).ok().stdout;
    assert_eq!(host.trim(), &id[..12]);
    let r = env.wharf(&[
        "exec",
        "-w",
        "/",
        "-u",
        "1000:1000",
        "box",
        bb,
        "sh",
        "-c",
        "pwd; id -u; id -g",
    ]);
    assert_eq!(r.ok().stdout, "/\n1000\n1000\n");
    let r = env.wharf_stdin(&["exec", "-i", "box", bb, "cat"], "piped\n");
    assert_eq!(r.ok().stdout, "piped\n");
    // The same confinement as the container's own process.
    let status = env
        .wharf(&["exec", "box", bb, "cat", "/proc/self/status"])
        .ok()
        .stdout;
    assert!(
        status.contains("NoNewPrivs:\t1") && status.contains("Seccomp:\t2"),
        "{status}"
    );

    env.wharf(&["exec", "box", "/nope"])
        .fails(127, "executable file not found");
    env.wharf(&["exec", "-w", "/missing", "box", bb, "true"])
        .fails(126, "working directory /missing");
    env.wharf(&["exec", "-w", "/../../etc", "box", bb, "true"])
        .fails(126, "working directory");

    // -d: exec returns once the process started; it runs on, its
    // output discarded. A missing program is still reported.
    let r = env.wharf(&[
        "exec",
        "-d",
        "box",
        bb,
        "sh",
        "-c",
        "echo started > /srv/d; echo lost; exec sleep 99",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    crate::lifecycle::eventually("the detached exec's file and process", || {
        env.wharf(&["exec", "box", bb, "cat", "/srv/d"]).stdout == "started\n"
            && env
                .wharf(&["exec", "box", bb, "ps"])
                .stdout
                .contains("sleep 99")
    });
    env.wharf(&["exec", "-d", "box", "/nope"])
        .fails(127, "executable file not found");
    // top: the container's processes, host pids, as ps -ef shows them.
    let top = env.wharf(&["top", "box"]).ok().stdout;
    let rows: Vec<Vec<&str>> = top
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let init = rows
        .iter()
        .find(|r| r[7..] == ["/bin/busybox", "sleep", "100"])
        .unwrap_or_else(|| panic!("{top}"));
    assert_eq!(init[0], "0");
    let host_pid = init[1];
    assert!(Path::new(&format!("/proc/{host_pid}")).exists(), "{top}");
    assert!(rows.iter().any(|r| r[7..] == ["sleep", "99"]), "{top}");
    let r = env.wharf(&["exec", "-d", "-i", "box", bb, "true"]);
    assert_eq!(r.code, 2, "-d with -i is a usage error: {}", r.stderr);

    // A process exec'd into the container ends with it.
    let mut lingering = env
        .cmd(&["exec", "box", bb, "sleep", "100"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::lifecycle::eventually("the exec'd sleep", || {
        env.wharf(&["exec", "box", bb, "ps"])
            .stdout
            .matches("sleep 100")
            .count()
            == 2
    });
    env.wharf(&["stop", "-t", "1", "box"]).ok();
    crate::lifecycle::eventually("the exec'd process to end", || {
        lingering.try_wait().unwrap().is_some()
    });
    env.wharf(&["exec", "box", bb, "true"])
        .fails(125, "is not running");

    // A wasm guest is one instance: nothing to join.
    env.probe();
    env.wharf(&["run", "-d", "--name", "guest", "probe", "tick", "0", "100"])
        .ok();
    env.wharf(&["exec", "guest", "/probe.wasm"])
        .fails(125, "exec needs a Linux container");
}

#[test]
fn containers_and_execs_get_terminals_with_t() {
    let env = Env::new();
    let _cleanup = crate::lifecycle::Cleanup(&env);
    busybox_image(&env);
    let Some(r) = run_linux(&env, &["run", "-t", "bb", "sh", "-c", "tty; echo $TERM"]) else {
        return;
    };
    // The line discipline of the container's pty: \n becomes \r\n.
    assert_eq!(r.ok().stdout, "/dev/pts/0\r\nxterm\r\n");
    // Piped keys, then end-of-file (Ctrl-D) when the input ends.
    let r = env.wharf_stdin(&["run", "-it", "bb", "sh"], "echo hi\nexit 3\n");
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stdout.contains("hi\r\n"), "{:?}", r.stdout);
    let r = env.wharf_stdin(&["run", "-it", "--name", "named", "bb", "cat"], "line\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("line\r\n"), "{:?}", r.stdout);

    env.wharf(&["run", "-d", "--name", "box", "bb", "sleep", "100"])
        .ok();
    let r = env.wharf(&[
        "exec",
        "-t",
        "box",
        "/bin/busybox",
        "sh",
        "-c",
        "tty >/dev/null && echo $TERM",
    ]);
    assert_eq!(r.ok().stdout, "xterm\r\n");
    let r = env.wharf_stdin(
        &["exec", "-it", "box", "/bin/busybox", "sh"],
        "echo in\nexit 5\n",
    );
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stdout.contains("in\r\n"), "{:?}", r.stdout);
    // Without -t, no terminal.
    let r = env.wharf(&["exec", "box", "/bin/busybox", "tty"]);
    assert_eq!(r.code, 1, "{}", r.stdout);

    // A detached wasm guest's terminal is logged as one raw stream.
    env.probe();
    env.wharf(&["run", "-d", "-t", "--name", "w", "probe", "args", "a", "b"])
        .ok();
    assert_eq!(env.wharf(&["wait", "w"]).ok().stdout.trim(), "0");
    assert_eq!(env.wharf(&["logs", "w"]).ok().stdout, "a\r\nb\r\n");
}

#[test]
fn attach_joins_a_terminal_and_detach_keys_detach() {
    let env = Env::new();
    let _cleanup = crate::lifecycle::Cleanup(&env);
    busybox_image(&env);
    let Some(r) = run_linux(&env, &["run", "-d", "-i", "-t", "--name", "a", "bb", "sh"]) else {
        return;
    };
    r.ok();
    if !crate::harness::require("script") {
        return;
    }
    // `wharf ARGS` on a fresh terminal (script(1) makes one), and a pipe
    // to type into it.
    let at_terminal = |args: &str| {
        let line = format!(
            "{} --root {} {args}",
            crate::harness::wharf_bin().display(),
            env.root.path().display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let keys = child.stdin.take().unwrap();
        (child, keys)
    };
    let logged = |name: &str, text: &str| {
        crate::lifecycle::eventually(&format!("{text} in the log of {name}"), || {
            env.wharf(&["logs", name]).stdout.contains(text)
        });
    };
    let running = |name: &str| {
        let ps = env.wharf(&["ps"]).ok().stdout;
        assert!(
            ps.lines().any(|l| l.ends_with(&format!(" {name}"))),
            "{name} still running: {ps}"
        );
    };
    // How `child` ended, once it has.
    let ended = |mut child: std::process::Child, what: &str| {
        crate::lifecycle::eventually(what, || child.try_wait().unwrap().is_some());
        child.wait().unwrap()
    };
    // `wharf ARGS` at a terminal: `command` typed runs (`output` reaches
    // the log of `name`), then `detach` keys end the client, not the
    // container. (Keys go once the client has the terminal in raw mode,
    // that is once the command ran: typed ahead, the line discipline
    // would take Ctrl-Q for flow control.)
    let detaches = |args: &str, name: &str, command: &[u8], output: &str, detach: &[u8]| {
        let (child, mut keys) = at_terminal(args);
        keys.write_all(command).unwrap();
        logged(name, output);
        keys.write_all(detach).unwrap();
        assert!(ended(child, &format!("{args} to detach")).success());
        running(name);
    };
    detaches(
        "attach a",
        "a",
        b"echo via-$((20+22))\n",
        "via-42",
        b"\x10\x11",
    );

    // Other keys, in Docker's notation: Ctrl-P Ctrl-Q now reach the
    // shell, and Ctrl-A d detaches.
    let (mut child, mut keys) = at_terminal("attach --detach-keys ctrl-a,d a");
    keys.write_all(b"echo again-$((1+2))\n").unwrap();
    logged("a", "again-3");
    keys.write_all(b"\x10\x11").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "detached on Ctrl-P Ctrl-Q"
    );
    keys.write_all(b"\x01d").unwrap();
    assert!(ended(child, "the attach to detach on Ctrl-A d").success());
    running("a");

    // `run -it --detach-keys` makes a container to leave running; its
    // terminal takes input from the next attach too (no StdinOnce for a
    // terminal, as with Docker).
    detaches(
        "run -it --detach-keys ctrl-x,x --name once bb sh",
        "once",
        b"echo first-$((2+2))\n",
        "first-4",
        b"\x18x",
    );
    let (child, mut keys) = at_terminal("attach once");
    keys.write_all(b"echo second-$((3+3))\nexit 7\n").unwrap();
    let status = ended(child, "the attach to end with the container");
    assert_eq!(status.code(), Some(7));
    logged("once", "second-6");
    drop(keys);

    // Keys that are not Docker's notation: a usage error.
    let r = env.wharf(&["attach", "--detach-keys", "ctrl-1", "a"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("invalid detach keys \"ctrl-1\""),
        "{}",
        r.stderr
    );
    env.wharf(&["stop", "-t", "1", "a"]).ok();
    env.wharf(&["attach", "a"]).fails(125, "is not running");
}

#[test]
fn a_containers_files_survive_stop_and_start_until_rm() {
    let env = Env::new();
    let _cleanup = crate::lifecycle::Cleanup(&env);
    busybox_image(&env);
    let script = "echo run >> /srv/note; cat /srv/note";
    let Some(r) = run_linux(
        &env,
        &["create", "--name", "keep", "bb", "sh", "-c", script],
    ) else {
        return;
    };
    let id = r.ok().stdout.trim().to_owned();
    for _ in 0..2 {
        env.wharf(&["start", "keep"]).ok();
        assert_eq!(env.wharf(&["wait", "keep"]).ok().stdout.trim(), "0");
    }
    // The second run saw the first run's line: one writable layer.
    assert_eq!(env.wharf(&["logs", "keep"]).ok().stdout, "run\nrun\nrun\n");
    let rw = env
        .root
        .path()
        .join("wharf/containers")
        .join(&id)
        .join("rw/upper/srv/note");
    assert!(rw.exists(), "{} missing", rw.display());
    // Another container of the image starts from the image's files.
    let r = env.wharf(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "cat /srv/note || echo fresh",
    ]);
    assert_eq!(r.ok().stdout, "fresh\n");
    env.wharf(&["rm", "keep"]).ok();
    assert!(!env.root.path().join("wharf/containers").join(&id).exists());
}

#[test]
fn init_reaps_zombies_and_passes_signals_on() {
    let env = Env::new();
    let _cleanup = crate::lifecycle::Cleanup(&env);
    busybox_image(&env);
    let bb = "/bin/busybox";
    // An orphan whose parent is gone: PID 1 inherits it when it exits.
    let orphan = "(/bin/busybox sleep 0.1 &); exec /bin/busybox sleep 100";
    let Some(r) = run_linux(
        &env,
        &["run", "-d", "--name", "bare", "bb", "sh", "-c", orphan],
    ) else {
        return;
    };
    r.ok();
    if !crate::harness::require("tini-static") {
        return;
    }
    env.wharf(&[
        "run", "-d", "--init", "--name", "init", "bb", "sh", "-c", orphan,
    ])
    .ok();
    // Process states, from inside each container.
    let states = |name: &str| -> Vec<(String, String)> {
        let out = env
            .wharf(&[
                "exec",
                name,
                bb,
                "sh",
                "-c",
                "for s in /proc/[0-9]*/stat; do /bin/busybox cat $s; echo; done",
            ])
            .ok()
            .stdout;
        out.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.nth(1)?.to_owned(), w.next()?.to_owned()))
            })
            .collect()
    };
    crate::lifecycle::eventually("the orphan to exit", || {
        states("bare").iter().any(|(_, s)| s == "Z")
    });
    assert_eq!(
        states("bare")[0].0,
        "(busybox)",
        "PID 1 is the process itself"
    );
    let with_init = states("init");
    assert_eq!(with_init[0].0, "(docker-init)", "{with_init:?}");
    assert!(
        !with_init.iter().any(|(_, s)| s == "Z"),
        "the init reaped the orphan: {with_init:?}"
    );
    // The init passes SIGTERM on to the process (PID 1 `sleep` alone
    // ignores it), so the stop needs no SIGKILL: 143, not 137.
    env.wharf(&["stop", "-t", "20", "init"]).ok();
    assert_eq!(env.wharf(&["wait", "init"]).ok().stdout.trim(), "143");
    let v: serde_json::Value =
        serde_json::from_str(&env.wharf(&["inspect", "init"]).ok().stdout).unwrap();
    assert_eq!(v[0]["HostConfig"]["Init"], true);
    // The host's program is mounted read-only.
    let r = env.wharf(&[
        "run",
        "--rm",
        "--init",
        "bb",
        "sh",
        "-c",
        "echo x > /sbin/docker-init",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
}

#[test]
fn a_busybox_image_built_here_goes_through_the_registry_and_runs() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running Linux containers needs root");
        return;
    }
    if !crate::harness::require("docker-registry") {
        return;
    }
    let reg = crate::registry_harness::Registry::plain();
    let env = Env::new();
    // The image: FROM scratch, the binary, RUN --install.
    build_busybox(
        &env,
        "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"sh\"]\n",
    )
    .ok();
    let remote = format!("{}/tools/bb:1", reg.host());
    env.wharf(&["tag", "bb", &remote]).ok();
    env.wharf(&["push", &remote]).ok();

    // Another store: only the registry has it.
    let other = Env::new();
    let r = other.wharf(&["pull", &remote]).ok();
    assert!(r.stdout.contains("sha256:") || r.stderr.contains("sha256:"));
    let r = other.wharf(&[
        "run",
        "--rm",
        &remote,
        "sh",
        "-c",
        "echo $$; readlink /bin/sh",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "1\n/bin/busybox\n"),
        "{}",
        r.stderr
    );
    let mine = env.wharf(&["inspect", &remote]).ok().stdout;
    let theirs = other.wharf(&["inspect", &remote]).ok().stdout;
    let id = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()[0]["Id"].clone();
    assert_eq!(
        id(&mine),
        id(&theirs),
        "the same image id after the round trip"
    );
}

#[test]
fn layers_are_unpacked_once_and_shared_between_images() {
    let env = Env::new();
    busybox_image(&env);
    let derived = env.context(
        "derived",
        &[(
            "Dockerfile",
            b"FROM bb\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo more > /more\"]\n",
        )],
    );
    let Some(r) = run_linux(
        &env,
        &[
            "build",
            "--platform",
            "linux/amd64",
            "-t",
            "derived",
            derived.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    r.ok();
    let layers = env.root.path().join("wharf/layers");
    let count = || std::fs::read_dir(&layers).map_or(0, |d| d.count());
    assert_eq!(env.wharf(&["run", "--rm", "bb"]).ok().stdout, "hello\n");
    let base = count();
    let manifest: serde_json::Value =
        serde_json::from_str(&env.wharf(&["inspect", "bb"]).ok().stdout).unwrap();
    assert_eq!(
        base,
        manifest[0]["RootFS"]["Layers"].as_array().unwrap().len()
    );
    let r = env.wharf(&["run", "--rm", "derived", "cat", "/more"]).ok();
    assert_eq!(r.stdout, "more\n");
    assert_eq!(
        count(),
        base + 1,
        "the base layers are shared, not unpacked again"
    );
    env.wharf(&["rmi", "derived"]).ok();
    assert_eq!(count(), base, "the derived image's own layer went with it");
    env.wharf(&["rmi", "bb"]).ok();
    assert_eq!(count(), 0);
}

#[test]
fn mount_destinations_resolve_inside_the_container() {
    let env = Env::new();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running Linux containers needs root");
        return;
    }
    // The image makes /data a link to an absolute host path: a runtime
    // that resolved mount destinations on the host would mount the
    // volume there (and create it).
    let escape = env.scratch.path().join("escape");
    build_busybox(
        &env,
        &format!(
            "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN ln -s {} /data && ln -s /../../../.. /up\n",
            escape.display()
        ),
    )
    .ok();
    let data = env.scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "volume\n").unwrap();
    let vol = format!("{}:/data", data.display());
    let r = env
        .wharf(&[
            "run",
            "-v",
            &vol,
            "-w",
            "/up/up",
            "bb",
            "sh",
            "-c",
            &format!("cat /data/f; ls {}; pwd; ls /", escape.display()),
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(&lines[..3], ["volume", "f", "/"], "{}", r.stdout);
    assert!(!escape.exists(), "a mount followed the image's link out");
    // The working directory resolved in the container too: `..` above
    // its root stays at its root.
    assert!(
        lines.contains(&"data") && !lines.contains(&"home"),
        "{}",
        r.stdout
    );

    // A volume inside another one lands there (its mount point made in
    // the outer volume, as Docker makes it), attached onto the entry
    // found without a link.
    let inner = env.scratch.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(inner.join("g"), "inner\n").unwrap();
    let outer = format!("{}:/mnt", data.display());
    let nested = format!("{}:/mnt/sub:ro", inner.display());
    let r = env
        .wharf(&[
            "run",
            "-v",
            &outer,
            "-v",
            &nested,
            "bb",
            "cat",
            "/mnt/f",
            "/mnt/sub/g",
        ])
        .ok();
    assert_eq!(r.stdout, "volume\ninner\n", "{}", r.stderr);
    assert!(data.join("sub").is_dir());
    // A link planted in the outer volume (as another container sharing
    // it could) is not followed to place the inner one.
    std::fs::remove_dir(data.join("sub")).unwrap();
    std::os::unix::fs::symlink("/bin", data.join("sub")).unwrap();
    env.wharf(&["run", "-v", &outer, "-v", &nested, "bb", "true"])
        .fails(125, "mount /mnt/sub: the path must have no link in it");
    // Through the image's link, the outer volume's place is its own: a
    // volume inside it is refused rather than placed in the image.
    env.wharf(&[
        "run",
        "-v",
        &vol,
        "-v",
        &format!("{}:/data/sub", inner.display()),
        "bb",
        "true",
    ])
    .fails(125, "inside the mount at");
}

#[test]
fn image_paths_cannot_reach_the_host_or_wharf() {
    let env = Env::new();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running Linux containers needs root");
        return;
    }
    build_busybox(
        &env,
        "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN printf '#!/proc/self/exe\\n' > /again && chmod +x /again \
             && ln -s /dev /devlink\n",
    )
    .ok();
    let escape = env.scratch.path().join("escape");
    for fd in 3..12 {
        // Through a descriptor of wharf's that reached the container,
        // `/proc/self/fd/N/..` would be the host's tree: as a working
        // directory (made as root before the user switch) and as PATH.
        let up = format!("/proc/self/fd/{fd}{}", "/..".repeat(12));
        let wd = format!("{up}{}/wd{fd}", escape.display());
        env.wharf(&["run", "-w", &wd, "bb", "true"]);
        let path = format!("PATH={up}/bin:{up}/usr/bin");
        let r = env.wharf(&["run", "-e", &path, "bb", "sh", "-c", "exit 0"]);
        assert_eq!(r.code, 127, "fd {fd}: a host program ran: {}", r.stderr);
    }
    assert!(!escape.exists(), "a directory was made on the host");

    // /proc/self/exe, as the program or as a script's interpreter, is
    // never wharf's executable: neither runs wharf.
    for args in [
        &["run", "--entrypoint", "/proc/self/exe", "bb", "--version"][..],
        &["run", "bb", "/again", "--version"][..],
    ] {
        let r = env.wharf(args);
        assert_ne!(r.code, 0, "{args:?}: {}", r.stdout);
        assert!(
            !r.stdout.contains("wharf"),
            "{args:?} ran wharf: {}",
            r.stdout
        );
    }

    // An image whose /proc is a link (here through a link in its /dev,
    // which the /dev tmpfs would then hide) cannot move where procfs is
    // mounted, away from the masked and read-only paths: refused.
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let ctx = env.context(
        "links",
        &[
            ("busybox", &busybox[..]),
            ("root/p/kk/.keep", b""),
            (
                "Dockerfile",
                b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY root/ /\n\
                  ENTRYPOINT [\"/bin/busybox\"]\n",
            ),
        ],
    );
    std::fs::create_dir_all(ctx.join("root/dev")).unwrap();
    std::os::unix::fs::symlink("/dev/lnk/kk", ctx.join("root/proc")).unwrap();
    std::os::unix::fs::symlink("/p", ctx.join("root/dev/lnk")).unwrap();
    env.wharf(&[
        "build",
        "--platform",
        "linux/amd64",
        "-t",
        "links",
        ctx.to_str().unwrap(),
    ])
    .ok();
    env.wharf(&["run", "links", "cat", "/p/kk/sys/kernel/core_pattern"])
        .fails(125, "mount /proc");

    // A volume cannot land over /dev (here through the image's link) or
    // /proc's files.
    let data = env.scratch.path().join("vol");
    std::fs::create_dir(&data).unwrap();
    for dest in ["/devlink", "/proc/sys", "/dev/null"] {
        let vol = format!("{}:{dest}", data.display());
        env.wharf(&["run", "-v", &vol, "bb", "true"])
            .fails(125, "a volume cannot replace");
    }
}
