//! `wharf run`: args, env, exit codes, limits, the compiled-module cache.

use crate::harness::{Env, Run};

#[test]
fn env_layers_in_docker_order() {
    let env = Env::new();
    env.probe();
    let file = env.path("env.list");
    std::fs::write(&file, "# comment\nFROM_FILE=1\nBOTH=file\n").unwrap();
    let out = env
        .wharf(&[
            "run",
            "--env-file",
            &file,
            "-e",
            "BOTH=flag",
            "-e",
            "X=y=z",
            "probe",
            "env",
        ])
        .ok()
        .stdout;
    assert!(out.contains("FROM_FILE=1\n"), "{out}");
    assert!(out.contains("BOTH=flag\n"), "{out}");
    assert!(out.contains("X=y=z\n"), "{out}");
    assert!(!out.contains("HOME="), "host env must not leak: {out}");
}

#[test]
fn exit_codes_pass_through_and_failures_are_distinct() {
    let env = Env::new();
    env.probe();
    assert_eq!(env.wharf(&["run", "probe", "exit", "7"]).code, 7);
    env.wharf(&["run", "probe", "trap"])
        .fails(134, "guest trapped");
    env.wharf(&["run", "--memory", "16m", "probe", "alloc", "64"])
        .fails(137, "memory limit of 16777216 bytes exceeded");
    env.wharf(&["run", "--memory", "64m", "probe", "alloc", "8"])
        .ok();
    env.wharf(&["run", "--timeout", "300ms", "probe", "spin"])
        .fails(124, "timeout of 300ms exceeded");
    env.wharf(&["run", "--fuel", "1000000", "probe", "spin"])
        .fails(152, "fuel limit of 1000000 exhausted");
    env.wharf(&["run", "--entrypoint", "/nope.wasm", "probe"])
        .fails(127, "/nope.wasm not found");
    env.wharf(&["run", "--pull", "never", "nosuchimage"])
        .fails(125, "no such image");
    env.wharf(&["run", "Bad:Ref:"]).fails(125, "Bad:Ref:");
}

#[test]
fn unsatisfiable_imports_and_bad_modules_are_named() {
    let env = Env::new();
    let wat = env.path("needs.wat");
    std::fs::write(
        &wat,
        r#"(module (import "env" "host_magic" (func)) (func (export "_start")))"#,
    )
    .unwrap();
    env.wharf(&["run", &wat]).fails(126, "env::host_magic");
    let trunc = env.path("trunc.wasm");
    let full = std::fs::read(crate::harness::probe_wasm()).unwrap();
    std::fs::write(&trunc, &full[..full.len() / 2]).unwrap();
    env.wharf(&["run", &trunc])
        .fails(126, "not a valid WebAssembly module");
    // A module that is not a WASI command has nothing to start.
    let lib = env.path("lib.wat");
    std::fs::write(&lib, r#"(module (func (export "add")))"#).unwrap();
    env.wharf(&["run", &lib]).fails(126, "exports no _start");
    // A plain .wasm file runs with nothing mapped.
    let r = env
        .wharf(&[
            "run",
            crate::harness::probe_wasm().to_str().unwrap(),
            "exists",
            "/",
        ])
        .ok();
    assert_eq!(r.stdout, "no\n");
}

#[test]
fn stdin_only_with_interactive() {
    use std::io::Write;
    let env = Env::new();
    env.probe();
    let mut child = env
        .cmd(&["run", "-i", "probe", "stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\n");
    let mut child = env
        .cmd(&["run", "probe", "stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ignored\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn compiled_modules_are_cached_per_engine() {
    let env = Env::new();
    env.build_example("hello", "hello");
    let modules = env.root.path().join("wharf/modules");
    let list = || {
        let mut v: Vec<_> = walkdir(&modules);
        v.sort();
        v
    };
    assert!(list().is_empty());
    env.wharf(&["run", "hello"]).ok();
    let first = list();
    assert_eq!(first.len(), 1, "{first:?}");
    let mtime = std::fs::metadata(&first[0]).unwrap().modified().unwrap();
    env.wharf(&["run", "hello"]).ok();
    assert_eq!(
        std::fs::metadata(&first[0]).unwrap().modified().unwrap(),
        mtime,
        "second run reuses the cache"
    );
    // Fuel metering changes the generated code: a separate entry.
    env.wharf(&["run", "--fuel", "100000000", "hello"]).ok();
    assert_eq!(list().len(), 2);
    // A corrupt cache entry is recompiled, not trusted.
    std::fs::write(&first[0], b"garbage").unwrap();
    assert_eq!(
        env.wharf(&["run", "hello"]).ok().stdout,
        "Hello from wharf!\ngreeting: ahoy\n"
    );
}

fn walkdir(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walkdir(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn everything_after_the_image_goes_to_the_guest() {
    let env = Env::new();
    env.probe();
    // `-e` after IMAGE is an argument for the guest, as with `docker run`.
    let out = env
        .wharf(&["run", "probe", "args", "-e", "X=1", "--rm"])
        .ok()
        .stdout;
    assert_eq!(out, "-e\nX=1\n--rm\n");
    env.wharf(&["run", "missing.wasm"])
        .fails(127, "missing.wasm");
}

#[test]
fn removing_an_image_while_it_runs_keeps_its_files_until_the_end() {
    use std::io::Write;
    let env = Env::new();
    env.probe();
    let mut child = env
        .cmd(&["run", "-i", "probe", "wait-cat", "/data/hello.txt"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Give the guest time to start; the outcome does not depend on it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.wharf(&["rmi", "probe"]).ok();
    stdin.write_all(b"go").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stdout.is_empty(), "the guest still read its rootfs");
    // With the guest gone, the next collection removes the snapshot.
    env.build_example("hello", "hello");
    env.wharf(&["rmi", "hello"]).ok();
    let snapshots = env.root.path().join("wharf/snapshots");
    assert_eq!(std::fs::read_dir(snapshots).unwrap().count(), 0);
}

#[test]
fn closed_stdout_is_not_a_crash() {
    let env = Env::new();
    env.build_example("hello", "hello");
    let mut child = env
        .cmd(&["inspect", "hello"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn wharf_runs_local_images_itself_and_hands_other_commands_to_wharf_full() {
    let env = Env::new();
    env.build_example("hello", "hello");
    // `wharf` alone, without `wharf-full` beside it.
    let alone = env.scratch.path().join("bin");
    std::fs::create_dir_all(&alone).unwrap();
    let wharf = alone.join("wharf");
    std::fs::copy(crate::harness::wharf_bin(), &wharf).unwrap();
    let run = |args: &[&str]| {
        Run::from(
            std::process::Command::new(&wharf)
                .arg("--root")
                .arg(env.root.path())
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let r = run(&["run", "hello"]).ok();
    assert!(r.stdout.starts_with("Hello from wharf!"), "{}", r.stdout);
    run(&["images"]).fails(125, "wharf needs wharf-full installed beside it");
    // With it, every command works through `wharf`, with wharf's name.
    let r = env.wharf(&["images"]).ok();
    assert!(r.stdout.contains("hello"), "{}", r.stdout);
    let r = env.wharf(&["bogus"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Usage: wharf"), "{}", r.stderr);
}
