//! Linux images: `wharf bundle` writes the OCI runtime spec wharf runs
//! them with, and a real OCI runtime (runc, Debian's package) runs it.

use std::path::Path;
use std::process::Command;

use crate::harness::Env;

/// Builds `bb`, a linux/amd64 image of Debian's static busybox.
fn busybox_image(env: &Env) {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let ctx = env.context(
        "bb",
        &[
            ("busybox", &busybox[..]),
            (
                "Dockerfile",
                b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n\
                  ENV GREETING=ahoy\nWORKDIR /srv\n\
                  ENTRYPOINT [\"/bin/busybox\"]\nCMD [\"echo\", \"hello\"]\n",
            ),
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
    .ok();
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
