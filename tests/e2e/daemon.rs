//! `wharf daemon` driven by real Docker clients: the `docker` CLI and the
//! Python `docker` SDK, against wasm and Linux images, plus the API's
//! error shapes, 100 concurrent containers and a daemon killed with -9.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use crate::harness::{probe_wasm, require, Env};
use crate::lifecycle::{eventually, Cleanup};

/// A running `wharf daemon` on a socket in the env's scratch directory.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(env: &Env) -> Daemon {
        let socket = env.scratch.path().join("wharf.sock");
        let host = format!("unix://{}", socket.display());
        let child = env
            .cmd(&["daemon", "--host", &host])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually("the daemon's socket", || {
            UnixStream::connect(&socket).is_ok()
        });
        Daemon { child, socket }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs the docker CLI against this daemon.
    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env(
                "DOCKER_CONFIG",
                self.socket.parent().unwrap().join("docker-config"),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// One raw HTTP/1.0 request; (status, body).
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        // The daemon may answer before reading all of an oversized body.
        let _ = s.write_all(body);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, body.to_owned())
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a Python program with the docker SDK pointed at the daemon.
fn python(d: &Daemon, program: &str) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(program)
        .env("DOCKER_HOST", d.host())
        .output()
        .unwrap()
}

fn has_python_sdk() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import docker"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python docker SDK is missing in CI: .ci/run must install it"
        );
        eprintln!("skipping: the Python docker SDK is not installed (pip install docker)");
    }
    ok
}

#[test]
fn the_docker_cli_drives_wasm_containers() {
    if !require("docker") {
        return;
    }
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let d = Daemon::start(&env);

    let v = d.docker_ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Client.APIVersion}}",
    ]);
    assert_eq!(v.trim(), "1.43 1.43", "the CLI negotiates down to 1.43");
    assert!(d.docker_ok(&["images"]).contains("probe"));
    let filtered = |f: &str| d.docker_ok(&["images", "--filter", f, "--format", "{{.Repository}}"]);
    assert_eq!(filtered("reference=pro*"), "probe\n");
    assert_eq!(filtered("reference=hello"), "");
    assert_eq!(filtered("dangling=false"), "probe\n");
    assert!(!d.docker(&["images", "--filter", "size=1"]).status.success());
    assert_eq!(d.docker_ok(&["run", "--rm", "probe", "args", "hi"]), "hi\n");
    let o = d.docker(&["run", "--rm", "probe", "exit", "3"]);
    assert_eq!(o.status.code(), Some(3));
    let o = d.docker(&[
        "run",
        "--rm",
        "--platform",
        "wasi/wasm",
        "probe",
        "stderr",
        "oops",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "oops\n",
        "stderr stays stderr"
    );
    // docker run -i: the input reaches the guest, and its end ends it.
    let fed = Command::new("sh")
        .args([
            "-c",
            "printf 'in\\nput\\n' | docker run -i --rm probe stdin",
        ])
        .env("DOCKER_HOST", d.host())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fed.stdout), "in\nput\n");
    assert!(fed.status.success());
    assert!(
        d.docker_ok(&["ps", "-a", "-q"]).trim().is_empty(),
        "--rm removed them"
    );

    let id = d.docker_ok(&["run", "-d", "--name", "first", "probe", "tick", "0", "50"]);
    assert_eq!(id.trim().len(), 64);
    // docker rename of the running container; a taken name is a conflict.
    d.docker_ok(&["rename", "first", "x"]);
    assert_eq!(d.docker_ok(&["ps", "--format", "{{.Names}}"]), "x\n");
    d.docker_ok(&["create", "--name", "taken", "probe"]);
    let o = d.docker(&["rename", "x", "taken"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already in use"),
        "{o:?}"
    );
    d.docker_ok(&["rm", "taken"]);
    // docker top: the guest runs in its monitor, shown with its command.
    let top = d.docker_ok(&["top", "x"]);
    let pid = d.docker_ok(&["inspect", "--format", "{{.State.Pid}}", "x"]);
    let row = top.lines().nth(1).unwrap_or_default();
    assert_eq!(row.split_whitespace().nth(1), Some(pid.trim()), "{top}");
    assert!(row.ends_with(" /probe.wasm tick 0 50"), "{top}");
    let o = d.docker(&["top", "x", "aux"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not supported"),
        "{o:?}"
    );
    // `logs -f` follows until the container stops.
    let follow = Command::new("docker")
        .args(["logs", "-f", "x"])
        .env("DOCKER_HOST", d.host())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("ticks", || d.docker_ok(&["logs", "x"]).contains("tick 3"));
    // docker logs --until: the CLI sends a timestamp; lines after it stay
    // out, and a followed log ends there.
    let stamped = d.docker_ok(&["logs", "-t", "x"]);
    let at = stamped
        .lines()
        .nth(1)
        .unwrap()
        .split_once(' ')
        .unwrap()
        .0
        .to_owned();
    assert_eq!(
        d.docker_ok(&["logs", "--until", &at, "x"]),
        "tick 1\ntick 2\n"
    );
    assert_eq!(
        d.docker_ok(&["logs", "--since", &at, "x"]).lines().next(),
        Some("tick 2")
    );
    d.docker_ok(&["stop", "x"]);
    let followed = follow.wait_with_output().unwrap();
    assert!(followed.status.success());
    let followed = String::from_utf8_lossy(&followed.stdout);
    assert!(
        followed.starts_with("tick 1\ntick 2\ntick 3\n"),
        "{followed}"
    );
    assert_eq!(d.docker_ok(&["wait", "x"]).trim(), "143");
    // A status filter lists stopped containers without -a, as Docker's.
    assert_eq!(
        d.docker_ok(&["ps", "-f", "status=exited", "--format", "{{.Names}}"]),
        "x\n"
    );
    let state = d.docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}} {{.Name}}",
        "x",
    ]);
    assert_eq!(state.trim(), "exited 143 /x");
    d.docker_ok(&["rm", "x"]);
    let o = d.docker(&["inspect", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such object"));
    // --log-opt rotates the json-file log; other drivers are refused.
    let numbers: Vec<String> = (1..=300).map(|i| i.to_string()).collect();
    let mut args = vec![
        "run",
        "-d",
        "--name",
        "rot",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "probe",
        "args",
    ];
    args.extend(numbers.iter().map(String::as_str));
    d.docker_ok(&args);
    assert_eq!(d.docker_ok(&["wait", "rot"]).trim(), "0");
    let kept: Vec<u32> = d
        .docker_ok(&["logs", "rot"])
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(kept.len() > 10 && kept.len() < 300, "{kept:?}");
    assert_eq!(kept, ((301 - kept.len() as u32)..=300).collect::<Vec<_>>());
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "--format",
            "{{json .HostConfig.LogConfig}}",
            "rot"
        ])
        .trim(),
        r#"{"Type":"json-file","Config":{"max-file":"2","max-size":"1k"}}"#
    );
    d.docker_ok(&["rm", "rot"]);
    let o = d.docker(&["run", "--log-driver", "syslog", "probe", "exit", "0"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("log driver \"syslog\" is not supported"),
        "{o:?}"
    );
    // The CLI and the daemon share one store: wharf sees what docker made.
    d.docker_ok(&["run", "-d", "--name", "shared", "probe", "exit", "0"]);
    assert_eq!(env.wharf(&["wait", "shared"]).ok().stdout.trim(), "0");

    // Disk usage and pruning: the image of a container stays.
    d.docker_ok(&["run", "-d", "--name", "busy", "probe", "tick", "0", "100"]);
    let df = d.docker_ok(&["system", "df"]);
    assert!(df.contains("Images") && df.contains("Build Cache"), "{df}");
    let o = d.docker(&["rmi", "probe"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use by container"), "{err}");
    let pruned = d.docker_ok(&["system", "prune", "-a", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let ps = d.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(
        ps, "busy\n",
        "stopped containers went, the running one stayed"
    );
    assert!(d.docker_ok(&["images"]).contains("probe"));
    d.docker_ok(&["rm", "-f", "busy"]);
    d.docker_ok(&["system", "prune", "-a", "-f"]);
    assert!(!d.docker_ok(&["images"]).contains("probe"));
}

#[test]
fn docker_pull_and_the_python_sdk_use_the_registry() {
    if !require("docker") || !require("docker-registry") || !has_python_sdk() {
        return;
    }
    let reg = crate::registry_harness::Registry::plain();
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let remote = format!("{}/tools/probe:1", reg.host());
    env.wharf(&["tag", "probe", &remote]).ok();
    env.wharf(&["push", &remote]).ok();
    env.wharf(&["rmi", &remote]).ok();
    env.wharf(&["rmi", "probe"]).ok();

    let d = Daemon::start(&env);
    let pulled = d.docker_ok(&["pull", &remote]);
    assert!(pulled.contains("Digest: sha256:"), "{pulled}");
    assert!(d.docker_ok(&["images"]).contains("tools/probe"));
    assert_eq!(
        d.docker_ok(&["run", "--rm", &remote, "args", "pulled"]),
        "pulled\n"
    );

    let program = format!(
        r#"
import docker, time
c = docker.from_env()
img = c.images.pull("{host}/tools/probe", tag="1")
assert "{host}/tools/probe:1" in img.tags, img.tags
out = c.containers.run(img.tags[0], ["args", "from", "python"], remove=True)
assert out == b"from\npython\n", out
bg = c.containers.run(img.tags[0], ["tick", "0", "50"], detach=True, name="py")
assert [x.name for x in c.containers.list()] == ["py"]
while b"tick 2" not in bg.logs():
    time.sleep(0.05)
bg.stop(timeout=5)
assert bg.wait()["StatusCode"] == 143
bg.remove()
try:
    c.containers.run(img.tags[0], ["exit", "4"], remove=True)
    raise SystemExit("no ContainerError")
except docker.errors.ContainerError as e:
    assert e.exit_status == 4
try:
    c.containers.get("nope")
    raise SystemExit("no NotFound")
except docker.errors.NotFound:
    pass
print("ok")
"#,
        host = reg.host()
    );
    let o = python(&d, &program);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok",
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The daemon, with `bb`: busybox with its commands installed and `sh` as
/// CMD. None, with the reason printed, where Linux containers cannot run
/// (not root) or one of `tools` is missing.
fn linux_daemon(env: &Env, tools: &[&str]) -> Option<Daemon> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: Linux containers need root");
        return None;
    }
    if !tools.iter().all(|t| require(t)) {
        return None;
    }
    crate::linux::build_busybox(
        env,
        "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"sh\"]\n",
    )
    .ok();
    Some(Daemon::start(env))
}

#[test]
fn the_docker_cli_drives_linux_containers() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    let Some(d) = linux_daemon(&env, &["docker"]) else {
        return;
    };
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "bb",
        "sh",
        "-c",
        "hostname; echo $$; ls /proc/1/fd; true",
    ]);
    // PID 1 (the shell, listing its descriptors from a child) holds
    // stdio and nothing else: no descriptor of the daemon, its monitor
    // server or the forked monitor leaks in.
    assert_eq!(out, "box\n1\n0\n1\n2\n");
    let o = d.docker(&["run", "--rm", "bb", "sh", "-c", "exit 9"]);
    assert_eq!(o.status.code(), Some(9));
    // docker build through the daemon: the RUN step runs in a container.
    let ctx = env.context(
        "bbctx",
        &[(
            "Dockerfile",
            b"FROM bb\nRUN echo \"built in $(hostname)\" > /built\nCMD [\"cat\", \"/built\"]\n",
        )],
    );
    d.docker_ok(&["build", "-t", "bb-built", ctx.to_str().unwrap()]);
    let built = d.docker_ok(&["run", "--rm", "bb-built"]);
    assert!(built.starts_with("built in "), "{built}");
    let fed = Command::new("sh")
        .args([
            "-c",
            "echo piped | docker run -i --rm bb sh -c 'cat; exit 6'",
        ])
        .env("DOCKER_HOST", d.host())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fed.stdout), "piped\n");
    assert_eq!(fed.status.code(), Some(6));
    // Detached with -i: input comes from later attaches.
    d.docker_ok(&["run", "-d", "-i", "--name", "reader", "bb", "cat"]);
    // (An attach lasts as long as the container, as Docker's does.)
    let mut attach = Command::new("sh")
        .args(["-c", "echo attached | docker attach reader"])
        .env("DOCKER_HOST", d.host())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the line in the log", || {
        d.docker_ok(&["logs", "reader"]) == "attached\n"
    });
    d.docker_ok(&["rm", "-f", "reader"]);
    eventually("the attach to end with the container", || {
        attach.try_wait().unwrap().is_some()
    });
    if crate::harness::require("tini-static") {
        let comm = d.docker_ok(&["run", "--rm", "--init", "bb", "cat", "/proc/1/comm"]);
        assert_eq!(comm, "docker-init\n");
    }
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "bb",
        "sh",
        "-c",
        "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.1; done",
    ]);
    eventually("the service to start", || {
        d.docker_ok(&["logs", "svc"]).contains("up")
    });
    // docker stats: a busy container's CPU, its memory against its limit.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hog",
        "-m",
        "64m",
        "bb",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    let stats = d.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
        "hog",
    ]);
    let words: Vec<&str> = stats.split_whitespace().collect();
    assert_eq!(
        (words.len(), words[0], words[4]),
        (6, "hog", "64MiB"),
        "{stats}"
    );
    let cpu: f64 = words[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 10.0, "a busy loop's CPU: {stats}");
    assert!(words[2] != "0B" && words[5] == "1", "{stats}");
    d.docker_ok(&["rm", "-f", "hog"]);
    // docker pause freezes the container's cgroup; unpause thaws it.
    let id = d.docker_ok(&["inspect", "--format", "{{.Id}}", "svc"]);
    let freezer = format!("/sys/fs/cgroup/freezer/wharf/{}/freezer.state", &id[..12]);
    let frozen = || {
        std::fs::read_to_string(&freezer)
            .ok()
            .map(|s| s.trim().to_owned())
    };
    d.docker_ok(&["pause", "svc"]);
    if std::path::Path::new(&freezer).exists() {
        assert_eq!(frozen().as_deref(), Some("FROZEN"));
    }
    assert_eq!(
        d.docker_ok(&[
            "ps",
            "--filter",
            "status=paused",
            "--format",
            "{{.Names}} {{.Status}}"
        ])
        .trim_end()
        .split_once(' ')
        .map(|(n, s)| (n.to_owned(), s.ends_with("(Paused)"))),
        Some(("svc".to_owned(), true))
    );
    let o = d.docker(&["pause", "svc"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already paused"),
        "{o:?}"
    );
    d.docker_ok(&["unpause", "svc"]);
    if std::path::Path::new(&freezer).exists() {
        assert_eq!(frozen().as_deref(), Some("THAWED"));
    }
    let lines = d.docker_ok(&["logs", "svc"]).len();
    d.docker_ok(&["exec", "svc", "sh", "-c", "echo thawed >/proc/1/fd/1"]);
    eventually("output after unpause", || {
        d.docker_ok(&["logs", "svc"]).len() > lines
    });
    // exec: output, exit code, stdin, options; the Python SDK's exec_run.
    let o = d.docker(&["exec", "svc", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let piped = Command::new("sh")
        .args(["-c", "echo piped | docker exec -i svc cat"])
        .env("DOCKER_HOST", d.host())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "piped\n");
    let out = d.docker_ok(&[
        "exec",
        "-e",
        "A=1",
        "-w",
        "/bin",
        "-u",
        "1000",
        "svc",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u)",
    ]);
    assert_eq!(out, "1 /bin 1000\n");
    assert_eq!(d.docker(&["exec", "svc", "nope"]).status.code(), Some(127));
    if has_python_sdk() {
        let o = python(
            &d,
            "import docker\nr = docker.from_env().containers.get('svc').exec_run(['sh', '-c', 'echo py; exit 2'])\nprint(r.exit_code, r.output.decode().strip())",
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "2 py",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    d.docker_ok(&["stop", "svc"]);
    assert_eq!(d.docker_ok(&["wait", "svc"]).trim(), "0");
    assert_eq!(d.docker_ok(&["logs", "svc"]), "up\nthawed\ngot TERM\n");
    d.docker_ok(&["run", "-d", "--name", "hard", "bb", "sleep", "100"]);
    d.docker_ok(&["kill", "hard"]);
    assert_eq!(d.docker_ok(&["wait", "hard"]).trim(), "137");
    d.docker_ok(&["rm", "svc", "hard"]);
}

/// Starts `command` (a shell command line) on a fresh terminal that
/// `script` from util-linux makes, its input piped, its output to `out`.
fn spawn_at_terminal(d: &Daemon, command: &str, out: Stdio) -> Child {
    Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("DOCKER_HOST", d.host())
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs `command` on a fresh terminal of `rows` x `cols` with `input`
/// typed into it, as a user at a terminal would.
fn at_terminal(d: &Daemon, rows: u16, cols: u16, command: &str, input: &str) -> Output {
    let out = tempfile::NamedTempFile::new().unwrap();
    let line = format!("stty rows {rows} cols {cols}; {command}");
    let mut child = spawn_at_terminal(d, &line, out.reopen().unwrap().into());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    // A client that hangs fails the test instead of holding up the suite.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} at a terminal did not end within a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(out.path()).unwrap(),
        stderr: Vec::new(),
    }
}

/// `client` (a docker command line that runs a shell command in a
/// container) on a terminal of `size` (rows, columns): the shell reads
/// the `typed` line and reports it and its terminal's size, then exits
/// with `code`, which the client passes on.
fn sized_terminal_answers(d: &Daemon, client: &str, size: (u16, u16), typed: &str, code: i32) {
    let command = format!("{client} sh -c 'read x; echo got $x; stty size; exit {code}'");
    let o = at_terminal(d, size.0, size.1, &command, &format!("{typed}\n"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(code), "{out}");
    let expected = format!("got {typed}\r\n{} {}\r\n", size.0, size.1);
    assert!(out.contains(&expected), "{out:?}");
}

#[test]
fn docker_run_and_exec_get_terminals() {
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    let Some(d) = linux_daemon(&env, &["docker", "script"]) else {
        return;
    };
    // -t alone: the process's stdio is a terminal (\n becomes \r\n).
    let out = d.docker_ok(&["run", "-t", "--rm", "bb", "sh", "-c", "tty; echo $TERM"]);
    assert_eq!(out, "/dev/pts/0\r\nxterm\r\n");
    // -it at a terminal: keys in, the client's size, the exit code out.
    sized_terminal_answers(&d, "docker run -it --rm bb", (33, 99), "typed", 4);

    // The docker CLI detaches itself on Ctrl-P Ctrl-Q: the container
    // keeps running (closing its input does not end a terminal's).
    // (The keys go once the CLI has the terminal in raw mode: typed
    // ahead, the line discipline would take Ctrl-Q for flow control.)
    let mut child = spawn_at_terminal(&d, "docker run -it --name kept bb sh", Stdio::null());
    let mut keys = child.stdin.take().unwrap();
    keys.write_all(b"echo typed-$((1+1))\n").unwrap();
    eventually("the typed command's output", || {
        String::from_utf8_lossy(&d.docker(&["logs", "kept"]).stdout).contains("typed-2")
    });
    keys.write_all(b"\x10\x11").unwrap();
    eventually("the CLI to detach", || child.try_wait().unwrap().is_some());
    drop(keys);
    assert_eq!(
        d.docker_ok(&["inspect", "--format", "{{.State.Running}}", "kept"])
            .trim(),
        "true"
    );
    d.docker_ok(&["rm", "-f", "kept"]);

    d.docker_ok(&["run", "-d", "--name", "box", "bb", "sleep", "100"]);
    let out = d.docker_ok(&[
        "exec",
        "-t",
        "box",
        "sh",
        "-c",
        "tty >/dev/null && echo tty",
    ]);
    assert_eq!(out, "tty\r\n");
    sized_terminal_answers(&d, "docker exec -it box", (40, 120), "keys", 5);

    if has_python_sdk() {
        // The SDK's resize of a detached container's terminal, then
        // input through an attach.
        let o = python(
            &d,
            "import docker, time\n\
             c = docker.from_env().containers.run('bb', ['sh', '-c', 'read x; stty size'], tty=True, stdin_open=True, detach=True)\n\
             c.resize(height=25, width=70)\n\
             s = c.attach_socket(params={'stdin': 1, 'stream': 1})\n\
             s._sock.sendall(b'go\\n')\n\
             print(c.wait()['StatusCode'], repr(c.logs()))\n\
             c.remove()",
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            r"0 b'go\r\n25 70\r\n'",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    if has_python_sdk() {
        // The daemon finds the detach keys itself (the SDK does not): the
        // attach's and the exec's connections close, their processes go on.
        let o = python(
            &d,
            "import docker, time\n\
             api = docker.from_env().api\n\
             c = docker.from_env().containers.run('bb', ['sh'], tty=True, stdin_open=True, detach=True)\n\
             s = c.attach_socket(params={'stdin': 1, 'stream': 1, 'detachKeys': 'ctrl-x,y'})._sock\n\
             s.settimeout(30)\n\
             s.sendall(b'echo in-$((4+4))\\n')\n\
             while b'in-8' not in c.logs(): time.sleep(0.05)\n\
             s.sendall(b'\\x10\\x11\\x18y')\n\
             while s.recv(4096): pass\n\
             e = api.exec_create(c.id, ['sh'], stdin=True, tty=True, detach_keys='ctrl-z')\n\
             x = api.exec_start(e['Id'], socket=True, tty=True)._sock\n\
             x.settimeout(30)\n\
             x.sendall(b'\\x1a')\n\
             while x.recv(4096): pass\n\
             c.reload()\n\
             print(c.status, api.exec_inspect(e['Id'])['Running'])\n\
             c.remove(force=True)",
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "running True",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Detach keys not in Docker's notation are refused.
    d.docker_ok(&["run", "-d", "-it", "--name", "held", "bb", "sh"]);
    let (status, body) = d.request(
        "POST",
        "/v1.43/containers/held/attach?stream=1&stdin=1&detachKeys=ctrl-",
        b"",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid detach keys"), "{body}");
    let (status, body) = d.request(
        "POST",
        "/v1.43/containers/held/exec",
        br#"{"Cmd":["true"],"DetachKeys":"a,bc"}"#,
    );
    assert_eq!(status, 400, "{body}");
    d.docker_ok(&["rm", "-f", "held"]);
    // A resize of a container that is not running is refused.
    d.docker_ok(&["create", "--name", "idle", "-t", "bb"]);
    let (status, body) = d.request("POST", "/v1.43/containers/idle/resize?h=10&w=10", b"");
    assert_eq!(status, 409, "{body}");
    d.docker_ok(&["rm", "-f", "box", "idle"]);
}

#[test]
fn docker_build_and_the_python_sdk_build_through_the_api() {
    if !require("docker") || !has_python_sdk() {
        return;
    }
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    let d = Daemon::start(&env);
    let probe = std::fs::read(probe_wasm()).unwrap();
    // The last stage fails: built only when no --target stops before it.
    let dockerfile = b"ARG WHO=nobody
FROM scratch AS app
ARG WHO
COPY probe.wasm /probe.wasm
ENV WHO=${WHO}
ENTRYPOINT [\"/probe.wasm\"]
CMD [\"env\"]

FROM app
COPY missing.txt /missing.txt
";
    let ctx = env.context("ctx", &[("Dockerfile", dockerfile), ("probe.wasm", &probe)]);
    let ctx = ctx.to_str().unwrap();

    let out = d.docker_ok(&[
        "build",
        "--build-arg",
        "WHO=cli",
        "--target",
        "app",
        "-t",
        "built:cli",
        ctx,
    ]);
    assert!(out.contains("Successfully tagged built:cli"), "{out}");
    let run = d.docker_ok(&["run", "--rm", "built:cli"]);
    assert!(run.contains("WHO=cli\n"), "{run}");
    let failed = d.docker(&["build", "-t", "built:all", ctx]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("\"missing.txt\" not found"), "{stderr}");

    let before = env.store_state();
    let (status, body) = d.request("POST", "/v1.43/build?t=x&pull=1", b"");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pull is not supported"), "{body}");
    assert_eq!(env.store_state(), before, "a refused build changes nothing");

    let program = format!(
        r#"
import docker, io, tarfile
c = docker.from_env()
img, _ = c.images.build(path={ctx:?}, tag="built:py", buildargs={{"WHO": "py"}}, target="app")
assert "built:py" in img.tags, img.tags
out = c.containers.run("built:py", remove=True).decode()
assert "WHO=py\n" in out, out
try:
    c.images.build(path={ctx:?}, tag="built:pyall")
    raise SystemExit("the failing stage was built")
except docker.errors.BuildError as e:
    assert "missing.txt" in str(e), e

def context(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, link in files:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
            else:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf

def error_of(files, dockerfile=None):
    chunks = list(c.api.build(fileobj=context(files), custom_context=True, tag="evil",
                              dockerfile=dockerfile, decode=True))
    return chunks[-1].get("error", "")

e = error_of([("Dockerfile", b"FROM scratch\n", None), ("../escaped", b"x", None)])
assert "'..'" in e and "escaped" in e, e
e = error_of([("Dockerfile", b"", "/etc/passwd")])
assert e == "Cannot locate specified Dockerfile: Dockerfile", e
# A directory link out of the context, then a path through it.
e = error_of([("d", b"", "/etc"), ("x", b"", None)], dockerfile="d/passwd")
assert e == "Cannot locate specified Dockerfile: d/passwd", e
print("ok")
"#
    );
    let o = python(&d, &program);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok"),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let images = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains("evil"), "{images}");
    // The hostile contexts left nothing behind: no file escaped the
    // context, and the temporary directories are gone.
    let after = env.store_state();
    assert!(
        after.iter().all(|(p, _)| !p.contains("escaped")),
        "{after:?}"
    );
    assert!(
        after.iter().all(|(p, _)| !p.contains("/tmp/build-")),
        "{after:?}"
    );
}

#[test]
fn docker_events_and_the_python_sdk_follow_events() {
    if !require("docker") || !has_python_sdk() {
        return;
    }
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let d = Daemon::start(&env);
    // Followed live through the SDK while the SDK makes them.
    let o = python(
        &d,
        r#"
import docker, threading, time
c = docker.from_env()
events = c.events(decode=True, filters={"type": "container"})
def work():
    time.sleep(0.5)
    c.containers.run("probe", ["exit", "3"], name="evpy", detach=True).wait()
    c.containers.get("evpy").remove()
threading.Thread(target=work).start()
seen = []
for e in events:
    seen.append(e["Action"] + ":" + e["Actor"]["Attributes"].get("exitCode", ""))
    if e["Action"] == "destroy":
        break
print(" ".join(seen))
"#,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "create: start: die:3 destroy:",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Replayed by the docker CLI; the CLI's own containers are there too.
    env.wharf(&["run", "--name", "evcli", "probe", "exit", "0"])
        .ok();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let out = d.docker_ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        &until.to_string(),
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(out, "evpy 3\nevcli 0\n");
    let (status, body) = d.request(
        "GET",
        "/v1.43/events?filters=%7B%22network%22%3A%5B%22x%22%5D%7D",
        b"",
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn api_errors_have_docker_shapes() {
    let env = Env::new();
    let d = Daemon::start(&env);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "the socket is the access boundary");

    let (status, body) = d.request("GET", "/v1.43/containers/nope/json", b"");
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("no such container: nope"));

    let (status, body) = d.request("POST", "/v1.43/commit?container=x", b"");
    assert_eq!(status, 501);
    assert!(
        body.contains("wharf does not implement POST /commit"),
        "{body}"
    );
    // A build of an empty context fails in the stream, as Docker's.
    let (status, body) = d.request("POST", "/v1.43/build", b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""error":"Cannot locate specified Dockerfile: Dockerfile""#),
        "{body}"
    );

    let (status, body) = d.request("GET", "/v1.12/version", b"");
    assert_eq!(status, 400);
    assert!(body.contains("too old"), "{body}");

    let (status, body) = d.request("POST", "/containers/create", b"{not json");
    assert_eq!(status, 400);
    assert!(body.contains("invalid container configuration"), "{body}");

    let (status, body) = d.request("POST", "/containers/create", br#"{"Image":"absent"}"#);
    assert_eq!(status, 404);
    assert!(body.contains("No such image: absent"), "{body}");

    let big = vec![b' '; 2 << 20];
    let (status, _) = d.request("POST", "/containers/create", &big);
    assert_eq!(status, 413, "request bodies are capped");
    assert!(env.wharf(&["ps", "-aq"]).ok().stdout.is_empty());
}

#[test]
fn a_hundred_concurrent_containers_all_finish_with_their_output() {
    if !has_python_sdk() {
        return;
    }
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let d = Daemon::start(&env);
    // create + start + wait + logs + remove, 100 at once; container i
    // prints its number and exits with i % 7.
    let program = r#"
import docker, threading, concurrent.futures as cf
# One client per thread: docker-py keeps one connection pool per URL in an
# LRU of 25 and closes evicted pools under a thread still using them, so a
# client shared by 100 threads fails on its own side.
local = threading.local()
def client():
    if not hasattr(local, "c"):
        local.c = docker.from_env(timeout=300)
    return local.c
def one(i):
    args = ["args", str(i)] if i % 7 == 0 else ["exit", str(i % 7)]
    ct = client().containers.create("probe", args)
    ct.start()
    code = ct.wait()["StatusCode"]
    out = ct.logs()
    ct.remove()
    return i, code, out
with cf.ThreadPoolExecutor(100) as pool:
    results = list(pool.map(one, range(100)))
bad = [r for r in results if r[1] != r[0] % 7 or (r[0] % 7 == 0 and r[2] != f"{r[0]}\n".encode())]
assert not bad, bad
assert client().containers.list(all=True) == []
print(len(results))
"#;
    let o = python(&d, program);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "100",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The guest host ran the hundred containers, a thread each, and
    // keeps none of those threads (only its own and its runtime's).
    let host = guest_host(&d);
    eventually("the guest host to let its guests go", || {
        stat_field(host, 18).is_some_and(|n| n.parse::<u32>().unwrap() < 10)
    });
}

#[test]
fn containers_outlive_a_killed_daemon() {
    if !require("docker") {
        return;
    }
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let mut d = Daemon::start(&env);
    // A plain wasm container runs on a thread of the daemon's guest host;
    // one with a restart policy gets a monitor of its own, forked by the
    // monitor server.
    d.docker_ok(&[
        "run", "-d", "--name", "survivor", "probe", "tick", "0", "50",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "monitored",
        "--restart",
        "on-failure",
        "probe",
        "tick",
        "0",
        "50",
    ]);
    // And one that sleeps in a host call for ten minutes.
    d.docker_ok(&[
        "run", "-d", "--name", "sleeper", "probe", "tick", "0", "600000",
    ]);
    for name in ["survivor", "monitored", "sleeper"] {
        eventually("a tick", || d.docker_ok(&["logs", name]).contains("tick 1"));
    }
    let pid = |d: &Daemon, name: &str| -> u32 {
        d.docker_ok(&["inspect", "--format", "{{.State.Pid}}", name])
            .trim()
            .parse()
            .unwrap()
    };
    let host = pid(&d, "survivor");
    assert_eq!(parent_of(host), d.child.id());
    assert!(cmdline(host).contains("guest-host"), "{}", cmdline(host));
    let monitor = pid(&d, "monitored");
    let server = parent_of(monitor);
    assert_eq!(parent_of(server), d.child.id());
    assert!(
        cmdline(server).contains("monitor-server"),
        "{}",
        cmdline(server)
    );
    d.kill9();
    // The server ends with the daemon; the monitor it forked goes on, and
    // so does the guest host, which has a guest.
    eventually("the monitor server to end", || !alive(server));
    assert!(alive(monitor));
    assert!(alive(host));
    let lines = |name: &str| env.wharf(&["logs", name]).ok().stdout.lines().count();
    let before = [lines("survivor"), lines("monitored")];
    eventually("ticks while no daemon runs", || {
        lines("survivor") > before[0] + 2 && lines("monitored") > before[1] + 2
    });
    let d = Daemon::start(&env);
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("survivor Up"), "{ps}");
    assert!(ps.contains("monitored Up"), "{ps}");
    for (name, before) in [("survivor", before[0]), ("monitored", before[1])] {
        let logs = d.docker_ok(&["logs", name]);
        assert!(logs.lines().count() > before + 2, "{logs}");
        // No line lost or repeated across the daemon's death.
        for (i, l) in logs.lines().enumerate() {
            assert_eq!(l, format!("tick {}", i + 1));
        }
    }
    // The new daemon reaches the old host's guest through its control
    // socket, as it signals the monitor.
    d.docker_ok(&["stop", "survivor"]);
    assert_eq!(d.docker_ok(&["wait", "survivor"]).trim(), "143");
    d.docker_ok(&["stop", "monitored"]);
    assert_eq!(d.docker_ok(&["wait", "monitored"]).trim(), "143");
    d.docker_ok(&["stop", "sleeper"]);
    assert_eq!(d.docker_ok(&["wait", "sleeper"]).trim(), "143");
    // A host whose daemon died takes no more guests and ends with its
    // last one (a guest still in its sleep, its exit recorded, no longer
    // counts).
    eventually("the orphaned guest host to end", || !alive(host));
    assert!(
        !env.root
            .path()
            .join("wharf/hosts")
            .join(format!("{host}.sock"))
            .exists(),
        "its control socket went with it"
    );

    // Should the monitor server and the guest host die, the daemon
    // executes monitors.
    for p in [monitor_server(&d), guest_host(&d)] {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(p as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
    }
    let o = d.docker(&["run", "--rm", "probe", "exit", "3"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
}

#[test]
fn hosted_guests_pause_stop_and_get_killed_one_by_one() {
    if !require("docker") {
        return;
    }
    let env = Env::new();
    let _cleanup = Cleanup(&env);
    env.probe();
    let d = Daemon::start(&env);
    // Three guests on one host: each is paused, stopped or killed alone.
    for name in ["a", "b", "c"] {
        d.docker_ok(&["run", "-d", "--name", name, "probe", "tick", "0", "20"]);
    }
    let pids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| d.docker_ok(&["inspect", "--format", "{{.State.Pid}}", n]))
        .collect();
    assert!(pids.iter().all(|p| p == &pids[0]), "one host: {pids:?}");
    let ticks = |name: &str| d.docker_ok(&["logs", name]).lines().count();
    eventually("ticks", || ticks("a") >= 2 && ticks("b") >= 2);
    d.docker_ok(&["pause", "a"]);
    let status = d.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        status.contains("a Up") && status.contains("(Paused)"),
        "{status}"
    );
    let (a, b) = (ticks("a"), ticks("b"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(ticks("a"), a, "no tick while paused");
    assert!(ticks("b") > b + 2, "b runs on");
    // The CLI reaches the host too.
    env.wharf(&["unpause", "a"]).ok();
    eventually("ticks again", || ticks("a") > a + 2);
    env.wharf(&["kill", "-s", "TERM", "b"]).ok();
    assert_eq!(d.docker_ok(&["wait", "b"]).trim(), "143");
    d.docker_ok(&["pause", "c"]);
    d.docker_ok(&["kill", "c"]);
    assert_eq!(d.docker_ok(&["wait", "c"]).trim(), "137");
    assert!(ticks("a") > a + 2);
    // A guest blocked in a host call (a ten-minute sleep) is recorded as
    // stopped all the same, and its removal with --rm happens.
    d.docker_ok(&[
        "run", "-d", "--rm", "--name", "sleeper", "probe", "tick", "0", "600000",
    ]);
    eventually("the first tick", || ticks("sleeper") == 1);
    d.docker_ok(&["kill", "sleeper"]);
    eventually("the sleeper removed", || {
        !d.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])
            .contains("sleeper")
    });
    d.docker_ok(&["stop", "a"]);
    assert_eq!(d.docker_ok(&["wait", "a"]).trim(), "143");
    // Started again while its last run's thread still sleeps, a container
    // stays reachable once that thread returns.
    d.docker_ok(&[
        "run", "-d", "--name", "napper", "probe", "tick", "0", "1500",
    ]);
    eventually("the first tick", || ticks("napper") == 1);
    d.docker_ok(&["kill", "napper"]);
    assert_eq!(d.docker_ok(&["wait", "napper"]).trim(), "137");
    d.docker_ok(&["start", "napper"]);
    std::thread::sleep(std::time::Duration::from_millis(2000));
    d.docker_ok(&["pause", "napper"]);
    d.docker_ok(&["unpause", "napper"]);
    d.docker_ok(&["kill", "napper"]);
    assert_eq!(d.docker_ok(&["wait", "napper"]).trim(), "137");
    // A wasm container with a terminal, input or a restart policy gets a
    // monitor of its own.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "own",
        "--restart",
        "always",
        "probe",
        "tick",
        "0",
        "20",
    ]);
    let own = d.docker_ok(&["inspect", "--format", "{{.State.Pid}}", "own"]);
    assert_ne!(own, pids[0]);
    d.docker_ok(&["rm", "-f", "own"]);
    // A host that dies takes its guests with it, and says so: they show
    // as dead, as a container whose monitor was killed does.
    d.docker_ok(&["run", "-d", "--name", "doomed", "probe", "tick", "0", "20"]);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(guest_host(&d) as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let state = || {
        d.docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}",
            "doomed",
        ])
    };
    // Its main thread ends first; its locks go with the last thread.
    eventually("the guest host gone", || {
        !alive(pids[0].trim().parse().unwrap()) && !state().starts_with("running")
    });
    let state = state();
    assert_eq!(
        state.trim(),
        "dead 255 the container's monitor process ended unexpectedly"
    );
}

/// Field `n` (1-based, after the command name) of `/proc/PID/stat`.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n - 1).map(str::to_owned)
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> u32 {
    stat_field(pid, 2).and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// Whether `pid` is a process that has not ended (a zombie has).
fn alive(pid: u32) -> bool {
    stat_field(pid, 1).is_some_and(|state| state != "Z")
}

/// The command line of process `pid`, arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The daemon's monitor server.
fn monitor_server(d: &Daemon) -> u32 {
    children_of(d.child.id())
        .into_iter()
        .find(|&p| cmdline(p).contains("monitor-server"))
        .expect("the daemon's monitor server")
}

/// The daemon's guest host.
fn guest_host(d: &Daemon) -> u32 {
    children_of(d.child.id())
        .into_iter()
        .find(|&p| cmdline(p).contains("guest-host"))
        .expect("the daemon's guest host")
}

/// The children of process `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&p| parent_of(p) == pid)
        .collect()
}
