//! Test helpers: the wharf binary, built example guests, temp roots.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The wharf binary built beside this test executable.
pub fn wharf_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("wharf");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace` first (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// Builds the example guests once per test process.
pub fn examples() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo().join("examples/build.sh"))
            .status()
            .expect("run examples/build.sh");
        assert!(status.success(), "examples/build.sh failed");
    });
    repo().join("examples")
}

pub fn probe_wasm() -> PathBuf {
    examples().join("probe/target/wasm32-wasip1/release/probe.wasm")
}

/// A store root, a scratch directory and private configuration
/// directories (`WHARF_CONFIG`, `DOCKER_CONFIG`) that live as long as the
/// test, so no test reads or writes the real `~/.config` or `~/.docker`.
pub struct Env {
    pub root: tempfile::TempDir,
    pub scratch: tempfile::TempDir,
    config: tempfile::TempDir,
    docker: tempfile::TempDir,
}

/// The result of one wharf invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
        assert_eq!(
            self.stderr
                .trim()
                .lines()
                .filter(|l| l.starts_with("wharf:"))
                .count(),
            1,
            "one error line: {}",
            self.stderr
        );
        self
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            root: tempfile::tempdir().unwrap(),
            scratch: tempfile::tempdir().unwrap(),
            config: tempfile::tempdir().unwrap(),
            docker: tempfile::tempdir().unwrap(),
        }
    }

    /// wharf's configuration directory (`$WHARF_CONFIG`) for this Env.
    pub fn wharf_config(&self) -> &Path {
        self.config.path()
    }

    /// Docker's configuration directory (`$DOCKER_CONFIG`) for this Env.
    pub fn docker_config(&self) -> &Path {
        self.docker.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(wharf_bin());
        c.arg("--root").arg(self.root.path()).args(args);
        c.env_remove("SOURCE_DATE_EPOCH");
        c.env("WHARF_CONFIG", self.wharf_config());
        c.env("DOCKER_CONFIG", self.docker_config());
        c.stdin(Stdio::null());
        c
    }

    pub fn wharf(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    /// Runs wharf with `input` on its stdin.
    pub fn wharf_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // A wharf that exits without reading gives EPIPE here: not our error.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        Run::from(child.wait_with_output().unwrap())
    }

    /// Builds an example image under `tag`.
    pub fn build_example(&self, name: &str, tag: &str) {
        let ctx = examples().join(name);
        self.wharf(&["build", "-t", tag, ctx.to_str().unwrap()])
            .ok();
    }

    /// Builds the probe image (`probe`) used by the sandbox tests.
    pub fn probe(&self) {
        self.build_example("probe", "probe");
    }

    /// A scratch path as a string.
    pub fn path(&self, rel: &str) -> String {
        self.scratch.path().join(rel).to_str().unwrap().to_owned()
    }

    /// Writes a build context in the scratch dir with the given files.
    pub fn context(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = self.scratch.path().join(name);
        for (p, data) in files {
            let f = dir.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, data).unwrap();
        }
        dir
    }

    /// A snapshot of every file under the root (path, size), to show that
    /// a failed command changed nothing.
    pub fn store_state(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        walk(self.root.path(), self.root.path(), &mut out);
        out.retain(|(p, _)| !p.starts_with("wharf/lock") && !p.starts_with("wharf/index.lock"));
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            walk(base, &p, out);
        } else {
            out.push((
                p.strip_prefix(base).unwrap().to_string_lossy().into_owned(),
                m.len(),
            ));
        }
    }
}

pub fn has(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Skips (with a printed reason) when a tool is missing outside CI; in CI
/// a missing tool fails the test, since .ci/run installs it.
pub fn require(cmd: &str) -> bool {
    if has(cmd) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{cmd} is missing in CI: .ci/run must install it"
    );
    eprintln!("skipping: {cmd} is not installed");
    false
}
